//! The admin lists and edit forms: users (totals, previous/next, search, sort, status badges), the user profile
//! form (typed input kept, every error next to its field), confirmations a bare POST cannot skip, webhooks whose
//! deliveries fail marked "Failing", the outbox filters, the webhook form's SSRF guard for a tenant admin,
//! phone-sized list pages, and a tenant admin kept out of another tenant's users.

use std::time::{Duration, Instant};

use axum::Router;
use fantoccini::Locator;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, PASSWORD, app_with_operator, signed_in, signed_in_browser, wait_text};
use crate::identity::csrf_of;
use crate::support::{HangUp, TestApp, require_tool, spawn_with};

async fn page(ui: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = ui.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// An attribute value as written in the page, unescaped (askama writes `&` as `&#38;`).
fn unescape(text: &str) -> String {
    text.replace("&#38;", "&").replace("&amp;", "&")
}

/// The href of the link with `rel="{rel}"` (the paging links), unescaped.
fn link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\""))?;
    let start = html[..at].rfind("href=\"")? + 6;
    let end = start + html[start..].find('"')?;
    Some(unescape(&html[start..end]))
}

/// The rows (`<tr data-id=…>`) of the page's tables, in order.
fn rows(html: &str) -> Vec<&str> {
    html.split("<tr data-id=").skip(1).map(|r| r.split("</tr>").next().unwrap()).collect()
}

/// The row of `id`.
fn row<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    rows(html).into_iter().find(|r| r.starts_with(&format!("\"{id}\"")))
}

