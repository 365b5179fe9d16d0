//! Restoring a replica root into a new database file, from replicas written by Gatehouse or by Litestream 0.5.
//!
//! The plan is Litestream's (`CalcRestorePlan`, research note §1.3): the newest snapshot (level 9) at or before
//! the target, then, again and again, the file of any level that extends the contiguous TXIDs furthest (ties: the
//! larger MaxTXID, the smaller MinTXID, the higher level). A target is the latest state, a TXID, or a time; times
//! are the commit times in the LTX headers, read with ranged GETs and binary-searched per level (TXIDs and times
//! rise together within a level), so a point-in-time restore reads a few headers, not every file's.
//!
//! The files are downloaded a few at a time into a work directory beside the output, then applied in order page
//! by page (memory: one page), the result cut to the last commit's size, fsynced, checked with
//! `integrity_check`, and only then linked to the output path (never replacing a file). Nothing is left behind on
//! error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;

use crate::backup::capture::SNAPSHOT_LEVEL;
use crate::backup::ltx;
use crate::backup::s3::{Remote, RemoteFile};
use crate::error::{Error, Result};

/// Files downloaded at once.
const DOWNLOADS_AT_ONCE: usize = 8;

/// What state to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Latest,
    /// The state right after this TXID.
    Txid(u64),
    /// The newest state committed at or before this time (milliseconds since the Unix epoch).
    Time(i64),
}

/// The files a restore applies, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub files: Vec<RemoteFile>,
    /// The TXID the restored database is at.
    pub txid: u64,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub txid: u64,
    /// The commit time of the last file applied (ms).
    pub timestamp_ms: i64,
    pub files: usize,
    pub bytes: u64,
    pub pages: u64,
    pub db_bytes: u64,
    pub seconds: f64,
}

/// Progress of a restore, for a terminal bar, log lines or the API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub files_done: usize,
    pub files: usize,
    pub bytes_done: u64,
    pub bytes: u64,
    /// False while downloading, true while applying and checking.
    pub applying: bool,
}

fn fail(message: impl Into<String>) -> Error {
    Error::Internal(message.into())
}

/// The replica holds no state for the point asked for (a client's error, not the server's).
fn no_point(message: impl Into<String>) -> Error {
    Error::NoRestorePoint(message.into())
}

/// An LTX timestamp (ms) as RFC 3339, for messages.
pub(crate) fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The chain of files to apply among `files` (those `allowed` by the target): the newest allowed snapshot,
/// then the contiguous extension. With `strict`, an allowed file beyond a gap is an error (Litestream's check for
/// a latest restore; time targets are held to it too), never silently left out.
pub fn chain(files: &[RemoteFile], allowed: impl Fn(&RemoteFile) -> bool, strict: bool) -> Result<Plan> {
    let snapshot = files
        .iter()
        .filter(|f| f.level == SNAPSHOT_LEVEL && f.min_txid == 1 && allowed(f))
        .max_by_key(|f| f.max_txid)
        .ok_or_else(|| no_point("no snapshot at or before the target (no restore point)"))?;
    let mut chosen = vec![snapshot.clone()];
    let mut current = snapshot.max_txid;
    loop {
        let next = files
            .iter()
            .filter(|f| f.level < SNAPSHOT_LEVEL && allowed(f))
            .filter(|f| f.min_txid <= current.saturating_add(1) && f.max_txid > current)
            .max_by(|a, b| {
                (a.max_txid, std::cmp::Reverse(a.min_txid), a.level).cmp(&(
                    b.max_txid,
                    std::cmp::Reverse(b.min_txid),
                    b.level,
                ))
            });
        match next {
            Some(file) => {
                current = file.max_txid;
                chosen.push(file.clone());
            }
            None => break,
        }
    }
    if strict
        && let Some(after) = files
            .iter()
            .filter(|f| f.level < SNAPSHOT_LEVEL && allowed(f) && f.min_txid > current.saturating_add(1))
            .min_by_key(|f| f.min_txid)
    {
        return Err(no_point(format!(
            "non-contiguous files: the chain ends at TXID {current} and level {} resumes at TXID {} (a gap)",
            after.level, after.min_txid
        )));
    }
    Ok(Plan { files: chosen, txid: current })
}

/// Commit times of files (their LTX headers), read once each.
struct Stamps<'a> {
    remote: &'a Remote,
    root: &'a str,
    known: HashMap<(u8, u64, u64), i64>,
}

