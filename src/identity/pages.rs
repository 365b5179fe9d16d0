//! The hosted pages of a tenant under `/t/{slug}/`: register, login, logout, forgot, reset, verify, mfa (code
//! entry and TOTP enrolment) and account (profile, password, TOTP, sessions), branded per tenant
//! (`/t/{slug}/theme.css` carries the colours).
//!
//! CSRF: every form carries `csrf_token`. A signed-in visitor's token is the session's; before sign-in it is the
//! double-submit cookie `gh_csrf` (`Path=/t/{slug}/`, `SameSite=Strict`). A POST is accepted when its token
//! matches either. Errors are shown on the page with the input kept (never a password).

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::crypto;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::cookies;
use crate::http::extract::{RequestOrigin, TenantCtx};
use crate::identity::flows::{self, Registered, SignIn};
use crate::identity::sessions::{self, Session, Stage};
use crate::identity::settings::{FieldType, MfaPolicy};
use crate::identity::tokens::{self, Purpose};
use crate::identity::{api, limits, mfa, users};
use crate::web::{PageError, PageResult, UiForm};

const CSRF_COOKIE: &str = "gh_csrf";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/t/{slug}/theme.css", get(theme))
        .route("/t/{slug}/register", get(register_form).post(register))
        .route("/t/{slug}/login", get(login_form).post(login))
        .route("/t/{slug}/logout", post(logout))
        .route("/t/{slug}/forgot", get(forgot_form).post(forgot))
        .route("/t/{slug}/reset", get(reset_form).post(reset))
        .route("/t/{slug}/verify", get(verify))
        .route("/t/{slug}/mfa", get(mfa_form).post(mfa_submit))
        .route("/t/{slug}/account", get(account))
        .route("/t/{slug}/account/profile", post(account_profile))
        .route("/t/{slug}/account/password", post(account_password))
        .route("/t/{slug}/account/sessions/{id}/revoke", post(account_revoke))
        .route("/t/{slug}/account/apps/{client_id}/revoke", post(account_revoke_app))
        .route("/t/{slug}/account/totp/start", post(totp_start))
        .route("/t/{slug}/account/totp", get(totp_form).post(totp_confirm))
        .route("/t/{slug}/account/totp/disable", post(totp_disable))
}

/// What every hosted page shows around its content.
pub struct Frame {
    pub slug: String,
    pub name: String,
    pub logo: Option<String>,
    pub lang: String,
    pub csrf_token: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// One request to a hosted page: the tenant, its database, the visitor's session and CSRF values.
pub(crate) struct Visit {
    pub(crate) tenant: std::sync::Arc<Tenant>,
    pub(crate) db: TenantDb,
    pub(crate) session: Option<Session>,
    cookie_csrf: Option<String>,
    /// Set when the visitor had no CSRF cookie yet: sent with the response.
    new_csrf_cookie: Option<String>,
    pub(crate) secure: bool,
}

impl Visit {
    pub(crate) async fn new(app: &App, ctx: TenantCtx, headers: &HeaderMap) -> Result<Visit, PageError> {
        let session = flows::current_session(&ctx.tenant, &ctx.db, headers).await?;
        let secure = app.config.is_https();
        let (cookie_csrf, new_csrf_cookie) = match cookies::get(headers, CSRF_COOKIE).filter(|v| v.len() >= 32) {
            Some(v) => (Some(v), None),
            None => {
                let value = crypto::random_token("");
                let path = format!("/t/{}/", ctx.tenant.slug);
                let set = cookies::set(CSRF_COOKIE, &value, &path, "Strict", secure, None);
                (Some(value), Some(set))
            }
        };
        Ok(Visit { tenant: ctx.tenant, db: ctx.db, session, cookie_csrf, new_csrf_cookie, secure })
    }

    pub(crate) fn slug(&self) -> &str {
        self.tenant.slug.as_str()
    }

    pub(crate) fn active(&self) -> Option<&Session> {
        self.session.as_ref().filter(|s| s.stage == Stage::Active)
    }