/// Creates a verified user without a password through the admin API; returns its id.
async fn add_user(app: &TestApp, slug: &str, email: &str) -> String {
    let body = json!({ "email": email, "email_verified": true, "name": "Listed" });
    let (status, user) = app.json(Method::POST, &format!("/admin/api/v1/tenants/{slug}/users"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "create user {email}: {user}");
    user["id"].as_str().unwrap().to_owned()
}

async fn user(app: &TestApp, slug: &str, id: &str) -> Value {
    let (status, user) = app.json(Method::GET, &format!("/admin/api/v1/tenants/{slug}/users/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    user
}

async fn add_webhook(app: &TestApp, slug: &str, url: &str, events: &[&str]) -> String {
    let body = json!({ "url": url, "events": events });
    let (status, hook) = app.json(Method::POST, &format!("/admin/api/v1/tenants/{slug}/webhooks"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    hook["id"].as_str().unwrap().to_owned()
}

async fn add_tenant_admin(app: &TestApp, slug: &str) -> String {
    let email = format!("admin-{slug}@example.com");
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/admins"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    email
}

async fn js(browser: &fantoccini::Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed ({e}): {script}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_list_has_totals_pages_search_sort_and_badges() {
    let app = app_with_operator().await;
    app.create_tenant("listco").await;
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(add_user(&app, "listco", &format!("user{i:03}@example.com")).await);
    }
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/listco/users/{}/disable", ids[7]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ui = signed_in(&app, EMAIL).await;

    // The first page: 50 of 120, a Next link and no Previous one.
    let (status, html) = page(&ui, &app, "/admin/tenants/listco/users").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Showing 1–50 of 120"), "{html}");
    assert_eq!(rows(&html).len(), 50);
    assert!(html.contains("Next →") && link(&html, "prev").is_none(), "{html}");
    let next = link(&html, "next").expect("a Next link");
    let (status, second) = page(&ui, &app, &next).await;
    assert_eq!(status, 200, "{second}");
    assert!(second.contains("Showing 51–100 of 120"), "{second}");
    assert_eq!(rows(&second).len(), 50);
    assert!(link(&second, "prev").is_some(), "{second}");

    // Search narrows to one.
    let (_, found) = page(&ui, &app, "/admin/tenants/listco/users?q=user042").await;
    assert!(found.contains("Showing 1–1 of 1"), "{found}");
    let found_rows = rows(&found);
    assert_eq!(found_rows.len(), 1);
    assert!(found_rows[0].contains("user042@example.com"), "{found}");

    // Sorted by email, descending: the last email first, the header marked, its link turning the order round, and
    // the next page keeping the sort.
    let (_, sorted) = page(&ui, &app, "/admin/tenants/listco/users?sort=email&dir=desc").await;
    assert!(rows(&sorted)[0].contains("user119@example.com"), "{sorted}");
    assert!(sorted.contains("aria-sort=\"descending\"><a href=\""), "{sorted}");
    assert!(unescape(&sorted).contains("sort=email&dir=asc"), "{sorted}");
    let next = link(&sorted, "next").expect("a Next link");
    assert!(next.contains("sort=email") && next.contains("dir=desc"), "{next}");
    let (_, sorted_second) = page(&ui, &app, &next).await;
    assert!(rows(&sorted_second)[0].contains("user069@example.com"), "{sorted_second}");

    // The disabled user has its own badge, and the status filter finds it alone.
    let (_, disabled) = page(&ui, &app, "/admin/tenants/listco/users?q=user007").await;
    let disabled_row = row(&disabled, &ids[7]).expect("the disabled user's row");
    assert!(disabled_row.contains("class=\"badge disabled\">Disabled</span>"), "{disabled_row}");
    let active_row = row(&found, &ids[42]).unwrap();
    assert!(!active_row.contains("Disabled"), "{active_row}");
    let (_, only) = page(&ui, &app, "/admin/tenants/listco/users?status=disabled").await;
    assert!(only.contains("Showing 1–1 of 1") && row(&only, &ids[7]).is_some(), "{only}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_profile_edit_keeps_the_input_and_shows_every_error_by_its_field() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("editco").await;
    crate::oidc::set_settings(&app, "editco", json!({ "custom_fields": [{ "name": "seats", "type": "number" }] }))
        .await;
    let id = add_user(&app, "editco", "ann@example.com").await;
    let (_driver, browser) = signed_in_browser(&app).await;
    browser.goto(&app.url(&format!("/admin/tenants/editco/users/{id}"))).await.unwrap();

    let email = browser.wait().for_element(Locator::Id("email")).await.unwrap();
    email.clear().await.unwrap();
    email.send_keys("not an email").await.unwrap();
    browser.find(Locator::Id("field-seats")).await.unwrap().send_keys("lots").await.unwrap();
    browser.find(Locator::Css("form[action$='/profile'] button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".error-summary", "2 problems").await;
    let fields = js(
        &browser,
        r#"return ['email', 'field-seats'].map(id => {
             const input = document.getElementById(id);
             const about = document.getElementById(input.getAttribute('aria-describedby') || '');
             return { id, value: input.value, invalid: input.getAttribute('aria-invalid'),
                      message: about ? about.textContent.trim() : null };
           });"#,
    )
    .await;
    assert_eq!(fields[0]["value"], "not an email", "the typed email is kept: {fields}");
    assert_eq!(fields[1]["value"], "lots", "the typed number is kept: {fields}");
    for field in fields.as_array().unwrap() {
        assert_eq!(field["invalid"], "true", "{field}");
        assert!(field["message"].as_str().is_some_and(|m| !m.is_empty()), "described by its message: {field}");
    }
    assert!(fields[1]["message"].as_str().unwrap().contains("must be a number"), "{fields}");
    let saved = user(&app, "editco", &id).await;
    assert_eq!(saved["email"], "ann@example.com", "nothing saved");

    // A valid edit saves.
    let email = browser.find(Locator::Id("email")).await.unwrap();
    email.clear().await.unwrap();
    email.send_keys("ann.new@example.com").await.unwrap();
    let seats = browser.find(Locator::Id("field-seats")).await.unwrap();
    seats.clear().await.unwrap();
    seats.send_keys("3").await.unwrap();
    let name = browser.find(Locator::Id("name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys("Ann New").await.unwrap();
    browser.find(Locator::Css("form[action$='/profile'] button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Profile saved").await;
    let saved = user(&app, "editco", &id).await;
    assert_eq!(saved["email"], "ann.new@example.com", "{saved}");
    assert_eq!(saved["name"], "Ann New", "{saved}");
    assert_eq!(saved["fields"], json!({ "seats": 3 }), "{saved}");
    assert_eq!(saved["email_verified"], true, "{saved}");
    browser.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consequential_actions_need_the_confirmation_step() {
    let app = app_with_operator().await;
    app.create_tenant("sureco").await;
    let id = add_user(&app, "sureco", "bea@example.com").await;
    let ui = signed_in(&app, EMAIL).await;
    let (status, html) = page(&ui, &app, &format!("/admin/tenants/sureco/users/{id}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<details class=\"confirm\">") && html.contains("Disable user…"), "{html}");
    let csrf = csrf_of(&html);

    // A POST without the confirmation changes nothing; with it, the user is disabled.
    let disable = app.url(&format!("/admin/tenants/sureco/users/{id}/disable"));
    let r = ui.post(&disable).form(&[("csrf_token", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.ends_with("done=unconfirmed"), "{back}");
    assert_eq!(user(&app, "sureco", &id).await["status"], "active");
    let (_, told) = page(&ui, &app, &back).await;
    assert!(told.contains("Nothing was changed"), "{told}");
    let r = ui.post(&disable).form(&[("csrf_token", csrf.as_str()), ("confirm", "yes")]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(user(&app, "sureco", &id).await["status"], "disabled");
    let (_, html) = page(&ui, &app, &format!("/admin/tenants/sureco/users/{id}")).await;
    assert!(html.contains("class=\"badge disabled\">Disabled</span>"), "{html}");

    // Deleting, too.
    let delete = app.url(&format!("/admin/tenants/sureco/users/{id}/delete"));
    let r = ui.post(&delete).form(&[("csrf_token", csrf.as_str()), ("confirm", "no")]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    user(&app, "sureco", &id).await;

    // And for webhooks: disabling and deleting.
    let hook = add_webhook(&app, "sureco", "http://127.0.0.1:9/hook", &["user.created"]).await;
    for action in ["disable", "delete"] {
        let url = app.url(&format!("/admin/tenants/sureco/webhooks/{hook}/{action}"));
        let r = ui.post(&url).form(&[("csrf_token", csrf.as_str())]).send().await.unwrap();
        assert_eq!(r.status(), 303, "{action}");
        let (status, webhook) =
            app.json(Method::GET, &format!("/admin/api/v1/tenants/sureco/webhooks/{hook}"), None).await;
        assert_eq!((status, webhook["enabled"].as_bool()), (StatusCode::OK, Some(true)), "{action}: {webhook}");
    }
    let url = app.url(&format!("/admin/tenants/sureco/webhooks/{hook}/disable"));
    let r = ui.post(&url).form(&[("csrf_token", csrf.as_str()), ("confirm", "yes")]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let (_, webhook) = app.json(Method::GET, &format!("/admin/api/v1/tenants/sureco/webhooks/{hook}"), None).await;
    assert_eq!(webhook["enabled"], false, "{webhook}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_whose_deliveries_fail_is_marked_failing() {
    let app = app_with_operator().await;
    app.create_tenant("failco").await;
    let down = HangUp::start().await;
    let closed = format!("http://127.0.0.1:{}/hook", down.port);
    let failing = add_webhook(&app, "failco", &closed, &["webhook.ping"]).await;
    let quiet = add_webhook(&app, "failco", "https://quiet.example/hook", &["user.deleted"]).await;
    let r =
        app.admin(Method::POST, &format!("/admin/api/v1/tenants/failco/webhooks/{failing}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let ui = signed_in(&app, EMAIL).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let html = loop {
        app.run_outbox().await;
        let (status, html) = page(&ui, &app, "/admin/tenants/failco/webhooks").await;
        assert_eq!(status, 200, "{html}");
        if row(&html, &failing).is_some_and(|r| r.contains("badge failing")) {
            break html;
        }
        assert!(Instant::now() < deadline, "the failing webhook is not marked: {html}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(html.contains("Showing 1–2 of 2"), "{html}");
    assert!(!row(&html, &quiet).unwrap().contains("Failing"), "no deliveries, not failing: {html}");

    // Its page says so, with the delivery's error.
    let (_, hook_page) = page(&ui, &app, &format!("/admin/tenants/failco/webhooks/{failing}")).await;
    assert!(hook_page.contains("badge failing"), "{hook_page}");
    assert!(hook_page.contains("error-text"), "the delivery's error is shown: {hook_page}");

    // Search and sort of the webhooks list.
    let (_, searched) = page(&ui, &app, "/admin/tenants/failco/webhooks?q=quiet").await;
    assert_eq!(rows(&searched).len(), 1, "{searched}");
    assert!(row(&searched, &quiet).is_some(), "{searched}");
    let (_, by_url) = page(&ui, &app, "/admin/tenants/failco/webhooks?sort=url&dir=desc").await;
    assert!(rows(&by_url)[0].starts_with(&format!("\"{quiet}\"")), "https://q… after http://1…: {by_url}");

    // The outbox: searched by event and filtered by state.
    let (_, outbox) = page(&ui, &app, "/admin/tenants/failco/outbox?q=webhook.ping").await;
    assert!(outbox.contains("Showing 1–1 of 1"), "{outbox}");
    let (_, sent) = page(&ui, &app, "/admin/tenants/failco/outbox?status=sent&q=webhook.ping").await;
    assert!(rows(&sent).is_empty(), "{sent}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_point_a_webhook_inside() {
    let app = spawn_with(
        |c| {
            c.admin_email = Some(EMAIL.into());
            c.admin_password = Some(gatehouse::config::Secret::new(PASSWORD));
            c.webhook_allow_private = false;
        },
        Router::new(),
    )
    .await;
    app.create_tenant("guardco").await;
    let admin = add_tenant_admin(&app, "guardco").await;
    let hook = add_webhook(&app, "guardco", "https://93.184.216.34/hooks/in", &["user.created"]).await;
    let ui = signed_in(&app, &admin).await;
    let path = format!("/admin/tenants/guardco/webhooks/{hook}");
    let (status, html) = page(&ui, &app, &path).await;
    assert_eq!(status, 200, "{html}");
    let csrf = csrf_of(&html);

    let r = ui
        .post(app.url(&path))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("url", "http://127.0.0.1:8080/internal"),
            ("events", "user.created"),
            ("events", "user.deleted"),
            ("description", "moved inside"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"value="http://127.0.0.1:8080/internal" aria-invalid="true" aria-describedby="url-error""#),
        "{html}"
    );
    let message = html.split(r#"id="url-error">"#).nth(1).expect("the URL's error").split("</p>").next().unwrap();
    assert!(message.contains("loopback"), "{message}");
    assert!(html.contains(r#"value="moved inside""#), "the description is kept: {html}");
    assert!(html.contains(r#"value="user.deleted" checked"#), "the ticked events are kept: {html}");
    let (_, webhook) = app.json(Method::GET, &format!("/admin/api/v1/tenants/guardco/webhooks/{hook}"), None).await;
    assert_eq!(webhook["url"], "https://93.184.216.34/hooks/in", "{webhook}");

    // A public URL saves.
    let r = ui
        .post(app.url(&path))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("url", "https://93.184.216.35/hooks/new"),
            ("events", "user.deleted"),
            ("description", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let (_, webhook) = app.json(Method::GET, &format!("/admin/api/v1/tenants/guardco/webhooks/{hook}"), None).await;
    assert_eq!(webhook["url"], "https://93.184.216.35/hooks/new", "{webhook}");
    assert_eq!(webhook["events"], json!(["user.deleted"]), "{webhook}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_edit_another_tenants_users() {
    let app = app_with_operator().await;
    for slug in ["aco", "bco"] {
        app.create_tenant(slug).await;
    }
    let theirs = add_user(&app, "aco", "vic@example.com").await;
    let admin = add_tenant_admin(&app, "bco").await;
    let ui = signed_in(&app, &admin).await;
    let (status, html) = page(&ui, &app, "/admin/tenants/bco/users").await;
    assert_eq!(status, 200, "{html}");
    let csrf = csrf_of(&html);

    let (status, _) = page(&ui, &app, &format!("/admin/tenants/aco/users/{theirs}")).await;
    assert_eq!(status, 403);
    let r = ui
        .post(app.url(&format!("/admin/tenants/aco/users/{theirs}/profile")))
        .form(&[("csrf_token", csrf.as_str()), ("email", "owned@example.com"), ("name", "Owned")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Not allowed"));
    let r = ui
        .post(app.url(&format!("/admin/tenants/aco/users/{theirs}/disable")))
        .form(&[("csrf_token", csrf.as_str()), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let vic = user(&app, "aco", &theirs).await;
    assert_eq!((vic["email"].as_str(), vic["status"].as_str()), (Some("vic@example.com"), Some("active")), "{vic}");
    app.stop().await;
}
