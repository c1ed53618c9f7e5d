//! The client side of the load: requests signed by the project's own `gpdiag_wire::sign`, sent
//! over keep-alive HTTP/1.1 connections (one raw hyper connection each, so the connection count
//! is exactly what was asked for).

use anyhow::{ensure, Context};
use bytes::Bytes;
use chrono::Utc;
use gpdiag_wire::sign::{format_timestamp, new_nonce, Credentials};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// The action every measured request calls: cheap in the product, but it goes through the whole
/// path (decode, authenticate, throttle, replay check, availability gate, render).
pub const ACTION: &str = "DescribeDownloadRecords";

pub use gpdiag_wire::sign::SignatureVersion as Signature;

/// One account as the client knows it: a key and the instance it asks about.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub credentials: Credentials,
    pub instance_id: String,
}

impl Account {
    /// A fresh account with a random secret; `index` keeps names and ids distinct.
    pub fn generate(index: usize) -> Self {
        Self {
            name: format!("bench{index}"),
            credentials: Credentials {
                access_key_id: format!("LTAIbench{index:011}"),
                access_key_secret: new_nonce(),
            },
            instance_id: format!("gp-bench{index:04}"),
        }
    }
}

/// Builds signed requests for one server. Every request gets its own nonce and timestamp, so
/// the signing cost is paid per request exactly as a real client pays it.
pub struct RequestFactory {
    /// The authority the connection sends as `Host`; ACS3 signs it.
    host: String,
    accounts: Vec<Account>,
    signature: Signature,
}

impl RequestFactory {
    pub fn new(addr: SocketAddr, accounts: Vec<Account>, signature: Signature) -> Self {
        assert!(!accounts.is_empty(), "at least one account is needed");
        Self {
            host: addr.to_string(),
            accounts,
            signature,
        }
    }

    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// A signed `DescribeDownloadRecords` for account `n` (modulo the number of accounts).
    pub fn build(&self, n: usize) -> anyhow::Result<Request<Full<Bytes>>> {
        let account = &self.accounts[n % self.accounts.len()];
        let params = [("DBInstanceId".to_owned(), account.instance_id.clone())];
        self.build_call(n, ACTION, &params)
    }

    /// A signed call of any action with the given parameters for account `n`.
    pub fn build_call(
        &self,
        n: usize,
        action: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let account = &self.accounts[n % self.accounts.len()];
        let nonce = new_nonce();
        let timestamp = format_timestamp(Utc::now());
        let signed = self.signature.sign_rpc(
            &account.credentials,
            action,
            params,
            &self.host,
            &timestamp,
            &nonce,
        );
        let mut builder = Request::builder()
            .method(signed.method.as_str())
            .uri(format!("/?{}", signed.query));
        // A raw hyper connection adds no Host; ACS3 already carries the one it signed.
        if !signed
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            builder = builder.header(HOST, self.host.as_str());
        }
        for (name, value) in &signed.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(Full::new(Bytes::from(signed.body)))
            .context("cannot build the signed request")
    }
}

/// A finished exchange: the status, the throttling hint and the whole body.
pub struct Reply {
    pub status: StatusCode,
    pub retry_after_ms: Option<u64>,
    pub body: Bytes,
}

impl Reply {
    /// The body for an error report, cut short so a huge page cannot flood the output.
    pub fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(2000).collect()
    }

    /// The `Code` of a JSON error envelope, if the body is one.
    pub fn error_code(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value.get("Code")?.as_str().map(str::to_owned)
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        // Without it Nagle's algorithm can hold a request back for a delayed ACK.
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {addr} failed"))?;
        tokio::spawn(async move {
            // An error here surfaces on the next send, which is where it is counted.
            let _ = connection.await;
        });
        Ok(Self { addr, sender })
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        self.sender
            .ready()
            .await
            .with_context(|| format!("connection to {} closed", self.addr))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("request to {} failed", self.addr))?;
        let status = response.status();
        let retry_after_ms = response
            .headers()
            .get("x-acs-retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading an answer from {} failed", self.addr))?
            .to_bytes();
        Ok(Reply {
            status,
            retry_after_ms,
            body,
        })
    }

    /// A plain unsigned GET, for health checks.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Reply> {
        let request = Request::get(path)
            .header(HOST, self.addr.to_string())
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }
}

/// One signed call for account `n` that must answer 200 with a `Records` array, so a broken
/// signer (or a server refusing every call) cannot produce numbers that look real.
pub async fn check_records(
    addr: SocketAddr,
    factory: &RequestFactory,
    n: usize,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(addr).await?;
    let reply = connection.send(factory.build(n)?).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "the sanity call to {addr} answered HTTP {}: {}",
        reply.status.as_u16(),
        reply.body_text()
    );
    let value: serde_json::Value = serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "the sanity call to {addr} did not answer JSON: {}",
            reply.body_text()
        )
    })?;
    ensure!(
        value
            .get("Records")
            .is_some_and(serde_json::Value::is_array),
        "the sanity call to {addr} answered 200 without a Records array: {}",
        reply.body_text()
    );
    Ok(())
}
