//! The account page of the hosted pages (`/t/{slug}/account`) and its forms: profile (name and custom fields),
//! password change, TOTP set-up and disable, the user's sessions and the applications they consented to (each
//! revocable). Every POST goes through `account_visit`: a signed-in visitor, else the login page, and the form's
//! CSRF token checked; the change itself is a function of `flows`, shared with the JSON API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Map;

use super::signin::{CodeForm, RecoveryPage, enrol_page};
use super::{FieldInput, Frame, Visit, field_inputs, login_redirect, on_form, posted_fields, see_other};
use crate::app::{App, AppState};
use crate::db;
use crate::error::Error;
use crate::http::extract::{RequestOrigin, TenantCtx};
use crate::http::page::{PageError, PageResult, UiForm};
use crate::identity::flows;
use crate::identity::sessions::{self, Session};
use crate::identity::settings::MfaPolicy;
use crate::identity::{mfa, users};
use crate::web::ui::FieldErrors;

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
                from: crate::client_label(
                    s.ip.as_deref(),
                    s.user_agent.as_deref().map(crate::browser_summary).as_deref(),
                ),
                id: s.id,
            })
            .collect(),
    };
    visit.page(status, page)
}

#[derive(Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

pub(super) async fn account(
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

pub(super) async fn account_profile(
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
    let mut errors = FieldErrors::new();
    let fields = posted_fields(&visit.tenant, &form, &mut errors);
    let result = match errors.is_empty() {
        false => Err(Error::validation(errors.all().iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" "))),
        true => {
            let fields = (!visit.tenant.settings.custom_fields.is_empty()).then_some(fields);
            flows::update_profile(&visit.tenant, &visit.db, &session, form.get("name").cloned(), fields, origin).await
        }
    };
    match result {
        Ok(()) => Ok(visit.finish(see_other(&visit.url("account?done=profile")), &[])),
        Err(err) => account_page(&app, &visit, &session, None, Some(on_form(err)?.1)).await,
    }
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn account_password(
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

pub(super) async fn account_revoke(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    Path((_, id)): Path<(String, String)>,
    UiForm(form): UiForm<crate::http::page::CsrfOnly>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    match flows::revoke_own_session(&visit.db, &session.user_id, id, origin).await {
        // An id that is no session of the user (signed out in another tab, expired, or never theirs) ends where a
        // revoked one does: the page's promise, "that session is gone", holds. Nothing is audited for it.
        Ok(()) | Err(Error::NotFound("session")) => {}
        Err(err) => return Err(err.into()),
    }
    Ok(visit.finish(see_other(&visit.url("account?done=revoked")), &[]))
}

/// Withdraws the consent given to an application and revokes its tokens.
#[derive(Deserialize)]
pub(super) struct ConfirmedForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn account_revoke_app(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    RequestOrigin(origin): RequestOrigin,
    Path((_, client_id)): Path<(String, String)>,
    UiForm(form): UiForm<ConfirmedForm>,
) -> PageResult {
    let (visit, session) = match account_visit(&app, ctx, &headers, &form.csrf_token).await? {
        Ok(v) => v,
        Err(redirect) => return Ok(redirect),
    };
    // Only the opened confirmation sends `confirm=yes`; anything else changes nothing.
    if form.confirm != "yes" {
        return Ok(visit.finish(see_other(&visit.url("account")), &[]));
    }
    flows::withdraw_consent(&visit.db, &session.user_id, client_id, origin).await?;
    Ok(visit.finish(see_other(&visit.url("account?done=app_revoked")), &[]))
}

pub(super) async fn totp_start(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    UiForm(form): UiForm<crate::http::page::CsrfOnly>,
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

pub(super) async fn totp_form(State(app): State<AppState>, ctx: TenantCtx, headers: HeaderMap) -> PageResult {
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

pub(super) async fn totp_confirm(
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
pub(super) struct DisableForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn totp_disable(
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
