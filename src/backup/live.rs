//! Restoring one tenant on a running server (`POST /admin/api/v1/tenants/{slug}/restore`, `gatehouse restore
//! tenant`): the tenant is closed (its requests answer `tenant_suspended`), its last commits are sent to the bucket,
//! the file is rebuilt from the replica into `restore/{slug}-{new incarnation}.db` and checked, the server waits
//! (bounded) until no connection of the old pool is in use, and a `RestoreTenant` entry swaps the file in (the
//! old one goes to `archive/`) and gives the tenant the new incarnation, whose root the file replicates into from
//! a fresh snapshot. Then the tenant reopens and its outbox is looked at again (restored pending rows are sent
//! again: delivery is at least once).
//!
//! Invariants: nothing changes before the entry commits (a failure or `tenant_busy` leaves the tenant as it was,
//! and removes the staged file); the entry commits only once the staged file is complete and checked, so a crash
//! after it is finished by the start-up reconcile (`TenantEffects::reconcile`); one restore per tenant at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::backup::Backup;
use crate::backup::restore::{self, Progress, Target};
use crate::backup::tracker::DbKey;
use crate::control::Mutation;
use crate::db::registry::TenantDb;
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;

/// How long a restore waits for the tenant's connections in use to be handed back before it answers
/// `tenant_busy` (requests take milliseconds; a long export or a stuck client does not hold a restore forever).
pub const BUSY_WAIT: Duration = Duration::from_secs(10);
/// How long a restore waits for the tenant's last commits to reach the bucket.
const FLUSH_WAIT: Duration = Duration::from_secs(60);

/// What a restore is doing, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sending the tenant's last commits to the bucket.
    Flushing,
    Downloading,
    /// Applying the downloaded files and checking the result.
    Applying,
    /// Waiting for the tenant's connections in use to be handed back.
    Waiting,
    Swapping,
    Done,
    Failed,
}

/// The error a failed restore ended with (the API's error shape).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// What a finished restore did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Outcome {
    /// The TXID the tenant's file is at.
    pub txid: u64,
    /// When the last restored transaction was committed (RFC 3339).
    pub committed_at: String,
    /// The tenant's new incarnation: its file replicates under `tenants/{slug}/{incarnation}` from now on.
    pub incarnation: String,
    /// The incarnation it had (its replica root stays restorable).
    pub previous_incarnation: Option<String>,
    /// Where the replaced file went, under the data dir.
    pub archived_to: String,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// A tenant's restore, running or finished (the last one per tenant since the server started).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RestoreView {
    pub id: String,
    #[schema(value_type = String)]
    pub tenant: TenantSlug,
    pub phase: Phase,
    /// `latest`, `txid:N` or the RFC 3339 time asked for.
    pub target: String,
    /// The replica root restored from, under the bucket's prefix.
    pub root: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub files_done: usize,
    pub files: usize,
    pub bytes_done: u64,
    pub bytes: u64,
    pub outcome: Option<Outcome>,
    pub error: Option<JobError>,
}

/// Restores per tenant: the one running (at most one) or the last one.
#[derive(Default)]
pub struct Restores {
    jobs: Mutex<HashMap<TenantSlug, Arc<Mutex<RestoreView>>>>,
}

impl Restores {
    pub fn get(&self, slug: &TenantSlug) -> Option<RestoreView> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(slug).map(|job| job.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Records a new restore of `view.tenant`, unless one is running.
    fn begin(&self, view: RestoreView) -> Result<Arc<Mutex<RestoreView>>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get(&view.tenant) {
            let running = job.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(running.phase, Phase::Done | Phase::Failed) {
                return Err(Error::Conflict(format!("a restore of {} is running ({})", view.tenant, running.id)));
            }
        }
        let job = Arc::new(Mutex::new(view.clone()));
        jobs.insert(view.tenant, job.clone());
        Ok(job)
    }
}

fn update(job: &Mutex<RestoreView>, f: impl FnOnce(&mut RestoreView)) {
    f(&mut job.lock().unwrap_or_else(|e| e.into_inner()));
}

/// `latest`, `txid:N` or the time, for the view and the log.
fn target_text(target: Target) -> String {
    match target {
        Target::Latest => "latest".into(),
        Target::Txid(txid) => format!("txid:{txid}"),
        Target::Time(ms) => restore::time_text(ms),
    }
}

