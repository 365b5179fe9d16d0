//! Carts: lines by SKU, discount codes, a destination and a shipping method, priced by `pricing::quote` on every
//! read and write.
//!
//! Invariants:
//! - A cart's id is its capability: 256 random bits, stored only as its SHA-256 (`carts.id_hash`).
//! - A cart a customer owns (created while signed in, or claimed) answers only that customer; to anyone else,
//!   id or not, it does not exist.
//! - Stock is checked softly when a line is added or raised (`out_of_stock` naming the SKU); checkout checks it
//!   for real.
//! - An idle cart expires `cart_ttl_days` after its last change; expired carts are deleted by later cart writes
//!   of the same store (a hundred at a time), so no idle tenant is woken to clean up.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::pricing::{Discount, PricedLine, Quote, Rules, Shipping, Tax};
use super::rules;
use crate::control::Tenant;
use crate::email::outbox::TenantTx;
use crate::error::{Error, Result};

/// Most lines one cart holds.
pub const MAX_LINES: i64 = 100;
/// Most discount codes one cart holds.
pub const MAX_CODES: usize = 5;
/// How long a cart with no line lives (carts made and abandoned at once do not pile up).
const EMPTY_TTL: i64 = 86_400;

/// A cart as every cart endpoint answers it: its id, the quote, and what was chosen.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartView {
    pub id: String,
    #[serde(flatten)]
    pub quote: Quote,
    /// Discount codes applied; one that no longer applies stays listed with the reason and prices nothing.
    pub codes: Vec<CodeState>,
    /// Whether a signed-in customer owns the cart (then only they can use it).
    pub owned: bool,
    pub country: Option<String>,
    pub region: Option<String>,
    pub postcode: Option<String>,
    pub shipping_method: Option<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
}

/// A discount code in a cart.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CodeState {
    pub code: String,
    /// Whether it prices the cart now.
    pub applied: bool,
    /// Why not, when it does not (expired, used up, minimum not met, not applicable to these items).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLine {
    pub sku: String,
    /// 1-999; adding a SKU that is in the cart raises its quantity.
    pub quantity: u32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// 1-999.
    pub quantity: u32,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyCode {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetShipping {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// A region code (e.g. `CA` in `US`) whose tax rate wins over the country's.
    pub region: Option<String>,
    pub postcode: Option<String>,
    /// A shipping method's code that ships to `country`.
    pub method: Option<String>,
}

/// Which cart, and who asks: a cart owned by a customer answers only that customer.
#[derive(Debug, Clone, Copy)]
pub struct CartKey<'a> {
    pub id: &'a str,
    /// The signed-in customer (user id) making the request, if any.
    pub customer: Option<&'a str>,
}

struct CartRow {
    hash: String,
    customer_id: Option<String>,
    country: Option<String>,
    region: Option<String>,
    postcode: Option<String>,
    shipping_method: Option<String>,
    codes: Vec<String>,
    expires_at: i64,
}

fn hash(id: &str) -> String {
    crate::crypto::hash_token(id)
}

/// The cart, when it is alive and the caller may use it (anyone holding the id of an anonymous cart; only its
/// customer for an owned one: to anyone else it does not exist).
fn load(conn: &Connection, key: &CartKey<'_>, now: i64) -> Result<CartRow> {
    let row = conn
        .query_row(
            "SELECT id_hash, country, postcode, shipping_method, codes, expires_at, region, customer_id
             FROM carts WHERE id_hash = ?1",
            [hash(key.id)],
            |r| {
                Ok(CartRow {
                    hash: r.get(0)?,
                    country: r.get(1)?,
                    postcode: r.get(2)?,
                    shipping_method: r.get(3)?,
                    codes: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                    expires_at: r.get(5)?,
                    region: r.get(6)?,
                    customer_id: r.get(7)?,
                })
            },
        )
        .optional()?;
    row.filter(|c| c.expires_at > now)
        .filter(|c| c.customer_id.is_none() || c.customer_id.as_deref() == key.customer)
        .ok_or(Error::NotFound("cart"))
}

fn ttl(tenant: &Tenant) -> i64 {
    i64::from(tenant.settings.commerce.cart_ttl_days) * 86_400
}

