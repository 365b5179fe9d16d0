//! Checkout: a cart becomes an order (`checkout`), and an order is read by its owner or with its order token
//! (`find_for`). The quote is taken outside the write (pricing plugins may take their whole deadline); then ONE
//! IMMEDIATE tenant transaction re-reads the cart's prices and codes (a change is `price_changed`), takes the stock
//! of every tracked line (a short line refuses the whole order with `out_of_stock`, naming every short SKU),
//! numbers the order (the next number after the largest: gap-free, since writers are serialised), redeems the
//! discount codes under their limits, writes the order, its lines, its first timeline event and the ledger
//! movements, deletes the cart, queues the confirmation mail, and stores the answer under the request's
//! `Idempotency-Key` (24 hours; the same key with another body is `idempotency_conflict`). A duplicate that
//! arrives while the first is running waits for the write lock and then finds the stored answer.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::carts::{self, CartKey, Draft};
use super::catalog::{self, WriteCtx};
use super::inventory::{self, MovementKind};
use super::pricing::{self, Quote};
use super::quoting;
use crate::app::App;
use crate::control::Tenant;
use crate::db::registry::TenantDb;
use crate::email::outbox::{TenantTx, enqueue_email, enqueue_event};
use crate::email::{EmailKind, OrderAmounts, OrderSummary};
use crate::error::{Error, Result};
use crate::webhooks::events::Event;

/// How long an idempotency key answers the same.
const IDEMPOTENCY_SECS: i64 = 24 * 3600;
/// The first order number of a tenant.
const FIRST_NUMBER: i64 = 1001;

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
}

impl Address {
    /// Checks every field (`{what}.{field}` names the one that is wrong) and upper-cases the country.
    pub(crate) fn checked(mut self, what: &str) -> Result<Address> {
        let text = |field: &str, value: &str, required: bool| -> Result<()> {
            let length = value.trim().chars().count();
            if (required && length == 0) || length > 200 || value.chars().any(char::is_control) {
                return Err(Error::Unprocessable(format!(
                    "{what}.{field} must be {} 200 characters without control characters",
                    if required { "1 to" } else { "at most" }
                )));
            }
            Ok(())
        };
        text("name", &self.name, true)?;
        text("line1", &self.line1, true)?;
        text("line2", self.line2.as_deref().unwrap_or(""), false)?;
        text("city", &self.city, true)?;
        text("postal_code", &self.postal_code, true)?;
        text("region", self.region.as_deref().unwrap_or(""), false)?;
        self.country = self.country.trim().to_ascii_uppercase();
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::Unprocessable(format!("{what}.country must be an ISO 3166 alpha-2 code like DE")));
        }
        Ok(self)
    }
}

/// `POST /t/{slug}/api/v1/carts/{id}/checkout`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub email: String,
    pub shipping_address: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    /// `manual` (bank transfer, cash on delivery: an admin marks the order paid) or `stripe` (when the store set
    /// up its Stripe keys; the answer carries the PaymentIntent's `client_secret`).
    pub payment_method: String,
    /// The total the buyer was shown (minor units); give this or `quote_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_total: Option<i64>,
    /// The `quote_id` of the cart's quote the buyer was shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineView {
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: i64,
    /// The line after its own discounts and taxes.
    pub total: i64,
}

/// An order as its buyer and the APIs see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    /// `#1001`, …
    pub number: String,
    /// `pending_payment`, `paid`, `fulfilled`, `delivered`, `cancelled`, `refunded` or `partially_refunded`.
    pub status: String,
    pub email: String,
    pub currency: String,
    pub subtotal: i64,
    pub discount_total: i64,
    pub shipping_total: i64,
    pub tax_total: i64,
    pub fee_total: i64,
    pub total: i64,
    pub lines: Vec<OrderLineView>,
    pub shipping_address: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    pub payment_method: String,
    /// `pending`, `unavailable`, `requires_payment`, `succeeded` or `failed`.
    pub payment_status: String,
    /// Minor units refunded so far.
    pub refunded_total: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// How the order is paid.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub method: String,
    /// `pending` (manual: until an admin marks the order paid), `requires_payment` (stripe: pay with
    /// `client_secret`), `unavailable` (the provider could not be reached; `POST …/orders/{id}/payment` asks
    /// again), `succeeded` or `failed` (declined; the buyer may try again with the same `client_secret`).
    pub status: String,
    /// Stripe's PaymentIntent client secret, for Stripe.js.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// The checkout's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutAnswer {
    pub order: OrderView,
    /// Reads this one order (`GET …/orders/{id}?token=`); shown once, and in the confirmation mail's link.
    pub order_token: String,
    pub payment: PaymentView,
}

