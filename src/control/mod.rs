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
mod apply;
pub mod log;
pub mod mutation;
pub mod replica;
pub mod tables;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use rusqlite::{Connection, TransactionBehavior};

pub use apply::apply;
pub use mutation::{Mutation, Outcome};
pub use tables::Tenant;

use crate::db::{self, Pool, migrate};
use crate::error::{Error, Result};
use crate::telemetry::Metrics;
use crate::tenants::TenantSlug;

/// A function told about each applied mutation, after its commit. Listeners that touch files (a tenant's file
/// on its home node) are idempotent and may fail: the entry stays applied, the local proposer hears the error,
/// and start-up reconciliation finishes the job.
type Listener = Box<dyn Fn(&Mutation) -> Result<()> + Send + Sync>;

/// A mutation applied through `ControlStore::apply`: its log index and the value `apply` assigned, if any.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    pub index: u64,
    pub assigned: Option<u64>,
}

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
    /// Told when the whole file was replaced by a snapshot (`replica::ControlStore::restore_from`).
    resets: std::sync::RwLock<Vec<Reset>>,
    /// This node's Raft once `serve` started it: mutations are proposed through its log from then on. Unset
    /// (offline commands, before start-up is done), they apply to the file directly; unset after Raft ran (a
    /// join swapping it, a node that left), they fail with `no_leader`.
    node: std::sync::RwLock<Option<Arc<crate::cluster::node::Node>>>,
    clustered: std::sync::atomic::AtomicBool,
}

/// Page cache of each pooled control.db reader, in KiB.
const CONTROL_READER_CACHE_KIB: u32 = 512;

/// A function told that control.db was replaced as a whole (a Raft snapshot installed): caches drop everything,
/// files are reconciled.
type Reset = Box<dyn Fn() -> Result<()> + Send + Sync>;

