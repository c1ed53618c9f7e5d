//! Request signing as pure functions: signature v1 (HMAC-SHA1) and ACS3-HMAC-SHA256, for both verifying (server) and signing (client).
//!
//! The server and our own client share this code, so a bug here would pass
//! every round trip; the known-answer vectors in `shared/vectors` are the check.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::encode::{encode_pairs, encode_query, percent_encode};

/// The only API version of the `gpdb` product this server speaks.
pub const API_VERSION: &str = "2016-05-03";

/// The algorithm name that starts an ACS3 `Authorization` header and its string to sign.
pub const ACS3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The headers our client signs with ACS3, sorted. Other SDKs sign more (the
/// Python Tea SDK signs every header it sets), never fewer, so a server can
/// insist that these are among `SignedHeaders`.
pub const ACS3_REQUIRED_SIGNED_HEADERS: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
];

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

fn hmac_sha1(key: &[u8]) -> HmacSha1 {
    // HMAC takes keys of any length, so this cannot fail.
    HmacSha1::new_from_slice(key).expect("HMAC accepts any key length")
}

fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Sorts by name, then by value, both byte-wise. Sorting on the value too makes
/// the output independent of wire order when a name repeats (the server rejects
/// duplicates anyway, but the signature must stay deterministic).
fn sorted(params: &[(String, String)]) -> Vec<&(String, String)> {
    let mut list: Vec<&(String, String)> = params.iter().collect();
    list.sort();
    list
}

// ---------------------------------------------------------------------------
// Signature v1 (HMAC-SHA1), spec §4
// ---------------------------------------------------------------------------

/// The v1 canonicalized query: every parameter except `Signature`, empty values
/// kept (old core signs `SignatureType=`), sorted, rendered `enc(name)=enc(value)`.
pub fn v1_canonical_query(params: &[(String, String)]) -> String {
    encode_pairs(sorted(params).into_iter().filter(|p| p.0 != "Signature"))
}

/// `METHOD&%2F&enc(canonical_query)`. The method is used verbatim: HTTP methods
/// are case-sensitive and every SDK sends them upper-case.
pub fn v1_string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&v1_canonical_query(params))
    )
}

/// Base64 of HMAC-SHA1 keyed with `secret + "&"` (the `&` is where a token
/// secret would go in OAuth 1, from which v1 descends; it is always empty here).
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = hmac_sha1(v1_key(secret).as_bytes());
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Checks a received v1 `Signature` (already form-decoded) in constant time.
/// Anything that is not standard padded base64 of 20 bytes is simply wrong.
pub fn v1_verify(secret: &str, string_to_sign: &str, signature: &str) -> bool {
    let Ok(received) = BASE64.decode(signature) else {
        return false;
    };
    let mut mac = hmac_sha1(v1_key(secret).as_bytes());
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&received).is_ok()
}

fn v1_key(secret: &str) -> String {
    format!("{secret}&")
}

// ---------------------------------------------------------------------------
// ACS3-HMAC-SHA256, spec §5
// ---------------------------------------------------------------------------

/// The parsed `Authorization` header of an ACS3 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acs3Authorization {
    pub access_key_id: String,
    /// Lower-cased, in the order the client listed them: the canonical request
    /// is built in this order, so re-sorting would break a client that signed
    /// an unsorted list.
    pub signed_headers: Vec<String>,
    /// 64 hex digits, lower-cased.
    pub signature: String,
}

/// Why an `Authorization` header could not be parsed. Messages quote field
/// names and the algorithm name only, never the signature or other values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationError {
    /// The header is empty.
    Empty,
    /// The scheme is not `ACS3-HMAC-SHA256` (e.g. `ACS3-HMAC-SM3`); the server
    /// answers `InvalidSignatureMethod` rather than `IncompleteSignature`.
    UnsupportedAlgorithm {
        algorithm: String,
    },
    /// A comma-separated part is not `Name=value` (or is empty).
    MalformedField,
    /// A field other than `Credential`, `SignedHeaders`, `Signature`.
    UnknownField {
        field: String,
    },
    DuplicateField {
        field: &'static str,
    },
    MissingField {
        field: &'static str,
    },
    EmptyCredential,
    /// `SignedHeaders` is empty, has an empty or non-token name, or repeats a name.
    InvalidSignedHeaders,
    /// `Signature` is not exactly 64 hex digits.
    InvalidSignature,
}

