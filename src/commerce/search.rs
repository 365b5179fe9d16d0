//! Catalog search: FTS5 (bm25, words quoted, the last one a prefix) joined with the product rows, filters
//! (category subtree, price range over variants, in stock, status), sorts (relevance, price, newest) and cursor
//! pages. Also the product rows search reads, kept current by the catalog's writes: `refresh` (summary columns
//! and the search row) and `refresh_stock` (`in_stock` after a stock movement).

use rusqlite::params_from_iter;
use rusqlite::types::Value as SqlValue;
use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use utoipa::ToSchema;

use super::catalog::{PRODUCT_COLUMNS, Product, ProductRow, ProductStatus, attach, product_row};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best match first (with `q`); newest without one.
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub q: Option<String>,
    /// A category id or handle; its descendants are included.
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    /// `None`: every status (admins); the storefront passes `Active`.
    pub status: Option<ProductStatus>,
    pub sort: Sort,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// Search words as an FTS5 query: each word quoted (so nothing is an operator), all required, the last one also
/// as a prefix (search as you type: `lin` finds linen). `None` when `q` has no words.
fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> =
        q.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(10).map(str::to_lowercase).collect();
    let (last, rest) = words.split_last()?;
    let mut terms: Vec<String> = rest.iter().map(|w| format!("\"{w}\"")).collect();
    terms.push(format!("\"{last}\"*"));
    Some(terms.join(" "))
}

/// How deep relevance pages go (an offset: SQLite ranks every match before it skips).
const MAX_OFFSET: u64 = 10_000;

/// Where a page ends, as the `next_cursor` string: `o{offset}` for relevance, `k{key}_{seq}` for the sorts.
enum Cursor {
    Offset(u64),
    Key(i64, i64),
}

impl Cursor {
    fn parse(raw: &str) -> Result<Self> {
        let bad = || Error::validation("cursor is not one this API gave out");
        if let Some(offset) = raw.strip_prefix('o') {
            let offset: u64 = offset.parse().map_err(|_| bad())?;
            if offset > MAX_OFFSET {
                return Err(Error::validation(format!(
                    "results by relevance go {MAX_OFFSET} deep; narrow the search or sort by price or newest"
                )));
            }
            return Ok(Cursor::Offset(offset));
        }
        let (key, seq) = raw.strip_prefix('k').and_then(|r| r.split_once('_')).ok_or_else(bad)?;
        Ok(Cursor::Key(key.parse().map_err(|_| bad())?, seq.parse().map_err(|_| bad())?))
    }
}

