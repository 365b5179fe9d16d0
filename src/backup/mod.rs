//! Continuous backups of control.db and every tenant file to S3, as Litestream-compatible replicas: each
//! database is its own replica root, so `litestream restore` reads `s3://bucket/prefix/tenants/{slug}/{incarnation}`
//! and `…/nodes/{node}/control/{generation}` as it reads its own.
//!
//! - `tracker`: connections to replicated files get no automatic checkpoints and a commit hook that marks the
//!   file dirty; the per-file writer lock.
//! - `wal`, `capture`: reading committed WAL frames into the next LTX file in the local spool; checkpoints.
//! - `ltx`: the LTX v3 codec. `position`: `data/backup.db`. `s3`: the bucket.
//! - `sync`: the task that sleeps until a commit, captures dirty files an interval after their first uncaptured
//!   commit, checkpoints, uploads each spooled file as it lands, and reports lag, errors and stalls.
//! - `restore`: planning (newest snapshot, then the furthest-reaching chain; by TXID or commit time) and applying
//!   a replica root to a new file. `command`: `gatehouse restore db|control|all|tenant`.
//! - `live`: restoring one tenant on a running server (close, rebuild, wait, swap through a `RestoreTenant`
//!   entry, reopen); `api`: its admin API, the status (`status`) and forced snapshots.
//! - `verify`: checking replicas (every object present, contiguous, intact; the latest state rebuilt and compared)
//!   and listing restore points; `gatehouse backup …` (`command.rs`).
//!
//! Invariants: TXIDs of a root are contiguous from its newest snapshot on; a spool file is durable before the
//! position moves past it and is deleted only once uploaded; the backup alone checkpoints replicated files, and
//! only frames it has captured (a checkpoint that finds more makes the next capture a full image).

pub mod api;
pub mod capture;
pub mod command;
pub mod levels;
pub mod live;
pub mod ltx;
pub mod position;
pub mod restore;
pub mod s3;
pub mod status;
pub mod sync;
pub mod tracker;
pub mod verify;
pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backup::capture::{Spool, Spooled};

/// The data dir's lock (`data/.lock`): `serve` holds it while it runs, and offline restores take it, so a restore
/// never replaces a file under a running server. The OS drops it when the holder exits, however it exits.
pub struct DataLock {
    _file: std::fs::File,
}

impl DataLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataLock> {
        use anyhow::Context;
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let path = data_dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DataLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "{} is held: a gatehouse server (or a restore) is using {}; stop it first",
                path.display(),
                data_dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}
use crate::backup::position::Positions;
use crate::backup::tracker::{DbKey, Tracker};
use crate::error::Result;
use crate::telemetry::Metrics;

/// Where and how often to back up (`GATEHOUSE_BACKUP_*`, `GATEHOUSE_S3_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    pub bucket: String,
    /// The URL's path, without leading or trailing slashes.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `None`: path style exactly when an endpoint is set.
    pub path_style: Option<bool>,
    pub interval: Duration,
    pub max_spool_bytes: u64,
    pub snapshot_interval: Duration,
    /// How far back a restore can go: snapshots younger than this are kept (the newest always).
    pub retention: Duration,
    /// How often levels 1, 2 and 3 take in the level below.
    pub levels: [Duration; 3],
    /// How often the self-check verifies a sample of replicas (`None`: never).
    pub verify_every: Option<Duration>,
}

