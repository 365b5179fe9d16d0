//! The admin's search over a store's orders: by status, part of the buyer's email, the order number, a range of
//! creation times and a range of totals, newest (highest number) first, with a count that stops at `COUNT_CAP`;
//! and the rows of the orders CSV export, read a chunk at a time by number.
//!
//! Callers have checked that the admin may see the tenant (the admin UI's orders pages, `web::order_pages`).
//! Each query's `WHERE` holds only the conditions of the filters that are set: `?N IS NULL OR …` for an absent
//! filter would keep SQLite from using `orders_status` and the number index.

use rusqlite::Connection;
use rusqlite::types::Value as Sql;

use super::money;
use super::orders::OrderListItem;
use crate::error::Result;

/// Counts stop here: past it a page says "10,000+" instead of reading every order for an exact number.
pub const COUNT_CAP: u64 = 10_000;

/// What the admin is looking for; `None` is "any". Amounts are minor units, times unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// One of `orders::STATUSES`.
    pub status: Option<String>,
    /// Part of the buyer's email (any case), wildcards taken literally.
    pub email: Option<String>,
    /// The order number exactly (1001 for `#1001`).
    pub number: Option<i64>,
    /// Created at or after.
    pub from: Option<i64>,
    /// Created at or before (the caller makes a day's `to` its last second).
    pub to: Option<i64>,
    pub min_total: Option<i64>,
    pub max_total: Option<i64>,
    /// Numbers below this one only (the API's cursor).
    pub before: Option<i64>,
}

