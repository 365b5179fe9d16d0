//! The machine-facing endpoints of a tenant's provider other than the token endpoint (`token.rs`): discovery,
//! JWKS, userinfo, revocation (RFC 7009) and introspection (RFC 7662), with CORS for the origins the tenant's
//! clients allow; and what the token endpoint shares with them: the OAuth error type, form parsing, client
//! authentication, `no_store` and the router of all of them.
//!
//! Errors here take the OAuth shape (`{"error","error_description"}`, RFC 6749 §5.2), not the API one, because
//! that is what client libraries parse. Token responses carry `Cache-Control: no-store`.
//!
//! Who may call: anyone reads discovery and JWKS (and sends CORS preflights); the token, revocation and
//! introspection endpoints need a client of the tenant (authenticated as it registered; introspection only a
//! confidential one); userinfo needs a user's access token with the `openid` scope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, ORIGIN, PRAGMA, VARY, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::crypto;
use crate::error::Error;
use crate::http::openapi::{ApiErrors, OAuthErrors};
use crate::oidc::clients::{AuthMethod, Client, ClientType};
use crate::oidc::contract::{DiscoveryDocument, Introspection, JwkSet, TokenLookupForm, UserinfoClaims, UserinfoForm};
use crate::oidc::keys::Typ;
use crate::oidc::state::{tenant_db, tenant_of};
use crate::oidc::store;
use crate::oidc::token;
use crate::oidc::tokens;
use crate::tenants::TenantSlug;

/// Every path answers its CORS preflight (`OPTIONS`) too, documented by the `*_preflight` handlers.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(discovery, discovery_preflight))
        .routes(routes!(jwks, jwks_preflight))
        .routes(routes!(token::token, token_preflight))
        .routes(routes!(userinfo, userinfo_post, userinfo_preflight))
        .routes(routes!(revoke, revoke_preflight))
        .routes(routes!(introspect, introspect_preflight))
}

// ---- errors ----

/// An OAuth error response (RFC 6749 §5.2, RFC 6750 §3).
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// `WWW-Authenticate` value for 401s.
    challenge: Option<String>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status, error, description: description.into(), challenge: None }
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(super) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    fn invalid_client(issuer: &str) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: "client authentication failed".into(),
            challenge: Some(format!("Basic realm=\"{issuer}\"")),
        }
    }

    fn invalid_token(description: &str) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            description: description.into(),
            challenge: Some(format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")),
        }
    }
}