    pub(crate) fn frame(&self) -> Frame {
        let s = &self.tenant.settings;
        let csrf_token = match &self.session {
            Some(session) => session.csrf_token.clone(),
            None => self.cookie_csrf.clone().unwrap_or_default(),
        };
        Frame {
            slug: self.slug().to_owned(),
            name: s.display_name.clone().unwrap_or_else(|| self.tenant.name.clone()),
            logo: s.branding.logo_url.clone(),
            lang: s.locale.clone(),
            csrf_token,
            notice: None,
            error: None,
        }
    }

    /// A form's token must match the session's or the CSRF cookie's (only one set by this response is unknown
    /// to the browser, so it cannot match).
    pub(crate) fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        let by_session = self.session.as_ref().is_some_and(|s| crypto::constant_time_eq(submitted, &s.csrf_token));
        let by_cookie = self.new_csrf_cookie.is_none()
            && self.cookie_csrf.as_deref().is_some_and(|c| crypto::constant_time_eq(submitted, c));
        if !submitted.is_empty() && (by_session || by_cookie) {
            Ok(())
        } else {
            Err(PageError(Error::Forbidden("this form has expired or did not come from this site; reload and retry")))
        }
    }

    pub(crate) fn session_cookie(&self, value: Option<&str>) -> String {
        sessions::active_cookie(&self.tenant, value, self.secure)
    }

    /// The response with the CSRF cookie (when new) and `extra` cookies attached.
    pub(crate) fn finish(&self, mut response: Response, extra: &[String]) -> Response {
        for cookie in self.new_csrf_cookie.iter().chain(extra) {
            if let Ok(value) = cookie.parse() {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response.headers_mut().insert(CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
        response
    }

    pub(crate) fn page(&self, status: StatusCode, page: impl Template) -> PageResult {
        let html = page.render()?;
        Ok(self.finish((status, axum::response::Html(html)).into_response(), &[]))
    }

    pub(crate) fn message(
        &self,
        status: StatusCode,
        heading: &str,
        text: &str,
        link: Option<(String, String)>,
    ) -> PageResult {
        self.page(status, MessagePage { frame: self.frame(), heading: heading.to_owned(), text: text.to_owned(), link })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("/t/{}/{path}", self.slug())
    }
}

/// `return_to` when it is a path inside this tenant (`/t/{slug}/…`), else the account page. Refuses anything a
/// browser could resolve elsewhere: other origins, `//`, backslashes, dot segments (also percent-encoded).
pub fn safe_return_to(slug: &str, raw: Option<&str>) -> String {
    let fallback = format!("/t/{slug}/account");
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return fallback };
    let lower = raw.to_ascii_lowercase();
    let ok = raw.starts_with(&format!("/t/{slug}/"))
        && !raw.contains("//")
        && !raw.contains('\\')
        && !raw.chars().any(|c| c.is_control() || c.is_whitespace())
        && !lower.contains("%2e")
        && !lower.contains("%2f")
        && !lower.contains("%5c")
        && !raw.split(['/', '?', '#']).any(|seg| seg == "." || seg == "..")
        && raw.len() <= 2048;
    if ok { raw.to_owned() } else { fallback }
}

pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn login_redirect(visit: &Visit, return_to: &str) -> Response {
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    visit.finish(see_other(&visit.url(&format!("login?return_to={encoded}"))), &[])
}

/// A flow error to show on the form (validation and the like), or one to show as an error page.
fn on_form(err: Error) -> Result<(StatusCode, String), PageError> {
    match err {
        Error::Validation(_)
        | Error::BadRequest(_)
        | Error::Conflict(_)
        | Error::InvalidCredentials
        | Error::InvalidToken
        | Error::EmailNotVerified
        | Error::RateLimited { .. }
        | Error::PluginDenied(_)
        | Error::Forbidden(_) => {
            let (status, _) = err.status_and_code();
            Ok((status, err.to_string()))
        }
        other => Err(PageError(other)),
    }
}

#[derive(Template)]
#[template(path = "hosted/message.html")]
struct MessagePage {
    frame: Frame,
    heading: String,
    text: String,
    link: Option<(String, String)>,
}

// ---- theme ----

async fn theme(ctx: TenantCtx) -> Response {
    let b = &ctx.tenant.settings.branding;
    let mut css = String::from(":root {");
    if let Some(c) = &b.primary_color {
        css.push_str(&format!(" --primary: {c};"));
    }
    if let Some(c) = &b.accent_color {
        css.push_str(&format!(" --accent: {c};"));
    }
    css.push_str(" }\n");
    ([(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, "public, max-age=300")], css).into_response()
}

// ---- sign-up ----

/// A custom field as a form shows it.
pub struct FieldInput {
    pub name: String,
    pub label: String,
    pub kind: &'static str,
    pub required: bool,
    pub value: String,
}

fn field_inputs(tenant: &Tenant, values: &Map<String, Value>) -> Vec<FieldInput> {
    tenant
        .settings
        .custom_fields
        .iter()
        .map(|f| FieldInput {
            name: f.name.clone(),
            label: f.name.replace('_', " "),
            kind: match f.kind {
                FieldType::String => "string",
                FieldType::Number => "number",
                FieldType::Bool => "bool",
            },
            required: f.required,
            value: match values.get(&f.name) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
        })
        .collect()
}

/// The custom fields posted as `field_{name}`, typed per the tenant's definitions. Empty optional values are
/// left out; an unchecked box is `false`.
fn posted_fields(tenant: &Tenant, form: &HashMap<String, String>) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    for def in &tenant.settings.custom_fields {
        let raw = form.get(&format!("field_{}", def.name)).map(|v| v.trim()).unwrap_or("");
        let value = match def.kind {
            FieldType::Bool => Value::Bool(matches!(raw, "true" | "on" | "1")),
            _ if raw.is_empty() => continue,
            FieldType::String => Value::String(raw.to_owned()),
            FieldType::Number => {
                let n: f64 = raw.parse().map_err(|_| Error::validation(format!("{} must be a number", def.name)))?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| Error::validation(format!("{} must be a number", def.name)))?
            }
        };
        out.insert(def.name.clone(), value);
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "hosted/register.html")]
struct RegisterPage {
    frame: Frame,
    email: String,
    name: String,
    fields: Vec<FieldInput>,
    min_length: u32,
}

