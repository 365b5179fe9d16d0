//! Admin-side actors and their rights: operators, tenant admins and API tokens.
//!
//! Every admin API handler takes an `Actor` (the extractor authenticates it) and calls `require_operator` or
//! `require_tenant` before doing anything: that pair is the one place access is decided.
//! Credentials: `Authorization: Bearer <token>` (SHA-256 looked up in control.db), or the admin UI session cookie
//! `gh_admin`, in which case a state-changing request must also carry the session's CSRF token in
//! `X-CSRF-Token` (forms carry it as `csrf_token`).

pub mod accounts;
pub mod lockout;
pub mod tokens;

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::app::AppState;
use crate::control::tables;
use crate::crypto;
use crate::error::{Error, Result};
use crate::http::cookies;
use crate::tenants::TenantSlug;

pub const SESSION_COOKIE: &str = "gh_admin";

/// What an admin-side credential may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Operator,
    /// One tenant.
    Tenant(TenantSlug),
}

impl Scope {
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "operator" => Ok(Scope::Operator),
            other => match other.strip_prefix("tenant:") {
                Some(slug) => Ok(Scope::Tenant(TenantSlug::parse(slug)?)),
                None => Err(Error::validation("scope must be operator or tenant:{slug}")),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Operator => f.write_str("operator"),
            Scope::Tenant(slug) => write!(f, "tenant:{slug}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Scope::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// In the API contract a scope is a string of the shape `parse` accepts.
impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^(operator|tenant:[a-z0-9][a-z0-9-]{1,62})$"))
            .description(Some("What a credential may act on: `operator` (everything) or `tenant:{slug}` (one tenant)"))
            .into()
    }
}

impl utoipa::ToSchema for Scope {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("AdminScope")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Token,
    Session,
}

/// An authenticated admin-side caller.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Operator id or token id.
    pub id: String,
    /// Email or token name, for logs and the UI.
    pub label: String,
    pub scope: Scope,
    pub via: Via,
}

impl Actor {
    pub fn require_operator(&self) -> Result<()> {
        match self.scope {
            Scope::Operator => Ok(()),
            Scope::Tenant(_) => Err(Error::Forbidden("this action needs operator rights")),
        }
    }

    pub fn require_tenant(&self, slug: &TenantSlug) -> Result<()> {
        match &self.scope {
            Scope::Operator => Ok(()),
            Scope::Tenant(own) if own == slug => Ok(()),
            Scope::Tenant(_) => Err(Error::Forbidden("no access to this tenant")),
        }
    }

    /// The tenant named by the raw path segment, checked against this actor's scope, with its open database.
    /// Suspended tenants are reachable: their admins still need to see and fix them.
    pub async fn open_tenant(
        &self,
        app: &AppState,
        raw_slug: &str,
    ) -> Result<(std::sync::Arc<tables::Tenant>, crate::db::registry::TenantDb)> {
        let slug = TenantSlug::parse(raw_slug)?;
        self.require_tenant(&slug)?;
        let tenant = app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
        let db = app.tenants.load(&slug).await?;
        Ok((tenant, db))
    }
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(Error::Unauthorized)?;
            let hash = crypto::hash_token(token);
            let now = crate::now_unix();
            let found = app.control.read(move |conn| tables::token_by_hash(conn, &hash, now)).await?;
            let token = found.ok_or(Error::Unauthorized)?;
            return Ok(Actor { id: token.id, label: token.name, scope: token.scope, via: Via::Token });
        }
        let Some(cookie) = cookies::get(&parts.headers, SESSION_COOKIE) else {
            return Err(Error::Unauthorized);
        };
        let session = accounts::session(app, &cookie).await?.ok_or(Error::Unauthorized)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !crypto::constant_time_eq(sent, &session.csrf_token) {
                return Err(Error::Forbidden("missing or wrong CSRF token"));
            }
        }
        Ok(Actor {
            id: session.operator.id,
            label: session.operator.email,
            scope: session.operator.scope,
            via: Via::Session,
        })
    }
}

/// A plausible email address: what the admin side needs (the identity feature validates user emails).
pub fn validate_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(Error::validation("email must be an address like name@example.com")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        assert_eq!(Scope::parse("operator").unwrap(), Scope::Operator);
        let tenant = Scope::parse("tenant:acme").unwrap();
        assert_eq!(tenant.to_string(), "tenant:acme");
        assert!(Scope::parse("tenant:../x").is_err());
        assert!(Scope::parse("root").is_err());
    }

    #[test]
    fn tenant_actors_stay_in_their_tenant() {
        let acme = TenantSlug::parse("acme").unwrap();
        let other = TenantSlug::parse("other").unwrap();
        let actor = Actor { id: "t".into(), label: "t".into(), scope: Scope::Tenant(acme.clone()), via: Via::Token };
        assert!(actor.require_tenant(&acme).is_ok());
        assert!(actor.require_tenant(&other).is_err());
        assert!(actor.require_operator().is_err());
    }

    #[test]
    fn emails() {
        assert!(validate_email("ops@example.com").is_ok());
        for bad in ["", "x", "@example.com", "a@b", "a b@c.de", "a@.com"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