impl fmt::Display for AuthorizationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorizationError::Empty => f.write_str("the Authorization header is empty"),
            AuthorizationError::UnsupportedAlgorithm { algorithm } => write!(
                f,
                "the signature algorithm {algorithm:?} is not supported; use {ACS3_ALGORITHM}"
            ),
            AuthorizationError::MalformedField => f.write_str(
                "the Authorization header must be `ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...`",
            ),
            AuthorizationError::UnknownField { field } => {
                write!(f, "the Authorization header has an unknown field {field:?}")
            }
            AuthorizationError::DuplicateField { field } => {
                write!(f, "the Authorization header repeats the field {field}")
            }
            AuthorizationError::MissingField { field } => {
                write!(f, "the Authorization header lacks the field {field}")
            }
            AuthorizationError::EmptyCredential => {
                f.write_str("the Credential of the Authorization header is empty")
            }
            AuthorizationError::InvalidSignedHeaders => f.write_str(
                "SignedHeaders in the Authorization header must be a non-empty ';'-separated list of distinct header names",
            ),
            AuthorizationError::InvalidSignature => f.write_str(
                "the Signature in the Authorization header must be 64 hexadecimal digits",
            ),
        }
    }
}

impl std::error::Error for AuthorizationError {}

/// Parses `ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b;c>,Signature=<64 hex>`.
///
/// The SDKs send exactly that (one space, no spaces after commas); spaces
/// after the commas and after the algorithm are tolerated because hand-written
/// clients add them and they carry no meaning. Field order is free.
pub fn parse_acs3_authorization(value: &str) -> Result<Acs3Authorization, AuthorizationError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AuthorizationError::Empty);
    }
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ACS3_ALGORITHM {
        return Err(AuthorizationError::UnsupportedAlgorithm {
            algorithm: algorithm.chars().take(64).collect(),
        });
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.trim_start_matches(' ').split(',') {
        let part = part.trim_start_matches(' ');
        let (name, field_value) = part
            .split_once('=')
            .ok_or(AuthorizationError::MalformedField)?;
        let (slot, field) = match name {
            "Credential" => (&mut credential, "Credential"),
            "SignedHeaders" => (&mut signed_headers, "SignedHeaders"),
            "Signature" => (&mut signature, "Signature"),
            "" => return Err(AuthorizationError::MalformedField),
            other => {
                return Err(AuthorizationError::UnknownField {
                    field: other.chars().take(64).collect(),
                })
            }
        };
        if slot.replace(field_value).is_some() {
            return Err(AuthorizationError::DuplicateField { field });
        }
    }

    let credential = credential.ok_or(AuthorizationError::MissingField {
        field: "Credential",
    })?;
    let signed_headers = signed_headers.ok_or(AuthorizationError::MissingField {
        field: "SignedHeaders",
    })?;
    let signature = signature.ok_or(AuthorizationError::MissingField { field: "Signature" })?;

    if credential.is_empty() {
        return Err(AuthorizationError::EmptyCredential);
    }

    let mut headers: Vec<String> = Vec::new();
    for name in signed_headers.split(';') {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(AuthorizationError::InvalidSignedHeaders);
        }
        let name = name.to_ascii_lowercase();
        if headers.contains(&name) {
            return Err(AuthorizationError::InvalidSignedHeaders);
        }
        headers.push(name);
    }

    // Case carries no meaning: the signature is compared as bytes after hex decoding.
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthorizationError::InvalidSignature);
    }

    Ok(Acs3Authorization {
        access_key_id: credential.to_owned(),
        signed_headers: headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// RFC 9110 `tchar`: what a header name may contain.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Builds the ACS3 canonical request (spec §5):
/// `METHOD \n PATH \n QUERY \n HEADERS \n SIGNED_HEADERS \n HASHED_PAYLOAD`.
///
/// * `query`: decoded query parameters, rendered sorted as `enc(name)=enc(value)`.
///   (The Python signer leaves names unencoded; gpdb names are `A-Za-z0-9.`, so
///   the two agree.) The form body is not part of it; its hash covers it.
/// * `headers`: (lower-case name, value) pairs as received. For each name in
///   `signed_headers` (in that order) the line is `name:v1,v2\n`, the values
///   trimmed and sorted, which is what the Python signer does for a repeated header.
/// * A signed header that is absent renders as `name:`. Signers render a header
///   they hold with an empty value the same way, and some proxies drop empty
///   headers, so "absent" and "empty" cannot be told apart reliably; either way
///   the signature still covers the fact that there was no value. Whether a
///   header must be present (host, x-acs-date, ...) is the caller's check.
pub fn acs3_canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed_headers: &[String],
    hashed_payload: &str,
) -> String {
    let canonical_query = encode_pairs(sorted(query));
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let mut values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect();
        values.sort_unstable();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    // canonical_headers ends in '\n', so an empty line precedes the signed-header list.
    format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{}\n{hashed_payload}",
        signed_headers.join(";")
    )
}

