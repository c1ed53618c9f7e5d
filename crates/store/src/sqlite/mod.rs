//! The embedded SQLite store: WAL mode, one writer connection and a few reader connections,
//! used from blocking threads.

mod collectors;
mod records;
mod tasks;

use crate::{
    CollectedBatch, Dimensions, DownloadAudit, LogFilePosition, Page, RecordPage, RunningProgress,
    Store, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gpdiag_core::{
    AccessKey, DownloadTask, Instance, NewTask, QueryRecord, RecordFilter, RecordOrder, Secret,
    TimeWindow,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Readers run concurrently with the writer and with each other under WAL.
const READERS: usize = 4;

/// Versioned migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    name        TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);
CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts(name),
    secret      TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE instances (
    id              TEXT PRIMARY KEY,
    account         TEXT NOT NULL REFERENCES accounts(name),
    region          TEXT NOT NULL,
    engine_version  TEXT NOT NULL,
    core_version    TEXT NOT NULL,
    mode            TEXT NOT NULL,
    status          TEXT NOT NULL,
    description     TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO counters VALUES ('keys_generation', 0);
"#,
    r#"
CREATE TABLE query_records (
    instance     TEXT NOT NULL,
    query_id     TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    database     TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    start_ms     INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    running      INTEGER NOT NULL,
    error        TEXT,
    sql          TEXT NOT NULL,
    plan_json    TEXT,
    plan_text    TEXT,
    row_count    INTEGER,
    source       TEXT NOT NULL,
    PRIMARY KEY (instance, query_id)
);
-- Listings: one instance, one database, a time window.
CREATE INDEX query_records_by_database ON query_records (instance, database, start_ms);
-- Dimensions within a window.
CREATE INDEX query_records_by_time ON query_records (instance, start_ms);
-- Dimensions over all time, kept as records arrive so the answer never scans the records.
CREATE TABLE record_dimensions (
    instance  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (instance, kind, value)
) WITHOUT ROWID;
"#,
    // A kept list of dimensions goes stale when a record is replaced; instead, walk the indexes
    // (one probe per distinct value), which is always exact.
    r#"
DROP TABLE record_dimensions;
CREATE INDEX query_records_by_user ON query_records (instance, user_name);
"#,
    r#"
CREATE TABLE download_tasks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account         TEXT NOT NULL,
    instance        TEXT NOT NULL,
    task_type       TEXT NOT NULL,
    database        TEXT,
    user_name       TEXT,
    keyword         TEXT,
    window_start_ms INTEGER NOT NULL,
    window_end_ms   INTEGER NOT NULL,
    condition       TEXT,
    record_order    TEXT NOT NULL,
    lang            TEXT NOT NULL,
    bom             INTEGER NOT NULL,
    gzip            INTEGER NOT NULL,
    file_name       TEXT NOT NULL,
    status          TEXT NOT NULL,
    exception_msg   TEXT NOT NULL,
    object_key      TEXT,
    row_count       INTEGER,
    byte_count      INTEGER,
    rows_done       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    claimed_by      TEXT,
    lease_until_ms  INTEGER,
    created_ms      INTEGER NOT NULL,
    finished_ms     INTEGER
);
CREATE INDEX download_tasks_running ON download_tasks (status, id);
CREATE INDEX download_tasks_by_account ON download_tasks (account, status);
CREATE TABLE download_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    INTEGER NOT NULL,
    account    TEXT NOT NULL,
    instance   TEXT NOT NULL,
    file_name  TEXT NOT NULL,
    client     TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    byte_range TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
);
CREATE INDEX download_audit_by_task ON download_audit (task_id);
INSERT INTO counters VALUES ('tasks_generation', 0);
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"#,
    // Every query now reaches records through (instance, database, start_ms), walking the
    // databases when none is named; one index fewer is a fifth less work per inserted record.
    r#"
DROP INDEX query_records_by_time;
"#,
    // Collectors: the log-derived fields of a record, each instance's collector lease and
    // health, and how far its tailer has read each log file.
    r#"
ALTER TABLE query_records ADD COLUMN pg_query_id INTEGER;
ALTER TABLE query_records ADD COLUMN duration_us INTEGER;
ALTER TABLE query_records ADD COLUMN sql_truncated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE query_records ADD COLUMN parameters TEXT;
-- A finished statement settles its session's running records; running records are few.
CREATE INDEX query_records_running ON query_records (instance, session_id) WHERE running = 1;
CREATE TABLE collectors (
    instance        TEXT PRIMARY KEY,
    owner           TEXT,
    lease_until_ms  INTEGER,
    health          TEXT
);
CREATE TABLE collector_files (
    instance      TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    identity      TEXT NOT NULL,
    offset_bytes  INTEGER NOT NULL,
    PRIMARY KEY (instance, file_name)
);
"#,
];

