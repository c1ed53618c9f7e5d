//! Download tasks: creation under a limit, leases, fenced transitions, retention, audit, and
//! streaming records.

use super::records::record;
use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{
    DownloadTaskType, ExportSpec, FileOptions, Lang, NewTask, OrderField, QueryCondition,
    QueryStatus, RecordFilter, RecordOrder, TaskStatus, TimeWindow,
};
use gpdiag_store::{DownloadAudit, Store, StoreError};

fn new_task(account: &str, instance: &str) -> NewTask {
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    NewTask {
        account: account.into(),
        instance: instance.into(),
        task_type: DownloadTaskType::SqlDiagnose,
        spec: ExportSpec {
            filter: RecordFilter {
                instance: instance.into(),
                database: Some("db0".into()),
                window: TimeWindow::new(start, start + Duration::hours(6)).unwrap(),
                user: Some("u0".into()),
                keyword: Some("select".into()),
                condition: Some(QueryCondition::Cost {
                    min: Some(1),
                    max: None,
                }),
            },
            order: RecordOrder {
                field: OrderField::Duration,
                descending: false,
            },
            file: FileOptions {
                lang: Lang::Ja,
                bom: true,
                gzip: true,
            },
        },
        created_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    }
}

pub async fn tasks_are_created_under_a_per_account_limit(store: &dyn Store) {
    let g0 = store.tasks_generation().await.unwrap();
    let first = store
        .create_task(&new_task("acct-a", "gp-t1"), 2)
        .await
        .unwrap();
    assert!(store.tasks_generation().await.unwrap() > g0);
    assert_eq!(first.status, TaskStatus::Running);
    assert_eq!(first.file_name, "20261101000000-20261101060000.csv.gz");
    assert_eq!(
        (
            first.attempts,
            first.rows_done,
            first.exception_msg.as_str()
        ),
        (0, 0, "")
    );
    // The spec survives the store exactly.
    assert_eq!(first.spec, new_task("acct-a", "gp-t1").spec);
    assert_eq!(store.get_task(first.id).await.unwrap(), Some(first.clone()));

    store
        .create_task(&new_task("acct-a", "gp-t1"), 2)
        .await
        .unwrap();
    let third = store.create_task(&new_task("acct-a", "gp-t2"), 2).await;
    assert!(
        matches!(third, Err(StoreError::LimitReached(_))),
        "{third:?}"
    );
    // Another account has its own count.
    store
        .create_task(&new_task("acct-b", "gp-t3"), 2)
        .await
        .unwrap();
    // Finished or failed tasks do not count.
    let claimed = store
        .claim_task("w1", Utc::now(), Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, first.id, "the oldest task goes first");
    assert!(store
        .fail_task(first.id, Some("w1"), "boom", Utc::now())
        .await
        .unwrap());
    store
        .create_task(&new_task("acct-a", "gp-t2"), 2)
        .await
        .unwrap();

    let listed = store.list_tasks().await.unwrap();
    let ids: Vec<i64> = listed.iter().map(|t| t.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    // Leave nothing runnable for the next check.
    for t in listed.iter().filter(|t| t.status == TaskStatus::Running) {
        assert!(store
            .fail_task(t.id, None, "cleanup", Utc::now())
            .await
            .unwrap());
    }
}

pub async fn leases_fence_workers(store: &dyn Store) {
    let now = Utc::now();
    let lease = Duration::seconds(30);
    let task = store
        .create_task(&new_task("acct-l", "gp-l"), 10)
        .await
        .unwrap();
    let mine = store.claim_task("w1", now, lease).await.unwrap().unwrap();
    assert_eq!((mine.id, mine.attempts), (task.id, 1));
    // Nobody else can take it while the lease holds.
    assert_eq!(
        store
            .claim_task("w2", now + Duration::seconds(10), lease)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .renew_task(task.id, "w1", now + Duration::seconds(20), lease, 500)
        .await
        .unwrap());
    assert_eq!(
        store.get_task(task.id).await.unwrap().unwrap().rows_done,
        500
    );
    // The renewed lease runs to +50 s; after that another worker takes over.
    assert_eq!(
        store
            .claim_task("w2", now + Duration::seconds(45), lease)
            .await
            .unwrap(),
        None
    );
    let taken = store
        .claim_task("w2", now + Duration::seconds(51), lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id, taken.attempts, taken.rows_done), (task.id, 2, 0));
    // The old holder is fenced out of every transition.
    assert!(!store
        .renew_task(task.id, "w1", now + Duration::seconds(52), lease, 1)
        .await
        .unwrap());
    assert!(!store
        .finish_task(task.id, "w1", "k", 1, 1, now)
        .await
        .unwrap());
    assert!(!store
        .fail_task(task.id, Some("w1"), "x", now)
        .await
        .unwrap());
    assert!(store
        .finish_task(
            task.id,
            "w2",
            "exports/k.csv",
            42,
            4096,
            now + Duration::seconds(60)
        )
        .await
        .unwrap());
    let done = store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Finished);
    assert_eq!(
        (done.rows, done.bytes, done.object_key.as_deref()),
        (Some(42), Some(4096), Some("exports/k.csv"))
    );
    assert!(done.finished_at.is_some());
    // Terminal states are final.
    assert!(!store.fail_task(task.id, None, "late", now).await.unwrap());
    assert!(!store
        .renew_task(task.id, "w2", now, lease, 1)
        .await
        .unwrap());
    assert_eq!(
        store.get_task(task.id).await.unwrap().unwrap().status,
        TaskStatus::Finished
    );

    // Cancel: a failure with no worker named stops the holder.
    let other = store
        .create_task(&new_task("acct-l", "gp-l"), 10)
        .await
        .unwrap();
    store.claim_task("w3", now, lease).await.unwrap().unwrap();
    assert!(store
        .fail_task(other.id, None, "canceled", now)
        .await
        .unwrap());
    assert!(!store
        .renew_task(other.id, "w3", now, lease, 1)
        .await
        .unwrap());
    let canceled = store.get_task(other.id).await.unwrap().unwrap();
    assert_eq!(
        (canceled.status, canceled.exception_msg.as_str()),
        (TaskStatus::Failed, "canceled")
    );

    // Releasing all claims makes a held task claimable at once.
    let held = store
        .create_task(&new_task("acct-l", "gp-l"), 10)
        .await
        .unwrap();
    store.claim_task("w4", now, lease).await.unwrap().unwrap();
    assert_eq!(store.claim_task("w5", now, lease).await.unwrap(), None);
    assert_eq!(store.release_all_claims().await.unwrap(), 1);
    let again = store.claim_task("w5", now, lease).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (held.id, 2));
    assert!(store
        .fail_task(held.id, Some("w5"), "cleanup", now)
        .await
        .unwrap());
}

