//! The tenant file registry: one SQLite file per tenant under `data/tenants/{slug}.db`, opened lazily through an
//! r2d2 pool kept in a bounded moka cache.
//!
//! Invariants:
//! - Paths are built only from a `TenantSlug`.
//! - A pool is opened (and its file migrated) at most once at a time per tenant (`try_get_with` is single-flight),
//!   and at most two per core at once over all tenants (`load`; waiting takes no thread).
//! - The cache holds as many pools as fit in `GATEHOUSE_TENANT_POOL_MEMORY_MB`, each weighed by what its first
//!   connection held when it opened (a busy pool's further connections, at most 3, and the pages they read are
//!   not counted), and at most `GATEHOUSE_TENANT_POOL_CACHE`; an evicted or idle pool is dropped, which closes its
//!   connections once the last request using it is done.
//! - The registry does not decide whether a tenant exists: callers look it up in the control plane first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use scheduled_thread_pool::ScheduledThreadPool;

use crate::db::{self, Pool, migrate};
use crate::email::outbox::{TenantTx, Touched, Wakeups};
use crate::error::{Error, Result};
use crate::telemetry::Metrics;
use crate::tenants::TenantSlug;

/// Most connections one tenant pool opens. Writers take turns anyway, and a pool keeps what it opened until it
/// is dropped (r2d2's idle reaper is a job per pool that outlives the pool, which thousands of pools opened and
/// evicted cannot afford), so a burst leaves at most this many.
const TENANT_POOL_SIZE: u32 = 4;

/// The wal-index (`-shm`) map every open WAL database has, beside what SQLite reports for the connection.
const SHM_BYTES: i64 = 32 << 10;
/// The pool, its cache entry, the handle and three file descriptors.
const POOL_OVERHEAD_BYTES: i64 = 4 << 10;

/// How many tenant pools stay open: as many as fit in `memory` bytes, each weighed by what its connection held
/// when it opened, and never more than `count`.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub count: u64,
    pub memory: u64,
    /// An unused pool is closed after this.
    pub idle: Duration,
}

/// An open tenant database.
#[derive(Clone)]
pub struct TenantDb {
    pub slug: TenantSlug,
    pub pool: Pool,
    wakeups: Arc<Wakeups>,
    on_commit: Arc<std::sync::OnceLock<OnCommit>>,
    /// Writers of this file take turns here instead of in SQLite's busy handler, which sleeps (1 ms, 2 ms, 5 ms …)
    /// when it finds the file locked. With backups on it is the backup's lock of the file (it outlives this pool,
    /// and the backup's captures and checkpoints take it too).
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Set when a live restore closes the tenant (shared by every clone of this pool's handle): a write that
    /// gets its turn afterwards is refused (`tenant_suspended`), so none lands in a file being replaced.
    retired: Arc<std::sync::atomic::AtomicBool>,
    /// The pool's weight in the cache: bytes its first connection held (at least memory / count).
    weight: u32,
}

impl TenantDb {
    /// Refuses a write through a handle a live restore retired (checked under the writer turn).
    fn check_live(&self) -> Result<()> {
        if self.retired.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::TenantSuspended);
        }
        Ok(())
    }

    fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::Release);
    }
    /// Runs `f` on a connection of this file while holding the writer turn: for writes that are not a `TenantTx`
    /// (the outbox dispatcher's claims and receipts), so they queue with the other writers here instead of
    /// meeting them at SQLite's lock, whose busy handler sleeps (1 ms, 2 ms, 5 ms …) while checkouts wait.
    pub async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.pool.clone();
        let turn = self.writer.clone().lock_owned().await;
        self.check_live()?;
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            let value = f(&mut conn);
            drop(turn);
            value
        })
        .await?
    }

    /// Runs `f` in one IMMEDIATE transaction on the blocking pool and commits it. Outbox rows `f` enqueued wake
    /// the dispatcher once the commit is durable. Data-plane writes that may enqueue mail or events use this.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&TenantTx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (pool, slug) = (self.pool.clone(), self.slug.clone());
        let turn = self.writer.clone().lock_owned().await;
        self.check_live()?;
        let (value, counts) = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut conn = pool.get()?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let tx = TenantTx::new(tx, slug);
            let value = f(&tx)?;
            let committed = tx.commit()?;
            drop(turn);
            Ok((value, committed))
        })
        .await??;
        let (counts, touched) = counts;
        self.wakeups.enqueued(&self.slug, counts);
        if !touched.is_empty()
            && let Some(listener) = self.on_commit.get()
        {
            listener(&self.slug, touched);
        }
        Ok(value)
    }
}

