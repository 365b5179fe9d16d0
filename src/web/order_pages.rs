//! Admin UI pages of a store's orders, the list: `/admin/tenants/{slug}/store/orders` shows them newest first,
//! filtered by status, part of the buyer's email, the number, UTC days and totals (a filter that makes no sense is
//! explained next to its field, never a 500), counted up to 10,000 and paged; `…/orders.csv` downloads the same
//! filter as CSV (streamed a chunk at a time, at most 100,000 rows and said so in the file, sharing the audit
//! export's limits: two exports per node, one orders export per tenant; cells a spreadsheet would run defused).
//! One order and its actions are `order_detail_pages`.
//!
//! Who may call: an operator, or an admin of the tenant (`Actor::open_tenant`), as on every Store page. The
//! search is `commerce::order_search`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use rusqlite::Connection;
use serde::Deserialize;

use super::audit_pages::{parse_day, safe_cell, thousands};
use super::csv_export;
use super::lists::{offset_of, with_query};
use super::store_pages::open;
use super::ui::{FieldErrors, Paging, When, query_pairs};
use super::{Chrome, UiSession};
use crate::app::AppState;
use crate::commerce::money;
use crate::commerce::order_search::{self, COUNT_CAP, EXPORT_COLUMNS, ExportRow, OrderFilter};
use crate::commerce::orders;
use crate::db;
use crate::error::Error;
use crate::http::page::{PageResult, message_page, render};

/// Orders per page of the list.
const PAGE_SIZE: u32 = 50;
const CSV_MAX_ROWS: usize = 100_000;
const CSV_CHUNK: u32 = 1_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tenants/{slug}/store/orders", get(orders_page))
        .route("/admin/tenants/{slug}/store/orders.csv", get(orders_csv))
}

/// `pending payment` for `pending_payment`.
pub(super) fn label(status: &str) -> String {
    status.replace('_', " ")
}

/// The badge colour of an order or shipment status (`static/admin.css`).
pub(super) fn status_class(status: &str) -> &'static str {
    match status {
        "paid" | "fulfilled" | "delivered" => "active",
        "pending_payment" | "created" | "in_transit" | "out_for_delivery" => "pending",
        "partially_refunded" => "suspended",
        "cancelled" | "failed_attempt" => "disabled",
        _ => "neutral",
    }
}

// ---- the list ----

/// The list's query: the filter form's fields as typed (shown again as they were) and the page's offset.
#[derive(Deserialize, Default, Clone)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    number: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// Decimals in the store's currency.
    #[serde(default)]
    min: String,
    #[serde(default)]
    max: String,
    #[serde(default)]
    offset: String,
}

/// The filter the query asks for, and the errors of its fields.
fn parse(q: &ListQuery, currency: &str) -> (OrderFilter, FieldErrors) {
    let mut errors = FieldErrors::new();
    let mut filter = OrderFilter::default();
    let status = q.status.trim();
    if !status.is_empty() {
        if orders::STATUSES.contains(&status) {
            filter.status = Some(status.to_owned());
        } else {
            errors.add("status", "choose a status from the list");
        }
    }
    let email = q.email.trim();
    if email.chars().count() > 254 {
        errors.add("email", "an email address has at most 254 characters");
    } else if !email.is_empty() {
        filter.email = Some(email.to_owned());
    }
    let number = q.number.trim();
    if !number.is_empty() {
        match number.strip_prefix('#').unwrap_or(number).parse::<i64>() {
            Ok(n) if n > 0 => filter.number = Some(n),
            _ => errors.add("number", "enter an order number like 1001"),
        }
    }
    filter.from = day("from", &q.from, &mut errors);
    let to = day("to", &q.to, &mut errors);
    if let (Some(from), Some(to)) = (filter.from, to)
        && to < from
    {
        errors.add("to", "the end date is before the start date");
    }
    // The whole last day.
    filter.to = to.map(|t| t + 86_399);
    filter.min_total = amount("min", &q.min, currency, &mut errors);
    filter.max_total = amount("max", &q.max, currency, &mut errors);
    if let (Some(min), Some(max)) = (filter.min_total, filter.max_total)
        && max < min
    {
        errors.add("max", "the highest total is below the lowest");
    }
    (filter, errors)
}

/// A date input's value as the unix time of the start of that day (UTC); an error for `field` when it is not a
/// real date.
fn day(field: &str, raw: &str, errors: &mut FieldErrors) -> Option<i64> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let start = parse_day(raw);
    if start.is_none() {
        errors.add(field, "enter a date like 2026-01-31");
    }
    start
}

