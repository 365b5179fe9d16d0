//! The control plane replicated by Raft (openraft 0.9, `storage-v2`): the types a node's Raft instance is built
//! from, its log in `data/raft/raft.db` (`log_store`), control.db as its state machine (`state_machine`), the
//! running node (`node`: proposing, forwarding, linearizable reads), how nodes reach each other (`net`, `tls`,
//! `server`: the internal listener) and who is a member (`membership`).
//!
//! Invariants:
//! - A log entry's payload is a `control::Mutation`, carried whole (blob chunks too) and applied by
//!   `ControlStore::apply_replicated`, which writes the entry's log id into control.db in the same transaction.
//! - The log is durable before openraft hears it is (`synchronous=FULL`, the callback runs after the commit).
//! - Node ids are the random u64 each data dir keeps in `node_id` (never reused for a wiped node).
//! - A snapshot is a copy of control.db; its metadata is read from the copy, so it cannot disagree with it.

// openraft's storage traits answer `StorageError` (over 200 bytes); the helpers here hand it on as it is.
#![allow(clippy::result_large_err)]

pub mod command;
pub mod log_store;
pub mod membership;
pub mod net;
pub mod node;
pub mod proxy;
pub mod server;
pub mod state_machine;
pub mod tls;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use serde::{Deserialize, Serialize};

use crate::control::Mutation;
use crate::control::replica::Replied;

/// A member as the others reach it: the internal cluster address and the public HTTP URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// `host:port` of the node's internal cluster listener.
    pub addr: String,
    /// The node's public base URL (where a member forwards a join, or a client is told to go).
    #[serde(default)]
    pub api_url: String,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

openraft::declare_raft_types!(
    /// The Raft types of the control plane.
    pub TypeConfig:
        D = Mutation,
        R = Option<Replied>,
        NodeId = u64,
        Node = Peer,
        SnapshotData = tokio::fs::File,
);

/// This node in its cluster: its id and listener settings, the client to its peers, and the lock that keeps
/// membership changes one at a time.
pub struct Cluster {
    pub id: u64,
    pub config: crate::config::ClusterConfig,
    /// `data/raft`: the log, the snapshots, the `joining` mark.
    pub dir: PathBuf,
    pub transport: Arc<net::Transport>,
    changes: tokio::sync::Mutex<()>,
    /// Held by this node's own `cluster join`: two at once would both reset it.
    joining: tokio::sync::Mutex<()>,
}

impl Cluster {
    pub fn new(id: u64, config: crate::config::ClusterConfig, data_dir: &std::path::Path) -> crate::Result<Self> {
        let transport = net::Transport::new(&config)?;
        let (changes, joining) = (tokio::sync::Mutex::new(()), tokio::sync::Mutex::new(()));
        Ok(Self { id, config, dir: data_dir.join("raft"), transport, changes, joining })
    }

    /// This node as its peers reach it.
    pub fn me(&self, public_url: &str) -> Peer {
        Peer { addr: self.config.advertise.clone().unwrap_or_default(), api_url: public_url.to_owned() }
    }
}

/// Whether the cluster recorded in `{data_dir}/control.db` has members besides `me`, read from the file alone
/// (offline commands: `admin create` and `restore control` are refused on a member of a larger cluster).
pub fn has_peers_offline(data_dir: &std::path::Path, me: u64) -> crate::Result<bool> {
    let path = data_dir.join("control.db");
    if !path.exists() {
        return Ok(false);
    }
    let mark = crate::control::replica::RaftMark::read_file(&path)?;
    mark.membership.map_or(Ok(false), |json| membership_has_peers(&json, me))
}

/// Whether a membership recorded in control.db (`meta.raft_membership`, openraft's JSON) names nodes besides `me`.
pub fn membership_has_peers(json: &str, me: u64) -> crate::Result<bool> {
    let stored: StoredMembership = serde_json::from_str(json).map_err(crate::Error::internal)?;
    Ok(stored.membership().nodes().any(|(id, _)| *id != me))
}

/// Middleware: an admin API read (`GET`/`HEAD` under `/admin/api/`) sees every write that completed before it
/// began, whichever node wrote it (`node::linearize`). Free on a one-node cluster.
pub async fn linearize_admin_reads(State(app): State<crate::app::AppState>, request: Request, next: Next) -> Response {
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    // Only a caller with credentials costs the leader a read index (the handler refuses the others anyway).
    let credentials = request.headers().contains_key(axum::http::header::AUTHORIZATION)
        || request
            .headers()
            .get_all(axum::http::header::COOKIE)
            .iter()
            .any(|c| c.as_bytes().windows(9).any(|w| w == b"gh_admin="));
    if read
        && credentials
        && request.uri().path().starts_with("/admin/api/")
        && let Some(node) = app.control.node()
        && let Err(err) = node::linearize(&node).await
    {
        return err.into_response();
    }
    next.run(request).await
}

pub type LogId = openraft::LogId<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, Peer>;
pub type StorageError = openraft::StorageError<u64>;

