//! Admin UI pages of a tenant's store, part three: the rules the pricing reads (discount codes, tax rates,
//! shipping methods: lists, create forms, deletes) and the quote sandbox, which prices a cart written by hand (or a
//! stored cart) with the store's rules and active pricing plugins and shows each adjustment with its source and
//! what each plugin did. They call the same services as the admin API: `commerce::rules`, `commerce::sandbox`.
//!
//! Who may call: an operator or an admin scoped to the tenant (`Actor::open_tenant`); every form carries the
//! session's CSRF token (`CsrfForm`). Amounts on the forms are whole numbers in the currency's minor units.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use super::store_pages::{DoneQuery, form_error, open, redirect, status_code};
use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::app::AppState;
use crate::commerce::pricing::{Bracket, DiscountKind, ShippingKind};
use crate::commerce::rules::{self, DiscountCode, ShippingMethod, TaxRate};
use crate::commerce::sandbox::{self, QuoteRequest, SandboxLine, SandboxQuote};
use crate::commerce::{catalog, money};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::page::{PageError, PageResult, render};
use crate::identity::users;

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/store";
    Router::new()
        .route(&format!("{base}/rules"), get(rules_page))
        .route(&format!("{base}/rules/codes"), post(code_create))
        .route(&format!("{base}/rules/tax-rates"), post(tax_create))
        .route(&format!("{base}/rules/shipping"), post(shipping_create))
        .route(&format!("{base}/rules/{{kind}}/{{key}}/delete"), post(rule_delete))
        .route(&format!("{base}/quote"), get(quote_page).post(quote_run))
}

fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "code_created" => "Discount code created.",
        "code_deleted" => "Discount code deleted; carts holding it stop getting it.",
        "tax_created" => "Tax rate created.",
        "tax_deleted" => "Tax rate deleted.",
        "shipping_created" => "Shipping method created.",
        "shipping_deleted" => "Shipping method deleted.",
        _ => return None,
    };
    Some(text.to_owned())
}

/// A whole number field, `None` when left empty.
fn whole(field: &str, raw: &str) -> Result<Option<i64>, Error> {
    match raw.trim() {
        "" => Ok(None),
        text => text.parse().map(Some).map_err(|_| Error::validation(format!("{field} must be a whole number"))),
    }
}

/// The non-empty items of a comma-separated list.
fn list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// An RFC 3339 time as unix seconds, `None` when left empty.
fn moment(field: &str, raw: &str) -> Result<Option<i64>, Error> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let bad = || Error::validation(format!("{field} {text:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z"));
    let when = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| bad())?;
    Ok(Some(when.unix_timestamp()))
}

const DISCOUNT_KINDS: [(DiscountKind, &str); 3] =
    [(DiscountKind::Percent, "percent"), (DiscountKind::Fixed, "fixed"), (DiscountKind::FreeShipping, "free_shipping")];
const SHIPPING_KINDS: [(ShippingKind, &str); 3] =
    [(ShippingKind::Flat, "flat"), (ShippingKind::Weight, "weight"), (ShippingKind::Subtotal, "subtotal")];

