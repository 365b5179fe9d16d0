//! The machine-facing endpoints of a tenant's provider: discovery, JWKS, token (authorization_code,
//! refresh_token, client_credentials), userinfo, revocation (RFC 7009) and introspection (RFC 7662), with CORS
//! for the origins the tenant's clients allow.
//!
//! Errors here take the OAuth shape (`{"error","error_description"}`, RFC 6749 §5.2), not the API one, because
//! that is what client libraries parse. Token responses carry `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, ORIGIN, PRAGMA, VARY, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::crypto;
use crate::db::registry::TenantDb;
use crate::error::Error;
use crate::http::extract::RequestOrigin;
use crate::identity::audit::{self, Origin};
use crate::oidc::clients::{AuthMethod, Client, ClientType};
use crate::oidc::keys::{KeyRing, Typ};
use crate::oidc::settings::BUILT_IN_SCOPES;
use crate::oidc::store::{self, CodeUse, Family, RefreshUse};
use crate::oidc::tokens::{self, Minted, UserGrant};
use crate::tenants::{TenantSlug, TenantStatus};

pub fn router() -> Router<AppState> {
    let t = "/t/{slug}";
    Router::new()
        .route(&format!("{t}/.well-known/openid-configuration"), get(discovery).options(preflight))
        .route(&format!("{t}/.well-known/jwks.json"), get(jwks).options(preflight))
        .route(&format!("{t}/oauth2/token"), axum::routing::post(token).options(preflight))
        .route(&format!("{t}/oauth2/userinfo"), get(userinfo).post(userinfo).options(preflight))
        .route(&format!("{t}/oauth2/revoke"), axum::routing::post(revoke).options(preflight))
        .route(&format!("{t}/oauth2/introspect"), axum::routing::post(introspect).options(preflight))
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

    fn invalid_scope(description: impl Into<String>) -> Self {
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

type OAuthResult = Result<Response, OAuthError>;

// ---- shared lookups ----

/// The active tenant in the path, from the cache (no database file opened).
pub async fn tenant_of(app: &App, slug: &str) -> Result<Arc<Tenant>, Error> {
    let slug = TenantSlug::parse(slug).map_err(|_| Error::TenantNotFound)?;
    let tenant = app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    if tenant.status == TenantStatus::Suspended {
        return Err(Error::TenantSuspended);
    }
    Ok(tenant)
}

/// The tenant's open database (the blocking pool only when the pool must be opened).
pub async fn tenant_db(app: &App, slug: &TenantSlug) -> Result<TenantDb, Error> {
    if let Some(db) = app.tenants.cached(slug) {
        return Ok(db);
    }
    let (registry, slug) = (app.tenants.clone(), slug.clone());
    tokio::task::spawn_blocking(move || registry.get(&slug)).await?
}

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
async fn with_cors(
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

async fn discovery(State(app): State<AppState>, Path(slug): Path<String>, req: Request) -> Result<Response, Error> {
    let tenant = tenant_of(&app, &slug).await?;
    let doc = app.oidc.discovery(&app, &tenant);
    let headers = req.headers();
    Ok(cors(&app, &tenant.slug, headers, cached_document(headers, &doc.body, &doc.etag)).await)
}

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

    fn require(&self, key: &str) -> Result<&str, OAuthError> {
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
async fn authenticate(
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

fn no_store(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn count_issued(app: &App, grant: &'static str) {
    app.metrics.record(|| metrics::counter!("gatehouse_tokens_issued_total", "grant" => grant).increment(1));
}

fn split_scope(raw: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in raw.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|x| x == s) {
            out.push(s.to_owned());
        }
    }
    out
}

// ---- token endpoint ----

async fn token(
    State(app): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    body: Bytes,
) -> Response {
    let mut client_id = None;
    let result = token_inner(&app, &slug, &headers, origin, &body, &mut client_id).await;
    with_cors(&app, &slug, &headers, client_id, result).await
}

async fn token_inner(
    app: &AppState,
    slug: &str,
    headers: &HeaderMap,
    origin: Origin,
    body: &[u8],
    client_id: &mut Option<String>,
) -> OAuthResult {
    let tenant = &tenant_of(app, slug).await?;
    let params = Params::parse(headers, body)?;
    let grant_type = params.require("grant_type")?.to_owned();
    let client = authenticate(app, tenant, headers, &params).await?;
    *client_id = Some(client.client_id.clone());
    if !crate::oidc::clients::GRANT_TYPES.contains(&grant_type.as_str()) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant_type} is not supported"),
        ));
    }
    if !client.allows_grant(&grant_type) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            format!("this client may not use {grant_type}"),
        ));
    }
    let minted = match grant_type.as_str() {
        "client_credentials" => client_credentials(app, tenant, &client, &params).await?,
        "authorization_code" => authorization_code(app, tenant, &client, &params, origin).await?,
        _ => refresh_token(app, tenant, &client, &params, origin).await?,
    };
    Ok(no_store(minted.to_json()))
}

