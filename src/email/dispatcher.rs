//! The outbox dispatcher: one tokio task that works off due outbox rows, at most `GATEHOUSE_OUTBOX_TENANTS`
//! tenants at once and `GATEHOUSE_OUTBOX_PER_TENANT` messages per tenant at once.
//!
//! It only ever looks at tenants in `Wakeups` (filled by committed enqueues, by its own retry schedule and by
//! the start-up scan), so idle tenants cost nothing: their files are not opened. At shutdown it stops claiming
//! rows and waits for the attempts in flight to finish.
//!
//! The work is stepped: `run_pending` is one pass (every tenant due now, each drained until it has no due row,
//! the pass over when none is due and none is in progress) and returns how many rows it handled. The loop in
//! `run` is that same pass between sleeps; tests call `run_pending` instead of sleeping. Called beside the
//! running loop (as in tests), a pass skips the tenants the loop has in hand, and a tenant woken again meanwhile
//! may be drained by both at once: claiming a row is one `UPDATE … RETURNING`, so no row is sent twice.

use crate::plugins::runtime::Message;
use crate::plugins::runtime::v1::email::gatehouse::plugin::email_types::Field;
use crate::plugins::{Mail, World};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lettre::AsyncTransport;
use lettre::message::{Mailbox, MultiPart};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::control::tables;
use crate::db;
use crate::email::EmailKind;
use crate::email::outbox::{self, Claimed, Kind, Response};
use crate::email::smtp::Route;
use crate::email::templates::{self, Brand};
use crate::error::{Error, Result};
use crate::tenants::{TenantSlug, TenantStatus};

/// Longest the dispatcher sleeps without being woken.
const IDLE_TICK: Duration = Duration::from_secs(60);
/// How long a suspended tenant's outbox waits before it is looked at again.
const SUSPENDED_RECHECK_MS: i64 = 60_000;
/// How long a tenant whose outbox could not be read waits.
const ERROR_RECHECK_MS: i64 = 30_000;

