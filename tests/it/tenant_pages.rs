//! Tenant pages over plain HTTP: the hosted pages of a suspended or unknown tenant (a localised page for
//! browsers, the JSON error for API clients), and the admin UI's tenant overview (counts, warnings, recent
//! activity, the settings form with CSRF, who may open it, where a tenant admin lands).

use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::admin_ui::{EMAIL, PASSWORD, app_with_operator, signed_in};
use crate::identity::csrf_of;
use crate::support::{HangUp, TestApp, create_user, spawn_app};

/// What Chromium sends when it navigates.
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn get(app: &TestApp, path: &str, accept: &str, language: &str) -> reqwest::Response {
    app.client.get(app.url(path)).header("accept", accept).header("accept-language", language).send().await.unwrap()
}

async fn page(ui: &Client, app: &TestApp, path: &str) -> (u16, String) {
    let r = ui.get(app.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(ui: &Client, app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    ui.post(app.url(path)).form(fields).send().await.unwrap()
}

async fn tenant(app: &TestApp, slug: &str) -> Value {
    app.admin(Method::GET, &format!("/admin/api/v1/tenants/{slug}")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn suspended_and_unknown_tenants_show_browsers_a_page() {
    let app = spawn_app().await;
    app.create_tenant("pauseco").await;
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/pauseco")
        .json(&json!({ "settings": { "display_name": "Pause & Co", "branding": { "primary_color": "#aa3300" } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&app, "/t/pauseco/login", BROWSER, "en").await.status(), 200);
    let r = app.admin(Method::POST, "/admin/api/v1/tenants/pauseco/suspend").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // A browser: the branded page, 503 with Retry-After, on every hosted page.
    let r = get(&app, "/t/pauseco/login", BROWSER, "en-GB,en;q=0.9").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "300");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    assert!(html.contains("Pause &#38; Co is temporarily unavailable"), "{html}");
    assert!(html.contains("lang=\"en\"") && html.contains("/t/pauseco/theme.css"), "{html}");
    let css = app.client.get(app.url("/t/pauseco/theme.css")).send().await.unwrap();
    assert_eq!(css.status(), 200, "the brand colours still load");
    assert!(css.text().await.unwrap().contains("--primary: #aa3300"));
    for path in ["/t/pauseco/register", "/t/pauseco/account", "/t/pauseco/oauth2/authorize?client_id=x"] {
        assert_eq!(get(&app, path, BROWSER, "en").await.status(), 503, "{path}");
    }
    let r = app
        .client
        .post(app.url("/t/pauseco/login"))
        .header("accept", BROWSER)
        .form(&[("email", "a@example.com"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a form posted to a suspended tenant");

    // In German when the browser asks for it.
    let r = get(&app, "/t/pauseco/login", BROWSER, "de-DE,de;q=0.9,en;q=0.5").await;
    assert_eq!(r.status(), 503);
    let html = r.text().await.unwrap();
    assert!(html.contains("Pause &#38; Co ist vorübergehend nicht verfügbar"), "{html}");
    assert!(html.contains("lang=\"de\""), "{html}");

    // API clients keep the JSON error, on the page paths as on the API ones.
    for accept in ["application/json", "*/*"] {
        let r = get(&app, "/t/pauseco/login", accept, "en").await;
        assert_eq!(r.status(), 403, "{accept}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "tenant_suspended");
    }
    let r = get(&app, "/t/pauseco/api/v1/tenant", BROWSER, "en").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "tenant_suspended");
    for path in ["/t/pauseco/.well-known/openid-configuration", "/t/pauseco/.well-known/jwks.json"] {
        let r = get(&app, path, BROWSER, "en").await;
        let kind = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(!kind.starts_with("text/html"), "{path}: {kind}");
    }

    // An unknown tenant: a neutral 404 page, or the JSON.
    let r = get(&app, "/t/nobody-here/login", BROWSER, "en").await;
    assert_eq!(r.status(), 404);
    let html = r.text().await.unwrap();
    assert!(html.contains("Not found") && !html.contains("theme.css"), "{html}");
    let html = get(&app, "/t/nobody-here/login", BROWSER, "de").await.text().await.unwrap();
    assert!(html.contains("Nicht gefunden"), "{html}");
    let r = get(&app, "/t/nobody-here/login", "application/json", "en").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "tenant_not_found");
    // The authorize endpoint answers the same way (its handler reads the tenant itself).
    let r = get(&app, "/t/nobody-here/oauth2/authorize?client_id=x", BROWSER, "en").await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("Not found"));
    let r = get(&app, "/t/nobody-here/oauth2/authorize?client_id=x", "application/json", "en").await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "tenant_not_found");

    // Resumed: the sign-in page is back.
    app.admin(Method::POST, "/admin/api/v1/tenants/pauseco/resume").send().await.unwrap();
    assert_eq!(get(&app, "/t/pauseco/login", BROWSER, "en").await.status(), 200);
    // An end user's error page (a form without its CSRF token) never points at the admin console.
    let r = app.client.post(app.url("/t/pauseco/login")).form(&[("email", "a@example.com")]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(!html.contains("href=\"/admin\"") && !html.contains("/admin/logout"), "{html}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_overview_shows_the_tenant_and_saves_its_settings() {
    let app = app_with_operator().await;
    app.create_tenant("overco").await;
    create_user(&app, "overco", "ann@example.com").await;
    create_user(&app, "overco", "bob@example.com").await;
    let ui = signed_in(&app, EMAIL).await;

    let (status, html) = page(&ui, &app, "/admin/tenants/overco").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<a href=\"/admin/tenants\">Tenants</a>"), "breadcrumbs: {html}");
    assert!(html.contains("id=\"count-users\">2<"), "two users: {html}");
    assert!(html.contains("id=\"warning-smtp\"") && html.contains("No SMTP configured"), "{html}");
    assert!(html.contains("user_created") && html.contains("bob@example.com"), "recent activity: {html}");
    assert!(html.contains("action=\"/admin/tenants/overco/suspend\""), "operators may suspend");
    let csrf = csrf_of(&html);

    // Saved through the form: the page and the API show it.
    let r = post(
        &ui,
        &app,
        "/admin/tenants/overco/settings",
        &[
            ("csrf_token", &csrf),
            ("name", "Tenant overco"),
            ("display_name", "Over & Co"),
            ("primary_color", "#112233"),
            ("primary_color_picker", "#3b5bdb"),
            ("color_was", ""),
            ("logo_url", "https://example.com/logo.png"),
            ("locale", "de"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/tenants/overco?done=saved");
    let (_, html) = page(&ui, &app, "/admin/tenants/overco?done=saved").await;
    assert!(html.contains("Tenant settings saved") && html.contains("value=\"Over &#38; Co\""), "{html}");
    let t = tenant(&app, "overco").await;
    assert_eq!(t["settings"]["display_name"], "Over & Co");
    assert_eq!(t["settings"]["branding"]["primary_color"], "#112233");
    assert_eq!(t["settings"]["branding"]["logo_url"], "https://example.com/logo.png");
    assert_eq!(t["settings"]["locale"], "de");

    // The picker moved, the text box untouched: the picker's colour.
    let r = post(
        &ui,
        &app,
        "/admin/tenants/overco/settings",
        &[
            ("csrf_token", &csrf),
            ("name", "Tenant overco"),
            ("display_name", "Over & Co"),
            ("primary_color", "#112233"),
            ("primary_color_picker", "#445566"),
            ("color_was", "#112233"),
            ("logo_url", ""),
            ("locale", "de"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let t = tenant(&app, "overco").await;
    assert_eq!(t["settings"]["branding"]["primary_color"], "#445566");
    assert!(t["settings"]["branding"]["logo_url"].is_null(), "an empty logo URL removes it");

    // A bad colour: refused next to the form, the typed input kept, nothing changed.
    let r = post(
        &ui,
        &app,
        "/admin/tenants/overco/settings",
        &[
            ("csrf_token", &csrf),
            ("name", "Typed Name"),
            ("display_name", "Typed Display"),
            ("primary_color", "blue"),
            ("primary_color_picker", "#445566"),
            ("color_was", "#445566"),
            ("logo_url", ""),
            ("locale", "de"),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"settings-error\"") && html.contains("must look like #1a2b3c"), "{html}");
    assert!(html.contains("value=\"Typed Name\"") && html.contains("value=\"blue\""), "input kept: {html}");
    let t = tenant(&app, "overco").await;
    assert_eq!(t["name"], "Tenant overco");
    assert_eq!(t["settings"]["display_name"], "Over & Co");

    // Without the CSRF token: 403, nothing changed.
    let r = post(&ui, &app, "/admin/tenants/overco/settings", &[("name", "Forged"), ("locale", "en")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(tenant(&app, "overco").await["name"], "Tenant overco");

    // Suspending asks first: without the confirmation's `confirm=yes` nothing changes.
    let r = post(&ui, &app, "/admin/tenants/overco/suspend", &[("csrf_token", &csrf), ("back", "overview")]).await;
    assert_eq!(r.headers()["location"], "/admin/tenants/overco?done=unconfirmed");
    assert_eq!(tenant(&app, "overco").await["status"], "active");

    // Suspended from the overview, which comes back with the warning.
    let r = post(
        &ui,
        &app,
        "/admin/tenants/overco/suspend",
        &[("csrf_token", &csrf), ("back", "overview"), ("confirm", "yes")],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/tenants/overco?done=suspended");
    let (status, html) = page(&ui, &app, "/admin/tenants/overco").await;
    assert_eq!(status, 200, "a suspended tenant's overview opens");
    assert!(html.contains("id=\"warning-suspended\"") && html.contains("action=\"/admin/tenants/overco/resume\""));
    // Every page of the suspended tenant says so, under breadcrumbs back to the tenant.
    for path in ["/admin/tenants/overco/users", "/admin/tenants/overco/webhooks", "/admin/tenants/overco/store/rules"] {
        let (status, html) = page(&ui, &app, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(html.contains("id=\"suspended-banner\""), "{path}: {html}");
        assert!(html.contains(
            "aria-label=\"Breadcrumb\"><a href=\"/admin/tenants\">Tenants</a> › <a href=\"/admin/tenants/overco\">"
        ));
    }
    post(&ui, &app, "/admin/tenants/overco/resume", &[("csrf_token", &csrf), ("back", "overview")]).await;
    assert_eq!(tenant(&app, "overco").await["status"], "active");
    let (_, html) = page(&ui, &app, "/admin/tenants/overco/users").await;
    assert!(!html.contains("suspended-banner"), "resumed: no banner");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhooks_are_a_warning() {
    let app = app_with_operator().await;
    app.create_tenant("hookco").await;
    let down = HangUp::start().await;
    let closed = format!("http://127.0.0.1:{}/hook", down.port);
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/hookco/webhooks")
        .json(&json!({ "url": closed, "events": ["*"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hook = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let ui = signed_in(&app, EMAIL).await;
    let (_, html) = page(&ui, &app, "/admin/tenants/hookco").await;
    assert!(!html.contains("id=\"warning-webhook\""), "no delivery yet: {html}");
    assert!(html.contains("id=\"count-webhooks\">1<"), "{html}");

    app.admin(Method::POST, &format!("/admin/api/v1/tenants/hookco/webhooks/{hook}/ping")).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        app.run_outbox().await;
        let (_, html) = page(&ui, &app, "/admin/tenants/hookco").await;
        if html.contains("id=\"warning-webhook\"") {
            assert!(html.contains(&format!("/admin/tenants/hookco/webhooks/{hook}")), "{html}");
            break;
        }
        assert!(Instant::now() < deadline, "no failing-webhook warning: {html}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_land_on_their_tenant_and_only_see_it() {
    let app = app_with_operator().await;
    for slug in ["mineco", "theirco"] {
        app.create_tenant(slug).await;
        let r = app
            .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/admins"))
            .json(&json!({ "email": format!("admin-{slug}@example.com"), "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let mine = signed_in(&app, "admin-mineco@example.com").await;

    let r = mine.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/tenants/mineco");
    let (status, html) = page(&mine, &app, "/admin/tenants/mineco").await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("/admin/tenants/mineco/suspend"), "only operators suspend: {html}");
    let csrf = csrf_of(&html);

    let (status, _) = page(&mine, &app, "/admin/tenants/theirco").await;
    assert_eq!(status, 403, "another tenant's overview");
    let r = post(
        &mine,
        &app,
        "/admin/tenants/theirco/settings",
        &[("csrf_token", &csrf), ("name", "Taken over"), ("locale", "en")],
    )
    .await;
    assert_eq!(r.status(), 403, "another tenant's settings");
    assert_eq!(tenant(&app, "theirco").await["name"], "Tenant theirco");

    // Their own settings they may change.
    let r = post(
        &mine,
        &app,
        "/admin/tenants/mineco/settings",
        &[("csrf_token", &csrf), ("name", "Mine Inc"), ("locale", "en")],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(tenant(&app, "mineco").await["name"], "Mine Inc");

    // The operator still gets the node dashboard.
    let ops = signed_in(&app, EMAIL).await;
    let (status, html) = page(&ops, &app, "/admin").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"tenant-count\""), "{html}");
    app.stop().await;
}

/// A suspended tenant, from the sides the first version missed: an OAuth client gets `temporarily_unavailable` at
/// its registered redirect URI; a percent-encoded slug still gets the page; its tenant admins cannot restyle the
/// page that says it is unavailable (operators can); a page without the top bar still lets an admin sign out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_tenants_seen_by_clients_encoded_paths_and_their_admins() {
    let app = app_with_operator().await;
    app.create_tenant("holdco").await;
    let client = crate::oidc::create_client(
        &app,
        "holdco",
        json!({"name": "Shop", "type": "public", "redirect_uris": ["https://shop.example/cb"]}),
    )
    .await;
    let client_id = client["client_id"].as_str().unwrap();
    let token = app.create_token("holdco admin", "tenant:holdco").await;
    let r = app.admin(Method::POST, "/admin/api/v1/tenants/holdco/suspend").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The client learns it from its own redirect URI, with its state and the issuer.
    let authorize = format!(
        "/t/holdco/oauth2/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Fshop.example%2Fcb&response_type=code&state=s1"
    );
    let r = get(&app, &authorize, BROWSER, "en").await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("https://shop.example/cb?error=temporarily_unavailable"), "{location}");
    assert!(location.contains("state=s1") && location.contains("iss=http"), "{location}");
    // An unregistered redirect URI is never redirected to: the page instead.
    let r = get(&app, &authorize.replace("shop.example", "evil.example"), BROWSER, "en").await;
    assert_eq!(r.status(), 503);

    // The router decodes the slug (%68 is `h`); so does the page's layer.
    let r = get(&app, "/t/%68oldco/login", BROWSER, "en").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("temporarily unavailable"));

    // Tenant admins keep their tenant's other settings, but not its face, while it is suspended.
    let as_admin =
        |body: Value| app.client.patch(app.url("/admin/api/v1/tenants/holdco")).bearer_auth(&token).json(&body).send();
    let r = as_admin(json!({"settings": {"branding": {"primary_color": "#ff0000"}}})).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = as_admin(json!({"name": "Something else"})).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = as_admin(json!({"settings": {"password_min_length": 14}})).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/holdco")
        .json(&json!({"settings": {"branding": {"primary_color": "#ff0000"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "an operator may");

    // Sign-out by a link: an admin error page offers it, and it leads to a page with the session's form; without
    // a session, to the sign-in page.
    let ui = signed_in(&app, EMAIL).await;
    let r = ui.get(app.url("/admin/tenants/no-such-tenant/users")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("href=\"/admin/logout\""));
    let r = ui.get(app.url("/admin/logout")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let csrf = csrf_of(&html);
    assert!(html.contains("action=\"/admin/logout\""), "{html}");
    let r = ui.post(app.url("/admin/logout")).form(&[("csrf_token", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let r = ui.get(app.url("/admin/logout")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/admin/login"));
    app.stop().await;
}