async fn client_credentials(
    app: &AppState,
    tenant: &Arc<Tenant>,
    client: &Client,
    params: &Params,
) -> Result<Minted, OAuthError> {
    let scope = match params.get("scope") {
        Some(raw) => {
            let requested = split_scope(raw);
            for s in &requested {
                if BUILT_IN_SCOPES.contains(&s.as_str()) || !client.scopes.contains(s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "scope {s} is not available to this client's own tokens"
                    )));
                }
            }
            requested
        }
        None => client.scopes.iter().filter(|s| !BUILT_IN_SCOPES.contains(&s.as_str())).cloned().collect(),
    };
    let ring = app.oidc.keyring(app, tenant).await?;
    let now = crate::now_unix();
    let ttl = client.access_ttl(&tenant.settings.oidc);
    let claims = json!({
        "iss": ring.issuer,
        "sub": client.client_id,
        "aud": ring.issuer,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": tokens::new_jti(),
        "scope": scope.join(" "),
    });
    let access_token = tokens::sign(&ring.active, Typ::AccessToken, claims).await?;
    count_issued(app, "client_credentials");
    Ok(Minted { access_token, expires_in: ttl, scope: scope.join(" "), id_token: None, refresh_token: None })
}

/// PKCE S256 (RFC 7636 §4.6).
fn pkce_ok(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => {
            Err(OAuthError::invalid_grant("code_verifier given but the authorization request had no code_challenge"))
        }
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if well_formed && crypto::constant_time_eq(&computed, challenge) {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"))
            }
        }
    }
}

/// What a grant produced, ready to sign.
struct Prepared {
    grant: UserGrant,
    access_jti: String,
    refresh_token: Option<String>,
    with_nonce: bool,
}

/// Whether a grant gets a refresh token: the client must be allowed the grant, and a public client must have
/// been granted `offline_access`.
fn gets_refresh(client: &Client, scope: &[String]) -> bool {
    client.allows_grant("refresh_token")
        && (client.client_type == ClientType::Confidential || scope.iter().any(|s| s == "offline_access"))
}

