//! The tenant admin API under `/admin/api/v1/tenants`.
//!
//! Who may call: creating, deleting, suspending and resuming tenants needs an operator; reading and updating a
//! tenant needs an operator or an actor scoped to that tenant, and listing shows a tenant-scoped actor only its
//! own tenant.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{Actor, Scope};
use crate::app::AppState;
use crate::error::Result;
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::tenants::{self, TenantSettings, TenantSlug, TenantStatus, TenantView};
use axum::Json;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, update, remove))
        .routes(routes!(suspend))
        .routes(routes!(resume))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    #[schema(value_type = TenantSlug)]
    slug: String,
    name: String,
    /// Initial settings, merged into the defaults.
    #[schema(value_type = Option<TenantSettings>)]
    settings: Option<Value>,
    /// The node to keep the tenant's data (a voting member; `gatehouse cluster status` lists them); by default the
    /// one with the fewest tenants.
    home_node: Option<u64>,
}

/// Creates a tenant (operator only).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants",
    tag = "tenants",
    operation_id = "tenants_create",
    request_body = CreateTenant,
    responses((status = 201, description = "Created", body = TenantView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>)> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&body.slug)?;
    let settings = TenantSettings::from_initial(body.settings.as_ref())?;
    let tenant = tenants::create(&app, slug, body.name, settings, body.home_node).await?;
    Ok((StatusCode::CREATED, Json(TenantView::from(tenant.as_ref()))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of tenants.
#[derive(Serialize, ToSchema)]
struct TenantPage {
    items: Vec<TenantView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    next_cursor: Option<String>,
}

/// Lists tenants (a tenant-scoped actor sees its own).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants",
    tag = "tenants",
    operation_id = "tenants_list",
    params(ListQuery),
    responses((status = 200, description = "A page of tenants", body = TenantPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(State(app): State<AppState>, actor: Actor, Query(q): Query<ListQuery>) -> Result<Json<TenantPage>> {
    let limit = crate::http::extract::page_limit(q.limit)?;
    let only = match &actor.scope {
        Scope::Operator => None,
        Scope::Tenant(slug) => Some(slug.clone()),
    };
    let (items, next_cursor) = tenants::list(&app, q.cursor, limit, only).await?;
    Ok(Json(TenantPage { items, next_cursor }))
}

/// The slug from the path, checked, and the actor's right to it.
fn slug_for(actor: &Actor, raw: &str) -> Result<TenantSlug> {
    let slug = TenantSlug::parse(raw)?;
    actor.require_tenant(&slug)?;
    Ok(slug)
}

/// Reads a tenant.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}",
    tag = "tenants",
    operation_id = "tenants_read",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant", body = TenantView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TenantView>> {
    let slug = slug_for(&actor, &slug)?;
    Ok(Json(TenantView::from(tenants::get(&app, &slug).await?.as_ref())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    name: Option<String>,
    /// Merged key by key into the current settings (`null` resets a key); an object where the settings have one.
    #[schema(value_type = Option<TenantSettings>)]
    settings: Option<Value>,
}

/// Renames a tenant and/or changes its settings.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}",
    tag = "tenants",
    operation_id = "tenants_update",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = UpdateTenant,
    responses((status = 200, description = "The tenant as updated", body = TenantView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<Json<TenantView>> {
    let slug = slug_for(&actor, &slug)?;
    tenants::check_suspended_edit(&app, &actor.scope, &slug, body.name.as_deref(), body.settings.as_ref()).await?;
    let tenant = tenants::update(&app, &slug, body.name, body.settings.as_ref()).await?;
    Ok(Json(TenantView::from(tenant.as_ref())))
}

/// What deleting a tenant did.
#[derive(Serialize, ToSchema)]
struct Deleted {
    deleted: TenantSlug,
    /// Where the tenant's file now lives, under `data/archive/`.
    archived_to: String,
}

/// Deletes a tenant (operator only): its file is archived, never removed.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}",
    tag = "tenants",
    operation_id = "tenants_remove",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "Deleted and archived", body = Deleted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Deleted>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    let archived_to = tenants::delete(&app, &slug).await?;
    Ok(Json(Deleted { deleted: slug, archived_to }))
}

/// Suspends a tenant (operator only): its APIs answer 403 `tenant_suspended`, its hosted pages a browser's 503 page.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/suspend",
    tag = "tenants",
    operation_id = "tenants_suspend",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant, suspended", body = TenantView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn suspend(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TenantView>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    Ok(Json(TenantView::from(tenants::set_status(&app, &slug, TenantStatus::Suspended).await?.as_ref())))
}

/// Resumes a suspended tenant (operator only).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/resume",
    tag = "tenants",
    operation_id = "tenants_resume",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant, active", body = TenantView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn resume(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TenantView>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    Ok(Json(TenantView::from(tenants::set_status(&app, &slug, TenantStatus::Active).await?.as_ref())))
}