impl From<Error> for OAuthError {
    fn from(err: Error) -> Self {
        match err {
            Error::TenantNotFound => Self::new(StatusCode::NOT_FOUND, "invalid_request", "no such tenant"),
            Error::TenantSuspended => Self::new(StatusCode::FORBIDDEN, "invalid_request", "this tenant is suspended"),
            Error::NotReady(why) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", why),
            Error::PayloadTooLarge(_) => Self::invalid_request("request body too large"),
            other => {
                tracing::error!(error = %other, "oauth endpoint failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the server could not handle the request")
            }
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(challenge) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response.extensions_mut().insert(crate::http::middleware::OAuthShaped);
        response
    }
}

pub(super) type OAuthResult = Result<Response, OAuthError>;

// ---- CORS ----

/// `Access-Control-Allow-Origin` for an origin one of the tenant's clients allows: for the public documents
/// (discovery, JWKS) and preflights, which name no client.
async fn cors(app: &App, slug: &TenantSlug, headers: &HeaderMap, mut response: Response) -> Response {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else { return response };
    let allowed = app.oidc.origins(app, slug).await.map(|set| set.contains(origin)).unwrap_or(false);
    let out = response.headers_mut();
    out.append(VARY, HeaderValue::from_static("Origin"));
    if allowed && let Ok(value) = HeaderValue::from_str(origin) {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

/// The answer of an OAuth endpoint (its result or its OAuth error) with CORS for the origins of the one client
/// the request was about (`client_id`, once known): another client's allowed origin cannot read the answer.
pub(super) async fn with_cors(
    app: &App,
    slug: &str,
    headers: &HeaderMap,
    client_id: Option<String>,
    result: OAuthResult,
) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else { return response };
    response.headers_mut().append(VARY, HeaderValue::from_static("Origin"));
    let (Ok(slug), Some(client_id)) = (TenantSlug::parse(slug), client_id) else { return response };
    let allowed = app
        .oidc
        .client(app, &slug, &client_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|c| c.allowed_cors_origins.iter().any(|o| o == origin));
    if allowed && let Ok(value) = HeaderValue::from_str(origin) {
        response.headers_mut().insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

async fn preflight(
    State(app): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(slug) = params.get("slug").and_then(|s| TenantSlug::parse(s).ok()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    cors(&app, &slug, &headers, response).await
}

/// Declares the documented CORS preflight (`OPTIONS`) of one path: a handler that only calls `preflight`, so each
/// path's preflight is an operation of the contract like its other methods.
macro_rules! preflight_for {
    ($name:ident, $path:literal, $operation:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            options,
            path = $path,
            tag = "oauth",
            operation_id = $operation,
            params(("slug" = TenantSlug, Path, description = "The tenant")),
            responses(
                (status = 204, description = "CORS preflight; the origin is allowed if a client of the tenant allows it"),
                (status = 404, description = "Not a tenant slug (no body)")
            ),
            security(())
        )]
        async fn $name(
            state: State<AppState>,
            params: Path<HashMap<String, String>>,
            headers: HeaderMap,
        ) -> Response {
            preflight(state, params, headers).await
        }
    };
}

preflight_for!(
    discovery_preflight,
    "/t/{slug}/.well-known/openid-configuration",
    "oauth_discovery_preflight",
    "CORS preflight of the discovery document."
);
preflight_for!(
    jwks_preflight,
    "/t/{slug}/.well-known/jwks.json",
    "oauth_jwks_preflight",
    "CORS preflight of the JWKS."
);
preflight_for!(
    token_preflight,
    "/t/{slug}/oauth2/token",
    "oauth_token_preflight",
    "CORS preflight of the token endpoint."
);
preflight_for!(
    userinfo_preflight,
    "/t/{slug}/oauth2/userinfo",
    "oauth_userinfo_preflight",
    "CORS preflight of userinfo."
);
preflight_for!(
    revoke_preflight,
    "/t/{slug}/oauth2/revoke",
    "oauth_revoke_preflight",
    "CORS preflight of the revocation endpoint."
);
preflight_for!(
    introspect_preflight,
    "/t/{slug}/oauth2/introspect",
    "oauth_introspect_preflight",
    "CORS preflight of the introspection endpoint."
);

// ---- discovery and JWKS ----

/// Serves cached bytes with `ETag`/`If-None-Match` and a short public cache lifetime.
fn cached_document(headers: &HeaderMap, body: &Bytes, etag: &str) -> Response {
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = Response::new(if fresh { axum::body::Body::empty() } else { body.clone().into() });
    if fresh {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
    }
    // Room for these three and the middleware's headers: the map is allocated once.
    *response.headers_mut() = HeaderMap::with_capacity(12);
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(ETAG, value);
    }
    response
}

/// The provider's OpenID Connect discovery document.
///
/// Served from a cache with an `ETag`; `If-None-Match` with that tag answers 304.
#[utoipa::path(
    get,
    path = "/t/{slug}/.well-known/openid-configuration",
    tag = "oauth",
    operation_id = "oauth_discovery",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` seen before")
    ),
    responses(
        (
            status = 200,
            description = "The discovery document (`Cache-Control: public, max-age=300`)",
            body = DiscoveryDocument,
            headers(("ETag" = String, description = "The document's version"))
        ),
        (status = 304, description = "Not modified: `If-None-Match` names the current `ETag`"),
        ApiErrors
    ),
    security(())
)]
async fn discovery(State(app): State<AppState>, Path(slug): Path<String>, req: Request) -> Result<Response, Error> {
    let tenant = tenant_of(&app, &slug).await?;
    let doc = app.oidc.discovery(&app, &tenant);
    let headers = req.headers();
    Ok(cors(&app, &tenant.slug, headers, cached_document(headers, &doc.body, &doc.etag)).await)
}

/// The provider's JSON Web Key Set, to verify the tokens it signs.
///
/// Served from a cache with an `ETag`; `If-None-Match` with that tag answers 304.
#[utoipa::path(
    get,
    path = "/t/{slug}/.well-known/jwks.json",
    tag = "oauth",
    operation_id = "oauth_jwks",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` seen before")
    ),
    responses(
        (
            status = 200,
            description = "The key set (`Cache-Control: public, max-age=300`)",
            body = JwkSet,
            headers(("ETag" = String, description = "The key set's version"))
        ),
        (status = 304, description = "Not modified: `If-None-Match` names the current `ETag`"),
        ApiErrors
    ),
    security(())
)]
async fn jwks(State(app): State<AppState>, Path(slug): Path<String>, req: Request) -> Result<Response, Error> {
    let slug = TenantSlug::parse(&slug).map_err(|_| Error::TenantNotFound)?;
    let ring = app.oidc.published_ring(&app, &slug).await?;
    let headers = req.headers();
    Ok(cors(&app, &slug, headers, cached_document(headers, &ring.jwks, &ring.jwks_etag)).await)
}