impl BackupConfig {
    /// `s3://bucket[/prefix]`.
    pub fn parse_url(raw: &str) -> std::result::Result<(String, String), String> {
        let rest = raw.trim().strip_prefix("s3://").ok_or("expected s3://bucket/prefix")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err("expected s3://bucket/prefix with a bucket name of 3-63 characters a-z 0-9 . -".into());
        }
        let prefix = prefix.trim_matches('/');
        if prefix.contains("//") || prefix.split('/').any(|part| part == "." || part == "..") {
            return Err("expected a prefix without empty, . or .. segments".into());
        }
        Ok((bucket.to_owned(), prefix.to_owned()))
    }

    /// Three intervals, `30s,5m,1h`: how often levels 1, 2 and 3 compact the level below; each a multiple of
    /// the one before.
    pub fn parse_levels(raw: &str) -> std::result::Result<[Duration; 3], String> {
        let parts: Vec<Duration> = raw.split(',').map(Self::parse_interval).collect::<std::result::Result<_, _>>()?;
        match <[Duration; 3]>::try_from(parts) {
            Ok(levels) if levels[0] <= levels[1] && levels[1] <= levels[2] => Ok(levels),
            _ => Err("expected three growing durations like 30s,5m,1h".into()),
        }
    }

    /// `off`, or `30s`, `30m`, `24h`, `7d` (a bare number is hours); from 1 s to 30 days.
    pub fn parse_verify_interval(raw: &str) -> std::result::Result<Option<Duration>, String> {
        let raw = raw.trim();
        if matches!(raw, "off" | "0") {
            return Ok(None);
        }
        let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => raw.split_at(at),
            None => (raw, "h"),
        };
        let n: u64 = number.parse().map_err(|_| "expected off or a duration like 30m, 24h or 7d".to_owned())?;
        let every = match unit {
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err("expected off or a duration like 30m, 24h or 7d".into()),
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(30 * 86_400)).contains(&every) {
            return Err("expected a duration from 1s to 30d".into());
        }
        Ok(Some(every))
    }

    /// `500ms`, `1s`, `2m`, or a bare number of seconds; from 100 ms to 1 h.
    pub fn parse_interval(raw: &str) -> std::result::Result<Duration, String> {
        let raw = raw.trim();
        let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => raw.split_at(at),
            None => (raw, "s"),
        };
        let n: u64 = number.parse().map_err(|_| "expected a duration like 500ms, 1s or 2m".to_owned())?;
        let interval = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err("expected a duration like 500ms, 1s or 2m".into()),
        };
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
            return Err("expected a duration from 100ms to 1h".into());
        }
        Ok(interval)
    }
}

/// What `/readyz`, metrics and the dashboard say about backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Off,
    Ok,
    Degraded(String),
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Off => f.write_str("off"),
            Health::Ok => f.write_str("ok"),
            Health::Degraded(why) => write!(f, "degraded: {why}"),
        }
    }
}

/// A spooled file waiting for upload, with the database it came from and its oldest commit's time.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub file: Spooled,
    pub key: DbKey,
    /// The oldest commit the file carries (`None`: a compaction, which carries no new commit).
    pub since: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Per replica root, its spooled files in upload order (max TXID, level).
    pub queue: BTreeMap<String, BTreeMap<(u64, u8), Queued>>,
    pub spool_bytes: u64,
    /// Databases with captured frames not checkpointed yet, and when they were last captured.
    pub unckpt: HashMap<DbKey, Instant>,
    /// Files taken from the dirty set and being captured, with their first uncaptured commit (still lag).
    pub capturing: HashMap<DbKey, Instant>,
    /// Uploaded files kept for the next level's merge, per root: (level, min TXID) → file.
    pub local: BTreeMap<String, BTreeMap<(u8, u64), Spooled>>,
    /// When each (root, level) last took in the level below.
    pub compacted: HashMap<(String, u8), Instant>,
    /// Files looked at once more because their WAL was longer than the cursor after a capture.
    pub rechecked: std::collections::HashSet<DbKey>,
    /// When retention last ran per root.
    pub retained: HashMap<String, Instant>,
    /// The last upload round failed (cleared by one that succeeds).
    pub upload_error: Option<String>,
    /// The last pass could not capture some database (cleared by a pass that captures all).
    pub capture_error: Option<String>,
    pub last_upload: Option<Instant>,
    pub stalled: bool,
    /// Unix seconds of the last pass that left nothing unsent.
    pub last_synced_unix: i64,
    /// The last self-check, if one ran.
    pub self_check: Option<verify::SelfCheck>,
    /// The overall lag every 10 s over the last hour (unix seconds, seconds of lag), for the Backups page.
    pub lag_samples: std::collections::VecDeque<(i64, f32)>,
    /// Files being moved away (archived or replaced by a restore): not captured until the move is done.
    pub moving: std::collections::HashSet<DbKey>,
    /// Databases with a per-database lag series shown (set back to 0 once caught up).
    pub lag_series: std::collections::HashSet<String>,
}

