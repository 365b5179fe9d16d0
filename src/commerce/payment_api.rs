//! Paying for orders: asking the provider for an order's payment (`ensure`, after the checkout committed, and
//! again on `POST /t/{slug}/api/v1/orders/{id}/payment`), the Stripe webhook (`POST /t/{slug}/payments/stripe/webhook`)
//! and the admin's Stripe keys (`GET|PUT|DELETE /admin/api/v1/tenants/{slug}/payments/stripe`).
//!
//! Who may call:
//! - `…/orders/{id}/payment`: the order's owner (session cookie, or an access token with `account:write`) or the
//!   holder of its order token (`?token=`); anyone else gets 404.
//! - the webhook: Stripe, proven by `Stripe-Signature` with the tenant's webhook secret (400 `invalid_signature`
//!   otherwise, nothing changed). Each event is handled once (by its id); an event for an unknown order or of a
//!   type not handled is answered 200 and audited.
//! - the keys: an operator, or an admin or API token scoped to the tenant. The secrets are never shown again.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cart_api::{Customer, answer, limit};
use super::checkout::{self, PaymentView};
use super::orders::{self, Timeline};
use super::payments::{self, PayableOrder, StripeKeys, StripeView};
use super::refunds::{self, Refund};
use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::control::Tenant;
use crate::db::registry::TenantDb;
use crate::email::outbox::TenantTx;
use crate::error::{Error, Result};
use crate::http::extract::{ApiJson, TenantCtx};
use crate::http::openapi::ApiErrors;
use crate::identity::audit::{self, Origin};
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(retry_payment, payment_preflight))
        .routes(routes!(stripe_webhook))
        .routes(routes!(read_stripe, put_stripe, delete_stripe))
}

/// The order's payment as its buyer sees it, asking Stripe for one when the order has none yet (idempotent per
/// order: Stripe answers the same PaymentIntent for the same key). A provider that cannot be reached leaves the
/// payment `unavailable`; the order stays committed.
pub async fn ensure(app: &App, tenant: &Tenant, db: &TenantDb, id: &str) -> Result<PaymentView> {
    let order = id.to_owned();
    let row = crate::db::with_conn(&db.pool, move |conn| {
        conn.query_row(
            "SELECT status, payment_method, payment_status, client_secret, payment_ref, total, currency, number
             FROM orders WHERE id = ?1",
            [&order],
            |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                    (r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?),
                    (r.get::<_, i64>(5)?, r.get::<_, String>(6)?, r.get::<_, i64>(7)?),
                ))
            },
        )
        .optional()?
        .ok_or(Error::NotFound("order"))
    })
    .await?;
    let ((status, method, payment_status, client_secret, reference), (total, currency, number)) =
        ((row.0.0, row.0.1, row.0.2, row.1.0, row.1.1), row.2);
    let view =
        |status: String, client_secret: Option<String>| PaymentView { method: method.clone(), status, client_secret };
    if method != "stripe" || reference.is_some() || status != "pending_payment" {
        return Ok(view(payment_status, client_secret));
    }
    let secrets = payments::stripe_secrets(app, &tenant.slug).await?;
    let payable = PayableOrder {
        id: id.to_owned(),
        number: format!("#{number}"),
        amount: total,
        currency,
        tenant: tenant.slug.to_string(),
    };
    let created = match secrets {
        None => Err(Error::PaymentUnavailable("Stripe is not set up for this store".into())),
        Some(s) => payments::create_intent(app, &s.secret_key, &payable, &format!("gatehouse-order-{id}")).await,
    };
    let order = id.to_owned();
    match created {
        Ok(intent) => {
            let secret = intent.client_secret.clone();
            let answer = view("requires_payment".into(), secret.clone());
            let stored = serde_json::to_value(&answer).map_err(Error::internal)?;
            let refused = db
                .write(move |tx| {
                    let set = tx.execute(
                        "UPDATE orders SET payment_status = 'requires_payment', payment_ref = ?2, client_secret = ?3
                     WHERE id = ?1 AND payment_ref IS NULL AND status = 'pending_payment'",
                        params![order, intent.id, secret],
                    )?;
                    let status: String =
                        tx.query_row("SELECT status FROM orders WHERE id = ?1", [&order], |r| r.get(0))?;
                    if set == 0 && status != "pending_payment" {
                        // Cancelled or expired while Stripe was asked: this intent must not be paid (committed, so the
                        // cancellation reaches Stripe).
                        tx.touch_cancelled_intent(&intent.id);
                        return Ok(Some(status));
                    }
                    if set == 1 {
                        let detail = json!({"status": "requires_payment", "provider": "stripe", "intent": intent.id});
                        Timeline { order: &order, kind: "payment", from: None, to: None, actor: "system" }.write(
                            tx,
                            &detail,
                            crate::now_unix(),
                        )?;
                        store_payment(tx, &order, &stored)?;
                    }
                    Ok(None)
                })
                .await?;
            match refused {
                Some(status) => Err(Error::InvalidTransition(format!("the order is {status}; it cannot be paid"))),
                None => Ok(answer),
            }
        }
        Err(err) => {
            tracing::warn!(tenant = %tenant.slug, order = %id, error = %err, "payment could not be set up");
            let message = err.to_string();
            let answer = view("unavailable".into(), None);
            let stored = serde_json::to_value(&answer).map_err(Error::internal)?;
            db.write(move |tx| {
                let set = tx.execute(
                    "UPDATE orders SET payment_status = 'unavailable'
                     WHERE id = ?1 AND payment_ref IS NULL AND payment_status <> 'unavailable'",
                    [&order],
                )?;
                if set == 1 {
                    let detail = json!({"status": "unavailable", "provider": "stripe", "error": message});
                    Timeline { order: &order, kind: "payment", from: None, to: None, actor: "system" }.write(
                        tx,
                        &detail,
                        crate::now_unix(),
                    )?;
                    store_payment(tx, &order, &stored)?;
                }
                Ok(())
            })
            .await?;
            Ok(answer)
        }
    }
}