// ---- form parsing and client authentication ----

/// A form body; a parameter given twice is an error (RFC 6749 §3.2).
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
        let form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !form && !body.is_empty() {
            return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
        }
        Self::from_pairs(url::form_urlencoded::parse(body))
    }

    pub fn from_pairs<'a>(
        pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    ) -> Result<Params, OAuthError> {
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!("parameter {k} was given more than once")));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub(super) fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key).ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {key}")))
    }
}

/// The client credentials of a request: HTTP Basic (RFC 6749 §2.3.1, values form-encoded) or body parameters.
/// The third value says whether they came as HTTP Basic.
fn presented_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<(Option<String>, Option<String>, bool), OAuthError> {
    let basic = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| rest.trim().to_owned())
    });
    if let Some(encoded) = basic {
        if params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request("use one client authentication method, not two"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
        let (id, secret) =
            decoded.split_once(':').ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
        let unescape =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
        let (id, secret) = (unescape(id).unwrap_or_default(), unescape(secret).unwrap_or_default());
        if let Some(body_id) = params.get("client_id")
            && body_id != id
        {
            return Err(OAuthError::invalid_request("client_id does not match the Basic credentials"));
        }
        return Ok((Some(id), Some(secret), true));
    }
    Ok((params.get("client_id").map(str::to_owned), params.get("client_secret").map(str::to_owned), false))
}

/// Authenticates the client of a token/revocation/introspection request. Public clients identify themselves with
/// `client_id` only; confidential ones must present their secret.
pub(super) async fn authenticate(
    app: &App,
    tenant: &Tenant,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Arc<Client>, OAuthError> {
    let issuer = crate::oidc::state::issuer(app, tenant.slug.as_str());
    let (id, secret, basic) = presented_credentials(headers, params)?;
    let Some(id) = id else { return Err(OAuthError::invalid_client(&issuer)) };
    let client = app.oidc.client(app, &tenant.slug, &id).await?.ok_or_else(|| OAuthError::invalid_client(&issuer))?;
    // The registered method is the only one accepted (RFC 7591 §2): a secret sent the other way is refused.
    let ok = match (client.client_type, client.token_endpoint_auth_method) {
        (ClientType::Confidential, AuthMethod::ClientSecretBasic) => {
            basic && secret.as_deref().is_some_and(|s| client.secret_matches(s))
        }
        (ClientType::Confidential, AuthMethod::ClientSecretPost) => {
            !basic && secret.as_deref().is_some_and(|s| client.secret_matches(s))
        }
        (ClientType::Confidential, AuthMethod::None) => false,
        (ClientType::Public, _) => secret.is_none() && !basic,
    };
    if ok { Ok(client) } else { Err(OAuthError::invalid_client(&issuer)) }
}

pub(super) fn no_store(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

// ---- userinfo ----

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// The user behind an access token: their claims, as the token's scopes release them.
///
/// The token needs the `openid` scope and must be a user's (not a client_credentials token).
#[utoipa::path(
    get,
    path = "/t/{slug}/oauth2/userinfo",
    tag = "oauth",
    operation_id = "oauth_userinfo",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The user's claims (`Cache-Control: no-store`)", body = UserinfoClaims),
        OAuthErrors
    ),
    security(("access_token" = []))
)]
async fn userinfo(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut client_id = None;
    let result = userinfo_inner(&app, &slug, &method, &headers, &body, &mut client_id).await;
    with_cors(&app, &slug, &headers, client_id, result).await
}

