//! The quote sandbox of the admin API (`POST /admin/api/v1/tenants/{slug}/quotes`): a cart made up on the spot
//! (SKUs, codes, a destination, a customer whose roles the plugins see) or a stored cart, priced by the same
//! pipeline as the storefront, with what each pricing plugin did. Nothing is written.
//!
//! Who may call: an operator or an actor scoped to the tenant in the path.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::carts::{self, CodeState, Draft, Selection};
use super::pricing::Quote;
use super::quoting::{self, PluginRun};
use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::db;
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::plugins::World;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sandbox_quote))
}

/// A cart to price: a stored cart's id, or lines and choices written by hand.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// A cart of this store (its lines and choices; the fields below are then not allowed).
    pub cart_id: Option<String>,
    #[serde(default)]
    pub lines: Vec<SandboxLine>,
    #[serde(default)]
    pub codes: Vec<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub region: Option<String>,
    pub shipping_method: Option<String>,
    /// A user of the tenant: the pricing plugins see their id and roles.
    pub customer_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxLine {
    pub sku: String,
    /// 1-999.
    pub quantity: u32,
}

/// A priced sandbox cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxQuote {
    pub quote: Quote,
    /// The codes asked for, and why the ones that do not price the cart do not.
    pub codes: Vec<CodeState>,
    /// Each active pricing plugin's call, in the order they ran.
    pub plugins: Vec<PluginRun>,
    /// The input the first pricing plugin was called with (a pricing plugin's dry-run accepts it as it is).
    #[schema(value_type = Object)]
    pub plugin_input: Value,
    /// Why the storefront would refuse this quote (503 `pricing_unavailable`): a fail-closed plugin failed. The
    /// sandbox prices on without it.
    pub refused: Option<String>,
}

/// Prices a cart with the store's rules and active pricing plugins, and shows what each plugin did.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/quotes",
    tag = "store",
    operation_id = "quotes_sandbox",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = QuoteRequest,
    responses((status = 200, description = "The quote and each plugin's part", body = SandboxQuote), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn sandbox_quote(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<QuoteRequest>,
) -> Result<Json<SandboxQuote>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    Ok(Json(price(&app, &slug, body).await?))
}

/// Prices `request` in `slug`'s store (the API above and the admin UI's sandbox).
pub async fn price(app: &App, slug: &TenantSlug, request: QuoteRequest) -> Result<SandboxQuote> {
    let (codes, input) = draft(app, slug, request).await?;
    let active = app.plugins.active_of(app, slug, World::Pricing).await?;
    let plugin_input = quoting::dry_run_input(&input);
    let traced = quoting::quote_traced(app, slug, &input, &active, true).await?;
    Ok(SandboxQuote { quote: traced.quote, codes, plugins: traced.runs, plugin_input, refused: traced.refused })
}

/// A stored cart of `slug`'s store as a pricing plugin's dry-run input (`{"cart": …}`).
pub async fn plugin_input_of_cart(app: &App, slug: &TenantSlug, cart_id: String) -> Result<Value> {
    let request = QuoteRequest { cart_id: Some(cart_id), ..QuoteRequest::default() };
    let (_, input) = draft(app, slug, request).await?;
    Ok(quoting::dry_run_input(&input))
}

async fn draft(app: &App, slug: &TenantSlug, request: QuoteRequest) -> Result<(Vec<CodeState>, carts::QuoteInput)> {
    let tenant = app.control.tenant(slug).await?.ok_or(Error::TenantNotFound)?;
    let db = app.tenants.load(slug).await?;
    if request.lines.len() > carts::MAX_LINES as usize {
        return Err(Error::validation(format!("at most {} lines", carts::MAX_LINES)));
    }
    if request.codes.len() > carts::MAX_CODES {
        return Err(Error::validation(format!("at most {} codes", carts::MAX_CODES)));
    }
    db::with_conn(&db.pool, move |conn| {
        let now = crate::now_unix();
        if let Some(id) = &request.cart_id {
            let by_hand = !request.lines.is_empty()
                || !request.codes.is_empty()
                || request.country.is_some()
                || request.region.is_some()
                || request.shipping_method.is_some()
                || request.customer_id.is_some();
            if by_hand {
                return Err(Error::validation("give either cart_id or the cart's lines and choices, not both"));
            }
            let Draft { view, input } = carts::view_for_admin(conn, &tenant, id, now)?;
            return Ok((view.codes, input));
        }
        let wanted: Vec<(String, u32)> = request.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
        let lines = carts::lines_of(conn, &wanted)?;
        let country = request.country.as_deref().map(|c| c.trim().to_ascii_uppercase());
        if let Some(c) = &country {
            super::rules::check_country(c)?;
        }
        let region = request.region.as_deref().map(|r| r.trim().to_ascii_uppercase());
        let selection = Selection {
            codes: &request.codes,
            country: country.as_deref(),
            region: region.as_deref(),
            shipping_method: request.shipping_method.as_deref(),
            customer_id: request.customer_id.as_deref(),
        };
        let (input, codes) = carts::assemble(conn, &tenant, lines, &selection, now)?;
        Ok((codes, input))
    })
    .await
}
