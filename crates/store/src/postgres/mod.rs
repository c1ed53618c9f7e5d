//! The PostgreSQL store: a deadpool pool of tokio-postgres connections, versioned migrations
//! that several gpdiag processes may run at once, accounts, keys and the instance registry.
//! Query records live in `records.rs`, download tasks and their audit log in `tasks.rs`.

mod collectors;
mod records;
mod tasks;
pub mod tls;

use crate::{
    CollectedBatch, Dimensions, DownloadAudit, LogFilePosition, Page, RecordPage, RunningProgress,
    Store, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, Pool, Runtime};
use gpdiag_core::{
    AccessKey, DownloadTask, Instance, NewTask, QueryRecord, RecordFilter, RecordOrder, Secret,
    TimeWindow,
};
use std::collections::BTreeMap;
use std::time::Duration;
use tls::{PgDsn, TlsConnector};
use tokio_postgres::error::SqlState;

/// The URL parameter that sets the pool size; tokio-postgres itself would refuse it.
const POOL_SIZE_PARAM: &str = "pool_size";

/// Any fixed number will do as long as it is the same in every gpdiag: it names the advisory
/// lock that makes concurrent migrations take turns ("gpdiag" in ASCII).
const MIGRATION_LOCK: i64 = 0x6770_6469_6167;

/// Versioned migrations; `schema_migrations` records which have run. Text that is sorted or
/// compared for equality in listings is `COLLATE "C"` so order is by bytes, as in SQLite and
/// in the reference semantics, whatever the database's default collation.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    name        text COLLATE "C" PRIMARY KEY,
    created_at  timestamptz NOT NULL
);
CREATE TABLE access_keys (
    id          text COLLATE "C" PRIMARY KEY,
    account     text COLLATE "C" NOT NULL REFERENCES accounts(name),
    secret      text NOT NULL,
    enabled     boolean NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE instances (
    id              text COLLATE "C" PRIMARY KEY,
    account         text COLLATE "C" NOT NULL REFERENCES accounts(name),
    region          text NOT NULL,
    engine_version  text NOT NULL,
    core_version    text NOT NULL,
    mode            text NOT NULL,
    status          text NOT NULL,
    description     text NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE TABLE counters (
    name   text PRIMARY KEY,
    value  bigint NOT NULL
);
INSERT INTO counters VALUES ('keys_generation', 0);
"#,
    r#"
CREATE TABLE query_records (
    instance     text COLLATE "C" NOT NULL,
    query_id     text COLLATE "C" NOT NULL,
    session_id   text NOT NULL,
    database     text COLLATE "C" NOT NULL,
    user_name    text COLLATE "C" NOT NULL,
    start_time   timestamptz NOT NULL,
    duration_ms  bigint NOT NULL,
    running      boolean NOT NULL,
    error        text,
    sql          text NOT NULL,
    plan_json    text,
    plan_text    text,
    row_count    bigint,
    source       text NOT NULL,
    PRIMARY KEY (instance, query_id)
);
-- Listings: one instance, one database, a time window.
CREATE INDEX query_records_by_database ON query_records (instance, database, start_time);
-- Dimensions within a window.
CREATE INDEX query_records_by_time ON query_records (instance, start_time);
-- Dimensions over all time, kept as records arrive so the answer never scans the records.
CREATE TABLE record_dimensions (
    instance  text COLLATE "C" NOT NULL,
    kind      text COLLATE "C" NOT NULL,
    value     text COLLATE "C" NOT NULL,
    PRIMARY KEY (instance, kind, value)
);
"#,
    // A kept list of dimensions goes stale when a record is replaced; instead, walk the indexes
    // (one probe per distinct value), which is always exact.
    r#"
DROP TABLE record_dimensions;
CREATE INDEX query_records_by_user ON query_records (instance, user_name);
"#,
    // Download tasks and who fetched their files. No foreign keys, as in SQLite: an audit line
    // may outlive its task until retention sweeps it.
    r#"
CREATE TABLE download_tasks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account         text COLLATE "C" NOT NULL,
    instance        text COLLATE "C" NOT NULL,
    task_type       text NOT NULL,
    database        text COLLATE "C",
    user_name       text COLLATE "C",
    keyword         text,
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    condition       text,
    record_order    text NOT NULL,
    lang            text NOT NULL,
    bom             boolean NOT NULL,
    gzip            boolean NOT NULL,
    file_name       text NOT NULL,
    status          text COLLATE "C" NOT NULL,
    exception_msg   text NOT NULL,
    object_key      text,
    row_count       bigint,
    byte_count      bigint,
    rows_done       bigint NOT NULL,
    attempts        integer NOT NULL,
    claimed_by      text COLLATE "C",
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz
);
-- Claiming: the oldest running task.
CREATE INDEX download_tasks_running ON download_tasks (status, id);
-- The per-account limit.
CREATE INDEX download_tasks_by_account ON download_tasks (account, status);
CREATE TABLE download_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint NOT NULL,
    account     text COLLATE "C" NOT NULL,
    instance    text COLLATE "C" NOT NULL,
    file_name   text NOT NULL,
    client      text NOT NULL,
    user_agent  text NOT NULL,
    byte_range  text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX download_audit_by_task ON download_audit (task_id, id);
INSERT INTO counters VALUES ('tasks_generation', 0);
CREATE TABLE settings (
    name   text COLLATE "C" PRIMARY KEY,
    value  text NOT NULL
);
"#,
    // Collectors: the log-derived fields of a record, each instance's collector lease and
    // health, and how far its tailer has read each log file.
    r#"
ALTER TABLE query_records ADD COLUMN pg_query_id bigint;
ALTER TABLE query_records ADD COLUMN duration_us bigint;
ALTER TABLE query_records ADD COLUMN sql_truncated boolean NOT NULL DEFAULT false;
ALTER TABLE query_records ADD COLUMN parameters text;
-- A finished statement settles its session's running records; running records are few.
CREATE INDEX query_records_running ON query_records (instance, session_id) WHERE running;
CREATE TABLE collectors (
    instance     text COLLATE "C" PRIMARY KEY,
    owner        text COLLATE "C",
    lease_until  timestamptz,
    health       text
);
CREATE TABLE collector_files (
    instance      text COLLATE "C" NOT NULL,
    file_name     text COLLATE "C" NOT NULL,
    identity      text NOT NULL,
    offset_bytes  bigint NOT NULL,
    PRIMARY KEY (instance, file_name)
);
"#,
];

