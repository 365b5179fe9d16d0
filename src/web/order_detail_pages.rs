//! Admin UI page of one order of a store, `/admin/tenants/{slug}/store/orders/{id}`: its lines, totals,
//! addresses and payment, its shipments (each with a form for a tracking event) and its timeline, and the actions
//! its status allows — mark a `manual` order paid, ship what is left, refund (part of) it with or without restock,
//! cancel it (a paid order is refunded in full first). Refund and cancel ask first: their handlers change nothing
//! without the `confirm=yes` of the confirmation box. A refused action comes back as the page with the reason
//! next to the field it is about and what was typed kept; a done one redirects to the page with `?done=`.
//!
//! Who may call: an operator, or an admin of the tenant (`Actor::open_tenant`), as on every Store page. Another
//! tenant's order id is not in this tenant's file: the not-found page. The actions call the services of the
//! orders admin API (`orders`, `fulfilment`, `refunds`) and are recorded as the signed-in admin
//! (`identity::admin::origin`). The list of orders is `order_pages`.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::order_pages::{label, status_class};
use super::store_pages::open;
use super::ui::{FieldErrors, When};
use super::{Chrome, CsrfForm, UiSession};
use crate::app::AppState;
use crate::commerce::checkout::{self, Address, OrderView};
use crate::commerce::fulfilment::{self, Courier, NewShipment, ShipmentView, TRACKING, TrackingUpdate};
use crate::commerce::money;
use crate::commerce::orders::{self, OrderEvent};
use crate::commerce::refunds::{self, RefundRequest};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::error::Error;
use crate::http::extract::RequestOrigin;
use crate::http::page::{PageError, PageResult, render};
use crate::identity::admin;

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/store/orders/{id}";
    Router::new()
        .route(base, get(order_page))
        .route(&format!("{base}/mark-paid"), post(mark_paid))
        .route(&format!("{base}/ship"), post(ship))
        .route(&format!("{base}/shipments/{{sid}}/track"), post(track))
        .route(&format!("{base}/refund"), post(refund))
        .route(&format!("{base}/cancel"), post(cancel))
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "paid" => "Order marked paid.",
        "shipped" => "Shipment created.",
        "tracked" => "Tracking event added.",
        "refunded" => "Refund recorded.",
        "cancelled" => "Order cancelled; its units went back to stock.",
        "unconfirmed" => "Nothing was changed: confirm the action in the box that opens under its button.",
        _ => return None,
    };
    Some(text.to_owned())
}

fn to_order(slug: &str, id: &str, done: &str) -> Response {
    Redirect::to(&format!("/admin/tenants/{slug}/store/orders/{id}?done={done}")).into_response()
}

/// Files a refused action's error: a validation error under the field its message starts with (the field named as
/// the form labels it), any other refusal (a status that does not allow it, the payment provider's answer) under
/// `fallback`. An error that is not the form's (a missing order, a database failure) comes back as the page.
fn file(errors: &mut FieldErrors, err: Error, fields: &[(&str, &str, &str)], fallback: &str) -> Result<(), PageError> {
    match err {
        Error::Validation(message) => {
            match fields.iter().find(|(prefix, _, _)| message.starts_with(prefix)) {
                Some((prefix, field, named)) => errors.add(field, format!("{named}{}", &message[prefix.len()..])),
                None => errors.add(fallback, message),
            }
            Ok(())
        }
        Error::InvalidTransition(message)
        | Error::PaymentUnavailable(message)
        | Error::Conflict(message)
        | Error::Unprocessable(message)
        | Error::BadRequest(message) => {
            errors.add(fallback, message);
            Ok(())
        }
        other => Err(PageError(other)),
    }
}

// ---- one order ----

/// What the action forms hold and what was wrong with them: as typed when an action was refused, else empty.
#[derive(Default)]
struct ActionForms {
    errors: FieldErrors,
    reference: String,
    carrier: String,
    tracking_number: String,
    tracking_url: String,
    courier_name: String,
    courier_phone: String,
    amount: String,
    restock: bool,
    reason: String,
    /// The shipment whose tracking form was refused, and what it held.
    track_shipment: String,
    track_status: String,
    track_note: String,
}

