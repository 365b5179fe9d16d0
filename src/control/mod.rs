//! The control plane: `control.db` holds tenants, operator accounts, API tokens, admin sessions and settings.
//!
//! Invariants:
//! - Every write is a `Mutation` passed to `apply`, which runs it in one transaction on the single writer
//!   connection. Nothing else writes control.db (migrations aside), so Raft can later sit in front of `apply`.
//! - Reads go through the plain query functions in `tables` over a pooled read connection.
//! - The tenant record cache is invalidated by `apply` for the tenant a mutation touches.
//! - Every applied mutation is an entry of the control log (`log.rs`): its index is recorded as
//!   `meta.last_applied` in the mutation's own transaction, and the entry kept in `control_log` (the last
//!   `log::KEEP`). Replaying the log into an empty file gives the same rows (`apply_entry`).

pub mod api;
pub mod log;
pub mod mutation;
pub mod tables;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

pub use mutation::Mutation;
pub use tables::Tenant;

use crate::db::{self, Pool, migrate};
use crate::error::{Error, Result};
use crate::telemetry::Metrics;
use crate::tenants::TenantSlug;

/// A function told about each applied mutation.
type Listener = Box<dyn Fn(&Mutation) + Send + Sync>;

pub struct ControlStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Pool,
    tenants: Cache<TenantSlug, Option<Arc<Tenant>>>,
    /// Counts applied mutations: a tenant record read while one was applied is not cached, or a read that
    /// started before a commit could put the old record back after the commit's invalidation.
    applied: std::sync::atomic::AtomicU64,
    metrics: Arc<Metrics>,
    /// Told about every applied mutation, after its commit: caches outside this store (OAuth keys and clients)
    /// and plugin lists invalidate here, so a replicated mutation refreshes them on every node alike.
    listeners: std::sync::RwLock<Vec<Listener>>,
}

impl ControlStore {
    /// Opens (creating and migrating) `{data_dir}/control.db`.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Self> {
        let path = data_dir.join("control.db");
        let mut writer = db::open_connection(&path)?;
        let applied = migrate::migrate(&mut writer, migrate::CONTROL, "control.db")?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrated control.db");
        }
        let reader = db::open_pool(&path, 4, db::scheduler("control-pool-{}"))?;
        Ok(Self {
            path,
            writer: Arc::new(Mutex::new(writer)),
            reader,
            // A short TTL bounds staleness should another process (an offline CLI command) write control.db.
            tenants: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build(),
            applied: std::sync::atomic::AtomicU64::new(0),
            metrics,
            listeners: std::sync::RwLock::new(Vec::new()),
        })
    }

    /// Adds a function told about every applied mutation, after its commit.
    pub fn on_apply(&self, listener: impl Fn(&Mutation) + Send + Sync + 'static) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(listener));
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `mutation` on the blocking pool.
    pub async fn apply(self: &Arc<Self>, mutation: Mutation) -> Result<()> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.apply_blocking(mutation)).await?
    }

    /// Applies `mutation` in one transaction as the next log entry (a local counter today) and invalidates what
    /// it made stale.
    pub fn apply_blocking(&self, mutation: Mutation) -> Result<()> {
        self.apply_at(None, mutation)
    }

    /// Applies a log entry whose index the caller supplies (replaying a log; Raft later): the same entries in
    /// the same order give the same control.db on every node.
    pub fn apply_entry(&self, index: u64, mutation: Mutation) -> Result<()> {
        self.apply_at(Some(index), mutation)
    }

    /// The index of the last applied entry.
    pub fn last_applied(&self) -> Result<u64> {
        self.read_blocking(last_applied)
    }

    fn apply_at(&self, index: Option<u64>, mutation: Mutation) -> Result<()> {
        let mut conn = self.writer.lock().map_err(|_| Error::internal("control writer lock poisoned"))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let index = match index {
            Some(index) => index,
            None => last_applied(&tx)? + 1,
        };
        apply(&tx, &mutation)?;
        log::record(&tx, index, &mutation)?;
        tx.commit()?;
        drop(conn);
        if let Some(slug) = mutation.touched_tenant() {
            self.applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.tenants.invalidate(slug);
        }
        for listener in self.listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
            listener(&mutation);
        }
        tracing::debug!(mutation = mutation.kind(), "control mutation applied");
        Ok(())
    }

    /// Runs a read on a pooled connection, on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        db::with_conn(&self.reader, move |conn| f(conn)).await
    }

    /// Runs a read on the calling thread (offline commands, start-up).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.reader.get()?;
        f(&conn)
    }

    /// The tenant record, from the cache when possible.
    pub async fn tenant(&self, slug: &TenantSlug) -> Result<Option<Arc<Tenant>>> {
        if let Some(hit) = self.tenants.get(slug) {
            self.metrics.cache_lookup("tenant_record", true);
            return Ok(hit);
        }
        self.metrics.cache_lookup("tenant_record", false);
        let epoch = self.applied.load(std::sync::atomic::Ordering::SeqCst);
        let key = slug.clone();
        let found = self.read(move |conn| tables::get_tenant(conn, &key)).await?.map(Arc::new);
        if self.applied.load(std::sync::atomic::Ordering::SeqCst) == epoch {
            self.tenants.insert(slug.clone(), found.clone());
        }
        Ok(found)
    }

    /// `SELECT 1` on a read connection: the readiness probe.
    pub async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }
}

