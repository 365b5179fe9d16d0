//! `gatehouse restore …`: restores from the bucket onto this machine, with the server stopped (`control`) or into
//! a new place (`db`, `all`). The settings are `serve`'s (`GATEHOUSE_BACKUP_URL`, `GATEHOUSE_S3_*`, the AWS
//! credential chain); `--from` names another replica URL, such as one the real `litestream replicate` wrote.
//! `gatehouse backup list|verify` read the bucket the same way (`status` and `snapshot`, like `restore tenant`,
//! ask a running server).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;

use crate::backup::restore::{self, Progress, Restored, Target};
use crate::backup::s3::Remote;
use crate::backup::{BackupConfig, DataLock};
use crate::config::Config;

/// Tenant files restored at once by `restore all`.
const TENANTS_AT_ONCE: usize = 8;

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// Restore one replica root (one of ours, or any Litestream 0.5 replica) into a new file.
    Db {
        /// The replica root, s3://bucket/path (endpoint, region and credentials as for serve).
        #[arg(long)]
        from: String,
        /// The file to write; it must not exist.
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        point: Point,
    },
    /// Restore this data dir's control.db from its replica; only while the server is stopped. The old file goes
    /// to data/archive/, and the restored one replicates into a new generation.
    Control {
        #[command(flatten)]
        point: Point,
        /// This node's replica generation to restore from (default: the newest).
        #[arg(long)]
        generation: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Restore one tenant on a running server (through its admin API): the tenant answers "suspended" meanwhile,
    /// its current file goes to data/archive/, and it replicates into a new incarnation afterwards.
    Tenant {
        /// The tenant's slug.
        slug: String,
        #[command(flatten)]
        point: Point,
        /// Restore from this earlier incarnation's replica root (default: the tenant's own).
        #[arg(long)]
        incarnation: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        remote: crate::cli::Remote,
    },
    /// Disaster recovery: restore control.db and every tenant it lists at that point into an empty directory.
    All {
        /// The new data directory (empty or absent).
        #[arg(long)]
        to: PathBuf,
        /// The node whose control plane to restore (default: the only one in the bucket).
        #[arg(long)]
        node: Option<u64>,
        #[command(flatten)]
        point: Point,
    },
}

impl RestoreCommand {
    /// Whether the command reads serve's configuration (all but `tenant`, which asks a running server).
    pub fn needs_config(&self) -> bool {
        !matches!(self, RestoreCommand::Tenant { .. })
    }

    /// The replica URL the command reads instead of `GATEHOUSE_BACKUP_URL`, if any.
    pub fn from_url(&self) -> Option<&str> {
        match self {
            RestoreCommand::Db { from, .. } => Some(from),
            _ => None,
        }
    }
}

#[derive(Args, Clone)]
pub struct Point {
    /// Restore the state committed at or before this time (RFC 3339, e.g. 2026-11-29T21:00:00Z), by the commit
    /// times in the LTX headers.
    #[arg(long, conflicts_with = "txid")]
    timestamp: Option<String>,
    /// Restore the state right after this TXID.
    #[arg(long)]
    txid: Option<u64>,
}

impl Point {
    /// The admin API's body for this point.
    pub fn body(&self, incarnation: Option<String>) -> anyhow::Result<crate::backup::api::RestoreBody> {
        let body = crate::backup::api::RestoreBody { timestamp: self.timestamp.clone(), txid: self.txid, incarnation };
        body.target().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(body)
    }

    fn target(&self) -> anyhow::Result<Target> {
        match (&self.timestamp, self.txid) {
            (Some(text), _) => {
                let at = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("--timestamp {text:?} is not an RFC 3339 time"))?;
                Ok(Target::Time((at.unix_timestamp_nanos() / 1_000_000) as i64))
            }
            (None, Some(txid)) => Ok(Target::Txid(txid)),
            (None, None) => Ok(Target::Latest),
        }
    }
}

fn backup_config(config: &Config) -> anyhow::Result<&BackupConfig> {
    config.backup.as_ref().context("GATEHOUSE_BACKUP_URL is not set: there is no replica to restore from")
}

