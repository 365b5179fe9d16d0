//! The storefront's cart API under `/t/{slug}/api/v1/carts`, and the admin API of the store rules the pricing
//! reads (discount codes, tax rates, shipping methods) under `/admin/api/v1/tenants/{slug}`.
//!
//! Who may call: carts — anyone holding the cart's id (it is the capability; the store must be active), and for a
//! cart a customer owns only that customer (session cookie, or an access token with `account:read` for reads and
//! `account:write` for writes); `claim` needs a signed-in customer; writes limited per client IP
//! (`GATEHOUSE_STORE_PER_MINUTE`); rules — an operator or an actor scoped to the tenant.
//! Every cart write answers the new quote.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::carts::{self, AddLine, ApplyCode, CartKey, CartView, SetQuantity, SetShipping};
use super::quoting;
use super::rules::{self, DiscountCode, ShippingMethod, TaxRate};
use crate::admin::Actor;
use crate::app::AppState;
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, TenantCtx, client_ip};
use crate::http::openapi::ApiErrors;
use crate::identity::api::ApiUser;
use crate::identity::sessions::Stage;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_cart, carts_preflight))
        .routes(routes!(read_cart, cart_preflight))
        .routes(routes!(add_line, lines_preflight))
        .routes(routes!(set_quantity, remove_line, line_preflight))
        .routes(routes!(apply_code, codes_preflight))
        .routes(routes!(remove_code, code_preflight))
        .routes(routes!(set_shipping, shipping_preflight))
        .routes(routes!(claim, claim_preflight))
        .routes(routes!(create_code, list_codes))
        .routes(routes!(delete_code))
        .routes(routes!(create_tax_rate, list_tax_rates))
        .routes(routes!(delete_tax_rate))
        .routes(routes!(create_shipping, list_shipping))
        .routes(routes!(delete_shipping))
}

/// The per-IP limit of cart writes.
pub(super) fn limit(app: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Result<()> {
    use governor::clock::{Clock, DefaultClock};
    let ip = client_ip(headers, peer.ip(), app.config.trust_proxy);
    app.store_limiter.check_key(&ip).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        Error::RateLimited { retry_after_secs: wait.as_secs().max(1) }
    })
}

/// The signed-in customer of a cart request, if any. A bearer access token must be valid and carry
/// `account:read` (reads) or `account:write` (writes) of a first-party client, else the request fails with 401 or
/// 403; a session cookie counts when its session is active (a stale cookie is anonymous). The outcome is kept, not
/// raised, so the error answer carries CORS like every cart answer.
pub struct Customer(pub(super) Result<Option<String>>);

impl axum::extract::FromRequestParts<AppState> for Customer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
        // Another scheme (a proxy's Basic credentials) is not the customer's: the request is read without it.
        if bearer {
            let user = ApiUser::from_request_parts(parts, app).await;
            return Ok(Customer(user.map(|u| Some(u.session.user_id))));
        }
        let found = async {
            let TenantCtx { tenant, db } = TenantCtx::from_request_parts(parts, app).await?;
            let session = crate::identity::flows::current_session(&tenant, &db, &parts.headers).await?;
            Ok(session.filter(|s| s.stage == Stage::Active).map(|s| s.user_id))
        };
        Ok(Customer(found.await))
    }
}

/// Runs a cart change (within the per-IP limit) and answers the cart priced after it (or the error), with CORS
/// for the store's origins.
async fn change(
    app: &AppState,
    peer: SocketAddr,
    ctx: TenantCtx,
    headers: &HeaderMap,
    customer: Customer,
    id: String,
    f: impl FnOnce(&crate::email::outbox::TenantTx<'_>, &crate::control::Tenant, &CartKey<'_>, i64) -> Result<()>
    + Send
    + 'static,
) -> Response {
    if let Err(err) = limit(app, headers, peer) {
        return answer(&ctx.tenant, headers, Err(err));
    }
    let who = match customer.0 {
        Ok(who) => who,
        Err(err) => return answer(&ctx.tenant, headers, Err(err)),
    };
    let tenant = ctx.tenant.clone();
    let result = ctx
        .db
        .write(move |tx| {
            let now = crate::now_unix();
            let key = CartKey { id: &id, customer: who.as_deref() };
            // Unpaid orders past their time give their stock back before a cart asks for it.
            super::orders::expire_due(tx, &tenant, now)?;
            f(tx, &tenant, &key, now)?;
            carts::view(tx, &tenant, &key, now)
        })
        .await;
    // The change is saved: a client must not retry it because the new prices could not be computed.
    let result = priced(app, &ctx, result).await.map_err(|err| match err {
        Error::PricingUnavailable(why) => Error::PricingUnavailable(format!("{why}; the change was saved")),
        other => other,
    });
    answer(&ctx.tenant, headers, result.map(|view| Json(view).into_response()))
}