/// What a checkout ended in: an answer to send (new or stored under its key), or a price that moved.
pub enum Outcome {
    /// Status and body, as first answered.
    Answer(u16, Value),
    /// The cart's prices or codes changed since the quote the buyer saw; here is the new quote.
    PriceChanged(String, Box<Quote>),
}

/// The key and body of a checkout, as its idempotency record knows them.
/// The caller is part of it: another customer (or a guest) sending the same key, cart and body is refused as a
/// conflict instead of being answered with the first buyer's order and token.
fn request_hash(customer: Option<&str>, cart_id: &str, body: &CheckoutRequest) -> Result<String> {
    let canonical = serde_json::to_string(body).map_err(Error::internal)?;
    let who = customer.unwrap_or("guest");
    Ok(crate::crypto::hash_token(&format!("{who}\n{cart_id}\n{canonical}")))
}

/// The stored answer of `key`: `Some` when the same request was answered (the caller repeats it), an error when
/// the key was used for another request.
fn stored(conn: &Connection, key: &str, hash: &str, now: i64) -> Result<Option<(u16, Value)>> {
    let row: Option<(String, u16, String)> = conn
        .query_row(
            "SELECT request_hash, status, body FROM idempotency_keys WHERE key = ?1 AND created_at > ?2",
            params![key, now - IDEMPOTENCY_SECS],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match row {
        None => Ok(None),
        Some((h, _, _)) if h != hash => Err(Error::IdempotencyConflict),
        Some((_, status, body)) => Ok(Some((status, serde_json::from_str(&body).map_err(Error::internal)?))),
    }
}

/// Checks the request itself (nothing read yet).
fn check(key: &str, body: CheckoutRequest) -> Result<CheckoutRequest> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadRequest("the Idempotency-Key header must be 1-255 visible ASCII characters".into()));
    }
    let email = body.email.trim().to_owned();
    let ok = matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.'))
        && email.len() <= 254
        && !email.contains(char::is_whitespace);
    if !ok {
        return Err(Error::Unprocessable("email must be an email address".into()));
    }
    if !matches!(body.payment_method.as_str(), "manual" | "stripe") {
        return Err(Error::Unprocessable("payment_method must be manual or stripe".into()));
    }
    if body.expected_total.is_some() == body.quote_id.is_some() {
        return Err(Error::Unprocessable("give exactly one of expected_total and quote_id".into()));
    }
    Ok(CheckoutRequest {
        email,
        shipping_address: body.shipping_address.checked("shipping_address")?,
        billing_address: body.billing_address.map(|a| a.checked("billing_address")).transpose()?,
        ..body
    })
}

