//! TLS to PostgreSQL with libpq's `sslmode` and `sslrootcert`, against a real server: a
//! private cluster of this test's own (never `GPDIAG_TEST_PG_URL`: TLS needs the server's
//! configuration), first without TLS, then with a certificate for `localhost` from a CA made
//! here. Never skipped: without PostgreSQL 15 the test fails.

mod support {
    pub mod tls_cluster;
}

use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_store::{PostgresStore, Store, StoreError};
use std::time::Instant;
use support::tls_cluster::{connect, encrypted, TlsCluster, SERVER_NAME};

/// Everything runs in one test, so one private cluster serves it and is reliably stopped.
#[tokio::test]
async fn postgres_connections_follow_libpq_sslmode() {
    let started = Instant::now();
    let cluster = TlsCluster::start();

    // A server without TLS: `require` refuses it, `prefer` (the default) and `disable` do not.
    let require = cluster.url("127.0.0.1", "postgres", "sslmode=require");
    let err = connect(&require).await.expect_err("require without TLS");
    assert!(err.contains("server does not support TLS"), "{err}");
    let with_password = require.replace("gpdiag@", "gpdiag:s3cret-pw@");
    let err = PostgresStore::open(&with_password)
        .await
        .err()
        .expect("a store that requires TLS from a server without it")
        .to_string();
    assert!(err.contains("server does not support TLS"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    for params in ["sslmode=disable", "sslmode=prefer", ""] {
        let client = connect(&cluster.url("127.0.0.1", "postgres", params))
            .await
            .unwrap();
        assert!(!encrypted(&client).await, "{params}");
    }
    eprintln!("without TLS: {:?}", started.elapsed());

    let pki = cluster.enable_tls();
    let (ca, other_ca) = (pki.ca.display(), pki.other_ca.display());
    let port = cluster.port();

    // libpq's `require`: encrypted, no certificate check (the CA is unknown to us here).
    for dsn in [
        cluster.url("127.0.0.1", "postgres", "sslmode=require"),
        format!("host=127.0.0.1 port={port} user=gpdiag dbname=postgres sslmode=require"),
        // prefer and allow take TLS when the server offers it.
        cluster.url("127.0.0.1", "postgres", ""),
        cluster.url("127.0.0.1", "postgres", "sslmode=allow"),
    ] {
        let client = connect(&dsn).await.unwrap_or_else(|e| panic!("{dsn}: {e}"));
        assert!(encrypted(&client).await, "{dsn}");
    }
    let plain = connect(&cluster.url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .unwrap();
    assert!(!encrypted(&plain).await, "disable is plain");

    // verify-full: the right CA and the certificate's name.
    for dsn in [
        cluster.url(
            SERVER_NAME,
            "postgres",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        format!(
            "host={SERVER_NAME} port={port} user=gpdiag dbname=postgres \
             sslmode='verify-full' sslrootcert='{ca}'"
        ),
        // verify-ca checks the chain only, so another name will do.
        cluster.url(
            "127.0.0.1",
            "postgres",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ),
    ] {
        let client = connect(&dsn).await.unwrap_or_else(|e| panic!("{dsn}: {e}"));
        assert!(encrypted(&client).await, "{dsn}");
    }

    // A name the certificate does not carry.
    for dsn in [
        cluster.url(
            "127.0.0.1",
            "postgres",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        format!(
            "host=db.gpdiag.test hostaddr=127.0.0.1 port={port} user=gpdiag \
             sslmode=verify-full sslrootcert={ca}"
        ),
    ] {
        let err = connect(&dsn).await.expect_err(&dsn);
        assert!(
            err.contains("invalid peer certificate") && err.contains("not valid for name"),
            "{dsn}: {err}"
        );
    }
    // A CA that did not sign it: refused by verify-full, verify-ca, and by require once a
    // root certificate is given (libpq checks the chain whenever it has one).
    for params in [
        format!("sslmode=verify-full&sslrootcert={other_ca}"),
        format!("sslmode=verify-ca&sslrootcert={other_ca}"),
        format!("sslmode=require&sslrootcert={other_ca}"),
    ] {
        let err = connect(&cluster.url(SERVER_NAME, "postgres", &params))
            .await
            .expect_err(&params);
        let says = format!("no certificate authority in sslrootcert {other_ca} issued it");
        assert!(
            err.contains("invalid peer certificate") && err.contains(&says),
            "{params}: {err}"
        );
    }
    eprintln!("connections: {:?}", started.elapsed());

    the_store_works_over_verified_tls(&cluster, &ca.to_string()).await;
    eprintln!("store: {:?}", started.elapsed());
    bad_tls_settings_fail_the_store_at_open(&cluster).await;
    eprintln!("total: {:?}", started.elapsed());
}

/// The store opens, migrates, writes and reads over `verify-full`, every pooled connection is
/// encrypted, and a dropped stream's cancel request (a connection of its own) gets through.
async fn the_store_works_over_verified_tls(cluster: &TlsCluster, ca: &str) {
    let admin = connect(&cluster.url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE gpdiag_tls")
        .await
        .unwrap();
    let url = cluster
        .url(
            SERVER_NAME,
            "gpdiag_tls",
            &format!("sslmode=verify-full&sslrootcert={ca}&pool_size=1"),
        )
        .replace("gpdiag@", "gpdiag:s3cret-pw@");
    let store = PostgresStore::open(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open the store over TLS: {e}"));
    let records: Vec<QueryRecord> = (0..10).map(record).collect();
    store.upsert_records(records.clone()).await.unwrap();
    assert_eq!(
        store.get_record("gp-tls", "q3").await.unwrap().as_ref(),
        Some(&records[3])
    );
    let (sessions, all_encrypted): (i64, Option<bool>) = admin
        .query_one(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'gpdiag_tls'",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(
        (sessions, all_encrypted),
        (1, Some(true)),
        "the store's pooled connection"
    );

    // A reader that leaves while its statement waits for a lock: the statement is cancelled
    // by a request on a connection of its own, which needs the TLS of the URL's sslmode.
    let mut blocker_client = connect(&cluster.url("127.0.0.1", "gpdiag_tls", "sslmode=disable"))
        .await
        .unwrap();
    let blocker = blocker_client.transaction().await.unwrap();
    blocker
        .batch_execute("LOCK TABLE query_records IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let filter = RecordFilter {
        instance: "gp-tls".into(),
        database: None,
        window: TimeWindow::new(base_time(), base_time() + Duration::hours(1)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    };
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let rx = store.stream_records(&filter, RecordOrder::default(), 5);
    wait_for(&blocker, waiting, 1, "the stream never reached the lock").await;
    drop(rx);
    wait_for(
        &blocker,
        waiting,
        0,
        "the abandoned statement was not cancelled",
    )
    .await;
    blocker.rollback().await.unwrap();
    drop((store, blocker_client));
    admin
        .batch_execute("DROP DATABASE gpdiag_tls WITH (FORCE)")
        .await
        .unwrap();
}

async fn wait_for(client: &tokio_postgres::Transaction<'_>, query: &str, want: i64, why: &str) {
    let started = Instant::now();
    loop {
        let n: i64 = client.query_one(query, &[]).await.unwrap().get(0);
        if n == want {
            return;
        }
        assert!(started.elapsed().as_secs() < 10, "{why}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Settings that cannot work fail `open` with a sentence, before any connection, and never
/// show the password.
async fn bad_tls_settings_fail_the_store_at_open(cluster: &TlsCluster) {
    let cases = [
        (
            "sslmode=verify_full",
            "sslmode \"verify_full\" is not one of",
        ),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "cannot read sslrootcert /nonexistent/ca.pem",
        ),
        ("sslmode=verify-ca", "needs sslrootcert=PATH"),
    ];
    for (params, expected) in cases {
        let url = cluster
            .url(SERVER_NAME, "postgres", params)
            .replace("gpdiag@", "gpdiag:s3cret-pw@");
        let err = gpdiag_store::open(&url)
            .await
            .err()
            .unwrap_or_else(|| panic!("{params} was accepted"));
        assert!(matches!(err, StoreError::Backend(_)), "{params}: {err:?}");
        let err = err.to_string();
        assert!(err.contains(expected), "{params}: {err}");
        assert!(
            err.contains("cannot parse postgres://***@"),
            "{params}: {err}"
        );
        assert!(!err.contains("s3cret"), "{params}: {err}");
    }
}

fn base_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

fn record(i: usize) -> QueryRecord {
    QueryRecord {
        instance: "gp-tls".into(),
        query_id: format!("q{i}"),
        session_id: "s".into(),
        database: "db0".into(),
        user: "u0".into(),
        start_time: base_time() + Duration::milliseconds(i as i64),
        duration_ms: 1,
        status: QueryStatus::Finished,
        sql: format!("select {i}"),
        source: "test".into(),
        ..Default::default()
    }
}