/// A decimal amount in `currency` as minor units; an error for `field` when it is not one.
fn amount(field: &str, raw: &str, currency: &str, errors: &mut FieldErrors) -> Option<i64> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let parsed = money::parse_decimal(raw, currency).ok();
    if parsed.is_none() {
        errors.add(field, format!("enter an amount in {currency} like {}", money::to_decimal(1999, currency)));
    }
    parsed
}

/// The filter's query pairs as the form holds them, for the paging, CSV and clear links.
fn filter_query(q: &ListQuery) -> String {
    query_pairs(&[
        ("status", q.status.trim()),
        ("email", q.email.trim()),
        ("number", q.number.trim()),
        ("from", q.from.trim()),
        ("to", q.to.trim()),
        ("min", q.min.trim()),
        ("max", q.max.trim()),
    ])
}

struct OrderRow {
    id: String,
    number: String,
    created: When,
    email: String,
    status: String,
    status_class: &'static str,
    total: String,
}

#[derive(Template)]
#[template(path = "admin/store_orders.html")]
struct OrdersPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    errors: FieldErrors,
    /// (value, label, selected).
    statuses: Vec<(&'static str, String, bool)>,
    q: ListQuery,
    currency: String,
    example_amount: String,
    filtered: bool,
    rows: Vec<OrderRow>,
    total: String,
    paging: Paging,
    csv_href: String,
}

async fn orders_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let currency = tenant.settings.commerce.currency.clone();
    let (filter, errors) = parse(&q, &currency);
    let slug = tenant.slug.to_string();
    let query = filter_query(&q);
    let base = with_query(&format!("/admin/tenants/{slug}/store/orders"), &query);
    let offset = offset_of(Some(q.offset.as_str()));
    let (items, total) = if errors.is_empty() {
        db::with_conn(&db.pool, move |conn| {
            let (items, total) = order_search::search(conn, &filter, offset, PAGE_SIZE)?;
            if items.is_empty() && offset > 0 && total > 0 {
                // Past the end (a stale link): the last page instead.
                let last = Paging::new(total, offset, u64::from(PAGE_SIZE), "").offset;
                return Ok((order_search::search(conn, &filter, last, PAGE_SIZE)?.0, total));
            }
            Ok((items, total))
        })
        .await?
    } else {
        (Vec::new(), 0)
    };
    let paging = Paging::new(total, offset, u64::from(PAGE_SIZE), &base);
    let rows = items
        .into_iter()
        .map(|o| OrderRow {
            total: money::format(o.total, &o.currency),
            created: When::at(o.created_at),
            status_class: status_class(&o.status),
            status: label(&o.status),
            id: o.id,
            number: o.number,
            email: o.email,
        })
        .collect();
    let chosen = q.status.trim().to_owned();
    let page = OrdersPage {
        chrome: session.chrome("tenants"),
        tenant_name: tenant.name.clone(),
        tab: "orders",
        statuses: orders::STATUSES.iter().map(|s| (*s, label(s), *s == chosen)).collect(),
        example_amount: money::to_decimal(1999, &currency),
        currency,
        filtered: !query.is_empty(),
        rows,
        total: if total > COUNT_CAP {
            format!("More than {} orders", thousands(COUNT_CAP))
        } else {
            format!("{} {}", thousands(total), if total == 1 { "order" } else { "orders" })
        },
        paging,
        csv_href: with_query(&format!("/admin/tenants/{slug}/store/orders.csv"), &query),
        errors,
        q,
        slug,
    };
    let code = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((code, render(page)?).into_response())
}

// ---- CSV ----

async fn orders_csv(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let (filter, errors) = parse(&q, &tenant.settings.commerce.currency);
    if !errors.is_empty() {
        let text = errors.all().iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" ");
        return Ok(message_page(StatusCode::BAD_REQUEST, "That filter did not work", &text));
    }
    let turn = match csv_export::turn(&format!("orders:{}", tenant.slug), "This store's orders") {
        Ok(turn) => turn,
        Err(busy) => return Ok(*busy),
    };
    let first = Chunk { filter, after: None, written: 0, header: true };
    let file = csv_export::filename("orders", tenant.slug.as_str());
    Ok(csv_export::download(turn, db, first, export_chunk, "orders", file))
}

/// Where an export stands: its filter, the last number written, the rows written so far.
struct Chunk {
    filter: OrderFilter,
    after: Option<i64>,
    written: usize,
    header: bool,
}