/// Starts restoring `slug` to `target` from the replica of `incarnation` (default: the tenant's own). Checks
/// what can be checked at once (backups on, the tenant homed here, no restore of it running) and answers the
/// job and a receiver of its end; the restore runs on its own task, so a client that goes away stops nothing.
pub async fn start(
    app: &AppState,
    slug: TenantSlug,
    target: Target,
    incarnation: Option<String>,
) -> Result<(RestoreView, tokio::sync::oneshot::Receiver<Result<RestoreView>>)> {
    let backup = app.backup.clone().ok_or(Error::BackupsOff)?;
    let tenant = app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    if let Some(home) = tenant.home_node
        && home != app.node_id
    {
        return Err(Error::Conflict(format!("tenant {slug} lives on node {home}; restore it there")));
    }
    let source = match incarnation {
        Some(text) => uuid::Uuid::parse_str(text.trim())
            .map(|id| id.hyphenated().to_string())
            .map_err(|_| Error::validation("incarnation must be a UUID (a replica root under tenants/{slug}/)"))?,
        None => match tenant.incarnation.as_deref().and_then(|i| uuid::Uuid::parse_str(i).ok()) {
            Some(id) => id.hyphenated().to_string(),
            None => "legacy".to_owned(),
        },
    };
    let own_root = tenant
        .incarnation
        .as_deref()
        .and_then(|i| uuid::Uuid::parse_str(i).ok())
        .map_or_else(|| "legacy".to_owned(), |id| id.hyphenated().to_string())
        == source;
    let now = crate::now_unix();
    let view = RestoreView {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: slug.clone(),
        phase: Phase::Flushing,
        target: target_text(target),
        root: format!("tenants/{slug}/{source}"),
        started_at: now,
        finished_at: None,
        files_done: 0,
        files: 0,
        bytes_done: 0,
        bytes: 0,
        outcome: None,
        error: None,
    };
    let job = backup.restores.begin(view.clone())?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let app = app.clone();
    let previous = tenant.incarnation.clone();
    let answer_job = job.clone();
    tokio::spawn(async move {
        let run = Run { app: app.clone(), backup, slug: slug.clone(), job: job.clone(), hold: Mutex::default() };
        let result = run.restore(target, &view.root, own_root, previous).await;
        let finished = crate::now_unix();
        let metrics = &app.metrics;
        let outcome = if result.is_ok() { "done" } else { "failed" };
        metrics.record(|| metrics::counter!("gatehouse_backup_restores_total", "outcome" => outcome).increment(1));
        let answer = match result {
            Ok(done) => {
                update(&job, |v| {
                    v.phase = Phase::Done;
                    v.finished_at = Some(finished);
                    v.outcome = Some(done);
                });
                Ok(job.lock().unwrap_or_else(|e| e.into_inner()).clone())
            }
            Err(err) => {
                tracing::warn!(tenant = %slug, error = %err, "live restore failed; the tenant keeps its file");
                let (_, code) = err.status_and_code();
                update(&job, |v| {
                    v.phase = Phase::Failed;
                    v.finished_at = Some(finished);
                    v.error = Some(JobError { code: code.to_owned(), message: err.public_message() });
                });
                Err(err)
            }
        };
        let _ = tx.send(answer);
    });
    Ok((answer_job.lock().unwrap_or_else(|e| e.into_inner()).clone(), rx))
}

struct Run {
    app: AppState,
    backup: Arc<Backup>,
    slug: TenantSlug,
    job: Arc<Mutex<RestoreView>>,
    /// Keeps captures off the tenant from just before its entry until the outcome is settled.
    hold: Mutex<Option<crate::backup::Moving>>,
}