/// A cart read or written, priced by `quoting::finish`.
async fn priced(app: &AppState, ctx: &TenantCtx, draft: Result<carts::Draft>) -> Result<CartView> {
    quoting::finish(app, &ctx.tenant.slug, draft?).await
}

/// A cart answer, success or error, with CORS (a storefront must be able to read `out_of_stock`).
pub(super) fn answer(tenant: &crate::control::Tenant, headers: &HeaderMap, result: Result<Response>) -> Response {
    super::store_api::cors(tenant, headers, result.unwrap_or_else(IntoResponse::into_response))
}

/// Creates an empty cart; its `id` is shown once and is the only key to it.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/carts",
    tag = "storefront",
    operation_id = "carts_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 201, description = "The new cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn create_cart(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
) -> Response {
    if let Err(err) = limit(&app, &headers, peer) {
        return answer(&ctx.tenant, &headers, Err(err));
    }
    let who = match customer.0 {
        Ok(who) => who,
        Err(err) => return answer(&ctx.tenant, &headers, Err(err)),
    };
    let tenant = ctx.tenant.clone();
    let result = ctx
        .db
        .write(move |tx| {
            let now = crate::now_unix();
            let id = carts::create(tx, &tenant, who.as_deref(), now)?;
            carts::view(tx, &tenant, &CartKey { id: &id, customer: who.as_deref() }, now)
        })
        .await;
    let result = priced(&app, &ctx, result).await;
    answer(&ctx.tenant, &headers, result.map(|view| (StatusCode::CREATED, Json(view)).into_response()))
}

/// The cart, priced now.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/carts/{id}",
    tag = "storefront",
    operation_id = "carts_read",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The cart's id")),
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn read_cart(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let who = match customer.0 {
        Ok(who) => who,
        Err(err) => return answer(&ctx.tenant, &headers, Err(err)),
    };
    let tenant = ctx.tenant.clone();
    let result = db::with_conn(&ctx.db.pool, move |conn| {
        carts::view(conn, &tenant, &CartKey { id: &id, customer: who.as_deref() }, crate::now_unix())
    })
    .await;
    let result = priced(&app, &ctx, result).await;
    answer(&ctx.tenant, &headers, result.map(|view| Json(view).into_response()))
}

/// Makes the cart the signed-in customer's, merging their other carts into it (lines added up, codes and the
/// destination kept). Needs a signed-in customer: the session cookie (with `X-CSRF-Token`, or a JSON body) or an
/// access token with `account:write`. Another customer's cart is not found.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/carts/{id}/claim",
    tag = "storefront",
    operation_id = "carts_claim",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The cart's id")),
    responses((status = 200, description = "The customer's cart, priced", body = CartView), ApiErrors),
    security(("user_session" = []), ("access_token" = []))
)]
async fn claim(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    user: std::result::Result<ApiUser, Error>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let customer = Customer(user.map(|u| Some(u.session.user_id)));
    change(&app, peer, ctx, &headers, customer, id, carts::claim).await
}

/// Adds a SKU (or raises its quantity); refused with `out_of_stock` when the store has too few.
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/carts/{id}/lines",
    tag = "storefront",
    operation_id = "carts_add_line",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The cart's id")),
    request_body = AddLine,
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn add_line(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<AddLine>,
) -> Response {
    change(&app, peer, ctx, &headers, customer, id, move |tx, tenant, id, now| {
        carts::add_line(tx, tenant, id, &body, now)
    })
    .await
}