/// Collations tried, in order, for the keyword's case folding. ICU's root locale lower-cases
/// like Rust's `str::to_lowercase` (full mappings, final sigma); the database default is used
/// when it agrees, e.g. a C.UTF-8 or en_US.UTF-8 database on a server built without ICU.
const KEYWORD_COLLATIONS: &[&str] = &[r#" COLLATE "und-x-icu""#, ""];

/// Text whose lower-casing tells collations apart: Latin-1, Greek final sigma, dotted I.
const CASE_PROBE: &str = "ZOË ÖL ÄPFEL ΣΑΣ İ";

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The pool's TLS, also for cancelling a statement on one of its connections.
    tls: TlsConnector,
    /// `COLLATE "..."` (or nothing) applied to both sides of the keyword test; chosen once at
    /// open from a fixed list, never from input.
    keyword_collation: &'static str,
}

impl PostgresStore {
    /// How many schema migrations this version knows.
    pub const MIGRATION_COUNT: usize = MIGRATIONS.len();

    /// Connections per process unless the URL says `pool_size=N`: enough for a busy server's
    /// concurrent listings without crowding a default `max_connections = 100`.
    pub const DEFAULT_POOL_SIZE: usize = 16;

    /// Connects to the database a `postgres://` URL names and runs pending migrations. The URL
    /// may carry `pool_size=N` besides the libpq parameters tokio-postgres understands, and
    /// `sslmode` and `sslrootcert` mean what they mean to libpq (see [`tls`]).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let (url_without_size, size) = take_pool_size(url)?;
        Self::open_with_pool_size(&url_without_size, size.unwrap_or(Self::DEFAULT_POOL_SIZE)).await
    }

    /// [`open`](Self::open) with an explicit number of pooled connections.
    pub async fn open_with_pool_size(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        // Every message names the server without credentials.
        let context = |what: &str, e: StoreError| in_context(url, what, e);
        if pool_size == 0 {
            return Err(StoreError::Unsupported(
                tls::redact(url),
                "pool_size must be at least 1",
            ));
        }
        let PgDsn {
            mut config, tls, ..
        } = PgDsn::parse(url)
            .map_err(|e| context("cannot parse", StoreError::Backend(e.to_string())))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("gpdiag");
        }
        let pool = Pool::builder(Manager::new(config, tls.clone()))
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            // A request waits for a free connection this long, then fails instead of hanging.
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| context("cannot open", StoreError::Backend(e.to_string())))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| context("cannot connect to", pool_error(e)))?;
        migrate(&mut client)
            .await
            .map_err(|e| context("cannot migrate", e))?;
        let keyword_collation = choose_keyword_collation(&client)
            .await
            .map_err(|e| context("cannot use", e))?;
        Ok(Self {
            pool,
            tls,
            keyword_collation,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// `e` with "WHAT URL: " before its message, keeping its kind; the URL's password is removed
/// from both.
fn in_context(url: &str, what: &str, e: StoreError) -> StoreError {
    let say = |message: String| {
        format!(
            "{what} {}: {}",
            tls::redact(url),
            scrub_password(url, &message)
        )
    };
    match e {
        StoreError::NotFound(m) => StoreError::NotFound(say(m)),
        StoreError::Conflict(m) => StoreError::Conflict(say(m)),
        StoreError::Unavailable(m) => StoreError::Unavailable(say(m)),
        StoreError::Backend(m) => StoreError::Backend(say(m)),
        e @ (StoreError::Unsupported(..) | StoreError::LimitReached(_)) => e,
    }
}

/// Removes `pool_size=N` from the URL's query string, which is ours, not libpq's.
fn take_pool_size(url: &str) -> Result<(String, Option<usize>), StoreError> {
    let (rest, taken) = tls::take_params(url, &[POOL_SIZE_PARAM]);
    match taken.last() {
        None => Ok((rest, None)),
        Some((_, value)) => value.parse().map(|n| (rest, Some(n))).map_err(|_| {
            StoreError::Unsupported(
                tls::redact(url),
                "pool_size must be a positive whole number",
            )
        }),
    }
}

/// Replaces the URL's passwords, raw or percent-decoded, wherever a driver message repeats
/// them.
fn scrub_password(url: &str, message: &str) -> String {
    let mut out = message.to_owned();
    for secret in tls::passwords(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// A driver or pool error as text, with its causes: tokio-postgres prints only "db error" or
/// "error connecting to server" and keeps the useful part in `source()`.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A driver error as a `StoreError`: `Unavailable` when trying again later may work (the
/// server is unreachable, restarting, out of connections, or chose this transaction as a
/// deadlock or serialization victim), `Backend` otherwise.
pub(crate) fn backend(e: tokio_postgres::Error) -> StoreError {
    if transient(&e) {
        StoreError::Unavailable(describe(&e))
    } else {
        StoreError::Backend(describe(&e))
    }
}

fn transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(state) = e.code() {
        let code = state.code();
        // 08: connection exception; 53: insufficient resources; 57P0x: shutting down or
        // starting; 40001 and 40P01: serialization failure and deadlock.
        return code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P0")
            || code == "40001"
            || code == "40P01";
    }
    // Without an SQLSTATE: the socket failed (refused, reset, timed out).
    std::error::Error::source(e).is_some_and(|cause| cause.is::<std::io::Error>())
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    let message = describe(&e);
    match e {
        // Every connection stayed busy for the whole wait.
        PoolError::Timeout(_) => StoreError::Unavailable(message),
        PoolError::Backend(cause) => match backend(cause) {
            StoreError::Unavailable(_) => StoreError::Unavailable(message),
            _ => StoreError::Backend(message),
        },
        _ => StoreError::Backend(message),
    }
}

/// Each pending migration runs in its own transaction under a transaction-scoped advisory
/// lock, so two processes starting at once take turns and the second finds the work done.
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    loop {
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     integer PRIMARY KEY,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(backend)?;
        let done: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(backend)?
            .get(0);
        let done = usize::try_from(done).unwrap_or(0);
        if done > MIGRATIONS.len() {
            return Err(StoreError::Backend(format!(
                "the database has schema version {done}, newer than this gpdiag knows ({})",
                MIGRATIONS.len()
            )));
        }
        let Some(sql) = MIGRATIONS.get(done) else {
            return tx.commit().await.map_err(backend);
        };
        tx.batch_execute(sql).await.map_err(backend)?;
        let version = i32::try_from(done + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
    }
}

/// Picks the first collation whose `lower()` agrees with Rust's on [`CASE_PROBE`], or failing
/// that the first that at least lower-cases non-ASCII letters; refuses a database that cannot
/// (an SQL_ASCII or C-locale database without ICU), since keyword search would silently differ.
async fn choose_keyword_collation(
    client: &tokio_postgres::Client,
) -> Result<&'static str, StoreError> {
    let expected = CASE_PROBE.to_lowercase();
    let mut usable = None;
    for &collation in KEYWORD_COLLATIONS {
        // The collation is one of our constants; the probe is a bind parameter.
        let Ok(row) = client
            .query_one(
                &format!("SELECT lower($1::text{collation})"),
                &[&CASE_PROBE],
            )
            .await
        else {
            continue; // e.g. a server built without ICU
        };
        let lowered: String = row.get(0);
        if lowered == expected {
            return Ok(collation);
        }
        if usable.is_none() && lowered.starts_with("zoë öl äpfel") {
            usable = Some(collation);
        }
    }
    usable.ok_or_else(|| {
        StoreError::Backend(
            "the database cannot lower-case Unicode text, which keyword search needs: \
             create it with ENCODING 'UTF8' and a UTF-8 locale such as C.UTF-8"
                .into(),
        )
    })
}

/// Timestamps are stored to the millisecond, as the API and the SQLite store keep them.
pub(crate) fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

const BUMP_KEYS_GENERATION: &str =
    "UPDATE counters SET value = value + 1 WHERE name = 'keys_generation'";

#[async_trait]
impl Store for PostgresStore {
    async fn ensure_account(&self, name: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO accounts (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &to_millis(Utc::now())],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn put_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        loop {
            let owner = tx
                .query_opt(
                    "SELECT account, secret FROM access_keys WHERE id = $1 FOR UPDATE",
                    &[&key.id],
                )
                .await
                .map_err(backend)?
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)));
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
                        "UPDATE access_keys SET secret = $2 WHERE id = $1",
                        &[&key.id, &key.secret.expose()],
                    )
                    .await
                    .map_err(backend)?;
                    break;
                }
                None => {
                    let inserted = tx
                        .execute(
                            "INSERT INTO access_keys (id, account, secret, enabled, created_at)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                            &[
                                &key.id,
                                &key.account,
                                &key.secret.expose(),
                                &key.enabled,
                                &to_millis(key.created_at),
                            ],
                        )
                        .await
                        .map_err(|e| match e.code() {
                            Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                                StoreError::NotFound(format!("account {}", key.account))
                            }
                            _ => backend(e),
                        })?;
                    if inserted == 1 {
                        break;
                    }
                    // Another process inserted the same ID since our SELECT (ON CONFLICT
                    // waited for it to commit): look again and decide as if it had been first.
                }
            }
        }
        tx.execute(BUMP_KEYS_GENERATION, &[])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE access_keys SET enabled = $2 WHERE id = $1",
                &[&id, &enabled],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("access key {id}")));
        }
        tx.execute(BUMP_KEYS_GENERATION, &[])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn list_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, account, secret, enabled, created_at FROM access_keys ORDER BY id",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(AccessKey {
                    id: r.try_get(0)?,
                    account: r.try_get(1)?,
                    secret: Secret::new(r.try_get::<_, String>(2)?),
                    enabled: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn keys_generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()
            .await?
            .query_one(
                "SELECT value FROM counters WHERE name = 'keys_generation'",
                &[],
            )
            .await
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)?)
    }

    async fn replace_instances(&self, instances: &[Instance]) -> Result<(), StoreError> {
        // One row per ID, the last given winning, as a loop of single upserts would leave it
        // (ON CONFLICT cannot touch one row twice in a statement).
        let unique: BTreeMap<&str, &Instance> =
            instances.iter().map(|i| (i.id.as_str(), i)).collect();
        let col =
            |f: fn(&Instance) -> &str| -> Vec<&str> { unique.values().map(|i| f(i)).collect() };
        let ids = col(|i| &i.id);
        let accounts = col(|i| &i.account);
        let regions = col(|i| &i.region);
        let engines = col(|i| &i.engine_version);
        let cores = col(|i| &i.core_version_text);
        let modes = col(|i| i.mode.as_str());
        let statuses = col(|i| &i.status);
        let descriptions = col(|i| &i.description);
        let created: Vec<DateTime<Utc>> =
            unique.values().map(|i| to_millis(i.created_at)).collect();

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // Replacements take turns: interleaved, each would delete what the other added.
        tx.batch_execute("LOCK TABLE instances IN EXCLUSIVE MODE")
            .await
            .map_err(backend)?;
        tx.execute(
            "INSERT INTO instances (id, account, region, engine_version, core_version, mode,
                                    status, description, created_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::timestamptz[])
             ON CONFLICT (id) DO UPDATE SET
                account = excluded.account, region = excluded.region,
                engine_version = excluded.engine_version,
                core_version = excluded.core_version, mode = excluded.mode,
                status = excluded.status, description = excluded.description",
            &[
                &ids,
                &accounts,
                &regions,
                &engines,
                &cores,
                &modes,
                &statuses,
                &descriptions,
                &created,
            ],
        )
        .await
        .map_err(backend)?;
        tx.execute("DELETE FROM instances WHERE id <> ALL($1::text[])", &[&ids])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn list_instances(&self) -> Result<Vec<Instance>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, account, region, engine_version, core_version, mode, status,
                        description, created_at
                 FROM instances ORDER BY id",
                &[],
            )
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let text = |i| r.try_get::<_, String>(i).map_err(backend);
            let id = text(0)?;
            let core = text(4)?;
            let mode = text(5)?;
            let corrupt = |e: gpdiag_core::ParseError| {
                StoreError::Backend(format!("instance {id} in the store: {e}"))
            };
            out.push(Instance {
                core_version: core.parse().map_err(corrupt)?,
                mode: mode.parse().map_err(corrupt)?,
                account: text(1)?,
                region: text(2)?,
                engine_version: text(3)?,
                core_version_text: core,
                status: text(6)?,
                description: text(7)?,
                created_at: r.try_get(8).map_err(backend)?,
                id,
            });
        }
        Ok(out)
    }

    async fn upsert_records(&self, records: Vec<QueryRecord>) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        records::upsert(&mut client, &records).await
    }

    async fn search_records(
        &self,
        filter: &RecordFilter,
        order: RecordOrder,
        page: Page,
    ) -> Result<RecordPage, StoreError> {
        let mut client = self.client().await?;
        records::search(&mut client, self.keyword_collation, filter, order, page).await
    }

    async fn get_record(
        &self,
        instance: &str,
        query_id: &str,
    ) -> Result<Option<QueryRecord>, StoreError> {
        let client = self.client().await?;
        records::get(&client, instance, query_id).await
    }

    async fn record_dimensions(
        &self,
        instance: &str,
        window: Option<TimeWindow>,
    ) -> Result<Dimensions, StoreError> {
        let client = self.client().await?;
        records::dimensions(&client, instance, window).await
    }
    fn stream_records(
        &self,
        filter: &RecordFilter,
        order: RecordOrder,
        batch: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<Vec<QueryRecord>, StoreError>> {
        records::stream(
            self.pool.clone(),
            self.tls.clone(),
            self.keyword_collation,
            filter,
            order,
            batch,
        )
    }

    async fn create_task(
        &self,
        task: &NewTask,
        max_running: u32,
    ) -> Result<DownloadTask, StoreError> {
        let mut client = self.client().await?;
        tasks::create(&mut client, task, max_running).await
    }

    async fn get_task(&self, id: i64) -> Result<Option<DownloadTask>, StoreError> {
        let client = self.client().await?;
        tasks::get(&client, id).await
    }

    async fn list_tasks(&self) -> Result<Vec<DownloadTask>, StoreError> {
        let client = self.client().await?;
        tasks::list(&client).await
    }

    async fn tasks_generation(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        tasks::generation(&client).await
    }

    async fn running_progress(&self) -> Result<RunningProgress, StoreError> {
        let client = self.client().await?;
        tasks::running_progress(&client).await
    }

    async fn claim_task(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<DownloadTask>, StoreError> {
        let mut client = self.client().await?;
        tasks::claim(&mut client, worker, now, lease).await
    }

    async fn renew_task(
        &self,
        id: i64,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        rows_done: u64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        tasks::renew(&mut client, id, worker, now, lease, rows_done).await
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
        let mut client = self.client().await?;
        tasks::finish(&mut client, id, worker, object_key, rows, bytes, now).await
    }

    async fn fail_task(
        &self,
        id: i64,
        worker: Option<&str>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        tasks::fail(&mut client, id, worker, message, now).await
    }

    async fn release_all_claims(&self) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        tasks::release_all(&mut client).await
    }

    async fn delete_tasks_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<DownloadTask>, StoreError> {
        let mut client = self.client().await?;
        tasks::delete_before(&mut client, before).await
    }

    async fn record_download(&self, entry: &DownloadAudit) -> Result<(), StoreError> {
        let client = self.client().await?;
        tasks::record_download(&client, entry).await
    }

    async fn list_downloads(&self, task_id: i64) -> Result<Vec<DownloadAudit>, StoreError> {
        let client = self.client().await?;
        tasks::list_downloads(&client, task_id).await
    }

    async fn get_or_create_setting(&self, name: &str, fresh: &str) -> Result<String, StoreError> {
        let client = self.client().await?;
        // Two statements, not one: a concurrent first insert makes ours wait for it and then
        // do nothing, and only a new statement's snapshot sees the value it committed.
        client
            .execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &fresh],
            )
            .await
            .map_err(backend)?;
        client
            .query_one("SELECT value FROM settings WHERE name = $1", &[&name])
            .await
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)
    }

    async fn claim_collector(
        &self,
        instance: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<bool, StoreError> {
        collectors::claim(&self.client().await?, instance, owner, now, lease).await
    }

    async fn release_collector(&self, instance: &str, owner: &str) -> Result<(), StoreError> {
        collectors::release(&self.client().await?, instance, owner).await
    }

    async fn collector_files(&self, instance: &str) -> Result<Vec<LogFilePosition>, StoreError> {
        collectors::files(&self.client().await?, instance).await
    }

    async fn commit_collected(&self, batch: CollectedBatch) -> Result<(), StoreError> {
        collectors::commit(&mut self.client().await?, &batch).await
    }

    async fn replace_running(
        &self,
        instance: &str,
        running: Vec<QueryRecord>,
    ) -> Result<(), StoreError> {
        collectors::replace_running(&mut self.client().await?, instance, &running).await
    }

    async fn put_collector_health(&self, instance: &str, health: &str) -> Result<(), StoreError> {
        collectors::put_health(&self.client().await?, instance, health).await
    }

    async fn collector_health(&self, instance: &str) -> Result<Option<String>, StoreError> {
        collectors::health(&self.client().await?, instance).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_is_taken_out_of_the_url() {
        let (url, size) = take_pool_size("postgres://u@h/db?pool_size=4&sslmode=disable").unwrap();
        assert_eq!(
            (url.as_str(), size),
            ("postgres://u@h/db?sslmode=disable", Some(4))
        );
        let (url, size) = take_pool_size("postgres://u@h/db?pool_size=4").unwrap();
        assert_eq!((url.as_str(), size), ("postgres://u@h/db", Some(4)));
        assert_eq!(
            take_pool_size("postgres://u@h/db").unwrap(),
            ("postgres://u@h/db".to_owned(), None)
        );
        assert!(take_pool_size("postgres://u:pw@h/db?pool_size=x").is_err());
        // A '?' in the password does not start the query string.
        assert_eq!(
            take_pool_size("postgres://u:a?b@h/db?pool_size=3").unwrap(),
            ("postgres://u:a?b@h/db".to_owned(), Some(3))
        );
    }

    #[test]
    fn passwords_are_scrubbed_raw_and_decoded() {
        let url = "postgres://u:p%40ss@h/db";
        assert_eq!(scrub_password(url, "bad p%40ss or p@ss"), "bad *** or ***");
        assert_eq!(scrub_password("postgres://u@h/db", "x"), "x");
        assert_eq!(
            scrub_password("postgres://u@h/db?password=s3cret", "bad s3cret"),
            "bad ***"
        );
    }
}
