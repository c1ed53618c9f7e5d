//! Malformed requests, table-driven: each case is answered with the documented 4xx code and the
//! full error envelope (docs/error-codes.md), never a 5xx, a panic, a dropped connection or a
//! hang, and the server still answers afterwards. Every request goes over a raw socket, so the
//! bytes are exactly the ones written here.
//!
//! Cases that must pass a check to reach the one they test are signed correctly, so the error
//! comes from the intended check. The server checks, in order: method, body size, decoding,
//! duplicates and sizes, Format, Action/Version presence, Version, Action, authentication,
//! throttling, nonce, then the action's parameters.

use crate::helpers::*;
use crate::raw_http::{send_raw, Framing, RawOutcome, RawRequest, RAW_TIMEOUT};
use chrono::{DateTime, Duration, Utc};
use gpdiag_wire::encode::encode_query;
use gpdiag_wire::sign;

type Params = Vec<(String, String)>;
type Business = &'static [(&'static str, &'static str)];

struct Case {
    name: String,
    build: Box<dyn Fn(&TestApp) -> RawRequest>,
    status: u16,
    code: &'static str,
    /// Text the `Message` must contain (the parameter it names).
    naming: Option<String>,
}

fn case(
    name: impl Into<String>,
    status: u16,
    code: &'static str,
    build: impl Fn(&TestApp) -> RawRequest + 'static,
) -> Case {
    Case {
        name: name.into(),
        build: Box::new(build),
        status,
        code,
        naming: None,
    }
}

impl Case {
    fn naming(mut self, text: &str) -> Self {
        self.naming = Some(text.to_owned());
        self
    }
}

/// Sends one case and checks the answer completely; `Err` says what was wrong.
async fn check(app: &TestApp, case: &Case) -> Result<(), String> {
    let request = (case.build)(app);
    let answer = match send_raw(app, &request).await {
        RawOutcome::Answered(a) => a,
        RawOutcome::TimedOut => return Err(format!("no answer within {RAW_TIMEOUT:?} (hang)")),
        other => return Err(format!("no HTTP answer: {other:?}")),
    };
    let short = |s: &str| s.chars().take(600).collect::<String>();
    if answer.status != case.status {
        return Err(format!(
            "status {} instead of {}: {}",
            answer.status,
            case.status,
            short(&answer.body)
        ));
    }
    if answer.header("content-type") != Some("application/json;charset=utf-8") {
        return Err(format!("content-type {:?}", answer.header("content-type")));
    }
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&answer.body)
        .map_err(|e| format!("not a JSON object ({e}): {}", short(&answer.body)))?;
    let keys: Vec<&str> = body.keys().map(String::as_str).collect();
    if keys != ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        return Err(format!("envelope keys {keys:?}: {}", short(&answer.body)));
    }
    let text = |k: &str| body[k].as_str().unwrap_or_default();
    if text("Code") != case.code {
        return Err(format!(
            "code {} instead of {}: {}",
            text("Code"),
            case.code,
            short(&answer.body)
        ));
    }
    if text("RequestId").is_empty() || answer.header("x-acs-request-id") != Some(text("RequestId"))
    {
        return Err(format!(
            "RequestId {:?} vs x-acs-request-id {:?}",
            body["RequestId"],
            answer.header("x-acs-request-id")
        ));
    }
    if text("HostId") != app.host {
        return Err(format!("HostId {:?}", body["HostId"]));
    }
    if text("Message").is_empty() {
        return Err("empty Message".into());
    }
    if !text("Recommend").contains(&format!("q={}&", case.code)) {
        return Err(format!("Recommend {:?}", body["Recommend"]));
    }
    if let Some(naming) = &case.naming {
        if !text("Message").contains(naming.as_str()) {
            return Err(format!(
                "the Message does not name {naming:?}: {}",
                text("Message")
            ));
        }
    }
    if !app.healthy().await {
        return Err("the server no longer answers /healthz".into());
    }
    Ok(())
}

/// Runs every case on one app (throttling out of the way) and fails once, naming each case that
/// went wrong.
async fn run(cases: Vec<Case>) {
    let app = spawn_app_with(|c| {
        c.limits.calls_per_second = 1_000_000;
        c.limits.burst = Some(1_000_000);
    })
    .await;
    run_on(&app, cases).await;
}

