//! The event catalogue: every domain event a webhook can subscribe to, with its payload type.
//!
//! An event is serialised as `{"type": "<name>", "data": {…}}` and wrapped into the delivered body
//! `{"id","type","tenant","created_at","data"}` by `email::outbox::enqueue_event`. A feature that emits a new event
//! adds a variant here and a line to `CATALOGUE`; nothing else needs to change.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// Sent by `POST …/webhooks/{id}/ping` to that one webhook.
    #[serde(rename = "webhook.ping")]
    WebhookPing { webhook_id: String },
    /// An email reached `dead` after its last attempt.
    #[serde(rename = "email.dead")]
    EmailDead { message_id: String, template: String, to: String, attempts: u32, last_error: String },
    #[serde(rename = "user.created")]
    UserCreated { user_id: String, email: String },
    #[serde(rename = "user.login")]
    UserLogin { user_id: String, ip: String, client_id: Option<String> },
    #[serde(rename = "user.login_failed")]
    UserLoginFailed { email: String, ip: String, reason: String },
    #[serde(rename = "user.password_changed")]
    UserPasswordChanged { user_id: String },
    #[serde(rename = "user.disabled")]
    UserDisabled { user_id: String },
    #[serde(rename = "user.deleted")]
    UserDeleted { user_id: String },
    #[serde(rename = "product.created")]
    ProductCreated { product_id: String, handle: String },
    #[serde(rename = "product.updated")]
    ProductUpdated { product_id: String, handle: String },
    #[serde(rename = "product.deleted")]
    ProductDeleted { product_id: String, handle: String },
    /// A tracked variant's stock fell to the store's `low_stock_threshold` or below.
    #[serde(rename = "inventory.low")]
    InventoryLow { sku: String, variant_id: String, product_id: String, stock: i64, threshold: i64 },
    /// A checkout made an order (`pending_payment`).
    #[serde(rename = "order.created")]
    OrderCreated { order_id: String, number: String, email: String, currency: String, total: i64 },
    /// An order moved from one status to another.
    #[serde(rename = "order.status_changed")]
    OrderStatusChanged { order_id: String, number: String, from: String, to: String },
    /// Some or all of an order's lines were shipped.
    #[serde(rename = "shipment.created")]
    ShipmentCreated {
        order_id: String,
        number: String,
        shipment_id: String,
        carrier: String,
        tracking_number: String,
        tracking_url: Option<String>,
    },
    /// A shipment's tracking status changed (admin or carrier webhook).
    #[serde(rename = "shipment.updated")]
    ShipmentUpdated { order_id: String, number: String, shipment_id: String, status: String },
}

/// Every event type and what it means: shown by the admin API and UI, and the set subscriptions are checked
/// against. `*` subscribes to every event.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("webhook.ping", "a test delivery asked for from the admin API or UI"),
    ("email.dead", "an email was given up after its last delivery attempt"),
    ("user.created", "a user registered or was created by an admin"),
    ("user.login", "a user signed in"),
    ("user.login_failed", "a sign-in failed (wrong password, locked, disabled)"),
    ("user.password_changed", "a user's password was changed or reset"),
    ("user.disabled", "a user was disabled"),
    ("user.deleted", "a user was deleted"),
    ("product.created", "a product was created (admin API, UI or CSV import)"),
    ("product.updated", "a product or its variants changed"),
    ("product.deleted", "a product was deleted"),
    ("inventory.low", "a tracked variant's stock fell to the store's low-stock threshold or below"),
    ("order.created", "a checkout made an order (pending payment)"),
    ("order.status_changed", "an order was paid, cancelled or changed status otherwise"),
    ("shipment.created", "some or all of an order's lines were shipped"),
    ("shipment.updated", "a shipment's tracking status changed"),
];

impl Event {
    /// The event's type, e.g. `user.created`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::WebhookPing { .. } => "webhook.ping",
            Event::EmailDead { .. } => "email.dead",
            Event::UserCreated { .. } => "user.created",
            Event::UserLogin { .. } => "user.login",
            Event::UserLoginFailed { .. } => "user.login_failed",
            Event::UserPasswordChanged { .. } => "user.password_changed",
            Event::UserDisabled { .. } => "user.disabled",
            Event::UserDeleted { .. } => "user.deleted",
            Event::ProductCreated { .. } => "product.created",
            Event::ProductUpdated { .. } => "product.updated",
            Event::ProductDeleted { .. } => "product.deleted",
            Event::InventoryLow { .. } => "inventory.low",
            Event::OrderCreated { .. } => "order.created",
            Event::OrderStatusChanged { .. } => "order.status_changed",
            Event::ShipmentCreated { .. } => "shipment.created",
            Event::ShipmentUpdated { .. } => "shipment.updated",
        }
    }

    /// The `data` object of the delivered body.
    pub fn data(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value.get_mut("data").map(serde_json::Value::take).unwrap_or_default()
    }
}

/// Whether `name` is an event type a webhook may subscribe to.
pub fn is_known(name: &str) -> bool {
    name == "*" || CATALOGUE.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_catalogue_and_serde() {
        let events = [
            Event::WebhookPing { webhook_id: "w".into() },
            Event::EmailDead {
                message_id: "m".into(),
                template: "test".into(),
                to: "a@b.c".into(),
                attempts: 3,
                last_error: "x".into(),
            },
            Event::UserCreated { user_id: "u".into(), email: "a@b.c".into() },
            Event::UserLogin { user_id: "u".into(), ip: "1.2.3.4".into(), client_id: None },
            Event::UserLoginFailed { email: "a@b.c".into(), ip: "1.2.3.4".into(), reason: "password".into() },
            Event::UserPasswordChanged { user_id: "u".into() },
            Event::UserDisabled { user_id: "u".into() },
            Event::UserDeleted { user_id: "u".into() },
            Event::ProductCreated { product_id: "p".into(), handle: "h".into() },
            Event::ProductUpdated { product_id: "p".into(), handle: "h".into() },
            Event::ProductDeleted { product_id: "p".into(), handle: "h".into() },
            Event::InventoryLow {
                sku: "s".into(),
                variant_id: "v".into(),
                product_id: "p".into(),
                stock: 1,
                threshold: 5,
            },
            Event::OrderCreated {
                order_id: "o".into(),
                number: "#1001".into(),
                email: "a@b.c".into(),
                currency: "EUR".into(),
                total: 100,
            },
            Event::OrderStatusChanged {
                order_id: "o".into(),
                number: "#1001".into(),
                from: "a".into(),
                to: "b".into(),
            },
            Event::ShipmentCreated {
                order_id: "o".into(),
                number: "#1001".into(),
                shipment_id: "s".into(),
                carrier: "DHL".into(),
                tracking_number: "1Z".into(),
                tracking_url: None,
            },
            Event::ShipmentUpdated {
                order_id: "o".into(),
                number: "#1001".into(),
                shipment_id: "s".into(),
                status: "in_transit".into(),
            },
        ];
        assert_eq!(events.len(), CATALOGUE.len());
        for event in &events {
            let json = serde_json::to_value(event).unwrap();
            assert_eq!(json["type"], event.name());
            assert!(is_known(event.name()));
            assert!(event.data().is_object());
        }
        assert!(!is_known("user.nope"));
    }
}
