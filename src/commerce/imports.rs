//! CSV import and export of the catalog: one row per variant, products created or updated by handle, variants
//! by SKU. An import is a background job with progress (`catalog_imports` row + in-memory counters).
//!
//! Columns (header row required, any order; `handle`, `sku` and `price` are required):
//! `handle, title, description, status, categories, option1_name, option1_value, option2_name, option2_value,
//! option3_name, option3_value, sku, price, compare_at_price, weight_grams, stock, track_inventory,
//! allow_backorder, images`. Prices are decimals in the store currency's major units (`19.99`); `categories`
//! and `images` are `|`-separated (category handles; URLs); `stock` sets the stock on hand through an `import`
//! movement. Product fields may be left empty on a product's later rows. An import never deletes.
//!
//! Modes: `all_or_nothing` checks every row, then applies them in one transaction (a bad row, or a restart,
//! leaves the catalog untouched; the tenant's other writes wait meanwhile, so it takes `MAX_ALL_OR_NOTHING`
//! rows); `skip_bad_rows` applies good rows in transactions of `BATCH` rows, recording its progress in each, and
//! reports the bad ones. One import runs per store, `MAX_RUNNING_IMPORTS` per node. A job left `running` by a restart is marked `failed`
//! at start-up (`recover`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::{self, ProductStatus, VariantInput, WriteCtx};
use super::inventory::{self, MovementKind};
use super::money;
use crate::db::registry::TenantDb;
use crate::email::outbox::{TenantTx, enqueue_event};
use crate::error::{Error, Result};
use crate::webhooks::events::Event;

/// The columns, in the order export writes them.
pub const COLUMNS: &[&str] = &[
    "handle",
    "title",
    "description",
    "status",
    "categories",
    "option1_name",
    "option1_value",
    "option2_name",
    "option2_value",
    "option3_name",
    "option3_value",
    "sku",
    "price",
    "compare_at_price",
    "weight_grams",
    "stock",
    "track_inventory",
    "allow_backorder",
    "images",
];

/// Rows per transaction in `skip_bad_rows` mode.
const BATCH: usize = 500;
/// Most rows one import takes.
pub const MAX_ROWS: usize = 200_000;
/// Most rows of an all-or-nothing import: its one transaction holds the store's writes (sign-ins included)
/// while it runs.
pub const MAX_ALL_OR_NOTHING: u64 = 25_000;
/// Most row errors a job keeps in its report (the count is exact either way).
const MAX_REPORTED: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Check every row first; apply all of them in one transaction, or nothing.
    #[default]
    AllOrNothing,
    /// Apply the good rows, report the bad ones.
    SkipBadRows,
}

impl ImportMode {
    fn as_str(self) -> &'static str {
        match self {
            ImportMode::AllOrNothing => "all_or_nothing",
            ImportMode::SkipBadRows => "skip_bad_rows",
        }
    }
}

/// One bad row: its line in the file (the header is line 1), its SKU if it had one, and what is wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RowError {
    pub line: u64,
    pub sku: Option<String>,
    pub message: String,
}

/// An import job as `GET …/imports/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportJob {
    pub id: String,
    pub mode: ImportMode,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// Data rows in the file.
    pub total: u64,
    /// Rows handled so far.
    pub done: u64,
    /// Products created and updated.
    pub created: u64,
    pub updated: u64,
    /// How many rows were bad, and the first 1,000 of them.
    pub error_count: u64,
    pub errors: Vec<RowError>,
    /// Why a failed job failed.
    pub message: Option<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<i64>,
    /// The process that ran it (a running job of an earlier process was interrupted by a restart).
    #[serde(skip)]
    pub boot: Option<String>,
}

/// Live counters of running jobs (the row in the tenant file says where a job ended).
#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
}

/// One parsed data row.
#[derive(Debug, Clone)]
pub struct ImportRow {
    line: u64,
    handle: String,
    title: Option<String>,
    description: Option<String>,
    status: Option<ProductStatus>,
    categories: Option<Vec<String>>,
    options: Vec<(String, String)>,
    images: Option<Vec<String>>,
    variant: VariantInput,
}