async fn register_form(State(app): State<AppState>, ctx: TenantCtx, headers: HeaderMap) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    if !visit.tenant.settings.signup_enabled {
        return visit.message(
            StatusCode::FORBIDDEN,
            "Sign-up is closed",
            "This site does not take new accounts on its own; ask for an invitation.",
            Some((visit.url("login"), "Sign in".into())),
        );
    }
    let page = RegisterPage {
        frame: visit.frame(),
        email: String::new(),
        name: String::new(),
        fields: field_inputs(&visit.tenant, &Map::new()),
        min_length: visit.tenant.settings.password_min_length,
    };
    visit.page(StatusCode::OK, page)
}

async fn register(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<HashMap<String, String>>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(form.get("csrf_token").map_or("", String::as_str))?;
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let fields = posted_fields(&visit.tenant, &form);
    let kept = fields.as_ref().cloned().unwrap_or_default();
    let result = match (limits::check(&app, origin.ip.as_deref()), fields) {
        (Err(err), _) | (_, Err(err)) => Err(err),
        (Ok(()), Ok(fields)) => {
            let input = flows::Registration {
                email: get("email"),
                password: get("password"),
                name: Some(get("name")),
                fields: Value::Object(fields),
            };
            flows::register(&app, &visit.tenant, &visit.db, input, origin).await
        }
    };
    match result {
        Ok(Registered::VerificationRequired) => visit.message(
            StatusCode::OK,
            "Check your email",
            "We have sent a link to confirm your email address. Open it to finish creating your account.",
            None,
        ),
        Ok(Registered::Created) => visit.message(
            StatusCode::OK,
            "Account created",
            "Your account is ready. Sign in with your email address and password.",
            Some((visit.url("login"), "Sign in".into())),
        ),
        Err(err) => {
            let (status, message) = on_form(err)?;
            let mut frame = visit.frame();
            frame.error = Some(message);
            let page = RegisterPage {
                frame,
                email: get("email"),
                name: get("name"),
                fields: field_inputs(&visit.tenant, &kept),
                min_length: visit.tenant.settings.password_min_length,
            };
            visit.page(status, page)
        }
    }
}