/// Runs until `stop` turns true, then finishes the attempts in flight.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    if let Err(err) = recover_all(&app).await {
        tracing::error!(error = %err, "outbox start-up scan failed; queued mail is sent when its tenant is next written to");
    }
    loop {
        if *stop.borrow() {
            break;
        }
        // A failed tenant was logged and rescheduled by `work_tenant`; the loop goes on.
        let done = pass(&app, stop.clone()).await;
        if *stop.borrow() {
            break;
        }
        let sleep = done.next.map_or(IDLE_TICK, |at| until(at, outbox::now_ms()));
        tokio::select! {
            () = app.outbox.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            changed = stop.changed() => {
                // The sender gone without a stop (the server ended on an error): nothing will wake this loop
                // on purpose again, and `changed` would answer at once forever.
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}

/// One pass of the dispatcher, awaited: every tenant with outbox rows due now is drained (mail and webhook
/// deliveries, within the same limits as the loop), and the pass ends when no tenant is due and none is in
/// progress. Rows due later (a retry's backoff) are left for later: this never waits for a timer alone.
/// Returns how many rows it attempted; `Err` is the first tenant whose pass failed (every other tenant was still
/// worked off, and the failed one is looked at again in `ERROR_RECHECK_MS`, as in the loop).
pub async fn run_pending(app: &AppState) -> Result<usize> {
    // Kept open for the whole pass, so `stop` never turns true: nothing stops this pass early.
    let (_never_stopped, stop) = watch::channel(false);
    let done = pass(app, stop).await;
    match done.failed {
        Some(err) => Err(err),
        None => Ok(done.handled),
    }
}

/// What one pass did.
struct Pass {
    /// Rows claimed for an attempt (sent, failed or dead).
    handled: usize,
    /// When the next tenant in `Wakeups` is due (unix ms), as the pass left it.
    next: Option<i64>,
    /// The first tenant pass that failed.
    failed: Option<Error>,
}

/// The one code path of `run` and `run_pending`. Takes due tenants into free slots (never one already in
/// progress) until none is due and none is running; while tenants run it also wakes for new work (an enqueue,
/// a retry coming due), so a slow tenant does not hold up the others. Once `stop` is true it takes no new tenant
/// and waits for the ones in progress (their workers stop claiming).
async fn pass(app: &AppState, mut stop: watch::Receiver<bool>) -> Pass {
    let handled = Arc::new(AtomicUsize::new(0));
    let mut failed: Option<Error> = None;
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, TenantSlug> = HashMap::new();
    loop {
        let stopping = *stop.borrow();
        let busy: HashSet<TenantSlug> = running.values().cloned().collect();
        let room = if stopping { 0 } else { app.config.outbox.tenants_at_once.saturating_sub(busy.len()) };
        let now = outbox::now_ms();
        let (ready, next) = app.outbox.take_due(now, &busy, room);
        for slug in ready {
            let handle = tasks.spawn(work_tenant(app.clone(), slug.clone(), stop.clone(), handled.clone()));
            running.insert(handle.id(), slug);
        }
        if tasks.is_empty() {
            return Pass { handled: handled.load(Ordering::Relaxed), next, failed };
        }
        // With every slot taken, or once stopping, a due time can start nothing: only a finished tenant can.
        let full = running.len() >= app.config.outbox.tenants_at_once;
        let sleep = if stopping || full { IDLE_TICK } else { next.map_or(IDLE_TICK, |at| until(at, now)) };
        tokio::select! {
            () = app.outbox.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            Some(done) = tasks.join_next_with_id() => {
                let outcome = match done {
                    Ok((id, outcome)) => {
                        running.remove(&id);
                        outcome
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "outbox task failed");
                        // A panicked task did not reschedule its tenant: look at it again like a failed one.
                        if let Some(slug) = running.remove(&err.id()) {
                            app.outbox.schedule(&slug, outbox::now_ms() + ERROR_RECHECK_MS);
                        }
                        Err(Error::from(err))
                    }
                };
                if let Err(err) = outcome
                    && failed.is_none()
                {
                    failed = Some(err);
                }
            }
            // Disabled once the sender is gone (after it sent `true`), so a pass never spins on it.
            Ok(()) = stop.changed() => {
                if *stop.borrow() {
                    tracing::info!(tenants = tasks.len(), "outbox: finishing deliveries in flight");
                }
            }
        }
    }
}

/// How long to sleep until `at` (unix ms), at least 1 ms and at most a minute.
fn until(at: i64, now: i64) -> Duration {
    Duration::from_millis((at - now).clamp(1, 60_000) as u64)
}

/// Start-up scan: every tenant file is opened once with a plain connection (not a pool), rows left `sending` by
/// a crash go back to `pending`, and tenants with pending rows are scheduled; so are stores with unpaid orders
/// (`commerce::expiry`).
async fn recover_all(app: &AppState) -> Result<()> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let started = Instant::now();
        let slugs = app.control.read_blocking(tables::all_tenant_slugs)?;
        let mut with_work = 0usize;
        for slug in &slugs {
            let path = app.tenants.path(slug);
            if !path.exists() {
                continue;
            }
            let found = db::open_connection(&path).and_then(|conn| {
                match crate::commerce::imports::recover(&conn, &app.store.boot) {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(tenant = %slug, imports = n, "catalog imports interrupted by a restart marked failed"),
                    Err(err) => tracing::warn!(tenant = %slug, error = %err, "could not mark interrupted catalog imports"),
                }
                if let Some(at) = crate::commerce::expiry::scan(&conn) {
                    app.store.expiries.schedule(slug, at * 1000);
                }
                outbox::recover(&conn)
            });
            match found {
                Ok((counts, next)) => {
                    for (kind, n) in counts {
                        app.outbox.add_pending(kind, n);
                    }
                    if let Some(at) = next {
                        with_work += 1;
                        app.outbox.schedule(slug, at);
                    }
                }
                Err(err) => tracing::warn!(tenant = %slug, error = %err, "outbox scan could not read the tenant file"),
            }
        }
        tracing::info!(
            tenants = slugs.len(),
            with_work,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "outbox start-up scan done"
        );
        Ok(())
    })
    .await?
}

