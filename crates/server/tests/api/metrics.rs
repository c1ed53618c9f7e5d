//! `/metrics`: off unless configured, behind its bearer token, counting calls by action and
//! code with bounded labels, and reporting exports and this process's collectors as they are.

use crate::helpers::*;
use gpdiag_ingest::collect::CollectSettings;
use std::time::Duration;

const TOKEN: &str = "scrape-token-3f9a";

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(format!("{}/metrics", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn metrics_text(app: &TestApp) -> String {
    let answer = scrape(app, Some(TOKEN)).await;
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        answer.headers()
    );
    let text = answer.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text: {text}");
    text
}

#[tokio::test]
async fn metrics_are_off_unless_configured() {
    let app = spawn_app().await;
    let answer = scrape(&app, None).await;
    assert_eq!(answer.status(), 404);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["Code"], "InvalidAction.NotFound", "{body}");
}

#[tokio::test]
async fn scrapes_need_the_token_and_count_calls_by_action_and_code() {
    let app = spawn_app_with(|c| {
        c.metrics.enabled = true;
        c.metrics.bearer_token = Some(TOKEN.into());
    })
    .await;
    for token in [None, Some("wrong"), Some("scrape-token-3f9")] {
        let answer = scrape(&app, token).await;
        assert_eq!(answer.status(), 401, "token {token:?}");
        assert!(answer.headers().contains_key("www-authenticate"));
    }

    let region = [("RegionId", app.config.server.region.as_str())];
    for _ in 0..2 {
        let ok = app
            .call_acs3(&alice(), "DescribeDBInstances", &region)
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let wrong_key = gpdiag_wire::sign::Credentials {
        access_key_id: alice().access_key_id,
        access_key_secret: "not-alices-secret".into(),
    };
    let refused = app
        .call_v1(&wrong_key, "DescribeDBInstances", &region)
        .await;
    let refused_code = refused.code();
    let unknown = app.call_acs3(&alice(), "DropEverything", &[]).await;
    let unknown_code = unknown.code();

    let text = metrics_text(&app).await;
    let calls = |action: &str, code: &str| {
        sample(
            &text,
            &format!("gpdiag_api_calls_total{{action=\"{action}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(calls("DescribeDBInstances", "OK"), Some(2.0), "{text}");
    assert_eq!(
        calls("DescribeDBInstances", &refused_code),
        Some(1.0),
        "{text}"
    );
    // An unknown action is counted without its name: clients cannot grow the label set.
    assert_eq!(calls("", &unknown_code), Some(1.0), "{text}");
    assert!(!text.contains("DropEverything"), "{text}");
    assert_eq!(
        sample(
            &text,
            "gpdiag_api_call_duration_seconds_count{action=\"DescribeDBInstances\"}"
        ),
        Some(3.0),
        "{text}"
    );
    for status in ["running", "finished", "failed"] {
        assert_eq!(
            sample(&text, &format!("gpdiag_exports{{status=\"{status}\"}}")),
            Some(0.0),
            "{text}"
        );
    }
    for secret in [TOKEN, "alice-secret", "not-alices-secret"] {
        assert!(!text.contains(secret), "the scrape shows a secret: {text}");
    }
}

/// A real collector of this process reads a real csvlog; the scrape reports what it did.
/// (That a node reports only the instances it collects is shown by the two-server live test.)
#[tokio::test]
async fn the_collectors_of_this_process_are_reported() {
    let logs = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/postgresql-15/csvlog_sample.csv"
        ),
        logs.path().join("postgresql.csv"),
    )
    .unwrap();
    let settings: CollectSettings = toml::from_str(&format!(
        "log_dir = \"{}\"\nlog_format = \"csvlog\"\nsample_interval = \"200ms\"",
        logs.path().display()
    ))
    .unwrap();
    let app = spawn_app_with(|c| {
        c.metrics.enabled = true;
        c.metrics.bearer_token = Some(TOKEN.into());
        c.instances[0].collect = Some(settings);
    })
    .await;
    let instance = app.config.instances[0].id.clone();
    let series = |name: &str| format!("gpdiag_collector_{name}{{instance=\"{instance}\"}}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics_text(&app).await;
        if sample(&text, &series("lag_bytes")) == Some(0.0)
            && sample(&text, &series("log_records")).is_some_and(|n| n > 0.0)
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the collector never caught up: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stored = app
        .state
        .store
        .collector_health(&instance)
        .await
        .unwrap()
        .expect("a health report");
    let health: gpdiag_core::CollectorHealth = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        sample(&text, &series("log_records")),
        Some(health.log_records as f64),
        "{text}"
    );
    assert_eq!(sample(&text, &series("log_files")), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, &series("bad_log_records")),
        Some(0.0),
        "{text}"
    );
    // No DSN: nothing sampled, so no sample time.
    assert_eq!(
        sample(&text, &series("sampler_connected")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("last_sample_timestamp_seconds")),
        None
    );
    // Instances without a collector are not reported.
    assert!(!text.contains("gp-bob-ok"), "{text}");
}

/// Without a token the scrape is open; exports are counted by status as the store has them.
#[tokio::test]
async fn exports_are_counted_by_status() {
    let app = crate::exports::seeded_with(|c| c.metrics.enabled = true).await;
    let ids = [
        crate::exports::start(&app, &[]).await,
        crate::exports::start(&app, &[("Lang", "ja")]).await,
    ];
    for id in &ids {
        let record = crate::exports::wait(&app, id, "SQL_DIAGNOSE").await;
        assert_eq!(record["Status"], "finished", "{record}");
    }
    let answer = scrape(&app, None).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let exports = |status: &str| sample(&text, &format!("gpdiag_exports{{status=\"{status}\"}}"));
    assert_eq!(
        (exports("running"), exports("finished"), exports("failed")),
        (Some(0.0), Some(2.0), Some(0.0)),
        "{text}"
    );
}
