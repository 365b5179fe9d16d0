//! Tenants: slugs, settings and the lifecycle (create, update, suspend, resume, archive), shared by the admin
//! API, the admin UI and the CLI.
//!
//! Invariants:
//! - A tenant file exists only after `Mutation::CreateTenant` is applied, made by the home node's listener
//!   (`effects`); deleting a tenant removes its record, then the listener moves its file to `archive/` (never
//!   deletes data). Handlers here only propose mutations.
//! - A tenant slug is a `TenantSlug` before it touches a path.

pub mod api;
pub mod effects;
pub mod public;
mod settings;
mod slug;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use settings::{Branding, TenantSettings, check_text};
pub use slug::TenantSlug;

use crate::app::{App, AppState};
use crate::control::{Mutation, Tenant, tables};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            _ => None,
        }
    }
}

/// A tenant as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub slug: TenantSlug,
    pub name: String,
    pub status: TenantStatus,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub settings: TenantSettings,
    /// The node whose disk holds the tenant's data (every other node passes its requests there); absent for a
    /// tenant from before nodes had ids.
    pub home_node: Option<u64>,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            slug: t.slug.clone(),
            name: t.name.clone(),
            status: t.status,
            created_at: t.created_at,
            updated_at: t.updated_at,
            settings: t.settings.clone(),
            home_node: t.home_node,
        }
    }
}

pub fn check_name(name: &str) -> Result<()> {
    check_text("name", name, 200)
}

/// The tenant, or `TenantNotFound`.
pub async fn get(app: &App, slug: &TenantSlug) -> Result<Arc<Tenant>> {
    app.control.tenant(slug).await?.ok_or(Error::TenantNotFound)
}

/// Creates a tenant: its control-plane record, then its file.
/// `home`: the node to keep it (a voter of the cluster), else the one with the fewest tenants.
pub async fn create(
    app: &AppState,
    slug: TenantSlug,
    name: String,
    settings: TenantSettings,
    home: Option<u64>,
) -> Result<Arc<Tenant>> {
    check_name(&name)?;
    settings.validate()?;
    let incarnation = Some(uuid::Uuid::now_v7().to_string());
    let home_node = Some(place(app, home).await?);
    let at = crate::now_unix();
    app.control
        .apply(Mutation::CreateTenant { slug: slug.clone(), name, settings, at, home_node, incarnation })
        .await?;
    tracing::info!(tenant = %slug, "tenant created");
    let tenant = get(app, &slug).await?;
    ensure_signing_key(app, &tenant).await?;
    Ok(tenant)
}

