//! Regression tests for the defects a security review confirmed on wave 1, each tried as an attacker would:
//! account-API access by third-party tokens, unlimited TOTP guessing, taking the stored SMTP password, grants
//! that outlived recovery and disabling, sensitive claims set through custom fields, and the lower-risk mends
//! (introspection of other clients' tokens, the registered client authentication method, CORS per client,
//! CSRF on body-less cookie writes, settings sent as arrays, error shapes).

use axum::Router;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::identity::{code_at, csrf_of, get_page, mail, now, submit, token_link, token_of};
use crate::oidc::{PASSWORD, REDIRECT, create_client, create_user, field, jar, query_param, set_settings, token};
use crate::support::{TestApp, spawn_app, spawn_with};

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Runs the authorization code flow in `browser` (signing in and consenting when asked) and exchanges the code
/// with the confidential client's Basic credentials. Answers the token response.
pub(crate) async fn code_flow(
    app: &TestApp,
    browser: &Client,
    slug: &str,
    client: &Value,
    scope: &str,
    email: &str,
) -> Value {
    let code = authorize(app, browser, slug, client, scope, email).await;
    let creds = (client["client_id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let (status, body, _) = token(
        app,
        slug,
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
        Some(creds),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Follows an authorization request to the redirect URI and answers the code.
async fn authorize(app: &TestApp, browser: &Client, slug: &str, client: &Value, scope: &str, email: &str) -> String {
    let mut url = app.url(&format!(
        "/t/{slug}/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state=s",
        client["client_id"].as_str().unwrap(),
        enc(REDIRECT),
        enc(scope)
    ));
    for _ in 0..10 {
        if url.starts_with(REDIRECT) {
            return query_param(&url, "code").unwrap_or_else(|| panic!("no code in {url}"));
        }
        let r = browser.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            url = if location(&r).starts_with('/') { app.url(&location(&r)) } else { location(&r) };
            continue;
        }
        let html = r.text().await.unwrap();
        let action = url.split('?').next().unwrap().to_owned();
        let posted = if html.contains("name=\"password\"") {
            browser
                .post(&action)
                .form(&[
                    ("csrf_token", field(&html, "csrf_token")),
                    ("return_to", field(&html, "return_to")),
                    ("email", email.to_owned()),
                    ("password", PASSWORD.to_owned()),
                ])
                .send()
                .await
                .unwrap()
        } else if html.contains("name=\"decision\"") {
            browser
                .post(app.url(&format!("/t/{slug}/consent")))
                .form(&[
                    ("csrf_token", field(&html, "csrf_token")),
                    ("request", field(&html, "request")),
                    ("decision", "allow".to_owned()),
                ])
                .send()
                .await
                .unwrap()
        } else {
            panic!("unexpected page at {url}: {html}");
        };
        assert!(posted.status().is_redirection(), "{url} answered {}", posted.status());
        url = if location(&posted).starts_with('/') { app.url(&location(&posted)) } else { location(&posted) };
    }
    panic!("never reached the redirect URI");
}

/// Resets `email`'s password (to `PASSWORD`) the way its owner would: the forgot form, then the mailed link.
async fn reset_by_mail(app: &TestApp, email: &str) {
    app.client.post(app.url("/t/acme/api/v1/password/forgot")).json(&json!({"email": email})).send().await.unwrap();
    let link = token_link(&mail(app, "acme", email, "reset_password").await, &app.base);
    let r = app
        .client
        .post(app.url("/t/acme/api/v1/password/reset"))
        .json(&json!({"token": token_of(&link), "new_password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

async fn call(app: &TestApp, method: Method, path: &str, bearer: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn introspect(app: &TestApp, slug: &str, token: &str, client: &Value) -> Value {
    let r = app
        .client
        .post(app.url(&format!("/t/{slug}/oauth2/introspect")))
        .basic_auth(client["client_id"].as_str().unwrap(), client["client_secret"].as_str())
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_account_api_takes_only_account_scoped_tokens_of_first_party_clients() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    create_user(&app, "acme", "ada@example.com").await;
    let clients = "/admin/api/v1/tenants/acme/clients";
    // A third-party client cannot even be given the account scopes.
    let r = app
        .admin(Method::POST, clients)
        .json(&json!({"name": "T", "type": "confidential", "redirect_uris": [REDIRECT], "scopes": ["openid", "account:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let third =
        create_client(&app, "acme", json!({"name": "Third", "type": "confidential", "redirect_uris": [REDIRECT]}))
            .await;
    let first = create_client(
        &app,
        "acme",
        json!({"name": "First", "type": "confidential", "first_party": true, "redirect_uris": [REDIRECT],
               "scopes": ["openid", "profile", "email", "account:read", "account:write"]}),
    )
    .await;
    let browser = jar();

    // A third-party app's openid token: nothing on the account API (it used to read and change everything).
    let t = code_flow(&app, &browser, "acme", &third, "openid email", "ada@example.com").await;
    let third_token = t["access_token"].as_str().unwrap();
    for (method, path, body) in [
        (Method::GET, "/t/acme/api/v1/me", None),
        (Method::GET, "/t/acme/api/v1/me/sessions", None),
        (Method::PATCH, "/t/acme/api/v1/me", Some(json!({"name": "Mallory"}))),
        (
            Method::POST,
            "/t/acme/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": "x".repeat(20)})),
        ),
        (Method::DELETE, "/t/acme/api/v1/me/sessions/abc", None),
        (Method::POST, "/t/acme/api/v1/logout", None),
    ] {
        let (status, body) = call(&app, method.clone(), path, third_token, body).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "insufficient_scope", "{method} {path}");
    }
    // The third-party app cannot ask for the scopes either.
    let r = browser
        .get(app.url(&format!(
            "/t/acme/oauth2/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20account%3Aread&state=s",
            third["client_id"].as_str().unwrap(),
            enc(REDIRECT)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("invalid_scope"));

    // account:read reads, but does not write.
    let t = code_flow(&app, &browser, "acme", &first, "openid account:read", "ada@example.com").await;
    let reader = t["access_token"].as_str().unwrap().to_owned();
    let (status, me) = call(&app, Method::GET, "/t/acme/api/v1/me", &reader, None).await;
    assert_eq!((status, me["email"].as_str()), (StatusCode::OK, Some("ada@example.com")));
    assert!(me.get("csrf_token").is_none(), "a bearer caller gets no cookie CSRF token");
    assert_eq!(call(&app, Method::GET, "/t/acme/api/v1/me/sessions", &reader, None).await.0, 200);
    let (status, body) = call(&app, Method::PATCH, "/t/acme/api/v1/me", &reader, Some(json!({"name": "R"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
    // account:write writes.
    let t = code_flow(&app, &browser, "acme", &first, "openid account:read account:write", "ada@example.com").await;
    let writer = t["access_token"].as_str().unwrap().to_owned();
    let (status, me) = call(&app, Method::PATCH, "/t/acme/api/v1/me", &writer, Some(json!({"name": "Ada L"}))).await;
    assert_eq!((status, me["name"].as_str()), (StatusCode::OK, Some("Ada L")));
    // A client demoted to third party loses the power at once, even for tokens already issued.
    let r = app
        .admin(Method::PATCH, &format!("{clients}/{}", first["client_id"].as_str().unwrap()))
        .json(&json!({"first_party": false, "scopes": ["openid"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(call(&app, Method::GET, "/t/acme/api/v1/me", &writer, None).await.0, 403);
    // The session cookie keeps working.
    let r = browser.get(app.url("/t/acme/api/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Discovery lists the scopes.
    let doc: Value =
        app.client.get(app.url("/t/acme/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    let scopes = doc["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&json!("account:read")) && scopes.contains(&json!("account:write")), "{doc}");
    app.stop().await;
}

#[tokio::test]
async fn wrong_totp_codes_lock_even_when_the_password_keeps_being_right() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    set_settings(&app, "acme", json!({"lockout": {"max_failures": 3, "backoff_seconds": 60}})).await;
    let user = create_user(&app, "acme", "hal@example.com").await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    // Enrol TOTP through the hosted pages.
    let browser = jar();
    let r = submit(
        &browser,
        &app,
        "/t/acme/login",
        "/t/acme/login",
        &[("email", "hal@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(r.status(), 303);
    submit(&browser, &app, "/t/acme/account", "/t/acme/account/totp/start", &[]).await;
    let (_, html) = get_page(&browser, &app, "/t/acme/account/totp").await;
    let start = html.find("<code class=\"secret\">").unwrap() + 21;
    let secret = html[start..start + html[start..].find('<').unwrap()].to_owned();
    let r =
        submit(&browser, &app, "/t/acme/account/totp", "/t/acme/account/totp", &[("code", &code_at(&secret, now()))])
            .await;
    assert_eq!(r.status(), 200);

    let login = || async {
        let client = jar();
        let r = client
            .post(app.url("/t/acme/api/v1/login"))
            .json(&json!({"email": "hal@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        (client, r.status(), r.json::<Value>().await.unwrap())
    };
    let guess = |client: Client, code: &'static str| {
        let url = app.url("/t/acme/api/v1/login/mfa");
        async move { client.post(url).json(&json!({"code": code})).send().await.unwrap().status() }
    };
    // (right password, one wrong code) three times: the third wrong code locks, although every password was right.
    for _ in 0..3 {
        let (client, status, body) = login().await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("mfa_required")), "{body}");
        assert_eq!(guess(client, "000000").await, 400);
    }
    let (_, status, body) = login().await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
    let audit: Value = app
        .admin(Method::GET, &format!("/admin/api/v1/tenants/acme/audit?user_id={user_id}&type=locked_out"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

    // A password reset (whoever controls the mailbox) does not lift the second factor's lock.
    reset_by_mail(&app, "hal@example.com").await;
    assert_eq!(login().await.1, StatusCode::UNAUTHORIZED, "still locked after a reset");
    // When the lock ends, the count has not: the next wrong code locks again, for twice as long.
    let db = rusqlite::Connection::open(app.data_dir.join("tenants/acme.db")).unwrap();
    db.execute("UPDATE users SET mfa_locked_until = 1", []).unwrap();
    let (client, status, _) = login().await;
    assert_eq!(status, 200);
    assert_eq!(guess(client, "111111").await, 400);
    let until: i64 = db.query_row("SELECT mfa_locked_until FROM users", [], |r| r.get(0)).unwrap();
    let left = until - now() as i64;
    assert!((100..=120).contains(&left), "locked for {left} s");
    // A correct code clears the count.
    db.execute("UPDATE users SET mfa_locked_until = 1", []).unwrap();
    let (client, _, _) = login().await;
    let code = code_at(&secret, now() + 30);
    let r = client.post(app.url("/t/acme/api/v1/login/mfa")).json(&json!({"code": code})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let failures: i64 = db.query_row("SELECT mfa_failures FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(failures, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_admin_cannot_redirect_or_downgrade_the_stored_smtp_password() {
    // The test config allows private receivers (for local webhook and SMTP sinks); production does not.
    let app = spawn_with(
        |config| {
            config.webhook_allow_private = false;
            config.mail.mode = gatehouse::config::MailMode::Smtp;
        },
        Router::new(),
    )
    .await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    let tenant_token = app.create_token("acme admin", "tenant:acme").await;
    let other_token = app.create_token("other admin", "tenant:other").await;
    let path = "/admin/api/v1/tenants/acme/smtp";
    let base = json!({"host": "93.184.216.34", "port": 587, "tls": "starttls", "username": "mailer",
                      "password": "s3cret-smtp", "from_email": "no-reply@acme.example"});
    let put = |token: &str, body: Value| {
        let req = app.client.put(app.url(path)).bearer_auth(token).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let without_password = |changes: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove("password");
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    assert_eq!(put(&tenant_token, base.clone()).await.0, 200);
    assert_eq!(put(&other_token, base.clone()).await.0, 403, "another tenant's admin");
    // Pointing the stored credentials anywhere new needs the password again.
    for change in [
        json!({"host": "198.51.100.7"}),
        json!({"port": 2525}),
        json!({"tls": "tls"}),
        json!({"username": "someone-else"}),
    ] {
        let (status, body) = put(&tenant_token, without_password(change.clone())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("password_required")),
            "{change}"
        );
    }
    // A change that keeps the destination keeps the password.
    let (status, view) = put(&tenant_token, without_password(json!({"from_name": "Acme"}))).await;
    assert_eq!((status, view["password_set"].as_bool()), (StatusCode::OK, Some(true)), "{view}");
    // Internal hosts and credentials in the clear are for operators only.
    for host in ["127.0.0.1", "localhost", "[::1]", "::127.0.0.1", "10.1.2.3", "169.254.169.254", "fec0::1"] {
        let mut body = base.clone();
        body["host"] = json!(host);
        let (status, body) = put(&tenant_token, body).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("validation_failed")),
            "{host}"
        );
    }
    let mut clear = base.clone();
    clear["tls"] = json!("none");
    assert_eq!(put(&tenant_token, clear.clone()).await.0, 400);
    // DNS rebinding: settings a tenant admin saved are pinned at send time to an address that passes the guard.
    // (The stored host is changed underneath, as a name that later resolves inward would be; nothing connects.)
    assert_eq!(put(&tenant_token, base.clone()).await.0, 200);
    let control = rusqlite::Connection::open(app.data_dir.join("control.db")).unwrap();
    control.execute("UPDATE tenant_smtp SET host = 'localhost' WHERE slug = 'acme'", []).unwrap();
    let r = app
        .client
        .post(app.url("/admin/api/v1/tenants/acme/emails/test"))
        .bearer_auth(&tenant_token)
        .json(&json!({"to": "ops@acme.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let error = crate::support::eventually(std::time::Duration::from_secs(10), "the send attempt", || async {
        let item: Value =
            call(&app, Method::GET, &format!("/admin/api/v1/tenants/acme/outbox/{id}"), &tenant_token, None).await.1;
        item["last_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(error.contains("loopback, private"), "{error}");
    // An operator's settings are not guarded: a local relay is theirs to use.
    let mut relay = clear.clone();
    relay["host"] = json!("127.0.0.1");
    assert_eq!(put(crate::support::TOKEN, relay).await.0, 200, "an operator may use a local relay");
    app.stop().await;
}

#[tokio::test]
async fn recovery_disabling_and_deleting_end_every_grant() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let user = create_user(&app, "acme", "ada@example.com").await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let client = create_client(
        &app,
        "acme",
        json!({"name": "First", "type": "confidential", "first_party": true, "redirect_uris": [REDIRECT],
               "scopes": ["openid", "email", "offline_access", "account:read", "account:write"]}),
    )
    .await;
    let creds = (client["client_id"].as_str().unwrap(), client["client_secret"].as_str().unwrap());
    let refresh = |rt: String| {
        let app = &app;
        async move { token(app, "acme", &[("grant_type", "refresh_token"), ("refresh_token", &rt)], Some(creds)).await }
    };
    // Every kind of grant the user can hold, checked as dead or alive.
    let dead = |tokens: Value| {
        let app = &app;
        let client = &client;
        async move {
            let access = tokens["access_token"].as_str().unwrap().to_owned();
            let info = app.client.get(app.url("/t/acme/oauth2/userinfo")).bearer_auth(&access).send().await.unwrap();
            let me = app.client.get(app.url("/t/acme/api/v1/me")).bearer_auth(&access).send().await.unwrap();
            let active = introspect(app, "acme", &access, client).await["active"].as_bool().unwrap();
            let refreshed = match tokens["refresh_token"].as_str() {
                Some(rt) => refresh(rt.to_owned()).await.0 == 200,
                None => false,
            };
            (info.status() == 401, me.status() == 401, !active, !refreshed)
        }
    };
    let all_dead = (true, true, true, true);
    // An offline grant (no session id in the token) and a session-bound one.
    let grants = |browser: Client| {
        let app = &app;
        let client = &client;
        async move {
            let offline =
                code_flow(app, &browser, "acme", client, "openid offline_access account:read", "ada@example.com").await;
            let online = code_flow(app, &browser, "acme", client, "openid account:read", "ada@example.com").await;
            (offline, online)
        }
    };

    // 1. Password reset (someone else knew the password and took tokens): every grant ends.
    // Checking a grant with `dead` uses its refresh token, so a grant is checked once; `alive` has no effect.
    let alive = |tokens: &Value| {
        let req =
            app.client.get(app.url("/t/acme/oauth2/userinfo")).bearer_auth(tokens["access_token"].as_str().unwrap());
        async move { req.send().await.unwrap().status() == 200 }
    };
    let (offline, online) = grants(jar()).await;
    assert!(alive(&offline).await && alive(&online).await, "live grants work first");
    let (probe, _) = grants(jar()).await;
    assert_eq!(dead(probe).await, (false, false, false, false), "every check sees a live grant as live");
    reset_by_mail(&app, "ada@example.com").await;
    assert_eq!(dead(offline).await, all_dead);
    assert_eq!(dead(online).await, all_dead);

    // 2. A password change ends the grants of other sessions, keeps this session's.
    let here = jar();
    let (offline, online_here) = grants(here.clone()).await;
    let (_, online_elsewhere) = grants(jar()).await;
    let csrf = {
        let me: Value = here.get(app.url("/t/acme/api/v1/me")).send().await.unwrap().json().await.unwrap();
        me["csrf_token"].as_str().unwrap().to_owned()
    };
    assert!(!csrf.is_empty());
    let r = here
        .post(app.url("/t/acme/api/v1/me/password"))
        .json(&json!({"current_password": PASSWORD, "new_password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(dead(offline).await, all_dead, "an offline grant has no session to keep it");
    assert_eq!(dead(online_elsewhere).await, all_dead);
    assert!(alive(&online_here).await, "the session that changed it keeps its grant");

    // 3. Disabling: every grant ends, and stays dead after enabling again.
    let (offline, online) = grants(jar()).await;
    let admin_user = format!("/admin/api/v1/tenants/acme/users/{user_id}");
    let (probe, _) = grants(jar()).await;
    assert_eq!(app.admin(Method::POST, &format!("{admin_user}/disable")).send().await.unwrap().status(), 200);
    assert_eq!(dead(probe).await, all_dead, "refused while disabled");
    assert_eq!(app.admin(Method::POST, &format!("{admin_user}/enable")).send().await.unwrap().status(), 200);
    assert_eq!(dead(offline).await, all_dead, "and revoked, not only refused");
    assert_eq!(dead(online).await, all_dead);

    // 4. A code whose sign-in ended before the exchange is refused.
    let browser = jar();
    let code = authorize(&app, &browser, "acme", &client, "openid", "ada@example.com").await;
    let page = browser.get(app.url("/t/acme/account")).send().await.unwrap().text().await.unwrap();
    browser.post(app.url("/t/acme/logout")).form(&[("csrf_token", csrf_of(&page))]).send().await.unwrap();
    let (status, body, _) = token(
        &app,
        "acme",
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
        Some(creds),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");

    // 5. Deleting: the tokens die with the account.
    let (offline, online) = grants(jar()).await;
    assert_eq!(app.admin(Method::DELETE, &admin_user).send().await.unwrap().status(), 204);
    assert_eq!(dead(offline).await, all_dead);
    assert_eq!(dead(online).await, all_dead);
    app.stop().await;
}

#[tokio::test]
async fn custom_fields_and_scopes_cannot_use_claim_names_the_server_sets() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    for settings in [
        json!({"oidc": {"custom_scopes": [{"name": "x", "claims": ["acr"]}]}}),
        json!({"oidc": {"custom_scopes": [{"name": "x", "claims": ["client_id"]}]}}),
        json!({"oidc": {"custom_scopes": [{"name": "x", "claims": ["email_verified"]}]}}),
        json!({"oidc": {"custom_scopes": [{"name": "x", "claims": ["permissions"]}]}}),
        json!({"custom_fields": [{"name": "sub", "type": "string"}]}),
        json!({"custom_fields": [{"name": "roles", "type": "string"}]}),
        json!({"custom_fields": [{"name": "amr", "type": "string"}]}),
    ] {
        let r = app
            .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
            .json(&json!({"settings": settings}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{settings}");
    }
    // A field of another name is released, next to (never instead of) the server's claims.
    set_settings(
        &app,
        "acme",
        json!({"custom_fields": [{"name": "plan", "type": "string"}],
               "oidc": {"custom_scopes": [{"name": "billing", "claims": ["plan"]}]}}),
    )
    .await;
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/users")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "email_verified": true, "fields": {"plan": "pro"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let client = create_client(
        &app,
        "acme",
        json!({"name": "App", "type": "confidential", "first_party": true, "redirect_uris": [REDIRECT],
               "scopes": ["openid", "email", "billing"]}),
    )
    .await;
    let tokens = code_flow(&app, &jar(), "acme", &client, "openid email billing", "ada@example.com").await;
    let info: Value = app
        .client
        .get(app.url("/t/acme/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((info["plan"].as_str(), info["email"].as_str()), (Some("pro"), Some("ada@example.com")), "{info}");
    app.stop().await;
}

#[tokio::test]
async fn oauth_clients_see_only_their_own_tokens_and_origins() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    create_user(&app, "acme", "ada@example.com").await;
    let a = create_client(
        &app,
        "acme",
        json!({"name": "A", "type": "confidential", "first_party": true, "redirect_uris": [REDIRECT],
               "grant_types": ["authorization_code", "client_credentials"], "allowed_cors_origins": ["https://a.example"]}),
    )
    .await;
    let b = create_client(
        &app,
        "acme",
        json!({"name": "B", "type": "confidential", "grant_types": ["client_credentials"],
               "token_endpoint_auth_method": "client_secret_post", "allowed_cors_origins": ["https://b.example"]}),
    )
    .await;
    let (a_id, a_secret) = (a["client_id"].as_str().unwrap(), a["client_secret"].as_str().unwrap());
    let (b_id, b_secret) = (b["client_id"].as_str().unwrap(), b["client_secret"].as_str().unwrap());
    let user_tokens = code_flow(&app, &jar(), "acme", &a, "openid", "ada@example.com").await;
    let access = user_tokens["access_token"].as_str().unwrap();

    // Introspection: B learns nothing of A's token until it is made a resource server.
    assert_eq!(introspect(&app, "acme", access, &a).await["active"], true);
    let by_b = |app: &TestApp| {
        app.client
            .post(app.url("/t/acme/oauth2/introspect"))
            .form(&[("token", access), ("client_id", b_id), ("client_secret", b_secret)])
            .send()
    };
    assert_eq!(by_b(&app).await.unwrap().json::<Value>().await.unwrap()["active"], false);
    let r = app
        .admin(Method::PATCH, &format!("/admin/api/v1/tenants/acme/clients/{b_id}"))
        .json(&json!({"resource_server": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(by_b(&app).await.unwrap().json::<Value>().await.unwrap()["active"], true);

    // The registered authentication method is the only one accepted.
    let cc = [("grant_type", "client_credentials")];
    assert_eq!(token(&app, "acme", &cc, Some((a_id, a_secret))).await.0, 200);
    let post_a = [("grant_type", "client_credentials"), ("client_id", a_id), ("client_secret", a_secret)];
    assert_eq!(token(&app, "acme", &post_a, None).await.0, 401, "A registered client_secret_basic");
    assert_eq!(token(&app, "acme", &cc, Some((b_id, b_secret))).await.0, 401, "B registered client_secret_post");
    let post_b = [("grant_type", "client_credentials"), ("client_id", b_id), ("client_secret", b_secret)];
    assert_eq!(token(&app, "acme", &post_b, None).await.0, 200);

    // CORS: a token answer is readable only by the origins of the client it was for.
    let cors = |origin: &'static str| {
        app.client.post(app.url("/t/acme/oauth2/token")).header("origin", origin).form(&post_b).send()
    };
    let r = cors("https://b.example").await.unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), "https://b.example");
    let r = cors("https://a.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "A's origin cannot read B's tokens");
    app.stop().await;
}

#[tokio::test]
async fn body_less_cookie_writes_need_the_csrf_header() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    create_user(&app, "acme", "ada@example.com").await;
    let browser = jar();
    let login = |client: &Client| {
        client
            .post(app.url("/t/acme/api/v1/login"))
            .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
            .send()
    };
    let signed_in: Value = login(&browser).await.unwrap().json().await.unwrap();
    let csrf = signed_in["csrf_token"].as_str().unwrap().to_owned();
    let other = jar();
    let other_session: Value = login(&other).await.unwrap().json().await.unwrap();
    let other_id = other_session["session"]["id"].as_str().unwrap();
    // A cross-site form can send these with the cookie; without the header they are refused.
    let revoke = format!("/t/acme/api/v1/me/sessions/{other_id}");
    let r = browser.delete(app.url(&revoke)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = browser
        .post(app.url("/t/acme/api/v1/logout"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(other.get(app.url("/t/acme/api/v1/me")).send().await.unwrap().status(), 200, "nothing was revoked");
    let r = browser.delete(app.url(&revoke)).header("x-csrf-token", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = browser.delete(app.url(&revoke)).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(other.get(app.url("/t/acme/api/v1/me")).send().await.unwrap().status(), 401);
    let r = browser.post(app.url("/t/acme/api/v1/logout")).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(r.status(), 204);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_error_shape_its_caller_parses_and_loses_nothing() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    set_settings(
        &app,
        "acme",
        json!({"oidc": {"signing_alg": "ES256", "access_token_ttl": 600}, "lockout": {"max_failures": 3}}),
    )
    .await;
    // An array where a settings object belongs used to reset every field of it.
    for patch in [json!({"oidc": []}), json!({"lockout": []}), json!({"oidc": [1, 2]})] {
        let r = app
            .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
            .json(&json!({"settings": patch}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{patch}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");
    }
    let tenant: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme").send().await.unwrap().json().await.unwrap();
    assert_eq!(tenant["settings"]["oidc"]["signing_alg"], "ES256", "{tenant}");
    assert_eq!(tenant["settings"]["oidc"]["access_token_ttl"], 600);
    assert_eq!(tenant["settings"]["lockout"]["max_failures"], 3);

    // Path and query failures answer the JSON error body, not axum's text.
    for path in [
        "/admin/api/v1/tenants/acme/audit?limit=-1",
        "/admin/api/v1/tenants/%ff",
        "/admin/api/v1/tenants/acme/plugins/login/versions/x/activate",
    ] {
        let method = if path.ends_with("activate") { Method::POST } else { Method::GET };
        let r = app.admin(method, path).send().await.unwrap();
        let status = r.status();
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"), "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{path}: {body}");
    }
    // The OAuth endpoints answer 405 and 413 in the RFC 6749 shape.
    let r = app.client.get(app.url("/t/acme/oauth2/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string() && body["error_description"].is_string(), "{body}");
    let big = "a=".to_owned() + &"x".repeat(2 * 1024 * 1024);
    let r = app
        .client
        .post(app.url("/t/acme/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    app.stop().await;
}