/// Marks a change: the cart lives another `cart_ttl_days` (a day while it has no line); a hundred expired carts
/// of the store go.
fn touch(tx: &TenantTx<'_>, cart: &CartRow, tenant: &Tenant, now: i64) -> Result<()> {
    let lines: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM cart_lines WHERE cart_hash = ?1)", [&cart.hash], |r| r.get(0))?;
    let life = if lines { ttl(tenant) } else { EMPTY_TTL.min(ttl(tenant)) };
    tx.execute(
        "UPDATE carts SET updated_at = ?2, expires_at = ?3 WHERE id_hash = ?1",
        params![cart.hash, now, now + life],
    )?;
    tx.execute(
        "DELETE FROM carts WHERE id_hash IN (SELECT id_hash FROM carts WHERE expires_at <= ?1 LIMIT 100)",
        [now],
    )?;
    Ok(())
}

/// Creates an empty cart, owned by `customer` when one is signed in; answers its id (shown once: only its hash
/// is kept).
pub fn create(tx: &TenantTx<'_>, tenant: &Tenant, customer: Option<&str>, now: i64) -> Result<String> {
    let id = crate::crypto::random_token("cart_");
    tx.execute(
        "INSERT INTO carts (id_hash, customer_id, created_at, updated_at, expires_at) VALUES (?1, ?2, ?3, ?3, ?4)",
        params![hash(&id), customer, now, now + EMPTY_TTL.min(ttl(tenant))],
    )?;
    Ok(id)
}

