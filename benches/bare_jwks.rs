//! The baseline for the JWKS figure of `scripts/bench-oidc`: a bare axum server (no middleware, no lookups)
//! answering `GET /jwks.json` with the bytes of a file, as fast as axum can. Serves until killed.
//!
//! Environment: BARE_JWKS_FILE (the JWKS document to serve), BARE_JWKS_PORT.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let file = std::env::var("BARE_JWKS_FILE").expect("BARE_JWKS_FILE; run scripts/bench-oidc");
    let port = std::env::var("BARE_JWKS_PORT").expect("BARE_JWKS_PORT; run scripts/bench-oidc");
    let body = Bytes::from(std::fs::read(&file).expect("read BARE_JWKS_FILE"));
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.expect("bind");
    println!("bare axum serving {file} on {port}");
    axum::serve(listener, app).await.expect("serve");
}
