//! Fulfilment: shipments of an order's lines (carrier, tracking number and page, an assigned courier) and their
//! tracking events (`in_transit`, `out_for_delivery`, `delivered`, `failed_attempt`), added by an admin or by a
//! carrier's signed webhook. The shipment that leaves no line unshipped moves a paid order to `fulfilled`; the
//! last shipment delivered moves it to `delivered`. Each change is on the order's timeline (`shipment_updated`)
//! and raises `shipment.created` / `shipment.updated`.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::orders::{self, Timeline};
use crate::control::Tenant;
use crate::email::outbox::{TenantTx, enqueue_event};
use crate::error::{Error, Result};
use crate::identity::audit::Origin;
use crate::webhooks::events::Event;

/// Tracking statuses a shipment event may carry.
pub const TRACKING: [&str; 4] = ["in_transit", "out_for_delivery", "delivered", "failed_attempt"];

/// Units of one order line in a shipment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentLine {
    pub sku: String,
    pub quantity: u32,
}

/// Who brings the parcel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Courier {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// `POST /admin/api/v1/tenants/{slug}/orders/{id}/shipments`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShipment {
    /// The units shipped; all that are not shipped yet when left out.
    #[serde(default)]
    pub lines: Option<Vec<ShipmentLine>>,
    pub carrier: String,
    pub tracking_number: String,
    /// An https page where the buyer follows the parcel.
    #[serde(default)]
    pub tracking_url: Option<String>,
    #[serde(default)]
    pub courier: Option<Courier>,
}

/// `POST …/shipments/{sid}/events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackingUpdate {
    /// `in_transit`, `out_for_delivery`, `delivered` or `failed_attempt`.
    pub status: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// A shipment as the APIs show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShipmentView {
    pub id: String,
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: Option<String>,
    pub courier: Option<Courier>,
    /// `created`, or the last tracking status.
    pub status: String,
    pub lines: Vec<ShipmentLine>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

fn text(value: &str, field: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(Error::validation(format!("{field} must be 1-{max} characters without control characters")));
    }
    Ok(value.to_owned())
}

/// Ships `body`'s units of order `id` (which must be paid, or partly refunded and not fully shipped).
pub fn create(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    body: NewShipment,
    origin: &Origin,
    now: i64,
) -> Result<ShipmentView> {
    let carrier = text(&body.carrier, "carrier", 100)?;
    let tracking_number = text(&body.tracking_number, "tracking_number", 100)?;
    let tracking_url = body.tracking_url.as_deref().map(|u| text(u, "tracking_url", 2000)).transpose()?;
    if let Some(url) = &tracking_url
        && url::Url::parse(url).map_or(true, |u| u.scheme() != "https" || u.host_str().is_none())
    {
        return Err(Error::validation("tracking_url must be an https URL"));
    }
    let courier = match body.courier {
        Some(c) => Some(Courier {
            name: text(&c.name, "courier.name", 100)?,
            phone: c.phone.as_deref().map(|p| text(p, "courier.phone", 40)).transpose()?,
        }),
        None => None,
    };
    let (status, number): (String, i64) = tx
        .query_row("SELECT status, number FROM orders WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or(Error::NotFound("order"))?;
    if !matches!(status.as_str(), "paid" | "partially_refunded") {
        return Err(Error::InvalidTransition(format!("an order that is {status} cannot be shipped")));
    }
    // What each line has left to ship.
    let mut open: Vec<(i64, String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT l.position, l.sku, l.quantity - COALESCE((SELECT SUM(s.quantity) FROM shipment_lines s
                                                              WHERE s.order_id = l.order_id AND s.position = l.position), 0)
             FROM order_lines l WHERE l.order_id = ?1 ORDER BY l.position",
        )?;
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?
    };
    let wanted: Vec<(i64, i64)> = match body.lines {
        None => open.iter().filter(|(_, _, left)| *left > 0).map(|(p, _, left)| (*p, *left)).collect(),
        Some(lines) => {
            let mut wanted = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                let Some(entry) = open.iter_mut().find(|(_, sku, left)| *sku == line.sku && *left > 0) else {
                    return Err(Error::validation(format!("lines[{i}].sku {} has nothing left to ship", line.sku)));
                };
                if line.quantity == 0 || i64::from(line.quantity) > entry.2 {
                    return Err(Error::validation(format!(
                        "lines[{i}].quantity must be 1 to {} (what is left to ship of {})",
                        entry.2, line.sku
                    )));
                }
                entry.2 -= i64::from(line.quantity);
                wanted.push((entry.0, i64::from(line.quantity)));
            }
            wanted
        }
    };
    if wanted.is_empty() {
        return Err(Error::Conflict("every unit of this order is shipped already".into()));
    }
    let shipment = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO shipments (id, order_id, carrier, tracking_number, tracking_url, courier_name, courier_phone,
                                created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            shipment,
            id,
            carrier,
            tracking_number,
            tracking_url,
            courier.as_ref().map(|c| c.name.clone()),
            courier.as_ref().and_then(|c| c.phone.clone()),
            now
        ],
    )?;
    for (position, quantity) in &wanted {
        tx.execute(
            "INSERT INTO shipment_lines (shipment_id, order_id, position, quantity) VALUES (?1, ?2, ?3, ?4)",
            params![shipment, id, position, quantity],
        )?;
    }
    tx.execute(
        "INSERT INTO shipment_events (shipment_id, status, note, actor, at) VALUES (?1, 'created', NULL, ?2, ?3)",
        params![shipment, origin.actor, now],
    )?;
    let detail = json!({"shipment_id": shipment, "status": "created", "carrier": carrier,
                        "tracking_number": tracking_number, "tracking_url": tracking_url});
    Timeline { order: id, kind: "shipment_updated", from: None, to: None, actor: &origin.actor }
        .write(tx, &detail, now)?;
    enqueue_event(
        tx,
        Event::ShipmentCreated {
            order_id: id.to_owned(),
            number: format!("#{number}"),
            shipment_id: shipment.clone(),
            carrier,
            tracking_number,
            tracking_url,
        },
    )?;
    let unshipped: i64 = tx.query_row(
        "SELECT COALESCE(SUM(l.quantity), 0) - (SELECT COALESCE(SUM(quantity), 0) FROM shipment_lines WHERE order_id = ?1)
         FROM order_lines l WHERE l.order_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    if unshipped == 0 && status == "paid" {
        orders::transition(tx, tenant, id, "fulfilled", origin, json!({"shipment_id": shipment}), now)?;
    }
    find(tx, &shipment)
}

