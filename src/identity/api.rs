//! The end-user JSON API of a tenant under `/t/{slug}/api/v1`, for first-party apps: sign-up, sign-in (with the
//! second factor), sign-out, the signed-in user (`me`), sessions, password change/forgot/reset, email
//! verification.
//!
//! Authentication is the `gh_session` cookie, or a bearer access token of a first-party client that carries
//! `account:read` (reads) or `account:write` (changes): an `openid`-only token of a third-party app gets 403
//! `insufficient_scope`, and a disabled user's tokens get 401. Cross-site request forgery is blocked by the
//! cookie's `SameSite=Lax`, by every state-changing route taking a JSON body (`Content-Type: application/json`
//! cannot be sent cross-origin without a CORS preflight, which is refused), and, for the body-less cookie writes
//! (sign-out, revoking a session), by the `X-CSRF-Token` header carrying the session's CSRF token (sign-in
//! answers it as `csrf_token`, and so does `GET /me` under the cookie).

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, TenantCtx};
use crate::identity::flows::{self, Registered, SignIn};
use crate::identity::sessions::{self, Session, Stage};
use crate::identity::{audit, limits, mfa, roles, users};
use crate::oidc::settings::{ACCOUNT_READ, ACCOUNT_WRITE};

pub fn router() -> Router<AppState> {
    let base = "/t/{slug}/api/v1";
    Router::new()
        .route(&format!("{base}/register"), post(register))
        .route(&format!("{base}/login"), post(login))
        .route(&format!("{base}/login/mfa"), post(login_mfa))
        .route(&format!("{base}/logout"), post(logout))
        .route(&format!("{base}/me"), get(me).patch(update_me))
        .route(&format!("{base}/me/password"), post(change_password))
        .route(&format!("{base}/me/sessions"), get(my_sessions))
        .route(&format!("{base}/me/sessions/{{id}}"), delete(revoke_session))
        .route(&format!("{base}/password/forgot"), post(forgot))
        .route(&format!("{base}/password/reset"), post(reset))
        .route(&format!("{base}/email/verify"), post(verify_email))
}

/// A signed-in end user of the tenant in the path (an active `gh_session`); 401 otherwise.
pub struct ApiUser {
    pub tenant: std::sync::Arc<Tenant>,
    pub db: TenantDb,
    pub session: Session,
    /// Signed in by the session cookie (not a bearer token).
    pub via_cookie: bool,
}

impl axum::extract::FromRequestParts<AppState> for ApiUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, app: &AppState) -> Result<Self> {
        let TenantCtx { tenant, db } = TenantCtx::from_request_parts(parts, app).await?;
        let reads = matches!(parts.method, Method::GET | Method::HEAD);
        if let Some(token) = bearer(&parts.headers) {
            let needed = if reads { ACCOUNT_READ } else { ACCOUNT_WRITE };
            return bearer_user(app, tenant, db, &token, needed).await;
        }
        let session = flows::current_session(&tenant, &db, &parts.headers).await?;
        match session {
            Some(session) if session.stage == Stage::Active => {
                if !reads && !json_body(&parts.headers) {
                    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                    if !crate::crypto::constant_time_eq(sent, &session.csrf_token) {
                        return Err(Error::Forbidden("missing or wrong CSRF token (send it as X-CSRF-Token)"));
                    }
                }
                Ok(ApiUser { tenant, db, session, via_cookie: true })
            }
            _ => Err(Error::Unauthorized),
        }
    }
}

