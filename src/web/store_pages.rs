//! Admin UI pages of a tenant's store: products (search and list, create and edit with a plain-text variants box,
//! delete) and stock adjustments with each SKU's ledger, plus the helpers the category and import pages
//! (`store_setup_pages`) share. They call the same services as `commerce::admin_api`: `catalog`, `inventory`.
//!
//! Changes are recorded as the signed-in operator (`commerce::actor_name`, `operator:{id}`). Stock of an existing
//! variant never changes through the product form: only through the adjust form, which appends to the ledger.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::app::AppState;
use crate::commerce::catalog::{
    self, Category, NewProduct, Product, ProductPatch, ProductStatus, Search, Variant, VariantInput,
};
use crate::commerce::inventory::{self, Adjustment};
use crate::commerce::{actor_name, money, write_ctx};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::page::{PageError, PageResult, render};

/// Rows per page of products and of movements.
const PAGE: u32 = 50;

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/store";
    Router::new()
        .route(&format!("{base}/products"), get(products_page))
        .route(&format!("{base}/products/new"), get(new_product_page).post(product_create))
        .route(&format!("{base}/products/{{id}}"), get(product_page).post(product_save))
        .route(&format!("{base}/products/{{id}}/delete"), post(product_delete))
        .route(&format!("{base}/inventory/{{sku}}"), get(movements_page))
        .route(&format!("{base}/inventory/{{sku}}/adjust"), post(stock_adjust))
}

pub(super) async fn open(
    app: &AppState,
    session: &UiSession,
    slug: &str,
) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

/// Form errors stay on the page; anything else is an error page.
pub(super) fn form_error(err: Error) -> Result<String, PageError> {
    match err {
        Error::Validation(_) | Error::Conflict(_) | Error::BadRequest(_) | Error::NotFound(_) => Ok(err.to_string()),
        other => Err(PageError(other)),
    }
}

pub(super) fn redirect(slug: &str, path: &str) -> Response {
    Redirect::to(&format!("/admin/tenants/{slug}/store/{path}")).into_response()
}

pub(super) fn status_code(chrome: &Chrome) -> StatusCode {
    if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }
}

#[derive(Deserialize, Default)]
pub(super) struct DoneQuery {
    pub(super) done: Option<String>,
}

pub(super) fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "created" => "Product created.",
        "saved" => "Product saved.",
        "deleted" => "Product deleted; its stock movements stay in the ledger.",
        "adjusted" => "Stock adjusted; the change is in the ledger.",
        "category_created" => "Category created.",
        "category_deleted" => "Category deleted; its products stay.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// The admin API's export, which also takes the UI session cookie on a GET.
pub(super) fn export_href(tenant: &Tenant) -> String {
    format!("/admin/api/v1/tenants/{}/products/export.csv", tenant.slug)
}

fn price_range(min: i64, max: i64, currency: &str) -> String {
    if min == max {
        money::format(min, currency)
    } else {
        format!("{} – {}", money::format(min, currency), money::format(max, currency))
    }
}

fn status_class(status: ProductStatus) -> &'static str {
    match status {
        ProductStatus::Active => "active",
        ProductStatus::Draft => "pending",
        ProductStatus::Archived => "suspended",
    }
}

/// Each category with its depth in the tree (`list_categories` puts parents before their children).
pub(super) fn with_depth(categories: &[Category]) -> Vec<(usize, &Category)> {
    let mut depths: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(categories.len());
    for c in categories {
        let depth = c.parent_id.as_deref().and_then(|p| depths.get(p)).map_or(0, |d| d + 1);
        depths.insert(c.id.as_str(), depth);
        out.push((depth, c));
    }
    out
}

/// A category's title indented by its depth, as plain text (the template escapes it).
pub(super) fn indented(depth: usize, title: &str) -> String {
    if depth == 0 { title.to_owned() } else { format!("{}└ {title}", "\u{a0}\u{a0}\u{a0}".repeat(depth - 1)) }
}

/// A category in a `<select>`.
pub(super) struct CategoryOption {
    pub(super) id: String,
    pub(super) label: String,
    pub(super) selected: bool,
}

// ---- products ----

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