/// Runs a restore command.
pub async fn run(command: RestoreCommand, config: Config) -> anyhow::Result<()> {
    let remote = Remote::new(backup_config(&config)?).await;
    match command {
        RestoreCommand::Db { output, point, .. } => {
            let done = restore::restore(&remote, "", point.target()?, &output, &*reporter("")).await?;
            report(&output, &done);
            Ok(())
        }
        RestoreCommand::Control { point, generation, yes } => {
            control(&config, &remote, point.target()?, generation, yes).await
        }
        RestoreCommand::Tenant { .. } => bail!("restore tenant goes through a running server's admin API"),
        RestoreCommand::All { to, node, point } => {
            let target = point.target()?;
            if matches!(target, Target::Txid(_)) {
                bail!("a TXID names a point in one database; restore all takes --timestamp (or nothing: the latest)");
            }
            all(&remote, &to, node, target).await
        }
    }
}

/// Progress on stderr: a bar (bytes and files) on a terminal, a line per step otherwise (logs, scripts).
fn reporter(name: &str) -> Box<dyn Fn(Progress) + Send + Sync> {
    let name = if name.is_empty() { String::new() } else { format!("{name}: ") };
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix}{msg:>14} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name);
        return Box::new(move |p: Progress| {
            bar.set_length(p.bytes);
            bar.set_position(p.bytes_done);
            if p.applying {
                bar.finish_with_message(format!("{} files; applying", p.files));
            } else {
                bar.set_message(format!("{}/{} files", p.files_done, p.files));
            }
        });
    }
    Box::new(move |p: Progress| {
        if p.applying {
            eprintln!("{name}applying {} files ({:.1} MB)", p.files, p.bytes as f64 / 1e6);
        } else if p.files_done == p.files || p.files_done.is_multiple_of(10) {
            eprintln!(
                "{name}downloaded {}/{} files, {:.1}/{:.1} MB",
                p.files_done,
                p.files,
                p.bytes_done as f64 / 1e6,
                p.bytes as f64 / 1e6
            );
        }
    })
}

fn report(path: &Path, done: &Restored) {
    let at = restore::time_text(done.timestamp_ms);
    println!(
        "restored {} at TXID {} (committed {at}): {} files, {:.1} MB downloaded, {} pages, {:.1} MB database in {:.2} s",
        path.display(),
        done.txid,
        done.files,
        done.bytes as f64 / 1e6,
        done.pages,
        done.db_bytes as f64 / 1e6,
        done.seconds
    );
}

/// Asks on a terminal; scripts pass `--yes`.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question}: pass --yes to confirm when not on a terminal");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        bail!("not confirmed; nothing changed");
    }
    Ok(())
}

/// The newest (or the named) control generation of `node` in the bucket.
async fn control_root(remote: &Remote, node: u64, generation: Option<String>) -> anyhow::Result<String> {
    let base = format!("nodes/{node}/control");
    let generations = remote.children(&base).await?;
    let chosen = match generation {
        Some(g) if generations.contains(&g) => g,
        Some(g) => bail!("generation {g} is not in {} (there: {})", remote.url(&base), generations.join(", ")),
        // UUIDv7s sort by creation time.
        None => {
            generations.last().cloned().with_context(|| format!("no control replica under {}", remote.url(&base)))?
        }
    };
    Ok(format!("{base}/{chosen}"))
}

