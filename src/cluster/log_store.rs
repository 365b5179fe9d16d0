//! The Raft log and vote of this node in `data/raft.db`: one SQLite file in WAL mode with `synchronous=FULL`,
//! so an entry or vote is on disk when its transaction commits, and openraft is told only after that.
//!
//! Tables: `log (idx, entry)` with each entry as JSON (the mutation whole, blob chunks base64), and
//! `raft_meta (key, value)` for the vote, the committed log id and the last purged log id. Purging records the
//! purged id before deleting, in one transaction, so the log never has holes and its state is always known.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogId, RaftLogReader, StorageIOError, Vote};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Entry, LogId, StorageError, TypeConfig, storage_error};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS raft_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/// The log store; clones share one connection (openraft reads through a clone while it appends).
#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
}

impl LogStore {
    /// Opens (creating) the log at `path`.
    pub fn open(path: &Path) -> crate::Result<Self> {
        let conn = Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(crate::Error::internal(format!("raft.db: journal_mode stayed {mode}")));
        }
        // Appends need no cache and entries are read back rarely (a follower catching up): 256 KiB of pages.
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000; PRAGMA cache_size=-256;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Whether the log has never held anything: no vote, no entry, nothing purged.
    pub fn is_pristine(&self) -> crate::Result<bool> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let used: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM log) OR EXISTS(SELECT 1 FROM raft_meta WHERE key IN ('vote', 'last_purged'))",
            [],
            |r| r.get(0),
        )?;
        Ok(!used)
    }

    /// Runs `f` on the connection on the blocking pool; `what` says which part failed.
    async fn run<T: Send + 'static>(
        &self,
        what: fn(openraft::AnyError) -> StorageIOError<u64>,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let conn = self.conn.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn).map_err(|e| e.to_string())
        })
        .await;
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(storage_error(what, err)),
            Err(join) => Err(storage_error(what, join)),
        }
    }

    async fn meta<T: serde::de::DeserializeOwned>(
        &self,
        what: fn(openraft::AnyError) -> StorageIOError<u64>,
        key: &'static str,
    ) -> Result<Option<T>, StorageError> {
        let text: Option<String> = self
            .run(what, move |conn| {
                conn.query_row("SELECT value FROM raft_meta WHERE key = ?1", [key], |r| r.get(0)).optional()
            })
            .await?;
        text.map(|t| serde_json::from_str(&t)).transpose().map_err(|e| storage_error(what, e))
    }

    async fn set_meta(
        &self,
        what: fn(openraft::AnyError) -> StorageIOError<u64>,
        key: &'static str,
        value: &impl serde::Serialize,
    ) -> Result<(), StorageError> {
        let text = serde_json::to_string(value).map_err(|e| storage_error(what, e))?;
        self.run(what, move |conn| {
            conn.execute(
                "INSERT INTO raft_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, &text],
            )
            .map(drop)
        })
        .await
    }
}

/// `range` as a half-open `[from, to)` over log indexes.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(&i) => i.saturating_add(1),
        Bound::Excluded(&i) => i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

/// SQLite integers are signed: indexes above `i64::MAX` clamp (no log gets there).
fn sql_index(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn decode(text: &str) -> Result<Entry, StorageError> {
    serde_json::from_str(text).map_err(|e| storage_error(StorageIOError::read_logs, e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (from, to) = bounds(&range);
        if from >= to {
            return Ok(Vec::new());
        }
        let rows: Vec<String> = self
            .run(StorageIOError::read_logs, move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
                stmt.query_map(params![sql_index(from), sql_index(to)], |r| r.get(0))?.collect()
            })
            .await?;
        rows.iter().map(|text| decode(text)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(StorageIOError::read_logs, "last_purged").await?;
        let last: Option<String> = self
            .run(StorageIOError::read_logs, |conn| {
                conn.query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| r.get(0)).optional()
            })
            .await?;
        let last_log_id = match last {
            Some(text) => Some(*decode(&text)?.get_log_id()),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.set_meta(StorageIOError::write_vote, "vote", vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.meta(StorageIOError::read_vote, "vote").await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Losing the latest committed id only means re-reading it from the leader (or re-applying less at a
        // start), so it is written without its own fsync: the next log append's commit makes it durable.
        let text = serde_json::to_string(&committed).map_err(|e| storage_error(StorageIOError::write_logs, e))?;
        self.run(StorageIOError::write_logs, move |conn| {
            conn.execute_batch("PRAGMA synchronous=NORMAL")?;
            let written = conn.execute(
                "INSERT INTO raft_meta (key, value) VALUES ('committed', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [&text],
            );
            conn.execute_batch("PRAGMA synchronous=FULL")?;
            written.map(drop)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(StorageIOError::read_logs, "committed").await?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let rows = entries
            .into_iter()
            .map(|entry| Ok((entry.get_log_id().index, serde_json::to_string(&entry)?)))
            .collect::<serde_json::Result<Vec<_>>>()
            .map_err(|e| storage_error(StorageIOError::write_logs, e))?;
        self.run(StorageIOError::write_logs, move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")?;
                for (index, text) in &rows {
                    insert.execute(params![sql_index(*index), text])?;
                }
            }
            tx.commit()
        })
        .await?;
        // The commit is durable (synchronous=FULL): only now may openraft count these entries as stored.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = sql_index(log_id.index);
        self.run(StorageIOError::write_logs, move |conn| {
            conn.execute("DELETE FROM log WHERE idx >= ?1", [from]).map(drop)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let text = serde_json::to_string(&log_id).map_err(|e| storage_error(StorageIOError::write_logs, e))?;
        let upto = sql_index(log_id.index);
        self.run(StorageIOError::write_logs, move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO raft_meta (key, value) VALUES ('last_purged', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [&text],
            )?;
            tx.execute("DELETE FROM log WHERE idx <= ?1", [upto])?;
            tx.commit()
        })
        .await
    }
}
