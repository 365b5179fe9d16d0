//! Admin UI pages of a tenant's access settings: roles, tenant admins and sign-in settings (the users are
//! `user_pages`, the audit log is `audit_pages`). The pages call the same services as the JSON admin API
//! (`identity::admin`, `tenants`).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::ui::FieldErrors;
use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::admin::Scope;
use crate::app::AppState;
use crate::config::Secret;
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::extract::RequestOrigin;
use crate::http::page::{PageError, PageResult, render};
use crate::identity::admin;
use crate::identity::audit::Origin;
use crate::identity::roles;
use crate::tenants::{self, TenantSlug};

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}";
    Router::new()
        .route(&format!("{base}/roles"), get(roles_page).post(role_create))
        .route(&format!("{base}/roles/{{name}}/delete"), post(role_delete))
        .route(&format!("{base}/admins"), get(admins_page).post(admin_create))
        .route(&format!("{base}/admins/{{id}}/delete"), post(admin_delete))
        .route(&format!("{base}/sign-in"), get(signin_page).post(signin_save))
}

fn origin_of(session: &UiSession, from: RequestOrigin) -> Origin {
    admin::origin(&session.actor, from)
}

async fn open(app: &AppState, session: &UiSession, slug: &str) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "role_created" => "Role created.",
        "role_deleted" => "Role deleted.",
        "admin_created" => "Tenant admin created.",
        "admin_deleted" => "Tenant admin removed.",
        "saved" => "Settings saved.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// Form errors stay on the page; anything else is an error page.
fn form_error(err: Error) -> Result<String, PageError> {
    match err {
        Error::Validation(_) | Error::Conflict(_) | Error::BadRequest(_) => Ok(err.to_string()),
        other => Err(PageError(other)),
    }
}

fn redirect(slug: &str, path: &str) -> Response {
    Redirect::to(&format!("/admin/tenants/{slug}/{path}")).into_response()
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

// ---- roles ----

#[derive(Template)]
#[template(path = "admin/roles.html")]
struct RolesPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    rows: Vec<roles::Role>,
    form_name: String,
    form_description: String,
    form_permissions: String,
}

async fn render_roles(tenant: &Tenant, db: &TenantDb, chrome: Chrome, form: (String, String, String)) -> PageResult {
    let rows = db::with_conn(&db.pool, |conn| roles::list(conn)).await?;
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = RolesPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "roles",
        rows,
        form_name: form.0,
        form_description: form.1,
        form_permissions: form.2,
    };
    Ok((code, render(page)?).into_response())
}

async fn roles_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render_roles(&tenant, &db, chrome, Default::default()).await
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: String,
}

async fn role_create(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let origin = origin_of(&session, from);
    let permissions: Vec<String> =
        form.permissions.split([' ', ',', '\n']).map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    let name = form.name.trim().to_owned();
    let description = form.description.trim().to_owned();
    match admin::create_role(&db, name, description, permissions, origin).await {
        Ok(_) => Ok(redirect(&slug, "roles?done=role_created")),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_roles(&tenant, &db, chrome, (form.name, form.description, form.permissions)).await
        }
    }
}

async fn role_delete(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, name)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    admin::delete_role(&db, name, origin_of(&session, from)).await?;
    Ok(redirect(&slug, "roles?done=role_deleted"))
}

// ---- tenant admins ----

struct AdminRow {
    id: String,
    email: String,
    created: String,
}

#[derive(Template)]
#[template(path = "admin/admins.html")]
struct AdminsPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    is_operator: bool,
    rows: Vec<AdminRow>,
    form_email: String,
}

async fn render_admins(
    app: &AppState,
    session: &UiSession,
    tenant: &Tenant,
    chrome: Chrome,
    email: String,
) -> PageResult {
    let admins = admin::tenant_admins(app, &tenant.slug).await?;
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = AdminsPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "admins",
        is_operator: session.actor.scope == Scope::Operator,
        rows: admins
            .into_iter()
            .map(|a| AdminRow { id: a.id, email: a.email, created: crate::display_time(a.created_at) })
            .collect(),
        form_email: email,
    };
    Ok((code, render(page)?).into_response())
}

async fn admins_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render_admins(&app, &session, &tenant, chrome, String::new()).await
}

#[derive(Deserialize)]
struct AdminForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn admin_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<AdminForm>,
) -> PageResult {
    session.actor.require_operator()?;
    let (tenant, _) = open(&app, &session, &slug).await?;
    let password = Secret::new(form.password);
    match admin::create_tenant_admin(&app, &tenant.slug, &form.email, password, &session.actor.label).await {
        Ok(_) => Ok(redirect(&slug, "admins?done=admin_created")),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_admins(&app, &session, &tenant, chrome, form.email).await
        }
    }
}

async fn admin_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    session.actor.require_operator()?;
    admin::delete_tenant_admin(&app, &TenantSlug::parse(&slug)?, id).await?;
    Ok(redirect(&slug, "admins?done=admin_deleted"))
}

// ---- sign-in settings ----

#[derive(Template)]
#[template(path = "admin/signin_settings.html")]
struct SignInPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    /// The saved settings, or what was typed when saving failed.
    f: SignInForm,
    errors: FieldErrors,
}