async fn control(
    config: &Config,
    remote: &Remote,
    target: Target,
    generation: Option<String>,
    yes: bool,
) -> anyhow::Result<()> {
    let data = &config.data_dir;
    let _lock = DataLock::acquire(data)?;
    let node = crate::tenants::effects::node_id(data, None)?;
    if crate::cluster::has_peers_offline(data, node)? {
        bail!(
            "this node is a member of a multi-node cluster: its control plane comes from the others (a lost node \
             joins again with a new data dir); restore control only on a one-node cluster"
        );
    }
    let root = control_root(remote, node, generation).await?;
    let current = data.join("control.db");
    confirm(&format!("Replace {} with {}?", current.display(), remote.url(&root)), yes)?;
    let staged = data.join("control.db.restored");
    let _ = std::fs::remove_file(&staged);
    let done = restore::restore(remote, &root, target, &staged, &*reporter("control")).await?;
    // In an order that leaves a usable control.db after a crash at any step:
    // 1. the restored history diverges from the replica's tail, so it replicates into a new generation;
    crate::backup::position::Positions::open(data)?.delete(&crate::backup::tracker::DbKey::Control)?;
    // 2. the old file and its WAL are linked into the archive under a name of their own;
    let archive = data.join("archive");
    std::fs::create_dir_all(&archive)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", current.display()));
        if from.exists() {
            std::fs::hard_link(&from, archive.join(format!("control-{stamp}.db{suffix}")))?;
        }
    }
    // 3. the Raft log and snapshots of the old history (all of data/raft/, in one rename) go to the archive too,
    //    and the restored file forgets its Raft position: the node starts a fresh one-node cluster over it (else
    //    the log would re-apply the entries the restore meant to undo);
    crate::control::replica::forget_mark(&staged)?;
    if data.join("raft").exists() {
        std::fs::rename(data.join("raft"), archive.join(format!("raft-{stamp}")))?;
    }
    std::fs::File::open(&archive).and_then(|d| d.sync_all())?;
    // 4. the old WAL goes before the new file arrives (SQLite would replay it onto any file of that name);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", current.display()));
    }
    // 5. the restored file replaces the old one in one step.
    std::fs::rename(&staged, &current)?;
    std::fs::File::open(data).and_then(|d| d.sync_all())?;
    report(&current, &done);
    Ok(())
}

/// Restores `nodes/{node}/control/<newest>` into `to/control.db`, then every tenant that control plane lists.
async fn all(remote: &Remote, to: &Path, node: Option<u64>, target: Target) -> anyhow::Result<()> {
    if to.exists() && std::fs::read_dir(to)?.next().is_some() {
        bail!("{} is not empty; restore all writes a new data directory", to.display());
    }
    let node = match node {
        Some(node) => node,
        None => {
            let nodes: Vec<u64> = remote.children("nodes").await?.iter().filter_map(|n| n.parse().ok()).collect();
            match nodes.as_slice() {
                [one] => *one,
                [] => bail!("no control replica under {}", remote.url("nodes")),
                many => bail!("several nodes replicate here ({many:?}): name one with --node"),
            }
        }
    };
    std::fs::create_dir_all(to.join("tenants"))?;
    let root = control_root(remote, node, None).await?;
    let control_path = to.join("control.db");
    let done = restore::restore(remote, &root, target, &control_path, &*reporter("control")).await?;
    crate::control::replica::forget_mark(&control_path)?;
    report(&control_path, &done);
    std::fs::write(to.join("node_id"), format!("{node}\n"))?;
    // The tenants of the restored control plane, each at the same point (a tenant's own chain decides what
    // that point holds).
    let tenants = {
        let path = control_path.clone();
        tokio::task::spawn_blocking(move || tenants_of(&path)).await??
    };
    let remote = Arc::new(remote);
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(tenants.clone())
        .map(|(slug, incarnation, _)| {
            let remote = remote.clone();
            let out = to.join("tenants").join(format!("{slug}.db"));
            async move {
                let root = format!("tenants/{slug}/{incarnation}");
                let done = restore::restore(&remote, &root, target, &out, &|_| {})
                    .await
                    .with_context(|| format!("tenant {slug} from {}", remote.url(&root)))?;
                report(&out, &done);
                Ok(())
            }
        })
        .buffer_unordered(TENANTS_AT_ONCE)
        .collect()
        .await;
    let failed: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|e| format!("{e:#}"))).collect();
    if !failed.is_empty() {
        bail!("{} tenants did not restore:\n  {}", failed.len(), failed.join("\n  "));
    }
    new_incarnations(to, &tenants).await?;
    eprintln!(
        "restored into {}; start it with GATEHOUSE_DATA_DIR={} and this node's master key (GATEHOUSE_MASTER_KEY \
         or its key file)",
        to.display(),
        to.display()
    );
    Ok(())
}

