//! Admin API for a tenant's roles (`/admin/api/v1/tenants/{slug}/roles`) and its tenant admins
//! (`/admin/api/v1/tenants/{slug}/admins`: admin-console accounts scoped `tenant:{slug}`, created by operators).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{Actor, Scope, accounts};
use crate::app::AppState;
use crate::config::Secret;
use crate::control::{Mutation, tables};
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin};
use crate::identity::admin_api::origin;
use crate::identity::{audit, roles};
use crate::tenants::TenantSlug;

pub fn router() -> Router<AppState> {
    let roles = "/admin/api/v1/tenants/{slug}/roles";
    let admins = "/admin/api/v1/tenants/{slug}/admins";
    Router::new()
        .route(roles, get(list).post(create))
        .route(&format!("{roles}/{{name}}"), get(read).patch(update).delete(remove))
        .route(admins, get(list_admins).post(create_admin))
        .route(&format!("{admins}/{{id}}"), delete(remove_admin))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRole {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<String>,
}

fn check_description(description: &str) -> Result<()> {
    if description.chars().count() > 500 {
        return Err(Error::validation("description must be at most 500 characters"));
    }
    Ok(())
}

async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Value>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, |conn| roles::list(conn)).await?;
    Ok(Json(json!({ "items": items })))
}

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateRole>,
) -> Result<(StatusCode, Json<roles::Role>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    roles::check_name(&body.name)?;
    check_description(&body.description)?;
    let permissions = roles::check_permissions(&body.permissions)?;
    let role = db
        .write(move |tx| {
            let role = roles::create(tx, &body.name, body.description.trim(), &permissions)?;
            audit::record(tx, "admin_action", None, &origin, json!({ "action": "role_created", "role": role.name }))?;
            Ok(role)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(role)))
}

async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Json<roles::Role>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| roles::get(conn, &name)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRole {
    description: Option<String>,
    permissions: Option<Vec<String>>,
}

async fn update(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateRole>,
) -> Result<Json<roles::Role>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    if let Some(d) = &body.description {
        check_description(d)?;
    }
    let permissions = body.permissions.as_deref().map(roles::check_permissions).transpose()?;
    let role = db
        .write(move |tx| {
            let role = roles::update(tx, &name, body.description.as_deref().map(str::trim), permissions.as_deref())?;
            audit::record(tx, "admin_action", None, &origin, json!({ "action": "role_updated", "role": role.name }))?;
            Ok(role)
        })
        .await?;
    Ok(Json(role))
}

async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let origin = origin(&actor, from);
    db.write(move |tx| {
        roles::delete(tx, &name)?;
        audit::record(tx, "admin_action", None, &origin, json!({ "action": "role_deleted", "role": name }))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- tenant admins ----

/// Tenant admins are listed and managed by operators; a tenant admin sees the list of their own tenant.
async fn list_admins(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Value>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let scope = Scope::Tenant(slug);
    let items = app.control.read(move |conn| tables::operators_in_scope(conn, &scope)).await?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAdmin {
    email: String,
    password: String,
}

async fn create_admin(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateAdmin>,
) -> Result<(StatusCode, Json<Value>)> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let scope = Scope::Tenant(slug.clone());
    let mutation = accounts::new_operator(&app.passwords, &body.email, &Secret::new(body.password), scope).await?;
    let Mutation::CreateOperator { id, email, at, .. } = &mutation else {
        return Err(Error::internal("new_operator built the wrong mutation"));
    };
    let view =
        json!({ "id": id, "email": email, "scope": format!("tenant:{slug}"), "created_at": crate::format_time(*at) });
    app.control.apply(mutation).await?;
    tracing::info!(tenant = %slug, email = %view["email"], by = %actor.label, "tenant admin created");
    Ok((StatusCode::CREATED, Json(view)))
}

async fn remove_admin(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    let scope = Scope::Tenant(slug.clone());
    let admins = app.control.read(move |conn| tables::operators_in_scope(conn, &scope)).await?;
    if !admins.iter().any(|a| a.id == id) {
        return Err(Error::NotFound("tenant admin"));
    }
    app.control.apply(Mutation::DeleteOperator { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}
