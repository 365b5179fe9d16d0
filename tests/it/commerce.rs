//! The store's catalog end to end: products and variants, categories, search and the storefront, the inventory
//! ledger, CSV import/export (with a restart mid-import on the real binary), tenant isolation and bad input.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{BinServer, TOKEN, TestApp, eventually, spawn_app};

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, body) = app.json(method.clone(), path, body).await;
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

fn variant(sku: &str, price: i64, size: &str, stock: i64) -> Value {
    json!({"sku": sku, "price": price, "option_values": {"size": size}, "stock": stock})
}

async fn product(app: &TestApp, slug: &str, body: Value) -> Value {
    ok(app, Method::POST, &format!("/admin/api/v1/tenants/{slug}/products"), Some(body)).await
}

/// The storefront's answer (public: no credentials).
async fn store(app: &TestApp, slug: &str, query: &str) -> Value {
    let r = app.client.get(app.url(&format!("/t/{slug}/api/v1/products{query}"))).send().await.unwrap();
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

fn handles(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["handle"].as_str().unwrap().to_owned()).collect()
}

/// Rows of the tenant file, read directly (what the ledger and the outbox hold).
fn tenant_db(app: &TestApp, slug: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(app.data_dir.join(format!("tenants/{slug}.db"))).unwrap()
}