/// Gives every restored tenant a new incarnation (through `RestoreTenant` entries in the restored control plane,
/// and the stamp in its file): its history may have diverged from the replica it came from (a point in time), so
/// it replicates into a root of its own instead of continuing the old chain.
async fn new_incarnations(to: &Path, tenants: &[(String, String, Option<String>)]) -> anyhow::Result<()> {
    let mut mutations = Vec::with_capacity(tenants.len());
    for (slug, _, previous) in tenants {
        let slug = crate::tenants::TenantSlug::parse(slug).map_err(|e| anyhow::anyhow!("{e}"))?;
        let incarnation = uuid::Uuid::now_v7().hyphenated().to_string();
        let file = to.join("tenants").join(format!("{slug}.db"));
        crate::backup::live::stamp(&file, &slug, &incarnation).await?;
        mutations.push(crate::control::Mutation::RestoreTenant {
            archive: crate::tenants::effects::archive_name(&slug, crate::now_unix()),
            slug,
            incarnation,
            previous: previous.clone(),
            at: crate::now_unix(),
        });
    }
    let dir = to.to_path_buf();
    tokio::task::spawn_blocking(move || -> crate::error::Result<()> {
        // No listener here: the files are in place already; only the records change.
        let control = crate::control::ControlStore::open(&dir, Arc::default())?;
        for mutation in mutations {
            control.apply_blocking(mutation)?;
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// The live tenants a restored control.db lists: (slug, the incarnation its replica root is named by, the
/// incarnation recorded).
fn tenants_of(control: &Path) -> anyhow::Result<Vec<(String, String, Option<String>)>> {
    let conn = rusqlite::Connection::open_with_flags(control, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT slug, incarnation FROM tenants ORDER BY slug")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
    let mut tenants = Vec::new();
    for row in rows {
        let (slug, recorded) = row?;
        let incarnation = recorded.clone().unwrap_or_else(|| "legacy".to_owned());
        // Both become paths: only what the server itself would have written is followed.
        crate::tenants::TenantSlug::parse(&slug).map_err(|e| anyhow::anyhow!("tenant {slug:?}: {e}"))?;
        // As the sync task names roots: a UUID incarnation, anything else `legacy`.
        let incarnation = match uuid::Uuid::parse_str(&incarnation) {
            Ok(id) => id.hyphenated().to_string(),
            Err(_) => "legacy".to_owned(),
        };
        tenants.push((slug, incarnation, recorded));
    }
    Ok(tenants)
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Where every replicated database stands: TXIDs, lag, last snapshot, restore window, size (asks a running
    /// server's admin API).
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: crate::cli::Remote,
    },
    /// Capture a full snapshot of one database now (asks a running server's admin API): control or a tenant slug.
    Snapshot {
        db: String,
        #[command(flatten)]
        remote: crate::cli::Remote,
    },
    /// A database's restore points in the bucket (control or a tenant slug), with their commit times.
    List {
        db: String,
        /// The replica root to list instead of the database's current one (from data/backup.db).
        #[arg(long)]
        root: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify replicas: every object listed, contiguous and intact, the latest state rebuilt and checked, and,
    /// with the server stopped, compared with the live file. Exits 1 on any problem.
    Verify {
        /// control or a tenant slug.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        db: Option<String>,
        /// Every replicated database of this data dir.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

impl BackupCommand {
    /// Whether the command reads serve's configuration (`list` and `verify` read the bucket and the data dir).
    pub fn needs_config(&self) -> bool {
        matches!(self, BackupCommand::List { .. } | BackupCommand::Verify { .. })
    }
}

/// `control`, `acme` or `tenants/acme`, as `backup.db` names databases.
fn db_name(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    let slug = text.strip_prefix("tenants/").unwrap_or(text);
    if slug == "control" {
        return Ok("control".into());
    }
    crate::tenants::TenantSlug::parse(slug).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    Ok(format!("tenants/{slug}"))
}

/// The databases of `data/backup.db` (name, root, TXID captured), read-only beside a running server.
fn positions(data_dir: &Path) -> anyhow::Result<Vec<(String, String, u64)>> {
    let path = data_dir.join("backup.db");
    if !path.exists() {
        bail!("{} does not exist: this data dir has never been backed up (pass --root to list a root)", path.display());
    }
    let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT db, root, txid FROM positions ORDER BY db")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn recorded(data_dir: &Path, root: &str) -> anyhow::Result<Vec<(u8, u64, u64)>> {
    let conn =
        rusqlite::Connection::open_with_flags(data_dir.join("backup.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut stmt = conn.prepare("SELECT level, min_txid, max_txid FROM objects WHERE root = ?1")?;
    let rows = stmt.query_map([root], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Runs `backup list` or `backup verify`.
pub async fn run_backup(command: BackupCommand, config: Config) -> anyhow::Result<()> {
    let remote = Remote::new(backup_config(&config)?).await;
    match command {
        BackupCommand::List { db, root, json } => {
            let root = match root {
                Some(root) => root.trim_matches('/').to_owned(),
                None => {
                    let name = db_name(&db)?;
                    let found = positions(&config.data_dir)?.into_iter().find(|(n, _, _)| *n == name);
                    found.map(|(_, root, _)| root).with_context(|| format!("{name} has no replica in this data dir"))?
                }
            };
            let points = crate::backup::verify::list(&remote, &root).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&points)?);
            } else {
                println!("{}", remote.url(&root));
                println!("{:>5}  {:>10}  {:>10}  {:>12}  committed", "level", "min txid", "max txid", "bytes");
                for p in &points {
                    println!(
                        "{:>5}  {:>10}  {:>10}  {:>12}  {}",
                        p.level, p.min_txid, p.max_txid, p.bytes, p.committed_at
                    );
                }
                eprintln!("{} restore points", points.len());
            }
            Ok(())
        }
        BackupCommand::Verify { db, all: _, json } => {
            let wanted = db.as_deref().map(db_name).transpose()?;
            let dbs: Vec<(String, String, u64)> = positions(&config.data_dir)?
                .into_iter()
                .filter(|(n, _, _)| wanted.as_ref().is_none_or(|w| w == n))
                .collect();
            if let Some(name) = &wanted
                && dbs.is_empty()
            {
                bail!("{name} has no replica in this data dir");
            }
            // With the server stopped, the live files hold still and are compared; the lock keeps it stopped.
            let lock = crate::backup::DataLock::acquire(&config.data_dir).ok();
            let scratch = config.data_dir.join("backup");
            let mut reports = Vec::new();
            for (name, root, txid) in dbs {
                let file = crate::backup::tracker::DbKey::parse(&name).map(|k| k.path(&config.data_dir));
                let live = crate::backup::verify::Live {
                    recorded: recorded(&config.data_dir, &root)?,
                    file: file.filter(|_| lock.is_some()).map(|f| (f, txid)),
                };
                let report = crate::backup::verify::verify(&remote, &root, &live, &scratch).await?;
                if !json {
                    let verdict = if report.problems.is_empty() { "ok" } else { "PROBLEMS" };
                    println!(
                        "{name}: {verdict}: {} objects, {:.1} MB, latest TXID {}, {}",
                        report.objects,
                        report.bytes as f64 / 1e6,
                        report.txid,
                        report.compared
                    );
                    for problem in &report.problems {
                        println!("  {problem}");
                    }
                }
                reports.push((name, report));
            }
            let bad = reports.iter().filter(|(_, r)| !r.problems.is_empty()).count();
            if json {
                let all: Vec<serde_json::Value> =
                    reports.iter().map(|(name, r)| serde_json::json!({ "db": name, "report": r })).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
            if bad > 0 {
                bail!("{bad} of {} replicas have problems", reports.len());
            }
            Ok(())
        }
        BackupCommand::Status { .. } | BackupCommand::Snapshot { .. } => {
            bail!("backup status and snapshot ask a running server's admin API")
        }
    }
}