/// Sets a line's quantity.
#[utoipa::path(
    patch,
    path = "/t/{slug}/api/v1/carts/{id}/lines/{sku}",
    tag = "storefront",
    operation_id = "carts_set_quantity",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The cart's id"),
        ("sku" = String, Path, description = "The line's SKU")
    ),
    request_body = SetQuantity,
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn set_quantity(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id, sku)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<SetQuantity>,
) -> Response {
    change(&app, peer, ctx, &headers, customer, id, move |tx, tenant, id, now| {
        carts::set_quantity(tx, tenant, id, &sku, body.quantity, now)
    })
    .await
}

/// Removes a line.
#[utoipa::path(
    delete,
    path = "/t/{slug}/api/v1/carts/{id}/lines/{sku}",
    tag = "storefront",
    operation_id = "carts_remove_line",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The cart's id"),
        ("sku" = String, Path, description = "The line's SKU")
    ),
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn remove_line(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id, sku)): Path<(String, String, String)>,
) -> Response {
    change(&app, peer, ctx, &headers, customer, id, move |tx, tenant, id, now| {
        carts::remove_line(tx, tenant, id, &sku, now)
    })
    .await
}

/// Applies a discount code; refused with `discount_invalid` and the reason (expired, used up, minimum not met,
/// not applicable, not combinable).
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/carts/{id}/discount-codes",
    tag = "storefront",
    operation_id = "carts_apply_code",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The cart's id")),
    request_body = ApplyCode,
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn apply_code(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ApplyCode>,
) -> Response {
    change(&app, peer, ctx, &headers, customer, id, move |tx, tenant, id, now| {
        carts::apply_code(tx, tenant, id, &body, now)
    })
    .await
}

/// Removes a discount code from the cart.
#[utoipa::path(
    delete,
    path = "/t/{slug}/api/v1/carts/{id}/discount-codes/{code}",
    tag = "storefront",
    operation_id = "carts_remove_code",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The cart's id"),
        ("code" = String, Path, description = "The code")
    ),
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn remove_code(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id, code)): Path<(String, String, String)>,
) -> Response {
    change(&app, peer, ctx, &headers, customer, id, move |tx, tenant, id, now| {
        carts::remove_code(tx, tenant, id, &code, now)
    })
    .await
}