/// Checks out cart `cart_id` for `customer` (signed in) or a guest.
pub async fn checkout(
    app: &App,
    tenant: &std::sync::Arc<Tenant>,
    db: &TenantDb,
    customer: Option<String>,
    cart_id: String,
    key: String,
    body: CheckoutRequest,
) -> Result<Outcome> {
    let body = check(&key, body)?;
    let hash = request_hash(customer.as_deref(), &cart_id, &body)?;
    let earlier = || {
        let (k, h) = (key.clone(), hash.clone());
        crate::db::with_conn(&db.pool, move |conn| stored(conn, &k, &h, crate::now_unix()))
    };
    if let Some((status, answer)) = earlier().await? {
        return replayed(app, tenant, db, status, answer).await;
    }
    if body.payment_method == "stripe" && super::payments::stripe_secrets(app, &tenant.slug).await?.is_none() {
        return Err(Error::Unprocessable("payment_method stripe is not set up for this store".into()));
    }
    // The quote the buyer is held to, with the plugins, outside the write.
    let (draft, quote) = match priced(app, tenant, db, &cart_id, customer.as_deref()).await {
        // A duplicate whose first request has just turned the cart into the order answers as the first did.
        Err(Error::NotFound(what)) => match earlier().await? {
            Some((status, answer)) => return replayed(app, tenant, db, status, answer).await,
            None => return Err(Error::NotFound(what)),
        },
        other => other?,
    };
    if draft.input.lines.is_empty() {
        return Err(Error::Unprocessable("the cart is empty".into()));
    }
    // Tax and shipping were priced for the cart's destination: the order ships there.
    let destination = draft.view.country.as_deref();
    if destination != Some(body.shipping_address.country.as_str()) {
        return Err(Error::Unprocessable(format!(
            "shipping_address.country {} is not the cart's destination ({}); set it with PUT …/carts/{{id}}/shipping",
            body.shipping_address.country,
            destination.unwrap_or("none set")
        )));
    }
    if quote.degraded {
        return Err(Error::PricingUnavailable("a pricing plugin failed; the order cannot be priced now".into()));
    }
    let shown = match (&body.expected_total, &body.quote_id) {
        (Some(total), _) => *total == quote.total,
        (_, Some(id)) => *id == quote.quote_id,
        _ => false,
    };
    if !shown {
        return Ok(Outcome::PriceChanged("the price changed since it was shown".into(), Box::new(quote)));
    }
    let token = crate::crypto::random_token("gho_");
    let (cart_again, customer_again) = (cart_id.clone(), customer.clone());
    let tenant_for_tx = tenant.clone();
    let base_url = crate::oidc::state::issuer(app, tenant.slug.as_str());
    let written = db
        .write(move |tx| {
            let now = crate::now_unix();
            if let Some(answer) = stored(tx, &key, &hash, now)? {
                return Ok(Some(answer));
            }
            // Unpaid orders past their time give their stock back before this one takes any.
            super::orders::expire_due(tx, &tenant_for_tx, now)?;
            let order = Pending {
                tenant: &tenant_for_tx,
                base_url: &base_url,
                cart_id: &cart_id,
                customer: customer.as_deref(),
                now,
            };
            let answer = order.write(tx, &draft, &quote, &body, &token, &key)?;
            let answer = serde_json::to_value(&answer).map_err(Error::internal)?;
            tx.execute("DELETE FROM idempotency_keys WHERE created_at <= ?1", [now - IDEMPOTENCY_SECS])?;
            tx.execute(
                "INSERT INTO idempotency_keys (key, request_hash, status, body, created_at) VALUES (?1, ?2, 201, ?3, ?4)",
                params![key, hash, answer.to_string(), now],
            )?;
            Ok(Some((201, answer)))
        })
        .await;
    match written {
        Ok(Some((status, answer))) => replayed(app, tenant, db, status, answer).await,
        Ok(None) => Err(Error::internal("checkout wrote nothing")),
        Err(Error::Conflict(why)) if why.starts_with(PRICE_MOVED) => {
            // The cart moved while this request waited for the write: the answer carries the quote as it is now.
            let (_, fresh) = priced(app, tenant, db, &cart_again, customer_again.as_deref()).await?;
            Ok(Outcome::PriceChanged(why[PRICE_MOVED.len()..].to_owned(), Box::new(fresh)))
        }
        Err(err) => Err(err),
    }
}

/// A checkout's answer, first or stored: a card payment not set up yet is asked of the provider now (once per
/// order, whichever request gets there first), and the answer carries it.
async fn replayed(app: &App, tenant: &Tenant, db: &TenantDb, status: u16, mut answer: Value) -> Result<Outcome> {
    let unsettled = answer["payment"]["method"] == "stripe"
        && matches!(answer["payment"]["status"].as_str(), Some("pending" | "unavailable"));
    if unsettled && let Some(id) = answer["order"]["id"].as_str().map(str::to_owned) {
        let payment = super::payment_api::ensure(app, tenant, db, &id).await?;
        answer["payment"] = serde_json::to_value(payment).map_err(Error::internal)?;
    }
    Ok(Outcome::Answer(status, answer))
}

