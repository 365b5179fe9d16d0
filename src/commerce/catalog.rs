//! The catalog: products with variants and options, categories (a tree), and search.
//!
//! Writes run inside one tenant transaction (`TenantDb::write`) and raise their webhook events in it; reads run on
//! a pooled connection. Invariants:
//! - Every product has at least one variant; SKUs and handles are unique in the store; a variant's option values
//!   name exactly the product's options, and no two variants share a combination.
//! - A product's summary columns (`min_price`, `max_price`, `in_stock`) and its search row are rewritten by
//!   `refresh` in the same transaction as any change to it or its variants' stock.
//! - Stock changes only through `inventory::record` (the ledger); nothing here writes `variants.stock`.
//!
//! Search lives in `search.rs` and categories in `categories.rs` (re-exported here: callers name `catalog::`).

pub use super::search::{refresh, refresh_stock};
use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub use super::categories::{
    Category, CategoryPatch, NewCategory, create_category, delete_category, get_category, list_categories,
    update_category,
};
use super::inventory::{self, MovementKind};
use super::money;
pub use super::search::{Search, Sort, search, version};
use crate::email::outbox::{TenantTx, enqueue_event};
use crate::error::{Error, Result};
use crate::webhooks::events::Event;

/// Most variants one product has.
pub const MAX_VARIANTS: usize = 100;
/// Most options (size, color, …) one product declares.
pub const MAX_OPTIONS: usize = 3;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// Being prepared: only admins see it.
    Draft,
    /// On sale: the storefront shows it.
    Active,
    /// Kept for history: only admins see it.
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "draft",
            ProductStatus::Active => "active",
            ProductStatus::Archived => "archived",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "draft" => Some(ProductStatus::Draft),
            "active" => Some(ProductStatus::Active),
            "archived" => Some(ProductStatus::Archived),
            _ => None,
        }
    }
}

/// A product as the admin API shows it (the storefront hides `stock` when the store hides stock counts).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub handle: String,
    pub title: String,
    pub description: String,
    pub status: ProductStatus,
    /// Option names the variants choose values for, e.g. `["size", "color"]`.
    pub options: Vec<String>,
    /// Free-form attributes (a JSON object).
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub images: Vec<String>,
    pub category_ids: Vec<String>,
    pub variants: Vec<Variant>,
    /// Lowest and highest variant price, minor units.
    pub min_price: i64,
    pub max_price: i64,
    /// Whether any variant can be bought now.
    pub in_stock: bool,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Variant {
    pub id: String,
    pub sku: String,
    pub option_values: BTreeMap<String, String>,
    /// Minor units of the store currency.
    pub price: i64,
    pub compare_at_price: Option<i64>,
    pub weight_grams: Option<i64>,
    pub track_inventory: bool,
    pub allow_backorder: bool,
    /// Units on hand: the sum of the variant's inventory movements (absent on the storefront when the store
    /// hides stock counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
    /// Whether it can be bought now: not tracked, backorders allowed, or stock above zero.
    pub in_stock: bool,
}

/// A variant to create, or (with `id`, or an existing `sku`, in a product update) to change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    /// Only in a product update: the variant to change (else it is matched by `sku`, or created).
    pub id: Option<String>,
    /// `^[A-Za-z0-9._-]{1,64}$`, unique in the store.
    pub sku: String,
    /// Minor units, 0 to 10^13.
    pub price: i64,
    pub compare_at_price: Option<i64>,
    /// One value for each of the product's options.
    pub option_values: Option<BTreeMap<String, String>>,
    pub weight_grams: Option<i64>,
    /// Stock to start with (a new variant only: later changes go through the inventory ledger).
    pub stock: Option<i64>,
    /// Default true.
    pub track_inventory: Option<bool>,
    /// Default false.
    pub allow_backorder: Option<bool>,
}

/// A product to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// URL-safe and unique: `^[a-z0-9][a-z0-9-]{0,127}$`.
    pub handle: String,
    pub title: String,
    pub description: Option<String>,
    /// Default `active`.
    pub status: Option<ProductStatus>,
    pub category_ids: Option<Vec<String>>,
    /// Option names (at most 3), e.g. `["size"]`.
    pub options: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    /// Absolute http(s) URLs, at most 20.
    pub images: Option<Vec<String>>,
    /// At least one.
    pub variants: Vec<VariantInput>,
}

