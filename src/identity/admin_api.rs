//! Admin API for a tenant's users under `/admin/api/v1/tenants/{slug}/users`: create (with roles and an optional
//! invitation), list and search, read, update, disable (ends the user's sessions), enable, delete, roles,
//! password-reset mail, removing MFA, sessions; and the audit log (`…/audit`). Every change is audited and raises
//! its webhook event in the same transaction.
//!
//! Who may call: every route needs an operator or an actor scoped to the tenant in the path.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{Actor, Via};
use crate::app::{App, AppState};
use crate::config::Secret;
use crate::control::Tenant;
use crate::db;
use crate::db::registry::TenantDb;
use crate::email::outbox;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, page_limit};
use crate::http::openapi::ApiErrors;
use crate::identity::api::{self, UserProfile};
use crate::identity::audit::{self, Origin};
use crate::identity::{flows, mfa, password, roles, sessions, users};
use crate::tenants::TenantSlug;
use crate::webhooks::events::Event;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, update, remove))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(set_roles))
        .routes(routes!(password_reset))
        .routes(routes!(remove_mfa))
        .routes(routes!(user_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(audit_log))
}

/// The audit origin of an admin request: `operator:{id}` for a signed-in admin, `token:{id}` for an API token.
pub fn origin(actor: &Actor, RequestOrigin(mut origin): RequestOrigin) -> Origin {
    origin.actor = match actor.via {
        Via::Session => format!("operator:{}", actor.id),
        Via::Token => format!("token:{}", actor.id),
    };
    origin
}

/// A user to create from the admin side.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// Leave out (or empty) for a user who signs in only after an invitation or a reset.
    pub password: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub name: Option<String>,
    /// Custom fields, by name; checked against the tenant's definitions.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<Value>,
    /// Role names to assign (each must exist).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Without a password: mail an invitation whose link lets the user choose one.
    #[serde(default)]
    pub send_invite: bool,
}

/// Creates a user (audited, `user.created` raised, invitation mailed when asked); returns the new id.
pub async fn create_user(
    app: &App,
    tenant: &Tenant,
    db: &TenantDb,
    body: CreateUser,
    origin: Origin,
) -> Result<String> {
    let email = users::normalize_email(&body.email)?;
    let name = body.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if let Some(name) = &name {
        users::check_name(name)?;
    }
    let fields = body.fields.unwrap_or_else(|| json!({}));
    users::check_fields(&fields, &tenant.settings.custom_fields)?;
    let password_hash = match body.password.filter(|p| !p.is_empty()) {
        None => None,
        Some(pw) => {
            password::check(&pw, tenant.settings.password_min_length)?;
            Some(app.passwords.hash(&Secret::new(pw)).await?)
        }
    };
    if body.send_invite && password_hash.is_some() {
        return Err(Error::validation("send_invite is for users created without a password"));
    }
    let invite = body.send_invite;
    let role_names = body.roles;
    let new = users::NewUser { email, email_verified: body.email_verified, password_hash, name, fields };
    let links = flows::Links::new(app, tenant.slug.as_str());
    db.write(move |tx| {
        let user = users::insert(tx, &new)?;
        audit::record(tx, "user_created", Some(&user.id), &origin, json!({ "by": "admin", "invited": invite }))?;
        if !role_names.is_empty() {
            roles::set_user_roles(tx, &user.id, &role_names)?;
            audit::record(tx, "role_changed", Some(&user.id), &origin, json!({ "added": role_names, "removed": [] }))?;
        }
        outbox::enqueue_event(tx, Event::UserCreated { user_id: user.id.clone(), email: user.email.clone() })?;
        if invite {
            flows::mail_reset_link(tx, &links, &user, true)?;
        }
        Ok(user.id)
    })
    .await
}

