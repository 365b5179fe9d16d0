//! Who is in the cluster: joining (the joining node's side and the leader's), removing and leaving, and the status
//! `gatehouse cluster status` prints.
//!
//! - A join goes to any member, which hands it to the leader once. The leader checks the binary version and the
//!   master key, refuses a known voter id (a wiped node must come back under a new id) and an address another
//!   node holds, snapshots and purges its log (so the newcomer starts from a copy of control.db, history from
//!   before Raft included), adds the node as a learner, waits until it caught up, then makes it a voter.
//! - The joining node first checks with the member (a dry run), then drops its own one-node cluster: control.db
//!   copied and Raft state moved to `archive/`, control.db emptied, a `joining` mark so a restart does not make it
//!   a cluster of itself again. A node left a learner (its promotion failed) asks again without a reset.
//! - Membership changes run one at a time on the leader (`Cluster::changes`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Peer;
use super::net::{CallError, HOP_HEADER};
use super::node::Node;
use crate::app::AppState;
use crate::error::{Error, Result};

/// How long a leader waits for a new learner to catch up before it gives up on the join.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A node asking to join (sent by `gatehouse cluster join` through the joining node).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinRequest {
    /// The joining node's id (its data dir's `node_id`).
    pub node_id: u64,
    /// `host:port` of its cluster listener.
    pub addr: String,
    /// Its public URL (the cluster's `GATEHOUSE_PUBLIC_URL`).
    #[serde(default)]
    pub api_url: String,
    /// Its binary version: log entries are serde enums, so every member runs the same.
    pub version: String,
    /// Its master key's check value: a member with another key could not open replicated secrets.
    pub key_check: String,
    /// Check only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A member as `cluster status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub node_id: u64,
    pub addr: String,
    /// `voter` or `learner`.
    pub role: String,
    /// Whether this node reached it just now (a 1 s ping).
    pub reachable: bool,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner`, or `stopped` (this node left or is joining).
    pub state: String,
    pub members: Vec<Member>,
}

/// What the leader answers a join.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinAnswer {
    pub leader_id: u64,
    pub voters: BTreeSet<u64>,
}

/// Which node to remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub node_id: u64,
}

/// The joining node's own request (from its operator's CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinCommand {
    /// Any member: its public URL, or its cluster address `host:port` (required with cluster TLS).
    pub leader: String,
}

/// This node's running Raft, or `no_leader` (a join swapping it, a node that left).
pub fn running(app: &AppState) -> Result<Arc<Node>> {
    app.control.node().ok_or(Error::NoLeader)
}

/// Handles a join on any member: checks, then the leader's work (here, or forwarded to the leader once).
pub async fn join(app: &AppState, request: JoinRequest, forwarded: bool) -> Result<JoinAnswer> {
    let version = env!("CARGO_PKG_VERSION");
    if request.version != version {
        return Err(Error::Conflict(format!(
            "the joining node runs version {}, this cluster {version}: every member runs the same version",
            request.version
        )));
    }
    if !app.master_key.verify_key_check(&request.key_check) {
        return Err(Error::Conflict(
            "the joining node's master key differs from this cluster's (GATEHOUSE_MASTER_KEY must be the same)".into(),
        ));
    }
    if request.addr.trim().is_empty() || request.node_id == 0 {
        return Err(Error::validation("a joining node needs an id and a cluster address"));
    }
    let node = running(app)?;
    if let Some((leader, peer)) = node.remote_leader() {
        if forwarded {
            return Err(Error::NoLeader);
        }
        let url = format!("{}://{}/cluster/v1/join", app.cluster.config.scheme(), peer.addr);
        tracing::info!(node = request.node_id, leader, "handing a join to the leader");
        return node
            .transport
            .post_url(&url, &request, CATCH_UP + Duration::from_secs(60), true)
            .await
            .map_err(Error::from);
    }
    if node.raft.metrics().borrow().state != ServerState::Leader {
        return Err(Error::NoLeader);
    }
    let _one_at_a_time = app.cluster.changes.lock().await;
    let membership = node.raft.metrics().borrow().membership_config.membership().clone();
    if membership.voter_ids().any(|id| id == request.node_id) {
        return Err(Error::Conflict(format!(
            "node {} is already a voter of this cluster; a node whose data dir was wiped joins under a new id \
             (remove the old one with `gatehouse cluster remove {}`)",
            request.node_id, request.node_id
        )));
    }
    if let Some((other, _)) = membership.nodes().find(|(id, peer)| **id != request.node_id && peer.addr == request.addr)
    {
        return Err(Error::Conflict(format!(
            "address {} belongs to node {other}; remove it first (`gatehouse cluster remove {other}`)",
            request.addr
        )));
    }
    let voters: BTreeSet<u64> = membership.voter_ids().chain([request.node_id]).collect();
    // The leader must reach the newcomer over the cluster channel (TLS, token, the right node at that address).
    let ping: std::result::Result<serde_json::Value, CallError> =
        node.transport.get(&request.addr, "/cluster/v1/ping", Duration::from_secs(5)).await;
    match ping {
        Ok(answer) if answer["node_id"].as_u64() == Some(request.node_id) => {}
        Ok(answer) => {
            return Err(Error::Conflict(format!(
                "{} answers as node {}, not {}",
                request.addr, answer["node_id"], request.node_id
            )));
        }
        Err(err) => {
            return Err(Error::Conflict(format!(
                "the leader cannot reach {} over the cluster channel: {err}",
                request.addr
            )));
        }
    }
    if request.dry_run {
        return Ok(JoinAnswer { leader_id: node.id, voters });
    }
    snapshot_and_purge(&node).await?;
    let peer = Peer { addr: request.addr.clone(), api_url: request.api_url.clone() };
    tracing::info!(node = request.node_id, addr = %request.addr, "adding a learner");
    match tokio::time::timeout(CATCH_UP, node.raft.add_learner(request.node_id, peer, true)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return Err(Error::internal(format!("adding node {} failed: {err}", request.node_id))),
        Err(_) => {
            return Err(Error::Conflict(format!(
                "node {} did not catch up within {} s; it stays a learner, run the join again",
                request.node_id,
                CATCH_UP.as_secs()
            )));
        }
    }
    node.raft
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([request.node_id])), false)
        .await
        .map_err(|e| Error::internal(format!("promoting node {} failed: {e}", request.node_id)))?;
    tracing::info!(node = request.node_id, "a node joined as a voter");
    Ok(JoinAnswer { leader_id: node.id, voters })
}

/// Builds a snapshot of everything applied and purges the log up to it, so a new learner is sent the snapshot.
async fn snapshot_and_purge(node: &Node) -> Result<()> {
    let applied = node.raft.metrics().borrow().last_applied.map_or(0, |id| id.index);
    node.raft.trigger().snapshot().await.map_err(Error::internal)?;
    let built = node
        .raft
        .wait(Some(Duration::from_secs(60)))
        .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "a snapshot for a new member")
        .await
        .map_err(|e| Error::internal(format!("snapshot for a new member: {e}")))?;
    if let Some(snapshot) = built.snapshot {
        node.raft.trigger().purge_log(snapshot.index).await.map_err(Error::internal)?;
    }
    Ok(())
}

/// Removes a node (a voter or a learner), on the leader or forwarded to it once.
pub async fn remove(app: &AppState, node_id: u64, forwarded: bool) -> Result<Status> {
    let node = running(app)?;
    if let Some((_, peer)) = node.remote_leader() {
        if forwarded {
            return Err(Error::NoLeader);
        }
        let url = format!("{}://{}/cluster/v1/remove", app.cluster.config.scheme(), peer.addr);
        let _: Status =
            node.transport.post_url(&url, &RemoveRequest { node_id }, Duration::from_secs(60), true).await?;
        return Ok(status(app).await);
    }
    if node.raft.metrics().borrow().state != ServerState::Leader {
        return Err(Error::NoLeader);
    }
    let _one_at_a_time = app.cluster.changes.lock().await;
    let membership = node.raft.metrics().borrow().membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let change = if voters.contains(&node_id) {
        if voters.len() == 1 {
            return Err(Error::Conflict("the last voter cannot be removed".into()));
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
    } else if membership.get_node(&node_id).is_some() {
        ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
    } else {
        return Err(Error::NotFound("node"));
    };
    node.raft
        .change_membership(change, false)
        .await
        .map_err(|e| Error::internal(format!("removing node {node_id} failed: {e}")))?;
    tracing::warn!(node = node_id, "removed a node from the cluster");
    Ok(status(app).await)
}

/// This node leaves its cluster: refused while it is the home of tenants (moving them is not built yet); once
/// the others have removed it, its Raft stops and control-plane writes here answer `no_leader`.
pub async fn leave(app: &AppState) -> Result<Status> {
    let node = running(app)?;
    if !node.has_peers() {
        return Err(Error::Conflict("this node is a one-node cluster; there is nothing to leave".into()));
    }
    let me = node.id;
    let homed: i64 = app
        .control
        .read(move |c| Ok(c.query_row("SELECT COUNT(*) FROM tenants WHERE home_node = ?1", [me as i64], |r| r.get(0))?))
        .await?;
    if homed > 0 {
        return Err(Error::Conflict(format!(
            "this node is the home of {homed} tenant(s); delete them (or restore them elsewhere) before it leaves"
        )));
    }
    remove(app, me, false).await?;
    app.control.set_node(None);
    let _ = node.raft.shutdown().await;
    tracing::warn!("this node left the cluster: stop it, and start it again only with a new data dir");
    Ok(status(app).await)
}

/// The joining node's side of `gatehouse cluster join`: checks with the member, drops this node's own one-node
/// cluster and control plane, starts an empty Raft and asks to be added.
pub async fn join_cluster(app: &AppState, command: JoinCommand) -> Result<JoinAnswer> {
    let Ok(_one_join) = app.cluster.joining.try_lock() else {
        return Err(Error::Conflict("this node is joining a cluster already".into()));
    };
    let Some(addr) = app.cluster.config.advertise.clone() else {
        return Err(Error::Conflict("this node has no cluster listener (GATEHOUSE_CLUSTER_ADDR)".into()));
    };
    let node = running(app)?;
    let (alone, learner) = {
        let metrics = node.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let alone = membership.nodes().all(|(id, _)| *id == node.id);
        (alone, !alone && membership.learner_ids().any(|id| id == node.id))
    };
    if !alone && !learner {
        return Err(Error::Conflict(
            "this node is already a member of a cluster; `gatehouse cluster leave` first".into(),
        ));
    }
    let target = Target::parse(&command.leader, app.cluster.config.tls.is_some())?;
    let mut request = JoinRequest {
        node_id: node.id,
        addr,
        api_url: app.config.public_url.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        key_check: app.master_key.key_check(),
        dry_run: true,
    };
    if alone {
        let (tenants, _) = app.control.read(crate::control::tables::count_tenants).await?;
        if tenants > 0 {
            return Err(Error::Conflict(format!(
                "this node holds {tenants} tenant(s); only a node without tenants joins a cluster (its control plane \
                 is replaced by the cluster's)"
            )));
        }
        let check = target.send(&node, &request, Duration::from_secs(30)).await?;
        tracing::warn!(leader = check.leader_id, "joining a cluster: this node's own control plane is set aside");
        reset_for_join(app, &node).await?;
    } else {
        tracing::warn!("this node is a learner of the cluster already: asking again to be made a voter");
    }
    request.dry_run = false;
    let node = running(app)?;
    let joined = target.send(&node, &request, CATCH_UP + Duration::from_secs(90)).await?;
    let _ = std::fs::remove_file(app.cluster.dir.join("joining"));
    // Answered once this node has the membership that makes it a voter, so its own status says so.
    let me = node.id;
    let seen = node
        .raft
        .wait(Some(Duration::from_secs(15)))
        .metrics(|m| m.membership_config.membership().voter_ids().any(|id| id == me), "this node is a voter")
        .await;
    if let Err(err) = seen {
        tracing::warn!(error = %err, "joined, but this node has not seen its promotion yet");
    }
    tracing::info!(leader = joined.leader_id, voters = ?joined.voters, "joined the cluster");
    Ok(joined)
}

/// The member a joining node asks: its public URL, or its cluster address (`host:port`, over the cluster channel).
enum Target {
    Url(String),
    Cluster(String),
}

impl Target {
    /// With cluster TLS the join token must not travel in plain text: an `http://` URL is refused.
    fn parse(leader: &str, tls: bool) -> Result<Self> {
        let leader = leader.trim().trim_end_matches('/');
        if !leader.contains("://") {
            return match leader.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Target::Cluster(leader.into()))
                }
                _ => Err(Error::validation("--leader must be a member's http(s) URL or its cluster address host:port")),
            };
        }
        match leader.parse::<reqwest::Url>() {
            Ok(u) if u.scheme() == "http" && tls => Err(Error::validation(
                "this cluster uses TLS: name the member's cluster address (host:port), so the join token travels over \
                 mutual TLS, not plain HTTP",
            )),
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Target::Url(format!("{leader}/cluster/v1/join"))),
            _ => Err(Error::validation("--leader must be a member's http(s) URL or its cluster address host:port")),
        }
    }

    async fn send(&self, node: &Node, request: &JoinRequest, timeout: Duration) -> Result<JoinAnswer> {
        Ok(match self {
            Target::Url(url) => node.transport.post_url(url, request, timeout, false).await?,
            Target::Cluster(addr) => node.transport.call(addr, "/cluster/v1/join", None, request, timeout).await?,
        })
    }
}

