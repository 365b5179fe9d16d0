//! Orders after checkout: the status graph and the one function that moves an order along it (`transition`:
//! checks the move, writes the timeline event, the audit row, the `order_status` mail and the
//! `order.status_changed` webhook in the caller's transaction; a cancelled order's stock goes back), and the
//! admin's reads (`list`, `detail` with the timeline).
//!
//! The graph: `pending_payment → paid → fulfilled → delivered`; `cancelled` from `pending_payment` or `paid`;
//! `refunded` / `partially_refunded` from `paid`, `fulfilled`, `delivered` or `partially_refunded`.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::catalog::{self, WriteCtx};
use super::inventory::{self, MovementKind};
use crate::control::Tenant;
use crate::email::outbox::{TenantTx, enqueue_email, enqueue_event};
use crate::email::{EmailKind, OrderAmounts, OrderSummary};
use crate::error::{Error, Result};
use crate::identity::audit::{self, Origin};
use crate::webhooks::events::Event;

/// Every status an order can have.
pub const STATUSES: [&str; 7] =
    ["pending_payment", "paid", "fulfilled", "delivered", "cancelled", "refunded", "partially_refunded"];

/// Whether an order may go from `from` to `to`.
pub fn allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("pending_payment", "paid" | "cancelled")
            | ("paid", "fulfilled" | "cancelled" | "refunded" | "partially_refunded")
            | ("fulfilled", "delivered" | "refunded" | "partially_refunded")
            | ("delivered", "refunded" | "partially_refunded")
            | ("partially_refunded", "refunded" | "partially_refunded")
    )
}

