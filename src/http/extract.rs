//! Extractors shared by the feature routers: JSON bodies with typed errors, the tenant context of data-plane
//! routes, and the client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::control::Tenant;
use crate::db::registry::TenantDb;
use crate::error::{Error, Result};
use crate::tenants::{TenantSlug, TenantStatus};

/// `Json<T>` whose rejections are `Error`s: malformed JSON is a 400 with serde's message, an oversize body a 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection, state.config.max_body_bytes)),
        }
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> Error {
    match rejection {
        JsonRejection::JsonDataError(e) => Error::BadRequest(format!("invalid JSON body: {}", e.body_text())),
        JsonRejection::JsonSyntaxError(e) => Error::BadRequest(format!("malformed JSON body: {}", e.body_text())),
        JsonRejection::MissingJsonContentType(_) => {
            Error::BadRequest("expected a JSON body with Content-Type: application/json".into())
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(limit),
        other => Error::BadRequest(other.body_text()),
    }
}

/// The tenant a data-plane request (`/t/{slug}/…`) is for: its control-plane record and its open database.
/// Unknown or malformed slugs are `tenant_not_found`; suspended tenants are `tenant_suspended`.
pub struct TenantCtx {
    pub tenant: Arc<Tenant>,
    pub db: TenantDb,
}

impl FromRequestParts<AppState> for TenantCtx {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, app).await.map_err(|_| Error::TenantNotFound)?;
        let slug = params.get("slug").and_then(|s| TenantSlug::parse(s).ok()).ok_or(Error::TenantNotFound)?;
        let tenant = app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
        if tenant.status == TenantStatus::Suspended {
            return Err(Error::TenantSuspended);
        }
        let db = app.tenants.load(&slug).await?;
        Ok(TenantCtx { tenant, db })
    }
}

/// The client's IP: the peer address, or the left-most `X-Forwarded-For` entry when `GATEHOUSE_TRUST_PROXY` is on.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trust_proxy: bool) -> IpAddr {
    let forwarded = || {
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    };
    if trust_proxy { forwarded().unwrap_or(peer) } else { peer }
}

/// A listing's `limit` query value: 50 when absent, else 1-200.
pub fn page_limit(limit: Option<u32>) -> Result<u32> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) { Ok(limit) } else { Err(Error::validation("limit must be 1-200")) }
}

/// Where a request came from, for the audit log: client IP (per `GATEHOUSE_TRUST_PROXY`), user agent and
/// request id. The actor is filled in by the handler.
pub struct RequestOrigin(pub crate::identity::audit::Origin);

impl FromRequestParts<AppState> for RequestOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ip = client_ip(&parts.headers, peer, app.config.trust_proxy);
        Ok(RequestOrigin(crate::identity::audit::Origin {
            actor: String::new(),
            ip: Some(ip.to_string()),
            user_agent: parts
                .headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            request_id: parts.extensions.get::<crate::http::middleware::RequestId>().map(|r| r.0.clone()),
        }))
    }
}
