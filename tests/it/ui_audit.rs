//! The admin UI audit's findings, checked in headless Chromium: checkboxes sit left of their label text and selects
//! stay inside their grid column; no page scrolls sideways in a phone-sized window; the tenant tabs come in labelled
//! groups with a `<details>` menu on phones; a skip link is the first Tab stop.

use fantoccini::Locator;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use reqwest::Method;
use serde_json::{Value, json};

use crate::admin_ui::{app_with_operator, signed_in_browser, wait_text};
use crate::support::require_tool;

/// Runs `script` in the page and returns its answer.
async fn js(browser: &fantoccini::Client, script: &str, args: Vec<Value>) -> Value {
    browser.execute(script, args).await.unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
}

/// One key press (down and up) sent to whatever has the focus.
async fn press(browser: &fantoccini::Client, key: Key) {
    let keys = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down { value: key.into() })
        .then(KeyAction::Up { value: key.into() });
    browser.perform_actions(keys).await.unwrap();
}

/// For every checkbox matching `arguments[0]`: its box and the first line of its label's text after it.
const CHECKBOX_GEOMETRY: &str = r#"
const out = [];
for (const box of document.querySelectorAll(arguments[0])) {
  const label = box.closest('label');
  const range = document.createRange();
  range.setStartAfter(box);
  range.setEndAfter(label.lastChild);
  const text = [...range.getClientRects()].find(r => r.width > 0);
  const b = box.getBoundingClientRect();
  out.push({ name: box.name, box_right: b.right, box_width: b.width, box_mid: (b.top + b.bottom) / 2,
             text_left: text.left, text_mid: (text.top + text.bottom) / 2, label: label.textContent.trim() });
}
return out;
"#;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkboxes_sit_left_of_their_labels() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("boxco").await;
    let (_driver, browser) = signed_in_browser(&app).await;
    browser.set_window_size(1280, 900).await.unwrap();

    // (page, checkboxes on it): the new-user form, sign-in settings, webhook events (a <code> and a <small> in the
    // label), the new-client form (grant types in a fieldset, two more checkboxes in .field divs).
    let pages = [
        ("/admin/tenants/boxco/users", "form[method=post] input[type=checkbox]", 2),
        ("/admin/tenants/boxco/sign-in", "form[action$='/sign-in'] input[type=checkbox]", 2),
        ("/admin/tenants/boxco/webhooks", "fieldset.events input[type=checkbox]", 1),
        ("/admin/tenants/boxco/clients", "form[action$='/clients'] input[type=checkbox]", 5),
    ];
    for (path, selector, at_least) in pages {
        browser.goto(&app.url(path)).await.unwrap();
        browser.wait().for_element(Locator::Css(selector)).await.unwrap();
        let boxes = js(&browser, CHECKBOX_GEOMETRY, vec![json!(selector)]).await;
        let boxes = boxes.as_array().unwrap();
        assert!(boxes.len() >= at_least, "{path}: {boxes:?}");
        for b in boxes {
            let what = format!("{path}: {b}");
            assert!(num(&b["box_width"]) < 40.0, "a checkbox is a small box, not a row: {what}");
            assert!(num(&b["box_right"]) <= num(&b["text_left"]) + 1.0, "the box is left of its text: {what}");
            assert!((num(&b["box_mid"]) - num(&b["text_mid"])).abs() <= 12.0, "on the text's line: {what}");
        }
    }

    // A <select> looks like the text inputs and stays inside its grid column (the long "Encryption" options
    // overflowed into the next column).
    browser.goto(&app.url("/admin/tenants/boxco/email")).await.unwrap();
    browser.wait().for_element(Locator::Id("tls")).await.unwrap();
    let select = js(
        &browser,
        r#"const s = document.getElementById('tls'), field = s.closest('.field'), input = document.getElementById('port');
           const style = e => getComputedStyle(e);
           return { select_right: s.getBoundingClientRect().right, field_right: field.getBoundingClientRect().right,
                    select_height: s.getBoundingClientRect().height, input_height: input.getBoundingClientRect().height,
                    select_border: style(s).borderTopColor + ' ' + style(s).borderTopWidth,
                    input_border: style(input).borderTopColor + ' ' + style(input).borderTopWidth };"#,
        vec![],
    )
    .await;
    assert!(num(&select["select_right"]) <= num(&select["field_right"]) + 0.5, "the select overflows: {select}");
    assert!((num(&select["select_height"]) - num(&select["input_height"])).abs() <= 2.0, "{select}");
    assert_eq!(select["select_border"], select["input_border"], "{select}");
    browser.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_scrolls_sideways_on_a_phone() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("phoneco").await;
    app.create_token("deploy script for the phone company", "tenant:phoneco").await;
    let user = crate::support::create_user(&app, "phoneco", "ada.lovelace.with.a.long.address@example.com").await;
    let user_id = user["id"].as_str().unwrap();
    let client = crate::oidc::create_client(
        &app,
        "phoneco",
        json!({
            "name": "Phone company web shop", "type": "confidential",
            "redirect_uris": ["https://shop.phone-company.example/oauth2/callback/after-sign-in"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scopes": ["openid", "profile", "email", "offline_access"]
        }),
    )
    .await;
    let client_id = client["client_id"].as_str().unwrap();
    let (status, hook) = app
        .json(
            Method::POST,
            "/admin/api/v1/tenants/phoneco/webhooks",
            Some(json!({
                "url": "http://127.0.0.1:9/a/rather/long/path/for/the/webhook/receiver?with=a&query=string&that=goes&on=and-on",
                "events": ["webhook.ping", "user.created", "user.deleted"],
                "description": "a receiver that refuses connections, so its delivery stays listed with an error"
            })),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_str().unwrap();
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/phoneco/webhooks/{hook_id}/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (status, product) = app
        .json(
            Method::POST,
            "/admin/api/v1/tenants/phoneco/products",
            Some(json!({
                "handle": "linen-tee-with-a-rather-long-handle", "title": "Linen Tee", "options": ["size"],
                "variants": [{"sku": "TEE-M", "price": 1900, "option_values": {"size": "M"}, "stock": 3}]
            })),
        )
        .await;
    assert!(status.is_success(), "{product}");

    let (_driver, browser) = signed_in_browser(&app).await;
    browser.set_window_size(390, 844).await.unwrap();
    let pages = [
        "/admin".to_owned(),
        "/admin/tenants".to_owned(),
        "/admin/tokens".to_owned(),
        "/admin/tenants/phoneco".to_owned(),
        "/admin/tenants/phoneco/users".to_owned(),
        "/admin/tenants/phoneco/users?sort=email&dir=desc&q=example".to_owned(),
        format!("/admin/tenants/phoneco/users/{user_id}"),
        "/admin/tenants/phoneco/sign-in".to_owned(),
        "/admin/tenants/phoneco/clients".to_owned(),
        format!("/admin/tenants/phoneco/clients/{client_id}"),
        "/admin/tenants/phoneco/email".to_owned(),
        "/admin/tenants/phoneco/webhooks".to_owned(),
        format!("/admin/tenants/phoneco/webhooks/{hook_id}"),
        "/admin/tenants/phoneco/audit".to_owned(),
        "/admin/tenants/phoneco/outbox".to_owned(),
        "/admin/tenants/phoneco/store/products".to_owned(),
    ];
    for path in &pages {
        browser.goto(&app.url(path)).await.unwrap();
        browser.wait().for_element(Locator::Css("main")).await.unwrap();
        let m = js(
            &browser,
            "const d = document.documentElement; \
             const wide = [...document.querySelectorAll('body *')] \
               .filter(e => e.getBoundingClientRect().right > d.clientWidth + 1) \
               .slice(0, 6).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)); \
             return { scroll: d.scrollWidth, client: d.clientWidth, inner: window.innerWidth, \
                      tables: document.querySelectorAll('main table').length, wide };",
            vec![],
        )
        .await;
        assert!(num(&m["inner"]) <= 400.0, "the window is phone-sized: {m}");
        if num(&m["scroll"]) > num(&m["client"]) {
            let _ = js(&browser, "window.scrollTo(1000, 0); return 0;", vec![]).await;
            if let Ok(png) = browser.screenshot().await {
                let _ =
                    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-phone-wide.png"), png);
            }
        }
        assert!(num(&m["scroll"]) <= num(&m["client"]), "{path} scrolls sideways: {m}");
        // The pages whose tables overflowed before really have rows here.
        if path.ends_with(hook_id) || path.ends_with("/clients") || path.ends_with("/outbox") {
            assert!(num(&m["tables"]) >= 1.0, "{path} lists something: {m}");
        }
    }
    if let Ok(png) = browser.screenshot().await {
        let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-phone.png"), png);
    }
    browser.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tabs_are_grouped_and_a_skip_link_comes_first() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("tabco").await;
    let (_driver, browser) = signed_in_browser(&app).await;
    let base = "/admin/tenants/tabco";
    let hrefs: Vec<String> = [
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
        "/store/products",
        "/store/orders",
        "/store/categories",
        "/store/import",
        "/store/rules",
        "/store/quote",
        "/plugins",
    ]
    .iter()
    .map(|p| format!("{base}{p}"))
    .collect();

    // Wide: the grouped tabs, in at most two rows, every section linked; the menu hidden.
    browser.set_window_size(1280, 900).await.unwrap();
    browser.goto(&app.url(&format!("{base}/users"))).await.unwrap();
    browser.wait().for_element(Locator::Css(".tenant-nav")).await.unwrap();
    let wide = js(
        &browser,
        r#"const tabs = document.querySelector('.tenant-nav .tabs');
           const links = [...tabs.querySelectorAll('a')];
           return {
             groups: [...tabs.querySelectorAll('[role=group]')]
               .map(g => document.getElementById(g.getAttribute('aria-labelledby')).textContent.trim()),
             hrefs: links.map(a => a.getAttribute('href')),
             rows: new Set(links.map(a => Math.round(a.getBoundingClientRect().bottom))).size,
             current: [...tabs.querySelectorAll('a[aria-current=page]')].map(a => a.getAttribute('href')),
             tabs_visible: tabs.checkVisibility(),
             menu_visible: document.querySelector('details.tabmenu').checkVisibility(),
           };"#,
        vec![],
    )
    .await;
    assert_eq!(
        wide["groups"],
        json!(["Users & access", "Sign-in & OAuth", "Messaging", "Store", "Extensions"]),
        "{wide}"
    );
    assert_eq!(wide["hrefs"], json!(hrefs), "{wide}");
    assert!(num(&wide["rows"]) <= 2.0, "the tabs fit in two rows at 1280 px: {wide}");
    assert_eq!(wide["current"], json!([format!("{base}/users")]), "{wide}");
    assert_eq!((wide["tabs_visible"].as_bool(), wide["menu_visible"].as_bool()), (Some(true), Some(false)), "{wide}");

    // The first Tab stop is the skip link, shown when focused; Enter moves the focus past the navigation.
    browser.goto(&app.url(&format!("{base}/users"))).await.unwrap();
    browser.wait().for_element(Locator::Css(".tenant-nav")).await.unwrap();
    press(&browser, Key::Tab).await;
    let focused = js(
        &browser,
        "const a = document.activeElement, r = a.getBoundingClientRect(); \
         return { text: a.textContent.trim(), href: a.getAttribute('href'), shown: r.top >= 0 && r.height > 0 };",
        vec![],
    )
    .await;
    assert_eq!(focused, json!({ "text": "Skip to content", "href": "#main", "shown": true }));
    press(&browser, Key::Enter).await;
    press(&browser, Key::Tab).await;
    let next = js(&browser, "return document.activeElement.getAttribute('href');", vec![]).await;
    assert_eq!(next, json!("/admin/tenants"), "after the skip link, Tab goes on inside the content (the breadcrumbs)");
    let crumbs = js(&browser, "return document.activeElement.closest('nav').getAttribute('aria-label');", vec![]).await;
    assert_eq!(crumbs, json!("Breadcrumb"));

    // Phone: one closed menu naming the current section; opened, its links work.
    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(&app.url(&format!("{base}/users"))).await.unwrap();
    browser.wait().for_element(Locator::Css("details.tabmenu")).await.unwrap();
    let state = r#"const menu = document.querySelector('details.tabmenu');
        return { open: menu.open, menu_visible: menu.checkVisibility(),
                 tabs_visible: document.querySelector('.tenant-nav .tabs').checkVisibility(),
                 summary: menu.querySelector('summary').textContent.trim(),
                 link_visible: menu.querySelector('a[href$="/roles"]').checkVisibility(),
                 links: menu.querySelectorAll('a').length };"#;
    let closed = js(&browser, state, vec![]).await;
    assert_eq!(
        closed,
        json!({ "open": false, "menu_visible": true, "tabs_visible": false, "summary": "Sections: Users",
                "link_visible": false, "links": hrefs.len() })
    );
    browser.find(Locator::Css("details.tabmenu > summary")).await.unwrap().click().await.unwrap();
    let open = js(&browser, state, vec![]).await;
    assert_eq!((open["open"].as_bool(), open["link_visible"].as_bool()), (Some(true), Some(true)), "{open}");
    browser.find(Locator::Css("details.tabmenu a[href$='/roles']")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "details.tabmenu > summary", "Sections: Roles").await;
    browser.close().await.unwrap();
    app.stop().await;
}
