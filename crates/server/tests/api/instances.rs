//! The instance registry and the availability gate over the wire.

use crate::helpers::*;
use serde_json::Value;

fn ids(body: &Value) -> Vec<String> {
    body["Items"]["DBInstance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["DBInstanceId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_account_lists_only_its_own_instances() {
    let app = spawn_app().await;
    for answer in app
        .call_both(
            &alice(),
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
        )
        .await
    {
        let body = answer.json();
        assert_eq!(
            ids(&body),
            [
                "gp-alice-classic",
                "gp-alice-new",
                "gp-alice-ok",
                "gp-alice-old"
            ]
        );
        assert_eq!(body["TotalRecordCount"], 4);
        assert_eq!(body["PageRecordCount"], 4);
        assert_eq!(body["PageNumber"], 1);
        let first = &body["Items"]["DBInstance"][0];
        assert_eq!(first["DBInstanceMode"], "Classic");
        assert_eq!(first["Engine"], "gpdb");
        assert_eq!(first["RegionId"], "cn-hangzhou");
    }
    let bob = app
        .call_acs3(
            &bob(),
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
        )
        .await;
    assert_eq!(ids(&bob.json()), ["gp-bob-ok"]);
    let elsewhere = app
        .call_acs3(
            &alice(),
            "DescribeDBInstances",
            &[("RegionId", "cn-beijing")],
        )
        .await;
    assert_eq!(elsewhere.json()["TotalRecordCount"], 0);
}

#[tokio::test]
async fn filters_and_paging_apply() {
    let app = spawn_app().await;
    let call = |params: Vec<(&'static str, &'static str)>| {
        let app = &app;
        async move {
            let mut all = vec![("RegionId", "cn-hangzhou")];
            all.extend(params);
            app.call_acs3(&alice(), "DescribeDBInstances", &all).await
        }
    };
    assert_eq!(
        ids(&call(vec![("DBInstanceIds", "gp-alice-ok,gp-bob-ok")])
            .await
            .json()),
        ["gp-alice-ok"]
    );
    assert_eq!(
        ids(&call(vec![("DBInstanceStatuses", "creating")]).await.json()),
        ["gp-alice-new"]
    );
    assert_eq!(
        ids(&call(vec![("DBInstanceModes", "Classic,Serverless")])
            .await
            .json()),
        ["gp-alice-classic"]
    );
    let page2 = call(vec![("PageNumber", "2")]).await.json();
    assert_eq!(page2["TotalRecordCount"], 4);
    assert_eq!(page2["PageRecordCount"], 0);
    assert!(ids(&page2).is_empty());
    let bad = call(vec![("PageSize", "7")]).await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "InvalidParameter"));
    let missing = app.call_acs3(&alice(), "DescribeDBInstances", &[]).await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (400, "MissingParameter")
    );
    assert!(missing.body.contains("RegionId"));
}

#[tokio::test]
async fn attribute_reports_the_core_version_and_hides_other_accounts() {
    let app = spawn_app().await;
    let ok = app
        .call_v1(
            &alice(),
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", "gp-alice-ok")],
        )
        .await;
    let attr = &ok.json()["Items"]["DBInstanceAttribute"][0];
    assert_eq!(attr["CoreVersion"], "mm.v6.3.10.1-202207141918");
    assert_eq!(attr["MinorVersion"], "6.3.10.1");
    assert_eq!(attr["DBInstanceMode"], "StorageElastic");
    let theirs = app
        .call_v1(
            &alice(),
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", "gp-bob-ok")],
        )
        .await;
    let missing = app
        .call_v1(
            &alice(),
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", "gp-nope")],
        )
        .await;
    assert_eq!(
        (theirs.status, theirs.code().as_str()),
        (404, "InvalidDBInstanceId.NotFound")
    );
    assert_eq!(
        (missing.status, missing.code()),
        (theirs.status, theirs.code())
    );
}

#[tokio::test]
async fn the_availability_gate_guards_download_records() {
    let app = spawn_app().await;
    for (instance, status, code) in [
        ("gp-alice-ok", 200, None),
        ("gp-alice-new", 200, None),
        ("gp-alice-old", 400, Some("IncorrectModuleVersion")),
        ("gp-alice-classic", 400, Some("IncorrectDBInstanceState")),
        ("gp-bob-ok", 404, Some("InvalidDBInstanceId.NotFound")),
        ("gp-nope", 404, Some("InvalidDBInstanceId.NotFound")),
    ] {
        for answer in app
            .call_both(
                &alice(),
                "DescribeDownloadRecords",
                &[("DBInstanceId", instance)],
            )
            .await
        {
            assert_eq!(answer.status, status, "{instance}: {}", answer.body);
            if let Some(code) = code {
                assert_eq!(answer.code(), code, "{instance}");
            }
        }
    }
}

#[tokio::test]
async fn download_task_types_are_validated() {
    let app = spawn_app().await;
    for (task_type, status) in [
        ("SQL_DIAGNOSE", 200),
        ("SLOW_SQL", 200),
        ("BOGUS", 400),
        ("slow_sql", 400),
    ] {
        let answer = app
            .call_acs3(
                &alice(),
                "DescribeDownloadRecords",
                &[
                    ("DBInstanceId", "gp-alice-ok"),
                    ("DownloadTaskType", task_type),
                ],
            )
            .await;
        assert_eq!(answer.status, status, "{task_type}: {}", answer.body);
    }
    let missing = app
        .call_acs3(&alice(), "DescribeDownloadRecords", &[])
        .await;
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (400, "MissingParameter")
    );
}
