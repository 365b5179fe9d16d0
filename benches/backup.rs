//! Backup benchmark, driven by `scripts/bench-backup` against two release binaries of the same build started by
//! the script: one without backups (the baseline) and one replicating to a local S3 (moto), default interval 1 s.
//!
//! Each server gets 100 tenants. Then, on each: (1) write throughput, 16 clients creating carts on one tenant as
//! fast as they can (the ratio on/off is the cost of the commit hook and the captures); (2) a steady 500 writes/s
//! on one tenant and (3) spread over the 100 tenants, for 15 s each, while `gatehouse_backup_lag_seconds` is
//! sampled every 50 ms (p50/p99 of the samples: the age of the oldest commit not yet uploaded), with the
//! server's CPU time over the phase and the bytes uploaded per committed write.
//!
//! Environment: GATEHOUSE_BENCH_OFF_URL, GATEHOUSE_BENCH_OFF_PID, GATEHOUSE_BENCH_ON_URL, GATEHOUSE_BENCH_ON_PID,
//! GATEHOUSE_BENCH_TOKEN, and optionally GATEHOUSE_BENCH_S3_PID (the S3 server's CPU is reported).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run scripts/bench-backup"))
}

/// The process's user + system CPU seconds.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, rest)| rest.split(' ').collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Server {
    url: String,
    pid: String,
    client: reqwest::Client,
}

