//! This node's Raft instance: started by `serve` over `data/raft/` (log and snapshots) and control.db, initialised
//! as a one-node cluster of itself when its store is pristine, and the way every control-plane write is proposed
//! once it runs (`ControlStore::apply` hands mutations here): on the leader through its log, on a follower
//! forwarded once to the leader (`/cluster/v1/write`). Linearizable reads (the admin API's) wait for the leader's
//! read index.
//!
//! On restart a one-node cluster is leader again at once (openraft restores a leader from its own committed vote),
//! so writes never wait for an election.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use super::log_store::LogStore;
use super::net::{CallError, Network, Transport};
use super::state_machine::StateMachine;
use super::{Peer, TypeConfig};
use crate::control::{Applied, ControlStore, Mutation, Outcome};
use crate::error::{Error, Result};
use crate::telemetry::Metrics;

/// The control plane's Raft on this node.
pub type ControlRaft = Raft<TypeConfig>;

/// Timing and log sizes: heartbeat 250 ms and an election timeout of 0.8-1.2 s (well above an fsync-ed append).
/// openraft 0.9 lets a follower that saw a leader campaign only after a leader lease (the maximum timeout) plus its
/// timeout, checked on ticks of 375 ms, so a dead leader is typically replaced within 2-3 s (1-2 s would give
/// 3-4.5 s); a split vote or a candidate with a shorter log adds a round. At
/// most 32 entries per append (a blob chunk entry is up to about 700 KB), a snapshot every `snapshot_entries`
/// (2,000 by default) keeping a quarter as many behind it for followers that lag a little (so raft.db holds at
/// most about 2,500 entries).
fn config(snapshot_entries: u64) -> Result<openraft::Config> {
    openraft::Config {
        cluster_name: "gatehouse".into(),
        heartbeat_interval: 250,
        election_timeout_min: 800,
        election_timeout_max: 1200,
        install_snapshot_timeout: 15_000,
        // Chunks travel as JSON arrays of numbers (about 3.5 bytes per byte): 1 MiB keeps a request near 4 MB.
        snapshot_max_chunk_size: 1 << 20,
        max_payload_entries: 32,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_entries),
        max_in_snapshot_log_to_keep: snapshot_entries / 4,
        ..Default::default()
    }
    .validate()
    .map_err(Error::internal)
}

/// A control write that has not committed after this long answers `timeout` (it may still commit later).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a forwarded write or a linearizable read waits for this node to apply what the leader said.
const CATCH_UP: Duration = Duration::from_secs(10);

/// This node's Raft and how it reaches the others. `ControlStore` holds the current one; a join replaces it.
pub struct Node {
    pub id: u64,
    pub raft: ControlRaft,
    pub transport: Arc<Transport>,
    metrics: Arc<Metrics>,
}

/// What the leader answers a write another node forwarded: the control-log index and assigned value, and the
/// Raft log index the forwarding node waits to have applied before it answers its own client.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteAnswer {
    pub index: u64,
    pub assigned: Option<u64>,
    pub raft_index: u64,
}

/// What the leader answers a linearizable read: the Raft index the reading node must have applied.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadIndex {
    pub raft_index: u64,
}

