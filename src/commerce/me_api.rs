//! The customer's side of orders: their order history (`GET /t/{slug}/api/v1/me/orders`), cancelling an unpaid
//! order (`POST /t/{slug}/api/v1/orders/{id}/cancel`) and their address book (`/t/{slug}/api/v1/me/addresses`).
//!
//! Who may call: `/me/…` — the signed-in customer (session cookie with the CSRF header for writes, or an access
//! token with `account:read` / `account:write`), only their own rows. The cancel — the order's owner or the
//! holder of its order token (`?token=`), with a JSON body (`{}`; a cross-site form cannot send one), while the
//! order is `pending_payment`; anyone else gets 404.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cart_api::{Customer, answer};
use super::checkout::{self, Address, OrderView};
use super::orders::{self, OrderListItem};
use crate::app::AppState;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, RequestOrigin, TenantCtx, page_limit};
use crate::http::openapi::ApiErrors;
use crate::identity::api::ApiUser;
use crate::tenants::TenantSlug;

/// Addresses one customer may keep.
pub const MAX_ADDRESSES: i64 = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_orders))
        .routes(routes!(cancel_order))
        .routes(routes!(list_addresses, add_address))
        .routes(routes!(put_address, delete_address))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the customer's orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct MyOrders {
    pub items: Vec<OrderListItem>,
    pub next_cursor: Option<String>,
}

/// The signed-in customer's orders, newest first.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/me/orders",
    tag = "account",
    operation_id = "me_orders",
    params(("slug" = TenantSlug, Path, description = "The tenant"), PageQuery),
    responses((status = 200, description = "A page of orders", body = MyOrders), ApiErrors),
    security(("user_session" = []), ("access_token" = ["account:read"]))
)]
async fn my_orders(user: ApiUser, Query(q): Query<PageQuery>) -> Result<Json<MyOrders>> {
    let limit = page_limit(q.limit)?;
    let cursor = match q.cursor.as_deref() {
        Some(c) => Some(c.parse::<i64>().map_err(|_| Error::validation("cursor must be a next_cursor"))?),
        None => None,
    };
    let customer = user.session.user_id.clone();
    let items = db::with_conn(&user.db.pool, move |conn| {
        let mut stmt = conn.prepare_cached(
            "SELECT id, number, status, email, currency, total, created_at FROM orders
             WHERE customer_id = ?1 AND (?2 IS NULL OR number < ?2) ORDER BY number DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![customer, cursor, limit], |r| {
            Ok(OrderListItem {
                id: r.get(0)?,
                number: format!("#{}", r.get::<_, i64>(1)?),
                status: r.get(2)?,
                email: r.get(3)?,
                currency: r.get(4)?,
                total: r.get(5)?,
                created_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })
    .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|o| o.number.trim_start_matches('#').to_owned()))
        .flatten();
    Ok(Json(MyOrders { items, next_cursor }))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// `POST …/orders/{id}/cancel` (may be `{}`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, at most 200 characters (on the timeline).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Cancels the buyer's own order while it waits for payment; its units go back to stock.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/orders/{id}/cancel",
    tag = "storefront",
    operation_id = "orders_cancel_own",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The order's id"),
        ("token" = Option<String>, Query, description = "The order token")
    ),
    request_body = CancelRequest,
    responses((status = 200, description = "The order, cancelled", body = OrderView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = ["account:write"]))
)]
async fn cancel_order(
    ctx: TenantCtx,
    headers: HeaderMap,
    customer: Customer,
    from: RequestOrigin,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Response {
    let tenant = ctx.tenant.clone();
    let result = async {
        let who = customer.0?;
        let reason: Option<String> = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
        if reason.as_ref().is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control)) {
            return Err(Error::validation("reason must be at most 200 characters without control characters"));
        }
        let mut origin = from.0;
        origin.actor = who.as_deref().map_or_else(|| "guest".to_owned(), |c| format!("user:{c}"));
        let view = ctx
            .db
            .write(move |tx| {
                let order = checkout::find_for(tx, &id, who.as_deref(), q.token.as_deref())?;
                if order.status != "pending_payment" {
                    return Err(Error::InvalidTransition(format!(
                        "an order that is {} cannot be cancelled here; ask the store",
                        order.status
                    )));
                }
                let detail = json!({"reason": reason.unwrap_or_else(|| "cancelled by the buyer".into())});
                orders::transition(tx, &tenant, &id, "cancelled", &origin, detail, crate::now_unix())?;
                checkout::find(tx, &id)
            })
            .await?;
        Ok(Json(view).into_response())
    }
    .await;
    answer(&ctx.tenant, &headers, result)
}

/// A saved address.
#[derive(Serialize, ToSchema)]
pub struct SavedAddress {
    pub id: String,
    pub label: Option<String>,
    pub address: Address,
    pub default: bool,
}

/// `POST` / `PUT` of a saved address.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    /// "Home", "Office", at most 50 characters.
    #[serde(default)]
    pub label: Option<String>,
    pub address: Address,
    /// The address checkouts start with (one per customer).
    #[serde(default)]
    pub default: bool,
}

/// Every saved address of the customer, the default first.
#[derive(Serialize, ToSchema)]
pub struct AddressBook {
    pub items: Vec<SavedAddress>,
}

