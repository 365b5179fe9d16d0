//! Identity end to end over HTTP: hosted pages driven with a cookie jar (fetch the form, post it with its
//! `csrf_token`), the end-user JSON API, mail read from the dev mailbox, lockout, per-IP rate limits, CSRF,
//! no enumeration on sign-up, tenant isolation, TOTP, roles and the audit log.

use std::time::Duration;

use axum::Router;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, create_user, eventually, metric_value, spawn_app, spawn_with};

const NEW_PASSWORD: &str = "tr0ubadour and a new horse";

/// A browser-like client: keeps cookies, does not follow redirects.
fn jar() -> Client {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The value of the first `name="csrf_token"` hidden input of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf_token\" value=\"").expect("page has a csrf_token") + 25;
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

pub(crate) async fn get_page(client: &Client, app: &TestApp, path: &str) -> (StatusCode, String) {
    let r = client.get(app.url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Fetches `form_path`, then posts `fields` plus its CSRF token to `action`.
pub(crate) async fn submit(
    client: &Client,
    app: &TestApp,
    form_path: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (status, html) = get_page(client, app, form_path).await;
    assert_eq!(status, 200, "GET {form_path}: {html}");
    let csrf = csrf_of(&html);
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf_token", &csrf));
    client.post(app.url(action)).form(&form).send().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// The newest dev-mailbox message of `slug` to `to` made from `template`.
pub(crate) async fn mail(app: &TestApp, slug: &str, to: &str, template: &str) -> Value {
    eventually(Duration::from_secs(10), &format!("{template} mail to {to}"), || async {
        let body: Value = app
            .admin(Method::GET, &format!("/admin/api/v1/tenants/{slug}/mailbox"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["items"].as_array().unwrap().iter().find(|m| m["to"] == to && m["template"] == template).cloned()
    })
    .await
}

async fn mails(app: &TestApp, slug: &str, to: &str, template: &str) -> usize {
    let body: Value = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/{slug}/mailbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["items"].as_array().unwrap().iter().filter(|m| m["to"] == to && m["template"] == template).count()
}

/// The path and query of the first link with `token=` in a mail's text part.
pub(crate) fn token_link(mail: &Value, base: &str) -> String {
    let text = mail["text"].as_str().unwrap();
    let start = text.find(base).expect("mail has a link to the server");
    let url = text[start..].split_whitespace().next().unwrap();
    assert!(url.contains("token="), "{url}");
    url[base.len()..].to_owned()
}

pub(crate) fn token_of(path: &str) -> String {
    path.split("token=").nth(1).unwrap().to_owned()
}

async fn api_login(client: &Client, app: &TestApp, slug: &str, email: &str, password: &str) -> reqwest::Response {
    client
        .post(app.url(&format!("/t/{slug}/api/v1/login")))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn me_status(client: &Client, app: &TestApp, slug: &str) -> StatusCode {
    client.get(app.url(&format!("/t/{slug}/api/v1/me"))).send().await.unwrap().status()
}

async fn audit_types(app: &TestApp, slug: &str, user_id: &str) -> Vec<String> {
    let body: Value = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/{slug}/audit?user_id={user_id}&limit=200"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn hosted_pages_register_verify_login_change_password_logout() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let browser = jar();
    let other_device = jar();

    let r = submit(
        &browser,
        &app,
        "/t/acme/register",
        "/t/acme/register",
        &[("email", "Ann@Example.com"), ("name", "Ann"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Check your email"));

    // Not verified yet: the right password gets "verify first", not a session.
    let r = submit(
        &browser,
        &app,
        "/t/acme/login",
        "/t/acme/login",
        &[("email", "ann@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not verified"));

    let verify = mail(&app, "acme", "ann@example.com", "verify_email").await;
    let link = token_link(&verify, &app.base);
    assert!(link.starts_with("/t/acme/verify?token="), "{link}");
    let (status, html) = get_page(&browser, &app, &link).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Email confirmed"));
    let (status, _) = get_page(&browser, &app, &link).await;
    assert_eq!(status, 400, "a verification link works once");
    mail(&app, "acme", "ann@example.com", "welcome").await;

    // Sign in on two devices; the cookie is scoped to the tenant.
    for client in [&browser, &other_device] {
        let r = submit(
            client,
            &app,
            "/t/acme/login?return_to=/t/acme/account",
            "/t/acme/login",
            &[("email", "ann@example.com"), ("password", PASSWORD), ("return_to", "/t/acme/account")],
        )
        .await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/t/acme/account");
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with("gh_session="))
            .unwrap()
            .to_owned();
        assert!(
            cookie.contains("Path=/t/acme/") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert!(!cookie.contains("Secure"), "http public URL: no Secure flag");
    }
    let (status, html) = get_page(&browser, &app, "/t/acme/account").await;
    assert_eq!(status, 200);
    assert!(html.contains("ann@example.com"));
    assert_eq!(me_status(&other_device, &app, "acme").await, 200);
    let sessions: Value =
        browser.get(app.url("/t/acme/api/v1/me/sessions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(sessions["items"].as_array().unwrap().len(), 2);

    // A return_to outside the tenant is ignored.
    let r = browser.get(app.url("/t/acme/login?return_to=https://evil.example/")).send().await.unwrap();
    assert_eq!(location(&r), "/t/acme/account");

    // Wrong current password: shown on the page, nothing changes.
    let r = submit(
        &browser,
        &app,
        "/t/acme/account",
        "/t/acme/account/password",
        &[("current_password", "not my password"), ("new_password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("current password is not right"));

    let r = submit(
        &browser,
        &app,
        "/t/acme/account",
        "/t/acme/account/password",
        &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(me_status(&browser, &app, "acme").await, 200, "the current session stays");
    assert_eq!(me_status(&other_device, &app, "acme").await, 401, "other sessions end");
    assert_eq!(api_login(&jar(), &app, "acme", "ann@example.com", PASSWORD).await.status(), 401);
    assert_eq!(api_login(&jar(), &app, "acme", "ann@example.com", NEW_PASSWORD).await.status(), 200);

    let (_, html) = get_page(&browser, &app, "/t/acme/account").await;
    let r = browser.post(app.url("/t/acme/logout")).form(&[("csrf_token", csrf_of(&html))]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/t/acme/login");
    assert_eq!(me_status(&browser, &app, "acme").await, 401);
    let r = browser.get(app.url("/t/acme/account")).send().await.unwrap();
    assert_eq!(r.status(), 303, "signed out: the account page sends to the login page");
    assert!(location(&r).starts_with("/t/acme/login?return_to="));

    let user: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/users?q=ann").send().await.unwrap().json().await.unwrap();
    let id = user["items"][0]["id"].as_str().unwrap();
    let types = audit_types(&app, "acme", id).await;
    for wanted in ["user_created", "user_updated", "login_succeeded", "login_failed", "password_changed", "logout"] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} in {types:?}");
    }
    let metrics = app.metrics().await;
    assert!(metric_value(&metrics, "gatehouse_login_attempts_total{outcome=\"success\"}").unwrap() >= 3.0, "{metrics}");
    assert!(!metrics.contains("tenant=\"acme\""), "no tenant label by default");
    app.stop().await;
}

#[tokio::test]
async fn forgot_and_reset_links_work_once_and_expire() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let user = create_user(&app, "acme", "bob@example.com").await;
    let client = jar();

    for email in ["bob@example.com", "nobody@example.com", "not an email"] {
        let r = client
            .post(app.url("/t/acme/api/v1/password/forgot"))
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{email}");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({ "status": "accepted" }));
    }
    let reset = mail(&app, "acme", "bob@example.com", "reset_password").await;
    let link = token_link(&reset, &app.base);
    assert!(link.starts_with("/t/acme/reset?token="));
    let token = token_of(&link);

    let weak = client
        .post(app.url("/t/acme/api/v1/password/reset"))
        .json(&json!({ "token": token, "new_password": "password1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 400, "the policy applies and the token survives");
    let r = client
        .post(app.url("/t/acme/api/v1/password/reset"))
        .json(&json!({ "token": token, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let again = client
        .post(app.url("/t/acme/api/v1/password/reset"))
        .json(&json!({ "token": token, "new_password": "another new password 42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(again.json::<Value>().await.unwrap()["error"]["code"], "invalid_token");
    let (status, html) = get_page(&client, &app, &link).await;
    assert_eq!(status, 400);
    assert!(html.contains("This link does not work"));
    assert_eq!(api_login(&jar(), &app, "acme", "bob@example.com", NEW_PASSWORD).await.status(), 200);

    // An expired link: ask again (the per-user throttle is a minute, so move the first token's time back).
    let tenant_file = app.data_dir.join("tenants/acme.db");
    let conn = rusqlite::Connection::open(&tenant_file).unwrap();
    conn.execute("UPDATE user_tokens SET created_at = created_at - 120", []).unwrap();
    let before = mails(&app, "acme", "bob@example.com", "reset_password").await;
    let r = client
        .post(app.url("/t/acme/api/v1/password/forgot"))
        .json(&json!({ "email": "bob@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually(Duration::from_secs(10), "a second reset mail", || async {
        (mails(&app, "acme", "bob@example.com", "reset_password").await > before).then_some(())
    })
    .await;
    let second = token_of(&token_link(&mail(&app, "acme", "bob@example.com", "reset_password").await, &app.base));
    assert_ne!(second, token);
    conn.execute("UPDATE user_tokens SET expires_at = 1 WHERE used_at IS NULL", []).unwrap();
    let r = client
        .post(app.url("/t/acme/api/v1/password/reset"))
        .json(&json!({ "token": second, "new_password": "another new password 42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_token");

    let types = audit_types(&app, "acme", user["id"].as_str().unwrap()).await;
    assert!(types.contains(&"password_reset_requested".to_owned()) && types.contains(&"password_changed".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn lockout_csrf_and_per_ip_rate_limit() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({ "settings": { "lockout": { "max_failures": 3, "backoff_seconds": 600 } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let user = create_user(&app, "acme", "carol@example.com").await;
    let client = jar();

    let unknown = api_login(&client, &app, "acme", "nobody@example.com", PASSWORD).await;
    assert_eq!(unknown.status(), 401);
    let unknown_body: Value = unknown.json().await.unwrap();
    for _ in 0..3 {
        let r = api_login(&client, &app, "acme", "carol@example.com", "wrong password here").await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), unknown_body, "wrong password answers like an unknown email");
    }
    let locked = api_login(&client, &app, "acme", "carol@example.com", PASSWORD).await;
    assert_eq!(locked.status(), 401, "locked: even the right password fails");
    assert_eq!(locked.json::<Value>().await.unwrap(), unknown_body, "and the answer is the same");
    let types = audit_types(&app, "acme", user["id"].as_str().unwrap()).await;
    assert!(types.contains(&"locked_out".to_owned()), "{types:?}");

    // The owner can still reset, which unlocks.
    client
        .post(app.url("/t/acme/api/v1/password/forgot"))
        .json(&json!({ "email": "carol@example.com" }))
        .send()
        .await
        .unwrap();
    let token = token_of(&token_link(&mail(&app, "acme", "carol@example.com", "reset_password").await, &app.base));
    let r = client
        .post(app.url("/t/acme/api/v1/password/reset"))
        .json(&json!({ "token": token, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(api_login(&client, &app, "acme", "carol@example.com", NEW_PASSWORD).await.status(), 200);

    // CSRF: a hosted form without or with a wrong token is refused.
    let anon = jar();
    get_page(&anon, &app, "/t/acme/login").await;
    let r = anon
        .post(app.url("/t/acme/login"))
        .form(&[("email", "carol@example.com"), ("password", NEW_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = anon
        .post(app.url("/t/acme/login"))
        .form(&[
            ("email", "carol@example.com"),
            ("password", NEW_PASSWORD),
            ("csrf_token", "forged-forged-forged-forged-forged-forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;

    // Per-IP token bucket.
    let app = spawn_with(|c| c.auth_per_minute = 3, Router::new()).await;
    app.create_tenant("acme").await;
    for _ in 0..3 {
        assert_eq!(api_login(&client, &app, "acme", "x@example.com", PASSWORD).await.status(), 401);
    }
    let r = api_login(&client, &app, "acme", "x@example.com", PASSWORD).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    let r = client
        .post(app.url("/t/acme/api/v1/password/forgot"))
        .json(&json!({ "email": "x@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "one bucket for login, sign-up and reset");
    assert_eq!(
        client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap().status(),
        200,
        "other routes are not limited"
    );
    app.stop().await;
}

#[tokio::test]
async fn signing_up_with_a_taken_email_answers_like_a_new_one() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let client = jar();
    let register = |email: &'static str, password: &'static str| {
        let client = client.clone();
        let url = app.url("/t/acme/api/v1/register");
        async move { client.post(url).json(&json!({ "email": email, "password": password })).send().await.unwrap() }
    };
    let first = register("dan@example.com", PASSWORD).await;
    let (s1, b1) = (first.status(), first.text().await.unwrap());
    let second = register("dan@example.com", "some other long password").await;
    let (s2, b2) = (second.status(), second.text().await.unwrap());
    assert_eq!(s1, 202);
    assert_eq!((s1, &b1), (s2, &b2), "same status and body");
    let exists = mail(&app, "acme", "dan@example.com", "account_exists").await;
    assert!(exists["text"].as_str().unwrap().contains("/t/acme/forgot"));
    assert_eq!(mails(&app, "acme", "dan@example.com", "verify_email").await, 1);

    // Validation errors are typed and keep nothing.
    let r = register("erin@example.com", "password").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");

    // Without verification: 201 for both.
    app.admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({ "settings": { "require_email_verification": false, "signup_enabled": true } }))
        .send()
        .await
        .unwrap();
    let new = register("fay@example.com", PASSWORD).await;
    let (s3, b3) = (new.status(), new.text().await.unwrap());
    let taken = register("fay@example.com", "yet another long password").await;
    assert_eq!(s3, 201);
    assert_eq!((s3, b3), (taken.status(), taken.text().await.unwrap()));
    assert_eq!(api_login(&client, &app, "acme", "fay@example.com", PASSWORD).await.status(), 200);

    // Sign-up closed.
    app.admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({ "settings": { "signup_enabled": false } }))
        .send()
        .await
        .unwrap();
    assert_eq!(register("gus@example.com", PASSWORD).await.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn tenants_are_isolated() {
    let app = spawn_app().await;
    app.create_tenant("alpha").await;
    app.create_tenant("beta").await;
    create_user(&app, "alpha", "ivy@example.com").await;
    let client = jar();
    assert_eq!(
        api_login(&client, &app, "beta", "ivy@example.com", PASSWORD).await.status(),
        401,
        "A's user is unknown at B"
    );
    let r = api_login(&client, &app, "alpha", "ivy@example.com", PASSWORD).await;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("gh_session="))
        .unwrap();
    let value = cookie.split(';').next().unwrap().to_owned();
    let plain = Client::new();
    let me = |path: &str| plain.get(app.url(path)).header("cookie", value.clone()).send();
    assert_eq!(me("/t/alpha/api/v1/me").await.unwrap().status(), 200);
    assert_eq!(me("/t/beta/api/v1/me").await.unwrap().status(), 401, "A's cookie means nothing at B");
    for trick in ["/t/alpha/../beta/api/v1/me", "/t/alpha/%2e%2e/beta/api/v1/me", "/t/alpha/%2E%2E/beta/api/v1/me"] {
        let status = me(trick).await.unwrap().status();
        assert!(status == 401 || status == 404, "{trick}: {status}");
    }
    let raw = plain
        .get(app.url("/t/beta/api/v1/me"))
        .header("cookie", format!("{value}; Path=/t/beta/; gh_session=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401, "Path attributes in a Cookie header change nothing");

    // A tenant admin of A and a token scoped to A get 403 on B's admin routes.
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/alpha/admins")
        .json(&json!({ "email": "admin-alpha@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin_session = jar();
    let (_, html) = get_page(&admin_session, &app, "/admin/login").await;
    let r = admin_session
        .post(app.url("/admin/login"))
        .form(&[("email", "admin-alpha@example.com"), ("password", PASSWORD), ("csrf_token", &csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let token_a = app.create_token("alpha-only", "tenant:alpha").await;
    let routes: &[(Method, &str, Value)] = &[
        (Method::GET, "/admin/api/v1/tenants/beta", Value::Null),
        (Method::PATCH, "/admin/api/v1/tenants/beta", json!({ "name": "x" })),
        (Method::DELETE, "/admin/api/v1/tenants/beta", Value::Null),
        (Method::POST, "/admin/api/v1/tenants/beta/suspend", Value::Null),
        (Method::GET, "/admin/api/v1/tenants/beta/users", Value::Null),
        (Method::POST, "/admin/api/v1/tenants/beta/users", json!({ "email": "x@example.com" })),
        (Method::GET, "/admin/api/v1/tenants/beta/roles", Value::Null),
        (Method::POST, "/admin/api/v1/tenants/beta/roles", json!({ "name": "x" })),
        (Method::GET, "/admin/api/v1/tenants/beta/audit", Value::Null),
        (Method::GET, "/admin/api/v1/tenants/beta/admins", Value::Null),
        (Method::POST, "/admin/api/v1/tenants/beta/admins", json!({ "email": "y@example.com", "password": PASSWORD })),
        (Method::GET, "/admin/api/v1/tenants/beta/smtp", Value::Null),
        (Method::GET, "/admin/api/v1/tenants/beta/webhooks", Value::Null),
        (Method::GET, "/admin/api/v1/tenants/beta/outbox", Value::Null),
        (Method::GET, "/admin/api/v1/tenants/beta/mailbox", Value::Null),
    ];
    for (method, path, body) in routes {
        let mut by_token = plain.request(method.clone(), app.url(path)).bearer_auth(&token_a);
        if !body.is_null() {
            by_token = by_token.json(body);
        }
        assert_eq!(by_token.send().await.unwrap().status(), 403, "token tenant:alpha on {method} {path}");
        if *method == Method::GET {
            let r = admin_session.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 403, "tenant admin of alpha on GET {path}");
        }
    }
    // …while A is theirs.
    let r = admin_session.get(app.url("/admin/api/v1/tenants/alpha/users")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = plain.get(app.url("/admin/api/v1/tenants/alpha/users")).bearer_auth(&token_a).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = plain
        .post(app.url("/admin/api/v1/tenants/alpha/admins"))
        .bearer_auth(&token_a)
        .json(&json!({ "email": "z@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "only operators create tenant admins");
    app.stop().await;
}

pub(crate) fn code_at(secret_base32: &str, unix: u64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_owned()).to_bytes().unwrap();
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, String::new()).generate(unix)
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Signs in through the hosted page; returns where it sent the browser.
async fn page_login(client: &Client, app: &TestApp, password: &str) -> String {
    let r =
        submit(client, app, "/t/acme/login", "/t/acme/login", &[("email", "hal@example.com"), ("password", password)])
            .await;
    assert_eq!(r.status(), 303);
    location(&r)
}

#[tokio::test]
async fn totp_enrolment_codes_replay_and_recovery() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let user = create_user(&app, "acme", "hal@example.com").await;
    let browser = jar();
    assert_eq!(page_login(&browser, &app, PASSWORD).await, "/t/acme/account");

    let r = submit(&browser, &app, "/t/acme/account", "/t/acme/account/totp/start", &[]).await;
    assert_eq!(location(&r), "/t/acme/account/totp");
    let (status, html) = get_page(&browser, &app, "/t/acme/account/totp").await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("QR code"), "inline SVG QR code");
    let start = html.find("<code class=\"secret\">").unwrap() + 21;
    let secret = html[start..start + html[start..].find('<').unwrap()].to_owned();
    let wrong = submit(&browser, &app, "/t/acme/account/totp", "/t/acme/account/totp", &[("code", "000000")]).await;
    assert_eq!(wrong.status(), 400);
    let enrol_code = code_at(&secret, now());
    let r = submit(&browser, &app, "/t/acme/account/totp", "/t/acme/account/totp", &[("code", &enrol_code)]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let recovery: Vec<String> =
        html.split("<li><code>").skip(1).map(|s| s[..s.find('<').unwrap()].to_owned()).collect();
    assert_eq!(recovery.len(), 10, "{html}");
    let profile: Value = browser.get(app.url("/t/acme/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(profile["mfa_enabled"], true);

    // Sign in again: a code is needed, the enrolment code cannot be replayed, the next step's code works once.
    let device = jar();
    let next = page_login(&device, &app, PASSWORD).await;
    assert!(next.starts_with("/t/acme/mfa"), "{next}");
    assert_eq!(me_status(&device, &app, "acme").await, 401, "half signed in is not signed in");
    let replay = submit(&device, &app, &next, "/t/acme/mfa", &[("code", &enrol_code)]).await;
    assert_eq!(replay.status(), 400, "a used code is refused");
    let fresh = code_at(&secret, now() + 30);
    let r = submit(&device, &app, &next, "/t/acme/mfa", &[("code", &fresh)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(me_status(&device, &app, "acme").await, 200);

    // JSON API: same rules; recovery codes work once.
    let api = jar();
    let r = api_login(&api, &app, "acme", "hal@example.com", PASSWORD).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "mfa_required");
    let mfa = |client: &Client, code: &str| {
        client.post(app.url("/t/acme/api/v1/login/mfa")).json(&json!({ "code": code })).send()
    };
    assert_eq!(mfa(&api, &fresh).await.unwrap().status(), 400, "replayed");
    assert_eq!(mfa(&api, &recovery[0]).await.unwrap().status(), 200);
    assert_eq!(me_status(&api, &app, "acme").await, 200);
    let again = jar();
    api_login(&again, &app, "acme", "hal@example.com", PASSWORD).await;
    assert_eq!(mfa(&again, &recovery[0]).await.unwrap().status(), 400, "a recovery code works once");
    assert_eq!(mfa(&again, &recovery[1].to_uppercase()).await.unwrap().status(), 200);

    // The admin removes MFA; sign-in is one step again.
    let id = user["id"].as_str().unwrap();
    let r = app.admin(Method::DELETE, &format!("/admin/api/v1/tenants/acme/users/{id}/mfa")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(page_login(&jar(), &app, PASSWORD).await, "/t/acme/account");
    let types = audit_types(&app, "acme", id).await;
    assert!(types.contains(&"mfa_enabled".to_owned()) && types.contains(&"mfa_disabled".to_owned()), "{types:?}");

    // mfa=required: a user without TOTP must enrol at the next sign-in.
    app.admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({ "settings": { "mfa": "required" } }))
        .send()
        .await
        .unwrap();
    let forced = jar();
    let next = page_login(&forced, &app, PASSWORD).await;
    assert!(next.starts_with("/t/acme/mfa"));
    let (_, html) = get_page(&forced, &app, &next).await;
    assert!(html.contains("requires a second factor"));
    let start = html.find("<code class=\"secret\">").unwrap() + 21;
    let secret = html[start..start + html[start..].find('<').unwrap()].to_owned();
    let r = submit(&forced, &app, &next, "/t/acme/mfa", &[("code", &code_at(&secret, now()))]).await;
    assert_eq!(r.status(), 200, "recovery codes page");
    assert_eq!(me_status(&forced, &app, "acme").await, 200);
    app.stop().await;
}

#[tokio::test]
async fn roles_invites_and_admin_actions() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/roles")
        .json(&json!({ "name": "editor", "description": "Edits things", "permissions": ["posts:write", "posts:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/roles")
        .json(&json!({ "name": "editor" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/roles")
        .json(&json!({ "name": "Bad Name" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.admin(Method::POST, "/admin/api/v1/tenants/acme/roles")
        .json(&json!({ "name": "viewer", "permissions": ["posts:read"] }))
        .send()
        .await
        .unwrap();

    // Invite: created without a password, with a role; the invitation link sets the password.
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/users")
        .json(&json!({ "email": "ida@example.com", "roles": ["editor"], "send_invite": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["roles"], json!(["editor"]));
    assert_eq!(user["has_password"], false);
    let id = user["id"].as_str().unwrap().to_owned();
    let invite = mail(&app, "acme", "ida@example.com", "invite").await;
    let link = token_link(&invite, &app.base);
    let browser = jar();
    let (status, html) = get_page(&browser, &app, &link).await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose your password"));
    let r = browser
        .post(app.url("/t/acme/reset"))
        .form(&[
            ("token", token_of(&link)),
            ("password", PASSWORD.into()),
            ("confirm", PASSWORD.into()),
            ("csrf_token", csrf_of(&html)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(api_login(&browser, &app, "acme", "ida@example.com", PASSWORD).await.status(), 200);
    let me: Value = browser.get(app.url("/t/acme/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["roles"], json!(["editor"]));
    assert_eq!(me["email_verified"], true, "the invitation proved the mailbox");

    let r = app
        .admin(Method::PUT, &format!("/admin/api/v1/tenants/acme/users/{id}/roles"))
        .json(&json!({ "roles": ["viewer"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["roles"], json!(["viewer"]));
    let r = app
        .admin(Method::PUT, &format!("/admin/api/v1/tenants/acme/users/{id}/roles"))
        .json(&json!({ "roles": ["nope"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app.admin(Method::DELETE, "/admin/api/v1/tenants/acme/roles/viewer").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let me: Value = browser.get(app.url("/t/acme/api/v1/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["roles"], json!([]), "deleting a role unassigns it");

    // Admin sends a reset mail; disabling ends the sessions.
    let r =
        app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/users/{id}/password-reset")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    mail(&app, "acme", "ida@example.com", "reset_password").await;
    let sessions: Value = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/acme/users/{id}/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions["items"].as_array().unwrap().len(), 1);
    app.admin(Method::POST, &format!("/admin/api/v1/tenants/acme/users/{id}/disable")).send().await.unwrap();
    assert_eq!(me_status(&browser, &app, "acme").await, 401);
    assert_eq!(api_login(&jar(), &app, "acme", "ida@example.com", PASSWORD).await.status(), 401);

    let audit: Value = app
        .admin(Method::GET, "/admin/api/v1/tenants/acme/audit?type=role_changed")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{audit}");
    assert!(items.iter().all(|e| e["type"] == "role_changed" && e["actor"].as_str().unwrap().starts_with("token:")));
    let r = app.admin(Method::GET, "/admin/api/v1/tenants/acme/audit?type=nonsense").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = app.admin(Method::GET, "/admin/api/v1/tenants/acme/audit?since=2999-01-01T00:00:00Z").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["items"], json!([]));
    app.stop().await;
}
