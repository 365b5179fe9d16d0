//! HTTP assembly: merges the feature routers, adds the fallbacks and the middleware stack.
//!
//! Request flow: `middleware::stack` (request id, metrics, declared body limit, timeout, panic recovery, security
//! headers, access log) → `DefaultBodyLimit` → the feature handler, which
//! authenticates with an extractor (`admin::Actor`, `extract::TenantCtx`), runs SQL on the blocking pool and
//! answers, or returns an `Error` that `error.rs` turns into the JSON error body. Browser pages answer with a
//! `page::PageError` instead, rendered as a readable HTML page.

pub mod cookies;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod page;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::error::Error;

/// The JSON routes, each registered with its OpenAPI operation (`routes!` takes only handlers that have one).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(ops::router())
        .merge(crate::tenants::api::router())
        .merge(crate::tenants::public::router())
        .merge(crate::admin::tokens::router())
        .merge(crate::email::api::router())
        .merge(crate::webhooks::api::router())
        .merge(crate::identity::admin_api::router())
        .merge(crate::identity::admin_roles::router())
        .merge(crate::identity::api::router())
        .merge(crate::oidc::endpoints::router())
        .merge(crate::oidc::admin_api::router())
        .merge(crate::plugins::api::router())
        .merge(crate::control::api::router())
        .merge(crate::backup::api::router())
        .merge(crate::commerce::router())
        .merge(crate::cluster::server::public_router())
}

/// The whole application router. `extra` routes (tests add a panicking one) get the same middleware.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    let layers = ServiceBuilder::new()
        .layer(from_fn_with_state(state.clone(), middleware::stack))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    let (api, operations) = api_routes().split_for_parts();
    let contract = openapi::Contract::new(openapi::document(operations));
    // Pages, assets and the browser side of OAuth are HTML, not part of the JSON contract. A browser opening a
    // hosted page of a suspended or unknown tenant gets a page, not the JSON error (only these routes).
    let hosted = crate::identity::pages::router()
        .merge(crate::oidc::authorize::router())
        .layer(from_fn_with_state(state.clone(), crate::identity::pages::tenant_unavailable));
    // The cluster's layers only where there can be peers (a cluster listener, or a membership with others): a
    // one-node server pays nothing for them.
    let clustered = state.cluster.config.listen.is_some() || state.control.node().is_some_and(|node| node.has_peers());
    let api = if clustered {
        api.layer(from_fn_with_state(state.clone(), crate::cluster::linearize_admin_reads))
    } else {
        api
    };
    let router = Router::new()
        .merge(api)
        .route("/api/openapi.json", get(openapi::serve))
        .merge(hosted)
        .merge(crate::web::router())
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(contract));
    let router = if clustered {
        router.layer(from_fn_with_state(state.clone(), crate::cluster::proxy::to_home))
    } else {
        router
    };
    router.layer(layers).with_state(state)
}

/// API paths answer 404 in JSON; everything else gets the HTML not-found page.
async fn not_found(uri: Uri) -> Response {
    if is_api_path(uri.path()) { Error::NotFound("route").into_response() } else { page::not_found_page() }
}

/// APIs answer 405 in JSON; a browser that opens the address of a form's action (a POST-only page route) gets
/// the readable not-found page instead of JSON.
async fn method_not_allowed(uri: Uri) -> Response {
    if is_api_path(uri.path()) { Error::MethodNotAllowed.into_response() } else { page::not_found_page() }
}

pub(crate) fn is_api_path(path: &str) -> bool {
    path.starts_with("/admin/api/")
        || path.strip_prefix("/t/").and_then(|rest| rest.split_once('/')).is_some_and(|(_, p)| {
            p.starts_with("api/")
                || matches!(p, "oauth2/token" | "oauth2/revoke" | "oauth2/introspect" | "oauth2/userinfo")
        })
        || path.starts_with("/metrics")
        || path.starts_with("/healthz")
        || path.starts_with("/readyz")
        || path.starts_with("/cluster/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_paths() {
        assert!(super::is_api_path("/admin/api/v1/nope"));
        assert!(super::is_api_path("/t/acme/api/v1/nope"));
        assert!(!super::is_api_path("/t/acme/login"));
        assert!(!super::is_api_path("/admin/nope"));
        assert!(super::is_api_path("/t/acme/oauth2/token"), "GET on the token endpoint: JSON 405");
        assert!(!super::is_api_path("/t/acme/oauth2/authorize"), "a browser endpoint");
    }
}
