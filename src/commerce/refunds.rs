//! Refunds and cancellations that give money back.
//!
//! - `record` writes one refund in the caller's transaction: the row (a provider refund id is recorded once, so
//!   the provider's `charge.refunded` for a refund made here changes nothing), the order's `refunded_total`, the
//!   `refund` timeline entry, the units back to stock when asked, and the move to `refunded` (all of the total)
//!   or `partially_refunded`.
//! - `refund` is the admin's action: a `manual` order's refund is recorded at once (the merchant pays it back
//!   themselves); a `stripe` order's goes through `POST /v1/refunds` first, outside any transaction, and is
//!   recorded with Stripe's refund id once Stripe took it.
//! - `cancel` is the admin's cancel: a paid order is refunded in full through its provider, then cancelled (its
//!   stock and discount-code uses go back).

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
    /// The provider's refund id; `None` for a manual refund.
    pub provider_ref: Option<&'a str>,
    /// Move the order to `refunded` / `partially_refunded` (not when the refund belongs to a cancellation).
    pub move_status: bool,
}

/// Records `refund` of order `id`; `false` when the provider's refund id was recorded already.
pub fn record(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    id: &str,
    refund: &Refund<'_>,
    origin: &Origin,
    now: i64,
) -> Result<bool> {
    if let Some(reference) = refund.provider_ref {
        let known: bool =
            tx.query_row("SELECT EXISTS(SELECT 1 FROM refunds WHERE provider_ref = ?1)", [reference], |r| r.get(0))?;
        if known {
            return Ok(false);
        }
    }
    let (status, total, refunded, number): (String, i64, i64, i64) = tx
        .query_row("SELECT status, total, refunded_total, number FROM orders WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?
        .ok_or(Error::NotFound("order"))?;
    let refunded = (refunded + refund.amount).min(total);
    let refund_id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO refunds (id, order_id, amount, restock, reason, provider_ref, actor, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![refund_id, id, refund.amount, refund.restock, refund.reason, refund.provider_ref, origin.actor, now],
    )?;
    tx.execute("UPDATE orders SET refunded_total = ?2, updated_at = ?3 WHERE id = ?1", params![id, refunded, now])?;
    let mut units = 0;
    if refund.restock {
        let reason = format!("order #{number} refunded");
        units = orders::restock(tx, tenant, id, super::inventory::MovementKind::Return, &reason, now)?;
    }
    let detail = json!({
        "refund_id": refund_id,
        "amount": refund.amount,
        "refunded_total": refunded,
        "restocked_units": units,
        "reason": refund.reason,
        "provider_ref": refund.provider_ref,
    });
    Timeline { order: id, kind: "refund", from: None, to: None, actor: &origin.actor }.write(tx, &detail, now)?;
    if refund.move_status {
        let to = if refunded >= total { "refunded" } else { "partially_refunded" };
        if orders::allowed(&status, to) {
            orders::transition(tx, tenant, id, to, origin, json!({"refund_id": refund_id}), now)?;
        }
    }
    Ok(true)
}

/// What the admin's refund needs to know of the order first.
struct Refundable {
    status: String,
    method: String,
    payment_ref: Option<String>,
    left: i64,
}

async fn refundable(db: &TenantDb, id: &str) -> Result<Refundable> {
    let id = id.to_owned();
    crate::db::with_conn(&db.pool, move |conn| {
        conn.query_row(
            "SELECT status, payment_method, payment_ref, total - refunded_total FROM orders WHERE id = ?1",
            [&id],
            |r| Ok(Refundable { status: r.get(0)?, method: r.get(1)?, payment_ref: r.get(2)?, left: r.get(3)? }),
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
    let answer = payments::refund(app, &secrets.secret_key, intent, amount, idempotency_key, idempotency_key).await?;
    if answer.status == "failed" || answer.status == "canceled" {
        return Err(Error::PaymentUnavailable(format!("Stripe did not make the refund (status {})", answer.status)));
    }
    Ok(Some(answer.id))
}

/// The admin's refund of order `id`.
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
    let found = refundable(db, &id).await?;
    if !matches!(found.status.as_str(), "paid" | "fulfilled" | "delivered" | "partially_refunded") {
        return Err(Error::InvalidTransition(format!("an order that is {} cannot be refunded", found.status)));
    }
    if body.amount < 1 || body.amount > found.left {
        return Err(Error::validation(format!("amount must be 1 to {} (what is left of the total)", found.left)));
    }
    let key = format!("gatehouse-refund-{}", uuid::Uuid::now_v7());
    let provider_ref = pay_back(app, tenant, &found, body.amount, &key).await?;
    let tenant = tenant.clone();
    db.write(move |tx| {
        let refund = Refund {
            amount: body.amount,
            restock: body.restock,
            reason: reason.as_deref(),
            provider_ref: provider_ref.as_deref(),
            move_status: true,
        };
        record(tx, &tenant, &id, &refund, &origin, crate::now_unix()).map(drop)
    })
    .await
}

/// The admin's cancel of order `id`: unpaid, it is cancelled; paid, its whole total goes back through its
/// provider first.
pub async fn cancel(app: &App, tenant: &Arc<Tenant>, db: &TenantDb, id: String, origin: Origin) -> Result<()> {
    let found = refundable(db, &id).await?;
    let provider_ref = if found.status == "paid" && found.left > 0 {
        pay_back(app, tenant, &found, found.left, &format!("gatehouse-cancel-{id}")).await?
    } else {
        None
    };
    let (tenant, paid) = (tenant.clone(), found.status == "paid");
    db.write(move |tx| {
        let now = crate::now_unix();
        orders::transition(tx, &tenant, &id, "cancelled", &origin, json!({}), now)?;
        if paid {
            let left: i64 =
                tx.query_row("SELECT total - refunded_total FROM orders WHERE id = ?1", [&id], |r| r.get(0))?;
            if left > 0 {
                let refund = Refund {
                    amount: left,
                    restock: false,
                    reason: Some("order cancelled"),
                    provider_ref: provider_ref.as_deref(),
                    move_status: false,
                };
                record(tx, &tenant, &id, &refund, &origin, now)?;
            }
        }
        Ok(())
    })
    .await
}