/// The checkout's stored answer carries the payment as it is now, so a replay answers the same as a retry would.
fn store_payment(tx: &TenantTx<'_>, order: &str, payment: &Value) -> Result<()> {
    tx.execute(
        "UPDATE idempotency_keys SET body = json_set(body, '$.payment', json(?2))
         WHERE key = (SELECT idempotency_key FROM orders WHERE id = ?1)",
        params![order, payment.to_string()],
    )?;
    Ok(())
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Asks the provider again for the payment of an order whose payment was `unavailable` (idempotent: an order
/// that has one answers it).
#[utoipa::path(
    post,
    path = "/t/{slug}/api/v1/orders/{id}/payment",
    tag = "storefront",
    operation_id = "orders_payment",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The order's id"),
        ("token" = Option<String>, Query, description = "The order token")
    ),
    responses((status = 200, description = "The order's payment", body = PaymentView), ApiErrors),
    security((), ("user_session" = []), ("access_token" = []))
)]
async fn retry_payment(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ctx: TenantCtx,
    headers: HeaderMap,
    customer: Customer,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let result = async {
        limit(&app, &headers, peer)?;
        let who = customer.0?;
        let order = id.clone();
        crate::db::with_conn(&ctx.db.pool, move |conn| {
            checkout::find_for(conn, &order, who.as_deref(), q.token.as_deref())
        })
        .await?;
        let payment = ensure(&app, &ctx.tenant, &ctx.db, &id).await?;
        Ok(Json(payment).into_response())
    }
    .await;
    answer(&ctx.tenant, &headers, result)
}

store_preflight!(
    payment_preflight,
    "POST, OPTIONS",
    "/t/{slug}/api/v1/orders/{id}/payment",
    "orders_payment_preflight",
    "id"
);

