//! Logs and metrics.
//!
//! Logs: one process-wide tracing subscriber (installed by `main`, never by the library), JSON by default;
//! each request runs in a span carrying its request id, so every line logged while serving it names it.
//!
//! Metrics: each `App` owns its own Prometheus recorder (`Metrics`) rather than installing a global one, so one
//! test process can run many servers whose figures do not mix. Code records through `Metrics::record`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Installs the global log subscriber. Call once, from `main`.
pub fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if result.is_ok() {
        install_panic_hook();
    }
}

/// Panics are logged as one error line inside the current span (so with the request id), not printed raw.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        tracing::error!(panic = %message, location = %location, "handler panicked");
    }));
}

/// The per-app metrics registry.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )
            .expect("bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full("gatehouse_outbox_delivery_seconds".into()),
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    /// Runs `f` with this app's recorder as the target of the `metrics` macros.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Counts a cache lookup as a hit or a miss.
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        self.record(|| {
            if hit {
                metrics::counter!("gatehouse_cache_hits_total", "cache" => cache).increment(1);
            } else {
                metrics::counter!("gatehouse_cache_misses_total", "cache" => cache).increment(1);
            }
        });
    }
}