/// The cart and its quote (with the tenant's pricing plugins) as they are now.
async fn priced(
    app: &App,
    tenant: &std::sync::Arc<Tenant>,
    db: &TenantDb,
    cart_id: &str,
    customer: Option<&str>,
) -> Result<(Draft, Quote)> {
    let (t, id, who) = (tenant.clone(), cart_id.to_owned(), customer.map(str::to_owned));
    // One read transaction: the cart and its lines from the same snapshot (a checkout may delete both meanwhile).
    let draft = crate::db::with_conn(&db.pool, move |conn| {
        let snapshot = conn.transaction()?;
        carts::view(&snapshot, &t, &CartKey { id: &id, customer: who.as_deref() }, crate::now_unix())
    })
    .await?;
    let quote = quoting::finish(app, &tenant.slug, draft.clone()).await?.quote;
    Ok((draft, quote))
}

/// Marks a conflict raised inside the transaction as a price change (the caller answers `price_changed`).
const PRICE_MOVED: &str = "price moved: ";

/// An order being written inside the checkout's transaction.
struct Pending<'a> {
    tenant: &'a Tenant,
    /// The tenant's public base, `{public_url}/t/{slug}`, for the confirmation mail's link.
    base_url: &'a str,
    cart_id: &'a str,
    customer: Option<&'a str>,
    now: i64,
}