/// Moves order `id` to `to` (`invalid_transition` when the graph has no such edge), with `detail` on its timeline
/// event; answers the status it came from.
pub fn transition(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    to: &str,
    origin: &Origin,
    detail: Value,
    now: i64,
) -> Result<String> {
    let (from, number, email, currency, total): (String, i64, String, String, i64) = tx
        .query_row("SELECT status, number, email, currency, total FROM orders WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?
        .ok_or(Error::NotFound("order"))?;
    if !allowed(&from, to) {
        return Err(Error::InvalidTransition(format!("an order that is {from} cannot become {to}")));
    }
    tx.execute(
        "UPDATE orders SET status = ?2, updated_at = ?3, expires_at = NULL WHERE id = ?1",
        params![id, to, now],
    )?;
    tx.execute(
        "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, actor, at)
         VALUES (?1, 'status_changed', ?2, ?3, ?4, ?5, ?6)",
        params![id, from, to, detail.to_string(), origin.actor, now],
    )?;
    let label = format!("#{number}");
    if to == "cancelled" {
        restock(tx, tenant, id, &label, now, &origin.actor)?;
    }
    audit::record(
        tx,
        "admin_action",
        None,
        origin,
        json!({"action": "order_status_changed", "order": id, "number": label, "from": from, "to": to}),
    )?;
    let amounts = OrderAmounts { lines: Vec::new(), subtotal: None, discount: None, tax: None, shipping: None, total };
    let summary = OrderSummary::priced(&label, &currency, &amounts, None);
    enqueue_email(tx, EmailKind::OrderStatus { to: email, name: None, order: summary, status: to.to_owned() })?;
    enqueue_event(
        tx,
        Event::OrderStatusChanged { order_id: id.to_owned(), number: label, from: from.clone(), to: to.to_owned() },
    )?;
    Ok(from)
}

/// Gives a cancelled order's units back: exactly what its checkout took, from its own ledger movements (`cancel`
/// movements; a variant deleted since is skipped).
fn restock(tx: &TenantTx<'_>, tenant: &Tenant, id: &str, label: &str, now: i64, actor: &str) -> Result<()> {
    let taken: Vec<(String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT v.sku, -SUM(m.delta) FROM inventory_movements m JOIN variants v ON v.id = m.variant_id
             WHERE m.actor = ?1 AND m.kind = 'order' GROUP BY m.variant_id HAVING SUM(m.delta) < 0",
        )?;
        stmt.query_map([format!("order:{id}")], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?
    };
    let ctx =
        WriteCtx { actor: actor.to_owned(), now, low_stock_threshold: tenant.settings.commerce.low_stock_threshold };
    let mut products = Vec::new();
    for (sku, quantity) in taken {
        let movement = inventory::record(
            tx,
            &sku,
            quantity,
            MovementKind::Cancel,
            &format!("order {label} cancelled"),
            &ctx,
            false,
        )?;
        products.push(tx.query_row("SELECT product_id FROM variants WHERE id = ?1", [&movement.variant_id], |r| {
            r.get::<_, String>(0)
        })?);
    }
    products.sort_unstable();
    products.dedup();
    for product in products {
        catalog::refresh(tx, &product)?;
    }
    Ok(())
}

/// Cancels (at most 50 of) the unpaid orders whose time is up, giving their stock back. Run by every cart write and
/// checkout before they look at stock, so an order left unpaid never keeps the next buyer from buying (one indexed
/// read when nothing is due). The storefront's stock counts catch up at the next such write; a due list that needs
/// no visitor comes with the rest of the order lifecycle.
pub fn expire_due(tx: &TenantTx<'_>, tenant: &Tenant, now: i64) -> Result<usize> {
    let due: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM orders WHERE expires_at <= ?1 AND status = 'pending_payment' ORDER BY expires_at LIMIT 50",
        )?;
        stmt.query_map([now], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    let origin = Origin { actor: "system".into(), ..Default::default() };
    for id in &due {
        transition(tx, tenant, id, "cancelled", &origin, json!({"reason": "unpaid in time"}), now)?;
    }
    Ok(due.len())
}

/// An order in the admin's list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderListItem {
    pub id: String,
    pub number: String,
    pub status: String,
    pub email: String,
    pub currency: String,
    pub total: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// Orders newest first, filtered by status and part of the email; `cursor` is the last number seen.
pub fn list(
    conn: &Connection,
    status: Option<&str>,
    email: Option<&str>,
    cursor: Option<i64>,
    limit: u32,
) -> Result<(Vec<OrderListItem>, Option<String>)> {
    let pattern = email.map(|e| format!("%{}%", e.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let mut stmt = conn.prepare_cached(
        "SELECT id, number, status, email, currency, total, created_at FROM orders
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR email LIKE ?2 ESCAPE '\\')
           AND (?3 IS NULL OR number < ?3)
         ORDER BY number DESC LIMIT ?4",
    )?;
    let items: Vec<OrderListItem> = stmt
        .query_map(params![status, pattern, cursor, limit], |r| {
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
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|o| o.number.trim_start_matches('#').to_owned()))
        .flatten();
    Ok((items, next))
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderEvent {
    pub id: i64,
    /// `created` or `status_changed`.
    pub kind: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub detail: Value,
    pub actor: String,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
}

/// The order's timeline, oldest first.
pub fn events(conn: &Connection, id: &str) -> Result<Vec<OrderEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, from_status, to_status, detail, actor, at FROM order_events WHERE order_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(OrderEvent {
            id: r.get(0)?,
            kind: r.get(1)?,
            from: r.get(2)?,
            to: r.get(3)?,
            detail: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
            actor: r.get(5)?,
            at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_graph() {
        assert!(allowed("pending_payment", "paid") && allowed("pending_payment", "cancelled"));
        assert!(allowed("paid", "fulfilled") && allowed("fulfilled", "delivered"));
        assert!(allowed("delivered", "refunded") && allowed("partially_refunded", "partially_refunded"));
        assert!(!allowed("pending_payment", "fulfilled"), "unpaid orders are not shipped");
        assert!(!allowed("cancelled", "paid") && !allowed("refunded", "paid"), "ends are ends");
        assert!(!allowed("delivered", "cancelled"), "a delivered order is refunded, not cancelled");
        for status in STATUSES {
            assert!(!allowed(status, status) || status == "partially_refunded");
        }
    }
}