async fn authorization_code(
    app: &AppState,
    tenant: &Arc<Tenant>,
    client: &Arc<Client>,
    params: &Params,
    origin: Origin,
) -> Result<Minted, OAuthError> {
    let code_hash = crypto::hash_token(params.require("code")?);
    let redirect_uri = params.get("redirect_uri").map(str::to_owned);
    let verifier = params.get("code_verifier").map(str::to_owned);
    let db = tenant_db(app, &tenant.slug).await?;
    let now = crate::now_unix();
    let (t, c) = (tenant.clone(), client.clone());
    let ttl_refresh = client.refresh_ttl(&tenant.settings.oidc);
    let access_exp = now + client.access_ttl(&tenant.settings.oidc);
    let outcome = db
        .write(move |tx| -> crate::error::Result<Result<Prepared, OAuthError>> {
            let grant = match store::take_code(tx, &code_hash, now)? {
                CodeUse::Fresh(grant) => grant,
                CodeUse::Replayed { client_id, user_id, revoked } => {
                    let mut origin = origin;
                    origin.actor = format!("client:{client_id}");
                    audit::record(
                        tx,
                        "token_reuse",
                        Some(&user_id),
                        &origin,
                        json!({"token": "authorization_code", "client_id": client_id, "families_revoked": revoked}),
                    )?;
                    return Ok(Err(OAuthError::invalid_grant(
                        "the code was already used; the tokens issued for it were revoked",
                    )));
                }
                CodeUse::Expired => return Ok(Err(OAuthError::invalid_grant("the code has expired"))),
                CodeUse::Unknown => return Ok(Err(OAuthError::invalid_grant("unknown code"))),
            };
            if grant.client_id != c.client_id {
                return Ok(Err(OAuthError::invalid_grant("the code was issued to another client")));
            }
            if redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
                return Ok(Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request")));
            }
            if let Err(e) = pkce_ok(grant.code_challenge.as_deref(), verifier.as_deref()) {
                return Ok(Err(e));
            }
            // Signing out (or a password reset) between the redirect and the exchange ends the grant too.
            if !store::session_live(tx, &grant.session_id, now)? {
                return Ok(Err(OAuthError::invalid_grant("the sign-in this code came from has ended")));
            }
            let scope = split_scope(&grant.scope);
            let Some((user, roles, permissions)) = tokens::load_user(tx, &t, &grant.user_id, &scope)? else {
                return Ok(Err(OAuthError::invalid_grant("the account is no longer active")));
            };
            let offline = scope.iter().any(|s| s == "offline_access");
            let family = Family {
                id: tokens::new_jti(),
                client_id: c.client_id.clone(),
                user_id: user.id.clone(),
                session_id: (!offline).then(|| grant.session_id.clone()),
                scope: grant.scope.clone(),
                auth_time: grant.auth_time,
                amr: grant.amr.clone(),
                revoked: false,
            };
            store::create_family(tx, &family, Some(&code_hash), now)?;
            // Claims a post-login plugin added at sign-in travel with the family, so refreshed tokens keep them.
            let extra = crate::identity::sessions::claims(tx, &grant.session_id)?;
            if !extra.is_empty() {
                store::set_family_claims(tx, &family.id, &extra)?;
            }
            let refresh_token = if gets_refresh(&c, &scope) {
                let token = crypto::random_token("ghr_");
                store::insert_refresh(tx, &crypto::hash_token(&token), &family.id, &grant.scope, now, ttl_refresh)?;
                Some(token)
            } else {
                None
            };
            let access_jti = tokens::new_jti();
            store::insert_access(tx, &access_jti, Some(&family.id), &c.client_id, access_exp)?;
            Ok(Ok(Prepared {
                grant: UserGrant {
                    user,
                    roles,
                    permissions,
                    scope,
                    session_id: Some(grant.session_id),
                    bound_to_session: !offline,
                    auth_time: grant.auth_time,
                    amr: grant.amr,
                    nonce: grant.nonce,
                    extra,
                },
                access_jti,
                refresh_token,
                with_nonce: true,
            }))
        })
        .await??;
    let minted = mint(app, tenant, client, outcome, now).await?;
    count_issued(app, "authorization_code");
    Ok(minted)
}

async fn mint(app: &AppState, tenant: &Tenant, client: &Client, p: Prepared, now: i64) -> Result<Minted, OAuthError> {
    let tenant_arc = app.control.tenant(&tenant.slug).await?.ok_or(Error::TenantNotFound)?;
    let ring: Arc<KeyRing> = app.oidc.keyring(app, &tenant_arc).await?;
    let ttl = client.access_ttl(&tenant.settings.oidc);
    let access_claims = tokens::user_access_claims(&ring, client, &p.grant, &p.access_jti, now, ttl);
    let wants_id = p.grant.scope.iter().any(|s| s == "openid");
    let scope = p.grant.scope.join(" ");
    let refresh_token = p.refresh_token.clone();
    let signed = if wants_id {
        // at_hash needs the access token first; both are signed in one trip to the blocking pool for RSA.
        let key = ring.active.clone();
        let ring2 = ring.clone();
        let (tenant2, client2) = (tenant_arc.clone(), client.clone());
        let work = move || -> crate::error::Result<(String, String)> {
            let access = key.sign(Typ::AccessToken, &access_claims)?;
            let id_claims = tokens::id_claims(&ring2, &tenant2, &client2, &p.grant, &access, now, p.with_nonce);
            let id = key.sign(Typ::Jwt, &id_claims)?;
            Ok((access, id))
        };
        let (access, id) = if ring.active.alg.is_slow() {
            tokio::task::spawn_blocking(work).await.map_err(Error::from)??
        } else {
            work()?
        };
        (access, Some(id))
    } else {
        (tokens::sign(&ring.active, Typ::AccessToken, access_claims).await?, None)
    };
    Ok(Minted { access_token: signed.0, expires_in: ttl, scope, id_token: signed.1, refresh_token })
}

