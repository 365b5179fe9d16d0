//! The middleware around every handler, as one layer (`stack`) so a request pays for one boxed future and one
//! clone of the inner service rather than one per concern. In order, outermost first:
//! 1. request id: a safe incoming `X-Request-Id` or a new one (`new_request_id`), in the extensions, a span and
//!    the answer;
//! 2. metrics: in-flight gauge, then count and duration by route template (never the raw path);
//! 3. body limit: a declared body over the limit is refused before it is read (`DefaultBodyLimit`, added next
//!    to this layer, cuts bodies without a length as they are read);
//! 4. timeout: `GATEHOUSE_REQUEST_TIMEOUT_MS` (plugin uploads, which compile: at least 5 minutes) → 503 `timeout`;
//! 5. panic recovery: a panicking handler becomes the standard 500 (the panic hook has logged it);
//! 6. error shapes: an error answered outside our handlers (axum's `text/plain` rejections of a path, query or
//!    body, the 405 fallback, the 413 and 503 above) takes the JSON error body on API paths and the RFC 6749
//!    shape on the OAuth endpoints (`ErrorShape`);
//! 7. security headers on every answer, including the 503 and the 500 above;
//! 8. the access-log line.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::Poll;
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

/// A new request id: 32 hex digits counting up from a UUIDv7 taken once per process, so ids are unique across
/// restarts and ordered within a process for the price of an atomic increment (no clock read, no lock).
fn new_request_id() -> String {
    static BASE: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let base = *BASE.get_or_init(|| uuid::Uuid::now_v7().as_u128());
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:032x}", base.wrapping_add(u128::from(n)))
}

/// The whole middleware stack (see the module docs for the order).
pub async fn stack(State(app): State<AppState>, mut req: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let id_header = HeaderValue::from_str(&id).ok();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let method = req.method().clone();
    // The path is copied only when the access-log line will be written.
    let logged_path = tracing::enabled!(tracing::Level::INFO).then(|| loggable_path(req.uri().path()));
    let upload = upload_limit(&app, req.uri().path());
    let shape = ErrorShape::of(req.uri().path());
    let route = app.metrics.http_route(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str), &method);

    let mut response = match refuse_declared_body(&app, &req, upload) {
        Some(refused) => refused,
        None => {
            let limit = if upload.is_some() {
                app.config.request_timeout.max(crate::plugins::api::UPLOAD_TIMEOUT)
            } else {
                app.config.request_timeout
            };
            match tokio::time::timeout(limit, catch_panic(next.run(req))).instrument(span.clone()).await {
                Ok(Ok(response)) => response,
                Ok(Err(_panic)) => Error::Internal("handler panicked".into()).into_response(),
                Err(_) => Error::Timeout.into_response(),
            }
        }
    };
    let proxied = response.extensions().get::<crate::cluster::proxy::Proxied>().is_some();
    if (response.status().is_client_error() || response.status().is_server_error()) && !proxied {
        response = shape.apply(response).await;
    }
    security_headers(&app, &mut response);
    if let Some(value) = id_header {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let elapsed = started.elapsed();
    route.finished(response.status().as_u16(), elapsed.as_secs_f64());
    if let Some(path) = logged_path {
        span.in_scope(|| {
            tracing::info!(
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        });
    }
    response
}

/// Which error body a path's clients parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error":{"code","message"}}`: the admin, end-user and public JSON APIs.
    Api,
    /// `{"error","error_description"}` (RFC 6749 §5.2): token, revocation, introspection, userinfo.
    OAuth,
    /// HTML pages and everything else: left as they are.
    Other,
}

/// Marks a response already in the OAuth shape, so the middleware leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct OAuthShaped;

impl ErrorShape {
    pub fn of(path: &str) -> ErrorShape {
        if let Some((_, rest)) = path.strip_prefix("/t/").and_then(|p| p.split_once('/'))
            && let Some(endpoint) = rest.strip_prefix("oauth2/")
            && matches!(endpoint, "token" | "revoke" | "introspect" | "userinfo")
        {
            return ErrorShape::OAuth;
        }
        if super::is_api_path(path) { ErrorShape::Api } else { ErrorShape::Other }
    }

