//! The protocol layer: the only code that knows HTTP. It decodes parameters, authenticates,
//! throttles, checks replay, dispatches to an action and renders the answer; it is also the only
//! place where an error becomes a status code and an envelope.

pub mod auth;
pub mod download;
pub mod metrics;
pub mod nonce;
pub mod throttle;

use crate::actions::{self, Ctx};
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gpdiag_wire::api::Action;
use gpdiag_wire::encode::decode_form;
use gpdiag_wire::{render, ApiError, ErrorCode, Format, Params, API_VERSION};
use nonce::NonceError;
use std::sync::Arc;
use std::time::Instant;

/// The largest request body accepted. The API's parameters are small; form bodies of a few
/// kilobytes are the most any SDK sends.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An error on its way to the wire, with the throttling hint when there is one.
struct Rejection {
    error: ApiError,
    retry_after_ms: Option<u64>,
}

impl From<ApiError> for Rejection {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after_ms: None,
        }
    }
}

/// `/` for every RPC call, GET or POST.
pub async fn rpc(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let (parts, body) = request.into_parts();
    let mut format = Format::Json;
    let mut action_name: &'static str = "";
    let result = process(
        &app,
        &parts.method,
        &parts.uri,
        &parts.headers,
        body,
        &mut format,
        &mut action_name,
    )
    .await;
    let elapsed = started.elapsed();
    let elapsed_us = elapsed.as_micros();
    let code = match &result {
        Ok(_) => "OK",
        Err(rejection) => rejection.error.code.as_str(),
    };
    app.metrics.observe_call(action_name, code, elapsed);
    match result {
        Ok(body) => {
            tracing::debug!(%request_id, action = %action_name, elapsed_us, "ok");
            respond(
                StatusCode::OK,
                format,
                &request_id,
                render::success(format, action_name, &request_id, body),
                None,
            )
        }
        Err(rejection) => {
            let code = rejection.error.code;
            if code.http_status() >= 500 {
                tracing::warn!(%request_id, action = %action_name, code = code.as_str(), elapsed_us, "failed");
            } else {
                tracing::debug!(%request_id, action = %action_name, code = code.as_str(), elapsed_us, "refused");
            }
            let host_id = host_id(&parts.headers, &app);
            let body = render::error(format, &request_id, &host_id, &rejection.error);
            let status = StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            respond(status, format, &request_id, body, rejection.retry_after_ms)
        }
    }
}

/// Any other path: the RPC style has exactly one.
pub async fn not_found(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let body = render::error(
        Format::Json,
        &request_id,
        &host_id(&headers, &app),
        &ApiError::code(ErrorCode::InvalidActionNotFound),
    );
    respond(StatusCode::NOT_FOUND, Format::Json, &request_id, body, None)
}

fn respond(
    status: StatusCode,
    format: Format,
    request_id: &str,
    body: Vec<u8>,
    retry_after_ms: Option<u64>,
) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", v);
    }
    if let Some(ms) = retry_after_ms {
        headers.insert("x-acs-retry-after", HeaderValue::from(ms.max(1)));
    }
    response
}

/// `HostId` names the server the client addressed; fall back to the configured public URL.
fn host_id(headers: &HeaderMap, app: &AppState) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255)
        .map(str::to_owned)
        .unwrap_or_else(|| app.public_url.clone())
}

async fn process(
    app: &AppState,
    method: &Method,
    uri: &axum::http::Uri,
    header_map: &HeaderMap,
    body: Body,
    format: &mut Format,
    action_name: &mut &'static str,
) -> Result<serde_json::Map<String, serde_json::Value>, Rejection> {
    if method != Method::GET && method != Method::POST {
        return Err(ApiError::code(ErrorCode::UnsupportedHttpMethod).into());
    }
    let body = read_body(header_map, body).await?;
    let query = decode(uri.query().unwrap_or("").as_bytes())?;
    let mut all = query.clone();
    if is_form(header_map) {
        all.extend(decode(&body)?);
    }
    let params = Params::from_pairs(all)?;
    *format = Format::parse(params.get("Format"))
        .ok_or_else(|| ApiError::code(ErrorCode::InvalidFormat))?;
    let headers = lower_case_headers(header_map)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };

    // ACS3 requests carry Action and Version only as headers; v1 requests carry both.
    let action = params
        .optional("Action")
        .or_else(|| header("x-acs-action").filter(|v| !v.is_empty()))
        .ok_or_else(|| ApiError::missing("Action"))?;
    let version = params
        .optional("Version")
        .or_else(|| header("x-acs-version").filter(|v| !v.is_empty()))
        .ok_or_else(|| ApiError::missing("Version"))?;
    if version != API_VERSION {
        return Err(ApiError::new(
            ErrorCode::InvalidVersion,
            format!("Specified parameter Version is not valid: gpdb speaks {API_VERSION}."),
        )
        .into());
    }
    let action = Action::parse(action)?;
    *action_name = action.as_str();

    let now = app.clock.now();
    let verified = auth::authenticate(
        &auth::SignedParts {
            method: method.as_str(),
            path: uri.path(),
            query: &query,
            params: &params,
            headers: &headers,
            body: &body,
        },
        &app.registry,
        now,
    )?;
    // Throttle before remembering the nonce: refused calls must not fill the replay memory.
    if let Err(wait) = app.throttle.check(verified.caller.account()) {
        return Err(Rejection {
            error: ApiError::code(ErrorCode::ThrottlingUser),
            retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        });
    }
    if let Some(Err(wait)) = app.api_throttle.as_ref().map(|t| t.check(&action)) {
        return Err(Rejection {
            error: ApiError::code(ErrorCode::ThrottlingApi),
            retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)),
        });
    }
    match app.nonces.check_and_insert(
        verified.caller.access_key_id(),
        &verified.nonce,
        verified.request_time,
        now,
    ) {
        Ok(()) => {}
        Err(NonceError::Used) => return Err(ApiError::code(ErrorCode::SignatureNonceUsed).into()),
        Err(NonceError::Full) => {
            tracing::warn!(
                "the signature nonce memory is full; refusing calls until entries expire"
            );
            return Err(ApiError::code(ErrorCode::Throttling).into());
        }
    }
    let ctx = Ctx {
        caller: &verified.caller,
        app,
    };
    Ok(actions::dispatch(&ctx, action, &params).await?)
}

/// How long a client may take to send its body once the headers are in.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Reads the body, refusing one that is (or claims to be) over the limit before waiting for it,
/// and one that never arrives.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let incomplete = |why: &str| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("The request body could not be read: {why}."),
        )
    };
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, http_body_util::BodyExt::collect(limited)).await {
        Err(_) => Err(incomplete("it did not arrive in time")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(_)) => Err(incomplete("it ended early or is badly framed")),
    }
}

fn decode(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    decode_form(raw).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            format!("The request parameters are not valid: {e}."),
        )
    })
}

/// Only a form body carries parameters; any other body is covered by the ACS3 payload hash and
/// otherwise ignored.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn lower_case_headers(headers: &HeaderMap) -> Result<Vec<(String, String)>, ApiError> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("The header {name} is not valid: it must be visible ASCII."),
                )
            })?;
            // `HeaderName` is already lower case.
            Ok((name.as_str().to_owned(), value.to_owned()))
        })
        .collect()
}