fn book(conn: &rusqlite::Connection, customer: &str) -> Result<AddressBook> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, label, address, is_default FROM addresses WHERE customer_id = ?1
         ORDER BY is_default DESC, created_at, id",
    )?;
    let rows = stmt.query_map([customer], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
    })?;
    let mut items = Vec::new();
    for row in rows {
        let (id, label, address, default) = row?;
        let address = serde_json::from_str(&address).map_err(Error::internal)?;
        items.push(SavedAddress { id, label, address, default });
    }
    Ok(AddressBook { items })
}

/// The customer's address book.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/me/addresses",
    tag = "account",
    operation_id = "me_addresses",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The address book", body = AddressBook), ApiErrors),
    security(("user_session" = []), ("access_token" = ["account:read"]))
)]
async fn list_addresses(user: ApiUser) -> Result<Json<AddressBook>> {
    let customer = user.session.user_id.clone();
    Ok(Json(db::with_conn(&user.db.pool, move |conn| book(conn, &customer)).await?))
}

fn checked(input: AddressInput) -> Result<(Option<String>, String, bool)> {
    let label = input.label.as_deref().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned);
    if label.as_ref().is_some_and(|l| l.chars().count() > 50 || l.chars().any(char::is_control)) {
        return Err(Error::validation("label must be at most 50 characters without control characters"));
    }
    let address = input.address.checked("address")?;
    Ok((label, serde_json::to_string(&address).map_err(Error::internal)?, input.default))
}

/// Saves an address (at most 20 per customer).
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/me/addresses",
    tag = "account",
    operation_id = "me_addresses_add",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = AddressInput,
    responses((status = 201, description = "The address book", body = AddressBook), ApiErrors),
    security(("user_session" = []), ("access_token" = ["account:write"]))
)]
async fn add_address(user: ApiUser, ApiJson(input): ApiJson<AddressInput>) -> Result<(StatusCode, Json<AddressBook>)> {
    let (label, address, default) = checked(input)?;
    let customer = user.session.user_id.clone();
    let book = user
        .db
        .write(move |tx| {
            let count: i64 =
                tx.query_row("SELECT COUNT(*) FROM addresses WHERE customer_id = ?1", [&customer], |r| r.get(0))?;
            if count >= MAX_ADDRESSES {
                return Err(Error::Unprocessable(format!("an address book holds at most {MAX_ADDRESSES} addresses")));
            }
            let now = crate::now_unix();
            let default = default || count == 0;
            if default {
                tx.execute("UPDATE addresses SET is_default = 0 WHERE customer_id = ?1", [&customer])?;
            }
            tx.execute(
                "INSERT INTO addresses (id, customer_id, label, address, is_default, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![uuid::Uuid::now_v7().to_string(), customer, label, address, default, now],
            )?;
            book(tx, &customer)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(book)))
}

/// Replaces a saved address.
#[utoipa::path(
    put,
    path = "/t/{slug}/api/v1/me/addresses/{id}",
    tag = "account",
    operation_id = "me_addresses_put",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The address")),
    request_body = AddressInput,
    responses((status = 200, description = "The address book", body = AddressBook), ApiErrors),
    security(("user_session" = []), ("access_token" = ["account:write"]))
)]
async fn put_address(
    user: ApiUser,
    Path((_, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<AddressInput>,
) -> Result<Json<AddressBook>> {
    let (label, address, default) = checked(input)?;
    let customer = user.session.user_id.clone();
    let book = user
        .db
        .write(move |tx| {
            let exists = tx
                .query_row("SELECT 1 FROM addresses WHERE id = ?1 AND customer_id = ?2", [&id, &customer], |_| Ok(()))
                .optional()?;
            exists.ok_or(Error::NotFound("address"))?;
            if default {
                tx.execute("UPDATE addresses SET is_default = 0 WHERE customer_id = ?1", [&customer])?;
            }
            tx.execute(
                "UPDATE addresses SET label = ?3, address = ?4, is_default = MAX(is_default, ?5), updated_at = ?6
                 WHERE id = ?1 AND customer_id = ?2",
                params![id, customer, label, address, default, crate::now_unix()],
            )?;
            book(tx, &customer)
        })
        .await?;
    Ok(Json(book))
}

/// Deletes a saved address (the oldest left becomes the default if it was).
#[utoipa::path(
    delete,
    path = "/t/{slug}/api/v1/me/addresses/{id}",
    tag = "account",
    operation_id = "me_addresses_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The address")),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("user_session" = []), ("access_token" = ["account:write"]))
)]
async fn delete_address(
    State(_app): State<AppState>,
    user: ApiUser,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let customer = user.session.user_id.clone();
    user.db
        .write(move |tx| {
            let gone = tx.execute("DELETE FROM addresses WHERE id = ?1 AND customer_id = ?2", [&id, &customer])?;
            if gone == 0 {
                return Err(Error::NotFound("address"));
            }
            tx.execute(
                "UPDATE addresses SET is_default = 1 WHERE id = (SELECT id FROM addresses WHERE customer_id = ?1
                 ORDER BY created_at, id LIMIT 1) AND NOT EXISTS
                 (SELECT 1 FROM addresses WHERE customer_id = ?1 AND is_default = 1)",
                [&customer],
            )?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
