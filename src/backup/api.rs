//! The backup admin API: `POST /admin/api/v1/tenants/{slug}/restore` (start a live restore of one tenant) and
//! `GET …/restore` (its progress or how it ended); `GET /admin/api/v1/backups` (where every replicated database
//! stands) and `POST /admin/api/v1/backups/snapshot` (force a snapshot of one).
//!
//! Who may call: operators only. A tenant-scoped admin is refused (403): a restore reads the bucket, can name
//! the replica of an earlier tenant of the same slug, and throws away everything after the point restored; the
//! status lists every tenant.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::AppState;
use crate::backup::live::{self, RestoreView};
use crate::backup::restore::Target;
use crate::backup::status::{BackupStatus, DbStatus};
use crate::backup::tracker::DbKey;
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

/// How long the POST waits for the restore to end before it answers 202 (the restore goes on; poll the GET).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start, progress)).routes(routes!(status)).routes(routes!(snapshot))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// Databases after this one (`control`, `tenants/{slug}`), by name.
    after: Option<String>,
    /// 1-200, default 50.
    limit: Option<u32>,
}

/// Where every replicated database stands: TXIDs captured and uploaded, lag, last snapshot, the restore window,
/// size (operators only; a page at a time).
#[utoipa::path(
    get,
    path = "/admin/api/v1/backups",
    tag = "backups",
    operation_id = "backups_status",
    params(StatusQuery),
    responses((status = 200, description = "The backup status", body = BackupStatus), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn status(State(app): State<AppState>, actor: Actor, Query(q): Query<StatusQuery>) -> Result<Json<BackupStatus>> {
    actor.require_operator()?;
    let limit = crate::http::extract::page_limit(q.limit)? as usize;
    let backup = app.backup.clone().ok_or(Error::BackupsOff)?;
    let status = tokio::task::spawn_blocking(move || backup.status(q.after.as_deref(), limit)).await??;
    Ok(Json(status))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    /// `control` or `tenants/{slug}`.
    db: String,
}

/// Captures a full snapshot of one database now (operators only): a restore point that needs no earlier file.
#[utoipa::path(
    post,
    path = "/admin/api/v1/backups/snapshot",
    tag = "backups",
    operation_id = "backups_snapshot",
    request_body = SnapshotBody,
    responses((status = 200, description = "Captured; uploaded within an interval", body = DbStatus), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn snapshot(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(body): ApiJson<SnapshotBody>,
) -> Result<Json<DbStatus>> {
    actor.require_operator()?;
    let key = DbKey::parse(body.db.trim()).ok_or_else(|| Error::validation("db must be control or tenants/{slug}"))?;
    let backup = app.backup.clone().ok_or(Error::BackupsOff)?;
    if let DbKey::Tenant(slug) = &key {
        app.control.tenant(slug).await?.ok_or(Error::TenantNotFound)?;
    }
    Ok(Json(backup.snapshot_now(&app.control, &key).await?))
}

/// Where to restore to: at most one of `timestamp` and `txid` (neither: the latest state in the bucket).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The state committed at or before this time (RFC 3339), by the commit times in the replica's LTX headers.
    pub timestamp: Option<String>,
    /// The state right after this TXID.
    pub txid: Option<u64>,
    /// Restore from this incarnation's replica (`tenants/{slug}/{incarnation}`) instead of the tenant's own, such
    /// as the root the tenant had before an earlier restore.
    pub incarnation: Option<String>,
}

impl RestoreBody {
    pub fn target(&self) -> Result<Target> {
        match (&self.timestamp, self.txid) {
            (Some(_), Some(_)) => Err(Error::validation("give timestamp or txid, not both")),
            (Some(text), None) => {
                let at = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
                    .map_err(|_| Error::validation(format!("timestamp {text:?} is not an RFC 3339 time")))?;
                Ok(Target::Time((at.unix_timestamp_nanos() / 1_000_000) as i64))
            }
            (None, Some(0)) => Err(Error::validation("txid starts at 1")),
            (None, Some(txid)) => Ok(Target::Txid(txid)),
            (None, None) => Ok(Target::Latest),
        }
    }
}

/// Restores a tenant on this running server from its backups (operator only). The tenant answers
/// `tenant_suspended` meanwhile; its current file goes to `data/archive/`; afterwards it replicates into a new
/// incarnation root. Answers 200 with the finished restore, or 202 with its progress when it takes longer than
/// 20 s (poll `GET`). 409 `tenant_busy`: its connections stayed in use; nothing changed.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/restore",
    tag = "backups",
    operation_id = "tenants_restore",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = RestoreBody,
    responses(
        (status = 200, description = "Restored", body = RestoreView),
        (status = 202, description = "Still restoring; poll the Location", body = RestoreView),
        ApiErrors
    ),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn start(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<Response> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    let target = body.target()?;
    let (view, done) = live::start(&app, slug.clone(), target, body.incarnation).await?;
    let within = ANSWER_WITHIN.min(app.config.request_timeout.saturating_sub(std::time::Duration::from_secs(1)));
    match tokio::time::timeout(within, done).await {
        Ok(Ok(Ok(finished))) => Ok(Json(finished).into_response()),
        Ok(Ok(Err(err))) => Err(err),
        Ok(Err(_)) => Err(Error::internal("the restore task ended without an answer")),
        Err(_) => {
            let view = app.backup.as_ref().and_then(|b| b.restores.get(&slug)).unwrap_or(view);
            let location = format!("/admin/api/v1/tenants/{slug}/restore");
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(view)).into_response())
        }
    }
}

/// The tenant's restore running now, or the last one since the server started (operator only).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/restore",
    tag = "backups",
    operation_id = "tenants_restore_progress",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The restore", body = RestoreView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn progress(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<RestoreView>> {
    actor.require_operator()?;
    let slug = TenantSlug::parse(&slug)?;
    let backup = app.backup.as_ref().ok_or(Error::BackupsOff)?;
    backup.restores.get(&slug).map(Json).ok_or(Error::NotFound("restore"))
}