struct LineRow {
    sku: String,
    title: String,
    quantity: u32,
    unit_price: String,
    total: String,
}

struct ShipmentRow {
    id: String,
    carrier: String,
    tracking_number: String,
    tracking_url: Option<String>,
    /// `Sam · +44 1`, or empty.
    courier: String,
    status: String,
    status_class: &'static str,
    /// `MUG × 2, CAP × 1`.
    lines: String,
    created: When,
    /// Tracking events may still be added (not delivered yet).
    trackable: bool,
    /// The tracking form's values and its error (`track-{id}`).
    track_status: String,
    track_note: String,
    error: Option<String>,
}

struct EventRow {
    kind: &'static str,
    /// `paid → fulfilled`, or empty.
    change: String,
    summary: String,
    actor: String,
    at: When,
}

#[derive(Template)]
#[template(path = "admin/store_order.html")]
struct OrderPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    id: String,
    number: String,
    status: String,
    status_class: &'static str,
    email: String,
    created: When,
    lines: Vec<LineRow>,
    /// (label, amount) from the subtotal down to the total.
    totals: Vec<(&'static str, String)>,
    shipping_address: Vec<String>,
    billing_address: Option<Vec<String>>,
    payment_method: String,
    payment_status: String,
    refunded: String,
    /// What is left to refund, as a decimal (the refund form's default).
    left: String,
    left_text: String,
    currency: String,
    shipments: Vec<ShipmentRow>,
    /// (value, label) of the tracking statuses.
    tracking: Vec<(&'static str, String)>,
    events: Vec<EventRow>,
    can_mark_paid: bool,
    can_ship: bool,
    can_refund: bool,
    can_cancel: bool,
    /// Cancelling gives the money back first (the order is paid).
    cancel_refunds: bool,
    forms: ActionForms,
    errors: FieldErrors,
}

/// An address as the lines of a label.
fn address_lines(a: &Address) -> Vec<String> {
    let mut lines = vec![a.name.clone(), a.line1.clone()];
    lines.extend(a.line2.clone().filter(|l| !l.trim().is_empty()));
    lines.push(format!("{} {}", a.postal_code, a.city));
    lines.extend(a.region.clone().filter(|r| !r.trim().is_empty()));
    lines.push(a.country.clone());
    lines
}

/// Who did it, as people read it: an admin's email, "API token deploy", "The buyer", "System".
fn actor_label(actor: &str, admins: &HashMap<String, String>) -> String {
    match actor {
        "system" => "System".to_owned(),
        "guest" => "The buyer (guest checkout)".to_owned(),
        "carrier" => "The carrier (tracking webhook)".to_owned(),
        _ if actor.starts_with("user:") => "The buyer".to_owned(),
        _ if actor.starts_with("operator:") => {
            admins.get(actor).cloned().unwrap_or_else(|| "a deleted admin".to_owned())
        }
        _ if actor.starts_with("token:") => {
            admins.get(actor).map_or_else(|| "a deleted API token".to_owned(), |name| format!("API token {name}"))
        }
        _ => match actor.strip_prefix("provider:") {
            Some(provider) => format!("Payment provider ({provider})"),
            None => actor.to_owned(),
        },
    }
}

/// A timeline entry's detail in a line.
fn event_summary(e: &OrderEvent, currency: &str) -> String {
    let d = &e.detail;
    let text = |key: &str| d.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut parts: Vec<String> = Vec::new();
    match e.kind.as_str() {
        "created" => parts.push("Order placed".to_owned()),
        "status_changed" => {
            parts.extend(text("reference").map(|r| format!("reference {r}")));
            parts.extend(text("reason"));
            if d.get("shipment_id").is_some() {
                parts.push("by a shipment".to_owned());
            }
            if d.get("refund_id").is_some() {
                parts.push("by a refund".to_owned());
            }
            parts.extend(text("provider").map(|p| format!("by {p}")));
        }
        "shipment_updated" => match text("status").as_deref() {
            Some("created") | None => parts.push(format!(
                "Shipped with {} ({})",
                text("carrier").unwrap_or_default(),
                text("tracking_number").unwrap_or_default()
            )),
            Some(status) => {
                parts.push(format!("Tracking: {}", label(status)));
                parts.extend(text("note"));
            }
        },
        "refund" => {
            let amount = d.get("amount").and_then(Value::as_i64).unwrap_or(0);
            parts.push(format!("Refunded {}", money::format(amount, currency)));
            match d.get("restocked_units").and_then(Value::as_i64).unwrap_or(0) {
                0 => {}
                1 => parts.push("1 unit back in stock".to_owned()),
                n => parts.push(format!("{n} units back in stock")),
            }
            parts.extend(text("reason").map(|r| format!("reason: {r}")));
            parts.extend(text("provider_ref"));
        }
        "payment" => {
            parts.extend(text("status").map(|s| format!("Payment {}", label(&s))));
            parts.extend(text("provider"));
            parts.extend(text("message").or_else(|| text("error")));
        }
        _ => {}
    }
    parts.join("; ")
}

fn event_kind(kind: &str) -> &'static str {
    match kind {
        "created" => "Placed",
        "status_changed" => "Status",
        "shipment_updated" => "Shipment",
        "refund" => "Refund",
        "payment" => "Payment",
        _ => "Other",
    }
}

