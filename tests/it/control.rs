//! The control plane as a replicable state machine: every applied mutation is a log entry, replaying the log into
//! empty files gives the same control.db, settings patches are merged where they are applied, and the log is
//! readable by operators only.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app, spawn_with};

/// Every row of every table of a SQLite file, each table's rows sorted: what "the same content" means here. The
/// migration runner's bookkeeping (`schema_migrations`, with the time each ran) is not state and is left out.
fn logical_content(path: &Path) -> Vec<(String, Vec<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
           AND name != 'schema_migrations' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            // The Raft position is written beside the entries (by the state machine), not by `apply`.
            let only = if table == "meta" { " WHERE key NOT LIKE 'raft\\_%' ESCAPE '\\'" } else { "" };
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"{only}")).unwrap();
            let columns = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    let cells: Vec<String> = (0..columns)
                        .map(|i| match r.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
                            other => format!("{other:?}"),
                        })
                        .collect();
                    Ok(cells.join(" | "))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            rows.sort();
            (table, rows)
        })
        .collect()
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let r = app.admin(method.clone(), path).json(&body).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn replaying_the_log_into_empty_files_gives_the_same_control_db() {
    // The data dir outlives the server, so the file is read after it stopped (nothing writes it then).
    let data_dir = tempfile::tempdir().unwrap();
    let app = crate::support::spawn_in(data_dir.path(), |_| {}, Router::new()).await.unwrap();
    // A bit of everything the control plane holds.
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    ok(&app, Method::PATCH, "/admin/api/v1/tenants/acme", json!({"name": "Acme Inc", "settings": {"locale": "de"}}))
        .await;
    app.create_token("deploy", "tenant:acme").await;
    ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/acme/admins",
        json!({"email": "boss@acme.example", "password": "correct horse battery staple"}),
    )
    .await;
    let client = ok(
        &app,
        Method::POST,
        "/admin/api/v1/tenants/acme/clients",
        json!({"name": "Web", "type": "confidential", "redirect_uris": ["https://app.example/cb"]}),
    )
    .await;
    let id = client["client_id"].as_str().unwrap();
    ok(&app, Method::POST, &format!("/admin/api/v1/tenants/acme/clients/{id}/secret"), json!({})).await;
    ok(&app, Method::POST, "/admin/api/v1/tenants/acme/keys/rotate", json!({})).await;
    ok(
        &app,
        Method::PUT,
        "/admin/api/v1/tenants/acme/smtp",
        json!({"host": "127.0.0.1", "port": 2525, "tls": "none", "from_email": "no-reply@acme.example"}),
    )
    .await;
    ok(&app, Method::POST, "/admin/api/v1/tenants/beta/suspend", json!({})).await;
    ok(&app, Method::DELETE, "/admin/api/v1/tenants/beta", json!({})).await;
    app.stop().await;
    let data = data_dir.path();

    let original = data.join("control.db");
    let entries: Vec<(u64, String)> = {
        let conn = rusqlite::Connection::open(&original).unwrap();
        conn.prepare("SELECT idx, mutation FROM control_log ORDER BY idx")
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let kinds: Vec<String> = rusqlite::Connection::open(&original)
        .unwrap()
        .prepare("SELECT kind FROM control_log ORDER BY idx")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for kind in
        ["init_key_check", "create_tenant", "update_tenant", "put_oauth_client", "add_signing_key", "archive_tenant"]
    {
        assert!(kinds.iter().any(|k| k == kind), "{kind} is in the log: {kinds:?}");
    }
    let last: String = rusqlite::Connection::open(&original)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'last_applied'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(last.parse::<u64>().unwrap(), entries.last().unwrap().0, "last_applied is the last entry");

    let replay = || {
        let dir = tempfile::tempdir().unwrap();
        let store =
            gatehouse::control::ControlStore::open(dir.path(), Arc::new(gatehouse::telemetry::Metrics::new())).unwrap();
        for (index, json) in &entries {
            let mutation: gatehouse::control::Mutation = serde_json::from_str(json).unwrap();
            store.apply_entry(*index, mutation).unwrap();
        }
        assert_eq!(store.last_applied().unwrap(), entries.last().unwrap().0);
        drop(store);
        let content = logical_content(&dir.path().join("control.db"));
        (dir, content)
    };
    let (_a, first) = replay();
    let (_b, second) = replay();
    let original_content = logical_content(&original);
    assert_eq!(original_content.len(), first.len());
    for (((table, rows), (_, once)), (_, twice)) in original_content.iter().zip(&first).zip(&second) {
        let differs = |a: &Vec<String>, b: &Vec<String>| {
            a.iter().filter(|r| !b.contains(r)).chain(b.iter().filter(|r| !a.contains(r))).cloned().collect::<Vec<_>>()
        };
        assert!(once == twice, "table {table}: the same log gave different rows: {:?}", differs(once, twice));
        assert!(rows == once, "table {table}: nothing writes control.db but apply: {:?}", differs(rows, once));
    }
}