/// Changes to a product; absent fields stay. `variants`, when given, is the whole new set: listed variants are
/// changed (matched by `id`, else by `sku`) or created, unlisted ones are removed.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub handle: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<ProductStatus>,
    pub category_ids: Option<Vec<String>>,
    pub options: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    pub images: Option<Vec<String>>,
    pub variants: Option<Vec<VariantInput>>,
}

/// The ledger movement of a variant's starting stock given through the API.
const INITIAL: (MovementKind, &str) = (MovementKind::Adjustment, "initial stock");

/// Who changes the catalog and what the store's settings say, for one write.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    /// `operator:{id}` / `token:{id}`, recorded with stock movements.
    pub actor: String,
    pub now: i64,
    pub low_stock_threshold: u32,
}

// ---- checks ----

pub fn check_handle(field: &str, handle: &str) -> Result<()> {
    let ok = (1..=128).contains(&handle.len())
        && handle
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b == b'-'));
    if ok { Ok(()) } else { Err(Error::validation(format!("{field} must match ^[a-z0-9][a-z0-9-]{{0,127}}$"))) }
}

/// SKUs appear in paths (`/inventory/{sku}`), so they are plain.
pub fn check_sku(sku: &str) -> Result<()> {
    let ok = (1..=64).contains(&sku.len())
        && sku.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && sku.bytes().any(|b| b.is_ascii_alphanumeric()); // `.` and `..` would be path segments
    if ok { Ok(()) } else { Err(Error::validation(format!("sku {sku:?} must match ^[A-Za-z0-9._-]{{1,64}}$"))) }
}

pub fn check_title(field: &str, title: &str, max: usize) -> Result<()> {
    if title.trim().is_empty() || title.chars().count() > max || title.chars().any(char::is_control) {
        return Err(Error::validation(format!("{field} must be 1-{max} characters without control characters")));
    }
    Ok(())
}

pub fn check_description(text: &str) -> Result<()> {
    if text.len() > MAX_DESCRIPTION {
        return Err(Error::validation(format!("description must be at most {MAX_DESCRIPTION} bytes")));
    }
    Ok(())
}

fn check_attributes(value: &Value) -> Result<()> {
    if !value.is_object() || value.to_string().len() > 16 * 1024 {
        return Err(Error::validation("attributes must be a JSON object of at most 16 KiB"));
    }
    Ok(())
}

pub fn check_images(images: &[String]) -> Result<()> {
    if images.len() > 20 {
        return Err(Error::validation("images takes at most 20 URLs"));
    }
    for url in images {
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= 2048
            && !url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>');
        if !ok {
            return Err(Error::validation(format!("image {url:?} is not an absolute http(s) URL")));
        }
    }
    Ok(())
}

pub fn check_options(options: &[String]) -> Result<()> {
    if options.len() > MAX_OPTIONS {
        return Err(Error::validation(format!("a product has at most {MAX_OPTIONS} options")));
    }
    let mut seen = HashSet::new();
    for name in options {
        check_title("option name", name, 64)?;
        if !seen.insert(name.to_lowercase()) {
            return Err(Error::validation(format!("option {name:?} is declared twice")));
        }
    }
    Ok(())
}

/// Checks one variant's own fields.
pub fn check_variant(v: &VariantInput) -> Result<()> {
    check_sku(&v.sku)?;
    money::check_amount("price", v.price)?;
    if let Some(c) = v.compare_at_price {
        money::check_amount("compare_at_price", c)?;
    }
    if let Some(w) = v.weight_grams
        && !(0..=1_000_000_000).contains(&w)
    {
        return Err(Error::validation("weight_grams must be 0-1000000000"));
    }
    if let Some(s) = v.stock
        && !(0..=1_000_000_000).contains(&s)
    {
        return Err(Error::validation("stock must be a whole number of units, 0 to 1000000000"));
    }
    for (name, value) in v.option_values.iter().flatten() {
        check_title("option name", name, 64)?;
        check_title(&format!("option value of {name}"), value, 128)?;
    }
    Ok(())
}

/// Checks a product's variants together: 1..=100, SKUs unique, option values naming exactly the options, and no
/// two variants with the same combination.
fn check_variant_set(options: &[String], variants: &[VariantInput]) -> Result<()> {
    if variants.is_empty() || variants.len() > MAX_VARIANTS {
        return Err(Error::validation(format!("a product has 1-{MAX_VARIANTS} variants")));
    }
    if options.is_empty() && variants.len() > 1 {
        return Err(Error::validation("a product with several variants declares the options that tell them apart"));
    }
    let mut skus = HashSet::new();
    let mut combos = HashSet::new();
    for v in variants {
        check_variant(v)?;
        if !skus.insert(v.sku.as_str()) {
            return Err(Error::validation(format!("sku {} is given twice", v.sku)));
        }
        let values = v.option_values.clone().unwrap_or_default();
        check_option_values(options, &values, &v.sku)?;
        if !combos.insert(values.values().cloned().collect::<Vec<_>>()) {
            return Err(Error::validation(format!("variant {} repeats another variant's option values", v.sku)));
        }
    }
    Ok(())
}

