//! Outbox dispatcher throughput, driven by `scripts/bench-outbox` against a running release binary and a local
//! aiosmtpd server.
//!
//! Each figure comes with a baseline measured in the same run against the same receiver: mails/s through the
//! outbox vs. lettre sending the same number of messages directly with the same concurrency, and webhook
//! deliveries/s vs. plain reqwest POSTs. Work is queued while the tenant is suspended (the dispatcher skips
//! suspended tenants), then the tenant is resumed and the clock runs until the receiver has everything.
//!
//! Environment: GATEHOUSE_BENCH_URL, GATEHOUSE_BENCH_TOKEN, GATEHOUSE_BENCH_SMTP_PORT, GATEHOUSE_BENCH_SMTP_OUT,
//! GATEHOUSE_BENCH_MESSAGES.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-outbox"))
}

/// Messages the aiosmtpd sink has written so far.
fn sink_count(out: &str) -> usize {
    std::fs::read_to_string(out).map(|s| s.lines().count()).unwrap_or(0)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let mut request = self.client.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap_or_default()
    }

    /// Runs `count` POSTs to `path` with `parallel` requests in flight; returns the elapsed time.
    async fn post_many(&self, path: &str, count: usize, body: serde_json::Value) -> Duration {
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url, token, body, next) =
                (self.client.clone(), format!("{}{path}", self.url), self.token.clone(), body.clone(), next.clone());
            set.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let r = client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                    assert!(r.status().is_success());
                }
            });
        }
        while set.join_next().await.is_some() {}
        started.elapsed()
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    if std::env::var("GATEHOUSE_BENCH_URL").is_err() {
        eprintln!("benches/outbox: not started by scripts/bench-outbox; nothing to do");
        return;
    }
    let api =
        Api { client: reqwest::Client::new(), url: env("GATEHOUSE_BENCH_URL"), token: env("GATEHOUSE_BENCH_TOKEN") };
    let smtp_port: u16 = env("GATEHOUSE_BENCH_SMTP_PORT").parse().unwrap();
    let out = env("GATEHOUSE_BENCH_SMTP_OUT");
    let n: usize = std::env::var("GATEHOUSE_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async move {
        use reqwest::Method;
        println!("messages per run: {n}");

        // Baseline: lettre straight to the sink, 4 in flight (the dispatcher's default per tenant).
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp_port).build();
        let before = sink_count(&out);
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (transport, next) = (transport.clone(), next.clone());
            set.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let message = lettre::Message::builder()
                        .from("bench@example.com".parse::<Mailbox>().unwrap())
                        .to("to@example.com".parse::<Mailbox>().unwrap())
                        .subject("baseline")
                        .multipart(MultiPart::alternative_plain_html("text".to_owned(), "<p>html</p>".to_owned()))
                        .unwrap();
                    transport.send(message).await.unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
        wait_until("baseline mails", || sink_count(&out) >= before + n).await;
        let baseline_mail = rate(n, started.elapsed());
        println!("baseline: lettre direct to aiosmtpd, 4 in flight: {baseline_mail:.0} mails/s");

        // Through the outbox: one tenant, then four tenants at once.
        for tenants in [1usize, 4] {
            let slugs: Vec<String> = (0..tenants).map(|i| format!("mail-{tenants}-{i}")).collect();
            for slug in &slugs {
                api.call(Method::POST, "/admin/api/v1/tenants", Some(json!({ "slug": slug, "name": slug }))).await;
                let smtp =
                    json!({ "host": "127.0.0.1", "port": smtp_port, "tls": "none", "from_email": "b@example.com" });
                api.call(Method::PUT, &format!("/admin/api/v1/tenants/{slug}/smtp"), Some(smtp)).await;
                api.call(Method::POST, &format!("/admin/api/v1/tenants/{slug}/suspend"), None).await;
            }
            let per = n / tenants;
            let enqueue_started = Instant::now();
            for slug in &slugs {
                let path = format!("/admin/api/v1/tenants/{slug}/emails/test");
                api.post_many(&path, per, json!({ "to": "to@example.com" })).await;
            }
            let enqueue = enqueue_started.elapsed();
            let before = sink_count(&out);
            let started = Instant::now();
            for slug in &slugs {
                api.call(Method::POST, &format!("/admin/api/v1/tenants/{slug}/resume"), None).await;
            }
            wait_until("outbox mails", || sink_count(&out) >= before + per * tenants).await;
            let through = rate(per * tenants, started.elapsed());
            println!(
                "outbox, {tenants} tenant(s): {through:.0} mails/s rendered and sent = {:.2}x the baseline; \
                 enqueue over HTTP {:.0}/s",
                through / baseline_mail,
                rate(per * tenants, enqueue)
            );
        }

        // Webhooks: a local receiver counting POSTs.
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let body =
            json!({ "id": "x", "type": "webhook.ping", "tenant": "t", "created_at": "now", "data": {} }).to_string();
        let client = reqwest::Client::new();
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (client, url, body, next) = (client.clone(), hook_url.clone(), body.clone(), next.clone());
            set.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    client.post(&url).body(body.clone()).send().await.unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
        let baseline_hooks = rate(n, started.elapsed());
        println!("baseline: reqwest POSTs to a local receiver, 4 in flight: {baseline_hooks:.0} requests/s");

        let slug = "hooks";
        api.call(Method::POST, "/admin/api/v1/tenants", Some(json!({ "slug": slug, "name": slug }))).await;
        let hook = api
            .call(
                Method::POST,
                &format!("/admin/api/v1/tenants/{slug}/webhooks"),
                Some(json!({ "url": hook_url, "events": ["*"] })),
            )
            .await;
        let id = hook["id"].as_str().unwrap().to_owned();
        api.call(Method::POST, &format!("/admin/api/v1/tenants/{slug}/suspend"), None).await;
        let enqueue = api.post_many(&format!("/admin/api/v1/tenants/{slug}/webhooks/{id}/ping"), n, json!({})).await;
        let before = received.load(Ordering::Relaxed);
        let started = Instant::now();
        api.call(Method::POST, &format!("/admin/api/v1/tenants/{slug}/resume"), None).await;
        wait_until("webhook deliveries", || received.load(Ordering::Relaxed) >= before + n).await;
        let through = rate(n, started.elapsed());
        println!(
            "outbox, webhooks: {through:.0} signed deliveries/s = {:.2}x the baseline; enqueue over HTTP {:.0}/s",
            through / baseline_hooks,
            rate(n, enqueue)
        );
    });
}