/// Parses a CSV file: the rows, and the rows that are bad on their own (bad numbers, SKUs, a SKU given twice…).
/// A file that is not CSV with a usable header is refused as a whole.
pub fn parse(bytes: &[u8], currency: &str) -> Result<(Vec<ImportRow>, Vec<RowError>)> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(bytes);
    let headers =
        reader.byte_headers().map_err(|e| Error::validation(format!("the CSV header cannot be read: {e}")))?;
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (i, name) in headers.iter().enumerate() {
        let name = String::from_utf8_lossy(name).trim().trim_start_matches('\u{feff}').to_lowercase();
        let Some(known) = COLUMNS.iter().find(|c| **c == name) else {
            return Err(Error::validation(format!("unknown column {name:?}; the columns are {}", COLUMNS.join(", "))));
        };
        if index.insert(known, i).is_some() {
            return Err(Error::validation(format!("column {name} appears twice")));
        }
    }
    for required in ["handle", "sku", "price"] {
        if !index.contains_key(required) {
            return Err(Error::validation(format!("the CSV needs a {required} column")));
        }
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut skus = HashSet::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                errors.push(RowError { line, sku: None, message: format!("not a CSV row: {e}") });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        if rows.len() + errors.len() >= MAX_ROWS {
            return Err(Error::validation(format!("an import takes at most {MAX_ROWS} rows")));
        }
        let field = |name: &str| -> Result<Option<String>> {
            let Some(i) = index.get(name) else { return Ok(None) };
            let raw = record.get(*i).unwrap_or_default();
            let text = std::str::from_utf8(raw).map_err(|_| Error::validation(format!("{name} is not UTF-8")))?;
            Ok((!text.is_empty()).then(|| unsafe_cell(text)))
        };
        let sku = field("sku").ok().flatten();
        match parse_row(line, &field, currency) {
            Ok(row) if !skus.insert(row.variant.sku.clone()) => errors.push(RowError {
                line,
                sku: Some(row.variant.sku.clone()),
                message: format!("sku {} is on an earlier row too", row.variant.sku),
            }),
            Ok(row) => rows.push(row),
            Err(err) => errors.push(RowError { line, sku, message: err.to_string() }),
        }
    }
    if rows.is_empty() && errors.is_empty() {
        return Err(Error::validation("the CSV has no data rows"));
    }
    Ok((rows, errors))
}

fn parse_row(line: u64, field: &dyn Fn(&str) -> Result<Option<String>>, currency: &str) -> Result<ImportRow> {
    let handle = field("handle")?.ok_or_else(|| Error::validation("handle is empty"))?;
    catalog::check_handle("handle", &handle)?;
    let title = field("title")?;
    if let Some(t) = &title {
        catalog::check_title("title", t, 200)?;
    }
    let description = field("description")?;
    if let Some(d) = &description {
        catalog::check_description(d)?;
    }
    let status = match field("status")? {
        Some(s) => Some(
            ProductStatus::parse(&s.to_lowercase())
                .ok_or_else(|| Error::validation(format!("status {s:?} is not draft, active or archived")))?,
        ),
        None => None,
    };
    let list = |text: Option<String>| {
        text.map(|t| t.split('|').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<Vec<_>>())
    };
    let categories = list(field("categories")?);
    for c in categories.iter().flatten() {
        catalog::check_handle("category", c)?;
    }
    let images = list(field("images")?);
    if let Some(images) = &images {
        catalog::check_images(images)?;
    }
    let mut options = Vec::new();
    for n in 1..=3 {
        match (field(&format!("option{n}_name"))?, field(&format!("option{n}_value"))?) {
            (Some(name), Some(value)) => options.push((name, value)),
            (None, None) => {}
            _ => return Err(Error::validation(format!("option{n}_name and option{n}_value go together"))),
        }
    }
    let sku = field("sku")?.ok_or_else(|| Error::validation("sku is empty"))?;
    let amount = |name: &str| -> Result<Option<i64>> {
        field(name)?
            .map(|t| money::parse_decimal(&t, currency).map_err(|e| Error::validation(format!("{name}: {e}"))))
            .transpose()
    };
    let price = amount("price")?.ok_or_else(|| Error::validation("price is empty"))?;
    let integer = |name: &str| -> Result<Option<i64>> {
        field(name)?
            .map(|t| t.parse::<i64>().map_err(|_| Error::validation(format!("{name} {t:?} is not a whole number"))))
            .transpose()
    };
    let flag = |name: &str| -> Result<Option<bool>> {
        field(name)?
            .map(|t| match t.to_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(true),
                "false" | "no" | "0" => Ok(false),
                _ => Err(Error::validation(format!("{name} {t:?} is not true or false"))),
            })
            .transpose()
    };
    let variant = VariantInput {
        id: None,
        sku,
        price,
        compare_at_price: amount("compare_at_price")?,
        option_values: Some(options.iter().cloned().collect::<BTreeMap<_, _>>()),
        weight_grams: integer("weight_grams")?,
        stock: integer("stock")?,
        track_inventory: flag("track_inventory")?,
        allow_backorder: flag("allow_backorder")?,
    };
    catalog::check_variant(&variant)?;
    if options.len() != variant.option_values.as_ref().map_or(0, BTreeMap::len) {
        return Err(Error::validation("an option name is given twice"));
    }
    Ok(ImportRow { line, handle, title, description, status, categories, options, images, variant })
}