struct ProductRow {
    id: String,
    title: String,
    handle: String,
    status: &'static str,
    status_class: &'static str,
    price: String,
    variants: usize,
    in_stock: bool,
}

#[derive(Template)]
#[template(path = "admin/store_products.html")]
struct ProductsPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    q: String,
    status: String,
    rows: Vec<ProductRow>,
    next_href: Option<String>,
    export_href: String,
}

async fn products_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    let text = q.q.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let status = q.status.as_deref().and_then(ProductStatus::parse);
    let search = Search {
        q: text.clone(),
        status,
        cursor: q.cursor.filter(|c| !c.is_empty()),
        limit: PAGE,
        ..Default::default()
    };
    let (items, next_cursor) = match db::with_conn(&db.pool, move |conn| catalog::search(conn, &search)).await {
        Ok(found) => found,
        Err(err) => {
            chrome.error = Some(form_error(err)?);
            (Vec::new(), None)
        }
    };
    let currency = tenant.settings.commerce.currency.as_str();
    let rows = items
        .iter()
        .map(|p| ProductRow {
            id: p.id.clone(),
            title: p.title.clone(),
            handle: p.handle.clone(),
            status: p.status.as_str(),
            status_class: status_class(p.status),
            price: price_range(p.min_price, p.max_price, currency),
            variants: p.variants.len(),
            in_stock: p.in_stock,
        })
        .collect();
    let q = text.unwrap_or_default();
    let status = status.map_or("", ProductStatus::as_str).to_owned();
    let next_href = next_cursor.map(|cursor| {
        let pairs = [("q", q.as_str()), ("status", status.as_str()), ("cursor", cursor.as_str())];
        let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
        format!("/admin/tenants/{}/store/products?{query}", tenant.slug)
    });
    let code = status_code(&chrome);
    let page = ProductsPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "products",
        q,
        status,
        rows,
        next_href,
        export_href: export_href(&tenant),
    };
    Ok((code, render(page)?).into_response())
}

/// What the product form shows: the product's fields as text, or what was posted.
#[derive(Default)]
struct ProductForm {
    handle: String,
    title: String,
    description: String,
    status: String,
    /// Option names, comma-separated.
    options: String,
    category_ids: Vec<String>,
    /// One variant a line: `sku | price | size=M; color=red | stock`.
    variants: String,
}

impl ProductForm {
    fn new_product() -> ProductForm {
        ProductForm { status: "active".into(), ..Default::default() }
    }

    fn of(p: &Product, currency: &str) -> ProductForm {
        ProductForm {
            handle: p.handle.clone(),
            title: p.title.clone(),
            description: p.description.clone(),
            status: p.status.as_str().to_owned(),
            options: p.options.join(", "),
            category_ids: p.category_ids.clone(),
            // Existing variants without their stock: it changes through the ledger.
            variants: p.variants.iter().map(|v| variant_line(v, &p.options, currency)).collect::<Vec<_>>().join("\n"),
        }
    }

    /// Reads a posted form (the category select sends one `category_ids` per chosen category) and its CSRF token.
    fn parse(raw: &[u8]) -> (ProductForm, String) {
        let mut f = ProductForm::default();
        let mut csrf = String::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            let v = v.into_owned();
            match k.as_ref() {
                "csrf_token" => csrf = v,
                "handle" => f.handle = v,
                "title" => f.title = v,
                "description" => f.description = v,
                "status" => f.status = v,
                "options" => f.options = v,
                "category_ids" => f.category_ids.push(v),
                "variants" => f.variants = v,
                _ => {}
            }
        }
        (f, csrf)
    }

    fn parsed_status(&self) -> Result<ProductStatus, Error> {
        ProductStatus::parse(self.status.trim())
            .ok_or_else(|| Error::validation("status must be draft, active or archived"))
    }

    fn option_names(&self) -> Vec<String> {
        self.options.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    fn to_new(&self, currency: &str) -> Result<NewProduct, Error> {
        Ok(NewProduct {
            handle: self.handle.trim().to_owned(),
            title: self.title.trim().to_owned(),
            description: Some(self.description.replace("\r\n", "\n")),
            status: Some(self.parsed_status()?),
            category_ids: Some(self.category_ids.clone()),
            options: Some(self.option_names()),
            attributes: None,
            images: None,
            variants: parse_variants(&self.variants, currency)?,
        })
    }

    /// The whole product as the form gives it; attributes and images are not on the form, so they stay.
    fn to_patch(&self, currency: &str) -> Result<ProductPatch, Error> {
        Ok(ProductPatch {
            handle: Some(self.handle.trim().to_owned()),
            title: Some(self.title.trim().to_owned()),
            description: Some(self.description.replace("\r\n", "\n")),
            status: Some(self.parsed_status()?),
            category_ids: Some(self.category_ids.clone()),
            options: Some(self.option_names()),
            variants: Some(parse_variants(&self.variants, currency)?),
            ..Default::default()
        })
    }
}