async fn run_on(app: &TestApp, cases: Vec<Case>) {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            names.insert(case.name.clone()),
            "two cases named {}",
            case.name
        );
        if let Err(why) = check(app, case).await {
            failures.push(format!(
                "  [{}] expected {} {}: {why}",
                case.name, case.status, case.code
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------------------------------------
// Request builders
// ------------------------------------------------------------------------------------------------

const ATTR: &str = "DescribeDBInstanceAttribute";
const LIST: &str = "DescribeDBInstances";
const DOWNLOADS: &str = "DescribeDownloadRecords";
const OK_ID: Business = &[("DBInstanceId", "gp-alice-ok")];
const REGION: Business = &[("RegionId", "cn-hangzhou")];

/// Signed v1 parameters (alice, POST) with `edit` applied before signing.
fn signed_with(
    app: &TestApp,
    action: &str,
    business: &[(&str, &str)],
    edit: impl FnOnce(&mut Params),
) -> Params {
    let mut params = v1_pairs(app, &alice(), action, business);
    edit(&mut params);
    with_v1_signature(&alice(), "POST", params)
}

/// A valid, signed DescribeDBInstanceAttribute of alice's good instance.
fn valid(app: &TestApp) -> Params {
    signed_with(app, ATTR, OK_ID, |_| {})
}

fn set(params: &mut Params, name: &str, value: &str) {
    match params.iter_mut().find(|(n, _)| n == name) {
        Some(p) => p.1 = value.to_owned(),
        None => params.push((name.to_owned(), value.to_owned())),
    }
}

fn remove(params: &mut Params, name: &str) {
    params.retain(|(n, _)| n != name);
}

/// POST with everything in the query.
fn in_query(params: &Params) -> RawRequest {
    RawRequest::post_query(&encode_query(params))
}

/// The valid request with `raw` (already encoded, possibly broken) appended to the query.
fn query_plus(app: &TestApp, raw: &str) -> RawRequest {
    RawRequest::post_query(&format!("{}&{raw}", encode_query(&valid(app))))
}

/// The valid request as a form body with `raw` appended to it.
fn body_plus(app: &TestApp, raw: impl AsRef<[u8]>) -> RawRequest {
    let mut body = encode_query(&valid(app)).into_bytes();
    body.push(b'&');
    body.extend_from_slice(raw.as_ref());
    RawRequest::post_form("", body)
}

/// A valid request signed with `edit` applied first, sent in the query.
fn signed_query(
    app: &TestApp,
    action: &str,
    business: &[(&str, &str)],
    edit: impl FnOnce(&mut Params),
) -> RawRequest {
    in_query(&signed_with(app, action, business, edit))
}

/// The valid request with `edit` applied after signing.
fn tampered(app: &TestApp, edit: impl FnOnce(&mut Params)) -> RawRequest {
    let mut params = valid(app);
    edit(&mut params);
    in_query(&params)
}

/// A valid ACS3 request (alice).
fn acs3(app: &TestApp, action: &str, business: &[(&str, &str)]) -> RawRequest {
    RawRequest::from_signed(&app.sign_acs3(&alice(), action, business))
}

fn acs3_valid(app: &TestApp) -> RawRequest {
    acs3(app, ATTR, OK_ID)
}

/// The valid ACS3 request with its Authorization rebuilt from the real parts.
fn acs3_auth(app: &TestApp, rebuild: impl Fn(&str, &str, &str) -> String) -> RawRequest {
    let req = acs3_valid(app);
    let value = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .unwrap();
    let fields = value.strip_prefix("ACS3-HMAC-SHA256 ").unwrap();
    let field = |name: &str| {
        fields
            .split(',')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let (credential, headers, signature) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    );
    req.set_header(
        "Authorization",
        rebuild(&credential, &headers, &signature).into_bytes(),
    )
}

/// An ACS3 request signed at `date`.
fn acs3_at(app: &TestApp, date: &str) -> RawRequest {
    RawRequest::from_signed(&sign::sign_acs3(
        &alice(),
        "POST",
        ATTR,
        &pairs(OK_ID),
        &app.host,
        date,
        &sign::new_nonce(),
        b"",
    ))
}

fn now(app: &TestApp) -> DateTime<Utc> {
    gpdiag_core::Clock::now(&*app.clock)
}

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

// ------------------------------------------------------------------------------------------------
// The tables
// ------------------------------------------------------------------------------------------------

/// Broken percent-encoding and invalid UTF-8, in names and values, in the query and in a form
/// body.
fn encoding_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let broken = ["%", "%4", "%zz", "%G1", "abc%", "%%41"];
    let not_utf8 = [
        ("%FF", "0xFF"),
        ("%C3%28", "invalid continuation"),
        ("%C0%AF", "overlong /"),
        ("%ED%A0%80", "lone surrogate"),
        ("%E4%B8", "truncated sequence"),
        ("%F8%88%80%80%80", "five-byte form"),
    ];
    let bad: Vec<(String, String)> = broken
        .iter()
        .map(|b| (format!("broken escape {b:?}"), (*b).to_owned()))
        .chain(
            not_utf8
                .iter()
                .map(|(b, what)| (format!("{what} ({b})"), (*b).to_owned())),
        )
        .collect();
    for (what, raw) in bad {
        let value = format!("Extra=x{raw}");
        let name = format!("Ex{raw}tra=1");
        cases.push(
            case(format!("query value: {what}"), 400, "InvalidParameter", {
                let value = value.clone();
                move |app| query_plus(app, &value)
            })
            .naming("\"Extra\""),
        );
        cases.push(
            case(format!("form value: {what}"), 400, "InvalidParameter", {
                let value = value.clone();
                move |app| body_plus(app, &value)
            })
            .naming("\"Extra\""),
        );
        cases.push(
            case(format!("query name: {what}"), 400, "InvalidParameter", {
                let name = name.clone();
                move |app| query_plus(app, &name)
            })
            .naming("\"Ex"),
        );
        cases.push(
            case(format!("form name: {what}"), 400, "InvalidParameter", {
                let name = name.clone();
                move |app| body_plus(app, &name)
            })
            .naming("\"Ex"),
        );
    }
    // In a common parameter's value, and a name without `=`.
    cases.push(
        case(
            "query: broken escape in the Signature",
            400,
            "InvalidParameter",
            |app| {
                let q = encode_query(&valid(app));
                let at = q.find("&Signature=").unwrap() + "&Signature=".len();
                RawRequest::post_query(&format!("{}%Z{}", &q[..at], &q[at..]))
            },
        )
        .naming("\"Signature\""),
    );
    cases.push(
        case(
            "query: invalid UTF-8 in the Action",
            400,
            "InvalidParameter",
            |app| {
                let q = encode_query(&valid(app)).replacen(
                    "Action=DescribeDBInstanceAttribute",
                    "Action=Describe%FF",
                    1,
                );
                RawRequest::post_query(&q)
            },
        )
        .naming("\"Action\""),
    );
    cases.push(case(
        "query: a bare % segment",
        400,
        "InvalidParameter",
        |app| query_plus(app, "%"),
    ));
    cases.push(case(
        "form: a bare %4 segment",
        400,
        "InvalidParameter",
        |app| body_plus(app, "%4"),
    ));
    cases.push(
        case(
            "form value: raw 0xFF byte",
            400,
            "InvalidParameter",
            |app| body_plus(app, b"Extra=a\xffb"),
        )
        .naming("\"Extra\""),
    );
    cases.push(case(
        "form name: raw 0xC0 0xAF bytes",
        400,
        "InvalidParameter",
        |app| body_plus(app, b"Ex\xc0\xaftra=1"),
    ));
    cases.push(
        case(
            "form with charset: broken escape",
            400,
            "InvalidParameter",
            |app| {
                body_plus(app, "Extra=%zz").set_header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )
            },
        )
        .naming("\"Extra\""),
    );
    cases
}

/// Duplicated names and oversized input.
fn duplicate_and_size_cases() -> Vec<Case> {
    let mut cases = vec![
        // No store holds U+0000 in text: refused before any store sees it.
        case("query: a value with %00", 400, "InvalidParameter", |app| {
            query_plus(app, "Extra=a%00b")
        })
        .naming("\"Extra\""),
        case("query: a name with %00", 400, "InvalidParameter", |app| {
            query_plus(app, "Ex%00tra=1")
        }),
        case(
            "query: Extra twice, same value",
            400,
            "InvalidParameter",
            |app| query_plus(app, "Extra=1&Extra=1"),
        )
        .naming("\"Extra\""),
        case(
            "query: Extra twice, different values",
            400,
            "InvalidParameter",
            |app| query_plus(app, "Extra=1&Extra=2"),
        )
        .naming("\"Extra\""),
        case(
            "query: DBInstanceId twice, different values",
            400,
            "InvalidParameter",
            |app| query_plus(app, "DBInstanceId=gp-bob-ok"),
        )
        .naming("\"DBInstanceId\""),
        case(
            "query: Action twice, same value",
            400,
            "InvalidParameter",
            |app| query_plus(app, "Action=DescribeDBInstanceAttribute"),
        )
        .naming("\"Action\""),
        case("query: Signature twice", 400, "InvalidParameter", |app| {
            let params = valid(app);
            let sig = params
                .iter()
                .find(|(n, _)| n == "Signature")
                .unwrap()
                .1
                .clone();
            query_plus(app, &encode_query(&pairs(&[("Signature", &sig)])))
        })
        .naming("\"Signature\""),
        case(
            "query: the same name spelled plain and escaped",
            400,
            "InvalidParameter",
            |app| query_plus(app, "Extra=1&Ext%72a=1"),
        )
        .naming("\"Extra\""),
        case(
            "form: Extra twice, same value",
            400,
            "InvalidParameter",
            |app| body_plus(app, "Extra=1&Extra=1"),
        )
        .naming("\"Extra\""),
        case(
            "form: Extra twice, different values",
            400,
            "InvalidParameter",
            |app| body_plus(app, "Extra=1&Extra=2"),
        )
        .naming("\"Extra\""),
        case(
            "query and form: DBInstanceId, same value",
            400,
            "InvalidParameter",
            |app| RawRequest::post_form(&encode_query(&valid(app)), "DBInstanceId=gp-alice-ok"),
        )
        .naming("\"DBInstanceId\""),
        case(
            "query and form: DBInstanceId, different values",
            400,
            "InvalidParameter",
            |app| RawRequest::post_form(&encode_query(&valid(app)), "DBInstanceId=gp-bob-ok"),
        )
        .naming("\"DBInstanceId\""),
        case(
            "query and form: Timestamp, same value",
            400,
            "InvalidParameter",
            |app| {
                let params = valid(app);
                let ts = params
                    .iter()
                    .find(|(n, _)| n == "Timestamp")
                    .unwrap()
                    .1
                    .clone();
                RawRequest::post_form(
                    &encode_query(&params),
                    encode_query(&pairs(&[("Timestamp", &ts)])),
                )
            },
        )
        .naming("\"Timestamp\""),
        case("query: an empty name", 400, "InvalidParameter", |app| {
            query_plus(app, "=value")
        }),
        case("form: a lone =", 400, "InvalidParameter", |app| {
            body_plus(app, "=")
        }),
    ];
    fn big(n: usize) -> String {
        "x".repeat(n)
    }
    // Values up to the HTTP layer's ~64 KiB request-target cap reach gpdiag; see
    // `request_targets_over_64_kib_are_refused_by_the_http_layer` for what lies beyond.
    for (what, len) in [("16 KiB + 1", 16 * 1024 + 1), ("60 KiB", 60 * 1024)] {
        cases.push(
            case(
                format!("query: a value of {what}"),
                400,
                "InvalidParameter",
                move |app| query_plus(app, &format!("Extra={}", big(len))),
            )
            .naming("\"Extra\""),
        );
        cases.push(
            case(
                format!("form: a value of {what}"),
                400,
                "InvalidParameter",
                move |app| body_plus(app, format!("Extra={}", big(len))),
            )
            .naming("\"Extra\""),
        );
    }
    cases.push(
        case(
            "query: a value of 16 KiB + 1 once decoded (48 KiB escaped)",
            400,
            "InvalidParameter",
            |app| query_plus(app, &format!("Extra={}", "%41".repeat(16 * 1024 + 1))),
        )
        .naming("\"Extra\""),
    );
    cases.push(
        case(
            "query: DBInstanceId of 16 KiB + 1",
            400,
            "InvalidParameter",
            |app| {
                signed_query(app, ATTR, &[], |p| {
                    set(p, "DBInstanceId", &big(16 * 1024 + 1))
                })
            },
        )
        .naming("\"DBInstanceId\""),
    );
    let long_name = "N".repeat(200);
    cases.push(
        case("query: a name of 200 bytes", 400, "InvalidParameter", {
            let long_name = long_name.clone();
            move |app| query_plus(app, &format!("{long_name}=1"))
        })
        .naming("NNNNNNNN"),
    );
    cases.push(
        case(
            "form: a name of 200 bytes",
            400,
            "InvalidParameter",
            move |app| body_plus(app, format!("{long_name}=1")),
        )
        .naming("NNNNNNNN"),
    );
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("P{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
    };
    cases.push(case(
        "query: 300 parameters",
        400,
        "InvalidParameter",
        move |app| query_plus(app, &many(300 - valid(app).len())),
    ));
    cases.push(case(
        "form: 300 parameters",
        400,
        "InvalidParameter",
        move |app| body_plus(app, many(300 - valid(app).len())),
    ));
    cases.push(case(
        "query and form: 150 + 150 parameters",
        400,
        "InvalidParameter",
        move |app| {
            let mut query = valid(app);
            let extra = 150 - query.len();
            query.extend((0..extra).map(|i| (format!("Q{i}"), "1".to_owned())));
            RawRequest::post_form(&encode_query(&query), many(150))
        },
    ));
    cases.push(case(
        "query: 257 parameters",
        400,
        "InvalidParameter",
        move |app| query_plus(app, &many(257 - valid(app).len())),
    ));
    cases
}

/// The common v1 parameters: each missing, each empty, and bad values.
fn common_v1_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for name in [
        "Action",
        "Version",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
    ] {
        cases.push(
            case(
                format!("{name} missing"),
                400,
                "MissingParameter",
                move |app| tampered(app, |p| remove(p, name)),
            )
            .naming(&quoted(name)),
        );
        if name == "Signature" {
            // An empty signature is structurally incomplete (docs: IncompleteSignature "or
            // `Signature` is empty").
            cases.push(case("Signature empty", 400, "IncompleteSignature", |app| {
                tampered(app, |p| set(p, "Signature", ""))
            }));
        } else {
            cases.push(
                case(
                    format!("{name} empty"),
                    400,
                    "MissingParameter",
                    move |app| signed_query(app, ATTR, OK_ID, |p| set(p, name, "")),
                )
                .naming(&quoted(name)),
            );
        }
    }
    cases.push(
        case("no signature at all", 400, "MissingParameter", |app| {
            in_query(&v1_pairs(app, &alice(), ATTR, OK_ID))
        })
        .naming("\"Signature\""),
    );
    let values: Vec<(&str, &str, u16, &'static str)> = vec![
        (
            "SignatureMethod",
            "HMAC-SHA256",
            400,
            "InvalidSignatureMethod",
        ),
        (
            "SignatureMethod",
            "hmac-sha1",
            400,
            "InvalidSignatureMethod",
        ),
        ("SignatureMethod", "HMAC-SM3", 400, "InvalidSignatureMethod"),
        ("SignatureVersion", "2.0", 400, "InvalidParameter"),
        ("SignatureVersion", "1", 400, "InvalidParameter"),
        ("SignatureVersion", "1.00", 400, "InvalidParameter"),
        ("Version", "2020-01-01", 400, "InvalidVersion"),
        ("Version", "2016-5-3", 400, "InvalidVersion"),
        ("Version", "2016-05-03 ", 400, "InvalidVersion"),
        ("Action", "Nope", 404, "InvalidAction.NotFound"),
        (
            "Action",
            "describedbinstanceattribute",
            404,
            "InvalidAction.NotFound",
        ),
        (
            "Action",
            "DescribeDBInstanceAttribute/",
            404,
            "InvalidAction.NotFound",
        ),
        ("Format", "csv", 400, "InvalidParameter.Format"),
        ("Format", "yaml", 400, "InvalidParameter.Format"),
        ("Format", "JSONP", 400, "InvalidParameter.Format"),
        ("SignatureType", "BEARERTOKEN", 400, "InvalidParameter"),
        (
            "AccessKeyId",
            "LTAInobody",
            404,
            "InvalidAccessKeyId.NotFound",
        ),
    ];
    for (name, value, status, code) in values {
        let c = case(format!("{name}={value:?}"), status, code, move |app| {
            signed_query(app, ATTR, OK_ID, |p| set(p, name, value))
        });
        cases.push(if code == "InvalidParameter" {
            c.naming(&quoted(name))
        } else {
            c
        });
    }
    // Timestamps: malformed (signed, so the format is what fails).
    let malformed = [
        "2026-12-04",
        "2026-12-04T19:24:56",
        "2026-12-04 19:24:56Z",
        "2026-12-04T19:24Z",
        "2026-13-04T19:24:56Z",
        "2026-02-30T10:00:00Z",
        "2026-12-04T25:00:00Z",
        "2026-12-04T19:24:56+08:00",
        "2026-12-04T19:24:56ZZ",
        "1764876296",
        "yesterday",
        "Fri, 04 Dec 2026 19:24:56 GMT",
    ];
    for ts in malformed {
        cases.push(case(
            format!("Timestamp={ts:?}"),
            400,
            "InvalidTimeStamp.Format",
            move |app| signed_query(app, ATTR, OK_ID, |p| set(p, "Timestamp", ts)),
        ));
    }
    // Malformed although they name the current time: only `YYYY-MM-DDThh:mm:ssZ` is accepted.
    type Spell = fn(DateTime<Utc>) -> String;
    let near: [(&str, Spell); 4] = [
        ("not zero-padded", |t| {
            t.format("%Y-%-m-%-dT%-H:%-M:%-SZ").to_string()
        }),
        ("leading space", |t| {
            t.format(" %Y-%m-%dT%H:%M:%SZ").to_string()
        }),
        ("trailing space", |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ ").to_string()
        }),
        ("lower-case t and z", |t| {
            t.format("%Y-%m-%dt%H:%M:%Sz").to_string()
        }),
    ];
    for (what, spell) in near {
        cases.push(case(
            format!("Timestamp now, {what}"),
            400,
            "InvalidTimeStamp.Format",
            move |app| {
                let ts = spell(now(app));
                signed_query(app, ATTR, OK_ID, |p| set(p, "Timestamp", &ts))
            },
        ));
    }
    type Shift = fn(DateTime<Utc>) -> String;
    let expired: [(&str, Shift); 6] = [
        ("16 minutes ago", |t| {
            sign::format_timestamp(t - Duration::minutes(16))
        }),
        ("16 minutes ahead", |t| {
            sign::format_timestamp(t + Duration::minutes(16))
        }),
        ("a day ago", |t| {
            sign::format_timestamp(t - Duration::days(1))
        }),
        ("1970", |_| "1970-01-01T00:00:00Z".into()),
        ("2999", |_| "2999-12-31T23:59:59Z".into()),
        ("9999", |_| "9999-12-31T23:59:59Z".into()),
    ];
    for (what, shift) in expired {
        cases.push(case(
            format!("Timestamp {what}"),
            400,
            "InvalidTimeStamp.Expired",
            move |app| {
                let ts = shift(now(app));
                signed_query(app, ATTR, OK_ID, |p| set(p, "Timestamp", &ts))
            },
        ));
    }
    // Signatures that are present but wrong.
    cases.push(case(
        "Signature not base64",
        400,
        "SignatureDoesNotMatch",
        |app| tampered(app, |p| set(p, "Signature", "!!not-base64!!")),
    ));
    cases.push(case(
        "Signature of another request",
        400,
        "SignatureDoesNotMatch",
        |app| {
            let other = valid(app);
            let sig = other
                .iter()
                .find(|(n, _)| n == "Signature")
                .unwrap()
                .1
                .clone();
            tampered(app, |p| set(p, "Signature", &sig))
        },
    ));
    cases.push(case(
        "Signature made for GET, sent with POST",
        400,
        "SignatureDoesNotMatch",
        |app| {
            let params = with_v1_signature(&alice(), "GET", v1_pairs(app, &alice(), ATTR, OK_ID));
            in_query(&params)
        },
    ));
    cases.push(case(
        "Signature with bob's secret for alice's key",
        400,
        "SignatureDoesNotMatch",
        |app| {
            let params = with_v1_signature(&bob(), "POST", v1_pairs(app, &alice(), ATTR, OK_ID));
            in_query(&params)
        },
    ));
    cases
}

