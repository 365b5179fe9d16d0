//! The sync task: it sleeps until a commit hook fires (idle databases cost nothing); one interval after the
//! oldest commit not captured yet it captures every dirty file into the spool and checkpoints files whose WAL grew
//! long or went quiet. A separate uploader sends each spooled file as soon as it lands, in TXID order per replica
//! root. Errors never reach writers: they are logged, counted, shown by `/readyz`, and retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::backup::capture::{self, CHECKPOINT_FRAMES, SNAPSHOT_LEVEL, Spooled};
use crate::backup::position::Position;
use crate::backup::tracker::DbKey;
use crate::backup::{Backup, Queued, levels, s3};
use crate::control::ControlStore;
use crate::error::{Error, Result};

/// A file whose WAL holds captured frames is checkpointed after this many intervals without a commit.
const IDLE_CHECKPOINT_INTERVALS: u32 = 10;
/// Files captured at once.
const CAPTURES_AT_ONCE: usize = 4;
/// Replica roots uploaded at once.
const UPLOADS_AT_ONCE: usize = 8;

impl Backup {
    /// Runs until `stop` turns true, then does a final sync (capture, checkpoint, upload) and returns.
    pub async fn run(self: Arc<Self>, control: Arc<ControlStore>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let remote = s3::Remote::new(&self.config).await;
        if let Err(err) = remote.probe().await {
            tracing::error!(error = %err, "backup: the bucket does not answer; writes go on and are spooled until it does");
            self.state().upload_error = Some(err.to_string());
        }
        let _ = self.remote.set(remote);
        self.take_up_files(&control).await;
        // Uploads run beside captures, so a bucket that hangs never stops the spool from taking new commits, and
        // a file goes up as soon as it is spooled.
        let uploader = tokio::spawn(self.clone().upload_loop(stop.clone()));
        let self_check = tokio::spawn(self.clone().self_check_loop(stop.clone()));
        let sampler = tokio::spawn(self.clone().sample_lag(stop.clone()));
        let mut last_pass = Instant::now();
        loop {
            let waiting = { !self.state().queue.is_empty() || !self.state().unckpt.is_empty() };
            if !waiting && self.tracker.oldest_dirty().is_none() {
                // Asleep until a commit, or until the next compaction of files already uploaded falls due.
                let compaction = self.next_compaction();
                tokio::select! {
                    () = self.tracker.wake.notified() => {}
                    _ = stop.changed() => {}
                    () = sleep_until(compaction) => {}
                }
            }
            if *stop.borrow() {
                break;
            }
            // A commit is captured one interval after it was made, whatever the last pass took (passes run on the
            // oldest uncaptured commit's clock); a failing capture is retried at most twice an interval.
            let interval = self.config.interval;
            let due = self.tracker.oldest_dirty().map_or(Instant::now() + interval, |at| at + interval);
            let due = due.max(last_pass + interval / 2);
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            last_pass = Instant::now();
            self.pass(&control, false).await;
        }
        let _ = uploader.await;
        self_check.abort();
        sampler.abort();
        self.pass(&control, true).await;
        self.clone().upload().await;
        self.report();
        let left = self.state().queue.values().map(|files| files.len()).sum::<usize>();
        if left > 0 {
            tracing::warn!(files = left, "backup: files still spooled at shutdown are uploaded at the next start");
        }
        self.tracker.unregister();
    }

    /// Start-up: logs the replica roots and marks dirty every database that changed since its position (or has
    /// none yet). Only file metadata is read here: no database is opened.
    async fn take_up_files(&self, control: &Arc<ControlStore>) {
        let slugs = match control.read(crate::control::tables::all_tenant_slugs).await {
            Ok(slugs) => slugs,
            Err(err) => {
                tracing::error!(error = %err, "backup: cannot list tenants");
                Vec::new()
            }
        };
        let known: std::collections::HashMap<DbKey, Position> =
            self.positions.all().unwrap_or_default().into_iter().collect();
        let keys = std::iter::once(DbKey::Control).chain(slugs.into_iter().map(DbKey::Tenant));
        let mut roots = Vec::new();
        for key in keys {
            let path = key.path(&self.data_dir);
            let changed = match known.get(&key) {
                None => true,
                Some(pos) => {
                    roots.push(pos.root.clone());
                    let wal_len = std::fs::metadata(super::wal::wal_path(&path)).map_or(0, |m| m.len());
                    // A WAL of another length than the cursor's (longer: commits after the last capture; shorter:
                    // restarted after a checkpoint) may hold commits not captured.
                    capture::stat(&path) != (pos.db_size, pos.db_mtime_ns) || wal_len != pos.wal_offset
                }
            };
            if changed {
                self.tracker.mark(&key);
            }
        }
        let remote = self.remote.get().map(|r| r.url("")).unwrap_or_default();
        let shown: Vec<&str> = roots.iter().take(100).map(String::as_str).collect();
        tracing::info!(
            url = %remote.trim_end_matches('/'),
            interval_ms = self.config.interval.as_millis() as u64,
            roots = ?shown,
            more = roots.len().saturating_sub(shown.len()),
            "backups on: control at nodes/{}/control/<generation>, tenants at tenants/<slug>/<incarnation>",
            self.node_id
        );
    }

