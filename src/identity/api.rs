//! The end-user JSON API of a tenant under `/t/{slug}/api/v1`, for first-party apps: sign-up, sign-in (with the
//! second factor), sign-out, the signed-in user (`me`), sessions, password change/forgot/reset, email
//! verification. The handlers extract, call one function of `flows` (shared with the hosted pages) and shape
//! the answer.
//!
//! Authentication is the `gh_session` cookie, or a bearer access token of a first-party client that carries
//! `account:read` (reads) or `account:write` (changes): an `openid`-only token of a third-party app gets 403
//! `insufficient_scope`, and a disabled user's tokens get 401. Cross-site request forgery is blocked by the
//! cookie's `SameSite=Lax`, by every state-changing route taking a JSON body (`Content-Type: application/json`
//! cannot be sent cross-origin without a CORS preflight, which is refused), and, for the body-less cookie writes
//! (sign-out, revoking a session), by the `X-CSRF-Token` header carrying the session's CSRF token (sign-in
//! answers it as `csrf_token`, and so does `GET /me` under the cookie).
//!
//! Who may call: anyone may sign up, sign in, ask for and use a password-reset link and verify an email; the
//! second sign-in step needs the half-finished session's cookie; sign-out needs a signed-in user; `me`, the
//! password change and the sessions need a signed-in user (the cookie or an account-scoped access token).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::db::registry::TenantDb;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, TenantCtx};
use crate::http::openapi::ApiErrors;
use crate::identity::flows::{self, Registered, SignIn, UserProfile};
use crate::identity::limits;
use crate::identity::sessions::{self, Session, Stage};
use crate::oidc::settings::{ACCOUNT_READ, ACCOUNT_WRITE};
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(logout))
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(my_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(forgot))
        .routes(routes!(reset))
        .routes(routes!(verify_email))
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
#[derive(Deserialize, ToSchema)]
struct RegisterBody {
    email: String,
    password: String,
    name: Option<String>,
    /// A custom field of the tenant.
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// What sign-up did; the same for an email that is taken.
#[derive(Serialize, ToSchema)]
struct SignUpAnswer {
    status: SignUpStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum SignUpStatus {
    /// The account can sign in now.
    Created,
    /// A verification link was mailed; the account can sign in once it is used.
    VerificationRequired,
}

/// Signs up a new user (keys other than `email`, `password` and `name` are custom fields).
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/register",
    tag = "account",
    operation_id = "account_register",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The account can sign in now", body = SignUpAnswer),
        (status = 202, description = "A verification link was mailed first", body = SignUpAnswer),
        ApiErrors
    ),
    security(())
)]
async fn register(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<SignUpAnswer>)> {
    limits::check(&app, origin.ip.as_deref())?;
    let input = flows::Registration {
        email: body.email,
        password: body.password,
        name: body.name,
        fields: Value::Object(body.fields),
    };
    Ok(match flows::register(&app, &ctx.tenant, &ctx.db, input, origin).await? {
        Registered::Created => (StatusCode::CREATED, Json(SignUpAnswer { status: SignUpStatus::Created })),
        Registered::VerificationRequired => {
            (StatusCode::ACCEPTED, Json(SignUpAnswer { status: SignUpStatus::VerificationRequired }))
        }
    })
}

#[derive(Deserialize, ToSchema)]
struct LoginBody {
    email: String,
    password: String,
}

/// What a sign-in did.
#[derive(Serialize, ToSchema)]
struct LoginAnswer {
    status: LoginStatus,
    /// The new session; only when signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session>,
    /// The session's CSRF token, for `X-CSRF-Token` on body-less writes; only when signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum LoginStatus {
    /// Signed in: the cookie is the user's session.
    SignedIn,
    /// A TOTP or recovery code comes next (`POST login/mfa`).
    MfaRequired,
    /// The tenant requires MFA and the user has not enrolled yet; enrolment is on the hosted sign-in pages.
    MfaEnrolmentRequired,
}

