//! The internal cluster listener (`GATEHOUSE_CLUSTER_ADDR`): Raft's RPCs, writes and read indexes forwarded to
//! the leader, joins, removals and status. Every call must carry the join token; with TLS configured, only peers
//! with a certificate from the cluster CA get a connection at all. Plus the public `POST /cluster/v1/join`, the
//! one cluster route on the public listener (token-checked too), so a joining node can name a member by its
//! public URL.
//!
//! Who may call: other nodes of the cluster, and this node's operator through the CLI (`gatehouse cluster …`,
//! which reads the same token from the environment).

use std::future::Future;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::TypeConfig;
use super::membership::{self, JoinAnswer, JoinCommand, JoinRequest, RemoveRequest, Status};
use super::net::{TARGET_HEADER, TOKEN_HEADER};
use super::node::{self, ReadIndex, WriteAnswer};
use crate::app::AppState;
use crate::control::Mutation;
use crate::error::{Error, Result, error_body};
use crate::http::openapi::ApiErrors;

/// Largest internal request: an append of 32 entries, each up to a blob chunk (about 700 KB, base64 in JSON).
const BODY_LIMIT: usize = 128 * 1024 * 1024;

/// Binds the internal listener (failing the start when it cannot) and serves it on a task until `shutdown`
/// resolves; `None` without `GATEHOUSE_CLUSTER_ADDR`.
pub async fn start(
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Some(listen) = app.cluster.config.listen else { return Ok(None) };
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on GATEHOUSE_CLUSTER_ADDR {listen}: {e}"))?;
    let router = router(app.clone());
    tracing::info!(%listen, tls = app.cluster.config.tls.is_some(), "cluster listener up");
    let task = match &app.cluster.config.tls {
        Some(tls) => {
            let listener = super::tls::TlsListener::new(tcp, super::tls::server_config(tls)?)?;
            tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await })
        }
        None => tokio::spawn(async move { axum::serve(tcp, router).with_graceful_shutdown(shutdown).await }),
    };
    Ok(Some(task))
}

fn router(app: AppState) -> Router {
    let public = crate::http::router(app.clone(), Router::new());
    let home = app.clone();
    Router::new()
        .route(
            "/cluster/v1/proxy/{*path}",
            any(move |request: Request| super::proxy::serve(home.clone(), public.clone(), request)),
        )
        .route("/cluster/v1/raft/append", post(append))
        .route("/cluster/v1/raft/vote", post(vote))
        .route("/cluster/v1/raft/snapshot", post(install_snapshot))
        .route("/cluster/v1/write", post(write))
        .route("/cluster/v1/read-index", post(read_index))
        .route("/cluster/v1/join", post(join_internal))
        .route("/cluster/v1/remove", post(remove))
        .route("/cluster/v1/status", get(status))
        .route("/cluster/v1/ping", get(ping))
        .route("/cluster/v1/local/join", post(join_cluster))
        .route("/cluster/v1/local/leave", post(leave))
        .fallback(|| async { Error::NotFound("route").into_response() })
        .layer(from_fn_with_state(app.clone(), authenticate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// Whether `headers` carry this cluster's join token.
fn has_token(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &app.cluster.config.join_token else { return false };
    let given = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
    given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())))
}

/// Every internal call: the join token, and (Raft's calls) this node as the target.
async fn authenticate(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if !has_token(&app, request.headers()) {
        return Error::Unauthorized.into_response();
    }
    // A proxied client request belongs under the proxy prefix and nowhere else.
    if request.headers().contains_key(super::proxy::PROXY_HEADER)
        && !request.uri().path().starts_with("/cluster/v1/proxy/")
    {
        return Error::NotFound("route").into_response();
    }
    let target = request.headers().get(TARGET_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(target) = target
        && target != app.node_id.to_string()
    {
        let message = format!("this is node {}, not node {target}", app.node_id);
        return (StatusCode::MISDIRECTED_REQUEST, Json(error_body("wrong_node", &message))).into_response();
    }
    next.run(request).await
}

fn raft(app: &AppState) -> Result<super::node::ControlRaft> {
    Ok(membership::running(app)?.raft.clone())
}

async fn append(State(app): State<AppState>, Json(rpc): Json<AppendEntriesRequest<TypeConfig>>) -> Result<Response> {
    Ok(Json(raft(&app)?.append_entries(rpc).await).into_response())
}

async fn vote(State(app): State<AppState>, Json(rpc): Json<VoteRequest<u64>>) -> Result<Response> {
    Ok(Json(raft(&app)?.vote(rpc).await).into_response())
}

async fn install_snapshot(
    State(app): State<AppState>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Result<Response> {
    Ok(Json(raft(&app)?.install_snapshot(rpc).await).into_response())
}

/// A write another node forwarded: proposed here, never forwarded again (`no_leader` when this node no longer
/// leads; the sender's client retries).
async fn write(State(app): State<AppState>, Json(mutation): Json<Mutation>) -> Result<Json<WriteAnswer>> {
    let node = membership::running(&app)?;
    let (applied, raft_index) = node::write_here(&node, mutation).await?;
    Ok(Json(WriteAnswer { index: applied.index, assigned: applied.assigned, raft_index }))
}

async fn read_index(State(app): State<AppState>) -> Result<Json<ReadIndex>> {
    let node = membership::running(&app)?;
    Ok(Json(ReadIndex { raft_index: node::read_index(&node).await? }))
}

async fn join_internal(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<JoinRequest>,
) -> Result<Json<JoinAnswer>> {
    membership::join(&app, request, membership::forwarded(&headers)).await.map(Json)
}

async fn remove(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<RemoveRequest>,
) -> Result<Json<Status>> {
    membership::remove(&app, request.node_id, membership::forwarded(&headers)).await.map(Json)
}

async fn status(State(app): State<AppState>) -> Json<Status> {
    Json(membership::status(&app).await)
}

async fn ping(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "node_id": app.node_id }))
}

async fn join_cluster(State(app): State<AppState>, Json(command): Json<JoinCommand>) -> Result<Json<JoinAnswer>> {
    membership::join_cluster(&app, command).await.map(Json)
}

async fn leave(State(app): State<AppState>) -> Result<Json<Status>> {
    membership::leave(&app).await.map(Json)
}

/// The public side: `POST /cluster/v1/join`.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join_public))
}

/// Asks this cluster to add a node (sent by the joining node's `gatehouse cluster join --leader URL`). Callers
/// must present the cluster's join token (`X-Gatehouse-Token`); the node must run the same version and
/// master key. Handed to the leader, which adds the node as a learner and, once it caught up, as a voter.
#[utoipa::path(
    post,
    path = "/cluster/v1/join",
    tag = "cluster",
    operation_id = "cluster_join",
    request_body = JoinRequest,
    responses((status = 200, description = "The node joined (or, with dry_run, may join)", body = JoinAnswer), ApiErrors),
    security(("join_token" = []))
)]
async fn join_public(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<JoinRequest>,
) -> Result<Json<JoinAnswer>> {
    if !has_token(&app, &headers) {
        return Err(Error::Unauthorized);
    }
    membership::join(&app, request, membership::forwarded(&headers)).await.map(Json)
}