async fn verify(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let token = q.get("token").cloned().unwrap_or_default();
    match flows::verify_email(&app, &visit.tenant, &visit.db, token, origin).await {
        Ok(()) => visit.message(
            StatusCode::OK,
            "Email confirmed",
            "Thank you: your email address is confirmed.",
            Some((visit.url("login"), "Sign in".into())),
        ),
        Err(Error::InvalidToken) => visit.message(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "It was used already or has expired. Sign in to get a new one.",
            Some((visit.url("login"), "Sign in".into())),
        ),
        Err(other) => Err(other.into()),
    }
}

// ---- sign-in ----

#[derive(Template)]
#[template(path = "hosted/login.html")]
struct LoginPage {
    frame: Frame,
    email: String,
    return_to: String,
    signup_enabled: bool,
}

#[derive(Deserialize)]
struct ReturnQuery {
    return_to: Option<String>,
    /// Pre-fills the email (OIDC `login_hint`).
    login_hint: Option<String>,
    /// `login`: show the form even to a signed-in visitor (OIDC `prompt=login`, `max_age`).
    prompt: Option<String>,
}

async fn login_form(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<ReturnQuery>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let return_to = safe_return_to(visit.slug(), q.return_to.as_deref());
    if visit.active().is_some() && q.prompt.as_deref() != Some("login") {
        return Ok(visit.finish(see_other(&return_to), &[]));
    }
    let page = LoginPage {
        frame: visit.frame(),
        email: q.login_hint.filter(|h| h.len() <= 254 && h.contains('@')).unwrap_or_default(),
        return_to,
        signup_enabled: visit.tenant.settings.signup_enabled,
    };
    visit.page(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    return_to: Option<String>,
}

async fn login(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<LoginForm>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(&form.csrf_token)?;
    let return_to = safe_return_to(visit.slug(), form.return_to.as_deref());
    let result = match limits::check(&app, origin.ip.as_deref()) {
        Err(err) => Err(err),
        Ok(()) => flows::login(&app, &visit.tenant, &visit.db, &form.email, form.password, None, origin).await,
    };
    let problem = match result {
        Ok(SignIn::Done { cookie, .. }) => {
            return Ok(visit.finish(see_other(&return_to), &[visit.session_cookie(Some(&cookie))]));
        }
        Ok(SignIn::SecondFactor { cookie, .. }) => {
            let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
            let pending = sessions::cookie_header(visit.slug(), Some(&cookie), None, visit.secure);
            return Ok(visit.finish(see_other(&visit.url(&format!("mfa?return_to={encoded}"))), &[pending]));
        }
        Ok(SignIn::Unverified) => (StatusCode::FORBIDDEN, Error::EmailNotVerified.to_string()),
        Err(Error::InvalidCredentials) => (StatusCode::UNAUTHORIZED, "Wrong email or password.".to_owned()),
        Err(err) => on_form(err)?,
    };
    let mut frame = visit.frame();
    frame.error = Some(problem.1);
    let page = LoginPage { frame, email: form.email, return_to, signup_enabled: visit.tenant.settings.signup_enabled };
    let mut response = visit.page(problem.0, page)?;
    if problem.0 == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("60"));
    }
    Ok(response)
}

async fn logout(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<crate::web::CsrfOnly>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(&form.csrf_token)?;
    if let Some(session) = &visit.session {
        flows::logout(&visit.db, session, origin).await?;
    }
    Ok(visit.finish(see_other(&visit.url("login")), &[visit.session_cookie(None)]))
}

// ---- second factor ----

#[derive(Template)]
#[template(path = "hosted/mfa.html")]
struct MfaPage {
    frame: Frame,
    return_to: String,
}

#[derive(Template)]
#[template(path = "hosted/enrol.html")]
struct EnrolPage {
    frame: Frame,
    action: String,
    qr_svg: String,
    secret: String,
    return_to: String,
    required: bool,
}