/// The backup of one data dir.
pub struct Backup {
    pub config: BackupConfig,
    pub data_dir: PathBuf,
    pub node_id: u64,
    pub tracker: Arc<Tracker>,
    pub(crate) positions: Positions,
    pub(crate) spool: Spool,
    /// Uploaded L0-L2 files waiting to be merged into the next level (`data/backup/levels/`).
    pub(crate) local: Spool,
    pub(crate) state: Mutex<State>,
    pub(crate) remote: tokio::sync::OnceCell<s3::Remote>,
    /// Wakes the uploader: a file was queued.
    pub(crate) queued: tokio::sync::Notify,
    pub(crate) metrics: Arc<Metrics>,
    /// Per-database lag series too (`GATEHOUSE_METRICS_TENANT_LABELS`).
    pub(crate) per_db_metrics: bool,
    /// Live tenant restores, running or the last per tenant.
    pub restores: live::Restores,
}

impl Backup {
    /// Opens `backup.db` and takes up the spool a previous run left. `tracker` was registered before any
    /// database of the data dir was opened (`Tracker::register`).
    pub fn open(
        config: BackupConfig,
        tracker: Arc<Tracker>,
        node_id: u64,
        metrics: Arc<Metrics>,
        per_db_metrics: bool,
    ) -> Result<Arc<Backup>> {
        let data_dir = tracker.data_dir().to_path_buf();
        let data_dir = data_dir.as_path();
        let dir = data_dir.join("backup");
        std::fs::create_dir_all(dir.join("spool")).map_err(crate::error::Error::internal)?;
        // Work dirs of verifications a stop or a crash interrupted (each may be a whole replica).
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("verify-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let backup = Arc::new(Backup {
            config,
            data_dir: tracker.data_dir().to_path_buf(),
            node_id,
            positions: Positions::open(data_dir)?,
            spool: Spool { dir: dir.join("spool") },
            local: Spool { dir: dir.join("levels") },
            tracker,
            state: Mutex::default(),
            remote: tokio::sync::OnceCell::new(),
            queued: tokio::sync::Notify::new(),
            metrics,
            per_db_metrics,
            restores: live::Restores::default(),
        });
        backup.tracker.set_backup(&backup);
        backup.take_up_spool()?;
        Ok(backup)
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues what a previous run spooled: files at or below their position's TXID; any beyond it were written
    /// by a capture whose position never moved (a crash in between) and are captured again.
    fn take_up_spool(&self) -> Result<()> {
        let positions: HashMap<String, (DbKey, u64)> =
            self.positions.all()?.into_iter().map(|(key, p)| (p.root.clone(), (key, p.txid))).collect();
        let now = Instant::now();
        for file in self.spool.scan()? {
            match positions.get(&file.root) {
                Some((key, txid)) if file.max_txid <= *txid => self.enqueue(key.clone(), file, Some(now)),
                Some(_) => self.spool.remove(&file)?,
                // The last files of an archived tenant's replica: still to be sent.
                None => match root_key(&file.root) {
                    Some(key) => self.enqueue(key, file, Some(now)),
                    None => self.spool.remove(&file)?,
                },
            }
        }
        let mut state = self.state();
        for file in self.local.scan()? {
            state.local.entry(file.root.clone()).or_default().insert((file.level, file.min_txid), file);
        }
        Ok(())
    }

