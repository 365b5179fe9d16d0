//! Tenant lifecycle through the admin API, slug validation, isolation of tenant-scoped tokens, restarts, schema
//! checks and the bounded pool cache.

use axum::Router;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{metric_value, spawn_app, spawn_in, spawn_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_lifecycle() {
    let app = spawn_app().await;
    let created = app.create_tenant("acme").await;
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["status"], "active");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(app.data_dir.join("tenants/acme.db").exists());

    // Duplicate → 409.
    let dup = app
        .admin(Method::POST, "/admin/api/v1/tenants")
        .json(&json!({"slug":"acme","name":"Again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    assert_eq!(dup.json::<Value>().await.unwrap()["error"]["code"], "conflict");

    // Public info, then a partial settings update.
    let public: Value = app.client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap().json().await.unwrap();
    assert_eq!(public["name"], "Tenant acme");
    let patched = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({"name": "Acme Inc", "settings": {"display_name": "ACME", "branding": {"primary_color": "#112233"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["name"], "Acme Inc");
    assert_eq!(patched["settings"]["branding"]["primary_color"], "#112233");
    let again = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({"settings": {"locale": "de"}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(again["settings"]["display_name"], "ACME", "keys not given stay as they are");
    assert_eq!(again["settings"]["locale"], "de");
    let bad = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({"settings": {"branding": {"primary_color": "red"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");
    let public: Value = app.client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap().json().await.unwrap();
    assert_eq!(public["display_name"], "ACME");

    // Suspend → 403, resume → 200.
    assert_eq!(app.admin(Method::POST, "/admin/api/v1/tenants/acme/suspend").send().await.unwrap().status(), 200);
    let suspended = app.client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap();
    assert_eq!(suspended.status(), 403);
    assert_eq!(suspended.json::<Value>().await.unwrap()["error"]["code"], "tenant_suspended");
    assert_eq!(app.admin(Method::POST, "/admin/api/v1/tenants/acme/resume").send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap().status(), 200);

    // Delete → 404, file archived, slug free again.
    let deleted: Value =
        app.admin(Method::DELETE, "/admin/api/v1/tenants/acme").send().await.unwrap().json().await.unwrap();
    let archived = app.data_dir.join(deleted["archived_to"].as_str().unwrap());
    assert!(archived.exists(), "{archived:?}");
    assert!(!app.data_dir.join("tenants/acme.db").exists());
    let gone = app.client.get(app.url("/t/acme/api/v1/tenant")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.json::<Value>().await.unwrap()["error"]["code"], "tenant_not_found");
    let recreated = app.create_tenant("acme").await;
    assert_eq!(recreated["name"], "Tenant acme");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_slugs_are_refused_and_touch_no_file() {
    let app = spawn_app().await;
    let long = "a".repeat(64);
    for slug in ["A", "a", "../x", "x/y", "-x", long.as_str(), "acmé", "acme%2F..", "", "..", "a b"] {
        let r = app
            .admin(Method::POST, "/admin/api/v1/tenants")
            .json(&json!({"slug": slug, "name": "X"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{slug:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed", "{slug:?}");
    }
    // Path tricks on the admin API.
    for path in ["/admin/api/v1/tenants/acme%2F..", "/admin/api/v1/tenants/A", "/admin/api/v1/tenants/..%2Fcontrol"] {
        let r = app.admin(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
    let r = app.client.get(app.url("/t/..%2Fcontrol/api/v1/tenant")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let tenants: Vec<_> = std::fs::read_dir(app.data_dir.join("tenants")).unwrap().collect();
    assert!(tenants.is_empty(), "no tenant file was created");
    let mut top: Vec<String> = std::fs::read_dir(&app.data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let expected =
        ["archive", "control.db", "control.db-shm", "control.db-wal", "master.key", "node_id", "raft", "tenants"];
    assert_eq!(top, expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_scoped() {
    let app = spawn_app().await;
    app.create_tenant("alpha").await;
    app.create_tenant("beta").await;

    let anonymous = app.client.get(app.url("/admin/api/v1/tenants")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let wrong = app.client.get(app.url("/admin/api/v1/tenants")).bearer_auth("gha_nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    // A token scoped to alpha: sees and edits alpha only.
    let created: Value = app
        .admin(Method::POST, "/admin/api/v1/tokens")
        .json(&json!({"name": "alpha ops", "scope": "tenant:alpha"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let alpha_token = created["token"].as_str().unwrap().to_owned();
    assert!(alpha_token.starts_with("gha_"));
    let as_alpha = |m: Method, p: &str| app.client.request(m, app.url(p)).bearer_auth(&alpha_token);
    let list: Value = as_alpha(Method::GET, "/admin/api/v1/tenants").send().await.unwrap().json().await.unwrap();
    let slugs: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["alpha"]);
    assert_eq!(as_alpha(Method::GET, "/admin/api/v1/tenants/alpha").send().await.unwrap().status(), 200);
    for (method, path) in [
        (Method::GET, "/admin/api/v1/tenants/beta"),
        (Method::PATCH, "/admin/api/v1/tenants/beta"),
        (Method::DELETE, "/admin/api/v1/tenants/beta"),
        (Method::POST, "/admin/api/v1/tenants/beta/suspend"),
        (Method::POST, "/admin/api/v1/tenants/alpha/suspend"),
        (Method::DELETE, "/admin/api/v1/tenants/alpha"),
    ] {
        let r = as_alpha(method.clone(), path).json(&json!({})).send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "forbidden");
    }
    let create =
        as_alpha(Method::POST, "/admin/api/v1/tenants").json(&json!({"slug":"gamma","name":"G"})).send().await.unwrap();
    assert_eq!(create.status(), 403);
    let escalate = as_alpha(Method::POST, "/admin/api/v1/tokens")
        .json(&json!({"name":"x","scope":"operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(escalate.status(), 403);
    let sideways = as_alpha(Method::POST, "/admin/api/v1/tokens")
        .json(&json!({"name":"x","scope":"tenant:beta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sideways.status(), 403);
    let tokens: Value = as_alpha(Method::GET, "/admin/api/v1/tokens").send().await.unwrap().json().await.unwrap();
    assert!(tokens["items"].as_array().unwrap().iter().all(|t| t["scope"] == "tenant:alpha"));
    assert!(!tokens.to_string().contains(&alpha_token), "secrets are never listed");

    // Revoking the token ends its access.
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.admin(Method::DELETE, &format!("/admin/api/v1/tokens/{id}")).send().await.unwrap().status(), 204);
    assert_eq!(as_alpha(Method::GET, "/admin/api/v1/tenants/alpha").send().await.unwrap().status(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_checks_key_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(dir.path(), |_| {}, Router::new()).await.unwrap();
    app.create_tenant("keep").await;
    app.create_tenant("future").await;
    app.admin(Method::POST, "/admin/api/v1/tenants/future/suspend").send().await.unwrap();
    app.stop().await;

    let app = spawn_in(dir.path(), |_| {}, Router::new()).await.unwrap();
    let t: Value = app.admin(Method::GET, "/admin/api/v1/tenants/keep").send().await.unwrap().json().await.unwrap();
    assert_eq!(t["status"], "active");
    let t: Value = app.admin(Method::GET, "/admin/api/v1/tenants/future").send().await.unwrap().json().await.unwrap();
    assert_eq!(t["status"], "suspended");
    app.admin(Method::POST, "/admin/api/v1/tenants/future/resume").send().await.unwrap();
    app.stop().await;

    // A tenant file from a newer binary is refused, not touched.
    let conn = rusqlite::Connection::open(dir.path().join("tenants/future.db")).unwrap();
    conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from the future', 0)", [])
        .unwrap();
    drop(conn);
    let app = spawn_in(dir.path(), |_| {}, Router::new()).await.unwrap();
    let r = app.client.get(app.url("/t/future/api/v1/tenant")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "internal");
    assert_eq!(app.client.get(app.url("/t/keep/api/v1/tenant")).send().await.unwrap().status(), 200);
    app.stop().await;

    // The wrong master key refuses to start.
    let err = spawn_in(dir.path(), |c| c.master_key = Some([9u8; 32]), Router::new()).await.err().expect("refused");
    assert!(err.to_string().contains("master key does not match"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_cache_is_bounded() {
    let app = spawn_with(|c| c.tenant_pool_cache = 100, Router::new()).await;
    let slugs: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
    for slug in &slugs {
        app.create_tenant(slug).await;
    }
    for slug in &slugs {
        let status = app.client.get(app.url(&format!("/t/{slug}/api/v1/tenant"))).send().await.unwrap().status();
        assert_eq!(status, 200, "{slug}");
    }
    let metrics = app.metrics().await;
    let open = metric_value(&metrics, "gatehouse_tenant_pools_open").expect("pools metric");
    assert!(open > 0.0 && open <= 100.0, "open pools {open}");
    assert_eq!(metric_value(&metrics, "gatehouse_tenants_total{status=\"all\"}"), Some(1000.0));
    let misses = metric_value(&metrics, "gatehouse_cache_misses_total{cache=\"tenant_pool\"}").unwrap();
    assert!(misses >= 1000.0, "every first touch opened a pool: {misses}");

    // Pagination walks all 1000 in order with no duplicates.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/api/v1/tenants?limit=200&cursor={c}"),
            None => "/admin/api/v1/tenants?limit=200".into(),
        };
        let page: Value = app.admin(Method::GET, &path).send().await.unwrap().json().await.unwrap();
        seen.extend(page["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, slugs);
    app.stop().await;
}

/// The pool cache is bounded by memory too: with 2 MiB for pools, each weighing its connection's schema and pages
/// (over 100 KiB), far fewer than the count limit stay open, and /metrics shows what SQLite holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_cache_is_bounded_by_memory() {
    let app = spawn_with(|c| c.tenant_pool_memory = 2 << 20, Router::new()).await;
    for i in 0..60 {
        let slug = format!("m{i:02}");
        app.create_tenant(&slug).await;
        let status = app.client.get(app.url(&format!("/t/{slug}/api/v1/tenant"))).send().await.unwrap().status();
        assert_eq!(status, 200, "{slug}");
    }
    let metrics = app.metrics().await;
    let open = metric_value(&metrics, "gatehouse_tenant_pools_open").expect("pools metric");
    assert!((1.0..=18.0).contains(&open), "2 MiB holds at most 18 pools of 115 KiB or more: {open} open");
    let connections = metric_value(&metrics, "gatehouse_tenant_pool_connections ").expect("connections metric");
    assert!(connections >= open, "{connections} connections for {open} pools");
    let heap = metric_value(&metrics, "gatehouse_sqlite_heap_bytes").expect("SQLite heap metric");
    assert!(heap > open * 50_000.0, "SQLite holds {heap} bytes for {open} open pools");
    app.stop().await;
}

#[tokio::test]
async fn identity_settings_are_typed_and_patched_partially() {
    let app = spawn_app().await;
    let created = app.create_tenant("acme").await;
    assert_eq!(created["settings"]["signup_enabled"], true);
    assert_eq!(created["settings"]["password_min_length"], 10);
    assert_eq!(created["settings"]["mfa"], "optional");
    let patch = |body: Value| app.admin(Method::PATCH, "/admin/api/v1/tenants/acme").json(&body).send();
    let r = patch(json!({"settings": {"mfa": "required", "lockout": {"max_failures": 3},
                                      "custom_fields": [{"name": "plan", "type": "string", "required": true}]}}))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = patch(json!({"settings": {"signup_enabled": false}})).await.unwrap();
    let settings = r.json::<Value>().await.unwrap()["settings"].clone();
    assert_eq!(settings["signup_enabled"], false);
    assert_eq!(settings["mfa"], "required", "keys not given stay as they are");
    assert_eq!(settings["lockout"], json!({"max_failures": 3, "backoff_seconds": 60, "max_backoff_seconds": 3600}));
    assert_eq!(settings["custom_fields"][0]["name"], "plan");
    for bad in [json!({"password_min_length": 3}), json!({"mfa": "maybe"}), json!({"session_max_hours": 0})] {
        let r = patch(json!({ "settings": bad })).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "validation_failed");
    }
    let now: Value = app.admin(Method::GET, "/admin/api/v1/tenants/acme").send().await.unwrap().json().await.unwrap();
    assert_eq!(now["settings"], settings, "a refused patch changes nothing");
    app.stop().await;
}
