//! Checkout: many buyers at once never oversell and get gap-free order numbers; an idempotency key answers the
//! same however often it is sent; a moved price and a short line are refused with nothing written; bad input is a
//! clear error; an order is read by its token and by nobody else.

use std::collections::BTreeSet;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::pricing::cart as new_cart;
use crate::support::{TestApp, spawn_with};

pub(crate) async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let (status, answer) = app.json(method.clone(), path, Some(body)).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

/// A store with `skus` (each at `stock` units, 1000 minor units) and the store limit out of the way.
pub(crate) async fn store(skus: &[&str], stock: i64) -> TestApp {
    let app = spawn_with(|c| c.store_per_minute = 100_000, axum::Router::new()).await;
    app.create_tenant("shop").await;
    for sku in skus {
        ok(
            &app,
            Method::POST,
            "/admin/api/v1/tenants/shop/products",
            json!({"title": format!("Item {sku}"), "handle": sku.to_lowercase(), "status": "active",
                   "variants": [{"sku": sku, "price": 1000, "stock": stock}]}),
        )
        .await;
    }
    app
}

/// A cart of `lines` shipping to Great Britain (checkout holds the address to the cart's destination).
pub(crate) async fn cart(app: &TestApp, client: &Client, slug: &str, lines: &[(&str, u32)]) -> String {
    let id = new_cart(app, client, slug, lines).await;
    let r = client
        .put(app.url(&format!("/t/{slug}/api/v1/carts/{id}/shipping")))
        .json(&json!({"country": "GB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    id
}

pub(crate) fn address() -> Value {
    json!({"name": "Ada Lovelace", "line1": "1 Analytical St", "city": "London", "postal_code": "N1 9GU", "country": "gb"})
}

pub(crate) fn request(total: i64) -> Value {
    json!({"email": "ada@example.com", "shipping_address": address(), "payment_method": "manual", "expected_total": total})
}

pub(crate) async fn checkout(
    app: &TestApp,
    client: &Client,
    cart: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let mut r = client.post(app.url(&format!("/t/shop/api/v1/carts/{cart}/checkout"))).json(body);
    if !key.is_empty() {
        r = r.header("idempotency-key", key);
    }
    let r = r.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

pub(crate) fn tenant_db(app: &TestApp) -> rusqlite::Connection {
    rusqlite::Connection::open(app.data_dir.join("tenants/shop.db")).unwrap()
}

pub(crate) fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_buyers_never_oversell_and_numbers_have_no_gaps() {
    let skus = ["A", "B", "C", "D", "E"];
    let app = store(&skus, 8).await;
    let client = Client::new();
    // 200 carts of one unit each, 40 per SKU, for 40 units in all.
    let mut carts = Vec::new();
    for i in 0..200 {
        carts.push(cart(&app, &client, "shop", &[(skus[i % 5], 1)]).await);
    }
    let tasks: Vec<_> = carts
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let (app_url, client) = (app.url(""), client.clone());
            tokio::spawn(async move {
                let r = client
                    .post(format!("{app_url}/t/shop/api/v1/carts/{id}/checkout"))
                    .header("idempotency-key", format!("buyer-{i}"))
                    .json(&request(1000))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => {
                numbers
                    .insert(body["order"]["number"].as_str().unwrap().trim_start_matches('#').parse::<i64>().unwrap());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "out_of_stock", "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((numbers.len(), refused), (40, 160));
    assert_eq!(numbers.iter().copied().collect::<Vec<_>>(), (1001..=1040).collect::<Vec<_>>(), "gap-free");
    let db = tenant_db(&app);
    for sku in skus {
        let (stock, ledger): (i64, i64) = db
            .query_row(
                "SELECT v.stock, (SELECT SUM(delta) FROM inventory_movements m WHERE m.variant_id = v.id)
                 FROM variants v WHERE v.sku = ?1",
                [sku],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((stock, ledger), (0, 0), "{sku}: sold out exactly, the ledger agrees");
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 40);
    assert_eq!(count(&db, "SELECT COALESCE(SUM(quantity), 0) FROM order_lines"), 40);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_one_order_and_refusals_write_nothing() {
    let app = store(&["MUG"], 5).await;
    let client = Client::new();
    let id = cart(&app, &client, "shop", &[("MUG", 2)]).await;

    // Bad input first: each a clear error, nothing written.
    let (status, body) = checkout(&app, &client, &id, "", &request(2000)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{body}");
    let mut bad = request(2000);
    bad["shipping_address"]["country"] = json!("Britain");
    let (status, body) = checkout(&app, &client, &id, "k-bad", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["message"].as_str().unwrap().contains("shipping_address.country"), "{body}");
    let mut bad = request(2000);
    bad["payment_method"] = json!("bitcoin");
    assert_eq!(checkout(&app, &client, &id, "k-bad2", &bad).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = checkout(&app, &client, &id, "k-price", &request(1999)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("price_changed")), "{body}");
    assert_eq!(body["quote"]["total"], 2000, "the answer carries the quote as it is");
    let mut elsewhere = request(2000);
    elsewhere["shipping_address"]["country"] = json!("DE");
    let (status, body) = checkout(&app, &client, &id, "k-de", &elsewhere).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "taxed and shipped for GB, not DE: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("destination"), "{body}");
    let empty = cart(&app, &client, "shop", &[]).await;
    assert_eq!(checkout(&app, &client, &empty, "k-empty", &request(0)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let db = tenant_db(&app);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders") + count(&db, "SELECT COUNT(*) FROM idempotency_keys"), 0);
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'MUG'"), 5);

    // The same request ten times at once: one order, ten identical answers.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (url, client) = (app.url(&format!("/t/shop/api/v1/carts/{id}/checkout")), client.clone());
            tokio::spawn(async move {
                let r = client.post(url).header("idempotency-key", "once").json(&request(2000)).send().await.unwrap();
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        answers.insert(body);
    }
    assert_eq!(answers.len(), 1, "identical answers: {answers:?}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM orders"), 1);
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'MUG'"), 3);
    // The same key with another body.
    let (status, body) = checkout(&app, &client, &id, "once", &request(4000)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_conflict"))
    );

    // The order: read with its token; without it, with a wrong one, or from another tenant, it does not exist.
    let answer: Value = serde_json::from_str(answers.first().unwrap()).unwrap();
    let (order, token) = (answer["order"]["id"].as_str().unwrap(), answer["order_token"].as_str().unwrap());
    assert_eq!(answer["order"]["shipping_address"]["country"], "GB");
    let read = |path: String| {
        let client = client.clone();
        let url = app.url(&path);
        async move { client.get(url).send().await.unwrap() }
    };
    let r = read(format!("/t/shop/api/v1/orders/{order}?token={token}")).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["number"].as_str(), body["status"].as_str(), body["total"].as_i64()),
        (Some("#1001"), Some("pending_payment"), Some(2000))
    );
    assert_eq!(read(format!("/t/shop/api/v1/orders/{order}")).await.status(), 404);
    assert_eq!(read(format!("/t/shop/api/v1/orders/{order}?token=gho_wrong")).await.status(), 404);
    app.create_tenant("other").await;
    assert_eq!(read(format!("/t/other/api/v1/orders/{order}?token={token}")).await.status(), 404);
    // The cart is gone; the confirmation is queued with the order's link.
    assert_eq!(client.get(app.url(&format!("/t/shop/api/v1/carts/{id}"))).send().await.unwrap().status(), 404);
    let payload: String = db.query_row("SELECT payload FROM outbox WHERE kind = 'email'", [], |r| r.get(0)).unwrap();
    assert!(
        payload.contains("order_confirmation") && payload.contains(&format!("orders/{order}?token={token}")),
        "{payload}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_mark_paid_and_cancel_along_the_status_graph() {
    let app = store(&["TEE"], 4).await;
    let client = Client::new();
    let mut orders = Vec::new();
    for key in ["first", "second"] {
        let id = cart(&app, &client, "shop", &[("TEE", 2)]).await;
        let (status, body) = checkout(&app, &client, &id, key, &request(2000)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        orders.push(body["order"]["id"].as_str().unwrap().to_owned());
    }
    let db = tenant_db(&app);
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'TEE'"), 0);
    let base = "/admin/api/v1/tenants/shop/orders";
    let (_, page) = app.json(Method::GET, &format!("{base}?status=pending_payment"), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["items"][0]["number"], "#1002", "newest first");

    // Paid with a reference; a paid order cannot be paid again or skip to delivered.
    let (status, paid) =
        app.json(Method::POST, &format!("{base}/{}/mark-paid", orders[0]), Some(json!({"reference": "SEPA 42"}))).await;
    assert_eq!((status, paid["status"].as_str()), (StatusCode::OK, Some("paid")), "{paid}");
    let (status, again) =
        app.json(Method::POST, &format!("{base}/{}/mark-paid", orders[0]), Some(json!({"reference": "x"}))).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_transition")));

    // Cancelled: its two units go back to stock, with a ledger movement; the timeline has every step.
    let (status, cancelled) = app.json(Method::POST, &format!("{base}/{}/cancel", orders[1]), Some(json!({}))).await;
    assert_eq!((status, cancelled["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{cancelled}");
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'TEE'"), 2);
    assert_eq!(count(&db, "SELECT SUM(delta) FROM inventory_movements WHERE kind = 'cancel'"), 2);
    let (_, detail) = app.json(Method::GET, &format!("{base}/{}", orders[0]), None).await;
    let steps: Vec<_> = detail["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(steps, ["created", "status_changed"], "{detail}");
    assert_eq!(detail["events"][1]["detail"]["reference"], "SEPA 42");
    // Mail and webhook events are queued with the change.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM outbox WHERE payload LIKE '%\"template\":\"order_status\"%'"), 2);

    // An unpaid order past its time is cancelled by the next checkout, before that one takes stock.
    let third = cart(&app, &client, "shop", &[("TEE", 2)]).await;
    let (status, body) = checkout(&app, &client, &third, "third", &request(2000)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let late = body["order"]["id"].as_str().unwrap().to_owned();
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'TEE'"), 0);
    db.execute("UPDATE orders SET expires_at = 1 WHERE id = ?1", [&late]).unwrap();
    let fourth = cart(&app, &client, "shop", &[("TEE", 1)]).await;
    let (status, body) = checkout(&app, &client, &fourth, "fourth", &request(1000)).await;
    assert_eq!(status, StatusCode::CREATED, "the expired order's units are back for this buyer: {body}");
    let (_, expired) = app.json(Method::GET, &format!("{base}/{late}"), None).await;
    assert_eq!(expired["status"], "cancelled", "{expired}");
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'TEE'"), 1);

    // Another tenant's token sees none of it.
    app.create_tenant("other").await;
    let other = app.create_token("other admin", "tenant:other").await;
    let r = client.post(app.url(&format!("{base}/{}/cancel", orders[0]))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client
        .get(app.url(&format!("/admin/api/v1/tenants/other/orders/{}", orders[0])))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
