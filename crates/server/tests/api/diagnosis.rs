//! The diagnosis read actions over HTTP, with records written straight into the app's store,
//! and what a failing store looks like on the wire.

use crate::helpers::*;
use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{QueryRecord, QueryStatus};

fn record(instance: &str, query_id: &str, minute: i64, duration_ms: i64, sql: &str) -> QueryRecord {
    QueryRecord {
        instance: instance.into(),
        query_id: query_id.into(),
        session_id: "sess-1".into(),
        database: "sales".into(),
        user: "ann".into(),
        start_time: Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap()
            + Duration::minutes(minute),
        duration_ms,
        status: QueryStatus::Finished,
        error: None,
        sql: sql.into(),
        plan_json: None,
        plan_text: None,
        rows: None,
        source: "test".into(),
        ..Default::default()
    }
}

async fn seeded() -> TestApp {
    let app = spawn_app().await;
    let store = gpdiag_store::open(&app.config.storage.url).await.unwrap();
    let mut planned = record(
        "gp-alice-ok",
        "q3",
        30,
        61_500,
        "select * from t where x = '100%'",
    );
    planned.plan_json = Some(r#"{"Plan":{"Node Type":"Seq Scan","Relation Name":"t","Actual Total Time":61.0,"Actual Rows":7,"Actual Loops":1}}"#.into());
    planned.plan_text = Some("Seq Scan on t".into());
    planned.rows = Some(7);
    store
        .upsert_records(vec![
            record("gp-alice-ok", "q1", 0, 10, "select 1"),
            record("gp-alice-ok", "q2", 10, 2_500, "SELECT a_b FROM Zoë"),
            planned,
            record("gp-alice-ok", "q4", 90, 5, "select late"),
            record("gp-bob-ok", "b1", 0, 10, "select bob"),
        ])
        .await
        .unwrap();
    app
}

const WINDOW: [(&str, &str); 2] = [
    ("StartTime", "2026-11-01T10:00Z"),
    ("EndTime", "2026-11-01T11:00Z"),
];

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![("DBInstanceId", "gp-alice-ok"), ("Database", "sales")];
    all.extend_from_slice(&WINDOW);
    all.extend_from_slice(extra);
    all
}

