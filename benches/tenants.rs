//! Tenant-scale benchmark, driven by `scripts/bench-tenants` against a running release binary.
//!
//! First measures, in this process, what one tenant connection holds (SQLite's schema, page cache, statements).
//! Then creates N tenants through the admin API and touches each once, one at a time (`GET /t/{slug}/api/v1/tenant`:
//! the first touch opens the tenant's pool cold); 16 clients cycle all tenants twice; then mixed (random tenants)
//! and warm (100 open pools) throughput. After each phase it prints the server's memory: RSS and its peak,
//! split into heap, code and SQLite's `-shm` maps, with SQLite's heap, open pools and connections from /metrics.
//!
//! Environment: GATEHOUSE_BENCH_URL, GATEHOUSE_BENCH_PID, GATEHOUSE_BENCH_TOKEN, GATEHOUSE_BENCH_TENANTS.

use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-tenants"))
}

/// The server's memory from /proc: (VmHWM, VmRSS, RssAnon, RssFile) in KiB.
fn rss_kib(pid: &str) -> (u64, u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// One line of the server's memory after a phase, with what the server's /metrics says SQLite and the pools hold.
async fn memory_line(client: &reqwest::Client, url: &str, pid: &str, phase: &str) {
    let (hwm, rss, anon, file) = rss_kib(pid);
    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    println!(
        "memory after {phase}: RSS {} MiB (peak {} MiB; heap and stacks {} MiB, code and -shm maps {} MiB) | \
         SQLite heap {:.1} MiB | pools open {} | connections {}",
        rss / 1024,
        hwm / 1024,
        anon / 1024,
        file / 1024,
        value("gatehouse_sqlite_heap_bytes") / 1048576.0,
        value("gatehouse_tenant_pools_open"),
        value("gatehouse_tenant_pool_connections"),
    );
}

/// What one tenant connection holds, measured in this process on a freshly migrated tenant file with the
/// binary's SQLite settings.
fn connection_breakdown() {
    // SAFETY: the bench's first statement: no other thread exists, none uses SQLite.
    #[allow(unsafe_code)]
    unsafe {
        gatehouse::db::tuning::configure_process();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut conn = gatehouse::db::open_connection(&path).unwrap();
    gatehouse::db::migrate::migrate(&mut conn, gatehouse::db::migrate::TENANT, "bench").unwrap();
    drop(conn);
    let (before, _) = gatehouse::db::tuning::heap();
    let mut conn = gatehouse::db::open_connection(&path).unwrap();
    gatehouse::db::migrate::migrate(&mut conn, gatehouse::db::migrate::TENANT, "bench").unwrap();
    let (after, _) = gatehouse::db::tuning::heap();
    let held = gatehouse::db::tuning::connection(&conn);
    println!(
        "one tenant connection after its open check: SQLite heap +{} KiB = schema {} KiB + page cache {} KiB + \
         statements {} KiB + other {} KiB (lookaside slots in use: {}); plus a 32 KiB -shm map per open file",
        (after - before) / 1024,
        held.schema / 1024,
        held.page_cache / 1024,
        held.statements / 1024,
        (after - before - held.total()) / 1024,
        held.lookaside_slots,
    );
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

/// 16 clients cycle all tenants `passes` times (client k takes every 16th tenant, starting at k): each request's
/// latency and the rate.
async fn cycle(client: &reqwest::Client, url: &str, slugs: &[String], passes: usize) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..16usize {
        let (client, url, slugs) = (client.clone(), url.to_owned(), slugs.to_vec());
        set.spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..passes {
                for slug in slugs.iter().skip(worker).step_by(16) {
                    let t = Instant::now();
                    let r = client.get(format!("{url}/t/{slug}/api/v1/tenant")).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                    latencies.push(t.elapsed());
                }
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (all, rate)
}

/// 16 clients for 5 s over `slugs` in a stride: requests per second.
async fn throughput(client: &reqwest::Client, url: &str, slugs: &[String]) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..16usize {
        let (client, url, slugs) = (client.clone(), url.to_owned(), slugs.to_vec());
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
    total as f64 / 5.0
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
    connection_breakdown();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        println!("tenants: {n}");
        // Idle once start-up's tail is over (the binary unmaps start-up's code pages 5 s after it serves).
        memory_line(&client, &url, &pid, "start (ready)").await;
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        memory_line(&client, &url, &pid, "idle (6 s after ready)").await;

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
        memory_line(&client, &url, &pid, "creating").await;

        // Cold, one at a time: the first touch of each tenant opens its pool (and checks its schema).
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
            "cold open, sequential (client-side, incl. HTTP): p50 {} p99 {} | warm same request: p50 {} p99 {} | \
             cold/warm p99 ratio {:.2}",
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 0.99)),
            ms(percentile(&warm, 0.5)),
            ms(percentile(&warm, 0.99)),
            percentile(&cold, 0.99).as_secs_f64() / percentile(&warm, 0.99).as_secs_f64()
        );
        memory_line(&client, &url, &pid, "the sequential touch").await;

        // Concurrent: 16 clients cycle every tenant, twice (with more tenants than open pools, most are cold).
        for pass in 1..=2 {
            let (latencies, rate) = cycle(&client, &url, &slugs, 1).await;
            println!(
                "16 clients, pass {pass} over all tenants: p50 {} p99 {} at {rate:.0} req/s",
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.99)),
            );
            memory_line(&client, &url, &pid, &format!("concurrent pass {pass}")).await;
        }

        // Mixed: 16 clients over random tenants for 5 s (most are cold); warm: the same over 100 open pools.
        let mixed = throughput(&client, &url, &slugs).await;
        println!("mixed requests over all tenants: {mixed:.0} req/s (16 connections, client on the same cores)");
        let hot_set = &slugs[..100.min(n)];
        cycle(&client, &url, hot_set, 1).await;
        let warm_rate = throughput(&client, &url, hot_set).await;
        println!(
            "warm requests over {} open pools: {warm_rate:.0} req/s; mixed/warm {:.2}",
            hot_set.len(),
            mixed / warm_rate
        );
        memory_line(&client, &url, &pid, "the throughput runs").await;
    });
}
