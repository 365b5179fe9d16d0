//! Checkout benchmark, driven by `scripts/bench-checkout` against a running release binary.
//!
//! On one store (no pricing plugin): carts are made first (one unit of one SKU each, shipping to GB), then
//! 64 buyers check them out at once and the orders per second and checkout p50/p99 are reported:
//! (a) ample stock (200 SKUs with a million units each); (b) contended stock (20 SKUs, 500 units, 2,000 attempts),
//! after which every SKU's stock and ledger are read back (oversell must be 0). A baseline of the same run
//! (`GET /t/{slug}/api/v1/tenant` from 64 connections) sits beside (a) so the machine's noise cancels in the ratio.
//! During (a) four readers fetch a storefront product page; their p99 is compared with the same reads while idle.
//! Last, 5,000 stock event streams are opened and the server's RSS per stream reported.
//!
//! Environment: GATEHOUSE_BENCH_URL, GATEHOUSE_BENCH_PID, GATEHOUSE_BENCH_TOKEN, GATEHOUSE_BENCH_ORDERS (default
//! 20000 for (a)), GATEHOUSE_BENCH_STREAMS (default 5000).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-checkout"))
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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

struct Bench {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Bench {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .client
            .request(method, format!("{}/admin/api/v1/tenants{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    /// A store `slug` with `skus` SKUs of `stock` units each, 10.00 apiece.
    /// Answers the products' ids.
    async fn store(&self, slug: &str, skus: usize, stock: i64) -> Vec<String> {
        self.admin(reqwest::Method::POST, "", json!({"slug": slug, "name": slug})).await;
        let mut ids = Vec::new();
        for i in 0..skus {
            let product = json!({"title": format!("Item {i}"), "handle": format!("item-{i}"), "status": "active",
                                 "variants": [{"sku": format!("SKU-{i}"), "price": 1000, "stock": stock}]});
            let made = self.admin(reqwest::Method::POST, &format!("/{slug}/products"), product).await;
            ids.push(made["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    /// `n` carts of one unit each, SKUs round-robin over `skus`, made from 16 connections.
    async fn carts(&self, slug: &str, n: usize, skus: usize) -> Vec<String> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (client, base, next) = (self.client.clone(), format!("{}/t/{slug}/api/v1", self.url), next.clone());
            set.spawn(async move {
                let mut made = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return made;
                    }
                    let r = client.post(format!("{base}/carts")).send().await.unwrap();
                    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                    let line = json!({"sku": format!("SKU-{}", i % skus), "quantity": 1});
                    let r = client.post(format!("{base}/carts/{id}/lines")).json(&line).send().await.unwrap();
                    assert!(r.status().is_success());
                    let r =
                        client.put(format!("{base}/carts/{id}/shipping")).json(&json!({"country": "GB"})).send().await;
                    assert!(r.unwrap().status().is_success());
                    made.push(id);
                }
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap());
        }
        all
    }

    /// Checks out every cart from 64 buyers: (created, out of stock, sorted latencies, seconds).
    async fn checkout(&self, slug: &str, carts: Vec<String>) -> (usize, usize, Vec<Duration>, f64) {
        let carts = Arc::new(carts);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (client, base, carts, next) =
                (self.client.clone(), format!("{}/t/{slug}/api/v1", self.url), carts.clone(), next.clone());
            set.spawn(async move {
                let (mut created, mut short, mut lat) = (0, 0, Vec::new());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cart) = carts.get(i) else { return (created, short, lat) };
                    let body = json!({"email": format!("buyer{i}@example.com"), "payment_method": "manual",
                                      "expected_total": 1000,
                                      "shipping_address": {"name": "B", "line1": "1 St", "city": "London",
                                                           "postal_code": "N1", "country": "GB"}});
                    let t = Instant::now();
                    let r = client
                        .post(format!("{base}/carts/{cart}/checkout"))
                        .header("idempotency-key", format!("bench-{i}"))
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    let status = r.status().as_u16();
                    let answer = r.bytes().await.unwrap();
                    lat.push(t.elapsed());
                    match status {
                        201 => created += 1,
                        409 => short += 1,
                        other => panic!("checkout answered {other}: {}", String::from_utf8_lossy(&answer)),
                    }
                }
            });
        }
        let (mut created, mut short, mut all) = (0, 0, Vec::new());
        while let Some(r) = set.join_next().await {
            let (c, s, l) = r.unwrap();
            created += c;
            short += s;
            all.extend(l);
        }
        all.sort();
        (created, short, all, started.elapsed().as_secs_f64())
    }
}

/// GETs `url` from `connections` connections until `stop`: the sorted latencies.
async fn reads(
    client: reqwest::Client,
    url: String,
    connections: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all.sort();
    all
}

/// Reads `url` for `secs` from `connections` connections.
async fn read_for(client: &reqwest::Client, url: &str, connections: usize, secs: u64) -> Vec<Duration> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers = tokio::spawn(reads(client.clone(), url.to_owned(), connections, stop.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    readers.await.unwrap()
}

fn main() {
    if std::env::var("GATEHOUSE_BENCH_URL").is_err() {
        eprintln!("benches/checkout: not started by scripts/bench-checkout; nothing to do");
        return;
    }
    let url = env("GATEHOUSE_BENCH_URL");
    let pid = env("GATEHOUSE_BENCH_PID");
    let token = env("GATEHOUSE_BENCH_TOKEN");
    let orders: usize = std::env::var("GATEHOUSE_BENCH_ORDERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let streams: usize = std::env::var("GATEHOUSE_BENCH_STREAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
        let bench = Bench { client: client.clone(), url: url.clone(), token };

        // (a) ample stock.
        bench.store("ample", 200, 1_000_000).await;
        let started = Instant::now();
        let carts = bench.carts("ample", orders, 200).await;
        println!("carts: {} made in {:.1} s (create + line + shipping, 16 connections)", carts.len(), started.elapsed().as_secs_f64());
        let product = format!("{url}/t/ample/api/v1/products/item-7");
        let idle = read_for(&client, &product, 4, 5).await;
        let baseline = read_for(&client, &format!("{url}/t/ample/api/v1/tenant"), 64, 5).await;
        let baseline_rate = baseline.len() as f64 / 5.0;
        println!(
            "baseline GET /tenant (64 connections): {baseline_rate:.0} req/s, p50 {} p99 {}",
            ms(percentile(&baseline, 0.5)),
            ms(percentile(&baseline, 0.99))
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers = tokio::spawn(reads(client.clone(), product.clone(), 4, stop.clone()));
        let (created, short, lat, secs) = bench.checkout("ample", carts).await;
        stop.store(true, Ordering::Relaxed);
        let during = readers.await.unwrap();
        assert_eq!((created, short), (orders, 0), "ample stock refuses nobody");
        let rate = created as f64 / secs;
        println!(
            "(a) ample stock, 64 buyers: {created} orders in {secs:.1} s = {rate:.0} orders/s (ratio to baseline {:.3}); checkout p50 {} p99 {}",
            rate / baseline_rate,
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
        println!(
            "product read p99: idle {}, during the checkouts {} (x{:.1}); p50 {} vs {}",
            ms(percentile(&idle, 0.99)),
            ms(percentile(&during, 0.99)),
            percentile(&during, 0.99).as_secs_f64() / percentile(&idle, 0.99).as_secs_f64().max(1e-9),
            ms(percentile(&idle, 0.5)),
            ms(percentile(&during, 0.5))
        );
        println!("server RSS after (a): {} MiB", rss_kib(&pid) / 1024);

        // (b) contended stock: 20 SKUs × 25 units, 2,000 attempts.
        let ids = bench.store("contended", 20, 25).await;
        let carts = bench.carts("contended", 2_000, 20).await;
        let (created, short, lat, secs) = bench.checkout("contended", carts).await;
        let mut negative = 0;
        let mut ledger_off = 0;
        for (i, _) in ids.iter().enumerate() {
            let product = bench.admin(reqwest::Method::GET, &format!("/contended/products/{}", ids[i]), Value::Null).await;
            let stock = product["variants"][0]["stock"].as_i64().unwrap();
            negative += usize::from(stock < 0);
            let moves = bench
                .admin(reqwest::Method::GET, &format!("/contended/inventory/SKU-{i}/movements?limit=200"), Value::Null)
                .await;
            let sum: i64 = moves["items"].as_array().map_or(0, |m| m.iter().map(|x| x["delta"].as_i64().unwrap()).sum());
            ledger_off += usize::from(sum != stock);
        }
        println!(
            "(b) contended, 2000 attempts for 500 units: {created} orders, {short} out_of_stock in {secs:.1} s = {:.0} attempts/s; p99 {}; oversell {}; negative stock {negative}; ledger mismatches {ledger_off}",
            2000.0 / secs,
            ms(percentile(&lat, 0.99)),
            created.saturating_sub(500)
        );
        assert_eq!((created, negative, ledger_off), (500, 0, 0), "no oversell, ledger matches");

        // Open event streams: memory per stream.
        let before = rss_kib(&pid);
        let mut open = Vec::with_capacity(streams);
        for i in 0..streams {
            // The per-IP limit counts client addresses: the streams come from many loopback addresses.
            let from = std::net::Ipv4Addr::new(127, 0, (1 + i / 200) as u8, (1 + i % 200) as u8);
            let c = reqwest::Client::builder().local_address(std::net::IpAddr::V4(from)).build().unwrap();
            let r = c.get(format!("{url}/t/ample/api/v1/stock/events?sku=SKU-{}", i % 200)).send().await.unwrap();
            assert_eq!(r.status(), 200, "stream {i}");
            open.push((c, r));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(&pid);
        println!(
            "{streams} open stock streams: RSS {} -> {} MiB, {:.1} KiB per stream",
            before / 1024,
            after / 1024,
            (after.saturating_sub(before)) as f64 / streams as f64
        );
        drop(open);
    });
}
