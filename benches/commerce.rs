//! Store benchmark, driven by `scripts/bench-commerce` against a running release binary.
//!
//! Imports N products (one variant each, in 50 categories) through the CSV import API and reports the import
//! rate and the server's RSS; then searches the storefront from 16 connections for 10 s with a mix of queries
//! (a common word, a rare word, two words, a SKU, a category with its subcategories, a price range, newest and
//! price sorts; repeated, so mostly answered from the search cache) and reports p50/p99 and req/s, next to the
//! same figures for a baseline request of the same run (`GET /t/{slug}/api/v1/tenant`, the cheapest tenant read)
//! so the machine's noise cancels out in the ratio; then 4,000 distinct searches (cache misses) and each query
//! of the mix alone.
//!
//! Environment: GATEHOUSE_BENCH_URL, GATEHOUSE_BENCH_PID, GATEHOUSE_BENCH_TOKEN, GATEHOUSE_BENCH_PRODUCTS.

use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-commerce"))
}

fn rss_kib(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

const ADJECTIVES: &[&str] = &[
    "linen", "cotton", "wool", "denim", "silk", "leather", "organic", "vintage", "classic", "slim", "relaxed", "heavy",
    "light", "striped", "plain", "washed", "brushed", "recycled", "waxed", "quilted",
];
const NOUNS: &[&str] = &[
    "shirt", "tee", "jacket", "trousers", "scarf", "hat", "sweater", "dress", "skirt", "coat", "bag", "belt", "socks",
    "hoodie", "shorts", "boots", "gloves", "vest", "cardigan", "apron",
];
const COLORS: &[&str] = &["red", "blue", "green", "black", "white", "ochre", "navy", "olive", "grey", "sand"];

/// A catalog of `n` products, one variant each, spread over 50 categories (10 parents × 4 children + parents).
fn catalog_csv(n: usize) -> String {
    let mut csv = String::from("handle,title,description,categories,option1_name,option1_value,sku,price,stock\n");
    for i in 0..n {
        let (a, b, c) = (ADJECTIVES[i % 20], NOUNS[(i / 20) % 20], COLORS[(i / 400) % 10]);
        let category = format!("cat-{}-{}", i % 10, (i / 10) % 4);
        let price = 500 + (i * 37) % 20_000;
        csv.push_str(&format!(
            "p-{i},{a} {b} {c} {i},A {c} {a} {b} for every day (model {i}),{category},color,{c},SKU-{i:06},{}.{:02},{}\n",
            price / 100,
            price % 100,
            i % 13
        ));
    }
    csv
}

/// Runs `paths` round-robin from 16 connections for `secs`: (sorted latencies, requests per second).
async fn load(client: &reqwest::Client, url: &str, paths: &[String], secs: u64) -> (Vec<Duration>, f64) {
    load_from(client, url, paths, secs, 16).await
}

/// `load` from `connections` connections.
async fn load_from(
    client: &reqwest::Client,
    url: &str,
    paths: &[String],
    secs: u64,
    connections: usize,
) -> (Vec<Duration>, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..connections {
        let (client, url, paths) = (client.clone(), url.to_owned(), paths.to_vec());
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut i = worker;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = client.get(format!("{url}{}", paths[i % paths.len()])).send().await.unwrap();
                assert!(r.status().is_success(), "{} answered {}", paths[i % paths.len()], r.status());
                r.bytes().await.unwrap();
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all.sort();
    let rate = all.len() as f64 / secs as f64;
    (all, rate)
}

fn main() {
    if std::env::var("GATEHOUSE_BENCH_URL").is_err() {
        eprintln!("benches/commerce: not started by scripts/bench-commerce; nothing to do");
        return;
    }
    let url = env("GATEHOUSE_BENCH_URL");
    let pid = env("GATEHOUSE_BENCH_PID");
    let token = env("GATEHOUSE_BENCH_TOKEN");
    let n: usize = std::env::var("GATEHOUSE_BENCH_PRODUCTS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let admin = |path: &str| format!("{url}/admin/api/v1/tenants/store{path}");
        let r = client
            .post(format!("{url}/admin/api/v1/tenants"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"slug": "store", "name": "Bench store"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        for parent in 0..10 {
            let r = client
                .post(admin("/categories"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"handle": format!("cat-{parent}"), "title": format!("Category {parent}")}))
                .send()
                .await
                .unwrap();
            let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
            for child in 0..4 {
                let r = client
                    .post(admin("/categories"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"handle": format!("cat-{parent}-{child}"), "title": "Sub", "parent_id": id}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }
        let (_, idle) = rss_kib(&pid);
        let csv = catalog_csv(n);
        println!("products: {n} (CSV {:.1} MB)", csv.len() as f64 / 1e6);
        println!("server RSS before the import: {} MiB", idle / 1024);

        let started = Instant::now();
        let r = client
            .post(admin("/imports?mode=skip_bad_rows"))
            .bearer_auth(&token)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let mut peak_rss = 0;
        let job = loop {
            let job: serde_json::Value =
                client.get(admin(&format!("/imports/{id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
            peak_rss = peak_rss.max(rss_kib(&pid).1);
            if job["status"] != "running" {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(job["status"], "done", "{job}");
        println!("import: {n} variants in {secs:.1} s = {:.0} variants/s (upload and parse included)", n as f64 / secs);
        println!("server RSS during the import: peak sampled {} MiB (VmHWM {} MiB)", peak_rss / 1024, rss_kib(&pid).0 / 1024);

        if std::env::var("GATEHOUSE_BENCH_QUOTES_ONLY").is_ok_and(|v| !v.is_empty()) {
            quotes(&client, &url, &token, n).await;
            return;
        }
        let base = "/t/store/api/v1";
        let searches: Vec<String> = [
            "/products?q=shirt",
            "/products?q=ochre",
            "/products?q=linen%20jacket",
            "/products?q=SKU-004217",
            "/products?q=wool&category=cat-3",
            "/products?category=cat-7-2&sort=price_asc",
            "/products?min_price=1000&max_price=1500&in_stock=true",
            "/products?sort=newest",
            "/products?q=navy&sort=price_desc",
            "/products?q=vint",
        ]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
        // Warm up caches and connections.
        load(&client, &url, &searches, 2).await;
        let (baseline, baseline_rate) = load(&client, &url, &[format!("{base}/tenant")], 10).await;
        let (search, search_rate) = load(&client, &url, &searches, 10).await;
        println!(
            "baseline GET /t/{{slug}}/api/v1/tenant: p50 {} p99 {} {:.0} req/s",
            ms(percentile(&baseline, 0.5)),
            ms(percentile(&baseline, 0.99)),
            baseline_rate
        );
        println!(
            "storefront search mix: p50 {} p99 {} {:.0} req/s (16 connections, client on the same 2 cores; target p99 <= 20 ms)",
            ms(percentile(&search, 0.5)),
            ms(percentile(&search, 0.99)),
            search_rate
        );
        println!(
            "search / baseline: p99 x{:.1}, throughput x{:.2}",
            percentile(&search, 0.99).as_secs_f64() / percentile(&baseline, 0.99).as_secs_f64(),
            search_rate / baseline_rate
        );
        // Every request a different search (6,000 of them: three-word searches, broad one-word searches with
        // varying page sizes, category + price range): what a cache miss costs.
        let distinct: Vec<String> = (0..6000)
            .map(|i| match i % 3 {
                0 => format!("{base}/products?q={}%20{}%20{}", ADJECTIVES[i % 20], NOUNS[(i / 20) % 20], COLORS[(i / 7) % 10]),
                1 => format!("{base}/products?q={}&limit={}", NOUNS[i % 20], 1 + (i / 20) % 50),
                _ => format!("{base}/products?category=cat-{}&min_price={}&max_price={}", i % 10, i % 5000, 5000 + i),
            })
            .collect();
        let (uncached, uncached_rate) = load(&client, &url, &distinct, 10).await;
        println!(
            "distinct searches (cache misses): p50 {} p99 {} {:.0} req/s",
            ms(percentile(&uncached, 0.5)),
            ms(percentile(&uncached, 0.99)),
            uncached_rate
        );
        for path in &searches {
            let (lat, rate) = load(&client, &url, std::slice::from_ref(path), 2).await;
            println!("  {path}: p50 {} p99 {} {:.0} req/s", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)), rate);
        }
        quotes(&client, &url, &token, n).await;
        let (hwm, rss) = rss_kib(&pid);
        println!("server RSS: peak (VmHWM) {} MiB, now (VmRSS) {} MiB", hwm / 1024, rss / 1024);
    });
}

/// Quotes of a 50-line cart over HTTP (`GET /carts/{id}`): built-in rules (a percent code, weight shipping, 19 %
/// tax), then with the C no-op pricing plugin, then with the JavaScript tiers plugin; from 1 connection (latency)
/// and from 16 (throughput), with the ratios to the built-in run.
async fn quotes(client: &reqwest::Client, url: &str, token: &str, n: usize) {
    let admin = |path: &str| format!("{url}/admin/api/v1/tenants/store{path}");
    // The admin API with the token; the storefront (cart) without: a bearer there must be a customer's.
    let post = |path: String, body: serde_json::Value| {
        let request = client.post(&path).json(&body);
        let request = if path.contains("/admin/") { request.bearer_auth(token) } else { request };
        async move {
            let r = request.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    post(admin("/discount-codes"), serde_json::json!({"code": "TEN", "kind": "percent", "value": 10})).await;
    post(admin("/tax-rates"), serde_json::json!({"country": "DE", "rate_bps": 1900, "name": "MwSt"})).await;
    post(
        admin("/shipping-methods"),
        serde_json::json!({"code": "dhl", "name": "DHL", "countries": ["DE"], "kind": "weight", "price": 1990,
                           "brackets": [{"up_to": 1000, "price": 490}, {"up_to": 5000, "price": 990}]}),
    )
    .await;
    let r = client.post(format!("{url}/t/store/api/v1/carts")).send().await.unwrap();
    let id = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let cart = format!("{url}/t/store/api/v1/carts/{id}");
    // 50 SKUs with stock (the import gives SKU i a stock of i % 13).
    for i in (0..n).filter(|i| i % 13 != 0).take(50) {
        post(format!("{cart}/lines"), serde_json::json!({"sku": format!("SKU-{i:06}"), "quantity": i % 13})).await;
    }
    post(format!("{cart}/discount-codes"), serde_json::json!({"code": "TEN"})).await;
    let r = client
        .put(format!("{cart}/shipping"))
        .json(&serde_json::json!({"country": "DE", "method": "dhl"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let path = vec![format!("/t/store/api/v1/carts/{id}")];
    let plugin = |name: &str| {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/build").join(format!("{name}.wasm"));
        std::fs::read(&file).unwrap_or_else(|_| panic!("{} is missing: run scripts/build-plugins", file.display()))
    };
    let mut runs: Vec<(&str, Vec<Duration>, Vec<Duration>, f64)> = Vec::new();
    for (label, component) in [
        ("built-in rules", None),
        ("+ C no-op plugin", Some("c-noop-pricing")),
        ("+ JS tiers plugin", Some("js-pricing-tiers")),
    ] {
        if let Some(name) = component {
            post(
                admin("/plugins"),
                serde_json::json!({"name": name, "world": "pricing", "timeout_ms": 1000,
                "config": {"tiers": [{"min_quantity": 5, "percent": 5}, {"min_quantity": 10, "percent": 10}]}}),
            )
            .await;
            let r = client
                .post(admin(&format!("/plugins/{name}/versions")))
                .bearer_auth(token)
                .header("content-type", "application/wasm")
                .body(plugin(name))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            post(admin(&format!("/plugins/{name}/versions/1/activate")), serde_json::json!({})).await;
        }
        let quote: serde_json::Value = client.get(&cart).send().await.unwrap().json().await.unwrap();
        assert_eq!(quote["lines"].as_array().unwrap().len(), 50);
        assert_eq!(quote["degraded"], false, "{quote}");
        load_from(client, url, &path, 2, 1).await;
        let (one, _) = load_from(client, url, &path, 10, 1).await;
        let (many, rate) = load_from(client, url, &path, 10, 16).await;
        println!(
            "quote of a 50-line cart, {label}: 1 connection p50 {} p99 {}; 16 connections p50 {} p99 {} {:.0} quotes/s (total {})",
            ms(percentile(&one, 0.5)),
            ms(percentile(&one, 0.99)),
            ms(percentile(&many, 0.5)),
            ms(percentile(&many, 0.99)),
            rate,
            quote["total"]
        );
        runs.push((label, one, many, rate));
        if let Some(name) = component {
            post(admin(&format!("/plugins/{name}/deactivate")), serde_json::json!({})).await;
        }
    }
    let base = &runs[0];
    for (label, one, _, rate) in &runs[1..] {
        let p50 = percentile(one, 0.5).as_secs_f64() - percentile(&base.1, 0.5).as_secs_f64();
        println!(
            "  {label} vs built-in: median +{:.3} ms (1 connection), p99 x{:.2}, throughput x{:.2}",
            p50 * 1000.0,
            percentile(one, 0.99).as_secs_f64() / percentile(&base.1, 0.99).as_secs_f64(),
            rate / base.3
        );
    }
}
