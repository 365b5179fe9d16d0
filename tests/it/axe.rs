//! axe-core (npm, pinned in `tests/axe/`) on every admin and hosted page, light and dark: a tenant with realistic
//! data (users, a role, a client, a webhook, mail in the outbox, products, pricing rules), each page loaded in
//! headless Chromium, axe injected and run; serious or critical violations fail the test with every offender listed.
//! Dark mode is `prefers-color-scheme: dark` emulated through the DevTools protocol (`Emulation.setEmulatedMedia`
//! via chromedriver's `goog/cdp/execute`). Moderate and minor findings are printed (`--nocapture` shows them).

use std::collections::BTreeMap;
use std::time::Duration;

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_ui::{Driver, app_with_operator, signed_in_browser};
use crate::support::{PASSWORD, TestApp, create_user, require_tool};

const AXE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/axe/node_modules/axe-core/axe.min.js");

/// Runs axe on the loaded page (injecting it first) and answers its violations, shortened.
const RUN_AXE: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' — ' + (n.failureSummary || '').split('\n').slice(1, 2).join(''))
})))).catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));
"#;

async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let (status, answer) = app.json(method.clone(), path, Some(body)).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

/// A tenant an auditor would find in use: users (one disabled), a role, a client, a webhook, mail in the outbox and
/// the dev mailbox, a product with stock, a discount code, failed and successful sign-ins in the audit log.
async fn realistic_tenant(app: &TestApp, slug: &str) -> (String, String, String) {
    app.create_tenant(slug).await;
    let base = format!("/admin/api/v1/tenants/{slug}");
    let ada = create_user(app, slug, "ada@example.com").await;
    for n in 0..6 {
        create_user(app, slug, &format!("user{n}@example.com")).await;
    }
    let disabled = create_user(app, slug, "gone@example.com").await;
    ok(app, Method::POST, &format!("{base}/users/{}/disable", disabled["id"].as_str().unwrap()), json!({})).await;
    ok(app, Method::POST, &format!("{base}/roles"), json!({"name": "editor", "permissions": ["posts:write"]})).await;
    let client = ok(
        app,
        Method::POST,
        &format!("{base}/clients"),
        json!({"name": "Web shop", "type": "confidential", "redirect_uris": ["https://shop.example/cb"]}),
    )
    .await;
    let hook = ok(
        app,
        Method::POST,
        &format!("{base}/webhooks"),
        json!({"url": "https://hooks.example.net/in", "events": ["user.created"], "description": "CRM"}),
    )
    .await;
    let login = |password: &'static str| {
        app.client
            .post(app.url(&format!("/t/{slug}/api/v1/login")))
            .header(
                "user-agent",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
            )
            .json(&json!({"email": "ada@example.com", "password": password}))
            .send()
    };
    login("wrong password").await.unwrap();
    login(PASSWORD).await.unwrap();
    app.client
        .post(app.url(&format!("/t/{slug}/api/v1/password/forgot")))
        .json(&json!({"email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    app.run_outbox().await;
    let product = ok(
        app,
        Method::POST,
        &format!("{base}/products"),
        json!({"title": "Mug", "handle": "mug", "status": "active",
               "variants": [{"sku": "MUG-1", "price": 1200, "stock": 5}]}),
    )
    .await;
    ok(
        app,
        Method::POST,
        &format!("{base}/discount-codes"),
        json!({"code": "WELCOME10", "kind": "percent", "value": 10}),
    )
    .await;
    ok(app, Method::POST, &format!("{base}/plugins"), json!({"name": "pricing-demo", "world": "pricing"})).await;
    if let Some(bytes) = crate::plugins::component("c-noop-pricing") {
        let r = app
            .admin(Method::POST, &format!("{base}/plugins/pricing-demo/versions"))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    (
        ada["id"].as_str().unwrap().to_owned(),
        format!("{}|{}", client["client_id"].as_str().unwrap(), hook["id"].as_str().unwrap()),
        product["id"].as_str().unwrap().to_owned(),
    )
}

/// Switches `prefers-color-scheme` of the session's pages through the DevTools protocol.
async fn color_scheme(driver: &Driver, browser: &fantoccini::Client, scheme: &str) {
    let session = browser.session_id().await.unwrap().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/session/{session}/goog/cdp/execute", driver.url))
        .json(&json!({"cmd": "Emulation.setEmulatedMedia",
                      "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "CDP: {}", r.text().await.unwrap());
    let dark = browser.execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]).await.unwrap();
    assert_eq!(dark, json!(scheme == "dark"), "the emulated colour scheme took effect");
}

/// Loads each page in both schemes, runs axe; returns (page, scheme) → violations.
pub(crate) async fn audit(
    driver: &Driver,
    browser: &fantoccini::Client,
    base: &str,
    pages: &[String],
) -> BTreeMap<(String, &'static str), Vec<Value>> {
    let axe = std::fs::read_to_string(AXE).expect("tests/axe: run `npm ci` there (scripts/test does)");
    // axe takes a few seconds a page alone, much longer while the rest of the suite shares the two cores.
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(Some(Duration::from_secs(300)), None, None);
    browser.update_timeouts(timeouts).await.unwrap();
    let mut found = BTreeMap::new();
    for scheme in ["light", "dark"] {
        color_scheme(driver, browser, scheme).await;
        for page in pages {
            browser.goto(&format!("{base}{page}")).await.unwrap();
            browser.wait().for_element(Locator::Css("main, body")).await.unwrap();
            browser.execute(&axe, vec![]).await.unwrap();
            let violations = browser.execute_async(RUN_AXE, vec![]).await.unwrap();
            found.insert((page.clone(), scheme), violations.as_array().cloned().unwrap_or_default());
        }
    }
    found
}

/// Fails listing every serious or critical violation; prints the others with their counts.
pub(crate) fn judge(found: &BTreeMap<(String, &'static str), Vec<Value>>) {
    let mut bad = Vec::new();
    let mut minor: BTreeMap<String, usize> = BTreeMap::new();
    for ((page, scheme), violations) in found {
        for v in violations {
            let impact = v["impact"].as_str().unwrap_or("?");
            if matches!(impact, "serious" | "critical") {
                bad.push(format!("{page} ({scheme}): {impact} {} — {}\n    {}", v["id"], v["help"], v["nodes"]));
            } else {
                *minor.entry(format!("{impact} {}", v["id"])).or_default() += 1;
            }
        }
    }
    eprintln!("axe: {} page loads, moderate/minor findings: {minor:?}", found.len());
    assert!(bad.is_empty(), "axe found {} serious/critical violations:\n{}", bad.len(), bad.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_page_passes_axe_in_light_and_dark() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    let (user, client_and_hook, product) = realistic_tenant(&app, "acme").await;
    let (client, hook) = client_and_hook.split_once('|').unwrap();
    let (driver, browser) = signed_in_browser(&app).await;
    let t = "/admin/tenants/acme";
    let mut pages: Vec<String> = ["/admin", "/admin/tenants", "/admin/tokens", "/admin/api", "/admin/backups"]
        .into_iter()
        .map(String::from)
        .collect();
    for tab in [
        "",
        "/users",
        "/roles",
        "/admins",
        "/audit",
        "/sign-in",
        "/clients",
        "/keys",
        "/email",
        "/outbox",
        "/mailbox",
        "/webhooks",
        "/plugins",
        "/store/products",
        "/store/products/new",
        "/store/categories",
        "/store/import",
        "/store/rules",
        "/store/quote",
    ] {
        pages.push(format!("{t}{tab}"));
    }
    pages.push(format!("{t}/users/{user}"));
    pages.push(format!("{t}/clients/{client}"));
    pages.push(format!("{t}/webhooks/{hook}"));
    pages.push(format!("{t}/store/products/{product}"));
    pages.push(format!("{t}/store/inventory/MUG-1"));
    pages.push(format!("{t}/plugins/pricing-demo"));
    // An order, shipped, so its page shows every part (lines, payment, shipment, timeline, the refund form).
    let buyer = reqwest::Client::new();
    let cart = crate::pricing::cart(&app, &buyer, "acme", &[("MUG-1", 1)]).await;
    let r = buyer.put(app.url(&format!("/t/acme/api/v1/carts/{cart}/shipping"))).json(&json!({"country": "GB"})).send();
    assert_eq!(r.await.unwrap().status(), 200);
    let mut body = crate::checkout::request(1200);
    body["email"] = json!("buyer@example.com");
    let r = buyer
        .post(app.url(&format!("/t/acme/api/v1/carts/{cart}/checkout")))
        .header("idempotency-key", "axe-order")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let order = r.json::<Value>().await.unwrap()["order"]["id"].as_str().unwrap().to_owned();
    let orders = "/admin/api/v1/tenants/acme/orders";
    ok(&app, Method::POST, &format!("{orders}/{order}/mark-paid"), json!({"reference": "R-1"})).await;
    let shipment = json!({"carrier": "DHL", "tracking_number": "T-1", "tracking_url": "https://track.example/T-1"});
    ok(&app, Method::POST, &format!("{orders}/{order}/shipments"), shipment).await;
    pages.push(format!("{t}/store/orders"));
    pages.push(format!("{t}/store/orders/{order}"));
    let found = audit(&driver, &browser, &app.base, &pages).await;
    browser.close().await.unwrap();
    judge(&found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hosted_page_passes_axe_in_light_and_dark() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    realistic_tenant(&app, "acme").await;
    app.create_tenant("paused").await;
    ok(&app, Method::POST, "/admin/api/v1/tenants/paused/suspend", json!({})).await;
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/acme",
        json!({"name": "Acme Shop", "settings": {"branding": {"primary_color": "#ffd43b"}}}),
    )
    .await;
    let (driver, browser) = crate::admin_ui::start_browser().await;
    let signed_out: Vec<String> = [
        "/t/acme/login",
        "/t/acme/register",
        "/t/acme/forgot",
        "/t/acme/reset?token=not-a-token",
        "/t/paused/login",
        "/t/nobody-here/login",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut found = audit(&driver, &browser, &app.base, &signed_out).await;

    // Signed in: the account page (profile, sessions, consents, MFA).
    color_scheme(&driver, &browser, "light").await;
    browser.goto(&app.url("/t/acme/login")).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys("ada@example.com").await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Css("main")).await.unwrap();
    let account = audit(&driver, &browser, &app.base, &["/t/acme/account".to_owned()]).await;
    found.extend(account);
    browser.close().await.unwrap();
    judge(&found);
}
