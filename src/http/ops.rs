//! Operations endpoints: `/healthz` (the process serves), `/readyz` (control.db answers and the data dir is
//! writable), `/metrics` (Prometheus text; behind a bearer token when `GATEHOUSE_METRICS_TOKEN` is set).
//!
//! Who may call: anyone may call `/healthz` and `/readyz` (they tell nothing but up or not); `/metrics` is open
//! too unless `GATEHOUSE_METRICS_TOKEN` is set, and then needs that token (the scrape job's, not an admin token).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::control::tables;
use crate::crypto;
use crate::error::{Error, Result};
use crate::http::openapi::ApiErrors;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// The process serves.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "ops_healthz",
    responses((status = 200, description = "Alive", body = Health), ApiErrors),
    security(())
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The server can take traffic.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// Always `ready` (a failed check answers 503 `not_ready`).
    status: &'static str,
    checks: ReadinessChecks,
}

/// Each readiness check, `ok` when it passed.
#[derive(Serialize, ToSchema)]
struct ReadinessChecks {
    /// control.db answers a query.
    control_db: &'static str,
    /// The data directory is writable.
    data_dir: &'static str,
    /// The control plane's Raft knows a leader: `leader {node id}`.
    control_plane: String,
    /// Continuous backups: `off`, `ok`, or `degraded: …` (the bucket does not answer, uploads stalled). A
    /// degraded backup does not make the node unready: writes go on and are spooled.
    backup: String,
}

/// Readiness: control.db answers and the data directory is writable; 503 `not_ready` otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    operation_id = "ops_readyz",
    responses((status = 200, description = "Ready", body = Readiness), ApiErrors),
    security(())
)]
async fn readyz(State(app): State<AppState>) -> Result<Json<Readiness>> {
    app.control.ping().await.map_err(|e| Error::NotReady(format!("control.db does not answer: {e}")))?;
    let probe = app.config.data_dir.join(".readyz-probe");
    tokio::task::spawn_blocking(move || {
        std::fs::write(&probe, b"ok")?;
        std::fs::remove_file(&probe)
    })
    .await?
    .map_err(|e| Error::NotReady(format!("data dir is not writable: {e}")))?;
    // Offline, in-process users of the router (no Raft started) apply locally and have nothing to wait for.
    let control_plane = match app.control.raft() {
        Some(raft) => match crate::cluster::node::leader(&raft) {
            Some(leader) => format!("leader {leader}"),
            None => return Err(Error::NotReady("the control plane has no leader".into())),
        },
        None => "local".into(),
    };
    let backup = app.backup.as_ref().map_or(crate::backup::Health::Off, |b| b.health()).to_string();
    let checks = ReadinessChecks { control_db: "ok", data_dir: "ok", control_plane, backup };
    Ok(Json(Readiness { status: "ready", checks }))
}

/// Prometheus metrics (text exposition format 0.0.4).
///
/// When `GATEHOUSE_METRICS_TOKEN` is set, send it as `Authorization: Bearer <token>` (401 otherwise); without it
/// the endpoint is open.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "ops_metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        ApiErrors
    ),
    security(())
)]
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse> {
    if let Some(token) = &app.config.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or("");
        if !crypto::constant_time_eq(sent, token.expose()) {
            return Err(Error::Unauthorized);
        }
    }
    let state = app.clone();
    let (tenants, pools_open, (connections, in_use)) = tokio::task::spawn_blocking(move || -> Result<_> {
        let tenants = state.control.read_blocking(tables::count_tenants)?;
        Ok((tenants, state.tenants.open_pools(), state.tenants.connections()))
    })
    .await??;
    let (sqlite_heap, sqlite_peak) = crate::db::tuning::heap();
    let resident = crate::db::tuning::resident();
    app.metrics.record(|| {
        metrics::gauge!("gatehouse_tenants_total", "status" => "all").set(tenants.0 as f64);
        metrics::gauge!("gatehouse_tenants_total", "status" => "suspended").set(tenants.1 as f64);
        metrics::gauge!("gatehouse_tenant_pools_open").set(pools_open as f64);
        metrics::gauge!("gatehouse_tenant_pool_connections_in_use").set(in_use as f64);
        metrics::gauge!("gatehouse_tenant_pool_connections").set(connections as f64);
        metrics::gauge!("gatehouse_sqlite_heap_bytes").set(sqlite_heap as f64);
        metrics::gauge!("gatehouse_sqlite_heap_peak_bytes").set(sqlite_peak as f64);
        if let Some((total, anon, file)) = resident {
            metrics::gauge!("process_resident_memory_bytes").set(total as f64);
            for (kind, bytes) in [("anon", anon), ("file", file)] {
                metrics::gauge!("gatehouse_resident_memory_bytes", "kind" => kind).set(bytes as f64);
            }
        }
        metrics::gauge!("gatehouse_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        metrics::gauge!("gatehouse_uptime_seconds").set(app.started_at.elapsed().as_secs_f64());
        for kind in crate::email::outbox::Kind::ALL {
            metrics::gauge!("gatehouse_outbox_pending", "kind" => kind.as_str()).set(app.outbox.pending(kind) as f64);
        }
        metrics::gauge!("gatehouse_outbox_tenants_waiting").set(app.outbox.waiting() as f64);
        if let Some(backup) = &app.backup {
            metrics::gauge!("gatehouse_backup_lag_seconds").set(backup.lag().as_secs_f64());
        }
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render()))
}