/// `size=M; color=red`, in the product's option order.
fn option_pairs(v: &Variant, options: &[String]) -> Vec<String> {
    options.iter().filter_map(|o| v.option_values.get(o).map(|value| format!("{o}={value}"))).collect()
}

/// An existing variant as a line of the variants box (without stock).
fn variant_line(v: &Variant, options: &[String], currency: &str) -> String {
    let mut line = format!("{} | {}", v.sku, money::to_decimal(v.price, currency));
    let pairs = option_pairs(v, options);
    if !pairs.is_empty() {
        line.push_str(" | ");
        line.push_str(&pairs.join("; "));
    }
    line
}

/// Reads the variants box: one variant a line, `sku | price | size=M; color=red | stock`; the price a decimal in
/// the store currency's major units, the option values and the stock optional. The catalog checks the rest (SKU
/// shape, values matching the options, no two variants alike).
fn parse_variants(text: &str, currency: &str) -> Result<Vec<VariantInput>, Error> {
    let mut variants = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |message: String| Error::validation(format!("variants, line {}: {message}", n + 1));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if !(2..=4).contains(&cells.len()) {
            return Err(at("write sku | price | option values | stock (the last two may be left out)".into()));
        }
        let price = money::parse_decimal(cells[1], currency).map_err(|e| at(e.to_string()))?;
        let mut values = BTreeMap::new();
        for pair in cells.get(2).copied().unwrap_or("").split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').ok_or_else(|| at(format!("{pair:?} is not name=value")))?;
            let name = name.trim().to_owned();
            if values.insert(name.clone(), value.trim().to_owned()).is_some() {
                return Err(at(format!("option {name} is given twice")));
            }
        }
        let stock = match cells.get(3).copied().unwrap_or("") {
            "" => None,
            raw => Some(raw.parse::<i64>().map_err(|_| at(format!("stock {raw:?} is not a whole number")))?),
        };
        variants.push(VariantInput {
            sku: cells[0].to_owned(),
            price,
            option_values: Some(values),
            stock,
            ..Default::default()
        });
    }
    if variants.is_empty() {
        return Err(Error::validation("give at least one variant: sku | price"));
    }
    Ok(variants)
}

/// Variants the box names by an existing SKU keep what the box does not show (compare-at price, weight, inventory
/// flags) and their stock, which changes through the ledger only.
fn keep_existing(variants: &mut [VariantInput], current: &Product) {
    for v in variants {
        if let Some(old) = current.variants.iter().find(|o| o.sku == v.sku) {
            v.stock = None;
            v.compare_at_price = old.compare_at_price;
            v.weight_grams = old.weight_grams;
            v.track_inventory = Some(old.track_inventory);
            v.allow_backorder = Some(old.allow_backorder);
        }
    }
}

struct VariantRow {
    sku: String,
    options: String,
    price: String,
    stock: i64,
    tracked: bool,
    in_stock: bool,
}

#[derive(Template)]
#[template(path = "admin/store_product.html")]
struct ProductPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    creating: bool,
    heading: String,
    /// Empty while creating.
    product_id: String,
    action: String,
    form: ProductForm,
    categories: Vec<CategoryOption>,
    category_rows: usize,
    variants: Vec<VariantRow>,
    currency: String,
    example_price: String,
}