/// Starts this node's Raft over `{dir}/raft.db`, `{dir}/snapshots/` and `control`, and hands it to `control`.
///
/// A pristine node becomes a one-node cluster of itself, unless `{dir}/joining` says it is on its way into another
/// cluster (`cluster join` reset it and waits for the leader's snapshot). A one-node cluster leads at once, and
/// start waits for that; a member of a larger cluster starts without a leader (`/readyz` says so until one is
/// known), since its peers may still be starting.
///
/// A control.db that holds a Raft position while the log is pristine (raft.db lost or removed) forgets the
/// position first: the node starts a new one-node cluster over the file as it is, instead of waiting for
/// entries no log has.
pub async fn start(
    dir: &std::path::Path,
    node_id: u64,
    me: Peer,
    control: Arc<ControlStore>,
    metrics: Arc<Metrics>,
    transport: Arc<Transport>,
    snapshot_entries: u64,
) -> Result<Arc<Node>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
    let joining = dir.join("joining").exists();
    let log = LogStore::open(&dir.join("raft.db"))?;
    let mark = control.raft_mark()?;
    if log.is_pristine()? && mark.applied.is_some() {
        // A member that lost its log also lost its vote: as a cluster of itself it would split the cluster, and
        // back in it could vote twice in one term.
        if let Some(membership) = &mark.membership
            && super::membership_has_peers(membership, node_id)?
        {
            return Err(Error::internal(
                "raft.db is missing, but control.db says this node is a member of a cluster with other nodes: \
                 a member must never come back without its log; start it with a new data dir and join again",
            ));
        }
        if !joining {
            tracing::warn!("control.db holds a Raft position but raft.db is new: starting a new one-node cluster");
            control.forget_raft_mark()?;
        }
    }
    let machine = StateMachine::new(control.clone(), dir.join("snapshots"))?;
    let network = Network { transport: transport.clone() };
    let raft = Raft::new(node_id, Arc::new(config(snapshot_entries)?), network, log, machine)
        .await
        .map_err(Error::internal)?;
    if joining {
        tracing::warn!(
            "this node is joining a cluster: it waits for the leader (run `gatehouse cluster join` again if it failed)"
        );
    } else if !raft.is_initialized().await.map_err(Error::internal)? {
        raft.initialize(BTreeMap::from([(node_id, me.clone())])).await.map_err(Error::internal)?;
        tracing::info!(node_id, "initialised a one-node control-plane cluster");
    }
    let alone = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        membership.voter_ids().eq([node_id]) && membership.learner_ids().next().is_none()
    };
    if alone {
        raft.wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(node_id) && m.state == ServerState::Leader, "this node leads")
            .await
            .map_err(|e| Error::internal(format!("the control plane has no leader: {e}")))?;
        // An address that changed (GATEHOUSE_CLUSTER_ADVERTISE set or moved) is what peers will be told.
        let known = raft.metrics().borrow().membership_config.membership().get_node(&node_id).cloned();
        if known.as_ref() != Some(&me) {
            let change = openraft::ChangeMembers::SetNodes(BTreeMap::from([(node_id, me)]));
            raft.change_membership(change, false).await.map_err(Error::internal)?;
        }
    }
    tokio::spawn(watch_metrics(raft.clone(), metrics.clone()));
    let node = Arc::new(Node { id: node_id, raft, transport, metrics });
    control.set_node(Some(node.clone()));
    Ok(node)
}

impl Node {
    /// The leader this node knows of, with its address (`None` when there is none, or it is this node).
    pub fn remote_leader(&self) -> Option<(u64, Peer)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader.filter(|id| *id != self.id)?;
        let peer = metrics.membership_config.membership().get_node(&leader).cloned()?;
        Some((leader, peer))
    }

    /// Whether the membership holds any node but this one.
    pub fn has_peers(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().nodes().any(|(id, _)| *id != self.id)
    }

    /// Waits until this node has applied Raft index `index`, for at most `CATCH_UP`: whether it did.
    async fn catch_up(&self, index: u64) -> bool {
        let waited = self.raft.wait(Some(CATCH_UP)).applied_index_at_least(Some(index), "catch up").await;
        if let Err(err) = &waited {
            tracing::warn!(index, error = %err, "this node has not applied the leader's index yet");
        }
        waited.is_ok()
    }
}

/// Proposes `mutation` and answers as `ControlStore::apply_blocking` does locally: the entry's control-log index
/// and assigned value, or the refusal (or side-effect failure) as the error it was. On a follower the write is
/// forwarded to the leader once, and answered when this node has applied it too (so the caller reads its write).
pub async fn propose(node: &Node, mutation: Mutation) -> Result<Applied> {
    let started = Instant::now();
    let answer = match node.remote_leader() {
        Some((leader, peer)) => forward(node, leader, &peer, &mutation).await,
        None if node.has_peers() => match write_here(node, mutation.clone()).await {
            // Leadership moved between the look and the write: the new leader takes it.
            Err(Error::NoLeader) => match node.remote_leader() {
                Some((leader, peer)) => forward(node, leader, &peer, &mutation).await,
                None => Err(Error::NoLeader),
            },
            answer => answer.map(|(applied, _)| applied),
        },
        None => write_here(node, mutation).await.map(|(applied, _)| applied),
    };
    let seconds = started.elapsed().as_secs_f64();
    node.metrics.record(|| metrics::histogram!("gatehouse_raft_commit_latency_seconds").record(seconds));
    answer
}

