//! The admin UI's orders pages: in headless Chromium, the list filtered by status and by email, an order marked
//! paid, shipped (a refused tracking URL explained next to its field first) and partly refunded with restock after
//! its confirmation step; over plain HTTP, forms without the CSRF token or the confirmation change nothing, another
//! tenant's admin cannot open the order, a bad filter is explained, and the CSV export (header, one row per order,
//! a formula-looking email defused).

use fantoccini::Locator;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, PASSWORD, signed_in, signed_in_browser, wait_text};
use crate::checkout::{cart, checkout, count, ok, request, tenant_db};
use crate::identity::csrf_of;
use crate::support::{TestApp, require_tool, spawn_with};

const ORDERS: &str = "/admin/tenants/shop/store/orders";
/// A buyer's address a spreadsheet would take for a formula.
const FORMULA_EMAIL: &str = "=1+2@evil.example";

/// The test operator's server with the store "shop" selling `MUG` (10 in stock at 10.00 USD), the store limit out
/// of the way.
async fn shop() -> TestApp {
    let app = spawn_with(
        |c| {
            c.store_per_minute = 100_000;
            c.admin_email = Some(EMAIL.into());
            c.admin_password = Some(gatehouse::config::Secret::new(PASSWORD));
        },
        axum::Router::new(),
    )
    .await;
    app.create_tenant("shop").await;
    ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/shop/products",
        json!({"title": "Mug", "handle": "mug", "status": "active",
               "variants": [{"sku": "MUG", "price": 1000, "stock": 10}]}),
    )
    .await;
    app
}

