//! The middleware stack, outermost first: request id and access log → panic recovery → metrics → timeout →
//! body limit → security headers → handler.
//!
//! The request-id layer sits outside panic recovery (the issue lists it second) so that the 500 answering a
//! panic still carries the request id and its access-log line.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Response, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tracing::Instrument;

use crate::app::AppState;
use crate::error::Error;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn acceptable_request_id(raw: &str) -> bool {
    (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Accepts a safe `X-Request-Id` or makes one, runs the request inside a span carrying it, echoes it, and writes
/// one access-log line.
pub async fn request_id(mut req: Request, next: Next) -> Response<Body> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Turns a panic in a handler into the standard 500 body; the panic hook has already logged it.
pub fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    Error::Internal("handler panicked".into()).into_response()
}

/// Request counts, durations and in-flight gauge, labelled by route template (never the raw path).
pub async fn metrics(State(app): State<AppState>, req: Request, next: Next) -> Response<Body> {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    app.metrics.record(|| metrics::gauge!("http_requests_in_flight").increment(1.0));
    let started = Instant::now();
    let response = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16().to_string();
    app.metrics.record(|| {
        metrics::gauge!("http_requests_in_flight").decrement(1.0);
        metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    });
    response
}

/// Ends a request that runs longer than `GATEHOUSE_REQUEST_TIMEOUT_MS` (a plugin upload, which compiles:
/// at least 5 minutes) with 503 `timeout`.
pub async fn timeout(State(app): State<AppState>, req: Request, next: Next) -> Response<Body> {
    let limit = if crate::plugins::api::is_upload(req.uri().path()) {
        app.config.request_timeout.max(crate::plugins::api::UPLOAD_TIMEOUT)
    } else {
        app.config.request_timeout
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Error::Timeout.into_response(),
    }
}

/// Refuses a declared body over the limit (`GATEHOUSE_PLUGIN_MAX_BYTES` for plugin uploads) before reading it;
/// bodies without a length are cut by `DefaultBodyLimit` (or the upload handler's own limit) as they are read.
pub async fn body_limit(State(app): State<AppState>, req: Request, next: Next) -> Response<Body> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let limit = if crate::plugins::api::is_upload(req.uri().path()) {
        app.plugins.max_bytes
    } else {
        app.config.max_body_bytes
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Error::PayloadTooLarge(limit).into_response();
    }
    next.run(req).await
}

const HTML_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Security headers on every response; a strict CSP (stricter still for non-HTML), HSTS when served over https.
pub async fn security_headers(State(app): State<AppState>, req: Request, next: Next) -> Response<Body> {
    let mut response = next.run(req).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::X_FRAME_OPTIONS) {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        let csp = if is_html { HTML_CSP } else { API_CSP };
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    }
    if app.config.is_https() {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_checked() {
        assert!(acceptable_request_id("abc-123_x.y:z"));
        assert!(!acceptable_request_id(""));
        assert!(!acceptable_request_id("has space"));
        assert!(!acceptable_request_id("<script>"));
        assert!(!acceptable_request_id(&"a".repeat(129)));
    }
}