/// Proposes `mutation` on this node, which must lead (`no_leader` otherwise): the outcome and its Raft index.
pub async fn write_here(node: &Node, mutation: Mutation) -> Result<(Applied, u64)> {
    let Ok(written) = tokio::time::timeout(PROPOSE_TIMEOUT, node.raft.client_write(mutation)).await else {
        return Err(Error::Timeout);
    };
    let response = match written {
        Ok(response) => response,
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => return Err(Error::NoLeader),
        Err(err) => return Err(Error::internal(format!("control-plane write failed: {err}"))),
    };
    let raft_index = response.log_id.index;
    let reply = response.data.ok_or_else(|| Error::internal("a mutation entry was applied without a reply"))?;
    if let Some(err) = reply.error {
        return Err(err);
    }
    match reply.outcome {
        Outcome::Applied { assigned } => Ok((Applied { index: reply.index, assigned }, raft_index)),
        Outcome::Refused { code, message } => Err(Error::Conflict(format!("{code}: {message}"))),
    }
}

/// Sends `mutation` to the leader's `/cluster/v1/write` and waits until this node applied it.
async fn forward(node: &Node, leader: u64, peer: &Peer, mutation: &Mutation) -> Result<Applied> {
    let answer: std::result::Result<WriteAnswer, CallError> =
        node.transport.call(&peer.addr, "/cluster/v1/write", Some(leader), mutation, PROPOSE_TIMEOUT).await;
    match answer {
        Ok(answer) => {
            // Committed either way; a node slow to apply it still answers (its next linearizable read waits).
            node.catch_up(answer.raft_index).await;
            Ok(Applied { index: answer.index, assigned: answer.assigned })
        }
        Err(CallError::Unreachable(why)) => {
            tracing::warn!(leader, %why, "the leader is out of reach");
            Err(Error::NoLeader)
        }
        Err(CallError::Failed(why)) => {
            tracing::warn!(leader, %why, "a forwarded write got no answer; it may have committed");
            Err(Error::Timeout)
        }
        Err(err) => Err(err.into()),
    }
}

/// Makes a read that follows linearizable: this node has applied everything the leader had committed when the
/// read began (openraft's read index, confirmed by a quorum). A one-node cluster has nothing to wait for.
pub async fn linearize(node: &Node) -> Result<()> {
    if !node.has_peers() {
        return Ok(());
    }
    if let Some((leader, peer)) = node.remote_leader() {
        let answer: std::result::Result<ReadIndex, CallError> =
            node.transport.call(&peer.addr, "/cluster/v1/read-index", Some(leader), &(), CATCH_UP).await;
        return match answer {
            Ok(read) if node.catch_up(read.raft_index).await => Ok(()),
            Ok(_) => Err(Error::Timeout),
            Err(CallError::Unreachable(_)) => Err(Error::NoLeader),
            Err(CallError::Failed(_)) => Err(Error::Timeout),
            Err(err) => Err(err.into()),
        };
    }
    read_index(node).await.map(drop)
}

/// On the leader: the Raft index a linearizable read must wait for, once a quorum confirmed this node still leads.
pub async fn read_index(node: &Node) -> Result<u64> {
    // A quorum round has the heartbeat interval to answer: a follower busy for a moment is asked again (3 tries)
    // before the read fails.
    for attempt in 0..3 {
        match tokio::time::timeout(CATCH_UP, node.raft.ensure_linearizable()).await {
            Ok(Ok(read)) => return Ok(read.map_or(0, |id| id.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) if attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(RaftError::APIError(_))) => return Err(Error::NoLeader),
            Ok(Err(err)) => return Err(Error::internal(format!("linearizable read: {err}"))),
            Err(_) => return Err(Error::NoLeader),
        }
    }
    Err(Error::NoLeader)
}

/// Waits (at most `CATCH_UP`) until this node has applied Raft index `index`: a request another node passed on
/// sees what that node had applied.
pub async fn applied_at_least(node: &Node, index: u64) {
    let behind = node.raft.metrics().borrow().last_applied.is_none_or(|id| id.index < index);
    if behind {
        node.catch_up(index).await;
    }
}

impl Node {
    /// The Raft index this node has applied.
    pub fn applied(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map_or(0, |id| id.index)
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