#[derive(Template)]
#[template(path = "hosted/recovery.html")]
struct RecoveryPage {
    frame: Frame,
    codes: Vec<String>,
    continue_url: String,
}

/// The enrolment page for the visitor's user, starting a set-up when none is pending.
async fn enrol_page(
    app: &App,
    visit: &Visit,
    session: &Session,
    action: String,
    return_to: String,
    error: Option<String>,
) -> PageResult {
    let (key, slug, user_id) = (app.master_key.clone(), visit.slug().to_owned(), session.user_id.clone());
    let issuer = visit.frame().name;
    let lookup = |key: crate::crypto::MasterKey, slug: String, user_id: String, issuer: String| {
        db::with_conn(&visit.db.pool, move |conn| {
            let email = users::get(conn, &user_id)?.email;
            mfa::pending(conn, &key, &slug, &user_id, &issuer, &email)
        })
    };
    let mut pending = lookup(key.clone(), slug.clone(), user_id.clone(), issuer.clone()).await?;
    if pending.is_none() {
        flows::start_totp(app, &visit.tenant, &visit.db, &user_id).await?;
        pending = lookup(key, slug, user_id, issuer).await?;
    }
    let enrolment = pending.ok_or_else(|| Error::internal("TOTP enrolment vanished"))?;
    let mut frame = visit.frame();
    frame.error = error;
    let status = if frame.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = EnrolPage {
        frame,
        action,
        qr_svg: enrolment.qr_svg,
        secret: enrolment.secret_base32,
        return_to,
        required: session.stage == Stage::Enrol,
    };
    visit.page(status, page)
}

async fn mfa_form(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<ReturnQuery>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let return_to = safe_return_to(visit.slug(), q.return_to.as_deref());
    let Some(session) = visit.session.clone() else { return Ok(login_redirect(&visit, &return_to)) };
    match session.stage {
        Stage::Active => Ok(visit.finish(see_other(&return_to), &[])),
        Stage::Mfa => visit.page(StatusCode::OK, MfaPage { frame: visit.frame(), return_to }),
        Stage::Enrol => enrol_page(&app, &visit, &session, visit.url("mfa"), return_to, None).await,
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    code: String,
    return_to: Option<String>,
}

async fn mfa_submit(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<CodeForm>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(&form.csrf_token)?;
    let return_to = safe_return_to(visit.slug(), form.return_to.as_deref());
    let Some(session) = visit.session.clone() else { return Ok(login_redirect(&visit, &return_to)) };
    match session.stage {
        Stage::Active => Ok(visit.finish(see_other(&return_to), &[])),
        Stage::Mfa => {
            let result = match limits::check(&app, origin.ip.as_deref()) {
                Err(err) => Err(err),
                Ok(()) => flows::complete_mfa(&app, &visit.tenant, &visit.db, &session, form.code, origin).await,
            };
            match result {
                Ok(cookie) => Ok(visit.finish(see_other(&return_to), &[visit.session_cookie(Some(&cookie))])),
                Err(err) => {
                    let (status, message) = on_form(err)?;
                    let mut frame = visit.frame();
                    frame.error = Some(if status == StatusCode::BAD_REQUEST {
                        "That code is not right, or was used already.".into()
                    } else {
                        message
                    });
                    visit.page(status, MfaPage { frame, return_to })
                }
            }
        }
        Stage::Enrol => match flows::confirm_totp(&app, &visit.tenant, &visit.db, &session, form.code, origin).await {
            Ok((codes, cookie)) => {
                let cookies: Vec<String> = cookie.iter().map(|c| visit.session_cookie(Some(c))).collect();
                let page = RecoveryPage { frame: visit.frame(), codes, continue_url: return_to };
                let html = page.render()?;
                Ok(visit.finish(axum::response::Html(html).into_response(), &cookies))
            }
            Err(err) => {
                let (_, message) = on_form(err)?;
                enrol_page(&app, &visit, &session, visit.url("mfa"), return_to, Some(message)).await
            }
        },
    }
}

// ---- account ----

struct SessionRow {
    id: String,
    created: String,
    last_seen: String,
    from: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "hosted/account.html")]
