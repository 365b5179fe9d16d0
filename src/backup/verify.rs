//! Checking replicas (`gatehouse backup verify`, the daily self-check) and listing their restore points
//! (`gatehouse backup list`). Verification reads every object of a root: each object `backup.db` recorded must be
//! listed, and each listed one must pass its checksums; then the latest chain is planned (no gap), rebuilt,
//! `integrity_check`ed and, when the live file is at the same TXID, compared with it table by table.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::Serialize;

use crate::backup::ltx;
use crate::backup::restore;
use crate::backup::s3::{Remote, RemoteFile};
use crate::error::{Error, Result};

const DOWNLOADS_AT_ONCE: usize = 8;

/// What verifying one replica root found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub root: String,
    pub objects: usize,
    pub bytes: u64,
    /// The TXID the latest state was rebuilt at (0: it could not be).
    pub txid: u64,
    /// `same` (the live file holds the same rows), `differs`, or why it was not compared.
    pub compared: String,
    /// Each problem, naming the object where there is one. Empty: the replica is sound.
    pub problems: Vec<String>,
}

/// A restore point of a root: one object and its commit time.
#[derive(Debug, Clone, Serialize)]
pub struct PointView {
    pub level: u8,
    pub min_txid: u64,
    pub max_txid: u64,
    pub bytes: u64,
    /// The LTX header's commit time (RFC 3339).
    pub committed_at: String,
    pub key: String,
}

/// Every object of `root` with its header's commit time, by level then TXID.
pub async fn list(remote: &Remote, root: &str) -> Result<Vec<PointView>> {
    let files = remote.list(root).await?;
    let keys: Vec<String> = files.iter().map(|f| remote.file_key(root, f)).collect();
    let headers: Vec<Result<ltx::Header>> = futures_util::stream::iter(keys.clone())
        .map(|key| async move { remote.header(&key).await })
        .buffered(8)
        .collect()
        .await;
    files
        .iter()
        .zip(keys)
        .zip(headers)
        .map(|((file, key), header)| {
            Ok(PointView {
                level: file.level,
                min_txid: file.min_txid,
                max_txid: file.max_txid,
                bytes: file.size,
                committed_at: restore::time_text(header?.timestamp_ms),
                key,
            })
        })
        .collect()
}

/// The live side of a verification: the objects `backup.db` recorded for the root, and the live file with the
/// TXID it was captured at, when it may be compared (the server is stopped).
pub struct Live {
    pub recorded: Vec<(u8, u64, u64)>,
    pub file: Option<(PathBuf, u64)>,
}

/// Verifies `root` in a work dir under `scratch` (removed after).
pub async fn verify(remote: &Remote, root: &str, live: &Live, scratch: &Path) -> Result<Report> {
    let files = remote.list(root).await?;
    let mut report = Report {
        root: root.to_owned(),
        objects: files.len(),
        bytes: files.iter().map(|f| f.size).sum(),
        txid: 0,
        compared: "not compared".into(),
        problems: Vec::new(),
    };
    if files.is_empty() {
        report.problems.push(format!("no LTX files under {}", remote.url(root)));
        return Ok(report);
    }
    // Holes inside a level are normal (a snapshot takes a TXID at level 9 only; a full spool records a gap and
    // snapshots): what must hold is that every recorded object is there and the latest chain is whole.
    missing(remote, root, &files, live, &mut report.problems).await;

    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let work = scratch.join(format!("verify-{}-{stamp}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&work)
            .map_err(|e| Error::internal(format!("cannot make {}: {e}", work.display())))?;
    }
    let result = check_objects(remote, root, &files, live, &work, &mut report).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(work)).await;
    result?;
    Ok(report)
}

/// Objects `backup.db` recorded as uploaded that the bucket does not list (looked up once more one by one, so an
/// object retention removed meanwhile is not reported).
async fn missing(remote: &Remote, root: &str, files: &[RemoteFile], live: &Live, problems: &mut Vec<String>) {
    let listed: std::collections::HashSet<(u8, u64, u64)> =
        files.iter().map(|f| (f.level, f.min_txid, f.max_txid)).collect();
    for &(level, min_txid, max_txid) in live.recorded.iter().filter(|o| !listed.contains(o)) {
        let key = remote.file_key(root, &RemoteFile { level, min_txid, max_txid, ..RemoteFile::default() });
        if remote.header(&key).await.is_err() {
            problems.push(format!("missing object {key} (recorded as uploaded, not in the bucket)"));
        }
    }
}

