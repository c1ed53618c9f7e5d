//! The PostgreSQL store against the conformance suite on a real server, plus what is specific
//! to a server: concurrent migrations, reopening, bulk imports, collations, redacted URLs.
//!
//! The server is `GPDIAG_TEST_PG_URL` when set (scripts/test starts one cluster for the whole
//! run); otherwise this binary starts a private cluster with scripts/pg-cluster and stops it at
//! the end. Never skipped: without a server the tests fail.

mod conformance;

use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{
    DownloadTaskType, ExportSpec, FileOptions, NewTask, QueryRecord, QueryStatus, RecordFilter,
    RecordOrder, TaskStatus, TimeWindow,
};
use gpdiag_store::{Page, PostgresStore, Store, StoreError};
use gpdiag_testkit::PgServer;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Barrier;
use tokio_postgres::NoTls;

/// The test server (gpdiag_testkit::PgServer) and the databases the checks create on it.
struct Server(PgServer);

impl Server {
    fn get() -> Server {
        Server(PgServer::get())
    }

    fn url_for(&self, name: &str) -> String {
        self.0.url_for(name)
    }

    /// Creates a fresh UTF-8 database and returns its name. `locale` picks its LC_COLLATE and
    /// LC_CTYPE; template0 because template1 may have another locale.
    async fn create_database(&self, locale: &str) -> String {
        let name = format!("gpdiag_test_{}", uuid::Uuid::new_v4().simple());
        // Names and locales here are ours, not input; CREATE DATABASE takes no parameters.
        self.0
            .execute(&format!(
                "CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE '{locale}' \
                 LC_CTYPE '{locale}' TEMPLATE template0"
            ))
            .await;
        name
    }

    async fn drop_database(&self, name: &str) {
        // FORCE ends the pools' connections, which close asynchronously.
        self.0
            .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
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
    concurrent_claims_hand_each_task_to_one_worker(&server).await;
    concurrent_creates_respect_the_running_limit(&server).await;
    streams_hold_one_snapshot_and_give_their_connection_back(&server).await;
    a_dropped_stream_stops_its_statement_at_once(&server).await;
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
        store.upsert_records(vec![record.clone()]).await.unwrap();
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
        ..Default::default()
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
            store.upsert_records(batch.clone()).await.unwrap(),
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
    let err = store.upsert_records(batch.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert_eq!(store.get_record("gp-fail", "f000").await.unwrap(), None);
    batch[99].sql = "select 1".into();
    assert_eq!(store.upsert_records(batch.clone()).await.unwrap(), 100);
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
    store.upsert_records(vec![r]).await.unwrap();
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

/// `n` stores on one database, each with its own pool: as many gpdiag processes would be.
async fn processes(url: &str, n: usize) -> Vec<Arc<PostgresStore>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(
            PostgresStore::open_with_pool_size(url, 2).await.unwrap(),
        ));
    }
    out
}

fn export_task(account: &str) -> NewTask {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    NewTask {
        account: account.into(),
        instance: "gp-race".into(),
        task_type: DownloadTaskType::SqlDiagnose,
        spec: ExportSpec {
            filter: RecordFilter {
                instance: "gp-race".into(),
                database: None,
                window: TimeWindow::new(start, start + Duration::hours(1)).unwrap(),
                user: None,
                keyword: None,
                condition: None,
            },
            order: RecordOrder::default(),
            file: FileOptions::default(),
        },
        created_at: Utc::now(),
    }
}

/// Eight workers in eight processes claim at the same instant with four tasks waiting: each
/// task goes to exactly one of them, and each winner holds the lease it was given.
async fn concurrent_claims_hand_each_task_to_one_worker(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let stores = processes(&server.url_for(&db), 8).await;
    let lease = Duration::seconds(60);
    for round in 0..10 {
        let mut created = BTreeSet::new();
        for _ in 0..4 {
            created.insert(
                stores[0]
                    .create_task(&export_task("acct-claims"), 100)
                    .await
                    .unwrap()
                    .id,
            );
        }
        let barrier = Arc::new(Barrier::new(stores.len()));
        let claims: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
                tokio::spawn(async move {
                    let worker = format!("w{round}-{i}");
                    barrier.wait().await;
                    let task = store.claim_task(&worker, Utc::now(), lease).await.unwrap();
                    (worker, task)
                })
            })
            .collect();
        let mut won = Vec::new();
        for claim in claims {
            if let (worker, Some(task)) = claim.await.unwrap() {
                assert_eq!(task.attempts, 1, "round {round}: {task:?}");
                won.push((worker, task.id));
            }
        }
        let ids: BTreeSet<i64> = won.iter().map(|(_, id)| *id).collect();
        assert_eq!(won.len(), 4, "round {round}: {won:?}");
        assert_eq!(ids, created, "round {round}: each task exactly once");
        // Each task is held by its winner and nobody else.
        for (i, (worker, id)) in won.iter().enumerate() {
            let other = &won[(i + 1) % won.len()].0;
            let now = Utc::now();
            assert!(!stores[i]
                .renew_task(*id, other, now, lease, 1)
                .await
                .unwrap());
            assert!(stores[i]
                .renew_task(*id, worker, now, lease, 1)
                .await
                .unwrap());
            assert!(stores[i]
                .fail_task(*id, Some(worker), "done", now)
                .await
                .unwrap());
        }
        assert_eq!(
            stores[0]
                .claim_task("late", Utc::now(), lease)
                .await
                .unwrap(),
            None
        );
    }
    drop(stores);
    server.drop_database(&db).await;
}