    /// One pass: capture the dirty files, checkpoint, upload, report.
    pub(crate) async fn pass(self: &Arc<Self>, control: &Arc<ControlStore>, last: bool) {
        // Files are captured a few at once, so one file's fsyncs do not hold up the next.
        // Until a file's capture is queued (or put back as dirty), its commits still count as lag.
        let dirty = self.tracker.take_dirty();
        self.state().capturing.extend(dirty.iter().map(|(key, since)| (key.clone(), *since)));
        let results: Vec<Option<String>> = futures_util::stream::iter(dirty)
            .map(|(key, since)| async move {
                let failed = match self.capture_one(control, &key, since).await {
                    Ok(()) => None,
                    Err(err) => {
                        tracing::warn!(db = %key, error = %err, "backup: capture failed; retried next pass");
                        self.count("capture");
                        self.tracker.restore_dirty(key.clone(), since);
                        Some(format!("capture of {key}: {err}"))
                    }
                };
                self.state().capturing.remove(&key);
                failed
            })
            .buffer_unordered(CAPTURES_AT_ONCE)
            .collect()
            .await;
        self.state().capture_error = results.into_iter().flatten().next();
        self.checkpoint_quiet(last).await;
        self.compact().await;
        self.trim_spool();
        self.report();
    }

    /// The position of `key`, made when it has none: tenants replicate under their incarnation (continuing after
    /// the highest TXID already there, should backup.db have been lost); control.db under a new generation.
    async fn position(&self, control: &Arc<ControlStore>, key: &DbKey) -> Result<Option<(Position, bool)>> {
        // A file being moved away (or about to be) keeps its position for the final capture, whatever root the
        // control plane names now; the pass after the move looks at the path afresh.
        if self.state().moving.contains(key) {
            return Ok(None);
        }
        let (root, made_ms) = match key {
            DbKey::Control => match self.positions.get(key)? {
                Some(pos) => return Ok(Some((pos, false))),
                None => (format!("nodes/{}/control/{}", self.node_id, uuid::Uuid::now_v7()), Some(i64::MAX)),
            },
            DbKey::Tenant(slug) => match control.tenant(slug).await? {
                Some(tenant) => tenant_root(slug, tenant.incarnation.as_deref()),
                None => return Ok(None),
            },
        };
        // A position of an older tenant of this slug (archived while no backup ran) is not this tenant's.
        if let Some(pos) = self.positions.get(key)? {
            if pos.root == root {
                return Ok(Some((pos, false)));
            }
            self.positions.delete(key)?;
        }
        let remote = self.remote.get().ok_or_else(|| Error::internal("the bucket client is not ready"))?;
        // A root made after this node's backup.db cannot hold files yet; an older one may (backup.db was lost),
        // and then this replica continues after the highest TXID there.
        let fresh = made_ms.is_some_and(|made| made > self.positions.created_ms());
        let base = if fresh { 0 } else { remote.max_txid(&root).await? };
        tracing::info!(db = %key, root = %remote.url(&root), after_txid = base, "backup: new replica root");
        Ok(Some((Position { root, txid: base, uploaded: base, need_image: true, ..Position::default() }, true)))
    }

