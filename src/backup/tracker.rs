//! What the backup learns from every SQLite connection: which replicated databases have commits not yet
//! captured, and the per-file writer lock.
//!
//! A running server registers its data directory here before it opens any database. `db::configure`, which every
//! connection runs, asks `for_path` whether the file is replicated (`control.db`, `tenants/{slug}.db` of a
//! registered data dir); if so the connection gets `wal_autocheckpoint=0`, `SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`
//! (closing a connection never checkpoints frames not yet captured: the backup owns checkpoints) and a commit
//! hook that marks the file dirty and wakes the sync task. With backups off nothing is registered and connections
//! behave as SQLite's defaults.
//!
//! The writer lock of a file lives here, keyed by the file, so it outlives a tenant pool's eviction: every write
//! path of a tenant takes it (`TenantDb::write`, `TenantDb::locked`) and the backup holds it while it
//! checkpoints (and for an archive's final capture), so a checkpoint never meets a writer. Plain captures do not
//! take it: committed frames are checked as they are read, so writers go on meanwhile.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::Notify;

use crate::tenants::TenantSlug;

/// A replicated database of one data dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbKey {
    Control,
    Tenant(TenantSlug),
}

impl fmt::Display for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbKey::Control => f.write_str("control"),
            DbKey::Tenant(slug) => write!(f, "tenants/{slug}"),
        }
    }
}

impl DbKey {
    /// The key's form in `backup.db`.
    pub fn parse(text: &str) -> Option<DbKey> {
        match text {
            "control" => Some(DbKey::Control),
            _ => text.strip_prefix("tenants/").and_then(|slug| TenantSlug::parse(slug).ok()).map(DbKey::Tenant),
        }
    }

    pub fn path(&self, data_dir: &Path) -> PathBuf {
        match self {
            DbKey::Control => data_dir.join("control.db"),
            DbKey::Tenant(slug) => data_dir.join("tenants").join(format!("{slug}.db")),
        }
    }
}

/// Locks of one replicated file.
#[derive(Default)]
pub struct FileLocks {
    /// The writer turn: tenant writes queue here (not in SQLite's sleeping busy handler); checkpoints take it
    /// too.
    pub writer: Arc<tokio::sync::Mutex<()>>,
    /// One capture of this file at a time (the sync task, a final capture before an archive).
    pub capture: Mutex<()>,
}

/// The dirty set and the locks of one registered data dir.
pub struct Tracker {
    data_dir: PathBuf,
    /// Files with commits not captured yet, with the time of the first such commit (the lag's start).
    dirty: Mutex<HashMap<DbKey, Instant>>,
    pub wake: Notify,
    files: Mutex<HashMap<DbKey, Arc<FileLocks>>>,
    backup: std::sync::OnceLock<std::sync::Weak<crate::backup::Backup>>,
}

static TRACKERS: RwLock<Vec<Arc<Tracker>>> = RwLock::new(Vec::new());

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_path_buf())
}

impl Tracker {
    /// Registers `data_dir`: connections opened from now on to its replicated files are tracked.
    pub fn register(data_dir: &Path) -> Arc<Tracker> {
        let tracker = Arc::new(Tracker {
            data_dir: absolute(data_dir),
            dirty: Mutex::default(),
            wake: Notify::new(),
            files: Mutex::default(),
            backup: std::sync::OnceLock::new(),
        });
        let mut all = TRACKERS.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|t| t.data_dir != tracker.data_dir);
        all.push(tracker.clone());
        tracker
    }

    /// Stops tracking (the server stopped).
    pub fn unregister(self: &Arc<Self>) {
        TRACKERS.write().unwrap_or_else(|e| e.into_inner()).retain(|t| !Arc::ptr_eq(t, self));
    }

    pub fn set_backup(&self, backup: &Arc<crate::backup::Backup>) {
        let _ = self.backup.set(Arc::downgrade(backup));
    }

    /// The backup this tracker feeds, while it runs.
    pub fn backup(&self) -> Option<Arc<crate::backup::Backup>> {
        self.backup.get().and_then(std::sync::Weak::upgrade)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Marks `key` as having a commit to capture and wakes the sync task.
    pub fn mark(&self, key: &DbKey) {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        if !dirty.contains_key(key) {
            dirty.insert(key.clone(), Instant::now());
            drop(dirty);
            self.wake.notify_one();
        }
    }

    /// Takes the dirty set (the sync task captures each).
    pub fn take_dirty(&self) -> HashMap<DbKey, Instant> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back a file whose capture failed, keeping its first commit's time.
    pub fn restore_dirty(&self, key: DbKey, since: Instant) {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        let entry = dirty.entry(key).or_insert(since);
        *entry = (*entry).min(since);
    }

    /// The files with commits not captured yet, with their first such commit.
    pub fn dirty(&self) -> Vec<(DbKey, Instant)> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, at)| (k.clone(), *at)).collect()
    }

    /// The oldest commit not captured yet.
    pub fn oldest_dirty(&self) -> Option<Instant> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).values().min().copied()
    }

    pub fn locks(&self, key: &DbKey) -> Arc<FileLocks> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone()
    }

    fn key_of(&self, file: &Path) -> Option<DbKey> {
        let parent = file.parent()?;
        let name = file.file_name()?.to_str()?;
        if parent == self.data_dir {
            return (name == "control.db").then_some(DbKey::Control);
        }
        if parent.parent()? == self.data_dir && parent.file_name()? == "tenants" {
            let slug = name.strip_suffix(".db")?;
            return TenantSlug::parse(slug).ok().map(DbKey::Tenant);
        }
        None
    }
}

/// The tracker and key of a replicated file, if `path` is one.
pub fn for_path(path: &Path) -> Option<(Arc<Tracker>, DbKey)> {
    let all = TRACKERS.read().unwrap_or_else(|e| e.into_inner());
    if all.is_empty() {
        return None;
    }
    let file = match path.parent().map(absolute) {
        Some(parent) => parent.join(path.file_name()?),
        None => return None,
    };
    all.iter().find_map(|t| t.key_of(&file).map(|key| (t.clone(), key)))
}

/// Sets up a connection to a replicated file (called by `db::configure`): no automatic checkpoints, none on
/// close, and the commit hook that marks the file dirty.
pub fn configure(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let Some(path) = conn.path().filter(|p| !p.is_empty()) else { return Ok(()) };
    let Some((tracker, key)) = for_path(Path::new(path)) else { return Ok(()) };
    // journal_size_limit: when a checkpoint lets the WAL restart, its first commit truncates the file to 64 MiB.
    // A busy file's WAL grows by a whole interval of commits between two checkpoints (70 MB at 6,000 commits/s);
    // below the limit it is written over in place, where a lower one made the kernel allocate, zero and free that
    // much page cache and disk every interval. A file gone quiet keeps the length its WAL reached until its next
    // write, which cuts it to the limit (not TRUNCATE: it would hide a writer that slipped in before the
    // checkpoint; see capture::checkpoint): a tenant that was ever that busy keeps up to 64 MiB of WAL on disk.
    conn.execute_batch("PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864;")?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.commit_hook(Some(move || {
        tracker.mark(&key);
        false
    }))?;
    Ok(())
}

/// The writer lock of `path`: the tracker's (shared by every opening of the file) when it is replicated, else a
/// lock of its own.
pub fn writer_lock(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    match for_path(path) {
        Some((tracker, key)) => tracker.locks(&key).writer.clone(),
        None => Arc::default(),
    }
}
