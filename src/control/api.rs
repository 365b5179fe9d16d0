//! `GET /admin/api/v1/control/log`: the control log for operators (tenant-scoped actors are refused: the log
//! spans every tenant).

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::AppState;
use crate::control::log::{self, EntryView};
use crate::error::Result;
use crate::http::openapi::ApiErrors;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(control_log))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    /// Entries after this index (0, the default, from the oldest kept).
    after: Option<u64>,
    /// 1-200, default 50.
    limit: Option<u32>,
}

/// A page of the control log.
#[derive(Serialize, ToSchema)]
struct LogPage {
    items: Vec<EntryView>,
    /// The index of the last applied entry.
    last_applied: u64,
    /// Pass as `after` for the next page; absent when this page reached `last_applied`.
    next_after: Option<u64>,
}

/// The applied control-plane mutations, oldest first (operators only; secrets redacted).
#[utoipa::path(
    get,
    path = "/admin/api/v1/control/log",
    tag = "control",
    operation_id = "control_log",
    params(LogQuery),
    responses((status = 200, description = "A page of log entries", body = LogPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn control_log(State(app): State<AppState>, actor: Actor, Query(q): Query<LogQuery>) -> Result<Json<LogPage>> {
    actor.require_operator()?;
    let limit = crate::http::extract::page_limit(q.limit)?;
    let after = q.after.unwrap_or(0);
    let (entries, last_applied) =
        app.control.read(move |conn| Ok((log::entries(conn, after, limit)?, super::last_applied(conn)?))).await?;
    let next_after = entries.last().map(|e| e.index).filter(|last| *last < last_applied);
    Ok(Json(LogPage { items: entries.into_iter().map(EntryView::from).collect(), last_applied, next_after }))
}
