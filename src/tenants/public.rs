//! The public data-plane API of a tenant: `GET /t/{slug}/api/v1/tenant`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::http::extract::TenantCtx;

pub fn router() -> Router<AppState> {
    Router::new().route("/t/{slug}/api/v1/tenant", get(info))
}

/// The tenant's public face: what a hosted page or an app needs to brand itself.
async fn info(ctx: TenantCtx) -> Json<Value> {
    let t = &ctx.tenant;
    Json(json!({
        "slug": t.slug,
        "name": t.name,
        "display_name": t.settings.display_name.as_deref().unwrap_or(&t.name),
        "branding": t.settings.branding,
        "locale": t.settings.locale,
    }))
}
