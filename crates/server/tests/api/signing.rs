//! Authentication end to end: both schemes accepted; every signed element, the key state, the
//! timestamp and the nonce checked.

use crate::helpers::*;
use chrono::Duration;
use gpdiag_wire::sign::{Credentials, SignedRequest};

const ACTION: &str = "DescribeDownloadRecords";
const PARAMS: &[(&str, &str)] = &[("DBInstanceId", "gp-alice-ok")];

#[tokio::test]
async fn both_schemes_are_accepted_and_echo_the_request_id() {
    let app = spawn_app().await;
    for answer in app.call_both(&alice(), ACTION, PARAMS).await {
        assert_eq!(answer.status, 200, "{}", answer.body);
        let body = answer.json();
        assert_eq!(body["Records"], serde_json::json!([]));
        assert!(body.get("Code").is_none());
        assert_eq!(
            answer.header("x-acs-request-id"),
            body["RequestId"].as_str()
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/json;charset=utf-8")
        );
    }
}

#[tokio::test]
async fn a_wrong_secret_does_not_match_and_shows_the_string_to_sign() {
    let app = spawn_app().await;
    let wrong = Credentials {
        access_key_secret: "not-the-secret".into(),
        ..alice()
    };
    for answer in app.call_both(&wrong, ACTION, PARAMS).await {
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (400, "SignatureDoesNotMatch")
        );
        assert!(!answer.body.contains("alice-secret"));
    }
    let v1 = app.call_v1(&wrong, ACTION, PARAMS).await;
    assert!(v1.json()["Message"]
        .as_str()
        .unwrap()
        .contains("server string to sign is:POST&%2F&AccessKeyId"));
}

