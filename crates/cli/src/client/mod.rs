//! The client commands: signed calls to a gpdiag (or any gpdb 2016-05-03) endpoint, signed with
//! the same `gpdiag_wire::sign` code the server verifies with, and answers read into the same
//! `gpdiag_wire::api` types the server renders from.
//!
//! Every failure is a [`Failure`]: a message for standard error and one of the documented exit
//! codes ([`Exit`], `docs/cli.md`). Data goes to standard output, everything else to standard
//! error.

pub mod call;
pub mod credentials;
pub mod exports;
pub mod instances;
pub mod output;
pub mod progress;
pub mod records;
pub mod time;

use chrono::Utc;
use clap::Args;
use gpdiag_wire::sign::{self, Credentials};
use gpdiag_wire::ErrorCode;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// Where the API is when neither `--endpoint`, `GPDIAG_ENDPOINT` nor the profile says.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// The region `DescribeDBInstances` asks about when neither `--region`,
/// `ALIBABA_CLOUD_REGION_ID` nor the profile says; the server's own default.
pub const DEFAULT_REGION: &str = "cn-hangzhou";

/// How long one API call may take, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a throttled call is tried again, waiting as the server asks each time.
const THROTTLE_RETRIES: u32 = 5;

/// The documented exit codes (`docs/cli.md`). Usage errors found by clap exit with 2 as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything else: writing the output failed, an unexpected answer.
    Other = 1,
    /// A bad argument: an unreadable time, an impossible filter.
    Usage = 2,
    /// No usable credentials: none set, a missing profile, an unreadable credentials file.
    Credentials = 3,
    /// The server refused the key or the signature (wrong key, disabled key, clock skew).
    Auth = 4,
    /// The server refused the request itself (bad parameter, unknown instance, quota,
    /// throttling that did not pass after retries).
    Refused = 5,
    /// The server failed (HTTP 5xx) or answered something that is not the API's.
    Server = 6,
    /// The endpoint could not be reached (connection refused, timeout, DNS).
    Unreachable = 7,
    /// The export ended `failed` (including canceled) on the server.
    ExportFailed = 8,
    /// The file could not be downloaded completely (link refused, cut short, wrong length).
    Download = 9,
    /// Interrupted (Ctrl-C) while waiting or downloading.
    Interrupted = 130,
    /// Standard output was closed early (`gpdiag … | head`); nothing is printed.
    BrokenPipe = 141,
}

