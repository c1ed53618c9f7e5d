//! What every request shares: the registry, the limiter, the replay memory, the store and the
//! clock.

use crate::protocol::nonce::NonceCache;
use crate::protocol::throttle::Throttle;
use crate::registry::Registry;
use gpdiag_core::Clock;
use gpdiag_store::Store;
use gpdiag_wire::api::Action;
use std::sync::Arc;

pub struct AppState {
    pub registry: Registry,
    pub store: Arc<dyn Store>,
    /// Per account: `[limits] calls_per_second`.
    pub throttle: Throttle<Arc<str>>,
    /// Per action across all accounts: `[limits] api_calls_per_second`, when set.
    pub api_throttle: Option<Throttle<Action>>,
    pub nonces: NonceCache,
    pub clock: Arc<dyn Clock>,
    pub public_url: String,
}
