//! Streamed CSV downloads of the admin UI (the audit log in `audit_pages`, a store's orders in `order_pages`):
//! at most two running on a node and one per tenant and kind, the rows sent a chunk at a time with one short
//! database read each (no connection and no whole file held while the client downloads), cut at a time budget
//! that also covers a client that stops reading; a cut export fails instead of looking complete.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::db;
use crate::db::registry::TenantDb;
use crate::error::Error;
use crate::http::page::message_page;

/// CSV exports running on this node at once: each holds a tenant connection per chunk and a little memory, and
/// more would only compete for the same disk.
static EXPORTS: std::sync::LazyLock<Arc<Semaphore>> = std::sync::LazyLock::new(|| Arc::new(Semaphore::new(2)));
/// How long one export may run before it stops (the download then fails, without its last rows).
const CSV_TIME_BUDGET: Duration = Duration::from_secs(300);

/// The exports running, by tenant and kind (`audit:{slug}`, `orders:{slug}`): one of each at a time.
static EXPORTING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// A tenant's turn to export one kind, given back when dropped.
pub(super) struct TenantTurn(String);

impl TenantTurn {
    pub(super) fn take(key: &str) -> Option<TenantTurn> {
        let mut running = EXPORTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.insert(key.to_owned()).then(|| TenantTurn(key.to_owned()))
    }
}

impl Drop for TenantTurn {
    fn drop(&mut self) {
        EXPORTING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.0);
    }
}

/// The right to run one export: the tenant's turn and a node slot.
pub(super) struct Turn {
    _tenant: TenantTurn,
    _slot: OwnedSemaphorePermit,
}

fn busy(heading: &str, message: &str) -> Response {
    let mut page = message_page(StatusCode::TOO_MANY_REQUESTS, heading, message);
    page.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    page
}

/// A turn for exporting `key`, or the page saying why not now. `what` names it for people ("this store's orders").
pub(super) fn turn(key: &str, what: &str) -> Result<Turn, Box<Response>> {
    let Some(tenant) = TenantTurn::take(key) else {
        return Err(Box::new(busy(
            "An export is running",
            &format!("{what} are being exported already. Try again when that download has finished."),
        )));
    };
    let Ok(slot) = EXPORTS.clone().try_acquire_owned() else {
        return Err(Box::new(busy(
            "Another export is running",
            "Two exports are running on this server. Try again in a minute.",
        )));
    };
    Ok(Turn { _tenant: tenant, _slot: slot })
}

/// Reads the next chunk of an export from where it stands: the CSV bytes and where to go on (`None`: done).
pub(super) type Step<C> = fn(&Connection, C) -> Result<(Vec<u8>, Option<C>), Error>;

/// A download named `filename`: `step` reads the next chunk from where `first` says (bytes and where to go on, or
/// `None` at the end), one short read at a time, while `turn` is held. `what` names the export in the log.
pub(super) fn download<C: Send + 'static>(
    turn: Turn,
    db: TenantDb,
    first: C,
    step: Step<C>,
    what: &'static str,
    filename: String,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::spawn(async move {
        let _turn = turn;
        let deadline = tokio::time::Instant::now() + CSV_TIME_BUDGET;
        // A client that stops reading holds the send: the deadline covers it too.
        let send = |item| tokio::time::timeout_at(deadline, tx.send(item));
        let mut chunk = first;
        loop {
            if tokio::time::Instant::now() >= deadline {
                // Cut short: the body fails, so no one takes a partial file for the whole list.
                tracing::warn!(export = what, "export stopped at its time budget");
                let _ = send(Err(std::io::Error::other("the export ran out of time"))).await;
                return;
            }
            let pool = db.pool.clone();
            let (bytes, next) = match db::with_conn(&pool, move |conn| step(conn, chunk)).await {
                Ok(done) => done,
                Err(err) => {
                    tracing::warn!(export = what, error = %err, "export stopped");
                    let _ = send(Err(std::io::Error::other(err.to_string()))).await;
                    return;
                }
            };
            if !matches!(send(Ok(bytes)).await, Ok(Ok(()))) {
                return;
            }
            match next {
                Some(more) => chunk = more,
                None => return,
            }
        }
    });
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// `{kind}-{slug}-{YYYY-MM-DD}.csv`.
pub(super) fn filename(kind: &str, slug: &str) -> String {
    let now = crate::format_time(crate::now_unix());
    format!("{kind}-{slug}-{}.csv", now.get(..10).unwrap_or("export"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_export_per_tenant_and_kind_at_a_time() {
        let first = TenantTurn::take("audit:exportco").expect("free");
        assert!(TenantTurn::take("audit:exportco").is_none(), "a second export of the same tenant waits");
        let other = TenantTurn::take("orders:exportco");
        assert!(other.is_some(), "another kind of the same tenant runs");
        drop(first);
        assert!(TenantTurn::take("audit:exportco").is_some(), "the turn comes back when the export ends");
    }
}