fn query_ids(body: &serde_json::Value) -> Vec<&str> {
    body["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["QueryID"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn records_are_listed_newest_first_within_the_window() {
    let app = seeded().await;
    for answer in app
        .call_both(&alice(), "DescribeDiagnosisRecords", &with(&[]))
        .await
    {
        let body = answer.json();
        assert_eq!(query_ids(&body), ["q3", "q2", "q1"], "{}", answer.body);
        assert_eq!(body["TotalCount"], 3);
        let q3 = &body["Items"][0];
        assert_eq!(q3["Duration"], 61);
        assert_eq!(
            q3["StartTime"],
            Utc.with_ymd_and_hms(2026, 11, 1, 10, 30, 0)
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(q3["SQLTruncated"], false);
        assert_eq!(q3["SQLTruncatedThreshold"], 5120);
    }
    let keyword = app
        .call_acs3(
            &alice(),
            "DescribeDiagnosisRecords",
            &with(&[("Keyword", "zoë")]),
        )
        .await;
    assert_eq!(query_ids(&keyword.json()), ["q2"]);
    let wildcard = app
        .call_acs3(
            &alice(),
            "DescribeDiagnosisRecords",
            &with(&[("Keyword", "a%b")]),
        )
        .await;
    assert_eq!(query_ids(&wildcard.json()), Vec::<&str>::new());
    let slow = app
        .call_acs3(
            &alice(),
            "DescribeDiagnosisRecords",
            &with(&[("QueryCondition", r#"{"Type":"cost","Min":"2500"}"#)]),
        )
        .await;
    assert_eq!(query_ids(&slow.json()), ["q3", "q2"]);
}

#[tokio::test]
async fn sql_info_reports_the_plan_and_metrics() {
    let app = seeded().await;
    let info = app
        .call_v1(
            &alice(),
            "DescribeDiagnosisSQLInfo",
            &[
                ("DBInstanceId", "gp-alice-ok"),
                ("Database", "sales"),
                ("QueryID", "q3"),
            ],
        )
        .await
        .json();
    assert_eq!(info["SQLStmt"], "select * from t where x = '100%'");
    assert_eq!(info["TextPlan"], "Seq Scan on t");
    assert_eq!(info["MaxOutputRows"], "7");
    assert!(info["QueryPlan"].as_str().unwrap().contains("Seq Scan"));
    let metrics: serde_json::Value =
        serde_json::from_str(info["SortedMetrics"].as_str().unwrap()).unwrap();
    assert_eq!(metrics[0]["RelationName"], "t");
    let missing = app
        .call_v1(
            &alice(),
            "DescribeDiagnosisSQLInfo",
            &[
                ("DBInstanceId", "gp-alice-ok"),
                ("Database", "sales"),
                ("QueryID", "b1"),
            ],
        )
        .await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "InvalidQueryId.NotFound")
    );
}

#[tokio::test]
async fn dimensions_and_performance_points() {
    let app = seeded().await;
    let dims = app
        .call_acs3(
            &alice(),
            "DescribeDiagnosisDimensions",
            &[("DBInstanceId", "gp-alice-ok")],
        )
        .await
        .json();
    assert_eq!(dims["Databases"], serde_json::json!(["sales"]));
    assert_eq!(dims["UserNames"], serde_json::json!(["ann"]));
    let perf = app
        .call_acs3(&alice(), "DescribeDiagnosisMonitorPerformance", &with(&[]))
        .await
        .json();
    let points: Vec<_> = perf["Performances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["QueryID"].as_str().unwrap())
        .collect();
    assert_eq!(points, ["q1", "q2", "q3"]);
    assert_eq!(perf["Performances"][2]["Cost"], 61_500);
    assert_eq!(perf["PerformancesTruncated"], false);
    assert_eq!(perf["PerformancesThreshold"], 10_000);
}

#[tokio::test]
async fn another_accounts_records_stay_hidden_and_the_gate_applies() {
    let app = seeded().await;
    for (instance, status, code) in [
        ("gp-bob-ok", 404, "InvalidDBInstanceId.NotFound"),
        ("gp-alice-old", 400, "IncorrectModuleVersion"),
        ("gp-alice-classic", 400, "IncorrectDBInstanceState"),
    ] {
        for action in [
            "DescribeDiagnosisRecords",
            "DescribeDiagnosisMonitorPerformance",
            "DescribeDiagnosisDimensions",
        ] {
            let answer = app
                .call_acs3(
                    &alice(),
                    action,
                    &[("DBInstanceId", instance), ("Database", "sales")],
                )
                .await;
            assert_eq!(
                (answer.status, answer.code().as_str()),
                (status, code),
                "{action} {instance}"
            );
        }
    }
}

#[tokio::test]
async fn xml_listings_repeat_items() {
    let app = seeded().await;
    let mut params = v1_pairs(&app, &alice(), "DescribeDiagnosisRecords", &with(&[]));
    for (name, value) in params.iter_mut() {
        if name == "Format" {
            *value = "XML".into();
        }
    }
    let signed = with_v1_signature(&alice(), "POST", params);
    let url = format!(
        "{}/?{}",
        app.address,
        gpdiag_wire::encode::encode_query(&signed)
    );
    let answer = app.answer(app.http.post(url)).await;
    assert_eq!(
        answer.header("content-type"),
        Some("text/xml;charset=utf-8"),
        "{}",
        answer.body
    );
    assert!(answer.body.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeDiagnosisRecordsResponse><RequestId>"
    ));
    assert_eq!(answer.body.matches("<Items>").count(), 3, "{}", answer.body);
    assert!(answer.body.contains("<QueryID>q3</QueryID>"));
    assert!(answer.body.contains("<SQLTruncated>false</SQLTruncated>"));
}

#[tokio::test]
async fn a_broken_store_is_an_internal_error_without_details() {
    let app = seeded().await;
    let path = app
        .config
        .storage
        .url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_owned();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE query_records")
        .unwrap();
    let answer = app
        .call_acs3(&alice(), "DescribeDiagnosisRecords", &with(&[]))
        .await;
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (500, "InternalError")
    );
    assert!(
        !answer.body.contains("query_records"),
        "internals leaked: {}",
        answer.body
    );
    // The protocol layer still works.
    assert_eq!(
        app.call_acs3(
            &alice(),
            "DescribeDownloadRecords",
            &[("DBInstanceId", "gp-alice-ok")]
        )
        .await
        .status,
        200
    );
}
