//! Refunds and cancellations that give money back.
//!
//! - A refund is held first (`begin`: a `pending` row within what is left of the total, so two refunds at once
//!   cannot pass the total and a provider event arriving meanwhile adds nothing), then the provider is asked
//!   (outside any transaction; `manual` orders have none: the merchant pays back themselves), then it is
//!   recorded (`complete`: the order's `refunded_total`, the `refund` timeline entry, the units back to stock
//!   when asked, and the move to `refunded` or `partially_refunded`), or dropped when the provider refused
//!   (`abandon`). A provider refund id is recorded once: the provider's event for a refund made here (matched by
//!   our refund id in its metadata, or by its id) changes nothing more; one made in the provider's dashboard is
//!   recorded from the event (`record_external`).
//! - `refund` is the admin's action; `cancel` the admin's cancel: a paid order is refunded in full through its
//!   provider and cancelled in the transaction that records it (its stock and discount-code uses go back).

use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::orders::{self, Timeline};
use super::payments;
use crate::app::App;
use crate::control::Tenant;
use crate::db::registry::TenantDb;
use crate::email::outbox::TenantTx;
use crate::error::{Error, Result};
use crate::identity::audit::Origin;

/// `POST /admin/api/v1/tenants/{slug}/orders/{id}/refunds`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units, at most what is left of the order's total.
    pub amount: i64,
    /// Put every unit the order still holds back in stock.
    #[serde(default)]
    pub restock: bool,
    /// Shown on the timeline, at most 200 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One refund about to be recorded.
pub struct Refund<'a> {
    pub amount: i64,
    pub restock: bool,
    pub reason: Option<&'a str>,
    /// Part of a cancellation: the order is cancelled, not moved to `refunded` / `partially_refunded`.
    pub for_cancel: bool,
}

/// What is left to refund of order `id`: its total less what was refunded and what is being refunded now.
fn left(tx: &TenantTx<'_>, id: &str) -> Result<i64> {
    tx.query_row(
        "SELECT total - refunded_total - (SELECT COALESCE(SUM(amount), 0) FROM refunds
                                          WHERE order_id = ?1 AND state = 'pending')
         FROM orders WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()?
    .ok_or(Error::NotFound("order"))
}

/// Opens a refund of order `id` within what is left (`pending`: its amount is held until `complete` or `abandon`);
/// answers the refund's id.
pub fn begin(tx: &TenantTx<'_>, id: &str, refund: &Refund<'_>, actor: &str, now: i64) -> Result<String> {
    let left = left(tx, id)?;
    if refund.amount < 1 || refund.amount > left {
        return Err(Error::validation(format!("amount must be 1 to {left} (what is left of the total)")));
    }
    let refund_id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO refunds (id, order_id, amount, restock, reason, state, for_cancel, actor, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8)",
        params![refund_id, id, refund.amount, refund.restock, refund.reason, refund.for_cancel, actor, now],
    )?;
    Ok(refund_id)
}

/// Drops a pending refund the provider did not make.
pub fn abandon(tx: &TenantTx<'_>, refund_id: &str) -> Result<()> {
    tx.execute("DELETE FROM refunds WHERE id = ?1 AND state = 'pending'", [refund_id])?;
    Ok(())
}