/// Makes the cart `key.id` the signed-in customer's: an anonymous cart becomes theirs, and the customer's other
/// live carts are merged into it (quantities added up to 999, at most `MAX_LINES` lines, codes up to `MAX_CODES`,
/// the destination kept when this cart has none) and deleted. Claiming a cart one already owns merges again
/// (nothing else changes). Another customer's cart is not found.
pub fn claim(tx: &TenantTx<'_>, tenant: &Tenant, key: &CartKey<'_>, now: i64) -> Result<()> {
    let customer = key.customer.ok_or(Error::Unauthorized)?;
    let cart = load(tx, key, now)?;
    tx.execute("UPDATE carts SET customer_id = ?2 WHERE id_hash = ?1", params![cart.hash, customer])?;
    let others: Vec<String> = tx
        .prepare_cached(
            "SELECT id_hash FROM carts WHERE customer_id = ?1 AND id_hash <> ?2 AND expires_at > ?3
             ORDER BY updated_at DESC",
        )?
        .query_map(params![customer, cart.hash, now], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut codes = cart.codes.clone();
    let mut destination = cart.country.is_some();
    for other in &others {
        // SKUs both carts hold: quantities added, 999 at most. Then the other SKUs while there is room (the count
        // is taken first: a statement's own inserts do not change a subquery it evaluated once).
        tx.execute(
            "UPDATE cart_lines AS m SET quantity = MIN(999, m.quantity +
               (SELECT o.quantity FROM cart_lines o WHERE o.cart_hash = ?2 AND o.sku = m.sku))
             WHERE m.cart_hash = ?1 AND m.sku IN (SELECT sku FROM cart_lines WHERE cart_hash = ?2)",
            params![cart.hash, other],
        )?;
        let held: i64 =
            tx.query_row("SELECT COUNT(*) FROM cart_lines WHERE cart_hash = ?1", [&cart.hash], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO cart_lines (cart_hash, sku, quantity, added_at)
             SELECT ?1, o.sku, o.quantity, ?3 FROM cart_lines o
             WHERE o.cart_hash = ?2 AND o.sku NOT IN (SELECT sku FROM cart_lines WHERE cart_hash = ?1)
             ORDER BY o.added_at, o.rowid LIMIT ?4",
            params![cart.hash, other, now, (MAX_LINES - held).max(0)],
        )?;
        let (their_codes, country): (String, Option<String>) =
            tx.query_row("SELECT codes, country FROM carts WHERE id_hash = ?1", [other], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        for code in serde_json::from_str::<Vec<String>>(&their_codes).unwrap_or_default() {
            if codes.len() < MAX_CODES && !codes.iter().any(|c| c.eq_ignore_ascii_case(&code)) {
                codes.push(code);
            }
        }
        if !destination && country.is_some() {
            tx.execute(
                "UPDATE carts SET (country, region, postcode, shipping_method) =
                   (SELECT country, region, postcode, shipping_method FROM carts WHERE id_hash = ?2)
                 WHERE id_hash = ?1",
                params![cart.hash, other],
            )?;
            destination = true;
        }
        tx.execute("DELETE FROM carts WHERE id_hash = ?1", [other])?;
    }
    tx.execute("UPDATE carts SET codes = ?2 WHERE id_hash = ?1", params![cart.hash, super::catalog::json(&codes)])?;
    touch(tx, &cart, tenant, now)
}

/// The variant of `sku` as a cart sees it: (price, on sale, stock, tracked, backorder).
fn sellable(conn: &Connection, sku: &str) -> Result<(i64, bool, i64, bool, bool)> {
    conn.query_row(
        "SELECT v.price, p.status = 'active', v.stock, v.track_inventory, v.allow_backorder
         FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = ?1",
        [sku],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()?
    .filter(|v| v.1)
    .ok_or(Error::NotFound("sku"))
}

fn check_quantity(quantity: i64) -> Result<()> {
    if (1..=999).contains(&quantity) { Ok(()) } else { Err(Error::validation("quantity is 1-999")) }
}

fn check_stock(conn: &Connection, sku: &str, wanted: i64) -> Result<()> {
    let (_, _, stock, tracked, backorder) = sellable(conn, sku)?;
    if tracked && !backorder && stock < wanted {
        return Err(Error::OutOfStock(format!("{sku}: {} in stock, {wanted} wanted", stock.max(0))));
    }
    Ok(())
}

pub fn add_line(tx: &TenantTx<'_>, tenant: &Tenant, key: &CartKey<'_>, input: &AddLine, now: i64) -> Result<()> {
    let cart = load(tx, key, now)?;
    super::catalog::check_sku(&input.sku)?;
    let current: i64 = tx
        .query_row(
            "SELECT quantity FROM cart_lines WHERE cart_hash = ?1 AND sku = ?2",
            params![cart.hash, input.sku],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let wanted = current + i64::from(input.quantity);
    check_quantity(i64::from(input.quantity))?;
    check_quantity(wanted)?;
    if current == 0 {
        let lines: i64 =
            tx.query_row("SELECT COUNT(*) FROM cart_lines WHERE cart_hash = ?1", [&cart.hash], |r| r.get(0))?;
        if lines >= MAX_LINES {
            return Err(Error::validation(format!("a cart holds at most {MAX_LINES} lines")));
        }
    }
    check_stock(tx, &input.sku, wanted)?;
    tx.execute(
        "INSERT INTO cart_lines (cart_hash, sku, quantity, added_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (cart_hash, sku) DO UPDATE SET quantity = excluded.quantity",
        params![cart.hash, input.sku, wanted, now],
    )?;
    touch(tx, &cart, tenant, now)
}

pub fn set_quantity(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    key: &CartKey<'_>,
    sku: &str,
    quantity: u32,
    now: i64,
) -> Result<()> {
    let cart = load(tx, key, now)?;
    check_quantity(i64::from(quantity))?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM cart_lines WHERE cart_hash = ?1 AND sku = ?2)",
        params![cart.hash, sku],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(Error::NotFound("cart line"));
    }
    check_stock(tx, sku, i64::from(quantity))?;
    tx.execute(
        "UPDATE cart_lines SET quantity = ?3 WHERE cart_hash = ?1 AND sku = ?2",
        params![cart.hash, sku, quantity],
    )?;
    touch(tx, &cart, tenant, now)
}

pub fn remove_line(tx: &TenantTx<'_>, tenant: &Tenant, key: &CartKey<'_>, sku: &str, now: i64) -> Result<()> {
    let cart = load(tx, key, now)?;
    if tx.execute("DELETE FROM cart_lines WHERE cart_hash = ?1 AND sku = ?2", params![cart.hash, sku])? == 0 {
        return Err(Error::NotFound("cart line"));
    }
    touch(tx, &cart, tenant, now)
}

/// Why a code cannot price this cart now, if it cannot.
fn ineligible(code: &rules::DiscountCode, lines: &[PricedLine], now: i64) -> Option<&'static str> {
    if code.starts_at.is_some_and(|s| now < s) {
        return Some("not active yet");
    }
    if code.ends_at.is_some_and(|e| now >= e) {
        return Some("expired");
    }
    if code.usage_limit.is_some_and(|limit| code.used >= limit) {
        return Some("used up");
    }
    let discount = as_discount(code);
    let eligible: Vec<&PricedLine> = lines.iter().filter(|l| discount.applies_to(l)).collect();
    if eligible.is_empty() {
        return Some("not applicable to these items");
    }
    let eligible_subtotal: i64 = eligible.iter().map(|l| l.unit_price * i64::from(l.quantity)).sum();
    if code.min_subtotal.is_some_and(|min| eligible_subtotal < min) {
        return Some("minimum not met");
    }
    None
}