/// Told what a committed tenant write touched (orders, stock, expiries): the live streams and the expiry list.
pub type OnCommit = Box<dyn Fn(&TenantSlug, Touched) + Send + Sync>;

pub struct TenantRegistry {
    tenants_dir: PathBuf,
    pools: Cache<TenantSlug, TenantDb>,
    /// Tenants whose file is being replaced (a live restore): `get` answers `tenant_suspended` meanwhile.
    closed: std::sync::Mutex<std::collections::HashSet<TenantSlug>>,
    /// How many tenants are closed (so `get` skips the set's lock when none is).
    closing: std::sync::atomic::AtomicUsize,
    /// The least weight of a pool (memory / count), so the cache never holds more than `count` pools.
    weight_floor: u64,
    /// The pools' memory budget in bytes.
    memory: u64,
    scheduler: Arc<ScheduledThreadPool>,
    metrics: Arc<Metrics>,
    wakeups: Arc<Wakeups>,
    on_commit: Arc<std::sync::OnceLock<OnCommit>>,
    /// Cold opens under way at once (`load`): two per core. A burst of requests for closed tenants otherwise
    /// takes a blocking thread each, and each thread that parsed and freed schemas keeps memory of its own (16
    /// clients on 2 cores: 24 blocking threads, about 8 MiB more resident than with a few, and slower).
    opening: tokio::sync::Semaphore,
}

impl TenantRegistry {
    /// The open pool of `slug`, opening it on the blocking pool on a miss (at most `opening` at once; the rest
    /// wait here, holding no thread).
    pub async fn load(self: &Arc<Self>, slug: &TenantSlug) -> Result<TenantDb> {
        if let Some(db) = self.cached(slug) {
            return Ok(db);
        }
        let _turn = self.opening.acquire().await.map_err(Error::internal)?;
        let (registry, slug) = (self.clone(), slug.clone());
        tokio::task::spawn_blocking(move || registry.get(&slug)).await?
    }

    /// Sets the listener told what each committed write touched (once; later calls are ignored).
    pub fn set_on_commit(&self, listener: OnCommit) {
        let _ = self.on_commit.set(listener);
    }

    pub fn new(data_dir: &Path, limits: PoolLimits, metrics: Arc<Metrics>, wakeups: Arc<Wakeups>) -> Result<Self> {
        let tenants_dir = data_dir.join("tenants");
        let archive_dir = data_dir.join("archive");
        for dir in [&tenants_dir, &archive_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        }
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Ok(Self {
            tenants_dir,
            pools: Cache::builder()
                .max_capacity(limits.memory)
                .weigher(|_, db: &TenantDb| db.weight)
                .time_to_idle(limits.idle)
                .build(),
            weight_floor: limits.memory.div_ceil(limits.count.max(1)),
            memory: limits.memory,
            closed: std::sync::Mutex::default(),
            closing: std::sync::atomic::AtomicUsize::new(0),
            // Tenant pools open connections on demand, one per core at once (each parses the tenant's schema).
            scheduler: db::scheduler("tenant-pool-{}", cores),
            metrics,
            wakeups,
            on_commit: Arc::default(),
            opening: tokio::sync::Semaphore::new(2 * cores),
        })
    }

    pub fn path(&self, slug: &TenantSlug) -> PathBuf {
        self.tenants_dir.join(format!("{slug}.db"))
    }

