//! The embedded admin web UI: askama templates from `templates/`, CSS and JS from `static/` (rust-embed), no
//! CDN, no JS framework. Pages share the admin services with the JSON API (`tenants`, `admin::tokens`).
//!
//! Every form carries a CSRF token: the session's for signed-in pages, a double-submit cookie for the sign-in
//! and setup forms. Errors render as a readable page, never as JSON (`http::page`: `PageError`, `UiForm`,
//! `render`, shared with the hosted pages).

mod api_docs;
mod assets;
mod audit_pages;
mod backup_pages;
mod csv_export;
mod email_pages;
mod identity_pages;
mod key_pages;
mod lists;
mod node_plots;
mod oauth_pages;
mod order_detail_pages;
mod order_pages;
mod pages;
pub mod plot;
mod plugin_pages;
mod store_pages;
mod store_rules_pages;
mod store_setup_pages;
mod tenant_actions;
mod tenant_overview;
pub mod ui;
mod user_pages;
mod webhook_pages;

pub use crate::http::page::CsrfOnly;
// `pages.rs` calls it as `super::message_page`.
pub use crate::http::page::message_page;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

use crate::admin::accounts;
use crate::admin::{Actor, SESSION_COOKIE, Via};
use crate::app::AppState;
use crate::crypto;
use crate::error::Error;
use crate::http::cookies;
use crate::http::page::PageError;

pub fn router() -> Router<AppState> {
    pages::router()
        .merge(email_pages::router())
        .merge(identity_pages::router())
        .merge(audit_pages::router())
        .merge(user_pages::router())
        .merge(webhook_pages::router())
        .merge(oauth_pages::router())
        .merge(key_pages::router())
        .merge(backup_pages::router())
        .merge(plugin_pages::router())
        .merge(store_pages::router())
        .merge(order_pages::router())
        .merge(order_detail_pages::router())
        .merge(store_setup_pages::router())
        .merge(store_rules_pages::router())
        .merge(tenant_overview::router())
        .merge(tenant_actions::router())
        .merge(api_docs::router())
        .layer(axum::middleware::from_fn(crate::http::page::with_admin_links))
        .merge(assets::router())
}

/// The parts of the page frame every signed-in page fills.
#[derive(Default)]
pub struct Chrome {
    pub nav: &'static str,
    pub csrf_token: String,
    pub who: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// On a page of a suspended tenant: every such page says so (`templates/admin/tenant_nav.html`).
    pub tenant_suspended: bool,
    /// The visitor is an operator (operator-only links are shown).
    pub operator: bool,
}

/// A tenant page's section as breadcrumbs name it: (path under `/admin/tenants/{slug}/`, label), by its `tab`.
pub fn section(tab: &str) -> Option<(&'static str, &'static str)> {
    Some(match tab {
        "users" => ("users", "Users"),
        "roles" => ("roles", "Roles"),
        "admins" => ("admins", "Admins"),
        "audit" => ("audit", "Audit log"),
        "sign-in" => ("sign-in", "Sign-in settings"),
        "clients" => ("clients", "OAuth clients"),
        "keys" => ("keys", "Signing keys"),
        "email" => ("email", "Email settings"),
        "outbox" => ("outbox", "Outbox"),
        "mailbox" => ("mailbox", "Dev mailbox"),
        "webhooks" => ("webhooks", "Webhooks"),
        "plugins" => ("plugins", "Plugins"),
        "products" => ("store/products", "Products"),
        "orders" => ("store/orders", "Orders"),
        "categories" => ("store/categories", "Categories"),
        "import" => ("store/import", "Import"),
        "rules" => ("store/rules", "Pricing rules"),
        "quote" => ("store/quote", "Quote sandbox"),
        _ => return None,
    })
}

/// A signed-in admin UI visitor: the actor and the session's CSRF token. Without a session, redirects to the
/// sign-in page.
#[derive(Clone)]
pub struct UiSession {
    pub actor: Actor,
    pub csrf_token: String,
    /// Whether the page is one of a suspended tenant (`/admin/tenants/{slug}/…`) this actor may see.
    pub tenant_suspended: bool,
}