/// The one function that changes control.db.
pub fn apply(tx: &Transaction<'_>, mutation: &Mutation) -> Result<()> {
    match mutation {
        Mutation::InitKeyCheck { value } => {
            tx.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?1)", [value])?;
        }
        Mutation::CreateTenant { slug, name, settings, at } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
            if exists {
                return Err(Error::Conflict(format!("a tenant with slug {slug} exists")));
            }
            tx.execute(
                "INSERT INTO tenants (slug, name, status, settings, created_at, updated_at)
                 VALUES (?1, ?2, 'active', ?3, ?4, ?4)",
                params![slug.as_str(), name, to_json(settings)?, at],
            )?;
        }
        Mutation::UpdateTenant { slug, name, settings_patch, at } => {
            let settings = match settings_patch {
                Some(patch) => {
                    let current: Option<String> = tx
                        .query_row("SELECT settings FROM tenants WHERE slug = ?1", [slug.as_str()], |r| r.get(0))
                        .map(Some)
                        .or_else(none_if_no_rows)?;
                    let Some(current) = current else { return Err(Error::TenantNotFound) };
                    let current: crate::tenants::TenantSettings =
                        serde_json::from_str(&current).map_err(Error::internal)?;
                    Some(to_json(&current.merged(patch)?)?)
                }
                None => None,
            };
            let changed = tx.execute(
                "UPDATE tenants SET name = COALESCE(?2, name), settings = COALESCE(?3, settings), updated_at = ?4
                 WHERE slug = ?1",
                params![slug.as_str(), name, settings, at],
            )?;
            require_row(changed)?;
        }
        Mutation::SetTenantStatus { slug, status, at } => {
            let changed = tx.execute(
                "UPDATE tenants SET status = ?2, updated_at = ?3 WHERE slug = ?1",
                params![slug.as_str(), status.as_str(), at],
            )?;
            require_row(changed)?;
        }
        Mutation::ArchiveTenant { slug, file, at } => {
            let name: Option<String> = tx
                .query_row("SELECT name FROM tenants WHERE slug = ?1", [slug.as_str()], |r| r.get(0))
                .map(Some)
                .or_else(none_if_no_rows)?;
            let Some(name) = name else { return Err(Error::TenantNotFound) };
            tx.execute(
                "INSERT INTO tenant_archive (slug, name, file, archived_at) VALUES (?1, ?2, ?3, ?4)",
                params![slug.as_str(), name, file, at],
            )?;
            tx.execute("DELETE FROM operators WHERE scope = ?1", [format!("tenant:{slug}")])?;
            tx.execute("DELETE FROM api_tokens WHERE scope = ?1", [format!("tenant:{slug}")])?;
            tx.execute("DELETE FROM tenants WHERE slug = ?1", [slug.as_str()])?;
        }
        Mutation::CreateOperator { id, email, password_hash, scope, at } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM operators WHERE email = ?1)", [email], |r| r.get(0))?;
            if exists {
                return Err(Error::Conflict(format!("an admin account for {email} exists")));
            }
            tx.execute(
                "INSERT INTO operators (id, email, password_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, email, password_hash, scope.to_string(), at],
            )?;
        }
        Mutation::CreateApiToken { id, name, token_hash, scope, created_by, at, expires_at } => {
            tx.execute(
                "INSERT INTO api_tokens (id, name, token_hash, scope, created_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, name, token_hash, scope.to_string(), created_by, at, expires_at],
            )?;
        }
        Mutation::SetBootstrapToken { token_hash, at } => {
            tx.execute(
                "INSERT INTO api_tokens (id, name, token_hash, scope, created_by, created_at, expires_at)
                 VALUES ('bootstrap', 'GATEHOUSE_BOOTSTRAP_TOKEN', ?1, 'operator', NULL, ?2, NULL)
                 ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash",
                params![token_hash, at],
            )?;
        }
        Mutation::DeleteApiToken { id } => {
            require_row(tx.execute("DELETE FROM api_tokens WHERE id = ?1", [id])?)
                .map_err(|_| Error::NotFound("token"))?;
        }
        Mutation::CreateAdminSession { id_hash, operator_id, csrf_token, at, expires_at } => {
            tx.execute(
                "INSERT INTO admin_sessions (id_hash, operator_id, csrf_token, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, operator_id, csrf_token, at, expires_at],
            )?;
        }
        Mutation::DeleteOperator { id } => {
            require_row(tx.execute("DELETE FROM operators WHERE id = ?1", [id])?)?;
        }
        Mutation::DeleteAdminSession { id_hash } => {
            tx.execute("DELETE FROM admin_sessions WHERE id_hash = ?1", [id_hash])?;
        }
        Mutation::PurgeExpiredSessions { now } => {
            tx.execute("DELETE FROM admin_sessions WHERE expires_at <= ?1", [now])?;
        }
        Mutation::SetTenantSmtp { slug, smtp: None } => {
            tx.execute("DELETE FROM tenant_smtp WHERE slug = ?1", [slug.as_str()])?;
        }
        Mutation::SetTenantSmtp { slug, smtp: Some(s) } => {
            let exists: bool =
                tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
            if !exists {
                return Err(Error::TenantNotFound);
            }
            tx.execute(
                "INSERT OR REPLACE INTO tenant_smtp
                   (slug, host, port, tls, username, password_sealed, from_email, from_name, updated_at, guarded)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    slug.as_str(),
                    s.host,
                    s.port,
                    s.tls.as_str(),
                    s.username,
                    s.password_sealed,
                    s.from_email,
                    s.from_name,
                    s.updated_at,
                    s.guarded
                ],
            )?;
        }
        Mutation::PutPlugin { slug, plugin, at } => {
            require_tenant(tx, slug)?;
            crate::plugins::records::put(tx, slug, plugin, *at)?;
        }
        Mutation::AddPluginVersion { slug, name, version, sha256, component, at } => {
            crate::plugins::records::add_version(tx, slug, name, *version, sha256, component, *at)?;
        }
        Mutation::SetPluginActive { slug, name, version, at } => {
            crate::plugins::records::set_active(tx, slug, name, *version, *at)?;
        }
        Mutation::DeletePlugin { slug, name } => crate::plugins::records::delete(tx, slug, name)?,
        Mutation::PutOAuthClient { slug, client } => {
            require_tenant(tx, slug)?;
            crate::oidc::clients::put(tx, slug, client)?;
        }
        Mutation::DeleteOAuthClient { slug, client_id } => {
            let gone = tx.execute(
                "DELETE FROM oauth_clients WHERE slug = ?1 AND client_id = ?2",
                params![slug.as_str(), client_id],
            )?;
            if gone == 0 {
                return Err(Error::NotFound("client"));
            }
        }
        Mutation::AddSigningKey { slug, kid, alg, public_jwk, private_sealed, at, retire_previous_at } => {
            require_tenant(tx, slug)?;
            tx.execute(
                "UPDATE signing_keys SET expires_at = ?2 WHERE slug = ?1 AND expires_at IS NULL",
                params![slug.as_str(), retire_previous_at],
            )?;
            tx.execute(
                "INSERT INTO signing_keys (kid, slug, alg, public_jwk, private_sealed, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                params![kid, slug.as_str(), alg.as_str(), public_jwk, private_sealed, at],
            )?;
        }
        Mutation::PurgeSigningKeys { now } => {
            tx.execute("DELETE FROM signing_keys WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now])?;
        }
    }
    Ok(())
}

fn require_tenant(tx: &Transaction<'_>, slug: &TenantSlug) -> Result<()> {
    let exists: bool =
        tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE slug = ?1)", [slug.as_str()], |r| r.get(0))?;
    if exists { Ok(()) } else { Err(Error::TenantNotFound) }
}

/// `meta.last_applied`: the index of the last entry applied to this file (0 for none).
fn last_applied(conn: &Connection) -> Result<u64> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'last_applied'", [], |r| r.get(0))
        .map(Some)
        .or_else(none_if_no_rows)?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(Error::internal)
}

fn require_row(changed: usize) -> Result<()> {
    if changed == 0 { Err(Error::TenantNotFound) } else { Ok(()) }
}

pub(crate) fn none_if_no_rows<T>(err: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match err {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        other => Err(other),
    }
}
