//! `DescribeCollectorStatus` over the wire: the stored health report, scoped to the caller.

use crate::helpers::*;
use gpdiag_core::CollectorHealth;

#[tokio::test]
async fn collector_status_is_the_stored_report_for_the_owner_only() {
    let app = spawn_app().await;
    let params = [("DBInstanceId", "gp-alice-ok")];

    // Nothing reported yet: the instance answers, without a Collector.
    let quiet = app
        .call_acs3(&alice(), "DescribeCollectorStatus", &params)
        .await;
    assert_eq!(quiet.status, 200, "{}", quiet.body);
    let body = quiet.json();
    assert_eq!(body["DBInstanceId"], "gp-alice-ok");
    assert!(body.get("Collector").is_none(), "{body}");

    let report = CollectorHealth {
        owner: "host:127.0.0.1:8080".into(),
        updated_at: "2026-12-04T10:00:01.000Z".into(),
        log_format: "csvlog".into(),
        last_tail_at: Some("2026-12-04T10:00:01.000Z".into()),
        log_files: 3,
        lag_bytes: 512,
        log_records: 1234,
        bad_log_records: 1,
        sampling: true,
        sampler_connected: false,
        last_sample_at: None,
        running_queries: 0,
        last_error: Some("sampling: cannot connect: connection refused".into()),
        last_error_at: Some("2026-12-04T10:00:01.000Z".into()),
    };
    app.state
        .store
        .put_collector_health("gp-alice-ok", &serde_json::to_string(&report).unwrap())
        .await
        .unwrap();
    for answer in app
        .call_both(&alice(), "DescribeCollectorStatus", &params)
        .await
    {
        let body = answer.json();
        let collector = &body["Collector"];
        assert_eq!(collector["LogFiles"], 3);
        assert_eq!(collector["LagBytes"], 512);
        assert_eq!(collector["SamplerConnected"], false);
        assert_eq!(collector["LastSampleAt"], serde_json::Value::Null);
        assert_eq!(
            collector["LastError"],
            "sampling: cannot connect: connection refused"
        );
        let back: CollectorHealth = serde_json::from_value(collector.clone()).unwrap();
        assert_eq!(back, report);
    }
    let xml = app
        .call_acs3(
            &alice(),
            "DescribeCollectorStatus",
            &[("DBInstanceId", "gp-alice-ok"), ("Format", "XML")],
        )
        .await;
    assert!(
        xml.body.contains("<LagBytes>512</LagBytes>") && xml.body.contains("<Owner>"),
        "{}",
        xml.body
    );

    // Another account's instance is indistinguishable from a missing one.
    let other = app
        .call_acs3(&bob(), "DescribeCollectorStatus", &params)
        .await;
    assert_eq!(
        (other.status, other.code().as_str()),
        (404, "InvalidDBInstanceId.NotFound")
    );
    let missing = app
        .call_acs3(&alice(), "DescribeCollectorStatus", &[])
        .await;
    assert_eq!(missing.status, 400, "{}", missing.body);
}
