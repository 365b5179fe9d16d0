//! Where every replicated database stands (`GET /admin/api/v1/backups`, `gatehouse backup status`), and forcing a
//! snapshot (`POST /admin/api/v1/backups/snapshot`, `gatehouse backup snapshot`). Read from `backup.db` and the
//! sync task's state: no bucket call, so it answers at once for thousands of tenants.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::backup::Backup;
use crate::backup::capture::SNAPSHOT_LEVEL;
use crate::backup::position::Position;
use crate::backup::tracker::DbKey;
use crate::control::ControlStore;
use crate::error::{Error, Result};

/// One replicated database.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DbStatus {
    /// `control` or `tenants/{slug}`.
    pub db: String,
    /// Its replica root under the backup URL.
    pub root: String,
    /// The last TXID captured, and the last one in the bucket.
    pub txid: u64,
    pub uploaded_txid: u64,
    /// Age of its oldest commit not yet in the bucket (0: all there).
    pub lag_seconds: f64,
    /// When its last full snapshot was captured (unix seconds; 0: none yet).
    pub last_snapshot_at: i64,
    /// The restore window by upload times (unix ms): the oldest snapshot kept and the newest file.
    pub window_from_ms: Option<i64>,
    pub window_to_ms: Option<i64>,
    /// Objects of its root in the bucket.
    pub objects: usize,
    /// The database file and its WAL on disk.
    pub bytes: u64,
}

/// Every replicated database, a page at a time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackupStatus {
    /// `ok`, or `degraded: …` (as `/readyz` says it).
    pub health: String,
    /// The backup URL, `s3://bucket/prefix`.
    pub url: String,
    pub interval_ms: u64,
    /// Age of the oldest commit not yet in the bucket, over every database.
    pub lag_seconds: f64,
    /// Gaps recorded when a full spool dropped files (each followed by a fresh snapshot).
    pub gaps: u64,
    pub databases: Vec<DbStatus>,
    /// Pass as `after` for the next page.
    pub next_after: Option<String>,
}

impl Backup {
    /// A page of databases after `after` (by name), with the totals. Blocking (reads `backup.db`).
    pub fn status(&self, after: Option<&str>, limit: usize) -> Result<BackupStatus> {
        let positions = self.positions.all()?;
        let mut page: Vec<_> =
            positions.into_iter().filter(|(key, _)| after.is_none_or(|a| key.to_string().as_str() > a)).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        let oldest = self.oldest_uncaptured();
        let databases = page.iter().map(|(key, pos)| self.db_status(key, pos, &oldest)).collect::<Result<Vec<_>>>()?;
        let remote = self.remote.get().map(|r| r.url("")).unwrap_or_default();
        Ok(BackupStatus {
            health: self.health().to_string(),
            url: remote.trim_end_matches('/').to_owned(),
            interval_ms: self.config.interval.as_millis() as u64,
            lag_seconds: self.lag().as_secs_f64(),
            gaps: self.positions.gaps()?,
            next_after: more.then(|| databases.last().map(|d| d.db.clone())).flatten(),
            databases,
        })
    }