/// ACS3: each header missing or empty, garbled Authorization headers, bad values.
fn acs3_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (header, names) in [
        ("x-acs-date", "x-acs-date"),
        ("x-acs-signature-nonce", "x-acs-signature-nonce"),
        ("x-acs-content-sha256", "x-acs-content-sha256"),
        ("x-acs-action", "\"Action\""),
        ("x-acs-version", "\"Version\""),
    ] {
        cases.push(
            case(
                format!("ACS3: {header} missing"),
                400,
                "MissingParameter",
                move |app| acs3_valid(app).without_header(header),
            )
            .naming(names),
        );
        cases.push(
            case(
                format!("ACS3: {header} empty"),
                400,
                "MissingParameter",
                move |app| acs3_valid(app).set_header(header, ""),
            )
            .naming(names),
        );
    }
    type Rebuild = fn(&str, &str, &str) -> String;
    let garbled: Vec<(&str, &'static str, Rebuild)> = vec![
        ("empty", "IncompleteSignature", |_, _, _| String::new()),
        ("algorithm alone", "IncompleteSignature", |_, _, _| {
            "ACS3-HMAC-SHA256".into()
        }),
        ("algorithm and a space", "IncompleteSignature", |_, _, _| {
            "ACS3-HMAC-SHA256 ".into()
        }),
        ("no Credential", "IncompleteSignature", |_, h, s| {
            format!("ACS3-HMAC-SHA256 SignedHeaders={h},Signature={s}")
        }),
        ("no SignedHeaders", "IncompleteSignature", |c, _, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},Signature={s}")
        }),
        ("no Signature", "IncompleteSignature", |c, h, _| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h}")
        }),
        ("Credential twice", "IncompleteSignature", |c, h, s| {
            format!(
                "ACS3-HMAC-SHA256 Credential={c},Credential={c},SignedHeaders={h},Signature={s}"
            )
        }),
        ("Signature twice", "IncompleteSignature", |c, h, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s},Signature={s}")
        }),
        ("SignedHeaders twice", "IncompleteSignature", |c, h, s| {
            format!(
                "ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},SignedHeaders={h},Signature={s}"
            )
        }),
        ("empty Credential", "IncompleteSignature", |_, h, s| {
            format!("ACS3-HMAC-SHA256 Credential=,SignedHeaders={h},Signature={s}")
        }),
        ("empty Signature", "IncompleteSignature", |c, h, _| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature=")
        }),
        ("non-hex Signature", "IncompleteSignature", |c, h, _| {
            format!(
                "ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={}",
                "z".repeat(64)
            )
        }),
        ("short Signature", "IncompleteSignature", |c, h, s| {
            format!(
                "ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={}",
                &s[1..]
            )
        }),
        ("long Signature", "IncompleteSignature", |c, h, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s}0")
        }),
        ("base64 Signature", "IncompleteSignature", |c, h, _| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature=q83vEjRWeJA=")
        }),
        ("empty SignedHeaders", "IncompleteSignature", |c, _, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders=,Signature={s}")
        }),
        (
            "SignedHeaders with an empty name",
            "IncompleteSignature",
            |c, h, s| {
                format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h};;x-foo,Signature={s}")
            },
        ),
        (
            "SignedHeaders naming a header twice",
            "IncompleteSignature",
            |c, h, s| {
                format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h};host,Signature={s}")
            },
        ),
        ("an unknown field", "IncompleteSignature", |c, h, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s},Foo=bar")
        }),
        ("a field without =", "IncompleteSignature", |c, h, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s},junk")
        }),
        ("a trailing comma", "IncompleteSignature", |c, h, s| {
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s},")
        }),
        (
            "algorithm ACS3-HMAC-SM3",
            "InvalidSignatureMethod",
            |c, h, s| format!("ACS3-HMAC-SM3 Credential={c},SignedHeaders={h},Signature={s}"),
        ),
        (
            "algorithm ACS3-RSA-SHA256",
            "InvalidSignatureMethod",
            |c, h, s| format!("ACS3-RSA-SHA256 Credential={c},SignedHeaders={h},Signature={s}"),
        ),
        ("Bearer xyz", "InvalidSignatureMethod", |_, _, _| {
            "Bearer xyz".into()
        }),
        ("Basic credentials", "InvalidSignatureMethod", |_, _, _| {
            "Basic YWxpY2U6c2VjcmV0".into()
        }),
        (
            "unknown Credential",
            "InvalidAccessKeyId.NotFound",
            |_, h, s| {
                format!("ACS3-HMAC-SHA256 Credential=LTAInobody,SignedHeaders={h},Signature={s}")
            },
        ),
        ("Signature flipped", "SignatureDoesNotMatch", |c, h, s| {
            let flipped: String = s
                .chars()
                .map(|ch| if ch == '0' { '1' } else { '0' })
                .collect();
            format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={flipped}")
        }),
    ];
    for (what, code, rebuild) in garbled {
        let status = if code == "InvalidAccessKeyId.NotFound" {
            404
        } else {
            400
        };
        cases.push(case(
            format!("ACS3 Authorization: {what}"),
            status,
            code,
            move |app| acs3_auth(app, rebuild),
        ));
    }
    for left_out in sign::ACS3_REQUIRED_SIGNED_HEADERS {
        cases.push(
            case(
                format!("ACS3 SignedHeaders without {left_out}"),
                400,
                "IncompleteSignature",
                move |app| {
                    acs3_auth(app, |c, h, s| {
                        let kept: Vec<&str> = h.split(';').filter(|n| *n != left_out).collect();
                        format!(
                            "ACS3-HMAC-SHA256 Credential={c},SignedHeaders={},Signature={s}",
                            kept.join(";")
                        )
                    })
                },
            )
            .naming(left_out),
        );
    }
    cases.push(case(
        "ACS3 Authorization with raw non-ASCII bytes",
        400,
        "InvalidParameter",
        |app| {
            let mut value =
                b"ACS3-HMAC-SHA256 Credential=caf\xc3\xa9,SignedHeaders=host,Signature=".to_vec();
            value.extend_from_slice("0".repeat(64).as_bytes());
            acs3_valid(app).set_header("Authorization", value)
        },
    ));
    cases.push(case(
        "ACS3 with an unsigned header of raw 0xFF",
        400,
        "InvalidParameter",
        |app| acs3_valid(app).header("x-note", &b"\xff\xfe"[..]),
    ));
    cases.push(case(
        "v1 with a header of raw UTF-8",
        400,
        "InvalidParameter",
        |app| in_query(&valid(app)).header("user-agent", "café".as_bytes()),
    ));
    let dates: [(&str, &'static str); 4] = [
        ("2026-12-04 19:24:56", "InvalidTimeStamp.Format"),
        ("Fri, 04 Dec 2026 19:24:56 GMT", "InvalidTimeStamp.Format"),
        ("2000-01-01T00:00:00Z", "InvalidTimeStamp.Expired"),
        ("2999-01-01T00:00:00Z", "InvalidTimeStamp.Expired"),
    ];
    for (date, code) in dates {
        cases.push(case(
            format!("ACS3 x-acs-date {date:?}"),
            400,
            code,
            move |app| acs3_at(app, date),
        ));
    }
    cases.push(case(
        "ACS3 x-acs-date 16 minutes ago",
        400,
        "InvalidTimeStamp.Expired",
        |app| {
            acs3_at(
                app,
                &sign::format_timestamp(now(app) - Duration::minutes(16)),
            )
        },
    ));
    cases.push(case(
        "ACS3 x-acs-version 2020-01-01",
        400,
        "InvalidVersion",
        |app| acs3_valid(app).set_header("x-acs-version", "2020-01-01"),
    ));
    cases.push(case(
        "ACS3 x-acs-action Nope",
        404,
        "InvalidAction.NotFound",
        |app| acs3_valid(app).set_header("x-acs-action", "Nope"),
    ));
    cases.push(case(
        "ACS3 body not matching x-acs-content-sha256",
        400,
        "SignatureDoesNotMatch",
        |app| acs3_valid(app).body(&b"unexpected"[..]),
    ));
    cases.push(case(
        "ACS3 x-acs-content-sha256 not hex",
        400,
        "SignatureDoesNotMatch",
        |app| acs3_valid(app).set_header("x-acs-content-sha256", "not-a-hash"),
    ));
    cases
}

