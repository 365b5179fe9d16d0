//! The admin UI in headless Chromium (Debian `chromium` + `chromium-driver`, driven over WebDriver by
//! fantoccini): an operator signs in, creates and suspends a tenant. Forms without the CSRF token are refused.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use fantoccini::{ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, free_port, require_tool, spawn_with};

const EMAIL: &str = "ops@example.com";
const PASSWORD: &str = "correct horse battery staple";

async fn app_with_operator() -> TestApp {
    spawn_with(
        |c| {
            c.admin_email = Some(EMAIL.into());
            c.admin_password = Some(gatehouse::config::Secret::new(PASSWORD));
        },
        Router::new(),
    )
    .await
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_browser() -> (Driver, fantoccini::Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().unwrap().keep();
    let mut caps = serde_json::Map::new();
    let mut options = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
        ]
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    caps.insert("goog:chromeOptions".into(), options);
    let client =
        ClientBuilder::rustls().expect("tls").capabilities(caps).connect(&url).await.expect("WebDriver session");
    (driver, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_signs_in_creates_and_suspends_a_tenant() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    let (_driver, browser) = start_browser().await;

    browser.goto(&app.url("/admin")).await.unwrap();
    browser.wait().for_element(Locator::Css("form[action='/admin/login']")).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().ends_with("/admin/login"));
    browser.find(Locator::Id("email")).await.unwrap().send_keys(EMAIL).await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    let count = browser.wait().for_element(Locator::Id("tenant-count")).await.unwrap();
    assert_eq!(count.text().await.unwrap(), "0");

    browser.goto(&app.url("/admin/tenants")).await.unwrap();
    browser.wait().for_element(Locator::Id("slug")).await.unwrap().send_keys("browser-co").await.unwrap();
    browser.find(Locator::Id("name")).await.unwrap().send_keys("Browser Co").await.unwrap();
    browser.find(Locator::Css("button.primary")).await.unwrap().click().await.unwrap();
    let row = browser.wait().for_element(Locator::Css("tr[data-slug='browser-co'] .badge")).await.unwrap();
    assert_eq!(row.text().await.unwrap(), "active");
    let notice = browser.find(Locator::Css(".notice")).await.unwrap().text().await.unwrap();
    assert!(notice.contains("Tenant created"), "{notice}");

    browser
        .find(Locator::Css("tr[data-slug='browser-co'] button[value='suspend']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait().for_element(Locator::Css("tr[data-slug='browser-co'] button[value='resume']")).await.unwrap();
    let badge = browser.find(Locator::Css("tr[data-slug='browser-co'] .badge")).await.unwrap().text().await.unwrap();
    assert_eq!(badge, "suspended");
    let tenant: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/browser-co").send().await.unwrap().json().await.unwrap();
    assert_eq!(tenant["status"], "suspended");
    assert_eq!(app.client.get(app.url("/t/browser-co/api/v1/tenant")).send().await.unwrap().status(), 403);

    // A screenshot for people reviewing the UI.
    if let Ok(png) = browser.screenshot().await {
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-tenants.png");
        let _ = std::fs::write(out, png);
    }

    // The browser's session cookie without the CSRF token is refused, for forms and for the JSON API.
    let cookie = browser.get_named_cookie("gh_admin").await.unwrap();
    let cookie_header = format!("gh_admin={}", cookie.value());
    let no_csrf = app
        .client
        .post(app.url("/admin/tenants"))
        .header("cookie", &cookie_header)
        .form(&[("slug", "forged"), ("name", "Forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let wrong_csrf = app
        .client
        .post(app.url("/admin/tenants/browser-co/resume"))
        .header("cookie", &cookie_header)
        .form(&[("csrf_token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_csrf.status(), 403);
    let api_no_csrf = app
        .client
        .post(app.url("/admin/api/v1/tenants"))
        .header("cookie", &cookie_header)
        .json(&json!({"slug": "forged", "name": "Forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api_no_csrf.status(), 403);
    let api_read =
        app.client.get(app.url("/admin/api/v1/tenants")).header("cookie", &cookie_header).send().await.unwrap();
    assert_eq!(api_read.status(), 200, "a session may read the API without CSRF");
    assert_eq!(app.admin(Method::GET, "/admin/api/v1/tenants/forged").send().await.unwrap().status(), 404);

    browser.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_over_http_with_csrf_and_rate_limit() {
    let app = spawn_with(
        |c| {
            c.admin_email = Some(EMAIL.into());
            c.admin_password = Some(gatehouse::config::Secret::new(PASSWORD));
            c.admin_login_per_minute = 3;
        },
        Router::new(),
    )
    .await;
    let form = app.client.get(app.url("/admin/login")).send().await.unwrap();
    let csrf_cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = form.text().await.unwrap();
    let csrf = html.split("name=\"csrf_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let login = |cookie: Option<&str>, password: &str| {
        let mut request = app.client.post(app.url("/admin/login"));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie.to_owned());
        }
        request.form(&[("csrf_token", csrf.as_str()), ("email", EMAIL), ("password", password)]).send()
    };
    // No CSRF cookie → 403.
    let r = login(None, PASSWORD).await.unwrap();
    assert_eq!(r.status(), 403);
    // Wrong password → 401 page, email kept, password not echoed.
    let r = login(Some(&csrf_cookie), "wrong password!").await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("Wrong email or password") && body.contains(EMAIL) && !body.contains("wrong password!"));
    // Right password → session cookie, HttpOnly, SameSite=Strict.
    let r = login(Some(&csrf_cookie), PASSWORD).await.unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.starts_with("gh_admin=") && set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    // The limiter counts attempts that passed the CSRF check: the third still goes through, the fourth within a
    // minute from this IP gets 429 with Retry-After.
    assert_eq!(login(Some(&csrf_cookie), "wrong password!").await.unwrap().status(), 401);
    let r = login(Some(&csrf_cookie), PASSWORD).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_setup_token_is_refused() {
    // The real link (from the log) is exercised end to end in binary.rs.
    let app = crate::support::spawn_app().await;
    let r = app.client.get(app.url("/admin/setup?token=guess")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("not valid"));
    app.stop().await;
}
