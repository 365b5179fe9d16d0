//! Admin-side operations on a tenant's identity: users (create, list, update, disable/enable, delete, roles,
//! reset or invitation mail, removing MFA), their sessions, roles, and the tenant admins (admin-console accounts
//! scoped `tenant:{slug}`). Called by the JSON admin API (`admin_api`, `admin_roles`) and the admin UI pages
//! (`web::identity_pages`), which check access (`admin::Actor`) first and only shape the answer after.
//!
//! Invariants:
//! - Every change to the tenant file is one transaction with its audit entry (the actor is the admin's `origin`)
//!   and its webhook event.
//! - Tenant admins live in control.db and change only by `Mutation` (`CreateOperator`, `DeleteOperator`).

use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::admin::{Actor, Scope, Via, accounts};
use crate::app::App;
use crate::config::Secret;
use crate::control::{Mutation, Tenant, tables};
use crate::db;
use crate::db::registry::TenantDb;
use crate::email::outbox;
use crate::error::{Error, Result};
use crate::http::extract::RequestOrigin;
use crate::identity::audit::{self, Origin};
use crate::identity::{flows, mfa, password, roles, sessions, users};
use crate::tenants::TenantSlug;
use crate::webhooks::events::Event;

/// The audit origin of an admin request: `operator:{id}` for a signed-in admin, `token:{id}` for an API token.
pub fn origin(actor: &Actor, RequestOrigin(mut origin): RequestOrigin) -> Origin {
    origin.actor = match actor.via {
        Via::Session => format!("operator:{}", actor.id),
        Via::Token => format!("token:{}", actor.id),
    };
    origin
}

// ---- users ----

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

/// A page of the tenant's users, newest first, and the cursor of the next page. `search` is a part of the email
/// or the name (case-insensitive), `status` `active` or `disabled`; empty values mean no filter.
pub async fn list_users(
    db: &TenantDb,
    search: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    limit: u32,
) -> Result<(Vec<users::User>, Option<String>)> {
    let status = status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && s != "active"
        && s != "disabled"
    {
        return Err(Error::validation("status must be active or disabled"));
    }
    let search = search.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let cursor = cursor.filter(|c| !c.is_empty());
    db::with_conn(&db.pool, move |conn| {
        users::list(conn, search.as_deref(), status.as_deref(), cursor.as_deref(), limit)
    })
    .await
}

// A change to a user from the admin side; a key not given keeps its value. (A `//` comment: a doc comment would
// become the schema's description in the OpenAPI contract, which had none.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// An empty string clears the name.
    pub name: Option<String>,
    /// Replaces the custom fields as a whole.
    #[schema(value_type = Option<Object>)]
    pub fields: Option<Value>,
}

/// Changes a user's email, verification flag, name or custom fields (audited as `user_updated`).
pub async fn update_user(
    tenant: &Tenant,
    db: &TenantDb,
    id: String,
    changes: UpdateUser,
    origin: Origin,
) -> Result<users::User> {
    let email = changes.email.as_deref().map(users::normalize_email).transpose()?;
    let name = changes.name.map(|n| n.trim().to_owned());
    if let Some(name) = name.as_deref().filter(|n| !n.is_empty()) {
        users::check_name(name)?;
    }
    if let Some(fields) = &changes.fields {
        users::check_fields(fields, &tenant.settings.custom_fields)?;
    }
    let verified = changes.email_verified;
    let fields = changes.fields;
    db.write(move |tx| {
        let name = name.as_deref().map(|n| if n.is_empty() { None } else { Some(n) });
        let user = users::update(tx, &id, email.as_deref(), verified, name, fields.as_ref())?;
        audit::record(tx, "user_updated", Some(&user.id), &origin, json!({}))?;
        Ok(user)
    })
    .await
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

// ---- a user's sessions ----

/// The user's open sessions; `NotFound("user")` for an unknown user.
pub async fn user_sessions(db: &TenantDb, id: String) -> Result<Vec<sessions::Session>> {
    db::with_conn(&db.pool, move |conn| {
        users::get(conn, &id)?;
        sessions::list(conn, &id)
    })
    .await
}

/// Ends one session of a user; `NotFound("session")` when it is not one of theirs.
pub async fn end_session(db: &TenantDb, id: String, sid: String, origin: Origin) -> Result<()> {
    db.write(move |tx| {
        if !sessions::revoke(tx, &id, &sid)? {
            return Err(Error::NotFound("session"));
        }
        audit::record(tx, "admin_action", Some(&id), &origin, json!({ "action": "session_revoked", "session": sid }))
    })
    .await
}

/// Signs a user out everywhere: every session and every OAuth grant (apps' refresh tokens) ends, as for a
/// compromised account; the account stays enabled. Returns how many sessions ended. `NotFound("user")` for an
/// unknown user.
pub async fn end_all_sessions(db: &TenantDb, id: String, origin: Origin) -> Result<usize> {
    db.write(move |tx| {
        users::get(tx, &id)?;
        let ended = sessions::revoke_all(tx, &id, None)?;
        let grants = crate::oidc::store::revoke_user_families(tx, &id, None, "signed_out", crate::now_unix())?;
        audit::record(
            tx,
            "admin_action",
            Some(&id),
            &origin,
            json!({ "action": "sessions_revoked", "sessions_ended": ended, "grants_revoked": grants }),
        )?;
        Ok(ended)
    })
    .await
}

// ---- roles ----

fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > 500 {
        return Err(Error::validation("description must be at most 500 characters"));
    }
    Ok(())
}

