//! How nodes call each other: one HTTP client over the cluster listeners (mutual TLS when configured, the join
//! token on every call, the target node's id on every Raft call), and openraft's `RaftNetwork` over it.
//!
//! Raft's RPCs are JSON `POST`s to `/cluster/v1/raft/{append,vote,snapshot}`; the answer is openraft's own
//! `Result` as JSON, so a remote Raft error reaches the caller's Raft as the error it was. A peer that cannot be
//! connected to is `Unreachable` (openraft backs off); a call that timed out is a network error (retried).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Peer, TypeConfig};
use crate::config::{ClusterConfig, Secret};
use crate::error::{Error, Result};

/// The header carrying the join token on every call between nodes (not `Authorization`, which a proxied client
/// request keeps for itself).
pub const TOKEN_HEADER: &str = "x-gatehouse-token";
/// The header naming the node a call is meant for: a node answers 421 to a call meant for another (an address
/// reused by a new node, say).
pub const TARGET_HEADER: &str = "x-gatehouse-node";
/// Set on a call one node forwarded to another (a join, a removal): the receiver handles it or fails, it never
/// forwards it again.
pub const HOP_HEADER: &str = "x-gatehouse-forwarded";

/// What a call to another node came to when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection (refused, reset, TLS refused, timed out while connecting).
    #[error("{0}")]
    Unreachable(String),
    /// Connected, but no answer in time, or the answer was cut off.
    #[error("{0}")]
    Failed(String),
    /// The node answered with an error: status, code and message.
    #[error("{status}: {code}: {message}")]
    Answered { status: u16, code: String, message: String },
}

impl From<CallError> for Error {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Answered { status, code, message } => Error::forwarded(status, &code, message),
            CallError::Unreachable(why) | CallError::Failed(why) => {
                Error::NotReady(format!("a peer is out of reach: {why}"))
            }
        }
    }
}

/// The client side of the cluster channel.
pub struct Transport {
    client: reqwest::Client,
    scheme: &'static str,
    token: Option<Secret>,
}

impl Transport {
    /// The client for `config`: it trusts only the cluster CA and presents this node's certificate (with TLS),
    /// ignores proxy settings, follows no redirect, and gives up connecting after 2 s.
    pub fn new(config: &ClusterConfig) -> Result<Arc<Self>> {
        // Redirects go back to the client untouched (the tenant proxy passes a home's 303 on as it is).
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        if let Some(tls) = &config.tls {
            builder = builder.tls_backend_preconfigured(super::tls::client_config(tls)?);
        }
        let client = builder.build().map_err(|e| Error::internal(format!("cluster client: {e}")))?;
        Ok(Arc::new(Self { client, scheme: config.scheme(), token: config.join_token.clone() }))
    }

    /// The HTTP client itself (the tenant proxy streams through it).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// `POST {scheme}://{addr}{path}` with `body` as JSON, meant for node `target` when given.
    pub async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        target: Option<u64>,
        body: &B,
        timeout: Duration,
    ) -> std::result::Result<R, CallError> {
        let json = encode(body)?;
        self.send(reqwest::Method::POST, &format!("{}://{addr}{path}", self.scheme), target, Some(json), timeout, false)
            .await
    }

    /// `GET {scheme}://{addr}{path}`.
    pub async fn get<R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> std::result::Result<R, CallError> {
        self.send(reqwest::Method::GET, &format!("{}://{addr}{path}", self.scheme), None, None, timeout, false).await
    }

    /// `POST url` (a full URL: a member's public join endpoint), marked forwarded when `forwarded`.
    pub async fn post_url<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
        timeout: Duration,
        forwarded: bool,
    ) -> std::result::Result<R, CallError> {
        self.send(reqwest::Method::POST, url, None, Some(encode(body)?), timeout, forwarded).await
    }

    /// `call` with a body already encoded as JSON.
    pub async fn call_json<R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        target: Option<u64>,
        json: Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<R, CallError> {
        let url = format!("{}://{addr}{path}", self.scheme);
        self.send(reqwest::Method::POST, &url, target, Some(json), timeout, false).await
    }

    async fn send<R: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        target: Option<u64>,
        body: Option<Vec<u8>>,
        timeout: Duration,
        forwarded: bool,
    ) -> std::result::Result<R, CallError> {
        let Some(token) = &self.token else {
            return Err(CallError::Unreachable("this node has no cluster listener (GATEHOUSE_CLUSTER_ADDR)".into()));
        };
        let mut request = self.client.request(method, url).header(TOKEN_HEADER, token.expose()).timeout(timeout);
        if let Some(target) = target {
            request = request.header(TARGET_HEADER, target);
        }
        if forwarded {
            request = request.header(HOP_HEADER, "1");
        }
        if let Some(json) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(json);
        }
        let response = request.send().await.map_err(|e| {
            let text = crate::error::with_causes(format!("{url}: {e}"), &e);
            if e.is_connect() { CallError::Unreachable(text) } else { CallError::Failed(text) }
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| CallError::Failed(format!("{url}: {e}")))?;
        if !status.is_success() {
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |key: &str| value["error"][key].as_str().unwrap_or_default().to_owned();
            let code = Some(text("code")).filter(|c| !c.is_empty()).unwrap_or_else(|| "internal".into());
            return Err(CallError::Answered { status: status.as_u16(), code, message: text("message") });
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError::Failed(format!("{url}: undecodable answer: {e}")))
    }
}

