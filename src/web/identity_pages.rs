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
    s: crate::tenants::TenantSettings,
    mfa: &'static str,
    custom_fields: String,
}

fn render_signin(tenant: &Tenant, chrome: Chrome) -> PageResult {
    let s = tenant.settings.clone();
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = SignInPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "sign-in",
        mfa: match s.mfa {
            crate::identity::settings::MfaPolicy::Off => "off",
            crate::identity::settings::MfaPolicy::Optional => "optional",
            crate::identity::settings::MfaPolicy::Required => "required",
        },
        custom_fields: serde_json::to_string_pretty(&s.custom_fields).unwrap_or_default(),
        s,
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
    render_signin(&tenant, chrome)
}

#[derive(Deserialize)]
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

fn number(field: &str, raw: &str) -> Result<u32, Error> {
    raw.trim().parse().map_err(|_| Error::validation(format!("{field} must be a whole number")))
}

async fn signin_save(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<SignInForm>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    let patch = (|| -> Result<serde_json::Value, Error> {
        let custom_fields: serde_json::Value = match form.custom_fields.trim() {
            "" => json!([]),
            raw => serde_json::from_str(raw).map_err(|e| Error::validation(format!("custom fields: {e}")))?,
        };
        Ok(json!({
            "signup_enabled": form.signup_enabled.is_some(),
            "require_email_verification": form.require_email_verification.is_some(),
            "mfa": form.mfa,
            "password_min_length": number("minimum password length", &form.password_min_length)?,
            "session_idle_minutes": number("session idle timeout", &form.session_idle_minutes)?,
            "session_max_hours": number("session lifetime", &form.session_max_hours)?,
            "lockout": {
                "max_failures": number("lockout failures", &form.lockout_max_failures)?,
                "backoff_seconds": number("first lock", &form.lockout_backoff_seconds)?,
                "max_backoff_seconds": number("longest lock", &form.lockout_max_backoff_seconds)?,
            },
            "custom_fields": custom_fields,
        }))
    })();
    let result = match patch {
        Ok(patch) => tenants::update(&app, &tenant.slug, None, Some(&patch)).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, "sign-in?done=saved")),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_signin(&tenant, chrome)
        }
    }
}
