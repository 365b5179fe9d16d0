//! Admin UI pages of a tenant's identity: users (search, create, detail with roles, sessions, disable/enable,
//! reset mail, MFA removal, delete), roles, tenant admins, sign-in settings and the audit log. The pages call
//! the same services as the JSON admin API (`identity::admin`, `tenants`).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, RawForm, State};
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
use crate::identity::admin::{self, CreateUser};
use crate::identity::audit::{self, Origin};
use crate::identity::{mfa, roles, sessions, users};
use crate::tenants::{self, TenantSlug};

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}";
    Router::new()
        .route(&format!("{base}/users"), get(users_page).post(user_create))
        .route(&format!("{base}/users/{{id}}"), get(user_page))
        .route(&format!("{base}/users/{{id}}/roles"), post(user_roles))
        .route(&format!("{base}/users/{{id}}/sessions/{{sid}}/revoke"), post(user_session_revoke))
        .route(&format!("{base}/users/{{id}}/{{action}}"), post(user_action))
        .route(&format!("{base}/roles"), get(roles_page).post(role_create))
        .route(&format!("{base}/roles/{{name}}/delete"), post(role_delete))
        .route(&format!("{base}/admins"), get(admins_page).post(admin_create))
        .route(&format!("{base}/admins/{{id}}/delete"), post(admin_delete))
        .route(&format!("{base}/sign-in"), get(signin_page).post(signin_save))
        .route(&format!("{base}/audit"), get(audit_page))
}

fn origin_of(session: &UiSession, from: RequestOrigin) -> Origin {
    admin::origin(&session.actor, from)
}

async fn open(app: &AppState, session: &UiSession, slug: &str) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "created" => "User created.",
        "deleted" => "User deleted.",
        "disabled" => "User disabled; their sessions ended.",
        "enabled" => "User enabled.",
        "reset" => "Email queued; see the outbox for its delivery.",
        "mfa" => "Two-factor authentication removed.",
        "roles" => "Roles saved.",
        "revoked" => "Session ended.",
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

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id: Option<String>,
}

// ---- users ----

struct UserRow {
    id: String,
    email: String,
    name: String,
    status: String,
    verified: bool,
    created: String,
    last_login: String,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    q: String,
    status: String,
    rows: Vec<UserRow>,
    next_cursor: Option<String>,
    form_email: String,
    form_name: String,
}

async fn render_users(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    q: ListQuery,
    form: (String, String),
) -> PageResult {
    let search = q.q.clone().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let status = q.status.clone().filter(|s| s == "active" || s == "disabled");
    let cursor = q.cursor.clone().filter(|c| !c.is_empty());
    let (items, next_cursor) = admin::list_users(db, search.clone(), status.clone(), cursor, 50).await?;
    let rows = items
        .into_iter()
        .map(|u| UserRow {
            id: u.id,
            email: u.email,
            name: u.name.unwrap_or_default(),
            status: u.status,
            verified: u.email_verified,
            created: crate::display_time(u.created_at),
            last_login: u.last_login_at.map_or_else(|| "never".to_owned(), crate::display_time),
        })
        .collect();
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = UsersPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "users",
        q: search.unwrap_or_default(),
        status: status.unwrap_or_default(),
        rows,
        next_cursor,
        form_email: form.0,
        form_name: form.1,
    };
    Ok((code, render(page)?).into_response())
}

async fn users_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render_users(&tenant, &db, chrome, q, Default::default()).await
}

#[derive(Deserialize)]
struct CreateUserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    send_invite: Option<String>,
    email_verified: Option<String>,
}

async fn user_create(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<CreateUserForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let input = CreateUser {
        email: form.email.clone(),
        password: Some(form.password),
        email_verified: form.email_verified.is_some(),
        name: Some(form.name.clone()),
        send_invite: form.send_invite.is_some(),
        ..CreateUser::default()
    };
    match admin::create_user(&app, &tenant, &db, input, origin_of(&session, from)).await {
        Ok(id) => Ok(redirect(&slug, &format!("users/{id}?done=created"))),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_users(&tenant, &db, chrome, ListQuery::default(), (form.email, form.name)).await
        }
    }
}

struct SessionRow {
    id: String,
    created: String,
    last_seen: String,
    from: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    id: String,
    email: String,
    name: String,
    status: String,
    verified: bool,
    has_password: bool,
    mfa_enabled: bool,
    fields: String,
    created: String,
    last_login: String,
    roles: Vec<(String, bool)>,
    sessions: Vec<SessionRow>,
}

