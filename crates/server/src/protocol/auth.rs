//! Authentication: turns a request into a verified [`Caller`] or a wire error. Signature v1
//! (HMAC-SHA1) and ACS3-HMAC-SHA256, timestamp skew, key state. A `Caller` can only be made
//! here, so a handler holding one knows the request was verified.

use crate::registry::Registry;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use gpdiag_wire::sign::{self, AuthorizationError, ACS3_REQUIRED_SIGNED_HEADERS};
use gpdiag_wire::{ApiError, ErrorCode, Params};
use std::sync::Arc;

/// Requests may be this far from the server's clock, either way (documented: 15 minutes).
pub const MAX_SKEW: Duration = Duration::minutes(15);

/// The verified account behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    account: Arc<str>,
    access_key_id: String,
}

impl Caller {
    pub fn account(&self) -> &Arc<str> {
        &self.account
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
}

/// A verified request's caller plus what replay protection needs.
#[derive(Debug)]
pub struct Verified {
    pub caller: Caller,
    pub nonce: String,
    pub request_time: DateTime<Utc>,
}

/// The parts of an HTTP request that signing covers, already decoded.
pub struct SignedParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Query parameters only: ACS3 signs the query and covers the body by its hash.
    pub query: &'a [(String, String)],
    /// Query ∪ form body: v1 signs them all.
    pub params: &'a Params,
    /// Header names lower-cased, in arrival order.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignedParts<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn authenticate(
    req: &SignedParts<'_>,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    match req.header("authorization") {
        Some(value) => authenticate_acs3(req, value, registry, now),
        None => authenticate_v1(req, registry, now),
    }
}

fn authenticate_v1(
    req: &SignedParts<'_>,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    let p = req.params;
    let signature = p
        .get("Signature")
        .ok_or_else(|| ApiError::missing("Signature"))?;
    let key_id = p.required("AccessKeyId")?;
    let method = p.required("SignatureMethod")?;
    let version = p.required("SignatureVersion")?;
    let nonce = p.required("SignatureNonce")?;
    let timestamp = p.required("Timestamp")?;
    if method != "HMAC-SHA1" {
        return Err(ApiError::new(
            ErrorCode::InvalidSignatureMethod,
            format!(
                "Specified signature method is not valid: {}; use HMAC-SHA1.",
                clip(method)
            ),
        ));
    }
    if version != "1.0" {
        return Err(ApiError::invalid("SignatureVersion", "expected 1.0"));
    }
    // The old core SDK sends `SignatureType=` (empty); a bearer token is another scheme.
    if p.optional("SignatureType").is_some() {
        return Err(ApiError::invalid(
            "SignatureType",
            "only AccessKey signatures are supported",
        ));
    }
    let request_time = check_time(timestamp, now)?;
    if signature.is_empty() {
        return Err(ApiError::new(
            ErrorCode::IncompleteSignature,
            "The request signature does not conform to Aliyun standards: Signature is empty.",
        ));
    }
    let key = active_key(registry, key_id)?;
    let string_to_sign = sign::v1_string_to_sign(req.method, p.pairs());
    if !sign::v1_verify(key.secret.expose(), &string_to_sign, signature) {
        return Err(ApiError::new(
            ErrorCode::SignatureDoesNotMatch,
            format!("Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"),
        ));
    }
    Ok(Verified {
        caller: Caller {
            account: key.account,
            access_key_id: key_id.to_owned(),
        },
        nonce: nonce.to_owned(),
        request_time,
    })
}