/// Everything a tenant's workers share.
struct TenantWork {
    app: AppState,
    slug: TenantSlug,
    pool: db::Pool,
    /// The tenant's file: writes take its writer turn (`TenantDb::locked`).
    db: db::registry::TenantDb,
    brand: Brand,
    locale: String,
    /// Where this drain's mail goes, or why the tenant's settings cannot be used (the rows' last error).
    route: std::result::Result<Route, String>,
    /// The pass's count of rows claimed for an attempt.
    handled: Arc<AtomicUsize>,
}

/// Works off one tenant's due rows with up to `per_tenant` workers, then schedules its next due row. A failed
/// tenant pass is logged, looked at again in `ERROR_RECHECK_MS` and returned.
async fn work_tenant(
    app: AppState,
    slug: TenantSlug,
    stop: watch::Receiver<bool>,
    handled: Arc<AtomicUsize>,
) -> Result<()> {
    let (next, outcome) = match drain_tenant(&app, &slug, stop, handled).await {
        Ok(next) => (next, Ok(())),
        Err(err) => {
            tracing::warn!(tenant = %slug, error = %err, "outbox: tenant pass failed");
            (Some(outbox::now_ms() + ERROR_RECHECK_MS), Err(err))
        }
    };
    if let Some(at) = next {
        app.outbox.schedule(&slug, at);
    }
    outcome
}

async fn drain_tenant(
    app: &AppState,
    slug: &TenantSlug,
    stop: watch::Receiver<bool>,
    handled: Arc<AtomicUsize>,
) -> Result<Option<i64>> {
    let Some(tenant) = app.control.tenant(slug).await? else {
        app.outbox.forget(slug);
        return Ok(None);
    };
    if tenant.status == TenantStatus::Suspended {
        return Ok(Some(outbox::now_ms() + SUSPENDED_RECHECK_MS));
    }
    let db = app.tenants.load(slug).await?;
    let key = slug.clone();
    let smtp = app.control.read(move |conn| tables::tenant_smtp(conn, &key)).await?;
    let display_name = tenant.settings.display_name.clone().unwrap_or_else(|| tenant.name.clone());
    // Guarded settings (saved by a tenant admin) connect only to an address that passes the guard now.
    let pinned = match &smtp {
        Some(record) if record.guarded && app.mailer.mode() != crate::config::MailMode::Dev => {
            crate::webhooks::vetted_address(&record.host, record.port).await.map(Some)
        }
        _ => Ok(None),
    };
    let route = pinned.and_then(|ip| app.mailer.route(slug, smtp.as_ref(), &display_name, &app.master_key, ip));
    let route = route.map_err(|err| {
        tracing::warn!(tenant = %slug, error = %err, "outbox: the tenant's SMTP settings are unusable");
        format!("the tenant's SMTP settings are unusable: {err}")
    });
    let work = Arc::new(TenantWork {
        app: app.clone(),
        slug: slug.clone(),
        pool: db.pool.clone(),
        db: db.clone(),
        brand: Brand {
            name: display_name,
            color: tenant.settings.branding.primary_color.clone().unwrap_or_else(|| "#1f6feb".into()),
            logo_url: tenant.settings.branding.logo_url.clone(),
        },
        locale: tenant.settings.locale.clone(),
        route,
        handled,
    });
    let mut workers = JoinSet::new();
    for _ in 0..app.config.outbox.per_tenant {
        workers.spawn(worker(work.clone(), db.clone(), stop.clone()));
    }
    while let Some(done) = workers.join_next().await {
        if let Ok(Err(err)) = done {
            tracing::warn!(tenant = %slug, error = %err, "outbox worker stopped");
        }
    }
    let pool = db.pool.clone();
    db::with_conn(&pool, |conn| outbox::next_due(conn)).await
}