/// Creates a role (name, description of at most 500 characters, permissions), audited as `admin_action`.
pub async fn create_role(
    db: &TenantDb,
    name: String,
    description: String,
    permissions: Vec<String>,
    origin: Origin,
) -> Result<roles::Role> {
    roles::check_name(&name)?;
    check_description(&description)?;
    let permissions = roles::check_permissions(&permissions)?;
    db.write(move |tx| {
        let role = roles::create(tx, &name, description.trim(), &permissions)?;
        audit::record(tx, "admin_action", None, &origin, json!({ "action": "role_created", "role": role.name }))?;
        Ok(role)
    })
    .await
}

/// Changes a role's description and/or permissions (`None` keeps one), audited as `admin_action`.
pub async fn update_role(
    db: &TenantDb,
    name: String,
    description: Option<String>,
    permissions: Option<Vec<String>>,
    origin: Origin,
) -> Result<roles::Role> {
    if let Some(d) = &description {
        check_description(d)?;
    }
    let permissions = permissions.as_deref().map(roles::check_permissions).transpose()?;
    db.write(move |tx| {
        let role = roles::update(tx, &name, description.as_deref().map(str::trim), permissions.as_deref())?;
        audit::record(tx, "admin_action", None, &origin, json!({ "action": "role_updated", "role": role.name }))?;
        Ok(role)
    })
    .await
}

/// Deletes a role (its users lose it), audited as `admin_action`.
pub async fn delete_role(db: &TenantDb, name: String, origin: Origin) -> Result<()> {
    db.write(move |tx| {
        roles::delete(tx, &name)?;
        audit::record(tx, "admin_action", None, &origin, json!({ "action": "role_deleted", "role": name }))
    })
    .await
}

// ---- tenant admins ----

/// The tenant's admins, oldest first.
pub async fn tenant_admins(app: &App, slug: &TenantSlug) -> Result<Vec<tables::AdminAccount>> {
    let scope = Scope::Tenant(slug.clone());
    app.control.read(move |conn| tables::operators_in_scope(conn, &scope)).await
}

/// Creates a tenant admin (`Mutation::CreateOperator` scoped to the tenant); `by` names the actor in the log.
pub async fn create_tenant_admin(
    app: &App,
    slug: &TenantSlug,
    email: &str,
    password: Secret,
    by: &str,
) -> Result<tables::AdminAccount> {
    let scope = Scope::Tenant(slug.clone());
    let mutation = accounts::new_operator(&app.passwords, email, &password, scope.clone()).await?;
    let Mutation::CreateOperator { id, email, at, .. } = &mutation else {
        return Err(Error::internal("new_operator built the wrong mutation"));
    };
    let account = tables::AdminAccount { id: id.clone(), email: email.clone(), scope, created_at: *at };
    app.control.apply(mutation).await?;
    tracing::info!(tenant = %slug, email = %account.email, by = %by, "tenant admin created");
    Ok(account)
}

/// Deletes a tenant admin and their sessions; `NotFound("tenant admin")` for an id that is not one of the
/// tenant's admins.
pub async fn delete_tenant_admin(app: &App, slug: &TenantSlug, id: String) -> Result<()> {
    let admins = tenant_admins(app, slug).await?;
    if !admins.iter().any(|a| a.id == id) {
        return Err(Error::NotFound("tenant admin"));
    }
    app.control.apply(Mutation::DeleteOperator { id }).await.map(drop)
}
