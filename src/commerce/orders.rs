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

/// Unpaid orders one `expire_due` call cancels at most.
pub const EXPIRE_BATCH: usize = 50;

/// Moves order `id` to `to` (`invalid_transition` when the graph has no such edge), with `detail` on its timeline
/// event; answers the status it came from. A cancelled order's units go back to stock and its discount-code uses
/// are returned; the status mail of a fulfilled or delivered order links the latest shipment's tracking page.
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
    let event = Timeline { order: id, kind: "status_changed", from: Some(&from), to: Some(to), actor: &origin.actor };
    event.write(tx, &detail, now)?;
    let label = format!("#{number}");
    if to == "cancelled" {
        restock(tx, tenant, id, MovementKind::Cancel, &format!("order {label} cancelled"), now)?;
        tx.execute(
            "UPDATE discount_codes SET used = MAX(used - 1, 0) WHERE code IN (SELECT code FROM order_codes WHERE order_id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM order_codes WHERE order_id = ?1", [id])?;
        // A card payment still open must not be paid any more (the buyer's client secret stops working).
        let open: Option<String> = tx
            .query_row(
                "SELECT payment_ref FROM orders WHERE id = ?1 AND payment_method = 'stripe'
                   AND payment_ref IS NOT NULL AND payment_status NOT IN ('succeeded')",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(intent) = open {
            tx.touch_cancelled_intent(&intent);
        }
    }
    audit::record(
        tx,
        "admin_action",
        None,
        origin,
        json!({"action": "order_status_changed", "order": id, "number": label, "from": from, "to": to}),
    )?;
    let tracking: Option<String> = if matches!(to, "fulfilled" | "delivered") {
        tx.query_row(
            "SELECT tracking_url FROM shipments WHERE order_id = ?1 AND tracking_url IS NOT NULL
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
            [id],
            |r| r.get(0),
        )
        .optional()?
    } else {
        None
    };
    let amounts = OrderAmounts { lines: Vec::new(), subtotal: None, discount: None, tax: None, shipping: None, total };
    let summary = OrderSummary::priced(&label, &currency, &amounts, None).tracked(tracking);
    enqueue_email(tx, EmailKind::OrderStatus { to: email, name: None, order: summary, status: to.to_owned() })?;
    enqueue_event(
        tx,
        Event::OrderStatusChanged { order_id: id.to_owned(), number: label, from: from.clone(), to: to.to_owned() },
    )?;
    Ok(from)
}

/// Marks a `manual` order paid with the payment's `reference` (a bank transfer's, a receipt number); card orders
/// are marked paid by their provider's webhook.
pub fn mark_paid(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    reference: &str,
    origin: &Origin,
    now: i64,
) -> Result<()> {
    let reference = reference.trim();
    if reference.is_empty() || reference.chars().count() > 200 || reference.chars().any(char::is_control) {
        return Err(Error::validation("reference must be 1-200 characters without control characters"));
    }
    let method: String = tx
        .query_row("SELECT payment_method FROM orders WHERE id = ?1", [id], |r| r.get(0))
        .optional()?
        .ok_or(Error::NotFound("order"))?;
    if method != "manual" {
        return Err(Error::InvalidTransition(format!("a {method} order is marked paid by its provider")));
    }
    tx.execute(
        "UPDATE orders SET payment_status = 'succeeded', payment_ref = ?2 WHERE id = ?1 AND status = 'pending_payment'",
        params![id, reference],
    )?;
    transition(tx, tenant, id, "paid", origin, json!({ "reference": reference }), now)?;
    Ok(())
}

/// One entry of an order's timeline, about to be written.
pub struct Timeline<'a> {
    pub order: &'a str,
    /// `created`, `status_changed`, `shipment_updated`, `refund` or `payment`.
    pub kind: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub actor: &'a str,
}

impl Timeline<'_> {
    /// Appends the entry; the order's live streams hear of it once the transaction commits.
    pub fn write(&self, tx: &TenantTx<'_>, detail: &Value, now: i64) -> Result<()> {
        tx.execute(
            "INSERT INTO order_events (order_id, kind, from_status, to_status, detail, actor, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![self.order, self.kind, self.from, self.to, detail.to_string(), self.actor, now],
        )?;
        tx.touch_order(self.order);
        Ok(())
    }
}

/// Gives back every unit the order still holds: what its checkout took less what was returned since, from its
/// own ledger movements (actor `order:{id}`; a variant deleted since is skipped). Answers the units returned.
pub fn restock(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    kind: MovementKind,
    reason: &str,
    now: i64,
) -> Result<i64> {
    let actor = format!("order:{id}");
    let held: Vec<(String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT v.sku, -SUM(m.delta) FROM inventory_movements m JOIN variants v ON v.id = m.variant_id
             WHERE m.actor = ?1 GROUP BY m.variant_id HAVING SUM(m.delta) < 0",
        )?;
        stmt.query_map([&actor], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?
    };
    let ctx = WriteCtx { actor, now, low_stock_threshold: tenant.settings.commerce.low_stock_threshold };
    let mut products = Vec::new();
    let mut units = 0;
    for (sku, quantity) in held {
        let movement = inventory::record(tx, &sku, quantity, kind, reason, &ctx, false)?;
        units += quantity;
        products.push(tx.query_row("SELECT product_id FROM variants WHERE id = ?1", [&movement.variant_id], |r| {
            r.get::<_, String>(0)
        })?);
    }
    products.sort_unstable();
    products.dedup();
    for product in products {
        catalog::refresh_stock(tx, &product)?;
    }
    Ok(units)
}

/// The unpaid orders whose time is up, first due first. `+status` keeps the planner on the expiry index: on the
/// status index it would read and sort every unpaid order, on every checkout and cart write.
const DUE_SQL: &str =
    "SELECT id FROM orders WHERE expires_at <= ?1 AND +status = 'pending_payment' ORDER BY expires_at LIMIT ?2";

/// Cancels (at most `EXPIRE_BATCH` of) the unpaid orders whose time is up, giving their stock back. Run by the
/// expiry task (`expiry.rs`) when a store's first expiry is due, and by every cart write and checkout before they
/// look at stock, so an order left unpaid never keeps the next buyer from buying (one indexed read when nothing
/// is due).
pub fn expire_due(tx: &TenantTx<'_>, tenant: &Tenant, now: i64) -> Result<usize> {
    let due: Vec<String> = {
        let mut stmt = tx.prepare_cached(DUE_SQL)?;
        stmt.query_map(params![now, EXPIRE_BATCH as i64], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
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
    fn the_due_list_reads_the_expiry_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate::migrate(&mut conn, crate::db::migrate::TENANT, "test").unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {DUE_SQL}"))
            .unwrap()
            .query_map(params![1, 50], |r| r.get(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(plan.len(), 1, "no sort: {plan:?}");
        assert!(plan[0].contains("orders_expiry"), "{plan:?}");
    }

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
