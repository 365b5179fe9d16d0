//! Inventory: stock per variant, changed only by appending a movement to the ledger.
//!
//! Invariants:
//! - `inventory_movements` is append-only (triggers refuse UPDATE and DELETE).
//! - `record` is the only writer of `variants.stock`: it appends the movement and sets the stock to the previous
//!   stock plus the delta in the same transaction, so stock on hand always equals the sum of the variant's
//!   movements. Writers of a tenant take turns (`TenantDb::write`), so concurrent adjustments lose none.
//! - A tracked variant whose stock falls from above `low_stock_threshold` to it or below raises `inventory.low`
//!   in the same transaction.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::{self, WriteCtx};
use crate::email::outbox::{TenantTx, enqueue_event};
use crate::error::{Error, Result};
use crate::webhooks::events::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// A person counted, received or wrote off stock.
    Adjustment,
    /// Sold (negative).
    Order,
    /// An order was cancelled (positive).
    Cancel,
    /// Returned by a customer (positive).
    Return,
    /// Set by a CSV import.
    Import,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::Adjustment => "adjustment",
            MovementKind::Order => "order",
            MovementKind::Cancel => "cancel",
            MovementKind::Return => "return",
            MovementKind::Import => "import",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "order" => MovementKind::Order,
            "cancel" => MovementKind::Cancel,
            "return" => MovementKind::Return,
            "import" => MovementKind::Import,
            _ => MovementKind::Adjustment,
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Movement {
    pub id: i64,
    pub sku: String,
    pub variant_id: String,
    pub delta: i64,
    pub kind: MovementKind,
    pub reason: String,
    /// Who made it: `operator:{id}`, `token:{id}`, `import:{id}`, `order:{id}`.
    pub actor: String,
    pub stock_after: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// `POST …/inventory/{sku}/adjust`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Units to add (positive) or remove (negative); not zero.
    pub delta: i64,
    /// Why, for the ledger (1-200 characters).
    pub reason: String,
}

/// Appends a movement of `delta` units of `sku` and updates its stock; answers the movement. The product's
/// `catalog::refresh` (its in-stock flag) is the caller's, once per transaction. With
/// `refuse_negative`, a decrease that would leave stock below zero is refused (`conflict`): a person cannot remove
/// units that are not there; orders with backorders allowed can.
pub fn record(
    tx: &TenantTx<'_>,
    sku: &str,
    delta: i64,
    kind: MovementKind,
    reason: &str,
    ctx: &WriteCtx,
    refuse_negative: bool,
) -> Result<Movement> {
    let found: Option<(String, String, i64, bool)> = tx
        .query_row("SELECT id, product_id, stock, track_inventory FROM variants WHERE sku = ?1", [sku], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (variant_id, product_id, stock, tracked) = found.ok_or(Error::NotFound("sku"))?;
    if delta == 0 || !(-1_000_000_000..=1_000_000_000).contains(&delta) {
        return Err(Error::validation("delta must be a non-zero whole number within ±1000000000"));
    }
    let after = stock
        .checked_add(delta)
        .filter(|a| a.abs() <= 1_000_000_000_000)
        .ok_or_else(|| Error::validation("stock would leave the range ±10^12"))?;
    if refuse_negative && delta < 0 && after < 0 {
        return Err(Error::Conflict(format!(
            "{sku} has {stock} on hand; removing {} would leave it below zero",
            -delta
        )));
    }
    tx.execute(
        "INSERT INTO inventory_movements (variant_id, sku, delta, kind, reason, actor, stock_after, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![variant_id, sku, delta, kind.as_str(), reason, ctx.actor, after, ctx.now],
    )?;
    let id = tx.last_insert_rowid();
    tx.execute("UPDATE variants SET stock = ?2, updated_at = ?3 WHERE id = ?1", params![variant_id, after, ctx.now])?;
    tx.touch_sku(sku);
    let threshold = i64::from(ctx.low_stock_threshold);
    if tracked && stock > threshold && after <= threshold {
        enqueue_event(
            tx,
            Event::InventoryLow {
                sku: sku.to_owned(),
                variant_id: variant_id.clone(),
                product_id,
                stock: after,
                threshold,
            },
        )?;
    }
    Ok(Movement {
        id,
        sku: sku.to_owned(),
        variant_id,
        delta,
        kind,
        reason: reason.to_owned(),
        actor: ctx.actor.clone(),
        stock_after: after,
        created_at: ctx.now,
    })
}

/// A person's adjustment (`adjustment` movement; may not take stock below zero).
pub fn adjust(tx: &TenantTx<'_>, sku: &str, input: &Adjustment, ctx: &WriteCtx) -> Result<Movement> {
    catalog::check_sku(sku)?;
    let reason = input.reason.trim();
    if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
        return Err(Error::validation("reason must be 1-200 characters"));
    }
    let movement = record(tx, sku, input.delta, MovementKind::Adjustment, reason, ctx, true)?;
    if let Some((_, product_id)) = catalog::sku_owner(tx, sku)? {
        catalog::refresh(tx, &product_id)?;
    }
    Ok(movement)
}

/// The movements of `sku`, newest first, after the cursor (a movement id).
pub fn movements(
    conn: &Connection,
    sku: &str,
    cursor: Option<i64>,
    limit: u32,
) -> Result<(Vec<Movement>, Option<String>)> {
    // The ledger of the variant that has this SKU now (a SKU can be renamed, or reused after a variant is gone).
    let variant: Option<String> =
        conn.query_row("SELECT id FROM variants WHERE sku = ?1", [sku], |r| r.get(0)).optional()?;
    let variant = variant.ok_or(Error::NotFound("sku"))?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, sku, variant_id, delta, kind, reason, actor, stock_after, created_at FROM inventory_movements
         WHERE variant_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let mut rows: Vec<Movement> = stmt
        .query_map(params![variant, cursor.unwrap_or(i64::MAX), i64::from(limit) + 1], |r| {
            let kind: String = r.get(4)?;
            Ok(Movement {
                id: r.get(0)?,
                sku: r.get(1)?,
                variant_id: r.get(2)?,
                delta: r.get(3)?,
                kind: MovementKind::parse(&kind),
                reason: r.get(5)?,
                actor: r.get(6)?,
                stock_after: r.get(7)?,
                created_at: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|m| m.id.to_string()) } else { None };
    Ok((rows, next))
}

/// The stock of `sku` on hand and the sum of its ledger (equal, always; the tests check it).
pub fn stock_and_ledger(conn: &Connection, sku: &str) -> Result<(i64, i64)> {
    Ok(conn.query_row(
        "SELECT v.stock, COALESCE((SELECT SUM(delta) FROM inventory_movements m WHERE m.variant_id = v.id), 0)
         FROM variants v WHERE v.sku = ?1",
        [sku],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}