    /// Rewrites an error response that is not in this shape yet. Bodies of such answers are short texts.
    async fn apply(self, response: Response<Body>) -> Response<Body> {
        match self {
            ErrorShape::Other => response,
            ErrorShape::OAuth if response.extensions().get::<OAuthShaped>().is_some() => response,
            ErrorShape::Api if !is_plain_text(&response) => response,
            _ => {
                let status = response.status();
                let (parts, body) = response.into_parts();
                let text = match axum::body::to_bytes(body, 4096).await {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(_) => String::new(),
                };
                let message = describe(status, &text);
                let mut out = if self == ErrorShape::OAuth {
                    let error = match status.as_u16() {
                        503 => "temporarily_unavailable",
                        s if s >= 500 => "server_error",
                        _ => "invalid_request",
                    };
                    let body = serde_json::json!({ "error": error, "error_description": message });
                    (status, axum::Json(body)).into_response()
                } else {
                    let code = match status.as_u16() {
                        404 => "not_found",
                        405 => "method_not_allowed",
                        413 => "payload_too_large",
                        422 => "validation_failed",
                        s if s >= 500 => "internal",
                        _ => "bad_request",
                    };
                    (status, axum::Json(crate::error::error_body(code, &message))).into_response()
                };
                // The answer's meaning stays; only its body's shape changes.
                for (name, value) in parts.headers.iter() {
                    if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                        out.headers_mut().append(name.clone(), value.clone());
                    }
                }
                if self == ErrorShape::OAuth {
                    out.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
                out
            }
        }
    }
}

fn is_plain_text(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim_start().to_ascii_lowercase().starts_with("text/plain"))
}

/// The message of a rewritten error: a JSON error's own message, axum's rejection text, or the status.
fn describe(status: axum::http::StatusCode, text: &str) -> String {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
        && let Some(message) = value["error"]["message"].as_str()
    {
        return message.to_owned();
    }
    let text = text.trim();
    if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

/// Polls `inner`, turning a panic while polling into `Err` with the panic's payload.
async fn catch_panic<T>(inner: impl Future<Output = T>) -> Result<T, Box<dyn Any + Send>> {
    let mut inner = pin!(inner);
    std::future::poll_fn(|cx| match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
        Err(panic) => Poll::Ready(Err(panic)),
    })
    .await
}

/// The path as the access log shows it: a cart id (a capability, like a password) is replaced by `{id}`.
fn loggable_path(path: &str) -> String {
    match path.split_once("/carts/") {
        Some((head, rest)) => {
            let tail = rest.split_once('/').map_or(String::new(), |(_, t)| format!("/{t}"));
            format!("{head}/carts/{{id}}{tail}")
        }
        None => path.to_owned(),
    }
}

/// The body limit of an upload path (plugin components, CSV imports), which also gets the long time limit.
fn upload_limit(app: &AppState, path: &str) -> Option<usize> {
    if crate::plugins::api::is_upload(path) {
        Some(app.plugins.max_bytes)
    } else if crate::commerce::admin_api::is_import(path) {
        Some(app.config.import_max_bytes)
    } else {
        None
    }
}

/// 413 for a declared body over the limit (`GATEHOUSE_PLUGIN_MAX_BYTES` for plugin uploads,
/// `GATEHOUSE_IMPORT_MAX_BYTES` for imports), before reading it.
fn refuse_declared_body(app: &AppState, req: &Request, upload: Option<usize>) -> Option<Response<Body>> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())?;
    let limit = upload.unwrap_or(app.config.max_body_bytes);
    (declared > limit as u64).then(|| Error::PayloadTooLarge(limit).into_response())
}

const HTML_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Security headers on every response; a strict CSP (stricter still for non-HTML), HSTS when served over https.
fn security_headers(app: &AppState, response: &mut Response<Body>) {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let headers = response.headers_mut();
    headers.reserve(6);
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
}

#[cfg(test)]
mod loggable {
    #[test]
    fn cart_ids_stay_out_of_the_access_log() {
        assert_eq!(super::loggable_path("/t/a/api/v1/carts/cart_secret/lines/X"), "/t/a/api/v1/carts/{id}/lines/X");
        assert_eq!(super::loggable_path("/t/a/api/v1/carts/cart_secret"), "/t/a/api/v1/carts/{id}");
        assert_eq!(super::loggable_path("/t/a/api/v1/products"), "/t/a/api/v1/products");
    }
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

    #[test]
    fn new_request_ids_are_distinct_acceptable_and_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        assert!(ids.iter().all(|id| id.len() == 32 && acceptable_request_id(id)));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids count up");
    }
}