#[tokio::test]
async fn concurrent_partial_settings_patches_both_land() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    for round in 0..8 {
        let color = format!("#1122{round:02}");
        let locale = if round % 2 == 0 { "de" } else { "fr" };
        let a = app
            .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
            .json(&json!({"settings": {"branding": {"primary_color": color}}}))
            .send();
        let b = app
            .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
            .json(&json!({"settings": {"locale": locale}}))
            .send();
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a.unwrap().status(), b.unwrap().status()), (StatusCode::OK, StatusCode::OK));
        let tenant: Value =
            app.admin(Method::GET, "/admin/api/v1/tenants/acme").send().await.unwrap().json().await.unwrap();
        assert_eq!(tenant["settings"]["branding"]["primary_color"], color.as_str(), "round {round}");
        assert_eq!(tenant["settings"]["locale"], locale, "round {round}");
    }
    app.stop().await;
}

#[tokio::test]
async fn operators_read_the_log_without_secrets() {
    let app = spawn_with(|_| {}, Router::new()).await;
    app.create_tenant("acme").await;
    app.create_token("acme admin", "tenant:acme").await;
    let page: Value =
        app.admin(Method::GET, "/admin/api/v1/control/log?limit=200").send().await.unwrap().json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert_eq!(items.last().unwrap()["index"], page["last_applied"]);
    let text = page.to_string();
    for secret_key in ["token_hash", "value", "password_hash"] {
        for item in items {
            let found = &item["mutation"][secret_key];
            assert!(found.is_null() || found == "<redacted>", "{secret_key} in {item}");
        }
    }
    assert!(text.contains("create_api_token") && text.contains("<redacted>"), "{text}");
    // Paging: after the last applied index there is nothing.
    let last = page["last_applied"].as_u64().unwrap();
    let rest: Value = app
        .admin(Method::GET, &format!("/admin/api/v1/control/log?after={last}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 0);
    // A tenant-scoped token may not read the log (it spans every tenant); no token, no log.
    let tenant_token = app.create_token("scoped", "tenant:acme").await;
    let r = app.client.get(app.url("/admin/api/v1/control/log")).bearer_auth(&tenant_token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = app.client.get(app.url("/admin/api/v1/control/log")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

async fn last_applied(app: &TestApp) -> u64 {
    let page: Value =
        app.admin(Method::GET, "/admin/api/v1/control/log?limit=1").send().await.unwrap().json().await.unwrap();
    page["last_applied"].as_u64().unwrap()
}

#[tokio::test]
async fn reads_never_write_the_control_plane_and_keys_come_with_the_tenant() {
    let data_dir = tempfile::tempdir().unwrap();
    let app = crate::support::spawn_in(data_dir.path(), |_| {}, Router::new()).await.unwrap();
    app.create_tenant("acme").await;
    let client = app
        .admin(Method::POST, "/admin/api/v1/tenants/acme/clients")
        .json(&json!({"name": "M2M", "type": "confidential", "grant_types": ["client_credentials"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    // The tenant's key was made when the tenant was; JWKS, discovery and a token request write nothing.
    let before = last_applied(&app).await;
    let jwks: Value =
        app.client.get(app.url("/t/acme/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    app.client.get(app.url("/t/acme/.well-known/openid-configuration")).send().await.unwrap();
    let r = app
        .client
        .post(app.url("/t/acme/oauth2/token"))
        .basic_auth(client["client_id"].as_str().unwrap(), client["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(last_applied(&app).await, before, "no mutation from a read");

    // Changing the algorithm makes the new key at once (the request that changed it proposes it).
    let r = app
        .admin(Method::PATCH, "/admin/api/v1/tenants/acme")
        .json(&json!({"settings": {"oidc": {"signing_alg": "ES256"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let keys: Value =
        app.admin(Method::GET, "/admin/api/v1/tenants/acme/keys").send().await.unwrap().json().await.unwrap();
    let active: Vec<&Value> = keys["items"].as_array().unwrap().iter().filter(|k| k["status"] == "active").collect();
    assert_eq!((active.len(), active[0]["alg"].as_str()), (1, Some("ES256")), "{keys}");

    // A tenant without a key (as one made before keys came with the tenant): a read answers 503 and writes
    // nothing; the keeper makes the key when the node starts.
    app.create_tenant("legacy").await;
    let control = rusqlite::Connection::open(data_dir.path().join("control.db")).unwrap();
    control.execute("DELETE FROM signing_keys WHERE slug = 'legacy'", []).unwrap();
    let before = last_applied(&app).await;
    let r = app.client.get(app.url("/t/legacy/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_ready");
    assert_eq!(last_applied(&app).await, before, "no mutation from a read");
    app.stop().await;
    let app = crate::support::spawn_in(data_dir.path(), |_| {}, Router::new()).await.unwrap();
    let jwks = crate::support::eventually(std::time::Duration::from_secs(10), "the keeper's key", || async {
        let r = app.client.get(app.url("/t/legacy/.well-known/jwks.json")).send().await.unwrap();
        if r.status() == 200 { Some(r.json::<Value>().await.unwrap()) } else { None }
    })
    .await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_refused_entry_is_an_outcome_in_the_log_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let before = last_applied(&app).await;
    let again = json!({"slug": "acme", "name": "Again"});
    let (status, body) = app.json(Method::POST, "/admin/api/v1/tenants", Some(again)).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("conflict")));
    let (_, page) = app.json(Method::GET, &format!("/admin/api/v1/control/log?after={before}"), None).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["kind"], "create_tenant");
    assert_eq!(items[0]["outcome"]["result"], "refused");
    assert_eq!(items[0]["outcome"]["code"], "conflict");
    assert_eq!(page["last_applied"].as_u64().unwrap(), before + 1, "a refused entry is applied as 'nothing changed'");
    let (_, tenant) = app.json(Method::GET, "/admin/api/v1/tenants/acme", None).await;
    assert_eq!(tenant["name"], "Tenant acme", "the refused entry changed nothing: {tenant}");
    app.stop().await;
}

#[tokio::test]
async fn tenant_files_follow_the_log_and_a_crash_between_commit_and_listener_is_reconciled() {
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path();
    let app = crate::support::spawn_in(data, |_| {}, Router::new()).await.unwrap();
    app.create_tenant("acme").await;
    app.create_tenant("beta").await;
    app.stop().await;

    // This node's id is persisted, and tenants made here name it as their home; their files carry the
    // incarnation their CreateTenant entry chose.
    let node: u64 = std::fs::read_to_string(data.join("node_id")).unwrap().trim().parse().unwrap();
    assert!((1..1u64 << 53).contains(&node));
    let control = rusqlite::Connection::open(data.join("control.db")).unwrap();
    let (home, incarnation): (i64, String) = control
        .query_row("SELECT home_node, incarnation FROM tenants WHERE slug = 'acme'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(home as u64, node);
    let stamp = |slug: &str| -> String {
        rusqlite::Connection::open(data.join(format!("tenants/{slug}.db")))
            .unwrap()
            .query_row("SELECT value FROM tenant_meta WHERE key = 'incarnation'", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(stamp("acme"), incarnation);

    // Crashes between a commit and its listener: acme's file never got made; beta's archive entry committed but
    // its file never moved (applied here without listeners, as a node that died after the commit); and a tenant
    // from before nodes had ids has no home.
    std::fs::remove_file(data.join("tenants/acme.db")).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("tenants/acme.db{side}")));
    }
    {
        let store =
            gatehouse::control::ControlStore::open(data, Arc::new(gatehouse::telemetry::Metrics::new())).unwrap();
        let slug = gatehouse::tenants::TenantSlug::parse("beta").unwrap();
        let file = "archive/beta-123.db".to_owned();
        store
            .apply_blocking(gatehouse::control::Mutation::ArchiveTenant { slug, file, at: 123, incarnation: None })
            .unwrap();
    }
    control.execute("UPDATE tenants SET home_node = NULL", []).unwrap();
    drop(control);
    assert!(data.join("tenants/beta.db").exists() && !data.join("archive/beta-123.db").exists());

    let app = crate::support::spawn_in(data, |_| {}, Router::new()).await.unwrap();
    assert!(data.join("tenants/acme.db").exists(), "the missing file was made at start");
    assert_eq!(stamp("acme"), incarnation, "with the tenant's incarnation");
    assert!(data.join("archive/beta-123.db").exists(), "the archived tenant's file moved where its entry said");
    assert!(!data.join("tenants/beta.db").exists());
    let home: i64 = rusqlite::Connection::open(data.join("control.db"))
        .unwrap()
        .query_row("SELECT home_node FROM tenants WHERE slug = 'acme'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(home as u64, node, "the homeless tenant was adopted by this node");
    // The re-made file works: a user can be created in it.
    crate::support::create_user(&app, "acme", "ann@example.com").await;
    // A new beta is a new incarnation: the archive keeps the old file, the new one starts empty.
    app.create_tenant("beta").await;
    assert_ne!(stamp("beta"), stamp("acme"));
    // Deleting and re-creating a slug within one second keeps every archive (no name is reused).
    for _ in 0..2 {
        let (status, _) = app.json(Method::DELETE, "/admin/api/v1/tenants/beta", None).await;
        assert_eq!(status, StatusCode::OK);
        app.create_tenant("beta").await;
    }
    let archives = std::fs::read_dir(data.join("archive"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".db"))
        .count();
    assert_eq!(archives, 3, "beta-123 and the two deleted since");
    app.stop().await;
}
