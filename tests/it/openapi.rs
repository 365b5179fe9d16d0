//! The API contract: the OpenAPI document the server publishes, its coverage of the JSON routes, and the API
//! reference page rendered from it. (scripts/api-fuzz checks the running server against the document.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::admin_ui::{EMAIL, PASSWORD, app_with_operator};
use crate::support::spawn_app;

#[tokio::test]
async fn the_contract_documents_every_json_route_with_the_shared_errors() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            count += 1;
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            // CORS preflights answer 204 or an empty 404; everything else documents the shared error bodies.
            if method != "options" {
                assert!(op["responses"]["4XX"].is_object(), "{method} {path} documents its errors");
            }
            assert!(op["security"].is_array(), "{method} {path} says who may call it");
            assert!(op["summary"].is_string(), "{method} {path} has a summary");
        }
    }
    // One route of each surface, so a router left out of `api_routes` shows here.
    for (path, method) in [
        ("/admin/api/v1/tenants", "post"),
        ("/admin/api/v1/tenants/{slug}/users", "get"),
        ("/admin/api/v1/tenants/{slug}/clients", "post"),
        ("/admin/api/v1/tenants/{slug}/smtp", "put"),
        ("/admin/api/v1/tenants/{slug}/webhooks", "post"),
        ("/admin/api/v1/tenants/{slug}/plugins", "get"),
        ("/admin/api/v1/tenants/{slug}/products", "post"),
        ("/t/{slug}/api/v1/products", "get"),
        ("/admin/api/v1/tokens", "post"),
        ("/t/{slug}/api/v1/tenant", "get"),
        ("/t/{slug}/api/v1/me", "get"),
        ("/t/{slug}/oauth2/token", "post"),
        ("/t/{slug}/.well-known/openid-configuration", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is documented");
    }
    assert!(count > 60, "{count} operations");
    // Error codes are an enum taken from the server's code table.
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes, gatehouse::error::CODES);
    app.stop().await;
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files that may register routes with plain axum `.route(`: HTML pages, assets, the browser side of OAuth, the
/// operational endpoints and the document itself. Every other route goes through `OpenApiRouter::routes`, which
/// takes a handler only with its `#[utoipa::path]` operation, so a JSON route cannot exist undocumented.
const PLAIN_ROUTE_FILES: &[&str] = &[
    // The internal cluster listener's routes (node to node, not the public API).
    "src/cluster/server.rs",
    "src/http/mod.rs",
    "src/http/ops.rs",
    "src/identity/pages/mod.rs",
    "src/oidc/authorize.rs",
    "src/web/api_docs.rs",
    "src/web/assets.rs",
    "src/web/audit_pages.rs",
    "src/web/backup_pages.rs",
    "src/web/email_pages.rs",
    "src/web/identity_pages.rs",
    "src/web/key_pages.rs",
    "src/web/oauth_pages.rs",
    "src/web/order_detail_pages.rs",
    "src/web/order_pages.rs",
    "src/web/pages.rs",
    "src/web/plugin_pages.rs",
    "src/web/store_pages.rs",
    "src/web/store_rules_pages.rs",
    "src/web/store_setup_pages.rs",
    "src/web/tenant_actions.rs",
    "src/web/tenant_overview.rs",
    "src/web/user_pages.rs",
    "src/web/webhook_pages.rs",
];

#[test]
fn json_routes_are_registered_only_with_their_operation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut offenders = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(&file).unwrap();
        let registers = text.contains(".route(\"") || text.contains(".route(&format!(");
        if registers && !PLAIN_ROUTE_FILES.contains(&relative.as_str()) {
            offenders.push(relative);
        }
    }
    assert!(offenders.is_empty(), "plain axum routes outside the table (use OpenApiRouter::routes): {offenders:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_page_renders_the_contract() {
    let app = app_with_operator().await;
    let ui = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = ui.get(app.url("/admin/api")).send().await.unwrap();
    assert_eq!(r.status(), 303, "signed-in admins only");
    let form = ui.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
    let csrf = form.split("name=\"csrf_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = ui
        .post(app.url("/admin/login"))
        .form(&[("csrf_token", csrf.as_str()), ("email", EMAIL), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = ui.get(app.url("/admin/api")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let doc: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    // Every operation and every schema of the document is on the page, with no script from elsewhere.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(html.contains(&format!("id=\"{id}\"")), "{id} ({path}) is on the page");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(html.contains(&format!("id=\"schema-{name}\"")), "schema {name} is on the page");
    }
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "nothing loaded from elsewhere (no CDN)");
    app.stop().await;
}

/// The crate map in `src/lib.rs` and the module table in ARCHITECTURE.md name every top-level module.
#[test]
fn the_maps_name_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let modules: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';')).map(str::trim).collect();
    assert!(modules.len() > 10, "{modules:?}");
    for module in modules {
        assert!(lib.contains(&format!("//! - `{module}`")), "src/lib.rs's crate map names `{module}`");
        assert!(architecture.contains(&format!("| `{module}` |")), "ARCHITECTURE.md's map names `{module}`");
    }
}