/// `ACS3-HMAC-SHA256\n` + lower-hex SHA-256 of the canonical request.
pub fn acs3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ACS3_ALGORITHM}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Lower-hex HMAC-SHA256 keyed with the secret itself (no `&`, unlike v1).
pub fn acs3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks an ACS3 signature (hex, either case) in constant time; anything
/// that does not decode to 32 bytes is simply wrong.
pub fn acs3_verify(secret: &str, string_to_sign: &str, signature_hex: &str) -> bool {
    let Ok(received) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&received).is_ok()
}

/// Lower-hex SHA-256, as in `x-acs-content-sha256`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// An AccessKey pair. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .finish()
    }
}

/// A signed request ready to send to path `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: String,
    /// Already encoded, without the leading `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The two signatures the official SDKs send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SignatureVersion {
    /// ACS3-HMAC-SHA256, the SDKs' default.
    Acs3,
    /// Signature v1 (HMAC-SHA1), the SDKs' `signature_algorithm="v2"`.
    V1,
}

impl SignatureVersion {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Acs3 => "ACS3-HMAC-SHA256",
            Self::V1 => "v1 (HMAC-SHA1)",
        }
    }

    /// Signs an RPC call as the Tea SDKs send them: `POST`, the parameters in the query, an
    /// empty body.
    pub fn sign_rpc(
        self,
        creds: &Credentials,
        action: &str,
        params: &[(String, String)],
        host: &str,
        timestamp: &str,
        nonce: &str,
    ) -> SignedRequest {
        match self {
            Self::Acs3 => sign_acs3(creds, "POST", action, params, host, timestamp, nonce, b""),
            Self::V1 => sign_v1(creds, "POST", action, params, timestamp, nonce),
        }
    }
}

/// Signs like the Tea SDK with `signature_algorithm='v2'`: everything in the
/// query, empty body.
///
/// `params` are the business parameters only; the common ones are added here.
/// Parameters come in the Tea SDK's order (Action, Format, Version, Timestamp,
/// SignatureNonce, business..., SignatureMethod, SignatureVersion, AccessKeyId,
/// Signature). `Format` is `json` in lower case because that is what the Tea
/// SDK sends (spec §3) and it is signed, so copying it lets a Tea request be
/// reproduced exactly. The query is RFC 3986 encoded (`%20`), which signs the
/// same as Tea's `+` once decoded. `x-acs-action` / `x-acs-version` headers are
/// added as every SDK sends them; they are not signed in v1.
pub fn sign_v1(
    creds: &Credentials,
    method: &str,
    action: &str,
    params: &[(String, String)],
    timestamp: &str,
    nonce: &str,
) -> SignedRequest {
    let owned = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    let mut query = vec![
        owned("Action", action),
        owned("Format", "json"),
        owned("Version", API_VERSION),
        owned("Timestamp", timestamp),
        owned("SignatureNonce", nonce),
    ];
    query.extend(params.iter().cloned());
    query.push(owned("SignatureMethod", "HMAC-SHA1"));
    query.push(owned("SignatureVersion", "1.0"));
    query.push(owned("AccessKeyId", &creds.access_key_id));
    let signature = v1_signature(&creds.access_key_secret, &v1_string_to_sign(method, &query));
    query.push(owned("Signature", &signature));
    SignedRequest {
        method: method.to_owned(),
        query: encode_query(&query),
        headers: vec![
            owned("x-acs-action", action),
            owned("x-acs-version", API_VERSION),
        ],
        body: Vec::new(),
    }
}

