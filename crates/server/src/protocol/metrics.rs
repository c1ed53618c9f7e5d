//! `GET /metrics`: the Prometheus scrape, behind the bearer token of `[metrics]` when one is
//! set. Not an API action, so its refusals are plain HTTP, not API envelopes.

use crate::state::{AppState, MetricsAccess};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn scrape(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let allowed = match &app.metrics_access {
        MetricsAccess::Off => false,
        MetricsAccess::Open => true,
        MetricsAccess::Bearer(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))),
    };
    if !allowed {
        let mut refused = (
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required ([metrics] bearer_token)\n",
        )
            .into_response();
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gpdiag metrics\""),
        );
        return refused;
    }
    let text = app.metrics.render(&app).await;
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}