/// Claims and sends rows one at a time until none is due (or shutdown began).
async fn worker(work: Arc<TenantWork>, db: db::registry::TenantDb, stop: watch::Receiver<bool>) -> Result<()> {
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let Some(row) = db.locked(|conn| outbox::claim_next(conn, outbox::now_ms())).await? else {
            return Ok(());
        };
        work.handled.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = match row.kind {
            Kind::Email => send_email(&work, &row).await,
            Kind::Webhook => send_webhook(&work, &row).await,
        };
        let seconds = started.elapsed().as_secs_f64();
        let kind = row.kind.as_str();
        let metrics = &work.app.metrics;
        metrics.record(|| metrics::histogram!("gatehouse_outbox_delivery_seconds", "kind" => kind).record(seconds));
        match outcome {
            Ok(response) => {
                let id = row.id.clone();
                db.locked(move |conn| outbox::mark_sent(conn, &id, &response)).await?;
                work.app.outbox.settled(row.kind);
                metrics.record(|| metrics::counter!("gatehouse_outbox_sent_total", "kind" => kind).increment(1));
                metrics.pulse.outbox_sent();
            }
            Err((error, response)) => {
                let max = work.app.config.outbox.max_attempts;
                let failed = row.clone();
                let err_text = error.clone();
                let dead = db.write(move |tx| outbox::mark_failed(tx, &failed, &err_text, &response, max)).await?;
                metrics.record(|| {
                    metrics::counter!("gatehouse_outbox_failed_attempts_total", "kind" => kind).increment(1);
                    if dead {
                        metrics::counter!("gatehouse_outbox_dead_total", "kind" => kind).increment(1);
                    }
                });
                if dead {
                    work.app.outbox.settled(row.kind);
                    metrics.pulse.outbox_dead();
                    tracing::warn!(tenant = %work.slug, id = %row.id, kind, topic = %row.topic, error = %error, "outbox message is dead after its last attempt");
                } else {
                    tracing::info!(tenant = %work.slug, id = %row.id, kind, attempt = row.attempts + 1, error = %error, "outbox delivery failed; will retry");
                }
            }
        }
    }
}

type Outcome = std::result::Result<Response, (String, Response)>;

fn failed(text: impl Into<String>) -> Outcome {
    Err((text.into(), Response::default()))
}

async fn send_email(work: &TenantWork, row: &Claimed) -> Outcome {
    let email: EmailKind = match serde_json::from_str(&row.payload) {
        Ok(email) => email,
        Err(err) => return failed(format!("unreadable email payload: {err}")),
    };
    let route = match &work.route {
        Ok(route) => route,
        Err(why) => return failed(why.clone()),
    };
    let rendered = match templates::render(&work.app.catalog, &email, &work.brand, &work.locale) {
        Ok(rendered) => rendered,
        Err(err) => return failed(err.to_string()),
    };
    let rendered = match plugin_render(work, &email, rendered).await {
        Ok(rendered) => rendered,
        Err(text) => return failed(text),
    };
    let message_id = message_id(&row.id, work.app.config.public_host());
    let from = match route {
        Route::Smtp { from, .. } | Route::Mailbox { from, .. } => from.clone(),
    };
    match route {
        Route::Mailbox { .. } => {
            let stored =
                (row.id.clone(), message_id, row.topic.clone(), from.to_string(), email.to().to_owned(), rendered);
            match work.db.locked(move |conn| store_in_mailbox(conn, stored)).await {
                Ok(()) => Ok(Response::default()),
                Err(err) => failed(format!("dev mailbox: {err}")),
            }
        }
        Route::Smtp { transport, .. } => {
            let message = match build_message(&from, email.to(), &message_id, rendered) {
                Ok(message) => message,
                Err(err) => return failed(err.to_string()),
            };
            match transport.send(message).await {
                Ok(reply) => Ok(Response {
                    status_code: Some(reply.code().into()),
                    body: Some(reply.message().collect::<Vec<_>>().join(" ")),
                }),
                Err(err) => failed(crate::error::with_causes(err.to_string(), &err)),
            }
        }
    }
}

