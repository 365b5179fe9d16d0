//! The API contract: one OpenAPI 3.1 document for every JSON route (the admin API, the end-user API, the tenant
//! public API and the OAuth endpoints), served at `/api/openapi.json` and rendered for people in the admin UI.
//!
//! Invariants:
//! - The document is built from the handlers themselves: JSON routes are registered through `utoipa-axum`'s
//!   `OpenApiRouter` and `routes!`, which take a handler only with its `#[utoipa::path]`, so a JSON route cannot
//!   exist without its operation. Only the HTML side (pages, assets, the browser half of OAuth) registers plain
//!   axum routes, in the files `tests/it/openapi.rs` lists; that test fails on a `.route(` anywhere else.
//! - Every operation documents its errors with `ApiErrors` (or `OAuthErrors`): one shared body whose `code` is
//!   the enum of `error::CODES`.
//! - No hand-written JSON schema: request and response types derive `ToSchema`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// The error body of every API error: `{"error":{"code","message"}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable, machine-readable: branch on this.
    pub code: ErrorCode,
    /// For people; 5xx answers carry a generic text (the log has the cause under the request id).
    pub message: String,
}

/// The `code` of an API error: one of `error::CODES`.
pub struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(crate::error::CODES.iter().copied()))
            .description(Some("Stable error code"))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// An OAuth error body (RFC 6749 §5.2), as the token, revocation, introspection and userinfo endpoints answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `invalid_token`, `insufficient_scope` or `server_error`.
    pub error: String,
    pub error_description: String,
}

fn error_responses<T: ToSchema>() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
    let content =
        || ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name())))).build();
    let mut out = BTreeMap::new();
    for (range, description) in [("4XX", "The request was refused; `code` says why"), ("5XX", "The server failed")] {
        let response = ResponseBuilder::new().description(description).content("application/json", content()).build();
        out.insert(range.to_owned(), RefOr::T(response));
    }
    out
}

/// The error answers of an API operation: any 4xx or 5xx, with `ErrorBody`.
pub struct ApiErrors;

impl utoipa::IntoResponses for ApiErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        error_responses::<ErrorBody>()
    }
}

/// The error answers of an OAuth endpoint: any 4xx or 5xx, with `OAuthErrorBody`.
pub struct OAuthErrors;

impl utoipa::IntoResponses for OAuthErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        error_responses::<OAuthErrorBody>()
    }
}

/// The ways in; operations name the ones they accept.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str, format: Option<&str>| {
            let mut http = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description));
            if let Some(format) = format {
                http = http.bearer_format(format);
            }
            SecurityScheme::Http(http.build())
        };
        components.add_security_scheme(
            "admin_token",
            bearer("An admin API token (`gatehouse token create`): operator, or scoped to one tenant", None),
        );
        components.add_security_scheme(
            "admin_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "gh_admin",
                "The admin UI session; state-changing requests also send its CSRF token in X-CSRF-Token",
            ))),
        );
        components.add_security_scheme(
            "user_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "gh_session",
                "A tenant user's session (Path=/t/{slug}/); body-less writes also send X-CSRF-Token",
            ))),
        );
        components.add_security_scheme(
            "access_token",
            bearer(
                "An access token of the tenant's provider; the account API needs account:read or account:write from a first-party client",
                Some("JWT"),
            ),
        );
        components.add_security_scheme(
            "join_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Gatehouse-Token",
                "The cluster's shared secret (GATEHOUSE_CLUSTER_JOIN_TOKEN), which only the cluster's nodes hold",
            ))),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("OAuth client credentials (or client_id/client_secret in the form, per the client's registered method)"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "Identity, email and plugins for many tenants. Admin API under /admin/api/v1 (an API token or the admin session), the end-user API under /t/{slug}/api/v1 (the user's session cookie or an account-scoped access token), the tenant's OAuth 2.0 / OpenID Connect endpoints under /t/{slug}/oauth2. Errors are {\"error\":{\"code\",\"message\"}} (OAuth endpoints: RFC 6749 §5.2)."
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, OAuthErrorBody)),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// The document: the shared parts above with the operations the routers collected.
pub fn document(operations: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(operations);
    doc
}

/// The contract, built once at start-up and shared with the handlers that show it (an axum `Extension`).
#[derive(Clone)]
pub struct Contract {
    pub doc: Arc<utoipa::openapi::OpenApi>,
    /// The document as served, serialised once.
    pub json: Bytes,
}

impl Contract {
    pub fn new(doc: utoipa::openapi::OpenApi) -> Contract {
        let json = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        Contract { doc: Arc::new(doc), json }
    }
}

/// `GET /api/openapi.json`: public, like any API's published contract (it holds no tenant data).
pub async fn serve(axum::Extension(contract): axum::Extension<Contract>) -> Response {
    let mut response = contract.json.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}
