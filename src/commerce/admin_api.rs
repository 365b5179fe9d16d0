//! Admin API of a tenant's store under `/admin/api/v1/tenants/{slug}`: products (with variants), categories,
//! inventory adjustments and the ledger, CSV imports and export. Thin adapters over `catalog`, `inventory` and
//! `imports`.
//!
//! Who may call: every route needs an operator or an actor scoped to the tenant in the path.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalog::{
    self, Category, CategoryPatch, NewCategory, NewProduct, Product, ProductPatch, ProductStatus, Search, Sort,
};
use super::imports::{self, ImportJob, ImportMode};
use super::inventory::{self, Adjustment, Movement};
use super::{actor_name, write_ctx};
use crate::admin::Actor;
use crate::app::AppState;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, page_limit};
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(export_products))
        .routes(routes!(read_product, update_product, delete_product))
        .routes(routes!(create_category, list_categories))
        .routes(routes!(update_category, delete_category))
        .routes(routes!(adjust_stock))
        .routes(routes!(list_movements))
        .routes(routes!(start_import, list_imports))
        .routes(routes!(read_import))
}

/// Whether a request path is a CSV import upload: it gets the import size limit and a long time limit.
pub fn is_import(path: &str) -> bool {
    path.starts_with("/admin/api/v1/tenants/") && path.ends_with("/imports")
        || path.starts_with("/admin/tenants/") && path.ends_with("/store/import")
}

/// Creates a product with its variants (and their starting stock).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/products",
    tag = "store",
    operation_id = "products_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = NewProduct,
    responses((status = 201, description = "Created", body = Product), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create_product(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<Product>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let ctx = write_ctx(actor_name(&actor), &tenant);
    let id = db.write(move |tx| catalog::create_product(tx, body, &ctx)).await?;
    Ok((StatusCode::CREATED, Json(product(&db, id).await?)))
}

async fn product(db: &crate::db::registry::TenantDb, id: String) -> Result<Product> {
    db::with_conn(&db.pool, move |conn| catalog::load_product(conn, &id)?.ok_or(Error::NotFound("product"))).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Words to search for in titles, descriptions, SKUs and option values.
    q: Option<String>,
    /// `draft`, `active` or `archived` (default: all).
    status: Option<ProductStatus>,
    /// A category id or handle; its subcategories are included.
    category: Option<String>,
    /// Lowest variant price, minor units.
    min_price: Option<i64>,
    /// Highest variant price, minor units.
    max_price: Option<i64>,
    /// Only products with a variant that can be bought now (or, with false, none).
    in_stock: Option<bool>,
    /// `relevance` (with `q`), `price_asc`, `price_desc`, `newest` (the default without `q`).
    sort: Option<Sort>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of products.
#[derive(Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// Lists and searches the store's products (every status unless `status` is given).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/products",
    tag = "store",
    operation_id = "products_list",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ListQuery),
    responses((status = 200, description = "A page of products", body = ProductPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_products(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ProductPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let search = Search {
        q: q.q,
        category: q.category,
        min_price: q.min_price,
        max_price: q.max_price,
        in_stock: q.in_stock,
        status: q.status,
        sort: q.sort.unwrap_or_default(),
        cursor: q.cursor,
        limit: page_limit(q.limit)?,
    };
    let (items, next_cursor) = db::with_conn(&db.pool, move |conn| catalog::search(conn, &search)).await?;
    Ok(Json(ProductPage { items, next_cursor }))
}

/// Reads a product with its variants and their stock.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/products/{id}",
    tag = "store",
    operation_id = "products_read",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The product's id")),
    responses((status = 200, description = "The product", body = Product), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_product(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Product>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(product(&db, id).await?))
}

/// Changes a product; `variants`, when given, is the whole new set of variants.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/products/{id}",
    tag = "store",
    operation_id = "products_update",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The product's id")),
    request_body = ProductPatch,
    responses((status = 200, description = "The product", body = Product), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update_product(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ProductPatch>,
) -> Result<Json<Product>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let ctx = write_ctx(actor_name(&actor), &tenant);
    let pid = id.clone();
    db.write(move |tx| catalog::update_product(tx, &pid, body, &ctx)).await?;
    Ok(Json(product(&db, id).await?))
}

#[derive(Serialize, ToSchema)]
struct Deleted {
    deleted: bool,
}

/// Deletes a product and its variants (their stock movements stay in the ledger).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/products/{id}",
    tag = "store",
    operation_id = "products_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The product's id")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_product(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let ctx = write_ctx(actor_name(&actor), &tenant);
    db.write(move |tx| catalog::delete_product(tx, &id, &ctx)).await?;
    Ok(Json(Deleted { deleted: true }))
}

/// The whole catalog as CSV, in the import format (one row per variant).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/products/export.csv",
    tag = "store",
    operation_id = "products_export",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The catalog", content_type = "text/csv", body = String), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn export_products(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Response> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let currency = tenant.settings.commerce.currency.clone();
    let bytes = db::with_conn(&db.pool, move |conn| imports::export(conn, &currency)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{slug}-products.csv\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Creates a category (top-level, or under `parent_id`).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/categories",
    tag = "store",
    operation_id = "categories_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = NewCategory,
    responses((status = 201, description = "Created", body = Category), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create_category(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<NewCategory>,
) -> Result<(StatusCode, Json<Category>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let category = db.write(move |tx| catalog::create_category(tx, body, crate::now_unix())).await?;
    Ok((StatusCode::CREATED, Json(category)))
}

/// Every category.
#[derive(Serialize, ToSchema)]
pub struct CategoryList {
    /// Parents before their children; siblings by position, then title.
    pub items: Vec<Category>,
    /// Always null: the whole tree is one page.
    pub next_cursor: Option<String>,
}

/// Lists the category tree (parents first).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/categories",
    tag = "store",
    operation_id = "categories_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The categories", body = CategoryList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_categories(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
) -> Result<Json<CategoryList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let items = db::with_conn(&db.pool, |conn| catalog::list_categories(conn)).await?;
    Ok(Json(CategoryList { items, next_cursor: None }))
}

/// Renames, moves or reorders a category.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/categories/{id}",
    tag = "store",
    operation_id = "categories_update",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The category's id")),
    request_body = CategoryPatch,
    responses((status = 200, description = "The category", body = Category), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update_category(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<CategoryPatch>,
) -> Result<Json<Category>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db.write(move |tx| catalog::update_category(tx, &id, body, crate::now_unix())).await?))
}

/// Deletes a category without subcategories (its products stay).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/categories/{id}",
    tag = "store",
    operation_id = "categories_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The category's id")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_category(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    db.write(move |tx| catalog::delete_category(tx, &id)).await?;
    Ok(Json(Deleted { deleted: true }))
}