/// Downloads and decodes every object (checksums), then rebuilds the latest state and compares it.
async fn check_objects(
    remote: &Remote,
    root: &str,
    files: &[RemoteFile],
    live: &Live,
    work: &Path,
    report: &mut Report,
) -> Result<()> {
    let jobs: Vec<(String, PathBuf)> =
        files.iter().enumerate().map(|(i, f)| (remote.file_key(root, f), work.join(format!("{i:06}.ltx")))).collect();
    let fetched: Vec<(String, PathBuf, Result<()>)> = futures_util::stream::iter(jobs)
        .map(|(key, path)| async move {
            let checked = match remote.download(&key, &path).await {
                Ok(_) => {
                    let p = path.clone();
                    tokio::task::spawn_blocking(move || -> Result<()> {
                        let file = std::fs::File::open(&p).map_err(Error::internal)?;
                        ltx::read_pages(&mut std::io::BufReader::new(file), |_, _| Ok(()))?;
                        Ok(())
                    })
                    .await
                    .map_err(Error::from)
                    .and_then(|r| r)
                }
                Err(err) => Err(err),
            };
            (key, path, checked)
        })
        .buffered(DOWNLOADS_AT_ONCE)
        .collect()
        .await;
    let mut bad = 0;
    for (key, _, checked) in &fetched {
        if let Err(err) = checked {
            // Retention or compaction may delete an object between the listing and its download: gone is not
            // damaged (whether the chain still holds is checked below).
            if remote.header(key).await.is_err()
                && !remote.list(root).await.is_ok_and(|now| now.iter().any(|f| remote.file_key(root, f) == *key))
            {
                continue;
            }
            report.problems.push(format!("object {key} is unreadable: {err}"));
            bad += 1;
        }
    }
    if bad > 0 {
        report.compared = "not rebuilt: objects are unreadable".into();
        return Ok(());
    }
    let plan = match restore::chain(files, |_| true, true) {
        Ok(plan) => plan,
        Err(err) => {
            report.problems.push(format!("no restorable chain: {err}"));
            return Ok(());
        }
    };
    let by_key: std::collections::HashMap<&str, &PathBuf> =
        fetched.iter().filter(|(_, _, ok)| ok.is_ok()).map(|(k, p, _)| (k.as_str(), p)).collect();
    let keys: Vec<String> = plan.files.iter().map(|f| remote.file_key(root, f)).collect();
    let paths: Vec<PathBuf> = keys.iter().filter_map(|k| by_key.get(k.as_str()).map(|p| (*p).clone())).collect();
    if paths.len() != keys.len() {
        report.problems.push("objects of the latest chain were removed while verifying; verify again".into());
        return Ok(());
    }
    let db = work.join("rebuilt.db");
    let live_file = live.file.clone();
    let txid = plan.txid;
    let outcome = tokio::task::spawn_blocking(move || -> Result<(Option<String>, String)> {
        if let Err(err) = restore::apply(&paths, &keys, &db).and_then(|_| restore::check(&db)) {
            return Ok((Some(format!("the latest state does not rebuild: {err}")), "not compared".into()));
        }
        let compared = match live_file {
            Some((path, at)) if at == txid => {
                if digest(&path)? == digest(&db)? {
                    "same".to_owned()
                } else {
                    "differs".to_owned()
                }
            }
            Some((_, at)) => format!("not compared: the live file was captured at TXID {at}, the replica is at {txid}"),
            None => "not compared: the server is running (the live file moves on)".to_owned(),
        };
        Ok((None, compared))
    })
    .await??;
    report.txid = txid;
    if let Some(problem) = outcome.0 {
        report.problems.push(problem);
    }
    if outcome.1 == "differs" {
        report.problems.push(format!("the rebuilt state at TXID {txid} differs from the live file"));
    }
    report.compared = outcome.1;
    Ok(())
}

