//! This node's Raft instance: started by `serve` over `data/raft/` (log and snapshots) and control.db, initialised as a one-node
//! cluster of itself when its store is pristine, and the way every control-plane write is proposed once it runs
//! (`ControlStore::apply` hands mutations here).
//!
//! A node has no cluster listener yet, so its membership is itself alone: the network below reports every peer
//! unreachable, and openraft never asks it for one in a cluster of one. On restart a one-node cluster is leader
//! again at once (openraft restores a leader from its own committed vote), so writes never wait for an election.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{Raft, RaftNetwork, RaftNetworkFactory, ServerState, SnapshotPolicy};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::{Peer, TypeConfig};
use crate::control::{Applied, ControlStore, Mutation, Outcome};
use crate::error::{Error, Result};
use crate::telemetry::Metrics;

/// The control plane's Raft on this node.
pub type ControlRaft = Raft<TypeConfig>;

/// Timing and log sizes: heartbeat 250 ms and an election timeout of 1-2 s (well above an fsync-ed append), at
/// most 32 entries per append (a blob chunk entry is up to about 700 KB), a snapshot every 2,000 entries keeping
/// 500 behind it for followers that lag a little (so raft.db holds at most about 2,500 entries).
fn config() -> Result<openraft::Config> {
    openraft::Config {
        cluster_name: "gatehouse".into(),
        heartbeat_interval: 250,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 15_000,
        max_payload_entries: 32,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(2000),
        max_in_snapshot_log_to_keep: 500,
        ..Default::default()
    }
    .validate()
    .map_err(Error::internal)
}

/// A control write that has not committed after this long answers `timeout` (it may still commit later).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts this node's Raft over `{dir}/raft.db`, `{dir}/snapshots/` and `control`, initialising a one-node cluster
/// on a pristine store, and waits until it leads. From then on `control` proposes its mutations through it.
///
/// A control.db that holds a Raft position while the log is pristine (raft.db lost or removed) forgets the
/// position first: the node starts a new one-node cluster over the file as it is, instead of waiting for
/// entries no log has.
pub async fn start(
    dir: &std::path::Path,
    node_id: u64,
    public_url: &str,
    control: Arc<ControlStore>,
    metrics: Arc<Metrics>,
) -> Result<ControlRaft> {
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
    let log = LogStore::open(&dir.join("raft.db"))?;
    if log.is_pristine()? && control.raft_mark()?.applied.is_some() {
        tracing::warn!("control.db holds a Raft position but raft.db is new: starting a new one-node cluster");
        control.forget_raft_mark()?;
    }
    let machine = StateMachine::new(control.clone(), dir.join("snapshots"))?;
    let raft = Raft::new(node_id, Arc::new(config()?), Network, log, machine).await.map_err(Error::internal)?;
    if !raft.is_initialized().await.map_err(Error::internal)? {
        let me = Peer { addr: String::new(), api_url: public_url.to_owned() };
        raft.initialize(BTreeMap::from([(node_id, me)])).await.map_err(Error::internal)?;
        tracing::info!(node_id, "initialised a one-node control-plane cluster");
    }
    raft.wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader == Some(node_id) && m.state == ServerState::Leader, "this node leads")
        .await
        .map_err(|e| Error::internal(format!("the control plane has no leader: {e}")))?;
    tokio::spawn(watch_metrics(raft.clone(), metrics));
    control.set_raft(raft.clone());
    Ok(raft)
}

/// Proposes `mutation` and answers as `ControlStore::apply_blocking` does locally: the entry's control-log index
/// and assigned value, or the refusal (or side-effect failure) as the error it was.
pub async fn propose(raft: &ControlRaft, metrics: &Metrics, mutation: Mutation) -> Result<Applied> {
    let started = Instant::now();
    let Ok(written) = tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(mutation)).await else {
        return Err(Error::Timeout);
    };
    let seconds = started.elapsed().as_secs_f64();
    metrics.record(|| metrics::histogram!("gatehouse_raft_commit_latency_seconds").record(seconds));
    let response = match written {
        Ok(response) => response,
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => return Err(Error::NoLeader),
        Err(err) => return Err(Error::internal(format!("control-plane write failed: {err}"))),
    };
    let reply = response.data.ok_or_else(|| Error::internal("a mutation entry was applied without a reply"))?;
    if let Some(err) = reply.error {
        return Err(err);
    }
    match reply.outcome {
        Outcome::Applied { assigned } => Ok(Applied { index: reply.index, assigned }),
        Outcome::Refused { code, message } => Err(Error::Conflict(format!("{code}: {message}"))),
    }
}

/// Whether this node's Raft is running and knows a leader (`/readyz`): the leader's id.
pub fn leader(raft: &ControlRaft) -> Option<u64> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let running = metrics.running_state.is_ok() && metrics.state != ServerState::Shutdown;
    if running { metrics.current_leader } else { None }
}

/// Keeps the Raft gauges current: state (0 learner, 1 follower, 2 candidate, 3 leader), term, last applied index
/// and leader changes.
async fn watch_metrics(raft: ControlRaft, metrics: Arc<Metrics>) {
    let mut watch = raft.metrics();
    let mut leader = None;
    loop {
        let current = watch.borrow_and_update().clone();
        let state = match current.state {
            ServerState::Learner => 0.0,
            ServerState::Follower => 1.0,
            ServerState::Candidate => 2.0,
            ServerState::Leader => 3.0,
            ServerState::Shutdown => -1.0,
        };
        let changed = current.current_leader != leader;
        leader = current.current_leader;
        metrics.record(|| {
            metrics::gauge!("gatehouse_raft_state").set(state);
            metrics::gauge!("gatehouse_raft_term").set(current.current_term as f64);
            metrics::gauge!("gatehouse_raft_last_applied").set(current.last_applied.map_or(0, |id| id.index) as f64);
            if changed {
                metrics::counter!("gatehouse_raft_leader_changes_total").increment(1);
            }
        });
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// The peer network of a node without a cluster listener: every peer is unreachable (a one-node cluster never
/// has one to reach).
struct Network;

struct NoPeer(u64);

#[derive(Debug, thiserror::Error)]
#[error("node {0} is out of reach: this node has no cluster listener")]
struct NoListener(u64);

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, Peer, E> {
        RPCError::Unreachable(Unreachable::new(&NoListener(self.0)))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NoPeer;

    async fn new_client(&mut self, target: u64, _node: &Peer) -> NoPeer {
        NoPeer(target)
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<u64>, RPCError<u64, Peer, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> std::result::Result<InstallSnapshotResponse<u64>, RPCError<u64, Peer, RaftError<u64, InstallSnapshotError>>>
    {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> std::result::Result<VoteResponse<u64>, RPCError<u64, Peer, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