struct Loaded {
    order: OrderView,
    events: Vec<OrderEvent>,
    shipments: Vec<ShipmentView>,
    admins: HashMap<String, String>,
}

/// The order with its timeline and shipments, and the names of the admins who acted on it (for a tenant admin,
/// node-wide operators by their role only, as the audit log names them).
async fn load(
    app: &AppState,
    session: &UiSession,
    tenant: &Tenant,
    db: &TenantDb,
    id: String,
) -> Result<Loaded, PageError> {
    let (order, events, shipments) = db::with_conn(&db.pool, move |conn| {
        Ok((checkout::find(conn, &id)?, orders::events(conn, &id)?, fulfilment::of_order(conn, &id)?))
    })
    .await?;
    let key = tenant.slug.clone();
    let hide = session.actor.scope != crate::admin::Scope::Operator;
    let admins = app.control.read(move |conn| crate::control::tables::admin_actor_names(conn, &key, hide)).await?;
    Ok(Loaded { order, events, shipments, admins })
}

async fn render_order(
    app: &AppState,
    session: &UiSession,
    chrome: Chrome,
    tenant: &Tenant,
    db: &TenantDb,
    id: String,
    mut forms: ActionForms,
) -> PageResult {
    let errors = std::mem::take(&mut forms.errors);
    let Loaded { order: o, events, shipments, admins } = load(app, session, tenant, db, id).await?;
    let currency = o.currency.clone();
    let amount = |minor: i64| money::format(minor, &currency);
    let ordered: i64 = o.lines.iter().map(|l| i64::from(l.quantity)).sum();
    let shipped: i64 = shipments.iter().flat_map(|s| &s.lines).map(|l| i64::from(l.quantity)).sum();
    let left = o.total - o.refunded_total;
    let status = o.status.as_str();
    let mut totals = vec![("Subtotal", amount(o.subtotal))];
    if o.discount_total != 0 {
        totals.push(("Discount", amount(-o.discount_total)));
    }
    totals.push(("Shipping", amount(o.shipping_total)));
    if o.tax_total != 0 {
        totals.push(("Tax", amount(o.tax_total)));
    }
    if o.fee_total != 0 {
        totals.push(("Fees", amount(o.fee_total)));
    }
    totals.push(("Total", amount(o.total)));
    let shipments = shipments
        .into_iter()
        .map(|s| {
            let key = format!("track-{}", s.id);
            let refused = forms.track_shipment == s.id;
            ShipmentRow {
                courier: s.courier.as_ref().map_or_else(String::new, |c: &Courier| {
                    [Some(c.name.as_str()), c.phone.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" · ")
                }),
                status_class: status_class(&s.status),
                trackable: s.status != "delivered",
                lines: s.lines.iter().map(|l| format!("{} × {}", l.sku, l.quantity)).collect::<Vec<_>>().join(", "),
                created: When::at(s.created_at),
                track_status: if refused { forms.track_status.clone() } else { String::new() },
                track_note: if refused { forms.track_note.clone() } else { String::new() },
                error: errors.get(&key).map(str::to_owned),
                status: label(&s.status),
                id: s.id,
                carrier: s.carrier,
                tracking_number: s.tracking_number,
                tracking_url: s.tracking_url,
            }
        })
        .collect();
    let events = events
        .iter()
        .map(|e| EventRow {
            kind: event_kind(&e.kind),
            change: match (&e.from, &e.to) {
                (Some(from), Some(to)) => format!("{} → {}", label(from), label(to)),
                (None, Some(to)) => label(to),
                _ => String::new(),
            },
            summary: event_summary(e, &currency),
            actor: actor_label(&e.actor, &admins),
            at: When::at(e.at),
        })
        .collect();
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = OrderPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "orders",
        can_mark_paid: status == "pending_payment" && o.payment_method == "manual",
        can_ship: matches!(status, "paid" | "partially_refunded") && shipped < ordered,
        can_refund: matches!(status, "paid" | "fulfilled" | "delivered" | "partially_refunded") && left > 0,
        can_cancel: matches!(status, "pending_payment" | "paid"),
        cancel_refunds: status == "paid" && left > 0,
        status: label(status),
        status_class: status_class(status),
        created: When::at(o.created_at),
        lines: o
            .lines
            .iter()
            .map(|l| LineRow {
                sku: l.sku.clone(),
                title: l.title.clone(),
                quantity: l.quantity,
                unit_price: amount(l.unit_price),
                total: amount(l.total),
            })
            .collect(),
        totals,
        shipping_address: address_lines(&o.shipping_address),
        billing_address: o.billing_address.as_ref().map(address_lines),
        payment_status: label(&o.payment_status),
        refunded: amount(o.refunded_total),
        left: money::to_decimal(left.max(0), &currency),
        left_text: amount(left.max(0)),
        shipments,
        tracking: TRACKING.iter().map(|t| (*t, label(t))).collect(),
        events,
        forms,
        errors,
        id: o.id,
        number: o.number,
        email: o.email,
        payment_method: o.payment_method,
        currency,
    };
    Ok((code, render(page)?).into_response())
}

