//! The admin UI in headless Chromium (Debian `chromium` + `chromium-driver`, driven over WebDriver by
//! fantoccini): an operator signs in, creates and suspends a tenant. Forms without the CSRF token are refused.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use fantoccini::{ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) use crate::support::PASSWORD;
use crate::support::{TestApp, free_port, require_tool, spawn_with};

pub(crate) const EMAIL: &str = "ops@example.com";

pub(crate) async fn app_with_operator() -> TestApp {
    spawn_with(
        |c| {
            c.admin_email = Some(EMAIL.into());
            c.admin_password = Some(gatehouse::config::Secret::new(PASSWORD));
        },
        Router::new(),
    )
    .await
}

/// chromedriver, leader of its own process group. Each test closes its session first (chromedriver then quits that
/// Chromium); when a test panicked before that, SIGTERM to the whole group still ends the browser: killing
/// chromedriver alone with SIGKILL left ~11 Chromium processes running per test.
pub(crate) struct Driver {
    child: Child,
    /// chromedriver's own URL, for commands WebDriver lacks (`goog/cdp/execute`).
    pub(crate) url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The `--` matters: without it procps 4.0's kill (Debian 12) takes `-PGID` for an option, signals nothing
        // and exits 0.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "TERM", "--", group.as_str()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_browser() -> (Driver, fantoccini::Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let driver = Driver { child, url: url.clone() };
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

/// A cookie-jar HTTP client that does not follow redirects.
pub(crate) fn jar() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A cookie-jar client signed in to the admin UI through its form.
pub(crate) async fn signed_in(app: &TestApp, email: &str) -> reqwest::Client {
    let ui = jar();
    let form = ui.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
    let csrf = crate::identity::csrf_of(&form);
    let r = ui
        .post(app.url("/admin/login"))
        .form(&[("csrf_token", csrf.as_str()), ("email", email), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{email} signs in");
    ui
}

/// A browser signed in to the admin UI as the test operator.
pub(crate) async fn signed_in_browser(app: &TestApp) -> (Driver, fantoccini::Client) {
    let (driver, browser) = start_browser().await;
    browser.goto(&app.url("/admin/login")).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys(EMAIL).await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Css("nav")).await.unwrap();
    (driver, browser)
}

/// Every process below `root` (pid, and the processes it started, and theirs), zombies left out.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses, so read after the last `)`.
        let mut rest = stat[stat.rfind(')').unwrap_or(0) + 1..].split_whitespace();
        let (state, ppid) = (rest.next().unwrap_or("Z"), rest.next().and_then(|p| p.parse::<u32>().ok()));
        if state != "Z"
            && let Some(ppid) = ppid
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parent_of.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.retain(|pid| *pid != root);
    found
}

/// A test that fails before closing its session still leaves no Chromium behind: dropping the driver ends the
/// browser it started (it once left ~11 processes per test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_driver_leaves_no_browser_process() {
    if !require_tool("chromedriver") {
        return;
    }
    let (driver, browser) = start_browser().await;
    browser.goto("about:blank").await.unwrap();
    let started = descendants(driver.child.id());
    assert!(!started.is_empty(), "chromedriver started no browser");
    drop(browser);
    drop(driver);
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat[stat.rfind(')').unwrap_or(0) + 1..].split_whitespace().next() != Some("Z"))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(alive) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = started.iter().filter(|pid| alive(pid)).collect();
    assert!(left.is_empty(), "browser processes left running: {left:?} of {started:?}");
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

    // Suspending asks first: the row's button opens a confirmation whose own button suspends.
    let row = "tr[data-slug='browser-co']";
    browser.find(Locator::Css(&format!("{row} details.confirm > summary"))).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css(&format!("{row} button[value='suspend']"))).await.unwrap().click().await.unwrap();
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

    // Deleting takes the slug typed out: a wrong one is an error by the field that keeps what was typed.
    browser.find(Locator::Css(&format!("{row} a[href$='/delete']"))).await.unwrap().click().await.unwrap();
    let typed = browser.wait().for_element(Locator::Id("confirm_slug")).await.unwrap();
    typed.send_keys("browser-c").await.unwrap();
    browser.find(Locator::Css("form[action$='/delete'] button.danger")).await.unwrap().click().await.unwrap();
    let error = wait_text(&browser, "#confirm_slug-error", "browser-co").await;
    assert!(error.contains("nothing was deleted"), "{error}");
    let typed = browser.find(Locator::Id("confirm_slug")).await.unwrap();
    assert_eq!(typed.prop("value").await.unwrap().as_deref(), Some("browser-c"));
    assert_eq!(typed.attr("aria-describedby").await.unwrap().as_deref(), Some("confirm_slug-error"));
    assert_eq!(app.admin(Method::GET, "/admin/api/v1/tenants/browser-co").send().await.unwrap().status(), 200);
    typed.send_keys("o").await.unwrap();
    browser.find(Locator::Css("form[action$='/delete'] button.danger")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Tenant deleted").await;
    assert_eq!(app.admin(Method::GET, "/admin/api/v1/tenants/browser-co").send().await.unwrap().status(), 404);

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

/// Five wrong passwords in a row lock that email: the right password is then refused with the wrong-password page
/// (whatever the case of the email), while another account still signs in from the same client.
#[tokio::test]
async fn repeated_wrong_passwords_lock_the_email() {
    const OTHER: &str = "second@example.com";
    let app = app_with_operator().await;
    app.create_tenant("lockco").await;
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/lockco/admins")
        .json(&json!({ "email": OTHER, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ui = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = ui.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
    let csrf = form.split("name=\"csrf_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let login = |email: &str, password: &str| {
        ui.post(app.url("/admin/login"))
            .form(&[("csrf_token", csrf.as_str()), ("email", email), ("password", password)])
            .send()
    };

    for attempt in 1..=5 {
        let r = login(EMAIL, "wrong password!").await.unwrap();
        assert_eq!(r.status(), 401, "wrong password {attempt}");
    }
    for email in [EMAIL, " OPS@Example.com "] {
        let r = login(email, PASSWORD).await.unwrap();
        assert_eq!(r.status(), 401, "{email:?} is locked");
        assert!(!r.headers().contains_key("set-cookie"), "no session while locked");
        let body = r.text().await.unwrap();
        assert!(body.contains("Wrong email or password"), "the same answer as a wrong password: {body}");
    }

    let r = login(OTHER, PASSWORD).await.unwrap();
    assert_eq!(r.status(), 303, "another account is not locked");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.starts_with("gh_admin="), "{set}");
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

/// A tenant admin's email pages in Chromium: the no-transport warning, a test mail sent from the form and read
/// in the dev mailbox (HTML in a sandboxed iframe), SMTP settings saved, a webhook created with its secret shown
/// once, pinged, and its delivery listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_email_pages_in_the_browser() {
    if !require_tool("chromedriver") {
        return;
    }
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", receiver.local_addr().unwrap());
    tokio::spawn(async move {
        let app = Router::new().route("/hook", axum::routing::post(|| async { "thanks" }));
        axum::serve(receiver, app).await
    });
    let app = app_with_operator().await;
    app.create_tenant("mailco").await;
    let (_driver, browser) = start_browser().await;
    browser.goto(&app.url("/admin/login")).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys(EMAIL).await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    let warning = browser.wait().for_element(Locator::Id("mail-warning")).await.unwrap().text().await.unwrap();
    assert!(warning.contains("1 tenant(s) have no SMTP settings"), "{warning}");

    browser.goto(&app.url("/admin/tenants/mailco/email")).await.unwrap();
    let alert = browser.wait().for_element(Locator::Css(".alert")).await.unwrap().text().await.unwrap();
    assert!(alert.contains("dev mailbox"), "{alert}");
    browser.find(Locator::Id("to")).await.unwrap().send_keys("reader@example.com").await.unwrap();
    browser.find(Locator::Css("form[action$='/email/test'] button")).await.unwrap().click().await.unwrap();
    let notice = browser.wait().for_element(Locator::Css(".notice")).await.unwrap().text().await.unwrap();
    assert!(notice.contains("Test mail queued"), "{notice}");

    // The dispatcher puts it in the dev mailbox; open it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(&app.url("/admin/tenants/mailco/mailbox")).await.unwrap();
        if let Ok(link) = browser.find(Locator::Css("td a[href*='/mailbox/']")).await {
            link.click().await.unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "the test mail never reached the dev mailbox");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = browser.wait().for_element(Locator::Css("pre.mail-text")).await.unwrap().text().await.unwrap();
    assert!(text.contains("test email from Gatehouse"), "{text}");
    let frame = browser.find(Locator::Css("iframe.mail-preview")).await.unwrap();
    assert_eq!(frame.attr("sandbox").await.unwrap().as_deref(), Some(""), "the preview is fully sandboxed");
    frame.enter_frame().await.unwrap();
    let body = browser.wait().for_element(Locator::Css("body")).await.unwrap().text().await.unwrap();
    assert!(body.contains("Tenant mailco"), "the iframe shows the mail's HTML: {body}");
    browser.clone().enter_parent_frame().await.unwrap();

    // SMTP settings: saved, password not echoed back into the form.
    browser.goto(&app.url("/admin/tenants/mailco/email")).await.unwrap();
    browser.wait().for_element(Locator::Id("host")).await.unwrap().send_keys("smtp.mailco.test").await.unwrap();
    browser.find(Locator::Id("username")).await.unwrap().send_keys("mailer").await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys("ui-secret-password").await.unwrap();
    browser.find(Locator::Id("from_email")).await.unwrap().send_keys("hi@mailco.test").await.unwrap();
    browser.find(Locator::Css("form[action$='/email/smtp'] button")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Css(".notice")).await.unwrap();
    let source = browser.source().await.unwrap();
    assert!(source.contains("smtp.mailco.test") && !source.contains("ui-secret-password"));
    let smtp: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/mailco/smtp").send().await.unwrap().json().await.unwrap();
    assert_eq!((smtp["route"].as_str(), smtp["password_set"].as_bool()), (Some("tenant"), Some(true)));

    // A webhook: created with its secret shown once, pinged, delivery listed.
    browser.goto(&app.url("/admin/tenants/mailco/webhooks")).await.unwrap();
    browser.wait().for_element(Locator::Id("url")).await.unwrap().send_keys(&hook_url).await.unwrap();
    browser.find(Locator::Css("input[name=events][value='webhook.ping']")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css("form[action$='/webhooks'] button.primary")).await.unwrap().click().await.unwrap();
    let secret = browser.wait().for_element(Locator::Id("new-secret")).await.unwrap().text().await.unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    browser.find(Locator::Css("tr[data-id] form[action$='/ping'] button")).await.unwrap().click().await.unwrap();
    // Wait for the webhook's own page (a refresh of the create response would post the form again).
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let url = browser.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains("done=pinged")) {
            break url;
        }
        assert!(Instant::now() < deadline, "the ping did not lead to the webhook's page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        browser.goto(page.as_str()).await.unwrap();
        let rows = browser.find_all(Locator::Css("tr[data-id] .badge.sent")).await.unwrap();
        if !rows.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the ping delivery never showed as sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!browser.source().await.unwrap().contains(&secret), "the secret is not shown again");
    browser.close().await.unwrap();
    app.stop().await;
}

/// Waits until the element at `css` shows text containing `wanted` (a click's new page has loaded), and returns it.
pub(crate) async fn wait_text(browser: &fantoccini::Client, css: &str, wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(el) = browser.find(Locator::Css(css)).await
            && let Ok(text) = el.text().await
            && text.contains(wanted)
        {
            return text;
        }
        assert!(Instant::now() < deadline, "no {css} with {wanted:?} on {:?}", browser.current_url().await.ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A visitor registers and signs in through the real hosted pages in Chromium: sign-up form, the verification
/// link from the mail, the login form with a return path, the account page, sign-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_pages_register_and_sign_in_in_the_browser() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("shop").await;
    app.admin(Method::PATCH, "/admin/api/v1/tenants/shop")
        .json(&json!({ "settings": { "display_name": "The Shop", "branding": { "primary_color": "#aa3355" } } }))
        .send()
        .await
        .unwrap();
    let (_driver, browser) = start_browser().await;

    browser.goto(&app.url("/t/shop/register")).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys("vic@example.com").await.unwrap();
    browser.find(Locator::Id("name")).await.unwrap().send_keys("Vic").await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys("qwertyuiop").await.unwrap();
    browser.find(Locator::Css("button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".alert", "most common").await;
    let kept = browser.find(Locator::Id("email")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(kept, "vic@example.com", "input is kept");
    let pw = browser.find(Locator::Id("password")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(pw, "", "the password is not");
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "h1", "Check your email").await;
    let brand = browser.find(Locator::Css(".tenant-name")).await.unwrap().text().await.unwrap();
    assert_eq!(brand, "The Shop");

    let link = crate::support::eventually(Duration::from_secs(10), "verification mail", || async {
        let body: Value =
            app.admin(Method::GET, "/admin/api/v1/tenants/shop/mailbox").send().await.unwrap().json().await.unwrap();
        body["items"].as_array().unwrap().iter().find(|m| m["template"] == "verify_email").and_then(|m| {
            let text = m["text"].as_str().unwrap();
            text.split_whitespace().find(|w| w.contains("/verify?token=")).map(str::to_owned)
        })
    })
    .await;
    browser.goto(&link).await.unwrap();
    wait_text(&browser, "h1", "Email confirmed").await;

    browser.goto(&app.url("/t/shop/account")).await.unwrap();
    browser.wait().for_element(Locator::Css("form[action='/t/shop/login']")).await.unwrap();
    browser.find(Locator::Id("email")).await.unwrap().send_keys("vic@example.com").await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, "h1", "Your account").await;
    assert!(browser.current_url().await.unwrap().path().ends_with("/t/shop/account"), "return_to honoured");
    let cookie = browser.get_named_cookie("gh_session").await.unwrap();
    assert_eq!(cookie.path(), Some("/t/shop/"));
    assert_eq!(cookie.http_only(), Some(true));
    if let Ok(png) = browser.screenshot().await {
        let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hosted-account.png"), png);
    }

    browser.find(Locator::Css("form[action='/t/shop/logout'] button")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Css("form[action='/t/shop/login']")).await.unwrap();
    browser.goto(&app.url("/t/shop/api/v1/me")).await.unwrap();
    let body = browser.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
    assert!(body.contains("unauthorized"), "{body}");
    browser.close().await.unwrap();
    app.stop().await;
}

/// The admin identity pages: create a role and a user, assign the role, disable the user, see it in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_admin_pages_in_the_browser() {
    if !require_tool("chromedriver") {
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("idco").await;
    let (_driver, browser) = start_browser().await;
    browser.goto(&app.url("/admin/login")).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys(EMAIL).await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("tenant-count")).await.unwrap();

    browser.goto(&app.url("/admin/tenants/idco/roles")).await.unwrap();
    browser.wait().for_element(Locator::Id("name")).await.unwrap().send_keys("support").await.unwrap();
    browser.find(Locator::Id("permissions")).await.unwrap().send_keys("tickets:read, tickets:write").await.unwrap();
    browser.find(Locator::Css("form[action$='/roles'] button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Role created").await;

    browser.goto(&app.url("/admin/tenants/idco/users")).await.unwrap();
    browser.wait().for_element(Locator::Id("email")).await.unwrap().send_keys("wes@example.com").await.unwrap();
    browser.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    browser.find(Locator::Css("form[action$='/users'] button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "User created").await;
    browser.find(Locator::Css("input[name='roles'][value='support']")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css("form[action$='/roles'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Roles saved").await;
    // Disabling asks first: the button opens the confirmation, whose own button does it.
    browser
        .find(Locator::Css("details.confirm:has(form[action$='/disable']) > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.find(Locator::Css("form[action$='/disable'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "disabled").await;

    let users: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/idco/users?q=wes").send().await.unwrap().json().await.unwrap();
    let id = users["items"][0]["id"].as_str().unwrap();
    let user: Value = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/idco/users/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["roles"], json!(["support"]));
    assert_eq!(user["status"], "disabled");

    browser.goto(&app.url("/admin/tenants/idco/audit?type=role_changed")).await.unwrap();
    wait_text(&browser, "td code", "role_changed").await;

    browser.goto(&app.url("/admin/tenants/idco/sign-in")).await.unwrap();
    let min = browser.wait().for_element(Locator::Id("password_min_length")).await.unwrap();
    min.clear().await.unwrap();
    min.send_keys("12").await.unwrap();
    browser.find(Locator::Css("form[action$='/sign-in'] button.primary")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Settings saved").await;
    let tenant: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/idco").send().await.unwrap().json().await.unwrap();
    assert_eq!(tenant["settings"]["password_min_length"], 12);
    browser.close().await.unwrap();
    app.stop().await;
}

/// The OAuth clients and signing keys pages over HTTP: create a client (its secret shown once), edit it with a
/// bad redirect URI (error kept on the page), rotate the signing key.
#[tokio::test]
async fn oauth_client_and_key_pages() {
    let app = app_with_operator().await;
    app.create_tenant("acme").await;
    let ui = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let csrf_of =
        |html: &str| html.split("name=\"csrf_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let login = ui.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
    let r = ui
        .post(app.url("/admin/login"))
        .form(&[("csrf_token", csrf_of(&login).as_str()), ("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    let page = ui.get(app.url("/admin/tenants/acme/clients")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("No OAuth clients yet") && page.contains(&app.url("/t/acme")), "{page}");
    let csrf = csrf_of(&page);
    let created = ui
        .post(app.url("/admin/tenants/acme/clients"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Shop"),
            ("type", "confidential"),
            ("redirect_uris", "https://shop.example/cb"),
            ("grant_authorization_code", "on"),
            ("scopes", "openid email"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let html = created.text().await.unwrap();
    let secret = html.split("id=\"client-secret\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let id = html.split("id=\"client-id\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(secret.starts_with("ghcs_"), "{html}");
    let api: serde_json::Value = app
        .admin(reqwest::Method::GET, &format!("/admin/api/v1/tenants/acme/clients/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((api["name"].as_str(), api["scopes"].clone()), (Some("Shop"), serde_json::json!(["openid", "email"])));
    // A wildcard redirect URI is refused on the page, input kept.
    let bad = ui
        .post(app.url(&format!("/admin/tenants/acme/clients/{id}")))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "Shop 2"),
            ("redirect_uris", "https://shop.example/*"),
            ("grant_authorization_code", "on"),
            ("scopes", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.unwrap();
    assert!(body.contains("wildcards") && body.contains("Shop 2"), "{body}");

    let keys = ui.get(app.url("/admin/tenants/acme/keys")).send().await.unwrap().text().await.unwrap();
    assert_eq!(keys.matches("<td>active</td>").count(), 1, "{keys}");
    // Rotating asks first: without `confirm=yes` nothing changes.
    let rotate = |confirm: &'static str| {
        ui.post(app.url("/admin/tenants/acme/keys/rotate"))
            .form(&[("csrf_token", csrf.as_str()), ("confirm", confirm)])
            .send()
    };
    let r = rotate("").await.unwrap();
    assert_eq!(r.headers()["location"], "/admin/tenants/acme/keys?done=unconfirmed");
    let keys = ui.get(app.url("/admin/tenants/acme/keys")).send().await.unwrap().text().await.unwrap();
    assert!(!keys.contains("<td>retiring</td>"), "{keys}");
    let r = rotate("yes").await.unwrap();
    assert_eq!(r.status(), 303);
    let keys = ui.get(app.url("/admin/tenants/acme/keys?done=rotated")).send().await.unwrap().text().await.unwrap();
    assert!(keys.contains("<td>retiring</td>") && keys.contains("A new signing key is active"), "{keys}");

    // Token settings: every error by its field with the input kept; then saved, as the API would.
    let bad = ui
        .post(app.url("/admin/tenants/acme/keys"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("signing_alg", "ES256"),
            ("access_token_ttl", "5"),
            ("id_token_ttl", "3600"),
            ("refresh_token_ttl", "forever"),
            ("custom_scopes", "[{\"name\": \"billing\"}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body = bad.text().await.unwrap();
    for field in ["access_token_ttl", "refresh_token_ttl", "custom_scopes"] {
        assert!(body.contains(&format!("id=\"{field}-error\"")), "{field}: {body}");
    }
    assert!(body.contains("value=\"forever\"") && body.contains("<option value=\"ES256\" selected>"), "{body}");
    let good = ui
        .post(app.url("/admin/tenants/acme/keys"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("signing_alg", "ES256"),
            ("access_token_ttl", "900"),
            ("id_token_ttl", "3600"),
            ("refresh_token_ttl", "86400"),
            ("custom_scopes", "[{\"name\": \"billing\", \"description\": \"Invoices\"}]"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(good.headers()["location"], "/admin/tenants/acme/keys?done=saved");
    let (_, tenant) = app.json(Method::GET, "/admin/api/v1/tenants/acme", None).await;
    let oidc = &tenant["settings"]["oidc"];
    assert_eq!((oidc["signing_alg"].as_str(), oidc["access_token_ttl"].as_u64()), (Some("ES256"), Some(900)));
    assert_eq!(oidc["custom_scopes"][0]["name"], "billing");
    app.stop().await;
}

/// The plugin pages in Chromium: create a plugin, upload a component through the file input, activate it, run a
/// dry-run from the prefilled form, and see a refused upload explained on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_pages_in_the_browser() {
    let build = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/build");
    if !require_tool("chromedriver") || !build.join("c-noop-login.wasm").exists() {
        assert!(
            std::env::var_os("CI").is_none() || build.join("c-noop-login.wasm").exists(),
            "run scripts/build-plugins"
        );
        return;
    }
    let app = app_with_operator().await;
    app.create_tenant("plugco").await;
    let (_driver, browser) = signed_in_browser(&app).await;

    browser.goto(&app.url("/admin/tenants/plugco/plugins")).await.unwrap();
    browser.wait().for_element(Locator::Id("name")).await.unwrap().send_keys("noop").await.unwrap();
    browser.find(Locator::Css("form[action$='/plugins'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Plugin created").await;

    // A refused component: the reason is on the page.
    browser
        .find(Locator::Id("component"))
        .await
        .unwrap()
        .send_keys(&build.join("core-module.wasm").display().to_string())
        .await
        .unwrap();
    browser.find(Locator::Css("form[action$='/upload'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".alert", "core WebAssembly module").await;

    browser.goto(&app.url("/admin/tenants/plugco/plugins/noop")).await.unwrap();
    browser
        .wait()
        .for_element(Locator::Id("component"))
        .await
        .unwrap()
        .send_keys(&build.join("c-noop-login.wasm").display().to_string())
        .await
        .unwrap();
    browser.find(Locator::Css("form[action$='/upload'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Version uploaded").await;
    browser
        .find(Locator::Css("details.confirm:has(form[action$='/versions/1/activate']) > summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.find(Locator::Css("form[action$='/versions/1/activate'] button")).await.unwrap().click().await.unwrap();
    wait_text(&browser, ".notice", "Version activated").await;
    let api: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/plugco/plugins/noop").send().await.unwrap().json().await.unwrap();
    assert_eq!(api["active_version"], 1, "{api}");

    // The dry-run form comes prefilled with a sample input.
    let input = browser.find(Locator::Id("dry-input")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert!(input.contains("new.user@example.com"), "{input}");
    browser.find(Locator::Css("form[action$='/dry-run'] button")).await.unwrap().click().await.unwrap();
    let outcome = wait_text(&browser, "#dry-outcome", "ok").await;
    assert_eq!(outcome, "ok");
    let output = browser.find(Locator::Css(".dry-run pre")).await.unwrap().text().await.unwrap();
    assert!(output.contains("allow"), "{output}");
    browser.close().await.unwrap();
    app.stop().await;
}