/// The user behind an access token, sent in the `Authorization` header or the form (not both).
///
/// The token needs the `openid` scope and must be a user's (not a client_credentials token).
#[utoipa::path(
    post,
    path = "/t/{slug}/oauth2/userinfo",
    tag = "oauth",
    operation_id = "oauth_userinfo_post",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body(content = Option<UserinfoForm>, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The user's claims (`Cache-Control: no-store`)", body = UserinfoClaims),
        OAuthErrors
    ),
    security(("access_token" = []))
)]
async fn userinfo_post(
    state: State<AppState>,
    slug: Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    userinfo(state, slug, method, headers, body).await
}

async fn userinfo_inner(
    app: &AppState,
    slug: &str,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    client_id: &mut Option<String>,
) -> OAuthResult {
    let tenant = &tenant_of(app, slug).await?;
    let in_body = if *method == Method::POST {
        Params::parse(headers, body)?.get("access_token").map(str::to_owned)
    } else {
        None
    };
    let token = match (bearer(headers), in_body) {
        (Some(_), Some(_)) => return Err(OAuthError::invalid_request("send the access token once")),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            return Err(OAuthError {
                status: StatusCode::UNAUTHORIZED,
                error: "invalid_request",
                description: "a bearer access token is required".into(),
                challenge: Some("Bearer".into()),
            });
        }
    };
    let ring = app.oidc.keyring(app, tenant).await?;
    let db = tenant_db(app, &tenant.slug).await?;
    let Some(access) = tokens::check_access(&app.oidc.verified, &ring, &db, &token).await? else {
        return Err(OAuthError::invalid_token("the access token is invalid, expired or revoked"));
    };
    *client_id = Some(access.client_id().to_owned());
    let scope = access.scopes();
    if !access.is_user() || !scope.iter().any(|s| s == "openid") {
        return Err(OAuthError {
            status: StatusCode::FORBIDDEN,
            error: "insufficient_scope",
            description: "userinfo needs a user's token with the openid scope".into(),
            challenge: Some("Bearer error=\"insufficient_scope\", scope=\"openid\"".into()),
        });
    }
    let (user_id, t, s2) = (access.sub().to_owned(), tenant.clone(), scope.clone());
    let loaded = crate::db::with_conn(&db.pool, move |conn| tokens::load_user(conn, &t, &user_id, &s2)).await?;
    let Some((user, roles, _)) = loaded else {
        return Err(OAuthError::invalid_token("the account is no longer active"));
    };
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), json!(user.id));
    body.extend(tokens::user_claims(tenant, &user, &scope, &roles));
    Ok(no_store(Value::Object(body)))
}

// ---- introspection and revocation ----