impl UiSession {
    pub fn chrome(&self, nav: &'static str) -> Chrome {
        Chrome {
            nav,
            csrf_token: self.csrf_token.clone(),
            who: self.actor.label.clone(),
            notice: None,
            error: None,
            tenant_suspended: self.tenant_suspended,
            operator: self.actor.require_operator().is_ok(),
        }
    }

    /// `chrome` with a notice (the text for a `?done=` after a redirect, usually).
    pub fn chrome_with(&self, nav: &'static str, notice: Option<String>) -> Chrome {
        Chrome { notice, ..self.chrome(nav) }
    }

    /// The tenant named in a page's path, after checking this admin may act on it.
    pub async fn tenant(
        &self,
        app: &AppState,
        slug: &str,
    ) -> Result<std::sync::Arc<crate::control::tables::Tenant>, PageError> {
        let slug = crate::tenants::TenantSlug::parse(slug).map_err(PageError)?;
        self.actor.require_tenant(&slug)?;
        Ok(app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?)
    }

    /// Checks a submitted form's CSRF token against the session's.
    pub fn check_csrf(&self, submitted: &str) -> Result<(), PageError> {
        if crypto::constant_time_eq(submitted, &self.csrf_token) {
            Ok(())
        } else {
            Err(PageError(Error::Forbidden("this form has expired or did not come from this site; reload and retry")))
        }
    }
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        // A `CsrfForm` of the same request reuses the session instead of looking it up again.
        if let Some(session) = parts.extensions.get::<UiSession>() {
            return Ok(session.clone());
        }
        let to_login = || Redirect::to("/admin/login").into_response();
        let Some(cookie) = cookies::get(&parts.headers, SESSION_COOKIE) else { return Err(to_login()) };
        match accounts::session(app, &cookie).await {
            Ok(Some(session)) => {
                let actor = Actor {
                    id: session.operator.id,
                    label: session.operator.email,
                    scope: session.operator.scope,
                    via: Via::Session,
                };
                let tenant_suspended = suspended_tenant_page(app, &actor, parts.uri.path()).await;
                let session = UiSession { actor, csrf_token: session.csrf_token, tenant_suspended };
                parts.extensions.insert(session.clone());
                Ok(session)
            }
            Ok(None) => Err(to_login()),
            Err(err) => Err(PageError(err).into_response()),
        }
    }
}

/// Whether `path` is a page of a suspended tenant that `actor` may open (one cached record lookup).
async fn suspended_tenant_page(app: &AppState, actor: &Actor, path: &str) -> bool {
    let Some(raw) = path.strip_prefix("/admin/tenants/").map(|rest| rest.split('/').next().unwrap_or(rest)) else {
        return false;
    };
    let Some(slug) = crate::tenants::TenantSlug::from_path_segment(raw) else { return false };
    if actor.require_tenant(&slug).is_err() {
        return false;
    }
    matches!(app.control.tenant(&slug).await, Ok(Some(t)) if t.status == crate::tenants::TenantStatus::Suspended)
}

/// A form posted by a signed-in admin whose `csrf_token` field matched the session's: the check is the
/// extractor's, so no handler can forget it. A wrong or missing token is the readable 403 page.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = UiSession::from_request_parts(&mut parts, app).await?;
        let bytes =
            Bytes::from_request(Request::from_parts(parts, body), app).await.map_err(IntoResponse::into_response)?;
        let token = serde_urlencoded::from_bytes::<CsrfOnly>(&bytes).map(|t| t.csrf_token).unwrap_or_default();
        session.check_csrf(&token).map_err(IntoResponse::into_response)?;
        match serde_urlencoded::from_bytes::<T>(&bytes) {
            Ok(value) => Ok(CsrfForm(value)),
            Err(err) => Err(message_page(StatusCode::BAD_REQUEST, "That form could not be read", &err.to_string())),
        }
    }
}