fn as_discount(code: &rules::DiscountCode) -> Discount {
    Discount {
        code: code.code.clone(),
        kind: code.kind,
        value: code.value,
        category_ids: code.category_ids.clone(),
        skus: code.skus.clone(),
    }
}

pub fn apply_code(tx: &TenantTx<'_>, tenant: &Tenant, key: &CartKey<'_>, input: &ApplyCode, now: i64) -> Result<()> {
    let cart = load(tx, key, now)?;
    let code = rules::find_code(tx, input.code.trim())?
        .ok_or_else(|| Error::DiscountInvalid(format!("{}: no such code", input.code.trim())))?;
    if cart.codes.iter().any(|c| c.eq_ignore_ascii_case(&code.code)) {
        return touch(tx, &cart, tenant, now);
    }
    if cart.codes.len() >= MAX_CODES {
        return Err(Error::DiscountInvalid(format!("{}: a cart holds at most {MAX_CODES} codes", code.code)));
    }
    let lines = priced_lines(tx, &cart.hash)?;
    if let Some(why) = ineligible(&code, &lines, now) {
        return Err(Error::DiscountInvalid(format!("{}: {why}", code.code)));
    }
    // Only the codes that price the cart now count (one that stopped applying blocks nothing).
    let active: Vec<rules::DiscountCode> = cart
        .codes
        .iter()
        .map(|c| rules::find_code(tx, c))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .filter(|c| ineligible(c, &lines, now).is_none())
        .collect();
    if !active.is_empty() && (!code.combinable || !active.iter().all(|c| c.combinable)) {
        return Err(Error::DiscountInvalid(format!("{}: cannot be combined with the codes in the cart", code.code)));
    }
    let mut codes = cart.codes.clone();
    codes.push(code.code);
    tx.execute("UPDATE carts SET codes = ?2 WHERE id_hash = ?1", params![cart.hash, super::catalog::json(&codes)])?;
    touch(tx, &cart, tenant, now)
}

pub fn remove_code(tx: &TenantTx<'_>, tenant: &Tenant, key: &CartKey<'_>, code: &str, now: i64) -> Result<()> {
    let cart = load(tx, key, now)?;
    let codes: Vec<String> = cart.codes.iter().filter(|c| !c.eq_ignore_ascii_case(code)).cloned().collect();
    if codes.len() == cart.codes.len() {
        return Err(Error::NotFound("discount code in this cart"));
    }
    tx.execute("UPDATE carts SET codes = ?2 WHERE id_hash = ?1", params![cart.hash, super::catalog::json(&codes)])?;
    touch(tx, &cart, tenant, now)
}