/// The products one batch touched: id → created in this import (else updated), and the handle.
type Touched = HashMap<String, (bool, String)>;

/// Applies one row inside its own savepoint: the product (created, or its given fields updated), then the variant.
fn apply_row(tx: &TenantTx<'_>, row: &ImportRow, ctx: &WriteCtx, touched: &mut Touched, import_id: &str) -> Result<()> {
    tx.execute_batch("SAVEPOINT import_row")?;
    match apply_row_inner(tx, row, ctx, touched, import_id) {
        Ok(()) => {
            tx.execute_batch("RELEASE import_row")?;
            Ok(())
        }
        Err(err) => {
            tx.execute_batch("ROLLBACK TO import_row; RELEASE import_row")?;
            Err(err)
        }
    }
}

fn apply_row_inner(
    tx: &TenantTx<'_>,
    row: &ImportRow,
    ctx: &WriteCtx,
    touched: &mut Touched,
    import_id: &str,
) -> Result<()> {
    let found: Option<(String, String)> = tx
        .query_row("SELECT id, options FROM products WHERE handle = ?1", [&row.handle], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let categories = match &row.categories {
        Some(handles) => Some(category_ids(tx, handles)?),
        None => None,
    };
    let (product_id, options, created) = match found {
        Some((id, options)) => {
            let options: Vec<String> = serde_json::from_str(&options).unwrap_or_default();
            tx.execute(
                "UPDATE products SET title = COALESCE(?2, title), description = COALESCE(?3, description),
                        status = COALESCE(?4, status), images = COALESCE(?5, images), updated_at = ?6
                 WHERE id = ?1",
                params![
                    id,
                    row.title.as_deref().map(str::trim),
                    row.description,
                    row.status.map(ProductStatus::as_str),
                    row.images.as_ref().map(catalog::json),
                    ctx.now
                ],
            )?;
            (id, options, false)
        }
        None => {
            let title = row.title.as_deref().ok_or_else(|| {
                Error::validation(format!("product {} is new: its first row needs a title", row.handle))
            })?;
            let options: Vec<String> = row.options.iter().map(|(name, _)| name.clone()).collect();
            catalog::check_options(&options)?;
            let id = uuid::Uuid::now_v7().to_string();
            tx.execute(
                "INSERT INTO products (id, handle, title, description, status, options, images, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    id,
                    row.handle,
                    title.trim(),
                    row.description.clone().unwrap_or_default(),
                    row.status.unwrap_or(ProductStatus::Active).as_str(),
                    catalog::json(&options),
                    catalog::json(&row.images.clone().unwrap_or_default()),
                    ctx.now
                ],
            )?;
            (id, options, true)
        }
    };
    if let Some(categories) = categories {
        tx.execute("DELETE FROM product_categories WHERE product_id = ?1", [&product_id])?;
        for c in categories {
            tx.execute(
                "INSERT OR IGNORE INTO product_categories (product_id, category_id) VALUES (?1, ?2)",
                params![product_id, c],
            )?;
        }
    }
    let v = &row.variant;
    let names: HashSet<&str> = row.options.iter().map(|(n, _)| n.as_str()).collect();
    if names != options.iter().map(String::as_str).collect() {
        return Err(Error::validation(format!(
            "product {} has the options [{}]; this row gives [{}]",
            row.handle,
            options.join(", "),
            row.options.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let values = catalog::json(&v.option_values.clone().unwrap_or_default());
    match catalog::sku_owner(tx, &v.sku)? {
        Some((_, owner)) if owner != product_id => {
            return Err(Error::Conflict(format!("sku {} belongs to another product", v.sku)));
        }
        Some((variant_id, _)) => {
            let clash: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM variants WHERE product_id = ?1 AND option_values = ?2 AND id != ?3)",
                params![product_id, values, variant_id],
                |r| r.get(0),
            )?;
            if clash && !options.is_empty() {
                return Err(Error::validation(format!("another variant of {} has these option values", row.handle)));
            }
            tx.execute(
                "UPDATE variants SET price = ?2, compare_at_price = COALESCE(?3, compare_at_price),
                        option_values = ?4, weight_grams = COALESCE(?5, weight_grams),
                        track_inventory = COALESCE(?6, track_inventory), allow_backorder = COALESCE(?7, allow_backorder),
                        updated_at = ?8
                 WHERE id = ?1",
                params![variant_id, v.price, v.compare_at_price, values, v.weight_grams, v.track_inventory, v.allow_backorder, ctx.now],
            )?;
            if let Some(target) = v.stock {
                let (stock, _) = inventory::stock_and_ledger(tx, &v.sku)?;
                if target != stock {
                    inventory::record(
                        tx,
                        &v.sku,
                        target - stock,
                        MovementKind::Import,
                        &format!("import {import_id}"),
                        ctx,
                        false,
                    )?;
                }
            }
        }
        None => {
            let (count, clash): (i64, bool) = tx.query_row(
                "SELECT COUNT(*), COALESCE(MAX(option_values = ?2), 0) FROM variants WHERE product_id = ?1",
                params![product_id, values],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if count as usize >= catalog::MAX_VARIANTS {
                return Err(Error::validation(format!(
                    "product {} has {} variants already",
                    row.handle,
                    catalog::MAX_VARIANTS
                )));
            }
            if clash {
                return Err(Error::validation(if options.is_empty() {
                    format!("product {} declares no options, so it has one variant only", row.handle)
                } else {
                    format!("another variant of {} has these option values", row.handle)
                }));
            }
            let reason = format!("import {import_id}");
            catalog::insert_variant(tx, &product_id, count as usize, v, ctx, (MovementKind::Import, &reason))?;
        }
    }
    let entry = touched.entry(product_id).or_insert((created, row.handle.clone()));
    entry.0 |= created;
    Ok(())
}

fn category_ids(conn: &Connection, handles: &[String]) -> Result<Vec<String>> {
    handles
        .iter()
        .map(|h| {
            conn.query_row("SELECT id FROM categories WHERE handle = ?1", [h], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::validation(format!("category {h} does not exist")))
        })
        .collect()
}

/// Refreshes each product a batch touched (prices, stock flag, search row: once, not per row) and raises one
/// event per product.
fn announce(tx: &TenantTx<'_>, touched: &Touched) -> Result<(u64, u64)> {
    let (mut created, mut updated) = (0, 0);
    for (product_id, (is_new, handle)) in touched {
        catalog::refresh(tx, product_id)?;
        let (product_id, handle) = (product_id.clone(), handle.clone());
        if *is_new {
            created += 1;
            enqueue_event(tx, Event::ProductCreated { product_id, handle })?;
        } else {
            updated += 1;
            enqueue_event(tx, Event::ProductUpdated { product_id, handle })?;
        }
    }
    Ok((created, updated))
}

/// A new job, recorded as `running` by this process (`boot`).
pub struct NewJob<'a> {
    pub id: &'a str,
    pub mode: ImportMode,
    pub total: u64,
    pub actor: &'a str,
    pub boot: &'a str,
    pub now: i64,
}

/// Records a new job as `running`, unless the tenant has one running already (`conflict`): one import per store
/// at a time.
pub fn insert_job(tx: &TenantTx<'_>, job: &NewJob<'_>) -> Result<()> {
    // Running in this process (one an earlier process left running is failed, by the start-up scan).
    let running: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM catalog_imports WHERE status = 'running' AND boot IS ?1)",
        [job.boot],
        |r| r.get(0),
    )?;
    if running {
        return Err(Error::Conflict("an import of this store is running; wait for it to end".into()));
    }
    tx.execute(
        "INSERT INTO catalog_imports (id, mode, status, total, actor, boot, created_at)
         VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6)",
        params![job.id, job.mode.as_str(), job.total as i64, job.actor, job.boot, job.now],
    )?;
    Ok(())
}