impl ControlStore {
    /// Opens (creating and migrating) `{data_dir}/control.db`.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Self> {
        let path = data_dir.join("control.db");
        let mut writer = db::open_connection(&path)?;
        let applied = migrate::migrate(&mut writer, migrate::CONTROL, "control.db")?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrated control.db");
        }
        // Raft purges log entries once they are applied here, so an applied entry must survive a power cut:
        // the writer syncs each commit (readers never write).
        writer.execute_batch("PRAGMA synchronous=FULL")?;
        // Readers answer point lookups that mostly hit caches in front of them (tenants, OIDC clients and keys):
        // a 512 KiB page cache each instead of SQLite's 2 MiB. With 10,000 tenants control.db is about 75 MB, four
        // default caches may hold 8 MiB, and SQLite's heap after creating them measured 3 MiB less with this.
        let reader = db::open_pool(&path, 4, db::scheduler("control-pool-{}", 1), Some(CONTROL_READER_CACHE_KIB))?;
        Ok(Self {
            path,
            writer: Arc::new(Mutex::new(writer)),
            reader,
            // A short TTL bounds staleness should another process (an offline CLI command) write control.db.
            tenants: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build(),
            applied: std::sync::atomic::AtomicU64::new(0),
            metrics,
            listeners: std::sync::RwLock::new(Vec::new()),
            resets: std::sync::RwLock::new(Vec::new()),
            node: std::sync::RwLock::new(None),
            clustered: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sends every later mutation through `node`'s Raft (`cluster::node::start`); `None` while a join swaps it
    /// or after this node left: writes then answer `no_leader`, never the file directly.
    pub fn set_node(&self, node: Option<Arc<crate::cluster::node::Node>>) {
        self.clustered.store(true, std::sync::atomic::Ordering::SeqCst);
        *self.node.write().unwrap_or_else(|e| e.into_inner()) = node;
    }

    /// This node's Raft and peers, once it runs.
    pub fn node(&self) -> Option<Arc<crate::cluster::node::Node>> {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node's Raft, once it runs.
    pub fn raft(&self) -> Option<crate::cluster::node::ControlRaft> {
        self.node().map(|node| node.raft.clone())
    }

    /// Whether writes must go through Raft: set since `serve` started it (even while a join swaps it).
    fn clustered(&self) -> bool {
        self.clustered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Adds a function told about every applied (not refused) mutation, after its commit.
    pub fn on_apply(&self, listener: impl Fn(&Mutation) -> Result<()> + Send + Sync + 'static) {
        self.listeners.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(listener));
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Proposes `mutation` through this node's Raft log, or applies it on the blocking pool when Raft is not
    /// running (offline commands).
    pub async fn apply(self: &Arc<Self>, mutation: Mutation) -> Result<Applied> {
        if let Some(node) = self.node() {
            return crate::cluster::node::propose(&node, mutation).await;
        }
        if self.clustered() {
            return Err(Error::NoLeader);
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.apply_blocking(mutation)).await?
    }

    /// `apply` for blocking code (a thread of the blocking pool, or before the runtime serves). A refusal
    /// (`conflict`, `tenant_not_found`, …) is recorded as the entry's outcome and answered as the error it was.
    pub fn apply_blocking(&self, mutation: Mutation) -> Result<Applied> {
        if let Some(node) = self.node() {
            return tokio::runtime::Handle::current().block_on(crate::cluster::node::propose(&node, mutation));
        }
        if self.clustered() {
            return Err(Error::NoLeader);
        }
        let (index, outcome, refusal, effects) = self.apply_at(None, &mutation, None)?;
        if let Some(err) = refusal {
            return Err(err);
        }
        effects?;
        let assigned = match outcome {
            Outcome::Applied { assigned } => assigned,
            Outcome::Refused { .. } => None,
        };
        Ok(Applied { index, assigned })
    }

    /// Applies a log entry whose index the caller supplies (replaying a log; Raft later): the same entries in
    /// the same order give the same control.db and the same outcomes on every node. The index must be the next
    /// one (`last_applied + 1`): an entry is never applied twice.
    pub fn apply_entry(&self, index: u64, mutation: Mutation) -> Result<Outcome> {
        let (_, outcome, _, effects) = self.apply_at(Some(index), &mutation, None)?;
        effects?;
        Ok(outcome)
    }

    /// The index of the last applied entry.
    pub fn last_applied(&self) -> Result<u64> {
        self.read_blocking(last_applied)
    }

    /// Runs `mutation` in one transaction with its log entry and `last_applied`, then its listeners — still
    /// holding the writer, so side effects happen in log order. Business refusals roll back to a savepoint and
    /// are recorded as the outcome (the error comes back too, for the local proposer); storage failures roll
    /// everything back and are the caller's error (this node failed, not the entry). The last value is the
    /// first listener failure (the entry stays applied).
    /// `mark`, when given, is written in the same transaction (the Raft entry this mutation is).
    #[allow(clippy::type_complexity)]
    fn apply_at(
        &self,
        index: Option<u64>,
        mutation: &Mutation,
        mark: Option<&replica::RaftMark>,
    ) -> Result<(u64, Outcome, Option<Error>, Result<()>)> {
        let mut conn = self.writer.lock().map_err(|_| Error::internal("control writer lock poisoned"))?;
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next = last_applied(&tx)? + 1;
        let index = match index {
            Some(index) if index != next => {
                return Err(Error::internal(format!("log entry {index} out of order: the next entry is {next}")));
            }
            Some(index) => index,
            None => next,
        };
        let result = {
            let sp = tx.savepoint()?;
            match apply(&sp, mutation) {
                Ok(assigned) => {
                    sp.commit()?;
                    Ok(assigned)
                }
                Err(err) => {
                    sp.finish()?; // rolls back to the savepoint and releases it; a failure here is the node's
                    Err(err)
                }
            }
        };
        let (outcome, refusal) = match result {
            Ok(assigned) => (Outcome::Applied { assigned }, None),
            Err(err) => match mutation::refusal(err) {
                Ok((code, refused)) => {
                    (Outcome::Refused { code: code.to_owned(), message: refused.to_string() }, Some(refused))
                }
                Err(failure) => return Err(failure),
            },
        };
        log::record(&tx, index, mutation, &outcome)?;
        if let Some(mark) = mark {
            mark.write(&tx)?;
        }
        tx.commit()?;
        let mut effects = Ok(());
        if refusal.is_none() {
            if let Some(slug) = mutation.touched_tenant() {
                self.applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.tenants.invalidate(slug);
            } else if matches!(mutation, Mutation::AdoptTenants { .. }) {
                self.applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.tenants.invalidate_all();
            }
            effects = self.notify(mutation);
        }
        drop(conn);
        tracing::debug!(mutation = mutation.kind(), index, ?outcome, "control entry applied");
        Ok((index, outcome, refusal, effects))
    }

    /// Tells every listener; the first failure is answered after all ran (the entry itself stays applied).
    /// Listeners run under the writer lock, so they must not apply mutations themselves.
    fn notify(&self, mutation: &Mutation) -> Result<()> {
        let mut first = None;
        for listener in self.listeners.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Err(err) = listener(mutation) {
                tracing::warn!(mutation = mutation.kind(), error = %err, "a side effect of an applied mutation failed; the next start reconciles it");
                first.get_or_insert(err);
            }
        }
        first.map_or(Ok(()), Err)
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
            // A mutation may have been applied between the check and the insert: its invalidation could have run
            // before the insert, leaving this (older) record cached. Writers count before they invalidate, so a
            // count that moved means drop it; one that did not means their invalidation comes after the insert.
            if self.applied.load(std::sync::atomic::Ordering::SeqCst) != epoch {
                self.tenants.invalidate(slug);
            }
        }
        Ok(found)
    }

    /// `SELECT 1` on a read connection: the readiness probe.
    pub async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }
}

