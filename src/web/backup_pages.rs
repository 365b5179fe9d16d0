//! The Backups page (`/admin/backups`): the backup's health, a lag sparkline over the last hour (server-side SVG
//! from the sampler's ring), the last self-check, and every replicated database with its lag, last sync, last
//! snapshot, restore window and size (`Backup::status`, a page at a time). Per tenant, `/admin/backups/restore/
//! {slug}` restores it on this running server to a point in time (`backup::live`, as the admin API does) after a
//! typed confirmation (the tenant's slug), and shows the restore's progress and result. Who may: operators only.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::plot::{Kind, Plot, Series, Style, clock_label};
use super::ui::FieldErrors;
use super::{Chrome, CsrfForm, UiSession};
use crate::app::AppState;
use crate::backup::api::RestoreBody;
use crate::backup::live::{Phase, RestoreView};
use crate::backup::restore::time_text;
use crate::backup::status::age_text;
use crate::error::Error;
use crate::http::page::{PageResult, render};

/// Databases per page.
const PAGE: usize = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/backups", get(backups_page))
        .route("/admin/backups/restore/{slug}", get(restore_page).post(restore_start))
}

struct Row {
    db: String,
    /// The row's id: the name with `-` for `/`.
    anchor: String,
    /// The tenant's slug (a restore link), `None` for control.db.
    slug: Option<String>,
    root: String,
    lag: String,
    behind: bool,
    last_sync: String,
    last_snapshot: String,
    window: String,
    size: String,
}

#[derive(Template)]
#[template(path = "admin/backups.html")]
struct BackupsPage {
    chrome: Chrome,
    off: bool,
    health: String,
    healthy: bool,
    url: String,
    lag: String,
    gaps: u64,
    self_check: String,
    plot: String,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn stamp(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_owned(), time_text)
}

async fn backups_page(State(app): State<AppState>, session: UiSession, Query(q): Query<PageQuery>) -> PageResult {
    session.actor.require_operator()?;
    let chrome = session.chrome("backups");
    let Some(backup) = app.backup.clone() else {
        let page = BackupsPage {
            chrome,
            off: true,
            health: "off".into(),
            healthy: false,
            url: String::new(),
            lag: String::new(),
            gaps: 0,
            self_check: String::new(),
            plot: String::new(),
            rows: Vec::new(),
            next: None,
        };
        return Ok(render(page)?.into_response());
    };
    let (status, samples, check) = {
        let backup = backup.clone();
        tokio::task::spawn_blocking(move || {
            backup.status(q.after.as_deref(), PAGE).map(|s| (s, backup.lag_samples(), backup.last_self_check()))
        })
        .await
        .map_err(Error::from)??
    };
    let plot = Plot {
        id: "backup-lag".into(),
        title: "Backup lag".into(),
        unit: "seconds".into(),
        span: "last hour".into(),
        x_labels: samples.iter().map(|(at, _)| clock_label(*at, true)).collect(),
        series: vec![Series {
            label: "lag".into(),
            points: samples.iter().map(|(_, lag)| Some(f64::from(*lag))).collect(),
            style: Style::Accent,
        }],
        kind: Kind::Line,
    };
    let self_check = match check {
        None => "none yet (it runs every GATEHOUSE_BACKUP_VERIFY_INTERVAL)".to_owned(),
        Some((at, checked, problems)) if problems.is_empty() => {
            format!("{}: {checked} replicas verified, no problem", time_text(at * 1000))
        }
        Some((at, checked, problems)) => {
            format!("{}: {checked} replicas verified; {}", time_text(at * 1000), problems.join("; "))
        }
    };
    let rows = status
        .databases
        .iter()
        .map(|d| Row {
            slug: d.db.strip_prefix("tenants/").map(str::to_owned),
            anchor: d.db.replace('/', "-"),
            db: d.db.clone(),
            root: d.root.clone(),
            lag: age_text(d.lag_seconds),
            behind: d.lag_seconds > 0.0,
            last_sync: stamp(d.window_to_ms),
            last_snapshot: if d.last_snapshot_at > 0 { time_text(d.last_snapshot_at * 1000) } else { "—".into() },
            window: match (d.window_from_ms, d.window_to_ms) {
                (Some(from), Some(to)) => format!("{} to {}", time_text(from), time_text(to)),
                _ => "—".into(),
            },
            size: megabytes(d.bytes),
        })
        .collect();
    let page = BackupsPage {
        chrome,
        off: false,
        healthy: status.health == "ok",
        health: status.health,
        url: status.url,
        lag: age_text(status.lag_seconds),
        gaps: status.gaps,
        self_check,
        plot: plot.html(),
        rows,
        next: status.next_after,
    };
    Ok(render(page)?.into_response())
}

