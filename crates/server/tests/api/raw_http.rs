//! What the Python Tea SDK never sends but other clients do (GET, form bodies, XML, odd
//! spellings, non-ASCII), plus a raw-socket HTTP client for requests no HTTP library would send.
//! `bad_input` uses the same client.

use crate::helpers::*;
use gpdiag_wire::encode::encode_query;
use gpdiag_wire::sign;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ------------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: exact bytes out, a bounded wait for the answer.
// ------------------------------------------------------------------------------------------------

/// Every raw exchange ends within this long, so a server that hangs fails the test.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(5);

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` equal to the body.
    Exact,
    /// `Transfer-Encoding: chunked`, 64 KiB chunks, no `Content-Length`.
    Chunked,
    /// `Content-Length: n` whatever the body is (a lying client).
    Claim(usize),
}

/// A request written byte for byte. `host` is added unless a `host` header is given or
/// `omit_host` is set; `Connection: close` is always added.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    /// The request target as sent, e.g. `/?a=b`; any bytes.
    pub target: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub framing: Framing,
    pub omit_host: bool,
    /// Shut the write side down after sending (the client says it is done).
    pub half_close: bool,
}

impl RawRequest {
    pub fn new(method: &str, target: impl Into<Vec<u8>>) -> Self {
        Self {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Exact,
            omit_host: false,
            half_close: false,
        }
    }

    /// `POST /?query` with an empty body, as the Tea v2 and old core SDKs send.
    pub fn post_query(query: &str) -> Self {
        Self::new("POST", target(query))
    }

    /// `POST /?query` with a form body, as pop-core sends (with an empty query).
    pub fn post_form(query: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", target(query))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// A request signed by `gpdiag_wire::sign`, exactly as signed (its own `host` included).
    pub fn from_signed(req: &sign::SignedRequest) -> Self {
        let mut raw = Self::new(&req.method, target(&req.query)).body(req.body.clone());
        for (name, value) in &req.headers {
            raw = raw.header(name, value.as_bytes());
        }
        raw
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Drops every header called `name` (any case).
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Replaces the value of header `name` (any case), adding it when absent.
    pub fn set_header(self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.without_header(name).header(name, value)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    pub fn bytes(&self, host: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 512);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let has_host = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"));
        if !has_host && !self.omit_host {
            out.extend_from_slice(format!("host: {host}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match self.framing {
            Framing::Exact => {
                out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes())
            }
            Framing::Claim(n) => {
                out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes())
            }
            Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        match self.framing {
            Framing::Chunked => {
                for chunk in self.body.chunks(64 * 1024) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::Exact | Framing::Claim(_) => out.extend_from_slice(&self.body),
        }
        out
    }
}

/// `/` plus `?query` when there is one.
pub fn target(query: &str) -> Vec<u8> {
    if query.is_empty() {
        b"/".to_vec()
    } else {
        format!("/?{query}").into_bytes()
    }
}

/// What came back from a raw exchange.
#[derive(Debug)]
pub enum RawOutcome {
    /// A complete HTTP response.
    Answered(Answer),
    /// The server closed the connection without a byte.
    Closed,
    /// The connection broke (reset) or the response was cut short / unparsable.
    Broken(String),
    /// Nothing conclusive within [`RAW_TIMEOUT`].
    TimedOut,
}

impl RawOutcome {
    pub fn answer(self, what: &str) -> Answer {
        match self {
            RawOutcome::Answered(a) => a,
            RawOutcome::Broken(why) => panic!("{what}: expected an HTTP answer: {why}"),
            other => panic!("{what}: expected an HTTP answer, got {other:?}"),
        }
    }
}

/// Writes the request (concurrently, so a server that answers before reading a large body is
/// still heard) and reads one response, all within [`RAW_TIMEOUT`].
pub async fn send_raw(app: &TestApp, req: &RawRequest) -> RawOutcome {
    exchange(&app.host, req.bytes(&app.host), req.half_close).await
}

pub async fn exchange(host: &str, bytes: Vec<u8>, half_close: bool) -> RawOutcome {
    let stream = match tokio::time::timeout(RAW_TIMEOUT, TcpStream::connect(host)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return RawOutcome::Broken(format!("connect: {e}")),
        Err(_) => return RawOutcome::TimedOut,
    };
    let (mut reader, mut writer) = stream.into_split();
    // The writer half is handed back, not dropped: dropping it would shut the write side down
    // and tell the server the body is complete.
    let writing = tokio::spawn(async move {
        let result = writer.write_all(&bytes).await;
        if half_close && result.is_ok() {
            let _ = writer.shutdown().await;
        }
        (writer, result)
    });
    let outcome = match tokio::time::timeout(RAW_TIMEOUT, read_response(&mut reader)).await {
        Ok(outcome) => outcome,
        Err(_) => RawOutcome::TimedOut,
    };
    writing.abort();
    outcome
}

async fn read_response(reader: &mut tokio::net::tcp::OwnedReadHalf) -> RawOutcome {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(done) = parse_response(&buf, false) {
            return done;
        }
        match reader.read(&mut chunk).await {
            Ok(0) => {
                if buf.is_empty() {
                    return RawOutcome::Closed;
                }
                return parse_response(&buf, true).unwrap_or_else(|| {
                    RawOutcome::Broken(format!(
                        "cut short after {} bytes: {:?}",
                        buf.len(),
                        String::from_utf8_lossy(&buf[..buf.len().min(300)])
                    ))
                });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return parse_response(&buf, true)
                    .unwrap_or_else(|| RawOutcome::Broken(format!("read: {e}")))
            }
        }
    }
}

/// A complete response from `buf`, or `None` while more bytes are needed. At EOF a response
/// without a length ends with the connection.
fn parse_response(buf: &[u8], eof: bool) -> Option<RawOutcome> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let rest = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
    {
        Some(s) => s,
        None => return Some(RawOutcome::Broken(format!("status line {status_line:?}"))),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Some(RawOutcome::Broken(format!("header line {line:?}")));
        };
        let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
            reqwest::header::HeaderValue::from_str(value.trim()),
        ) else {
            return Some(RawOutcome::Broken(format!("header line {line:?}")));
        };
        headers.append(name, value);
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawOutcome::Answered(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// The body of a complete chunked message, or `None` if incomplete.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

// ------------------------------------------------------------------------------------------------
// Small builders for these tests
// ------------------------------------------------------------------------------------------------

/// A signed v1 parameter list (alice) for `method`, with `edit` applied before signing.
fn signed(
    app: &TestApp,
    method: &str,
    action: &str,
    business: &[(&str, &str)],
    edit: impl FnOnce(&mut Vec<(String, String)>),
) -> Vec<(String, String)> {
    let mut params = v1_pairs(app, &alice(), action, business);
    edit(&mut params);
    with_v1_signature(&alice(), method, params)
}

fn set(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    match params.iter_mut().find(|(n, _)| n == name) {
        Some(p) => p.1 = value.to_owned(),
        None => params.push((name.to_owned(), value.to_owned())),
    }
}

async fn post_query(app: &TestApp, params: &[(String, String)]) -> Answer {
    send_raw(app, &RawRequest::post_query(&encode_query(params)))
        .await
        .answer("POST with a query")
}

fn ids(body: &Value) -> Vec<String> {
    body["Items"]["DBInstance"]
        .as_array()
        .unwrap_or_else(|| panic!("no Items.DBInstance: {body}"))
        .iter()
        .map(|i| i["DBInstanceId"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_ok(answer: &Answer, what: &str) -> Value {
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    let body = answer.json();
    assert!(body.get("Code").is_none(), "{what}: {}", answer.body);
    body
}

fn assert_error(answer: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (status, code),
        "{what}: {}",
        answer.body
    );
}

const ALICE_IDS: [&str; 4] = [
    "gp-alice-classic",
    "gp-alice-new",
    "gp-alice-ok",
    "gp-alice-old",
];

// ------------------------------------------------------------------------------------------------
// The raw client itself
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_raw_client_reproduces_a_signed_request() {
    let app = spawn_app().await;
    for req in [
        app.sign_v1(
            &alice(),
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
        ),
        app.sign_acs3(
            &alice(),
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
        ),
    ] {
        let answer = send_raw(&app, &RawRequest::from_signed(&req))
            .await
            .answer("signed");
        assert_eq!(ids(&assert_ok(&answer, "raw")), ALICE_IDS);
    }
}

// ------------------------------------------------------------------------------------------------
// GET and form bodies
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_with_everything_in_the_query_is_accepted() {
    let app = spawn_app().await;
    let req = sign::sign_v1(
        &alice(),
        "GET",
        "DescribeDBInstances",
        &pairs(&[("RegionId", "cn-hangzhou")]),
        &app.timestamp(),
        &sign::new_nonce(),
    );
    assert_eq!(req.method, "GET");
    let answer = app.send(&req).await;
    assert_eq!(ids(&assert_ok(&answer, "GET")), ALICE_IDS);
    // A GET signature does not verify as POST, and the other way round.
    let mut as_post = req.clone();
    as_post.method = "POST".into();
    assert_error(
        &app.send(&as_post).await,
        400,
        "SignatureDoesNotMatch",
        "GET-signed sent as POST",
    );
}

#[tokio::test]
async fn a_form_body_carries_all_parameters_as_pop_core_sends_them() {
    let app = spawn_app().await;
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstances",
        &[("RegionId", "cn-hangzhou")],
        |_| {},
    );
    let form = |body: String| {
        app.http
            .post(format!("{}/", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-acs-action", "DescribeDBInstances")
            .header("x-acs-version", gpdiag_wire::API_VERSION)
            .body(body)
    };
    let answer = app.answer(form(encode_query(&params))).await;
    assert_eq!(ids(&assert_ok(&answer, "form body")), ALICE_IDS);

    // With a charset parameter on the content type too.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok")],
        |_| {},
    );
    let answer = app
        .answer(
            app.http
                .post(format!("{}/", app.address))
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )
                .body(encode_query(&params)),
        )
        .await;
    assert_ok(&answer, "form body with charset");
}

#[tokio::test]
async fn parameters_split_between_query_and_body_are_signed_together() {
    let app = spawn_app().await;
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstances",
        &[("RegionId", "cn-hangzhou"), ("PageSize", "50")],
        |_| {},
    );
    // Every other parameter in the query, the rest (Signature included) in the body.
    let (query, body): (Vec<_>, Vec<_>) = params
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, (n, _))| i % 2 == 0 && n != "Signature");
    let strip =
        |v: Vec<(usize, (String, String))>| v.into_iter().map(|(_, p)| p).collect::<Vec<_>>();
    let (query, body) = (strip(query), strip(body));
    assert!(query.iter().any(|(n, _)| n == "Action"));
    assert!(body.iter().any(|(n, _)| n == "Signature"));
    let answer = send_raw(
        &app,
        &RawRequest::post_form(&encode_query(&query), encode_query(&body)),
    )
    .await
    .answer("split");
    let body = assert_ok(&answer, "split between query and body");
    assert_eq!(ids(&body), ALICE_IDS);

    // Only the signature in the query, everything else in the body.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstances",
        &[("RegionId", "cn-hangzhou")],
        |_| {},
    );
    let (sig, rest): (Vec<_>, Vec<_>) = params.into_iter().partition(|(n, _)| n == "Signature");
    let answer = send_raw(
        &app,
        &RawRequest::post_form(&encode_query(&sig), encode_query(&rest)),
    )
    .await
    .answer("signature in the query");
    assert_ok(&answer, "signature alone in the query");
}

#[tokio::test]
async fn a_parameter_in_both_query_and_body_is_refused() {
    let app = spawn_app().await;
    for (body_value, what) in [("cn-hangzhou", "same value"), ("cn-beijing", "other value")] {
        let params = signed(
            &app,
            "POST",
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
            |_| {},
        );
        let body = encode_query(&pairs(&[("RegionId", body_value)]));
        let answer = send_raw(&app, &RawRequest::post_form(&encode_query(&params), body))
            .await
            .answer(what);
        assert_error(&answer, 400, "InvalidParameter", what);
        assert!(
            answer.json()["Message"]
                .as_str()
                .unwrap()
                .contains("\"RegionId\""),
            "{}",
            answer.body
        );
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_form_is_not_parameters() {
    let app = spawn_app().await;
    // v1 signs parameters only; an octet-stream body is neither decoded nor signed.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok")],
        |_| {},
    );
    let answer = send_raw(
        &app,
        &RawRequest::post_query(&encode_query(&params))
            .header("content-type", "application/octet-stream")
            .body(&b"DBInstanceId=gp-bob-ok&%zz"[..]),
    )
    .await
    .answer("octet-stream");
    assert_eq!(
        assert_ok(&answer, "octet-stream body")["Items"]["DBInstanceAttribute"][0]["DBInstanceId"],
        "gp-alice-ok"
    );
}

// ------------------------------------------------------------------------------------------------
// XML
// ------------------------------------------------------------------------------------------------

/// A parsed XML element.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

/// Parses a whole document with quick-xml: a declaration, then exactly one root element.
fn parse_xml(doc: &str) -> Node {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    let mut saw_decl = false;
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("bad XML ({e}): {doc}"))
        {
            Event::Decl(d) => {
                assert!(
                    stack.is_empty() && root.is_none(),
                    "late declaration: {doc}"
                );
                let encoding = d.encoding().and_then(Result::ok).map(|e| e.into_owned());
                assert_eq!(encoding.as_deref(), Some(&b"UTF-8"[..]), "{doc}");
                saw_decl = true;
            }
            Event::Start(e) => stack.push(Node {
                name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
                text: String::new(),
                children: Vec::new(),
            }),
            Event::Empty(e) => {
                let node = Node {
                    name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
                    text: String::new(),
                    children: Vec::new(),
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .unwrap_or_else(|e| panic!("bad text ({e}): {doc}"));
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&text),
                    None => assert!(text.trim().is_empty(), "text outside the root: {doc}"),
                }
            }
            Event::End(_) => {
                let node = stack.pop().expect("balanced");
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => {
                        assert!(root.is_none(), "two roots: {doc}");
                        root = Some(node);
                    }
                }
            }
            Event::Eof => break,
            other => panic!("unexpected XML event {other:?}: {doc}"),
        }
    }
    assert!(saw_decl, "no XML declaration: {doc}");
    assert!(stack.is_empty(), "unclosed elements: {doc}");
    root.unwrap_or_else(|| panic!("no root element: {doc}"))
}

impl Node {
    fn child(&self, name: &str) -> &Node {
        self.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name))
    }

    /// Leaves in document order as (path, text); an element without children is a leaf.
    fn leaves(&self, path: &str, out: &mut Vec<(String, String)>) {
        let path = format!("{path}/{}", self.name);
        if self.children.is_empty() {
            out.push((path, self.text.clone()));
        } else {
            assert!(self.text.trim().is_empty(), "mixed content in {path}");
            for c in &self.children {
                c.leaves(&path, out);
            }
        }
    }
}

/// The same leaves for a JSON value rendered as the server renders XML: an array repeats its
/// key, a scalar is its text, an object or array with nothing inside is one empty leaf.
fn json_leaves(name: &str, value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Array(items) => {
            for item in items {
                json_leaves(name, item, path, out);
            }
        }
        Value::Object(map) => {
            let here = format!("{path}/{name}");
            let before = out.len();
            for (k, v) in map {
                json_leaves(k, v, &here, out);
            }
            if out.len() == before {
                out.push((here, String::new()));
            }
        }
        Value::String(s) => out.push((format!("{path}/{name}"), s.clone())),
        Value::Number(n) => out.push((format!("{path}/{name}"), n.to_string())),
        Value::Bool(b) => out.push((format!("{path}/{name}"), b.to_string())),
        Value::Null => out.push((format!("{path}/{name}"), String::new())),
    }
}

/// XML and JSON answers to the same call say the same things, `RequestId` apart.
fn assert_same_content(xml: &Node, json: &Value) {
    let mut from_xml = Vec::new();
    xml.leaves("", &mut from_xml);
    let mut from_json = Vec::new();
    json_leaves(&xml.name, json, "", &mut from_json);
    let drop_id = |v: Vec<(String, String)>| {
        v.into_iter()
            .filter(|(p, _)| !p.ends_with("/RequestId"))
            .collect::<Vec<_>>()
    };
    assert_eq!(drop_id(from_xml), drop_id(from_json));
}

async fn with_format(
    app: &TestApp,
    format: &str,
    action: &str,
    business: &[(&str, &str)],
) -> Answer {
    post_query(
        app,
        &signed(app, "POST", action, business, |p| set(p, "Format", format)),
    )
    .await
}

#[tokio::test]
async fn xml_success_with_several_elements_matches_json() {
    let app = spawn_app().await;
    let business = [("RegionId", "cn-hangzhou")];
    let json_answer = with_format(&app, "JSON", "DescribeDBInstances", &business).await;
    let json = assert_ok(&json_answer, "JSON");
    assert_eq!(ids(&json), ALICE_IDS);
    for spelling in ["XML", "xml", "Xml"] {
        let answer = with_format(&app, spelling, "DescribeDBInstances", &business).await;
        assert_eq!(answer.status, 200, "{spelling}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            Some("text/xml;charset=utf-8")
        );
        assert!(answer.body.starts_with("<?xml"), "{}", answer.body);
        let root = parse_xml(&answer.body);
        assert_eq!(root.name, "DescribeDBInstancesResponse");
        assert_eq!(root.children[0].name, "RequestId", "{}", answer.body);
        assert_eq!(
            Some(root.children[0].text.as_str()),
            answer.header("x-acs-request-id")
        );
        assert!(root.children.iter().all(|c| c.name != "Code"));
        let items = root.child("Items");
        assert_eq!(items.children.len(), 4, "{}", answer.body);
        assert!(items.children.iter().all(|c| c.name == "DBInstance"));
        let xml_ids: Vec<_> = items
            .children
            .iter()
            .map(|i| i.child("DBInstanceId").text.clone())
            .collect();
        assert_eq!(xml_ids, ALICE_IDS);
        assert_eq!(root.child("TotalRecordCount").text, "4");
        assert_same_content(&root, &json);
    }
}

#[tokio::test]
async fn xml_success_of_the_other_actions_matches_json() {
    let app = spawn_app().await;
    for (action, business) in [
        (
            "DescribeDBInstanceAttribute",
            [("DBInstanceId", "gp-alice-ok")],
        ),
        ("DescribeDownloadRecords", [("DBInstanceId", "gp-alice-ok")]),
    ] {
        let json = assert_ok(&with_format(&app, "JSON", action, &business).await, action);
        let answer = with_format(&app, "XML", action, &business).await;
        assert_eq!(answer.status, 200, "{action}: {}", answer.body);
        let root = parse_xml(&answer.body);
        assert_eq!(root.name, format!("{action}Response"));
        assert_eq!(root.children[0].name, "RequestId");
        assert_same_content(&root, &json);
    }
}

#[tokio::test]
async fn xml_errors_carry_the_full_envelope_and_match_json() {
    let app = spawn_app().await;
    // One error from the action, one from the protocol checks before authentication, one from
    // authentication.
    type Edit = fn(&mut Vec<(String, String)>);
    type Business = &'static [(&'static str, &'static str)];
    let cases: [(&str, Business, Edit, u16, &str); 3] = [
        (
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", "gp-nope")],
            |_| {},
            404,
            "InvalidDBInstanceId.NotFound",
        ),
        (
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", "gp-alice-ok")],
            |p| set(p, "Version", "2020-01-01"),
            400,
            "InvalidVersion",
        ),
        (
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
            |p| set(p, "SignatureMethod", "HMAC-SHA256"),
            400,
            "InvalidSignatureMethod",
        ),
    ];
    for (action, business, edit, status, code) in cases {
        let json_answer = post_query(
            &app,
            &signed(&app, "POST", action, business, |p| {
                edit(p);
                set(p, "Format", "JSON");
            }),
        )
        .await;
        assert_error(&json_answer, status, code, "JSON");
        let json = json_answer.json();
        for spelling in ["XML", "xml"] {
            let answer = post_query(
                &app,
                &signed(&app, "POST", action, business, |p| {
                    edit(p);
                    set(p, "Format", spelling);
                }),
            )
            .await;
            assert_eq!(answer.status, status, "{code}: {}", answer.body);
            assert_eq!(
                answer.header("content-type"),
                Some("text/xml;charset=utf-8")
            );
            let root = parse_xml(&answer.body);
            assert_eq!(root.name, "Error");
            let names: Vec<_> = root.children.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(
                names,
                ["RequestId", "HostId", "Code", "Message", "Recommend"]
            );
            assert_eq!(root.child("Code").text, code);
            assert_eq!(
                Some(root.child("RequestId").text.as_str()),
                answer.header("x-acs-request-id")
            );
            assert_ne!(
                root.child("RequestId").text,
                json["RequestId"].as_str().unwrap()
            );
            assert_same_content(&root, &json);
            assert_eq!(answer.code(), code);
        }
    }
}

#[tokio::test]
async fn an_unknown_format_is_refused_in_json() {
    let app = spawn_app().await;
    for format in ["yaml", "csv", "JSONP", "xm"] {
        let answer = with_format(
            &app,
            format,
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
        )
        .await;
        assert_error(&answer, 400, "InvalidParameter.Format", format);
        assert_eq!(
            answer.header("content-type"),
            Some("application/json;charset=utf-8")
        );
    }
    // An empty Format is JSON, as is an absent one.
    let empty = with_format(
        &app,
        "",
        "DescribeDBInstances",
        &[("RegionId", "cn-hangzhou")],
    )
    .await;
    assert_ok(&empty, "Format=");
    let absent = post_query(
        &app,
        &signed(
            &app,
            "POST",
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
            |p| p.retain(|(n, _)| n != "Format"),
        ),
    )
    .await;
    assert_ok(&absent, "no Format");
}

// ------------------------------------------------------------------------------------------------
// Empty values, spellings, non-ASCII, order, headers
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_signature_type_is_signed_and_accepted_but_a_token_type_is_not() {
    let app = spawn_app().await;
    let business = [("DBInstanceId", "gp-alice-ok")];
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &business,
        |p| set(p, "SignatureType", ""),
    );
    // Sent exactly as the old core SDK does: `SignatureType=`.
    let query = encode_query(&params);
    assert!(query.contains("&SignatureType=&"), "{query}");
    assert_ok(&post_query(&app, &params).await, "SignatureType=");
    // The empty value is part of the signature: leaving it out breaks it.
    let without: Vec<_> = params
        .iter()
        .filter(|(n, _)| n != "SignatureType")
        .cloned()
        .collect();
    assert_error(
        &post_query(&app, &without).await,
        400,
        "SignatureDoesNotMatch",
        "signed with SignatureType=, sent without",
    );
    // `SignatureType` without `=` is the same empty value.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &business,
        |p| set(p, "SignatureType", ""),
    );
    let bare = encode_query(&params).replace("SignatureType=", "SignatureType");
    assert_ok(
        &send_raw(&app, &RawRequest::post_query(&bare))
            .await
            .answer("bare"),
        "SignatureType without =",
    );
    for token in ["BEARERTOKEN", "STS"] {
        let params = signed(
            &app,
            "POST",
            "DescribeDBInstanceAttribute",
            &business,
            |p| set(p, "SignatureType", token),
        );
        let answer = post_query(&app, &params).await;
        assert_error(&answer, 400, "InvalidParameter", token);
        assert!(answer.body.contains("SignatureType"), "{}", answer.body);
    }
}

/// Replaces `name=<encoded value>` in an encoded query by `name=<spelling>`.
fn respell(query: &str, name: &str, spelling: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={spelling}"),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn every_spelling_of_the_same_value_verifies() {
    let app = spawn_app().await;
    // The filter matches one instance's description; the signature is over the decoded value.
    for spelling in [
        "ok+description",
        "ok%20description",
        "ok%20descriptio%6E",
        "%6Fk+description",
    ] {
        for in_body in [false, true] {
            let params = signed(
                &app,
                "POST",
                "DescribeDBInstances",
                &[
                    ("RegionId", "cn-hangzhou"),
                    ("DBInstanceDescription", "ok description"),
                ],
                |_| {},
            );
            let query = respell(&encode_query(&params), "DBInstanceDescription", spelling);
            let req = if in_body {
                RawRequest::post_form("", query)
            } else {
                RawRequest::post_query(&query)
            };
            let answer = send_raw(&app, &req).await.answer(spelling);
            assert_eq!(
                ids(&assert_ok(&answer, spelling)),
                ["gp-alice-ok"],
                "{spelling}"
            );
        }
    }
    // An extra parameter no action reads is still signed, whatever its spelling.
    let value = "a b*c~d+e/f";
    for spelling in [
        "a+b*c~d%2Be%2Ff",
        "a%20b%2Ac%7Ed%2Be%2Ff",
        "a+b%2Ac%7Ed%2be%2ff",
        "a%20b*c~d%2Be/f",
    ] {
        for in_body in [false, true] {
            let params = signed(
                &app,
                "POST",
                "DescribeDBInstanceAttribute",
                &[("DBInstanceId", "gp-alice-ok"), ("Extra", value)],
                |_| {},
            );
            let query = respell(&encode_query(&params), "Extra", spelling);
            let req = if in_body {
                RawRequest::post_form("", query)
            } else {
                RawRequest::post_query(&query)
            };
            let answer = send_raw(&app, &req).await.answer(spelling);
            assert_ok(&answer, spelling);
        }
    }
    // `+` is a space, so a literal plus must be `%2B`: sent bare, the signature breaks.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok"), ("Extra", "1+1")],
        |_| {},
    );
    let query = respell(&encode_query(&params), "Extra", "1+1");
    let answer = send_raw(&app, &RawRequest::post_query(&query))
        .await
        .answer("plus");
    assert_error(&answer, 400, "SignatureDoesNotMatch", "bare + for a plus");
}

#[tokio::test]
async fn non_ascii_values_verify_and_are_echoed_intact() {
    let app = spawn_app().await;
    let text = "中文 ü 🎉";
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("DBInstanceDescription", text),
            ("Extra", text),
        ],
        |_| {},
    );
    let query = encode_query(&params);
    assert!(
        query.contains("%E4%B8%AD%E6%96%87%20%C3%BC%20%F0%9F%8E%89"),
        "{query}"
    );
    let body = assert_ok(&post_query(&app, &params).await, "non-ASCII filter");
    assert_eq!(body["TotalRecordCount"], 0);
    // In a form body, and with lower-case hex escapes.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstances",
        &[
            ("RegionId", "cn-hangzhou"),
            ("DBInstanceDescription", text),
            ("Extra", text),
        ],
        |_| {},
    );
    let query = encode_query(&params);
    let lower_hex = query
        .replace("%E4%B8%AD", "%e4%b8%ad")
        .replace("%F0%9F%8E%89", "%f0%9f%8e%89");
    let answer = send_raw(&app, &RawRequest::post_form("", lower_hex))
        .await
        .answer("lower hex");
    assert_ok(&answer, "lower-case hex escapes in a form body");

    // Echoed in a 404 message, in JSON and in XML.
    let id = "gp-中文-🎉";
    let answer = post_query(
        &app,
        &signed(
            &app,
            "POST",
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", id)],
            |_| {},
        ),
    )
    .await;
    assert_error(&answer, 404, "InvalidDBInstanceId.NotFound", "non-ASCII id");
    assert!(
        answer.json()["Message"].as_str().unwrap().contains(id),
        "{}",
        answer.body
    );
    let answer = post_query(
        &app,
        &signed(
            &app,
            "POST",
            "DescribeDBInstanceAttribute",
            &[("DBInstanceId", id)],
            |p| set(p, "Format", "XML"),
        ),
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(
        parse_xml(&answer.body).child("Message").text.contains(id),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn parameter_order_does_not_matter() {
    let app = spawn_app().await;
    let business = [
        ("RegionId", "cn-hangzhou"),
        ("DBInstanceModes", "StorageElastic,Classic"),
    ];
    let mut params = signed(&app, "POST", "DescribeDBInstances", &business, |_| {});
    params.reverse();
    assert_eq!(params[0].0, "Signature");
    assert_eq!(
        ids(&assert_ok(&post_query(&app, &params).await, "reversed")),
        ALICE_IDS
    );
    // A fixed interleaving: sorted by value.
    let mut params = signed(&app, "POST", "DescribeDBInstances", &business, |_| {});
    params.sort_by(|a, b| a.1.cmp(&b.1));
    assert_ok(&post_query(&app, &params).await, "sorted by value");
    // Business parameters first, Signature in the middle.
    let mut params = signed(&app, "POST", "DescribeDBInstances", &business, |_| {});
    params.rotate_right(3);
    assert_ok(&post_query(&app, &params).await, "rotated");
}

#[tokio::test]
async fn action_and_version_may_come_from_headers_alone_with_v1() {
    let app = spawn_app().await;
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok")],
        |p| p.retain(|(n, _)| n != "Action" && n != "Version"),
    );
    let req = RawRequest::post_query(&encode_query(&params))
        .header("x-acs-action", "DescribeDBInstanceAttribute")
        .header("x-acs-version", gpdiag_wire::API_VERSION);
    let answer = send_raw(&app, &req).await.answer("headers");
    let body = assert_ok(&answer, "Action/Version as headers");
    assert_eq!(
        body["Items"]["DBInstanceAttribute"][0]["DBInstanceId"],
        "gp-alice-ok"
    );
    // Parameters win over the headers when both are there.
    let params = signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok")],
        |_| {},
    );
    let req = RawRequest::post_query(&encode_query(&params))
        .header("x-acs-action", "Nope")
        .header("x-acs-version", "2020-01-01");
    assert_ok(
        &send_raw(&app, &req).await.answer("both"),
        "params over headers",
    );
}

#[tokio::test]
async fn the_request_id_header_matches_the_body_and_ids_are_unique() {
    let app = spawn_app().await;
    let mut seen = HashSet::new();
    for i in 0..8 {
        let answers = [
            app.call_v1(
                &alice(),
                "DescribeDBInstanceAttribute",
                &[("DBInstanceId", "gp-alice-ok")],
            )
            .await,
            app.call_acs3(
                &alice(),
                "DescribeDBInstanceAttribute",
                &[("DBInstanceId", "gp-nope")],
            )
            .await,
            with_format(
                &app,
                "XML",
                "DescribeDBInstances",
                &[("RegionId", "cn-hangzhou")],
            )
            .await,
            with_format(
                &app,
                "XML",
                "DescribeDBInstanceAttribute",
                &[("DBInstanceId", "gp-nope")],
            )
            .await,
            app.answer(app.http.get(format!("{}/foo", app.address)))
                .await,
            app.answer(app.http.put(format!("{}/", app.address))).await,
        ];
        for (j, answer) in answers.iter().enumerate() {
            let from_body = if answer.body.starts_with("<?xml") {
                parse_xml(&answer.body).child("RequestId").text.clone()
            } else {
                answer.json()["RequestId"].as_str().unwrap().to_owned()
            };
            assert!(!from_body.is_empty());
            assert_eq!(
                answer.header("x-acs-request-id"),
                Some(from_body.as_str()),
                "call {j}: {}",
                answer.body
            );
            assert!(
                seen.insert(from_body),
                "a RequestId repeated (round {i}, call {j})"
            );
        }
    }
}

#[tokio::test]
async fn other_paths_are_not_found_and_healthz_answers() {
    let app = spawn_app().await;
    for path in ["/foo", "/foo/", "/healthz/x", "/%2F", "//"] {
        let signed_query = encode_query(&signed(
            &app,
            "GET",
            "DescribeDBInstances",
            &[("RegionId", "cn-hangzhou")],
            |_| {},
        ));
        for method in ["GET", "POST"] {
            let raw = RawRequest::new(method, format!("{path}?{signed_query}"));
            let answer = send_raw(&app, &raw).await.answer(path);
            assert_error(&answer, 404, "InvalidAction.NotFound", path);
            assert_eq!(answer.json()["HostId"], app.host);
        }
    }
    let health = app
        .answer(app.http.get(format!("{}/healthz", app.address)))
        .await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn host_id_falls_back_to_the_public_url_without_a_usable_host() {
    let app = spawn_app().await;
    let query = encode_query(&signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-nope")],
        |_| {},
    ));
    let mut raw = RawRequest::post_query(&query);
    raw.omit_host = true;
    let answer = send_raw(&app, &raw).await.answer("no host");
    assert_error(&answer, 404, "InvalidDBInstanceId.NotFound", "no host");
    assert_eq!(answer.json()["HostId"], app.address);
    // A host name longer than any real one is not echoed either.
    let long = format!("{}.example", "h".repeat(300));
    let raw = RawRequest::post_query(&query).header("host", long.as_bytes());
    let answer = send_raw(&app, &raw).await.answer("long host");
    assert_eq!(answer.json()["HostId"], app.address, "{}", answer.body);
}

/// Requests whose framing or request line no HTTP library would produce: the server answers
/// with a 4xx or closes the connection, promptly, and keeps serving. Most are refused by the
/// HTTP layer before gpdiag sees them (a bare 400 without the envelope).
#[tokio::test]
async fn broken_http_framing_is_answered_or_closed_promptly() {
    let app = spawn_app().await;
    let query = encode_query(&signed(
        &app,
        "POST",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok")],
        |_| {},
    ));
    let host = app.host.clone();
    let mut raw_ff = format!("POST /?{query}&Extra=").into_bytes();
    raw_ff.push(0xFF);
    raw_ff.extend_from_slice(
        format!(" HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw 0xFF byte in the query", raw_ff),
        ("space inside the target", format!("POST /?a=b c HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n").into_bytes()),
        ("header line without a colon", format!("POST / HTTP/1.1\r\nhost: {host}\r\nnot a header\r\ncontent-length: 0\r\n\r\n").into_bytes()),
        ("header name with a space", format!("POST / HTTP/1.1\r\nhost: {host}\r\nx acs: 1\r\ncontent-length: 0\r\n\r\n").into_bytes()),
        ("two different content-lengths", format!("POST / HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab").into_bytes()),
        ("non-numeric content-length", format!("POST / HTTP/1.1\r\nhost: {host}\r\ncontent-length: abc\r\n\r\n").into_bytes()),
        ("bad chunk size", format!("POST / HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").into_bytes()),
        ("unknown HTTP version", format!("POST / HTTP/9.9\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n").into_bytes()),
        ("garbage", b"\x00\x01\x02\x03 hello\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        match exchange(&app.host, bytes, true).await {
            // None of these bodies is too large: a broken body is not a 413.
            RawOutcome::Answered(a) => assert!(
                (400..500).contains(&a.status) && a.status != 413,
                "{what}: {} {}",
                a.status,
                a.body
            ),
            RawOutcome::Closed => {}
            other => panic!("{what}: {other:?}"),
        }
        assert!(app.healthy().await, "{what}: the server stopped answering");
    }
}

#[tokio::test]
async fn http_1_0_requests_work() {
    let app = spawn_app().await;
    let query = encode_query(&signed(
        &app,
        "GET",
        "DescribeDBInstanceAttribute",
        &[("DBInstanceId", "gp-alice-ok")],
        |_| {},
    ));
    let bytes = format!("GET /?{query} HTTP/1.0\r\nHost: {}\r\n\r\n", app.host).into_bytes();
    let answer = exchange(&app.host, bytes, true).await.answer("HTTP/1.0");
    assert_ok(&answer, "HTTP/1.0");
}