/// Methods other than GET and POST; bodies over the limit.
fn method_and_body_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for method in [
        "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO", "get", "Post",
    ] {
        cases.push(case(
            format!("method {method}"),
            400,
            "UnsupportedHTTPMethod",
            move |app| {
                let mut req = in_query(&valid(app));
                req.method = method.into();
                req
            },
        ));
    }
    cases.push(case(
        "method PUT with a form body",
        400,
        "UnsupportedHTTPMethod",
        |app| {
            let mut req = RawRequest::post_form("", encode_query(&valid(app)));
            req.method = "PUT".into();
            req
        },
    ));
    const LIMIT: usize = 1024 * 1024;
    let padded_form = |app: &TestApp, total: usize| {
        let mut body = encode_query(&valid(app)).into_bytes();
        body.extend_from_slice(b"&Pad=");
        body.resize(total, b'x');
        body
    };
    cases.push(case(
        "form body of 1 MiB + 1 with Content-Length",
        413,
        "RequestEntityTooLarge",
        move |app| RawRequest::post_form("", padded_form(app, LIMIT + 1)),
    ));
    cases.push(case(
        "form body of 2 MiB, chunked",
        413,
        "RequestEntityTooLarge",
        move |app| RawRequest::post_form("", padded_form(app, 2 * LIMIT)).framing(Framing::Chunked),
    ));
    cases.push(case(
        "octet-stream body of 1 MiB + 1 with Content-Length",
        413,
        "RequestEntityTooLarge",
        |app| {
            in_query(&valid(app))
                .header("content-type", "application/octet-stream")
                .body(vec![0u8; LIMIT + 1])
        },
    ));
    cases.push(case(
        "octet-stream body of 1 MiB + 1, chunked",
        413,
        "RequestEntityTooLarge",
        |app| {
            in_query(&valid(app))
                .header("content-type", "application/octet-stream")
                .body(vec![0u8; LIMIT + 1])
                .framing(Framing::Chunked)
        },
    ));
    cases.push(case(
        "ACS3 body of 4 MiB",
        413,
        "RequestEntityTooLarge",
        |app| acs3_valid(app).body(vec![b'a'; 4 * LIMIT]),
    ));
    cases
}