    fn closed(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<TenantSlug>> {
        self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self, slug: &TenantSlug) -> bool {
        // The hot path reads one atomic; the set is looked at only while some swap is under way.
        self.closing.load(std::sync::atomic::Ordering::Acquire) > 0 && self.closed().contains(slug)
    }

    /// Closes the tenant for a file swap: `get` answers `tenant_suspended` until `reopen`, and the cached pool is
    /// dropped and retired (writes through any handle of it are refused from now on). Answers that pool (if one
    /// was open), so the caller can wait for its checked-out connections; `None` when the tenant is closed already
    /// (another swap is under way).
    pub fn close(&self, slug: &TenantSlug) -> Option<Option<TenantDb>> {
        if !self.closed().insert(slug.clone()) {
            return None;
        }
        self.closing.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let open = self.pools.get(slug);
        self.pools.invalidate(slug);
        if let Some(db) = &open {
            db.retire();
        }
        Some(open)
    }

    pub fn reopen(&self, slug: &TenantSlug) {
        self.pools.invalidate(slug);
        if self.closed().remove(slug) {
            self.closing.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Where a live restore builds the tenant's next file, `restore/{slug}-{incarnation}.db` (the same file system
    /// as `tenants/`, so the swap is a rename). `None` for an incarnation that is not a UUID.
    pub fn staged_path(&self, slug: &TenantSlug, incarnation: &str) -> Option<PathBuf> {
        let id = uuid::Uuid::parse_str(incarnation).ok()?;
        Some(self.data_dir().join("restore").join(format!("{slug}-{}.db", id.hyphenated())))
    }

    /// Puts the file a restore staged for `incarnation` in place of the tenant's file, which moves to `archive`
    /// (relative to the data dir, as `archive_as` takes it). Idempotent: without a staged file there is nothing
    /// to do (done already, or this node is not the tenant's home). Answers whether it swapped.
    pub fn swap_in(&self, slug: &TenantSlug, incarnation: &str, archive: &str) -> Result<bool> {
        let Some(staged) = self.staged_path(slug, incarnation).filter(|p| p.exists()) else { return Ok(false) };
        let target = crate::tenants::effects::archive_path(self.data_dir(), slug, archive)?;
        let io = |e: std::io::Error| Error::internal(format!("restore tenant {slug}: {e}"));
        // The writer turn and the backup's hold on the file last until the new file is in place.
        let _moving = if self.path(slug).exists() { Some(self.move_out(slug, &target)?) } else { None };
        // A WAL or SHM left beside a missing main file (a crash between the renames of an earlier try) belongs to
        // the old file: it goes with it, and is never applied to the restored one.
        for ext in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{ext}", self.path(slug).display()));
            if side.exists() {
                let with_old = PathBuf::from(format!("{}{ext}", target.display()));
                if target.exists() && !with_old.exists() {
                    std::fs::rename(&side, &with_old).map_err(io)?;
                } else {
                    std::fs::remove_file(&side).map_err(io)?;
                }
            }
        }
        std::fs::rename(&staged, self.path(slug)).map_err(io)?;
        for dir in [&self.tenants_dir, &self.data_dir().join("restore")] {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.pools.invalidate(slug);
        tracing::info!(tenant = %slug, incarnation, archived = %archive, "a restored tenant file is in place");
        Ok(true)
    }

    /// Removes what live restores left in `restore/` that no tenant will take: staged files of an incarnation
    /// that is not `live(slug)`'s, and work dirs. Answers what it removed.
    pub fn clean_staged(&self, live: impl Fn(&TenantSlug) -> Option<String>) -> Vec<String> {
        let dir = self.data_dir().join("restore");
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = name.strip_suffix(".db").and_then(|stem| {
                // `{slug}-{uuid}`: a UUID is 36 characters.
                let split = stem.len().checked_sub(37)?;
                let (slug, id) = (stem.get(..split)?, stem.get(split + 1..)?);
                let slug = TenantSlug::parse(slug).ok()?;
                (live(&slug).as_deref() == Some(id)).then_some(())
            });
            if wanted.is_some() {
                continue;
            }
            let path = entry.path();
            let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if gone.is_ok() {
                removed.push(name);
            }
        }
        removed
    }

    /// The open pool of `slug`, opening and migrating its file on a miss. Blocking: call from the blocking pool.
    pub fn get(&self, slug: &TenantSlug) -> Result<TenantDb> {
        if self.is_closed(slug) {
            return Err(Error::TenantSuspended);
        }
        if let Some(db) = self.pools.get(slug) {
            self.metrics.cache_lookup("tenant_pool", true);
            return Ok(db);
        }
        self.metrics.cache_lookup("tenant_pool", false);
        let db = self.pools.try_get_with_by_ref(slug, || self.open(slug)).map_err(
            |e: Arc<Error>| match Arc::try_unwrap(e) {
                Ok(err) => err,
                Err(shared) => Error::internal(shared),
            },
        )?;
        // Opened while a restore closed the tenant: that pool is not the restore's to wait for, so it never writes.
        if self.is_closed(slug) {
            db.retire();
            self.pools.invalidate(slug);
            return Err(Error::TenantSuspended);
        }
        Ok(db)
    }

    /// The tenant's pool when it is open already: no blocking, so callers can skip the blocking pool.
    pub fn cached(&self, slug: &TenantSlug) -> Option<TenantDb> {
        if self.is_closed(slug) {
            return None;
        }
        let hit = self.pools.get(slug);
        if hit.is_some() {
            self.metrics.cache_lookup("tenant_pool", true);
        }
        hit
    }

    fn open(&self, slug: &TenantSlug) -> Result<TenantDb> {
        // Only `create_file` makes tenant files; a missing one means the tenant was archived meanwhile.
        if !self.path(slug).exists() {
            return Err(Error::TenantNotFound);
        }
        let pool = db::open_pool(&self.path(slug), TENANT_POOL_SIZE, self.scheduler.clone(), None)?;
        let mut conn = pool.get()?;
        let applied = migrate::migrate(&mut conn, migrate::TENANT, &format!("tenant {slug}"))?;
        if !applied.is_empty() {
            tracing::info!(tenant = %slug, ?applied, "migrated tenant database");
        }
        // Weighed with the pages it read, which a request reads again; until then they go back (a cold pool of a
        // tenant touched once holds its schema, not its pages).
        let held = db::tuning::connection(&conn);
        conn.execute_batch("PRAGMA shrink_memory")?;
        drop(conn);
        let bytes = (held.schema + held.page_cache + held.statements + SHM_BYTES + POOL_OVERHEAD_BYTES).max(0);
        // Never above the whole budget (a pool that alone exceeds it is still kept), nor the weigher's u32.
        let weight = (bytes as u64).max(self.weight_floor).min(self.memory).min(u64::from(u32::MAX)) as u32;
        Ok(TenantDb {
            slug: slug.clone(),
            pool,
            wakeups: self.wakeups.clone(),
            on_commit: self.on_commit.clone(),
            writer: crate::backup::tracker::writer_lock(&self.path(slug)),
            retired: Arc::default(),
            weight,
        })
    }

    /// Creates the file of a new tenant, migrated and stamped with its slug and `incarnation`. Idempotent: a file
    /// already stamped with this incarnation is left as it is. Any other file at that path (left by an archived
    /// tenant of the same slug) is archived first, so a new tenant never inherits old data.
    pub fn create_file(&self, slug: &TenantSlug, incarnation: Option<&str>) -> Result<()> {
        if self.path(slug).exists() {
            let stamp = self.incarnation(slug)?;
            if incarnation.is_none() || stamp.as_deref() == incarnation {
                return Ok(());
            }
            let name = crate::tenants::effects::archive_name(slug, crate::now_unix());
            let moved = self.archive_as(slug, &name, None)?;
            tracing::warn!(tenant = %slug, archived = %moved.display(), "archived a stray file found at a new tenant's path");
        }
        self.pools.invalidate(slug);
        let mut conn = db::open_connection(&self.path(slug))?;
        migrate::migrate(&mut conn, migrate::TENANT, &format!("tenant {slug}"))?;
        let tx = conn.transaction()?;
        tx.execute("INSERT OR REPLACE INTO tenant_meta (key, value) VALUES ('slug', ?1)", [slug.as_str()])?;
        tx.execute(
            "INSERT OR REPLACE INTO tenant_meta (key, value) VALUES ('created_at', ?1)",
            [crate::now_unix().to_string()],
        )?;
        if let Some(incarnation) = incarnation {
            tx.execute("INSERT OR REPLACE INTO tenant_meta (key, value) VALUES ('incarnation', ?1)", [incarnation])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The incarnation stamped into the tenant's file (`None`: no file, or one made before files were stamped).
    pub fn incarnation(&self, slug: &TenantSlug) -> Result<Option<String>> {
        incarnation_of(&self.path(slug))
    }

    /// The data dir (parent of `tenants/` and `archive/`).
    pub fn data_dir(&self) -> &Path {
        self.tenants_dir.parent().unwrap_or(&self.tenants_dir)
    }

    /// Closes the tenant's pool and moves its file (with WAL and SHM) to `file` (relative to the data dir, as an
    /// `ArchiveTenant` entry names it, and checked to be `archive/{slug}-{unix}[-{8 hex}].db`). Nothing to do when
    /// the file is gone already, or when `incarnation` is given and the file there is stamped with another one (a
    /// newer tenant of the same slug lives there). An existing archive is never overwritten.
    pub fn archive_as(&self, slug: &TenantSlug, file: &str, incarnation: Option<&str>) -> Result<PathBuf> {
        let target = crate::tenants::effects::archive_path(self.data_dir(), slug, file)?;
        let source = self.path(slug);
        if !source.exists() {
            return Ok(target);
        }
        if let Some(wanted) = incarnation
            && let Some(stamp) = self.incarnation(slug)?
            && stamp != wanted
        {
            tracing::warn!(tenant = %slug, file, "not archiving: the file there belongs to a newer tenant of this slug");
            return Ok(target);
        }
        drop(self.move_out(slug, &target)?);
        Ok(target)
    }

    /// Moves the tenant's file (with WAL and SHM) to `target` after the backup's final capture of it. The answer
    /// holds the file's writer turn and keeps the backup off the path until dropped, so the caller can put a new
    /// file there first.
    fn move_out(&self, slug: &TenantSlug, target: &Path) -> Result<Option<crate::backup::Moving>> {
        if target.exists() {
            return Err(Error::internal(format!("archive {} exists; not overwriting it", target.display())));
        }
        let source = self.path(slug);
        self.pools.invalidate(slug);
        // Commits since the last backup sync go to the replica before the file leaves; no write lands after.
        let moving = crate::backup::before_archive(&source);
        // Fold the WAL into the main file so the archive is one self-contained file in the common case.
        if let Ok(conn) = db::open_connection(&source) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let io = |e: std::io::Error| Error::internal(format!("archive tenant {slug}: {e}"));
        std::fs::rename(&source, target).map_err(io)?;
        for ext in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{ext}", source.display()));
            if side.exists() {
                std::fs::rename(&side, format!("{}{ext}", target.display())).map_err(io)?;
            }
        }
        Ok(moving)
    }

    /// Applies pending migrations to every tenant file in `slugs`, returning what each got.
    pub fn migrate_all<'a>(
        &self,
        slugs: impl IntoIterator<Item = &'a TenantSlug>,
    ) -> Result<Vec<(TenantSlug, Vec<String>)>> {
        let mut report = Vec::new();
        for slug in slugs {
            let mut conn = db::open_connection(&self.path(slug))?;
            let applied = migrate::migrate(&mut conn, migrate::TENANT, &format!("tenant {slug}"))?;
            report.push((slug.clone(), applied));
        }
        Ok(report)
    }

    /// How many tenant pools are open now.
    pub fn open_pools(&self) -> u64 {
        self.pools.run_pending_tasks();
        self.pools.entry_count()
    }

    /// Connections of tenant pools, over all open pools: (open, checked out right now).
    pub fn connections(&self) -> (u64, u64) {
        self.pools.iter().fold((0, 0), |(open, in_use), (_, db)| {
            let state = db.pool.state();
            (open + u64::from(state.connections), in_use + u64::from(state.connections - state.idle_connections))
        })
    }

    /// The tenant databases open now (housekeeping visits these, never wakes idle tenants).
    pub fn open_dbs(&self) -> Vec<TenantDb> {
        self.pools.iter().map(|(_, db)| db).collect()
    }

    /// Drops every cached pool (shutdown).
    pub fn close_all(&self) {
        self.pools.invalidate_all();
        self.pools.run_pending_tasks();
    }
}

/// The incarnation stamped into the tenant file at `path` (`None`: no file, or one made before files were
/// stamped).
pub fn incarnation_of(path: &Path) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = db::open_connection(path)?;
    let stamp = conn
        .query_row("SELECT value FROM tenant_meta WHERE key = 'incarnation'", [], |r| r.get(0))
        .map(Some)
        .or_else(crate::control::none_if_no_rows);
    match stamp {
        Ok(stamp) => Ok(stamp),
        // A file too old to have tenant_meta has no stamp either.
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => Ok(None),
        Err(e) => Err(e.into()),
    }
}