/// A digest of every table's rows, in constant memory: per table the row count and the wrapping sum of each row's
/// SHA-256 (the same rows in any order give the same digest).
fn digest(path: &Path) -> Result<Vec<(String, u64, u128, u128)>> {
    use sha2::Digest;
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut tables = Vec::new();
    for name in names.into_iter().filter(|n| !n.starts_with("sqlite_stat")) {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))?;
        let width = stmt.column_count();
        let (mut count, mut low, mut high) = (0u64, 0u128, 0u128);
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let values: Vec<rusqlite::types::Value> =
                (0..width).map(|i| row.get(i)).collect::<rusqlite::Result<_>>()?;
            let hash: [u8; 32] = sha2::Sha256::digest(format!("{values:?}").as_bytes()).into();
            let (a, b) = hash.split_at(16);
            low = low.wrapping_add(u128::from_le_bytes(a.try_into().unwrap_or_default()));
            high = high.wrapping_add(u128::from_le_bytes(b.try_into().unwrap_or_default()));
            count += 1;
        }
        tables.push((name, count, low, high));
    }
    Ok(tables)
}

/// The last self-check: when, how many replicas, and the problems of those that failed twice.
#[derive(Debug, Clone, Default)]
pub struct SelfCheck {
    pub at_unix: i64,
    pub checked: usize,
    pub problems: Vec<String>,
}

/// Tenant replicas the self-check verifies each time, besides control.db's.
const SAMPLE_TENANTS: usize = 3;

impl crate::backup::Backup {
    /// Every `verify_every`, verifies control.db's replica and a random sample of tenants' (the running server's
    /// view: not compared with the live files). A replica is reported only when a second verification finds the
    /// same trouble (compaction and retention change a root while it is read). Results: the log, `/readyz` and the
    /// dashboard (through `health`), `gatehouse_backup_self_check_problems`.
    pub(crate) async fn self_check_loop(self: std::sync::Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(every) = self.config.verify_every else { return };
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let check = self.self_check().await;
            let problems = check.problems.len();
            self.metrics.record(|| {
                metrics::gauge!("gatehouse_backup_self_check_problems").set(problems as f64);
                metrics::gauge!("gatehouse_backup_self_check_timestamp_seconds").set(check.at_unix as f64);
            });
            if problems == 0 {
                tracing::info!(replicas = check.checked, "backup self-check: every replica verified");
            } else {
                for problem in &check.problems {
                    tracing::error!(problem = %problem, "backup self-check: a replica is damaged");
                }
            }
            self.state().self_check = Some(check);
        }
    }

    async fn self_check(&self) -> SelfCheck {
        use rand::seq::IndexedRandom;
        let mut check = SelfCheck { at_unix: crate::now_unix(), ..SelfCheck::default() };
        let Some(remote) = self.remote.get() else { return check };
        let positions = match self.positions.all() {
            Ok(all) => all,
            Err(err) => {
                check.problems.push(format!("cannot read backup.db: {err}"));
                return check;
            }
        };
        let (control, tenants): (Vec<_>, Vec<_>) =
            positions.into_iter().partition(|(key, _)| *key == crate::backup::tracker::DbKey::Control);
        let sample: Vec<_> = {
            let mut rng = rand::rng();
            control.into_iter().chain(tenants.choose_multiple(&mut rng, SAMPLE_TENANTS).cloned()).collect()
        };
        let scratch = self.data_dir.join("backup");
        for (key, pos) in sample {
            check.checked += 1;
            // A problem counts only when a second verification finds it too (compaction and retention change a
            // live root while it is read).
            let mut agreed: Option<Vec<String>> = None;
            for _attempt in 0..2 {
                // A short indexed read of backup.db, as the sync task's own.
                let recorded = self
                    .positions
                    .objects(&pos.root)
                    .map(|objects| objects.into_iter().map(|(level, min, max, _)| (level, min, max)).collect())
                    .unwrap_or_default();
                let live = Live { recorded, file: None };
                let found = match verify(remote, &pos.root, &live, &scratch).await {
                    Ok(report) => report.problems,
                    Err(err) => vec![format!("cannot verify: {err}")],
                };
                agreed = Some(match agreed {
                    None => found,
                    Some(first) => first.into_iter().filter(|p| found.contains(p)).collect(),
                });
                if agreed.as_ref().is_some_and(Vec::is_empty) {
                    break;
                }
            }
            check.problems.extend(agreed.unwrap_or_default().into_iter().map(|p| format!("{key}: {p}")));
        }
        check
    }
}
