//! What every request shares: the registry, the limiters, the replay memory, the store, the
//! export settings, the metrics and the clock.

use crate::links::LinkSigner;
use crate::metrics::Metrics;
use crate::protocol::nonce::NonceCache;
use crate::protocol::throttle::Throttle;
use crate::registry::Registry;
use chrono::{DateTime, Utc};
use gpdiag_core::{Clock, Secret};
use gpdiag_objects::Objects;
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
    pub exports: Exports,
    pub metrics: Metrics,
    pub metrics_access: MetricsAccess,
}

/// Who may read `/metrics` (`[metrics]`).
pub enum MetricsAccess {
    /// Not served: the path is unknown, like any other.
    Off,
    Open,
    /// Scrapes must send `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// What the export actions and the download route need.
pub struct Exports {
    pub objects: Objects,
    /// Wakes an idle export worker of this process when a task is created.
    pub wake_workers: Arc<tokio::sync::Notify>,
    pub signer: LinkSigner,
    pub link_ttl: chrono::Duration,
    pub slow_query_ms: i64,
    pub max_running_per_account: u32,
}

impl Exports {
    /// A fresh link to a finished file: an S3 presigned URL, or the server's own signed route
    /// for `file://` objects. Empty (and logged) if an S3 link cannot be signed.
    pub async fn link(
        &self,
        task_id: i64,
        file_name: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> String {
        let ttl = self.link_ttl.to_std().unwrap_or_default();
        match self.objects.presigned_get(key, ttl).await {
            Some(Ok(url)) => url.to_string(),
            Some(Err(e)) => {
                tracing::error!(task = task_id, error = %e, "cannot sign an S3 download link");
                String::new()
            }
            None => self.signer.url(task_id, file_name, now + self.link_ttl),
        }
    }
}

impl AppState {
    /// Makes this process's view of the tasks current after it changed one, so the caller's
    /// next `DescribeDownloadRecords` shows the change at once.
    pub async fn tasks_changed(&self) {
        if let Err(e) = self.registry.refresh_tasks(self.store.as_ref()).await {
            tracing::warn!(error = %e, "cannot reload download tasks; the periodic refresh will retry");
        }
        if let Err(e) = self.registry.refresh_progress(self.store.as_ref()).await {
            tracing::warn!(error = %e, "cannot read export progress; the periodic refresh will retry");
        }
    }
}