#[derive(Deserialize, Default)]
struct OrderQuery {
    #[serde(default)]
    done: String,
}

async fn order_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<OrderQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", done_notice(Some(q.done.as_str())));
    render_order(&app, &session, chrome, &tenant, &db, id, ActionForms::default()).await
}

#[derive(Deserialize)]
struct MarkPaidForm {
    #[serde(default)]
    reference: String,
}

async fn mark_paid(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<MarkPaidForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let origin = admin::origin(&session.actor, from);
    let (owner, order, reference) = (tenant.clone(), id.clone(), form.reference.clone());
    let result =
        db.write(move |tx| orders::mark_paid(tx, &owner, &order, &reference, &origin, crate::now_unix())).await;
    let mut errors = FieldErrors::new();
    match result {
        Ok(()) => return Ok(to_order(&slug, &id, "paid")),
        Err(err) => file(&mut errors, err, &[("reference", "reference", "the reference")], "mark-paid")?,
    }
    let forms = ActionForms { errors, reference: form.reference, ..Default::default() };
    render_order(&app, &session, session.chrome("tenants"), &tenant, &db, id, forms).await
}

#[derive(Deserialize)]
struct ShipForm {
    #[serde(default)]
    carrier: String,
    #[serde(default)]
    tracking_number: String,
    #[serde(default)]
    tracking_url: String,
    #[serde(default)]
    courier_name: String,
    #[serde(default)]
    courier_phone: String,
}

