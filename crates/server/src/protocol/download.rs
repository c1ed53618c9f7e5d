//! `GET /downloads/<task>/<file>`: serves a finished export from a `file://` object store to
//! whoever holds a valid signed link, with Range support, and writes every fetch to the audit
//! log. The file served is always the task's recorded object, never a path built from the URL.

use crate::links::LinkError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gpdiag_core::TaskStatus;
use gpdiag_store::DownloadAudit;
use serde::Deserialize;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(rename = "Expires")]
    expires: Option<String>,
    #[serde(rename = "Signature")]
    signature: Option<String>,
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

pub async fn download(
    State(app): State<Arc<AppState>>,
    Path((task_id, file_name)): Path<(String, String)>,
    Query(link): Query<LinkQuery>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Ok(task_id) = task_id.parse::<i64>() else {
        return plain(StatusCode::NOT_FOUND, "No such download.\n");
    };
    let (Some(expires), Some(signature)) = (link.expires, link.signature) else {
        return plain(
            StatusCode::FORBIDDEN,
            "The link is incomplete: it needs Expires and Signature.\n",
        );
    };
    let now = app.clock.now();
    match app
        .exports
        .signer
        .verify(task_id, &file_name, &expires, &signature, now)
    {
        Ok(()) => {}
        Err(LinkError::Expired) => {
            return plain(
                StatusCode::FORBIDDEN,
                "The link has expired; list the downloads again for a fresh one.\n",
            )
        }
        Err(LinkError::BadSignature | LinkError::Malformed) => {
            return plain(StatusCode::FORBIDDEN, "The link is not valid.\n")
        }
    }
    let task = match app.store.get_task(task_id).await {
        Ok(Some(t)) if t.status == TaskStatus::Finished && t.file_name == file_name => t,
        Ok(_) => return plain(StatusCode::NOT_FOUND, "The file no longer exists.\n"),
        Err(e) => {
            tracing::error!(error = %e, "download: store failure");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n");
        }
    };
    let Some(key) = task.object_key.clone() else {
        return plain(StatusCode::NOT_FOUND, "The file no longer exists.\n");
    };
    let total = match app.exports.objects.head(&key).await {
        Ok(Some(size)) => size,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "The file no longer exists.\n"),
        Err(e) => {
            tracing::error!(error = %e, "download: object store failure");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n");
        }
    };
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let range = match parse_range(&range_header, total) {
        Ok(r) => r,
        Err(()) => {
            let mut response = plain(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "The range is outside the file.\n",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    let stream = match app.exports.objects.get_range(&key, range.clone()).await {
        Ok(download) => download.stream,
        Err(e) => {
            tracing::error!(error = %e, "download: object store failure");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n");
        }
    };
    let audit = DownloadAudit {
        task_id,
        account: task.account.clone(),
        instance: task.instance.clone(),
        file_name: file_name.clone(),
        client: client.to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect(),
        range: range_header.chars().take(128).collect(),
        at: now,
    };
    tracing::info!(target: "gpdiag::audit", task = task_id, account = %audit.account, instance = %audit.instance, file = %file_name, client = %audit.client, range = %audit.range, "download");
    if let Err(e) = app.store.record_download(&audit).await {
        // An unaudited download is not served.
        tracing::error!(error = %e, "download: cannot write the audit log");
        return plain(StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n");
    }

    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, total),
    };
    let mut response = (status, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    let content_type = if file_name.ends_with(".gz") {
        "application/gzip"
    } else {
        "text/csv; charset=utf-8"
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // The file name is ours (digits, a dash, an extension), so it needs no escaping.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(r) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{total}", r.start, r.end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// One `bytes=` range as a half-open byte range; `None` for the whole file (no header, or a
/// form we do not serve partially, such as several ranges); `Err` when unsatisfiable.
fn parse_range(value: &str, total: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = value.strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..(end + 1).min(total),
        (Ok(start), Err(_)) if last.is_empty() => start..total,
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => {
            total.saturating_sub(suffix)..total
        }
        _ => return Ok(None),
    };
    if range.start >= total || range.start >= range.end {
        return Err(());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("", 100), Ok(None));
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(parse_range("bytes=-1000", 100), Ok(Some(0..100)));
        assert_eq!(parse_range("bytes=95-1000", 100), Ok(Some(95..100)));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("bytes=9-1", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=0-0", 0), Err(()));
    }
}
