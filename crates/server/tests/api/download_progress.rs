//! gpdiag's `RowsDone` extension of DescribeDownloadRecords: rows written so far while an export
//! runs (as its worker reports them with each lease renewal, about every second), the file's
//! rows once finished, the rows written before it stopped once failed. The first test plays the
//! worker through the store (no export workers run), so every step is deterministic; the second
//! runs a real, paced export worker and watches the listing advance as the server serves it.

use crate::helpers::*;
use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{Clock, QueryRecord, QueryStatus};
use gpdiag_export::{ExportSettings, Exporter, RunOutcome};
use serde_json::Value;

const WORKER: &str = "test-worker";

async fn start(app: &TestApp) -> i64 {
    let answer = app
        .call_acs3(
            &alice(),
            "DownloadDiagnosisRecords",
            &[
                ("DBInstanceId", "gp-alice-ok"),
                ("Database", "sales"),
                ("StartTime", "2026-11-01T10:00Z"),
                ("EndTime", "2026-11-01T11:00Z"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["DownloadId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The listed record of download `id`, after the API's view has caught up with the store.
async fn listed(app: &TestApp, id: i64) -> Value {
    app.state.tasks_changed().await;
    served(app, id).await
}

#[tokio::test]
async fn rows_done_follows_the_worker_and_ends_at_the_files_rows() {
    let app = spawn_app_with(|c| c.exports.workers = 0).await;
    let store = app.state.store.clone();
    let lease = Duration::minutes(5);
    let id = start(&app).await;
    let r = listed(&app, id).await;
    assert_eq!(
        (r["Status"].as_str(), r["RowsDone"].as_u64()),
        (Some("running"), Some(0)),
        "{r}"
    );

    let task = store
        .claim_task(WORKER, app.clock.now(), lease)
        .await
        .unwrap()
        .expect("the export waits for a worker");
    assert_eq!(task.id, id);
    for rows in [1000, 25_000] {
        assert!(store
            .renew_task(id, WORKER, app.clock.now(), lease, rows)
            .await
            .unwrap());
        let r = listed(&app, id).await;
        assert_eq!(
            (r["Status"].as_str(), r["RowsDone"].as_u64()),
            (Some("running"), Some(rows)),
            "{r}"
        );
        assert_eq!(r["DownloadUrl"], "");
    }
    // The same number in XML, where every field is an element.
    let xml = app
        .call_acs3(
            &alice(),
            "DescribeDownloadRecords",
            &[("DBInstanceId", "gp-alice-ok"), ("Format", "XML")],
        )
        .await;
    assert!(
        xml.body.contains("<RowsDone>25000</RowsDone>"),
        "{}",
        xml.body
    );

    assert!(store
        .finish_task(
            id,
            WORKER,
            "exports/alice/gp-alice-ok/x.csv",
            25_317,
            999,
            app.clock.now()
        )
        .await
        .unwrap());
    let r = listed(&app, id).await;
    assert_eq!(
        (r["Status"].as_str(), r["RowsDone"].as_u64()),
        (Some("finished"), Some(25_317)),
        "{r}"
    );

    // A canceled export keeps the rows it had written.
    let second = start(&app).await;
    store
        .claim_task(WORKER, app.clock.now(), lease)
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .renew_task(second, WORKER, app.clock.now(), lease, 77)
        .await
        .unwrap());
    let cancel = app
        .call_acs3(
            &alice(),
            "CancelDownloadTask",
            &[
                ("DBInstanceId", "gp-alice-ok"),
                ("DownloadId", &second.to_string()),
            ],
        )
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    let r = listed(&app, second).await;
    assert_eq!(
        (
            r["Status"].as_str(),
            r["ExceptionMsg"].as_str(),
            r["RowsDone"].as_u64()
        ),
        (Some("failed"), Some("canceled"), Some(77)),
        "{r}"
    );
}

/// A record of gp-alice-ok's `sales` inside the window `start` exports.
fn record(i: u64) -> QueryRecord {
    QueryRecord {
        instance: "gp-alice-ok".into(),
        query_id: format!("q{i:06}"),
        session_id: format!("s{}", i % 7),
        database: "sales".into(),
        user: "u".into(),
        start_time: Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap()
            + Duration::milliseconds(i as i64 * 500),
        duration_ms: (i % 5000) as i64,
        status: QueryStatus::Finished,
        sql: format!("select {i}"),
        source: "test".into(),
        ..Default::default()
    }
}

/// The listed record of download `id` exactly as the server serves it now: no forced refresh,
/// so this sees what the server's own periodic refresh of its view has picked up.
async fn served(app: &TestApp, id: i64) -> Value {
    let list = app
        .call_acs3(
            &alice(),
            "DescribeDownloadRecords",
            &[("DBInstanceId", "gp-alice-ok")],
        )
        .await
        .json();
    list["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["DownloadId"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("download {id} is not listed: {list}"))
}

/// A real export worker, paced so the export lasts several seconds whatever the machine: the
/// listing shows its RowsDone growing while it runs (more than one distinct value between 0
/// and the total), not only once it has finished. Nothing here is timed: the deadline is only
/// there so a broken build fails instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_done_advances_while_a_real_export_runs() {
    const RECORDS: u64 = 4000;
    const BATCH: usize = 50;
    let app = spawn_app_with(|c| c.exports.workers = 0).await;
    let records: Vec<_> = (0..RECORDS).map(record).collect();
    app.state.store.upsert_records(records).await.unwrap();
    let id = start(&app).await;
    // 80 batches with a 60 ms pause after each: at least 4.8 s of export.
    let exporter = Exporter::new(
        app.state.store.clone(),
        app.state.exports.objects.clone(),
        app.clock.clone(),
        "paced-worker".into(),
        ExportSettings {
            workers: 1,
            batch: BATCH,
            batch_pause: Some(std::time::Duration::from_millis(60)),
            ..ExportSettings::default()
        },
    );
    assert_eq!(
        ExportSettings::default().heartbeat,
        std::time::Duration::from_secs(1),
        "progress is reported every second by default"
    );
    let running = tokio::spawn(async move { exporter.run_next().await });

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    // The distinct RowsDone values seen while the export was listed as running.
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let r = served(&app, id).await;
        let rows = r["RowsDone"].as_u64().expect("RowsDone is a number");
        match r["Status"].as_str() {
            Some("running") => {
                if seen.last() != Some(&rows) {
                    seen.push(rows);
                }
            }
            Some("finished") => break,
            other => panic!("unexpected status {other:?}: {r}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the export did not finish; RowsDone seen while running: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        running.await.unwrap().unwrap(),
        RunOutcome::Finished { id, rows: RECORDS }
    );
    // The last renewal, just before finishing, may already show every row as running.
    let midway: Vec<u64> = seen
        .iter()
        .copied()
        .filter(|&n| n > 0 && n < RECORDS)
        .collect();
    assert!(
        midway.len() >= 2,
        "RowsDone did not advance more than once while the export ran: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "RowsDone went backwards: {seen:?}"
    );
    assert!(
        midway.iter().all(|&n| n % BATCH as u64 == 0),
        "progress is reported between batches: {seen:?}"
    );
    let r = listed(&app, id).await;
    assert_eq!(
        (r["Status"].as_str(), r["RowsDone"].as_u64()),
        (Some("finished"), Some(RECORDS)),
        "{r}"
    );
}
