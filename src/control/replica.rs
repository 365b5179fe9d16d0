//! control.db as a replicated state machine: what `cluster::state_machine` needs from the store.
//!
//! - A Raft entry applied here writes its mark (`meta.raft_applied`, and `meta.raft_membership` for a membership
//!   entry) in the same transaction as its mutation, so after a crash the file says exactly which entry it holds.
//! - A snapshot is a `VACUUM INTO` copy of the file, marks and all, so its metadata is read from the copy itself.
//! - Installing a snapshot copies it into the live file with SQLite's backup API under the writer lock: readers
//!   keep their pooled connections and see the new content once it is in; caches are dropped and the reset
//!   listeners told.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{ControlStore, Mutation, Outcome};
use crate::error::{Error, Result};

/// Where the Raft state machine stands: the last applied entry's log id and, when it changed, the membership
/// config, both as JSON (openraft's own serde forms; this module does not look inside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftMark {
    pub applied: Option<String>,
    pub membership: Option<String>,
}

impl RaftMark {
    /// Writes the values that are set; an unset one keeps what the file has.
    pub(super) fn write(&self, conn: &Connection) -> Result<()> {
        for (key, value) in [("raft_applied", &self.applied), ("raft_membership", &self.membership)] {
            if let Some(value) = value {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )?;
            }
        }
        Ok(())
    }

    /// Removes the mark from `conn`'s file.
    fn clear(conn: &Connection) -> Result<()> {
        conn.execute("DELETE FROM meta WHERE key IN ('raft_applied', 'raft_membership')", [])?;
        Ok(())
    }

    /// The mark recorded in `conn` (both unset for a file no Raft entry reached).
    pub fn read(conn: &Connection) -> Result<Self> {
        let value = |key: &str| -> Result<Option<String>> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .map(Some)
                .or_else(super::none_if_no_rows)?)
        };
        Ok(Self { applied: value("raft_applied")?, membership: value("raft_membership")? })
    }

    /// The mark of the database file at `path` (a snapshot), opened read-only as an immutable file.
    pub fn read_file(path: &Path) -> Result<Self> {
        // A URI: the characters that mean something in one are escaped in the path.
        let escaped = path.display().to_string().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
        let uri = format!("file:{escaped}?immutable=1");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(uri, flags)?;
        Self::read(&conn)
    }
}

/// Whether `err` is this node's storage failing (disk, file, lock, memory) rather than something the entry itself
/// causes everywhere.
fn storage_failure(err: &Error) -> bool {
    use rusqlite::ErrorCode as C;
    match err {
        Error::Pool(_) => true,
        Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
            e.code,
            C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::ReadOnly
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::OutOfMemory
                | C::FileLockingProtocolFailed
                | C::PermissionDenied
        ),
        _ => false,
    }
}

/// Removes the Raft mark from the control.db at `path` (a restored file, whose Raft history is not this node's
/// log's any more): the node starts a fresh one-node cluster over it.
pub fn forget_mark(path: &Path) -> Result<()> {
    RaftMark::clear(&crate::db::open_connection(path)?)
}

/// A replicated entry's result on this node: the control-log index it got and its outcome. `error` is what a
/// local `apply_blocking` would have answered (the refusal as its typed error, or the first failure of a local
/// side effect); it stays on this node, for the proposer here.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Replied {
    pub index: u64,
    pub outcome: Outcome,
    #[serde(skip)]
    pub error: Option<Error>,
}

impl ControlStore {
    /// Applies one Raft entry: its mutation (none for a blank or membership entry) and its mark, in one
    /// transaction. A refusal is an outcome, as in `apply_entry`; only a storage failure is an error.
    pub fn apply_replicated(&self, mutation: Option<&Mutation>, mark: &RaftMark) -> Result<Option<Replied>> {
        let Some(mutation) = mutation else {
            let mut conn = self.writer.lock().map_err(|_| Error::internal("control writer lock poisoned"))?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            mark.write(&tx)?;
            tx.commit()?;
            return Ok(None);
        };
        match self.apply_at(None, mutation, Some(mark)) {
            Ok((index, outcome, refusal, effects)) => {
                Ok(Some(Replied { index, outcome, error: refusal.or(effects.err()) }))
            }
            // An entry that fails the same way on every node (a row it cannot read, say) must not stop the log:
            // it is recorded as refused, like a business refusal. Only the node's own storage trouble stops it.
            Err(err) if !storage_failure(&err) => {
                tracing::error!(mutation = mutation.kind(), error = %err, "a control-plane entry failed; recorded as refused");
                let outcome = Outcome::Refused { code: "internal".into(), message: err.to_string() };
                let mut conn = self.writer.lock().map_err(|_| Error::internal("control writer lock poisoned"))?;
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let index = super::last_applied(&tx)? + 1;
                super::log::record(&tx, index, mutation, &outcome)?;
                mark.write(&tx)?;
                tx.commit()?;
                Ok(Some(Replied { index, outcome, error: Some(err) }))
            }
            Err(err) => Err(err),
        }
    }

    /// Forgets the Raft position this file holds (`cluster::node::start`, when the log is new).
    pub fn forget_raft_mark(&self) -> Result<()> {
        let conn = self.writer.lock().map_err(|_| Error::internal("control writer lock poisoned"))?;
        RaftMark::clear(&conn)
    }

    /// The Raft mark this file holds.
    pub fn raft_mark(&self) -> Result<RaftMark> {
        self.read_blocking(RaftMark::read)
    }

    /// Writes a consistent copy of the file to `path` (which must not exist), marks included. On a connection of
    /// its own, closed afterwards: the copy reads every page, which a pooled reader would keep in its cache.
    pub fn snapshot_to(&self, path: &Path) -> Result<()> {
        let target = path.to_str().ok_or_else(|| Error::internal("snapshot path is not UTF-8"))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    /// Replaces the whole content of control.db with the database at `path` (an installed snapshot), then drops
    /// the caches and tells the reset listeners. A listener's failure is logged: the content is in place, and the
    /// next start reconciles what a listener could not.
    pub fn restore_from(&self, path: &Path) -> Result<()> {
        {
            let mut conn = self.writer.lock().map_err(|_| Error::internal("control writer lock poisoned"))?;
            conn.restore(rusqlite::MAIN_DB, path, None::<fn(rusqlite::backup::Progress)>)?;
            self.applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.tenants.invalidate_all();
        }
        for reset in self.resets.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Err(err) = reset() {
                tracing::warn!(error = %err, "a listener failed after a snapshot replaced control.db");
            }
        }
        Ok(())
    }

    /// Adds a function told when a snapshot replaced the file as a whole.
    pub fn on_reset(&self, listener: impl Fn() -> Result<()> + Send + Sync + 'static) {
        self.resets.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(listener));
    }
}