    pub(crate) fn enqueue(&self, key: DbKey, file: Spooled, since: Option<Instant>) {
        let mut state = self.state();
        let bytes = file.bytes;
        let root = state.queue.entry(file.root.clone()).or_default();
        let replaced = root.insert((file.max_txid, file.level), Queued { file, key, since });
        state.spool_bytes = state.spool_bytes - replaced.map_or(0, |q| q.file.bytes) + bytes;
        drop(state);
        self.queued.notify_one();
    }

    /// Off, ok, or degraded with the reason (uploads fail, a capture fails, a stall). The reason is short and
    /// generic (`/readyz` is public); the log has the details.
    pub fn health(&self) -> Health {
        let (upload, capture) = {
            let state = self.state();
            (state.upload_error.is_some(), state.capture_error.is_some())
        };
        if upload {
            return Health::Degraded("uploads to the bucket fail; commits are spooled (see the log)".into());
        }
        if capture {
            return Health::Degraded("a database cannot be captured (see the log)".into());
        }
        if self.state().self_check.as_ref().is_some_and(|c| !c.problems.is_empty()) {
            return Health::Degraded("the backup self-check found a damaged replica (see the log)".into());
        }
        match self.stalled() {
            Some(lag) => {
                Health::Degraded(format!("stalled: the oldest commit not uploaded is {} s old", lag.as_secs()))
            }
            None => Health::Ok,
        }
    }

    /// `Some(lag)` when commits wait longer than three intervals and nothing was uploaded for as long, or wait
    /// thirty intervals whatever else is uploaded (one database stuck while others flow).
    pub(crate) fn stalled(&self) -> Option<Duration> {
        let lag = self.lag();
        let stall_after = self.stall_after();
        let quiet = self.state().last_upload.is_none_or(|at| at.elapsed() >= stall_after);
        (lag >= stall_after && (quiet || lag >= stall_after * 10)).then_some(lag)
    }

    /// Seconds since the oldest commit not yet uploaded (0 when every commit is in the bucket).
    pub fn lag(&self) -> Duration {
        let (oldest_queued, oldest_capturing) = {
            let state = self.state();
            let queued = state.queue.values().flat_map(|files| files.values().filter_map(|q| q.since)).min();
            (queued, state.capturing.values().min().copied())
        };
        match [oldest_queued, oldest_capturing, self.tracker.oldest_dirty()].into_iter().flatten().min() {
            Some(oldest) => oldest.elapsed(),
            None => Duration::ZERO,
        }
    }

    pub(crate) fn stall_after(&self) -> Duration {
        self.config.interval * 3
    }

    /// The final capture of a file about to be archived or replaced (blocking; its pool is closed already):
    /// commits since the last sync go into the spool and are uploaded to the old replica root, and the position
    /// is forgotten (the next file at the path replicates under its own incarnation). The answer holds the file's
    /// writer turn and keeps captures off the path until dropped, so no write lands and nothing is captured
    /// between this capture and the new file (or none) being in place; then the path is looked at afresh.
    pub fn capture_before_archive(self: &Arc<Self>, key: &DbKey) -> Moving {
        let writer = self.tracker.locks(key).writer.clone();
        // A blocking wait that never panics whatever thread this runs on; a writer holds the turn for
        // milliseconds, so five seconds without it means something is stuck, and archiving goes on.
        let deadline = Instant::now() + Duration::from_secs(5);
        let turn = loop {
            match writer.clone().try_lock_owned() {
                Ok(turn) => break Some(turn),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break None,
            }
        };
        // A file deleted before any pass captured it has no position yet: its incarnation gets its replica here.
        let first = self.first_position_of_archived(key);
        if let Err(err) = self.capture_blocking(key, Instant::now(), first) {
            tracing::warn!(db = %key, error = %err, "backup: the final capture before archiving failed");
        }
        let locks = self.tracker.locks(key);
        let _one = locks.capture.lock().unwrap_or_else(|e| e.into_inner());
        self.state().moving.insert(key.clone());
        if let Err(err) = self.positions.delete(key) {
            tracing::warn!(db = %key, error = %err, "backup: cannot forget the archived file's position");
        }
        self.state().unckpt.remove(key);
        Moving { _turn: turn, backup: self.clone(), key: key.clone() }
    }
}

