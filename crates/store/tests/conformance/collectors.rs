//! Collector state: leases, log positions committed with their records, running records
//! settled by finished ones, health.

use super::records::record;
use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{QueryRecord, QueryStatus, RecordFilter, RecordOrder, TimeWindow};
use gpdiag_store::{CollectedBatch, LogFilePosition, Page, Store};

pub async fn leases_admit_one_collector(store: &dyn Store) {
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let lease = Duration::seconds(30);
    assert!(store
        .claim_collector("gp-lease", "a", now, lease)
        .await
        .unwrap());
    assert!(
        !store
            .claim_collector("gp-lease", "b", now, lease)
            .await
            .unwrap(),
        "b must wait while a's lease runs"
    );
    assert!(
        store
            .claim_collector("gp-lease", "a", now + Duration::seconds(10), lease)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(!store
        .claim_collector("gp-lease", "b", now + Duration::seconds(39), lease)
        .await
        .unwrap());
    assert!(
        store
            .claim_collector("gp-lease", "b", now + Duration::seconds(41), lease)
            .await
            .unwrap(),
        "an expired lease is taken over"
    );
    store.release_collector("gp-lease", "a").await.unwrap();
    assert!(
        !store
            .claim_collector("gp-lease", "a", now + Duration::seconds(42), lease)
            .await
            .unwrap(),
        "a release by a former holder does not free b's lease"
    );
    store.release_collector("gp-lease", "b").await.unwrap();
    assert!(store
        .claim_collector("gp-lease", "a", now + Duration::seconds(43), lease)
        .await
        .unwrap());
    // Health is kept beside the lease and does not disturb it.
    assert_eq!(store.collector_health("gp-lease").await.unwrap(), None);
    store
        .put_collector_health("gp-lease", r#"{"lag_bytes":3}"#)
        .await
        .unwrap();
    store
        .put_collector_health("gp-lease", r#"{"lag_bytes":0}"#)
        .await
        .unwrap();
    assert_eq!(
        store.collector_health("gp-lease").await.unwrap().as_deref(),
        Some(r#"{"lag_bytes":0}"#)
    );
    assert!(!store
        .claim_collector("gp-lease", "b", now + Duration::seconds(44), lease)
        .await
        .unwrap());
    // Health of an instance never collected.
    store
        .put_collector_health("gp-health-only", "{}")
        .await
        .unwrap();
    assert!(store
        .claim_collector("gp-health-only", "c", now, lease)
        .await
        .unwrap());
}

fn all_of(instance: &str) -> RecordFilter {
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    RecordFilter {
        instance: instance.into(),
        database: None,
        window: TimeWindow::new(t, t + Duration::days(3650)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    }
}

async fn records_of(store: &dyn Store, instance: &str) -> Vec<QueryRecord> {
    store
        .search_records(
            &all_of(instance),
            RecordOrder::default(),
            Page {
                offset: 0,
                limit: 1000,
            },
        )
        .await
        .unwrap()
        .records
}

fn running(instance: &str, session: &str, at_ms: i64) -> QueryRecord {
    let mut r = record(instance, &format!("{session}@{at_ms}"), at_ms, 0);
    r.session_id = session.into();
    r.status = QueryStatus::Running;
    r.sql_truncated = true;
    r.source = "pg_stat_activity".into();
    r
}

fn finished(instance: &str, session: &str, line: u32, at_ms: i64, duration_us: i64) -> QueryRecord {
    let mut r = record(
        instance,
        &format!("{session}:{line}"),
        at_ms,
        duration_us / 1000,
    );
    r.session_id = session.into();
    r.duration_us = Some(duration_us);
    r.pg_query_id = Some(-6_945_018_298_666_032_201);
    r.parameters = Some("$1 = '7'".into());
    r.source = "csvlog".into();
    r
}

pub async fn finished_records_settle_running_ones(store: &dyn Store) {
    let i = "gp-settle";
    // Two sessions run one query each; s3's query starts after s1's ends.
    store
        .replace_running(
            i,
            vec![
                running(i, "s1", 1_000),
                running(i, "s2", 1_500),
                running(i, "s3", 9_000),
            ],
        )
        .await
        .unwrap();
    assert_eq!(records_of(store, i).await.len(), 3);

    // s1's statement finishes: 1.000 s + 5 s = 6 s. Its running record goes, in the same
    // transaction as the finished record and the tailer's position.
    let position = LogFilePosition {
        file_name: "postgresql-01.csv".into(),
        identity: "2049:77".into(),
        offset: 4096,
    };
    store
        .commit_collected(CollectedBatch {
            instance: i.into(),
            records: vec![finished(i, "s1", 5, 1_000, 5_000_123)],
            positions: vec![position.clone()],
            forgotten: vec![],
        })
        .await
        .unwrap();
    let now = records_of(store, i).await;
    let ids: Vec<_> = now.iter().map(|r| r.query_id.as_str()).collect();
    assert!(
        ids.contains(&"s1:5") && !ids.contains(&"s1@1000"),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"s2@1500") && ids.contains(&"s3@9000"),
        "{ids:?}"
    );
    let s1 = now.iter().find(|r| r.query_id == "s1:5").unwrap();
    assert_eq!(s1.duration_us, Some(5_000_123));
    assert_eq!(s1.pg_query_id, Some(-6_945_018_298_666_032_201));
    assert_eq!(s1.parameters.as_deref(), Some("$1 = '7'"));
    assert!(!s1.sql_truncated);
    let s2 = now.iter().find(|r| r.query_id == "s2@1500").unwrap();
    assert!(s2.sql_truncated && s2.status == QueryStatus::Running);
    assert_eq!(store.collector_files(i).await.unwrap(), vec![position]);

    // A statement of s3 that ended before s3's running query started settles nothing.
    store
        .commit_collected(CollectedBatch {
            instance: i.into(),
            records: vec![finished(i, "s3", 2, 2_000, 1_000)],
            positions: vec![LogFilePosition {
                file_name: "postgresql-01.csv".into(),
                identity: "2049:77".into(),
                offset: 8192,
            }],
            forgotten: vec![],
        })
        .await
        .unwrap();
    let ids: Vec<_> = records_of(store, i)
        .await
        .into_iter()
        .map(|r| r.query_id)
        .collect();
    assert!(ids.contains(&"s3@9000".to_owned()), "{ids:?}");
    assert_eq!(store.collector_files(i).await.unwrap()[0].offset, 8192);

    // A new sample replaces the running set wholesale.
    store
        .replace_running(i, vec![running(i, "s4", 12_000)])
        .await
        .unwrap();
    let running_now: Vec<_> = records_of(store, i)
        .await
        .into_iter()
        .filter(|r| r.status == QueryStatus::Running)
        .map(|r| r.query_id)
        .collect();
    assert_eq!(running_now, vec!["s4@12000".to_owned()]);

    // Forgotten files lose their positions; other instances are untouched.
    store
        .commit_collected(CollectedBatch {
            instance: i.into(),
            records: vec![],
            positions: vec![LogFilePosition {
                file_name: "postgresql-02.csv".into(),
                identity: "2049:78".into(),
                offset: 10,
            }],
            forgotten: vec!["postgresql-01.csv".into()],
        })
        .await
        .unwrap();
    let files = store.collector_files(i).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].file_name, "postgresql-02.csv");
    assert!(store.collector_files("gp-other").await.unwrap().is_empty());
}

pub async fn a_record_read_again_without_its_plan_keeps_it(store: &dyn Store) {
    let i = "gp-replan";
    let mut with_plan = finished(i, "s1", 7, 1_000, 2_000);
    with_plan.plan_json = Some(r#"{"Plan":{"Node Type":"Seq Scan"}}"#.into());
    let batch = |r: QueryRecord| CollectedBatch {
        instance: i.into(),
        records: vec![r],
        positions: vec![],
        forgotten: vec![],
    };
    store
        .commit_collected(batch(with_plan.clone()))
        .await
        .unwrap();
    // A restart re-read the statement from a point after its plan.
    let mut again = with_plan.clone();
    again.plan_json = None;
    store.commit_collected(batch(again.clone())).await.unwrap();
    let stored = store.get_record(i, "s1:7").await.unwrap().unwrap();
    assert_eq!(stored.plan_json, with_plan.plan_json);
    // A plan that does come with it replaces the old one.
    let mut replanned = with_plan.clone();
    replanned.plan_json = Some(r#"{"Plan":{"Node Type":"Index Scan"}}"#.into());
    store
        .commit_collected(batch(replanned.clone()))
        .await
        .unwrap();
    let stored = store.get_record(i, "s1:7").await.unwrap().unwrap();
    assert_eq!(stored.plan_json, replanned.plan_json);
    // An import replaces the record as it is.
    store.upsert_records(vec![again]).await.unwrap();
    let stored = store.get_record(i, "s1:7").await.unwrap().unwrap();
    assert_eq!(stored.plan_json, None);
}