/// Signs like the Tea SDK's default ACS3-HMAC-SHA256: business parameters in
/// the query, everything else in headers.
///
/// The query is sent in canonical (sorted) order so that it reads the same as
/// what was signed. Only [`ACS3_REQUIRED_SIGNED_HEADERS`] are signed, like the
/// non-Python SDKs; `host` must be exactly the authority the HTTP client sends
/// (with the port), since the server signs the `host` header it receives.
/// A caller sending a form body adds its own `content-type` (unsigned).
#[allow(clippy::too_many_arguments)]
pub fn sign_acs3(
    creds: &Credentials,
    method: &str,
    action: &str,
    params: &[(String, String)],
    host: &str,
    date: &str,
    nonce: &str,
    body: &[u8],
) -> SignedRequest {
    let hashed_payload = sha256_hex(body);
    let owned = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    let mut headers = vec![
        owned("host", host),
        owned("x-acs-action", action),
        owned("x-acs-version", API_VERSION),
        owned("x-acs-date", date),
        owned("x-acs-signature-nonce", nonce),
        owned("x-acs-content-sha256", &hashed_payload),
    ];
    let signed_headers: Vec<String> = ACS3_REQUIRED_SIGNED_HEADERS
        .iter()
        .map(|h| (*h).to_owned())
        .collect();
    let canonical = acs3_canonical_request(
        method,
        "/",
        params,
        &headers,
        &signed_headers,
        &hashed_payload,
    );
    let signature = acs3_signature(&creds.access_key_secret, &acs3_string_to_sign(&canonical));
    headers.push(owned(
        "Authorization",
        &format!(
            "{ACS3_ALGORITHM} Credential={},SignedHeaders={},Signature={signature}",
            creds.access_key_id,
            signed_headers.join(";")
        ),
    ));
    SignedRequest {
        method: method.to_owned(),
        query: encode_pairs(sorted(params)),
        headers,
        body: body.to_vec(),
    }
}

