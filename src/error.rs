//! The one error type of the library and its code table.
//!
//! Every API error leaves the server as `{"error":{"code":"…","message":"…"}}`. `status_and_code` is the
//! single table from variant to HTTP status and stable code. A 5xx answers with a generic message and logs
//! the cause (the request id is on the log line through the request span).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    /// A bearer token that is valid but lacks the scope the route needs (RFC 6750 §3.1).
    #[error("this token lacks the {0} scope")]
    InsufficientScope(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("tenant not found")]
    TenantNotFound,
    #[error("tenant is suspended")]
    TenantSuspended,
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but the state does not allow it (e.g. changing a store's currency once it has products).
    #[error("{0}")]
    Unprocessable(String),
    /// A cart asked for more of a SKU than the store has (the message names the SKU).
    #[error("out of stock: {0}")]
    OutOfStock(String),
    /// A discount code that cannot be applied, with the reason.
    #[error("discount code {0}")]
    DiscountInvalid(String),
    /// A fail-closed pricing plugin failed, so the cart cannot be priced now (the message names the plugin).
    #[error("prices cannot be computed right now: {0}")]
    PricingUnavailable(String),
    /// An `Idempotency-Key` already answered another request.
    #[error("this Idempotency-Key was used for another request; use a new key for a new checkout")]
    IdempotencyConflict,
    /// The price moved since the buyer saw it (the checkout's answer carries the new `quote` too).
    #[error("{0}")]
    PriceChanged(String),
    /// The payment provider could not be reached or refused the call (the message says which and why).
    #[error("{0}")]
    PaymentUnavailable(String),
    /// The payment provider answered and refused (a bad request, a refund it will not make): nothing was done.
    #[error("{0}")]
    PaymentRefused(String),
    /// A provider or carrier webhook whose signature does not verify.
    #[error("{0}")]
    InvalidSignature(&'static str),
    /// An order status change the order's graph does not have.
    #[error("{0}")]
    InvalidTransition(String),
    /// A change that would send stored credentials somewhere new without the caller presenting them again.
    #[error("{0}")]
    PasswordRequired(&'static str),
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this link or code is invalid, was used already or has expired")]
    InvalidToken,
    #[error(
        "the email address is not verified yet: open the link we emailed you (a new one goes out at most every 5 minutes)"
    )]
    EmailNotVerified,
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A live restore found the tenant's database still in use after its bounded wait; nothing changed.
    #[error("{0}")]
    TenantBusy(String),
    /// The replica has no state to restore at the point asked for (the message lists the window or the nearest).
    #[error("{0}")]
    NoRestorePoint(String),
    /// A restore needs the backup bucket, and `GATEHOUSE_BACKUP_URL` is not set.
    #[error("backups are off (GATEHOUSE_BACKUP_URL is not set): there is no replica to restore from")]
    BackupsOff,
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request took too long")]
    Timeout,
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("the control plane has no leader right now; retry shortly")]
    NoLeader,
    #[error("{what} has schema version {found}, newer than this binary knows ({known}); run a newer gatehouse")]
    SchemaTooNew { what: String, found: i64, known: i64 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// An uploaded plugin is not a usable component (garbage, a core module, bad imports' types).
    #[error("{0}")]
    PluginInvalid(String),
    /// An uploaded component does not export the declared world's functions.
    #[error("{0}")]
    PluginWrongWorld(String),
    /// An uploaded component imports something outside its world (WASI, another package).
    #[error("{0}")]
    PluginForbiddenImport(String),
    /// A login or registration plugin said no; the message is the plugin's reason (or a generic one).
    #[error("{0}")]
    PluginDenied(String),
    /// The tenant's home node cannot be reached from this node (cluster): try again shortly.
    #[error("this tenant's home node is unreachable; try again shortly")]
    TenantUnavailable,
    /// An error another node answered for a call this node forwarded (a write to the leader): its status, code and
    /// public message, passed on as they were.
    #[error("{message}")]
    Forwarded { status: u16, code: &'static str, message: String },
    #[error("{0}")]
    Internal(String),
}

/// Every `code` an API error body can carry: the values `status_and_code` answers (a test keeps the two in step)
/// and the codes the middleware gives rejections it rewrites. The OpenAPI document publishes it as an enum.
pub const CODES: &[&str] = &[
    "bad_request",
    "validation_failed",
    "unauthorized",
    "forbidden",
    "insufficient_scope",
    "not_found",
    "tenant_not_found",
    "tenant_suspended",
    "conflict",
    "unprocessable",
    "out_of_stock",
    "price_changed",
    "idempotency_conflict",
    "invalid_transition",
    "discount_invalid",
    "pricing_unavailable",
    "payment_unavailable",
    "payment_refused",
    "invalid_signature",
    "password_required",
    "invalid_credentials",
    "invalid_token",
    "email_not_verified",
    "payload_too_large",
    "method_not_allowed",
    "tenant_busy",
    "no_restore_point",
    "backups_off",
    "rate_limited",
    "timeout",
    "not_ready",
    "no_leader",
    "tenant_unavailable",
    "plugin_invalid",
    "plugin_wrong_world",
    "plugin_forbidden_import",
    "denied_by_plugin",
    "internal",
];

impl Error {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation(message.into())
    }

    /// The HTTP status and the stable machine-readable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::InsufficientScope(_) => (StatusCode::FORBIDDEN, "insufficient_scope"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::TenantNotFound => (StatusCode::NOT_FOUND, "tenant_not_found"),
            Error::TenantSuspended => (StatusCode::FORBIDDEN, "tenant_suspended"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Error::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            Error::OutOfStock(_) => (StatusCode::CONFLICT, "out_of_stock"),
            Error::DiscountInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "discount_invalid"),
            Error::PricingUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "pricing_unavailable"),
            Error::IdempotencyConflict => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict"),
            Error::PriceChanged(_) => (StatusCode::CONFLICT, "price_changed"),
            Error::InvalidTransition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            Error::PaymentUnavailable(_) => (StatusCode::BAD_GATEWAY, "payment_unavailable"),
            Error::PaymentRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "payment_refused"),
            Error::InvalidSignature(_) => (StatusCode::BAD_REQUEST, "invalid_signature"),
            Error::PasswordRequired(_) => (StatusCode::UNPROCESSABLE_ENTITY, "password_required"),
            Error::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Error::InvalidToken => (StatusCode::BAD_REQUEST, "invalid_token"),
            Error::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified"),
            Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::TenantBusy(_) => (StatusCode::CONFLICT, "tenant_busy"),
            Error::NoRestorePoint(_) => (StatusCode::UNPROCESSABLE_ENTITY, "no_restore_point"),
            Error::BackupsOff => (StatusCode::CONFLICT, "backups_off"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Error::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            Error::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            Error::NoLeader => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            Error::TenantUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "tenant_unavailable"),
            Error::Forwarded { status, code, .. } => {
                (StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), code)
            }
            Error::PluginInvalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "plugin_invalid"),
            Error::PluginWrongWorld(_) => (StatusCode::UNPROCESSABLE_ENTITY, "plugin_wrong_world"),
            Error::PluginForbiddenImport(_) => (StatusCode::UNPROCESSABLE_ENTITY, "plugin_forbidden_import"),
            Error::PluginDenied(_) => (StatusCode::FORBIDDEN, "denied_by_plugin"),
            Error::SchemaTooNew { .. } | Error::Sqlite(_) | Error::Pool(_) | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }

    /// The message a client may see: the error's own text, or a generic one for a 5xx.
    pub fn public_message(&self) -> String {
        let (status, _) = self.status_and_code();
        if status.is_server_error()
            && !matches!(
                self,
                Error::Timeout
                    | Error::NotReady(_)
                    | Error::NoLeader
                    | Error::TenantUnavailable
                    | Error::Forwarded { .. }
                    | Error::PricingUnavailable(_)
                    | Error::PaymentUnavailable(_)
            )
        {
            "internal error; the server log has the details under this request's id".to_owned()
        } else {
            self.to_string()
        }
    }
}

