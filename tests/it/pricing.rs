//! Pricing plugins and customer carts end to end: the JavaScript tiers plugin (contract 0.2.0) changes quotes,
//! follows its saved config without a new upload, deactivation and rollback; a 0.1.0 pricing component still
//! prices; every hostile pricing component leaves a fail-open quote degraded and makes a fail-closed one 503; the
//! quote sandbox and the dry-run of a real cart; a signed-in customer claims a cart that nobody else can then use.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::oidc::{PASSWORD, REDIRECT, create_client, create_user, jar};
use crate::support::{TestApp, spawn_with};

fn component(name: &str) -> Option<Vec<u8>> {
    crate::plugins::component(name)
}

async fn spawn() -> TestApp {
    spawn_with(|c| c.plugin_max_bytes = 32 << 20, axum::Router::new()).await
}

async fn admin(app: &TestApp, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let request = app.admin(method, &format!("/admin/api/v1/tenants{path}"));
    let request = if body.is_null() { request } else { request.json(&body) };
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// A store in EUR with a 2.00 bolt (1,000 in stock) and a 10.00 box.
async fn store(app: &TestApp, slug: &str) {
    app.create_tenant(slug).await;
    let (status, body) =
        admin(app, Method::PATCH, &format!("/{slug}"), json!({"settings": {"commerce": {"currency": "EUR"}}})).await;
    assert_eq!(status, 200, "{body}");
    for (handle, sku, price) in [("bolt", "BOLT", 200), ("box", "BOX", 1000)] {
        let body = json!({"handle": handle, "title": handle, "status": "active",
                          "variants": [{"sku": sku, "price": price, "stock": 1000}]});
        let (status, body) = admin(app, Method::POST, &format!("/{slug}/products"), body).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Creates plugin `name` of the pricing world with `settings`, uploads `bytes` and activates that version; answers
/// the version and the contract version the upload detected.
async fn pricing_plugin(app: &TestApp, slug: &str, name: &str, settings: Value, bytes: Vec<u8>) -> (u64, String) {
    let mut body = json!({"name": name, "world": "pricing"});
    body.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    let (status, created) = admin(app, Method::POST, &format!("/{slug}/plugins"), body).await;
    assert_eq!(status, 201, "{created}");
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/plugins/{name}/versions"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let uploaded: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{uploaded}");
    let version = uploaded["version"].as_u64().unwrap();
    let (status, body) =
        admin(app, Method::POST, &format!("/{slug}/plugins/{name}/versions/{version}/activate"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    (version, uploaded["contract"].as_str().unwrap().to_owned())
}

/// A cart of `slug` holding `lines`; answers its id.
pub(crate) async fn cart(app: &TestApp, client: &Client, slug: &str, lines: &[(&str, u32)]) -> String {
    let r = client.post(app.url(&format!("/t/{slug}/api/v1/carts"))).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for (sku, quantity) in lines {
        let r = client
            .post(app.url(&format!("/t/{slug}/api/v1/carts/{id}/lines")))
            .json(&json!({"sku": sku, "quantity": quantity}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    id
}

async fn get_cart(app: &TestApp, client: &Client, slug: &str, id: &str) -> (StatusCode, Value) {
    let r = client.get(app.url(&format!("/t/{slug}/api/v1/carts/{id}"))).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn sources(quote: &Value) -> Vec<String> {
    let lines = quote["lines"].as_array().unwrap().iter().flat_map(|l| l["adjustments"].as_array().unwrap().iter());
    lines.chain(quote["adjustments"].as_array().unwrap()).map(|a| a["source"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_tiers_plugin_follows_its_config_deactivation_and_rollback() {
    let Some(tiers) = component("js-pricing-tiers") else { return };
    let app = spawn().await;
    store(&app, "tiers").await;
    let config = json!({"tiers": [{"min_quantity": 10, "percent": 5}], "role_discounts": {"wholesale": 15}});
    let v = pricing_plugin(&app, "tiers", "tiers", json!({"config": config, "timeout_ms": 1000}), tiers).await;
    assert_eq!(v, (1, "0.2.0".to_owned()));
    let id = cart(&app, &app.client, "tiers", &[("BOLT", 10), ("BOX", 1)]).await;
    // 10 bolts: 2000, 5 % off (100) from the plugin; the box is under the tier. Total 2000 − 100 + 1000.
    let (status, q) = get_cart(&app, &app.client, "tiers", &id).await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(
        (q["subtotal"].as_i64(), q["discount_total"].as_i64(), q["total"].as_i64()),
        (Some(3000), Some(100), Some(2900)),
        "{q}"
    );
    let adjustment = &q["lines"][0]["adjustments"][0];
    assert_eq!((adjustment["source"].as_str(), adjustment["amount"].as_i64()), (Some("plugin:tiers@v1"), Some(-100)));
    assert_eq!(adjustment["label"], "5 % volume discount");
    assert_eq!(q["degraded"], false);
    // Reading the same cart again reuses the plugin's answer: no new call.
    let calls = |app: &TestApp| {
        let request = app.admin(Method::GET, "/admin/api/v1/tenants/tiers/plugins/tiers");
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["stats"]["calls"].as_u64().unwrap() }
    };
    let before = calls(&app).await;
    let (_, again) = get_cart(&app, &app.client, "tiers", &id).await;
    assert_eq!((again["total"].as_i64(), calls(&app).await), (Some(2900), before), "{again}");

    // A new config is read on the next quote, with no new upload.
    let config = json!({"tiers": [{"min_quantity": 10, "percent": 10}], "role_discounts": {"wholesale": 15}});
    let (status, body) = admin(&app, Method::PATCH, "/tiers/plugins/tiers", json!({"config": config})).await;
    assert_eq!(status, 200, "{body}");
    let (_, q) = get_cart(&app, &app.client, "tiers", &id).await;
    assert_eq!((q["discount_total"].as_i64(), q["total"].as_i64()), (Some(200), Some(2800)), "{q}");

    // The dry-run takes the real cart as its input.
    let (status, run) = admin(
        &app,
        Method::POST,
        "/tiers/plugins/tiers/versions/1/dry-run",
        json!({"function": "price", "cart_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(run["output"]["ok"][0]["amount"], -200, "{run}");
    let (status, _) = admin(
        &app,
        Method::POST,
        "/tiers/plugins/tiers/versions/1/dry-run",
        json!({"function": "price", "cart_id": "cart_nope"}),
    )
    .await;
    assert_eq!(status, 404);

    // Deactivated: gone. Activated again (the rollback): back.
    let (status, _) = admin(&app, Method::POST, "/tiers/plugins/tiers/deactivate", json!({})).await;
    assert_eq!(status, 200);
    let (_, q) = get_cart(&app, &app.client, "tiers", &id).await;
    assert_eq!((q["discount_total"].as_i64(), q["total"].as_i64()), (Some(0), Some(3000)), "{q}");
    admin(&app, Method::POST, "/tiers/plugins/tiers/versions/1/activate", json!({})).await;
    let (_, q) = get_cart(&app, &app.client, "tiers", &id).await;
    assert_eq!(q["total"], 2800, "{q}");

    // The sandbox: a wholesale customer gets 15 % off what is left after the tiers: 2800 × 15 % = 420.
    let (status, _) = admin(&app, Method::POST, "/tiers/roles", json!({"name": "wholesale"})).await;
    assert_eq!(status, 201);
    let (status, user) = admin(
        &app,
        Method::POST,
        "/tiers/users",
        json!({"email": "buyer@example.com", "password": PASSWORD, "email_verified": true, "roles": ["wholesale"]}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let request = json!({"lines": [{"sku": "BOLT", "quantity": 10}, {"sku": "BOX", "quantity": 1}],
                         "customer_id": user["id"]});
    let (status, s) = admin(&app, Method::POST, "/tiers/quotes", request).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!((s["quote"]["discount_total"].as_i64(), s["quote"]["total"].as_i64()), (Some(200 + 420), Some(2380)));
    assert_eq!(s["quote"]["adjustments"][0]["source"], "plugin:tiers@v1");
    assert_eq!(s["plugins"][0]["outcome"], "ok");
    assert_eq!(s["plugin_input"]["cart"]["customer_roles"], json!(["wholesale"]));
    let (status, body) =
        admin(&app, Method::POST, "/tiers/quotes", json!({"lines": [{"sku": "NOPE", "quantity": 1}]})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin(&app, Method::POST, "/tiers/quotes", json!({"cart_id": id, "codes": ["X"]})).await;
    assert_eq!(status, 400, "a cart id or hand-written choices, not both");

    // Tenant isolation: another store sells the same SKUs without the plugin, and cannot use this cart.
    store(&app, "plain").await;
    let other = cart(&app, &app.client, "plain", &[("BOLT", 10)]).await;
    let (_, q) = get_cart(&app, &app.client, "plain", &other).await;
    assert_eq!((q["total"].as_i64(), sources(&q).len()), (Some(2000), 0), "{q}");
    assert_eq!(get_cart(&app, &app.client, "plain", &id).await.0, 404);
    let token = app.create_token("plain admin", "tenant:plain").await;
    let r = app
        .client
        .post(app.url("/admin/api/v1/tenants/tiers/quotes"))
        .bearer_auth(&token)
        .json(&json!({"lines": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "another tenant's admin cannot use this store's sandbox");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pricing_plugins_degrade_open_quotes_and_refuse_closed_ones() {
    let Some(noop) = component("c-noop-pricing") else { return };
    let app = spawn().await;
    store(&app, "hostile").await;
    let id = cart(&app, &app.client, "hostile", &[("BOLT", 2), ("BOX", 1)]).await;
    let (_, plain) = get_cart(&app, &app.client, "hostile", &id).await;
    assert_eq!(plain["total"], 1400);

    // The C no-op (0.2.0) changes nothing; the 0.1.0 fee plugin still prices (a 0.50 handling fee, untaxed).
    assert_eq!(pricing_plugin(&app, "hostile", "noop", json!({}), noop).await.1, "0.2.0");
    let (_, q) = get_cart(&app, &app.client, "hostile", &id).await;
    assert_eq!((q["total"].as_i64(), q["degraded"].as_bool()), (Some(1400), Some(false)), "{q}");
    let fee = component("pricing-v1-fee").unwrap();
    assert_eq!(pricing_plugin(&app, "hostile", "fee", json!({"priority": 5}), fee).await.1, "0.1.0");
    let (_, q) = get_cart(&app, &app.client, "hostile", &id).await;
    assert_eq!((q["total"].as_i64(), q["fee_total"].as_i64()), (Some(1450), Some(50)), "{q}");
    assert!(sources(&q).contains(&"plugin:fee@v1".to_owned()), "{q}");
    admin(&app, Method::POST, "/hostile/plugins/fee/deactivate", json!({})).await;

    for (name, outcome) in [
        ("pricing-negative-tax", "invalid_output"),
        ("pricing-bad-line", "invalid_output"),
        ("pricing-flood", "invalid_output"),
        ("pricing-labels", "invalid_output"),
        ("pricing-trap", "trap"),
        ("pricing-loop", "timeout"),
    ] {
        let bytes = component(name).unwrap();
        let settings = json!({"failure_policy": "fail_open", "timeout_ms": 50, "priority": 10});
        pricing_plugin(&app, "hostile", name, settings, bytes).await;
        let (status, q) = get_cart(&app, &app.client, "hostile", &id).await;
        assert_eq!(status, 200, "{name}: {q}");
        assert_eq!(q["degraded"], true, "{name}: {q}");
        assert_eq!(q["degraded_plugins"], json!([format!("{name}@v1")]), "{name}");
        assert_eq!(q["total"], 1400, "{name}: priced without it");
        let (_, detail) = admin(&app, Method::GET, &format!("/hostile/plugins/{name}"), Value::Null).await;
        assert!(detail["stats"][outcome].as_u64().unwrap() >= 1, "{name}: {}", detail["stats"]);

        let (status, _) =
            admin(&app, Method::PATCH, &format!("/hostile/plugins/{name}"), json!({"failure_policy": "fail_closed"}))
                .await;
        assert_eq!(status, 200);
        let (status, body) = get_cart(&app, &app.client, "hostile", &id).await;
        assert_eq!(status, 503, "{name}: {body}");
        assert_eq!(body["error"]["code"], "pricing_unavailable", "{name}");
        assert!(body["error"]["message"].as_str().unwrap().contains(name), "{body}");
        // A write answers the same, and says the change was saved (a client must not retry it).
        let r = app
            .client
            .patch(app.url(&format!("/t/hostile/api/v1/carts/{id}/lines/BOLT")))
            .json(&json!({"quantity": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{name}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().ends_with("the change was saved"), "{body}");
        // The sandbox prices on and says why the storefront refuses.
        let (status, s) = admin(&app, Method::POST, "/hostile/quotes", json!({"cart_id": id})).await;
        assert_eq!(status, 200, "{s}");
        assert!(s["refused"].as_str().unwrap().contains(name), "{s}");
        let run = s["plugins"].as_array().unwrap().iter().find(|r| r["plugin"] == format!("{name}@v1")).unwrap();
        assert_eq!((run["outcome"].as_str(), run["applied"].as_bool()), (Some(outcome), Some(false)), "{s}");
        if name == "pricing-labels" {
            // Stopped by the host's copy budget, not copied whole and then found too large.
            assert!(run["error"].as_str().unwrap().contains("too much data"), "{s}");
        }
        admin(&app, Method::POST, &format!("/hostile/plugins/{name}/deactivate"), json!({})).await;
        let r = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{name}: the server is fine");
    }
    let (_, q) = get_cart(&app, &app.client, "hostile", &id).await;
    assert_eq!((q["total"].as_i64(), q["degraded"].as_bool()), (Some(1400), Some(false)));
    app.stop().await;
}

/// A 0.2.0 login component links (its type interface is 0.2.0's) and reads the config saved with it.
#[tokio::test]
async fn a_contract_020_login_plugin_reads_its_config() {
    let Some(bytes) = component("login-v2-config") else { return };
    let app = spawn().await;
    app.create_tenant("cfg").await;
    let body = json!({"name": "cfg", "world": "login", "config": {"greeting": "hello"}});
    let (status, created) = admin(&app, Method::POST, "/cfg/plugins", body).await;
    assert_eq!(status, 201, "{created}");
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/cfg/plugins/cfg/versions")
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let uploaded: Value = r.json().await.unwrap();
    assert_eq!(uploaded["contract"], "0.2.0", "{uploaded}");
    let (status, run) =
        admin(&app, Method::POST, "/cfg/plugins/cfg/versions/1/dry-run", json!({"function": "post-login"})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(run["logs"][0]["message"], r#"{"greeting":"hello"}"#, "{run}");
    // A component of the other world is still refused.
    let (status, body) = admin(&app, Method::POST, "/cfg/plugins", json!({"name": "wrong", "world": "pricing"})).await;
    assert_eq!(status, 201, "{body}");
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/cfg/plugins/wrong/versions")
        .header("content-type", "application/wasm")
        .body(component("login-v2-config").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "plugin_wrong_world");
    app.stop().await;
}

/// A claim merges within the cart's limits: at most 100 lines, and codes that may not be combined do not price
/// together however they got into one cart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_merges_within_the_line_limit_and_the_code_rules() {
    let app = spawn().await;
    store(&app, "merge").await;
    let variants: Vec<Value> = (0..100)
        .map(|i| json!({"sku": format!("V{i:03}"), "price": 100, "stock": 50, "option_values": {"n": i.to_string()}}))
        .collect();
    let body = json!({"handle": "many", "title": "Many", "status": "active", "options": ["n"], "variants": variants});
    let (status, body) = admin(&app, Method::POST, "/merge/products", body).await;
    assert_eq!(status, 201, "{body}");
    for (code, value) in [("SAVE20", 20), ("FLAT10", 10)] {
        let (status, body) = admin(
            &app,
            Method::POST,
            "/merge/discount-codes",
            json!({"code": code, "kind": "percent", "value": value}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    create_user(&app, "merge", "ada@example.com").await;
    let ada = customer(&app, "merge", "ada@example.com").await;
    // Ada's cart: V000-V059, BOLT and BOX (62 lines) and SAVE20. An anonymous cart: V040-V099 (60) and FLAT10.
    let mut mine: Vec<(String, u32)> = (0..60).map(|i| (format!("V{i:03}"), 1)).collect();
    mine.extend([("BOLT".to_owned(), 1), ("BOX".to_owned(), 1)]);
    let mine: Vec<(&str, u32)> = mine.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    let owned = cart(&app, &ada, "merge", &mine).await;
    let theirs: Vec<String> = (40..100).map(|i| format!("V{i:03}")).collect();
    let theirs: Vec<(&str, u32)> = theirs.iter().map(|s| (s.as_str(), 2)).collect();
    let anonymous = cart(&app, &app.client, "merge", &theirs).await;
    for (client, id, code) in [(&ada, &owned, "SAVE20"), (&app.client, &anonymous, "FLAT10")] {
        let r = client
            .post(app.url(&format!("/t/merge/api/v1/carts/{id}/discount-codes")))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let r =
        ada.post(app.url(&format!("/t/merge/api/v1/carts/{anonymous}/claim"))).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
    let lines = q["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 100, "the 60 of the claimed cart and 40 new ones, no more");
    let v050 = lines.iter().find(|l| l["sku"] == "V050").unwrap();
    assert_eq!(v050["quantity"], 3, "2 + 1 for a SKU both carts held");
    let codes = q["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 2, "{q}");
    assert_eq!(codes.iter().filter(|c| c["applied"] == true).count(), 1, "one code prices: {q}");
    assert!(codes.iter().any(|c| c["reason"].as_str().is_some_and(|r| r.contains("combined"))), "{q}");
    app.stop().await;
}

/// Signs `email` in on the tenant's JSON API with a fresh cookie jar.
async fn customer(app: &TestApp, slug: &str, email: &str) -> Client {
    let client = jar();
    let r = client
        .post(app.url(&format!("/t/{slug}/api/v1/login")))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_claims_a_cart_and_nobody_else_can_use_it() {
    let app = spawn().await;
    store(&app, "shop").await;
    create_user(&app, "shop", "ada@example.com").await;
    create_user(&app, "shop", "bob@example.com").await;
    let ada = customer(&app, "shop", "ada@example.com").await;
    let bob = customer(&app, "shop", "bob@example.com").await;

    // Ada fills a cart while signed in (hers), then one anonymously on another device, and claims that one.
    let owned = cart(&app, &ada, "shop", &[("BOLT", 3), ("BOX", 1)]).await;
    let (_, q) = get_cart(&app, &ada, "shop", &owned).await;
    assert_eq!(q["owned"], true);
    let anonymous = cart(&app, &app.client, "shop", &[("BOLT", 2)]).await;
    let claim = |client: &Client, id: &str| {
        client.post(app.url(&format!("/t/shop/api/v1/carts/{id}/claim"))).json(&json!({})).send()
    };
    // Bob cannot read, change or claim Ada's cart: to him it does not exist.
    assert_eq!(get_cart(&app, &bob, "shop", &owned).await.0, 404);
    assert_eq!(claim(&bob, &owned).await.unwrap().status(), 404);
    let r = bob
        .post(app.url(&format!("/t/shop/api/v1/carts/{owned}/lines")))
        .json(&json!({"sku": "BOX", "quantity": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Nor can anyone holding the id without signing in.
    assert_eq!(get_cart(&app, &app.client, "shop", &owned).await.0, 404);
    // Claiming needs a signed-in customer, and a cookie claim without a JSON body needs the CSRF header.
    let r = app.client.post(app.url(&format!("/t/shop/api/v1/carts/{anonymous}/claim"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = ada.post(app.url(&format!("/t/shop/api/v1/carts/{anonymous}/claim"))).send().await.unwrap();
    assert_eq!(r.status(), 403, "a body-less cookie write without X-CSRF-Token");

    let r = claim(&ada, &anonymous).await.unwrap();
    assert_eq!(r.status(), 200);
    let q: Value = r.json().await.unwrap();
    let lines: Vec<(String, i64)> = q["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["sku"].as_str().unwrap().to_owned(), l["quantity"].as_i64().unwrap()))
        .collect();
    assert!(lines.contains(&("BOLT".into(), 5)) && lines.contains(&("BOX".into(), 1)), "merged: {lines:?}");
    assert_eq!((q["owned"].as_bool(), q["total"].as_i64()), (Some(true), Some(5 * 200 + 1000)));
    // The old cart was merged away; the claimed one is Ada's only.
    assert_eq!(get_cart(&app, &ada, "shop", &owned).await.0, 404);
    assert_eq!(get_cart(&app, &app.client, "shop", &anonymous).await.0, 404);
    assert_eq!(get_cart(&app, &bob, "shop", &anonymous).await.0, 404);

    // Another scheme's credentials (a proxy's Basic auth) are not the customer's: an anonymous cart still answers.
    let plain = cart(&app, &app.client, "shop", &[("BOX", 1)]).await;
    let r = app
        .client
        .get(app.url(&format!("/t/shop/api/v1/carts/{plain}")))
        .basic_auth("proxy", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A bearer token must be valid and account-scoped: a bad one is 401, a third-party openid token 403.
    let r = app
        .client
        .get(app.url(&format!("/t/shop/api/v1/carts/{anonymous}")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let first = create_client(
        &app,
        "shop",
        json!({"name": "Shop", "type": "confidential", "first_party": true, "redirect_uris": [REDIRECT],
               "scopes": ["openid", "account:read", "account:write"]}),
    )
    .await;
    let browser = jar();
    let t = crate::security::code_flow(&app, &browser, "shop", &first, "openid account:read", "ada@example.com").await;
    let reader = t["access_token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .get(app.url(&format!("/t/shop/api/v1/carts/{anonymous}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Ada's account:read token reads her cart");
    let r = app
        .client
        .post(app.url(&format!("/t/shop/api/v1/carts/{anonymous}/lines")))
        .bearer_auth(&reader)
        .json(&json!({"sku": "BOX", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "writing needs account:write");
    app.stop().await;
}
