//! Start-up: open the store, apply the configuration, build the shared state, bind the
//! listener (port 0 allowed) and serve until told to stop.

use crate::config::{default_burst, Config};
use crate::links::{LinkSigner, LINK_KEY_SETTING};
use crate::metrics::Metrics;
use crate::protocol::{self, auth::MAX_SKEW, nonce::NonceCache, throttle::Throttle};
use crate::registry::Registry;
use crate::state::{AppState, Exports, MetricsAccess};
use anyhow::Context;
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;
use gpdiag_core::export::task_prefix;
use gpdiag_core::{AccessKey, Clock, Instance, Secret, SystemClock};
use gpdiag_export::{ExportSettings, Exporter};
use gpdiag_ingest::collect::{host_name, Collector};
use gpdiag_objects::Objects;
use gpdiag_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the server looks for key and task changes made by other processes (`gpdiag
/// keys`, other servers sharing PostgreSQL).
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How often expired exports are deleted.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How long a stopping server waits for each collector to finish its step.
const COLLECTOR_STOP_GRACE: Duration = Duration::from_secs(10);

/// The account created on a first start with no account configured.
pub const BOOTSTRAP_ACCOUNT: &str = "default";

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    bootstrap_key: Option<AccessKey>,
    exporter: Arc<Exporter>,
    collectors: Vec<Collector>,
    retention: chrono::Duration,
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
        if config.storage.url.starts_with("sqlite://") {
            // SQLite serves one process, so every claim left in it belongs to a process that
            // is gone: interrupted exports are taken again at once instead of after the lease.
            let released = store.release_all_claims().await?;
            if released > 0 {
                tracing::info!(
                    tasks = released,
                    "resuming exports interrupted by the last stop"
                );
            }
        }
        let objects = Objects::from_settings(&config.objects, env)
            .context("cannot open the object store ([objects])")?;
        if let Err(e) = objects.check().await {
            // Serve anyway: listings and searches work, and exports fail with a clear message
            // until the store is back.
            tracing::warn!(error = %e, "the object store is not reachable now");
        }
        let link_key = store
            .get_or_create_setting(LINK_KEY_SETTING, &random_key())
            .await?;

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
        let exporter = Arc::new(Exporter::new(
            store.clone(),
            objects.clone(),
            clock.clone(),
            // Unique per process start, so leases tell processes (and restarts) apart.
            format!("{}-{}", local, uuid::Uuid::new_v4().simple()),
            ExportSettings {
                workers: config.exports.workers,
                max_attempts: config.exports.max_attempts,
                lease: chrono::Duration::seconds(i64::from(config.exports.lease_seconds)),
                ..ExportSettings::default()
            },
        ));
        // Stable across restarts of this server: a restarted server resumes collecting at once.
        let collector_owner = format!("{}:{}", host_name(), local);
        let collected = config
            .instances
            .iter()
            .filter(|i| i.collect.is_some())
            .map(|i| i.id.clone())
            .collect();
        let metrics_access = match (config.metrics.enabled, config.metrics.token(env)?) {
            (false, _) => MetricsAccess::Off,
            (true, None) => MetricsAccess::Open,
            (true, Some(token)) => MetricsAccess::Bearer(token),
        };
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
            exports: Exports {
                wake_workers: exporter.wake(),
                objects,
                signer: LinkSigner::new(Secret::new(link_key), &public_url),
                link_ttl: chrono::Duration::from_std(config.objects.link_ttl()?)?,
                slow_query_ms: config.exports.slow_query_ms,
                max_running_per_account: config.exports.max_running_per_account,
            },
            public_url,
            metrics: Metrics::new(collected, collector_owner.clone()),
            metrics_access,
        });
        let collectors = config
            .instances
            .iter()
            .filter_map(|i| i.collect.as_ref().map(|c| (i, c)))
            .map(|(instance, settings)| {
                let dsn = settings
                    .resolved_dsn(env)
                    .map_err(|e| anyhow::anyhow!("[instances.collect] of {}: {e}", instance.id))?;
                Ok(Collector::new(
                    &instance.id,
                    settings.clone(),
                    dsn,
                    state.store.clone(),
                    collector_owner.clone(),
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            listener,
            state,
            bootstrap_key,
            exporter,
            collectors,
            retention: chrono::Duration::days(i64::from(config.exports.retention_days)),
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

    /// The shared state, for tests that arrange or inspect it directly.
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The key made on a first start, for the caller to show once. Never logged.
    pub fn take_bootstrap_key(&mut self) -> Option<AccessKey> {
        self.bootstrap_key.take()
    }

    pub fn router(state: Arc<AppState>) -> Router {
        let mut router = Router::new()
            .route("/", any(protocol::rpc))
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/downloads/{task}/{file}",
                get(protocol::download::download),
            );
        if !matches!(state.metrics_access, MetricsAccess::Off) {
            router = router.route("/metrics", get(protocol::metrics::scrape));
        }
        router.fallback(protocol::not_found).with_state(state)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests. Exports in flight
    /// are dropped (their uploads never become visible) and resume at the next start.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
        let background = [
            tokio::spawn(refresh(self.state.clone())),
            tokio::spawn(retention(self.state.clone(), self.retention)),
            tokio::spawn(self.exporter.clone().run(workers_stopped.clone())),
            tokio::spawn(refresh_when_exports_end(
                self.state.clone(),
                self.exporter.ended(),
            )),
        ];
        let collectors: Vec<_> = self
            .collectors
            .into_iter()
            .map(|c| tokio::spawn(c.run(workers_stopped.clone())))
            .collect();
        let router = Self::router(self.state.clone());
        let result = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop_workers.send(true);
        // Collectors finish their step and give their leases up, so another process (or a
        // `gpdiag collect --once`) can take over at once.
        for collector in collectors {
            let abort = collector.abort_handle();
            if tokio::time::timeout(COLLECTOR_STOP_GRACE, collector)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // Exports in flight are dropped, not finished: their uploads never become visible, and
        // the next start takes them again. Waiting here means none outlives the server.
        for task in background {
            task.abort();
            let _ = task.await;
        }
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

async fn refresh(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
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
        if let Err(e) = state.registry.refresh_tasks(state.store.as_ref()).await {
            tracing::warn!(error = %e, "cannot reload download tasks; keeping the current ones");
        }
        // Running exports' progress, which does not change the tasks generation.
        if let Err(e) = state.registry.refresh_progress(state.store.as_ref()).await {
            tracing::warn!(error = %e, "cannot read export progress; keeping the current one");
        }
    }
}

/// Makes `DescribeDownloadRecords` show an export that ended here at once, not at the next
/// periodic refresh.
async fn refresh_when_exports_end(state: Arc<AppState>, ended: Arc<tokio::sync::Notify>) {
    loop {
        ended.notified().await;
        state.tasks_changed().await;
    }
}

/// Deletes exports (records and files) older than the retention period, hourly.
async fn retention(state: Arc<AppState>, keep: chrono::Duration) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = delete_expired(&state, keep).await {
            tracing::warn!(error = %e, "retention: cannot delete expired exports now");
        }
    }
}

/// One retention pass; returns how many tasks it deleted.
pub async fn delete_expired(state: &AppState, keep: chrono::Duration) -> anyhow::Result<usize> {
    let expired = state
        .store
        .delete_tasks_before(state.clock.now() - keep)
        .await?;
    for task in &expired {
        // Every attempt's file, and any staging leftovers, live under the task's prefix.
        if let Err(e) = state
            .exports
            .objects
            .delete_prefix(&task_prefix(task))
            .await
        {
            tracing::warn!(task = task.id, error = %e, "retention: a file could not be deleted");
        }
    }
    if !expired.is_empty() {
        tracing::info!(tasks = expired.len(), "retention: expired exports deleted");
        state.tasks_changed().await;
    }
    Ok(expired.len())
}

/// 32 random bytes as hex, for server-wide keys.
fn random_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