#[tokio::test]
async fn catalog_search_categories_and_the_storefront() {
    let app = spawn_app().await;
    app.create_tenant("shop").await;
    let base = "/admin/api/v1/tenants/shop";
    let apparel =
        ok(&app, Method::POST, &format!("{base}/categories"), Some(json!({"handle": "apparel", "title": "Apparel"})))
            .await;
    let shirts = ok(
        &app,
        Method::POST,
        &format!("{base}/categories"),
        Some(json!({"handle": "shirts", "title": "Shirts", "parent_id": apparel["id"]})),
    )
    .await;
    let mugs =
        ok(&app, Method::POST, &format!("{base}/categories"), Some(json!({"handle": "mugs", "title": "Mugs"}))).await;

    let tee = product(
        &app,
        "shop",
        json!({"handle": "linen-tee", "title": "Linen Tee", "description": "A breathable summer shirt",
               "options": ["size"], "category_ids": [shirts["id"]],
               "variants": [variant("TEE-S", 1900, "S", 3), variant("TEE-XL", 2100, "XL", 0)]}),
    )
    .await;
    assert_eq!(tee["variants"].as_array().unwrap().len(), 2);
    assert!(tee["variants"][0]["id"].is_string());
    assert_eq!(tee["variants"][0]["stock"], 3);
    assert_eq!((tee["min_price"].as_i64(), tee["max_price"].as_i64()), (Some(1900), Some(2100)));
    product(
        &app,
        "shop",
        json!({"handle": "stoneware-mug", "title": "Stoneware Mug", "category_ids": [mugs["id"]],
               "variants": [{"sku": "MUG-1", "price": 1200, "stock": 10}]}),
    )
    .await;
    product(
        &app,
        "shop",
        json!({"handle": "old-shirt", "title": "Old Shirt", "status": "archived", "category_ids": [shirts["id"]],
               "variants": [{"sku": "OLD-1", "price": 500}]}),
    )
    .await;
    product(
        &app,
        "shop",
        json!({"handle": "secret-shirt", "title": "Secret Shirt", "status": "draft",
               "variants": [{"sku": "SEC-1", "price": 700, "track_inventory": false}]}),
    )
    .await;

    // Full-text search: a title word, a description word, a SKU, an option value; archived and draft hidden.
    assert_eq!(handles(&store(&app, "shop", "?q=linen").await), ["linen-tee"]);
    assert_eq!(handles(&store(&app, "shop", "?q=breathable").await), ["linen-tee"]);
    assert_eq!(handles(&store(&app, "shop", "?q=TEE-XL").await), ["linen-tee"]);
    assert_eq!(handles(&store(&app, "shop", "?q=XL").await), ["linen-tee"]);
    assert_eq!(handles(&store(&app, "shop", "?q=shirt").await), ["linen-tee"], "archived and draft are not on sale");
    let (_, admin) = app.json(Method::GET, &format!("{base}/products?q=shirt&sort=newest"), None).await;
    assert_eq!(handles(&admin).len(), 3, "admins see every status: {admin}");
    // A category includes its descendants, by handle or id.
    assert_eq!(handles(&store(&app, "shop", "?category=apparel").await), ["linen-tee"]);
    assert_eq!(
        handles(&store(&app, "shop", &format!("?category={}", apparel["id"].as_str().unwrap())).await),
        ["linen-tee"]
    );
    assert_eq!(handles(&store(&app, "shop", "?category=mugs").await), ["stoneware-mug"]);
    assert!(handles(&store(&app, "shop", "?category=nope").await).is_empty());
    // Price range, stock and sorts.
    assert_eq!(handles(&store(&app, "shop", "?min_price=1300&max_price=1950").await), ["linen-tee"]);
    assert_eq!(handles(&store(&app, "shop", "?sort=price_asc").await), ["stoneware-mug", "linen-tee"]);
    assert_eq!(handles(&store(&app, "shop", "?sort=price_desc").await), ["linen-tee", "stoneware-mug"]);
    // Cursor pages: one item per page, every product once.
    let mut seen = Vec::new();
    let mut query = "?limit=1&sort=price_asc".to_owned();
    loop {
        let page = store(&app, "shop", &query).await;
        seen.extend(handles(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=1&sort=price_asc&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["stoneware-mug", "linen-tee"]);

    // One product by handle; stock counts, then only in_stock when the store hides them.
    let r = app.client.get(app.url("/t/shop/api/v1/products/linen-tee")).send().await.unwrap();
    let one: Value = r.json().await.unwrap();
    assert_eq!(one["variants"][0]["stock"], 3);
    assert_eq!(one["variants"][1]["in_stock"], false);
    for hidden in ["old-shirt", "secret-shirt", "nope"] {
        let r = app.client.get(app.url(&format!("/t/shop/api/v1/products/{hidden}"))).send().await.unwrap();
        assert_eq!(r.status(), 404, "{hidden}");
    }
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/shop",
        Some(json!({"settings": {"commerce": {"show_stock_counts": false, "allowed_origins": ["https://shop.example"]}}})),
    )
    .await;
    let r = app
        .client
        .get(app.url("/t/shop/api/v1/products/linen-tee"))
        .header("Origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://shop.example");
    let one: Value = r.json().await.unwrap();
    assert!(one["variants"][0].get("stock").is_none(), "{one}");
    assert_eq!(one["variants"][0]["in_stock"], true);
    let r = app
        .client
        .get(app.url("/t/shop/api/v1/categories"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "other origins get no CORS grant");
    let tree: Value = r.json().await.unwrap();
    let order: Vec<&str> = tree["items"].as_array().unwrap().iter().map(|c| c["handle"].as_str().unwrap()).collect();
    assert_eq!(order, ["apparel", "shirts", "mugs"], "parents before children");
    let r = app
        .client
        .request(Method::OPTIONS, app.url("/t/shop/api/v1/products"))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://shop.example");

    // PATCH: the variant set is replaced (XL removed, M added, S kept with its stock); stock is the ledger's.
    let id = tee["id"].as_str().unwrap();
    let patched = ok(
        &app,
        Method::PATCH,
        &format!("{base}/products/{id}"),
        Some(json!({"title": "Linen T-shirt", "variants": [
            {"sku": "TEE-S", "price": 1800, "option_values": {"size": "S"}},
            variant("TEE-M", 1850, "M", 4)]})),
    )
    .await;
    let skus: Vec<(&str, i64)> = patched["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["sku"].as_str().unwrap(), v["stock"].as_i64().unwrap()))
        .collect();
    assert_eq!(skus, [("TEE-S", 3), ("TEE-M", 4)]);
    let (status, body) = app
        .json(
            Method::PATCH,
            &format!("{base}/products/{id}"),
            Some(json!({"variants": [{"sku": "TEE-S", "price": 1800, "option_values": {"size": "S"}, "stock": 99}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "stock changes through the ledger: {body}");
    assert_eq!(handles(&store(&app, "shop", "?q=t-shirt").await), ["linen-tee"], "the search row follows the title");
    assert!(handles(&store(&app, "shop", "?q=TEE-XL").await).is_empty(), "a removed SKU is no longer found");

    // Deleting: the product leaves the store; a category with children cannot go.
    let (status, _) =
        app.json(Method::DELETE, &format!("{base}/categories/{}", apparel["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    ok(&app, Method::DELETE, &format!("{base}/products/{id}"), None).await;
    assert!(handles(&store(&app, "shop", "?q=linen").await).is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_sums_to_the_stock_and_concurrent_adjustments_lose_none() {
    let app = spawn_app().await;
    app.create_tenant("shop").await;
    let base = "/admin/api/v1/tenants/shop";
    // A webhook subscribed to everything, so events are queued in the outbox with the change.
    ok(
        &app,
        Method::POST,
        &format!("{base}/webhooks"),
        Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]})),
    )
    .await;
    product(
        &app,
        "shop",
        json!({"handle": "mug", "title": "Mug", "variants": [{"sku": "MUG", "price": 900, "stock": 10}]}),
    )
    .await;

    // A random walk of adjustments (seeded), each checked against its answer.
    let mut seed: u64 = 0x5eed;
    let mut expected = 10;
    for _ in 0..40 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delta = (seed >> 33) as i64 % 15 - 6;
        if delta == 0 {
            continue;
        }
        let (status, body) = app
            .json(
                Method::POST,
                &format!("{base}/inventory/MUG/adjust"),
                Some(json!({"delta": delta, "reason": "count"})),
            )
            .await;
        if expected + delta < 0 {
            assert_eq!(status, StatusCode::CONFLICT, "cannot remove units that are not there: {body}");
        } else {
            assert_eq!(status, StatusCode::OK, "{body}");
            expected += delta;
            assert_eq!(body["stock_after"], expected);
        }
    }
    // Concurrent adjustments of one SKU: every one lands.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url(&format!("{base}/inventory/MUG/adjust"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"delta": 1, "reason": "received"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    expected += 20;
    let (stock, ledger): (i64, i64) = tenant_db(&app, "shop")
        .query_row(
            "SELECT v.stock, (SELECT SUM(delta) FROM inventory_movements m WHERE m.variant_id = v.id) FROM variants v
             WHERE sku = 'MUG'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((stock, ledger), (expected, expected), "stock on hand equals the ledger sum");
    let movements = ok(&app, Method::GET, &format!("{base}/inventory/MUG/movements?limit=200"), None).await;
    let items = movements["items"].as_array().unwrap();
    assert_eq!(items[0]["stock_after"], expected, "newest first");
    assert_eq!(items.last().unwrap()["reason"], "initial stock");
    // The ledger is append-only, even for someone with the file.
    let db = tenant_db(&app, "shop");
    assert!(db.execute("UPDATE inventory_movements SET delta = 0", []).is_err());
    assert!(db.execute("DELETE FROM inventory_movements", []).is_err());

    // Crossing the low-stock threshold downwards raises inventory.low once; staying below raises nothing more.
    let events = || -> Vec<String> {
        tenant_db(&app, "shop")
            .prepare("SELECT topic FROM outbox WHERE kind = 'webhook' ORDER BY created_at, id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let low = |events: &[String]| events.iter().filter(|e| *e == "inventory.low").count();
    let before = low(&events());
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/shop",
        Some(json!({"settings": {"commerce": {"low_stock_threshold": 3}}})),
    )
    .await;
    let to_four = 4 - expected;
    ok(&app, Method::POST, &format!("{base}/inventory/MUG/adjust"), Some(json!({"delta": to_four, "reason": "sold"})))
        .await;
    ok(&app, Method::POST, &format!("{base}/inventory/MUG/adjust"), Some(json!({"delta": -2, "reason": "broken"})))
        .await;
    ok(&app, Method::POST, &format!("{base}/inventory/MUG/adjust"), Some(json!({"delta": -1, "reason": "broken"})))
        .await;
    let events = events();
    assert_eq!(low(&events), before + 1, "{events:?}");
    assert!(events.contains(&"product.created".to_owned()));
    // Unknown SKUs and bad deltas are typed errors.
    let (status, _) = app
        .json(Method::POST, &format!("{base}/inventory/NOPE/adjust"), Some(json!({"delta": 1, "reason": "x"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        app.json(Method::POST, &format!("{base}/inventory/MUG/adjust"), Some(json!({"delta": 0, "reason": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deleting the product takes its stock out through the ledger: no unit disappears unrecorded.
    let page = ok(&app, Method::GET, &format!("{base}/products?q=mug"), None).await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    ok(&app, Method::DELETE, &format!("{base}/products/{id}"), None).await;
    let (sum, last): (i64, String) = tenant_db(&app, "shop")
        .query_row(
            "SELECT SUM(delta), (SELECT reason FROM inventory_movements WHERE sku = 'MUG' ORDER BY id DESC LIMIT 1)
             FROM inventory_movements WHERE sku = 'MUG'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sum, last.as_str()), (0, "variant removed"));
    app.stop().await;
}

/// A catalog CSV of `products` × 4 sizes, with bad rows at the given data-row numbers (1-based).
fn catalog_csv(products: usize, bad: &[usize]) -> (String, Vec<u64>) {
    let mut csv = String::from("handle,title,description,status,option1_name,option1_value,sku,price,stock\n");
    let mut bad_lines = Vec::new();
    let mut row = 0;
    for p in 0..products {
        for (i, size) in ["S", "M", "L", "XL"].iter().enumerate() {
            row += 1;
            let title = if i == 0 { format!("Product {p}") } else { String::new() };
            let mut line = format!("item-{p},{title},Soft cotton,active,size,{size},SKU-{p}-{size},12.50,{}\n", p % 7);
            if let Some(k) = bad.iter().position(|b| *b == row) {
                // Ten different ways to be wrong.
                line = match k % 5 {
                    0 => format!("item-{p},{title},x,active,size,{size},SKU-{p}-{size},12.505,1\n"),
                    1 => format!("item-{p},{title},x,active,size,{size},SKU/{p}/{size},12.50,1\n"),
                    2 => format!("item-{p},{title},x,active,size,{size},SKU-{p}-{size},-3,1\n"),
                    3 => format!("item-{p},{title},x,sold-out,size,{size},SKU-{p}-{size},12.50,1\n"),
                    _ => format!("item-{p},{title},x,active,size,{size},SKU-{p}-{size},12.50,lots\n"),
                };
                bad_lines.push(row as u64 + 1);
            }
            csv.push_str(&line);
        }
    }
    (csv, bad_lines)
}

async fn start_import(app: &TestApp, slug: &str, csv: String, mode: &str) -> (StatusCode, Value) {
    let r = app
        .admin(Method::POST, &format!("/admin/api/v1/tenants/{slug}/imports?mode={mode}"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn finished_import(app: &TestApp, slug: &str, id: &str) -> Value {
    eventually(Duration::from_secs(300), "the import to finish", || async {
        let (_, job) = app.json(Method::GET, &format!("/admin/api/v1/tenants/{slug}/imports/{id}"), None).await;
        (job["status"] != "running").then_some(job)
    })
    .await
}

fn count(app: &TestApp, slug: &str, table: &str) -> i64 {
    tenant_db(app, slug).query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_reports_exactly_the_bad_rows_and_all_or_nothing_writes_nothing() {
    let app = spawn_app().await;
    app.create_tenant("shop").await;
    // Not a product's first row (which carries its title): a product whose title row is bad fails whole.
    let bad_rows = [3, 1002, 2003, 3004, 4006, 5007, 6008, 7010, 8011, 9999];
    let (csv, bad_lines) = catalog_csv(2500, &bad_rows);
    assert_eq!(csv.lines().count(), 10_001);

    let (status, started) = start_import(&app, "shop", csv.clone(), "all_or_nothing").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = finished_import(&app, "shop", started["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    let lines: Vec<u64> = job["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, bad_lines, "the report names exactly the bad rows");
    assert_eq!(job["error_count"], 10);
    assert_eq!((count(&app, "shop", "products"), count(&app, "shop", "variants")), (0, 0), "nothing was written");

    let (_, started) = start_import(&app, "shop", csv, "skip_bad_rows").await;
    let job = finished_import(&app, "shop", started["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!((job["total"].as_u64(), job["done"].as_u64()), (Some(10_000), Some(10_000)));
    let lines: Vec<u64> = job["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, bad_lines);
    assert_eq!(count(&app, "shop", "variants"), 9_990);
    assert_eq!(job["created"], 2500);
    // Imported stock is in the ledger (`import` movements) like any other stock.
    let (stock, ledger): (i64, i64) = tenant_db(&app, "shop")
        .query_row("SELECT SUM(stock), (SELECT SUM(delta) FROM inventory_movements) FROM variants", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(stock, ledger);
    let r = app.client.get(app.url("/t/shop/api/v1/products?q=SKU-42-M")).send().await.unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(handles(&page), ["item-42"]);
    assert_eq!(page["items"][0]["min_price"], 1250);

    // Export is the import format: importing it again changes nothing but counts every product as updated.
    let r = app.admin(Method::GET, "/admin/api/v1/tenants/shop/products/export.csv").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let exported = r.text().await.unwrap();
    assert_eq!(exported.lines().count(), 9_991);
    // A product's fields are on its first row; its other rows carry the variant's.
    assert!(
        exported.contains("\nitem-42,Product 42,Soft cotton,active,,size,S,,,,,SKU-42-S,12.50,"),
        "{}",
        &exported[..400]
    );
    assert!(exported.contains("\nitem-42,,,,,size,M,,,,,SKU-42-M,12.50,"), "{}", &exported[..400]);
    let movements = count(&app, "shop", "inventory_movements");
    let (_, started) = start_import(&app, "shop", exported, "all_or_nothing").await;
    let job = finished_import(&app, "shop", started["id"].as_str().unwrap()).await;
    assert_eq!(
        (job["status"].as_str(), job["updated"].as_u64(), job["created"].as_u64()),
        (Some("done"), Some(2500), Some(0))
    );
    assert_eq!(count(&app, "shop", "inventory_movements"), movements, "the same stock makes no movement");

    // A row that is fine alone but clashes with the catalog (its SKU belongs to another product) fails an
    // all-or-nothing import after the good rows were applied in the same transaction: all of it rolls back.
    let clash = "handle,title,sku,price\nfresh-one,Fresh,FRESH-1,5\nfresh-two,Fresh 2,SKU-1-S,5\n";
    let (_, started) = start_import(&app, "shop", clash.into(), "all_or_nothing").await;
    let job = finished_import(&app, "shop", started["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["errors"][0]["line"], 3, "{job}");
    let fresh: i64 = tenant_db(&app, "shop")
        .query_row("SELECT COUNT(*) FROM products WHERE handle = 'fresh-one'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fresh, 0, "the good row was rolled back with the bad one");

    // A title a spreadsheet would run as a formula is exported as text ('=…) and imported back as it was.
    product(
        &app,
        "shop",
        json!({"handle": "formula", "title": "=HYPERLINK(\"http://x\")", "variants": [{"sku": "F-1", "price": 1}]}),
    )
    .await;
    let r = app.admin(Method::GET, "/admin/api/v1/tenants/shop/products/export.csv").send().await.unwrap();
    let exported = r.text().await.unwrap();
    let line = exported.lines().find(|l| l.starts_with("formula,")).unwrap().to_owned();
    assert!(line.starts_with("formula,\"'=HYPERLINK("), "{line}");
    let again =
        format!("handle,title,sku,price\n{}\n", line.split(',').take(2).collect::<Vec<_>>().join(",") + ",F-1,2");
    let (_, started) = start_import(&app, "shop", again, "all_or_nothing").await;
    let job = finished_import(&app, "shop", started["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    let title: String = tenant_db(&app, "shop")
        .query_row("SELECT title FROM products WHERE handle = 'formula'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(title, "=HYPERLINK(\"http://x\")");
    // An all-or-nothing import is capped (it holds the store's writes); larger files go row batch by batch.
    let (big, _) = catalog_csv(6_300, &[]);
    let (status, body) = start_import(&app, "shop", big, "all_or_nothing").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_import_leaves_it_failed_and_the_catalog_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = BinServer::start(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/admin/api/v1{path}", server.base);
    let r = client
        .post(api("/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"slug": "shop", "name": "Shop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (csv, _) = catalog_csv(6_250, &[]);
    let r = client
        .post(api("/tenants/shop/imports?mode=all_or_nothing"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let job_url = api(&format!("/tenants/shop/imports/{id}"));
    // Kill the server (no grace) while the import is half-way through its transaction.
    let job = eventually(Duration::from_secs(120), "the import to be under way", || async {
        let job: Value = client.get(&job_url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
        (job["done"].as_u64().unwrap_or(0) > 0).then_some(job)
    })
    .await;
    assert_eq!(job["status"], "running", "the import must still be running when the server dies: {job}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let server = BinServer::start(dir.path(), &[]).await;
    let api = |path: &str| format!("{}/admin/api/v1{path}", server.base);
    let job: Value = client
        .get(api(&format!("/tenants/shop/imports/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["message"], "interrupted by a restart");
    let page: Value = client
        .get(api("/tenants/shop/products?limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "nothing of the interrupted import is in the catalog");
    // The start-up scan records it in the tenant file too.
    let file = dir.path().join("data/tenants/shop.db");
    eventually(Duration::from_secs(20), "the scan to mark the job failed", || async {
        let conn = rusqlite::Connection::open(&file).unwrap();
        let status: String =
            conn.query_row("SELECT status FROM catalog_imports WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
        (status == "failed").then_some(())
    })
    .await;
}

#[tokio::test]
async fn stores_are_isolated_and_bad_input_is_refused_whole() {
    let app = spawn_app().await;
    app.create_tenant("alpha").await;
    app.create_tenant("beta").await;
    product(
        &app,
        "alpha",
        json!({"handle": "secret", "title": "Alpha only", "variants": [{"sku": "A-1", "price": 100}]}),
    )
    .await;
    // Beta's storefront and beta's token see nothing of alpha's catalog.
    assert!(handles(&store(&app, "beta", "?q=alpha").await).is_empty());
    let r = app.client.get(app.url("/t/beta/api/v1/products/secret")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let beta_token = app.create_token("beta admin", "tenant:beta").await;
    for (method, path) in [
        (Method::GET, "/admin/api/v1/tenants/alpha/products"),
        (Method::GET, "/admin/api/v1/tenants/alpha/products/export.csv"),
        (Method::GET, "/admin/api/v1/tenants/alpha/categories"),
        (Method::GET, "/admin/api/v1/tenants/alpha/inventory/A-1/movements"),
        (Method::GET, "/admin/api/v1/tenants/alpha/imports"),
    ] {
        let r = app.client.request(method.clone(), app.url(path)).bearer_auth(&beta_token).send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    let r = app
        .client
        .post(app.url("/admin/api/v1/tenants/alpha/inventory/A-1/adjust"))
        .bearer_auth(&beta_token)
        .json(&json!({"delta": 5, "reason": "steal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app.client.get(app.url("/admin/api/v1/tenants/alpha/products")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no credentials, no catalog");
    // Beta's own SKU space is its own: the same SKU is fine there.
    product(&app, "beta", json!({"handle": "secret", "title": "Beta's", "variants": [{"sku": "A-1", "price": 100}]}))
        .await;

    // Bad input: typed errors, nothing half-written.
    let path = "/admin/api/v1/tenants/alpha/products";
    let one = |v: Value| json!({"handle": "bad", "title": "Bad", "variants": [v]});
    for (body, why) in [
        (one(json!({"sku": "B-1", "price": -1})), "negative price"),
        (one(json!({"sku": "B-1", "price": 10_000_000_000_001_i64})), "huge price"),
        (one(json!({"sku": "B/1", "price": 1})), "a SKU with /"),
        (json!({"handle": "Bad Handle", "title": "Bad", "variants": [{"sku": "B-1", "price": 1}]}), "handle"),
        (json!({"handle": "bad", "title": "Bad", "variants": []}), "no variant"),
        (
            json!({"handle": "bad", "title": "Bad", "variants": [{"sku": "B-1", "price": 1}], "colour": "red"}),
            "unknown field",
        ),
        (
            json!({"handle": "bad", "title": "Bad", "description": "x".repeat(70_000), "variants": [{"sku": "B-1", "price": 1}]}),
            "long description",
        ),
    ] {
        let (status, body) = app.json(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert!(body["error"]["code"].is_string(), "{why}: {body}");
    }
    let (status, body) = app
        .json(Method::POST, path, Some(json!({"handle": "bad", "title": "Bad", "description": "x".repeat(1 << 20), "variants": [{"sku": "B-1", "price": 1}]})))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "a 1 MB description is over the body limit: {body}");
    let (status, body) = app
        .json(
            Method::POST,
            path,
            Some(json!({"handle": "secret", "title": "Dup", "variants": [{"sku": "B-9", "price": 1}]})),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("conflict")));
    let (status, _) = app
        .json(
            Method::POST,
            path,
            Some(json!({"handle": "other", "title": "Dup SKU", "variants": [{"sku": "A-1", "price": 1}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a SKU is unique in the store");
    assert_eq!(count(&app, "alpha", "products"), 1, "nothing half-written");
    assert_eq!(count(&app, "alpha", "variants"), 1);

    // Currency: unknown codes are refused; a store with products keeps its currency (422).
    let (status, _) = app
        .json(Method::PATCH, "/admin/api/v1/tenants/beta", Some(json!({"settings": {"commerce": {"currency": "ABC"}}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app
        .json(
            Method::PATCH,
            "/admin/api/v1/tenants/alpha",
            Some(json!({"settings": {"commerce": {"currency": "EUR"}}})),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("unprocessable")));
    app.create_tenant("gamma").await;
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/gamma",
        Some(json!({"settings": {"commerce": {"currency": "JPY"}}})),
    )
    .await;

    // Malformed CSV: no usable header, wrong content type, binary garbage.
    for (body, content_type) in [
        ("name,price\nx,1\n", "text/csv"),
        ("handle,sku,price\n", "text/csv"),
        ("handle,sku,price\nx,y,1\n", "application/json"),
    ] {
        let r = app
            .admin(Method::POST, "/admin/api/v1/tenants/alpha/imports")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body:?} as {content_type}");
    }
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = app
        .admin(Method::POST, "/admin/api/v1/tenants/alpha/imports?mode=skip_bad_rows")
        .header("content-type", "text/csv")
        .body(garbage)
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 202, "{}", r.status());
    assert_eq!(count(&app, "alpha", "products"), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_is_priced_end_to_end_with_codes_shipping_and_tax() {
    let app = spawn_app().await;
    app.create_tenant("cartco").await;
    let base = "/admin/api/v1/tenants/cartco";
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/cartco",
        Some(json!({"settings": {"commerce": {"currency": "EUR"}}})),
    )
    .await;
    let shirts =
        ok(&app, Method::POST, &format!("{base}/categories"), Some(json!({"handle": "shirts", "title": "Shirts"})))
            .await;
    product(
        &app,
        "cartco",
        json!({"handle": "shirt", "title": "Shirt", "category_ids": [shirts["id"]],
               "variants": [{"sku": "SHIRT-M", "price": 2500, "weight_grams": 300, "stock": 10}]}),
    )
    .await;
    product(&app, "cartco", json!({"handle": "mug", "title": "Mug", "variants": [{"sku": "MUG", "price": 1000, "weight_grams": 500, "stock": 5}]}))
        .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/discount-codes"),
        Some(json!({"code": "SHIRTS10", "kind": "percent", "value": 10, "category_ids": [shirts["id"]]})),
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/discount-codes"),
        Some(json!({"code": "FREESHIP", "kind": "free_shipping", "combinable": true})),
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/discount-codes"),
        Some(json!({"code": "OLD", "kind": "fixed", "value": 100, "ends_at": "2020-01-01T00:00:00Z"})),
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/tax-rates"),
        Some(json!({"country": "DE", "rate_bps": 1900, "name": "MwSt"})),
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{base}/shipping-methods"),
        Some(json!({"code": "dhl", "name": "DHL", "countries": ["DE", "AT"], "kind": "weight",
                    "brackets": [{"up_to": 1000, "price": 490}, {"up_to": 5000, "price": 990}]})),
    )
    .await;

    // The storefront: a cart, two lines, a code, a destination.
    let cart = |path: &str| app.url(&format!("/t/cartco/api/v1/carts{path}"));
    let r = app.client.post(cart("")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.len() >= 40, "an unguessable id: {id}");
    assert_eq!((created["total"].as_i64(), created["currency"].as_str()), (Some(0), Some("EUR")));
    let send = |method: Method, path: String, body: Value| {
        let request = app.client.request(method, cart(&path)).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = send(Method::POST, format!("/{id}/lines"), json!({"sku": "SHIRT-M", "quantity": 1})).await;
    assert_eq!(status, 200);
    let (_, q) = send(Method::POST, format!("/{id}/lines"), json!({"sku": "SHIRT-M", "quantity": 1})).await;
    assert_eq!(q["lines"][0]["quantity"], 2, "adding a SKU again raises its quantity");
    let (_, q) = send(Method::POST, format!("/{id}/lines"), json!({"sku": "MUG", "quantity": 1})).await;
    assert_eq!(q["subtotal"], 6000);
    let (status, body) = send(Method::POST, format!("/{id}/lines"), json!({"sku": "MUG", "quantity": 9})).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("out_of_stock")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("MUG"));
    let (status, _) = send(Method::PATCH, format!("/{id}/lines/MUG"), json!({"quantity": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, q) = send(Method::POST, format!("/{id}/discount-codes"), json!({"code": "shirts10"})).await;
    assert_eq!(q["discount_total"], 500, "10 % of the two shirts only: {q}");
    assert_eq!(q["lines"][0]["adjustments"][0]["source"], "code:SHIRTS10");
    let (status, body) = send(Method::POST, format!("/{id}/discount-codes"), json!({"code": "FREESHIP"})).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("discount_invalid")));
    assert!(body["error"]["message"].as_str().unwrap().contains("combined"), "{body}");
    let (_, body) = send(Method::POST, format!("/{id}/discount-codes"), json!({"code": "OLD"})).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    let (_, body) = send(Method::POST, format!("/{id}/discount-codes"), json!({"code": "NOPE"})).await;
    assert_eq!(body["error"]["code"], "discount_invalid");

    let (status, body) = send(Method::PUT, format!("/{id}/shipping"), json!({"country": "FR", "method": "dhl"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "DHL does not ship to FR: {body}");
    let (_, q) =
        send(Method::PUT, format!("/{id}/shipping"), json!({"country": "DE", "postcode": "10115", "method": "dhl"}))
            .await;
    // Hand-computed: shirts 5000 − 500 = 4500, mug 1000; 1,100 g → 9.90 shipping; 19 % VAT on
    // 4500 (855.00) + 1000 (190.00) + 990 (188.10 → 188) = 1233; total 4500 + 1000 + 990 + 1233 = 7723.
    assert_eq!(q["shipping_total"], 990, "{q}");
    assert_eq!(q["tax_total"], 1233);
    assert_eq!(q["total"], 7723);
    assert_eq!(q["degraded"], false);
    let (st, dt, sh, tx) =
        (q["subtotal"].as_i64(), q["discount_total"].as_i64(), q["shipping_total"].as_i64(), q["tax_total"].as_i64());
    assert_eq!(st.unwrap() - dt.unwrap() + sh.unwrap() + tx.unwrap(), 7723, "the totals add up");
    let (status, _) = send(Method::PUT, format!("/{id}/shipping"), json!({"country": "ZZ"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "not a country");
    // A storefront on an allowed origin reads cart answers, errors included.
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/cartco",
        Some(json!({"settings": {"commerce": {"allowed_origins": ["https://shop.example"]}}})),
    )
    .await;
    let r = app
        .client
        .post(cart(&format!("/{id}/lines")))
        .header("Origin", "https://shop.example")
        .json(&json!({"sku": "MUG", "quantity": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://shop.example");
    let r = app
        .client
        .request(Method::OPTIONS, cart(&format!("/{id}/lines/MUG")))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("PATCH"));
    let sources: Vec<&str> =
        q["adjustments"].as_array().unwrap().iter().map(|a| a["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["shipping:dhl", "tax:DE"]);
    let exclusive_id = q["quote_id"].as_str().unwrap().to_owned();

    // The same cart in a store whose prices include tax: 4500×19/119 = 718.49 → 718, 1000×19/119 = 159.66 →
    // 160, 990×19/119 = 158.07 → 158; the total is what the prices say.
    ok(
        &app,
        Method::PATCH,
        "/admin/api/v1/tenants/cartco",
        Some(json!({"settings": {"commerce": {"prices_include_tax": true}}})),
    )
    .await;
    let q: Value = app.client.get(cart(&format!("/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((q["tax_total"].as_i64(), q["total"].as_i64()), (Some(718 + 160 + 158), Some(4500 + 1000 + 990)));
    assert_ne!(q["quote_id"].as_str().unwrap(), exclusive_id, "another price, another quote id");

    // Removing the code and the mug reprices; a line not in the cart is 404; another store's cart is not found.
    let (_, q) = send(Method::DELETE, format!("/{id}/discount-codes/SHIRTS10"), json!(null)).await;
    assert_eq!(q["discount_total"], 0);
    let (_, q) = send(Method::DELETE, format!("/{id}/lines/MUG"), json!(null)).await;
    assert_eq!(q["lines"].as_array().unwrap().len(), 1);
    let (status, _) = send(Method::DELETE, format!("/{id}/lines/MUG"), json!(null)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.create_tenant("other").await;
    let r = app.client.get(app.url(&format!("/t/other/api/v1/carts/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 404, "a cart id opens its own store's cart only");
    let r = app.client.get(cart("/cart_guessed")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // An idle cart expires.
    tenant_db(&app, "cartco").execute("UPDATE carts SET expires_at = 1", []).unwrap();
    let r = app.client.get(cart(&format!("/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The store rules are the tenant's: another tenant's token may not read or write them.
    let other_token = app.create_token("other admin", "tenant:other").await;
    for (method, path, body) in [
        (Method::GET, format!("{base}/discount-codes"), json!(null)),
        (Method::POST, format!("{base}/tax-rates"), json!({"country": "AT", "rate_bps": 2000, "name": "USt"})),
        (Method::DELETE, format!("{base}/shipping-methods/dhl"), json!(null)),
    ] {
        let request = app.client.request(method.clone(), app.url(&path)).bearer_auth(&other_token);
        let request = if body.is_null() { request } else { request.json(&body) };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    let (status, _) = app
        .json(
            Method::POST,
            &format!("{base}/discount-codes"),
            Some(json!({"code": "BAD", "kind": "percent", "value": 150})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn cart_writes_are_rate_limited_per_ip() {
    let app = crate::support::spawn_with(|c| c.store_per_minute = 3, axum::Router::new()).await;
    app.create_tenant("busy").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = app.client.post(app.url("/t/busy/api/v1/carts")).send().await.unwrap();
        statuses.push((r.status().as_u16(), r.headers().get("retry-after").is_some()));
    }
    assert_eq!(statuses[..3], [(201, false); 3]);
    assert_eq!(statuses[3], (429, true), "{statuses:?}");
    app.stop().await;
}