/// Signs in with email and password.
///
/// Sets the `gh_session` cookie: the session, or a half-finished one when a second factor comes next.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/login",
    tag = "account",
    operation_id = "account_login",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in, or a second factor is needed", body = LoginAnswer,
            headers(("Set-Cookie" = String, description = "The `gh_session` cookie"))),
        ApiErrors
    ),
    security(())
)]
async fn login(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response> {
    limits::check(&app, origin.ip.as_deref())?;
    match flows::login(&app, &ctx.tenant, &ctx.db, &body.email, body.password, None, origin).await? {
        SignIn::Done { cookie, session } => {
            let csrf_token = Some(session.csrf_token.clone());
            let body = Json(LoginAnswer { status: LoginStatus::SignedIn, session: Some(session), csrf_token });
            Ok(with_cookie(body.into_response(), &session_cookie(&app, &ctx.tenant, Some(&cookie))))
        }
        SignIn::SecondFactor { cookie, session } => {
            let status =
                if session.stage == Stage::Mfa { LoginStatus::MfaRequired } else { LoginStatus::MfaEnrolmentRequired };
            let set = sessions::cookie_header(ctx.tenant.slug.as_str(), Some(&cookie), None, app.config.is_https());
            let body = Json(LoginAnswer { status, session: None, csrf_token: None });
            Ok(with_cookie(body.into_response(), &set))
        }
        SignIn::Unverified => Err(Error::EmailNotVerified),
    }
}

#[derive(Deserialize, ToSchema)]
struct MfaCodeBody {
    /// A TOTP code or a recovery code.
    code: String,
}

/// The second sign-in step done.
#[derive(Serialize, ToSchema)]
struct MfaAnswer {
    status: MfaStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum MfaStatus {
    SignedIn,
}

/// Finishes a sign-in with a TOTP or recovery code.
///
/// Needs the half-finished session's cookie from `login`; replaces it with the signed-in session's.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/login/mfa",
    tag = "account",
    operation_id = "account_login_mfa",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = MfaCodeBody,
    responses(
        (status = 200, description = "Signed in", body = MfaAnswer,
            headers(("Set-Cookie" = String, description = "The new `gh_session` cookie"))),
        ApiErrors
    ),
    security(("user_session" = []))
)]
async fn login_mfa(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<MfaCodeBody>,
) -> Result<Response> {
    limits::check(&app, origin.ip.as_deref())?;
    let session = flows::current_session(&ctx.tenant, &ctx.db, &headers)
        .await?
        .filter(|s| s.stage == Stage::Mfa)
        .ok_or(Error::Unauthorized)?;
    let cookie = flows::complete_mfa(&app, &ctx.tenant, &ctx.db, &session, body.code, origin).await?;
    Ok(with_cookie(
        Json(MfaAnswer { status: MfaStatus::SignedIn }).into_response(),
        &session_cookie(&app, &ctx.tenant, Some(&cookie)),
    ))
}

/// Signs out: ends the current session and clears the cookie.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/logout",
    tag = "account",
    operation_id = "account_logout",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses(
        (status = 204, description = "Signed out",
            headers(("Set-Cookie" = String, description = "Clears the `gh_session` cookie"))),
        ApiErrors
    ),
    security(("user_session" = []))
)]
async fn logout(State(app): State<AppState>, user: ApiUser, RequestOrigin(origin): RequestOrigin) -> Result<Response> {
    flows::logout(&user.db, &user.session, origin).await?;
    Ok(with_cookie(StatusCode::NO_CONTENT.into_response(), &session_cookie(&app, &user.tenant, None)))
}

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/me",
    tag = "account",
    operation_id = "account_me",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The signed-in user", body = UserProfile), ApiErrors),
    security(("user_session" = []), ("access_token" = []))
)]
async fn me(user: ApiUser) -> Result<Json<UserProfile>> {
    let mut body = flows::profile(&user.db, &user.session.user_id).await?;
    if user.via_cookie {
        body.csrf_token = Some(user.session.csrf_token);
    }
    Ok(Json(body))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateMe {
    /// An empty string clears the name.
    name: Option<String>,
    /// Custom fields to change; keys not given keep their value, a `null` value removes one.
    #[schema(value_type = Option<Object>)]
    fields: Option<Map<String, Value>>,
}

/// Changes the signed-in user's name and custom fields.
#[utoipa::path(
    patch,
    path = "/t/{slug}/api/v1/me",
    tag = "account",
    operation_id = "account_update_me",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = UpdateMe,
    responses((status = 200, description = "The user as updated", body = UserProfile), ApiErrors),
    security(("user_session" = []), ("access_token" = []))
)]
async fn update_me(
    user: ApiUser,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<UpdateMe>,
) -> Result<Json<UserProfile>> {
    flows::update_profile(&user.tenant, &user.db, &user.session, body.name, body.fields, origin).await?;
    Ok(Json(flows::profile(&user.db, &user.session.user_id).await?))
}

