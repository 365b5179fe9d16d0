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
use crate::identity::{limits, password};
use crate::web::ui::FieldErrors;

#[derive(Template)]
#[template(path = "hosted/register.html")]
struct RegisterPage {
    frame: Frame,
    email: String,
    name: String,
    fields: Vec<FieldInput>,
    min_length: u32,
    /// Every problem of a submitted form at once, each by its field.
    errors: FieldErrors,
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
        errors: FieldErrors::new(),
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
    let min_length = visit.tenant.settings.password_min_length;
    // Everything the form can tell on its own is checked first, so every problem shows at once.
    let mut errors = FieldErrors::new();
    let (email, name, password) = (get("email"), get("name"), get("password"));
    if !looks_like_email(&email) {
        errors.add("email", "enter an email address, like name@example.com");
    }
    if name.chars().count() > 200 {
        errors.add("name", "the name can have at most 200 characters");
    }
    if let Err(err) = password::check(&password, min_length) {
        errors.add("password", err.to_string());
    }
    let fields = posted_fields(&visit.tenant, &form, &mut errors);
    let mut status = StatusCode::BAD_REQUEST;
    if errors.is_empty() {
        let result = match limits::check(&app, origin.ip.as_deref()) {
            Err(err) => Err(err),
            Ok(()) => {
                let input =
                    flows::Registration { email, password, name: Some(name), fields: Value::Object(fields.clone()) };
                flows::register(&app, &visit.tenant, &visit.db, input, origin).await
            }
        };
        match result {
            Ok(Registered::VerificationRequired) => {
                return visit.message(
                    StatusCode::OK,
                    "Check your email",
                    "We have sent a link to confirm your email address. Open it to finish creating your account.",
                    None,
                );
            }
            Ok(Registered::Created) => {
                return visit.message(
                    StatusCode::OK,
                    "Account created",
                    "Your account is ready. Sign in with your email address and password.",
                    Some((visit.url("login"), "Sign in".into())),
                );
            }
            Err(err) => {
                let (code, message) = on_form(err)?;
                status = code;
                let field = match message.as_str() {
                    m if m.starts_with("the password") || m.starts_with("this password") => "password",
                    m if m.starts_with("fields.") => "form",
                    m if m.contains("email") => "email",
                    _ => "form",
                };
                errors.add(field, message);
            }
        }
    }
    let page = RegisterPage {
        frame: visit.frame(),
        email: get("email"),
        name: get("name"),
        fields: field_inputs(&visit.tenant, &fields_as_typed(&visit.tenant, &form)),
        min_length,
        errors,
    };
    visit.page(status, page)
}

/// A loose check that catches typos before the server's own (one `@` with text on both sides, no spaces).
fn looks_like_email(email: &str) -> bool {
    let email = email.trim();
    matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@'))
        && !email.contains(char::is_whitespace)
        && email.len() <= 254
}

/// The custom fields as typed (even when not valid), to put back in the form.
fn fields_as_typed(tenant: &crate::control::Tenant, form: &HashMap<String, String>) -> Map<String, Value> {
    tenant
        .settings
        .custom_fields
        .iter()
        .filter_map(|f| form.get(&format!("field_{}", f.name)).map(|v| (f.name.clone(), Value::String(v.clone()))))
        .collect()
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
