//! The admin API of a store's orders under `/admin/api/v1/tenants/{slug}/orders`: the list (by status and part of
//! the email), an order with its timeline, shipments and refunds, marking a `manual` order paid, shipping (with
//! tracking events), refunding (with restock) and cancelling (a paid order is refunded in full, its stock goes
//! back). Every status change goes through `orders::transition`. Also the carrier webhook's secret
//! (`PUT …/shipping/webhook`) and the webhook itself (`POST /t/{slug}/shipping/webhook`).
//!
//! Who may call: an operator, or an admin or API token scoped to the tenant; the carrier webhook, a carrier
//! proven by `Gatehouse-Signature` (HMAC-SHA256 of `t.body` with the secret, like our own webhooks).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

use super::checkout::{self, OrderView};
use super::fulfilment::{self, NewShipment, ShipmentView, TrackingUpdate};
use super::order_search::{self, OrderFilter};
use super::orders::{self, OrderEvent, OrderListItem};
use super::payments;
use super::refunds::{self, RefundRequest};
use crate::admin::Actor;
use crate::app::AppState;
use crate::control::mutation::Integration;
use crate::control::{Mutation, tables};
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::TenantCtx;
use crate::http::extract::{ApiJson, RequestOrigin, page_limit};
use crate::http::openapi::ApiErrors;
use crate::identity::audit::Origin;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(read_order))
        .routes(routes!(mark_paid))
        .routes(routes!(cancel_order))
        .routes(routes!(ship_order))
        .routes(routes!(track_shipment))
        .routes(routes!(refund_order))
        .routes(routes!(set_carrier_secret))
        .routes(routes!(carrier_webhook))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OrderQuery {
    /// One of the order statuses.
    status: Option<String>,
    /// Part of the buyer's email.
    email: Option<String>,
    /// The order number (`1001` or `#1001`).
    number: Option<String>,
    /// Made at or after (RFC 3339).
    from: Option<String>,
    /// Made at or before (RFC 3339).
    to: Option<String>,
    /// Total at least (minor units).
    min_total: Option<i64>,
    /// Total at most (minor units).
    max_total: Option<i64>,
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

fn time(value: Option<&str>, field: &str) -> Result<Option<i64>> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| Error::validation(format!("{field} must be an RFC 3339 time like 2026-11-29T00:00:00Z")))
        })
        .transpose()
}

/// The store's orders, newest first, filtered by status, part of the email, number, time and total.
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
    let whole = |value: Option<&str>, field: &str| -> Result<Option<i64>> {
        value
            .map(|v| v.trim().trim_start_matches('#').parse::<i64>())
            .transpose()
            .map_err(|_| Error::validation(format!("{field} must be a whole number")))
    };
    let filter = OrderFilter {
        status: q.status,
        email: q.email.filter(|e| !e.trim().is_empty()).map(|e| e.trim().chars().take(254).collect()),
        number: whole(q.number.as_deref(), "number")?,
        from: time(q.from.as_deref(), "from")?,
        to: time(q.to.as_deref(), "to")?,
        min_total: q.min_total,
        max_total: q.max_total,
        before: whole(q.cursor.as_deref(), "cursor")?,
    };
    let (items, _) = db::with_conn(&db.pool, move |conn| order_search::search(conn, &filter, 0, limit)).await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|o| o.number.trim_start_matches('#').to_owned()))
        .flatten();
    Ok(Json(OrderPage { items, next_cursor }))
}

/// An order with its timeline.
#[derive(Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: OrderView,
    /// The timeline, oldest first.
    pub events: Vec<OrderEvent>,
    pub shipments: Vec<ShipmentView>,
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
        Ok(OrderDetail {
            order: checkout::find(conn, &id)?,
            events: orders::events(conn, &id)?,
            shipments: fulfilment::of_order(conn, &id)?,
        })
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
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = crate::identity::admin::origin(&actor, from);
    let view = db
        .write(move |tx| {
            orders::mark_paid(tx, &tenant, &id, &body.reference, &origin, crate::now_unix())?;
            checkout::find(tx, &id)
        })
        .await?;
    Ok(Json(view))
}

/// Cancels an order that is `pending_payment` or `paid`; its units and discount-code uses go back, and a paid
/// order's total is refunded through its provider (recorded as a refund for `manual` orders).
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
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = crate::identity::admin::origin(&actor, from);
    refunds::cancel(&app, &tenant, &db, id.clone(), origin).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| checkout::find(conn, &id)).await?))
}

/// Ships some or all of a paid order's units; the shipment that leaves nothing unshipped moves the order to
/// `fulfilled` (the status mail links the tracking page).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/orders/{id}/shipments",
    tag = "store",
    operation_id = "orders_ship",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The order's id")),
    request_body = NewShipment,
    responses((status = 201, description = "The shipment", body = ShipmentView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn ship_order(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<NewShipment>,
) -> Result<(StatusCode, Json<ShipmentView>)> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = crate::identity::admin::origin(&actor, from);
    let shipment = db.write(move |tx| fulfilment::create(tx, &tenant, &id, body, &origin, crate::now_unix())).await?;
    Ok((StatusCode::CREATED, Json(shipment)))
}

/// Adds a tracking event; the last shipment delivered moves the order to `delivered`.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/orders/{id}/shipments/{sid}/events",
    tag = "store",
    operation_id = "orders_track",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The order's id"),
        ("sid" = String, Path, description = "The shipment's id")
    ),
    request_body = TrackingUpdate,
    responses((status = 200, description = "The shipment", body = ShipmentView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn track_shipment(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id, sid)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<TrackingUpdate>,
) -> Result<Json<ShipmentView>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = crate::identity::admin::origin(&actor, from);
    let shipment =
        db.write(move |tx| fulfilment::track(tx, &tenant, &id, &sid, body, &origin, crate::now_unix())).await?;
    Ok(Json(shipment))
}