/// The shipment service's field names, the form's fields and how the page names them.
const SHIP_FIELDS: [(&str, &str, &str); 5] = [
    ("carrier", "carrier", "the carrier"),
    ("tracking_number", "tracking_number", "the tracking number"),
    ("tracking_url", "tracking_url", "the tracking URL"),
    ("courier.name", "courier_name", "the courier's name"),
    ("courier.phone", "courier_phone", "the courier's phone number"),
];

/// Ships every unit not shipped yet.
async fn ship(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ShipForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let mut errors = FieldErrors::new();
    let courier = match (form.courier_name.trim(), form.courier_phone.trim()) {
        ("", "") => None,
        ("", _) => {
            errors.add("courier_name", "give the courier's name with their phone number");
            None
        }
        (name, phone) => Some(Courier { name: name.to_owned(), phone: (!phone.is_empty()).then(|| phone.to_owned()) }),
    };
    if errors.is_empty() {
        let url = form.tracking_url.trim();
        let body = NewShipment {
            lines: None,
            carrier: form.carrier.clone(),
            tracking_number: form.tracking_number.clone(),
            tracking_url: (!url.is_empty()).then(|| url.to_owned()),
            courier,
        };
        let origin = admin::origin(&session.actor, from);
        let (owner, order) = (tenant.clone(), id.clone());
        let result = db.write(move |tx| fulfilment::create(tx, &owner, &order, body, &origin, crate::now_unix())).await;
        match result {
            Ok(_) => return Ok(to_order(&slug, &id, "shipped")),
            Err(err) => file(&mut errors, err, &SHIP_FIELDS, "ship")?,
        }
    }
    let forms = ActionForms {
        errors,
        carrier: form.carrier,
        tracking_number: form.tracking_number,
        tracking_url: form.tracking_url,
        courier_name: form.courier_name,
        courier_phone: form.courier_phone,
        ..Default::default()
    };
    render_order(&app, &session, session.chrome("tenants"), &tenant, &db, id, forms).await
}

#[derive(Deserialize)]
struct TrackForm {
    #[serde(default)]
    status: String,
    #[serde(default)]
    note: String,
}

/// Adds a tracking event to one shipment of the order.
async fn track(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id, sid)): Path<(String, String, String)>,
    CsrfForm(form): CsrfForm<TrackForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let update = TrackingUpdate {
        status: form.status.trim().to_owned(),
        note: Some(form.note.trim().to_owned()).filter(|n| !n.is_empty()),
    };
    let origin = admin::origin(&session.actor, from);
    let (owner, order, shipment) = (tenant.clone(), id.clone(), sid.clone());
    let result =
        db.write(move |tx| fulfilment::track(tx, &owner, &order, &shipment, update, &origin, crate::now_unix())).await;
    let mut errors = FieldErrors::new();
    match result {
        Ok(_) => return Ok(to_order(&slug, &id, "tracked")),
        Err(err) => file(&mut errors, err, &[], &format!("track-{sid}"))?,
    }
    let forms = ActionForms {
        errors,
        track_shipment: sid,
        track_status: form.status,
        track_note: form.note,
        ..Default::default()
    };
    render_order(&app, &session, session.chrome("tenants"), &tenant, &db, id, forms).await
}