impl Pending<'_> {
    fn write(
        &self,
        tx: &TenantTx<'_>,
        draft: &Draft,
        quote: &Quote,
        body: &CheckoutRequest,
        token: &str,
        idempotency_key: &str,
    ) -> Result<CheckoutAnswer> {
        let key = CartKey { id: self.cart_id, customer: self.customer };
        // The cart as it is now: any change of its lines, prices or codes since the quote moves the price.
        let now_draft = carts::view(tx, self.tenant, &key, self.now)?;
        let before = pricing::quote(&draft.input.lines, &draft.input.rules);
        let after = pricing::quote(&now_draft.input.lines, &now_draft.input.rules);
        if before != after || draft.input.codes != now_draft.input.codes {
            return Err(Error::Conflict(format!("{PRICE_MOVED}the cart's prices or codes changed")));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let expires_at = self.now + i64::from(self.tenant.settings.commerce.pending_ttl_minutes) * 60;
        let number: i64 =
            tx.query_row("SELECT COALESCE(MAX(number) + 1, ?1) FROM orders", [FIRST_NUMBER], |r| r.get(0))?;
        let label = format!("#{number}");
        self.take_stock(tx, quote, &id, &label)?;
        self.redeem_codes(tx, &draft.input.codes, &id, &body.email)?;
        let address = |a: &Address| serde_json::to_string(a).map_err(Error::internal);
        tx.execute(
            "INSERT INTO orders (id, number, status, email, customer_id, currency, subtotal, discount_total,
                                 shipping_total, tax_total, fee_total, total, pricing, shipping_address,
                                 billing_address, payment_method, token_hash, created_at, updated_at, expires_at,
                                 idempotency_key)
             VALUES (?1, ?2, 'pending_payment', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?17, ?18, ?19)",
            params![
                id,
                number,
                body.email,
                self.customer,
                quote.currency,
                quote.subtotal,
                quote.discount_total,
                quote.shipping_total,
                quote.tax_total,
                quote.fee_total,
                quote.total,
                serde_json::to_string(quote).map_err(Error::internal)?,
                address(&body.shipping_address)?,
                body.billing_address.as_ref().map(address).transpose()?,
                body.payment_method,
                crate::crypto::hash_token(token),
                self.now,
                expires_at,
                idempotency_key,
            ],
        )?;
        tx.touch_expiry(expires_at);
        let mut lines = Vec::with_capacity(quote.lines.len());
        for (position, line) in quote.lines.iter().enumerate() {
            let (variant_id, product_id): (String, String) =
                tx.query_row("SELECT id, product_id FROM variants WHERE sku = ?1", [&line.sku], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let total = line.subtotal + line.adjustments.iter().map(|a| a.amount).sum::<i64>();
            tx.execute(
                "INSERT INTO order_lines (order_id, position, sku, variant_id, product_id, title, quantity,
                                          unit_price, total)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    id,
                    position as i64,
                    line.sku,
                    variant_id,
                    product_id,
                    line.title,
                    line.quantity,
                    line.unit_price,
                    total
                ],
            )?;
            lines.push(OrderLineView {
                sku: line.sku.clone(),
                title: line.title.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price,
                total,
            });
        }
        let actor = self.actor();
        let created = super::orders::Timeline {
            order: &id,
            kind: "created",
            from: None,
            to: Some("pending_payment"),
            actor: &actor,
        };
        created.write(tx, &json!({"number": number}), self.now)?;
        tx.execute("DELETE FROM carts WHERE id_hash = ?1", [crate::crypto::hash_token(self.cart_id)])?;
        let amounts = OrderAmounts {
            lines: lines.iter().map(|l| (l.title.clone(), l.quantity, l.total)).collect(),
            subtotal: Some(quote.subtotal),
            discount: (quote.discount_total > 0).then_some(quote.discount_total),
            tax: (quote.tax_total > 0).then_some(quote.tax_total),
            shipping: Some(quote.shipping_total),
            total: quote.total,
        };
        let url = format!("{}/api/v1/orders/{id}?token={token}", self.base_url);
        let summary = OrderSummary::priced(&label, &quote.currency, &amounts, Some(url));
        enqueue_email(tx, EmailKind::OrderConfirmation { to: body.email.clone(), name: None, order: summary })?;
        enqueue_event(
            tx,
            Event::OrderCreated {
                order_id: id.clone(),
                number: label.clone(),
                email: body.email.clone(),
                currency: quote.currency.clone(),
                total: quote.total,
            },
        )?;
        Ok(CheckoutAnswer {
            order: OrderView {
                id,
                number: label,
                status: "pending_payment".into(),
                email: body.email.clone(),
                currency: quote.currency.clone(),
                subtotal: quote.subtotal,
                discount_total: quote.discount_total,
                shipping_total: quote.shipping_total,
                tax_total: quote.tax_total,
                fee_total: quote.fee_total,
                total: quote.total,
                lines,
                shipping_address: body.shipping_address.clone(),
                billing_address: body.billing_address.clone(),
                payment_method: body.payment_method.clone(),
                payment_status: "pending".into(),
                refunded_total: 0,
                created_at: self.now,
            },
            order_token: token.to_owned(),
            payment: PaymentView { method: body.payment_method.clone(), status: "pending".into(), client_secret: None },
        })
    }

    fn actor(&self) -> String {
        self.customer.map_or_else(|| "guest".to_owned(), |c| format!("user:{c}"))
    }

    /// Takes every line's units from stock: a tracked variant without backorders must have them all; every short
    /// line is named at once and nothing is taken.
    fn take_stock(&self, tx: &TenantTx<'_>, quote: &Quote, order_id: &str, label: &str) -> Result<()> {
        let mut short = Vec::new();
        let mut tracked = Vec::new();
        for line in &quote.lines {
            let (product_id, stock, track, backorder): (String, i64, bool, bool) = tx.query_row(
                "SELECT product_id, stock, track_inventory, allow_backorder FROM variants WHERE sku = ?1",
                [&line.sku],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            if track && !backorder && stock < i64::from(line.quantity) {
                // The count only where the store shows counts anyway.
                if self.tenant.settings.commerce.show_stock_counts {
                    short.push(format!("{} ({} left)", line.sku, stock.max(0)));
                } else {
                    short.push(line.sku.clone());
                }
            } else if track {
                tracked.push((line.sku.clone(), i64::from(line.quantity), product_id));
            }
        }
        if !short.is_empty() {
            return Err(Error::OutOfStock(format!("not enough stock: {}", short.join(", "))));
        }
        let ctx = WriteCtx {
            actor: format!("order:{order_id}"),
            now: self.now,
            low_stock_threshold: self.tenant.settings.commerce.low_stock_threshold,
        };
        let mut products = Vec::new();
        for (sku, quantity, product_id) in tracked {
            inventory::record(tx, &sku, -quantity, MovementKind::Order, &format!("order {label}"), &ctx, false)?;
            products.push(product_id);
        }
        products.sort_unstable();
        products.dedup();
        for product in products {
            catalog::refresh_stock(tx, &product)?;
        }
        Ok(())
    }

    /// Counts one use of each code under its limits (a code used up since the quote moves the price).
    fn redeem_codes(&self, tx: &TenantTx<'_>, codes: &[String], order_id: &str, email: &str) -> Result<()> {
        for code in codes {
            let per_customer: Option<i64> = tx
                .query_row("SELECT per_customer_limit FROM discount_codes WHERE code = ?1", [code], |r| r.get(0))
                .optional()?
                .flatten();
            if let Some(limit) = per_customer {
                let used: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM order_codes WHERE code = ?1 AND (email = ?2 OR customer_id = ?3)",
                    params![code, email, self.customer],
                    |r| r.get(0),
                )?;
                if used >= limit {
                    return Err(Error::DiscountInvalid(format!("{code}: already used as often as one customer may")));
                }
            }
            let counted = tx.execute(
                "UPDATE discount_codes SET used = used + 1
                 WHERE code = ?1 AND (usage_limit IS NULL OR used < usage_limit)",
                [code],
            )?;
            if counted == 0 {
                return Err(Error::Conflict(format!("{PRICE_MOVED}{code} is used up")));
            }
            tx.execute(
                "INSERT INTO order_codes (order_id, code, customer_id, email) VALUES (?1, ?2, ?3, ?4)",
                params![order_id, code, self.customer, email],
            )?;
        }
        Ok(())
    }
}

