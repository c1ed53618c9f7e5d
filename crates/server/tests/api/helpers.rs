//! The end-to-end harness: the real server on port 0 with a temporary data directory and a
//! manual clock, plus a signing client built on `gpdiag_wire::sign`.

use chrono::Utc;
use gpdiag_core::ManualClock;
use gpdiag_server::config::{AccountConfig, InstanceConfig};
use gpdiag_server::{Application, Config};
use gpdiag_wire::sign::{self, Credentials, SignedRequest};
use std::sync::Arc;

pub struct TestApp {
    pub state: std::sync::Arc<gpdiag_server::state::AppState>,
    pub address: String,
    pub host: String,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub config: Config,
    pub _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub fn alice() -> Credentials {
    Credentials {
        access_key_id: "LTAIalice0000001".into(),
        access_key_secret: "alice-secret".into(),
    }
}

pub fn bob() -> Credentials {
    Credentials {
        access_key_id: "LTAIbob000000001".into(),
        access_key_secret: "bob-secret".into(),
    }
}

fn instance(
    id: &str,
    account: &str,
    core_version: &str,
    mode: &str,
    status: &str,
) -> InstanceConfig {
    InstanceConfig {
        id: id.into(),
        account: account.into(),
        region: None,
        engine_version: "6.0".into(),
        core_version: core_version.into(),
        mode: mode.into(),
        status: status.into(),
        description: format!("{id} description"),
        collect: None,
    }
}

/// Two accounts; alice owns elastic, old-version and classic instances; bob owns one.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.storage.url = format!("sqlite://{}/gpdiag.db", dir.display());
    config.objects.url = format!("file://{}/objects", dir.display());
    for (name, creds) in [("alice", alice()), ("bob", bob())] {
        config.accounts.push(AccountConfig {
            name: name.into(),
            access_key_id: creds.access_key_id,
            access_key_secret: creds.access_key_secret,
        });
    }
    config.instances = vec![
        instance(
            "gp-alice-ok",
            "alice",
            "mm.v6.3.10.1-202207141918",
            "StorageElastic",
            "Running",
        ),
        instance(
            "gp-alice-new",
            "alice",
            "7.0.1",
            "StorageElastic",
            "Creating",
        ),
        instance(
            "gp-alice-old",
            "alice",
            "6.3.9.0",
            "StorageElastic",
            "Running",
        ),
        instance(
            "gp-alice-classic",
            "alice",
            "6.3.10.1",
            "Classic",
            "Running",
        ),
        instance("gp-bob-ok", "bob", "6.3.10.1", "StorageElastic", "Running"),
    ];
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = Application::build_with_clock(config.clone(), clock.clone())
        .await
        .expect("the app builds");
    let port = app.port();
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        state,
        address: format!("http://127.0.0.1:{port}"),
        host: format!("127.0.0.1:{port}"),
        clock,
        http: reqwest::Client::new(),
        config,
        _dir: dir,
        _shutdown: tx,
    }
}

pub fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A decoded answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The error code, asserting the envelope's shape on the way (JSON or XML).
    pub fn code(&self) -> String {
        if self.body.starts_with("<?xml") {
            for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
                assert!(
                    self.body.contains(&format!("<{key}>")),
                    "XML error lacks {key}: {}",
                    self.body
                );
            }
            let start = self.body.find("<Code>").unwrap() + "<Code>".len();
            let end = self.body.find("</Code>").unwrap();
            return self.body[start..end].to_owned();
        }
        let v = self.json();
        for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
            assert!(
                v.get(key).is_some(),
                "error body lacks {key}: {}",
                self.body
            );
        }
        v["Code"].as_str().unwrap().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub fn timestamp(&self) -> String {
        sign::format_timestamp(gpdiag_core::Clock::now(&*self.clock))
    }

    pub fn sign_v1(
        &self,
        creds: &Credentials,
        action: &str,
        params: &[(&str, &str)],
    ) -> SignedRequest {
        sign::sign_v1(
            creds,
            "POST",
            action,
            &pairs(params),
            &self.timestamp(),
            &sign::new_nonce(),
        )
    }

    pub fn sign_acs3(
        &self,
        creds: &Credentials,
        action: &str,
        params: &[(&str, &str)],
    ) -> SignedRequest {
        sign::sign_acs3(
            creds,
            "POST",
            action,
            &pairs(params),
            &self.host,
            &self.timestamp(),
            &sign::new_nonce(),
            b"",
        )
    }

    /// Sends a signed request exactly as signed.
    pub async fn send(&self, req: &SignedRequest) -> Answer {
        let url = if req.query.is_empty() {
            format!("{}/", self.address)
        } else {
            format!("{}/?{}", self.address, req.query)
        };
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut builder = self.http.request(method, url).body(req.body.clone());
        for (name, value) in &req.headers {
            // reqwest sets Host itself from the URL, identically.
            if name != "host" {
                builder = builder.header(name, value);
            }
        }
        self.answer(builder).await
    }

    pub async fn answer(&self, builder: reqwest::RequestBuilder) -> Answer {
        let response = builder.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("a body");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn call_v1(
        &self,
        creds: &Credentials,
        action: &str,
        params: &[(&str, &str)],
    ) -> Answer {
        self.send(&self.sign_v1(creds, action, params)).await
    }

    pub async fn call_acs3(
        &self,
        creds: &Credentials,
        action: &str,
        params: &[(&str, &str)],
    ) -> Answer {
        self.send(&self.sign_acs3(creds, action, params)).await
    }

    /// The same call under both signature schemes.
    pub async fn call_both(
        &self,
        creds: &Credentials,
        action: &str,
        params: &[(&str, &str)],
    ) -> [Answer; 2] {
        [
            self.call_v1(creds, action, params).await,
            self.call_acs3(creds, action, params).await,
        ]
    }
}

/// The common v1 parameters (with `Format=JSON`) followed by `business`, unsigned, for tests
/// that shape a v1 request themselves; finish with [`with_v1_signature`].
pub fn v1_pairs(
    app: &TestApp,
    creds: &Credentials,
    action: &str,
    business: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut all = pairs(&[
        ("Action", action),
        ("Format", "JSON"),
        ("Version", gpdiag_wire::API_VERSION),
        ("Timestamp", &app.timestamp()),
        ("SignatureNonce", &sign::new_nonce()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", &creds.access_key_id),
    ]);
    all.extend(pairs(business));
    all
}

/// `params` plus the v1 `Signature` over all of them for `method`.
pub fn with_v1_signature(
    creds: &Credentials,
    method: &str,
    mut params: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let string_to_sign = sign::v1_string_to_sign(method, &params);
    let signature = sign::v1_signature(&creds.access_key_secret, &string_to_sign);
    params.push(("Signature".into(), signature));
    params
}

impl TestApp {
    /// `GET /healthz` on a fresh connection: the server is still up.
    pub async fn healthy(&self) -> bool {
        match self
            .http
            .get(format!("{}/healthz", self.address))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r.status() == reqwest::StatusCode::OK,
            Err(_) => false,
        }
    }
}