#[derive(Deserialize, ToSchema)]
struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the signed-in user's password.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/me/password",
    tag = "account",
    operation_id = "account_change_password",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = ChangePasswordBody,
    responses((status = 204, description = "Changed"), ApiErrors),
    security(("user_session" = []), ("access_token" = []))
)]
async fn change_password(
    State(app): State<AppState>,
    user: ApiUser,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<ChangePasswordBody>,
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

/// One of the signed-in user's sessions.
#[derive(Serialize, ToSchema)]
struct OwnSession {
    #[serde(flatten)]
    session: Session,
    /// Whether the request came with this session.
    current: bool,
}

/// The signed-in user's sessions.
#[derive(Serialize, ToSchema)]
struct OwnSessionList {
    items: Vec<OwnSession>,
}

/// Lists the signed-in user's open sessions.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/me/sessions",
    tag = "account",
    operation_id = "account_my_sessions",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The user's sessions", body = OwnSessionList), ApiErrors),
    security(("user_session" = []), ("access_token" = []))
)]
async fn my_sessions(user: ApiUser) -> Result<Json<OwnSessionList>> {
    let list = flows::own_sessions(&user.db, &user.session.user_id).await?;
    let items =
        list.into_iter().map(|session| OwnSession { current: session.id == user.session.id, session }).collect();
    Ok(Json(OwnSessionList { items }))
}

/// Ends one of the signed-in user's sessions.
#[utoipa::path(
    delete,
    path = "/t/{slug}/api/v1/me/sessions/{id}",
    tag = "account",
    operation_id = "account_revoke_session",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The session's id")
    ),
    responses((status = 204, description = "The session is ended"), ApiErrors),
    security(("user_session" = []), ("access_token" = []))
)]
async fn revoke_session(
    user: ApiUser,
    RequestOrigin(origin): RequestOrigin,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    flows::revoke_own_session(&user.db, &user.session.user_id, id, origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
struct ForgotPasswordBody {
    email: String,
}

/// A password-reset request taken (whether or not the email has an account).
#[derive(Serialize, ToSchema)]
struct ForgotAnswer {
    status: ForgotStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ForgotStatus {
    Accepted,
}

/// Mails a password-reset link to the account with this email, if there is one.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/password/forgot",
    tag = "account",
    operation_id = "account_forgot",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = ForgotPasswordBody,
    responses((status = 202, description = "Accepted, the same for an unknown email", body = ForgotAnswer), ApiErrors),
    security(())
)]
async fn forgot(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<ForgotPasswordBody>,
) -> Result<(StatusCode, Json<ForgotAnswer>)> {
    limits::check(&app, origin.ip.as_deref())?;
    flows::forgot_password(&app, &ctx.tenant, &ctx.db, &body.email, origin);
    Ok((StatusCode::ACCEPTED, Json(ForgotAnswer { status: ForgotStatus::Accepted })))
}

#[derive(Deserialize, ToSchema)]
struct ResetPasswordBody {
    /// The token from the reset link.
    token: String,
    new_password: String,
}

/// Sets a new password with the token of a reset link.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/password/reset",
    tag = "account",
    operation_id = "account_reset",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = ResetPasswordBody,
    responses((status = 204, description = "The password is set"), ApiErrors),
    security(())
)]
async fn reset(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<ResetPasswordBody>,
) -> Result<StatusCode> {
    limits::check(&app, origin.ip.as_deref())?;
    flows::reset_password(&app, &ctx.tenant, &ctx.db, body.token, body.new_password, origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
struct VerifyEmailBody {
    /// The token from the verification link.
    token: String,
}

/// Verifies the user's email with the token of a verification link.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/email/verify",
    tag = "account",
    operation_id = "account_verify_email",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = VerifyEmailBody,
    responses((status = 204, description = "Verified"), ApiErrors),
    security(())
)]
async fn verify_email(
    State(app): State<AppState>,
    ctx: TenantCtx,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<VerifyEmailBody>,
) -> Result<StatusCode> {
    flows::verify_email(&app, &ctx.tenant, &ctx.db, body.token, origin).await?;
    Ok(StatusCode::NO_CONTENT)
}