/// Twenty creations for one account at once, from four processes, under a limit of five:
/// exactly five are accepted, whatever the interleaving. The account has no row in `accounts`.
async fn concurrent_creates_respect_the_running_limit(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let stores = processes(&server.url_for(&db), 4).await;
    for round in 0..3 {
        let account = format!("acct-race-{round}");
        let barrier = Arc::new(Barrier::new(20));
        let creates: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(&stores[i % stores.len()]);
                let (barrier, task) = (Arc::clone(&barrier), export_task(&account));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.create_task(&task, 5).await
                })
            })
            .collect();
        let (mut accepted, mut refused) = (0, 0);
        for create in creates {
            match create.await.unwrap() {
                Ok(_) => accepted += 1,
                Err(StoreError::LimitReached(_)) => refused += 1,
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        assert_eq!((accepted, refused), (5, 15), "round {round}");
        let running = stores[1]
            .list_tasks()
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.account == account && t.status == TaskStatus::Running)
            .count();
        assert_eq!(running, 5, "round {round}");
    }
    drop(stores);
    server.drop_database(&db).await;
}

fn stream_filter(instance: &str) -> RecordFilter {
    let base = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    RecordFilter {
        instance: instance.into(),
        database: None,
        window: TimeWindow::new(base, base + Duration::hours(1)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    }
}

fn stream_records(instance: &str, from: usize, to: usize) -> Vec<QueryRecord> {
    (from..to)
        .map(|i| {
            let mut r = conformance_record(instance, &format!("q{i:06}"));
            r.start_time += Duration::milliseconds(i as i64);
            r
        })
        .collect()
}

/// A stream reads one snapshot (records written meanwhile are not in it), and its connection
/// goes back to the pool when it ends or its reader leaves: with a pool of one, the next call
/// would otherwise wait forever.
async fn streams_hold_one_snapshot_and_give_their_connection_back(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let url = server.url_for(&db);
    let single = PostgresStore::open_with_pool_size(&url, 1).await.unwrap();
    let writer = PostgresStore::open(&url).await.unwrap();
    writer
        .upsert_records(stream_records("gp-snap", 0, 1_000))
        .await
        .unwrap();
    let soon = std::time::Duration::from_secs(10);

    let mut rx = single.stream_records(&stream_filter("gp-snap"), RecordOrder::default(), 10);
    let mut seen = rx.recv().await.unwrap().unwrap();
    writer
        .upsert_records(stream_records("gp-snap", 1_000, 1_500))
        .await
        .unwrap();
    while let Some(batch) = rx.recv().await {
        seen.extend(batch.unwrap());
    }
    assert_eq!(
        seen.len(),
        1_000,
        "the stream's snapshot predates the second import"
    );
    let last = tokio::time::timeout(soon, single.get_record("gp-snap", "q001499"))
        .await
        .expect("the finished stream kept its connection");
    assert!(last.unwrap().is_some());

    // A reader that leaves after one batch, and one that leaves before the first.
    for wait_for_one in [true, false] {
        let mut rx = single.stream_records(&stream_filter("gp-snap"), RecordOrder::default(), 7);
        if wait_for_one {
            assert_eq!(rx.recv().await.unwrap().unwrap().len(), 7);
        }
        drop(rx);
        let found = tokio::time::timeout(soon, single.get_record("gp-snap", "q000001"))
            .await
            .expect("an abandoned stream kept its connection");
        assert!(found.unwrap().is_some());
    }
    drop((single, writer));
    server.drop_database(&db).await;
}

/// A reader that leaves while the server works on a batch (here: waits for a lock another
/// session holds) stops that statement at once instead of leaving it to finish unseen.
async fn a_dropped_stream_stops_its_statement_at_once(server: &Server) {
    let db = server.create_database("C.UTF-8").await;
    let url = server.url_for(&db);
    let store = PostgresStore::open_with_pool_size(&url, 1).await.unwrap();
    store
        .upsert_records(stream_records("gp-stuck", 0, 10))
        .await
        .unwrap();
    let (mut admin, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let blocker = admin.transaction().await.unwrap();
    blocker
        .batch_execute("LOCK TABLE query_records IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let rx = store.stream_records(&stream_filter("gp-stuck"), RecordOrder::default(), 5);
    let started = Instant::now();
    loop {
        let n: i64 = blocker.query_one(waiting, &[]).await.unwrap().get(0);
        if n == 1 {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "the stream never reached the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(rx);
    let started = Instant::now();
    loop {
        let n: i64 = blocker.query_one(waiting, &[]).await.unwrap().get(0);
        if n == 0 {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "the abandoned statement kept waiting"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The store's only pooled connection was not left behind the lock.
    let generation =
        tokio::time::timeout(std::time::Duration::from_secs(10), store.tasks_generation())
            .await
            .expect("the store's connection is stuck behind the abandoned statement");
    assert_eq!(generation.unwrap(), 0);
    blocker.rollback().await.unwrap();
    drop((store, admin));
    server.drop_database(&db).await;
}
