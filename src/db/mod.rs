//! SQLite plumbing: connection pragmas, pools, the migration runner, the tenant file registry, and the settings
//! that decide what holding and opening a database costs (`tuning`).
//!
//! Every connection runs in WAL mode with `synchronous=NORMAL`, foreign keys on and a busy timeout. Work on a
//! connection runs on the blocking pool through `with_conn`; a connection is taken and returned inside the
//! closure, never held across an `.await`. The one exception is `point_read`: a lookup by key, cheaper than the
//! hop to the blocking pool, runs on the calling task when an idle connection is at hand.

pub mod migrate;
pub mod registry;
pub mod tuning;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use scheduled_thread_pool::ScheduledThreadPool;

use crate::error::{Error, Result};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Applies the pragmas every Gatehouse connection runs with.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}")));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout={BUSY_TIMEOUT_MS};"
    ))?;
    // A replicated file (backups on) gets no automatic checkpoints and the backup's commit hook.
    crate::backup::tracker::configure(conn)
}

/// Opens one configured connection (the control-plane writer, offline commands).
pub fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    Ok(conn)
}

/// `threads` scheduler threads for r2d2, shared by many pools: r2d2 opens every connection of a pool there (the
/// caller of `get` waits), so they are also how many connections of those pools open at once.
pub fn scheduler(name: &str, threads: usize) -> Arc<ScheduledThreadPool> {
    Arc::new(ScheduledThreadPool::builder().num_threads(threads.max(1)).thread_name_pattern(name).build())
}

/// A pool over the existing file at `path` that opens connections only when asked (min idle 0). All pools share
/// `scheduler`, because r2d2 otherwise starts three threads per pool, which thousands of tenant pools cannot
/// afford. The pool never creates the file: a pool that outlives an archived tenant (a worker still holding it)
/// gets an error instead of silently recreating an empty database at the old path. `page_cache_kib` caps each
/// connection's page cache (SQLite's default is 2 MiB).
pub fn open_pool(
    path: &Path,
    max_size: u32,
    scheduler: Arc<ScheduledThreadPool>,
    page_cache_kib: Option<u32>,
) -> Result<Pool> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    // A pooled file keeps its -wal (emptied) and -shm files when its last connection closes: a tenant pool evicted
    // and opened again otherwise deletes and creates both each time.
    // (Closing it then empties the WAL: SQLite truncates a kept WAL on close once a `journal_size_limit` is set;
    // 4 MiB, so a busy WAL is reused in place meanwhile. Files the backup replicates get 64 MiB and are never
    // checkpointed on close: see backup::tracker::configure.)
    let manager = SqliteConnectionManager::file(path).with_flags(flags).with_init(move |conn| {
        conn.execute_batch("PRAGMA journal_size_limit=4194304;")?;
        if let Some(kib) = page_cache_kib {
            conn.execute_batch(&format!("PRAGMA cache_size=-{kib};"))?;
        }
        configure(conn)?;
        tuning::persist_wal(conn)
    });
    r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .idle_timeout(None)
        .max_lifetime(None)
        .connection_timeout(Duration::from_secs(10))
        .thread_pool(scheduler)
        .build(manager)
        .map_err(Error::from)
}

/// Runs a point read on the calling task when the pool has an idle connection right now, else like `with_conn`.
///
/// Only for lookups of a row or two by primary or unique key (a few microseconds from the page cache), which
/// cost less than the hop to the blocking pool and back: never a scan, a write, or anything that could wait on a
/// lock (in WAL mode readers do not wait for writers). It never opens a connection on the calling task.
pub async fn point_read<T: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    match pool.try_get() {
        Some(mut conn) => f(&mut conn),
        None => with_conn(pool, f).await,
    }
}

/// Runs `f` with a pooled connection on the blocking pool.
pub async fn with_conn<T: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
}
