//! The admin UI's Store tab in headless Chromium: products, stock, categories and CSV import; the pricing rules
//! and the quote sandbox; the CSRF-negative checks of their forms.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_ui::{app_with_operator, signed_in_browser, wait_text};
use crate::support::require_tool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_pages_in_the_browser() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("shopco").await;
    let (_driver, browser) = signed_in_browser(&app).await;

    // A category, then a product in it with two variants, from the forms.
    browser.goto(&app.url("/admin/tenants/shopco/store/categories")).await.unwrap();
    browser.wait().for_element(Locator::Id("handle")).await.unwrap().send_keys("shirts").await.unwrap();
    browser.find(Locator::Id("title")).await.unwrap().send_keys("Shirts").await.unwrap();
    browser.find(Locator::Css("#category-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#categories", "shirts").await;

    browser.goto(&app.url("/admin/tenants/shopco/store/products/new")).await.unwrap();
    let form = browser.wait().for_element(Locator::Id("product-form")).await.unwrap();
    browser.find(Locator::Id("handle")).await.unwrap().send_keys("linen-tee").await.unwrap();
    browser.find(Locator::Id("title")).await.unwrap().send_keys("Linen Tee").await.unwrap();
    browser.find(Locator::Id("options")).await.unwrap().send_keys("size").await.unwrap();
    browser.find(Locator::Css("#categories option")).await.unwrap().click().await.unwrap();
    // A bad SKU first: the form comes back with the reason and what was typed.
    browser.find(Locator::Id("variants")).await.unwrap().send_keys("TEE/M | 19.00 | size=M | 5").await.unwrap();
    form.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".alert", "sku").await;
    let kept = browser.find(Locator::Id("title")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(kept, "Linen Tee");
    let variants = browser.find(Locator::Id("variants")).await.unwrap();
    variants.clear().await.unwrap();
    variants.send_keys("TEE-M | 19.00 | size=M | 5\nTEE-L | 21.50 | size=L | 0").await.unwrap();
    browser.find(Locator::Css("#product-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#variants-table", "TEE-L").await;
    assert_eq!(browser.find(Locator::Id("stock-TEE-M")).await.unwrap().text().await.unwrap(), "5");
    let api: Value = app
        .admin(Method::GET, "/admin/api/v1/tenants/shopco/products?q=linen")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["items"][0]["variants"][1]["price"], 2150, "{api}");
    assert_eq!(api["items"][0]["category_ids"].as_array().unwrap().len(), 1);

    // Stock changes through the ledger form, and the movements page shows it.
    browser.find(Locator::Id("delta-TEE-M")).await.unwrap().send_keys("-2").await.unwrap();
    browser.find(Locator::Id("reason-TEE-M")).await.unwrap().send_keys("damaged").await.unwrap();
    browser.find(Locator::Css("form[action$='/inventory/TEE-M/adjust'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#stock-TEE-M", "3").await;
    browser.goto(&app.url("/admin/tenants/shopco/store/inventory/TEE-M")).await.unwrap();
    wait_text(&browser, "main", "damaged").await;

    // A CSV import from a file, followed on its page: the page refreshes itself until the job is done.
    let mut csv = String::from("handle,title,option1_name,option1_value,sku,price,stock\n");
    for p in 0..3000 {
        for size in ["S", "M", "L"] {
            let title = if size == "S" { format!("Import {p}") } else { String::new() };
            csv.push_str(&format!("imp-{p},{title},size,{size},IMP-{p}-{size},9.99,2\n"));
        }
    }
    csv.push_str("imp-bad,Bad,size,S,IMP/BAD,1,1\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.csv");
    std::fs::write(&file, csv).unwrap();
    browser.goto(&app.url("/admin/tenants/shopco/store/import")).await.unwrap();
    browser.wait().for_element(Locator::Id("csv")).await.unwrap().send_keys(&file.display().to_string()).await.unwrap();
    browser.find(Locator::Css("#mode option[value=skip_bad_rows]")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css("#import-form button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("import-progress")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = browser.find(Locator::Id("import-status")).await;
        if let Ok(el) = status
            && el.text().await.is_ok_and(|t| t == "done")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the import page never showed done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bar = browser.find(Locator::Id("import-progress")).await.unwrap();
    assert_eq!(bar.attr("value").await.unwrap(), bar.attr("max").await.unwrap(), "a finished import fills the bar");
    wait_text(&browser, "#import-errors", "IMP/BAD").await;
    let counts = browser.find(Locator::Id("import-counts")).await.unwrap().text().await.unwrap();
    assert!(counts.contains("9001 of 9001 rows") && counts.contains("3000 products created"), "{counts}");

    // The session cookie without the CSRF token changes nothing in the store: forms, the import, the JSON API.
    let cookie = browser.get_named_cookie("gh_admin").await.unwrap();
    let cookie_header = format!("gh_admin={}", cookie.value());
    for (path, form) in [
        ("/admin/tenants/shopco/store/inventory/TEE-M/adjust", vec![("delta", "100"), ("reason", "forged")]),
        ("/admin/tenants/shopco/store/categories", vec![("handle", "forged"), ("title", "Forged")]),
        (
            "/admin/tenants/shopco/store/products/new",
            vec![("handle", "forged"), ("title", "F"), ("variants", "F-1 | 1")],
        ),
    ] {
        let r = app.client.post(app.url(path)).header("cookie", &cookie_header).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = app
        .client
        .post(app.url("/admin/api/v1/tenants/shopco/inventory/TEE-M/adjust"))
        .header("cookie", &cookie_header)
        .json(&json!({"delta": 100, "reason": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let stock: Value = app
        .admin(Method::GET, "/admin/api/v1/tenants/shopco/inventory/TEE-M/movements?limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stock["items"][0]["stock_after"], 3, "no forged adjustment landed");
    browser.close().await.unwrap();
    app.stop().await;
}

/// The pricing rules and the quote sandbox in Chromium: a percent code and a tax rate created from the rules
/// page's forms (a refused rate explained next to its form, input kept), then a cart priced in the sandbox with
/// each adjustment's source and the hand-computed total. Forms without the CSRF token create nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_rules_and_quote_sandbox_in_the_browser() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("priceco").await;
    // The store's currency is the default, USD (2 decimals).
    let (status, body) = app
        .json(
            Method::POST,
            "/admin/api/v1/tenants/priceco/products",
            Some(json!({"handle": "tee", "title": "Tee", "variants": [{"sku": "TEE-M", "price": 2000, "stock": 10}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_driver, browser) = signed_in_browser(&app).await;

    // A 10 % code from the rules page.
    browser.goto(&app.url("/admin/tenants/priceco/store/rules")).await.unwrap();
    browser.wait().for_element(Locator::Id("code-code")).await.unwrap().send_keys("SAVE10").await.unwrap();
    browser.find(Locator::Css("#code-kind option[value=percent]")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Id("code-value")).await.unwrap().send_keys("10").await.unwrap();
    browser.find(Locator::Css("#code-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Discount code created").await;
    wait_text(&browser, "#discount-codes", "SAVE10").await;

    // A tax rate: an unknown country first, refused next to the form with what was typed kept.
    browser.find(Locator::Id("tax-country")).await.unwrap().send_keys("ZZ").await.unwrap();
    browser.find(Locator::Id("tax-rate_bps")).await.unwrap().send_keys("1900").await.unwrap();
    browser.find(Locator::Id("tax-name")).await.unwrap().send_keys("VAT").await.unwrap();
    browser.find(Locator::Css("#tax-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "#tax-error", "ISO 3166-1").await;
    let kept = browser.find(Locator::Id("tax-name")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(kept, "VAT");
    let country = browser.find(Locator::Id("tax-country")).await.unwrap();
    country.clear().await.unwrap();
    country.send_keys("DE").await.unwrap();
    browser.find(Locator::Css("#tax-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Tax rate created").await;
    wait_text(&browser, "#tax-rates", "19 %").await;

    // The sandbox: a bad quantity is refused with its line number and the input kept; then the cart is priced.
    browser.goto(&app.url("/admin/tenants/priceco/store/quote")).await.unwrap();
    browser.wait().for_element(Locator::Id("lines")).await.unwrap().send_keys("TEE-M two").await.unwrap();
    browser.find(Locator::Id("codes")).await.unwrap().send_keys("SAVE10").await.unwrap();
    browser.find(Locator::Id("country")).await.unwrap().send_keys("DE").await.unwrap();
    browser.find(Locator::Css("#quote-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".alert", "line 1").await;
    let codes = browser.find(Locator::Id("codes")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(codes, "SAVE10");
    let lines = browser.find(Locator::Id("lines")).await.unwrap();
    lines.clear().await.unwrap();
    lines.send_keys("TEE-M 2").await.unwrap();
    browser.find(Locator::Css("#quote-form button[type=submit]")).await.unwrap().click().await.unwrap();
    // 2 × 20.00 = 40.00; 10 % off → 36.00; 19 % tax on top → 6.84; total 42.84.
    let total = wait_text(&browser, "#quote-total", "42.84").await;
    assert_eq!(total, "42.84 USD");
    let table = browser.find(Locator::Id("quote-lines")).await.unwrap().text().await.unwrap();
    assert!(table.contains("code:SAVE10") && table.contains("tax:DE"), "{table}");
    assert!(table.contains("-4.00 USD") && table.contains("6.84 USD"), "{table}");
    let plugins = browser.find(Locator::Id("quote-plugins")).await.unwrap().text().await.unwrap();
    assert!(plugins.contains("No active pricing plugins"), "{plugins}");
    assert!(browser.find(Locator::Id("quote-degraded")).await.is_err(), "no plugin, nothing left out");
    browser.find(Locator::Id("quote-adjustments")).await.unwrap();

    // The session cookie without the CSRF token creates and deletes nothing.
    let cookie = browser.get_named_cookie("gh_admin").await.unwrap();
    let cookie_header = format!("gh_admin={}", cookie.value());
    for (path, form) in [
        ("/admin/tenants/priceco/store/rules/codes", vec![("code", "FORGED"), ("kind", "percent"), ("value", "50")]),
        (
            "/admin/tenants/priceco/store/rules/codes",
            vec![("csrf_token", "not-the-token"), ("code", "FORGED"), ("kind", "percent"), ("value", "50")],
        ),
        (
            "/admin/tenants/priceco/store/rules/tax-rates",
            vec![("country", "FR"), ("rate_bps", "2000"), ("name", "TVA")],
        ),
        ("/admin/tenants/priceco/store/rules/codes/SAVE10/delete", vec![]),
    ] {
        let r = app.client.post(app.url(path)).header("cookie", &cookie_header).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let codes: Value = app
        .admin(Method::GET, "/admin/api/v1/tenants/priceco/discount-codes")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = codes["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "no forged code: {codes}");
    let code = (items[0]["code"].as_str(), items[0]["kind"].as_str(), items[0]["value"].as_i64());
    assert_eq!(code, (Some("SAVE10"), Some("percent"), Some(10)));
    let rates: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/priceco/tax-rates").send().await.unwrap().json().await.unwrap();
    assert_eq!(rates["items"].as_array().unwrap().len(), 1, "no forged rate: {rates}");
    assert_eq!(rates["items"][0]["rate_bps"], 1900);
    browser.close().await.unwrap();
    app.stop().await;
}