impl Stamps<'_> {
    async fn of(&mut self, file: &RemoteFile) -> Result<i64> {
        let id = (file.level, file.min_txid, file.max_txid);
        if let Some(at) = self.known.get(&id) {
            return Ok(*at);
        }
        let at = self.remote.header(&self.remote.file_key(self.root, file)).await?.timestamp_ms;
        self.known.insert(id, at);
        Ok(at)
    }

    /// The restore window: the oldest snapshot's time and the newest file's.
    async fn window(&mut self, files: &[RemoteFile]) -> Result<Option<(i64, i64)>> {
        let Some(first) = files.iter().filter(|f| f.level == SNAPSHOT_LEVEL).min_by_key(|f| f.max_txid) else {
            return Ok(None);
        };
        let Some(last) = files.iter().max_by_key(|f| (f.max_txid, f.level)) else { return Ok(None) };
        Ok(Some((self.of(first).await?, self.of(last).await?)))
    }

    /// How many of `level` (sorted by TXID) were committed at or before `time`.
    async fn count_until(&mut self, level: &[RemoteFile], time: i64) -> Result<usize> {
        let (mut lo, mut hi) = (0, level.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.of(&level[mid]).await? <= time {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

/// Plans a restore of `root` to `target`.
pub async fn plan(remote: &Remote, root: &str, target: Target) -> Result<Plan> {
    let files = remote.list(root).await?;
    if files.is_empty() {
        return Err(no_point(format!("no LTX files under {}", remote.url(root))));
    }
    match target {
        Target::Latest => chain(&files, |_| true, true),
        Target::Txid(txid) => {
            let plan = chain(&files, |f| f.max_txid <= txid, false)?;
            if plan.txid != txid {
                return Err(no_point(format!(
                    "TXID {txid} is not a restore point; the nearest at or before it is {} (compacted levels keep \
                     only their boundaries)",
                    plan.txid
                )));
            }
            Ok(plan)
        }
        Target::Time(time) => {
            let mut stamps = Stamps { remote, root, known: HashMap::new() };
            let mut allowed: HashMap<u8, u64> = HashMap::new();
            for level in 0..=SNAPSHOT_LEVEL {
                let of_level: Vec<RemoteFile> = files.iter().filter(|f| f.level == level).cloned().collect();
                if of_level.is_empty() {
                    continue;
                }
                let n = stamps.count_until(&of_level, time).await?;
                // Files of a level at or before `time` are a prefix in TXID order: the last one's MaxTXID bounds it.
                if n > 0 {
                    allowed.insert(level, of_level[n - 1].max_txid);
                }
            }
            let within = |f: &RemoteFile| allowed.get(&f.level).is_some_and(|max| f.max_txid <= *max);
            if !files.iter().any(|f| f.level == SNAPSHOT_LEVEL && f.min_txid == 1 && within(f)) {
                let shown = match stamps.window(&files).await? {
                    Some((from, to)) => format!("{} to {}", time_text(from), time_text(to)),
                    None => "none (no snapshot)".to_owned(),
                };
                return Err(no_point(format!(
                    "{} is outside the restore window of {}: {shown}",
                    time_text(time),
                    remote.url(root)
                )));
            }
            chain(&files, within, true)
        }
    }
}

/// Restores `root` to `target` into `out`, which must not exist. `progress` is called as files arrive and
/// once applying starts.
pub async fn restore(
    remote: &Remote,
    root: &str,
    target: Target,
    out: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Restored> {
    let started = Instant::now();
    if out.exists() {
        return Err(fail(format!("{} exists; restore writes a new file", out.display())));
    }
    let plan = plan(remote, root, target).await?;
    // A work directory of this restore's own (made exclusively, owner only), removed with everything in it.
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let work = PathBuf::from(format!("{}.restore-{}-{stamp}", out.display(), std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&work)
            .map_err(|e| fail(format!("cannot make {}: {e}", work.display())))?;
    }
    let result = fetch_and_apply(remote, root, &plan, &work, out, progress).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(work)).await;
    let (pages, timestamp_ms, db_bytes) = result?;
    Ok(Restored {
        txid: plan.txid,
        timestamp_ms,
        files: plan.files.len(),
        bytes: plan.bytes(),
        pages,
        db_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn fetch_and_apply(
    remote: &Remote,
    root: &str,
    plan: &Plan,
    work: &Path,
    out: &Path,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(u64, i64, u64)> {
    let mut state = Progress { files: plan.files.len(), bytes: plan.bytes(), ..Progress::default() };
    progress(state);
    // Owned keys and paths: the futures borrow nothing from the iterator, so a restore can run on a spawned task.
    let jobs: Vec<(String, PathBuf)> = plan
        .files
        .iter()
        .enumerate()
        .map(|(i, file)| (remote.file_key(root, file), work.join(format!("{i:06}.ltx"))))
        .collect();
    let mut downloads = futures_util::stream::iter(jobs)
        .map(|(key, path)| async move {
            let size = remote.download(&key, &path).await?;
            Ok::<_, Error>((path, size))
        })
        .buffered(DOWNLOADS_AT_ONCE);
    let mut paths = Vec::with_capacity(plan.files.len());
    while let Some(done) = downloads.next().await {
        let (path, size) = done?;
        paths.push(path);
        state.files_done += 1;
        state.bytes_done += size;
        progress(state);
    }
    state.applying = true;
    progress(state);
    let keys: Vec<String> = plan.files.iter().map(|f| remote.file_key(root, f)).collect();
    let db = work.join("db");
    let out = out.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<(u64, i64, u64)> {
        let (pages, stamp, size) = apply(&paths, &keys, &db)?;
        check(&db)?;
        // Into place without replacing anything that appeared meanwhile: a link fails if the name exists.
        std::fs::hard_link(&db, &out).map_err(|e| fail(format!("cannot create {}: {e}", out.display())))?;
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::internal)?;
        Ok((pages, stamp, size))
    })
    .await?
}

/// Applies LTX files (the first a snapshot, each continuing the TXIDs of the one before) to a new file at `db`:
/// (pages written, the last file's timestamp, the database's size in bytes). `keys` name the files in errors.
pub fn apply(files: &[PathBuf], keys: &[String], db: &Path) -> Result<(u64, i64, u64)> {
    use std::io::BufReader;
    use std::os::unix::fs::FileExt;
    let out = std::fs::OpenOptions::new().create_new(true).write(true).open(db).map_err(Error::internal)?;
    let (mut pages, mut txid, mut page_size, mut commit, mut stamp) = (0u64, 0u64, 0u32, 0u32, 0i64);
    for (path, key) in files.iter().zip(keys) {
        let named = |e: Error| fail(format!("{key}: {e}"));
        let input = std::fs::File::open(path).map_err(Error::internal)?;
        let mut reader = BufReader::with_capacity(1 << 20, input);
        // Pages land as they are read; the header's fit (a snapshot first, contiguous TXIDs, one page size) is
        // checked after the file, and any misfit discards the whole work file. Pages a database grew into that no
        // file holds read as zeros, which `integrity_check` reports.
        let header = ltx::read_pages(&mut reader, |pgno, page| {
            let offset = u64::from(pgno - 1) * page.len() as u64;
            out.write_all_at(page, offset).map_err(Error::internal)?;
            pages += 1;
            Ok(())
        })
        .map_err(named)?;
        if txid == 0 && header.min_txid != 1 {
            return Err(fail(format!("{key}: the chain does not start with a snapshot")));
        }
        if txid > 0 && (header.min_txid > txid.saturating_add(1) || header.max_txid <= txid) {
            return Err(fail(format!("{key}: TXIDs {}-{} do not continue {txid}", header.min_txid, header.max_txid)));
        }
        if page_size != 0 && header.page_size != page_size {
            return Err(fail(format!("{key}: page size {} after {page_size}", header.page_size)));
        }
        (txid, page_size, commit, stamp) = (header.max_txid, header.page_size, header.commit, header.timestamp_ms);
    }
    // Pages past the last commit belong to a database that shrank since.
    let size = u64::from(commit) * u64::from(page_size);
    out.set_len(size).map_err(Error::internal)?;
    out.sync_all().map_err(Error::internal)?;
    Ok((pages, stamp, size))
}

/// `integrity_check` on a restored file (in the restore's work directory; SQLite's `-wal`/`-shm` for it, if
/// any, stay there).
pub fn check(db: &Path) -> Result<()> {
    use rusqlite::OpenFlags;
    let conn =
        rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<_>>()?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(fail(format!("the restored database fails integrity_check: {}", rows.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(level: u8, min: u64, max: u64) -> RemoteFile {
        RemoteFile { level, min_txid: min, max_txid: max, ..RemoteFile::default() }
    }

    #[test]
    fn the_plan_takes_the_newest_snapshot_then_the_furthest_file() {
        let files = vec![
            file(0, 5, 5),
            file(0, 6, 6),
            file(0, 7, 7),
            file(1, 2, 6),
            file(1, 7, 7),
            file(9, 1, 1),
            file(9, 1, 4),
        ];
        let plan = chain(&files, |_| true, true).unwrap();
        assert_eq!(plan.files, vec![file(9, 1, 4), file(1, 2, 6), file(1, 7, 7)], "ties go to the higher level");
        assert_eq!(plan.txid, 7);
        // A TXID target: only files ending at or before it.
        let plan = chain(&files, |f| f.max_txid <= 5, false).unwrap();
        assert_eq!(plan.files, vec![file(9, 1, 4), file(0, 5, 5)]);
        // A gap fails a latest restore and names where the chain stops.
        let gapped = vec![file(9, 1, 3), file(0, 4, 4), file(0, 6, 6)];
        let err = chain(&gapped, |_| true, true).unwrap_err().to_string();
        assert!(err.contains("ends at TXID 4") && err.contains("resumes at TXID 6"), "{err}");
        assert!(chain(&[file(0, 1, 1)], |_| true, true).is_err(), "no snapshot, no plan");
    }

    #[test]
    fn remote_keys_parse_as_litestream_names_them() {
        assert_eq!(RemoteFile::parse("0001/00000000000000a1-00000000000000b0.ltx"), Some(file(1, 0xa1, 0xb0)));
        assert_eq!(RemoteFile::parse("0009/0000000000000001-0000000000000010.ltx"), Some(file(9, 1, 16)));
        for bad in [
            "0001/a1-b0.ltx",
            "1/0000000000000001-0000000000000001.ltx",
            "000a/x",
            "0001/00000000000000A1-00000000000000b0.ltx",
        ] {
            assert_eq!(RemoteFile::parse(bad), None, "{bad}");
        }
    }
}