/// Stops this node's Raft, moves its Raft state to `archive/`, empties control.db and starts a Raft that waits
/// for a leader (marked `joining`).
async fn reset_for_join(app: &AppState, node: &Arc<Node>) -> Result<()> {
    app.setup.clear();
    app.control.set_node(None);
    node.raft.shutdown().await.map_err(Error::internal)?;
    let dir = app.cluster.dir.clone();
    let archive = app.config.data_dir.join("archive");
    let empty = app.config.data_dir.join("join-empty");
    let control = app.control.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let io = |what: &str, e: std::io::Error| Error::internal(format!("{what}: {e}"));
        std::fs::create_dir_all(&archive).map_err(|e| io("archive dir", e))?;
        let stamp = uuid::Uuid::now_v7().simple().to_string();
        control.snapshot_to(&archive.join(format!("control-{stamp}.db")))?;
        if dir.exists() {
            let to = archive.join(format!("raft-{stamp}"));
            std::fs::rename(&dir, &to).map_err(|e| io("archive raft state", e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io("raft dir", e))?;
        std::fs::write(dir.join("joining"), b"").map_err(|e| io("joining mark", e))?;
        let _ = std::fs::remove_dir_all(&empty);
        std::fs::create_dir_all(&empty).map_err(|e| io("empty control plane", e))?;
        let blank = crate::control::ControlStore::open(&empty, Arc::new(crate::telemetry::Metrics::new()))?;
        drop(blank);
        control.restore_from(&empty.join("control.db"))?;
        let _ = std::fs::remove_dir_all(&empty);
        Ok(())
    })
    .await??;
    let me =
        Peer { addr: app.cluster.config.advertise.clone().unwrap_or_default(), api_url: app.config.public_url.clone() };
    let entries = app.cluster.config.snapshot_entries;
    let (control, metrics, transport) = (app.control.clone(), app.metrics.clone(), node.transport.clone());
    super::node::start(&app.cluster.dir, node.id, me, control, metrics, transport, entries).await?;
    Ok(())
}