pub fn set_shipping(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    key: &CartKey<'_>,
    input: &SetShipping,
    now: i64,
) -> Result<()> {
    let cart = load(tx, key, now)?;
    let country = input.country.trim().to_ascii_uppercase();
    rules::check_country(&country)?;
    let region = input.region.as_deref().map(|r| r.trim().to_ascii_uppercase()).filter(|r| !r.is_empty());
    if region.as_ref().is_some_and(|r| r.len() > 10 || !r.bytes().all(|b| b.is_ascii_alphanumeric())) {
        return Err(Error::validation("region is up to 10 letters or digits"));
    }
    if input.postcode.as_ref().is_some_and(|p| p.len() > 16 || p.chars().any(char::is_control)) {
        return Err(Error::validation("postcode is at most 16 characters"));
    }
    if let Some(code) = &input.method {
        let method = rules::find_shipping(tx, code)?.ok_or(Error::NotFound("shipping method"))?;
        if !method.countries.contains(&country) {
            return Err(Error::validation(format!("shipping method {code} does not ship to {country}")));
        }
    }
    tx.execute(
        "UPDATE carts SET country = ?2, postcode = ?3, shipping_method = ?4, region = ?5 WHERE id_hash = ?1",
        params![cart.hash, country, input.postcode, input.method, region],
    )?;
    touch(tx, &cart, tenant, now)
}