struct AccountPage {
    frame: Frame,
    email: String,
    email_verified: bool,
    name: String,
    fields: Vec<FieldInput>,
    min_length: u32,
    mfa_enabled: bool,
    mfa_required: bool,
    mfa_allowed: bool,
    recovery_left: u32,
    sessions: Vec<SessionRow>,
    apps: Vec<AppRow>,
}

/// An application the user let use their account (OAuth consent).
struct AppRow {
    client_id: String,
    name: String,
    scopes: String,
    granted: String,
}

async fn account_page(
    app: &App,
    visit: &Visit,
    session: &Session,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let user_id = session.user_id.clone();
    let (user, list, enrolled, left, consents) = db::with_conn(&visit.db.pool, move |conn| {
        Ok((
            users::get(conn, &user_id)?,
            sessions::list(conn, &user_id)?,
            mfa::is_enrolled(conn, &user_id)?,
            mfa::recovery_codes_left(conn, &user_id)?,
            crate::oidc::store::consents_of(conn, &user_id)?,
        ))
    })
    .await?;
    let mut apps = Vec::new();
    for (client_id, scopes, granted_at) in consents {
        let name = match app.oidc.client(app, &visit.tenant.slug, &client_id).await? {
            Some(client) => client.name.clone(),
            None => continue,
        };
        apps.push(AppRow { client_id, name, scopes, granted: crate::display_time(granted_at) });
    }
    let policy = visit.tenant.settings.mfa;
    let mut frame = visit.frame();
    frame.notice = notice;
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    frame.error = error;
    let page = AccountPage {
        frame,
        email: user.email.clone(),
        email_verified: user.email_verified,
        name: user.name.clone().unwrap_or_default(),
        fields: field_inputs(&visit.tenant, user.fields.as_object().unwrap_or(&Map::new())),
        min_length: visit.tenant.settings.password_min_length,
        mfa_enabled: enrolled,
        mfa_required: policy == MfaPolicy::Required,
        mfa_allowed: policy != MfaPolicy::Off,
        recovery_left: left,
        apps,
        sessions: list
            .into_iter()
            .map(|s| SessionRow {
                current: s.id == session.id,
                created: crate::display_time(s.created_at),
                last_seen: crate::display_time(s.last_seen_at),
                from: crate::client_label(s.ip.as_deref(), s.user_agent.as_deref()),
                id: s.id,
            })
            .collect(),
    };
    visit.page(status, page)
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

async fn account(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let Some(session) = visit.active().cloned() else { return Ok(login_redirect(&visit, &visit.url("account"))) };
    let notice = match q.done.as_deref() {
        Some("profile") => Some("Profile saved.".to_owned()),
        Some("password") => Some("Password changed. Your other sessions were signed out.".to_owned()),
        Some("revoked") => Some("Session signed out.".to_owned()),
        Some("app_revoked") => Some("The application no longer has access to your account.".to_owned()),
        Some("mfa_off") => Some("Two-factor authentication is off.".to_owned()),
        _ => None,
    };
    account_page(&app, &visit, &session, notice, None).await
}

/// The signed-in visitor of a POST to an account page, with the form's CSRF token checked.
async fn account_visit(
    app: &App,
    ctx: TenantCtx,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Result<(Visit, Session), Response>, PageError> {
    let visit = Visit::new(app, ctx, headers).await?;
    let Some(session) = visit.active().cloned() else {
        let to = visit.url("account");
        return Ok(Err(login_redirect(&visit, &to)));
    };
    visit.check_csrf(csrf)?;
    Ok(Ok((visit, session)))
}

async fn account_profile(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<HashMap<String, String>>,
) -> PageResult {
    let (visit, session) =
        match account_visit(&app, ctx, &headers, form.get("csrf_token").map_or("", String::as_str)).await? {
            Ok(v) => v,
            Err(redirect) => return Ok(redirect),
        };
    let result = match posted_fields(&visit.tenant, &form) {
        Err(err) => Err(err),
        Ok(fields) => {
            let fields = (!visit.tenant.settings.custom_fields.is_empty()).then_some(fields);
            api::update_profile(&visit.tenant, &visit.db, &session, form.get("name").cloned(), fields, origin).await
        }
    };
    match result {
        Ok(()) => Ok(visit.finish(see_other(&visit.url("account?done=profile")), &[])),
        Err(err) => account_page(&app, &visit, &session, None, Some(on_form(err)?.1)).await,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm: String,
}

async fn account_password(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<PasswordForm>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    if form.new_password != form.confirm {
        return account_page(&app, &visit, &session, None, Some("The two new passwords differ.".into())).await;
    }
    match flows::change_password(
        &app,
        &visit.tenant,
        &visit.db,
        &session,
        form.current_password,
        form.new_password,
        origin,
    )
    .await
    {
        Ok(()) => Ok(visit.finish(see_other(&visit.url("account?done=password")), &[])),
        Err(err) => account_page(&app, &visit, &session, None, Some(on_form(err)?.1)).await,
    }
}

async fn account_revoke(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(mut origin): RequestOrigin,
    Path((_, id)): Path<(String, String)>,
    UiForm(form): UiForm<crate::web::CsrfOnly>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    let user_id = session.user_id.clone();
    origin.actor = format!("user:{user_id}");
    visit
        .db
        .write(move |tx| {
            if sessions::revoke(tx, &user_id, &id)? {
                crate::identity::audit::record(
                    tx,
                    "logout",
                    Some(&user_id),
                    &origin,
                    serde_json::json!({ "session": id, "revoked": true }),
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(visit.finish(see_other(&visit.url("account?done=revoked")), &[]))
}

/// Withdraws the consent given to an application and revokes its tokens.
async fn account_revoke_app(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(mut origin): RequestOrigin,
    Path((_, client_id)): Path<(String, String)>,
    UiForm(form): UiForm<crate::web::CsrfOnly>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    let user_id = session.user_id.clone();
    origin.actor = format!("user:{user_id}");
    let now = crate::now_unix();
    visit
        .db
        .write(move |tx| {
            if crate::oidc::store::revoke_consent(tx, &user_id, &client_id, now)? {
                crate::identity::audit::record(
                    tx,
                    "consent_revoked",
                    Some(&user_id),
                    &origin,
                    serde_json::json!({ "client_id": client_id }),
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(visit.finish(see_other(&visit.url("account?done=app_revoked")), &[]))
}

async fn totp_start(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    UiForm(form): UiForm<crate::web::CsrfOnly>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    if visit.tenant.settings.mfa == MfaPolicy::Off {
        return Err(Error::Forbidden("this site does not offer two-factor authentication").into());
    }
    match flows::start_totp(&app, &visit.tenant, &visit.db, &session.user_id).await {
        Ok(()) => Ok(visit.finish(see_other(&visit.url("account/totp")), &[])),
        Err(err) => account_page(&app, &visit, &session, None, Some(on_form(err)?.1)).await,
    }
}

async fn totp_form(State(app): State<AppState>, ctx: TenantCtx, headers: HeaderMap) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let Some(session) = visit.active().cloned() else { return Ok(login_redirect(&visit, &visit.url("account"))) };
    let enrolled = {
        let id = session.user_id.clone();
        db::with_conn(&visit.db.pool, move |conn| mfa::is_enrolled(conn, &id)).await?
    };
    if enrolled {
        return Ok(visit.finish(see_other(&visit.url("account")), &[]));
    }
    enrol_page(&app, &visit, &session, visit.url("account/totp"), visit.url("account"), None).await
}

async fn totp_confirm(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<CodeForm>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    match flows::confirm_totp(&app, &visit.tenant, &visit.db, &session, form.code, origin).await {
        Ok((codes, _)) => {
            visit.page(StatusCode::OK, RecoveryPage { frame: visit.frame(), codes, continue_url: visit.url("account") })
        }
        Err(err) => {
            let message = on_form(err)?.1;
            enrol_page(&app, &visit, &session, visit.url("account/totp"), visit.url("account"), Some(message)).await
        }
    }
}

#[derive(Deserialize)]
struct DisableForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
}

async fn totp_disable(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<DisableForm>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    match flows::disable_totp(&app, &visit.tenant, &visit.db, &session, form.password, origin).await {
        Ok(()) => Ok(visit.finish(see_other(&visit.url("account?done=mfa_off")), &[])),
        Err(err) => account_page(&app, &visit, &session, None, Some(on_form(err)?.1)).await,
    }
}

// ---- forgotten password ----

#[derive(Template)]
#[template(path = "hosted/forgot.html")]
struct ForgotPage {
    frame: Frame,
    sent: bool,
    email: String,
}

async fn forgot_form(State(app): State<AppState>, ctx: TenantCtx, headers: HeaderMap) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.page(StatusCode::OK, ForgotPage { frame: visit.frame(), sent: false, email: String::new() })
}

#[derive(Deserialize)]
struct ForgotForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

async fn forgot(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<ForgotForm>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(&form.csrf_token)?;
    if let Err(err) = limits::check(&app, origin.ip.as_deref()) {
        let (status, message) = on_form(err)?;
        let mut frame = visit.frame();
        frame.error = Some(message);
        return visit.page(status, ForgotPage { frame, sent: false, email: form.email });
    }
    flows::forgot_password(&app, &visit.tenant, &visit.db, &form.email, origin);
    visit.page(StatusCode::OK, ForgotPage { frame: visit.frame(), sent: true, email: String::new() })
}

#[derive(Template)]
#[template(path = "hosted/reset.html")]
struct ResetPage {
    frame: Frame,
    token: String,
    invite: bool,
    min_length: u32,
}

fn dead_link(visit: &Visit) -> PageResult {
    visit.message(
        StatusCode::BAD_REQUEST,
        "This link does not work",
        "It was used already or has expired. Ask for a new one.",
        Some((visit.url("forgot"), "Send a new link".into())),
    )
}

async fn reset_form(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    let token = q.get("token").cloned().unwrap_or_default();
    let peek = token.clone();
    let found = db::with_conn(&visit.db.pool, move |conn| {
        tokens::peek(conn, &peek, &[Purpose::ResetPassword, Purpose::Invite])
    })
    .await?;
    let Some((_, purpose)) = found else { return dead_link(&visit) };
    let page = ResetPage {
        frame: visit.frame(),
        token,
        invite: purpose == Purpose::Invite,
        min_length: visit.tenant.settings.password_min_length,
    };
    visit.page(StatusCode::OK, page)
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn reset(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<ResetForm>,
) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.check_csrf(&form.csrf_token)?;
    let result = if form.password != form.confirm {
        Err(Error::validation("The two passwords differ."))
    } else {
        match limits::check(&app, origin.ip.as_deref()) {
            Err(err) => Err(err),
            Ok(()) => {
                flows::reset_password(&app, &visit.tenant, &visit.db, form.token.clone(), form.password, origin).await
            }
        }
    };
    match result {
        Ok(()) => visit.message(
            StatusCode::OK,
            "Password saved",
            "Your new password is set. Sign in with it.",
            Some((visit.url("login"), "Sign in".into())),
        ),
        Err(Error::InvalidToken) => dead_link(&visit),
        Err(err) => {
            let (status, message) = on_form(err)?;
            let mut frame = visit.frame();
            frame.error = Some(message);
            let page = ResetPage {
                frame,
                token: form.token,
                invite: false,
                min_length: visit.tenant.settings.password_min_length,
            };
            visit.page(status, page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_stays_in_the_tenant() {
        assert_eq!(safe_return_to("acme", Some("/t/acme/account")), "/t/acme/account");
        assert_eq!(safe_return_to("acme", Some("/t/acme/oauth2/authorize?x=1")), "/t/acme/oauth2/authorize?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/t/other/account",
            "/t/acme/../other/account",
            "/t/acme/%2e%2e/other",
            "/t/acme/\\evil",
            "/t/acme//evil.example",
            "/t/acmex/account",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_return_to("acme", Some(bad)), "/t/acme/account", "{bad}");
        }
    }
}