/// Deserialises an `Option<Option<T>>` telling an absent field (`None`, via `#[serde(default)]`) from `null`
/// (`Some(None)`).
pub fn double_option<'de, T, D>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// `meta.last_applied`: the index of the last entry applied to this file (0 for none).
fn last_applied(conn: &Connection) -> Result<u64> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'last_applied'", [], |r| r.get(0))
        .map(Some)
        .or_else(none_if_no_rows)?;
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
}

pub(crate) fn none_if_no_rows<T>(err: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match err {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> (tempfile::TempDir, ControlStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ControlStore::open(dir.path(), Arc::new(Metrics::new())).unwrap();
        (dir, store)
    }

    fn slug() -> TenantSlug {
        TenantSlug::parse("acme").unwrap()
    }

    fn create(name: &str) -> Mutation {
        Mutation::CreateTenant {
            slug: TenantSlug::parse(name).unwrap(),
            name: name.into(),
            settings: Default::default(),
            at: 1,
            home_node: Some(7),
            incarnation: Some("i-1".into()),
        }
    }

    #[test]
    fn entries_apply_once_in_order_and_old_key_entries_stay_unconditional() {
        let (_dir, store) = store();
        assert!(store.apply_entry(2, create("acme")).is_err(), "index 1 comes first");
        store.apply_entry(1, create("acme")).unwrap();
        assert!(store.apply_entry(1, create("beta")).is_err(), "an index is applied once");
        // An AddSigningKey entry written before `replaces` existed has no such field: it applies unconditionally.
        let old = serde_json::json!({"type": "add_signing_key", "slug": "acme", "kid": "k0", "alg": "ES256",
            "public_jwk": "{}", "private_sealed": "s", "at": 1, "retire_previous_at": 2});
        let old: Mutation = serde_json::from_value(old).unwrap();
        assert!(matches!(&old, Mutation::AddSigningKey { replaces: None, .. }));
        assert_eq!(store.apply_entry(2, old.clone()).unwrap(), Outcome::Applied { assigned: None });
        let again = match old {
            Mutation::AddSigningKey { kid, .. } if kid == "k0" => serde_json::json!({"type": "add_signing_key",
                "slug": "acme", "kid": "k1", "alg": "ES256", "public_jwk": "{}", "private_sealed": "s", "at": 1,
                "retire_previous_at": 2}),
            _ => unreachable!(),
        };
        assert_eq!(
            store.apply_entry(3, serde_json::from_value(again).unwrap()).unwrap(),
            Outcome::Applied { assigned: None }
        );
        // `replaces: null` round-trips as "expects no active key" (not as absent).
        let expects_none = Mutation::AddSigningKey {
            slug: slug(),
            kid: "k2".into(),
            alg: crate::oidc::keys::SigningAlg::Es256,
            public_jwk: "{}".into(),
            private_sealed: "s".into(),
            at: 1,
            retire_previous_at: 2,
            replaces: Some(None),
        };
        let json = serde_json::to_value(&expects_none).unwrap();
        assert!(json["replaces"].is_null() && json.get("replaces").is_some());
        let back: Mutation = serde_json::from_value(json).unwrap();
        assert!(matches!(back, Mutation::AddSigningKey { replaces: Some(None), .. }));
        assert!(matches!(store.apply_entry(4, back).unwrap(), Outcome::Refused { .. }), "acme has a key");
        // A key of an algorithm the tenant does not sign with is refused (a keeper racing a settings change).
        let wrong_alg = Mutation::AddSigningKey {
            slug: slug(),
            kid: "k3".into(),
            alg: crate::oidc::keys::SigningAlg::Es256,
            public_jwk: "{}".into(),
            private_sealed: "s".into(),
            at: 1,
            retire_previous_at: 2,
            replaces: Some(Some("k1".into())),
        };
        assert!(matches!(store.apply_entry(5, wrong_alg).unwrap(), Outcome::Refused { .. }), "acme signs with RS256");
    }

    /// A log with a large component in chunks, a version assigned in apply, racing key proposals and refusals.
    fn entries(component: &[u8]) -> Vec<Mutation> {
        use sha2::{Digest, Sha256};
        let sha256 = crate::plugins::artifacts::hex(&Sha256::digest(component));
        let total = component.len().div_ceil(mutation::CHUNK_BYTES) as u32;
        let key = |kid: &str, replaces: Option<&str>| Mutation::AddSigningKey {
            slug: slug(),
            kid: kid.into(),
            alg: crate::oidc::keys::SigningAlg::Rs256,
            public_jwk: "{}".into(),
            private_sealed: "sealed".into(),
            at: 10,
            retire_previous_at: 100,
            replaces: Some(replaces.map(str::to_owned)),
        };
        let mut log = vec![
            Mutation::CreateTenant {
                slug: slug(),
                name: "Acme".into(),
                settings: Default::default(),
                at: 1,
                home_node: Some(7),
                incarnation: Some("i-1".into()),
            },
            // The same slug again: refused, nothing changes.
            Mutation::CreateTenant {
                slug: slug(),
                name: "Other".into(),
                settings: Default::default(),
                at: 2,
                home_node: Some(8),
                incarnation: Some("i-2".into()),
            },
            key("k1", None),
            // Two owners both saw k1 active: the first lands, the second is refused.
            key("k2", Some("k1")),
            key("k3", Some("k1")),
            Mutation::PutPlugin {
                slug: slug(),
                plugin: serde_json::from_value(json!({"name": "p", "world": "login", "failure_policy": "fail_closed",
                    "timeout_ms": 100, "memory_mb": 16, "priority": 1, "config": {}}))
                .unwrap(),
                at: 3,
            },
            // Its chunks are not in yet: refused.
            Mutation::AddPluginVersion {
                slug: slug(),
                name: "p".into(),
                upload: "0001".into(),
                sha256: sha256.clone(),
                at: 4,
            },
        ];
        // The same bytes uploaded twice at once (two uploads, interleaved): each assembles its own chunks.
        for (seq, data) in component.chunks(mutation::CHUNK_BYTES).enumerate() {
            for upload in ["0001", "0002"] {
                log.push(Mutation::PutBlobChunk {
                    slug: slug(),
                    upload: upload.into(),
                    sha256: sha256.clone(),
                    seq: seq as u32,
                    total,
                    data: data.to_vec(),
                    at: 5,
                });
            }
        }
        for (upload, at) in [("0001", 6), ("0002", 7)] {
            let sha256 = sha256.clone();
            log.push(Mutation::AddPluginVersion { slug: slug(), name: "p".into(), upload: upload.into(), sha256, at });
        }
        log
    }

    fn outcomes(store: &ControlStore, log: &[Mutation]) -> Vec<Outcome> {
        log.iter().enumerate().map(|(i, m)| store.apply_entry(i as u64 + 1, m.clone()).unwrap()).collect()
    }

    #[test]
    fn the_same_log_gives_the_same_outcomes_and_rows_on_every_node() {
        let component: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
        let log = entries(&component);
        for m in &log {
            assert!(serde_json::to_vec(m).unwrap().len() < 1024 * 1024, "{} fits in 1 MiB", m.kind());
        }
        let (_a, first) = store();
        let (_b, second) = store();
        let once = outcomes(&first, &log);
        assert_eq!(once, outcomes(&second, &log));
        let refused = |code: &str| Outcome::Refused { code: code.into(), message: String::new() };
        let codes: Vec<Outcome> = once
            .iter()
            .map(|o| match o {
                Outcome::Refused { code, .. } => refused(code),
                applied => applied.clone(),
            })
            .collect();
        let applied = Outcome::Applied { assigned: None };
        let version = |v| Outcome::Applied { assigned: Some(v) };
        let chunks = vec![applied.clone(); 2 * component.len().div_ceil(mutation::CHUNK_BYTES)];
        let expected: Vec<Outcome> = [
            applied.clone(),
            refused("conflict"),
            applied.clone(),
            applied.clone(),
            refused("conflict"),
            applied.clone(),
            refused("validation_failed"),
        ]
        .into_iter()
        .chain(chunks)
        .chain([version(1), version(2)])
        .collect();
        assert_eq!(codes, expected);
        for store in [&first, &second] {
            assert_eq!(store.last_applied().unwrap(), log.len() as u64, "refused entries count as applied");
            let (name, active, bytes, leftover): (String, Vec<String>, Vec<u8>, i64) = store
                .read_blocking(|conn| {
                    let name = conn.query_row("SELECT name FROM tenants", [], |r| r.get(0))?;
                    let mut stmt = conn.prepare("SELECT kid FROM signing_keys WHERE expires_at IS NULL")?;
                    let active = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
                    let bytes =
                        conn.query_row("SELECT component FROM plugin_versions WHERE version = 2", [], |r| r.get(0))?;
                    let leftover = conn.query_row("SELECT COUNT(*) FROM blob_chunks", [], |r| r.get(0))?;
                    Ok((name, active, bytes, leftover))
                })
                .unwrap();
            assert_eq!(name, "Acme", "the refused creation changed nothing");
            assert_eq!(active, ["k2"], "one key won the race");
            assert!(bytes == component, "the component is whole");
            assert_eq!(leftover, 0, "the version consumed its chunks");
        }
    }

    #[test]
    fn readers_keep_a_small_page_cache_and_the_writer_the_default() {
        let (_dir, store) = store();
        let cache = |conn: &Connection| conn.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)).unwrap();
        let reader = store.read_blocking(|conn| Ok(cache(conn))).unwrap();
        assert_eq!(reader, -i64::from(CONTROL_READER_CACHE_KIB));
        assert_eq!(cache(&store.writer.lock().unwrap()), -2000, "SQLite's default");
    }

    #[test]
    fn chunks_are_checked_before_they_are_stored() {
        let (_dir, store) = store();
        let next = || store.last_applied().unwrap() + 1;
        let bad = |m: Mutation| matches!(store.apply_entry(next(), m).unwrap(), Outcome::Refused { .. });
        let chunk = |sha256: &str, seq, total, len| Mutation::PutBlobChunk {
            slug: slug(),
            upload: "00ff".into(),
            sha256: sha256.into(),
            seq,
            total,
            data: vec![0; len],
            at: 1,
        };
        let name = "a".repeat(64);
        assert!(bad(chunk(&name, 0, 1, 1)), "the tenant must exist");
        store.apply_entry(next(), create("acme")).unwrap();
        assert!(bad(chunk("../x", 0, 1, 1)), "a chunk is named by a SHA-256");
        assert!(bad(chunk(&name, 0, 200, 1)), "at most 64 MiB in all");
        assert!(bad(chunk(&name, 1, 1, 1)), "seq < total");
        assert!(bad(chunk(&name, 0, 1, mutation::CHUNK_BYTES + 1)), "at most 512 KiB");
        assert_eq!(store.apply_entry(next(), chunk(&name, 0, 1, 10)).unwrap(), Outcome::Applied { assigned: None });
    }
}