/// Records where a job stands, in the transaction that got it there (so a crash never reports applied rows as
/// not applied).
fn record_progress(tx: &TenantTx<'_>, id: &str, done: u64, created: u64, updated: u64) -> Result<()> {
    tx.execute(
        "UPDATE catalog_imports SET done = ?2, created = ?3, updated = ?4 WHERE id = ?1",
        params![id, done as i64, created as i64, updated as i64],
    )?;
    Ok(())
}

/// Runs a job to its end and records how it ended. Row errors found while parsing come in `errors`.
pub async fn run(
    db: TenantDb,
    id: String,
    mode: ImportMode,
    rows: Vec<ImportRow>,
    mut errors: Vec<RowError>,
    ctx: WriteCtx,
    progress: Arc<Progress>,
) -> Result<()> {
    let failed_rows = errors.len() as u64;
    progress.done.fetch_add(failed_rows, Ordering::Relaxed);
    let (mut created, mut updated) = (0u64, 0u64);
    let mut message = None;
    match mode {
        ImportMode::AllOrNothing if !errors.is_empty() => {
            message = Some(format!("{} rows are bad; nothing was imported", errors.len()));
        }
        ImportMode::AllOrNothing => {
            let (ctx, job, progress2) = (ctx.clone(), id.clone(), progress.clone());
            let outcome = db
                .write(move |tx| {
                    let mut touched = Touched::new();
                    let mut bad = Vec::new();
                    for row in &rows {
                        if let Err(err) = apply_row(tx, row, &ctx, &mut touched, &job) {
                            bad.push(RowError {
                                line: row.line,
                                sku: Some(row.variant.sku.clone()),
                                message: err.to_string(),
                            });
                        }
                        progress2.done.fetch_add(1, Ordering::Relaxed);
                    }
                    if !bad.is_empty() {
                        // Returning an error rolls the whole transaction back.
                        return Err(Error::Conflict(serde_json::to_string(&bad).unwrap_or_default()));
                    }
                    let (created, updated) = announce(tx, &touched)?;
                    tx.execute("UPDATE catalog_imports SET status = 'done' WHERE id = ?1", [&job])?;
                    record_progress(tx, &job, rows.len() as u64, created, updated)?;
                    Ok((created, updated))
                })
                .await;
            match outcome {
                Ok((c, u)) => (created, updated) = (c, u),
                Err(Error::Conflict(bad)) => {
                    let bad: Vec<RowError> = serde_json::from_str(&bad).unwrap_or_default();
                    message = Some(format!("{} rows are bad; nothing was imported", bad.len()));
                    errors.extend(bad);
                }
                Err(err) => message = Some(format!("the import stopped: {err}")),
            }
        }
        ImportMode::SkipBadRows => {
            for batch in rows.chunks(BATCH) {
                let (ctx, job, progress2, batch) = (ctx.clone(), id.clone(), progress.clone(), batch.to_vec());
                let (so_far_created, so_far_updated) = (created, updated);
                let result = db
                    .write(move |tx| {
                        let mut touched = Touched::new();
                        let mut bad = Vec::new();
                        for row in &batch {
                            if let Err(err) = apply_row(tx, row, &ctx, &mut touched, &job) {
                                bad.push(RowError {
                                    line: row.line,
                                    sku: Some(row.variant.sku.clone()),
                                    message: err.to_string(),
                                });
                            }
                            progress2.done.fetch_add(1, Ordering::Relaxed);
                        }
                        let (c, u) = announce(tx, &touched)?;
                        let done = progress2.done.load(Ordering::Relaxed);
                        record_progress(tx, &job, done, so_far_created + c, so_far_updated + u)?;
                        Ok(((c, u), bad))
                    })
                    .await;
                match result {
                    Ok(((c, u), bad)) => {
                        created += c;
                        updated += u;
                        errors.extend(bad);
                    }
                    Err(err) => {
                        message = Some(format!("the import stopped: {err}"));
                        break;
                    }
                }
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    let status = if message.is_some() { "failed" } else { "done" };
    let error_count = errors.len() as u64;
    errors.truncate(MAX_REPORTED);
    let done = progress.done.load(Ordering::Relaxed);
    let report = serde_json::to_string(&errors).map_err(Error::internal)?;
    db.write(move |tx| {
        tx.execute(
            "UPDATE catalog_imports SET status = ?2, done = ?3, created = ?4, updated = ?5, errors = ?6, message = ?7,
                    error_count = ?8, finished_at = ?9
             WHERE id = ?1",
            params![
                id,
                status,
                done as i64,
                created as i64,
                updated as i64,
                report,
                message,
                error_count as i64,
                crate::now_unix()
            ],
        )?;
        Ok(())
    })
    .await
}

/// Start-up: jobs an earlier process (`boot` is this one's) left `running` are `failed` (an all-or-nothing job's
/// transaction never committed; a skip-bad-rows job's `done` says how far it got). Returns how many. A file not
/// yet migrated to commerce has none.
pub fn recover(conn: &Connection, boot: &str) -> Result<usize> {
    match conn.execute(
        "UPDATE catalog_imports SET status = 'failed', message = 'interrupted by a restart', finished_at = ?1
         WHERE status = 'running' AND boot IS NOT ?2",
        params![crate::now_unix(), boot],
    ) {
        Ok(n) => Ok(n),
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => Ok(0),
        Err(e) => Err(e.into()),
    }
}

const JOB_COLUMNS: &str =
    "id, mode, status, total, done, created, updated, errors, message, created_at, finished_at, error_count, boot";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportJob> {
    let mode: String = r.get(1)?;
    let errors: String = r.get(7)?;
    let errors: Vec<RowError> = serde_json::from_str(&errors).unwrap_or_default();
    let counted: i64 = r.get(11)?;
    Ok(ImportJob {
        id: r.get(0)?,
        mode: if mode == "skip_bad_rows" { ImportMode::SkipBadRows } else { ImportMode::AllOrNothing },
        status: r.get(2)?,
        total: r.get::<_, i64>(3)? as u64,
        done: r.get::<_, i64>(4)? as u64,
        created: r.get::<_, i64>(5)? as u64,
        updated: r.get::<_, i64>(6)? as u64,
        error_count: counted.max(errors.len() as i64) as u64,
        errors,
        message: r.get(8)?,
        created_at: r.get(9)?,
        finished_at: r.get(10)?,
        boot: r.get(12)?,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<ImportJob>> {
    Ok(conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM catalog_imports WHERE id = ?1"), [id], job_row).optional()?)
}

/// The newest jobs first.
pub fn list(conn: &Connection, limit: u32) -> Result<Vec<ImportJob>> {
    let mut stmt =
        conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM catalog_imports ORDER BY created_at DESC, id DESC LIMIT ?1"))?;
    Ok(stmt.query_map([limit], job_row)?.collect::<rusqlite::Result<_>>()?)
}

/// Text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`, which the
/// import takes off again: a title like `=HYPERLINK(…)` stays text in the merchant's spreadsheet.
fn safe_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text }
}

/// Undoes `safe_cell` on import.
fn unsafe_cell(text: &str) -> String {
    match text.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_owned(),
        _ => text.to_owned(),
    }
}

/// The whole catalog as CSV in the import format (one row per variant; a product's fields on its first row).
pub fn export(conn: &Connection, currency: &str) -> Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::internal(format!("write CSV: {e}"));
    out.write_record(COLUMNS).map_err(io)?;
    let mut categories: HashMap<String, Vec<String>> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT pc.product_id, c.handle FROM product_categories pc JOIN categories c ON c.id = pc.category_id
         ORDER BY c.handle",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (product, handle) = row?;
        categories.entry(product).or_default().push(handle);
    }
    let mut stmt = conn.prepare(
        "SELECT p.id, p.handle, p.title, p.description, p.status, p.options, p.images, v.sku, v.option_values, v.price,
                v.compare_at_price, v.weight_grams, v.stock, v.track_inventory, v.allow_backorder
         FROM products p JOIN variants v ON v.product_id = p.id ORDER BY p.seq, v.position",
    )?;
    let mut rows = stmt.query([])?;
    let mut previous = String::new();
    while let Some(r) = rows.next()? {
        let product_id: String = r.get(0)?;
        // A product's own fields go on its first row only (the import reads empty ones as "unchanged").
        let first = product_id != previous;
        previous.clone_from(&product_id);
        let options: Vec<String> = serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default();
        let images: Vec<String> = serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default();
        let values: BTreeMap<String, String> = serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default();
        let mut option_cells = Vec::new();
        for n in 0..3 {
            let name = options.get(n).cloned().unwrap_or_default();
            let value = values.get(&name).cloned().unwrap_or_default();
            option_cells.push(safe_cell(name));
            option_cells.push(safe_cell(value));
        }
        let amount = |v: Option<i64>| v.map(|a| money::to_decimal(a, currency)).unwrap_or_default();
        let number = |v: Option<i64>| v.map(|a| a.to_string()).unwrap_or_default();
        let product_fields: [String; 4] = if first {
            [
                safe_cell(r.get::<_, String>(2)?),
                safe_cell(r.get::<_, String>(3)?),
                r.get::<_, String>(4)?,
                categories.get(&product_id).map(|c| c.join("|")).unwrap_or_default(),
            ]
        } else {
            Default::default()
        };
        let record: Vec<String> = std::iter::once(r.get::<_, String>(1)?)
            .chain(product_fields)
            .chain(option_cells)
            .chain([
                r.get::<_, String>(7)?,
                amount(Some(r.get(9)?)),
                amount(r.get(10)?),
                number(r.get(11)?),
                number(Some(r.get(12)?)),
                r.get::<_, bool>(13)?.to_string(),
                r.get::<_, bool>(14)?.to_string(),
                if first { images.join("|") } else { String::new() },
            ])
            .collect();
        out.write_record(&record).map_err(io)?;
    }
    out.into_inner().map_err(|e| Error::internal(format!("write CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_checked_one_by_one_and_named_by_line() {
        let csv = "handle,title,sku,price,option1_name,option1_value,stock\n\
                   shirt,Shirt,SH-M,19.99,size,M,5\n\
                   shirt,,SH-L,19.999,size,L,5\n\
                   shirt,,SH/X,1,size,X,\n\
                   shirt,,SH-M,2,size,S,\n\
                   \"mug\",\"Mug, white\",MUG,7,,,3\n";
        let (rows, errors) = parse(csv.as_bytes(), "USD").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].variant.price, 1999);
        assert_eq!(rows[1].title.as_deref(), Some("Mug, white"));
        assert_eq!(rows[1].variant.stock, Some(3));
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5], "{errors:?}");
        assert!(errors[2].message.contains("earlier row"));
    }

    #[test]
    fn a_file_without_a_usable_header_is_refused_whole() {
        assert!(parse(b"handle,title\nx,y\n", "USD").is_err(), "no sku and price columns");
        assert!(parse(b"handle,sku,price,colour\nx,y,1,red\n", "USD").is_err(), "unknown column");
        assert!(parse(b"handle,sku,price\n", "USD").is_err(), "no rows");
        let (rows, errors) = parse(b"handle,sku,price\nx,y,1\nx,z\n", "USD").unwrap();
        assert_eq!((rows.len(), errors.len()), (1, 1), "a short row is a bad row");
    }
}