/// A kind's name in `table`.
fn name_of<K: PartialEq>(table: &[(K, &'static str)], kind: K) -> &'static str {
    table.iter().find(|(k, _)| *k == kind).map_or("", |(_, name)| *name)
}

/// The kind a form names (empty: the first of `table`).
fn kind_of<K: Copy>(table: &[(K, &'static str)], name: &str) -> Result<K, Error> {
    let name = name.trim();
    let found = if name.is_empty() { table.first() } else { table.iter().find(|(_, n)| *n == name) };
    found.map(|(kind, _)| *kind).ok_or_else(|| {
        let names: Vec<&str> = table.iter().map(|(_, n)| *n).collect();
        Error::validation(format!("kind must be one of {}", names.join(", ")))
    })
}

// ---- the rules page ----

/// The new-discount-code form, as posted and as shown again after an error.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CodeForm {
    code: String,
    kind: String,
    value: String,
    min_subtotal: String,
    starts_at: String,
    ends_at: String,
    usage_limit: String,
    per_customer_limit: String,
    /// SKUs, comma-separated.
    skus: String,
    /// `on` when checked (absent otherwise).
    combinable: String,
}

impl CodeForm {
    fn to_code(&self) -> Result<DiscountCode, Error> {
        let kind = kind_of(&DISCOUNT_KINDS, &self.kind)?;
        Ok(DiscountCode {
            code: self.code.trim().to_owned(),
            kind,
            value: whole("value", &self.value)?.unwrap_or(0),
            min_subtotal: whole("min_subtotal", &self.min_subtotal)?,
            starts_at: moment("starts_at", &self.starts_at)?,
            ends_at: moment("ends_at", &self.ends_at)?,
            usage_limit: whole("usage_limit", &self.usage_limit)?,
            per_customer_limit: whole("per_customer_limit", &self.per_customer_limit)?,
            category_ids: Vec::new(),
            skus: list(&self.skus),
            combinable: !self.combinable.is_empty(),
            used: 0,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TaxForm {
    country: String,
    region: String,
    rate_bps: String,
    name: String,
}

impl TaxForm {
    fn to_rate(&self) -> Result<TaxRate, Error> {
        let rate_bps = whole("rate", &self.rate_bps)?
            .ok_or_else(|| Error::validation("give the rate in basis points (19 % is 1900)"))?;
        // Upper case, as the sandbox and the carts look destinations up.
        let region = self.region.trim().to_ascii_uppercase();
        Ok(TaxRate {
            id: String::new(),
            country: self.country.trim().to_ascii_uppercase(),
            region: Some(region).filter(|r| !r.is_empty()),
            rate_bps,
            name: self.name.trim().to_owned(),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ShippingForm {
    code: String,
    name: String,
    /// Country codes, comma-separated.
    countries: String,
    kind: String,
    price: String,
    /// `up_to:price, up_to:price`.
    brackets: String,
    free_over: String,
}

impl ShippingForm {
    fn to_method(&self) -> Result<ShippingMethod, Error> {
        let kind = kind_of(&SHIPPING_KINDS, &self.kind)?;
        Ok(ShippingMethod {
            code: self.code.trim().to_owned(),
            name: self.name.trim().to_owned(),
            countries: list(&self.countries).into_iter().map(|c| c.to_ascii_uppercase()).collect(),
            kind,
            price: whole("price", &self.price)?.unwrap_or(0),
            brackets: parse_brackets(&self.brackets)?,
            free_over: whole("free_over", &self.free_over)?,
        })
    }
}

/// Reads `up_to:price, up_to:price` (commas or new lines between the brackets).
fn parse_brackets(text: &str) -> Result<Vec<Bracket>, Error> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| -> Result<Bracket, Error> {
            let bad = || Error::validation(format!("brackets: {pair:?} is not up_to:price, such as 1000:490"));
            let (up_to, price) = pair.split_once(':').ok_or_else(bad)?;
            Ok(Bracket {
                up_to: up_to.trim().parse().map_err(|_| bad())?,
                price: price.trim().parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// The three create forms, and the error shown next to the one that was refused.
#[derive(Default)]
struct Forms {
    code: CodeForm,
    tax: TaxForm,
    shipping: ShippingForm,
    code_error: Option<String>,
    tax_error: Option<String>,
    shipping_error: Option<String>,
}

struct CodeRow {
    code: String,
    kind: &'static str,
    value: String,
    min_subtotal: String,
    valid: String,
    usage: String,
    per_customer: String,
    scope: String,
    combinable: bool,
}

struct ShippingRow {
    code: String,
    name: String,
    countries: String,
    kind: &'static str,
    price: String,
    brackets: String,
    free_over: String,
}

#[derive(Template)]
#[template(path = "admin/store_rules.html")]
struct RulesPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    currency: String,
    codes: Vec<CodeRow>,
    taxes: Vec<TaxRate>,
    methods: Vec<ShippingRow>,
    forms: Forms,
}

impl RulesPage {
    /// `1900` basis points as `19 %`, `725` as `7.25 %`.
    fn percent(&self, bps: i64) -> String {
        if bps % 100 == 0 {
            format!("{} %", bps / 100)
        } else {
            let text = format!("{}.{:02}", bps / 100, bps % 100);
            format!("{} %", text.trim_end_matches('0'))
        }
    }
}

fn code_row(c: DiscountCode, currency: &str, titles: &HashMap<String, String>) -> CodeRow {
    let value = match c.kind {
        DiscountKind::Percent => format!("{} %", c.value),
        DiscountKind::Fixed => money::format(c.value, currency),
        DiscountKind::FreeShipping => "—".to_owned(),
    };
    let valid = match (c.starts_at, c.ends_at) {
        (None, None) => "always".to_owned(),
        (Some(s), None) => format!("from {}", crate::display_time(s)),
        (None, Some(e)) => format!("until {}", crate::display_time(e)),
        (Some(s), Some(e)) => format!("{} – {}", crate::display_time(s), crate::display_time(e)),
    };
    let mut scope = Vec::new();
    if !c.category_ids.is_empty() {
        let names: Vec<&str> =
            c.category_ids.iter().map(|id| titles.get(id).map_or(id.as_str(), String::as_str)).collect();
        scope.push(format!("categories: {}", names.join(", ")));
    }
    if !c.skus.is_empty() {
        scope.push(format!("SKUs: {}", c.skus.join(", ")));
    }
    CodeRow {
        kind: name_of(&DISCOUNT_KINDS, c.kind),
        value,
        min_subtotal: c.min_subtotal.map_or_else(|| "—".to_owned(), |m| money::format(m, currency)),
        valid,
        usage: match c.usage_limit {
            Some(limit) => format!("{} of {limit}", c.used),
            None => format!("{} (no limit)", c.used),
        },
        per_customer: c.per_customer_limit.map_or_else(|| "—".to_owned(), |n| n.to_string()),
        scope: if scope.is_empty() { "every line".to_owned() } else { scope.join("; ") },
        combinable: c.combinable,
        code: c.code,
    }
}

fn shipping_row(m: ShippingMethod, currency: &str) -> ShippingRow {
    let brackets = m
        .brackets
        .iter()
        .map(|b| match m.kind {
            ShippingKind::Weight => format!("up to {} g: {}", b.up_to, money::format(b.price, currency)),
            _ => format!("up to {}: {}", money::format(b.up_to, currency), money::format(b.price, currency)),
        })
        .collect::<Vec<_>>()
        .join("; ");
    ShippingRow {
        code: m.code,
        name: m.name,
        countries: m.countries.join(", "),
        kind: name_of(&SHIPPING_KINDS, m.kind),
        price: money::format(m.price, currency),
        brackets: if brackets.is_empty() { "—".to_owned() } else { brackets },
        free_over: m.free_over.map_or_else(|| "—".to_owned(), |f| money::format(f, currency)),
    }
}

async fn render_rules(tenant: &Tenant, db: &TenantDb, chrome: Chrome, forms: Forms) -> PageResult {
    let (codes, taxes, methods, categories) = db::with_conn(&db.pool, |conn| {
        Ok((
            rules::list_codes(conn)?,
            rules::list_tax_rates(conn)?,
            rules::list_shipping(conn)?,
            catalog::list_categories(conn)?,
        ))
    })
    .await?;
    let currency = tenant.settings.commerce.currency.clone();
    let titles: HashMap<String, String> = categories.into_iter().map(|c| (c.id, c.title)).collect();
    let refused = forms.code_error.is_some() || forms.tax_error.is_some() || forms.shipping_error.is_some();
    let code = if refused { StatusCode::BAD_REQUEST } else { status_code(&chrome) };
    let page = RulesPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "rules",
        codes: codes.into_iter().map(|c| code_row(c, &currency, &titles)).collect(),
        taxes,
        methods: methods.into_iter().map(|m| shipping_row(m, &currency)).collect(),
        currency,
        forms,
    };
    Ok((code, render(page)?).into_response())
}

async fn rules_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    render_rules(&tenant, &db, chrome, Forms::default()).await
}

async fn code_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let result = match form.to_code() {
        Ok(code) => db.write(move |tx| rules::create_code(tx, &code, crate::now_unix())).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, "rules?done=code_created")),
        Err(err) => {
            let forms = Forms { code_error: Some(form_error(err)?), code: form, ..Forms::default() };
            render_rules(&tenant, &db, session.chrome("tenants"), forms).await
        }
    }
}

async fn tax_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<TaxForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let result = match form.to_rate() {
        Ok(rate) => db.write(move |tx| rules::create_tax_rate(tx, &rate)).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, "rules?done=tax_created")),
        Err(err) => {
            let forms = Forms { tax_error: Some(form_error(err)?), tax: form, ..Forms::default() };
            render_rules(&tenant, &db, session.chrome("tenants"), forms).await
        }
    }
}

async fn shipping_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<ShippingForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let result = match form.to_method() {
        Ok(method) => db.write(move |tx| rules::create_shipping(tx, &method, crate::now_unix())).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, "rules?done=shipping_created")),
        Err(err) => {
            let forms = Forms { shipping_error: Some(form_error(err)?), shipping: form, ..Forms::default() };
            render_rules(&tenant, &db, session.chrome("tenants"), forms).await
        }
    }
}

/// Deletes a discount code (`codes`), a tax rate (`tax-rates`, by id) or a shipping method (`shipping`).
async fn rule_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, kind, key)): Path<(String, String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let (result, done) = match kind.as_str() {
        "codes" => (db.write(move |tx| rules::delete_code(tx, &key)).await, "code_deleted"),
        "tax-rates" => (db.write(move |tx| rules::delete_tax_rate(tx, &key)).await, "tax_deleted"),
        "shipping" => (db.write(move |tx| rules::delete_shipping(tx, &key)).await, "shipping_deleted"),
        _ => return Err(PageError(Error::NotFound("page"))),
    };
    match result {
        Ok(()) => Ok(redirect(&slug, &format!("rules?done={done}"))),
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_rules(&tenant, &db, chrome, Forms::default()).await
        }
    }
}

