//! The official SDK's captured requests (../shared/vectors), replayed byte for byte against the
//! real server with its clock set to the capture time: the full verification path, not just the
//! signing functions, accepts them, and refuses them once changed, replayed or late.

use crate::helpers::*;
use crate::raw_http::{exchange, RawOutcome};
use chrono::{DateTime, Duration, NaiveDateTime};
use gpdiag_server::config::{AccountConfig, InstanceConfig};
use serde_json::Value;

struct Vector {
    label: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
    time: DateTime<chrono::Utc>,
}

fn vectors() -> Vec<Vector> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("../shared/vectors is beside the repository") {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".vector.json") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let request = &v["request"];
        let headers: Vec<(String, String)> = request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let stamp = headers
            .iter()
            .find(|(n, _)| n == "x-acs-date")
            .map(|(_, v)| v.clone())
            .or_else(|| v["decoded_query"]["Timestamp"].as_str().map(str::to_owned))
            .unwrap();
        out.push(Vector {
            label: v["label"].as_str().unwrap().to_owned(),
            method: request["method"].as_str().unwrap().to_owned(),
            target: request["request_target"].as_str().unwrap().to_owned(),
            headers,
            body: request["raw_body"].as_str().unwrap().to_owned(),
            time: NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%dT%H:%M:%SZ")
                .unwrap()
                .and_utc(),
        });
    }
    assert!(out.len() >= 14, "only {} vectors found", out.len());
    out
}

impl Vector {
    /// The request as the SDK sent it, with its own Host header (which ACS3 signs).
    fn bytes(&self, target: &str) -> Vec<u8> {
        let mut head = format!("{} {target} HTTP/1.1\r\n", self.method);
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("content-length") {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

async fn vector_app() -> TestApp {
    spawn_app_with(|c| {
        c.accounts.push(AccountConfig {
            name: "sdk".into(),
            access_key_id: "testid".into(),
            access_key_secret: "testsecret".into(),
        });
        c.instances.push(InstanceConfig {
            id: "gp-test0001".into(),
            account: "sdk".into(),
            region: None,
            engine_version: "6.0".into(),
            core_version: "6.3.10.1".into(),
            mode: "StorageElastic".into(),
            status: "Running".into(),
            description: String::new(),
            collect: None,
        });
    })
    .await
}

async fn send(app: &TestApp, v: &Vector, target: &str) -> Answer {
    match exchange(&app.host, v.bytes(target), false).await {
        RawOutcome::Answered(a) => a,
        other => panic!("{}: no answer: {other:?}", v.label),
    }
}

#[tokio::test]
async fn every_captured_sdk_request_is_accepted_at_its_capture_time() {
    for v in vectors() {
        let app = vector_app().await;
        app.clock.set(v.time + Duration::seconds(3));
        let answer = send(&app, &v, &v.target).await;
        // Authentication passed when the answer is the action's own: a success, or a refusal
        // of its parameters (the captures of error answers name a missing instance; one capture
        // asks for PageSize=20, which only 30, 50 and 100 satisfy).
        if answer.status != 200 {
            let code = answer.code();
            assert!(
                ["InvalidDBInstanceId.NotFound", "InvalidParameter"].contains(&code.as_str()),
                "{}: {}",
                v.label,
                answer.body
            );
        }
        // Replaying the same bytes is refused.
        let again = send(&app, &v, &v.target).await;
        assert_eq!(again.code(), "SignatureNonceUsed", "{}", v.label);
    }
}

#[tokio::test]
async fn captured_requests_are_refused_when_late_or_changed() {
    for v in vectors() {
        let app = vector_app().await;
        app.clock.set(v.time + Duration::minutes(16));
        assert_eq!(
            send(&app, &v, &v.target).await.code(),
            "InvalidTimeStamp.Expired",
            "{}",
            v.label
        );

        app.clock.set(v.time);
        // Change a signed business parameter, keeping the request well formed.
        let changed = v
            .target
            .replace("DBInstanceId=gp-", "DBInstanceId=gp-x")
            .replace("RegionId=cn-", "RegionId=cnx-");
        assert_ne!(changed, v.target, "{}", v.label);
        let answer = send(&app, &v, &changed).await;
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (400, "SignatureDoesNotMatch"),
            "{}",
            v.label
        );
    }
}