#[derive(Clone)]
pub struct SqliteStore {
    path: Arc<str>,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let path_for_streams = path.clone();
        let (writer, readers) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Backend(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut writer = connect(&path)?;
            migrate(&mut writer)?;
            let readers = (0..READERS)
                .map(|_| connect(&path).map(Mutex::new))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((writer, readers))
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))??;
        Ok(Self {
            path: path_for_streams.into(),
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs `f` on the writer connection.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// Runs `f` on one of the reader connections, round robin.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let guard = readers[i].lock().unwrap_or_else(|e| e.into_inner());
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

fn connect(path: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    // Only takes effect on a new, empty database (before WAL mode writes its header): 8 KiB
    // pages mean fewer pages, splits and WAL frames per bulk-inserted batch of records.
    conn.pragma_update(None, "page_size", 8192)
        .map_err(backend)?;
    // WAL lets readers, the writer and the `gpdiag keys` command work at once; the busy timeout
    // makes writers wait for each other instead of failing.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    // Checkpoint every 16384 pages (128 MiB of WAL) rather than every 1000: bulk imports
    // rewrite the same hot index pages batch after batch, and each checkpoint copies them into
    // the database file once and fsyncs; durability is unchanged (WAL, synchronous=NORMAL).
    conn.pragma_update(None, "wal_autocheckpoint", 16384)
        .map_err(backend)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(backend)?;
    conn.pragma_update(None, "cache_size", -65536)
        .map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    records::register_functions(&conn)?;
    Ok(conn)
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        // Another process held the database past the busy timeout.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let done: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend)?;
    let done = usize::try_from(done).unwrap_or(0);
    if done > MIGRATIONS.len() {
        return Err(StoreError::Backend(format!(
            "the database has schema version {done}, newer than this gpdiag knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn bump_keys_generation(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'keys_generation'",
        [],
    )
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_account(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.execute(
                "INSERT INTO accounts (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![name, millis(Utc::now())],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn put_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let owner: Option<(String, String)> = tx
                .query_row(
                    "SELECT account, secret FROM access_keys WHERE id = ?1",
                    [&key.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            match owner {
                Some((account, _)) if account != key.account => {
                    return Err(StoreError::Conflict(format!(
                        "access key {} belongs to another account",
                        key.id
                    )))
                }
                Some((_, secret)) if secret == key.secret.expose() => return Ok(()),
                Some(_) => {
                    tx.execute(
                        "UPDATE access_keys SET secret = ?2 WHERE id = ?1",
                        params![key.id, key.secret.expose()],
                    )
                    .map_err(backend)?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO access_keys (id, account, secret, enabled, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            key.id,
                            key.account,
                            key.secret.expose(),
                            key.enabled,
                            millis(key.created_at)
                        ],
                    )
                    .map_err(|e| match e {
                        rusqlite::Error::SqliteFailure(f, _)
                            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                        {
                            StoreError::NotFound(format!("account {}", key.account))
                        }
                        e => backend(e),
                    })?;
                }
            }
            bump_keys_generation(&tx)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let n = tx
                .execute(
                    "UPDATE access_keys SET enabled = ?2 WHERE id = ?1",
                    params![id, enabled],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("access key {id}")));
            }
            bump_keys_generation(&tx)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, account, secret, enabled, created_at FROM access_keys ORDER BY id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(AccessKey {
                        id: r.get(0)?,
                        account: r.get(1)?,
                        secret: Secret::new(r.get::<_, String>(2)?),
                        enabled: r.get(3)?,
                        created_at: from_millis(r.get(4)?),
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
        .await
    }

    async fn keys_generation(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM counters WHERE name = 'keys_generation'",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn replace_instances(&self, instances: &[Instance]) -> Result<(), StoreError> {
        let instances = instances.to_vec();
        self.with(move |c| {
            let tx = c.transaction().map_err(backend)?;
            tx.execute(
                "CREATE TEMP TABLE IF NOT EXISTS keep (id TEXT PRIMARY KEY)",
                [],
            )
            .map_err(backend)?;
            tx.execute("DELETE FROM keep", []).map_err(backend)?;
            for i in &instances {
                tx.execute(
                    "INSERT INTO instances (id, account, region, engine_version, core_version,
                                            mode, status, description, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (id) DO UPDATE SET
                        account = excluded.account, region = excluded.region,
                        engine_version = excluded.engine_version,
                        core_version = excluded.core_version, mode = excluded.mode,
                        status = excluded.status, description = excluded.description",
                    params![
                        i.id,
                        i.account,
                        i.region,
                        i.engine_version,
                        i.core_version_text,
                        i.mode.as_str(),
                        i.status,
                        i.description,
                        millis(i.created_at)
                    ],
                )
                .map_err(backend)?;
                tx.execute("INSERT OR IGNORE INTO keep (id) VALUES (?1)", [&i.id])
                    .map_err(backend)?;
            }
            tx.execute(
                "DELETE FROM instances WHERE id NOT IN (SELECT id FROM keep)",
                [],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, account, region, engine_version, core_version, mode, status,
                            description, created_at
                     FROM instances ORDER BY id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, account, region, engine_version, core, mode, status, description, at) =
                    row.map_err(backend)?;
                let corrupt = |e: gpdiag_core::ParseError| {
                    StoreError::Backend(format!("instance {id} in the store: {e}"))
                };
                out.push(Instance {
                    core_version: core.parse().map_err(corrupt)?,
                    mode: mode.parse().map_err(corrupt)?,
                    id,
                    account,
                    region,
                    engine_version,
                    core_version_text: core,
                    status,
                    description,
                    created_at: from_millis(at),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn upsert_records(&self, records: Vec<QueryRecord>) -> Result<u64, StoreError> {
        self.with(move |c| records::upsert(c, &records)).await
    }

    async fn search_records(
        &self,
        filter: &RecordFilter,
        order: RecordOrder,
        page: Page,
    ) -> Result<RecordPage, StoreError> {
        let filter = filter.clone();
        self.read(move |c| records::search(c, &filter, order, page))
            .await
    }

    async fn get_record(
        &self,
        instance: &str,
        query_id: &str,
    ) -> Result<Option<QueryRecord>, StoreError> {
        let (instance, query_id) = (instance.to_owned(), query_id.to_owned());
        self.read(move |c| records::get(c, &instance, &query_id))
            .await
    }

    async fn record_dimensions(
        &self,
        instance: &str,
        window: Option<TimeWindow>,
    ) -> Result<Dimensions, StoreError> {
        let instance = instance.to_owned();
        self.read(move |c| records::dimensions(c, &instance, window))
            .await
    }

    fn stream_records(
        &self,
        filter: &RecordFilter,
        order: RecordOrder,
        batch: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<QueryRecord>, StoreError>> {
        records::stream(self.path.clone(), filter.clone(), order, batch)
    }

    async fn create_task(
        &self,
        task: &NewTask,
        max_running: u32,
    ) -> Result<DownloadTask, StoreError> {
        let task = task.clone();
        self.with(move |c| tasks::create(c, &task, max_running))
            .await
    }

    async fn get_task(&self, id: i64) -> Result<Option<DownloadTask>, StoreError> {
        self.read(move |c| tasks::get(c, id)).await
    }

    async fn list_tasks(&self) -> Result<Vec<DownloadTask>, StoreError> {
        self.read(tasks::list).await
    }

    async fn tasks_generation(&self) -> Result<i64, StoreError> {
        self.read(|c| counter(c, "tasks_generation")).await
    }

    async fn running_progress(&self) -> Result<RunningProgress, StoreError> {
        self.read(tasks::running_progress).await
    }

    async fn claim_task(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<DownloadTask>, StoreError> {
        let worker = worker.to_owned();
        self.with(move |c| tasks::claim(c, &worker, now, lease))
            .await
    }

    async fn renew_task(
        &self,
        id: i64,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        rows_done: u64,
    ) -> Result<bool, StoreError> {
        let worker = worker.to_owned();
        self.with(move |c| tasks::renew(c, id, &worker, now, lease, rows_done))
            .await
    }

    async fn finish_task(
        &self,
        id: i64,
        worker: &str,
        object_key: &str,
        rows: u64,
        bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (worker, object_key) = (worker.to_owned(), object_key.to_owned());
        self.with(move |c| tasks::finish(c, id, &worker, &object_key, rows, bytes, now))
            .await
    }

    async fn fail_task(
        &self,
        id: i64,
        worker: Option<&str>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (worker, message) = (worker.map(str::to_owned), message.to_owned());
        self.with(move |c| tasks::fail(c, id, worker.as_deref(), &message, now))
            .await
    }

    async fn release_all_claims(&self) -> Result<u64, StoreError> {
        self.with(tasks::release_all).await
    }

    async fn delete_tasks_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<DownloadTask>, StoreError> {
        self.with(move |c| tasks::delete_before(c, before)).await
    }

    async fn record_download(&self, entry: &DownloadAudit) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.with(move |c| tasks::record_download(c, &entry)).await
    }

    async fn get_or_create_setting(&self, name: &str, fresh: &str) -> Result<String, StoreError> {
        let (name, fresh) = (name.to_owned(), fresh.to_owned());
        self.with(move |c| get_or_create_setting(c, &name, &fresh))
            .await
    }

    async fn list_downloads(&self, task_id: i64) -> Result<Vec<DownloadAudit>, StoreError> {
        self.read(move |c| tasks::list_downloads(c, task_id)).await
    }

    async fn claim_collector(
        &self,
        instance: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let (instance, owner) = (instance.to_owned(), owner.to_owned());
        self.with(move |c| collectors::claim(c, &instance, &owner, now, lease))
            .await
    }

    async fn release_collector(&self, instance: &str, owner: &str) -> Result<(), StoreError> {
        let (instance, owner) = (instance.to_owned(), owner.to_owned());
        self.with(move |c| collectors::release(c, &instance, &owner))
            .await
    }

    async fn collector_files(&self, instance: &str) -> Result<Vec<LogFilePosition>, StoreError> {
        let instance = instance.to_owned();
        self.read(move |c| collectors::files(c, &instance)).await
    }

    async fn commit_collected(&self, batch: CollectedBatch) -> Result<(), StoreError> {
        self.with(move |c| collectors::commit(c, &batch)).await
    }

    async fn replace_running(
        &self,
        instance: &str,
        running: Vec<QueryRecord>,
    ) -> Result<(), StoreError> {
        let instance = instance.to_owned();
        self.with(move |c| collectors::replace_running(c, &instance, &running))
            .await
    }

    async fn put_collector_health(&self, instance: &str, health: &str) -> Result<(), StoreError> {
        let (instance, health) = (instance.to_owned(), health.to_owned());
        self.with(move |c| collectors::put_health(c, &instance, &health))
            .await
    }

    async fn collector_health(&self, instance: &str) -> Result<Option<String>, StoreError> {
        let instance = instance.to_owned();
        self.read(move |c| collectors::health(c, &instance)).await
    }
}

pub(crate) fn get_or_create_setting(
    c: &mut Connection,
    name: &str,
    fresh: &str,
) -> Result<String, StoreError> {
    c.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![name, fresh],
    )
    .map_err(backend)?;
    c.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(backend)
}

/// Reads a named counter.
pub(crate) fn counter(c: &Connection, name: &str) -> Result<i64, StoreError> {
    c.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .map_err(backend)
}