    /// The first position of a tenant file archived before any pass captured it (deleted right after it was made):
    /// under the incarnation stamped in the file, when that root is newer than this node's backup.db and so holds
    /// nothing yet. (An older root may hold files whose highest TXID only the bucket knows; that case keeps what
    /// the passes captured.)
    pub(crate) fn first_position_of_archived(&self, key: &DbKey) -> Option<Position> {
        let DbKey::Tenant(slug) = key else { return None };
        if !matches!(self.positions.get(key), Ok(None)) {
            return None;
        }
        let stamp = crate::db::registry::incarnation_of(&key.path(&self.data_dir)).ok()?;
        let (root, made_ms) = tenant_root(slug, stamp.as_deref());
        if made_ms.is_none_or(|made| made <= self.positions.created_ms()) {
            tracing::warn!(db = %key, root, "backup: a file archived before its first capture, under a root that may hold files; not captured");
            return None;
        }
        tracing::info!(db = %key, root, "backup: new replica root (final capture of an archived file)");
        Some(Position { root, need_image: true, ..Position::default() })
    }

    /// Captures `key` now and waits (at most `within`) until every file of its replica root is in the bucket:
    /// a live restore's "latest" then includes the last commit.
    pub(crate) async fn flush(
        self: &Arc<Self>,
        control: &Arc<ControlStore>,
        key: &DbKey,
        within: Duration,
    ) -> Result<()> {
        self.capture_one(control, key, Instant::now()).await?;
        let Some(root) = self.positions.get(key)?.map(|p| p.root) else { return Ok(()) };
        let deadline = Instant::now() + within;
        loop {
            let (waiting, failing) = {
                let state = self.state();
                (state.queue.get(&root).is_some_and(|files| !files.is_empty()), state.upload_error.clone())
            };
            if !waiting {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady(format!(
                    "the tenant's last commits are not in the bucket after {} s{}; nothing changed",
                    within.as_secs(),
                    failing.map(|e| format!(" ({e})")).unwrap_or_default()
                )));
            }
            self.queued.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn capture_one(
        self: &Arc<Self>,
        control: &Arc<ControlStore>,
        key: &DbKey,
        since: Instant,
    ) -> Result<()> {
        let Some((pos, fresh)) = self.position(control, key).await? else { return Ok(()) };
        // Reading committed frames needs no writer turn (frames are checked as they are read), so writers go on
        // while the file is encoded, fsynced and recorded; only a checkpoint takes their turn.
        let backup = self.clone();
        let key = key.clone();
        let fresh = fresh.then_some(pos);
        let k = key.clone();
        tokio::task::spawn_blocking(move || backup.capture_blocking(&k, since, fresh)).await??;
        let frames = self.positions.get(&key)?.map_or(0, |p| capture::captured_frames(&p));
        if frames >= CHECKPOINT_FRAMES {
            self.checkpoint_now(&key).await?;
        }
        // The commit hook fires before the commit frame is written: a writer that does not take the writer turn
        // (control.db's) may still be writing it. A WAL longer than the cursor is looked at once more next pass.
        let wal_len = std::fs::metadata(super::wal::wal_path(&key.path(&self.data_dir))).map_or(0, |m| m.len());
        let behind = self.positions.get(&key)?.is_some_and(|p| wal_len > p.wal_offset.max(super::wal::WAL_HEADER_SIZE));
        let again = {
            let mut state = self.state();
            if behind {
                state.rechecked.insert(key.clone())
            } else {
                state.rechecked.remove(&key);
                false
            }
        };
        if again {
            self.tracker.restore_dirty(key, since);
        }
        Ok(())
    }

    /// Captures `key` into the spool and moves its position (blocking).
    /// `since`: the first commit this capture takes (the lag of its file runs from there).
    /// `fresh`: the position of a database replicated for the first time (used when it still has none; a
    /// position deleted meanwhile by an archive is never brought back).
    pub(crate) fn capture_blocking(
        &self,
        key: &DbKey,
        since: Instant,
        fresh: Option<Position>,
    ) -> Result<Option<Spooled>> {
        let locks = self.tracker.locks(key);
        let _one = locks.capture.lock().unwrap_or_else(|e| e.into_inner());
        // While a file is moved away only its own position is captured (the final capture, into its root); a
        // position for the next file waits until that file is in place.
        let stored = self.positions.get(key)?;
        if stored.is_none() && self.state().moving.contains(key) {
            return Ok(None);
        }
        let Some(mut pos) = stored.or(fresh) else { return Ok(None) };
        let path = key.path(&self.data_dir);
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let due = crate::now_unix() - pos.snapshot_at >= self.config.snapshot_interval.as_secs() as i64;
        let started = Instant::now();
        let image = due && pos.txid > 0;
        let file = capture::capture(&path, &mut pos, image, &self.spool, now_ms)?;
        self.positions.put(key, &pos)?;
        if let Some(file) = &file {
            self.metrics.record(|| {
                metrics::histogram!("gatehouse_backup_capture_seconds").record(started.elapsed().as_secs_f64());
            });
            self.enqueue(key.clone(), file.clone(), Some(since));
            self.state().unckpt.insert(key.clone(), Instant::now());
        }
        Ok(file)
    }

    /// Checkpoints files captured and quiet since (all of them on the last pass), under their writer turn.
    async fn checkpoint_quiet(self: &Arc<Self>, all: bool) {
        let due: Vec<DbKey> = {
            let state = self.state();
            let quiet = self.config.interval * IDLE_CHECKPOINT_INTERVALS;
            state.unckpt.iter().filter(|(_, at)| all || at.elapsed() >= quiet).map(|(k, _)| k.clone()).collect()
        };
        for key in due {
            if let Err(err) = self.checkpoint_now(&key).await {
                tracing::warn!(db = %key, error = %err, "backup: checkpoint failed; retried next pass");
                self.count("checkpoint");
            }
        }
    }

    /// Checkpoints `key` under its writer turn, after capturing what was committed since the last capture (a
    /// commit must never be checkpointed uncaptured).
    async fn checkpoint_now(self: &Arc<Self>, key: &DbKey) -> Result<()> {
        let locks = self.tracker.locks(key);
        let _turn = locks.writer.clone().lock_owned().await;
        let held = Instant::now();
        let backup = self.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            backup.capture_blocking(&k, Instant::now(), None)?;
            let locks = backup.tracker.locks(&k);
            let _one = locks.capture.lock().unwrap_or_else(|e| e.into_inner());
            let Some(mut pos) = backup.positions.get(&k)? else { return Ok(()) };
            capture::checkpoint(&k.path(&backup.data_dir), &mut pos)?;
            backup.positions.put(&k, &pos)
        })
        .await??;
        self.metrics.record(|| {
            metrics::counter!("gatehouse_backup_checkpoints_total").increment(1);
            metrics::histogram!("gatehouse_backup_checkpoint_turn_seconds").record(held.elapsed().as_secs_f64());
        });
        self.state().unckpt.remove(key);
        Ok(())
    }

    /// Keeps the spool's unsent L0 files under `GATEHOUSE_BACKUP_MAX_SPOOL_MB`: while they are over, the replica
    /// root with the oldest unsent commit loses its unsent L0 files and snapshots (a gap, recorded) and its next
    /// capture is a full image, so the replica restores again once that image is uploaded. That image is not
    /// counted against the cap (a database larger than the cap still gets one), and each root keeps at most one
    /// unsent image after a trim.
    fn trim_spool(&self) {
        let mut tried = std::collections::HashSet::new();
        loop {
            let choice = {
                let state = self.state();
                // The cap is on the incremental stream (L0); the one image a trimmed root gets is on top of it.
                let l0: u64 = state
                    .queue
                    .values()
                    .flat_map(|f| f.values())
                    .filter(|q| q.file.level == 0)
                    .map(|q| q.file.bytes)
                    .sum();
                if l0 <= self.config.max_spool_bytes {
                    return;
                }
                state
                    .queue
                    .iter()
                    .filter(|(root, _)| !tried.contains(*root))
                    .filter_map(|(root, files)| {
                        let oldest = files.values().filter(|q| q.file.level == 0).filter_map(|q| q.since).min()?;
                        let key = files.values().next()?.key.clone();
                        Some((oldest, root.clone(), key))
                    })
                    .min()
            };
            let Some((_, root, key)) = choice else { return };
            tried.insert(root.clone());
            // No capture of this file runs while its queue is cut and its position marked.
            let locks = self.tracker.locks(&key);
            let _one = locks.capture.lock().unwrap_or_else(|e| e.into_inner());
            let dropped: Vec<Queued> = {
                let mut state = self.state();
                let Some(files) = state.queue.get_mut(&root) else { continue };
                // Its unsent L0 files, and its unsent snapshots: all are before the gap, and the image that
                // follows holds everything they do.
                let gone: Vec<(u64, u8)> = files
                    .iter()
                    .filter(|(_, q)| q.file.level == 0 || q.file.level == SNAPSHOT_LEVEL)
                    .map(|(k, _)| *k)
                    .collect();
                let dropped: Vec<Queued> = gone.iter().filter_map(|k| files.remove(k)).collect();
                if files.is_empty() {
                    state.queue.remove(&root);
                }
                state.spool_bytes -= dropped.iter().map(|q| q.file.bytes).sum::<u64>();
                dropped
            };
            let Some(after) =
                dropped.iter().filter(|q| q.file.level == 0).map(|q| q.file.min_txid.saturating_sub(1)).min()
            else {
                continue;
            };
            for queued in &dropped {
                let _ = self.spool.remove(&queued.file);
            }
            if let Ok(Some(mut pos)) = self.positions.get(&key)
                && pos.root == root
            {
                pos.need_image = true;
                let _ = self.positions.put(&key, &pos);
            }
            let _ = self.positions.record_gap(&key, &root, after, "spool over GATEHOUSE_BACKUP_MAX_SPOOL_MB");
            self.count("spool_full");
            tracing::error!(db = %key, root, after_txid = after, files = dropped.len(),
                "backup: the spool is full; unsent files were dropped (a point-in-time gap) and a full image follows");
            let since = dropped.iter().filter_map(|q| q.since).min().unwrap_or_else(Instant::now);
            self.tracker.restore_dirty(key, since);
            self.tracker.wake.notify_one();
        }
    }

    /// Uploads whatever is queued, as soon as it is queued, until `stop`; after a failure it waits an interval.
    async fn upload_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            // A file queued while a round runs leaves a permit, so no wake is lost.
            tokio::select! {
                () = self.queued.notified() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            while !self.clone().upload().await {
                tokio::select! {
                    () = tokio::time::sleep(self.config.interval) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
            }
        }
    }

    /// Uploads every root's spooled files in order (a few roots at once): false when an upload failed (those
    /// files stay queued).
    async fn upload(self: Arc<Self>) -> bool {
        let Some(remote) = self.remote.get() else { return false };
        let roots: Vec<Vec<Queued>> = self
            .state()
            .queue
            .values()
            .map(|files| files.values().cloned().collect())
            .filter(|f: &Vec<Queued>| !f.is_empty())
            .collect();
        if roots.is_empty() {
            return true;
        }
        let results: Vec<Result<()>> = futures_util::stream::iter(roots)
            .map(|files| self.upload_root(remote, files))
            .buffer_unordered(UPLOADS_AT_ONCE)
            .collect()
            .await;
        let failed = results.into_iter().find_map(|r| r.err());
        let ok = failed.is_none();
        let mut state = self.state();
        match failed {
            Some(err) => {
                if state.upload_error.is_none() {
                    tracing::error!(error = %err, "backup: upload failed; writes go on, files stay spooled and are retried");
                }
                state.upload_error = Some(err.to_string());
            }
            None => {
                if state.upload_error.take().is_some() {
                    tracing::info!("backup: uploads work again");
                }
            }
        }
        ok
    }

    async fn upload_root(&self, remote: &s3::Remote, files: Vec<Queued>) -> Result<()> {
        let root = files.first().map(|q| q.file.root.clone());
        self.upload_files(remote, files).await?;
        if let Some(root) = root {
            self.retain(remote, &root).await?;
        }
        Ok(())
    }

    /// Deletes what retention no longer needs from `root` (at most once per L1 interval).
    async fn retain(&self, remote: &s3::Remote, root: &str) -> Result<()> {
        {
            let mut state = self.state();
            if state.retained.get(root).is_some_and(|at| at.elapsed() < self.config.levels[0]) {
                return Ok(());
            }
            state.retained.insert(root.to_owned(), Instant::now());
        }
        let now_ms = crate::backup::capture::now_ms();
        let l0 = self.config.levels[0] * levels::L0_KEPT_INTERVALS;
        for (level, min, max) in levels::expired(&self.positions.objects(root)?, now_ms, self.config.retention, l0) {
            let key = Spooled { root: root.to_owned(), level, min_txid: min, max_txid: max, bytes: 0 }.key();
            if let Err(err) = remote.delete(&key).await {
                self.count("retention");
                return Err(err);
            }
            self.positions.deleted(root, level, (min, max))?;
            self.metrics.record(|| metrics::counter!("gatehouse_backup_deletes_total").increment(1));
        }
        Ok(())
    }

    /// Merges, for every root and level whose interval has passed, the run of local files of the level below
    /// into one file of that level (queued for upload like any other).
    async fn compact(self: &Arc<Self>) {
        let due: Vec<(String, u8, Vec<Spooled>)> = {
            let mut state = self.state();
            let mut due = Vec::new();
            let roots: Vec<String> = state.local.keys().cloned().collect();
            for root in roots {
                for level in 1..=3u8 {
                    let below: Vec<Spooled> =
                        state.local[&root].range((level - 1, 0)..(level, 0)).map(|(_, f)| f.clone()).collect();
                    if below.is_empty() {
                        continue;
                    }
                    let last = state.compacted.entry((root.clone(), level)).or_insert_with(Instant::now);
                    if last.elapsed() < self.config.levels[usize::from(level) - 1] {
                        continue;
                    }
                    *last = Instant::now();
                    let run = levels::contiguous_run(&below);
                    if !run.is_empty() {
                        due.push((root.clone(), level, run));
                    }
                }
            }
            due
        };
        for (root, level, run) in due {
            let backup = self.clone();
            let merged = tokio::task::spawn_blocking(move || -> Result<(Spooled, Vec<Spooled>)> {
                let file = levels::merge(&backup.local, &backup.spool, &root, level, &run)?;
                Ok((file, run))
            })
            .await
            .map_err(Error::from)
            .and_then(|r| r);
            match merged {
                Ok((file, inputs)) => {
                    let Some(key) = super::root_key(&file.root) else { continue };
                    self.enqueue(key, file, None);
                    let mut state = self.state();
                    for input in &inputs {
                        let _ = self.local.remove(input);
                        if let Some(files) = state.local.get_mut(&input.root) {
                            files.remove(&(input.level, input.min_txid));
                        }
                    }
                    state.local.retain(|_, files| !files.is_empty());
                }
                Err(err) => {
                    tracing::warn!(error = %err, level, "backup: compaction failed; retried at the next interval");
                    self.count("compaction");
                }
            }
        }
    }

    /// When the next compaction falls due (`None`: no local file waits for one).
    fn next_compaction(&self) -> Option<Instant> {
        let state = self.state();
        let mut next: Option<Instant> = None;
        for (root, files) in &state.local {
            for level in 1..=3u8 {
                if files.range((level - 1, 0)..(level, 0)).next().is_none() {
                    continue;
                }
                let interval = self.config.levels[usize::from(level) - 1];
                let due = state.compacted.get(&(root.clone(), level)).map_or_else(Instant::now, |at| *at + interval);
                next = Some(next.map_or(due, |n: Instant| n.min(due)));
            }
        }
        next
    }

    async fn upload_files(&self, remote: &s3::Remote, files: Vec<Queued>) -> Result<()> {
        for queued in files {
            let path = self.spool.path(&queued.file);
            let body = tokio::fs::read(&path).await.map_err(Error::internal)?;
            let header = super::ltx::decode_header(&body)?;
            let started = Instant::now();
            let put = remote.put(&queued.file.key(), body, header.timestamp_ms).await;
            self.metrics.record(|| {
                metrics::histogram!("gatehouse_backup_upload_seconds").record(started.elapsed().as_secs_f64());
            });
            if let Err(err) = put {
                self.count("upload");
                return Err(err);
            }
            let file = &queued.file;
            self.positions.uploaded(&file.root, file.level, (file.min_txid, file.max_txid), header.timestamp_ms)?;
            // L0-L2 files stay until the next level takes them in; L3 and snapshots are only in the bucket.
            let keep = file.level < 3;
            if keep {
                let to = self.local.path(file);
                if let Some(dir) = to.parent() {
                    std::fs::create_dir_all(dir).map_err(Error::internal)?;
                }
                std::fs::rename(&path, &to).map_err(Error::internal)?;
            } else {
                self.spool.remove(file)?;
            }
            let mut state = self.state();
            if keep {
                state.local.entry(file.root.clone()).or_default().insert((file.level, file.min_txid), file.clone());
            }
            if let Some(root) = state.queue.get_mut(&queued.file.root) {
                root.remove(&(queued.file.max_txid, queued.file.level));
                if root.is_empty() {
                    state.queue.remove(&queued.file.root);
                }
            }
            state.spool_bytes = state.spool_bytes.saturating_sub(queued.file.bytes);
            state.last_upload = Some(Instant::now());
            drop(state);
            self.metrics.record(|| {
                metrics::counter!("gatehouse_backup_uploads_total").increment(1);
                metrics::counter!("gatehouse_backup_upload_bytes_total").increment(queued.file.bytes);
            });
        }
        Ok(())
    }

    fn count(&self, stage: &'static str) {
        self.metrics.record(|| metrics::counter!("gatehouse_backup_errors_total", "stage" => stage).increment(1));
    }

    /// Updates the gauges, and logs a stall once when it begins (`Backup::stalled`).
    fn report(&self) {
        let lag = self.lag();
        let stall = self.stalled();
        let stalled = stall.is_some();
        let mut state = self.state();
        let pending = !state.queue.is_empty();
        if !pending && self.tracker.oldest_dirty().is_none() {
            state.last_synced_unix = crate::now_unix();
        }
        if stalled && !state.stalled {
            tracing::error!(lag_secs = lag.as_secs(), "backup: stalled: commits are not reaching the bucket");
        }
        state.stalled = stalled;
        let (spool, synced) = (state.spool_bytes, state.last_synced_unix);
        // Per database: the oldest commit not uploaded (queued files, files being captured, commits not captured).
        let mut oldest: std::collections::HashMap<DbKey, Instant> = std::collections::HashMap::new();
        for queued in state.queue.values().flat_map(|files| files.values()) {
            if let Some(since) = queued.since {
                let at = oldest.entry(queued.key.clone()).or_insert(since);
                *at = (*at).min(since);
            }
        }
        let active: Vec<DbKey> = state.unckpt.keys().cloned().collect();
        let capturing: Vec<(DbKey, Instant)> = state.capturing.iter().map(|(k, at)| (k.clone(), *at)).collect();
        drop(state);
        for (key, since) in self.tracker.dirty().into_iter().chain(capturing) {
            let at = oldest.entry(key).or_insert(since);
            *at = (*at).min(since);
        }
        // WAL bytes of the files with work pending: what checkpoints are holding back.
        let mut keys: Vec<&DbKey> = active.iter().chain(oldest.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        let wal_bytes: u64 = keys
            .iter()
            .map(|key| std::fs::metadata(super::wal::wal_path(&key.path(&self.data_dir))).map_or(0, |m| m.len()))
            .sum();
        let per_db: Vec<(String, f64)> = if self.per_db_metrics {
            let mut lags: Vec<(String, f64)> =
                oldest.iter().map(|(key, at)| (key.to_string(), at.elapsed().as_secs_f64())).collect();
            // Databases caught up since the last report read 0.
            let mut shown = self.state().lag_series.clone();
            for (db, _) in &lags {
                shown.remove(db);
            }
            lags.extend(shown.into_iter().map(|db| (db, 0.0)));
            self.state().lag_series = oldest.keys().map(ToString::to_string).collect();
            lags
        } else {
            Vec::new()
        };
        self.metrics.record(|| {
            metrics::gauge!("gatehouse_backup_lag_seconds").set(lag.as_secs_f64());
            metrics::gauge!("gatehouse_backup_spool_bytes").set(spool as f64);
            metrics::gauge!("gatehouse_backup_wal_bytes").set(wal_bytes as f64);
            for (db, lag) in per_db {
                metrics::gauge!("gatehouse_backup_db_lag_seconds", "db" => db).set(lag);
            }
            metrics::gauge!("gatehouse_backup_stalled").set(if stalled { 1.0 } else { 0.0 });
            if synced > 0 {
                metrics::gauge!("gatehouse_backup_last_sync_timestamp").set(synced as f64);
            }
        });
    }
}

/// The replica root of a tenant incarnation, and when the incarnation was made (ms since the epoch).
/// Incarnations are UUIDv7s made by CreateTenant; anything else (a tenant from before incarnations) replicates
/// under `legacy`, and never reaches a path unchecked.
pub(crate) fn tenant_root(slug: &crate::tenants::TenantSlug, incarnation: Option<&str>) -> (String, Option<i64>) {
    match incarnation.and_then(|i| uuid::Uuid::parse_str(i).ok()) {
        Some(id) => {
            let made = id.get_timestamp().map(|t| {
                let (secs, nanos) = t.to_unix();
                secs as i64 * 1000 + i64::from(nanos / 1_000_000)
            });
            (format!("tenants/{slug}/{}", id.hyphenated()), made)
        }
        None => (format!("tenants/{slug}/legacy"), None),
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
