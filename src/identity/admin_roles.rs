//! Admin API for a tenant's roles (`/admin/api/v1/tenants/{slug}/roles`) and its tenant admins
//! (`/admin/api/v1/tenants/{slug}/admins`: admin-console accounts scoped `tenant:{slug}`, created by operators).
//!
//! The handlers check access, call one service of `identity::admin` (shared with the admin UI) and shape the
//! answer.
//!
//! Who may call: the role routes need an operator or an actor scoped to the tenant in the path; listing the tenant
//! admins too, while creating and deleting one needs an operator.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::AppState;
use crate::config::Secret;
use crate::control::tables;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin};
use crate::http::openapi::ApiErrors;
use crate::identity::admin::{self, origin};
use crate::identity::roles;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
        .routes(routes!(list_admins, create_admin))
        .routes(routes!(remove_admin))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRole {
    /// 1-64 of `a-z 0-9 _ - . :`, starting with a letter or digit.
    name: String,
    /// At most 500 characters.
    #[serde(default)]
    description: String,
    /// Permission strings: 1-128 characters without spaces, at most 200.
    #[serde(default)]
    permissions: Vec<String>,
}

/// The tenant's roles.
#[derive(Serialize, ToSchema)]
struct RoleList {
    items: Vec<roles::Role>,
}

/// Lists the tenant's roles by name.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/roles",
    tag = "roles",
    operation_id = "roles_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The roles", body = RoleList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<RoleList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, |conn| roles::list(conn)).await?;
    Ok(Json(RoleList { items }))
}

/// Creates a role.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/roles",
    tag = "roles",
    operation_id = "roles_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = CreateRole,
    responses((status = 201, description = "Created", body = roles::Role), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateRole>,
) -> Result<(StatusCode, Json<roles::Role>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let role = admin::create_role(&db, body.name, body.description, body.permissions, origin(&actor, from)).await?;
    Ok((StatusCode::CREATED, Json(role)))
}

/// Reads a role.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/roles/{name}",
    tag = "roles",
    operation_id = "roles_read",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The role's name")
    ),
    responses((status = 200, description = "The role", body = roles::Role), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Json<roles::Role>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| roles::get(conn, &name)).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRole {
    /// At most 500 characters.
    description: Option<String>,
    /// Replaces the permissions as a whole.
    permissions: Option<Vec<String>>,
}

/// Changes a role's description and/or permissions.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/roles/{name}",
    tag = "roles",
    operation_id = "roles_update",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The role's name")
    ),
    request_body = UpdateRole,
    responses((status = 200, description = "The role as updated", body = roles::Role), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateRole>,
) -> Result<Json<roles::Role>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let role = admin::update_role(&db, name, body.description, body.permissions, origin(&actor, from)).await?;
    Ok(Json(role))
}

/// Deletes a role (its users lose it).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/roles/{name}",
    tag = "roles",
    operation_id = "roles_remove",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The role's name")
    ),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    admin::delete_role(&db, name, origin(&actor, from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- tenant admins ----

/// A tenant admin: an admin-console account scoped to one tenant.
#[derive(Serialize, ToSchema)]
struct TenantAdmin {
    id: String,
    email: String,
    /// `tenant:{slug}`.
    scope: String,
    #[schema(format = DateTime)]
    created_at: String,
}

/// The tenant's admins.
#[derive(Serialize, ToSchema)]
struct TenantAdminList {
    // `tables::AdminAccount` serialises to the shape of `TenantAdmin`.
    #[schema(value_type = Vec<TenantAdmin>)]
    items: Vec<tables::AdminAccount>,
}

/// Lists the tenant's admins, oldest first.
///
/// Tenant admins are listed and managed by operators; a tenant admin sees the list of their own tenant.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/admins",
    tag = "roles",
    operation_id = "roles_list_admins",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant's admins", body = TenantAdminList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_admins(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
) -> Result<Json<TenantAdminList>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let items = admin::tenant_admins(&app, &slug).await?;
    Ok(Json(TenantAdminList { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenantAdmin {
    email: String,
    password: String,
}

/// Creates a tenant admin (operator only).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/admins",
    tag = "roles",
    operation_id = "roles_create_admin",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = CreateTenantAdmin,
    responses((status = 201, description = "Created", body = TenantAdmin), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create_admin(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateTenantAdmin>,
) -> Result<(StatusCode, Json<TenantAdmin>)> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let account =
        admin::create_tenant_admin(&app, &slug, &body.email, Secret::new(body.password), &actor.label).await?;
    let view = TenantAdmin {
        id: account.id,
        email: account.email,
        scope: format!("tenant:{slug}"),
        created_at: crate::format_time(account.created_at),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// Deletes a tenant admin and their sessions (operator only).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/admins/{id}",
    tag = "roles",
    operation_id = "roles_remove_admin",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The admin account's id")
    ),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove_admin(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    admin::delete_tenant_admin(&app, &slug, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
