//! The PostgreSQL store against the conformance suite on a real server, plus what is specific
//! to a server: concurrent migrations, reopening, bulk imports, collations, redacted URLs.
//!
//! The server is `GPDIAG_TEST_PG_URL` when set (scripts/test starts one cluster for the whole
//! run); otherwise this binary starts a private cluster with scripts/pg-cluster and stops it at
//! the end. Never skipped: without a server the tests fail.

mod conformance;

use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_store::{Page, PostgresStore, Store, StoreError};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use tokio_postgres::NoTls;

/// A PostgreSQL server for this test: the one `GPDIAG_TEST_PG_URL` names, or a private
/// cluster that is stopped (and its directory removed) when this is dropped, even on panic.
struct Server {
    url: String,
    cluster: Option<tempfile::TempDir>,
}

impl Server {
    fn get() -> Server {
        if let Ok(url) = std::env::var("GPDIAG_TEST_PG_URL") {
            assert!(!url.is_empty(), "GPDIAG_TEST_PG_URL is set but empty");
            return Server { url, cluster: None };
        }
        let dir = tempfile::Builder::new()
            .prefix("gpdiag-pg-")
            .tempdir()
            .expect("cannot create a directory for the test cluster");
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Keep the directory (and stop a half-started server) whatever happens next.
        let server = Server {
            url: stdout.lines().last().unwrap_or_default().trim().to_owned(),
            cluster: Some(dir),
        };
        assert!(
            out.status.success() && server.url.starts_with("postgres://"),
            "no PostgreSQL server for the tests: set GPDIAG_TEST_PG_URL, or make \
             scripts/pg-cluster work ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        server
    }

    /// A URL for database `name` on this server.
    fn url_for(&self, name: &str) -> String {
        let (base, query) = match self.url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (self.url.as_str(), String::new()),
        };
        let host_start = base.find("://").expect("a URL") + 3;
        let host_end = base[host_start..]
            .find('/')
            .map_or(base.len(), |i| host_start + i);
        format!("{}/{name}{query}", &base[..host_end])
    }

    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e:?}"));
        tokio::spawn(connection);
        client
    }

    /// Creates a fresh UTF-8 database and returns its name. `locale` picks its LC_COLLATE and
    /// LC_CTYPE; template0 because template1 may have another locale.
    async fn create_database(&self, locale: &str) -> String {
        let name = format!("gpdiag_test_{}", uuid::Uuid::new_v4().simple());
        // Names and locales here are ours, not input; CREATE DATABASE takes no parameters.
        self.admin()
            .await
            .batch_execute(&format!(
                "CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE '{locale}' \
                 LC_CTYPE '{locale}' TEMPLATE template0"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e:?}"));
        name
    }

    async fn drop_database(&self, name: &str) {
        // FORCE ends the pools' connections, which close asynchronously.
        self.admin()
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap_or_else(|e| panic!("cannot drop database {name}: {e:?}"));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.cluster {
            let out = Command::new(script()).arg("stop").arg(dir.path()).output();
            match out {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "stopping the test cluster failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("cannot run {}: {e}", script().display()),
            }
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster")
}

/// Everything that needs a server runs in this one test, so one private cluster serves it and
/// is reliably stopped at its end (the test harness has no after-all hook).
#[tokio::test]
async fn postgres_passes_the_conformance_suite_and_its_own_checks() {
    let server = Server::get();

    let db = server.create_database("C.UTF-8").await;
    let check: String = tokio_postgres::connect(&server.url_for(&db), NoTls)
        .await
        .map(|(client, connection)| {
            tokio::spawn(connection);
            client
        })
        .unwrap()
        .query_one("SELECT lower('ZOË ÖL')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(check, "zoë öl", "the test database must lower-case Unicode");
    let store = PostgresStore::open(&server.url_for(&db)).await.unwrap();
    conformance::run_all(&store).await;
    drop(store);
    server.drop_database(&db).await;

    concurrent_opens_migrate_once(&server).await;
    state_survives_reopening(&server).await;
    bulk_upserts_keep_the_last_record_per_key(&server).await;
    keyword_search_needs_no_unicode_locale(&server).await;
    a_failed_batch_writes_nothing(&server).await;
    errors_from_a_real_server_hide_the_password(&server).await;
}

async fn concurrent_opens_migrate_once(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let url = server.url_for(&db);
    let opens = (0..4).map(|_| {
        let url = url.clone();
        async move { PostgresStore::open(&url).await }
    });
    for (i, result) in futures_join_all(opens).await.into_iter().enumerate() {
        if let Err(e) = result {
            panic!("concurrent open {i} failed: {e}");
        }
    }
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i32> = (1..=gpdiag_store::PostgresStore::MIGRATION_COUNT as i32).collect();
    assert_eq!(versions, expected, "each migration runs exactly once");
    drop(client);
    server.drop_database(&db).await;
}

/// `join_all` without a futures dependency: spawn each open and await them all.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn state_survives_reopening(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let url = server.url_for(&db);
    let record = conformance_record("gp-reopen", "r1");
    let generation = {
        let store = PostgresStore::open(&url).await.unwrap();
        store.ensure_account("alice").await.unwrap();
        store
            .put_key(&gpdiag_core::AccessKey {
                id: "KREOPEN".into(),
                account: "alice".into(),
                secret: gpdiag_core::Secret::new("s"),
                enabled: true,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        store
            .upsert_records(std::slice::from_ref(&record))
            .await
            .unwrap();
        store.keys_generation().await.unwrap()
    };
    // Through the URL dispatcher this time, with an explicit pool size.
    let store = gpdiag_store::open(&format!("{url}?pool_size=2"))
        .await
        .unwrap();
    let keys = store.list_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        ["KREOPEN"]
    );
    assert_eq!(store.keys_generation().await.unwrap(), generation);
    assert_eq!(
        store.get_record("gp-reopen", "r1").await.unwrap(),
        Some(record)
    );
    drop(store);
    server.drop_database(&db).await;
}

fn conformance_record(instance: &str, query_id: &str) -> QueryRecord {
    QueryRecord {
        instance: instance.into(),
        query_id: query_id.into(),
        session_id: "s".into(),
        database: "db0".into(),
        user: "u0".into(),
        start_time: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        duration_ms: 1,
        status: QueryStatus::Finished,
        error: None,
        sql: "select 1".into(),
        plan_json: None,
        plan_text: None,
        rows: None,
        source: "test".into(),
    }
}

/// A batch larger than the store's staging chunk, with keys repeated across chunk boundaries:
/// the last record given for a key wins, as with record-by-record upserts.
async fn bulk_upserts_keep_the_last_record_per_key(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let store = PostgresStore::open(&server.url_for(&db)).await.unwrap();
    let n: usize = std::env::var("GPDIAG_TEST_PG_BULK_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let make = |i: usize, version: i64| {
        let mut r = conformance_record("gp-bulk", &format!("q{:08}", (i * 7919) % n));
        r.start_time = base + Duration::milliseconds((i % 3_600_000) as i64);
        r.duration_ms = version;
        r.database = format!("db{}", i % 3);
        r.user = format!("user{}", i % 5);
        r.sql = format!("select * from t{i} where note = 'bulk'");
        r
    };
    let mut batch: Vec<QueryRecord> = (0..n).map(|i| make(i, 1)).collect();
    // The first thousand keys again, later in the batch, with a new version.
    batch.extend((0..1000).map(|i| make(i, 2)));
    // Twice: inserting new keys, then re-importing the same batch, which must only replace.
    for keys in ["new", "existing"] {
        let started = Instant::now();
        assert_eq!(
            store.upsert_records(&batch).await.unwrap(),
            batch.len() as u64
        );
        let elapsed = started.elapsed();
        eprintln!(
            "bulk upsert of {keys} keys: {} records in {elapsed:.2?} ({:.0} records/s)",
            batch.len(),
            batch.len() as f64 / elapsed.as_secs_f64()
        );
    }
    for i in [0, 999, 1000, n - 1] {
        let r = &batch[i];
        let stored = store
            .get_record("gp-bulk", &r.query_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.duration_ms, if i < 1000 { 2 } else { 1 }, "{i}");
    }
    let mut total = 0;
    for database in ["db0", "db1", "db2"] {
        total += store
            .search_records(
                &RecordFilter {
                    instance: "gp-bulk".into(),
                    database: Some(database.into()),
                    window: TimeWindow::new(base, base + Duration::hours(2)).unwrap(),
                    user: None,
                    keyword: Some("BULK".into()),
                    condition: None,
                },
                RecordOrder::default(),
                Page {
                    offset: 0,
                    limit: 1,
                },
            )
            .await
            .unwrap()
            .total;
    }
    assert_eq!(total, n as u64, "one record per distinct key");
    let dims = store.record_dimensions("gp-bulk", None).await.unwrap();
    assert_eq!(dims.databases, ["db0", "db1", "db2"]);
    assert_eq!(dims.users.len(), 5);
    drop(store);
    server.drop_database(&db).await;
}

/// A batch the server refuses halfway through its COPY (PostgreSQL text cannot hold NUL) is
/// rolled back whole, and the connection it used goes on working.
async fn a_failed_batch_writes_nothing(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    // One connection, so the next calls reuse the one that failed.
    let store = PostgresStore::open_with_pool_size(&server.url_for(&db), 1)
        .await
        .unwrap();
    let mut batch: Vec<_> = (0..100)
        .map(|i| conformance_record("gp-fail", &format!("f{i:03}")))
        .collect();
    batch[99].sql = "select '\0'".into();
    let err = store.upsert_records(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.get_record("gp-fail", "f000").await.unwrap(), None);
    batch[99].sql = "select 1".into();
    assert_eq!(store.upsert_records(&batch).await.unwrap(), 100);
    assert!(store.get_record("gp-fail", "f099").await.unwrap().is_some());
    drop(store);
    server.drop_database(&db).await;
}

/// In a database whose own `lower()` is ASCII-only (locale C), keyword search still folds
/// Unicode case, through the ICU collation the store picks at open.
async fn keyword_search_needs_no_unicode_locale(server: &Server) {
    let db = server.create_database("C").await;
    let store = PostgresStore::open(&server.url_for(&db)).await.unwrap();
    let mut r = conformance_record("gp-c", "c1");
    r.sql = "UPDATE \"Users\" SET name = 'ZOË'".into();
    store.upsert_records(&[r]).await.unwrap();
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let found = store
        .search_records(
            &RecordFilter {
                instance: "gp-c".into(),
                database: Some("db0".into()),
                window: TimeWindow::new(base, base + Duration::hours(1)).unwrap(),
                user: None,
                keyword: Some("zoë".into()),
                condition: None,
            },
            RecordOrder::default(),
            Page {
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(found.total, 1);
    drop(store);
    server.drop_database(&db).await;
}

async fn errors_from_a_real_server_hide_the_password(server: &Server) {
    // The server's user, with a password: trust authentication ignores it, and the missing
    // database fails the connection after the password was sent.
    let url = server.url_for("gpdiag_no_such_database");
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = match rest.split_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap(), host),
        None => ("gpdiag", rest),
    };
    let url = format!("{scheme}://{user}:hunter2-secret@{host}");
    let err = PostgresStore::open(&url)
        .await
        .err()
        .expect("no such database");
    let message = err.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("gpdiag_no_such_database"), "{message}");
}

/// Refused connections, unparsable URLs and bad options: the message names the server but
/// never the password, raw or percent-encoded.
#[tokio::test]
async fn errors_for_wrong_urls_hide_the_password() {
    for url in [
        "postgres://gpdiag:hunter2-secret@127.0.0.1:1/db",
        "postgresql://gpdiag:hunter2%2Dsecret@127.0.0.1:1/db",
        "postgres://gpdiag:hunter2-secret@127.0.0.1:1/db?nonsense=1",
        "postgres://gpdiag:hunter2-secret@127.0.0.1:notaport/db",
        "postgres://gpdiag:hunter2-secret@127.0.0.1:1/db?pool_size=lots",
    ] {
        let err = gpdiag_store::open(url).await.err().expect(url).to_string();
        assert!(!err.contains("hunter2"), "{url}: {err}");
        assert!(err.contains("127.0.0.1"), "{url}: {err}");
        let err = PostgresStore::open(url).await.err().expect(url).to_string();
        assert!(!err.contains("hunter2"), "{url}: {err}");
    }
    // Nobody listens there: worth trying again later, unlike a bad URL.
    assert!(matches!(
        PostgresStore::open("postgres://gpdiag@127.0.0.1:1/db").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        PostgresStore::open("postgres://gpdiag@127.0.0.1:1/db?nonsense=1").await,
        Err(StoreError::Backend(_))
    ));
}
