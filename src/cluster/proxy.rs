//! Requests for a tenant whose home is another node: the public router's `to_home` middleware sends them to the
//! home's cluster listener (`/cluster/v1/proxy/…`), streaming both ways (uploads, server-sent events), and the
//! home serves them through its own public router, as if the client had called it.
//!
//! Tenant-scoped paths: `/t/{slug}/…` (hosted pages, OAuth/OIDC, the end-user and store APIs) and the tenant's
//! admin routes (`/admin/api/v1/tenants/{slug}/…`, `/admin/tenants/{slug}/…`). The tenant record itself
//! (`/admin/api/v1/tenants/{slug}`) and the provider's discovery document and key set (`/t/{slug}/.well-known/…`)
//! are control-plane data any node serves itself: tokens verify against any node's JWKS, even with the home down.
//!
//! The method, headers (less hop-by-hop ones), request id and body go as they came; the client's address goes in
//! `x-gatehouse-peer-ip`, which the home takes only from an authenticated peer and turns back into the
//! connection's address (so `GATEHOUSE_TRUST_PROXY` works the same on every node). A home that cannot be reached
//! answers 503 `tenant_unavailable` with `Retry-After`.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::net::TOKEN_HEADER;
use crate::app::AppState;
use crate::error::Error;
use crate::http::middleware::RequestId;
use crate::tenants::TenantSlug;

/// The client's address as the node it reached saw it.
pub const PEER_IP_HEADER: &str = "x-gatehouse-peer-ip";
/// The Raft index the forwarding node had applied: the home waits until it has too (so a session or token made
/// through the forwarding node is known at the home).
pub const APPLIED_HEADER: &str = "x-gatehouse-applied";
/// Marks a proxied request on the cluster listener: it is accepted on `/cluster/v1/proxy/…` only, so a request
/// that a client shaped to land elsewhere is refused there too.
pub const PROXY_HEADER: &str = "x-gatehouse-proxy";

/// Marks a request (and its response) that came through another node: it is never proxied again, and the
/// forwarding node passes the home's error bodies on unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Proxied;

/// The tenant a path belongs to, when the path is served by the tenant's home.
fn tenant_of(path: &str) -> Option<TenantSlug> {
    let slug = if let Some(rest) = path.strip_prefix("/t/") {
        let (slug, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if tail.starts_with(".well-known/") {
            return None;
        }
        Some(slug)
    } else {
        ["/admin/api/v1/tenants/", "/admin/tenants/"]
            .iter()
            .find_map(|prefix| path.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('/'))
            .map(|(slug, _)| slug)
    }?;
    TenantSlug::parse(slug).ok()
}

/// Middleware on the public router: a tenant-scoped request whose tenant lives on another node goes there.
pub async fn to_home(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if request.extensions().get::<Proxied>().is_some() {
        return next.run(request).await;
    }
    let Some(node) = app.control.node().filter(|node| node.has_peers()) else {
        return next.run(request).await;
    };
    let Some(slug) = tenant_of(request.uri().path()) else {
        return next.run(request).await;
    };
    let home = match app.control.tenant(&slug).await {
        Ok(Some(tenant)) => tenant.home_node.filter(|home| *home != app.node_id),
        _ => None,
    };
    let Some(home) = home else {
        return next.run(request).await;
    };
    let peer = node.raft.metrics().borrow().membership_config.membership().get_node(&home).cloned();
    let Some(peer) = peer else {
        tracing::warn!(tenant = %slug, home, "the tenant's home node is not a member of this cluster");
        return Error::TenantUnavailable.into_response();
    };
    match forward(&app, &peer.addr, request).await {
        Ok(response) => response,
        Err(why) => {
            tracing::warn!(tenant = %slug, home, %why, "the tenant's home node is out of reach");
            Error::TenantUnavailable.into_response()
        }
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name == header::HOST
}

/// Whether `path` is safe to append to the proxy prefix: no `.` or `..` segment (plain or percent-encoded, which
/// URL parsing would resolve and so climb out of `/cluster/v1/proxy/`), no empty segment, no backslash.
fn plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\\')
        && path[1..].split('/').all(|segment| {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            !segment.is_empty()
                && decoded != "."
                && decoded != ".."
                && !decoded.contains("%5c")
                && !decoded.contains("%2f")
        })
}

async fn forward(app: &AppState, addr: &str, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    if !plain_path(parts.uri.path()) {
        return Ok(Error::NotFound("route").into_response());
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}://{addr}/cluster/v1/proxy{path}", app.cluster.config.scheme());
    let token = app.cluster.config.join_token.as_ref().ok_or("no join token")?;
    let mut builder = app.cluster.transport.client().request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        // Headers of the cluster channel come from this node only, never from the client.
        let ours = name.as_str().starts_with("x-gatehouse-") || name.as_str() == "x-request-id";
        if !hop_by_hop(name) && !ours {
            builder = builder.header(name, value);
        }
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        builder = builder.header(PEER_IP_HEADER, peer.ip().to_string());
    }
    if let Some(id) = parts.extensions.get::<RequestId>() {
        builder = builder.header("x-request-id", &id.0);
    }
    builder = builder.header(TOKEN_HEADER, token.expose()).header(PROXY_HEADER, "1");
    if let Some(node) = app.control.node() {
        builder = builder.header(APPLIED_HEADER, node.applied());
    }
    let response = builder
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await
        .map_err(|e| crate::error::with_causes(e.to_string(), &e))?;
    let mut out = Response::builder().status(response.status());
    if let Some(headers) = out.headers_mut() {
        for (name, value) in response.headers() {
            if !hop_by_hop(name) {
                headers.append(name, value.clone());
            }
        }
    }
    let mut out = out.body(Body::from_stream(response.bytes_stream())).map_err(|e| e.to_string())?;
    out.extensions_mut().insert(Proxied);
    Ok(out)
}

