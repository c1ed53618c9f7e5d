//! What every request shares: the registry, the limiter, the replay memory, the store and the
//! clock.

use crate::protocol::nonce::NonceCache;
use crate::protocol::throttle::Throttle;
use crate::registry::Registry;
use gpdiag_core::Clock;
use gpdiag_store::Store;
use std::sync::Arc;

pub struct AppState {
    pub registry: Registry,
    pub store: Arc<dyn Store>,
    pub throttle: Throttle,
    pub nonces: NonceCache,
    pub clock: Arc<dyn Clock>,
    pub public_url: String,
}