impl Run {
    async fn restore(&self, target: Target, root: &str, own_root: bool, previous: Option<String>) -> Result<Outcome> {
        let (app, slug) = (&self.app, &self.slug);
        let held = app
            .tenants
            .close(slug)
            .ok_or_else(|| Error::Conflict(format!("tenant {slug} is being swapped by another restore")))?;
        app.outbox.forget(slug);
        tracing::info!(tenant = %slug, root, target = %target_text(target), "live restore: tenant closed");
        let incarnation = uuid::Uuid::now_v7().hyphenated().to_string();
        let staged = app.tenants.staged_path(slug, &incarnation).ok_or_else(|| Error::internal("bad incarnation"))?;
        // A panic is an error like any other here: the tenant must not stay closed because of it.
        let swapped =
            std::panic::AssertUnwindSafe(self.swap(target, root, own_root, previous, &incarnation, &staged, held));
        let result = match futures_util::FutureExt::catch_unwind(swapped).await {
            Ok(result) => result,
            Err(_) => Err(Error::internal("the restore task panicked")),
        };
        // The hold `swap` took before proposing the entry: released once the outcome is settled below.
        let hold = self.hold.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Err(err) = &result {
            match app.control.tenant(slug).await {
                Ok(tenant) if tenant.as_ref().and_then(|t| t.incarnation.as_deref()) == Some(incarnation.as_str()) => {
                    // The entry is applied but its swap failed: try it once more (it is idempotent). Until the file
                    // in place is the restored one the tenant stays closed, so nothing writes to the old file or
                    // replicates it under the new incarnation; the next start finishes the swap.
                    let (registry, s, inc) = (app.tenants.clone(), slug.clone(), incarnation.clone());
                    let in_place = tokio::task::spawn_blocking(move || {
                        let archive = crate::tenants::effects::archive_name(&s, crate::now_unix());
                        registry.swap_in(&s, &inc, &archive)?;
                        registry.incarnation(&s)
                    })
                    .await
                    .map_err(Error::from)
                    .and_then(|r| r);
                    if !matches!(&in_place, Ok(Some(stamp)) if *stamp == incarnation) {
                        // The old file is still at the path under the new incarnation: captures stay off it until
                        // the restart finishes the swap.
                        std::mem::forget(hold);
                        tracing::error!(tenant = %slug, error = %err, "live restore: recorded but the file swap failed; restart the server to finish it");
                        return Err(Error::internal(format!(
                            "the restore of {slug} is recorded but its file could not be swapped in ({err}); the \
                             tenant stays unavailable until the server restarts, which finishes it"
                        )));
                    }
                }
                Ok(_) => {
                    let staged = staged.clone();
                    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(staged)).await;
                }
                Err(read) => {
                    // Whether the entry committed is unknown: keep the tenant closed, captures off it and the staged
                    // file, which the next start swaps in or removes as the control plane says.
                    std::mem::forget(hold);
                    tracing::error!(tenant = %slug, error = %err, %read, "live restore failed and its outcome cannot be read; restart the server to settle it");
                    return Err(Error::internal(format!(
                        "the restore of {slug} failed ({err}) and whether it was recorded cannot be read ({read}); \
                         the tenant stays unavailable until the server restarts"
                    )));
                }
            }
        }
        drop(hold);
        app.tenants.reopen(slug);
        // Mail and events the restored file holds as pending (or the old one did) are looked at now.
        app.outbox.schedule(slug, crate::email::outbox::now_ms());
        app.store.expiries.schedule(slug, crate::email::outbox::now_ms());
        // Search answers are keyed by catalog version, which a restore sets back: none may outlive it.
        app.store.search_cache.invalidate_all();
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn swap(
        &self,
        target: Target,
        root: &str,
        own_root: bool,
        previous: Option<String>,
        incarnation: &str,
        staged: &std::path::Path,
        held: Option<TenantDb>,
    ) -> Result<Outcome> {
        let (app, backup, slug) = (&self.app, &self.backup, &self.slug);
        let remote =
            backup.remote.get().ok_or_else(|| Error::NotReady("the backup bucket client is starting".into()))?;
        if own_root {
            // Every commit so far is in the bucket before the plan is made, so "latest" means now.
            backup.flush(&app.control, &DbKey::Tenant(slug.clone()), FLUSH_WAIT).await?;
        }
        update(&self.job, |v| v.phase = Phase::Downloading);
        let job = self.job.clone();
        let progress = move |p: Progress| {
            update(&job, |v| {
                v.files_done = p.files_done;
                v.files = p.files;
                v.bytes_done = p.bytes_done;
                v.bytes = p.bytes;
                if p.applying {
                    v.phase = Phase::Applying;
                }
            });
        };
        if let Some(dir) = staged.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("cannot make {}: {e}", dir.display())))?;
        }
        let done = restore::restore(remote, root, target, staged, &progress).await?;
        stamp(staged, slug, incarnation).await?;
        update(&self.job, |v| v.phase = Phase::Waiting);
        if let Some(db) = held {
            wait_idle(&db, BUSY_WAIT).await?;
        }
        update(&self.job, |v| v.phase = Phase::Swapping);
        // From before the entry until the restored file is in place, no capture starts the new root from the old
        // file (after the flush above, which needs captures).
        *self.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(backup.hold(&DbKey::Tenant(slug.clone())));
        let at = crate::now_unix();
        let archive = crate::tenants::effects::archive_name(slug, at);
        app.control
            .apply(Mutation::RestoreTenant {
                slug: slug.clone(),
                incarnation: incarnation.to_owned(),
                previous: previous.clone(),
                archive: archive.clone(),
                at,
            })
            .await?;
        tracing::info!(tenant = %slug, root, txid = done.txid, incarnation, archived = %archive, "live restore: done");
        Ok(Outcome {
            txid: done.txid,
            committed_at: restore::time_text(done.timestamp_ms),
            incarnation: incarnation.to_owned(),
            previous_incarnation: previous,
            archived_to: archive,
            files: done.files,
            bytes: done.bytes,
            seconds: done.seconds,
        })
    }
}