impl SignInPage {
    /// The number fields: (id, label, attributes, value).
    fn numbers(&self) -> [(&'static str, &'static str, &'static str, &str); 6] {
        let f = &self.f;
        [
            ("password_min_length", "Minimum password length", "min=\"8\" max=\"256\"", &f.password_min_length),
            ("session_idle_minutes", "Session idle timeout (minutes)", "min=\"5\"", &f.session_idle_minutes),
            ("session_max_hours", "Session lifetime (hours)", "min=\"1\"", &f.session_max_hours),
            (
                "lockout_max_failures",
                "Lock an account after this many failures in a row",
                "min=\"1\" max=\"100\"",
                &f.lockout_max_failures,
            ),
            (
                "lockout_backoff_seconds",
                "First lock (seconds, doubles per further failure)",
                "min=\"1\"",
                &f.lockout_backoff_seconds,
            ),
            ("lockout_max_backoff_seconds", "Longest lock (seconds)", "min=\"1\"", &f.lockout_max_backoff_seconds),
        ]
    }
}

fn render_signin(tenant: &Tenant, chrome: Chrome, typed: Option<(SignInForm, FieldErrors)>) -> PageResult {
    let code = if typed.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let (f, errors) = typed.unwrap_or_else(|| {
        let s = &tenant.settings;
        let form = SignInForm {
            signup_enabled: s.signup_enabled.then(|| "true".to_owned()),
            require_email_verification: s.require_email_verification.then(|| "true".to_owned()),
            mfa: match s.mfa {
                crate::identity::settings::MfaPolicy::Off => "off",
                crate::identity::settings::MfaPolicy::Optional => "optional",
                crate::identity::settings::MfaPolicy::Required => "required",
            }
            .to_owned(),
            password_min_length: s.password_min_length.to_string(),
            session_idle_minutes: s.session_idle_minutes.to_string(),
            session_max_hours: s.session_max_hours.to_string(),
            lockout_max_failures: s.lockout.max_failures.to_string(),
            lockout_backoff_seconds: s.lockout.backoff_seconds.to_string(),
            lockout_max_backoff_seconds: s.lockout.max_backoff_seconds.to_string(),
            custom_fields: serde_json::to_string_pretty(&s.custom_fields).unwrap_or_default(),
        };
        (form, FieldErrors::new())
    });
    let page = SignInPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "sign-in",
        f,
        errors,
    };
    Ok((code, render(page)?).into_response())
}

async fn signin_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render_signin(&tenant, chrome, None)
}

#[derive(Deserialize, Default, Clone)]
struct SignInForm {
    signup_enabled: Option<String>,
    require_email_verification: Option<String>,
    #[serde(default)]
    mfa: String,
    #[serde(default)]
    password_min_length: String,
    #[serde(default)]
    session_idle_minutes: String,
    #[serde(default)]
    session_max_hours: String,
    #[serde(default)]
    lockout_max_failures: String,
    #[serde(default)]
    lockout_backoff_seconds: String,
    #[serde(default)]
    lockout_max_backoff_seconds: String,
    #[serde(default)]
    custom_fields: String,
}

/// A whole number from the form, or an error filed under its field (`None` then).
fn number(errors: &mut FieldErrors, field: &str, what: &str, raw: &str) -> Option<u32> {
    let parsed = raw.trim().parse().ok();
    if parsed.is_none() {
        errors.add(field, format!("{what} must be a whole number"));
    }
    parsed
}

/// Where a settings error from `TenantSettings::validate` belongs on the sign-in settings form.
const SIGNIN_FIELDS: &[(&str, &str)] = &[
    ("settings.password_min_length", "password_min_length"),
    ("settings.session_idle_minutes", "session_idle_minutes"),
    ("settings.session_max_hours", "session_max_hours"),
    ("settings.lockout.max_failures", "lockout_max_failures"),
    ("settings.lockout.backoff_seconds", "lockout_backoff_seconds"),
    ("settings.lockout.max_backoff_seconds", "lockout_max_backoff_seconds"),
    ("settings.custom_fields", "custom_fields"),
    ("settings: ", "custom_fields"),
    ("custom fields", "custom_fields"),
];

async fn signin_save(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<SignInForm>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    let mut errors = FieldErrors::new();
    let custom_fields: Option<serde_json::Value> = match form.custom_fields.trim() {
        "" => Some(json!([])),
        raw => match serde_json::from_str(raw) {
            Ok(value) => Some(value),
            Err(e) => {
                errors.add("custom_fields", format!("the custom fields are not JSON: {e}"));
                None
            }
        },
    };
    let min_length =
        number(&mut errors, "password_min_length", "the minimum password length", &form.password_min_length);
    let idle = number(&mut errors, "session_idle_minutes", "the idle timeout", &form.session_idle_minutes);
    let max_hours = number(&mut errors, "session_max_hours", "the session lifetime", &form.session_max_hours);
    let failures =
        number(&mut errors, "lockout_max_failures", "the failures before a lock", &form.lockout_max_failures);
    let backoff = number(&mut errors, "lockout_backoff_seconds", "the first lock", &form.lockout_backoff_seconds);
    let max_backoff =
        number(&mut errors, "lockout_max_backoff_seconds", "the longest lock", &form.lockout_max_backoff_seconds);
    if errors.is_empty() {
        let patch = json!({
            "signup_enabled": form.signup_enabled.is_some(),
            "require_email_verification": form.require_email_verification.is_some(),
            "mfa": form.mfa,
            "password_min_length": min_length,
            "session_idle_minutes": idle,
            "session_max_hours": max_hours,
            "lockout": { "max_failures": failures, "backoff_seconds": backoff, "max_backoff_seconds": max_backoff },
            "custom_fields": custom_fields,
        });
        match tenants::update(&app, &tenant.slug, None, Some(&patch)).await {
            Ok(_) => return Ok(redirect(&slug, "sign-in?done=saved")),
            Err(err) => errors.absorb(err, SIGNIN_FIELDS)?,
        }
    }
    render_signin(&tenant, session.chrome("tenants"), Some((form, errors)))
}
