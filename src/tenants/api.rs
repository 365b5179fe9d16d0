//! The tenant admin API under `/admin/api/v1/tenants`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{Actor, Scope};
use crate::app::AppState;
use crate::error::Result;
use crate::http::extract::ApiJson;
use crate::tenants::{self, TenantSettings, TenantSlug, TenantStatus, TenantView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api/v1/tenants", post(create).get(list))
        .route("/admin/api/v1/tenants/{slug}", get(read).patch(update).delete(remove))
        .route("/admin/api/v1/tenants/{slug}/suspend", post(suspend))
        .route("/admin/api/v1/tenants/{slug}/resume", post(resume))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    settings: Option<Value>,
}

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantView>)> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&body.slug)?;
    let settings = TenantSettings::from_initial(body.settings.as_ref())?;
    let tenant = tenants::create(&app, slug, body.name, settings).await?;
    Ok((StatusCode::CREATED, Json(TenantView::from(tenant.as_ref()))))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(State(app): State<AppState>, actor: Actor, Query(q): Query<ListQuery>) -> Result<Json<Value>> {
    let limit = crate::http::extract::page_limit(q.limit)?;
    let only = match &actor.scope {
        Scope::Operator => None,
        Scope::Tenant(slug) => Some(slug.clone()),
    };
    let (items, next_cursor) = tenants::list(&app, q.cursor, limit, only).await?;
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// The slug from the path, checked, and the actor's right to it.
fn slug_for(actor: &Actor, raw: &str) -> Result<TenantSlug> {
    let slug = TenantSlug::parse(raw)?;
    actor.require_tenant(&slug)?;
    Ok(slug)
}

async fn read(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TenantView>> {
    let slug = slug_for(&actor, &slug)?;
    Ok(Json(TenantView::from(tenants::get(&app, &slug).await?.as_ref())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    name: Option<String>,
    settings: Option<Value>,
}

async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<Json<TenantView>> {
    let slug = slug_for(&actor, &slug)?;
    let tenant = tenants::update(&app, &slug, body.name, body.settings.as_ref()).await?;
    Ok(Json(TenantView::from(tenant.as_ref())))
}

async fn remove(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Value>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    let file = tenants::delete(&app, &slug).await?;
    Ok(Json(json!({ "deleted": slug, "archived_to": file })))
}

async fn suspend(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TenantView>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    Ok(Json(TenantView::from(tenants::set_status(&app, &slug, TenantStatus::Suspended).await?.as_ref())))
}

async fn resume(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TenantView>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    Ok(Json(TenantView::from(tenants::set_status(&app, &slug, TenantStatus::Active).await?.as_ref())))
}