// ---- the quote sandbox ----

/// The sandbox form, as posted and as shown again with the result or the error.
#[derive(Deserialize, Default)]
#[serde(default)]
struct QuoteForm {
    /// One `SKU quantity` a line.
    lines: String,
    /// Comma-separated.
    codes: String,
    country: String,
    region: String,
    /// A shipping method's code; empty for none.
    shipping_method: String,
    customer_email: String,
    cart_id: String,
}

fn filled(raw: &str) -> Option<String> {
    Some(raw.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Reads the lines box: `SKU quantity` a line (a SKU alone is one of it), blank lines skipped.
fn parse_lines(text: &str) -> Result<Vec<SandboxLine>, Error> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(sku) = words.next() else { continue };
        let at = |message: String| Error::validation(format!("lines, line {}: {message}", n + 1));
        let quantity = match (words.next(), words.next()) {
            (None, _) => 1,
            (Some(q), None) => q
                .parse::<u32>()
                .ok()
                .filter(|q| (1..=999).contains(q))
                .ok_or_else(|| at(format!("quantity {q:?} is not a whole number from 1 to 999")))?,
            (Some(_), Some(_)) => return Err(at("write a SKU and a quantity, such as TSHIRT-M 2".into())),
        };
        out.push(SandboxLine { sku: sku.to_owned(), quantity });
    }
    Ok(out)
}