/// Business parameters behind a valid signature.
fn business_cases() -> Vec<Case> {
    let mut cases = vec![
        case("DBInstanceId missing", 400, "MissingParameter", |app| {
            signed_query(app, ATTR, &[], |_| {})
        })
        .naming("\"DBInstanceId\""),
        case("DBInstanceId empty", 400, "MissingParameter", |app| {
            signed_query(app, ATTR, &[("DBInstanceId", "")], |_| {})
        })
        .naming("\"DBInstanceId\""),
        case("RegionId missing", 400, "MissingParameter", |app| {
            signed_query(app, LIST, &[], |_| {})
        })
        .naming("\"RegionId\""),
        case("RegionId empty", 400, "MissingParameter", |app| {
            signed_query(app, LIST, &[("RegionId", "")], |_| {})
        })
        .naming("\"RegionId\""),
        case(
            "DescribeDownloadRecords without DBInstanceId",
            400,
            "MissingParameter",
            |app| signed_query(app, DOWNLOADS, &[], |_| {}),
        )
        .naming("\"DBInstanceId\""),
        case(
            "unknown instance",
            404,
            "InvalidDBInstanceId.NotFound",
            |app| signed_query(app, ATTR, &[("DBInstanceId", "gp-nope")], |_| {}),
        ),
        case(
            "another account's instance",
            404,
            "InvalidDBInstanceId.NotFound",
            |app| signed_query(app, ATTR, &[("DBInstanceId", "gp-bob-ok")], |_| {}),
        ),
        case(
            "downloads of an unknown instance",
            404,
            "InvalidDBInstanceId.NotFound",
            |app| signed_query(app, DOWNLOADS, &[("DBInstanceId", "gp-nope")], |_| {}),
        ),
        case(
            "downloads of an old version",
            400,
            "IncorrectModuleVersion",
            |app| signed_query(app, DOWNLOADS, &[("DBInstanceId", "gp-alice-old")], |_| {}),
        ),
        case(
            "downloads of a classic instance",
            400,
            "IncorrectDBInstanceState",
            |app| {
                signed_query(
                    app,
                    DOWNLOADS,
                    &[("DBInstanceId", "gp-alice-classic")],
                    |_| {},
                )
            },
        ),
        case(
            "ACS3: DBInstanceId missing",
            400,
            "MissingParameter",
            |app| acs3(app, ATTR, &[]),
        )
        .naming("\"DBInstanceId\""),
        case(
            "ACS3: unknown instance",
            404,
            "InvalidDBInstanceId.NotFound",
            |app| acs3(app, ATTR, &[("DBInstanceId", "gp-nope")]),
        ),
        case("ACS3: PageSize=7", 400, "InvalidParameter", |app| {
            acs3(app, LIST, &[("RegionId", "cn-hangzhou"), ("PageSize", "7")])
        })
        .naming("\"PageSize\""),
        case(
            "form body: DBInstanceId missing",
            400,
            "MissingParameter",
            |app| RawRequest::post_form("", encode_query(&signed_with(app, ATTR, &[], |_| {}))),
        )
        .naming("\"DBInstanceId\""),
    ];
    let invalid: Vec<(&str, &str, &str, Business)> = vec![
        (LIST, "PageSize", "7", REGION),
        (LIST, "PageSize", "0", REGION),
        (LIST, "PageSize", "abc", REGION),
        (LIST, "PageSize", "-30", REGION),
        (LIST, "PageSize", "30.0", REGION),
        (LIST, "PageSize", "1000", REGION),
        (LIST, "PageSize", " 30", REGION),
        (LIST, "PageNumber", "0", REGION),
        (LIST, "PageNumber", "abc", REGION),
        (LIST, "PageNumber", "99999999999", REGION),
        (LIST, "PageNumber", "-1", REGION),
        (LIST, "PageNumber", "1.5", REGION),
        (LIST, "PageNumber", "1000001", REGION),
        (LIST, "DBInstanceModes", "Elastic", REGION),
        (LIST, "DBInstanceModes", "StorageElastic,Bogus", REGION),
        (DOWNLOADS, "DownloadTaskType", "bogus", OK_ID),
        (DOWNLOADS, "DownloadTaskType", "slow_sql", OK_ID),
        (DOWNLOADS, "DownloadTaskType", "SLOW_SQL ", OK_ID),
    ];
    for (action, name, value, business) in invalid {
        cases.push(
            case(
                format!("{action} {name}={value:?}"),
                400,
                "InvalidParameter",
                move |app| signed_query(app, action, business, |p| set(p, name, value)),
            )
            .naming(&quoted(name)),
        );
    }
    cases
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[test]
fn the_tables_have_at_least_a_hundred_cases() {
    let total = encoding_cases().len()
        + duplicate_and_size_cases().len()
        + common_v1_cases().len()
        + acs3_cases().len()
        + method_and_body_cases().len()
        + business_cases().len();
    assert!(total >= 100, "only {total} cases");
}

/// The builders the tables start from are accepted as they are, so each case's error comes from
/// its own change.
#[tokio::test]
async fn the_baselines_are_accepted() {
    let app = spawn_app().await;
    let form = RawRequest::post_form("", encode_query(&valid(&app)));
    let big_ok = {
        let mut p = v1_pairs(&app, &alice(), ATTR, OK_ID);
        p.push(("Extra".into(), "x".repeat(16 * 1024)));
        // With the Signature that makes 256.
        let extra = 256 - 1 - p.len();
        p.extend((0..extra).map(|i| (format!("P{i}"), String::new())));
        in_query(&with_v1_signature(&alice(), "POST", p))
    };
    let baselines = [
        ("v1 in the query", in_query(&valid(&app))),
        ("v1 in a form body", form),
        (
            "v1 with an extra parameter",
            signed_query(&app, ATTR, OK_ID, |p| set(p, "Extra", "1")),
        ),
        ("v1 with a 16 KiB value and 256 parameters", big_ok),
        ("ACS3", acs3_valid(&app)),
        (
            "ACS3 rebuilt",
            acs3_auth(&app, |c, h, s| {
                format!("ACS3-HMAC-SHA256 Credential={c},SignedHeaders={h},Signature={s}")
            }),
        ),
        ("ACS3 at a date", acs3_at(&app, &app.timestamp())),
        (
            "v1 with a 1 MiB octet-stream body",
            in_query(&valid(&app))
                .header("content-type", "application/octet-stream")
                .body(vec![0u8; 1024 * 1024]),
        ),
        (
            "v1 with a 1 MiB octet-stream body, chunked",
            in_query(&valid(&app))
                .header("content-type", "application/octet-stream")
                .body(vec![0u8; 1024 * 1024])
                .framing(Framing::Chunked),
        ),
        (
            "v1 signed 14 minutes ago",
            signed_query(&app, ATTR, OK_ID, |p| {
                set(
                    p,
                    "Timestamp",
                    &sign::format_timestamp(now(&app) - Duration::minutes(14)),
                )
            }),
        ),
    ];
    for (what, req) in baselines {
        let answer = send_raw(&app, &req).await.answer(what);
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    }
}

#[tokio::test]
async fn broken_encodings_are_invalid_parameter() {
    run(encoding_cases()).await;
}

#[tokio::test]
async fn duplicates_and_oversized_input_are_invalid_parameter() {
    run(duplicate_and_size_cases()).await;
}

#[tokio::test]
async fn common_v1_parameters_are_checked() {
    let app = spawn_app_with(|c| {
        c.limits.calls_per_second = 1_000_000;
        c.limits.burst = Some(1_000_000);
    })
    .await;
    // Single-digit fields, so that an unpadded timestamp differs from a padded one.
    app.clock
        .set("2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap());
    run_on(&app, common_v1_cases()).await;
}

#[tokio::test]
async fn acs3_headers_and_authorization_are_checked() {
    run(acs3_cases()).await;
}

#[tokio::test]
async fn methods_and_oversized_bodies_are_refused() {
    run(method_and_body_cases()).await;
}

#[tokio::test]
async fn business_parameters_are_checked_behind_a_valid_signature() {
    run(business_cases()).await;
}

/// A client that announces more than the limit and then sends little must not hold a server
/// task forever: the announced length alone decides (413), or the connection is closed.
#[tokio::test]
async fn a_content_length_over_the_limit_is_not_awaited() {
    let app = spawn_app().await;
    for (what, content_type) in [
        ("form", "application/x-www-form-urlencoded"),
        ("octet-stream", "application/octet-stream"),
    ] {
        let req = in_query(&valid(&app))
            .header("content-type", content_type)
            .body(vec![b'x'; 4096])
            .framing(Framing::Claim(2 * 1024 * 1024));
        match send_raw(&app, &req).await {
            RawOutcome::Answered(a) => {
                assert_eq!(
                    (a.status, a.code().as_str()),
                    (413, "RequestEntityTooLarge"),
                    "{what}: {}",
                    a.body
                );
            }
            RawOutcome::Closed => {}
            other => panic!(
                "{what}: Content-Length 2 MiB with 4 KiB sent: expected a 413 or a close within {RAW_TIMEOUT:?}, got {other:?}"
            ),
        }
        assert!(app.healthy().await);
    }
}

/// A body cut short by the client (it claims 100 bytes, sends 10 and shuts its side) is not
/// "too large": the server answers with a 4xx other than 413, or closes, promptly.
#[tokio::test]
async fn a_body_cut_short_is_not_called_too_large() {
    let app = spawn_app().await;
    let mut req = RawRequest::post_form("", b"Extra=1234".to_vec()).framing(Framing::Claim(100));
    req.half_close = true;
    match send_raw(&app, &req).await {
        RawOutcome::Answered(a) => {
            assert!(
                (400..500).contains(&a.status) && a.status != 413,
                "Content-Length 100, 10 bytes sent, then EOF: expected a 4xx other than 413 \
                 (the body is not too large) or a close, got {} {}",
                a.status,
                a.body
            );
        }
        RawOutcome::Closed => {}
        other => panic!("a body cut short: {other:?}"),
    }
    assert!(app.healthy().await);
}

/// Documented in docs/error-codes.md: the `http` crate caps request targets at about 64 KiB and
/// answers a bare 414 before gpdiag sees the request. It must still be prompt and not a 5xx.
#[tokio::test]
async fn request_targets_over_64_kib_are_refused_by_the_http_layer() {
    let app = spawn_app().await;
    let request = query_plus(&app, &format!("Extra={}", "x".repeat(100 * 1024)));
    match send_raw(&app, &request).await {
        RawOutcome::Answered(a) => assert_eq!(a.status, 414, "{}", a.body),
        other => panic!("expected a 414, got {other:?}"),
    }
    assert!(app.healthy().await);
}
