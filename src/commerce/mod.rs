//! Commerce: every tenant is a store. This module owns the catalog (products, variants, categories, search),
//! the inventory ledger, CSV import/export, money, and the store settings; carts, pricing, checkout and orders
//! build on it.
//!
//! - `money.rs`: integer minor units, the ISO 4217 table, the one formatting function.
//! - `settings.rs`: `settings.commerce` (currency, tax flags, stock display, storefront origins).
//! - `catalog.rs`: products, variants, categories, search (FTS5, bm25) — the services every surface calls.
//! - `inventory.rs`: the append-only stock ledger.
//! - `imports.rs`: CSV import jobs and export.
//! - `admin_api.rs`: `/admin/api/v1/tenants/{slug}/…` (operators and the tenant's admins).
//! - `store_api.rs`: the public storefront API under `/t/{slug}/api/v1/…` (CORS per `allowed_origins`).
//! - `pricing.rs`: the pricing pipeline (base, discount codes, shipping, tax): a quote is a pure function.
//! - `rules.rs`: discount codes, tax rates and shipping methods; `carts.rs`: carts and their quotes;
//!   `cart_api.rs`: the storefront cart API and the admin API of the rules.
//!
//! Catalog data lives in the tenant's file (it moves with the tenant's backup); only the store settings live in
//! control.db.

/// Declares the documented CORS preflight (`OPTIONS`) of one storefront path allowing `$methods` (the store's
/// `allowed_origins` get the grant), so each preflight is an operation of the contract like its other methods.
macro_rules! store_preflight {
    ($name:ident, $methods:expr, $path:literal, $operation:literal $(, $param:literal)*) => {
        #[doc = "CORS preflight of a storefront path."]
        #[utoipa::path(
            options,
            path = $path,
            tag = "storefront",
            operation_id = $operation,
            params(("slug" = TenantSlug, Path, description = "The tenant") $(, ($param = String, Path, description = "A path segment"))*),
            responses(
                (status = 204, description = "CORS preflight; the origin is allowed if the store's allowed_origins list it"),
                (status = 404, description = "Not a tenant (no body)")
            ),
            security(())
        )]
        async fn $name(
            axum::extract::State(app): axum::extract::State<crate::app::AppState>,
            axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
            headers: axum::http::HeaderMap,
        ) -> axum::response::Response {
            crate::commerce::store_api::preflight_for(app, params, headers, $methods).await
        }
    };
}

pub mod admin_api;
pub mod cart_api;
pub mod carts;
pub mod catalog;
pub mod categories;
pub mod checkout;
pub mod expiry;
pub mod fulfilment;
pub mod imports;
pub mod inventory;
pub mod live;
pub mod me_api;
pub mod money;
pub mod order_admin_api;
pub mod order_api;
pub mod order_search;
pub mod orders;
pub mod payment_api;
pub mod payments;
pub mod pricing;
pub mod quoting;
pub mod refunds;
pub mod rules;
pub mod sandbox;
pub mod search;
pub mod settings;
pub mod store_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use utoipa_axum::router::OpenApiRouter;

use crate::admin::{Actor, Via};
use crate::app::AppState;
use crate::control::Tenant;

pub use crate::control::double_option;

/// Imports running at once on this node (each holds its parsed rows in memory).
pub const MAX_RUNNING_IMPORTS: usize = 2;