/// A failed client command: what to tell the user, and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// Writing to standard output or a file failed.
    pub fn io(what: &str, e: std::io::Error) -> Self {
        Self::new(Exit::Other, format!("{what}: {e}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Outcome<T = ()> = Result<T, Failure>;

/// The codes that mean "your key or signature", not "your request": exit 4 instead of 5.
const AUTH_CODES: [ErrorCode; 8] = [
    ErrorCode::InvalidAccessKeyIdNotFound,
    ErrorCode::InvalidAccessKeyIdInactive,
    ErrorCode::SignatureDoesNotMatch,
    ErrorCode::IncompleteSignature,
    ErrorCode::InvalidSignatureMethod,
    ErrorCode::InvalidTimeStampFormat,
    ErrorCode::InvalidTimeStampExpired,
    ErrorCode::SignatureNonceUsed,
];

/// The exit code for an API error with `code` and HTTP `status`.
pub fn exit_for(code: &str, status: u16) -> Exit {
    if AUTH_CODES.iter().any(|c| c.as_str() == code) {
        Exit::Auth
    } else if status >= 500 {
        Exit::Server
    } else {
        Exit::Refused
    }
}

/// Which signature the client sends.
pub use gpdiag_wire::sign::SignatureVersion as Signature;

/// The options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The API's base URL [default: the profile's endpoint, else http://127.0.0.1:8080].
    #[arg(long, env = "GPDIAG_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Take the key (and endpoint and region, if set) from this profile of the credentials
    /// file instead of ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET.
    #[arg(long, env = "GPDIAG_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// The region DescribeDBInstances lists [default: the profile's region, else cn-hangzhou].
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID", value_name = "REGION")]
    pub region: Option<String>,
    /// The signature to send.
    #[arg(long, value_enum, default_value_t = Signature::Acs3)]
    pub signature: Signature,
    /// Print no progress and no notes on standard error (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// A successful API answer, before it is read into a type.
#[derive(Debug)]
pub struct Reply {
    pub body: String,
}

/// A signed-call client of one endpoint with one key.
pub struct Client {
    http: reqwest::Client,
    /// The endpoint with path `/`.
    base: url::Url,
    /// The authority as the HTTP client sends it in `Host` (ACS3 signs it).
    host: String,
    creds: Credentials,
    signature: Signature,
    pub region: String,
    pub ui: progress::Ui,
}

impl Client {
    /// Resolves the endpoint, the key and the region from the arguments, the environment and
    /// the credentials file.
    pub fn from_args(args: &ClientArgs) -> Outcome<Client> {
        let ui = progress::Ui::new(args.quiet);
        let resolved = credentials::resolve(
            args.profile.as_deref(),
            &|name| std::env::var(name).ok(),
            &ui,
        )?;
        let endpoint = args
            .endpoint
            .clone()
            .or(resolved.endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let region = args
            .region
            .clone()
            .or(resolved.region)
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let (base, host) = parse_endpoint(&endpoint)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("gpdiag-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Between two reads of a body; a whole download may take as long as it needs.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Failure::new(Exit::Other, format!("cannot start HTTP: {e}")))?;
        Ok(Client {
            http,
            base,
            host,
            creds: resolved.credentials,
            signature: args.signature,
            region,
            ui,
        })
    }

    /// One signed call; the body of a success. API errors become failures that carry the
    /// server's `Code` and `Message`. A throttled call is tried again after the wait the server
    /// asks for (`x-acs-retry-after`), a few times.
    pub async fn call_raw(&self, action: &str, params: &[(String, String)]) -> Outcome<Reply> {
        let mut attempt = 0;
        loop {
            let response = self.send(action, params).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("x-acs-retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = response.text().await.map_err(|e| {
                Failure::new(
                    Exit::Unreachable,
                    format!("{action}: the answer from {} was cut short: {e}", self.base),
                )
            })?;
            let envelope = ErrorEnvelope::parse(&body);
            if (200..300).contains(&status) && envelope.is_none() {
                return Ok(Reply { body });
            }
            let Some(error) = envelope else {
                return Err(Failure::new(
                    Exit::Server,
                    format!(
                        "{action}: {} answered HTTP {status}, which is not an API answer: {}",
                        self.base,
                        excerpt(&body)
                    ),
                ));
            };
            if error.code.starts_with("Throttling") && attempt < THROTTLE_RETRIES {
                if let Some(ms) = retry_after {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(ms.clamp(10, 10_000))).await;
                    continue;
                }
            }
            return Err(error.failure(action, status));
        }
    }

    /// One signed call, its answer read as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Outcome<T> {
        let reply = self.call_raw(action, params).await?;
        serde_json::from_str(&reply.body).map_err(|e| {
            Failure::new(
                Exit::Server,
                format!(
                    "{action}: the answer is not what the API documents ({e}): {}",
                    excerpt(&reply.body)
                ),
            )
        })
    }

    /// Signs afresh (new nonce and time) and sends: `POST /` with the parameters in the query
    /// and an empty body, as the Tea SDKs send RPC calls.
    async fn send(&self, action: &str, params: &[(String, String)]) -> Outcome<reqwest::Response> {
        let timestamp = sign::format_timestamp(Utc::now());
        let nonce = sign::new_nonce();
        let signed =
            self.signature
                .sign_rpc(&self.creds, action, params, &self.host, &timestamp, &nonce);
        let mut url = self.base.clone();
        if !signed.query.is_empty() {
            // Already RFC 3986 encoded, which `set_query` leaves as it is.
            url.set_query(Some(&signed.query));
        }
        let mut request = self.http.post(url).timeout(CALL_TIMEOUT).body(signed.body);
        for (name, value) in &signed.headers {
            // The HTTP client derives Host from the URL exactly as `host` was computed.
            if !name.eq_ignore_ascii_case("host") {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        request
            .send()
            .await
            .map_err(|e| self.unreachable(action, &e))
    }

    /// GET of an absolute URL (a download link), unsigned: the link carries its own signature.
    /// With `from`, only the bytes from that offset on (`Range: bytes=FROM-`), and with
    /// `if_range` (the ETag of an earlier answer) only if the file is still that one: a server
    /// that cannot tell answers the whole file instead.
    pub async fn fetch(
        &self,
        url: &str,
        from: Option<u64>,
        if_range: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self.http.get(url);
        if let Some(from) = from {
            request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
            if let Some(tag) = if_range {
                request = request.header(reqwest::header::IF_RANGE, tag);
            }
        }
        request.send().await
    }

    fn unreachable(&self, action: &str, e: &reqwest::Error) -> Failure {
        Failure::new(
            Exit::Unreachable,
            format!(
                "{action}: cannot reach {}: {} (set --endpoint or GPDIAG_ENDPOINT)",
                self.base,
                describe_http_error(e)
            ),
        )
    }
}

/// `reqwest` errors name the URL (which for a download link carries its signature) and hide
/// the cause in the source chain; this says the cause alone.
fn describe_http_error(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading"
    } else {
        "request failed"
    };
    match causes.last() {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_owned(),
    }
}

/// The API's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEnvelope {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl ErrorEnvelope {
    /// The envelope if `body` is one: JSON with a string `Code`.
    pub fn parse(body: &str) -> Option<ErrorEnvelope> {
        let value: serde_json::Value = serde_json::from_str(body).ok()?;
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        Some(ErrorEnvelope {
            code: text("Code")?,
            message: text("Message").unwrap_or_default(),
            request_id: text("RequestId"),
        })
    }

    pub fn failure(&self, action: &str, status: u16) -> Failure {
        let mut message = format!(
            "{action} failed (HTTP {status}): {}: {}",
            self.code, self.message
        );
        if let Some(id) = &self.request_id {
            message.push_str(&format!("\n  request ID: {id}"));
        }
        if exit_for(&self.code, status) == Exit::Auth {
            message.push_str(
                "\n  check the key (ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET or --profile) and this machine's clock",
            );
        }
        Failure::new(exit_for(&self.code, status), message)
    }
}

/// `http://host:port` (a scheme is optional: `127.0.0.1:8080` means http) → the URL with path
/// `/` and the `Host` authority the HTTP client will send for it.
pub fn parse_endpoint(endpoint: &str) -> Outcome<(url::Url, String)> {
    let text = endpoint.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let bad = |why: &str| Failure::usage(format!("the endpoint {endpoint:?} is not usable: {why}"));
    let mut url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("expected http:// or https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(bad(
            "the API is at the root: give scheme, host and port only",
        ));
    }
    url.set_path("/");
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    // `Url::port` is None for the scheme's default port, and then the client sends no port.
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok((url, authority))
}