/// The product form: a new product (`product` is `None`), or an existing one with its variants' stock.
async fn render_product(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    product: Option<Product>,
    form: ProductForm,
) -> PageResult {
    let all = db::with_conn(&db.pool, |conn| catalog::list_categories(conn)).await?;
    let categories: Vec<CategoryOption> = with_depth(&all)
        .into_iter()
        .map(|(depth, c)| CategoryOption {
            id: c.id.clone(),
            label: indented(depth, &c.title),
            selected: form.category_ids.contains(&c.id),
        })
        .collect();
    let currency = tenant.settings.commerce.currency.clone();
    let slug = tenant.slug.to_string();
    let (heading, product_id, action, variants): (String, String, String, Vec<VariantRow>) = match &product {
        Some(p) => (
            p.title.clone(),
            p.id.clone(),
            format!("/admin/tenants/{slug}/store/products/{}", p.id),
            p.variants
                .iter()
                .map(|v| VariantRow {
                    sku: v.sku.clone(),
                    options: option_pairs(v, &p.options).join("; "),
                    price: money::format(v.price, &currency),
                    stock: v.stock.unwrap_or(0),
                    tracked: v.track_inventory,
                    in_stock: v.in_stock,
                })
                .collect(),
        ),
        None => {
            let action = format!("/admin/tenants/{slug}/store/products/new");
            ("New product".to_owned(), String::new(), action, Vec::new())
        }
    };
    let code = status_code(&chrome);
    let page = ProductPage {
        chrome,
        slug,
        tenant_name: tenant.name.clone(),
        tab: "products",
        creating: product.is_none(),
        heading,
        product_id,
        action,
        form,
        category_rows: categories.len().clamp(2, 10),
        categories,
        variants,
        example_price: money::to_decimal(1999, &currency),
        currency,
    };
    Ok((code, render(page)?).into_response())
}

async fn load_product(db: &TenantDb, id: String) -> Result<Product, PageError> {
    Ok(db::with_conn(&db.pool, move |conn| catalog::load_product(conn, &id)?.ok_or(Error::NotFound("product"))).await?)
}

async fn new_product_page(State(app): State<AppState>, session: UiSession, Path(slug): Path<String>) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    render_product(&tenant, &db, session.chrome("tenants"), None, ProductForm::new_product()).await
}

async fn product_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    RawForm(raw): RawForm,
) -> PageResult {
    let (form, csrf) = ProductForm::parse(&raw);
    session.check_csrf(&csrf)?;
    let (tenant, db) = open(&app, &session, &slug).await?;
    let ctx = write_ctx(actor_name(&session.actor), &tenant);
    let result = match form.to_new(&tenant.settings.commerce.currency) {
        Ok(input) => db.write(move |tx| catalog::create_product(tx, input, &ctx)).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(id) => Ok(redirect(&slug, &format!("products/{id}?done=created"))),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_product(&tenant, &db, chrome, None, form).await
        }
    }
}

async fn product_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let product = load_product(&db, id).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    let form = ProductForm::of(&product, &tenant.settings.commerce.currency);
    render_product(&tenant, &db, chrome, Some(product), form).await
}

async fn product_save(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    RawForm(raw): RawForm,
) -> PageResult {
    let (form, csrf) = ProductForm::parse(&raw);
    session.check_csrf(&csrf)?;
    let (tenant, db) = open(&app, &session, &slug).await?;
    let ctx = write_ctx(actor_name(&session.actor), &tenant);
    let result = match form.to_patch(&tenant.settings.commerce.currency) {
        Ok(patch) => {
            let pid = id.clone();
            db.write(move |tx| {
                let mut patch = patch;
                // Read in the same transaction as the update, so the kept fields are the current ones.
                let current = catalog::load_product(tx, &pid)?.ok_or(Error::NotFound("product"))?;
                if let Some(variants) = patch.variants.as_mut() {
                    keep_existing(variants, &current);
                }
                catalog::update_product(tx, &pid, patch, &ctx)
            })
            .await
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, &format!("products/{id}?done=saved"))),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            let product = load_product(&db, id).await?;
            render_product(&tenant, &db, chrome, Some(product), form).await
        }
    }
}

async fn product_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let ctx = write_ctx(actor_name(&session.actor), &tenant);
    db.write(move |tx| catalog::delete_product(tx, &id, &ctx)).await?;
    Ok(redirect(&slug, "products?done=deleted"))
}