/// Stamps the staged file with its tenant's slug and new incarnation; the file must belong to `slug`.
pub(crate) async fn stamp(staged: &std::path::Path, slug: &TenantSlug, incarnation: &str) -> Result<()> {
    let (path, slug, incarnation) = (staged.to_path_buf(), slug.clone(), incarnation.to_owned());
    tokio::task::spawn_blocking(move || -> Result<()> {
        // A plain connection: the staged file is not replicated, and closing it folds its WAL in.
        let conn = rusqlite::Connection::open(&path)?;
        let owner: Option<String> = conn
            .query_row("SELECT value FROM tenant_meta WHERE key = 'slug'", [], |r| r.get(0))
            .map(Some)
            .or_else(crate::control::none_if_no_rows)
            .map_err(|e| Error::Unprocessable(format!("the restored file is not a tenant database: {e}")))?;
        if owner.as_deref().is_some_and(|owner| owner != slug.as_str()) {
            return Err(Error::Unprocessable(format!(
                "the replica holds tenant {} (not {slug}); nothing changed",
                owner.unwrap_or_default()
            )));
        }
        conn.execute("INSERT OR REPLACE INTO tenant_meta (key, value) VALUES ('incarnation', ?1)", [&incarnation])?;
        conn.close().map_err(|(_, e)| Error::from(e))?;
        Ok(())
    })
    .await?
}

/// Waits until no connection of `db`'s pool is checked out, for at most `within`; else `tenant_busy`.
pub async fn wait_idle(db: &TenantDb, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let state = db.pool.state();
        let in_use = state.connections - state.idle_connections;
        if in_use == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::TenantBusy(format!(
                "{in_use} connection(s) of tenant {} are still in use after {} s; nothing changed, try again",
                db.slug,
                within.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::registry::{PoolLimits, TenantRegistry};

    fn one_tenant() -> (tempfile::TempDir, TenantRegistry, TenantSlug) {
        let dir = tempfile::tempdir().unwrap();
        let registry = TenantRegistry::new(
            dir.path(),
            PoolLimits { count: 10, memory: 16 << 20, idle: Duration::from_secs(60) },
            Arc::default(),
            Arc::default(),
        )
        .unwrap();
        let slug = TenantSlug::parse("acme").unwrap();
        registry.create_file(&slug, None).unwrap();
        (dir, registry, slug)
    }

    #[tokio::test]
    async fn a_connection_in_use_makes_the_restore_wait_then_answer_busy() {
        let (_dir, registry, slug) = one_tenant();
        let db = registry.get(&slug).unwrap();
        let conn = db.pool.get().unwrap();
        let err = wait_idle(&db, Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(err.status_and_code().1, "tenant_busy", "{err}");
        drop(conn);
        wait_idle(&db, Duration::from_millis(100)).await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_tenant_answers_suspended_until_reopened() {
        let (_dir, registry, slug) = one_tenant();
        registry.get(&slug).unwrap();
        let held = registry.close(&slug).expect("not closed yet");
        let held = held.expect("the open pool is handed over");
        let refused = held.locked(|conn| Ok(conn.execute("DELETE FROM tenant_meta", [])?)).await.unwrap_err();
        assert!(matches!(refused, Error::TenantSuspended), "a retired handle writes nothing: {refused}");
        assert!(registry.close(&slug).is_none(), "one swap at a time");
        assert!(matches!(registry.get(&slug), Err(Error::TenantSuspended)));
        assert!(registry.cached(&slug).is_none());
        registry.reopen(&slug);
        let db = registry.get(&slug).unwrap();
        assert!(db.locked(|conn| Ok(conn.execute("UPDATE tenant_meta SET value = value", [])?)).await.unwrap() > 0);
    }
}
