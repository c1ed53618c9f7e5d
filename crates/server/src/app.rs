//! Start-up: open the store, apply the configuration, build the shared state, bind the
//! listener (port 0 allowed) and serve until told to stop.

use crate::config::{default_burst, Config};
use crate::protocol::{self, auth::MAX_SKEW, nonce::NonceCache, throttle::Throttle};
use crate::registry::Registry;
use crate::state::AppState;
use anyhow::Context;
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;
use gpdiag_core::{AccessKey, Clock, Instance, Secret, SystemClock};
use gpdiag_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the server looks for key changes made by other processes (`gpdiag keys`).
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The account created on a first start with no account configured.
pub const BOOTSTRAP_ACCOUNT: &str = "default";

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    bootstrap_key: Option<AccessKey>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok();
        config.validate(env)?;
        let store = gpdiag_store::open(&config.storage.url)
            .await
            .with_context(|| "cannot open the store")?;
        apply_config(store.as_ref(), &config, env).await?;
        let bootstrap_key = bootstrap_if_empty(store.as_ref()).await?;

        let registry = Registry::default();
        registry.load(store.as_ref()).await?;
        let addr = config.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let public_url = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let state = Arc::new(AppState {
            registry,
            store,
            throttle: Throttle::new(
                config.limits.calls_per_second,
                config.limits.effective_burst(),
            ),
            api_throttle: config
                .limits
                .api_calls_per_second
                .map(|rate| Throttle::new(rate, default_burst(rate))),
            nonces: NonceCache::new(MAX_SKEW, config.limits.nonce_capacity),
            clock,
            public_url,
        });
        Ok(Self {
            listener,
            state,
            bootstrap_key,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The key made on a first start, for the caller to show once. Never logged.
    pub fn take_bootstrap_key(&mut self) -> Option<AccessKey> {
        self.bootstrap_key.take()
    }

    pub fn router(state: Arc<AppState>) -> Router {
        Router::new()
            .route("/", any(protocol::rpc))
            .route("/healthz", get(|| async { "ok\n" }))
            .fallback(protocol::not_found)
            .with_state(state)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let refresher = tokio::spawn(refresh_keys(self.state.clone()));
        let router = Self::router(self.state.clone());
        let result = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        refresher.abort();
        result.context("the server stopped with an error")
    }
}

/// Seeds the configured accounts, keys and instances into the store.
async fn apply_config(
    store: &dyn Store,
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    for account in &config.accounts {
        store.ensure_account(&account.name).await?;
        store
            .put_key(&AccessKey {
                id: account.access_key_id.clone(),
                account: account.name.clone(),
                secret: account.secret(&env)?,
                enabled: true,
                created_at: Utc::now(),
            })
            .await
            .with_context(|| format!("cannot store access key {}", account.access_key_id))?;
    }
    let mut instances = Vec::with_capacity(config.instances.len());
    for i in &config.instances {
        store.ensure_account(&i.account).await?;
        instances.push(Instance {
            id: i.id.clone(),
            account: i.account.clone(),
            region: i
                .region
                .clone()
                .unwrap_or_else(|| config.server.region.clone()),
            engine_version: i.engine_version.clone(),
            core_version_text: i.core_version.clone(),
            core_version: i.core_version.parse()?,
            mode: i.mode.parse()?,
            status: i.status.clone(),
            description: i.description.clone(),
            created_at: Utc::now(),
        });
    }
    store.replace_instances(&instances).await?;
    Ok(())
}

/// With no key at all, a first start creates an account and one key, so the server is usable
/// at once.
async fn bootstrap_if_empty(store: &dyn Store) -> anyhow::Result<Option<AccessKey>> {
    if !store.list_keys().await?.is_empty() {
        return Ok(None);
    }
    store.ensure_account(BOOTSTRAP_ACCOUNT).await?;
    let key = new_access_key(BOOTSTRAP_ACCOUNT);
    store.put_key(&key).await?;
    Ok(Some(key))
}

/// A fresh key pair: `LTAI` plus 20 random characters, and a 30-character secret.
pub fn new_access_key(account: &str) -> AccessKey {
    use rand::distributions::{Alphanumeric, DistString};
    let mut rng = rand::rngs::OsRng;
    AccessKey {
        id: format!("LTAI{}", Alphanumeric.sample_string(&mut rng, 20)),
        account: account.to_owned(),
        secret: Secret::new(Alphanumeric.sample_string(&mut rng, 30)),
        enabled: true,
        created_at: Utc::now(),
    }
}

async fn refresh_keys(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(KEY_REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.registry.refresh_keys(state.store.as_ref()).await {
            Ok(true) => tracing::info!("access keys reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload access keys; keeping the current ones")
            }
        }
    }
}