/// Sets the destination and, optionally, the shipping method.
#[utoipa::path(
    put,
    path = "/t/{slug}/api/v1/carts/{id}/shipping",
    tag = "storefront",
    operation_id = "carts_set_shipping",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The cart's id")),
    request_body = SetShipping,
    responses((status = 200, description = "The cart, priced", body = CartView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn set_shipping(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ctx: TenantCtx,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<SetShipping>,
) -> Response {
    change(&app, peer, ctx, &headers, customer, id, move |tx, tenant, id, now| {
        carts::set_shipping(tx, tenant, id, &body, now)
    })
    .await
}

// ---- CORS preflights ----

/// Carts are written from browsers: their preflights allow every method the cart API uses.
const CART_METHODS: &str = "GET, POST, PATCH, PUT, DELETE, OPTIONS";

store_preflight!(carts_preflight, CART_METHODS, "/t/{slug}/api/v1/carts", "carts_create_preflight");
store_preflight!(cart_preflight, CART_METHODS, "/t/{slug}/api/v1/carts/{id}", "carts_read_preflight", "id");
store_preflight!(lines_preflight, CART_METHODS, "/t/{slug}/api/v1/carts/{id}/lines", "carts_lines_preflight", "id");
store_preflight!(
    line_preflight,
    CART_METHODS,
    "/t/{slug}/api/v1/carts/{id}/lines/{sku}",
    "carts_line_preflight",
    "id",
    "sku"
);
store_preflight!(
    codes_preflight,
    CART_METHODS,
    "/t/{slug}/api/v1/carts/{id}/discount-codes",
    "carts_codes_preflight",
    "id"
);
store_preflight!(
    code_preflight,
    CART_METHODS,
    "/t/{slug}/api/v1/carts/{id}/discount-codes/{code}",
    "carts_code_preflight",
    "id",
    "code"
);
store_preflight!(
    shipping_preflight,
    CART_METHODS,
    "/t/{slug}/api/v1/carts/{id}/shipping",
    "carts_shipping_preflight",
    "id"
);

store_preflight!(claim_preflight, CART_METHODS, "/t/{slug}/api/v1/carts/{id}/claim", "carts_claim_preflight", "id");

// ---- store rules (admin) ----

#[derive(Serialize, ToSchema)]
struct Deleted {
    deleted: bool,
}

/// Every discount code.
#[derive(Serialize, ToSchema)]
struct CodeList {
    items: Vec<DiscountCode>,
    next_cursor: Option<String>,
}

/// Creates a discount code.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/discount-codes",
    tag = "store",
    operation_id = "discount_codes_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = DiscountCode,
    responses((status = 201, description = "Created", body = DiscountCode), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create_code(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<DiscountCode>,
) -> Result<(StatusCode, Json<DiscountCode>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let code = body.clone();
    db.write(move |tx| rules::create_code(tx, &code, crate::now_unix())).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Lists the discount codes.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/discount-codes",
    tag = "store",
    operation_id = "discount_codes_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The codes", body = CodeList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_codes(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<CodeList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(CodeList { items: db::with_conn(&db.pool, |c| rules::list_codes(c)).await?, next_cursor: None }))
}

/// Deletes a discount code (carts holding it stop getting it).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/discount-codes/{code}",
    tag = "store",
    operation_id = "discount_codes_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("code" = String, Path, description = "The code")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_code(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, code)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    db.write(move |tx| rules::delete_code(tx, &code)).await?;
    Ok(Json(Deleted { deleted: true }))
}

#[derive(Serialize, ToSchema)]
struct TaxList {
    items: Vec<TaxRate>,
    next_cursor: Option<String>,
}

/// Creates the tax rate of a country (or of one of its regions).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/tax-rates",
    tag = "store",
    operation_id = "tax_rates_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = TaxRate,
    responses((status = 201, description = "Created", body = TaxRate), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create_tax_rate(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<TaxRate>,
) -> Result<(StatusCode, Json<TaxRate>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok((StatusCode::CREATED, Json(db.write(move |tx| rules::create_tax_rate(tx, &body)).await?)))
}

/// Lists the tax rates.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/tax-rates",
    tag = "store",
    operation_id = "tax_rates_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The rates", body = TaxList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_tax_rates(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<TaxList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(TaxList { items: db::with_conn(&db.pool, |c| rules::list_tax_rates(c)).await?, next_cursor: None }))
}

/// Deletes a tax rate.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/tax-rates/{id}",
    tag = "store",
    operation_id = "tax_rates_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("id" = String, Path, description = "The rate's id")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_tax_rate(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    db.write(move |tx| rules::delete_tax_rate(tx, &id)).await?;
    Ok(Json(Deleted { deleted: true }))
}

#[derive(Serialize, ToSchema)]
struct ShippingList {
    items: Vec<ShippingMethod>,
    next_cursor: Option<String>,
}

/// Creates a shipping method.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/shipping-methods",
    tag = "store",
    operation_id = "shipping_methods_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = ShippingMethod,
    responses((status = 201, description = "Created", body = ShippingMethod), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create_shipping(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<ShippingMethod>,
) -> Result<(StatusCode, Json<ShippingMethod>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let method = body.clone();
    db.write(move |tx| rules::create_shipping(tx, &method, crate::now_unix())).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Lists the shipping methods.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/shipping-methods",
    tag = "store",
    operation_id = "shipping_methods_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The methods", body = ShippingList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_shipping(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
) -> Result<Json<ShippingList>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(ShippingList { items: db::with_conn(&db.pool, |c| rules::list_shipping(c)).await?, next_cursor: None }))
}

/// Deletes a shipping method.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/shipping-methods/{code}",
    tag = "store",
    operation_id = "shipping_methods_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant"), ("code" = String, Path, description = "The method's code")),
    responses((status = 200, description = "Deleted", body = Deleted), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_shipping(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, code)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    db.write(move |tx| rules::delete_shipping(tx, &code)).await?;
    Ok(Json(Deleted { deleted: true }))
}
