//! Tenant WebAssembly plugins end to end: upload validation, hostile components contained with the right
//! outcome, the JavaScript login plugin in registration, sign-in and tokens (with deactivation and rollback), the
//! email plugin on mail received by a real SMTP server, restart from cached artifacts, and tenant isolation.
//!
//! The components come from `scripts/build-plugins` (plugins/build/): WAT files in plugins/hostile, the C example
//! and the JavaScript examples. In CI a missing component fails the test.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oidc::{
    PASSWORD, REDIRECT, authorize_url, browse_to_callback, create_client, jar, pkce, query_param, token,
};
use crate::support::{
    SinkOptions, SmtpSink, TestApp, eventually, metric_value, require_python_module, spawn_in, spawn_with,
};

/// The bytes of a built plugin, or `None` (skipped outside CI) when scripts/build-plugins has not run.
pub(crate) fn component(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/build").join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("{} is missing: run scripts/build-plugins", path.display())
        }
        Err(_) => {
            eprintln!("SKIPPED: {} is missing; run scripts/build-plugins", path.display());
            None
        }
    }
}

async fn spawn() -> TestApp {
    spawn_with(|c| c.plugin_max_bytes = 32 << 20, Router::new()).await
}

async fn create_plugin(app: &TestApp, slug: &str, body: Value) -> Value {
    let r = app.admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/plugins")).json(&body).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

async fn upload(app: &TestApp, slug: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/plugins/{name}/versions"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let r = app.admin(Method::POST, path).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn dry_run(app: &TestApp, slug: &str, name: &str, version: u64, function: &str) -> Value {
    let (status, body) = post(
        app,
        &format!("/admin/api/v1/tenants/{slug}/plugins/{name}/versions/{version}/dry-run"),
        json!({ "function": function }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Starts `n` post-login dry-runs of one version at once, each on its own task (answers their reports).
fn spawn_dry_runs(
    app: &TestApp,
    n: usize,
    slug: &str,
    name: &str,
    version: u64,
) -> Vec<tokio::task::JoinHandle<Value>> {
    let url = app.url(&format!("/admin/api/v1/tenants/{slug}/plugins/{name}/versions/{version}/dry-run"));
    (0..n)
        .map(|_| {
            let request =
                app.client.post(&url).bearer_auth(crate::support::TOKEN).json(&json!({"function": "post-login"}));
            tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
        })
        .collect()
}

/// POSTs `megabytes` MiB of zeros with chunked transfer encoding over a raw connection; answers the status.
async fn chunked_upload(app: &TestApp, path: &str, megabytes: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/wasm\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        crate::support::TOKEN
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut sent = 0;
    for _ in 0..megabytes {
        let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
        if conn.write_all(&framed).await.is_err() {
            break;
        }
        sent += 1;
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut answer)).await.unwrap().unwrap_or(0);
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    eprintln!("chunked upload: {sent} MiB written before the answer");
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Signs ada@example.com in through the code flow with PKCE and checks the `plan` claim of both tokens.
async fn sign_in_tokens(app: &TestApp, id: &str, secret: &str, expect_plan: Option<&str>) {
    let browser = jar();
    let (verifier, challenge) = pkce();
    let start = authorize_url(app, "acme", id, &format!("&code_challenge={challenge}&code_challenge_method=S256"));
    let callback = browse_to_callback(app, &browser, &start, "ada@example.com").await;
    let code = query_param(&callback, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body, _) = token(app, "acme", &form, Some((id, secret))).await;
    assert_eq!(status, 200, "{body}");
    for t in ["access_token", "id_token"] {
        let claims = jwt_payload(body[t].as_str().unwrap());
        assert_eq!(claims["plan"].as_str(), expect_plan, "{t}: {claims}");
        assert_eq!(claims["iss"], app.url("/t/acme"), "registered claims are the server's");
    }
}

fn jwt_payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// A tenant holds at most half the call slots: with 2 slots, one tenant's slow calls leave the other slot free,
/// so another tenant's call is answered while they all still run (with a full share it would queue behind them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_plugin_slot() {
    let (Some(spin), Some(noop)) = (component("loop"), component("noop")) else { return };
    let app = spawn_with(
        |c| {
            c.plugin_max_bytes = 32 << 20;
            c.plugin_slots = 2;
        },
        Router::new(),
    )
    .await;
    for (slug, bytes) in [("acme", spin), ("beta", noop)] {
        app.create_tenant(slug).await;
        create_plugin(&app, slug, json!({"name": "guard", "world": "login", "timeout_ms": 1000})).await;
        assert_eq!(upload(&app, slug, "guard", bytes).await.0, StatusCode::CREATED);
    }
    // beta's component is loaded before the race, so its call below is only a call.
    assert_eq!(dry_run(&app, "beta", "guard", 1, "post-login").await["outcome"], "ok");
    let spins = spawn_dry_runs(&app, 3, "acme", "guard", 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dry_run(&app, "beta", "guard", 1, "post-login").await["outcome"], "ok");
    let finished = spins.iter().filter(|s| s.is_finished()).count();
    assert_eq!(finished, 0, "beta's call waited for acme's calls to end");
    for spin in spins {
        assert_eq!(spin.await.unwrap()["outcome"], "timeout");
    }
    app.stop().await;
}

#[tokio::test]
async fn uploads_are_validated_and_hostile_plugins_are_contained() {
    let Some(noop) = component("noop") else { return };
    let app = spawn().await;
    app.create_tenant("acme").await;
    create_plugin(&app, "acme", json!({"name": "guard", "world": "login", "timeout_ms": 50, "memory_mb": 16})).await;

    // Refused uploads, each with its own code; nothing is stored.
    let email_component = component("email-err").unwrap();
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"definitely not wasm".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "plugin_invalid"),
        (component("core-module").unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "plugin_invalid"),
        (email_component, StatusCode::UNPROCESSABLE_ENTITY, "plugin_wrong_world"),
        (component("wasi-fs").unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "plugin_forbidden_import"),
    ];
    for (bytes, status, code) in cases {
        let (got, body) = upload(&app, "acme", "guard", bytes).await;
        assert_eq!((got, body["error"]["code"].as_str().unwrap()), (status, code), "{body}");
    }
    // 100 MB, streamed without a length: 413 once the limit is passed, without reading the rest.
    assert_eq!(chunked_upload(&app, "/admin/api/v1/tenants/acme/plugins/guard/versions", 100).await, 413);
    // …and with a declared length, before any byte is read.
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/plugins/guard/versions")
        .header("content-type", "application/wasm")
        .header("content-length", (100u64 << 20).to_string())
        .body(vec![0u8; 10])
        .send()
        .await;
    assert!(r.map(|r| r.status() == 413).unwrap_or(true));
    let detail: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/plugins/guard").send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["versions"].as_array().unwrap().len(), 0, "{detail}");

    // Hostile but valid components: each call ends with the right outcome, and the server keeps serving.
    let hostile = [
        ("noop", "ok", ""),
        ("loop", "timeout", "deadline"),
        ("bomb", "trap", "memory cap"),
        ("recurse", "trap", "stack"),
        ("unreachable", "trap", "unreachable"),
        ("oversize", "invalid_output", "larger than 64 KiB"),
        ("bad-utf8", "invalid_output", ""),
        ("bad-variant", "invalid_output", ""),
    ];
    for (i, (name, outcome, words)) in hostile.iter().enumerate() {
        let bytes = if *name == "noop" { noop.clone() } else { component(name).unwrap() };
        let (status, body) = upload(&app, "acme", "guard", bytes).await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["version"], json!(i + 1));
        for function in ["pre-registration", "post-login"] {
            let started = Instant::now();
            let report = dry_run(&app, "acme", "guard", (i + 1) as u64, function).await;
            assert_eq!(report["outcome"], json!(outcome), "{name} {function}: {report}");
            let error = report["error"].as_str().unwrap_or("");
            assert!(error.contains(words), "{name}: {error}");
            assert!(started.elapsed() < Duration::from_secs(5), "{name} was not stopped in time");
            // Another request is answered right away while plugins misbehave.
            let started = Instant::now();
            assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }
    // Slow plugins occupy only their own slots: with every slot running a 1 s loop, other requests still answer.
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme/plugins/guard")
        .json(&json!({"timeout_ms": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let loops = spawn_dry_runs(&app, 4, "acme", "guard", 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let r = app.client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a request waited {:?} behind plugins",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in loops {
        let report = l.await.unwrap();
        assert_eq!(report["outcome"], "timeout", "{report}");
        let took = report["duration_us"].as_u64().unwrap();
        assert!((900_000..3_000_000).contains(&took), "{report}");
    }
    app.admin(Method::PATCH, "/admin/api/v1/tenants/acme/plugins/guard")
        .json(&json!({"timeout_ms": 50}))
        .send()
        .await
        .unwrap();
    // A timeout stops near the deadline; the memory cap is the plugin's.
    let report = dry_run(&app, "acme", "guard", 2, "post-login").await;
    assert!(report["duration_us"].as_u64().unwrap() < 1_000_000, "{report}");
    let report = dry_run(&app, "acme", "guard", 3, "post-login").await;
    assert!(report["memory_peak_bytes"].as_u64().unwrap() <= 16 << 20, "{report}");
    // The unreachable one logged before trapping; logs come back with the dry-run.
    let report = dry_run(&app, "acme", "guard", 5, "post-login").await;
    assert_eq!(report["logs"][0], json!({"level": "error", "message": "about to trap"}), "{report}");
    // Log lines are capped at 20 per call (+ one line saying how many were dropped).
    let (_, body) = upload(&app, "acme", "guard", component("logger").unwrap()).await;
    let report = dry_run(&app, "acme", "guard", body["version"].as_u64().unwrap(), "post-login").await;
    assert_eq!(report["logs"].as_array().unwrap().len(), 21, "{report}");
    assert_eq!(report["outcome"], "ok");
    // Bad dry-run input is a clear 400.
    let (status, body) = post(
        &app,
        "/admin/api/v1/tenants/acme/plugins/guard/versions/1/dry-run",
        json!({"function": "post-login", "input": {"user": {"email": 5}}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) =
        post(&app, "/admin/api/v1/tenants/acme/plugins/guard/versions/1/dry-run", json!({"function": "render"})).await;
    assert_eq!(status, 400);

    // Active and failing under fail_closed: sign-up is refused with a generic message; fail_open lets it through.
    let (status, _) = post(&app, "/admin/api/v1/tenants/acme/plugins/guard/versions/5/activate", json!({})).await;
    assert_eq!(status, 200);
    let register = |email: &'static str| {
        app.client.post(app.url("/t/acme/api/v1/register")).json(&json!({"email": email, "password": PASSWORD})).send()
    };
    let r = register("first@example.com").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "denied_by_plugin", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("try again later"));
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme/plugins/guard")
        .json(&json!({"failure_policy": "fail_open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(register("first@example.com").await.unwrap().status().is_success());
    // Failures are counted and listed.
    let detail: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/plugins/guard").send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["stats"]["trap"], 2, "{detail}");
    assert_eq!(detail["stats"]["recent_failures"][0]["outcome"], "trap");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "gatehouse_plugin_calls_total{world=\"login\",function=\"pre-registration\",outcome=\"trap\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    app.stop().await;
}

/// Room for the JavaScript component, and for compiling it on a request's path (the corrupted-artifact step): a
/// multi-megabyte component compiled by a debug build on a busy 2-core machine can take longer than the default
/// 30 s request limit.
fn js_plugin_config(c: &mut gatehouse::Config) {
    c.plugin_max_bytes = 32 << 20;
    c.request_timeout = Duration::from_secs(180);
}

#[tokio::test]
async fn js_login_plugin_blocks_domains_and_adds_claims_with_rollback_and_restart() {
    let (Some(policy), Some(noop)) = (component("js-login-policy"), component("c-noop-login")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(dir.path(), js_plugin_config, Router::new()).await.unwrap();
    app.create_tenant("acme").await;
    app.create_tenant("other").await;
    crate::oidc::set_settings(
        &app,
        "acme",
        json!({"require_email_verification": false,
               "custom_fields": [{"name": "plan", "type": "string", "required": false}]}),
    )
    .await;
    create_plugin(&app, "acme", json!({"name": "policy", "world": "login", "timeout_ms": 500})).await;
    let (status, v1) = upload(&app, "acme", "policy", policy).await;
    assert_eq!(status, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    let (status, _) = post(&app, "/admin/api/v1/tenants/acme/plugins/policy/versions/1/activate", json!({})).await;
    assert_eq!(status, 200);

    // Registration: a blocked domain is refused with the plugin's reason; another goes through.
    let r = app
        .client
        .post(app.url("/t/acme/api/v1/register"))
        .json(&json!({"email": "eve@mailinator.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Sign-ups with mailinator.com addresses are not accepted.");
    let r = app
        .client
        .post(app.url("/t/acme/api/v1/register"))
        .json(&json!({"email": "ada@example.com", "password": PASSWORD, "plan": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // The hosted page shows the reason too.
    let browser = jar();
    let page = browser.get(app.url("/t/acme/register")).send().await.unwrap().text().await.unwrap();
    let csrf = crate::oidc::field(&page, "csrf_token");
    let r = browser
        .post(app.url("/t/acme/register"))
        .form(&[("csrf_token", csrf.as_str()), ("email", "mallory@blocked.example"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(html.contains("Sign-ups with blocked.example addresses are not accepted."), "{html}");
    assert!(html.contains("value=\"mallory@blocked.example\""), "input preserved: {html}");

    // Sign-in through the OIDC code flow: both tokens carry the plugin's `plan` claim.
    let client = create_client(
        &app,
        "acme",
        json!({"name": "App", "type": "confidential", "redirect_uris": [REDIRECT], "first_party": true}),
    )
    .await;
    let (id, secret) =
        (client["client_id"].as_str().unwrap().to_owned(), client["client_secret"].as_str().unwrap().to_owned());
    sign_in_tokens(&app, &id, &secret, Some("pro")).await;

    // Deactivated: the claim is gone. A v2 (the C no-op) active: no claim either. Rolling back to v1: back.
    let (status, _) = post(&app, "/admin/api/v1/tenants/acme/plugins/policy/deactivate", json!({})).await;
    assert_eq!(status, 200);
    sign_in_tokens(&app, &id, &secret, None).await;
    let (status, v2) = upload(&app, "acme", "policy", noop).await;
    assert_eq!((status, v2["version"].as_u64()), (StatusCode::CREATED, Some(2)));
    post(&app, "/admin/api/v1/tenants/acme/plugins/policy/versions/2/activate", json!({})).await;
    sign_in_tokens(&app, &id, &secret, None).await;
    post(&app, "/admin/api/v1/tenants/acme/plugins/policy/versions/1/activate", json!({})).await;
    sign_in_tokens(&app, &id, &secret, Some("pro")).await;

    // Isolation: the other tenant's users never meet acme's plugin, and its admin cannot see or touch it.
    let r = app
        .client
        .post(app.url("/t/other/api/v1/register"))
        .json(&json!({"email": "eve@mailinator.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "the other tenant has no plugin: {}", r.status());
    let other = app.create_token("other-admin", "tenant:other").await;
    for (method, path) in [
        (Method::GET, "/admin/api/v1/tenants/acme/plugins"),
        (Method::GET, "/admin/api/v1/tenants/acme/plugins/policy"),
        (Method::POST, "/admin/api/v1/tenants/acme/plugins/policy/versions/1/activate"),
        (Method::POST, "/admin/api/v1/tenants/acme/plugins/policy/versions/1/dry-run"),
    ] {
        let r = app.client.request(method, app.url(path)).bearer_auth(&other).json(&json!({})).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r =
        app.client.get(app.url("/admin/api/v1/tenants/other/plugins/policy")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Restart: the active plugin comes back from its cached artifact, not a new compilation.
    app.stop().await;
    let app = spawn_in(dir.path(), js_plugin_config, Router::new()).await.unwrap();
    sign_in_tokens(&app, &id, &secret, Some("pro")).await;
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gatehouse_plugin_artifact_loads_total{source=\"cache\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, "gatehouse_plugin_artifact_loads_total{source=\"compiled\"}"), None, "{metrics}");
    app.stop().await;

    // A corrupted artifact is never loaded: it is compiled again from the stored component.
    let cache = dir.path().join("plugin-cache");
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .find(|p| std::fs::metadata(p).unwrap().len() > 1 << 20)
        .expect("the JavaScript plugin's artifact");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xAB);
    std::fs::write(&artifact, bytes).unwrap();
    let app = spawn_in(dir.path(), js_plugin_config, Router::new()).await.unwrap();
    sign_in_tokens(&app, &id, &secret, Some("pro")).await;
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "gatehouse_plugin_artifact_loads_total{source=\"compiled\"}"),
        Some(1.0),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn email_plugin_changes_the_mail_and_failures_fall_back() {
    if !require_python_module("aiosmtpd") {
        return;
    }
    let (Some(footer), Some(err), Some(trap)) =
        (component("js-email-footer"), component("email-err"), component("email-trap"))
    else {
        return;
    };
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let app = spawn().await;
    app.create_tenant("acme").await;
    let r = app
        .admin(Method::PUT, "/admin/api/v1/tenants/acme/smtp")
        .json(&sink.settings("shop@acme.test"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let send_test = |to: &'static str| {
        app.admin(Method::POST, "/admin/api/v1/tenants/acme/emails/test").json(&json!({"to": to})).send()
    };

    create_plugin(&app, "acme", json!({"name": "footer", "world": "email", "timeout_ms": 500})).await;
    let (status, body) = upload(&app, "acme", "footer", footer).await;
    assert_eq!(status, 201, "{body}");
    post(&app, "/admin/api/v1/tenants/acme/plugins/footer/versions/1/activate", json!({})).await;
    assert!(send_test("one@example.com").await.unwrap().status().is_success());
    let messages = sink.wait_for(1, Duration::from_secs(30)).await;
    let raw = messages[0].to_string();
    assert!(raw.contains("You get this mail because you have an Acme account"), "{raw}");

    // A plugin answering err: the built-in rendering goes out.
    let (status, _) = upload(&app, "acme", "footer", err).await;
    assert_eq!(status, 201);
    post(&app, "/admin/api/v1/tenants/acme/plugins/footer/versions/2/activate", json!({})).await;
    assert!(send_test("two@example.com").await.unwrap().status().is_success());
    let messages = sink.wait_for(2, Duration::from_secs(30)).await;
    assert!(!messages[1].to_string().contains("Acme account"), "{}", messages[1]);

    // A trapping plugin, fail_open: built-in again, and the failure is counted.
    let (status, _) = upload(&app, "acme", "footer", trap).await;
    assert_eq!(status, 201);
    app.admin(Method::PATCH, "/admin/api/v1/tenants/acme/plugins/footer")
        .json(&json!({"failure_policy": "fail_open"}))
        .send()
        .await
        .unwrap();
    post(&app, "/admin/api/v1/tenants/acme/plugins/footer/versions/3/activate", json!({})).await;
    assert!(send_test("three@example.com").await.unwrap().status().is_success());
    sink.wait_for(3, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(10), "the trap is counted", || {
        let app = &app;
        async move {
            let metrics = app.metrics().await;
            metric_value(&metrics, "gatehouse_plugin_calls_total{world=\"email\",function=\"render\",outcome=\"trap\"}")
                .filter(|v| *v >= 1.0)
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn cli_uploads_and_activates_a_plugin() {
    let Some(_) = component("c-noop-login") else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::BinServer::start(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{}/admin/api/v1/tenants", server.base))
        .bearer_auth(crate::support::TOKEN)
        .json(&json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/build/c-noop-login.wasm");
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = crate::support::run_cli(&server.base, &args);
        (ok, stdout + &stderr)
    };
    let upload: Vec<String> = ["plugin", "upload", "--tenant", "acme", "--name", "noop", "--world", "login"]
        .iter()
        .map(|s| s.to_string())
        .chain([file.display().to_string(), "--activate".into()])
        .collect();
    let (ok, text) = run(upload);
    assert!(ok, "{text}");
    assert!(text.contains("noop v1 uploaded") && text.contains("noop v1 is active"), "{text}");
    let (ok, text) = run(["plugin", "list", "--tenant", "acme"].iter().map(|s| s.to_string()).collect());
    assert!(ok && text.contains("v1 active"), "{text}");
    // A bad file is refused with the API's code.
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"nope").unwrap();
    let (ok, text) = run(["plugin", "upload", "--tenant", "acme", "--name", "noop", &garbage.display().to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect());
    assert!(!ok && text.contains("plugin_invalid"), "{text}");
}

/// The C examples' checked-in `wit-bindgen c` output was generated from today's WIT: `scripts/gen-c-bindings`
/// records the SHA-256 of `plugins/wit/<version>/*.wit` (sorted by name, concatenated) next to the bindings.
#[test]
fn checked_in_c_bindings_match_the_wit() {
    use sha2::{Digest, Sha256};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (example, version, world) in [("c-noop-login", "0.1.0", "login"), ("c-noop-pricing", "0.2.0", "pricing")] {
        let mut wit: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("plugins/wit").join(version))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wit"))
            .collect();
        wit.sort();
        let mut hash = Sha256::new();
        for file in &wit {
            hash.update(std::fs::read(file).unwrap());
        }
        let actual: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let bindings = root.join("plugins/examples").join(example).join("bindings");
        let recorded = std::fs::read_to_string(bindings.join("WIT_SHA256")).unwrap();
        assert_eq!(recorded.trim(), actual, "plugins/wit/{version} changed: run scripts/gen-c-bindings");
        for generated in [format!("{world}.c"), format!("{world}.h"), format!("{world}_component_type.o")] {
            assert!(bindings.join(&generated).is_file(), "{example}: missing {generated}");
        }
    }
}
