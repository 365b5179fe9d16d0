//! Admin API tokens: `POST/GET /admin/api/v1/tokens`, `DELETE /admin/api/v1/tokens/{id}`.
//! A token's secret is shown once, at creation; only its SHA-256 is stored.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{Actor, Scope};
use crate::app::{App, AppState};
use crate::control::{Mutation, tables};
use crate::crypto;
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::tenants::check_text;

pub const TOKEN_PREFIX: &str = "gha_";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/api/v1/tokens", post(create).get(list))
        .route("/admin/api/v1/tokens/{id}", delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// `operator` or `tenant:{slug}`; the caller's own scope when absent.
    pub scope: Option<Scope>,
    pub expires_in_days: Option<u32>,
}

/// A created token: the stored row and the secret, which is never shown again.
pub struct CreatedToken {
    pub token: tables::ApiToken,
    pub secret: String,
}

/// Creates a token for `actor`, who may only hand out its own scope or a narrower one.
pub async fn create_token(app: &App, actor: &Actor, req: NewToken) -> Result<CreatedToken> {
    check_text("name", &req.name, 100)?;
    let scope = req.scope.unwrap_or_else(|| actor.scope.clone());
    match &scope {
        Scope::Operator => actor.require_operator()?,
        Scope::Tenant(slug) => {
            actor.require_tenant(slug)?;
            crate::tenants::get(app, slug).await?;
        }
    }
    if req.expires_in_days.is_some_and(|d| d == 0 || d > 3650) {
        return Err(Error::validation("expires_in_days must be 1-3650"));
    }
    let now = crate::now_unix();
    let secret = crypto::random_token(TOKEN_PREFIX);
    let id = uuid::Uuid::now_v7().to_string();
    app.control
        .apply(Mutation::CreateApiToken {
            id: id.clone(),
            name: req.name,
            token_hash: crypto::hash_token(&secret),
            scope,
            created_by: Some(actor.label.clone()),
            at: now,
            expires_at: req.expires_in_days.map(|d| now + i64::from(d) * 86_400),
        })
        .await?;
    let token = app.control.read(move |conn| tables::token_by_id(conn, &id)).await?.ok_or(Error::NotFound("token"))?;
    tracing::info!(token = %token.id, scope = %token.scope, by = %actor.label, "API token created");
    Ok(CreatedToken { token, secret })
}

/// The tokens `actor` may see: all for operators, their tenant's for tenant actors.
pub async fn visible_tokens(app: &App, actor: &Actor) -> Result<Vec<tables::ApiToken>> {
    let scope = match &actor.scope {
        Scope::Operator => None,
        own => Some(own.clone()),
    };
    app.control.read(move |conn| tables::list_tokens(conn, scope.as_ref())).await
}

pub async fn delete_token(app: &App, actor: &Actor, id: &str) -> Result<()> {
    let lookup = id.to_owned();
    let token =
        app.control.read(move |conn| tables::token_by_id(conn, &lookup)).await?.ok_or(Error::NotFound("token"))?;
    match &token.scope {
        Scope::Operator => actor.require_operator()?,
        Scope::Tenant(slug) => actor.require_tenant(slug)?,
    }
    if token.id == "bootstrap" {
        return Err(Error::validation(
            "the bootstrap token is managed by GATEHOUSE_BOOTSTRAP_TOKEN; unset it and restart",
        ));
    }
    app.control.apply(Mutation::DeleteApiToken { id: token.id.clone() }).await?;
    tracing::info!(token = %token.id, by = %actor.label, "API token deleted");
    Ok(())
}

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<Value>)> {
    let created = create_token(&app, &actor, req).await?;
    let mut body = serde_json::to_value(&created.token).map_err(Error::internal)?;
    body["token"] = Value::String(created.secret);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list(State(app): State<AppState>, actor: Actor) -> Result<Json<Value>> {
    Ok(Json(json!({ "items": visible_tokens(&app, &actor).await? })))
}

async fn remove(State(app): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<StatusCode> {
    delete_token(&app, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
