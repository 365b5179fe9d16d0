//! Tenant-scale benchmark, driven by `scripts/bench-tenants` against a running release binary.
//!
//! Creates N tenants through the admin API, touches each once (`GET /t/{slug}/api/v1/tenant`: the first touch
//! opens the tenant's pool cold), then measures warm requests. Prints the server's RSS (VmHWM and VmRSS), the
//! cold-open latency p50/p99 next to the warm p50/p99 of the same run, and warm throughput.
//!
//! Environment: GATEHOUSE_BENCH_URL, GATEHOUSE_BENCH_PID, GATEHOUSE_BENCH_TOKEN, GATEHOUSE_BENCH_TENANTS.

use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-tenants"))
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
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::var("GATEHOUSE_BENCH_URL").is_err() {
        eprintln!("benches/tenants: not started by scripts/bench-tenants; nothing to do");
        return;
    }
    let url = env("GATEHOUSE_BENCH_URL");
    let pid = env("GATEHOUSE_BENCH_PID");
    let token = env("GATEHOUSE_BENCH_TOKEN");
    let n: usize = std::env::var("GATEHOUSE_BENCH_TENANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let (_, idle_rss) = rss_kib(&pid);
        println!("tenants: {n}");
        println!("idle RSS after start: {} MiB", idle_rss / 1024);

        let started = Instant::now();
        let slugs: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();
        for chunk in slugs.chunks(4) {
            let mut set = tokio::task::JoinSet::new();
            for slug in chunk {
                let request = client
                    .post(format!("{url}/admin/api/v1/tenants"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "slug": slug, "name": slug }));
                set.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
            }
            while let Some(result) = set.join_next().await {
                let status = result.unwrap().expect("create request");
                assert!(status == 201 || status == 409, "create answered {status}");
            }
        }
        let create_secs = started.elapsed().as_secs_f64();
        println!("created {n} tenants in {create_secs:.1} s ({:.0}/s)", n as f64 / create_secs);

        // Cold: the first touch of each tenant opens its pool (and checks its schema).
        let mut cold = Vec::with_capacity(n);
        for slug in &slugs {
            let t = Instant::now();
            let r = client.get(format!("{url}/t/{slug}/api/v1/tenant")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            cold.push(t.elapsed());
        }
        // Warm baseline: the same request to a tenant whose pool is open.
        let hot = &slugs[n - 1];
        let mut warm = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let t = Instant::now();
            let r = client.get(format!("{url}/t/{hot}/api/v1/tenant")).send().await.unwrap();
            r.bytes().await.unwrap();
            warm.push(t.elapsed());
        }
        cold.sort();
        warm.sort();
        println!(
            "cold open (client-side, incl. HTTP): p50 {} p99 {} | warm same request: p50 {} p99 {} | cold/warm p99 ratio {:.2}",
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 0.99)),
            ms(percentile(&warm, 0.5)),
            ms(percentile(&warm, 0.99)),
            percentile(&cold, 0.99).as_secs_f64() / percentile(&warm, 0.99).as_secs_f64()
        );

        // Warm throughput: 16 concurrent clients over random open-or-cached tenants for 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut set = tokio::task::JoinSet::new();
        for worker in 0..16usize {
            let client = client.clone();
            let url = url.clone();
            let slugs = slugs.clone();
            set.spawn(async move {
                let mut done = 0u64;
                let mut i = worker * 7919;
                while Instant::now() < deadline {
                    let slug = &slugs[i % slugs.len()];
                    i += 13;
                    let r = client.get(format!("{url}/t/{slug}/api/v1/tenant")).send().await.unwrap();
                    r.bytes().await.unwrap();
                    done += 1;
                }
                done
            });
        }
        let mut total = 0;
        while let Some(r) = set.join_next().await {
            total += r.unwrap();
        }
        println!("mixed requests over all tenants: {:.0} req/s (16 connections, client on the same cores)", total as f64 / 5.0);
        let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        let pools = metrics.lines().find(|l| l.starts_with("gatehouse_tenant_pools_open")).unwrap_or("?");
        println!("{pools}");
        let (hwm, rss) = rss_kib(&pid);
        println!("server RSS: peak (VmHWM) {} MiB, now (VmRSS) {} MiB; target <= 200 MiB", hwm / 1024, rss / 1024);
    });
}