#[tokio::test]
async fn unknown_and_disabled_keys_are_refused() {
    let app = spawn_app().await;
    let stranger = Credentials {
        access_key_id: "LTAInobody".into(),
        access_key_secret: "x".into(),
    };
    for answer in app.call_both(&stranger, ACTION, PARAMS).await {
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (404, "InvalidAccessKeyId.NotFound")
        );
    }
    // Disable through the store, as `gpdiag keys disable` does from another process.
    let store = gpdiag_store::open(&app.config.storage.url).await.unwrap();
    store
        .set_key_enabled(&alice().access_key_id, false)
        .await
        .unwrap();
    let refused = wait_until(|| async {
        let a = app.call_v1(&alice(), ACTION, PARAMS).await;
        (a.status == 400 && a.code() == "InvalidAccessKeyId.Inactive").then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the running server never noticed the disabled key"
    );
    let acs3 = app.call_acs3(&alice(), ACTION, PARAMS).await;
    assert_eq!(
        (acs3.status, acs3.code().as_str()),
        (400, "InvalidAccessKeyId.Inactive")
    );
    // Bob is unaffected.
    assert_eq!(
        app.call_v1(&bob(), ACTION, &[("DBInstanceId", "gp-bob-ok")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_new_key_made_by_another_process_is_accepted_within_seconds() {
    let app = spawn_app().await;
    let store = gpdiag_store::open(&app.config.storage.url).await.unwrap();
    let key = gpdiag_server::app::new_access_key("alice");
    store.put_key(&key).await.unwrap();
    let creds = Credentials {
        access_key_id: key.id.clone(),
        access_key_secret: key.secret.expose().into(),
    };
    let accepted = wait_until(|| async {
        (app.call_acs3(&creds, ACTION, PARAMS).await.status == 200).then_some(())
    })
    .await;
    assert!(accepted.is_some());
}

async fn wait_until<F, Fut>(mut probe: F) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    for _ in 0..50 {
        if probe().await.is_some() {
            return Some(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn timestamps_more_than_fifteen_minutes_off_are_expired() {
    let app = spawn_app().await;
    for offset in [Duration::minutes(16), -Duration::minutes(16)] {
        let v1 = app.sign_v1(&alice(), ACTION, PARAMS);
        let acs3 = app.sign_acs3(&alice(), ACTION, PARAMS);
        app.clock.advance(offset);
        for req in [v1, acs3] {
            let answer = app.send(&req).await;
            assert_eq!(
                (answer.status, answer.code().as_str()),
                (400, "InvalidTimeStamp.Expired")
            );
        }
        app.clock.advance(-offset);
    }
    // Fourteen minutes is fine.
    let req = app.sign_acs3(&alice(), ACTION, PARAMS);
    app.clock.advance(Duration::minutes(14));
    assert_eq!(app.send(&req).await.status, 200);
}

#[tokio::test]
async fn a_replayed_request_is_refused_in_both_schemes() {
    let app = spawn_app().await;
    for req in [
        app.sign_v1(&alice(), ACTION, PARAMS),
        app.sign_acs3(&alice(), ACTION, PARAMS),
    ] {
        assert_eq!(app.send(&req).await.status, 200);
        let again = app.send(&req).await;
        assert_eq!(
            (again.status, again.code().as_str()),
            (400, "SignatureNonceUsed")
        );
        // Still refused fourteen minutes later.
        app.clock.advance(Duration::minutes(14));
        assert_eq!(app.send(&req).await.code(), "SignatureNonceUsed");
        app.clock.advance(-Duration::minutes(14));
    }
}

/// Changes one thing of a signed request and expects a refusal (not 200).
async fn assert_refused(app: &TestApp, req: SignedRequest, what: &str) {
    let answer = app.send(&req).await;
    assert!(
        answer.status >= 400 && answer.status < 500,
        "{what}: expected a 4xx, got {} {}",
        answer.status,
        answer.body
    );
    let code = answer.code();
    assert_ne!(
        code, "SignatureNonceUsed",
        "{what}: refused only for the nonce"
    );
}

fn replace_query_value(query: &str, name: &str, new_value: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={new_value}"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn changing_any_signed_v1_element_is_refused() {
    let app = spawn_app().await;
    for name in [
        "Action",
        "Version",
        "Timestamp",
        "SignatureNonce",
        "DBInstanceId",
        "AccessKeyId",
        "Format",
        "SignatureMethod",
        "SignatureVersion",
    ] {
        let mut req = app.sign_v1(&alice(), ACTION, PARAMS);
        let original = req
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned();
        // A value the server would otherwise accept where possible, so the signature is what fails.
        let changed = match name {
            "Format" => "XML".to_owned(),
            "Timestamp" => {
                gpdiag_wire::encode::percent_encode(&gpdiag_wire::sign::format_timestamp(
                    gpdiag_core::Clock::now(&*app.clock) - Duration::seconds(1),
                ))
            }
            "DBInstanceId" => "gp-alice-new".to_owned(),
            _ => format!("{original}0"),
        };
        req.query = replace_query_value(&req.query, name, &changed);
        assert_refused(&app, req, name).await;
    }
    // An added parameter, and a changed method.
    let mut added = app.sign_v1(&alice(), ACTION, PARAMS);
    added.query.push_str("&DownloadTaskType=SLOW_SQL");
    assert_refused(&app, added, "added parameter").await;
    let mut get = app.sign_v1(&alice(), ACTION, PARAMS);
    get.method = "GET".into();
    assert_refused(&app, get, "method").await;
}

#[tokio::test]
async fn changing_any_signed_acs3_element_is_refused() {
    let app = spawn_app().await;
    let mut query = app.sign_acs3(&alice(), ACTION, PARAMS);
    query.query = "DBInstanceId=gp-alice-new".into();
    assert_refused(&app, query, "query").await;
    for header in [
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
        "authorization",
    ] {
        let mut req = app.sign_acs3(&alice(), ACTION, PARAMS);
        let value = &mut req
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(header))
            .unwrap()
            .1;
        *value = match header {
            "x-acs-action" => "DescribeDBInstanceAttribute".into(),
            "x-acs-date" => gpdiag_wire::sign::format_timestamp(
                gpdiag_core::Clock::now(&*app.clock) - Duration::seconds(1),
            ),
            "authorization" => {
                let last = if value.ends_with('0') { '1' } else { '0' };
                format!("{}{last}", &value[..value.len() - 1])
            }
            _ => format!("{value}0"),
        };
        assert_refused(&app, req, header).await;
    }
    let mut body = app.sign_acs3(&alice(), ACTION, PARAMS);
    body.body = b"x".to_vec();
    assert_refused(&app, body, "body").await;
    let mut get = app.sign_acs3(&alice(), ACTION, PARAMS);
    get.method = "GET".into();
    assert_refused(&app, get, "method").await;
}

#[tokio::test]
async fn throttling_limits_one_account_and_not_the_other() {
    let app = spawn_app_with(|c| {
        c.limits.calls_per_second = 2;
        c.limits.burst = Some(3);
    })
    .await;
    let mut refused = None;
    for _ in 0..10 {
        let a = app.call_v1(&alice(), ACTION, PARAMS).await;
        if a.status != 200 {
            refused = Some(a);
            break;
        }
    }
    let refused = refused.expect("alice was never throttled");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "Throttling.User")
    );
    let retry: u64 = refused
        .header("x-acs-retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");
    assert_eq!(
        app.call_acs3(&bob(), ACTION, &[("DBInstanceId", "gp-bob-ok")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_per_action_limit_counts_all_accounts_and_spares_other_actions() {
    let app = spawn_app_with(|c| c.limits.api_calls_per_second = Some(3)).await;
    let mut refused = None;
    for i in 0..12 {
        let (who, instance) = if i % 2 == 0 {
            (alice(), "gp-alice-ok")
        } else {
            (bob(), "gp-bob-ok")
        };
        let a = app
            .call_v1(&who, ACTION, &[("DBInstanceId", instance)])
            .await;
        if a.status != 200 {
            refused = Some(a);
            break;
        }
    }
    let refused = refused.expect("the action was never limited");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (400, "Throttling.Api")
    );
    assert!(refused.header("x-acs-retry-after").is_some());
    let other = app
        .call_acs3(
            &alice(),
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
}
