//! The token endpoint (`POST /t/{slug}/oauth2/token`, RFC 6749 §3.2): the authorization_code (with PKCE, RFC 7636),
//! refresh_token and client_credentials grants, and minting the signed tokens they produce.
//!
//! A code or refresh token is consumed, and the token family and token rows written, in one tenant transaction;
//! signing happens after commit. A replayed code or rotated refresh token revokes what it issued (audit
//! `token_reuse`). Errors, client authentication and CORS are shared with the other endpoints (`endpoints.rs`).
//!
//! Who may call: a client of the tenant, authenticated as it registered (a public client by its `client_id`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::crypto;
use crate::error::Error;
use crate::http::extract::RequestOrigin;
use crate::http::openapi::OAuthErrors;
use crate::identity::audit::{self, Origin};
use crate::oidc::clients::{Client, ClientType};
use crate::oidc::endpoints::{OAuthError, OAuthResult, Params, authenticate, no_store, with_cors};
use crate::oidc::keys::{KeyRing, Typ};
use crate::oidc::settings::BUILT_IN_SCOPES;
use crate::oidc::state::{tenant_db, tenant_of};
use crate::oidc::store::{self, CodeUse, Family, RefreshUse};
use crate::oidc::tokens::{self, Minted, UserGrant};
use crate::tenants::TenantSlug;

fn count_issued(app: &App, grant: &'static str) {
    app.metrics.record(|| metrics::counter!("gatehouse_tokens_issued_total", "grant" => grant).increment(1));
    app.metrics.pulse.token_issued();
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

/// The token request's form (RFC 6749 §4.1.3, §4.4.2, §6). Documents the body; the handler parses it as `Params`
/// (a parameter given twice is refused).
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`, as the client is allowed.
    grant_type: String,
    /// authorization_code: the code from the redirect.
    code: Option<String>,
    /// authorization_code: the redirect URI of the authorization request, exactly.
    redirect_uri: Option<String>,
    /// authorization_code: the PKCE verifier, when the request had a `code_challenge`.
    code_verifier: Option<String>,
    /// refresh_token: the refresh token; it is rotated (a used one revokes its family).
    refresh_token: Option<String>,
    /// refresh_token: narrows the granted scopes for this request; client_credentials: the client's own scopes
    /// wanted (default all of them). Space-separated.
    scope: Option<String>,
    /// The client, when it does not authenticate with HTTP Basic.
    client_id: Option<String>,
    /// With `client_secret_post`.
    client_secret: Option<String>,
}

/// What the token endpoint answers (RFC 6749 §5.1), as `Minted::to_json` builds it. Documents the served JSON;
/// never built.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TokenResponse {
    /// A JWT (RFC 9068).
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// The granted scopes, space-separated.
    scope: String,
    /// With the `openid` scope.
    id_token: Option<String>,
    /// When the client may refresh (a public client needs `offline_access`); never for client_credentials.
    refresh_token: Option<String>,
}

/// Exchanges a grant for tokens: authorization_code (with PKCE), refresh_token or client_credentials.
///
/// A replayed code or an already used refresh token is refused and revokes the tokens issued from it.
#[utoipa::path(
    post,
    path = "/t/{slug}/oauth2/token",
    tag = "oauth",
    operation_id = "oauth_token",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The tokens (`Cache-Control: no-store`)", body = TokenResponse),
        OAuthErrors
    ),
    security(("client_basic" = []), ())
)]
pub(super) async fn token(
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
            // A scope the client has lost since the grant is not minted again.
            let granted_scope: Vec<String> =
                split_scope(&granted).into_iter().filter(|s| c.scopes.contains(s)).collect();
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
