//! Password recovery on the hosted pages: the forgotten-password form (it answers alike whether or not the
//! email has an account) and the reset form reached from the mailed link, which also sets the first password of
//! an invited user. Tokens and the rules live in `flows::forgot_password` and `flows::reset_password`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{Frame, Visit, on_form};
use crate::app::AppState;
use crate::db;
use crate::error::Error;
use crate::http::extract::{RequestOrigin, TenantCtx};
use crate::http::page::{PageResult, UiForm};
use crate::identity::flows;
use crate::identity::limits;
use crate::identity::tokens::{self, Purpose};

#[derive(Template)]
#[template(path = "hosted/forgot.html")]
struct ForgotPage {
    frame: Frame,
    sent: bool,
    email: String,
}

pub(super) async fn forgot_form(State(app): State<AppState>, ctx: TenantCtx, headers: HeaderMap) -> PageResult {
    let visit = Visit::new(&app, ctx, &headers).await?;
    visit.page(StatusCode::OK, ForgotPage { frame: visit.frame(), sent: false, email: String::new() })
}

#[derive(Deserialize)]
pub(super) struct ForgotForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

pub(super) async fn forgot(
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

pub(super) async fn reset_form(
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
pub(super) struct ResetForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub(super) async fn reset(
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