/// The cluster as this node sees it, each member pinged (1 s).
pub async fn status(app: &AppState) -> Status {
    let Some(node) = app.control.node() else {
        return Status { node_id: app.node_id, leader_id: None, term: 0, state: "stopped".into(), members: vec![] };
    };
    let (leader_id, term, state, membership) = {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "stopped",
        };
        (m.current_leader, m.current_term, state.to_owned(), m.membership_config.membership().clone())
    };
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let peers: BTreeMap<u64, Peer> = membership.nodes().map(|(id, peer)| (*id, peer.clone())).collect();
    let pings: Vec<_> = peers
        .iter()
        .map(|(id, peer)| {
            let (node, id, addr) = (node.clone(), *id, peer.addr.clone());
            tokio::spawn(async move {
                if id == node.id {
                    return true;
                }
                let answer: std::result::Result<serde_json::Value, CallError> =
                    node.transport.get(&addr, "/cluster/v1/ping", Duration::from_secs(1)).await;
                answer.is_ok_and(|v| v["node_id"].as_u64() == Some(id))
            })
        })
        .collect();
    let mut reachable = Vec::with_capacity(pings.len());
    for ping in pings {
        reachable.push(ping.await.unwrap_or(false));
    }
    let members = peers
        .into_iter()
        .zip(reachable)
        .map(|((node_id, peer), reachable)| Member {
            node_id,
            addr: peer.addr,
            role: if voters.contains(&node_id) { "voter" } else { "learner" }.into(),
            reachable,
        })
        .collect();
    Status { node_id: node.id, leader_id, term, state, members }
}

/// Whether a request was forwarded by another node.
pub fn forwarded(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(HOP_HEADER)
}