// ---- inventory ----

#[derive(Deserialize)]
struct AdjustForm {
    #[serde(default)]
    delta: String,
    #[serde(default)]
    reason: String,
    /// `movements` when posted from the SKU's ledger page (else it came from the product page).
    #[serde(default)]
    back: String,
}

async fn stock_adjust(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, sku)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<AdjustForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    catalog::check_sku(&sku)?;
    let owner = {
        let sku = sku.clone();
        db::with_conn(&db.pool, move |conn| catalog::sku_owner(conn, &sku)).await?
    };
    let (_, product_id) = owner.ok_or(Error::NotFound("sku"))?;
    let ctx = write_ctx(actor_name(&session.actor), &tenant);
    let result = match form.delta.trim().parse::<i64>() {
        Ok(delta) => {
            let input = Adjustment { delta, reason: form.reason.clone() };
            let sku = sku.clone();
            db.write(move |tx| inventory::adjust(tx, &sku, &input, &ctx)).await.map(|_| ())
        }
        Err(_) => Err(Error::validation("the change must be a whole number of units, such as 5 or -2")),
    };
    let from_ledger = form.back == "movements";
    match result {
        Ok(()) if from_ledger => Ok(redirect(&slug, &format!("inventory/{sku}?done=adjusted"))),
        Ok(()) => Ok(redirect(&slug, &format!("products/{product_id}?done=adjusted"))),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            if from_ledger {
                render_movements(&tenant, &db, chrome, sku, None).await
            } else {
                let product = load_product(&db, product_id).await?;
                let form = ProductForm::of(&product, &tenant.settings.commerce.currency);
                render_product(&tenant, &db, chrome, Some(product), form).await
            }
        }
    }
}

#[derive(Deserialize, Default)]
struct MovementsQuery {
    cursor: Option<String>,
    done: Option<String>,
}

struct MovementRow {
    when: String,
    delta: String,
    kind: &'static str,
    reason: String,
    actor: String,
    stock_after: i64,
}

#[derive(Template)]
#[template(path = "admin/store_movements.html")]
struct MovementsPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    sku: String,
    product_id: String,
    product_title: String,
    stock: i64,
    rows: Vec<MovementRow>,
    next_href: Option<String>,
}

async fn movements_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, sku)): Path<(String, String)>,
    Query(q): Query<MovementsQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    catalog::check_sku(&sku)?;
    let cursor = q
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<i64>().map_err(|_| Error::validation("cursor is not one this page gave out")))
        .transpose()?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    render_movements(&tenant, &db, chrome, sku, cursor).await
}

/// The ledger of one SKU, newest first, with its product and stock on hand.
async fn render_movements(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    sku: String,
    cursor: Option<i64>,
) -> PageResult {
    let s = sku.clone();
    let (product, (items, next_cursor)) = db::with_conn(&db.pool, move |conn| {
        let (_, product_id) = catalog::sku_owner(conn, &s)?.ok_or(Error::NotFound("sku"))?;
        let product = catalog::load_product(conn, &product_id)?.ok_or(Error::NotFound("product"))?;
        Ok((product, inventory::movements(conn, &s, cursor, PAGE)?))
    })
    .await?;
    let stock = product.variants.iter().find(|v| v.sku == sku).and_then(|v| v.stock).unwrap_or(0);
    let slug = tenant.slug.to_string();
    let next_href = next_cursor.map(|c| format!("/admin/tenants/{slug}/store/inventory/{sku}?cursor={c}"));
    let rows = items
        .into_iter()
        .map(|m| MovementRow {
            when: crate::display_time(m.created_at),
            delta: format!("{:+}", m.delta),
            kind: m.kind.as_str(),
            reason: m.reason,
            actor: m.actor,
            stock_after: m.stock_after,
        })
        .collect();
    let code = status_code(&chrome);
    let page = MovementsPage {
        chrome,
        slug,
        tenant_name: tenant.name.clone(),
        tab: "products",
        sku,
        product_id: product.id,
        product_title: product.title,
        stock,
        rows,
        next_href,
    };
    Ok((code, render(page)?).into_response())
}