/// Tells a confidential client whether a token is active, and what it carries (RFC 7662).
///
/// A client sees only its own tokens as active unless it is registered as a `resource_server`.
#[utoipa::path(
    post,
    path = "/t/{slug}/oauth2/introspect",
    tag = "oauth",
    operation_id = "oauth_introspect",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body(content = TokenLookupForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state (`Cache-Control: no-store`)", body = Introspection),
        OAuthErrors
    ),
    security(("client_basic" = []), ())
)]
async fn introspect(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    introspect_inner(&app, &slug, &headers, &body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn introspect_inner(app: &AppState, slug: &str, headers: &HeaderMap, body: &[u8]) -> OAuthResult {
    let tenant = &tenant_of(app, slug).await?;
    let params = Params::parse(headers, body)?;
    let client = authenticate(app, tenant, headers, &params).await?;
    if client.client_type == ClientType::Public {
        return Err(OAuthError::invalid_client(&crate::oidc::state::issuer(app, tenant.slug.as_str())));
    }
    let token = params.require("token")?.to_owned();
    let db = tenant_db(app, &tenant.slug).await?;
    if token.matches('.').count() == 2 {
        let ring = app.oidc.keyring(app, tenant).await?;
        if let Some(access) = tokens::check_access(&app.oidc.verified, &ring, &db, &token).await?
            && may_see(&client, access.client_id())
        {
            let c = &access.claims;
            let mut body = json!({
                "active": true,
                "token_type": "Bearer",
                "scope": c["scope"],
                "client_id": c["client_id"],
                "sub": c["sub"],
                "iss": c["iss"],
                "aud": c["aud"],
                "exp": c["exp"],
                "iat": c["iat"],
                "jti": c["jti"],
            });
            for extra in ["auth_time", "sid", "roles", "permissions"] {
                if let Some(v) = c.get(extra) {
                    body[extra] = v.clone();
                }
            }
            return Ok(no_store(body));
        }
        return Ok(no_store(json!({ "active": false })));
    }
    let hash = crypto::hash_token(&token);
    let now = crate::now_unix();
    let found = crate::db::point_read(&db.pool, move |conn| {
        // Live means what the refresh grant would accept: the user still active, the session (if bound) live.
        let Some((family, scope, exp, true)) = store::refresh_family(conn, &hash, now)? else { return Ok(None) };
        let session_live = match &family.session_id {
            Some(sid) => store::session_live(conn, sid, now)?,
            None => true,
        };
        Ok((session_live && store::user_active(conn, &family.user_id)?).then_some((family, scope, exp, true)))
    })
    .await?;
    if let Some((family, scope, exp, true)) = found
        && may_see(&client, &family.client_id)
    {
        let issuer = crate::oidc::state::issuer(app, tenant.slug.as_str());
        return Ok(no_store(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": scope,
            "client_id": family.client_id,
            "sub": family.user_id,
            "iss": issuer,
            "exp": exp,
        })));
    }
    Ok(no_store(json!({ "active": false })))
}

/// RFC 7662 §4: a client learns only about its own tokens, unless it is a resource server that accepts the
/// tokens of the tenant's other clients.
fn may_see(caller: &Client, token_client: &str) -> bool {
    caller.resource_server || caller.client_id == token_client
}

/// Revokes a client's access or refresh token (RFC 7009); a refresh token takes its whole token family along.
///
/// Answers 200 whether or not the token was valid (RFC 7009 §2.2).
#[utoipa::path(
    post,
    path = "/t/{slug}/oauth2/revoke",
    tag = "oauth",
    operation_id = "oauth_revoke",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body(content = TokenLookupForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (
            status = 200,
            description = "Revoked, or nothing to revoke: an empty object `{}` (`Cache-Control: no-store`)",
            body = Object
        ),
        OAuthErrors
    ),
    security(("client_basic" = []), ())
)]
async fn revoke(State(app): State<AppState>, Path(slug): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let mut client_id = None;
    let result = revoke_inner(&app, &slug, &headers, &body, &mut client_id).await;
    with_cors(&app, &slug, &headers, client_id, result).await
}

async fn revoke_inner(
    app: &AppState,
    slug: &str,
    headers: &HeaderMap,
    body: &[u8],
    client_id: &mut Option<String>,
) -> OAuthResult {
    let tenant = &tenant_of(app, slug).await?;
    let params = Params::parse(headers, body)?;
    let client = authenticate(app, tenant, headers, &params).await?;
    *client_id = Some(client.client_id.clone());
    let token = params.require("token")?.to_owned();
    let db = tenant_db(app, &tenant.slug).await?;
    let now = crate::now_unix();
    if token.matches('.').count() == 2 {
        let ring = app.oidc.keyring(app, tenant).await?;
        // Revoking needs only a token this tenant signed for this client; an expired one is already dead.
        if let Ok(claims) = ring.verify(&token, Typ::AccessToken, false)
            && claims["client_id"].as_str() == Some(client.client_id.as_str())
        {
            let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
            let exp = claims["exp"].as_i64().unwrap_or(now);
            let client_id = client.client_id.clone();
            db.write(move |tx| store::revoke_access(tx, &jti, &client_id, exp, now)).await?;
        }
    } else {
        let hash = crypto::hash_token(&token);
        let client_id = client.client_id.clone();
        db.write(move |tx| {
            if let Some((family, ..)) = store::refresh_family(tx, &hash, now)?
                && family.client_id == client_id
            {
                store::revoke_family(tx, &family.id, "revoked_by_client", now)?;
            }
            Ok(())
        })
        .await?;
    }
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    Ok(no_store(json!({})))
}