fn check_option_values(options: &[String], values: &BTreeMap<String, String>, sku: &str) -> Result<()> {
    let names: HashSet<&str> = values.keys().map(String::as_str).collect();
    let declared: HashSet<&str> = options.iter().map(String::as_str).collect();
    if names != declared {
        return Err(Error::validation(format!(
            "variant {sku} must give a value for each option ({}) and nothing else",
            if options.is_empty() { "none declared".to_owned() } else { options.join(", ") }
        )));
    }
    Ok(())
}

// ---- writes ----

/// Creates a product with its variants (and their starting stock in the ledger); raises `product.created`.
pub fn create_product(tx: &TenantTx<'_>, input: NewProduct, ctx: &WriteCtx) -> Result<String> {
    check_handle("handle", &input.handle)?;
    check_title("title", &input.title, 200)?;
    let description = input.description.unwrap_or_default();
    check_description(&description)?;
    let options = input.options.unwrap_or_default();
    check_options(&options)?;
    let attributes = input.attributes.unwrap_or_else(|| Value::Object(Default::default()));
    check_attributes(&attributes)?;
    let images = input.images.unwrap_or_default();
    check_images(&images)?;
    check_variant_set(&options, &input.variants)?;
    if input.variants.iter().any(|v| v.id.is_some()) {
        return Err(Error::validation("a new variant's id is assigned by the store; leave it out"));
    }
    let categories = input.category_ids.unwrap_or_default();
    check_categories(tx, &categories)?;
    if handle_taken(tx, &input.handle, None)? {
        return Err(Error::Conflict(format!("a product with handle {} exists", input.handle)));
    }
    for v in &input.variants {
        if sku_owner(tx, &v.sku)?.is_some() {
            return Err(Error::Conflict(format!("sku {} is in use", v.sku)));
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO products (id, handle, title, description, status, options, attributes, images, created_at,
                               updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            id,
            input.handle,
            input.title.trim(),
            description,
            input.status.unwrap_or(ProductStatus::Active).as_str(),
            json(&options),
            attributes.to_string(),
            json(&images),
            ctx.now
        ],
    )?;
    set_categories(tx, &id, &categories)?;
    for (position, v) in input.variants.iter().enumerate() {
        insert_variant(tx, &id, position, v, ctx, INITIAL)?;
    }
    refresh(tx, &id)?;
    enqueue_event(tx, Event::ProductCreated { product_id: id.clone(), handle: input.handle })?;
    Ok(id)
}

/// Applies `patch` to product `id`; raises `product.updated`.
pub fn update_product(tx: &TenantTx<'_>, id: &str, patch: ProductPatch, ctx: &WriteCtx) -> Result<()> {
    let current = load_product(tx, id)?.ok_or(Error::NotFound("product"))?;
    let handle = patch.handle.unwrap_or(current.handle.clone());
    check_handle("handle", &handle)?;
    if handle != current.handle && handle_taken(tx, &handle, Some(id))? {
        return Err(Error::Conflict(format!("a product with handle {handle} exists")));
    }
    let title = patch.title.unwrap_or(current.title.clone());
    check_title("title", &title, 200)?;
    let description = patch.description.unwrap_or(current.description.clone());
    check_description(&description)?;
    let options = patch.options.unwrap_or(current.options.clone());
    check_options(&options)?;
    let attributes = patch.attributes.unwrap_or(current.attributes.clone());
    check_attributes(&attributes)?;
    let images = patch.images.unwrap_or(current.images.clone());
    check_images(&images)?;
    if let Some(categories) = &patch.category_ids {
        check_categories(tx, categories)?;
    }
    let status = patch.status.unwrap_or(current.status);
    // The variant set after the patch: the given one, or the current variants (checked against new options).
    let variants: Vec<VariantInput> = match patch.variants {
        Some(given) => given,
        None => current.variants.iter().map(variant_as_input).collect(),
    };
    check_variant_set(&options, &variants)?;
    let existing: HashMap<&str, &Variant> = current.variants.iter().map(|v| (v.id.as_str(), v)).collect();
    let by_sku: HashMap<&str, &Variant> = current.variants.iter().map(|v| (v.sku.as_str(), v)).collect();
    let mut kept = HashSet::new();
    let mut plan = Vec::new();
    for v in &variants {
        let matched = match &v.id {
            Some(vid) => Some(*existing.get(vid.as_str()).ok_or(Error::NotFound("variant"))?),
            None => by_sku.get(v.sku.as_str()).copied(),
        };
        if let Some(m) = matched {
            if !kept.insert(m.id.clone()) {
                return Err(Error::validation(format!("variant {} is listed twice (by id and by sku)", m.sku)));
            }
            if v.stock.is_some_and(|s| Some(s) != m.stock) {
                return Err(Error::validation(format!(
                    "stock of an existing variant ({}) changes through POST /inventory/{}/adjust",
                    m.sku, m.sku
                )));
            }
        }
        if let Some(owner) = sku_owner(tx, &v.sku)?
            && matched.is_none_or(|m| m.id != owner.0)
        {
            return Err(Error::Conflict(format!("sku {} is in use", v.sku)));
        }
        plan.push((matched.map(|m| m.id.clone()), v));
    }
    // Removed variants go first, so a SKU can move between variants of this product in one update.
    for gone in current.variants.iter().filter(|v| !kept.contains(&v.id)) {
        remove_variant(tx, &gone.id, &gone.sku, ctx)?;
    }
    for (position, (matched, v)) in plan.into_iter().enumerate() {
        match matched {
            Some(vid) => {
                tx.execute(
                    "UPDATE variants SET sku = ?2, position = ?3, option_values = ?4, price = ?5, compare_at_price = ?6,
                            weight_grams = ?7, track_inventory = COALESCE(?8, track_inventory),
                            allow_backorder = COALESCE(?9, allow_backorder), updated_at = ?10
                     WHERE id = ?1",
                    params![
                        vid,
                        v.sku,
                        position as i64,
                        json(&v.option_values.clone().unwrap_or_default()),
                        v.price,
                        v.compare_at_price,
                        v.weight_grams,
                        v.track_inventory,
                        v.allow_backorder,
                        ctx.now
                    ],
                )?;
            }
            None => {
                insert_variant(tx, id, position, v, ctx, INITIAL)?;
            }
        }
    }
    tx.execute(
        "UPDATE products SET handle = ?2, title = ?3, description = ?4, status = ?5, options = ?6, attributes = ?7,
                images = ?8, updated_at = ?9
         WHERE id = ?1",
        params![
            id,
            handle,
            title.trim(),
            description,
            status.as_str(),
            json(&options),
            attributes.to_string(),
            json(&images),
            ctx.now
        ],
    )?;
    if let Some(categories) = &patch.category_ids {
        set_categories(tx, id, categories)?;
    }
    refresh(tx, id)?;
    enqueue_event(tx, Event::ProductUpdated { product_id: id.to_owned(), handle })?;
    Ok(())
}

/// Deletes a product and its variants (their ledger rows stay); raises `product.deleted`.
pub fn delete_product(tx: &TenantTx<'_>, id: &str, ctx: &WriteCtx) -> Result<()> {
    let found: Option<(i64, String)> = tx
        .query_row("SELECT seq, handle FROM products WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, handle) = found.ok_or(Error::NotFound("product"))?;
    let mut stmt = tx.prepare("SELECT id, sku FROM variants WHERE product_id = ?1")?;
    let variants: Vec<(String, String)> =
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    drop(stmt);
    for (variant_id, sku) in variants {
        remove_variant(tx, &variant_id, &sku, ctx)?;
    }
    tx.execute("DELETE FROM product_search WHERE rowid = ?1", [seq])?;
    tx.execute("DELETE FROM products WHERE id = ?1", [id])?;
    enqueue_event(tx, Event::ProductDeleted { product_id: id.to_owned(), handle })?;
    Ok(())
}

/// Deletes a variant; stock still on hand leaves through a ledger movement first (`variant removed`), so the
/// ledger of a deleted variant sums to zero and no unit disappears unrecorded.
fn remove_variant(tx: &TenantTx<'_>, variant_id: &str, sku: &str, ctx: &WriteCtx) -> Result<()> {
    let stock: i64 = tx.query_row("SELECT stock FROM variants WHERE id = ?1", [variant_id], |r| r.get(0))?;
    if stock != 0 {
        inventory::record(tx, sku, -stock, MovementKind::Adjustment, "variant removed", ctx, false)?;
    }
    tx.execute("DELETE FROM variants WHERE id = ?1", [variant_id])?;
    Ok(())
}

fn variant_as_input(v: &Variant) -> VariantInput {
    VariantInput {
        id: Some(v.id.clone()),
        sku: v.sku.clone(),
        price: v.price,
        compare_at_price: v.compare_at_price,
        option_values: Some(v.option_values.clone()),
        weight_grams: v.weight_grams,
        stock: None,
        track_inventory: Some(v.track_inventory),
        allow_backorder: Some(v.allow_backorder),
    }
}

/// Inserts a variant, its starting stock as a ledger movement of `initial` (kind and reason). The product's
/// `refresh` is the caller's.
pub fn insert_variant(
    tx: &TenantTx<'_>,
    product_id: &str,
    position: usize,
    v: &VariantInput,
    ctx: &WriteCtx,
    initial: (MovementKind, &str),
) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO variants (id, product_id, sku, position, option_values, price, compare_at_price, weight_grams,
                               track_inventory, allow_backorder, stock, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?11)",
        params![
            id,
            product_id,
            v.sku,
            position as i64,
            json(&v.option_values.clone().unwrap_or_default()),
            v.price,
            v.compare_at_price,
            v.weight_grams,
            v.track_inventory.unwrap_or(true),
            v.allow_backorder.unwrap_or(false),
            ctx.now
        ],
    )?;
    if let Some(stock) = v.stock.filter(|s| *s != 0) {
        inventory::record(tx, &v.sku, stock, initial.0, initial.1, ctx, false)?;
    }
    Ok(id)
}

pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn handle_taken(conn: &Connection, handle: &str, except: Option<&str>) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM products WHERE handle = ?1 AND id IS NOT ?2)",
        params![handle, except],
        |r| r.get(0),
    )?)
}

/// The (variant id, product id) holding `sku`, if any.
pub fn sku_owner(conn: &Connection, sku: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row("SELECT id, product_id FROM variants WHERE sku = ?1", [sku], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

fn check_categories(conn: &Connection, ids: &[String]) -> Result<()> {
    if ids.len() > 50 {
        return Err(Error::validation("a product is in at most 50 categories"));
    }
    for id in ids {
        let exists: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM categories WHERE id = ?1)", [id], |r| r.get(0))?;
        if !exists {
            return Err(Error::validation(format!("category {id} does not exist")));
        }
    }
    Ok(())
}

fn set_categories(tx: &TenantTx<'_>, product_id: &str, ids: &[String]) -> Result<()> {
    tx.execute("DELETE FROM product_categories WHERE product_id = ?1", [product_id])?;
    let mut stmt =
        tx.prepare_cached("INSERT OR IGNORE INTO product_categories (product_id, category_id) VALUES (?1, ?2)")?;
    for id in ids {
        stmt.execute(params![product_id, id])?;
    }
    Ok(())
}

// ---- reads ----

pub(super) const PRODUCT_COLUMNS: &str = "p.seq, p.id, p.handle, p.title, p.description, p.status, p.options, p.attributes, \
     p.images, p.min_price, p.max_price, p.in_stock, p.created_at, p.updated_at";

/// A product row before its variants and categories are attached.
pub(super) struct ProductRow {
    pub(super) seq: i64,
    pub(super) product: Product,
}

pub(super) fn product_row(r: &Row<'_>) -> rusqlite::Result<ProductRow> {
    let status: String = r.get(5)?;
    let parse = |i: usize| -> rusqlite::Result<Value> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let strings = |v: Value| -> Vec<String> { serde_json::from_value(v).unwrap_or_default() };
    Ok(ProductRow {
        seq: r.get(0)?,
        product: Product {
            id: r.get(1)?,
            handle: r.get(2)?,
            title: r.get(3)?,
            description: r.get(4)?,
            status: ProductStatus::parse(&status).unwrap_or(ProductStatus::Draft),
            options: strings(parse(6)?),
            attributes: parse(7)?,
            images: strings(parse(8)?),
            category_ids: Vec::new(),
            variants: Vec::new(),
            min_price: r.get(9)?,
            max_price: r.get(10)?,
            in_stock: r.get(11)?,
            created_at: r.get(12)?,
            updated_at: r.get(13)?,
        },
    })
}

fn variant_row(r: &Row<'_>) -> rusqlite::Result<(String, Variant)> {
    let values: String = r.get(3)?;
    let track: bool = r.get(7)?;
    let backorder: bool = r.get(8)?;
    let stock: i64 = r.get(9)?;
    Ok((
        r.get(0)?,
        Variant {
            id: r.get(1)?,
            sku: r.get(2)?,
            option_values: serde_json::from_str(&values).unwrap_or_default(),
            price: r.get(4)?,
            compare_at_price: r.get(5)?,
            weight_grams: r.get(6)?,
            track_inventory: track,
            allow_backorder: backorder,
            stock: Some(stock),
            in_stock: !track || backorder || stock > 0,
        },
    ))
}

/// Attaches variants and category ids to product rows (two queries for the whole page).
pub(super) fn attach(conn: &Connection, rows: Vec<ProductRow>) -> Result<Vec<Product>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<SqlValue> = rows.iter().map(|r| SqlValue::Text(r.product.id.clone())).collect();
    let marks = vec!["?"; ids.len()].join(", ");
    let mut variants: HashMap<String, Vec<Variant>> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT product_id, id, sku, option_values, price, compare_at_price, weight_grams, track_inventory,
                allow_backorder, stock
         FROM variants WHERE product_id IN ({marks}) ORDER BY product_id, position"
    ))?;
    for row in stmt.query_map(params_from_iter(ids.iter()), variant_row)? {
        let (product_id, variant) = row?;
        variants.entry(product_id).or_default().push(variant);
    }
    let mut categories: HashMap<String, Vec<String>> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT product_id, category_id FROM product_categories WHERE product_id IN ({marks}) ORDER BY category_id"
    ))?;
    for row in stmt.query_map(params_from_iter(ids.iter()), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (product_id, category) = row?;
        categories.entry(product_id).or_default().push(category);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut p = row.product;
            p.variants = variants.remove(&p.id).unwrap_or_default();
            p.category_ids = categories.remove(&p.id).unwrap_or_default();
            p
        })
        .collect())
}