/// At most 300 characters of a body, for error messages.
pub fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    let mut out: String = trimmed.chars().take(300).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    out
}

/// `(name, value)` pairs as the signer takes them.
pub fn pairs<const N: usize>(list: [(&str, &str); N]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_normalise_to_a_root_url_and_the_host_the_client_sends() {
        for (input, url, host) in [
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/",
                "127.0.0.1:8080",
            ),
            ("127.0.0.1:9", "http://127.0.0.1:9/", "127.0.0.1:9"),
            (
                "https://gpdiag.example.com/",
                "https://gpdiag.example.com/",
                "gpdiag.example.com",
            ),
            ("http://h:80", "http://h/", "h"),
            ("http://[::1]:8080", "http://[::1]:8080/", "[::1]:8080"),
        ] {
            let (u, h) = parse_endpoint(input).unwrap();
            assert_eq!((u.as_str(), h.as_str()), (url, host), "{input}");
        }
        for bad in [
            "ftp://h",
            "http://u:p@h",
            "http://h/api",
            "http://h/?x=1",
            "http://",
        ] {
            let e = parse_endpoint(bad).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{bad}");
        }
    }

    #[test]
    fn auth_codes_exit_4_other_refusals_5_server_errors_6() {
        assert_eq!(exit_for("InvalidAccessKeyId.NotFound", 404), Exit::Auth);
        assert_eq!(exit_for("SignatureDoesNotMatch", 400), Exit::Auth);
        assert_eq!(exit_for("InvalidTimeStamp.Expired", 400), Exit::Auth);
        assert_eq!(exit_for("InvalidDBInstanceId.NotFound", 404), Exit::Refused);
        assert_eq!(exit_for("Throttling.User", 400), Exit::Refused);
        assert_eq!(exit_for("InternalError", 500), Exit::Server);
        assert_eq!(exit_for("ServiceUnavailable", 503), Exit::Server);
    }

    #[test]
    fn error_envelopes_are_recognised_by_their_code() {
        let e = ErrorEnvelope::parse(
            r#"{"RequestId":"R","HostId":"h","Code":"MissingParameter","Message":"m","Recommend":"r"}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            ErrorEnvelope {
                code: "MissingParameter".into(),
                message: "m".into(),
                request_id: Some("R".into())
            }
        );
        assert!(ErrorEnvelope::parse(r#"{"RequestId":"R","Records":[]}"#).is_none());
        assert!(ErrorEnvelope::parse("<html>").is_none());
        let f = e.failure("X", 400);
        assert_eq!(f.exit, Exit::Refused);
        assert!(f.message.contains("MissingParameter: m"), "{}", f.message);
    }
}