/// A fresh nonce: 32 lower-case hex digits from 16 random bytes, the shape
/// every SDK sends.
pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// `YYYY-MM-DDThh:mm:ssZ` in UTC, no fractional seconds: the `Timestamp` /
/// `x-acs-date` format.
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "testid".to_owned(),
            access_key_secret: "testsecret".to_owned(),
        }
    }

    #[test]
    fn an_rpc_call_is_a_post_with_an_empty_body_in_either_version() {
        let params = vec![("DBInstanceId".to_owned(), "gp-1".to_owned())];
        let (host, time, nonce) = ("h.example", "2026-12-04T10:00:00Z", "n-1");
        let acs3 = SignatureVersion::Acs3.sign_rpc(&creds(), "A", &params, host, time, nonce);
        let direct = sign_acs3(&creds(), "POST", "A", &params, host, time, nonce, b"");
        assert_eq!(acs3.query, direct.query);
        assert_eq!(acs3.headers, direct.headers);
        assert_eq!(acs3.method, "POST");
        let v1 = SignatureVersion::V1.sign_rpc(&creds(), "A", &params, host, time, nonce);
        assert_eq!(
            v1.query,
            sign_v1(&creds(), "POST", "A", &params, time, nonce).query
        );
        assert!(v1.body.is_empty() && acs3.body.is_empty());
    }

    #[test]
    fn v1_canonical_query_drops_signature_keeps_empty_and_sorts() {
        let params = pairs(&[
            ("b", "2"),
            ("Signature", "abc="),
            ("SignatureType", ""),
            ("a", "x y"),
            ("B", "1"),
        ]);
        assert_eq!(
            v1_canonical_query(&params),
            "B=1&SignatureType=&a=x%20y&b=2"
        );
    }

    #[test]
    fn v1_canonical_query_is_independent_of_duplicate_order() {
        let one = pairs(&[("a", "2"), ("a", "1")]);
        let two = pairs(&[("a", "1"), ("a", "2")]);
        assert_eq!(v1_canonical_query(&one), v1_canonical_query(&two));
        assert_eq!(v1_canonical_query(&one), "a=1&a=2");
    }

    #[test]
    fn v1_string_to_sign_double_encodes() {
        let params = pairs(&[("Timestamp", "2026-12-04T19:25:17Z"), ("K", "a b")]);
        assert_eq!(
            v1_string_to_sign("GET", &params),
            "GET&%2F&K%3Da%2520b%26Timestamp%3D2026-12-04T19%253A25%253A17Z"
        );
    }

    #[test]
    fn v1_verify_accepts_own_signature_and_rejects_garbage() {
        let sts = "POST&%2F&a%3D1";
        let sig = v1_signature("s", sts);
        assert!(v1_verify("s", sts, &sig));
        assert!(!v1_verify("t", sts, &sig));
        assert!(!v1_verify("s", "POST&%2F&a%3D2", &sig));
        for bad in [
            "",
            "!!!",
            "AAAA",
            &sig[..sig.len() - 1],
            &format!("{sig}AA=="),
        ] {
            assert!(!v1_verify("s", sts, bad), "{bad:?}");
        }
    }

    #[test]
    fn acs3_verify_rejects_garbage() {
        let sig = acs3_signature("s", "x");
        assert_eq!(sig.len(), 64);
        assert!(acs3_verify("s", "x", &sig));
        assert!(acs3_verify("s", "x", &sig.to_ascii_uppercase()));
        assert!(!acs3_verify("s", "y", &sig));
        for bad in ["", "zz", &sig[..62], &format!("{sig}00")] {
            assert!(!acs3_verify("s", "x", bad), "{bad:?}");
        }
    }

    #[test]
    fn sha256_hex_of_empty_body() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    const SIG: &str = "dd2c6af01e95c58658a3b601e4780460d5a06978f5cf3e9155d6a62496d708cc";

    #[test]
    fn parse_authorization_as_sent_by_tea() {
        let value = format!(
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-date,Signature={SIG}"
        );
        assert_eq!(
            parse_acs3_authorization(&value).unwrap(),
            Acs3Authorization {
                access_key_id: "testid".to_owned(),
                signed_headers: vec!["host".to_owned(), "x-acs-date".to_owned()],
                signature: SIG.to_owned(),
            }
        );
    }

    #[test]
    fn parse_authorization_tolerates_spaces_order_and_case() {
        let value = format!(
            "ACS3-HMAC-SHA256  Signature={},  SignedHeaders=X-Acs-Date;Host, Credential=id",
            SIG.to_ascii_uppercase()
        );
        let auth = parse_acs3_authorization(&value).unwrap();
        assert_eq!(auth.access_key_id, "id");
        assert_eq!(auth.signed_headers, ["x-acs-date", "host"]);
        assert_eq!(auth.signature, SIG);
    }

    #[test]
    fn parse_authorization_errors() {
        use AuthorizationError as E;
        let ok_tail = format!("SignedHeaders=host,Signature={SIG}");
        let cases: Vec<(String, AuthorizationError)> = vec![
            (String::new(), E::Empty),
            ("   ".to_owned(), E::Empty),
            (
                format!("ACS3-HMAC-SM3 Credential=id,{ok_tail}"),
                E::UnsupportedAlgorithm {
                    algorithm: "ACS3-HMAC-SM3".to_owned(),
                },
            ),
            (
                "Bearer abc".to_owned(),
                E::UnsupportedAlgorithm {
                    algorithm: "Bearer".to_owned(),
                },
            ),
            ("ACS3-HMAC-SHA256".to_owned(), E::MalformedField),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,,{ok_tail}"),
                E::MalformedField,
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,{ok_tail},"),
                E::MalformedField,
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,Extra=1,{ok_tail}"),
                E::UnknownField {
                    field: "Extra".to_owned(),
                },
            ),
            (
                format!("ACS3-HMAC-SHA256 credential=id,{ok_tail}"),
                E::UnknownField {
                    field: "credential".to_owned(),
                },
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,Credential=id,{ok_tail}"),
                E::DuplicateField {
                    field: "Credential",
                },
            ),
            (
                format!("ACS3-HMAC-SHA256 {ok_tail}"),
                E::MissingField {
                    field: "Credential",
                },
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,Signature={SIG}"),
                E::MissingField {
                    field: "SignedHeaders",
                },
            ),
            (
                "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host".to_owned(),
                E::MissingField { field: "Signature" },
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=,{ok_tail}"),
                E::EmptyCredential,
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,SignedHeaders=,Signature={SIG}"),
                E::InvalidSignedHeaders,
            ),
            (
                format!(
                    "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;;x-acs-date,Signature={SIG}"
                ),
                E::InvalidSignedHeaders,
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;HOST,Signature={SIG}"),
                E::InvalidSignedHeaders,
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,SignedHeaders=ho st,Signature={SIG}"),
                E::InvalidSignedHeaders,
            ),
            (
                "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host,Signature=abc".to_owned(),
                E::InvalidSignature,
            ),
            (
                format!(
                    "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host,Signature={}zz",
                    &SIG[..62]
                ),
                E::InvalidSignature,
            ),
            (
                format!("ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host,Signature={SIG}0"),
                E::InvalidSignature,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_acs3_authorization(&value), Err(expected), "{value:?}");
        }
    }

    #[test]
    fn authorization_error_messages_do_not_leak_values() {
        let err = parse_acs3_authorization(
            "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host,Signature=secretish",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secretish"));
        let err = parse_acs3_authorization("ACS3-HMAC-SM3 x").unwrap_err();
        assert!(err.to_string().contains("ACS3-HMAC-SM3"));
    }

    #[test]
    fn canonical_headers_join_sorted_trimmed_values_and_render_absent_as_empty() {
        let headers = pairs(&[("x-b", " 2 "), ("host", "h:1"), ("x-b", "1"), ("X-C", "c")]);
        let signed: Vec<String> = ["host", "x-a", "x-b", "x-c"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let cr = acs3_canonical_request(
            "POST",
            "/",
            &pairs(&[("b", "a b"), ("a", "")]),
            &headers,
            &signed,
            "HASH",
        );
        assert_eq!(
            cr,
            "POST\n/\na=&b=a%20b\nhost:h:1\nx-a:\nx-b:1,2\nx-c:c\n\nhost;x-a;x-b;x-c\nHASH"
        );
    }

    #[test]
    fn credentials_debug_redacts_secret() {
        let text = format!("{:?}", creds());
        assert!(text.contains("testid"));
        assert!(!text.contains("testsecret"));
    }

    #[test]
    fn timestamp_and_nonce_formats() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_timestamp(t), "2026-01-02T03:04:05Z");
        let t = t + chrono::Duration::milliseconds(999);
        assert_eq!(format_timestamp(t), "2026-01-02T03:04:05Z");

        let a = new_nonce();
        let b = new_nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        assert_ne!(a, b);
    }

    #[test]
    fn sign_v1_round_trips() {
        let params = pairs(&[("DBInstanceId", "gp-1"), ("Keyword", "a b+c*~")]);
        let req = sign_v1(
            &creds(),
            "POST",
            "DescribeDiagnosisRecords",
            &params,
            "2026-01-02T03:04:05Z",
            "n1",
        );
        assert_eq!(req.method, "POST");
        assert!(req.body.is_empty());
        let decoded = crate::encode::decode_form(req.query.as_bytes()).unwrap();
        let names: Vec<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Action",
                "Format",
                "Version",
                "Timestamp",
                "SignatureNonce",
                "DBInstanceId",
                "Keyword",
                "SignatureMethod",
                "SignatureVersion",
                "AccessKeyId",
                "Signature"
            ]
        );
        let signature = &decoded.last().unwrap().1;
        assert!(v1_verify(
            "testsecret",
            &v1_string_to_sign("POST", &decoded),
            signature
        ));
        assert!(!v1_verify(
            "testsecret",
            &v1_string_to_sign("GET", &decoded),
            signature
        ));
    }

    #[test]
    fn sign_acs3_round_trips() {
        let params = pairs(&[("Keyword", "a b+c*~"), ("DBInstanceId", "gp-1")]);
        let body = b"x=1";
        let req = sign_acs3(
            &creds(),
            "POST",
            "DescribeDiagnosisRecords",
            &params,
            "127.0.0.1:8080",
            "2026-01-02T03:04:05Z",
            "n1",
            body,
        );
        assert_eq!(req.query, "DBInstanceId=gp-1&Keyword=a%20b%2Bc%2A~");
        let auth_value = &req
            .headers
            .iter()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1;
        let auth = parse_acs3_authorization(auth_value).unwrap();
        assert_eq!(auth.access_key_id, "testid");
        assert_eq!(auth.signed_headers, ACS3_REQUIRED_SIGNED_HEADERS);
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect();
        let query = crate::encode::decode_form(req.query.as_bytes()).unwrap();
        let cr = acs3_canonical_request(
            "POST",
            "/",
            &query,
            &headers,
            &auth.signed_headers,
            &sha256_hex(&req.body),
        );
        assert!(acs3_verify(
            "testsecret",
            &acs3_string_to_sign(&cr),
            &auth.signature
        ));
        let cr = acs3_canonical_request(
            "POST",
            "/",
            &query,
            &headers,
            &auth.signed_headers,
            &sha256_hex(b"x=2"),
        );
        assert!(!acs3_verify(
            "testsecret",
            &acs3_string_to_sign(&cr),
            &auth.signature
        ));
    }
}