async fn user_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let (user, assigned, all, list, enrolled) = db::with_conn(&db.pool, move |conn| {
        Ok((
            users::get(conn, &id)?,
            roles::of_user(conn, &id)?,
            roles::list(conn)?,
            sessions::list(conn, &id)?,
            mfa::is_enrolled(conn, &id)?,
        ))
    })
    .await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    let page = UserPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "users",
        roles: all
            .into_iter()
            .map(|r| {
                let on = assigned.contains(&r.name);
                (r.name, on)
            })
            .collect(),
        sessions: list
            .into_iter()
            .map(|s| SessionRow {
                created: crate::display_time(s.created_at),
                last_seen: crate::display_time(s.last_seen_at),
                from: crate::client_label(s.ip.as_deref(), s.user_agent.as_deref()),
                id: s.id,
            })
            .collect(),
        id: user.id,
        email: user.email,
        name: user.name.unwrap_or_default(),
        status: user.status,
        verified: user.email_verified,
        has_password: user.has_password,
        mfa_enabled: enrolled,
        fields: user.fields.to_string(),
        created: crate::display_time(user.created_at),
        last_login: user.last_login_at.map_or_else(|| "never".to_owned(), crate::display_time),
    };
    render(page)
}

async fn user_action(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id, action)): Path<(String, String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let origin = origin_of(&session, from);
    let done = match action.as_str() {
        "disable" => admin::change_status(&db, id.clone(), "disabled", origin).await.map(|_| "disabled")?,
        "enable" => admin::change_status(&db, id.clone(), "active", origin).await.map(|_| "enabled")?,
        "reset" => admin::send_reset(&app, &tenant, &db, id.clone(), origin).await.map(|_| "reset")?,
        "mfa" => admin::clear_mfa(&db, id.clone(), origin).await.map(|_| "mfa")?,
        "delete" => {
            admin::delete_user(&db, id, origin).await?;
            return Ok(redirect(&slug, "users?done=deleted"));
        }
        _ => return Err(Error::NotFound("action").into()),
    };
    Ok(redirect(&slug, &format!("users/{id}?done={done}")))
}

/// The values of every `key` field of a urlencoded form (checkbox groups), and the CSRF token.
fn form_values(raw: &[u8], key: &str) -> (Vec<String>, String) {
    let mut values = Vec::new();
    let mut csrf = String::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if k == key {
            values.push(v.into_owned());
        } else if k == "csrf_token" {
            csrf = v.into_owned();
        }
    }
    (values, csrf)
}

async fn user_roles(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    RawForm(raw): RawForm,
) -> PageResult {
    let (names, csrf) = form_values(&raw, "roles");
    session.check_csrf(&csrf)?;
    let (_, db) = open(&app, &session, &slug).await?;
    admin::assign_roles(&db, id.clone(), names, origin_of(&session, from)).await?;
    Ok(redirect(&slug, &format!("users/{id}?done=roles")))
}

async fn user_session_revoke(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id, sid)): Path<(String, String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    admin::end_session(&db, id.clone(), sid, origin_of(&session, from)).await?;
    Ok(redirect(&slug, &format!("users/{id}?done=revoked")))
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
    Query(q): Query<ListQuery>,
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
    Query(q): Query<ListQuery>,
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
    Query(q): Query<ListQuery>,
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

// ---- audit log ----

struct AuditRow {
    at: String,
    kind: String,
    user_id: Option<String>,
    actor: String,
    from: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    types: Vec<(&'static str, bool)>,
    kind: String,
    user_id: String,
    rows: Vec<AuditRow>,
    next_cursor: Option<i64>,
}

async fn audit_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let kind = q.kind.filter(|k| audit::TYPES.contains(&k.as_str()));
    let user_id = q.user_id.filter(|u| !u.is_empty());
    let filter = audit::Filter {
        kind: kind.clone(),
        user_id: user_id.clone(),
        since: None,
        cursor: q.cursor.and_then(|c| c.parse().ok()),
        limit: 100,
    };
    let (entries, next_cursor) = db::with_conn(&db.pool, move |conn| audit::list(conn, &filter)).await?;
    let kind = kind.unwrap_or_default();
    let page = AuditPage {
        chrome: session.chrome("tenants"),
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "audit",
        types: audit::TYPES.iter().map(|t| (*t, *t == kind)).collect(),
        kind,
        user_id: user_id.unwrap_or_default(),
        rows: entries
            .into_iter()
            .map(|e| AuditRow {
                at: crate::display_time(e.at),
                kind: e.kind,
                user_id: e.user_id,
                actor: e.actor,
                from: crate::client_label(e.ip.as_deref(), e.user_agent.as_deref()),
                detail: e.detail.to_string(),
            })
            .collect(),
        next_cursor,
    };
    render(page)
}