    fn db_status(&self, key: &DbKey, pos: &Position, oldest: &Oldest) -> Result<DbStatus> {
        let objects = self.positions.objects(&pos.root)?;
        let snapshots = objects.iter().filter(|o| o.0 == SNAPSHOT_LEVEL).map(|o| o.3);
        let path = key.path(&self.data_dir);
        let bytes = [path.clone(), super::wal::wal_path(&path)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let lag = [oldest.by_key.get(key).copied(), oldest.by_root.get(&pos.root).copied()].into_iter().flatten().min();
        Ok(DbStatus {
            db: key.to_string(),
            root: pos.root.clone(),
            txid: pos.txid,
            uploaded_txid: pos.uploaded,
            lag_seconds: lag.map_or(0.0, |at| at.elapsed().as_secs_f64()),
            last_snapshot_at: pos.snapshot_at,
            window_from_ms: snapshots.min(),
            window_to_ms: objects.iter().map(|o| o.3).max(),
            objects: objects.len(),
            bytes,
        })
    }

    /// One database's status (`None`: not replicated yet). Blocking (reads `backup.db`).
    pub fn status_of(&self, key: &DbKey) -> Result<Option<DbStatus>> {
        match self.positions.get(key)? {
            Some(pos) => Ok(Some(self.db_status(key, &pos, &self.oldest_uncaptured())?)),
            None => Ok(None),
        }
    }

    /// The first uncaptured or unsent commit per database and per root.
    fn oldest_uncaptured(&self) -> Oldest {
        let mut by_key: HashMap<DbKey, Instant> = HashMap::new();
        let mut by_root: HashMap<String, Instant> = HashMap::new();
        for (key, since) in self.tracker.dirty() {
            by_key.insert(key, since);
        }
        let state = self.state();
        for (key, since) in &state.capturing {
            let at = by_key.entry(key.clone()).or_insert(*since);
            *at = (*at).min(*since);
        }
        for (root, files) in &state.queue {
            if let Some(since) = files.values().filter_map(|q| q.since).min() {
                by_root.insert(root.clone(), since);
            }
        }
        Oldest { by_key, by_root }
    }

    /// Captures `key` now as a full snapshot (a new restore point that needs no earlier file) and answers where
    /// it stands; the upload follows within an interval.
    pub async fn snapshot_now(self: &Arc<Self>, control: &Arc<ControlStore>, key: &DbKey) -> Result<DbStatus> {
        if !key.path(&self.data_dir).exists() {
            return Err(Error::NotFound("database"));
        }
        if self.state().moving.contains(key) {
            return Err(Error::Conflict(format!("{key} is being moved (a restore or a delete); try again")));
        }
        {
            // The capture lock may be held for a whole image's encoding: waited for off the async workers.
            let (backup, key) = (self.clone(), key.clone());
            tokio::task::spawn_blocking(move || -> Result<()> {
                let locks = backup.tracker.locks(&key);
                let _one = locks.capture.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(mut pos) = backup.positions.get(&key)? {
                    // Due at once: the next capture writes a full image.
                    pos.snapshot_at = 0;
                    backup.positions.put(&key, &pos)?;
                }
                Ok(())
            })
            .await??;
        }
        self.capture_one(control, key, Instant::now()).await?;
        let (backup, key) = (self.clone(), key.clone());
        tokio::task::spawn_blocking(move || backup.status_of(&key)).await??.ok_or(Error::NotFound("database"))
    }
}

struct Oldest {
    by_key: HashMap<DbKey, Instant>,
    by_root: HashMap<String, Instant>,
}

/// How often the lag is sampled for the Backups page, and how many samples are kept (an hour).
pub const LAG_SAMPLE: Duration = Duration::from_secs(10);
const LAG_SAMPLES: usize = 360;

impl Backup {
    /// Samples the overall lag every `LAG_SAMPLE` until `stop` (the Backups page's sparkline).
    pub(crate) async fn sample_lag(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let lag = self.lag().as_secs_f32();
            {
                let mut state = self.state();
                if state.lag_samples.len() == LAG_SAMPLES {
                    state.lag_samples.pop_front();
                }
                state.lag_samples.push_back((crate::now_unix(), lag));
            }
            tokio::select! {
                () = tokio::time::sleep(LAG_SAMPLE) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The lag samples of the last hour, oldest first.
    pub fn lag_samples(&self) -> Vec<(i64, f32)> {
        self.state().lag_samples.iter().copied().collect()
    }

    /// The last self-check: (when, replicas checked, problems).
    pub fn last_self_check(&self) -> Option<(i64, usize, Vec<String>)> {
        self.state().self_check.as_ref().map(|c| (c.at_unix, c.checked, c.problems.clone()))
    }
}

/// Seconds as a short text (`0.4 s`, `3 min`), for the CLI and the UI.
pub fn age_text(seconds: f64) -> String {
    let d = Duration::from_secs_f64(seconds.max(0.0));
    match d.as_secs() {
        0..=59 => format!("{:.1} s", d.as_secs_f64()),
        60..=3599 => format!("{} min", d.as_secs() / 60),
        _ => format!("{:.1} h", d.as_secs_f64() / 3600.0),
    }
}