/// Adds or removes stock of one SKU; the change is a ledger movement (`adjustment`). Removing more than is on
/// hand is refused.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/inventory/{sku}/adjust",
    tag = "store",
    operation_id = "inventory_adjust",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("sku" = String, Path, description = "The variant's SKU")),
    request_body = Adjustment,
    responses((status = 200, description = "The movement, with the stock after it", body = Movement), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn adjust_stock(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, sku)): Path<(String, String)>,
    ApiJson(body): ApiJson<Adjustment>,
) -> Result<Json<Movement>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let ctx = write_ctx(actor_name(&actor), &tenant);
    Ok(Json(db.write(move |tx| inventory::adjust(tx, &sku, &body, &ctx)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of ledger movements, newest first.
#[derive(Serialize, ToSchema)]
pub struct MovementPage {
    pub items: Vec<Movement>,
    pub next_cursor: Option<String>,
}

/// The stock ledger of one SKU, newest first.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/inventory/{sku}/movements",
    tag = "store",
    operation_id = "inventory_movements",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("sku" = String, Path, description = "The variant's SKU"), PageQuery),
    responses((status = 200, description = "A page of movements", body = MovementPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_movements(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, sku)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> Result<Json<MovementPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    catalog::check_sku(&sku)?;
    let limit = page_limit(q.limit)?;
    let cursor = q
        .cursor
        .map(|c| c.parse::<i64>().map_err(|_| Error::validation("cursor is not one this API gave out")))
        .transpose()?;
    let (items, next_cursor) =
        db::with_conn(&db.pool, move |conn| inventory::movements(conn, &sku, cursor, limit)).await?;
    Ok(Json(MovementPage { items, next_cursor }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    /// `all_or_nothing` (default) or `skip_bad_rows`.
    mode: Option<ImportMode>,
}

#[derive(Serialize, ToSchema)]
struct ImportStarted {
    id: String,
}

/// Starts a CSV import (the body, `text/csv`, up to `GATEHOUSE_IMPORT_MAX_BYTES`); follow it with
/// `GET …/imports/{id}`. A file without a usable header is refused at once.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/imports",
    tag = "store",
    operation_id = "imports_start",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ImportQuery),
    request_body(description = "The CSV file", content((String = "text/csv"))),
    responses((status = 202, description = "Started", body = ImportStarted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn start_import(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ImportStarted>)> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("text/csv") {
        return Err(Error::BadRequest("send the CSV file as the body with Content-Type: text/csv".into()));
    }
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let bytes = crate::plugins::api::read_limited(body, app.config.import_max_bytes).await?;
    let id = start(&app, &tenant, db, actor_name(&actor), q.mode.unwrap_or_default(), bytes).await?;
    Ok((StatusCode::ACCEPTED, Json(ImportStarted { id })))
}

/// Parses `bytes` and runs the import in the background; answers the job id. Shared with the admin UI.
pub async fn start(
    app: &AppState,
    tenant: &crate::control::Tenant,
    db: crate::db::registry::TenantDb,
    actor: String,
    mode: ImportMode,
    bytes: Vec<u8>,
) -> Result<String> {
    if app.store.running() >= super::MAX_RUNNING_IMPORTS {
        return Err(Error::Conflict("this node runs as many imports as it takes; retry in a minute".into()));
    }
    let currency = tenant.settings.commerce.currency.clone();
    let (rows, errors) = tokio::task::spawn_blocking(move || imports::parse(&bytes, &currency)).await??;
    let total = (rows.len() + errors.len()) as u64;
    if mode == ImportMode::AllOrNothing && total > imports::MAX_ALL_OR_NOTHING {
        return Err(Error::validation(format!(
            "an all_or_nothing import takes at most {} rows (the store's other writes wait while it runs); \
             use mode=skip_bad_rows for {total}",
            imports::MAX_ALL_OR_NOTHING
        )));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let (job, who, boot) = (id.clone(), actor.clone(), app.store.boot.clone());
    db.write(move |tx| {
        let new = imports::NewJob { id: &job, mode, total, actor: &who, boot: &boot, now: crate::now_unix() };
        imports::insert_job(tx, &new)
    })
    .await?;
    let progress = app.store.track(&id);
    let ctx = write_ctx(format!("import:{id}"), tenant);
    let (app2, job) = (app.clone(), id.clone());
    tracing::info!(tenant = %tenant.slug, import = %id, rows = total, mode = ?mode, %actor, "catalog import started");
    tokio::spawn(async move {
        if let Err(err) = imports::run(db, job.clone(), mode, rows, errors, ctx, progress).await {
            tracing::warn!(import = %job, error = %err, "catalog import could not record its end");
        }
        app2.store.forget(&job);
    });
    Ok(id)
}

/// Recent imports.
#[derive(Serialize, ToSchema)]
pub struct ImportList {
    pub items: Vec<ImportJob>,
    /// Always null: the 50 most recent imports are one page.
    pub next_cursor: Option<String>,
}

/// The 50 most recent imports, newest first.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/imports",
    tag = "store",
    operation_id = "imports_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "Recent imports", body = ImportList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_imports(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<ImportList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let mut items = db::with_conn(&db.pool, |conn| imports::list(conn, 50)).await?;
    for job in &mut items {
        live(&app, job);
    }
    Ok(Json(ImportList { items, next_cursor: None }))
}

/// A running job shows the live count of rows done.
pub fn live(app: &AppState, job: &mut ImportJob) {
    if job.status != "running" {
        return;
    }
    if job.boot.as_deref() != Some(app.store.boot.as_str()) {
        // Left running by an earlier process: the start-up scan marks it failed; say so already.
        job.status = "failed".into();
        job.message = Some("interrupted by a restart".into());
    } else if let Some(done) = app.store.done(&job.id) {
        job.done = done;
    }
}

/// One import: status, progress (`done` of `total` rows) and the bad rows.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/imports/{id}",
    tag = "store",
    operation_id = "imports_read",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The import's id")),
    responses((status = 200, description = "The import", body = ImportJob), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_import(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<ImportJob>> {
    Ok(Json(import_job(&app, &actor, &slug, id).await?))
}

/// One import of the tenant, with live progress (shared with the admin UI).
pub async fn import_job(app: &AppState, actor: &Actor, slug: &str, id: String) -> Result<ImportJob> {
    let (_, db) = actor.open_tenant(app, slug).await?;
    let mut job =
        db::with_conn(&db.pool, move |conn| imports::get(conn, &id)).await?.ok_or(Error::NotFound("import"))?;
    live(app, &mut job);
    Ok(job)
}