impl Error {
    /// An error another node answered (`status`, `code`, `message`), to answer again here: a code this build does
    /// not know becomes `internal`.
    pub fn forwarded(status: u16, code: &str, message: String) -> Self {
        let code = CODES.iter().copied().find(|known| *known == code).unwrap_or("internal");
        Error::Forwarded { status, code, message }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        Error::Internal(format!("background task failed: {err}"))
    }
}

/// The `code` of an error answer, in the response's extensions: a layer that shows some errors differently (the
/// hosted pages' "temporarily unavailable" page, `identity::pages::tenant_unavailable`) reads it instead of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

/// The JSON error body, for code outside `Error` that must answer in the same shape.
/// `text` followed by the causes of `err`, each after ": " (clients' own texts are often terse, such as
/// "error sending request" or "dispatch failure"; the causes say what happened).
pub fn with_causes(mut text: String, err: &dyn std::error::Error) -> String {
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message } })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "request failed");
        }
        let mut response = (status, Json(error_body(code, &self.public_message()))).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        match &self {
            Error::RateLimited { retry_after_secs } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            // A dead leader is replaced within about 2.5 s.
            Error::NoLeader | Error::TenantUnavailable | Error::Forwarded { code: "no_leader", .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(2));
            }
            Error::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::InsufficientScope(scope) => {
                if let Ok(value) =
                    HeaderValue::from_str(&format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""))
                {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_published_table() {
        let samples = [
            Error::BadRequest(String::new()),
            Error::Validation(String::new()),
            Error::Unauthorized,
            Error::Forbidden(""),
            Error::InsufficientScope(""),
            Error::NotFound(""),
            Error::TenantNotFound,
            Error::TenantSuspended,
            Error::Conflict(String::new()),
            Error::Unprocessable(String::new()),
            Error::OutOfStock(String::new()),
            Error::DiscountInvalid(String::new()),
            Error::PricingUnavailable(String::new()),
            Error::IdempotencyConflict,
            Error::PriceChanged(String::new()),
            Error::InvalidTransition(String::new()),
            Error::PaymentUnavailable(String::new()),
            Error::PaymentRefused(String::new()),
            Error::InvalidSignature(""),
            Error::PasswordRequired(""),
            Error::InvalidCredentials,
            Error::InvalidToken,
            Error::EmailNotVerified,
            Error::PayloadTooLarge(0),
            Error::MethodNotAllowed,
            Error::TenantBusy(String::new()),
            Error::NoRestorePoint(String::new()),
            Error::BackupsOff,
            Error::RateLimited { retry_after_secs: 1 },
            Error::Timeout,
            Error::NotReady(String::new()),
            Error::NoLeader,
            Error::TenantUnavailable,
            Error::Forwarded { status: 409, code: "conflict", message: String::new() },
            Error::SchemaTooNew { what: String::new(), found: 0, known: 0 },
            Error::PluginInvalid(String::new()),
            Error::PluginWrongWorld(String::new()),
            Error::PluginForbiddenImport(String::new()),
            Error::PluginDenied(String::new()),
            Error::Internal(String::new()),
        ];
        let codes: std::collections::BTreeSet<&str> = samples.iter().map(|e| e.status_and_code().1).collect();
        let table: std::collections::BTreeSet<&str> = CODES.iter().copied().collect();
        assert_eq!(codes, table, "CODES must list exactly the codes errors answer");
    }

    #[test]
    fn server_errors_hide_their_cause() {
        let err = Error::Internal("disk on fire at /secret/path".into());
        assert_eq!(err.status_and_code().1, "internal");
        assert!(!err.public_message().contains("/secret/path"));
        let err = Error::Validation("slug is too long".into());
        assert_eq!(err.public_message(), "slug is too long");
    }
}