/// Refunds part or all of a paid order (through Stripe for `stripe` orders; recorded for `manual` ones, whose
/// money the merchant returns), optionally putting its units back in stock.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/orders/{id}/refunds",
    tag = "store",
    operation_id = "orders_refund",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The order's id")),
    request_body = RefundRequest,
    responses((status = 200, description = "The order after the refund", body = OrderView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn refund_order(
    State(app): State<AppState>,
    actor: Actor,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RefundRequest>,
) -> Result<Json<OrderView>> {
    let (tenant, db) = actor.open_tenant(&app, &slug).await?;
    let origin = crate::identity::admin::origin(&actor, from);
    refunds::refund(&app, &tenant, &db, id.clone(), body, origin).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| checkout::find(conn, &id)).await?))
}

/// The carrier webhook's secret, shown once.
#[derive(Serialize, ToSchema)]
pub struct CarrierSecret {
    /// Sign each request's `Gatehouse-Signature` with this.
    pub secret: String,
    /// Where the carrier posts tracking updates.
    pub webhook_url: String,
}

/// Makes a new secret for the carrier webhook (the old one stops working).
#[utoipa::path(
    put,
    path = "/admin/api/v1/tenants/{slug}/shipping/webhook",
    tag = "store",
    operation_id = "shipping_webhook_secret",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The new secret, shown once", body = CarrierSecret), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn set_carrier_secret(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
) -> Result<Json<CarrierSecret>> {
    let (tenant, _) = actor.open_tenant(&app, &slug).await?;
    let secret = crate::crypto::random_token("whsec_");
    let sealed = app.master_key.seal(
        &serde_json::to_vec(&json!({ "secret": secret })).map_err(Error::internal)?,
        &format!("integration:carrier:{}", tenant.slug),
    );
    let integration = Integration { config: json!({}), secrets_sealed: sealed, updated_at: crate::now_unix() };
    app.control
        .apply(Mutation::SetTenantIntegration {
            slug: tenant.slug.clone(),
            kind: "carrier".into(),
            integration: Some(integration),
        })
        .await?;
    let webhook_url = format!("{}/shipping/webhook", crate::oidc::state::issuer(&app, tenant.slug.as_str()));
    Ok(Json(CarrierSecret { secret, webhook_url }))
}

/// A carrier's tracking update.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CarrierUpdate {
    /// The carrier's id of this update, 1-100 characters: an update is applied once (a replay answers the
    /// shipment as it is).
    pub event_id: String,
    pub tracking_number: String,
    /// `in_transit`, `out_for_delivery`, `delivered` or `failed_attempt`.
    pub status: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// A carrier's signed tracking update (`Gatehouse-Signature: t=…,v1=…`, HMAC-SHA256 of `t.body` with the secret
/// from `PUT …/shipping/webhook`, five minutes' tolerance); the shipment is found by its tracking number, and each
/// `event_id` is applied once.
#[utoipa::path(
    post,
    path = "/t/{slug}/shipping/webhook",
    tag = "storefront",
    operation_id = "shipping_webhook",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("Gatehouse-Signature" = String, Header, description = "t=…,v1=…")
    ),
    request_body = CarrierUpdate,
    responses((status = 200, description = "The shipment", body = ShipmentView), ApiErrors),
    security(())
)]
async fn carrier_webhook(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ShipmentView>> {
    let slug = ctx.tenant.slug.clone();
    let found = app.control.read(move |conn| tables::tenant_integration(conn, &slug, "carrier")).await?;
    let found = found.ok_or(Error::NotFound("carrier webhook"))?;
    let plain = app.master_key.open(&found.secrets_sealed, &format!("integration:carrier:{}", ctx.tenant.slug))?;
    let secret: serde_json::Value = serde_json::from_slice(&plain).map_err(Error::internal)?;
    let signature = headers
        .get("gatehouse-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(Error::InvalidSignature("the Gatehouse-Signature header is missing"))?;
    payments::verify_signature(signature, &body, secret["secret"].as_str().unwrap_or_default(), crate::now_unix())?;
    let update: CarrierUpdate =
        serde_json::from_slice(&body).map_err(|e| Error::validation(format!("the update is not valid: {e}")))?;
    let event_id = update.event_id.trim().to_owned();
    if event_id.is_empty() || event_id.chars().count() > 100 || event_id.chars().any(char::is_control) {
        return Err(Error::validation("event_id must be 1-100 characters without control characters"));
    }
    let number = update.tracking_number.clone();
    let (order, shipment) = db::with_conn(&ctx.db.pool, move |conn| fulfilment::by_tracking_number(conn, &number))
        .await?
        .ok_or(Error::NotFound("shipment"))?;
    let origin = Origin { actor: "carrier".into(), ..Default::default() };
    let tenant = ctx.tenant.clone();
    let tracking = TrackingUpdate { status: update.status, note: update.note };
    let shipment = ctx
        .db
        .write(move |tx| {
            let now = crate::now_unix();
            let first = tx.execute(
                "INSERT OR IGNORE INTO provider_events (provider, event_id, kind, outcome, received_at)
                 VALUES ('carrier', ?1, ?2, 'applied', ?3)",
                rusqlite::params![event_id, tracking.status, now],
            )?;
            if first == 0 {
                return fulfilment::of_order(tx, &order)?
                    .into_iter()
                    .find(|s| s.id == shipment)
                    .ok_or(Error::NotFound("shipment"));
            }
            fulfilment::track(tx, &tenant, &order, &shipment, tracking, &origin, now)
        })
        .await?;
    Ok(Json(shipment))
}
