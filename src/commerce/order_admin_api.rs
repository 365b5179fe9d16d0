//! The admin API of a store's orders under `/admin/api/v1/tenants/{slug}/orders`: the list (by status and part of
//! the email), an order with its timeline, marking a `manual` order paid, and cancelling (its stock goes back).
//! Every status change goes through `orders::transition`.
//!
//! Who may call: an operator, or an admin or API token scoped to the tenant.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::checkout::{self, OrderView};
use super::orders::{self, OrderEvent, OrderListItem};
use crate::admin::Actor;
use crate::app::AppState;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, page_limit};
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(read_order))
        .routes(routes!(mark_paid))
        .routes(routes!(cancel_order))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OrderQuery {
    /// One of the order statuses.
    status: Option<String>,
    /// Part of the buyer's email.
    email: Option<String>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderListItem>,
    pub next_cursor: Option<String>,
}

/// The store's orders, newest first.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/orders",
    tag = "store",
    operation_id = "orders_list",
    params(("slug" = TenantSlug, Path, description = "The tenant"), OrderQuery),
    responses((status = 200, description = "A page of orders", body = OrderPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_orders(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<OrderQuery>,
) -> Result<Json<OrderPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let limit = page_limit(q.limit)?;
    if q.status.as_deref().is_some_and(|s| !orders::STATUSES.contains(&s)) {
        return Err(Error::validation(format!("status must be one of {}", orders::STATUSES.join(", "))));
    }
    let cursor = match q.cursor.as_deref() {
        Some(c) => Some(c.parse::<i64>().map_err(|_| Error::validation("cursor must be a next_cursor"))?),
        None => None,
    };
    let email = q.email.filter(|e| !e.trim().is_empty()).map(|e| e.trim().chars().take(254).collect::<String>());
    let (items, next_cursor) =
        db::with_conn(&db.pool, move |conn| orders::list(conn, q.status.as_deref(), email.as_deref(), cursor, limit))
            .await?;
    Ok(Json(OrderPage { items, next_cursor }))
}

/// An order with its timeline.
#[derive(Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: OrderView,
    /// The timeline, oldest first.
    pub events: Vec<OrderEvent>,
}

/// One order and its timeline.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/orders/{id}",
    tag = "store",
    operation_id = "orders_get",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order", body = OrderDetail), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_order(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<OrderDetail>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let detail = db::with_conn(&db.pool, move |conn| {
        Ok(OrderDetail { order: checkout::find(conn, &id)?, events: orders::events(conn, &id)? })
    })
    .await?;
    Ok(Json(detail))
}

/// `POST …/orders/{id}/mark-paid`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkPaid {
    /// The payment's reference (a bank transfer's, a receipt number), 1-200 characters.
    pub reference: String,
}

/// Marks a `pending_payment` order paid (the `manual` method: a bank transfer arrived, cash was taken).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/orders/{id}/mark-paid",
    tag = "store",
    operation_id = "orders_mark_paid",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The order's id")),
    request_body = MarkPaid,
    responses((status = 200, description = "The order, paid", body = OrderView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn mark_paid(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<MarkPaid>,
) -> Result<Json<OrderView>> {
    let reference = body.reference.trim().to_owned();
    if reference.is_empty() || reference.chars().count() > 200 || reference.chars().any(char::is_control) {
        return Err(Error::validation("reference must be 1-200 characters without control characters"));
    }
    change(&app, &actor, from, &slug, id, "paid", json!({ "reference": reference })).await
}

/// Cancels an order that is `pending_payment` or `paid`; its units go back to stock.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/orders/{id}/cancel",
    tag = "store",
    operation_id = "orders_cancel",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order, cancelled", body = OrderView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn cancel_order(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<OrderView>> {
    change(&app, &actor, from, &slug, id, "cancelled", json!({})).await
}

async fn change(
    app: &AppState,
    actor: &Actor,
    from: RequestOrigin,
    slug: &str,
    id: String,
    to: &'static str,
    detail: serde_json::Value,
) -> Result<Json<OrderView>> {
    let (tenant, db) = actor.open_tenant(app, slug).await?;
    let origin = crate::identity::admin::origin(actor, from);
    let view = db
        .write(move |tx| {
            orders::transition(tx, &tenant, &id, to, &origin, detail, crate::now_unix())?;
            checkout::find(tx, &id)
        })
        .await?;
    Ok(Json(view))
}
