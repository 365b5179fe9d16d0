//! The OAuth 2.0 / OIDC provider end to end: third-party client libraries (Node `openid-client`, Python
//! `authlib`) against the real server, then the negative cases, key rotation, per-tenant discovery and JWKS,
//! CORS and the clients admin API, driven over HTTP with a cookie jar.

use std::path::Path;

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub(crate) use crate::support::{PASSWORD, create_user};
use crate::support::{TestApp, require_python_module, require_tool, spawn_app, spawn_with};

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";

pub(crate) fn jar() -> Client {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} on {html}")) + marker.len();
    html[start..start + html[start..].find('"').unwrap()].replace("&#x2f;", "/").replace("&amp;", "&")
}

pub(crate) async fn create_client(app: &TestApp, slug: &str, body: Value) -> Value {
    let r = app.admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/clients")).json(&body).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

pub(crate) async fn set_settings(app: &TestApp, slug: &str, settings: Value) {
    let r = app
        .admin(Method::PATCH, &format!("/admin/api/v1/tenants/{slug}"))
        .json(&json!({ "settings": settings }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

pub(crate) fn pkce() -> (String, String) {
    let verifier = format!("v{}", "x".repeat(50));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(crate) fn authorize_url(app: &TestApp, slug: &str, client_id: &str, extra: &str) -> String {
    app.url(&format!(
        "/t/{slug}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20email%20profile&state=st{extra}",
        enc(REDIRECT)
    ))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default()
}

pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Follows the browser path from an authorize URL (signing in when asked) to the client's redirect URI.
pub(crate) async fn browse_to_callback(app: &TestApp, browser: &Client, start: &str, email: &str) -> String {
    let mut url = start.to_owned();
    for _ in 0..10 {
        if url.starts_with(REDIRECT) {
            return url;
        }
        let r = browser.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            url = if location(&r).starts_with('/') { app.url(&location(&r)) } else { location(&r) };
            continue;
        }
        let html = r.text().await.unwrap();
        assert!(html.contains("name=\"password\""), "expected the login page at {url}: {html}");
        let action = url.split('?').next().unwrap().to_owned();
        let posted = browser
            .post(&action)
            .form(&[
                ("csrf_token", field(&html, "csrf_token")),
                ("return_to", field(&html, "return_to")),
                ("email", email.to_owned()),
                ("password", PASSWORD.to_owned()),
            ])
            .send()
            .await
            .unwrap();
        if !posted.status().is_redirection() {
            let status = posted.status();
            panic!("login answered {status}: {}", posted.text().await.unwrap_or_default());
        }
        url = app.url(&location(&posted));
    }
    panic!("never reached the redirect URI");
}

pub(crate) async fn token(
    app: &TestApp,
    slug: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, Option<String>) {
    let mut req = app.client.post(app.url(&format!("/t/{slug}/oauth2/token"))).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let challenge = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap(), challenge)
}

async fn introspect(app: &TestApp, slug: &str, token: &str, creds: (&str, &str)) -> Value {
    let r = app
        .client
        .post(app.url(&format!("/t/{slug}/oauth2/introspect")))
        .basic_auth(creds.0, Some(creds.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Runs a client script off the async runtime (the server under test shares it).
trait OutputAsync {
    async fn output_async(self) -> std::process::Output;
}

impl OutputAsync for &mut std::process::Command {
    async fn output_async(self) -> std::process::Output {
        let mut cmd = std::mem::replace(self, std::process::Command::new("true"));
        tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
    }
}

pub(crate) fn clients_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc_clients")
}

#[tokio::test]
async fn third_party_clients_complete_every_flow() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    set_settings(
        &app,
        "acme",
        json!({"oidc": {"custom_scopes": [{"name": "api:read", "description": "read the API"}]}}),
    )
    .await;
    create_user(&app, "acme", "ada@example.com").await;
    let node = create_client(
        &app,
        "acme",
        json!({
            "name": "Node app", "type": "confidential", "redirect_uris": [REDIRECT],
            "post_logout_redirect_uris": ["http://127.0.0.1:9/bye"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scopes": ["openid", "profile", "email", "offline_access", "api:read"]
        }),
    )
    .await;
    let py = create_client(
        &app,
        "acme",
        json!({
            "name": "Python app", "type": "confidential", "first_party": true, "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "client_credentials"], "token_endpoint_auth_method": "client_secret_post",
            "scopes": ["openid", "profile", "email", "api:read"]
        }),
    )
    .await;
    let issuer = app.url("/t/acme");

    if require_tool("node") {
        if !clients_dir().join("node_modules/openid-client").exists() {
            assert!(std::env::var_os("CI").is_none(), "scripts/test installs tests/oidc_clients/node_modules");
            eprintln!("SKIPPED: run `npm ci` in tests/oidc_clients");
        } else {
            let out = std::process::Command::new("node")
                .arg(clients_dir().join("openid_client_check.mjs"))
                .env("ISSUER", &issuer)
                .env("CLIENT_ID", node["client_id"].as_str().unwrap())
                .env("CLIENT_SECRET", node["client_secret"].as_str().unwrap())
                .env("REDIRECT_URI", REDIRECT)
                .env("POST_LOGOUT_URI", "http://127.0.0.1:9/bye")
                .env("EMAIL", "ada@example.com")
                .env("PASSWORD", PASSWORD)
                .env("CC_SCOPE", "api:read")
                .output_async()
                .await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!("openid-client:\n{stdout}");
            assert!(
                out.status.success(),
                "openid-client checks failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.contains("all checks passed") && stdout.contains("consent page shown"), "{stdout}");
        }
    }
    if require_python_module("authlib") {
        let out = std::process::Command::new("python3")
            .arg(clients_dir().join("authlib_check.py"))
            .env("ISSUER", &issuer)
            .env("CLIENT_ID", py["client_id"].as_str().unwrap())
            .env("CLIENT_SECRET", py["client_secret"].as_str().unwrap())
            .env("REDIRECT_URI", REDIRECT)
            .env("EMAIL", "ada@example.com")
            .env("PASSWORD", PASSWORD)
            .env("CC_SCOPE", "api:read")
            .output_async()
            .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("authlib:\n{stdout}");
        assert!(out.status.success(), "authlib checks failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("all checks passed"), "{stdout}");
    }
    // The consent the Node run gave is remembered and listed on the account; refresh reuse was audited.
    let audit: Value = app
        .admin(Method::GET, "/admin/api/v1/tenants/acme/audit?type=token_reuse")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if Path::new(&clients_dir().join("node_modules/openid-client")).exists() {
        assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_per_the_rfcs() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    create_user(&app, "acme", "ada@example.com").await;
    let web = create_client(
        &app,
        "acme",
        json!({"name": "Web", "type": "confidential", "first_party": true, "resource_server": true,
               "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token", "client_credentials"]}),
    )
    .await;
    let spa = create_client(
        &app,
        "acme",
        json!({"name": "SPA", "type": "public", "first_party": true, "redirect_uris": [REDIRECT]}),
    )
    .await;
    let (web_id, web_secret) = (web["client_id"].as_str().unwrap(), web["client_secret"].as_str().unwrap());
    let spa_id = spa["client_id"].as_str().unwrap();
    assert!(spa.get("client_secret").is_none());

    // Unknown client and unregistered redirect URI: an error page, never a redirect.
    for url in [
        app.url(&format!(
            "/t/acme/oauth2/authorize?response_type=code&client_id=nope&redirect_uri={}&scope=openid",
            enc(REDIRECT)
        )),
        app.url(&format!(
            "/t/acme/oauth2/authorize?response_type=code&client_id={web_id}&redirect_uri={}&scope=openid",
            enc("https://evil.example/cb")
        )),
        app.url(&format!("/t/acme/oauth2/authorize?response_type=code&client_id={web_id}&scope=openid")),
    ] {
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{url}");
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains("cannot be completed"));
    }
    // A public client without PKCE: error back to the client with state and iss.
    let r = app.client.get(authorize_url(&app, "acme", spa_id, "")).send().await.unwrap();
    let to = location(&r);
    assert!(to.starts_with(REDIRECT), "{to}");
    assert_eq!(query_param(&to, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&to, "state").as_deref(), Some("st"));
    assert_eq!(query_param(&to, "iss"), Some(app.url("/t/acme")));
    // plain PKCE and unknown scopes are refused too.
    let r = app
        .client
        .get(authorize_url(&app, "acme", spa_id, "&code_challenge=abc&code_challenge_method=plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("invalid_request"));
    let r = app
        .client
        .get(authorize_url(&app, "acme", web_id, "").replace("scope=openid", "scope=openid%20admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("invalid_scope"));
    // prompt=none without a session.
    let r = app.client.get(authorize_url(&app, "acme", web_id, "&prompt=none")).send().await.unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("login_required"));

    // A code with PKCE: wrong verifier, then missing verifier, fail (and burn the code).
    let browser = jar();
    let (verifier, challenge) = pkce();
    let pkce_q = format!("&code_challenge={challenge}&code_challenge_method=S256&nonce=n1");
    let cb = browse_to_callback(&app, &browser, &authorize_url(&app, "acme", spa_id, &pkce_q), "ada@example.com").await;
    let code = query_param(&cb, "code").unwrap();
    let wrong = format!("w{}", "y".repeat(50));
    let (status, body, _) = token(
        &app,
        "acme",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", spa_id),
            ("code_verifier", &wrong),
        ],
        None,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // The session is live now: the next authorize goes straight back with a code.
    let fresh = |extra: &str| authorize_url(&app, "acme", spa_id, &format!("{pkce_q}{extra}"));
    let r = browser.get(fresh("")).send().await.unwrap();
    let code = query_param(&location(&r), "code").expect("code without a login");
    let exchange = |code: String, redirect: &'static str| {
        let verifier = verifier.clone();
        let app = &app;
        async move {
            token(
                app,
                "acme",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", spa_id),
                    ("code_verifier", &verifier),
                ],
                None,
            )
            .await
        }
    };
    // Redirect URI mismatch at the token endpoint.
    let (status, body, _) = exchange(code, "http://127.0.0.1:9/other").await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // A good exchange, then the same code again: refused, and the first tokens are revoked.
    let r = browser.get(fresh("")).send().await.unwrap();
    let code = query_param(&location(&r), "code").unwrap();
    let (status, first, _) = exchange(code.clone(), REDIRECT).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert!(first.get("refresh_token").is_none(), "a public client without offline_access gets no refresh token");
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&app, "acme", &access, (web_id, web_secret)).await["active"], true);
    let (status, body, _) = exchange(code, REDIRECT).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(introspect(&app, "acme", &access, (web_id, web_secret)).await["active"], false, "code reuse revoked it");
    // An expired code.
    let r = browser.get(fresh("")).send().await.unwrap();
    let code = query_param(&location(&r), "code").unwrap();
    let db = rusqlite::Connection::open(app.data_dir.join("tenants/acme.db")).unwrap();
    db.execute("UPDATE oauth_codes SET expires_at = 0 WHERE used_at IS NULL", []).unwrap();
    let (status, body, _) = exchange(code, REDIRECT).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert!(body["error_description"].as_str().unwrap().contains("expired"));

    // Wrong client secret: 401 with WWW-Authenticate.
    let (status, body, challenge) =
        token(&app, "acme", &[("grant_type", "client_credentials")], Some((web_id, "ghcs_wrong"))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    assert!(challenge.unwrap().starts_with("Basic"));
    // A public client at introspection.
    let r = app
        .client
        .post(app.url("/t/acme/oauth2/introspect"))
        .form(&[("token", access.as_str()), ("client_id", spa_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A public client cannot use client_credentials.
    let (status, body, _) =
        token(&app, "acme", &[("grant_type", "client_credentials"), ("client_id", spa_id)], None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")));

    // A live user token of acme means nothing at another tenant.
    let r = browser.get(fresh("")).send().await.unwrap();
    let (_, good, _) = exchange(query_param(&location(&r), "code").unwrap(), REDIRECT).await;
    let user_token = good["access_token"].as_str().unwrap().to_owned();
    let info = app.client.get(app.url("/t/acme/oauth2/userinfo")).bearer_auth(&user_token).send().await.unwrap();
    assert_eq!(info.status(), 200);
    assert_eq!(info.json::<Value>().await.unwrap()["email"], "ada@example.com");
    // The end-user API needs an account scope (tests/it/security.rs covers tokens that have one).
    let me = app.client.get(app.url("/t/acme/api/v1/me")).bearer_auth(&user_token).send().await.unwrap();
    assert_eq!(me.status(), 403);
    assert_eq!(me.json::<Value>().await.unwrap()["error"]["code"], "insufficient_scope");
    let m2m = token(&app, "acme", &[("grant_type", "client_credentials")], Some((web_id, web_secret))).await.1;
    let r = app
        .client
        .get(app.url("/t/acme/api/v1/me"))
        .bearer_auth(m2m["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a client's own token is not a user");
    let other = create_client(
        &app,
        "other",
        json!({"name": "O", "type": "confidential", "grant_types": ["client_credentials"]}),
    )
    .await;
    let cross = app.client.get(app.url("/t/other/oauth2/userinfo")).bearer_auth(&user_token).send().await.unwrap();
    assert_eq!(cross.status(), 401);
    assert!(cross.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let o = (other["client_id"].as_str().unwrap(), other["client_secret"].as_str().unwrap());
    assert_eq!(introspect(&app, "other", &user_token, o).await["active"], false);

    // alg none, a tampered payload and an unknown alg are rejected.
    let parts: Vec<&str> = user_token.split('.').collect();
    let header = |h: Value| URL_SAFE_NO_PAD.encode(h.to_string());
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let kid = serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap()["kid"].clone();
    payload["sub"] = json!("someone-else");
    let tampered_payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    for forged in [
        format!("{}.{}.", header(json!({"alg": "none", "typ": "at+jwt", "kid": kid})), parts[1]),
        format!("{}.{}.{}", parts[0], tampered_payload, parts[2]),
        format!("{}.{}.{}", header(json!({"alg": "HS256", "typ": "at+jwt", "kid": kid})), parts[1], parts[2]),
        format!("{}.{}.{}", header(json!({"alg": "XX999", "typ": "at+jwt", "kid": kid})), parts[1], parts[2]),
    ] {
        let r = app.client.get(app.url("/t/acme/oauth2/userinfo")).bearer_auth(&forged).send().await.unwrap();
        assert_eq!(r.status(), 401, "{forged}");
        assert_eq!(introspect(&app, "acme", &forged, (web_id, web_secret)).await["active"], false);
    }
    // Signing out of the session ends its tokens.
    let page = browser.get(app.url("/t/acme/account")).send().await.unwrap().text().await.unwrap();
    let csrf = field(&page, "csrf_token");
    browser.post(app.url("/t/acme/logout")).form(&[("csrf_token", csrf)]).send().await.unwrap();
    let r = app.client.get(app.url("/t/acme/oauth2/userinfo")).bearer_auth(&user_token).send().await.unwrap();
    assert_eq!(r.status(), 401, "the session's tokens end with it");
    app.stop().await;
}

#[tokio::test]
async fn keys_rotate_with_overlap_and_retire() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let c = create_client(
        &app,
        "acme",
        json!({"name": "M2M", "type": "confidential", "grant_types": ["client_credentials"]}),
    )
    .await;
    let creds = (c["client_id"].as_str().unwrap(), c["client_secret"].as_str().unwrap());
    let (status, old, _) = token(&app, "acme", &[("grant_type", "client_credentials")], Some(creds)).await;
    assert_eq!(status, 200, "{old}");
    let old_token = old["access_token"].as_str().unwrap().to_owned();
    let jwks = |app: &TestApp| {
        let url = app.url("/t/acme/.well-known/jwks.json");
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = jwks(&app).await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 1);
    assert_eq!(before["keys"][0]["kty"], "RSA");

    let r = app.admin(Method::POST, "/admin/api/v1/tenants/acme/keys/rotate").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let rotated: Value = r.json().await.unwrap();
    let after = jwks(&app).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 2, "the old key stays published");
    assert_eq!(introspect(&app, "acme", &old_token, creds).await["active"], true, "old tokens still validate");
    let (_, new, _) = token(&app, "acme", &[("grant_type", "client_credentials")], Some(creds)).await;
    let new_header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD.decode(new["access_token"].as_str().unwrap().split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(new_header["kid"], rotated["kid"]);
    assert_eq!(new_header["typ"], "at+jwt");
    let keys: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/keys").send().await.unwrap().json().await.unwrap();
    let statuses: Vec<&str> = keys["items"].as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["active", "retiring"]);
    assert!(keys["items"][1]["retires_at"].is_string());

    // Once the old key's tokens have expired it leaves JWKS and its tokens stop validating.
    let control = rusqlite::Connection::open(app.data_dir.join("control.db")).unwrap();
    control.execute("UPDATE signing_keys SET expires_at = 1 WHERE expires_at IS NOT NULL", []).unwrap();
    set_settings(&app, "acme", json!({"locale": "en"})).await; // any tenant change drops the cached key ring
    assert_eq!(jwks(&app).await["keys"].as_array().unwrap().len(), 1);
    assert_eq!(introspect(&app, "acme", &old_token, creds).await["active"], false);

    // Switching the algorithm rotates to a key of the new kind.
    set_settings(&app, "acme", json!({"oidc": {"signing_alg": "ES256"}})).await;
    let ec = jwks(&app).await;
    assert_eq!(ec["keys"][0]["kty"], "EC");
    assert_eq!(ec["keys"][0]["alg"], "ES256");
    set_settings(&app, "acme", json!({"oidc": {"signing_alg": "EdDSA"}})).await;
    let (status, ed, _) = token(&app, "acme", &[("grant_type", "client_credentials")], Some(creds)).await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&app, "acme", ed["access_token"].as_str().unwrap(), creds).await["active"], true);
    assert_eq!(jwks(&app).await["keys"][0]["crv"], "Ed25519");
    app.stop().await;
}

#[tokio::test]
async fn discovery_differs_per_tenant_and_is_cached_with_etags() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    let spa = create_client(
        &app,
        "acme",
        json!({"name": "SPA", "type": "public", "redirect_uris": ["https://app.example/cb"], "allowed_cors_origins": ["https://app.example"]}),
    )
    .await;
    let a: Value =
        app.client.get(app.url("/t/acme/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    let b: Value =
        app.client.get(app.url("/t/beta/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(a["issuer"], app.url("/t/acme"));
    assert_eq!(b["issuer"], app.url("/t/beta"));
    assert_eq!(a["token_endpoint"], app.url("/t/acme/oauth2/token"));
    assert_eq!(a["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(a["response_types_supported"], json!(["code"]));
    let ka: Value =
        app.client.get(app.url("/t/acme/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kb: Value =
        app.client.get(app.url("/t/beta/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_ne!(ka["keys"][0]["kid"], kb["keys"][0]["kid"]);
    assert!(ka["keys"][0].get("d").is_none(), "no private parts in JWKS");

    let r = app.client.get(app.url("/t/acme/.well-known/jwks.json")).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let again =
        app.client.get(app.url("/t/acme/.well-known/jwks.json")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);

    // CORS: the client's origin is allowed, another is not.
    let allowed = app
        .client
        .request(Method::OPTIONS, app.url("/t/acme/oauth2/token"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let denied = app
        .client
        .get(app.url("/t/acme/.well-known/jwks.json"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());
    // Unknown tenants have no provider.
    assert_eq!(app.client.get(app.url("/t/nope/.well-known/openid-configuration")).send().await.unwrap().status(), 404);
    let _ = spa;
    app.stop().await;
}

#[tokio::test]
async fn clients_admin_api_validates_and_rotates_secrets() {
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    let base = "/admin/api/v1/tenants/acme/clients";
    for bad in [
        json!({"name": "x", "type": "confidential", "redirect_uris": ["https://app.example/*"]}),
        json!({"name": "x", "type": "confidential", "redirect_uris": ["http://app.example/cb"]}),
        json!({"name": "x", "type": "public", "redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
        json!({"name": "x", "type": "confidential", "redirect_uris": ["https://a.example/cb"], "scopes": ["nope"]}),
        json!({"name": "x", "type": "confidential", "redirect_uris": ["https://a.example/cb"], "allowed_cors_origins": ["https://a.example/path"]}),
    ] {
        let r = app.admin(Method::POST, base).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");
    }
    let c = create_client(
        &app,
        "acme",
        json!({"name": "M2M", "type": "confidential", "grant_types": ["client_credentials"]}),
    )
    .await;
    let id = c["client_id"].as_str().unwrap();
    let old = c["client_secret"].as_str().unwrap();
    let listed: Value = app.admin(Method::GET, base).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["items"][0]["client_id"], id);
    assert!(listed["items"][0].get("secret_hash").is_none() && listed["items"][0].get("client_secret").is_none());
    let patched: Value = app
        .admin(Method::PATCH, &format!("{base}/{id}"))
        .json(&json!({"name": "Machine", "access_token_ttl": 120}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((patched["name"].as_str(), patched["access_token_ttl"].as_i64()), (Some("Machine"), Some(120)));
    let (status, t, _) = token(&app, "acme", &[("grant_type", "client_credentials")], Some((id, old))).await;
    assert_eq!((status, t["expires_in"].as_i64()), (StatusCode::OK, Some(120)));
    let rotated: Value =
        app.admin(Method::POST, &format!("{base}/{id}/secret")).send().await.unwrap().json().await.unwrap();
    let new = rotated["client_secret"].as_str().unwrap();
    assert_eq!(token(&app, "acme", &[("grant_type", "client_credentials")], Some((id, old))).await.0, 401);
    // Only the registered method (client_secret_basic) is accepted.
    let (status, _, _) =
        token(&app, "acme", &[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", new)], None)
            .await;
    assert_eq!(status, 401);
    assert_eq!(token(&app, "acme", &[("grant_type", "client_credentials")], Some((id, new))).await.0, 200);
    assert_eq!(app.admin(Method::DELETE, &format!("{base}/{id}")).send().await.unwrap().status(), 204);
    assert_eq!(token(&app, "acme", &[("grant_type", "client_credentials")], Some((id, new))).await.0, 401);
    // A tenant-scoped token sees only its tenant's clients.
    app.create_tenant("beta").await;
    let beta_token = app.create_token("beta", "tenant:beta").await;
    let r = app.client.get(app.url(base)).bearer_auth(&beta_token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn cli_lists_and_rotates_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::BinServer::start(dir.path(), &[]).await;
    let r = Client::new()
        .post(format!("{}/admin/api/v1/tenants", server.base))
        .bearer_auth(crate::support::TOKEN)
        .json(&json!({"slug": "acme", "name": "Acme", "settings": {"oidc": {"signing_alg": "ES256"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let run = |args: &[&str]| crate::support::run_cli(&server.base, args);
    let (ok, listed, err) = run(&["keys", "list", "--tenant", "acme"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 1, "{listed}");
    assert!(lines[0].contains("ES256") && lines[0].contains("active"), "{listed}");
    let first_kid = lines[0].split_whitespace().next().unwrap().to_owned();

    let (ok, rotated, err) = run(&["keys", "rotate", "--tenant", "acme"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = rotated.lines().collect();
    assert_eq!(lines.len(), 2, "{rotated}");
    assert!(lines[0].contains(" active") && !lines[0].starts_with(&first_kid), "{rotated}");
    assert!(lines[1].starts_with(&first_kid) && lines[1].contains("retiring retires "), "{rotated}");
    let new_kid = lines[0].split_whitespace().next().unwrap();
    assert!(err.contains(new_kid), "{err}");
    let jwks = crate::support::get_json(&format!("{}/t/acme/.well-known/jwks.json", server.base)).await;
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&new_kid) && kids.contains(&first_kid.as_str()), "{jwks}");

    // Unknown tenant and a wrong token fail with the API's code and a non-zero exit.
    let (ok, _, err) = run(&["keys", "rotate", "--tenant", "nope"]);
    assert!(!ok && err.contains("tenant_not_found"), "{err}");
    let out = std::process::Command::new(crate::support::binary())
        .args(["keys", "list", "--tenant", "acme", "--token", "wrong"])
        .env("GATEHOUSE_URL", &server.base)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}