async fn refresh_token(
    app: &AppState,
    tenant: &Arc<Tenant>,
    client: &Arc<Client>,
    params: &Params,
    origin: Origin,
) -> Result<Minted, OAuthError> {
    let token_hash = crypto::hash_token(params.require("refresh_token")?);
    let narrowed = params.get("scope").map(split_scope);
    let db = tenant_db(app, &tenant.slug).await?;
    let now = crate::now_unix();
    let (t, c) = (tenant.clone(), client.clone());
    let ttl_refresh = client.refresh_ttl(&tenant.settings.oidc);
    let access_exp = now + client.access_ttl(&tenant.settings.oidc);
    let outcome = db
        .write(move |tx| -> crate::error::Result<Result<Prepared, OAuthError>> {
            // A token of another client is refused without touching it.
            match store::refresh_family(tx, &token_hash, now)? {
                Some((family, ..)) if family.client_id == c.client_id => {}
                _ => return Ok(Err(OAuthError::invalid_grant("unknown refresh token"))),
            }
            let (family, granted) = match store::rotate_refresh(tx, &token_hash, now)? {
                RefreshUse::Fresh { family, scope } => (family, scope),
                RefreshUse::Reused { family } => {
                    let mut origin = origin;
                    origin.actor = format!("client:{}", family.client_id);
                    audit::record(
                        tx,
                        "token_reuse",
                        Some(&family.user_id),
                        &origin,
                        json!({"token": "refresh_token", "client_id": family.client_id, "family": family.id}),
                    )?;
                    return Ok(Err(OAuthError::invalid_grant(
                        "the refresh token was already used; its token family was revoked",
                    )));
                }
                RefreshUse::Dead => {
                    return Ok(Err(OAuthError::invalid_grant("the refresh token has expired or was revoked")));
                }
                RefreshUse::Unknown => return Ok(Err(OAuthError::invalid_grant("unknown refresh token"))),
            };
            if let Some(sid) = &family.session_id
                && !store::session_live(tx, sid, now)?
            {
                store::revoke_family(tx, &family.id, "session_ended", now)?;
                return Ok(Err(OAuthError::invalid_grant("the session these tokens belong to has ended")));
            }
            let granted_scope = split_scope(&granted);
            let scope = match narrowed {
                Some(requested) => {
                    if let Some(extra) = requested.iter().find(|s| !granted_scope.contains(s)) {
                        return Ok(Err(OAuthError::invalid_scope(format!("scope {extra} was not granted"))));
                    }
                    requested
                }
                None => granted_scope.clone(),
            };
            let Some((user, roles, permissions)) = tokens::load_user(tx, &t, &family.user_id, &scope)? else {
                store::revoke_family(tx, &family.id, "account_inactive", now)?;
                return Ok(Err(OAuthError::invalid_grant("the account is no longer active")));
            };
            // The next refresh token keeps the original grant, so narrowing one request narrows only its tokens.
            let next = crypto::random_token("ghr_");
            store::insert_refresh(tx, &crypto::hash_token(&next), &family.id, &granted, now, ttl_refresh)?;
            let access_jti = tokens::new_jti();
            store::insert_access(tx, &access_jti, Some(&family.id), &c.client_id, access_exp)?;
            Ok(Ok(Prepared {
                grant: UserGrant {
                    user,
                    roles,
                    permissions,
                    scope,
                    bound_to_session: family.session_id.is_some(),
                    session_id: family.session_id.clone(),
                    auth_time: family.auth_time,
                    amr: family.amr.clone(),
                    nonce: None,
                    extra: store::family_claims(tx, &family.id)?,
                },
                access_jti,
                refresh_token: Some(next),
                with_nonce: false,
            }))
        })
        .await??;
    let minted = mint(app, tenant, client, outcome, now).await?;
    count_issued(app, "refresh_token");
    Ok(minted)
}

// ---- userinfo ----

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

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
    let found = crate::db::point_read(&db.pool, move |conn| store::refresh_family(conn, &hash, now)).await?;
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
