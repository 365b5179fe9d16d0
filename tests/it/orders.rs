//! Orders after checkout: shipments with tracking (admin and a signed carrier webhook) move an order to fulfilled
//! and delivered, refunds with and without restock, Stripe end to end against a Stripe-compatible process,
//! unpaid orders expiring with no visitor and across a restart, the customer's orders and address book, and the
//! live status stream read by a third-party SSE client.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::checkout::{address, cart, checkout, count, ok, request, store, tenant_db};
use crate::support::{
    PASSWORD, SinkOptions, SmtpSink, TestApp, create_user, eventually, require_python_module, spawn_in,
};

const ORDERS: &str = "/admin/api/v1/tenants/shop/orders";

/// A `manual` order of `lines` for `key`, answered by the checkout.
async fn order(app: &TestApp, client: &Client, lines: &[(&str, u32)], total: i64, key: &str) -> Value {
    let id = cart(app, client, "shop", lines).await;
    let (status, body) = checkout(app, client, &id, key, &request(total)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

fn stock(db: &rusqlite::Connection, sku: &str) -> i64 {
    db.query_row("SELECT stock FROM variants WHERE sku = ?1", [sku], |r| r.get(0)).unwrap()
}

/// `t=…,v1=…` over `body` with `secret`, as our webhooks and Stripe sign.
fn sign(secret: &str, body: &str) -> String {
    gatehouse::webhooks::signature(secret.as_bytes(), gatehouse::now_unix(), body.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipments_tracking_and_refunds_move_the_order_along() {
    let app = store(&["MUG", "CAP"], 10).await;
    // Mail goes to a real SMTP server; a webhook subscribes to the order and shipment events.
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let (status, _) =
        app.json(Method::PUT, "/admin/api/v1/tenants/shop/smtp", Some(sink.settings("shop@shop.test"))).await;
    assert_eq!(status, StatusCode::OK);
    let events = ["order.created", "order.status_changed", "shipment.created", "shipment.updated"];
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": events});
    ok(&app, Method::POST, "/admin/api/v1/tenants/shop/webhooks", hook).await;
    let client = Client::new();
    let placed = order(&app, &client, &[("MUG", 2), ("CAP", 1)], 3000, "ship-1").await;
    let id = placed["order"]["id"].as_str().unwrap().to_owned();
    let token = placed["order_token"].as_str().unwrap().to_owned();
    let db = tenant_db(&app);

    // Nothing ships before it is paid.
    let ship = json!({"lines": [{"sku": "MUG", "quantity": 2}], "carrier": "DHL", "tracking_number": "JD0001",
                      "tracking_url": "https://track.example/JD0001", "courier": {"name": "Sam", "phone": "+44 1"}});
    let (status, body) = app.json(Method::POST, &format!("{ORDERS}/{id}/shipments"), Some(ship.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_transition")));
    ok(&app, Method::POST, &format!("{ORDERS}/{id}/mark-paid"), json!({"reference": "BANK-1"})).await;

    // The mugs first: still paid. More than is left of a line is refused, naming it.
    let (status, first) = app.json(Method::POST, &format!("{ORDERS}/{id}/shipments"), Some(ship)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["lines"], json!([{"sku": "MUG", "quantity": 2}]));
    assert_eq!(first["courier"]["name"], "Sam");
    let too_many = json!({"lines": [{"sku": "CAP", "quantity": 2}], "carrier": "DHL", "tracking_number": "JD0002"});
    let (status, body) = app.json(Method::POST, &format!("{ORDERS}/{id}/shipments"), Some(too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("lines[0].quantity"), "{body}");
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{id}"), None).await;
    assert_eq!(detail["status"], "paid");

    // The rest (no lines given: everything left): fulfilled, and the status mail links the tracking page.
    let rest = json!({"carrier": "UPS", "tracking_number": "1Z999", "tracking_url": "https://ups.example/1Z999"});
    let (status, second) = app.json(Method::POST, &format!("{ORDERS}/{id}/shipments"), Some(rest)).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["lines"], json!([{"sku": "CAP", "quantity": 1}]));
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{id}"), None).await;
    assert_eq!(detail["status"], "fulfilled", "{detail}");
    assert_eq!(detail["shipments"].as_array().unwrap().len(), 2);
    let (status, body) = app
        .json(Method::POST, &format!("{ORDERS}/{id}/shipments"), Some(json!({"carrier": "x", "tracking_number": "y"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing is left to ship: {body}");
    // The confirmation (with the order's link and token) and the status mails reached the SMTP server; the
    // fulfilled one links the tracking page.
    app.run_outbox().await;
    let mails = sink.wait_for(3, Duration::from_secs(20)).await;
    let subject = |m: &&Value, part: &str| m["subject"].as_str().unwrap_or_default().contains(part);
    let confirmation = mails.iter().find(|m| subject(m, "confirmed")).expect("the confirmation");
    assert!(confirmation["text"].as_str().unwrap().contains(&format!("orders/{id}?token={token}")), "{confirmation}");
    let fulfilled = mails.iter().find(|m| subject(m, "fulfilled")).expect("the fulfilled mail");
    assert!(
        fulfilled["text"].as_str().unwrap().contains("Track your parcel: https://ups.example/1Z999"),
        "{fulfilled}"
    );
    assert!(fulfilled["to"].as_str().unwrap().contains("ada@example.com"), "{fulfilled}");
    // The webhook bodies name the order and the shipment.
    let bodies: Vec<String> = {
        let mut stmt = db.prepare("SELECT payload FROM outbox WHERE kind = 'webhook' ORDER BY created_at").unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let shipped = bodies.iter().find(|p| p.contains("shipment.created") && p.contains("1Z999"));
    let shipped = shipped.expect("a shipment.created body");
    assert!(shipped.contains(&id) && shipped.contains("UPS") && shipped.contains("#1001"), "{shipped}");
    assert!(bodies.iter().any(|p| p.contains("order.status_changed") && p.contains("fulfilled")), "{bodies:?}");

    // Tracking by the admin and by a signed carrier webhook; the last delivery makes the order delivered.
    let sid1 = first["id"].as_str().unwrap();
    let (status, tracked) = app
        .json(
            Method::POST,
            &format!("{ORDERS}/{id}/shipments/{sid1}/events"),
            Some(json!({"status": "delivered", "note": "left with neighbour"})),
        )
        .await;
    assert_eq!((status, tracked["status"].as_str()), (StatusCode::OK, Some("delivered")), "{tracked}");
    let (status, body) = app
        .json(Method::POST, &format!("{ORDERS}/{id}/shipments/{sid1}/events"), Some(json!({"status": "lost"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, carrier) = app.json(Method::PUT, "/admin/api/v1/tenants/shop/shipping/webhook", None).await;
    let secret = carrier["secret"].as_str().unwrap();
    let hook = app.url("/t/shop/shipping/webhook");
    let update = json!({"event_id": "ups-1", "tracking_number": "1Z999", "status": "delivered"}).to_string();
    let r = client
        .post(&hook)
        .header("gatehouse-signature", sign("whsec_wrong", &update))
        .header("content-type", "application/json")
        .body(update.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a bad signature changes nothing");
    assert_eq!(
        count(&db, &format!("SELECT COUNT(*) FROM shipments WHERE order_id = '{id}' AND status = 'delivered'")),
        1
    );
    let r = client
        .post(&hook)
        .header("gatehouse-signature", sign(secret, &update))
        .header("content-type", "application/json")
        .body(update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{id}"), None).await;
    assert_eq!(detail["status"], "delivered", "{detail}");
    // The same update again (a replay) is answered and applied once.
    let events_before = count(&db, "SELECT COUNT(*) FROM shipment_events");
    let replay = json!({"event_id": "ups-1", "tracking_number": "1Z999", "status": "in_transit"}).to_string();
    let r = client
        .post(&hook)
        .header("gatehouse-signature", sign(secret, &replay))
        .header("content-type", "application/json")
        .body(replay)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM shipment_events"),
        events_before,
        "a replayed event id changes nothing"
    );

    // Two refunds of the whole total at once: one is made, the other finds nothing left.
    let path = app.url(&format!("{ORDERS}/{id}/refunds"));
    let (a, b) = tokio::join!(
        app.admin(Method::POST, &format!("{ORDERS}/{id}/refunds")).json(&json!({"amount": 3000})).send(),
        client.post(&path).bearer_auth(crate::support::TOKEN).json(&json!({"amount": 3000})).send()
    );
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort_unstable();
    // The other finds nothing left (400) or the order refunded already (409), depending on when it looked.
    assert!(statuses[0] == 200 && matches!(statuses[1], 400 | 409), "never more than the total: {statuses:?}");
    assert_eq!(count(&db, &format!("SELECT SUM(amount) FROM refunds WHERE order_id = '{id}'")), 3000);
    let total_refunded: i64 =
        db.query_row("SELECT refunded_total FROM orders WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(total_refunded, 3000);
    // A fresh order for the partial refunds.
    let placed = order(&app, &client, &[("MUG", 2), ("CAP", 1)], 3000, "ship-3").await;
    let id = placed["order"]["id"].as_str().unwrap().to_owned();
    ok(&app, Method::POST, &format!("{ORDERS}/{id}/mark-paid"), json!({"reference": "BANK-3"})).await;
    ok(&app, Method::POST, &format!("{ORDERS}/{id}/shipments"), json!({"carrier": "DHL", "tracking_number": "X3"}))
        .await;

    // A partial refund without restock, then the rest with restock: every unit the order held is back.
    assert_eq!((stock(&db, "MUG"), stock(&db, "CAP")), (6, 8));
    let (status, body) = app
        .json(Method::POST, &format!("{ORDERS}/{id}/refunds"), Some(json!({"amount": 5000, "restock": false})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "more than the total: {body}");
    let refunded =
        ok(&app, Method::POST, &format!("{ORDERS}/{id}/refunds"), json!({"amount": 1000, "reason": "dent"})).await;
    assert_eq!(
        (refunded["status"].as_str(), refunded["refunded_total"].as_i64()),
        (Some("partially_refunded"), Some(1000))
    );
    assert_eq!((stock(&db, "MUG"), stock(&db, "CAP")), (6, 8), "no restock asked");
    let refunded =
        ok(&app, Method::POST, &format!("{ORDERS}/{id}/refunds"), json!({"amount": 2000, "restock": true})).await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert_eq!((stock(&db, "MUG"), stock(&db, "CAP")), (8, 9));
    let (status, _) =
        app.json(Method::POST, &format!("{ORDERS}/{id}/refunds"), Some(json!({"amount": 1, "restock": true}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "a refunded order is done");
    let kinds: Vec<String> = {
        let mut stmt = db.prepare("SELECT kind FROM order_events WHERE order_id = ?1 ORDER BY id").unwrap();
        stmt.query_map([&id], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(kinds.iter().filter(|k| *k == "refund").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "shipment_updated").count(), 1, "{kinds:?}");

    // A paid order cancelled by the admin: refunded in full (recorded), stock and the order's units back.
    let placed = order(&app, &client, &[("MUG", 1)], 1000, "ship-2").await;
    let second_id = placed["order"]["id"].as_str().unwrap().to_owned();
    ok(&app, Method::POST, &format!("{ORDERS}/{second_id}/mark-paid"), json!({"reference": "CASH"})).await;
    let cancelled = ok(&app, Method::POST, &format!("{ORDERS}/{second_id}/cancel"), json!({})).await;
    assert_eq!((cancelled["status"].as_str(), cancelled["refunded_total"].as_i64()), (Some("cancelled"), Some(1000)));
    assert_eq!(stock(&db, "MUG"), 8);

    // Another tenant's admin reaches none of it; shipments of other tenants' orders are not found.
    app.create_tenant("other").await;
    let other = app.create_token("other admin", "tenant:other").await;
    let r = client
        .post(app.url(&format!("{ORDERS}/{id}/refunds")))
        .bearer_auth(&other)
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .post(app.url(&format!("/admin/api/v1/tenants/other/orders/{id}/shipments")))
        .bearer_auth(&other)
        .json(&json!({"carrier": "x", "tracking_number": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

/// The fake Stripe process (`fake_stripe.py`) and its base URL.
struct FakeStripe {
    child: Child,
    base: String,
    client: Client,
}

impl FakeStripe {
    fn start() -> FakeStripe {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fake_stripe.py");
        let mut child = Command::new("python3").arg(script).stdout(Stdio::piped()).spawn().expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").expect("the fake says its port").to_owned();
        FakeStripe { child, base: format!("http://127.0.0.1:{port}"), client: Client::new() }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = self.client.post(format!("{}/_control/{path}", self.base)).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "fake {path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn requests(&self) -> Vec<Value> {
        let r = self.client.get(format!("{}/_control/requests", self.base)).send().await.unwrap();
        r.json::<Vec<Value>>().await.unwrap()
    }

    /// Delivers every queued event; the status each delivery got.
    async fn deliver(&self, signature: &str, repeat: u32) -> Vec<u16> {
        let answer = self.control("deliver", json!({"signature": signature, "repeat": repeat})).await;
        answer["deliveries"].as_array().unwrap().iter().map(|d| d["status"].as_u64().unwrap() as u16).collect()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stripe_request(total: i64) -> Value {
    let mut body = request(total);
    body["payment_method"] = json!("stripe");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_payments_end_to_end_against_a_stripe_compatible_process() {
    let stripe = FakeStripe::start();
    let stripe_base = stripe.base.clone();
    let app = crate::support::spawn_with(
        move |c| {
            c.store_per_minute = 100_000;
            c.stripe_api_base = stripe_base;
        },
        axum::Router::new(),
    )
    .await;
    app.create_tenant("shop").await;
    ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/shop/products",
        json!({"title": "Lamp", "handle": "lamp", "status": "active", "variants": [{"sku": "LAMP", "price": 2500, "stock": 5}]}),
    )
    .await;
    let client = Client::new();
    let db = tenant_db(&app);

    // Not set up: stripe is refused and nothing is written.
    let id = cart(&app, &client, "shop", &[("LAMP", 1)]).await;
    let (status, body) = checkout(&app, &client, &id, "s-0", &stripe_request(2500)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 0);

    // Keys: checked, sealed, never shown again.
    let keys = json!({"secret_key": "sk_test_abc", "webhook_secret": "whsec_test", "publishable_key": "pk_test_abc"});
    let (status, body) = app
        .json(
            Method::PUT,
            "/admin/api/v1/tenants/shop/payments/stripe",
            Some(json!({"secret_key": "nope",
            "webhook_secret": "whsec_test", "publishable_key": "pk_test_abc"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let view = ok(&app, Method::PUT, "/admin/api/v1/tenants/shop/payments/stripe", keys).await;
    assert_eq!((view["configured"].as_bool(), view["publishable_key"].as_str()), (Some(true), Some("pk_test_abc")));
    assert!(!view.to_string().contains("sk_test_abc") && !view.to_string().contains("whsec_test"), "{view}");
    let hook = view["webhook_url"].as_str().unwrap().to_owned();
    assert_eq!(hook, app.url("/t/shop/payments/stripe/webhook"));
    stripe.control("config", json!({"webhook_url": hook, "webhook_secret": "whsec_test"})).await;

    // Checkout: the order is committed, the intent made with the order's amount, currency and id.
    let (status, placed) = checkout(&app, &client, &id, "s-1", &stripe_request(2500)).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["payment"]["status"], "requires_payment", "{placed}");
    let secret = placed["payment"]["client_secret"].as_str().unwrap().to_owned();
    let order_id = placed["order"]["id"].as_str().unwrap().to_owned();
    let intents: Vec<Value> =
        stripe.requests().await.into_iter().filter(|r| r["path"] == "/v1/payment_intents").collect();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["form"]["amount"], "2500");
    assert_eq!(intents[0]["form"]["currency"], "usd", "the store's currency");
    assert_eq!(intents[0]["form"]["metadata[order_id]"], order_id.as_str());
    let intent = secret.split("_secret_").next().unwrap().to_owned();
    // The same request again answers the same, payment included, without a second intent.
    let (status, again) = checkout(&app, &client, &id, "s-1", &stripe_request(2500)).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &placed));

    // Signed `succeeded`, delivered twice: paid once.
    stripe.control(&format!("intents/{intent}/succeed"), json!({})).await;
    assert_eq!(stripe.deliver("bad", 1).await, [400], "a bad signature is refused");
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{order_id}"), None).await;
    assert_eq!(detail["status"], "pending_payment", "nothing changed");
    stripe.control(&format!("intents/{intent}/succeed"), json!({})).await;
    assert_eq!(stripe.deliver("stale", 1).await, [400], "an old signature is refused");
    let succeeded = stripe.control(&format!("intents/{intent}/succeed"), json!({})).await;
    assert_eq!(stripe.deliver("multi", 2).await, [200, 200], "one of several v1 matches; the second is a duplicate");
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{order_id}"), None).await;
    assert_eq!((detail["status"].as_str(), detail["payment_status"].as_str()), (Some("paid"), Some("succeeded")));
    let paid_events = detail["events"].as_array().unwrap().iter().filter(|e| e["to"] == "paid").count();
    assert_eq!(paid_events, 1, "paid once: {detail}");
    // The same event again, late and freshly signed: answered 200 as a duplicate, nothing changes.
    let late = stripe.control("redeliver", json!({"event_id": succeeded["event_id"], "signature": "good"})).await;
    assert_eq!(late["deliveries"][0]["status"], 200, "{late}");
    assert!(late["deliveries"][0]["body"].as_str().unwrap().contains("duplicate"), "{late}");

    // Amount mismatch: audited, not paid.
    let id2 = cart(&app, &client, "shop", &[("LAMP", 1)]).await;
    let (_, second) = checkout(&app, &client, &id2, "s-2", &stripe_request(2500)).await;
    let second_id = second["order"]["id"].as_str().unwrap().to_owned();
    let intent2 = second["payment"]["client_secret"].as_str().unwrap().split("_secret_").next().unwrap().to_owned();
    stripe.control(&format!("intents/{intent2}/succeed"), json!({"amount": 100})).await;
    assert_eq!(stripe.deliver("good", 1).await, [200]);
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{second_id}"), None).await;
    assert_eq!(detail["status"], "pending_payment", "{detail}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_log WHERE type = 'payment_event' AND detail LIKE '%amount_mismatch%'"),
        1
    );

    // An unknown event type and an unknown order: 200, ignored, audited.
    let unknown_type =
        json!({"id": "evt_x1", "object": "event", "type": "customer.created", "data": {"object": {"id": "cus_1"}}});
    let unknown_order = json!({"id": "evt_x2", "object": "event", "type": "payment_intent.succeeded",
                               "data": {"object": {"id": "pi_nobody", "amount": 5, "currency": "eur", "metadata": {}}}});
    stripe.control("events", json!({"event": unknown_type})).await;
    stripe.control("events", json!({"event": unknown_order})).await;
    assert_eq!(stripe.deliver("good", 1).await, [200, 200]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_log WHERE type = 'payment_event' AND detail LIKE '%ignored_type%'"),
        1
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM audit_log WHERE type = 'payment_event' AND detail LIKE '%unknown_order%'"),
        1
    );

    // A refund through Stripe with restock; Stripe's charge.refunded for it changes nothing more.
    assert_eq!(stock(&db, "LAMP"), 3);
    let refunded =
        ok(&app, Method::POST, &format!("{ORDERS}/{order_id}/refunds"), json!({"amount": 2500, "restock": true})).await;
    assert_eq!(refunded["status"], "refunded", "{refunded}");
    assert_eq!(stock(&db, "LAMP"), 4);
    let refunds: Vec<Value> = stripe.requests().await.into_iter().filter(|r| r["path"] == "/v1/refunds").collect();
    assert_eq!((refunds.len(), refunds[0]["form"]["payment_intent"].as_str()), (1, Some(intent.as_str())));
    assert_eq!(stripe.deliver("good", 1).await, [200], "charge.refunded");
    assert_eq!(count(&db, &format!("SELECT COUNT(*) FROM refunds WHERE order_id = '{order_id}'")), 1);
    assert_eq!(count(&db, &format!("SELECT refunded_total FROM orders WHERE id = '{order_id}'")), 2500);

    // A refund while Stripe does not answer: 502 and the refund is held (nothing counted); the next refund sends
    // it again under its own key before its own, so each is made once.
    let id4 = cart(&app, &client, "shop", &[("LAMP", 1)]).await;
    let (_, fourth) = checkout(&app, &client, &id4, "s-4", &stripe_request(2500)).await;
    let fourth_id = fourth["order"]["id"].as_str().unwrap().to_owned();
    let intent4 = fourth["payment"]["client_secret"].as_str().unwrap().split("_secret_").next().unwrap().to_owned();
    stripe.control(&format!("intents/{intent4}/succeed"), json!({})).await;
    assert_eq!(stripe.deliver("good", 1).await, [200]);
    stripe.control("down", json!({"down": true})).await;
    let (status, body) =
        app.json(Method::POST, &format!("{ORDERS}/{fourth_id}/refunds"), Some(json!({"amount": 1000}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_GATEWAY, Some("payment_unavailable")));
    let held = format!("SELECT COUNT(*) FROM refunds WHERE order_id = '{fourth_id}' AND state = 'pending'");
    assert_eq!(count(&db, &held), 1);
    assert_eq!(count(&db, &format!("SELECT refunded_total FROM orders WHERE id = '{fourth_id}'")), 0);
    stripe.control("down", json!({"down": false})).await;
    let after = ok(&app, Method::POST, &format!("{ORDERS}/{fourth_id}/refunds"), json!({"amount": 500})).await;
    assert_eq!((after["refunded_total"].as_i64(), after["status"].as_str()), (Some(1500), Some("partially_refunded")));
    assert_eq!(count(&db, &held), 0);
    let sent: Vec<Value> = stripe.requests().await.into_iter().filter(|r| r["path"] == "/v1/refunds").collect();
    let first_key = sent.iter().rev().nth(2).unwrap()["idempotency_key"].clone();
    assert_eq!(sent.iter().filter(|r| r["idempotency_key"] == first_key).count(), 2, "the held refund, sent again");
    stripe.deliver("good", 1).await;

    // Stripe down: the order is still taken (payment unavailable), and the buyer's retry gets the intent later.
    stripe.control("down", json!({"down": true})).await;
    let id3 = cart(&app, &client, "shop", &[("LAMP", 1)]).await;
    let (status, third) = checkout(&app, &client, &id3, "s-3", &stripe_request(2500)).await;
    assert_eq!((status, third["payment"]["status"].as_str()), (StatusCode::CREATED, Some("unavailable")), "{third}");
    stripe.control("down", json!({"down": false})).await;
    let (third_id, token) = (third["order"]["id"].as_str().unwrap(), third["order_token"].as_str().unwrap());
    let r = client.post(app.url(&format!("/t/shop/api/v1/orders/{third_id}/payment"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "only the buyer may ask");
    let r =
        client.post(app.url(&format!("/t/shop/api/v1/orders/{third_id}/payment?token={token}"))).send().await.unwrap();
    let payment: Value = r.json().await.unwrap();
    assert_eq!(payment["status"], "requires_payment", "{payment}");
    assert!(payment["client_secret"].as_str().is_some());

    // The buyer cancels it: the PaymentIntent is cancelled at Stripe, so its client secret cannot pay.
    let r = client
        .post(app.url(&format!("/t/shop/api/v1/orders/{third_id}/cancel?token={token}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cancelled_intent = eventually(Duration::from_secs(10), "the intent is cancelled at Stripe", || async {
        let calls = stripe.requests().await;
        calls.into_iter().find(|r| r["path"].as_str().unwrap().ends_with("/cancel"))
    })
    .await;
    assert!(cancelled_intent["path"].as_str().unwrap().starts_with("/v1/payment_intents/pi_"), "{cancelled_intent}");

    // Other tenants: another tenant's admin cannot read or set these keys.
    app.create_tenant("other").await;
    let other = app.create_token("other admin", "tenant:other").await;
    let r = client.get(app.url("/admin/api/v1/tenants/shop/payments/stripe")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .post(app.url("/t/other/payments/stripe/webhook"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a tenant without Stripe has no webhook");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpaid_orders_expire_without_visitors_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |c: &mut gatehouse::config::Config| c.store_per_minute = 100_000;
    let app = spawn_in(dir.path(), tweak, axum::Router::new()).await.unwrap();
    app.create_tenant("shop").await;
    ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/shop/products",
        json!({"title": "Kite", "handle": "kite", "status": "active", "variants": [{"sku": "KITE", "price": 1000, "stock": 3}]}),
    )
    .await;
    let client = Client::new();
    let placed = order(&app, &client, &[("KITE", 2)], 2000, "exp-1").await;
    let id = placed["order"]["id"].as_str().unwrap().to_owned();
    app.stop().await;

    // While the server is down the order's time runs out; after the restart nobody visits the store.
    let db = rusqlite::Connection::open(dir.path().join("tenants/shop.db")).unwrap();
    assert_eq!(stock(&db, "KITE"), 1);
    db.execute("UPDATE orders SET expires_at = ?2 WHERE id = ?1", rusqlite::params![id, gatehouse::now_unix() - 1])
        .unwrap();
    let app = spawn_in(dir.path(), tweak, axum::Router::new()).await.unwrap();
    let status = eventually(Duration::from_secs(20), "the order expires", || {
        let (db, id) = (&db, &id);
        async move {
            let status: String = db.query_row("SELECT status FROM orders WHERE id = ?1", [id], |r| r.get(0)).unwrap();
            (status == "cancelled").then_some(status)
        }
    })
    .await;
    assert_eq!(status, "cancelled");
    assert_eq!(stock(&db, "KITE"), 3, "its units are back");
    let (_, detail) = app.json(Method::GET, &format!("{ORDERS}/{id}"), None).await;
    let last = detail["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["actor"].as_str(), last["detail"]["reason"].as_str()), (Some("system"), Some("unpaid in time")));
    app.stop().await;
}

/// Signs Ada in to the tenant's end-user API; the client holds her session cookie.
async fn ada(app: &TestApp) -> Client {
    create_user(app, "shop", "ada@example.com").await;
    let browser = crate::admin_ui::jar();
    let r = browser
        .post(app.url("/t/shop/api/v1/login"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_see_their_orders_cancel_unpaid_ones_and_keep_addresses() {
    let app = store(&["PEN"], 10).await;
    let browser = ada(&app).await;
    let guest = Client::new();
    // Two orders of Ada's (her cart, her cookie) and one of a guest's.
    let mut mine = Vec::new();
    for key in ["me-1", "me-2"] {
        let placed = order(&app, &browser, &[("PEN", 1)], 1000, key).await;
        mine.push(placed["order"]["id"].as_str().unwrap().to_owned());
    }
    let theirs = order(&app, &guest, &[("PEN", 1)], 1000, "guest-1").await;
    let r = browser.get(app.url("/t/shop/api/v1/me/orders?limit=1")).send().await.unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["items"][0]["id"], mine[1].as_str(), "newest first: {page}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let r = browser.get(app.url(&format!("/t/shop/api/v1/me/orders?cursor={cursor}"))).send().await.unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], mine[0].as_str());
    assert_eq!(guest.get(app.url("/t/shop/api/v1/me/orders")).send().await.unwrap().status(), 401);

    // Cancel: her own unpaid order; not the guest's; a paid one is the store's to cancel.
    let theirs_id = theirs["order"]["id"].as_str().unwrap();
    let r = browser
        .post(app.url(&format!("/t/shop/api/v1/orders/{theirs_id}/cancel")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = browser
        .post(app.url(&format!("/t/shop/api/v1/orders/{}/cancel", mine[0])))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "a form post (cross-site) cannot cancel: {}", r.status());
    let r = browser
        .post(app.url(&format!("/t/shop/api/v1/orders/{}/cancel", mine[0])))
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .unwrap();
    let cancelled: Value = r.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    ok(&app, Method::POST, &format!("{ORDERS}/{}/mark-paid", mine[1]), json!({"reference": "R"})).await;
    let r = browser
        .post(app.url(&format!("/t/shop/api/v1/orders/{}/cancel", mine[1])))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // The guest cancels theirs with the order token.
    let token = theirs["order_token"].as_str().unwrap();
    let r = guest
        .post(app.url(&format!("/t/shop/api/v1/orders/{theirs_id}/cancel?token={token}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stock(&tenant_db(&app), "PEN"), 9, "two cancelled, one paid");

    // The address book: the first is the default, a malformed one names the field, another user sees none.
    let saved = json!({"label": "Home", "address": address()});
    let r = browser.post(app.url("/t/shop/api/v1/me/addresses")).json(&saved).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let office = json!({"label": "Office", "address": {"name": "Ada", "line1": "2 Lab Rd", "city": "Cambridge",
                        "postal_code": "CB1", "country": "GB"}, "default": true});
    let r = browser.post(app.url("/t/shop/api/v1/me/addresses")).json(&office).send().await.unwrap();
    let book: Value = r.json().await.unwrap();
    assert_eq!(book["items"][0]["label"], "Office", "the new default comes first: {book}");
    assert_eq!(book["items"].as_array().unwrap().iter().filter(|a| a["default"] == true).count(), 1);
    let bad = json!({"address": {"name": "Ada", "line1": "x", "city": "y", "postal_code": "z", "country": "Britain"}});
    let r = browser.post(app.url("/t/shop/api/v1/me/addresses")).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("address.country"));
    let office_id = book["items"][0]["id"].as_str().unwrap().to_owned();
    let r = browser.delete(app.url(&format!("/t/shop/api/v1/me/addresses/{office_id}"))).send().await.unwrap();
    assert_eq!(r.status(), 403, "a cookie delete needs the CSRF header");
    let me: Value = browser.get(app.url("/t/shop/api/v1/me")).send().await.unwrap().json().await.unwrap();
    let r = browser
        .delete(app.url(&format!("/t/shop/api/v1/me/addresses/{office_id}")))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let book: Value = browser.get(app.url("/t/shop/api/v1/me/addresses")).send().await.unwrap().json().await.unwrap();
    assert_eq!(book["items"].as_array().unwrap().len(), 1);
    assert_eq!(book["items"][0]["default"], true, "the one left is the default");
    app.stop().await;
}

/// A running `sse_client.py` and its output lines.
pub(crate) struct SseClient {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl SseClient {
    pub(crate) fn start(url: &str, last_event_id: Option<&str>) -> SseClient {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/sse_client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(url)
            .arg(last_event_id.unwrap_or(""))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        SseClient { child, lines }
    }

    /// The next `n` lines (events, or the end marker), waiting up to 20 s for each.
    pub(crate) fn take(&self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.lines.recv_timeout(Duration::from_secs(20)).expect("an event line")).collect()
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_status_streams_resume_from_the_timeline_and_end_at_shutdown() {
    if !require_python_module("httpx_sse") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(
        dir.path(),
        |c| {
            c.store_per_minute = 100_000;
            c.shutdown_grace = Duration::from_secs(30);
        },
        axum::Router::new(),
    )
    .await
    .unwrap();
    app.create_tenant("shop").await;
    ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/shop/products",
        json!({"title": "Bell", "handle": "bell", "status": "active", "variants": [{"sku": "BELL", "price": 1000, "stock": 5}]}),
    )
    .await;
    let client = Client::new();
    let placed = order(&app, &client, &[("BELL", 1)], 1000, "live-1").await;
    let (id, token) = (placed["order"]["id"].as_str().unwrap(), placed["order_token"].as_str().unwrap());
    let url = app.url(&format!("/t/shop/api/v1/orders/{id}/events?token={token}"));

    // Without the token, or at another tenant: 404.
    let r = client.get(app.url(&format!("/t/shop/api/v1/orders/{id}/events"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    app.create_tenant("other").await;
    let r = client.get(app.url(&format!("/t/other/api/v1/orders/{id}/events?token={token}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let r = client.get(app.url("/t/shop/api/v1/stock/events?sku=NOPE")).send().await.unwrap();
    assert_eq!(r.status(), 404, "a SKU not on sale has no stream");
    let r = client
        .get(app.url(&format!("/t/shop/api/v1/orders/{id}/events?token={token}")))
        .header("last-event-id", "x")
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 400, "a Last-Event-ID that is no event id");

    // The timeline first, then each change as it happens, in order.
    let stream = SseClient::start(&url, None);
    let created = stream.take(1).remove(0);
    assert_eq!(created["event"], "created", "{created}");
    let stock_stream = SseClient::start(&app.url("/t/shop/api/v1/stock/events?sku=BELL"), None);
    let level = stock_stream.take(1).remove(0);
    assert_eq!(level["event"], "stock");
    assert_eq!(serde_json::from_str::<Value>(level["data"].as_str().unwrap()).unwrap()["in_stock"], true);
    ok(&app, Method::POST, &format!("{ORDERS}/{id}/mark-paid"), json!({"reference": "R1"})).await;
    ok(&app, Method::POST, &format!("{ORDERS}/{id}/shipments"), json!({"carrier": "DHL", "tracking_number": "T1"}))
        .await;
    let live = stream.take(3);
    let names: Vec<&str> = live.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["status_changed", "shipment_updated", "status_changed"], "{live:?}");
    let paid: Value = serde_json::from_str(live[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!((paid["from"].as_str(), paid["to"].as_str()), (Some("pending_payment"), Some("paid")));
    assert!(!live[0]["data"].as_str().unwrap().contains("R1"), "the admin's payment reference is not the buyer's");
    assert!(paid["at"].as_str().is_some());
    // Another order of BELL moves its stock: the stock stream hears it.
    order(&app, &client, &[("BELL", 1)], 1000, "live-2").await;
    let moved = stock_stream.take(1).remove(0);
    assert_eq!(moved["event"], "stock", "{moved}");
    drop(stream);

    // Reconnecting with Last-Event-ID misses nothing and repeats nothing.
    let resumed = SseClient::start(&url, Some(live[0]["id"].as_str().unwrap()));
    let again = resumed.take(2);
    assert_eq!(again[0]["id"], live[1]["id"]);
    assert_eq!(again[1]["id"], live[2]["id"]);

    // Streams per client IP are limited.
    let mut held = Vec::new();
    for _ in 0..40 {
        let r = client.get(&url).send().await.unwrap();
        let status = r.status();
        held.push(r);
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    let last = held.last().unwrap().status();
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "the per-IP limit holds");
    drop(held);

    // Shutdown with a 30 s grace: open streams end, and the server stops well before the grace is over.
    let started = Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(29), "stopped after {:?}", started.elapsed());
    let end = resumed.take(1).remove(0);
    assert_eq!(end["end"], true, "{end}");
}