/// Lets the tenant's active email plugins change the rendered mail. `Err` leaves the row queued for a retry (a
/// fail-closed plugin failed).
async fn plugin_render(
    work: &TenantWork,
    email: &EmailKind,
    rendered: templates::Rendered,
) -> std::result::Result<templates::Rendered, String> {
    let app = &work.app;
    match app.plugins.has_active(app, &work.slug, World::Email).await {
        Ok(true) => {}
        Ok(false) => return Ok(rendered),
        Err(err) => return Err(format!("cannot read the tenant's plugins: {err}")),
    }
    let data = match serde_json::to_value(email) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter(|(k, _)| k != "template" && k != "to")
            .map(|(key, value)| Field { key, value: value.to_string() })
            .collect(),
        _ => vec![],
    };
    let message = Message {
        template: email.template().to_owned(),
        locale: work.locale.clone(),
        to: email.to().to_owned(),
        subject: rendered.subject,
        html: rendered.html,
        text: rendered.text,
        data,
    };
    match app.plugins.render_email(app, &work.slug, &work.pool, message).await {
        Ok(Mail::Send { subject, html, text }) => Ok(templates::Rendered { subject, html, text }),
        Ok(Mail::Retry(reason)) => Err(reason),
        Err(err) => Err(format!("email plugins: {err}")),
    }
}

/// `<{row id}@{public host}>`: stable across retries, so receivers and tests can spot a resend.
pub fn message_id(row_id: &str, public_host: &str) -> String {
    format!("<{row_id}@{public_host}>")
}

fn build_message(from: &Mailbox, to: &str, message_id: &str, rendered: templates::Rendered) -> Result<lettre::Message> {
    let to = crate::email::parse_address(to)?;
    lettre::Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(rendered.subject)
        .message_id(Some(message_id.to_owned()))
        .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
        .map_err(|e| Error::validation(format!("cannot build the message: {e}")))
}

/// Newest dev-mailbox messages kept per tenant.
const MAILBOX_KEEP: i64 = 1000;

fn store_in_mailbox(
    conn: &mut rusqlite::Connection,
    (id, message_id, template, from, to, rendered): (String, String, String, String, String, templates::Rendered),
) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT OR REPLACE INTO mailbox (id, message_id, template, from_addr, to_addr, subject, html, text, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        rusqlite::params![
            id,
            message_id,
            template,
            from,
            to,
            rendered.subject,
            rendered.html,
            rendered.text,
            crate::now_unix()
        ],
    )?;
    tx.execute(
        "DELETE FROM mailbox WHERE id NOT IN (SELECT id FROM mailbox ORDER BY id DESC LIMIT ?1)",
        [MAILBOX_KEEP],
    )?;
    tx.commit()?;
    Ok(())
}

async fn send_webhook(work: &TenantWork, row: &Claimed) -> Outcome {
    let Some(webhook_id) = row.webhook_id.clone() else { return failed("delivery without a webhook") };
    let (key, slug) = (work.app.master_key.clone(), work.slug.clone());
    let target = db::with_conn(&work.pool, move |conn| crate::webhooks::target(conn, &key, &slug, &webhook_id)).await;
    let target = match target {
        Ok(Some(target)) => target,
        Ok(None) => return failed("webhook deleted"),
        Err(err) => return failed(err.to_string()),
    };
    if !target.enabled {
        return failed("webhook disabled");
    }
    crate::webhooks::deliver(
        &work.app.webhook_client,
        &target.url,
        &target.secret,
        &row.id,
        &row.topic,
        &row.payload,
        work.app.config.webhook_allow_private,
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids_use_the_row_id_and_public_host() {
        assert_eq!(super::message_id("0192-ab", "id.example.com"), "<0192-ab@id.example.com>");
    }
}
