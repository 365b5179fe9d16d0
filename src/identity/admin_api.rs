//! Admin API for a tenant's users under `/admin/api/v1/tenants/{slug}/users`: create (with roles and an optional
//! invitation), list and search, read, update, disable (ends the user's sessions), enable, delete, roles,
//! password-reset mail, removing MFA, sessions; and the audit log (`…/audit`). The handlers check access, call
//! one service of `identity::admin` (shared with the admin UI; every change there is audited and raises its
//! webhook event in the same transaction) and shape the answer.
//!
//! Who may call: every route needs an operator or an actor scoped to the tenant in the path.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::AppState;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, page_limit};
use crate::http::openapi::ApiErrors;
use crate::identity::admin::{self, CreateUser, UpdateUser, origin};
use crate::identity::audit;
use crate::identity::flows::{self, UserProfile};
use crate::identity::{sessions, users};
use crate::tenants::TenantSlug;

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
    let id = admin::create_user(&app, &tenant, &db, body, origin(&actor, from)).await?;
    Ok((StatusCode::CREATED, Json(flows::profile(&db, &id).await?)))
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
    let (items, next) = admin::list_users(&db, q.q, q.status, q.cursor, limit).await?;
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
    Ok(Json(flows::profile(&db, &id).await?))
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
    Ok(Json(admin::update_user(&tenant, &db, id, body, origin(&actor, from)).await?))
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
    Ok(Json(admin::change_status(&db, id, status, origin(&actor, from)).await?))
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
    admin::delete_user(&db, id, origin(&actor, from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserRolesBody {
    /// Role names; each must exist.
    roles: Vec<String>,
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
    admin::assign_roles(&db, id.clone(), body.roles, origin(&actor, from)).await?;
    Ok(Json(flows::profile(&db, &id).await?))
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
    let invite = admin::send_reset(&app, &tenant, &db, id, origin(&actor, from)).await?;
    let kind = if invite { ResetMailKind::Invite } else { ResetMailKind::ResetPassword };
    Ok((StatusCode::ACCEPTED, Json(ResetMailSent { status: ResetMailStatus::Sent, kind })))
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
    admin::clear_mfa(&db, id, origin(&actor, from)).await?;
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
    let items = admin::user_sessions(&db, id).await?;
    Ok(Json(UserSessionList { items }))
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
    admin::end_session(&db, id, sid, origin(&actor, from)).await?;
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
    /// Part of an email address (case-insensitive): entries about the users whose email contains it (the first 50
    /// such users), and failed sign-ins and deletions naming such an address.
    email: Option<String>,
    /// Only entries by this actor, exactly as entries show it: `user:{id}`, `operator:{id}`, `token:{id}`,
    /// `client:{id}` or `system`.
    actor: Option<String>,
    /// Only entries from this time on: RFC 3339 time or unix seconds.
    since: Option<String>,
    /// Only entries up to this time (inclusive): RFC 3339 time or unix seconds.
    until: Option<String>,
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

/// Parses the time query parameter `field` as RFC 3339 or unix seconds.
fn parse_time(field: &str, raw: &str) -> Result<i64> {
    if let Ok(secs) = raw.parse::<i64>() {
        return Ok(secs);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            Error::validation(format!("{field} must be an RFC 3339 time (2026-01-31T12:00:00Z) or unix seconds"))
        })
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
    let email = q.email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty());
    if email.as_ref().is_some_and(|e| e.chars().count() > 254) {
        return Err(Error::validation("email must be at most 254 characters"));
    }
    let by = q.actor.filter(|a| !a.is_empty());
    if by.as_ref().is_some_and(|a| a.len() > 200 || (a != "system" && !a.contains(':'))) {
        return Err(Error::validation(
            "actor must look like user:{id}, operator:{id}, token:{id}, client:{id} or system",
        ));
    }
    let since = q.since.as_deref().filter(|s| !s.is_empty()).map(|s| parse_time("since", s)).transpose()?;
    let until = q.until.as_deref().filter(|s| !s.is_empty()).map(|s| parse_time("until", s)).transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && until < since
    {
        return Err(Error::validation("until must not be before since"));
    }
    let filter = audit::Filter {
        kind,
        user_id: q.user_id.filter(|u| !u.is_empty()),
        email,
        actor: by,
        since,
        until,
        cursor: q.cursor,
        limit: page_limit(q.limit)?,
        ..Default::default()
    };
    let (items, next) = db::with_conn(&db.pool, move |conn| audit::list(conn, &filter)).await?;
    Ok(Json(AuditPage { items, next_cursor: next }))
}
