//! gpdiag's `RowsDone` extension of DescribeDownloadRecords: rows written so far while an export
//! runs (as its worker reports them with each lease renewal), the file's rows once finished, the
//! rows written before it stopped once failed. The test plays the worker through the store (no
//! export workers run), so every step is deterministic.

use crate::helpers::*;
use chrono::Duration;
use gpdiag_core::Clock;
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