/// The cart's lines with their catalog rows, in the order they were added (a SKU no longer on sale is left
/// out of the price).
fn priced_lines(conn: &Connection, cart_hash: &str) -> Result<Vec<PricedLine>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.sku, p.title, v.price, l.quantity, COALESCE(v.weight_grams, 0), p.id
         FROM cart_lines l JOIN variants v ON v.sku = l.sku JOIN products p ON p.id = v.product_id
         WHERE l.cart_hash = ?1 AND p.status = 'active' ORDER BY l.added_at, l.rowid",
    )?;
    let rows: Vec<(PricedLine, String)> = stmt
        .query_map([cart_hash], |r| {
            Ok((
                PricedLine {
                    sku: r.get(0)?,
                    title: r.get(1)?,
                    unit_price: r.get(2)?,
                    quantity: r.get(3)?,
                    weight_grams: r.get(4)?,
                    category_ids: Vec::new(),
                },
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut categories = conn.prepare_cached("SELECT category_id FROM product_categories WHERE product_id = ?1")?;
    let mut out = Vec::with_capacity(rows.len());
    for (mut line, product_id) in rows {
        line.category_ids = categories.query_map([product_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        out.push(line);
    }
    Ok(out)
}

/// What pricing needs of a cart besides the catalog: kept with a `Draft` so the tenant's pricing plugins can
/// price it again (`commerce::quoting`).
#[derive(Debug, Clone)]
pub struct QuoteInput {
    pub lines: Vec<PricedLine>,
    pub rules: Rules,
    /// The codes that price the cart.
    pub codes: Vec<String>,
    pub country: Option<String>,
    pub customer_id: Option<String>,
    pub customer_roles: Vec<String>,
}

/// A cart and its pricing input; `view.quote` is empty until `quoting::finish` prices it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub view: CartView,
    pub input: QuoteInput,
}

/// The cart as it is now, to be priced by `quoting::finish`.
pub fn view(conn: &Connection, tenant: &Tenant, key: &CartKey<'_>, now: i64) -> Result<Draft> {
    let cart = load(conn, key, now)?;
    let lines = priced_lines(conn, &cart.hash)?;
    let selection = Selection {
        codes: &cart.codes,
        country: cart.country.as_deref(),
        region: cart.region.as_deref(),
        shipping_method: cart.shipping_method.as_deref(),
        customer_id: cart.customer_id.as_deref(),
    };
    let (input, codes) = assemble(conn, tenant, lines, &selection, now)?;
    let view = CartView {
        id: key.id.to_owned(),
        // Priced by `quoting::finish`, with the tenant's pricing plugins when it has any.
        quote: Quote::default(),
        codes,
        owned: cart.customer_id.is_some(),
        country: cart.country,
        region: cart.region,
        postcode: cart.postcode,
        shipping_method: cart.shipping_method,
        expires_at: cart.expires_at,
    };
    Ok(Draft { view, input })
}

/// What a cart chose besides its lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    pub codes: &'a [String],
    pub country: Option<&'a str>,
    pub region: Option<&'a str>,
    pub shipping_method: Option<&'a str>,
    pub customer_id: Option<&'a str>,
}

/// The pricing input of `lines` with a selection: the codes that apply now (and why the others do not), the
/// chosen shipping method when it ships to the country, the destination's tax rate, the store's tax flags, and
/// the customer's roles.
pub fn assemble(
    conn: &Connection,
    tenant: &Tenant,
    lines: Vec<PricedLine>,
    selection: &Selection<'_>,
    now: i64,
) -> Result<(QuoteInput, Vec<CodeState>)> {
    let mut discounts = Vec::new();
    let mut codes = Vec::new();
    // Whether every code priced so far may be combined (the first code that prices the cart wins; one that cannot
    // be combined with it, or it with others, does not price, whichever way they got into the cart).
    let mut all_combinable = true;
    for code in selection.codes {
        let reason = match rules::find_code(conn, code)? {
            Some(found) => match ineligible(&found, &lines, now) {
                None if !(discounts.is_empty() || all_combinable && found.combinable) => {
                    Some("cannot be combined with the codes in the cart".to_owned())
                }
                None => {
                    all_combinable &= found.combinable;
                    discounts.push(as_discount(&found));
                    None
                }
                Some(why) => Some(why.to_owned()),
            },
            None => Some("no longer offered".to_owned()),
        };
        codes.push(CodeState { code: code.clone(), applied: reason.is_none(), reason });
    }
    let shipping = match (selection.shipping_method, selection.country) {
        (Some(code), Some(country)) => {
            rules::find_shipping(conn, code)?.filter(|m| m.countries.iter().any(|c| c == country)).map(|m| Shipping {
                code: m.code,
                name: m.name,
                kind: m.kind,
                price: m.price,
                brackets: m.brackets,
                free_over: m.free_over,
            })
        }
        _ => None,
    };
    let tax = match selection.country {
        Some(country) => rules::tax_rate_for(conn, country, selection.region)?.map(|t| Tax {
            label: match &t.region {
                Some(region) => format!("{}-{region}", t.country),
                None => t.country.clone(),
            },
            name: t.name,
            rate_bps: t.rate_bps,
        }),
        None => None,
    };
    let settings = &tenant.settings.commerce;
    let rules = Rules {
        currency: settings.currency.clone(),
        discounts,
        shipping,
        tax,
        prices_include_tax: settings.prices_include_tax,
        tax_shipping: settings.tax_shipping,
    };
    let customer_roles = match selection.customer_id {
        Some(user) => crate::identity::roles::of_user(conn, user)?,
        None => Vec::new(),
    };
    let input = QuoteInput {
        codes: codes.iter().filter(|c| c.applied).map(|c| c.code.clone()).collect(),
        lines,
        rules,
        country: selection.country.map(str::to_owned),
        customer_id: selection.customer_id.map(str::to_owned),
        customer_roles,
    };
    Ok((input, codes))
}

/// Lines of SKUs on sale with their catalog rows, for a quote of a cart that is not stored (the admin sandbox).
/// An unknown SKU, or one not on sale, is `not_found`.
pub fn lines_of(conn: &Connection, wanted: &[(String, u32)]) -> Result<Vec<PricedLine>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.title, v.price, COALESCE(v.weight_grams, 0), p.id
         FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = ?1 AND p.status = 'active'",
    )?;
    let mut categories = conn.prepare_cached("SELECT category_id FROM product_categories WHERE product_id = ?1")?;
    let mut out = Vec::with_capacity(wanted.len());
    for (sku, quantity) in wanted {
        check_quantity(i64::from(*quantity))?;
        let (title, unit_price, weight_grams, product_id): (String, i64, i64, String) = stmt
            .query_row([sku], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?
            .ok_or_else(|| Error::validation(format!("no SKU {sku} is on sale")))?;
        let category_ids = categories.query_map([&product_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        out.push(PricedLine { sku: sku.clone(), title, unit_price, quantity: *quantity, weight_grams, category_ids });
    }
    Ok(out)
}

/// A cart of this store priced by the built-in rules, whoever owns it (the admin's dry-run of a pricing plugin).
pub fn view_for_admin(conn: &Connection, tenant: &Tenant, id: &str, now: i64) -> Result<Draft> {
    let owner: Option<String> = conn
        .query_row("SELECT customer_id FROM carts WHERE id_hash = ?1", [hash(id)], |r| r.get(0))
        .optional()?
        .flatten();
    view(conn, tenant, &CartKey { id, customer: owner.as_deref() }, now)
}