#[derive(Deserialize)]
struct RefundForm {
    #[serde(default)]
    amount: String,
    /// A ticked checkbox sends `on`.
    #[serde(default)]
    restock: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// Refunds part or all of what is left of the order, with `confirm=yes`.
async fn refund(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<RefundForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    if form.confirm != "yes" {
        return Ok(to_order(&slug, &id, "unconfirmed"));
    }
    let order = id.clone();
    let found = db::with_conn(&db.pool, move |conn| checkout::find(conn, &order)).await?;
    let (currency, left) = (found.currency, found.total - found.refunded_total);
    let mut errors = FieldErrors::new();
    let restock = !form.restock.is_empty();
    match money::parse_decimal(&form.amount, &currency) {
        Ok(minor) if (1..=left).contains(&minor) => {
            let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
            let body = RefundRequest { amount: minor, restock, reason };
            let origin = admin::origin(&session.actor, from);
            match refunds::refund(&app, &tenant, &db, id.clone(), body, origin).await {
                Ok(()) => return Ok(to_order(&slug, &id, "refunded")),
                Err(err) => {
                    let fields = [("amount", "amount", "the amount"), ("reason", "reason", "the reason")];
                    file(&mut errors, err, &fields, "refund")?;
                }
            }
        }
        Ok(_) if left <= 0 => errors.add("refund", "nothing is left of this order's total to refund"),
        Ok(_) => errors.add(
            "amount",
            format!(
                "the amount must be {} to {} (what is left of the total)",
                money::to_decimal(1, &currency),
                money::format(left, &currency)
            ),
        ),
        Err(_) => errors
            .add("amount", format!("enter an amount in {currency} like {}", money::to_decimal(left.max(1), &currency))),
    }
    let forms = ActionForms { errors, amount: form.amount, restock, reason: form.reason, ..Default::default() };
    render_order(&app, &session, session.chrome("tenants"), &tenant, &db, id, forms).await
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

/// Cancels the order, with `confirm=yes`; a paid order's total goes back to the buyer first.
async fn cancel(
    State(app): State<AppState>,
    session: UiSession,
    from: RequestOrigin,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    if form.confirm != "yes" {
        return Ok(to_order(&slug, &id, "unconfirmed"));
    }
    let origin = admin::origin(&session.actor, from);
    let mut errors = FieldErrors::new();
    match refunds::cancel(&app, &tenant, &db, id.clone(), origin).await {
        Ok(()) => return Ok(to_order(&slug, &id, "cancelled")),
        Err(err) => file(&mut errors, err, &[], "cancel")?,
    }
    let forms = ActionForms { errors, ..Default::default() };
    render_order(&app, &session, session.chrome("tenants"), &tenant, &db, id, forms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_land_on_their_fields() {
        let mut errors = FieldErrors::new();
        file(&mut errors, Error::validation("tracking_url must be an https URL"), &SHIP_FIELDS, "ship").unwrap();
        file(
            &mut errors,
            Error::InvalidTransition("an order that is cancelled cannot be shipped".into()),
            &SHIP_FIELDS,
            "ship",
        )
        .unwrap();
        assert_eq!(errors.get("tracking_url"), Some("The tracking URL must be an https URL."));
        assert_eq!(errors.get("ship"), Some("An order that is cancelled cannot be shipped."));
        assert!(file(&mut errors, Error::NotFound("order"), &SHIP_FIELDS, "ship").is_err(), "not the form's fault");
    }

    #[test]
    fn timeline_lines() {
        let event = |kind: &str, detail: Value| OrderEvent {
            id: 1,
            kind: kind.into(),
            from: None,
            to: None,
            detail,
            actor: "system".into(),
            at: 0,
        };
        let refund = event(
            "refund",
            serde_json::json!({"amount": 1250, "restocked_units": 2, "reason": "damaged", "provider_ref": null}),
        );
        assert_eq!(event_summary(&refund, "USD"), "Refunded 12.50 USD; 2 units back in stock; reason: damaged");
        let paid = event("status_changed", serde_json::json!({"reference": "BANK-1"}));
        assert_eq!(event_summary(&paid, "USD"), "reference BANK-1");
        let shipped = event(
            "shipment_updated",
            serde_json::json!({"status": "created", "carrier": "DHL", "tracking_number": "JD1"}),
        );
        assert_eq!(event_summary(&shipped, "USD"), "Shipped with DHL (JD1)");
        let admins = HashMap::from([("operator:o1".to_owned(), "ops@example.com".to_owned())]);
        assert_eq!(actor_label("operator:o1", &admins), "ops@example.com");
        assert_eq!(actor_label("operator:gone", &admins), "a deleted admin");
        assert_eq!(actor_label("provider:stripe", &admins), "Payment provider (stripe)");
        assert_eq!(status_class("partially_refunded"), "suspended");
    }
}
