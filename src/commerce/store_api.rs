//! The public storefront API under `/t/{slug}/api/v1`: active products (search, filters, sorts, cursor pages),
//! one product by handle, and the category tree. Browsers on the store's `allowed_origins` may call it (CORS).
//!
//! Who may call: anyone (public, read-only); only `active` products are visible; stock counts only when the store
//! shows them (`show_stock_counts`), else `in_stock` alone.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin_api::{CategoryList, ProductPage};
use super::catalog::{self, Product, ProductStatus, Search, Sort};
use crate::app::AppState;
use crate::control::Tenant;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{TenantCtx, page_limit};
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(products, products_preflight))
        .routes(routes!(product_by_handle, product_preflight))
        .routes(routes!(categories, categories_preflight))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StoreQuery {
    /// Words to search for in titles, descriptions, SKUs and option values.
    q: Option<String>,
    /// A category handle or id; its subcategories are included.
    category: Option<String>,
    /// Lowest variant price, minor units.
    min_price: Option<i64>,
    /// Highest variant price, minor units.
    max_price: Option<i64>,
    /// `true`: only products that can be bought now.
    in_stock: Option<bool>,
    /// `relevance` (with `q`), `price_asc`, `price_desc`, `newest` (the default without `q`).
    sort: Option<Sort>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Searches and lists the store's active products.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/products",
    tag = "storefront",
    operation_id = "storefront_products",
    params(("slug" = TenantSlug, Path, description = "The tenant"), StoreQuery),
    responses((status = 200, description = "A page of active products", body = ProductPage), ApiErrors),
    security(())
)]
async fn products(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    Query(q): Query<StoreQuery>,
) -> Result<Response> {
    let search = Search {
        q: q.q,
        category: q.category,
        min_price: q.min_price,
        max_price: q.max_price,
        in_stock: q.in_stock.filter(|wanted| *wanted),
        status: Some(ProductStatus::Active),
        sort: q.sort.unwrap_or_default(),
        cursor: q.cursor,
        limit: page_limit(q.limit)?,
    };
    let show = ctx.tenant.settings.commerce.show_stock_counts;
    // Answers are cached under the catalog's version: the same search of an unchanged catalog is one lookup.
    let version = db::point_read(&ctx.db.pool, |conn| catalog::version(conn)).await?;
    let key = format!("{}\n{version}\n{show}\n{search:?}", ctx.tenant.slug);
    let body = match app.store.search_cache.get(&key) {
        Some(body) => {
            app.metrics.cache_lookup("store_search", true);
            body
        }
        None => {
            app.metrics.cache_lookup("store_search", false);
            let (items, next_cursor) = db::with_conn(&ctx.db.pool, move |conn| catalog::search(conn, &search)).await?;
            let items = items.into_iter().map(|p| shown(p, show)).collect();
            let body = axum::body::Bytes::from(
                serde_json::to_vec(&ProductPage { items, next_cursor }).map_err(Error::internal)?,
            );
            app.store.search_cache.insert(key, body.clone());
            body
        }
    };
    let response = ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
    Ok(cors(&ctx.tenant, &headers, response))
}

/// Hides stock counts when the store does not show them.
fn shown(mut product: Product, show_stock: bool) -> Product {
    if !show_stock {
        for v in &mut product.variants {
            v.stock = None;
        }
    }
    product
}

/// One active product by its handle.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/products/{handle}",
    tag = "storefront",
    operation_id = "storefront_product",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("handle" = String, Path, description = "The product's handle")),
    responses((status = 200, description = "The product", body = Product), ApiErrors),
    security(())
)]
async fn product_by_handle(
    ctx: TenantCtx,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response> {
    let handle = params.get("handle").cloned().unwrap_or_default();
    let found = db::with_conn(&ctx.db.pool, move |conn| catalog::product_by_handle(conn, &handle)).await?;
    let product = found.filter(|p| p.status == ProductStatus::Active).ok_or(Error::NotFound("product"))?;
    let show = ctx.tenant.settings.commerce.show_stock_counts;
    Ok(cors(&ctx.tenant, &headers, Json(shown(product, show)).into_response()))
}

/// The store's category tree (parents first).
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/categories",
    tag = "storefront",
    operation_id = "storefront_categories",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The categories", body = CategoryList), ApiErrors),
    security(())
)]
async fn categories(ctx: TenantCtx, headers: HeaderMap) -> Result<Response> {
    let items = db::with_conn(&ctx.db.pool, |conn| catalog::list_categories(conn)).await?;
    Ok(cors(&ctx.tenant, &headers, Json(CategoryList { items, next_cursor: None }).into_response()))
}

/// `Access-Control-Allow-Origin` for an origin the store allows.
pub(super) fn cors(tenant: &Tenant, headers: &HeaderMap, mut response: Response) -> Response {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else { return response };
    let out = response.headers_mut();
    out.append(VARY, HeaderValue::from_static("Origin"));
    if tenant.settings.commerce.allowed_origins.iter().any(|o| o == origin)
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}

/// A CORS preflight answer allowing `methods` to the store's allowed origins.
pub(super) async fn preflight_for(
    app: AppState,
    params: HashMap<String, String>,
    headers: HeaderMap,
    methods: &'static str,
) -> Response {
    let Some(slug) = params.get("slug").and_then(|s| TenantSlug::parse(s).ok()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Some(tenant)) = app.control.tenant(&slug).await else { return StatusCode::NOT_FOUND.into_response() };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    // `Authorization`: a storefront on another origin sends a customer's access token (the session cookie is
    // same-site only, so cross-origin requests are never credentialed).
    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    cors(&tenant, &headers, response)
}

const READ_METHODS: &str = "GET, OPTIONS";

store_preflight!(products_preflight, READ_METHODS, "/t/{slug}/api/v1/products", "storefront_products_preflight");
store_preflight!(
    product_preflight,
    READ_METHODS,
    "/t/{slug}/api/v1/products/{handle}",
    "storefront_product_preflight",
    "handle"
);
store_preflight!(categories_preflight, READ_METHODS, "/t/{slug}/api/v1/categories", "storefront_categories_preflight");
