//! Plugin call costs, run by `scripts/bench-plugins` (which builds the components first).
//!
//! Figures, each against a baseline from the same run:
//! - the median and p99 of a fresh-instance `post-login` call (new `Store`, instantiate from the cached
//!   `InstancePre`, call, drop) for the C no-op plugin and the JavaScript login-policy plugin, on the server's own
//!   engine configuration (pooling, copy-on-write, resident slots, epoch deadline), and the same call with one
//!   thread per core at once;
//! - the median of a real sign-in (`POST /t/{slug}/api/v1/login`, argon2id at the server's default parameters)
//!   against a tenant with the C no-op plugin active, against one without, requests alternating between them.
//!
//! Environment: GATEHOUSE_BENCH_CALLS (default 2000), GATEHOUSE_BENCH_LOGINS (default 150).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatehouse::plugins::World;
use gatehouse::plugins::runtime::{Input, Limits, Loaded, Outcome, Request, Runtime, User};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";
const TOKEN: &str = "bench-bootstrap-token-0123456789abcdef";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/build").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|_| panic!("{} is missing: run scripts/build-plugins", path.display()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn input() -> Input {
    let user = User {
        id: "01890000-0000-7000-8000-000000000000".into(),
        email: "ada@example.com".into(),
        email_verified: true,
        roles: vec!["member".into()],
        fields: vec![gatehouse::plugins::runtime::Field { key: "plan".into(), value: "\"pro\"".into() }],
    };
    let request = Request { ip: "203.0.113.7".into(), user_agent: "bench".into(), client_id: None };
    Input::PostLogin(user, request)
}

/// Fresh-instance calls on `threads` threads at once; answers the sorted latencies and calls/s.
fn calls(runtime: &Runtime, loaded: &Loaded, n: usize, threads: usize) -> (Vec<Duration>, f64) {
    let limits = Limits { timeout_ms: 1000, memory_mb: 64 };
    for _ in 0..20 {
        assert_eq!(runtime.call(loaded, input(), limits, "{}".into()).outcome, Outcome::Ok);
    }
    let started = Instant::now();
    let mut all: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    (0..n / threads)
                        .map(|_| {
                            let t = Instant::now();
                            let report = runtime.call(loaded, input(), limits, "{}".into());
                            assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.error);
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (all, rate)
}

async fn login_time(client: &reqwest::Client, base: &str, slug: &str) -> Duration {
    let started = Instant::now();
    let r = client
        .post(format!("{base}/t/{slug}/api/v1/login"))
        .json(&json!({ "email": "ada@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let _ = r.bytes().await;
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let n = env_num("GATEHOUSE_BENCH_CALLS", 2000);
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let runtime = Runtime::new((2 * cores) as u32).expect("engine");
    println!("fresh instance per call, post-login, {n} calls after 20 warm-up calls");
    let mut medians = vec![];
    for name in ["c-noop-login", "js-login-policy"] {
        let bytes = component(name);
        let compile = Instant::now();
        let compiled = wasmtime::component::Component::new(runtime.engine(), &bytes).expect("compiles");
        let compile = compile.elapsed();
        let loaded = runtime.prepare(compiled, World::Login).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let (one, rate1) = calls(&runtime, &loaded, n, 1);
        let (many, rate_n) = calls(&runtime, &loaded, n, cores);
        println!(
            "  {name:<16} {:>8} KiB  compile {:>7.0} ms  median {:>9}  p99 {:>9}  {:>7.0} calls/s | {cores} threads: median {:>9}, {:>7.0} calls/s",
            bytes.len() / 1024,
            compile.as_secs_f64() * 1000.0,
            us(percentile(&one, 0.5)),
            us(percentile(&one, 0.99)),
            rate1,
            us(percentile(&many, 0.5)),
            rate_n,
        );
        medians.push(percentile(&one, 0.5));
    }
    println!("  targets: C ≤ 20 µs → {}; JS ≤ 1 ms → {}", us(medians[0]), us(medians[1]));

    // Sign-in with and without a plugin, on the real router with default argon2id parameters.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = gatehouse::Config::for_tests(dir.path());
    let defaults = gatehouse::Config::from_lookup(|_| None).unwrap();
    config.password = defaults.password;
    config.auth_per_minute = 1_000_000;
    config.public_url = base.clone();
    config.bootstrap_token = Some(gatehouse::config::Secret::new(TOKEN));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gatehouse::run_with_routes(
        listener,
        config,
        async move {
            let _ = stopped.await;
        },
        axum::Router::new(),
    ));
    let client = reqwest::Client::new();
    let admin =
        |method: reqwest::Method, path: &str| client.request(method, format!("{base}{path}")).bearer_auth(TOKEN);
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for slug in ["plain", "plugged"] {
        let r = admin(reqwest::Method::POST, "/admin/api/v1/tenants")
            .json(&json!({"slug": slug, "name": slug}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = admin(reqwest::Method::POST, &format!("/admin/api/v1/tenants/{slug}/users"))
            .json(&json!({"email": "ada@example.com", "password": PASSWORD, "email_verified": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = admin(reqwest::Method::POST, "/admin/api/v1/tenants/plugged/plugins")
        .json(&json!({"name": "noop", "world": "login"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(reqwest::Method::POST, "/admin/api/v1/tenants/plugged/plugins/noop/versions")
        .header("content-type", "application/wasm")
        .body(component("c-noop-login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(reqwest::Method::POST, "/admin/api/v1/tenants/plugged/plugins/noop/versions/1/activate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let logins = env_num("GATEHOUSE_BENCH_LOGINS", 150);
    for slug in ["plain", "plugged", "plain", "plugged"] {
        login_time(&client, &base, slug).await;
    }
    let (mut plain, mut plugged) = (vec![], vec![]);
    for i in 0..logins {
        // Which one goes first alternates too, so neither side always follows the other's argon2 work.
        if i % 2 == 0 {
            plain.push(login_time(&client, &base, "plain").await);
            plugged.push(login_time(&client, &base, "plugged").await);
        } else {
            plugged.push(login_time(&client, &base, "plugged").await);
            plain.push(login_time(&client, &base, "plain").await);
        }
    }
    plain.sort();
    plugged.sort();
    let (a, b) = (percentile(&plain, 0.5), percentile(&plugged, 0.5));
    println!(
        "sign-in (argon2id defaults), {logins} each, alternating: without plugin median {:.2} ms, with the C no-op plugin {:.2} ms → {:.3}× (target ≤ 1.05×)",
        a.as_secs_f64() * 1000.0,
        b.as_secs_f64() * 1000.0,
        b.as_secs_f64() / a.as_secs_f64()
    );
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let ok_calls = metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_plugin_calls_total{world=\"login\",function=\"post-login\",outcome=\"ok\"}"))
        .unwrap_or("no plugin calls recorded");
    println!("  {ok_calls}");
    let _ = stop.send(());
    let _ = server.await;
}