/// The header a body-less cookie write carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether the request says it carries JSON: a cross-site page can only send that after a CORS preflight.
fn json_body(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// A user's OAuth access token of this tenant stands in for a session when a first-party client holds it with
/// the `needed` account scope: the token's `sid` (when it has one) is "the current session", so sign-out and
/// password changes act on the session the token came from. `check_access` has already refused a token whose
/// user is disabled or gone.
async fn bearer_user(
    app: &AppState,
    tenant: std::sync::Arc<Tenant>,
    db: TenantDb,
    token: &str,
    needed: &'static str,
) -> Result<ApiUser> {
    let ring = app.oidc.keyring(app, &tenant).await?;
    let access =
        crate::oidc::tokens::check_access(&app.oidc.verified, &ring, &db, token).await?.ok_or(Error::Unauthorized)?;
    if !access.is_user() {
        return Err(Error::Unauthorized);
    }
    if !access.has_scope(needed) {
        return Err(Error::InsufficientScope(needed));
    }
    // The scope is only granted to first-party clients; a client demoted, or whose scopes lost it, since the token
    // was issued loses it at once.
    let allowed = app
        .oidc
        .client(app, &tenant.slug, access.client_id())
        .await?
        .is_some_and(|c| c.first_party && c.scopes.iter().any(|s| s == needed));
    if !allowed {
        return Err(Error::InsufficientScope(needed));
    }
    let c = &access.claims;
    let auth_time = c["auth_time"].as_i64().unwrap_or_default();
    let session = Session {
        id: c["sid"].as_str().unwrap_or_default().to_owned(),
        user_id: access.sub().to_owned(),
        stage: Stage::Active,
        csrf_token: String::new(),
        amr: String::new(),
        ip: None,
        user_agent: None,
        created_at: auth_time,
        auth_time,
        last_seen_at: crate::now_unix(),
        expires_at: c["exp"].as_i64().unwrap_or_default(),
        idle_expires_at: c["exp"].as_i64().unwrap_or_default(),
    };
    Ok(ApiUser { tenant, db, session, via_cookie: false })
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

fn session_cookie(app: &App, tenant: &Tenant, value: Option<&str>) -> String {
    sessions::active_cookie(tenant, value, app.config.is_https())
}

/// A sign-up body: `email`, `password`, optional `name`; every other key is a custom field.
#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    name: Option<String>,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

async fn register(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response> {
    limits::check(&app, origin.ip.as_deref())?;
    let input = flows::Registration {
        email: body.email,
        password: body.password,
        name: body.name,
        fields: Value::Object(body.fields),
    };
    Ok(match flows::register(&app, &ctx.tenant, &ctx.db, input, origin).await? {
        Registered::Created => (StatusCode::CREATED, Json(json!({ "status": "created" }))).into_response(),
        Registered::VerificationRequired => {
            (StatusCode::ACCEPTED, Json(json!({ "status": "verification_required" }))).into_response()
        }
    })
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response> {
    limits::check(&app, origin.ip.as_deref())?;
    match flows::login(&app, &ctx.tenant, &ctx.db, &body.email, body.password, None, origin).await? {
        SignIn::Done { cookie, session } => {
            let body = Json(json!({ "status": "signed_in", "session": session, "csrf_token": session.csrf_token }));
            Ok(with_cookie(body.into_response(), &session_cookie(&app, &ctx.tenant, Some(&cookie))))
        }
        SignIn::SecondFactor { cookie, session } => {
            let status = if session.stage == Stage::Mfa { "mfa_required" } else { "mfa_enrolment_required" };
            let set = sessions::cookie_header(ctx.tenant.slug.as_str(), Some(&cookie), None, app.config.is_https());
            Ok(with_cookie(Json(json!({ "status": status })).into_response(), &set))
        }
        SignIn::Unverified => Err(Error::EmailNotVerified),
    }
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

async fn login_mfa(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<CodeBody>,
) -> Result<Response> {
    limits::check(&app, origin.ip.as_deref())?;
    let session = flows::current_session(&ctx.tenant, &ctx.db, &headers)
        .await?
        .filter(|s| s.stage == Stage::Mfa)
        .ok_or(Error::Unauthorized)?;
    let cookie = flows::complete_mfa(&app, &ctx.tenant, &ctx.db, &session, body.code, origin).await?;
    Ok(with_cookie(
        Json(json!({ "status": "signed_in" })).into_response(),
        &session_cookie(&app, &ctx.tenant, Some(&cookie)),
    ))
}

async fn logout(State(app): State<AppState>, user: ApiUser, RequestOrigin(origin): RequestOrigin) -> Result<Response> {
    flows::logout(&user.db, &user.session, origin).await?;
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &session_cookie(&app, &user.tenant, None)))
}

/// The signed-in user as the API shows it: the account, its roles and whether TOTP is on.
pub async fn profile(db: &TenantDb, user_id: &str) -> Result<Value> {
    let id = user_id.to_owned();
    db::with_conn(&db.pool, move |conn| {
        let user = users::get(conn, &id)?;
        let mut value = serde_json::to_value(&user).map_err(Error::internal)?;
        value["roles"] = json!(roles::of_user(conn, &id)?);
        value["mfa_enabled"] = json!(mfa::is_enrolled(conn, &id)?);
        Ok(value)
    })
    .await
}

async fn me(user: ApiUser) -> Result<Json<Value>> {
    let mut body = profile(&user.db, &user.session.user_id).await?;
    if user.via_cookie {
        body["csrf_token"] = json!(user.session.csrf_token);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMe {
    /// An empty string clears the name.
    name: Option<String>,
    /// Custom fields to change; keys not given keep their value.
    fields: Option<Map<String, Value>>,
}

async fn update_me(
    user: ApiUser,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<UpdateMe>,
) -> Result<Json<Value>> {
    update_profile(&user.tenant, &user.db, &user.session, body.name, body.fields, origin).await?;
    Ok(Json(profile(&user.db, &user.session.user_id).await?))
}

/// Changes the signed-in user's name and custom fields (merged into the current ones, then checked whole).
pub async fn update_profile(
    tenant: &Tenant,
    db: &TenantDb,
    session: &Session,
    name: Option<String>,
    fields: Option<Map<String, Value>>,
    mut origin: audit::Origin,
) -> Result<()> {
    let name = name.map(|n| n.trim().to_owned());
    if let Some(name) = name.as_deref().filter(|n| !n.is_empty()) {
        users::check_name(name)?;
    }
    let defined = tenant.settings.custom_fields.clone();
    let user_id = session.user_id.clone();
    origin.actor = format!("user:{user_id}");
    db.write(move |tx| {
        let current = users::get(tx, &user_id)?;
        let fields = match fields {
            Some(changes) => {
                let mut merged = current.fields.as_object().cloned().unwrap_or_default();
                for (key, value) in changes {
                    if value.is_null() {
                        merged.remove(&key);
                    } else {
                        merged.insert(key, value);
                    }
                }
                let merged = Value::Object(merged);
                users::check_fields(&merged, &defined)?;
                Some(merged)
            }
            None => None,
        };
        let name = name.as_deref().map(|n| if n.is_empty() { None } else { Some(n) });
        users::update(tx, &user_id, None, None, name, fields.as_ref())?;
        audit::record(tx, "user_updated", Some(&user_id), &origin, json!({ "by": "self" }))?;
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(app): State<AppState>,
    user: ApiUser,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode> {
    flows::change_password(
        &app,
        &user.tenant,
        &user.db,
        &user.session,
        body.current_password,
        body.new_password,
        origin,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn my_sessions(user: ApiUser) -> Result<Json<Value>> {
    let id = user.session.user_id.clone();
    let current = user.session.id.clone();
    let list = db::with_conn(&user.db.pool, move |conn| sessions::list(conn, &id)).await?;
    let items: Vec<Value> = list
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["current"] = json!(s.id == current);
            v
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn revoke_session(
    user: ApiUser,
    RequestOrigin(mut origin): RequestOrigin,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let user_id = user.session.user_id.clone();
    origin.actor = format!("user:{user_id}");
    user.db
        .write(move |tx| {
            if !sessions::revoke(tx, &user_id, &id)? {
                return Err(Error::NotFound("session"));
            }
            audit::record(tx, "logout", Some(&user_id), &origin, json!({ "session": id, "revoked": true }))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ForgotBody {
    email: String,
}

async fn forgot(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<ForgotBody>,
) -> Result<(StatusCode, Json<Value>)> {
    limits::check(&app, origin.ip.as_deref())?;
    flows::forgot_password(&app, &ctx.tenant, &ctx.db, &body.email, origin);
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))))
}

#[derive(Deserialize)]
struct ResetBody {
    token: String,
    new_password: String,
}

async fn reset(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<StatusCode> {
    limits::check(&app, origin.ip.as_deref())?;
    flows::reset_password(&app, &ctx.tenant, &ctx.db, body.token, body.new_password, origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

async fn verify_email(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<StatusCode> {
    flows::verify_email(&app, &ctx.tenant, &ctx.db, body.token, origin).await?;
    Ok(StatusCode::NO_CONTENT)
}
