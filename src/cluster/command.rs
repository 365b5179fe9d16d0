//! `gatehouse cluster join|leave|remove|status`: each calls this node's cluster listener with the join token (the
//! node's own environment names the listener, its TLS files and the token).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::{Config, Secret};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Join this node to the cluster of the member at --leader. The node must hold no tenants: its own control
    /// plane is set aside (under archive/) and replaced by the cluster's.
    Join {
        /// Any member: its public URL (e.g. http://10.0.0.1:8080), or its cluster address host:port (required with
        /// cluster TLS, so the token travels over mutual TLS); the member hands the join to the leader.
        #[arg(long)]
        leader: String,
        #[command(flatten)]
        local: LocalNode,
    },
    /// Take this node out of its cluster (refused while it is the home of tenants). SIGTERM is a restart, not a
    /// leave.
    Leave {
        #[command(flatten)]
        local: LocalNode,
    },
    /// Remove another node (a dead one, say) from the cluster.
    Remove {
        /// The node's id (see `cluster status`).
        node: u64,
        #[command(flatten)]
        local: LocalNode,
    },
    /// The cluster as this node sees it: leader, term, members and whether each answers.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        local: LocalNode,
    },
}

#[derive(Args)]
pub struct LocalNode {
    /// The cluster's join token (GATEHOUSE_CLUSTER_JOIN_TOKEN by default).
    #[arg(long, env = "GATEHOUSE_CLUSTER_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This node's cluster listener, host:port (GATEHOUSE_CLUSTER_ADVERTISE or GATEHOUSE_CLUSTER_ADDR by default).
    #[arg(long)]
    node: Option<String>,
}

/// `gatehouse cluster …`: calls this node's cluster listener with the join token.
pub async fn run(cmd: ClusterCommand, mut config: Config) -> anyhow::Result<()> {
    use crate::cluster::membership::{JoinAnswer, Status};
    let local = match &cmd {
        ClusterCommand::Join { local, .. }
        | ClusterCommand::Leave { local }
        | ClusterCommand::Remove { local, .. }
        | ClusterCommand::Status { local, .. } => local,
    };
    if let Some(token) = &local.token {
        config.cluster.join_token = Some(Secret::new(token.trim()));
    }
    let addr =
        local.node.clone().or_else(|| config.cluster.advertise.clone()).context(
            "this node has no cluster listener: set GATEHOUSE_CLUSTER_ADDR (and restart it), or pass --node",
        )?;
    let transport = crate::cluster::net::Transport::new(&config.cluster)?;
    let long = std::time::Duration::from_secs(600);
    let short = std::time::Duration::from_secs(30);
    let status: Status = match cmd {
        ClusterCommand::Join { leader, .. } => {
            eprintln!("joining the cluster of {leader}: this node catches up, then becomes a voter");
            let body = json!({ "leader": leader });
            let joined: JoinAnswer = transport.call(&addr, "/cluster/v1/local/join", None, &body, long).await?;
            eprintln!("joined: leader {}, voters {:?}", joined.leader_id, joined.voters);
            transport.get(&addr, "/cluster/v1/status", short).await?
        }
        ClusterCommand::Leave { .. } => {
            transport.call(&addr, "/cluster/v1/local/leave", None, &json!({}), long).await?
        }
        ClusterCommand::Remove { node, .. } => {
            transport.call(&addr, "/cluster/v1/remove", None, &json!({ "node_id": node }), long).await?
        }
        ClusterCommand::Status { json: true, .. } => {
            let status: Value = transport.get(&addr, "/cluster/v1/status", short).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        ClusterCommand::Status { .. } => transport.get(&addr, "/cluster/v1/status", short).await?,
    };
    let leader = status.leader_id.map_or("none".to_owned(), |id| id.to_string());
    println!("node {} ({}), term {}, leader {leader}", status.node_id, status.state, status.term);
    println!("{:<20} {:<8} {:<28} REACHABLE", "NODE", "ROLE", "ADDRESS");
    for m in status.members {
        println!("{:<20} {:<8} {:<28} {}", m.node_id, m.role, m.addr, if m.reachable { "yes" } else { "no" });
    }
    Ok(())
}
