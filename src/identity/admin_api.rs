//! Admin API for a tenant's users under `/admin/api/v1/tenants/{slug}/users`: create (with roles and an optional
//! invitation), list and search, read, update, disable (ends the user's sessions), enable, delete, roles,
//! password-reset mail, removing MFA, sessions; and the audit log (`…/audit`). Every change is audited and raises
//! its webhook event in the same transaction.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{Actor, Via};
use crate::app::{App, AppState};
use crate::config::Secret;
use crate::control::Tenant;
use crate::db;
use crate::db::registry::TenantDb;
use crate::email::outbox;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, page_limit};
use crate::identity::audit::{self, Origin};
use crate::identity::{api, flows, mfa, password, roles, sessions, users};
use crate::webhooks::events::Event;

pub fn router() -> Router<AppState> {
    let base = "/admin/api/v1/tenants/{slug}/users";
    Router::new()
        .route(base, post(create).get(list))
        .route(&format!("{base}/{{id}}"), get(read).patch(update).delete(remove))
        .route(&format!("{base}/{{id}}/disable"), post(disable))
        .route(&format!("{base}/{{id}}/enable"), post(enable))
        .route(&format!("{base}/{{id}}/roles"), put(set_roles))
        .route(&format!("{base}/{{id}}/password-reset"), post(password_reset))
        .route(&format!("{base}/{{id}}/mfa"), delete(remove_mfa))
        .route(&format!("{base}/{{id}}/sessions"), get(user_sessions))
        .route(&format!("{base}/{{id}}/sessions/{{sid}}"), delete(revoke_session))
        .route("/admin/api/v1/tenants/{slug}/audit", get(audit_log))
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
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub password: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub name: Option<String>,
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

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<Value>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let id = create_user(&app, &tenant, &db, body, origin(&actor, from)).await?;
    Ok((StatusCode::CREATED, Json(api::profile(&db, &id).await?)))
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>> {
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
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(api::profile(&db, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    email: Option<String>,
    email_verified: Option<bool>,
    /// An empty string clears the name.
    name: Option<String>,
    /// Replaces the custom fields as a whole.
    fields: Option<Value>,
}

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

async fn disable(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<users::User>> {
    set_status(app, actor, from, slug, id, "disabled").await
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
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

async fn set_roles(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RolesBody>,
) -> Result<Json<Value>> {
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

async fn password_reset(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let invite = send_reset(&app, &tenant, &db, id, origin(&actor, from)).await?;
    let kind = if invite { "invite" } else { "reset_password" };
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "sent", "kind": kind }))))
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

async fn user_sessions(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, move |conn| {
        users::get(conn, &id)?;
        sessions::list(conn, &id)
    })
    .await?;
    Ok(Json(json!({ "items": items })))
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

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    user_id: Option<String>,
    /// RFC 3339 time or unix seconds.
    since: Option<String>,
    limit: Option<u32>,
    cursor: Option<i64>,
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

async fn audit_log(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>> {
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
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}
