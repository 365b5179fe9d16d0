//! Sign-in throughput and isolation, driven by `scripts/bench-login` against a running release binary.
//!
//! Figures, each with its baseline from the same run:
//! - logins/s through `POST /t/{slug}/api/v1/login` with 16 clients in flight, against the argon2id ceiling:
//!   a tight loop of `argon2::verify_password` with the server's parameters on every core, measured right before;
//! - p50/p99 of a cheap endpoint (`GET /t/{slug}/api/v1/tenant`) during the flood, against the same probe with
//!   no flood;
//! - median sequential login time for an unknown email, a known email with a wrong password and a known email
//!   with the right one (no enumeration: these should match).
//!
//! Environment: GATEHOUSE_BENCH_URL, GATEHOUSE_BENCH_TOKEN, GATEHOUSE_BENCH_SECONDS (default 10), and the
//! server's GATEHOUSE_PASSWORD_MEMORY_KIB / _ITERATIONS / _PARALLELISM (defaults 19456 / 2 / 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
const CLIENTS: usize = 16;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-login"))
}

/// User + system CPU seconds of a process so far (`/proc/{pid}/stat`, clock ticks of 10 ms).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
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

/// argon2id verifications per second on every core for `seconds`, with the server's parameters.
fn argon2_ceiling(seconds: f64) -> f64 {
    let params = Params::new(
        env_or("GATEHOUSE_PASSWORD_MEMORY_KIB", "19456").parse().unwrap(),
        env_or("GATEHOUSE_PASSWORD_ITERATIONS", "2").parse().unwrap(),
        env_or("GATEHOUSE_PASSWORD_PARALLELISM", "1").parse().unwrap(),
        None,
    )
    .unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"bench-salt-16byt").unwrap();
    let hash = argon2.hash_password(PASSWORD.as_bytes(), &salt).unwrap().to_string();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let done: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cpus)
            .map(|_| {
                let (argon2, hash) = (argon2.clone(), hash.clone());
                scope.spawn(move || {
                    let parsed = PasswordHash::new(&hash).unwrap();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        argon2.verify_password(PASSWORD.as_bytes(), &parsed).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    done as f64 / started.elapsed().as_secs_f64()
}

async fn login(client: &reqwest::Client, url: &str, email: &str, password: &str) -> (u16, Duration) {
    let started = Instant::now();
    let r = client
        .post(format!("{url}/t/bench/api/v1/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    (status, started.elapsed())
}

/// Latencies of the cheap endpoint, probed every 10 ms until `stop`.
async fn probe(client: reqwest::Client, url: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let r = client.get(format!("{url}/t/bench/api/v1/tenant")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        out.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.sort();
    out
}

#[tokio::main]
async fn main() {
    let url = env("GATEHOUSE_BENCH_URL");
    let token = env("GATEHOUSE_BENCH_TOKEN");
    let seconds: f64 = env_or("GATEHOUSE_BENCH_SECONDS", "10").parse().unwrap();
    let admin = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Value| {
        admin.request(method, format!("{url}{path}")).bearer_auth(&token).json(&body).send()
    };
    let r = call(reqwest::Method::POST, "/admin/api/v1/tenants", json!({ "slug": "bench", "name": "Bench" }))
        .await
        .unwrap();
    assert!(r.status().is_success(), "create tenant: {}", r.status());
    let settings = json!({ "settings": { "lockout": { "max_failures": 100 }, "require_email_verification": false } });
    call(reqwest::Method::PATCH, "/admin/api/v1/tenants/bench", settings).await.unwrap();
    let r = call(
        reqwest::Method::POST,
        "/admin/api/v1/tenants/bench/users",
        json!({ "email": "known@example.com", "password": PASSWORD, "email_verified": true }),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "create user: {}", r.status());
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    // 1. Medians, sequential: unknown email vs known email (wrong and right password).
    let samples = 40;
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    let mut right = Vec::new();
    for i in 0..samples {
        let (s, t) = login(&client, &url, &format!("nobody{i}@example.com"), PASSWORD).await;
        assert_eq!(s, 401);
        unknown.push(t);
        let (s, t) = login(&client, &url, "known@example.com", "not the password at all").await;
        assert_eq!(s, 401);
        wrong.push(t);
        let (s, t) = login(&client, &url, "known@example.com", PASSWORD).await;
        assert_eq!(s, 200);
        right.push(t);
    }
    for v in [&mut unknown, &mut wrong, &mut right] {
        v.sort();
    }
    let (mu, mw, mr) = (percentile(&unknown, 0.5), percentile(&wrong, 0.5), percentile(&right, 0.5));
    println!("median login, {samples} sequential each:");
    println!("  unknown email        {}", ms(mu));
    println!("  known, wrong password {} ({:.2}x unknown)", ms(mw), mw.as_secs_f64() / mu.as_secs_f64());
    println!("  known, right password {} ({:.2}x unknown)", ms(mr), mr.as_secs_f64() / mu.as_secs_f64());

    // 2. Cheap endpoint with no flood (baseline).
    let stop = Arc::new(AtomicBool::new(false));
    let idle = tokio::spawn(probe(client.clone(), url.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs_f64(seconds / 2.0)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = idle.await.unwrap();

    // 3. The argon2 ceiling on the same cores, server idle.
    let ceiling = tokio::task::spawn_blocking(move || argon2_ceiling(seconds)).await.unwrap();

    // 4. Login flood with the probe running.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = tokio::spawn(probe(client.clone(), url.clone(), stop.clone()));
    let ok = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let server_pid = env_or("GATEHOUSE_BENCH_PID", "0");
    let (server_cpu0, own_cpu0) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url, ok) = (client.clone(), url.clone(), ok.clone());
        set.spawn(async move {
            while Instant::now() < deadline {
                let (status, _) = login(&client, &url, "known@example.com", PASSWORD).await;
                assert_eq!(status, 200);
                ok.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while set.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let busy = busy.await.unwrap();
    let rate = ok.load(Ordering::Relaxed) as f64 / elapsed;
    let logins = ok.load(Ordering::Relaxed) as f64;
    let server_cpu = (cpu_seconds(&server_pid) - server_cpu0) / logins;
    let own_cpu = (cpu_seconds("self") - own_cpu0) / logins;

    println!("argon2id ceiling (verify loop on every core): {ceiling:.1}/s");
    println!("logins/s, {CLIENTS} clients, {seconds} s: {rate:.1}/s = {:.0}% of the ceiling", rate / ceiling * 100.0);
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    println!(
        "CPU per login: server {:.1} ms (one argon2 verify: {:.1} ms), this load generator {:.1} ms",
        server_cpu * 1000.0,
        cpus / ceiling * 1000.0,
        own_cpu * 1000.0
    );
    println!(
        "GET /t/bench/api/v1/tenant idle: p50 {} p99 {} ({} probes)",
        ms(percentile(&idle, 0.5)),
        ms(percentile(&idle, 0.99)),
        idle.len()
    );
    println!(
        "GET /t/bench/api/v1/tenant during the flood: p50 {} p99 {} ({} probes; p99 {:.1}x idle)",
        ms(percentile(&busy, 0.5)),
        ms(percentile(&busy, 0.99)),
        busy.len(),
        percentile(&busy, 0.99).as_secs_f64() / percentile(&idle, 0.99).as_secs_f64()
    );
}