impl Backup {
    /// Marks `key` as about to be moved away (a live restore, before its entry is proposed): captures keep off
    /// it, bar the final one, until the answer and the move's own `Moving` are dropped.
    pub fn hold(self: &Arc<Self>, key: &DbKey) -> Moving {
        self.state().moving.insert(key.clone());
        Moving { _turn: None, backup: self.clone(), key: key.clone() }
    }
}

/// A replicated file being moved away (`capture_before_archive`): holds its writer turn and keeps captures off
/// the path; dropping it lets the next capture look at whatever file is there then.
pub struct Moving {
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    backup: Arc<Backup>,
    key: DbKey,
}

impl Drop for Moving {
    fn drop(&mut self) {
        self.backup.state().moving.remove(&self.key);
        self.backup.tracker.mark(&self.key);
        self.backup.tracker.wake.notify_one();
    }
}

/// The database a replica root belongs to (`tenants/{slug}/…`, `nodes/…/control/…`).
pub(crate) fn root_key(root: &str) -> Option<DbKey> {
    let parts: Vec<&str> = root.split('/').collect();
    match parts.as_slice() {
        ["tenants", slug, _] => crate::tenants::TenantSlug::parse(slug).ok().map(DbKey::Tenant),
        ["nodes", _, "control", _] => Some(DbKey::Control),
        _ => None,
    }
}

/// The final capture of `path` before it is archived or replaced, when it is a replicated file of a running
/// server; the answer is held until the file has moved (and its successor, if any, is in place).
pub fn before_archive(path: &Path) -> Option<Moving> {
    let (tracker, key) = tracker::for_path(path)?;
    Some(tracker.backup()?.capture_before_archive(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_intervals_and_levels_parse_or_say_why() {
        assert_eq!(BackupConfig::parse_url("s3://my-bucket/a/b/").unwrap(), ("my-bucket".into(), "a/b".into()));
        assert_eq!(BackupConfig::parse_url("s3://my-bucket").unwrap(), ("my-bucket".into(), String::new()));
        for bad in ["http://x/y", "s3://", "s3://UPPER/x", "s3://ok-bucket/a/../b", "s3://ok-bucket/a//b"] {
            assert!(BackupConfig::parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(BackupConfig::parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(BackupConfig::parse_interval("3").unwrap(), Duration::from_secs(3));
        assert_eq!(BackupConfig::parse_interval("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "1x", "10ms", "2h", "-1s"] {
            assert!(BackupConfig::parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(BackupConfig::parse_levels("30s,5m,1h").unwrap(), levels::LEVEL_INTERVALS);
        assert!(BackupConfig::parse_levels("5m,30s,1h").is_err());
        assert!(BackupConfig::parse_levels("30s,5m").is_err());
        assert_eq!(BackupConfig::parse_verify_interval("24h").unwrap(), Some(Duration::from_secs(86_400)));
        assert_eq!(BackupConfig::parse_verify_interval("2").unwrap(), Some(Duration::from_secs(7_200)));
        assert_eq!(BackupConfig::parse_verify_interval("off").unwrap(), None);
        for bad in ["", "0s", "31d", "1w", "soon"] {
            assert!(BackupConfig::parse_verify_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roots_name_their_database() {
        assert_eq!(
            root_key("tenants/acme/0190"),
            Some(DbKey::Tenant(crate::tenants::TenantSlug::parse("acme").unwrap()))
        );
        assert_eq!(root_key("nodes/7/control/0190"), Some(DbKey::Control));
        assert_eq!(root_key("elsewhere/x"), None);
    }
}