/// Adds a tracking event to shipment `shipment` of order `id`; the last shipment delivered moves a fulfilled order
/// to `delivered`.
pub fn track(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    shipment: &str,
    update: TrackingUpdate,
    origin: &Origin,
    now: i64,
) -> Result<ShipmentView> {
    if !TRACKING.contains(&update.status.as_str()) {
        return Err(Error::validation(format!("status must be one of {}", TRACKING.join(", "))));
    }
    let note = update.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > 500 || n.chars().any(char::is_control)) {
        return Err(Error::validation("note must be at most 500 characters without control characters"));
    }
    let (current, number): (String, i64) = tx
        .query_row(
            "SELECT s.status, o.number FROM shipments s JOIN orders o ON o.id = s.order_id
             WHERE s.id = ?1 AND s.order_id = ?2",
            [shipment, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(Error::NotFound("shipment"))?;
    if current == "delivered" {
        return Err(Error::InvalidTransition("the shipment is delivered already".into()));
    }
    tx.execute(
        "UPDATE shipments SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![shipment, update.status, now],
    )?;
    tx.execute(
        "INSERT INTO shipment_events (shipment_id, status, note, actor, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![shipment, update.status, note, origin.actor, now],
    )?;
    let detail = json!({"shipment_id": shipment, "status": update.status, "note": note});
    Timeline { order: id, kind: "shipment_updated", from: None, to: None, actor: &origin.actor }
        .write(tx, &detail, now)?;
    enqueue_event(
        tx,
        Event::ShipmentUpdated {
            order_id: id.to_owned(),
            number: format!("#{number}"),
            shipment_id: shipment.to_owned(),
            status: update.status.clone(),
        },
    )?;
    if update.status == "delivered" {
        let (status, undelivered): (String, i64) = tx.query_row(
            "SELECT status, (SELECT COUNT(*) FROM shipments WHERE order_id = ?1 AND status <> 'delivered')
             FROM orders WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if undelivered == 0 && status == "fulfilled" {
            orders::transition(tx, tenant, id, "delivered", origin, json!({"shipment_id": shipment}), now)?;
        }
    }
    find(tx, shipment)
}

/// The shipment of a carrier's tracking number (the newest, should a carrier reuse numbers).
pub fn by_tracking_number(conn: &Connection, tracking_number: &str) -> Result<Option<(String, String)>> {
    Ok(conn
        .query_row(
            "SELECT order_id, id FROM shipments WHERE tracking_number = ?1 ORDER BY created_at DESC LIMIT 1",
            [tracking_number],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

fn find(conn: &Connection, shipment: &str) -> Result<ShipmentView> {
    let mut list = load(conn, "s.id = ?1", shipment)?;
    list.pop().ok_or(Error::NotFound("shipment"))
}

/// The shipments of order `id`, oldest first.
pub fn of_order(conn: &Connection, id: &str) -> Result<Vec<ShipmentView>> {
    load(conn, "s.order_id = ?1", id)
}

fn load(conn: &Connection, filter: &str, key: &str) -> Result<Vec<ShipmentView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id, s.carrier, s.tracking_number, s.tracking_url, s.courier_name, s.courier_phone, s.status,
                s.created_at
         FROM shipments s WHERE {filter} ORDER BY s.created_at, s.rowid"
    ))?;
    let mut shipments: Vec<ShipmentView> = stmt
        .query_map([key], |r| {
            let courier = r.get::<_, Option<String>>(4)?.map(|name| Courier { name, phone: None });
            let phone: Option<String> = r.get(5)?;
            Ok(ShipmentView {
                id: r.get(0)?,
                carrier: r.get(1)?,
                tracking_number: r.get(2)?,
                tracking_url: r.get(3)?,
                courier: courier.map(|c| Courier { phone, ..c }),
                status: r.get(6)?,
                lines: Vec::new(),
                created_at: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut lines = conn.prepare_cached(
        "SELECT l.sku, s.quantity FROM shipment_lines s
         JOIN order_lines l ON l.order_id = s.order_id AND l.position = s.position
         WHERE s.shipment_id = ?1 ORDER BY s.position",
    )?;
    for shipment in &mut shipments {
        shipment.lines = lines
            .query_map([&shipment.id], |r| Ok(ShipmentLine { sku: r.get(0)?, quantity: r.get(1)? }))?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(shipments)
}
