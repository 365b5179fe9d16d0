//! The public data-plane API of a tenant: `GET /t/{slug}/api/v1/tenant`. Anyone may call it (it is what a hosted
//! page or an app needs to brand itself); a suspended tenant answers 403.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::http::extract::TenantCtx;
use crate::http::openapi::ApiErrors;
use crate::tenants::{Branding, TenantSlug};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(info))
}

/// A tenant's public face.
#[derive(Serialize, ToSchema)]
struct PublicTenant {
    slug: TenantSlug,
    name: String,
    /// `settings.display_name`, else the name.
    display_name: String,
    branding: Branding,
    locale: String,
}

/// The tenant's public face: name, branding and locale.
#[utoipa::path(
    get,
    path = "/t/{slug}/api/v1/tenant",
    tag = "public",
    operation_id = "public_info",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant's public face", body = PublicTenant), ApiErrors),
    security(())
)]
async fn info(ctx: TenantCtx) -> Json<PublicTenant> {
    let t = &ctx.tenant;
    Json(PublicTenant {
        slug: t.slug.clone(),
        name: t.name.clone(),
        display_name: t.settings.display_name.clone().unwrap_or_else(|| t.name.clone()),
        branding: t.settings.branding.clone(),
        locale: t.settings.locale.clone(),
    })
}