/// Renewals record progress that `running_progress` reads, without changing the generation
/// (workers renew every second); a task that ends leaves the running progress.
pub async fn renewals_report_progress_without_changing_the_generation(store: &dyn Store) {
    let now = Utc::now();
    let lease = Duration::seconds(30);
    // `(id, rows_done)` of the running tasks among `ids`, and the generation read with them.
    let progress = |ids: Vec<i64>| async move {
        let p = store.running_progress().await.unwrap();
        assert_eq!(p.generation, store.tasks_generation().await.unwrap());
        let ours: Vec<(i64, u64)> = p
            .tasks
            .iter()
            .copied()
            .filter(|(id, _)| ids.contains(id))
            .collect();
        (p.generation, ours)
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let task = store
            .create_task(&new_task("acct-p", "gp-p"), 10)
            .await
            .unwrap();
        assert_eq!(
            store
                .claim_task("wp", now, lease)
                .await
                .unwrap()
                .unwrap()
                .id,
            task.id
        );
        ids.push(task.id);
    }
    let (g0, listed) = progress(ids.clone()).await;
    assert_eq!(listed, [(ids[0], 0), (ids[1], 0), (ids[2], 0)]);

    for (id, rows) in [(ids[0], 500), (ids[2], 70), (ids[0], 900)] {
        assert!(store.renew_task(id, "wp", now, lease, rows).await.unwrap());
    }
    let (g1, listed) = progress(ids.clone()).await;
    assert_eq!(g1, g0, "a renewal changed the generation");
    assert_eq!(listed, [(ids[0], 900), (ids[1], 0), (ids[2], 70)]);
    assert_eq!(
        store.get_task(ids[0]).await.unwrap().unwrap().rows_done,
        900
    );

    // Finished, failed and canceled tasks are no longer listed, and each end is a change.
    assert!(store
        .finish_task(ids[0], "wp", "exports/p.csv", 1000, 10, now)
        .await
        .unwrap());
    let (g2, listed) = progress(ids.clone()).await;
    assert!(g2 > g1);
    assert_eq!(listed, [(ids[1], 0), (ids[2], 70)]);
    assert!(store
        .fail_task(ids[1], Some("wp"), "boom", now)
        .await
        .unwrap());
    assert!(store
        .fail_task(ids[2], None, "canceled", now)
        .await
        .unwrap());
    let (g3, listed) = progress(ids.clone()).await;
    assert!(g3 > g2);
    assert_eq!(listed, []);
}

