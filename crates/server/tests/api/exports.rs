//! Exports end to end on `file://`: start, poll, fetch the signed link, compare with the
//! listing; link security, ranges, audit, cancel, the per-account limit and retention.

use crate::helpers::*;
use chrono::{Duration, TimeZone, Utc};
use gpdiag_core::{Lang, QueryRecord, QueryStatus};
use serde_json::Value;

fn record(i: usize) -> QueryRecord {
    QueryRecord {
        instance: "gp-alice-ok".into(),
        query_id: format!("q{i:04}"),
        session_id: format!("s{}", i % 7),
        database: if i.is_multiple_of(4) {
            "hr".into()
        } else {
            "sales".into()
        },
        user: format!("u{}", i % 3),
        start_time: Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).unwrap()
            + Duration::seconds(i as i64 * 13),
        duration_ms: ((i * 7919) % 5000) as i64,
        status: if i.is_multiple_of(9) {
            QueryStatus::Running
        } else {
            QueryStatus::Finished
        },
        error: None,
        sql: match i % 5 {
            0 => format!("select {i},\n 'multi\nline', \"quoted\"\nfrom t"),
            1 => format!("select '中文 {i}', 'a,b'"),
            _ => format!("select {i}"),
        },
        plan_json: None,
        plan_text: None,
        rows: None,
        source: "test".into(),
        ..Default::default()
    }
}

pub async fn seeded_with(tweak: impl FnOnce(&mut gpdiag_server::Config)) -> TestApp {
    let app = spawn_app_with(tweak).await;
    let records: Vec<_> = (0..500).map(record).collect();
    app.state.store.upsert_records(records).await.unwrap();
    app
}

const WINDOW: [(&str, &str); 2] = [
    ("StartTime", "2026-11-01T10:00Z"),
    ("EndTime", "2026-11-01T11:00Z"),
];

fn params<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![("DBInstanceId", "gp-alice-ok"), ("Database", "sales")];
    all.extend_from_slice(&WINDOW);
    all.extend_from_slice(extra);
    all
}

pub async fn start(app: &TestApp, extra: &[(&str, &str)]) -> String {
    let answer = app
        .call_acs3(&alice(), "DownloadDiagnosisRecords", &params(extra))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["DBInstanceId"], "gp-alice-ok");
    body["DownloadId"]
        .as_str()
        .expect("DownloadId is a string")
        .to_owned()
}