/// `%part%` for `LIKE … ESCAPE '\'`, with the wildcards of `part` taken literally.
fn contains_pattern(part: &str) -> String {
    format!("%{}%", part.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// The `WHERE` clause of `filter` (anonymous `?` parameters in the order of the values) with only the conditions
/// it sets, and its values.
fn conditions(filter: &OrderFilter) -> (String, Vec<Sql>) {
    let mut clauses: Vec<&str> = vec!["1"];
    let mut values: Vec<Sql> = Vec::new();
    if let Some(status) = &filter.status {
        clauses.push("status = ?");
        values.push(Sql::Text(status.clone()));
    }
    if let Some(email) = &filter.email {
        clauses.push("email LIKE ? ESCAPE '\\'");
        values.push(Sql::Text(contains_pattern(email)));
    }
    if let Some(number) = filter.number {
        clauses.push("number = ?");
        values.push(Sql::Integer(number));
    }
    if let Some(from) = filter.from {
        clauses.push("created_at >= ?");
        values.push(Sql::Integer(from));
    }
    if let Some(to) = filter.to {
        clauses.push("created_at <= ?");
        values.push(Sql::Integer(to));
    }
    if let Some(min) = filter.min_total {
        clauses.push("total >= ?");
        values.push(Sql::Integer(min));
    }
    if let Some(max) = filter.max_total {
        clauses.push("total <= ?");
        values.push(Sql::Integer(max));
    }
    if let Some(before) = filter.before {
        clauses.push("number < ?");
        values.push(Sql::Integer(before));
    }
    (clauses.join(" AND "), values)
}

/// A page of the orders matching `filter`, highest number first, from `offset`; and how many match, counted up to
/// `COUNT_CAP + 1` at most (more than `COUNT_CAP` means "more than can be counted").
pub fn search(conn: &Connection, filter: &OrderFilter, offset: u64, limit: u32) -> Result<(Vec<OrderListItem>, u64)> {
    let (sql, values) = conditions(filter);
    let mut page = values.clone();
    page.push(Sql::Integer(i64::from(limit)));
    page.push(Sql::Integer(i64::try_from(offset).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, number, status, email, currency, total, created_at FROM orders WHERE {sql}
         ORDER BY number DESC LIMIT ? OFFSET ?"
    ))?;
    let items: Vec<OrderListItem> = stmt
        .query_map(rusqlite::params_from_iter(page), |r| {
            Ok(OrderListItem {
                id: r.get(0)?,
                number: format!("#{}", r.get::<_, i64>(1)?),
                status: r.get(2)?,
                email: r.get(3)?,
                currency: r.get(4)?,
                total: r.get(5)?,
                created_at: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut counted = values;
    counted.push(Sql::Integer(i64::try_from(COUNT_CAP + 1).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare_cached(&format!("SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE {sql} LIMIT ?)"))?;
    let total: i64 = stmt.query_row(rusqlite::params_from_iter(counted), |r| r.get(0))?;
    Ok((items, total.max(0) as u64))
}

/// The CSV export's columns, in the order of `ExportRow::cells`. Amounts are decimals in the order's currency
/// (`12.50`), without a currency sign: the `currency` column names it.
pub const EXPORT_COLUMNS: [&str; 15] = [
    "number",
    "created_at",
    "status",
    "email",
    "currency",
    "subtotal",
    "discount",
    "shipping",
    "tax",
    "fees",
    "total",
    "refunded",
    "payment_method",
    "payment_status",
    "id",
];

/// One order as the CSV export writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub number: i64,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub status: String,
    pub email: String,
    pub currency: String,
    pub subtotal: String,
    pub discount: String,
    pub shipping: String,
    pub tax: String,
    pub fees: String,
    pub total: String,
    pub refunded: String,
    pub payment_method: String,
    pub payment_status: String,
    pub id: String,
}

impl ExportRow {
    /// The row's cells in `EXPORT_COLUMNS` order.
    pub fn cells(self) -> [String; 15] {
        [
            self.number.to_string(),
            self.created_at,
            self.status,
            self.email,
            self.currency,
            self.subtotal,
            self.discount,
            self.shipping,
            self.tax,
            self.fees,
            self.total,
            self.refunded,
            self.payment_method,
            self.payment_status,
            self.id,
        ]
    }
}

/// At most `chunk` orders matching `filter`, highest number first, below `after_number` (the last number of the
/// previous chunk) when given.
pub fn export_rows(
    conn: &Connection,
    filter: &OrderFilter,
    after_number: Option<i64>,
    chunk: u32,
) -> Result<Vec<ExportRow>> {
    let (mut sql, mut values) = conditions(filter);
    if let Some(number) = after_number {
        sql.push_str(" AND number < ?");
        values.push(Sql::Integer(number));
    }
    values.push(Sql::Integer(i64::from(chunk)));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT number, created_at, status, email, currency, subtotal, discount_total, shipping_total, tax_total,
                fee_total, total, refunded_total, payment_method, payment_status, id
         FROM orders WHERE {sql} ORDER BY number DESC LIMIT ?"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
        let currency: String = r.get(4)?;
        let amount = |i: usize| -> rusqlite::Result<String> { Ok(money::to_decimal(r.get(i)?, &currency)) };
        Ok(ExportRow {
            number: r.get(0)?,
            created_at: crate::format_time(r.get(1)?),
            status: r.get(2)?,
            email: r.get(3)?,
            subtotal: amount(5)?,
            discount: amount(6)?,
            shipping: amount(7)?,
            tax: amount(8)?,
            fees: amount(9)?,
            total: amount(10)?,
            refunded: amount(11)?,
            payment_method: r.get(12)?,
            payment_status: r.get(13)?,
            id: r.get(14)?,
            currency,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `orders` columns of migrations 0012 and 0013, with six orders:
    /// #1001 paid ann 10.00 at 1000, #1002 pending bob 25.00 at 2000, #1003 paid carol_x 40.00 at 3000,
    /// #1004 cancelled ann 5.00 at 4000, #1005 refunded dave%1 99.99 EUR at 86400, #1006 paid ANN 0.50 at 90000.
    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE orders (
                id TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE, status TEXT NOT NULL, email TEXT NOT NULL,
                customer_id TEXT, currency TEXT NOT NULL, subtotal INTEGER NOT NULL, discount_total INTEGER NOT NULL,
                shipping_total INTEGER NOT NULL, tax_total INTEGER NOT NULL, fee_total INTEGER NOT NULL,
                total INTEGER NOT NULL, pricing TEXT NOT NULL, shipping_address TEXT NOT NULL, billing_address TEXT,
                payment_method TEXT NOT NULL, token_hash TEXT NOT NULL, created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL, expires_at INTEGER,
                payment_status TEXT NOT NULL DEFAULT 'pending', payment_ref TEXT, client_secret TEXT,
                refunded_total INTEGER NOT NULL DEFAULT 0, idempotency_key TEXT);
             CREATE INDEX orders_status ON orders (status, number DESC);",
        )
        .unwrap();
        let rows = [
            (1001, "paid", "ann@example.com", "USD", 1000, 1000),
            (1002, "pending_payment", "bob@example.com", "USD", 2500, 2000),
            (1003, "paid", "carol_x@example.com", "USD", 4000, 3000),
            (1004, "cancelled", "ann@example.com", "USD", 500, 4000),
            (1005, "refunded", "dave%1@example.com", "EUR", 9999, 86_400),
            (1006, "paid", "ANN@other.example", "USD", 50, 90_000),
        ];
        for (number, status, email, currency, total, at) in rows {
            conn.execute(
                "INSERT INTO orders (id, number, status, email, currency, subtotal, discount_total, shipping_total,
                                     tax_total, fee_total, total, pricing, shipping_address, payment_method,
                                     token_hash, created_at, updated_at, refunded_total)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, 0, 0, ?6, '{}', '{}', 'manual', 'h', ?7, ?7, ?8)",
                rusqlite::params![
                    format!("o{number}"),
                    number,
                    status,
                    email,
                    currency,
                    total,
                    at,
                    if status == "refunded" { total } else { 0 }
                ],
            )
            .unwrap();
        }
        conn
    }

    fn numbers(conn: &Connection, filter: OrderFilter) -> (Vec<String>, u64) {
        let (items, total) = search(conn, &filter, 0, 50).unwrap();
        (items.into_iter().map(|o| o.number).collect(), total)
    }

    #[test]
    fn no_filter_is_every_order_newest_first() {
        let conn = table();
        let (found, total) = numbers(&conn, OrderFilter::default());
        assert_eq!(found, ["#1006", "#1005", "#1004", "#1003", "#1002", "#1001"]);
        assert_eq!(total, 6);
        let (page, total) = search(&conn, &OrderFilter::default(), 2, 2).unwrap();
        let page: Vec<String> = page.into_iter().map(|o| o.number).collect();
        assert_eq!((page, total), (vec!["#1004".to_owned(), "#1003".to_owned()], 6), "a page counts every match");
    }

    #[test]
    fn each_filter_narrows() {
        let conn = table();
        let status = OrderFilter { status: Some("paid".into()), ..Default::default() };
        assert_eq!(numbers(&conn, status).0, ["#1006", "#1003", "#1001"]);
        let email = OrderFilter { email: Some("ann@".into()), ..Default::default() };
        assert_eq!(numbers(&conn, email).0, ["#1006", "#1004", "#1001"], "any case");
        let underscore = OrderFilter { email: Some("l_x".into()), ..Default::default() };
        assert_eq!(numbers(&conn, underscore).0, ["#1003"]);
        let literal = OrderFilter { email: Some("_".into()), ..Default::default() };
        assert_eq!(numbers(&conn, literal).0, ["#1003"], "_ is not a wildcard");
        let percent = OrderFilter { email: Some("%".into()), ..Default::default() };
        assert_eq!(numbers(&conn, percent).0, ["#1005"], "% is not a wildcard");
        let number = OrderFilter { number: Some(1002), ..Default::default() };
        assert_eq!(numbers(&conn, number), (vec!["#1002".to_owned()], 1));
        let from = OrderFilter { from: Some(3000), ..Default::default() };
        assert_eq!(numbers(&conn, from).0, ["#1006", "#1005", "#1004", "#1003"]);
        let to = OrderFilter { to: Some(2000), ..Default::default() };
        assert_eq!(numbers(&conn, to).0, ["#1002", "#1001"], "to is inclusive");
        let min = OrderFilter { min_total: Some(2500), ..Default::default() };
        assert_eq!(numbers(&conn, min).0, ["#1005", "#1003", "#1002"]);
        let max = OrderFilter { max_total: Some(1000), ..Default::default() };
        assert_eq!(numbers(&conn, max).0, ["#1006", "#1004", "#1001"]);
        let none = OrderFilter { number: Some(999), ..Default::default() };
        assert_eq!(numbers(&conn, none), (Vec::new(), 0));
    }

    #[test]
    fn filters_combine() {
        let conn = table();
        let filter = OrderFilter {
            status: Some("paid".into()),
            email: Some("ANN".into()),
            from: Some(500),
            to: Some(86_400),
            min_total: Some(100),
            max_total: Some(5000),
            ..Default::default()
        };
        assert_eq!(numbers(&conn, filter), (vec!["#1001".to_owned()], 1));
    }

    #[test]
    fn the_sql_holds_only_the_filters_set() {
        let (sql, values) = conditions(&OrderFilter::default());
        assert_eq!((sql.as_str(), values.len()), ("1", 0));
        let (sql, values) = conditions(&OrderFilter { status: Some("paid".into()), ..Default::default() });
        assert_eq!((sql.as_str(), values.len()), ("1 AND status = ?", 1));
        assert!(!sql.contains("IS NULL"));
    }

    #[test]
    fn the_count_stops_past_the_cap() {
        let conn = table();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 2000 UNION ALL SELECT i + 1 FROM n WHERE i < 12500)
             INSERT INTO orders (id, number, status, email, currency, subtotal, discount_total, shipping_total,
                                 tax_total, fee_total, total, pricing, shipping_address, payment_method, token_hash,
                                 created_at, updated_at)
             SELECT 'x' || i, i, 'paid', 'bulk@example.com', 'USD', 1, 0, 0, 0, 0, 1, '{}', '{}', 'manual', 'h',
                    i, i FROM n;",
        )
        .unwrap();
        let (items, total) = search(&conn, &OrderFilter::default(), 0, 10).unwrap();
        assert_eq!((items.len(), total), (10, COUNT_CAP + 1));
        assert_eq!(items[0].number, "#12500");
    }

    #[test]
    fn export_rows_go_down_by_number_in_chunks() {
        let conn = table();
        let filter = OrderFilter::default();
        let first = export_rows(&conn, &filter, None, 4).unwrap();
        assert_eq!(first.iter().map(|r| r.number).collect::<Vec<_>>(), [1006, 1005, 1004, 1003]);
        let rest = export_rows(&conn, &filter, Some(1003), 4).unwrap();
        assert_eq!(rest.iter().map(|r| r.number).collect::<Vec<_>>(), [1002, 1001]);
        assert!(export_rows(&conn, &filter, Some(1001), 4).unwrap().is_empty());

        let eur = first[1].clone();
        assert_eq!((eur.currency.as_str(), eur.total.as_str(), eur.refunded.as_str()), ("EUR", "99.99", "99.99"));
        assert_eq!(eur.created_at, "1970-01-02T00:00:00Z");
        let cells = eur.cells();
        assert_eq!(cells.len(), EXPORT_COLUMNS.len());
        assert_eq!((cells[0].as_str(), cells[3].as_str(), cells[14].as_str()), ("1005", "dave%1@example.com", "o1005"));

        let paid = OrderFilter { status: Some("paid".into()), ..Default::default() };
        let rows = export_rows(&conn, &paid, None, 100).unwrap();
        assert_eq!(rows.iter().map(|r| r.number).collect::<Vec<_>>(), [1006, 1003, 1001]);
        assert_eq!(rows[0].total, "0.50");
    }
}
