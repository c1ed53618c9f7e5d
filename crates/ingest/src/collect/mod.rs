//! Collectors: each instance's log tailer and activity sampler, run continuously under a
//! store lease (one process collects an instance) or once for batch use, reporting health.

mod sampler;
mod settings;
mod tailer;

use sampler::Sampler;
pub use settings::CollectSettings;
pub use tailer::{TailError, TailStats, Tailer};

use chrono::{SecondsFormat, Utc};
use gpdiag_core::CollectorHealth;
use gpdiag_store::{Store, StoreError};
use std::sync::Arc;
use tokio::sync::watch;

/// One instance's collection, as configured.
pub struct Collector {
    instance: String,
    settings: CollectSettings,
    dsn: Option<String>,
    store: Arc<dyn Store>,
    owner: String,
}

/// What `collect --once` did for one instance.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnceReport {
    pub tail: TailStats,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("instance {0} is being collected by another gpdiag process (gpdiag serve?); stop it or wait for its lease to end")]
    Busy(String),
    #[error("instance {0} has no log_dir to read")]
    NoLogs(String),
    #[error(transparent)]
    Tail(#[from] TailError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Collector {
    /// `dsn` is the resolved DSN (see [`CollectSettings::resolved_dsn`]). `owner` names the
    /// process in leases and health reports; a process that restarts under the same name takes
    /// its lease back at once instead of waiting for it to run out.
    pub fn new(
        instance: &str,
        settings: CollectSettings,
        dsn: Option<String>,
        store: Arc<dyn Store>,
        owner: String,
    ) -> Self {
        Self {
            instance: instance.to_owned(),
            settings,
            dsn,
            store,
            owner,
        }
    }

    /// A lease long enough to survive a slow pass, short enough for a quick takeover.
    fn lease(&self) -> chrono::Duration {
        let interval = chrono::Duration::from_std(self.settings.sample_interval)
            .unwrap_or(chrono::Duration::seconds(1));
        (interval * 5).max(chrono::Duration::seconds(30))
    }

    fn tailer(&self) -> Option<Tailer> {
        self.settings.log_dir.as_deref().map(|dir| {
            Tailer::new(
                &self.instance,
                dir,
                self.settings.log_format.0,
                self.settings.max_record_bytes,
            )
        })
    }

    /// Reads the logs as they are now, once, and returns. Refuses while another process holds
    /// the instance's lease.
    pub async fn once(&self) -> Result<OnceReport, CollectError> {
        let mut tailer = self
            .tailer()
            .ok_or_else(|| CollectError::NoLogs(self.instance.clone()))?;
        if !self
            .store
            .claim_collector(&self.instance, &self.owner, Utc::now(), self.lease())
            .await?
        {
            return Err(CollectError::Busy(self.instance.clone()));
        }
        let result = tailer.pass(self.store.as_ref()).await;
        self.store
            .release_collector(&self.instance, &self.owner)
            .await?;
        Ok(OnceReport { tail: result? })
    }

    /// Collects until `stop` turns true: every interval, one activity sample, then one pass
    /// over the log directory, then a health report. Errors are reported, never fatal.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tailer = self.tailer();
        let mut sampler = match self.dsn.as_deref().map(|d| Sampler::new(&self.instance, d)) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                tracing::error!(instance = %self.instance, "not sampling activity: {e}");
                None
            }
            None => None,
        };
        let mut health = CollectorHealth {
            owner: self.owner.clone(),
            log_format: if tailer.is_some() {
                self.settings.log_format.0.to_string()
            } else {
                String::new()
            },
            sampling: sampler.is_some(),
            ..CollectorHealth::default()
        };
        let mut ticks = tokio::time::interval(self.settings.sample_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leased = false;
        let mut cleared_running = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            let now = Utc::now();
            match self
                .store
                .claim_collector(&self.instance, &self.owner, now, self.lease())
                .await
            {
                Ok(true) => {
                    if !leased {
                        tracing::info!(instance = %self.instance, "collecting");
                        leased = true;
                    }
                }
                Ok(false) => {
                    if leased {
                        tracing::warn!(instance = %self.instance, "another process took over collecting");
                        leased = false;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(instance = %self.instance, "cannot renew the collector lease: {e}");
                    continue;
                }
            }
            let mut errors = Vec::new();
            if let Some(sampler) = sampler.as_mut() {
                match sampler.sample().await {
                    Ok(running) => {
                        health.running_queries = running.len() as u64;
                        match self.store.replace_running(&self.instance, running).await {
                            Ok(()) => {
                                health.last_sample_at = Some(stamp(Utc::now()));
                                cleared_running = false;
                            }
                            Err(e) => errors.push(format!("saving running queries: {e}")),
                        }
                    }
                    Err(e) => {
                        // The server is away: what ran there is not running any more.
                        if !cleared_running
                            && self
                                .store
                                .replace_running(&self.instance, Vec::new())
                                .await
                                .is_ok()
                        {
                            cleared_running = true;
                            health.running_queries = 0;
                        }
                        errors.push(format!("sampling: {e}"));
                    }
                }
                health.sampler_connected = sampler.connected();
            }
            if let Some(tailer) = tailer.as_mut() {
                match tailer.pass(self.store.as_ref()).await {
                    Ok(stats) => {
                        health.last_tail_at = Some(stamp(Utc::now()));
                        health.log_files = stats.files;
                        health.lag_bytes = stats.lag_bytes;
                        health.log_records += stats.records;
                        health.bad_log_records += stats.bad_records;
                    }
                    Err(e) => errors.push(format!("reading logs: {e}")),
                }
            }
            if !errors.is_empty() {
                let message = errors.join("; ");
                tracing::warn!(instance = %self.instance, "{message}");
                health.last_error = Some(message);
                health.last_error_at = Some(stamp(Utc::now()));
            }
            health.updated_at = stamp(Utc::now());
            let report = serde_json::to_string(&health).expect("health serialises");
            if let Err(e) = self
                .store
                .put_collector_health(&self.instance, &report)
                .await
            {
                tracing::warn!(instance = %self.instance, "cannot save collector health: {e}");
            }
        }
        if leased {
            if let Err(e) = self
                .store
                .release_collector(&self.instance, &self.owner)
                .await
            {
                tracing::warn!(instance = %self.instance, "cannot release the collector lease: {e}");
            }
        }
    }
}

fn stamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// This machine's name, for owner names.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
