//! Logs and metrics.
//!
//! Logs: one process-wide tracing subscriber (installed by `main`, never by the library), JSON by default;
//! each request runs in a span carrying its request id, so every line logged while serving it names it.
//!
//! Metrics: each `App` owns its own Prometheus recorder (`Metrics`) rather than installing a global one, so one
//! test process can run many servers whose figures do not mix. Code records through `Metrics::record`.
//!
//! Pulse (`pulse.rs`): node-wide counters kept beside the Prometheus series and sampled into in-memory rings
//! for the dashboard's plots.

pub mod pulse;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::http::Method;
use metrics::{Counter, Gauge, Histogram};
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
///
/// Series recorded on every request (HTTP counts and durations, cache hits) keep their handles here, made on first
/// use, so the hot path increments an atomic instead of building a labelled key and looking it up.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    in_flight: Gauge,
    /// Route template → the series of each method seen on it.
    routes: RwLock<HashMap<String, Vec<Arc<RouteSeries>>>>,
    /// Cache name → (hits, misses).
    caches: RwLock<HashMap<&'static str, (Counter, Counter)>>,
    /// Node-wide counters and their samples over the last hour and day, for the dashboard's plots.
    pub pulse: pulse::Pulse,
}

/// The series of one route template and method.
struct RouteSeries {
    method: &'static str,
    route: String,
    duration: Histogram,
    by_status: RwLock<Vec<(u16, Counter)>>,
}

/// A request in flight: `Metrics::http_route` counts it in, dropping this value counts it out, whether after
/// `finished` or half way (the client went away and the request future was dropped).
pub struct HttpRoute<'a> {
    metrics: &'a Metrics,
    series: Arc<RouteSeries>,
}

impl Drop for HttpRoute<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.decrement(1.0);
    }
}

impl HttpRoute<'_> {
    /// Records the answer's status and the duration (the in-flight count ends when `self` is dropped, here).
    pub fn finished(self, status: u16, seconds: f64) {
        self.series.duration.record(seconds);
        self.metrics.pulse.request(status, seconds);
        let known = self
            .series
            .by_status
            .read()
            .ok()
            .and_then(|list| list.iter().find(|(s, _)| *s == status).map(|(_, counter)| counter.clone()));
        let counter = known.unwrap_or_else(|| {
            let counter = self.metrics.record(|| {
                metrics::counter!("http_requests_total", "method" => self.series.method,
                                  "route" => self.series.route.clone(), "status" => status.to_string())
            });
            if let Ok(mut list) = self.series.by_status.write()
                && !list.iter().any(|(s, _)| *s == status)
            {
                list.push((status, counter.clone()));
            }
            counter
        });
        counter.increment(1);
    }
}

/// The method label: the standard methods by name, anything else as `OTHER` (a client cannot mint series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
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
        let in_flight = metrics::with_local_recorder(&recorder, || metrics::gauge!("http_requests_in_flight"));
        Self {
            recorder,
            handle,
            in_flight,
            routes: RwLock::default(),
            caches: RwLock::default(),
            pulse: pulse::Pulse::new(),
        }
    }

    /// Counts a request on `route` (the matched template; `None` when no route matched) as in flight.
    pub fn http_route(&self, route: Option<&str>, method: &Method) -> HttpRoute<'_> {
        let route = route.unwrap_or("unmatched");
        let method = method_label(method);
        let known =
            self.routes.read().ok().and_then(|routes| {
                routes.get(route).and_then(|list| list.iter().find(|s| s.method == method).cloned())
            });
        let series = known.unwrap_or_else(|| {
            let series = Arc::new(RouteSeries {
                method,
                route: route.to_owned(),
                duration: self.record(|| {
                    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.to_owned())
                }),
                by_status: RwLock::default(),
            });
            if let Ok(mut routes) = self.routes.write() {
                let list = routes.entry(route.to_owned()).or_default();
                if !list.iter().any(|s| s.method == method) {
                    list.push(series.clone());
                }
            }
            series
        });
        self.in_flight.increment(1.0);
        HttpRoute { metrics: self, series }
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
        let known = self.caches.read().ok().and_then(|caches| caches.get(cache).cloned());
        let (hits, misses) = known.unwrap_or_else(|| {
            let pair = self.record(|| {
                (
                    metrics::counter!("gatehouse_cache_hits_total", "cache" => cache),
                    metrics::counter!("gatehouse_cache_misses_total", "cache" => cache),
                )
            });
            if let Ok(mut caches) = self.caches.write() {
                caches.entry(cache).or_insert_with(|| pair.clone());
            }
            pair
        });
        if hit { hits.increment(1) } else { misses.increment(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(metrics: &Metrics) -> f64 {
        let text = metrics.render();
        let line = text.lines().find(|l| l.starts_with("http_requests_in_flight ")).expect("gauge rendered");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn requests_leave_the_in_flight_gauge_when_finished_or_dropped() {
        let metrics = Metrics::new();
        let finished = metrics.http_route(Some("/a"), &Method::GET);
        let abandoned = metrics.http_route(Some("/a"), &Method::GET);
        assert_eq!(in_flight(&metrics), 2.0);
        finished.finished(200, 0.001);
        assert_eq!(in_flight(&metrics), 1.0);
        drop(abandoned); // the client went away: the request future was dropped before an answer
        assert_eq!(in_flight(&metrics), 0.0);
        let text = metrics.render();
        assert!(text.contains(r#"http_requests_total{method="GET",route="/a",status="200"} 1"#), "{text}");
        // Custom methods share one label; unmatched requests share one route.
        metrics.http_route(None, &Method::from_bytes(b"BREW").unwrap()).finished(405, 0.001);
        assert!(metrics.render().contains(r#"http_requests_total{method="OTHER",route="unmatched",status="405"} 1"#));
    }
}