/// Creates a user, with roles and optionally an invitation mail.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/users",
    tag = "users",
    operation_id = "users_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = CreateUser,
    responses((status = 201, description = "Created", body = UserProfile), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserProfile>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let id = create_user(&app, &tenant, &db, body, origin(&actor, from)).await?;
    Ok((StatusCode::CREATED, Json(api::profile(&db, &id).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Part of the email or the name (case-insensitive).
    q: Option<String>,
    /// `active` or `disabled`.
    status: Option<String>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of users.
#[derive(Serialize, ToSchema)]
struct UserPage {
    items: Vec<users::User>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// Lists the tenant's users, newest first, optionally searched and filtered by status.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/users",
    tag = "users",
    operation_id = "users_list",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ListQuery),
    responses((status = 200, description = "A page of users", body = UserPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<UserPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let limit = page_limit(q.limit)?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && s != "active"
        && s != "disabled"
    {
        return Err(Error::validation("status must be active or disabled"));
    }
    let search = q.q.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let (items, next) = db::with_conn(&db.pool, move |conn| {
        users::list(conn, search.as_deref(), status.as_deref(), cursor.as_deref(), limit)
    })
    .await?;
    Ok(Json(UserPage { items, next_cursor: next }))
}

/// Reads a user, with its roles and whether TOTP is on.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/users/{id}",
    tag = "users",
    operation_id = "users_read",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 200, description = "The user", body = UserProfile), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<UserProfile>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(api::profile(&db, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    email: Option<String>,
    email_verified: Option<bool>,
    /// An empty string clears the name.
    name: Option<String>,
    /// Replaces the custom fields as a whole.
    #[schema(value_type = Option<Object>)]
    fields: Option<Value>,
}

/// Changes a user's email, verification flag, name or custom fields.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/users/{id}",
    tag = "users",
    operation_id = "users_update",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    request_body = UpdateUser,
    responses((status = 200, description = "The user as updated", body = users::User), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<users::User>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    let email = body.email.as_deref().map(users::normalize_email).transpose()?;
    let name = body.name.map(|n| n.trim().to_owned());
    if let Some(name) = name.as_deref().filter(|n| !n.is_empty()) {
        users::check_name(name)?;
    }
    if let Some(fields) = &body.fields {
        users::check_fields(fields, &tenant.settings.custom_fields)?;
    }
    let verified = body.email_verified;
    let user = db
        .write(move |tx| {
            let name = name.as_deref().map(|n| if n.is_empty() { None } else { Some(n) });
            let user = users::update(tx, &id, email.as_deref(), verified, name, body.fields.as_ref())?;
            audit::record(tx, "user_updated", Some(&user.id), &origin, json!({}))?;
            Ok(user)
        })
        .await?;
    Ok(Json(user))
}

/// Disables (ending every session and OAuth grant of the user) or enables a user.
pub async fn change_status(db: &TenantDb, id: String, status: &'static str, origin: Origin) -> Result<users::User> {
    db.write(move |tx| {
        let user = users::set_status(tx, &id, status)?;
        if status == "disabled" {
            let ended = sessions::revoke_all(tx, &user.id, None)?;
            let grants =
                crate::oidc::store::revoke_user_families(tx, &user.id, None, "user_disabled", crate::now_unix())?;
            audit::record(
                tx,
                "user_disabled",
                Some(&user.id),
                &origin,
                json!({ "sessions_ended": ended, "grants_revoked": grants }),
            )?;
            outbox::enqueue_event(tx, Event::UserDisabled { user_id: user.id.clone() })?;
        } else {
            audit::record(tx, "user_updated", Some(&user.id), &origin, json!({ "status": "active" }))?;
        }
        Ok(user)
    })
    .await
}

async fn set_status(
    app: AppState,
    actor: Actor,
    from: RequestOrigin,
    slug: String,
    id: String,
    status: &'static str,
) -> Result<Json<users::User>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(change_status(&db, id, status, origin(&actor, from)).await?))
}

/// Disables a user, ending every session and OAuth grant of the user.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/disable",
    tag = "users",
    operation_id = "users_disable",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 200, description = "The user, disabled", body = users::User), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn disable(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<users::User>> {
    set_status(app, actor, from, slug, id, "disabled").await
}

/// Enables a disabled user.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/enable",
    tag = "users",
    operation_id = "users_enable",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 200, description = "The user, active", body = users::User), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn enable(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<users::User>> {
    set_status(app, actor, from, slug, id, "active").await
}

/// Deletes a user with everything that hangs off it (sessions, tokens, roles, MFA).
pub async fn delete_user(db: &TenantDb, id: String, origin: Origin) -> Result<()> {
    db.write(move |tx| {
        // The cascade then deletes these rows with the user: what keeps the user's access tokens dead is the user
        // check in `check_access` (user ids are never reused). Revoking first keeps the order obvious.
        crate::oidc::store::revoke_user_families(tx, &id, None, "user_deleted", crate::now_unix())?;
        let user = users::delete(tx, &id)?;
        audit::record(tx, "user_deleted", Some(&user.id), &origin, json!({ "email": user.email }))?;
        outbox::enqueue_event(tx, Event::UserDeleted { user_id: user.id })?;
        Ok(())
    })
    .await
}

/// Deletes a user with its sessions, tokens, roles and MFA.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/users/{id}",
    tag = "users",
    operation_id = "users_remove",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    delete_user(&db, id, origin(&actor, from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserRolesBody {
    /// Role names; each must exist.
    roles: Vec<String>,
}

/// Replaces the user's roles (each must exist); the change is audited as `role_changed`.
pub async fn assign_roles(db: &TenantDb, id: String, names: Vec<String>, origin: Origin) -> Result<()> {
    db.write(move |tx| {
        let (added, removed) = roles::set_user_roles(tx, &id, &names)?;
        if !added.is_empty() || !removed.is_empty() {
            audit::record(tx, "role_changed", Some(&id), &origin, json!({ "added": added, "removed": removed }))?;
        }
        Ok(())
    })
    .await
}

/// Replaces a user's roles.
#[utoipa::path(
    put,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/roles",
    tag = "users",
    operation_id = "users_set_roles",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    request_body = UserRolesBody,
    responses((status = 200, description = "The user with its new roles", body = UserProfile), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn set_roles(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UserRolesBody>,
) -> Result<Json<UserProfile>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    assign_roles(&db, id.clone(), body.roles, origin(&actor, from)).await?;
    Ok(Json(api::profile(&db, &id).await?))
}

/// Mails the user a password-reset link, or an invitation when the user has no password yet; true for an
/// invitation.
pub async fn send_reset(app: &App, tenant: &Tenant, db: &TenantDb, id: String, origin: Origin) -> Result<bool> {
    let links = flows::Links::new(app, tenant.slug.as_str());
    db.write(move |tx| {
        let user = users::get(tx, &id)?;
        let invite = !user.has_password;
        flows::mail_reset_link(tx, &links, &user, invite)?;
        audit::record(
            tx,
            "password_reset_requested",
            Some(&user.id),
            &origin,
            json!({ "by": "admin", "invite": invite }),
        )?;
        Ok(invite)
    })
    .await
}

/// What a password-reset request queued.
#[derive(Serialize, ToSchema)]
struct ResetMailSent {
    status: ResetMailStatus,
    /// `invite` for a user without a password yet, else `reset_password`.
    kind: ResetMailKind,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ResetMailStatus {
    Sent,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ResetMailKind {
    Invite,
    ResetPassword,
}

/// Mails the user a password-reset link (an invitation when the user has no password yet).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/password-reset",
    tag = "users",
    operation_id = "users_password_reset",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 202, description = "The mail is queued", body = ResetMailSent), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn password_reset(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ResetMailSent>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let invite = send_reset(&app, &tenant, &db, id, origin(&actor, from)).await?;
    let kind = if invite { ResetMailKind::Invite } else { ResetMailKind::ResetPassword };
    Ok((StatusCode::ACCEPTED, Json(ResetMailSent { status: ResetMailStatus::Sent, kind })))
}

/// Turns the user's TOTP off and drops the recovery codes (for a user who lost the device).
pub async fn clear_mfa(db: &TenantDb, id: String, origin: Origin) -> Result<()> {
    db.write(move |tx| {
        users::get(tx, &id)?;
        // An admin who removes the second factor also lifts its lock (the user enrols afresh).
        users::record_mfa_success(tx, &id)?;
        if mfa::disable(tx, &id)? {
            audit::record(tx, "mfa_disabled", Some(&id), &origin, json!({ "by": "admin" }))?;
        }
        Ok(())
    })
    .await
}

/// Turns a user's TOTP off and drops the recovery codes (for a user who lost the device).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/mfa",
    tag = "users",
    operation_id = "users_remove_mfa",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 204, description = "MFA is off"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove_mfa(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    clear_mfa(&db, id, origin(&actor, from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's sessions.
#[derive(Serialize, ToSchema)]
struct UserSessionList {
    items: Vec<sessions::Session>,
}

/// Lists a user's open sessions.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/sessions",
    tag = "users",
    operation_id = "users_user_sessions",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id")
    ),
    responses((status = 200, description = "The user's sessions", body = UserSessionList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn user_sessions(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<UserSessionList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, move |conn| {
        users::get(conn, &id)?;
        sessions::list(conn, &id)
    })
    .await?;
    Ok(Json(UserSessionList { items }))
}

/// Ends one session of a user.
pub async fn end_session(db: &TenantDb, id: String, sid: String, origin: Origin) -> Result<()> {
    db.write(move |tx| {
        if !sessions::revoke(tx, &id, &sid)? {
            return Err(Error::NotFound("session"));
        }
        audit::record(tx, "admin_action", Some(&id), &origin, json!({ "action": "session_revoked", "session": sid }))
    })
    .await
}

/// Ends one session of a user.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/users/{id}/sessions/{sid}",
    tag = "users",
    operation_id = "users_revoke_session",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The user's id"),
        ("sid" = String, Path, description = "The session's id")
    ),
    responses((status = 204, description = "The session is ended"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn revoke_session(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id, sid)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    end_session(&db, id, sid, origin(&actor, from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Only entries of this type (`user_created`, `login_failed`, …).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Only entries about this user.
    user_id: Option<String>,
    /// Only entries from this time on: RFC 3339 time or unix seconds.
    since: Option<String>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<i64>,
}

/// A page of audit entries.
#[derive(Serialize, ToSchema)]
struct AuditPage {
    items: Vec<audit::Entry>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<i64>,
}

/// Parses `since` as RFC 3339 or unix seconds.
pub fn parse_since(raw: &str) -> Result<i64> {
    if let Ok(secs) = raw.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| Error::validation("since must be an RFC 3339 time (2026-01-31T12:00:00Z) or unix seconds"))
}

/// Lists the tenant's audit log, newest first.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/audit",
    tag = "users",
    operation_id = "users_audit_log",
    params(("slug" = TenantSlug, Path, description = "The tenant"), AuditQuery),
    responses((status = 200, description = "A page of audit entries", body = AuditPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn audit_log(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let kind = q.kind.filter(|k| !k.is_empty());
    if let Some(k) = &kind
        && !audit::TYPES.contains(&k.as_str())
    {
        return Err(Error::validation(format!("type must be one of {}", audit::TYPES.join(", "))));
    }
    let filter = audit::Filter {
        kind,
        user_id: q.user_id.filter(|u| !u.is_empty()),
        since: q.since.as_deref().filter(|s| !s.is_empty()).map(parse_since).transpose()?,
        cursor: q.cursor,
        limit: page_limit(q.limit)?,
    };
    let (items, next) = db::with_conn(&db.pool, move |conn| audit::list(conn, &filter)).await?;
    Ok(Json(AuditPage { items, next_cursor: next }))
}
