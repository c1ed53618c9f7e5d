//! The collector's `pg_stat_activity` sampler over TLS, against a private PostgreSQL 15 with a
//! certificate from a CA made here (the cluster helper is the store's, included by path): a
//! `verify-full` DSN samples a running statement over an encrypted session, and a DSN that
//! trusts another CA reports why it cannot connect. Never skipped.

#[path = "../../store/tests/support/tls_cluster.rs"]
mod tls_cluster;

use chrono::{Duration as ChronoDuration, Utc};
use gpdiag_core::{CollectorHealth, QueryStatus, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_ingest::collect::{CollectSettings, Collector};
use gpdiag_store::{Page, SqliteStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_cluster::{connect, TlsCluster, SERVER_NAME};
use tokio::sync::watch;

#[tokio::test]
async fn the_sampler_connects_with_the_dsn_sslmode() {
    let started = Instant::now();
    let cluster = TlsCluster::start();
    let pki = cluster.enable_tls();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("gpdiag.db").to_str().unwrap())
            .await
            .unwrap(),
    );

    // Something for the sampler to see, on a plain session of its own.
    let sleeper = connect(&cluster.url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .unwrap();
    let sleeping = tokio::spawn(async move { sleeper.batch_execute("SELECT pg_sleep(30)").await });

    let good = cluster.url(
        SERVER_NAME,
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={}", pki.ca.display()),
    );
    // The key=value form, with a password the server (trust) ignores and no message may show.
    let bad = format!(
        "host={SERVER_NAME} port={} user=gpdiag password=s3cret-pw dbname=postgres \
         sslmode=verify-full sslrootcert='{}'",
        cluster.port(),
        pki.other_ca.display()
    );
    let (stop, stopped) = watch::channel(false);
    let runs: Vec<_> = [("gp-tls", good), ("gp-wrong-ca", bad)]
        .into_iter()
        .map(|(instance, dsn)| {
            let mut settings: CollectSettings =
                toml::from_str("sample_interval = '100ms'\ndsn = 'set below'").unwrap();
            settings.dsn = Some(dsn.clone());
            let collector = Collector::new(
                instance,
                settings,
                Some(dsn),
                Arc::clone(&store),
                "collect-tls-test".into(),
            );
            tokio::spawn(collector.run(stopped.clone()))
        })
        .collect();

    let health = wait_for_health(store.as_ref(), "gp-tls", |h| {
        h.sampler_connected && h.running_queries >= 1
    })
    .await;
    assert_eq!(health.last_error, None);
    let now = Utc::now();
    let running = store
        .search_records(
            &RecordFilter {
                instance: "gp-tls".into(),
                database: None,
                window: TimeWindow::new(now - ChronoDuration::hours(1), now).unwrap(),
                user: None,
                keyword: Some("pg_sleep".into()),
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
    assert_eq!(running.total, 1, "{running:?}");
    assert_eq!(running.records[0].status, QueryStatus::Running);
    assert_eq!(running.records[0].sql, "SELECT pg_sleep(30)");
    // The sampler's own session, as the server sees it.
    let admin = connect(&cluster.url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .unwrap();
    let sessions: Vec<bool> = admin
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'gpdiag-collector'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(sessions, [true], "one encrypted sampler session");

    let refused = wait_for_health(store.as_ref(), "gp-wrong-ca", |h| h.last_error.is_some()).await;
    let error = refused.last_error.unwrap();
    assert!(!refused.sampler_connected);
    assert!(
        error.contains(&format!(
            "no certificate authority in sslrootcert {} issued it",
            pki.other_ca.display()
        )),
        "{error}"
    );
    assert!(!error.contains("s3cret"), "{error}");

    stop.send(true).unwrap();
    for run in runs {
        run.await.unwrap();
    }
    admin
        .batch_execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
             WHERE query = 'SELECT pg_sleep(30)'",
        )
        .await
        .unwrap();
    assert!(sleeping.await.unwrap().is_err(), "the sleep was cancelled");
    eprintln!("took {:?}", started.elapsed());
}

/// The instance's health report once `ready` holds for it; fails after ten seconds.
async fn wait_for_health(
    store: &dyn Store,
    instance: &str,
    ready: impl Fn(&CollectorHealth) -> bool,
) -> CollectorHealth {
    let started = Instant::now();
    loop {
        let health: Option<CollectorHealth> = store
            .collector_health(instance)
            .await
            .unwrap()
            .map(|json| serde_json::from_str(&json).unwrap());
        if let Some(health) = health {
            if ready(&health) {
                return health;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{instance}: {health:?}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{instance}: no health report"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