/// What a webhook event came to.
#[derive(Debug)]
enum Handled {
    Done(&'static str),
    /// Paid after the order was cancelled: the money goes back.
    PaidLate {
        intent: String,
        amount: i64,
        order: String,
    },
}

/// Stripe's events: `payment_intent.succeeded` (the order is paid once amount and currency match it),
/// `payment_intent.payment_failed`, `charge.refunded`. Verified by `Stripe-Signature`; each event id is handled
/// once; anything else is answered 200 and audited.
#[utoipa::path(
    post,
    path = "/t/{slug}/payments/stripe/webhook",
    tag = "storefront",
    operation_id = "payments_stripe_webhook",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("Stripe-Signature" = String, Header, description = "t=…,v1=… as Stripe signs")
    ),
    request_body(content = Object, content_type = "application/json", description = "A Stripe event"),
    responses((status = 200, description = "Received", body = Object), ApiErrors),
    security(())
)]
async fn stripe_webhook(
    State(app): State<AppState>,
    ctx: TenantCtx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    let secrets = payments::stripe_secrets(&app, &ctx.tenant.slug).await?.ok_or(Error::NotFound("stripe webhook"))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(Error::InvalidSignature("the Stripe-Signature header is missing"))?;
    payments::verify_signature(signature, &body, &secrets.webhook_secret, crate::now_unix())?;
    let event: Value = serde_json::from_slice(&body).map_err(|_| Error::BadRequest("the event is not JSON".into()))?;
    let (Some(event_id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(Error::BadRequest("the event has no id or type".into()));
    };
    let (event_id, kind) = (event_id.to_owned(), kind.to_owned());
    let tenant = ctx.tenant.clone();
    let object = event["data"]["object"].clone();
    let handled = ctx.db.write(move |tx| handle(tx, &tenant, &event_id, &kind, &object)).await?;
    let outcome = match handled {
        Handled::Done(outcome) => outcome,
        Handled::PaidLate { intent, amount, order } => {
            // The buyer paid an order that had expired or was cancelled: the money goes back at once.
            let key = format!("gatehouse-late-{intent}");
            match payments::refund(&app, &secrets.secret_key, &intent, amount, &key, &key).await {
                Ok(refund) => {
                    let tenant = ctx.tenant.clone();
                    ctx.db
                        .write(move |tx| {
                            let origin = Origin { actor: "provider:stripe".into(), ..Default::default() };
                            let why = Refund {
                                amount,
                                restock: false,
                                reason: Some("paid after the order was cancelled"),
                                for_cancel: true,
                            };
                            refunds::record_external(tx, &tenant, &order, &why, &refund.id, &origin, crate::now_unix())
                        })
                        .await?;
                }
                Err(err) => {
                    // Forget the event, so Stripe's next delivery of it tries the refund again.
                    tracing::error!(tenant = %ctx.tenant.slug, %order, error = %err, "a late payment could not be refunded yet");
                    let event = event["id"].as_str().unwrap_or_default().to_owned();
                    ctx.db
                        .write(move |tx| {
                            tx.execute(
                                "DELETE FROM provider_events WHERE provider = 'stripe' AND event_id = ?1",
                                [&event],
                            )?;
                            Ok(())
                        })
                        .await?;
                    return Err(err);
                }
            }
            "paid_after_cancel_refunded"
        }
    };
    Ok(Json(json!({"received": true, "outcome": outcome})))
}

/// Handles one verified event in one transaction.
fn handle(tx: &TenantTx<'_>, tenant: &Tenant, event_id: &str, kind: &str, object: &Value) -> Result<Handled> {
    let now = crate::now_unix();
    let first = tx.execute(
        "INSERT OR IGNORE INTO provider_events (provider, event_id, kind, outcome, received_at)
         VALUES ('stripe', ?1, ?2, '', ?3)",
        params![event_id, kind, now],
    )?;
    if first == 0 {
        return Ok(Handled::Done("duplicate"));
    }
    let origin = Origin { actor: "provider:stripe".into(), ..Default::default() };
    let intent = match kind {
        "charge.refunded" => object["payment_intent"].as_str(),
        _ => object["id"].as_str(),
    }
    .unwrap_or_default();
    let handled = match kind {
        "payment_intent.succeeded" | "payment_intent.payment_failed" | "charge.refunded" => {
            match find_order(tx, intent, object)? {
                None => Handled::Done("unknown_order"),
                Some(order) => on_order(tx, tenant, &order, kind, object, &origin, now)?,
            }
        }
        _ => Handled::Done("ignored_type"),
    };
    let outcome = match &handled {
        Handled::Done(outcome) => *outcome,
        Handled::PaidLate { .. } => "paid_after_cancel",
    };
    tx.execute(
        "UPDATE provider_events SET outcome = ?3 WHERE provider = 'stripe' AND event_id = ?1 AND kind = ?2",
        params![event_id, kind, outcome],
    )?;
    if !matches!(outcome, "paid" | "failed" | "refunded" | "already_recorded") {
        let detail = json!({"provider": "stripe", "event_id": event_id, "event_type": kind, "outcome": outcome,
                            "intent": intent});
        audit::record(tx, "payment_event", None, &origin, detail)?;
    }
    Ok(handled)
}

/// The order a Stripe object belongs to: by its PaymentIntent id, or (an intent whose id was never recorded
/// because the write after creating it failed) by the order id in its metadata, if that order has no intent yet.
fn find_order(tx: &TenantTx<'_>, intent: &str, object: &Value) -> Result<Option<String>> {
    if intent.is_empty() {
        return Ok(None);
    }
    let found = tx
        .query_row("SELECT id FROM orders WHERE payment_method = 'stripe' AND payment_ref = ?1", [intent], |r| r.get(0))
        .optional()?;
    if found.is_some() {
        return Ok(found);
    }
    let Some(by_metadata) = object["metadata"]["order_id"].as_str() else { return Ok(None) };
    let adopted = tx.execute(
        "UPDATE orders SET payment_ref = ?2 WHERE id = ?1 AND payment_method = 'stripe' AND payment_ref IS NULL",
        params![by_metadata, intent],
    )?;
    Ok((adopted == 1).then(|| by_metadata.to_owned()))
}

fn on_order(
    tx: &TenantTx<'_>,
    tenant: &Tenant,
    order: &str,
    kind: &str,
    object: &Value,
    origin: &Origin,
    now: i64,
) -> Result<Handled> {
    let (status, total, currency, refunded): (String, i64, String, i64) =
        tx.query_row("SELECT status, total, currency, refunded_total FROM orders WHERE id = ?1", [order], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    let timeline = Timeline { order, kind: "payment", from: None, to: None, actor: &origin.actor };
    match kind {
        "payment_intent.succeeded" => {
            let amount = object["amount_received"].as_i64().or_else(|| object["amount"].as_i64()).unwrap_or(-1);
            let paid_currency = object["currency"].as_str().unwrap_or_default().to_ascii_uppercase();
            if amount != total || paid_currency != currency {
                let detail = json!({"status": "mismatch", "expected": {"amount": total, "currency": currency},
                                    "received": {"amount": amount, "currency": paid_currency}});
                timeline.write(tx, &detail, now)?;
                return Ok(Handled::Done("amount_mismatch"));
            }
            match status.as_str() {
                "pending_payment" => {
                    tx.execute("UPDATE orders SET payment_status = 'succeeded' WHERE id = ?1", [order])?;
                    let detail = json!({"provider": "stripe", "reference": object["id"]});
                    orders::transition(tx, tenant, order, "paid", origin, detail, now)?;
                    Ok(Handled::Done("paid"))
                }
                "cancelled" => {
                    tx.execute("UPDATE orders SET payment_status = 'succeeded' WHERE id = ?1", [order])?;
                    timeline.write(tx, &json!({"status": "paid_after_cancel", "provider": "stripe"}), now)?;
                    let intent = object["id"].as_str().unwrap_or_default().to_owned();
                    Ok(Handled::PaidLate { intent, amount, order: order.to_owned() })
                }
                _ => Ok(Handled::Done("already_paid")),
            }
        }
        "payment_intent.payment_failed" => {
            if status != "pending_payment" {
                return Ok(Handled::Done("already_settled"));
            }
            tx.execute("UPDATE orders SET payment_status = 'failed' WHERE id = ?1", [order])?;
            let message = object["last_payment_error"]["message"].as_str().unwrap_or("the payment failed");
            let message: String = message.chars().take(300).collect();
            timeline.write(tx, &json!({"status": "failed", "provider": "stripe", "message": message}), now)?;
            Ok(Handled::Done("failed"))
        }
        _ => {
            // charge.refunded: each refund Stripe lists is ours (our refund id in its metadata: recorded now if its
            // answer has not been yet) or made in Stripe's dashboard (recorded now, once). Without the list, what
            // Stripe refunded beyond what is recorded and being recorded here.
            let mut recorded = false;
            let listed = object["refunds"]["data"].as_array().cloned().unwrap_or_default();
            for item in &listed {
                let (Some(reference), Some(amount)) = (item["id"].as_str(), item["amount"].as_i64()) else { continue };
                if amount <= 0 {
                    continue;
                }
                if let Some(ours) = item["metadata"]["refund_id"].as_str() {
                    let pending: bool = tx.query_row(
                        "SELECT EXISTS(SELECT 1 FROM refunds WHERE id = ?1 AND order_id = ?2 AND state = 'pending')",
                        params![ours, order],
                        |r| r.get(0),
                    )?;
                    if pending {
                        recorded |= refunds::complete(tx, tenant, ours, Some(reference), origin, now)?;
                        continue;
                    }
                }
                let refund = Refund { amount, restock: false, reason: None, for_cancel: status == "cancelled" };
                recorded |= refunds::record_external(tx, tenant, order, &refund, reference, origin, now)?;
            }
            let stripe_total = object["amount_refunded"].as_i64().unwrap_or(0);
            let (ours, in_flight): (i64, i64) = tx.query_row(
                "SELECT refunded_total, (SELECT COALESCE(SUM(amount), 0) FROM refunds
                                         WHERE order_id = ?1 AND state = 'pending')
                 FROM orders WHERE id = ?1",
                [order],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if listed.is_empty() && stripe_total > ours.max(refunded) + in_flight {
                let reference = format!("{}:{stripe_total}", object["id"].as_str().unwrap_or("charge"));
                let refund = Refund {
                    amount: stripe_total - ours - in_flight,
                    restock: false,
                    reason: None,
                    for_cancel: status == "cancelled",
                };
                recorded |= refunds::record_external(tx, tenant, order, &refund, &reference, origin, now)?;
            }
            Ok(Handled::Done(if recorded { "refunded" } else { "already_recorded" }))
        }
    }
}

/// The tenant's Stripe settings (never the secrets).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/payments/stripe",
    tag = "store",
    operation_id = "payments_stripe_get",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The Stripe settings", body = StripeView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_stripe(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<StripeView>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    Ok(Json(payments::stripe_view(&app, &slug).await?))
}

/// Sets the tenant's Stripe keys (sealed; never shown again). Checkouts may then choose `stripe`.
#[utoipa::path(
    put,
    path = "/admin/api/v1/tenants/{slug}/payments/stripe",
    tag = "store",
    operation_id = "payments_stripe_put",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = StripeKeys,
    responses((status = 200, description = "The Stripe settings", body = StripeView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn put_stripe(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<StripeKeys>,
) -> Result<Json<StripeView>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    Ok(Json(payments::set_stripe(&app, &slug, body).await?))
}

/// Removes the tenant's Stripe keys: new checkouts cannot choose `stripe`.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/payments/stripe",
    tag = "store",
    operation_id = "payments_stripe_delete",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 204, description = "Removed"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_stripe(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
) -> Result<axum::http::StatusCode> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    payments::remove_stripe(&app, &slug).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
