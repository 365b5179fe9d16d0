//! Operations endpoints: `/healthz` (the process serves), `/readyz` (control.db answers and the data dir is
//! writable), `/metrics` (Prometheus text; behind a bearer token when `GATEHOUSE_METRICS_TOKEN` is set).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::control::tables;
use crate::crypto;
use crate::error::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): State<AppState>) -> Result<Json<Value>> {
    app.control.ping().await.map_err(|e| Error::NotReady(format!("control.db does not answer: {e}")))?;
    let probe = app.config.data_dir.join(".readyz-probe");
    tokio::task::spawn_blocking(move || {
        std::fs::write(&probe, b"ok")?;
        std::fs::remove_file(&probe)
    })
    .await?
    .map_err(|e| Error::NotReady(format!("data dir is not writable: {e}")))?;
    Ok(Json(json!({ "status": "ready", "checks": { "control_db": "ok", "data_dir": "ok" } })))
}

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
    let (tenants, pools_open, in_use) = tokio::task::spawn_blocking(move || -> Result<_> {
        let tenants = state.control.read_blocking(tables::count_tenants)?;
        Ok((tenants, state.tenants.open_pools(), state.tenants.connections_in_use()))
    })
    .await??;
    app.metrics.record(|| {
        metrics::gauge!("gatehouse_tenants_total", "status" => "all").set(tenants.0 as f64);
        metrics::gauge!("gatehouse_tenants_total", "status" => "suspended").set(tenants.1 as f64);
        metrics::gauge!("gatehouse_tenant_pools_open").set(pools_open as f64);
        metrics::gauge!("gatehouse_tenant_pool_connections_in_use").set(in_use as f64);
        metrics::gauge!("gatehouse_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        metrics::gauge!("gatehouse_uptime_seconds").set(app.started_at.elapsed().as_secs_f64());
        for kind in crate::email::outbox::Kind::ALL {
            metrics::gauge!("gatehouse_outbox_pending", "kind" => kind.as_str()).set(app.outbox.pending(kind) as f64);
        }
        metrics::gauge!("gatehouse_outbox_tenants_waiting").set(app.outbox.waiting() as f64);
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render()))
}
