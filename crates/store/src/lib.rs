//! gpdiag's durable state behind one trait, [`Store`]: accounts, access keys, the instance
//! registry and query records. SQLite is the embedded default; PostgreSQL serves several
//! processes. No driver type crosses this crate's boundary.

mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use gpdiag_core::{
    AccessKey, DownloadTask, Instance, NewTask, QueryRecord, RecordFilter, RecordOrder, TimeWindow,
};
use std::sync::Arc;

pub use postgres::tls as pg_tls;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A limit was reached (e.g. running exports per account); the message says which.
    #[error("{0}")]
    LimitReached(String),
    #[error("storage URL {0:?} is not supported: {1}")]
    Unsupported(String, &'static str),
    /// The back end cannot be reached or is too busy now; trying again later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The back end failed; the message is for logs, never for API clients.
    #[error("storage failure: {0}")]
    Backend(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates the account if it does not exist.
    async fn ensure_account(&self, name: &str) -> Result<(), StoreError>;

    /// Inserts a key, or updates the secret of an existing key of the same account. A key ID
    /// that belongs to another account is a `Conflict`. `enabled` is kept for existing keys, so
    /// re-reading the configuration never re-enables a key an operator disabled.
    async fn put_key(&self, key: &AccessKey) -> Result<(), StoreError>;

    /// Enables or disables a key; `NotFound` if there is no such key.
    async fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError>;

    async fn list_keys(&self) -> Result<Vec<AccessKey>, StoreError>;

    /// A number that changes whenever any key changes, so a server can poll it cheaply and
    /// reload keys that another process (the `gpdiag keys` command) changed.
    async fn keys_generation(&self) -> Result<i64, StoreError>;

    /// Makes the registry exactly `instances`: new ones are added, present ones updated (their
    /// first-seen time kept), missing ones removed.
    async fn replace_instances(&self, instances: &[Instance]) -> Result<(), StoreError>;

    async fn list_instances(&self) -> Result<Vec<Instance>, StoreError>;

    /// Writes records in one transaction. A record whose `(instance, query_id)` exists replaces
    /// it, so re-importing creates no duplicates and a finished record replaces a running one.
    /// Returns how many records were written.
    /// The batch is taken by value: the blocking writer needs it owned, and a copy of every
    /// batch would cost a bulk import about a tenth of its time.
    async fn upsert_records(&self, records: Vec<QueryRecord>) -> Result<u64, StoreError>;

    /// One page of the records `filter` selects, in `order`, plus how many it selects in all.
    /// Ties are broken by `query_id` in the same direction. With `maxCost N`, the selection is
    /// first cut to the N longest records (ties by `query_id` ascending).
    async fn search_records(
        &self,
        filter: &RecordFilter,
        order: RecordOrder,
        page: Page,
    ) -> Result<RecordPage, StoreError>;

    async fn get_record(
        &self,
        instance: &str,
        query_id: &str,
    ) -> Result<Option<QueryRecord>, StoreError>;

    /// The distinct databases and users of an instance's records, sorted; within `window` if
    /// given, over all its records otherwise.
    async fn record_dimensions(
        &self,
        instance: &str,
        window: Option<TimeWindow>,
    ) -> Result<Dimensions, StoreError>;

    /// Streams the records `filter` selects, in `order`, as batches of at most `batch` records
    /// through a bounded channel: memory stays flat whatever the size. The stream holds one
    /// consistent snapshot. A complete stream ends with one empty batch; a channel that
    /// closes without it (or with an `Err`) was cut short, and its records must not be used
    /// as the whole selection.
    fn stream_records(
        &self,
        filter: &RecordFilter,
        order: RecordOrder,
        batch: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<QueryRecord>, StoreError>>;

    // ---- download tasks ----

    /// Records a new `running` task, unless the account already has `max_running` running
    /// ones (`LimitReached`); the check and the insert are one transaction.
    async fn create_task(
        &self,
        task: &NewTask,
        max_running: u32,
    ) -> Result<DownloadTask, StoreError>;

    async fn get_task(&self, id: i64) -> Result<Option<DownloadTask>, StoreError>;

    /// Every task, newest first (retention keeps this bounded); for the in-memory view.
    async fn list_tasks(&self) -> Result<Vec<DownloadTask>, StoreError>;

    /// Changes whenever a task is created, claimed, released, finished, failed or deleted, so
    /// other processes can notice cheaply. Renewals (the lease and `rows_done`) leave it alone:
    /// [`Store::running_progress`] reads those.
    async fn tasks_generation(&self) -> Result<i64, StoreError>;

    /// The `rows_done` of every running task, by ID, read together with the
    /// [`Store::tasks_generation`] it belongs to (one consistent read).
    async fn running_progress(&self) -> Result<RunningProgress, StoreError>;

    /// Takes the oldest running task that no live worker holds (never claimed, or its lease
    /// ended before `now`), counts the attempt and leases it to `worker` until `now + lease`.
    async fn claim_task(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<DownloadTask>, StoreError>;

    /// Extends the lease and records progress. `false` when the task is no longer this
    /// worker's running task (canceled, or taken over after the lease ran out): stop at once.
    /// Does not change [`Store::tasks_generation`]: workers renew every second, and the progress
    /// reaches readers through [`Store::running_progress`] instead.
    async fn renew_task(
        &self,
        id: i64,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
        rows_done: u64,
    ) -> Result<bool, StoreError>;

    /// `running` → `finished`, only while `worker` holds the task.
    async fn finish_task(
        &self,
        id: i64,
        worker: &str,
        object_key: &str,
        rows: u64,
        bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// `running` → `failed` with `message`, only while `worker` holds the task; with no worker,
    /// whoever holds it (cancel, abandonment).
    async fn fail_task(
        &self,
        id: i64,
        worker: Option<&str>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Releases every lease at once: for a single-node store starting up, where no other
    /// process can be working, so interrupted tasks are taken again without waiting.
    async fn release_all_claims(&self) -> Result<u64, StoreError>;

    /// Deletes tasks created before `before` and returns them, so their files can go too.
    async fn delete_tasks_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<DownloadTask>, StoreError>;

    /// Appends one line to the download audit log.
    async fn record_download(&self, entry: &DownloadAudit) -> Result<(), StoreError>;

    async fn list_downloads(&self, task_id: i64) -> Result<Vec<DownloadAudit>, StoreError>;

    /// A named server-wide value, created as `fresh` by whichever process asks first; every
    /// process sharing the store then reads the same value (e.g. the download-link key).
    async fn get_or_create_setting(&self, name: &str, fresh: &str) -> Result<String, StoreError>;

    // ---- collectors ----

    /// Takes or renews the lease on collecting `instance` for `owner` until `now + lease`.
    /// False while another owner holds an unexpired lease: one process collects an instance.
    async fn claim_collector(
        &self,
        instance: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up, if `owner` holds it.
    async fn release_collector(&self, instance: &str, owner: &str) -> Result<(), StoreError>;

    /// How far the log tailer of `instance` has read each file.
    async fn collector_files(&self, instance: &str) -> Result<Vec<LogFilePosition>, StoreError>;

    /// One step of a log tailer, in one transaction: the records are upserted (one written
    /// again without a plan keeps the plan it has), every running
    /// record a finished record settles is removed (same session, started no later than the
    /// finished one ended), the positions are saved and the forgotten files' positions dropped.
    async fn commit_collected(&self, batch: CollectedBatch) -> Result<(), StoreError>;

    /// Makes the running records of `instance` exactly `running` (one activity sample).
    async fn replace_running(
        &self,
        instance: &str,
        running: Vec<QueryRecord>,
    ) -> Result<(), StoreError>;

    /// Saves the collector's health report (a JSON document the collector defines).
    async fn put_collector_health(&self, instance: &str, health: &str) -> Result<(), StoreError>;

    async fn collector_health(&self, instance: &str) -> Result<Option<String>, StoreError>;
}

/// What an upsert does to the plan of a record that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plans {
    Replace,
    /// A record written again without a plan keeps the one it has: a tailer that re-reads a
    /// log after a restart may meet a statement again without the plan logged before the
    /// point it resumed from.
    KeepWhenMissing,
}

impl Plans {
    /// The SET assignments of the plan columns (the same SQL in both back ends).
    pub(crate) fn assignments(self) -> &'static str {
        match self {
            Plans::Replace => "plan_json = excluded.plan_json, plan_text = excluded.plan_text",
            Plans::KeepWhenMissing => {
                "plan_json = coalesce(excluded.plan_json, query_records.plan_json), \
                 plan_text = coalesce(excluded.plan_text, query_records.plan_text)"
            }
        }
    }
}

/// Where a log tailer stands in one file of the server's log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilePosition {
    /// The name inside the log directory.
    pub file_name: String,
    /// What makes this file this file (device and inode), so a new file under an old name is
    /// read from its start.
    pub identity: String,
    /// Bytes fully consumed.
    pub offset: u64,
}

/// What one tailer step writes; see [`Store::commit_collected`].
#[derive(Debug, Clone, Default)]
pub struct CollectedBatch {
    pub instance: String,
    pub records: Vec<QueryRecord>,
    pub positions: Vec<LogFilePosition>,
    /// Files no longer in the log directory.
    pub forgotten: Vec<String>,
}

impl CollectedBatch {
    /// Per session, the latest end time among the finished records (plus a millisecond, as
    /// start times are kept in milliseconds): running records that started by then are settled.
    pub fn settled_sessions(&self) -> Vec<(String, DateTime<Utc>)> {
        let mut ends: std::collections::BTreeMap<&str, DateTime<Utc>> = Default::default();
        for r in &self.records {
            if r.status != gpdiag_core::QueryStatus::Finished {
                continue;
            }
            let end = r.start_time
                + Duration::microseconds(r.duration_us.unwrap_or(r.duration_ms * 1000))
                + Duration::milliseconds(1);
            let slot = ends.entry(&r.session_id).or_insert(end);
            *slot = (*slot).max(end);
        }
        ends.into_iter().map(|(s, t)| (s.to_owned(), t)).collect()
    }
}

/// What [`Store::running_progress`] reads: the tasks generation and, at that generation, the
/// rows written so far by every running task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunningProgress {
    pub generation: i64,
    /// `(task ID, rows_done)` of every running task, by ascending ID.
    pub tasks: Vec<(i64, u64)>,
}

/// Who fetched which export file, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadAudit {
    pub task_id: i64,
    pub account: String,
    pub instance: String,
    pub file_name: String,
    /// The client's address as the server saw it.
    pub client: String,
    pub user_agent: String,
    /// The `Range` header, empty for a whole-file fetch.
    pub range: String,
    pub at: DateTime<Utc>,
}

/// `limit` records after skipping `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPage {
    pub total: u64,
    pub records: Vec<QueryRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dimensions {
    pub databases: Vec<String>,
    pub users: Vec<String>,
}

/// Opens the store named by a `[storage] url`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url).await?));
    }
    Err(StoreError::Unsupported(
        redact_url(url),
        "expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE",
    ))
}

/// Drops any password from a URL before it goes into an error message.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://***@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[tokio::test]
    async fn unknown_schemes_are_refused_clearly() {
        let err = open("mysql://u:pw@h/db").await.err().unwrap().to_string();
        assert!(err.contains("sqlite://") && !err.contains("pw"), "{err}");
    }
}