impl Server {
    async fn metric(&self, name: &str) -> f64 {
        let text = self.client.get(format!("{}/metrics", self.url)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn tenants(&self, token: &str, n: usize) {
        for i in 0..n {
            let r = self
                .client
                .post(format!("{}/admin/api/v1/tenants", self.url))
                .bearer_auth(token)
                .json(&json!({"slug": format!("bench-{i}"), "name": format!("Bench {i}")}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "create tenant: {}", r.status());
        }
    }

    /// Carts made by `clients` connections for `secs`, unpaced: (writes per second, the server's CPU seconds
    /// per 1,000 writes, the S3 server's CPU seconds over the phase).
    async fn throughput(&self, clients: usize, secs: u64, s3_pid: &str) -> (f64, f64, f64) {
        let (cpu, s3_cpu) = (cpu_secs(&self.pid), cpu_secs(s3_pid));
        let done = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let (client, url, done) =
                (self.client.clone(), format!("{}/t/bench-0/api/v1/carts", self.url), done.clone());
            set.spawn(async move {
                while Instant::now() < deadline {
                    let r = client.post(&url).send().await.unwrap();
                    assert!(r.status().is_success(), "cart: {}", r.status());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while set.join_next().await.is_some() {}
        let writes = done.load(Ordering::Relaxed) as f64;
        (writes / secs as f64, (cpu_secs(&self.pid) - cpu) * 1000.0 / writes.max(1.0), cpu_secs(s3_pid) - s3_cpu)
    }

    /// `rate` writes per second for `secs` over `tenants` tenants (round robin), sampling the backup lag every
    /// 50 ms: (lag samples, writes, CPU seconds, bytes uploaded).
    async fn steady(&self, rate: u64, secs: u64, tenants: usize, sample: bool) -> (Vec<f64>, usize, f64, f64) {
        let cpu = cpu_secs(&self.pid);
        let bytes = self.metric("gatehouse_backup_upload_bytes_total").await;
        let writes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (client, url, stop) = (self.client.clone(), format!("{}/metrics", self.url), stop.clone());
            tokio::spawn(async move {
                let mut lags = Vec::new();
                while sample && !stop.load(Ordering::Relaxed) {
                    let text = client.get(&url).send().await.unwrap().text().await.unwrap();
                    if let Some(v) = text
                        .lines()
                        .find(|l| l.starts_with("gatehouse_backup_lag_seconds "))
                        .and_then(|l| l.rsplit(' ').next())
                        .and_then(|v| v.parse::<f64>().ok())
                    {
                        lags.push(v);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                lags
            })
        };
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        let mut set = tokio::task::JoinSet::new();
        let end = Instant::now() + Duration::from_secs(secs);
        let mut i = 0;
        while Instant::now() < end {
            tick.tick().await;
            let url = format!("{}/t/bench-{}/api/v1/carts", self.url, i % tenants);
            let (client, writes) = (self.client.clone(), writes.clone());
            set.spawn(async move {
                let r = client.post(&url).send().await.unwrap();
                assert!(r.status().is_success(), "cart: {}", r.status());
                writes.fetch_add(1, Ordering::Relaxed);
            });
            i += 1;
        }
        while set.join_next().await.is_some() {}
        // Let the last commits reach the bucket before the byte count is read.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let mut lags = sampler.await.unwrap();
        lags.sort_by(f64::total_cmp);
        let uploaded = self.metric("gatehouse_backup_upload_bytes_total").await - bytes;
        (lags, writes.load(Ordering::Relaxed), cpu_secs(&self.pid) - cpu, uploaded)
    }
}

#[tokio::main]
async fn main() {
    let token = env("GATEHOUSE_BENCH_TOKEN");
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let off =
        Server { url: env("GATEHOUSE_BENCH_OFF_URL"), pid: env("GATEHOUSE_BENCH_OFF_PID"), client: client.clone() };
    let on = Server { url: env("GATEHOUSE_BENCH_ON_URL"), pid: env("GATEHOUSE_BENCH_ON_PID"), client };
    for server in [&off, &on] {
        server.tenants(&token, 100).await;
    }
    // Throughput, alternating so drift on the machine lands on both. The S3 stand-in (moto, Python) runs on the
    // same cores, so its CPU is shown beside the ratio, and the server's CPU per write is the cost on its own.
    let s3_pid = std::env::var("GATEHOUSE_BENCH_S3_PID").unwrap_or_default();
    const ROUNDS: usize = 5;
    let (mut off_sum, mut on_sum) = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0));
    for _ in 0..ROUNDS {
        for (server, sum) in [(&off, &mut off_sum), (&on, &mut on_sum)] {
            let (rate, cpu, s3) = server.throughput(16, 8, &s3_pid).await;
            *sum = (sum.0 + rate / ROUNDS as f64, sum.1 + cpu / ROUNDS as f64, sum.2 + s3);
        }
    }
    println!(
        "write throughput (16 clients, carts on one tenant, {ROUNDS} alternating rounds of 8 s): off {:.0}/s, \
         on {:.0}/s: on/off = {:.1} %; server CPU per 1,000 writes off {:.3} s, on {:.3} s ({:.1} %); \
         S3 server CPU {:.2} s over the on rounds ({:.2} s over the off rounds)",
        off_sum.0,
        on_sum.0,
        100.0 * on_sum.0 / off_sum.0,
        off_sum.1,
        on_sum.1,
        100.0 * on_sum.1 / off_sum.1,
        on_sum.2,
        off_sum.2
    );
    let (held, checkpoints) = (
        on.metric("gatehouse_backup_checkpoint_turn_seconds_sum").await,
        on.metric("gatehouse_backup_checkpoint_turn_seconds_count").await,
    );
    println!(
        "checkpoints so far: {checkpoints:.0}, writer turn held {:.1} ms each on average",
        1000.0 * held / checkpoints.max(1.0)
    );
    for (label, tenants) in [("one tenant", 1), ("100 tenants", 100)] {
        let (_, w_off, cpu_off, _) = off.steady(500, 15, tenants, false).await;
        let (lags, w_on, cpu_on, bytes) = on.steady(500, 15, tenants, true).await;
        println!(
            "500 writes/s on {label}, 15 s: lag p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} samples); \
             {:.0} bytes uploaded per write; server CPU {:.2} s with backups vs {:.2} s without ({} / {} writes)",
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
            lags.last().copied().unwrap_or(0.0),
            lags.len(),
            bytes / w_on.max(1) as f64,
            cpu_on,
            cpu_off,
            w_on,
            w_off
        );
    }
}