pub async fn retention_and_audit(store: &dyn Store) {
    let mut old = new_task("acct-r", "gp-r");
    old.created_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let old = store.create_task(&old, 10).await.unwrap();
    let now = Utc::now();
    store
        .claim_task("w", now, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    store
        .finish_task(old.id, "w", "exports/old.csv", 1, 1, now)
        .await
        .unwrap();
    let mut running_old = new_task("acct-r", "gp-r");
    running_old.created_at = old.created_at;
    let running_old = store.create_task(&running_old, 10).await.unwrap();
    let recent = store
        .create_task(&new_task("acct-r", "gp-r"), 10)
        .await
        .unwrap();
    let audit = DownloadAudit {
        task_id: old.id,
        account: "acct-r".into(),
        instance: "gp-r".into(),
        file_name: old.file_name.clone(),
        client: "127.0.0.1:5555".into(),
        user_agent: "curl/8".into(),
        range: "bytes=0-9".into(),
        at: Utc.timestamp_millis_opt(1_800_000_000_123).unwrap(),
    };
    store.record_download(&audit).await.unwrap();
    assert_eq!(store.list_downloads(old.id).await.unwrap(), [audit]);

    let deleted = store
        .delete_tasks_before(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(
        deleted.iter().map(|t| t.id).collect::<Vec<_>>(),
        [old.id],
        "running tasks are never deleted"
    );
    assert_eq!(deleted[0].object_key.as_deref(), Some("exports/old.csv"));
    assert_eq!(store.get_task(old.id).await.unwrap(), None);
    assert!(store.list_downloads(old.id).await.unwrap().is_empty());
    assert!(store.get_task(running_old.id).await.unwrap().is_some());
    assert!(store.get_task(recent.id).await.unwrap().is_some());
    for id in [running_old.id, recent.id] {
        store.fail_task(id, None, "cleanup", now).await.unwrap();
    }
}

pub async fn streams_match_paged_search(store: &dyn Store) {
    let records: Vec<_> = (0..2_345)
        .map(|i| {
            let mut r = record(
                "gp-stream",
                &format!("s{i:05}"),
                (i * 7_919) % 3_600_000,
                (i * 37) % 1000,
            );
            r.database = if i % 3 == 0 {
                "db1".into()
            } else {
                "db0".into()
            };
            if i % 10 == 0 {
                r.status = QueryStatus::Running;
            }
            r
        })
        .collect();
    store.upsert_records(records.clone()).await.unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    for (database, condition) in [
        (Some("db0"), None),
        (None, Some(QueryCondition::MaxCost(100))),
        (
            Some("db1"),
            Some(QueryCondition::Status(QueryStatus::Running)),
        ),
    ] {
        let filter = RecordFilter {
            instance: "gp-stream".into(),
            database: database.map(str::to_owned),
            window: TimeWindow::new(start, start + Duration::hours(1)).unwrap(),
            user: None,
            keyword: None,
            condition,
        };
        let order = RecordOrder {
            field: OrderField::Duration,
            descending: true,
        };
        let mut rx = store.stream_records(&filter, order, 100);
        let mut streamed = Vec::new();
        let mut ended = false;
        while let Some(batch) = rx.recv().await {
            let batch = batch.unwrap();
            assert!(!ended, "nothing may follow the end marker");
            assert!(batch.len() <= 100);
            ended = batch.is_empty();
            streamed.extend(batch);
        }
        assert!(ended, "a complete stream ends with an empty batch");
        let all = store
            .search_records(
                &filter,
                order,
                gpdiag_store::Page {
                    offset: 0,
                    limit: 1_000_000,
                },
            )
            .await
            .unwrap();
        assert_eq!(streamed.len() as u64, all.total);
        assert_eq!(streamed, all.records, "{database:?} {condition:?}");
    }
    // A reader that stops early does not wedge anything.
    let filter = RecordFilter {
        instance: "gp-stream".into(),
        database: None,
        window: TimeWindow::new(start, start + Duration::hours(1)).unwrap(),
        user: None,
        keyword: None,
        condition: None,
    };
    let mut rx = store.stream_records(&filter, RecordOrder::default(), 10);
    rx.recv().await.unwrap().unwrap();
    drop(rx);
    assert!(store
        .get_record("gp-stream", "s00001")
        .await
        .unwrap()
        .is_some());
}

pub async fn settings_are_created_once(store: &dyn Store) {
    let first = store
        .get_or_create_setting("link_key", "one")
        .await
        .unwrap();
    assert_eq!(first, "one");
    assert_eq!(
        store
            .get_or_create_setting("link_key", "two")
            .await
            .unwrap(),
        "one"
    );
    assert_eq!(
        store.get_or_create_setting("other", "two").await.unwrap(),
        "two"
    );
}