fn encode<B: Serialize + ?Sized>(body: &B) -> std::result::Result<Vec<u8>, CallError> {
    serde_json::to_vec(body).map_err(|e| CallError::Failed(format!("encode: {e}")))
}

/// The most bytes of entries one append sends: openraft 0.9 gives an append the heartbeat interval (250 ms) to
/// answer, so a bigger batch (blob chunks are about 930 KB as JSON) is split, half at a time, instead of timing out
/// again and again.
const APPEND_BUDGET: usize = 4 << 20;

/// openraft's network factory: a client per peer, connecting on first use.
pub struct Network {
    pub transport: Arc<Transport>,
}

pub struct PeerClient {
    target: u64,
    addr: String,
    transport: Arc<Transport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Peer) -> PeerClient {
        PeerClient { target, addr: node.addr.clone(), transport: self.transport.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Why(String);

/// A Raft request as JSON; failing to encode one is a network error of this call.
fn encoded<Q: Serialize, E: std::error::Error>(rpc: &Q) -> std::result::Result<Vec<u8>, RPCError<u64, Peer, E>> {
    serde_json::to_vec(rpc).map_err(|e| RPCError::Network(NetworkError::new(&Why(format!("encode: {e}")))))
}

impl PeerClient {
    async fn rpc<A: DeserializeOwned, E>(
        &self,
        what: &str,
        json: Vec<u8>,
        option: &RPCOption,
    ) -> std::result::Result<A, RPCError<u64, Peer, RaftError<u64, E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let path = format!("/cluster/v1/raft/{what}");
        let answer: std::result::Result<std::result::Result<A, RaftError<u64, E>>, CallError> =
            self.transport.call_json(&self.addr, &path, Some(self.target), json, option.hard_ttl()).await;
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(RPCError::RemoteError(RemoteError::new(self.target, err))),
            Err(CallError::Unreachable(why)) => Err(RPCError::Unreachable(Unreachable::new(&Why(why)))),
            Err(err) => Err(RPCError::Network(NetworkError::new(&Why(err.to_string())))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<u64>, RPCError<u64, Peer, RaftError<u64>>> {
        let json = encoded(&rpc)?;
        if json.len() > APPEND_BUDGET && rpc.entries.len() > 1 {
            let fewer = (rpc.entries.len() / 2) as u64;
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fewer)));
        }
        self.rpc("append", json, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<InstallSnapshotResponse<u64>, RPCError<u64, Peer, RaftError<u64, InstallSnapshotError>>>
    {
        let json = encoded(&rpc)?;
        self.rpc("snapshot", json, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<u64>, RPCError<u64, Peer, RaftError<u64>>> {
        let json = encoded(&rpc)?;
        self.rpc("vote", json, &option).await
    }
}