/// The restore form: what was typed.
#[derive(Deserialize, Default, Clone)]
struct RestoreForm {
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "admin/backup_restore.html")]
struct RestorePage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    window: String,
    f: RestoreForm,
    errors: FieldErrors,
    job: Option<RestoreView>,
    running: bool,
    percent: u64,
}

impl RestorePage {
    fn phase(&self) -> &'static str {
        match self.job.as_ref().map(|j| j.phase) {
            Some(Phase::Flushing) => "sending the last commits to the bucket",
            Some(Phase::Downloading) => "downloading",
            Some(Phase::Applying) => "applying and checking",
            Some(Phase::Waiting) => "waiting for requests in flight",
            Some(Phase::Swapping) => "swapping the file in",
            Some(Phase::Done) => "done",
            Some(Phase::Failed) => "failed",
            None => "",
        }
    }
}

async fn render_restore(
    app: &AppState,
    session: &UiSession,
    slug: &str,
    typed: Option<(RestoreForm, FieldErrors)>,
) -> PageResult {
    session.actor.require_operator()?;
    let tenant = session.tenant(app, slug).await?;
    let backup = app.backup.clone().ok_or(Error::BackupsOff)?;
    let key = crate::backup::tracker::DbKey::Tenant(tenant.slug.clone());
    let window = {
        let backup = backup.clone();
        let status = tokio::task::spawn_blocking(move || backup.status_of(&key)).await.map_err(Error::from)??;
        match status {
            Some(d) => match (d.window_from_ms, d.window_to_ms) {
                (Some(from), Some(to)) => format!("{} to {}", time_text(from), time_text(to)),
                _ => "nothing uploaded yet".into(),
            },
            None => "not replicated yet".into(),
        }
    };
    let job = backup.restores.get(&tenant.slug);
    let running = job.as_ref().is_some_and(|j| !matches!(j.phase, Phase::Done | Phase::Failed));
    let percent = job.as_ref().and_then(|j| (j.bytes_done * 100).checked_div(j.bytes)).unwrap_or(0);
    let code = if typed.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let (f, errors) = typed.unwrap_or_default();
    let page = RestorePage {
        chrome: session.chrome("backups"),
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        window,
        f,
        errors,
        job,
        running,
        percent,
    };
    Ok((code, render(page)?).into_response())
}

async fn restore_page(State(app): State<AppState>, session: UiSession, Path(slug): Path<String>) -> PageResult {
    render_restore(&app, &session, &slug, None).await
}

async fn restore_start(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<RestoreForm>,
) -> PageResult {
    session.actor.require_operator()?;
    let tenant = session.tenant(&app, &slug).await?;
    let mut errors = FieldErrors::new();
    if form.confirm.trim() != tenant.slug.as_str() {
        errors.add("confirm", format!("type the tenant's slug, {}, to confirm", tenant.slug));
    }
    let body = RestoreBody {
        timestamp: Some(form.timestamp.trim().to_owned()).filter(|t| !t.is_empty()),
        txid: None,
        incarnation: None,
    };
    let target = match body.target() {
        Ok(target) => Some(target),
        Err(err) => {
            errors.add("timestamp", format!("{err} (like 2026-11-29T21:00:00Z; empty for the latest state)"));
            None
        }
    };
    if let (true, Some(target)) = (errors.is_empty(), target) {
        match crate::backup::live::start(&app, tenant.slug.clone(), target, None).await {
            Ok(_) => return Ok(Redirect::to(&format!("/admin/backups/restore/{slug}")).into_response()),
            Err(err) => errors.add("form", err.public_message()),
        }
    }
    let response: Response = render_restore(&app, &session, &slug, Some((form, errors))).await?;
    Ok(response)
}