/// The home's side (`/cluster/v1/proxy/{*path}` on the cluster listener, behind its token check): the request
/// goes through this node's public router with the client's address restored.
pub async fn serve(app: AppState, public: axum::Router, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let inner = parts.uri.path_and_query().map_or("/", |p| p.as_str()).strip_prefix("/cluster/v1/proxy").unwrap_or("/");
    let Ok(uri) = (if inner.starts_with('/') { inner.to_owned() } else { format!("/{inner}") }).parse::<Uri>() else {
        return Error::BadRequest("bad proxied path".into()).into_response();
    };
    // A new request: the cluster router's extensions (its matched path, its path parameters) must not reach the
    // public router's handlers.
    let mut request = Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers;
    let peer = peer_ip(request.headers()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let applied = request.headers().get(APPLIED_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(index), Some(node)) = (applied, app.control.node()) {
        super::node::applied_at_least(&node, index).await;
    }
    for ours in [TOKEN_HEADER, PEER_IP_HEADER, PROXY_HEADER, APPLIED_HEADER] {
        request.headers_mut().remove(ours);
    }
    request.extensions_mut().insert(ConnectInfo(SocketAddr::new(peer, 0)));
    request.extensions_mut().insert(Proxied);
    match public.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn peer_ip(headers: &HeaderMap) -> Option<IpAddr> {
    headers.get(PEER_IP_HEADER)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::tenant_of;

    #[test]
    fn tenant_scoped_paths_name_their_tenant() {
        let slug = |p: &str| tenant_of(p).map(|s| s.to_string());
        assert_eq!(slug("/t/acme/login").as_deref(), Some("acme"));
        assert_eq!(slug("/t/acme").as_deref(), Some("acme"));
        assert_eq!(slug("/admin/api/v1/tenants/acme/clients").as_deref(), Some("acme"));
        assert_eq!(slug("/admin/tenants/acme/audit").as_deref(), Some("acme"));
        assert_eq!(slug("/admin/api/v1/tenants/acme"), None, "the record itself is control-plane data");
        assert_eq!(slug("/admin/api/v1/tenants"), None);
        assert_eq!(slug("/t/../etc"), None);
        assert_eq!(slug("/t/acme/.well-known/jwks.json"), None, "keys are control-plane data");
    }

    #[test]
    fn paths_that_climb_out_of_the_proxy_prefix_are_refused() {
        assert!(super::plain_path("/t/acme/api/v1/tenant"));
        for bad in [
            "/t/acme/../../cluster/v1/write",
            "/t/acme/%2e%2e/%2E%2e/cluster/v1/write",
            "/t/acme/./x",
            "/t/acme/%2e/x",
            "/t/acme//x",
            "/t/acme/..%5c..%5ccluster",
            "/t/acme/a%2f..%2f..",
        ] {
            assert!(!super::plain_path(bad), "{bad}");
        }
    }
}