/// A `manual` order of `quantity` mugs by `email`; answers its id.
async fn order(app: &TestApp, client: &Client, quantity: u32, email: &str, key: &str) -> String {
    let id = cart(app, client, "shop", &[("MUG", quantity)]).await;
    let mut body = request(i64::from(quantity) * 1000);
    body["email"] = json!(email);
    let (status, placed) = checkout(app, client, &id, key, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    placed["order"]["id"].as_str().unwrap().to_owned()
}

async fn text_of(browser: &fantoccini::Client, css: &str) -> String {
    browser.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn order_json(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.json(Method::GET, &format!("/admin/api/v1/tenants/shop/orders/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_found_paid_shipped_and_refunded_in_the_browser() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = shop().await;
    let buyers = Client::new();
    let ada = order(&app, &buyers, 2, "ada@example.com", "ui-ada").await;
    let bob = order(&app, &buyers, 1, "bob@example.com", "ui-bob").await;
    order(&app, &buyers, 1, FORMULA_EMAIL, "ui-formula").await;
    // Carl's order is cancelled: the status filter leaves it out.
    let carl = order(&app, &buyers, 1, "carl@example.com", "ui-carl").await;
    let (status, _) =
        app.json(Method::POST, &format!("/admin/api/v1/tenants/shop/orders/{carl}/cancel"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let db = tenant_db(&app);
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'MUG'"), 6);
    let (_driver, browser) = signed_in_browser(&app).await;

    // The list, from the Store tab's link; then filtered by status, then by email.
    browser.goto(&app.url("/admin/tenants/shop/store/products")).await.unwrap();
    browser.wait().for_element(Locator::Css(".tabs a[href$='/store/orders']")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#orders-total", "4 orders").await;
    browser.find(Locator::Css("#status option[value=pending_payment]")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css("#order-filters button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#orders-total", "3 orders").await;
    let table = text_of(&browser, "#orders").await;
    assert!(table.contains("bob@example.com") && table.contains(FORMULA_EMAIL), "{table}");
    assert!(!table.contains("carl@example.com"), "{table}");
    browser.find(Locator::Css("#status option[value='']")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Id("email")).await.unwrap().send_keys("ADA@").await.unwrap();
    browser.find(Locator::Css("#order-filters button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#orders", "ada@example.com").await;
    assert_eq!(text_of(&browser, "#orders-total").await, "1 order");
    assert!(!text_of(&browser, "#orders").await.contains("bob@"));
    let csv_link = browser.find(Locator::Id("export-csv")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(csv_link.ends_with("/store/orders.csv?email=ADA%40"), "the export keeps the filter: {csv_link}");

    // The order: pending, then marked paid with a reference.
    browser.find(Locator::Css("#orders a")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#order-status", "pending payment").await;
    let lines = text_of(&browser, "#order-lines").await;
    assert!(lines.contains("MUG") && lines.contains("10.00 USD"), "{lines}");
    assert_eq!(text_of(&browser, "#order-total").await, "20.00 USD");
    browser.find(Locator::Id("reference")).await.unwrap().send_keys("BANK-42").await.unwrap();
    browser.find(Locator::Id("mark-paid-submit")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Order marked paid").await;
    assert_eq!(text_of(&browser, "#order-status").await, "paid");
    assert!(text_of(&browser, "#timeline").await.contains("reference BANK-42"));
    assert!(browser.find(Locator::Id("mark-paid")).await.is_err(), "a paid order is not marked paid again");

    // Shipping: a tracking page over http is refused next to its field with the input kept; over https it ships
    // everything and the order is fulfilled.
    browser.find(Locator::Id("carrier")).await.unwrap().send_keys("DHL").await.unwrap();
    browser.find(Locator::Id("tracking_number")).await.unwrap().send_keys("JD014600").await.unwrap();
    browser.find(Locator::Id("tracking_url")).await.unwrap().send_keys("http://track.example/JD014600").await.unwrap();
    browser.find(Locator::Id("ship-submit")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#tracking_url-error", "https").await;
    let kept = browser.find(Locator::Id("carrier")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(kept, "DHL");
    let url = browser.find(Locator::Id("tracking_url")).await.unwrap();
    url.clear().await.unwrap();
    url.send_keys("https://track.example/JD014600").await.unwrap();
    browser.find(Locator::Id("ship-submit")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Shipment created").await;
    assert_eq!(text_of(&browser, "#order-status").await, "fulfilled");
    let shipments = text_of(&browser, "#shipments").await;
    assert!(shipments.contains("JD014600") && shipments.contains("MUG × 2"), "{shipments}");
    browser.find(Locator::Css("#shipments a[href='https://track.example/JD014600']")).await.unwrap();
    assert!(browser.find(Locator::Id("ship")).await.is_err(), "nothing is left to ship");

    // A tracking event on the shipment.
    browser.find(Locator::Css(".track-form option[value=in_transit]")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css(".track-form input[name=note]")).await.unwrap().send_keys("left the hub").await.unwrap();
    browser.find(Locator::Css(".track-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Tracking event added").await;
    assert!(text_of(&browser, "#timeline").await.contains("Tracking: in transit; left the hub"));

    // A partial refund with restock, through its confirmation box.
    browser.find(Locator::Css("#refund > summary")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("amount")).await.unwrap().send_keys("5.00").await.unwrap();
    browser.find(Locator::Id("restock")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Id("reason")).await.unwrap().send_keys("chipped").await.unwrap();
    browser.find(Locator::Id("refund-submit")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Refund recorded").await;
    assert_eq!(text_of(&browser, "#order-status").await, "partially refunded");
    assert_eq!(text_of(&browser, "#refunded-total").await, "5.00 USD");
    let timeline = text_of(&browser, "#timeline").await;
    assert!(timeline.contains("Refunded 5.00 USD; 2 units back in stock; reason: chipped"), "{timeline}");
    assert!(timeline.contains(EMAIL), "the admin is named: {timeline}");
    assert_eq!(count(&db, "SELECT stock FROM variants WHERE sku = 'MUG'"), 8, "the two mugs went back");
    let detail = order_json(&app, &ada).await;
    assert_eq!((detail["status"].as_str(), detail["refunded_total"].as_i64()), (Some("partially_refunded"), Some(500)));

    // The session cookie without the CSRF token changes nothing.
    let cookie = browser.get_named_cookie("gh_admin").await.unwrap();
    let cookie_header = format!("gh_admin={}", cookie.value());
    for (action, form) in [
        ("cancel", vec![("confirm", "yes")]),
        ("refund", vec![("confirm", "yes"), ("amount", "1.00")]),
        ("mark-paid", vec![("reference", "FORGED")]),
    ] {
        let path = format!("{ORDERS}/{bob}/{action}");
        let r = app.client.post(app.url(&path)).header("cookie", &cookie_header).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    assert_eq!(order_json(&app, &bob).await["status"], "pending_payment");
    browser.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_pages_refuse_other_tenants_unconfirmed_forms_and_bad_filters_and_export_csv() {
    let app = shop().await;
    let buyers = Client::new();
    let ada = order(&app, &buyers, 2, "ada@example.com", "http-ada").await;
    order(&app, &buyers, 1, "bob@example.com", "http-bob").await;
    order(&app, &buyers, 1, FORMULA_EMAIL, "http-formula").await;
    let ops = signed_in(&app, EMAIL).await;

    // Refund and cancel without their confirmation change nothing.
    let html = ops.get(app.url(&format!("{ORDERS}/{ada}"))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("id=\"mark-paid\""), "a pending manual order may be marked paid");
    let csrf = csrf_of(&html);
    let r = ops
        .post(app.url(&format!("{ORDERS}/{ada}/mark-paid")))
        .form(&[("csrf_token", csrf.as_str()), ("reference", "BANK-7")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    for (action, form) in [("refund", vec![("amount", "5.00")]), ("cancel", vec![])] {
        let mut fields = vec![("csrf_token", csrf.as_str())];
        fields.extend(form);
        let r = ops.post(app.url(&format!("{ORDERS}/{ada}/{action}"))).form(&fields).send().await.unwrap();
        assert_eq!(r.status(), 303, "{action}");
        assert!(r.headers()["location"].to_str().unwrap().ends_with("?done=unconfirmed"), "{action}");
    }
    let detail = order_json(&app, &ada).await;
    assert_eq!((detail["status"].as_str(), detail["refunded_total"].as_i64()), (Some("paid"), Some(0)));

    // A refund of more than the total is explained next to the amount, the input kept, nothing refunded.
    let r = ops
        .post(app.url(&format!("{ORDERS}/{ada}/refund")))
        .form(&[("csrf_token", csrf.as_str()), ("confirm", "yes"), ("amount", "25.00"), ("reason", "too much")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"amount-error\"") && html.contains("20.00 USD"), "{html}");
    assert!(html.contains("value=\"too much\""), "the reason is kept");
    assert_eq!(order_json(&app, &ada).await["refunded_total"], 0);

    // Another tenant's admin cannot open the order; in their own tenant the id is not found.
    app.create_tenant("other").await;
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/other/admins")
        .json(&json!({ "email": "admin-other@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let other = signed_in(&app, "admin-other@example.com").await;
    for path in [format!("{ORDERS}/{ada}"), ORDERS.to_owned(), format!("{ORDERS}.csv")] {
        let r = other.get(app.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = other.get(app.url(&format!("/admin/tenants/other/store/orders/{ada}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("order not found"));

    // A filter that makes no sense is explained by its field, not a 500.
    let r = ops.get(app.url(&format!("{ORDERS}?from=2026-13-01&min=abc&status=lost"))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    for said in
        ["id=\"from-error\"", "Enter a date like", "id=\"min-error\"", "Enter an amount in USD", "id=\"status-error\""]
    {
        assert!(html.contains(said), "{said}: {html}");
    }
    let r = ops.get(app.url(&format!("{ORDERS}.csv?min=abc"))).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // The CSV: a header, one row per order newest first, the formula-looking email defused.
    let r = ops.get(app.url(&format!("{ORDERS}.csv"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let disposition = r.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("orders-shop-"), "{disposition}");
    let body = r.text().await.unwrap();
    let rows: Vec<&str> = body.lines().collect();
    assert_eq!(
        rows[0],
        "number,created_at,status,email,currency,subtotal,discount,shipping,tax,fees,total,refunded,payment_method,\
         payment_status,id"
    );
    assert_eq!(rows.len(), 4, "{body}");
    assert!(rows[1].starts_with("1003,") && rows[1].contains(",'=1+2@evil.example,"), "{}", rows[1]);
    assert!(!body.contains(",=1+2"), "no cell starts with =: {body}");
    assert!(rows[3].starts_with("1001,") && rows[3].contains(",paid,ada@example.com,USD,20.00,"), "{}", rows[3]);
    assert!(rows[3].ends_with(&format!(",manual,succeeded,{ada}")), "{}", rows[3]);
    let r = ops.get(app.url(&format!("{ORDERS}.csv?status=pending_payment&email=bob"))).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(body.lines().count(), 2, "the export keeps the filter: {body}");
    assert!(body.contains("bob@example.com"));
    app.stop().await;
}