fn authenticate_acs3(
    req: &SignedParts<'_>,
    authorization: &str,
    registry: &Registry,
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    let auth = sign::parse_acs3_authorization(authorization).map_err(|e| match e {
        AuthorizationError::UnsupportedAlgorithm { .. } => ApiError::new(
            ErrorCode::InvalidSignatureMethod,
            "Specified signature method is not valid: the Authorization header must use ACS3-HMAC-SHA256.",
        ),
        other => ApiError::new(
            ErrorCode::IncompleteSignature,
            format!("The request signature does not conform to Aliyun standards: {other}."),
        ),
    })?;
    // Hardening: the headers that make a request unique and bind it to this server and action
    // must be signed, whatever else a given SDK chooses to sign.
    for required in ACS3_REQUIRED_SIGNED_HEADERS {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(ApiError::new(
                ErrorCode::IncompleteSignature,
                format!("The request signature does not conform to Aliyun standards: SignedHeaders must include {required}."),
            ));
        }
    }
    let date = required_header(req, "x-acs-date")?;
    let nonce = required_header(req, "x-acs-signature-nonce")?;
    let content_sha256 = required_header(req, "x-acs-content-sha256")?;
    let request_time = check_time(date, now)?;
    let key = active_key(registry, &auth.access_key_id)?;
    let payload_hash = sign::sha256_hex(req.body);
    if !content_sha256.eq_ignore_ascii_case(&payload_hash) {
        return Err(ApiError::new(
            ErrorCode::SignatureDoesNotMatch,
            "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
        ));
    }
    let canonical = sign::acs3_canonical_request(
        req.method,
        req.path,
        req.query,
        req.headers,
        &auth.signed_headers,
        &payload_hash,
    );
    let string_to_sign = sign::acs3_string_to_sign(&canonical);
    if !sign::acs3_verify(key.secret.expose(), &string_to_sign, &auth.signature) {
        return Err(ApiError::new(
            ErrorCode::SignatureDoesNotMatch,
            format!(
                "Specified signature does not match our calculation. server StringToSign is [{}]",
                string_to_sign.replace('\n', " ")
            ),
        ));
    }
    Ok(Verified {
        caller: Caller {
            account: key.account,
            access_key_id: auth.access_key_id,
        },
        nonce: nonce.to_owned(),
        request_time,
    })
}

fn required_header<'a>(req: &'a SignedParts<'_>, name: &str) -> Result<&'a str, ApiError> {
    match req.header(name) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim()),
        _ => Err(ApiError::missing(name)),
    }
}

fn active_key(registry: &Registry, id: &str) -> Result<crate::registry::KeyEntry, ApiError> {
    let key = registry
        .key(id)
        .ok_or_else(|| ApiError::code(ErrorCode::InvalidAccessKeyIdNotFound))?;
    if !key.enabled {
        return Err(ApiError::code(ErrorCode::InvalidAccessKeyIdInactive));
    }
    Ok(key)
}

/// Whether `value` has exactly the shape `YYYY-MM-DDThh:mm:ssZ`; chrono alone would also take
/// unpadded fields and leading spaces.
fn has_timestamp_shape(value: &str) -> bool {
    const SHAPE: &[u8; 20] = b"dddd-dd-ddTdd:dd:ddZ";
    value.len() == SHAPE.len()
        && value.bytes().zip(SHAPE).all(|(b, want)| {
            if *want == b'd' {
                b.is_ascii_digit()
            } else {
                b == *want
            }
        })
}

/// Parses exactly `YYYY-MM-DDThh:mm:ssZ`, the form every SDK sends, and enforces the skew.
fn check_time(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let parsed = Some(value)
        .filter(|v| has_timestamp_shape(v))
        .and_then(|v| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%SZ").ok())
        .map(|t| t.and_utc())
        .ok_or(())
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidTimeStampFormat,
                format!(
                    "Specified time stamp or date value is not well formatted: {:?}; expected YYYY-MM-DDThh:mm:ssZ in UTC.",
                    clip(value)
                ),
            )
        })?;
    if (parsed - now).abs() > MAX_SKEW {
        return Err(ApiError::new(
            ErrorCode::InvalidTimeStampExpired,
            format!(
                "Specified time stamp or date value is expired: {} is more than 15 minutes from the server time {}.",
                clip(value),
                sign::format_timestamp(now)
            ),
        ));
    }
    Ok(parsed)
}

/// Echoed values are cut short: a message never becomes a way to reflect a huge input.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn timestamps_within_fifteen_minutes_pass() {
        let t = |d: Duration| sign::format_timestamp(now() + d);
        assert!(check_time(&t(Duration::minutes(15)), now()).is_ok());
        assert!(check_time(&t(-Duration::minutes(15)), now()).is_ok());
        let late = check_time(&t(Duration::minutes(16)), now()).unwrap_err();
        assert_eq!(late.code, ErrorCode::InvalidTimeStampExpired);
        let early = check_time(&t(-Duration::seconds(15 * 60 + 1)), now()).unwrap_err();
        assert_eq!(early.code, ErrorCode::InvalidTimeStampExpired);
    }

    #[test]
    fn malformed_timestamps_are_format_errors() {
        for bad in [
            "",
            "2026-12-04",
            "2026-12-04T19:24:56",
            "2026-12-04 19:24:56Z",
            "2026-13-04T19:24:56Z",
            "yesterday",
            "2026-1-2T3:4:5Z",
            " 2026-12-04T19:24:56Z",
            "2026-12-04T19:24:56.123Z",
        ] {
            assert_eq!(
                check_time(bad, now()).unwrap_err().code,
                ErrorCode::InvalidTimeStampFormat,
                "{bad}"
            );
        }
        assert!(check_time(&sign::format_timestamp(now()), now()).is_ok());
    }
}