/// A product by id.
pub fn load_product(conn: &Connection, id: &str) -> Result<Option<Product>> {
    product_where(conn, "p.id = ?1", id)
}

/// A product by handle.
pub fn product_by_handle(conn: &Connection, handle: &str) -> Result<Option<Product>> {
    product_where(conn, "p.handle = ?1", handle)
}

fn product_where(conn: &Connection, condition: &str, value: &str) -> Result<Option<Product>> {
    let row = conn
        .query_row(&format!("SELECT {PRODUCT_COLUMNS} FROM products p WHERE {condition}"), [value], product_row)
        .optional()?;
    Ok(attach(conn, row.into_iter().collect())?.pop())
}

/// How many products the store has (any status).
pub fn count_products(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_skus_are_plain() {
        assert!(check_handle("handle", "blue-shirt-2").is_ok());
        for bad in ["", "-x", "Blue", "a/b", "a b", &"a".repeat(129)] {
            assert!(check_handle("handle", bad).is_err(), "{bad}");
        }
        assert!(check_sku("TS_RED.M-1").is_ok());
        for bad in ["", "a/b", "a b", "..%2F", ".", "..", "-._", &"a".repeat(65)] {
            assert!(check_sku(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn variants_must_match_the_options_and_differ() {
        let v = |sku: &str, size: Option<&str>| VariantInput {
            sku: sku.into(),
            price: 100,
            option_values: size.map(|s| BTreeMap::from([("size".to_owned(), s.to_owned())])),
            ..Default::default()
        };
        let size = vec!["size".to_owned()];
        assert!(check_variant_set(&size, &[v("a", Some("M")), v("b", Some("L"))]).is_ok());
        assert!(check_variant_set(&size, &[v("a", Some("M")), v("b", Some("M"))]).is_err(), "same combination");
        assert!(check_variant_set(&size, &[v("a", None)]).is_err(), "missing value");
        assert!(check_variant_set(&[], &[v("a", Some("M"))]).is_err(), "undeclared option");
        assert!(check_variant_set(&[], &[v("a", None), v("a", None)]).is_err(), "sku twice");
        assert!(check_variant_set(&[], &[]).is_err(), "no variant");
        let mut huge = v("a", None);
        huge.price = money::MAX_AMOUNT + 1;
        assert!(check_variant_set(&[], &[huge]).is_err());
        let mut negative = v("a", None);
        negative.price = -1;
        assert!(check_variant_set(&[], &[negative]).is_err());
    }
}