/// Records pending refund `refund_id` as made (with the provider's refund id): the order's `refunded_total`, the
/// `refund` timeline entry, the units back when asked, and the move to `refunded` or `partially_refunded` (not for
/// a cancellation's). `false` when it was recorded already (the provider's event came first).
pub fn complete(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    refund_id: &str,
    provider_ref: Option<&str>,
    origin: &Origin,
    now: i64,
) -> Result<bool> {
    let row: Option<(String, i64, bool, Option<String>, String, bool)> = tx
        .query_row(
            "SELECT order_id, amount, restock, reason, state, for_cancel FROM refunds WHERE id = ?1",
            [refund_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .optional()?;
    let Some((id, amount, restock, reason, state, for_cancel)) = row else { return Ok(false) };
    if state == "done" {
        return Ok(false);
    }
    if let Some(reference) = provider_ref {
        let known: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM refunds WHERE provider_ref = ?1)", [reference], |r| r.get(0))?;
        if known {
            // Recorded from the provider's event under its own row: this one was the same refund.
            abandon(tx, refund_id)?;
            return Ok(false);
        }
    }
    tx.execute("UPDATE refunds SET state = 'done', provider_ref = ?2 WHERE id = ?1", params![refund_id, provider_ref])?;
    let (status, total, refunded, number): (String, i64, i64, i64) =
        tx.query_row("SELECT status, total, refunded_total, number FROM orders WHERE id = ?1", [&id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let refunded = refunded + amount;
    if refunded > total {
        return Err(Error::Conflict(format!("refunds would exceed the order's total ({total})")));
    }
    tx.execute("UPDATE orders SET refunded_total = ?2, updated_at = ?3 WHERE id = ?1", params![id, refunded, now])?;
    let mut units = 0;
    if restock {
        let why = format!("order #{number} refunded");
        units = orders::restock(tx, tenant, &id, super::inventory::MovementKind::Return, &why, now)?;
    }
    let detail = json!({
        "refund_id": refund_id,
        "amount": amount,
        "refunded_total": refunded,
        "restocked_units": units,
        "reason": reason,
        "provider_ref": provider_ref,
    });
    Timeline { order: &id, kind: "refund", from: None, to: None, actor: &origin.actor }.write(tx, &detail, now)?;
    if !for_cancel {
        let to = if refunded >= total { "refunded" } else { "partially_refunded" };
        if orders::allowed(&status, to) {
            orders::transition(tx, tenant, &id, to, origin, json!({"refund_id": refund_id}), now)?;
        }
    }
    Ok(true)
}

/// A refund the provider reports that was not made here (in its dashboard), recorded at once up to what is left;
/// `false` when its id is known or nothing is left.
pub fn record_external(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    refund: &Refund<'_>,
    provider_ref: &str,
    origin: &Origin,
    now: i64,
) -> Result<bool> {
    let known: bool =
        tx.query_row("SELECT EXISTS(SELECT 1 FROM refunds WHERE provider_ref = ?1)", [provider_ref], |r| r.get(0))?;
    let left = left(tx, id)?;
    if known || left <= 0 {
        return Ok(false);
    }
    let clamped = Refund { amount: refund.amount.min(left), ..*refund };
    let refund_id = begin(tx, id, &clamped, &origin.actor, now)?;
    complete(tx, tenant, &refund_id, Some(provider_ref), origin, now)
}

/// What the admin's refund needs to know of the order first.
struct Refundable {
    status: String,
    method: String,
    payment_ref: Option<String>,
    left: i64,
    shipped: bool,
}

async fn refundable(db: &TenantDb, id: &str) -> Result<Refundable> {
    let id = id.to_owned();
    crate::db::with_conn(&db.pool, move |conn| {
        conn.query_row(
            "SELECT status, payment_method, payment_ref, total - refunded_total,
                    EXISTS(SELECT 1 FROM shipments WHERE order_id = ?1)
             FROM orders WHERE id = ?1",
            [&id],
            |r| {
                Ok(Refundable {
                    status: r.get(0)?,
                    method: r.get(1)?,
                    payment_ref: r.get(2)?,
                    left: r.get(3)?,
                    shipped: r.get(4)?,
                })
            },
        )
        .optional()?
        .ok_or(Error::NotFound("order"))
    })
    .await
}

/// Gives `amount` of `refundable`'s money back through its provider; answers the provider's refund id (`None`
/// for manual orders, whose money the merchant returns themselves).
async fn pay_back(
    app: &App,
    tenant: &Tenant,
    found: &Refundable,
    amount: i64,
    idempotency_key: &str,
) -> Result<Option<String>> {
    if found.method != "stripe" {
        return Ok(None);
    }
    let Some(intent) = found.payment_ref.as_deref() else {
        return Err(Error::Conflict("the order has no Stripe payment to refund".into()));
    };
    let secrets = payments::stripe_secrets(app, &tenant.slug)
        .await?
        .ok_or_else(|| Error::PaymentUnavailable("Stripe is not set up for this store any more".into()))?;
    let refund_id = idempotency_key.trim_start_matches("gatehouse-refund-");
    let answer = payments::refund(app, &secrets.secret_key, intent, amount, idempotency_key, refund_id).await?;
    if answer.status == "failed" || answer.status == "canceled" {
        return Err(Error::PaymentRefused(format!("Stripe did not make the refund (status {})", answer.status)));
    }
    Ok(Some(answer.id))
}

/// The admin's refund of order `id`: held as pending, asked of the provider, then recorded.
pub async fn refund(
    app: &App,
    tenant: &Arc<Tenant>,
    db: &TenantDb,
    id: String,
    body: RefundRequest,
    origin: Origin,
) -> Result<()> {
    let reason = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
    if reason.as_deref().is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control)) {
        return Err(Error::validation("reason must be at most 200 characters without control characters"));
    }
    resume(app, tenant, db, &id, &origin).await?;
    let found = refundable(db, &id).await?;
    if !matches!(found.status.as_str(), "paid" | "fulfilled" | "delivered" | "partially_refunded") {
        return Err(Error::InvalidTransition(format!("an order that is {} cannot be refunded", found.status)));
    }
    let refund = Refund { amount: body.amount, restock: body.restock, reason: reason.as_deref(), for_cancel: false };
    settle(app, tenant, db, &found, id, &refund, origin, None).await?
}

/// Settles the refunds of order `id` still held from an earlier attempt whose provider call had no clear answer
/// (a timeout, a 5xx, a crash): each is sent again under its own idempotency key, so the provider makes it at
/// most once, then recorded, or dropped when the provider refuses it.
async fn resume(app: &App, tenant: &Arc<Tenant>, db: &TenantDb, id: &str, origin: &Origin) -> Result<()> {
    let order = id.to_owned();
    let held: Vec<(String, i64)> = crate::db::with_conn(&db.pool, move |conn| {
        let mut stmt =
            conn.prepare_cached("SELECT id, amount FROM refunds WHERE order_id = ?1 AND state = 'pending'")?;
        Ok(stmt.query_map([&order], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)
    })
    .await?;
    if held.is_empty() {
        return Ok(());
    }
    let found = refundable(db, id).await?;
    for (refund_id, amount) in held {
        let answer = pay_back(app, tenant, &found, amount, &format!("gatehouse-refund-{refund_id}")).await;
        let (tenant, origin) = (tenant.clone(), origin.clone());
        match answer {
            Ok(provider_ref) => {
                db.write(move |tx| {
                    complete(tx, &tenant, &refund_id, provider_ref.as_deref(), &origin, crate::now_unix()).map(drop)
                })
                .await?
            }
            Err(Error::PaymentRefused(why)) => {
                tracing::warn!(tenant = %tenant.slug, order = %id, %why, "a held refund was refused; released");
                db.write(move |tx| abandon(tx, &refund_id)).await?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A step run in the transaction that records a refund (order id, origin, now).
type Then = fn(&TenantTx<'_>, &Tenant, &str, &Origin, i64) -> Result<()>;

/// Holds `refund` of order `id` as pending, asks the provider (stripe orders), and records it, running `then` in
/// the recording transaction (a cancellation's status change, inside a savepoint: if it fails, the refund still
/// stands and the step's error is answered). The outer error is the hold's or the provider's. A refusal releases
/// the hold; no clear answer keeps it, to be sent again with the same key by the next refund or cancel of the
/// order (`resume`), so the money goes back at most once.
#[allow(clippy::too_many_arguments)] // the refund's parts; each caller names them once
async fn settle(
    app: &App,
    tenant: &Arc<Tenant>,
    db: &TenantDb,
    found: &Refundable,
    id: String,
    refund: &Refund<'_>,
    origin: Origin,
    then: Option<Then>,
) -> Result<Result<()>> {
    let (order, actor) = (id.clone(), origin.actor.clone());
    let (amount, restock, reason, for_cancel) =
        (refund.amount, refund.restock, refund.reason.map(str::to_owned), refund.for_cancel);
    let refund_id = db
        .write(move |tx| {
            let refund = Refund { amount, restock, reason: reason.as_deref(), for_cancel };
            begin(tx, &order, &refund, &actor, crate::now_unix())
        })
        .await?;
    let provider_ref = match pay_back(app, tenant, found, amount, &format!("gatehouse-refund-{refund_id}")).await {
        Ok(reference) => reference,
        Err(Error::PaymentRefused(why)) => {
            let pending = refund_id.clone();
            db.write(move |tx| abandon(tx, &pending)).await?;
            return Err(Error::PaymentRefused(why));
        }
        Err(err) => {
            return Err(Error::PaymentUnavailable(format!(
                "{err}; the refund is held and is sent again (at most once) with the next refund or cancel of this order"
            )));
        }
    };
    let tenant = tenant.clone();
    db.write(move |tx| {
        let now = crate::now_unix();
        complete(tx, &tenant, &refund_id, provider_ref.as_deref(), &origin, now)?;
        let Some(step) = then else { return Ok(Ok(())) };
        tx.execute_batch("SAVEPOINT refund_step")?;
        let stepped = step(tx, &tenant, &id, &origin, now);
        tx.execute_batch(if stepped.is_ok() {
            "RELEASE refund_step"
        } else {
            "ROLLBACK TO refund_step; RELEASE refund_step"
        })?;
        Ok(stepped)
    })
    .await
}

/// The admin's cancel of order `id`: unpaid, it is cancelled; paid, its whole total goes back through its
/// provider first. A paid order with shipments is refunded instead (its shipped units are not stock).
pub async fn cancel(app: &App, tenant: &Arc<Tenant>, db: &TenantDb, id: String, origin: Origin) -> Result<()> {
    resume(app, tenant, db, &id, &origin).await?;
    let found = refundable(db, &id).await?;
    if found.status == "paid" && found.shipped {
        return Err(Error::InvalidTransition("a paid order with shipments is refunded, not cancelled".into()));
    }
    if found.status == "paid" && found.left > 0 {
        let refund = Refund { amount: found.left, restock: false, reason: Some("order cancelled"), for_cancel: true };
        return settle(app, tenant, db, &found, id, &refund, origin, Some(cancel_refunded)).await?;
    }
    let tenant = tenant.clone();
    db.write(move |tx| {
        orders::transition(tx, &tenant, &id, "cancelled", &origin, json!({}), crate::now_unix()).map(drop)
    })
    .await
}

/// The status step of a cancel whose refund was just recorded: cancelled, unless the order was shipped meanwhile
/// (then it is `refunded`: its money went back and its units are with the buyer; the answer shows the status).
fn cancel_refunded(tx: &TenantTx<'_>, tenant: &Tenant, id: &str, origin: &Origin, now: i64) -> Result<()> {
    let (status, shipped): (String, bool) = tx.query_row(
        "SELECT status, EXISTS(SELECT 1 FROM shipments WHERE order_id = ?1) FROM orders WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if orders::allowed(&status, "cancelled") && !shipped {
        return orders::transition(tx, tenant, id, "cancelled", origin, json!({}), now).map(drop);
    }
    if orders::allowed(&status, "refunded") {
        let detail = json!({"reason": "shipped while it was being cancelled: refunded instead"});
        return orders::transition(tx, tenant, id, "refunded", origin, detail, now).map(drop);
    }
    Err(Error::InvalidTransition(format!("the order was {status} meanwhile: its total is refunded, not cancelled")))
}