/// One page of products matching `search`, and the cursor of the next page.
pub fn search(conn: &Connection, search: &Search) -> Result<(Vec<Product>, Option<String>)> {
    let fts = search.q.as_deref().and_then(fts_query);
    let sort = match (search.sort, &fts) {
        (Sort::Relevance, None) => Sort::Newest,
        (sort, _) => sort,
    };
    let mut sql = String::new();
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(category) = &search.category {
        args.push(SqlValue::Text(category.clone()));
        sql.push_str(
            "WITH RECURSIVE sub(id) AS (SELECT id FROM categories WHERE id = ?1 OR handle = ?1
               UNION SELECT c.id FROM categories c JOIN sub ON c.parent_id = sub.id) ",
        );
    }
    let key = match sort {
        Sort::PriceAsc | Sort::PriceDesc => "p.min_price",
        _ => "p.created_at",
    };
    if fts.is_some() {
        sql.push_str(&format!(
            "SELECT {PRODUCT_COLUMNS}, {key} FROM product_search JOIN products p ON p.seq = product_search.rowid WHERE product_search MATCH ?"
        ));
        args.push(SqlValue::Text(fts.clone().unwrap_or_default()));
    } else {
        sql.push_str(&format!("SELECT {PRODUCT_COLUMNS}, {key} FROM products p WHERE 1 = 1"));
    }
    if let Some(status) = search.status {
        sql.push_str(" AND p.status = ?");
        args.push(SqlValue::Text(status.as_str().into()));
    }
    if search.category.is_some() {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM product_categories pc WHERE pc.product_id = p.id AND pc.category_id IN sub)",
        );
    }
    if search.min_price.is_some() || search.max_price.is_some() {
        sql.push_str(" AND EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id AND v.price BETWEEN ? AND ?)");
        args.push(SqlValue::Integer(search.min_price.unwrap_or(0)));
        args.push(SqlValue::Integer(search.max_price.unwrap_or(i64::MAX)));
    }
    if let Some(in_stock) = search.in_stock {
        sql.push_str(" AND p.in_stock = ?");
        args.push(SqlValue::Integer(i64::from(in_stock)));
    }
    let cursor = search.cursor.as_deref().map(Cursor::parse).transpose()?;
    let mut offset = 0;
    match (sort, cursor) {
        (Sort::Relevance, Some(Cursor::Offset(o))) => offset = o,
        (Sort::Relevance, Some(_)) | (_, Some(Cursor::Offset(_))) => {
            return Err(Error::validation("cursor belongs to another sort"));
        }
        (Sort::PriceAsc, Some(Cursor::Key(k, seq))) => {
            sql.push_str(&format!(" AND ({key} > ? OR ({key} = ? AND p.seq > ?))"));
            args.extend([SqlValue::Integer(k), SqlValue::Integer(k), SqlValue::Integer(seq)]);
        }
        (_, Some(Cursor::Key(k, seq))) => {
            sql.push_str(&format!(" AND ({key} < ? OR ({key} = ? AND p.seq < ?))"));
            args.extend([SqlValue::Integer(k), SqlValue::Integer(k), SqlValue::Integer(seq)]);
        }
        (_, None) => {}
    }
    sql.push_str(match sort {
        Sort::Relevance => " ORDER BY bm25(product_search, 10.0, 1.0, 5.0, 3.0), p.seq",
        Sort::PriceAsc => " ORDER BY p.min_price, p.seq",
        Sort::PriceDesc => " ORDER BY p.min_price DESC, p.seq DESC",
        Sort::Newest => " ORDER BY p.created_at DESC, p.seq DESC",
    });
    sql.push_str(" LIMIT ? OFFSET ?");
    let limit = u64::from(search.limit.clamp(1, 200));
    args.push(SqlValue::Integer((limit + 1) as i64));
    args.push(SqlValue::Integer(offset as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<(ProductRow, i64)> = stmt
        .query_map(params_from_iter(args.iter()), |r| Ok((product_row(r)?, r.get::<_, i64>(14)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = match (more, rows.last()) {
        (true, Some((last, key))) => Some(match sort {
            Sort::Relevance => format!("o{}", offset.saturating_add(limit)),
            _ => format!("k{key}_{}", last.seq),
        }),
        _ => None,
    };
    Ok((attach(conn, rows.into_iter().map(|(row, _)| row).collect())?, next))
}

/// The catalog's version (bumped by triggers on every change to products, variants and categories).
pub fn version(conn: &Connection) -> Result<i64> {
    let value: Option<String> =
        conn.query_row("SELECT value FROM tenant_meta WHERE key = 'catalog_version'", [], |r| r.get(0)).optional()?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// After stock moved (an order, a cancel, a restock): the product's `in_stock`, written only when it changes. Its
/// prices and search row do not depend on stock, so a sale does not rewrite them.
pub fn refresh_stock(conn: &Connection, product_id: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE products SET in_stock = (EXISTS (SELECT 1 FROM variants WHERE product_id = ?1
                                                AND (track_inventory = 0 OR allow_backorder = 1 OR stock > 0)))
         WHERE id = ?1 AND in_stock IS NOT (EXISTS (SELECT 1 FROM variants WHERE product_id = ?1
                                                    AND (track_inventory = 0 OR allow_backorder = 1 OR stock > 0)))",
    )?
    .execute([product_id])?;
    Ok(())
}

/// Rewrites the product's summary columns and its search row from its variants.
pub fn refresh(conn: &Connection, product_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE products SET
            min_price = COALESCE((SELECT MIN(price) FROM variants WHERE product_id = ?1), 0),
            max_price = COALESCE((SELECT MAX(price) FROM variants WHERE product_id = ?1), 0),
            in_stock = EXISTS (SELECT 1 FROM variants WHERE product_id = ?1
                               AND (track_inventory = 0 OR allow_backorder = 1 OR stock > 0))
         WHERE id = ?1",
        [product_id],
    )?;
    let (seq, title, description): (i64, String, String) =
        conn.query_row("SELECT seq, title, description FROM products WHERE id = ?1", [product_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let mut stmt =
        conn.prepare_cached("SELECT sku, option_values FROM variants WHERE product_id = ?1 ORDER BY position")?;
    let mut skus = Vec::new();
    let mut options = Vec::new();
    for row in stmt.query_map([product_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (sku, values) = row?;
        skus.push(sku);
        let values: BTreeMap<String, String> = serde_json::from_str(&values).unwrap_or_default();
        options.extend(values.into_values());
    }
    conn.execute("DELETE FROM product_search WHERE rowid = ?1", [seq])?;
    conn.execute(
        "INSERT INTO product_search (rowid, title, description, skus, options) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![seq, title, description, skus.join(" "), options.join(" ")],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_become_quoted_prefix_terms() {
        assert_eq!(fts_query("Red shirt").as_deref(), Some("\"red\" \"shirt\"*"));
        assert_eq!(fts_query("TS-RED-M").as_deref(), Some("\"ts\" \"red\" \"m\"*"));
        assert_eq!(fts_query("\" OR * NEAR(").as_deref(), Some("\"or\" \"near\"*"), "operators are words");
        assert_eq!(fts_query("  -- "), None);
    }
}