/// Polls DescribeDownloadRecords until the download ends; returns its record.
pub async fn wait(app: &TestApp, id: &str, task_type: &str) -> Value {
    for _ in 0..200 {
        let list = app
            .call_v1(
                &alice(),
                "DescribeDownloadRecords",
                &[
                    ("DBInstanceId", "gp-alice-ok"),
                    ("DownloadTaskType", task_type),
                ],
            )
            .await
            .json();
        let record = list["Records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["DownloadId"].as_i64().map(|n| n.to_string()).as_deref() == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("download {id} is not listed: {list}"));
        if record["Status"] != "running" {
            return record;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("download {id} never ended");
}

/// Every record the listing returns for the same filters, all pages, in order.
async fn listed(app: &TestApp, extra: &[(&str, &str)]) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let page = page.to_string();
        let mut p = params(extra);
        p.extend([("PageSize", "100"), ("PageNumber", page.as_str())]);
        let body = app
            .call_acs3(&alice(), "DescribeDiagnosisRecords", &p)
            .await
            .json();
        let items = body["Items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        all.extend(items);
    }
    all
}

#[tokio::test]
async fn an_export_holds_exactly_what_the_listing_returns_in_every_language() {
    let app = seeded_with(|_| {}).await;
    for (lang, condition) in [
        ("en", None),
        ("zh", Some(r#"{"Type":"maxCost","Value":"25"}"#)),
        ("ja", Some(r#"{"Type":"status","Value":"running"}"#)),
        ("zh-tw", Some(r#"{"Type":"cost","Min":"200","Max":"3000"}"#)),
    ] {
        let mut extra = vec![("Lang", lang)];
        if let Some(c) = condition {
            extra.push(("QueryCondition", c));
        }
        let id = start(&app, &extra).await;
        let done = wait(&app, &id, "SQL_DIAGNOSE").await;
        assert_eq!(done["Status"], "finished", "{done}");
        assert_eq!(done["ExceptionMsg"], "");
        assert_eq!(done["FileName"], "20261101100000-20261101110000.csv");
        let url = done["DownloadUrl"].as_str().unwrap();
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        assert_eq!(
            response.headers()["content-disposition"],
            "attachment; filename=\"20261101100000-20261101110000.csv\""
        );
        let bytes = response.bytes().await.unwrap();
        let mut csv = csv::Reader::from_reader(&bytes[..]);
        let lang: Lang = lang.parse().unwrap();
        assert_eq!(
            csv.headers().unwrap().iter().collect::<Vec<_>>(),
            lang.header()
        );
        let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
        let expected = listed(&app, &extra[1..]).await;
        assert!(!expected.is_empty());
        assert_eq!(rows.len(), expected.len(), "{lang:?} {condition:?}");
        for (row, item) in rows.iter().zip(&expected) {
            assert_eq!(&row[0], item["QueryID"].as_str().unwrap());
            assert_eq!(&row[1], item["SessionID"].as_str().unwrap());
            assert_eq!(&row[4], item["Status"].as_str().unwrap());
            let full = app
                .state
                .store
                .get_record("gp-alice-ok", &row[0])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&row[7], full.sql, "the file has the full SQL");
            assert_eq!(row[6].parse::<i64>().unwrap(), full.duration_ms);
            assert_eq!(
                &row[5],
                full.start_time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
            );
        }
    }
}

#[tokio::test]
async fn gzip_and_bom_are_extra_parameters() {
    let app = seeded_with(|_| {}).await;
    let id = start(&app, &[("Gzip", "true"), ("Bom", "true")]).await;
    let done = wait(&app, &id, "SQL_DIAGNOSE").await;
    assert_eq!(done["FileName"], "20261101100000-20261101110000.csv.gz");
    let response = reqwest::get(done["DownloadUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let gz = response.bytes().await.unwrap();
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert!(text.starts_with("\u{feff}Query ID,".as_bytes()));
    let bad = app
        .call_acs3(
            &alice(),
            "DownloadDiagnosisRecords",
            &params(&[("Gzip", "yes")]),
        )
        .await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "InvalidParameter"));
}

#[tokio::test]
async fn links_are_signed_expire_and_allow_no_traversal() {
    let app = seeded_with(|_| {}).await;
    let first = wait(&app, &start(&app, &[]).await, "SQL_DIAGNOSE").await;
    let second = wait(&app, &start(&app, &[("Lang", "ja")]).await, "SQL_DIAGNOSE").await;
    let url = first["DownloadUrl"].as_str().unwrap().to_owned();
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);

    let status = |u: String| async move { reqwest::get(u).await.unwrap().status().as_u16() };
    // A changed signature.
    let (base, signature) = url.rsplit_once("Signature=").unwrap();
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    assert_eq!(
        status(format!("{base}Signature={flipped}{}", &signature[1..])).await,
        403
    );
    // A later expiry with the old signature.
    let expires: i64 = url
        .split("Expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        status(url.replace(
            &format!("Expires={expires}"),
            &format!("Expires={}", expires + 3600)
        ))
        .await,
        403
    );
    // Another file's signature on this file.
    let other = second["DownloadUrl"].as_str().unwrap();
    let other_query = other.split_once('?').unwrap().1;
    assert_eq!(
        status(format!("{}?{other_query}", url.split_once('?').unwrap().0)).await,
        403
    );
    // No signature at all, and traversal attempts.
    assert_eq!(status(url.split_once('?').unwrap().0.to_owned()).await, 403);
    let host = &app.address;
    for path in [
        "/downloads/1/../../gpdiag.db",
        "/downloads/..%2F..%2Fgpdiag.db/x",
        "/downloads/1/%2E%2E%2Fgpdiag.db?Expires=1&Signature=00",
    ] {
        let s = status(format!("{host}{path}")).await;
        assert!([400, 403, 404].contains(&s), "{path}: {s}");
    }
    // Expired: links last an hour by default.
    app.clock.advance(Duration::minutes(61));
    assert_eq!(status(url.clone()).await, 403);
    // A fresh listing signs a fresh link that works again.
    let again = wait(&app, &first["DownloadId"].to_string(), "SQL_DIAGNOSE").await;
    assert_ne!(again["DownloadUrl"], first["DownloadUrl"]);
    assert_eq!(
        status(again["DownloadUrl"].as_str().unwrap().to_owned()).await,
        200
    );
}

#[tokio::test]
async fn ranges_are_served_and_every_fetch_is_audited() {
    let app = seeded_with(|_| {}).await;
    let done = wait(&app, &start(&app, &[]).await, "SQL_DIAGNOSE").await;
    let url = done["DownloadUrl"].as_str().unwrap();
    let whole = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let client = reqwest::Client::new();
    let part = client
        .get(url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", whole.len())
    );
    assert_eq!(part.headers()["content-length"], "10");
    assert_eq!(part.bytes().await.unwrap(), whole.slice(10..20));
    let tail = client
        .get(url)
        .header("Range", "bytes=-5")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(tail, whole.slice(whole.len() - 5..));
    let outside = client
        .get(url)
        .header("Range", format!("bytes={}-", whole.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), 416);
    let id: i64 = done["DownloadId"].as_i64().unwrap();
    let audit = app.state.store.list_downloads(id).await.unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert_eq!(audit[0].account, "alice");
    assert_eq!(audit[1].range, "bytes=10-19");
    assert!(audit[0].client.starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn api_only_nodes_leave_tasks_running_so_limits_and_cancel_can_be_seen() {
    let app = seeded_with(|c| {
        c.exports.workers = 0;
        c.exports.max_running_per_account = 2;
    })
    .await;
    let first = start(&app, &[]).await;
    start(&app, &[]).await;
    let third = app
        .call_acs3(&alice(), "DownloadDiagnosisRecords", &params(&[]))
        .await;
    assert_eq!(
        (third.status, third.code().as_str()),
        (400, "QuotaExceeded.DownloadTasks")
    );
    // Bob has his own limit.
    let bob_call = app
        .call_acs3(
            &bob(),
            "DownloadDiagnosisRecords",
            &[("DBInstanceId", "gp-bob-ok"), ("Database", "x")],
        )
        .await;
    assert_eq!(bob_call.status, 200, "{}", bob_call.body);

    let cancel = |id: String, who| {
        let app = &app;
        async move {
            app.call_v1(
                &who,
                "CancelDownloadTask",
                &[("DBInstanceId", "gp-alice-ok"), ("DownloadId", id.as_str())],
            )
            .await
        }
    };
    // Bob cannot see, let alone cancel, alice's download.
    assert_eq!(
        cancel(first.clone(), bob()).await.code(),
        "InvalidDBInstanceId.NotFound"
    );
    let canceled = cancel(first.clone(), alice()).await;
    assert_eq!(canceled.json()["Status"], "failed", "{}", canceled.body);
    let record = wait(&app, &first, "SQL_DIAGNOSE").await;
    assert_eq!(
        (record["Status"].as_str(), record["ExceptionMsg"].as_str()),
        (Some("failed"), Some("canceled"))
    );
    assert_eq!(record["DownloadUrl"], "");
    assert_eq!(
        cancel(first.clone(), alice()).await.code(),
        "IncorrectDownloadTaskState"
    );
    assert_eq!(
        cancel("999999".into(), alice()).await.code(),
        "InvalidDownloadId.NotFound"
    );
    // With one canceled, another may start.
    start(&app, &[]).await;
}

/// Runs a slow-SQL export of the seeded hour up to `max_duration` seconds; returns its record.
async fn slow_sql_export(app: &TestApp, max_duration: &str) -> Value {
    let answer = app
        .call_acs3(
            &alice(),
            "DownloadSlowSQLRecords",
            &[
                ("DBInstanceId", "gp-alice-ok"),
                ("StartTime", "2026-11-01T10:00Z"),
                ("EndTime", "2026-11-01T11:00Z"),
                ("MaxDuration", max_duration),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.json()["DownloadId"].as_str().unwrap().to_owned();
    wait(app, &id, "SLOW_SQL").await
}

#[tokio::test]
async fn slow_sql_exports_are_listed_under_their_own_type() {
    let app = seeded_with(|c| c.exports.slow_query_ms = 2000).await;
    let done = slow_sql_export(&app, "4").await;
    assert_eq!(done["Status"], "finished");
    let none = app
        .call_v1(
            &alice(),
            "DescribeDownloadRecords",
            &[("DBInstanceId", "gp-alice-ok")],
        )
        .await
        .json();
    assert!(
        none["Records"].as_array().unwrap().is_empty(),
        "SLOW_SQL tasks are not SQL_DIAGNOSE: {none}"
    );
    let bytes = reqwest::get(done["DownloadUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&bytes[..])
        .records()
        .map(Result::unwrap)
        .collect();
    let window_end = Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap();
    let expected = (0..500)
        .map(record)
        .filter(|r| r.start_time < window_end && (2000..4000).contains(&r.duration_ms))
        .count();
    assert_eq!(rows.len(), expected);
    // Slowest first by default; every database.
    let durations: Vec<i64> = rows.iter().map(|r| r[6].parse().unwrap()).collect();
    assert!(durations.windows(2).all(|w| w[0] >= w[1]));
    assert!(rows.iter().any(|r| &r[2] == "hr") && rows.iter().any(|r| &r[2] == "sales"));
}

#[tokio::test]
async fn retention_deletes_old_exports_and_their_files() {
    let app = seeded_with(|_| {}).await;
    let done = wait(&app, &start(&app, &[]).await, "SQL_DIAGNOSE").await;
    let id = done["DownloadId"].as_i64().unwrap();
    let key = app
        .state
        .store
        .get_task(id)
        .await
        .unwrap()
        .unwrap()
        .object_key
        .unwrap();
    assert!(app
        .state
        .exports
        .objects
        .head(&key)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        gpdiag_server::app::delete_expired(&app.state, Duration::days(7))
            .await
            .unwrap(),
        0
    );
    app.clock.advance(Duration::days(8));
    assert_eq!(
        gpdiag_server::app::delete_expired(&app.state, Duration::days(7))
            .await
            .unwrap(),
        1
    );
    assert_eq!(app.state.exports.objects.head(&key).await.unwrap(), None);
    app.clock.advance(-Duration::days(8));
    let list = app
        .call_v1(
            &alice(),
            "DescribeDownloadRecords",
            &[("DBInstanceId", "gp-alice-ok")],
        )
        .await
        .json();
    assert!(list["Records"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_max_duration_below_the_slow_threshold_is_an_empty_export() {
    let app = seeded_with(|c| c.exports.slow_query_ms = 2000).await;
    let done = slow_sql_export(&app, "0").await;
    assert_eq!(done["Status"], "finished", "{done}");
    let bytes = reqwest::get(done["DownloadUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(csv::Reader::from_reader(&bytes[..]).records().count(), 0);
}