impl QuoteForm {
    async fn to_request(&self, db: &TenantDb) -> Result<QuoteRequest, Error> {
        let lines = parse_lines(&self.lines)?;
        let cart_id = filled(&self.cart_id);
        if lines.is_empty() && cart_id.is_none() {
            return Err(Error::validation("write at least one line (SKU quantity), or give a stored cart's id"));
        }
        let customer_id = match filled(&self.customer_email) {
            None => None,
            Some(raw) => {
                let email = users::normalize_email(&raw)?;
                let found = db::with_conn(&db.pool, move |conn| users::credentials_by_email(conn, &email)).await?;
                let missing = || Error::validation(format!("no user of this tenant has the email {raw}"));
                Some(found.ok_or_else(missing)?.id)
            }
        };
        Ok(QuoteRequest {
            cart_id,
            lines,
            codes: list(&self.codes),
            country: filled(&self.country).map(|c| c.to_ascii_uppercase()),
            region: filled(&self.region),
            shipping_method: filled(&self.shipping_method),
            customer_id,
        })
    }
}

#[derive(Template)]
#[template(path = "admin/store_quote.html")]
struct QuotePage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    currency: String,
    form: QuoteForm,
    /// The store's shipping methods, for the `<select>`.
    methods: Vec<ShippingMethod>,
    result: Option<SandboxQuote>,
}

impl QuotePage {
    /// An amount in the store's currency, as the template shows it (`{{ self.m(*a.amount) }}`).
    fn m(&self, amount: i64) -> String {
        money::format(amount, &self.currency)
    }
}

async fn render_quote(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    form: QuoteForm,
    result: Option<SandboxQuote>,
) -> PageResult {
    let methods = db::with_conn(&db.pool, |conn| rules::list_shipping(conn)).await?;
    let code = status_code(&chrome);
    let page = QuotePage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "quote",
        currency: tenant.settings.commerce.currency.clone(),
        form,
        methods,
        result,
    };
    Ok((code, render(page)?).into_response())
}

/// Errors the sandbox shows above its form: bad input, and prices that cannot be computed (a fail-closed plugin).
fn quote_error(err: Error) -> Result<String, PageError> {
    match err {
        Error::PricingUnavailable(_) | Error::Unprocessable(_) | Error::DiscountInvalid(_) | Error::OutOfStock(_) => {
            Ok(err.to_string())
        }
        other => form_error(other),
    }
}

async fn quote_page(State(app): State<AppState>, session: UiSession, Path(slug): Path<String>) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    render_quote(&tenant, &db, session.chrome("tenants"), QuoteForm::default(), None).await
}

/// Prices the form's cart; nothing is written.
async fn quote_run(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<QuoteForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let result = match form.to_request(&db).await {
        Ok(request) => sandbox::price(&app, &tenant.slug, request).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(priced) => render_quote(&tenant, &db, session.chrome("tenants"), form, Some(priced)).await,
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(quote_error(err)?);
            render_quote(&tenant, &db, chrome, form, None).await
        }
    }
}