/// The store service in `App` (named apart from the email template `Catalog`): live progress of running
/// imports, and this process's boot id (recorded on import jobs, so start-up recovery fails only the jobs an
/// earlier process left running). Everything else is in the tenant files.
pub struct Store {
    imports: Mutex<HashMap<String, Arc<imports::Progress>>>,
    pub boot: String,
    /// Storefront search answers (the JSON bodies), keyed by tenant, catalog version and the normalised query:
    /// any catalog change bumps the version (triggers in the tenant file), so an answer is never staler than the
    /// catalog. Bounded by bytes (64 MiB) and kept 5 minutes.
    pub search_cache: moka::sync::Cache<String, axum::body::Bytes>,
    /// Pricing plugins' answers by (tenant, plugin, version, config, input) hash: a plugin has no clock, no
    /// randomness and no I/O, so the same call answers the same (`quoting`). Bounded by bytes
    /// (`GATEHOUSE_PRICING_CACHE_MB`), kept 10 minutes; `None` when set to 0.
    pub pricing_cache: Option<moka::sync::Cache<[u8; 32], Arc<quoting::Answer>>>,
    /// The payment providers' HTTP client and base URLs.
    pub payments: payments::Providers,
    /// Stores with unpaid orders and when the first of them expires: fed by checkouts, rebuilt by the start-up
    /// scan, drained by `expiry::run` (idle stores' files are not opened to look).
    pub expiries: Arc<crate::email::outbox::Wakeups>,
    /// Live order and stock events per store, for the storefront's event streams.
    pub live: live::Hubs,
    /// Card payments of orders cancelled unpaid, to cancel at the provider (`payments::cancel_intents` drains it).
    pub open_intents: tokio::sync::mpsc::UnboundedSender<(crate::tenants::TenantSlug, String)>,
    pub open_intents_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(crate::tenants::TenantSlug, String)>>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(32, "https://api.stripe.com")
    }
}

impl Store {
    pub fn new(pricing_cache_mb: u32, stripe_base: &str) -> Self {
        let pricing_cache = (pricing_cache_mb > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(u64::from(pricing_cache_mb) << 20)
                .weigher(|_: &[u8; 32], answer: &Arc<quoting::Answer>| answer.weight())
                .time_to_live(std::time::Duration::from_secs(600))
                .build()
        });
        let (open_intents, open_intents_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            open_intents,
            open_intents_rx: Mutex::new(Some(open_intents_rx)),
            pricing_cache,
            payments: payments::Providers::new(stripe_base),
            expiries: Arc::default(),
            live: live::Hubs::default(),
            imports: Mutex::default(),
            boot: uuid::Uuid::now_v7().to_string(),
            search_cache: moka::sync::Cache::builder()
                .max_capacity(64 << 20)
                .weigher(|key: &String, body: &axum::body::Bytes| {
                    u32::try_from(key.len() + body.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(std::time::Duration::from_secs(300))
                .build(),
        }
    }

    /// What the tenant registry tells after each committed write: live streams hear of orders and stock, the
    /// expiry list of new unpaid orders.
    pub fn on_commit(&self) -> crate::db::registry::OnCommit {
        let (live, expiries, intents) = (self.live.clone(), self.expiries.clone(), self.open_intents.clone());
        Box::new(move |slug, touched| {
            if let Some(at) = touched.expires_at {
                expiries.schedule(slug, at * 1000);
            }
            for intent in &touched.cancelled_intents {
                let _ = intents.send((slug.clone(), intent.clone()));
            }
            live.publish(slug, &touched);
        })
    }

    /// How many imports run on this node now.
    pub fn running(&self) -> usize {
        self.imports.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Registers a running import's counters.
    pub fn track(&self, id: &str) -> Arc<imports::Progress> {
        let progress = Arc::new(imports::Progress::default());
        self.imports.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), progress.clone());
        progress
    }

    /// Rows done so far by a running import of this process.
    pub fn done(&self, id: &str) -> Option<u64> {
        let map = self.imports.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).map(|p| p.done.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn forget(&self, id: &str) {
        self.imports.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(admin_api::router())
        .merge(store_api::router())
        .merge(cart_api::router())
        .merge(order_api::router())
        .merge(order_admin_api::router())
        .merge(payment_api::router())
        .merge(me_api::router())
        .merge(live::router())
        .merge(sandbox::router())
}

/// Who made a change, as the ledger and imports record it.
pub fn actor_name(actor: &Actor) -> String {
    match actor.via {
        Via::Session => format!("operator:{}", actor.id),
        Via::Token => format!("token:{}", actor.id),
    }
}

/// The write context of `actor` in `tenant`'s store, now.
pub fn write_ctx(actor: String, tenant: &Tenant) -> catalog::WriteCtx {
    catalog::WriteCtx {
        actor,
        now: crate::now_unix(),
        low_stock_threshold: tenant.settings.commerce.low_stock_threshold,
    }
}