/// A row's cells with the text that came from outside (the buyer's email above all, the statuses and payment
/// fields) defused; amounts, numbers, times and ids are written by us and stay numbers.
fn csv_record(row: ExportRow) -> [String; 15] {
    const TEXT: [&str; 5] = ["status", "email", "currency", "payment_method", "payment_status"];
    let mut cells = row.cells();
    for (cell, column) in cells.iter_mut().zip(EXPORT_COLUMNS) {
        if TEXT.contains(&column) {
            *cell = safe_cell(std::mem::take(cell));
        }
    }
    cells
}

/// The next chunk of the export as CSV (with the header row first), and what is left, if anything.
fn export_chunk(conn: &Connection, mut chunk: Chunk) -> Result<(Vec<u8>, Option<Chunk>), Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::internal(format!("write CSV: {e}"));
    if chunk.header {
        out.write_record(EXPORT_COLUMNS).map_err(io)?;
        chunk.header = false;
    }
    let limit = CSV_CHUNK.min(u32::try_from(CSV_MAX_ROWS - chunk.written).unwrap_or(CSV_CHUNK));
    let rows = order_search::export_rows(conn, &chunk.filter, chunk.after, limit)?;
    let full = rows.len() == limit as usize;
    let last = rows.last().map(|r| r.number);
    chunk.written += rows.len();
    for row in rows {
        out.write_record(csv_record(row)).map_err(io)?;
    }
    if full && chunk.written >= CSV_MAX_ROWS && !order_search::export_rows(conn, &chunk.filter, last, 1)?.is_empty() {
        // Said in the file itself: the rest is there, but not in this export.
        let mut note: [String; 15] = Default::default();
        note[0] = "truncated".to_owned();
        note[1] = format!("This export stops at {CSV_MAX_ROWS} rows; narrow the filter (dates, status) for the rest.");
        out.write_record(&note).map_err(io)?;
    }
    let bytes = out.into_inner().map_err(|e| Error::internal(format!("write CSV: {e}")))?;
    let more = if full && last.is_some() && chunk.written < CSV_MAX_ROWS {
        chunk.after = last;
        Some(chunk)
    } else {
        None
    };
    Ok((bytes, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_by_field() {
        let q = ListQuery {
            status: "shipped".into(),
            number: "#abc".into(),
            from: "2026-02-30".into(),
            min: "12.345".into(),
            ..Default::default()
        };
        let (_, errors) = parse(&q, "USD");
        assert_eq!(errors.get("status"), Some("Choose a status from the list."));
        assert_eq!(errors.get("number"), Some("Enter an order number like 1001."));
        assert_eq!(errors.get("from"), Some("Enter a date like 2026-01-31."));
        assert_eq!(errors.get("min"), Some("Enter an amount in USD like 19.99."));
        let q = ListQuery {
            status: "paid".into(),
            email: " ann@ ".into(),
            number: "#1002".into(),
            from: "1970-01-02".into(),
            to: "1970-01-02".into(),
            min: "10".into(),
            max: "12.50".into(),
            ..Default::default()
        };
        let (filter, errors) = parse(&q, "USD");
        assert!(errors.is_empty(), "{:?}", errors.all());
        let want = OrderFilter {
            status: Some("paid".into()),
            email: Some("ann@".into()),
            number: Some(1002),
            from: Some(86_400),
            to: Some(86_400 + 86_399),
            min_total: Some(1000),
            max_total: Some(1250),
            before: None,
        };
        assert_eq!(filter, want);
        let q = ListQuery {
            from: "2026-03-02".into(),
            to: "2026-03-01".into(),
            min: "5".into(),
            max: "4".into(),
            ..Default::default()
        };
        let (_, errors) = parse(&q, "USD");
        assert!(errors.get("to").is_some() && errors.get("max").is_some());
        assert_eq!(
            filter_query(&ListQuery { status: "paid".into(), email: "a b".into(), ..Default::default() }),
            "status=paid&email=a+b"
        );
    }

    #[test]
    fn csv_cells_from_outside_are_defused() {
        let row = ExportRow {
            number: 1001,
            created_at: "2026-01-01T00:00:00Z".into(),
            status: "paid".into(),
            email: "=HYPERLINK(\"x\")@example.com".into(),
            currency: "USD".into(),
            subtotal: "10.00".into(),
            discount: "0.00".into(),
            shipping: "0.00".into(),
            tax: "0.00".into(),
            fees: "0.00".into(),
            total: "10.00".into(),
            refunded: "0.00".into(),
            payment_method: "manual".into(),
            payment_status: "-pending".into(),
            id: "o1".into(),
        };
        let cells = csv_record(row);
        assert_eq!(cells[3], "'=HYPERLINK(\"x\")@example.com");
        assert_eq!(cells[13], "'-pending");
        assert_eq!((cells[0].as_str(), cells[10].as_str()), ("1001", "10.00"));
    }
}