/// The order `id` for whoever asks: its owner (a signed-in customer) or the holder of its order token. Anyone
/// else, and every other tenant, gets `not_found`.
pub fn find_for(conn: &Connection, id: &str, customer: Option<&str>, token: Option<&str>) -> Result<OrderView> {
    let (view, owner, token_hash) = load(conn, id)?;
    let by_owner = customer.is_some() && owner.as_deref() == customer;
    let by_token = token.is_some_and(|t| crate::crypto::constant_time_eq(&crate::crypto::hash_token(t), &token_hash));
    if !by_owner && !by_token {
        return Err(Error::NotFound("order"));
    }
    Ok(view)
}

/// The order `id` for the tenant's admins (the caller has checked they may see the tenant).
pub fn find(conn: &Connection, id: &str) -> Result<OrderView> {
    Ok(load(conn, id)?.0)
}

/// The order, its owner and the hash of its token.
fn load(conn: &Connection, id: &str) -> Result<(OrderView, Option<String>, String)> {
    let row = conn
        .query_row(
            "SELECT number, status, email, customer_id, currency, subtotal, discount_total, shipping_total,
                    tax_total, fee_total, total, shipping_address, billing_address, payment_method, token_hash,
                    created_at, payment_status, refunded_total
             FROM orders WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    (
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ),
                    (
                        r.get::<_, String>(4)?,
                        [r.get::<_, i64>(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?],
                    ),
                    (r.get::<_, String>(11)?, r.get::<_, Option<String>>(12)?, r.get::<_, String>(13)?),
                    (r.get::<_, String>(14)?, r.get::<_, i64>(15)?, r.get::<_, String>(16)?, r.get::<_, i64>(17)?),
                ))
            },
        )
        .optional()?
        .ok_or(Error::NotFound("order"))?;
    let (
        (number, status, email, owner),
        (currency, amounts),
        (shipping, billing, method),
        (token_hash, created_at, payment_status, refunded_total),
    ) = row;
    let mut stmt = conn.prepare_cached(
        "SELECT sku, title, quantity, unit_price, total FROM order_lines WHERE order_id = ?1 ORDER BY position",
    )?;
    let lines = stmt
        .query_map([id], |r| {
            Ok(OrderLineView {
                sku: r.get(0)?,
                title: r.get(1)?,
                quantity: r.get(2)?,
                unit_price: r.get(3)?,
                total: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let address = |raw: &str| serde_json::from_str::<Address>(raw).map_err(Error::internal);
    let view = OrderView {
        id: id.to_owned(),
        number: format!("#{number}"),
        status,
        email,
        currency,
        subtotal: amounts[0],
        discount_total: amounts[1],
        shipping_total: amounts[2],
        tax_total: amounts[3],
        fee_total: amounts[4],
        total: amounts[5],
        lines,
        shipping_address: address(&shipping)?,
        billing_address: billing.as_deref().map(address).transpose()?,
        payment_method: method,
        payment_status,
        refunded_total,
        created_at,
    };
    Ok((view, owner, token_hash))
}