/// A storage failure as openraft takes it: `what` says which part failed.
fn storage_error(
    what: impl Fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
    err: impl fmt::Display,
) -> StorageError {
    what(openraft::AnyError::error(err)).into()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::storage::{RaftLogStorage, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder};

    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::*;
    use crate::control::{ControlStore, Outcome};
    use crate::telemetry::Metrics;
    use crate::tenants::TenantSlug;

    fn stores(dir: &std::path::Path) -> (LogStore, StateMachine, Arc<ControlStore>) {
        let control = Arc::new(ControlStore::open(dir, Arc::new(Metrics::new())).unwrap());
        let log = LogStore::open(&dir.join("raft.db")).unwrap();
        let sm = StateMachine::new(control.clone(), dir.join("raft-snapshots")).unwrap();
        (log, sm, control)
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().unwrap();
            let (log, sm, _) = stores(dir.path());
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn the_stores_pass_openrafts_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn create(slug: &str) -> Mutation {
        Mutation::CreateTenant {
            slug: TenantSlug::parse(slug).unwrap(),
            name: slug.into(),
            settings: Default::default(),
            at: 1,
            home_node: Some(9),
            incarnation: Some(format!("i-{slug}")),
        }
    }

    fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry { log_id: log_id(term, index), payload }
    }

    fn tenants(control: &ControlStore) -> Vec<String> {
        control
            .read_blocking(|conn| {
                let mut stmt = conn.prepare("SELECT slug FROM tenants ORDER BY slug")?;
                Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
            })
            .unwrap()
    }

    /// Mutations applied as entries get their outcomes; a snapshot carries the rows and the position into another
    /// node's live store, whose readers see them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_apply_and_a_snapshot_moves_them_to_another_node() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_, mut sm, _control) = stores(a.path());
        let members = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, Peer::default())]));
        let replies = sm
            .apply([
                entry(1, 1, EntryPayload::Membership(members)),
                entry(1, 2, EntryPayload::Normal(create("acme"))),
                entry(1, 3, EntryPayload::Normal(create("acme"))),
                entry(2, 4, EntryPayload::Blank),
                entry(2, 5, EntryPayload::Normal(create("beta"))),
            ])
            .await
            .unwrap();
        assert!(replies[0].is_none());
        assert_eq!(replies[1].as_ref().unwrap().outcome, Outcome::Applied { assigned: None });
        assert!(matches!(&replies[2].as_ref().unwrap().outcome, Outcome::Refused { code, .. } if code == "conflict"));
        assert!(replies[3].is_none());
        assert!(
            matches!(&replies[2].as_ref().unwrap().error, Some(crate::Error::Conflict(_))),
            "the proposer on this node gets the refusal as it was"
        );
        assert_eq!(replies[4].as_ref().unwrap().index, 3, "the control log counts mutations, refused ones too");
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2, 5)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 1)));

        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, 5)));
        let (_, mut other, other_control) = stores(b.path());
        other_control.apply_blocking(create("stale")).unwrap();
        let resets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let told = resets.clone();
        other_control.on_reset(move || {
            told.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        let mut incoming = other.begin_receiving_snapshot().await.unwrap();
        let mut sent = snapshot.snapshot;
        tokio::io::copy(&mut sent, &mut *incoming).await.unwrap();
        other.install_snapshot(&snapshot.meta, incoming).await.unwrap();
        assert_eq!(tenants(&other_control), ["acme", "beta"], "the snapshot replaced what was there");
        assert_eq!(other_control.last_applied().unwrap(), 3);
        assert_eq!(other.applied_state().await.unwrap(), (Some(log_id(2, 5)), membership));
        assert_eq!(resets.load(std::sync::atomic::Ordering::SeqCst), 1);
        let current = other.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        // A snapshot whose content does not match what it claims is refused, and the store keeps its content.
        let mut wrong = snapshot.meta.clone();
        wrong.last_log_id = Some(log_id(3, 9));
        wrong.snapshot_id = "other".into();
        let mut incoming = other.begin_receiving_snapshot().await.unwrap();
        let mut sent =
            tokio::fs::File::open(b.path().join("raft-snapshots").join(format!("{}.db", current.meta.snapshot_id)))
                .await
                .unwrap();
        tokio::io::copy(&mut sent, &mut *incoming).await.unwrap();
        assert!(other.install_snapshot(&wrong, incoming).await.is_err());
        assert_eq!(tenants(&other_control), ["acme", "beta"]);
    }

    /// Entries and the vote survive a reopen; a purge leaves no holes and is remembered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_durable_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.db");
        {
            let mut log = LogStore::open(&path).unwrap();
            let chunk = Mutation::PutBlobChunk {
                slug: TenantSlug::parse("acme").unwrap(),
                upload: "00ff".into(),
                sha256: "a".repeat(64),
                seq: 0,
                total: 1,
                data: vec![7; crate::control::mutation::CHUNK_BYTES],
                at: 1,
            };
            let entries = vec![
                entry(1, 1, EntryPayload::Blank),
                entry(1, 2, EntryPayload::Normal(chunk)),
                entry(1, 3, EntryPayload::Normal(create("acme"))),
            ];
            openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries).await.unwrap();
            log.save_vote(&openraft::Vote::new_committed(1, 1)).await.unwrap();
            log.purge(log_id(1, 1)).await.unwrap();
        }
        let mut log = LogStore::open(&path).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(1, 1)), Some(log_id(1, 3))));
        assert_eq!(log.read_vote().await.unwrap(), Some(openraft::Vote::new_committed(1, 1)));
        let entries = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [2, 3]);
        match &entries[0].payload {
            EntryPayload::Normal(Mutation::PutBlobChunk { data, .. }) => {
                assert_eq!(data.len(), crate::control::mutation::CHUNK_BYTES)
            }
            other => panic!("{other:?}"),
        }
    }
}
