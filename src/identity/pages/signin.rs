//! Sign-in on the hosted pages: the login form (with OIDC `login_hint` and `prompt=login`), the second factor
//! (`/mfa`: a TOTP or recovery code, or the TOTP enrolment a tenant requiring MFA forces first) and sign-out.
//! The enrolment and recovery-code pages are shared with the account's TOTP set-up (`account`). Lockout, the
//! login plugin hook and the session stages live in `flows::login` and `flows::complete_mfa`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{Frame, Visit, login_redirect, on_form, safe_return_to, see_other};
use crate::app::{App, AppState};
use crate::db;
use crate::error::Error;
use crate::http::extract::{RequestOrigin, TenantCtx};
use crate::http::page::{PageResult, UiForm};
use crate::identity::flows::{self, SignIn};
use crate::identity::sessions::{self, Session, Stage};
use crate::identity::{limits, mfa, users};

#[derive(Template)]
#[template(path = "hosted/login.html")]
struct LoginPage {
    frame: Frame,
    email: String,
    return_to: String,
    signup_enabled: bool,
}

#[derive(Deserialize)]
pub(super) struct ReturnQuery {
    return_to: Option<String>,
    /// Pre-fills the email (OIDC `login_hint`).
    login_hint: Option<String>,
    /// `login`: show the form even to a signed-in visitor (OIDC `prompt=login`, `max_age`).
    prompt: Option<String>,
}

pub(super) async fn login_form(
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
pub(super) struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    return_to: Option<String>,
}

pub(super) async fn login(
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

pub(super) async fn logout(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    UiForm(form): UiForm<crate::http::page::CsrfOnly>,
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
pub(super) struct RecoveryPage {
    pub(super) frame: Frame,
    pub(super) codes: Vec<String>,
    pub(super) continue_url: String,
}

/// The enrolment page for the visitor's user, starting a set-up when none is pending.
pub(super) async fn enrol_page(
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

pub(super) async fn mfa_form(
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
pub(super) struct CodeForm {
    #[serde(default)]
    pub(super) csrf_token: String,
    #[serde(default)]
    pub(super) code: String,
    return_to: Option<String>,
}

pub(super) async fn mfa_submit(
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
