//! Unpaid orders expire without a visitor: one task works off `Store::expiries`, a due list of stores and when
//! their first `pending_payment` order runs out (fed by each checkout's commit, rebuilt by the start-up scan that
//! also recovers the outbox). A store not on the list is never opened here, so idle stores cost nothing. Each due
//! store gets `orders::expire_due` in one write (its stock goes back, the buyer is mailed), then goes back on the
//! list at its next expiry. Cart writes and checkouts still run `expire_due` first, so stock is never held past
//! its time even between two passes.

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use crate::app::AppState;
use crate::db;
use crate::email::outbox::now_ms;
use crate::error::Result;
use crate::tenants::TenantSlug;

/// Longest the task sleeps without being woken.
const IDLE_TICK: Duration = Duration::from_secs(60);
/// Stores expired at once.
const BATCH: usize = 16;
/// How long a store whose pass failed waits.
const ERROR_RECHECK_MS: i64 = 30_000;

/// When the first unpaid order of this tenant file runs out (unix seconds), for the start-up scan. A file from
/// before orders existed has none.
pub fn scan(conn: &Connection) -> Option<i64> {
    conn.query_row(
        "SELECT MIN(expires_at) FROM orders WHERE +status = 'pending_payment' AND expires_at IS NOT NULL",
        [],
        |r| r.get::<_, Option<i64>>(0),
    )
    .ok()
    .flatten()
}

/// Runs until `stop` turns true.
pub async fn run(app: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let next = pass(&app).await;
        let sleep = next.map_or(IDLE_TICK, |at| Duration::from_millis((at - now_ms()).clamp(1, 60_000) as u64));
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = app.store.expiries.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Expires every store due now; answers when the next one is due (unix ms).
pub async fn pass(app: &AppState) -> Option<i64> {
    loop {
        let (due, next) = app.store.expiries.take_due(now_ms(), &HashSet::new(), BATCH);
        if due.is_empty() {
            return next;
        }
        for slug in due {
            match expire_store(app, &slug).await {
                Ok(Some(at)) => app.store.expiries.schedule(&slug, at * 1000),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(tenant = %slug, error = %err, "expiring unpaid orders failed");
                    app.store.expiries.schedule(&slug, now_ms() + ERROR_RECHECK_MS);
                }
            }
        }
    }
}

/// Expires `slug`'s due orders; answers its next expiry (unix seconds).
async fn expire_store(app: &AppState, slug: &TenantSlug) -> Result<Option<i64>> {
    let Some(tenant) = app.control.tenant(slug).await? else { return Ok(None) };
    if tenant.home_node.is_some_and(|home| home != app.node_id) {
        return Ok(None);
    }
    let db = app.tenants.load(slug).await?;
    loop {
        let t = tenant.clone();
        let expired = db.write(move |tx| super::orders::expire_due(tx, &t, crate::now_unix())).await?;
        if expired > 0 {
            tracing::info!(tenant = %slug, orders = expired, "unpaid orders expired");
        }
        if expired < super::orders::EXPIRE_BATCH {
            break;
        }
    }
    let next = db::with_conn(&db.pool, |conn| Ok(scan(conn))).await?;
    Ok(next)
}
