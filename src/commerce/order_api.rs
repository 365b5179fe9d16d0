//! The storefront's checkout and order API: `POST /t/{slug}/api/v1/carts/{id}/checkout` and
//! `GET /t/{slug}/api/v1/orders/{id}`.
//!
//! Who may call: checkout — whoever holds the cart (its id is the capability; a customer's own cart only with
//! their session cookie or an access token with `account:write`), with an `Idempotency-Key`; limited per client IP
//! like cart writes. Reading an order — its owner (session cookie, or an access token with `account:read`) or
//! anyone with its order token (`?token=`); anyone else, and every other tenant, gets 404.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cart_api::{Customer, answer, limit};
use super::checkout::{self, CheckoutAnswer, CheckoutRequest, OrderView, Outcome};
use crate::app::AppState;
use crate::db;
use crate::error::Error;
use crate::http::extract::{ApiJson, TenantCtx};
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(checkout_cart, checkout_preflight)).routes(routes!(read_order, order_preflight))
}

/// Turns the cart into an order: stock taken, the price held to what the buyer was shown (`expected_total` or
/// `quote_id`), the cart gone, the confirmation mailed. Needs an `Idempotency-Key` header: the same key and body
/// answer the same for 24 hours (a duplicate sent while the first runs waits for it); the same key with another
/// body is `idempotency_conflict`. A moved price is 409 `price_changed` with the new `quote`; a short line is 409
/// `out_of_stock` naming every short SKU; nothing is written in either case.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/carts/{id}/checkout",
    tag = "storefront",
    operation_id = "carts_checkout",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The cart's id"),
        ("Idempotency-Key" = String, Header, description = "1-255 visible ASCII characters, new per checkout")
    ),
    request_body = CheckoutRequest,
    responses(
        (status = 201, description = "The order, its token (shown once) and how it is paid", body = CheckoutAnswer),
        ApiErrors
    ),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn checkout_cart(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Response {
    if let Err(err) = limit(&app, &headers, peer) {
        return answer(&ctx.tenant, &headers, Err(err));
    }
    let who = match customer.0 {
        Ok(who) => who,
        Err(err) => return answer(&ctx.tenant, &headers, Err(err)),
    };
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned) else {
        let err = Error::BadRequest("checkout needs an Idempotency-Key header (a new random value per order)".into());
        return answer(&ctx.tenant, &headers, Err(err));
    };
    let result =
        checkout::checkout(&app, &ctx.tenant, &ctx.db, who, id, key, body).await.map(|outcome| match outcome {
            Outcome::Answer(status, body) => {
                (StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED), Json(body)).into_response()
            }
            Outcome::PriceChanged(message, quote) => {
                // The error's shape, with the quote as it is now beside it.
                let (status, code) = Error::PriceChanged(String::new()).status_and_code();
                let body = json!({"error": {"code": code, "message": message}, "quote": quote});
                (status, Json(body)).into_response()
            }
        });
    answer(&ctx.tenant, &headers, result)
}

#[derive(Deserialize)]
struct OrderQuery {
    token: Option<String>,
}

/// The order, for its owner (signed in) or the holder of its order token (`?token=`). Anyone else gets 404.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/orders/{id}",
    tag = "storefront",
    operation_id = "orders_read",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The order's id"),
        ("token" = Option<String>, Query, description = "The order token from the checkout's answer or the mail")
    ),
    responses((status = 200, description = "The order", body = OrderView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn read_order(
    ctx: TenantCtx,
    headers: HeaderMap,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<OrderQuery>,
) -> Response {
    let who = match customer.0 {
        Ok(who) => who,
        Err(err) => return answer(&ctx.tenant, &headers, Err(err)),
    };
    let result =
        db::with_conn(&ctx.db.pool, move |conn| checkout::find_for(conn, &id, who.as_deref(), q.token.as_deref()))
            .await;
    answer(&ctx.tenant, &headers, result.map(|order| Json(order).into_response()))
}

const ORDER_METHODS: &str = "GET, POST, OPTIONS";

store_preflight!(
    checkout_preflight,
    ORDER_METHODS,
    "/t/{slug}/api/v1/carts/{id}/checkout",
    "carts_checkout_preflight",
    "id"
);
store_preflight!(order_preflight, ORDER_METHODS, "/t/{slug}/api/v1/orders/{id}", "orders_read_preflight", "id");