/// The home of a new tenant: `wanted` when it is a voter, else the voter with the fewest tenants (this node on a
/// tie, then the lowest id); this node on a one-node cluster.
async fn place(app: &AppState, wanted: Option<u64>) -> Result<u64> {
    let members: Vec<u64> = match app.control.node() {
        Some(node) => node.raft.metrics().borrow().membership_config.membership().voter_ids().collect(),
        None => vec![app.node_id],
    };
    if let Some(wanted) = wanted {
        return if members.contains(&wanted) {
            Ok(wanted)
        } else {
            Err(Error::validation(format!("home_node {wanted} is not a voting member of this cluster")))
        };
    }
    if members.len() <= 1 {
        return Ok(app.node_id);
    }
    let counts: std::collections::HashMap<u64, i64> = app
        .control
        .read(|c| {
            let mut stmt =
                c.prepare("SELECT home_node, COUNT(*) FROM tenants WHERE home_node IS NOT NULL GROUP BY 1")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await?;
    let me = app.node_id;
    Ok(members.into_iter().min_by_key(|id| (counts.get(id).copied().unwrap_or(0), *id != me, *id)).unwrap_or(me))
}

/// The node that created or reconfigured a tenant proposes its signing key (never a read path: see
/// `oidc::state::ensure_signing_key`).
async fn ensure_signing_key(app: &AppState, tenant: &Arc<Tenant>) -> Result<()> {
    let (app, tenant) = (app.clone(), tenant.clone());
    tokio::task::spawn_blocking(move || crate::oidc::state::ensure_signing_key(&app, &tenant)).await??;
    Ok(())
}

/// Whether a change by a tenant-scoped admin must wait for an operator: while a tenant is suspended, its name and
/// its public face (display name, branding, locale) are what its "temporarily unavailable" page shows, so only an
/// operator changes them (a tenant suspended for abuse cannot restyle that page).
pub async fn check_suspended_edit(
    app: &AppState,
    scope: &crate::admin::Scope,
    slug: &TenantSlug,
    name: Option<&str>,
    settings_patch: Option<&serde_json::Value>,
) -> Result<()> {
    if *scope == crate::admin::Scope::Operator {
        return Ok(());
    }
    let current = get(app, slug).await?;
    if current.status != TenantStatus::Suspended {
        return Ok(());
    }
    let renamed = name.is_some_and(|n| n.trim() != current.name);
    let restyled = settings_patch
        .and_then(serde_json::Value::as_object)
        .is_some_and(|p| ["display_name", "branding", "locale"].iter().any(|k| p.contains_key(*k)));
    if renamed || restyled {
        return Err(Error::Forbidden(
            "while the tenant is suspended, only an operator may change its name, display name, branding or locale",
        ));
    }
    Ok(())
}

pub async fn update(
    app: &AppState,
    slug: &TenantSlug,
    name: Option<String>,
    settings_patch: Option<&serde_json::Value>,
) -> Result<Arc<Tenant>> {
    let current = get(app, slug).await?;
    if let Some(name) = &name {
        check_name(name)?;
    }
    // Checked against what this node holds for a prompt answer; `apply` merges the patch into what it finds.
    if let Some(patch) = settings_patch {
        let next = current.settings.merged(patch)?;
        if next.commerce.currency != current.settings.commerce.currency {
            check_currency_change(app, slug).await?;
        }
    }
    let settings_patch = settings_patch.cloned();
    app.control
        .apply(Mutation::UpdateTenant { slug: slug.clone(), name, settings_patch, at: crate::now_unix() })
        .await?;
    let tenant = get(app, slug).await?;
    // A changed signing algorithm gets its key now, not at the next token request.
    ensure_signing_key(app, &tenant).await?;
    Ok(tenant)
}

/// A store's amounts are in its currency, so the currency is fixed once a product exists (422).
async fn check_currency_change(app: &AppState, slug: &TenantSlug) -> Result<()> {
    let db = app.tenants.load(slug).await?;
    let products = crate::db::with_conn(&db.pool, |conn| crate::commerce::catalog::count_products(conn)).await?;
    if products > 0 {
        return Err(Error::Unprocessable(format!(
            "the store has {products} products priced in its currency; settings.commerce.currency cannot change"
        )));
    }
    Ok(())
}

pub async fn set_status(app: &App, slug: &TenantSlug, status: TenantStatus) -> Result<Arc<Tenant>> {
    get(app, slug).await?;
    app.control.apply(Mutation::SetTenantStatus { slug: slug.clone(), status, at: crate::now_unix() }).await?;
    tracing::info!(tenant = %slug, status = status.as_str(), "tenant status changed");
    get(app, slug).await
}

/// Deletes a tenant: removes its record (freeing the slug) and moves its file to `archive/`. Returns the
/// archive file's path relative to the data dir.
pub async fn delete(app: &App, slug: &TenantSlug) -> Result<String> {
    let tenant = get(app, slug).await?;
    let at = crate::now_unix();
    let file = effects::archive_name(slug, at);
    let incarnation = tenant.incarnation.clone();
    app.control.apply(Mutation::ArchiveTenant { slug: slug.clone(), file: file.clone(), at, incarnation }).await?;
    tracing::info!(tenant = %slug, file, "tenant deleted and archived");
    Ok(file)
}

/// One page of tenants after `cursor`, restricted to `only` for tenant-scoped actors.
pub async fn list(
    app: &App,
    cursor: Option<String>,
    limit: u32,
    only: Option<TenantSlug>,
) -> Result<(Vec<TenantView>, Option<String>)> {
    let rows =
        app.control.read(move |conn| tables::list_tenants(conn, cursor.as_deref(), limit + 1, only.as_ref())).await?;
    let more = rows.len() > limit as usize;
    let items: Vec<TenantView> = rows.iter().take(limit as usize).map(TenantView::from).collect();
    let next = if more { items.last().map(|t| t.slug.to_string()) } else { None };
    Ok((items, next))
}
