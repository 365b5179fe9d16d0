//! Sign-up on the hosted pages: the registration form (closed when the tenant turns sign-up off; custom fields
//! typed per the tenant's definitions) and the email verification link. The rules (policy, taken emails answered
//! like new ones, the registration plugin hook) live in `flows::register` and `flows::verify_email`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::{FieldInput, Frame, Visit, field_inputs, on_form, posted_fields};
use crate::app::AppState;
use crate::error::Error;
use crate::http::extract::{RequestOrigin, TenantCtx};
use crate::http::page::{PageResult, UiForm};
use crate::identity::flows::{self, Registered};
use crate::identity::limits;

#[derive(Template)]
#[template(path = "hosted/register.html")]
struct RegisterPage {
    frame: Frame,
    email: String,
    name: String,
    fields: Vec<FieldInput>,
    min_length: u32,
}

pub(super) async fn register_form(State(app): State<AppState>, ctx: TenantCtx, headers: HeaderMap) -> PageResult {
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

pub(super) async fn register(
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

pub(super) async fn verify(
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
