//! Admin API tokens: `POST/GET /admin/api/v1/tokens`, `DELETE /admin/api/v1/tokens/{id}`.
//! A token's secret is shown once, at creation; only its SHA-256 is stored.
//!
//! Who may call: an operator or a tenant-scoped actor. An operator sees and manages every token; a tenant-scoped
//! actor sees and manages only its own tenant's tokens, and can create only tokens of its own scope.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::{Actor, Scope};
use crate::app::{App, AppState};
use crate::control::{Mutation, tables};
use crate::crypto;
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::tenants::check_text;

pub const TOKEN_PREFIX: &str = "gha_";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(remove))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// For people: what the token is for (1-100 characters).
    pub name: String,
    /// `operator` or `tenant:{slug}`; the caller's own scope when absent.
    pub scope: Option<Scope>,
    /// 1-3650; the token never expires when absent.
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

/// An API token as the API shows it: never its secret or hash.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiToken)]
struct TokenView {
    id: String,
    name: String,
    scope: Scope,
    /// Who created it (an operator's email or a token's name); null for the bootstrap token.
    created_by: Option<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
    /// Null when the token never expires.
    #[serde(with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<i64>,
}

impl From<tables::ApiToken> for TokenView {
    fn from(t: tables::ApiToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            scope: t.scope,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
        }
    }
}

/// A token just created: the token and, once only, its secret.
#[derive(Serialize, ToSchema)]
struct IssuedToken {
    #[serde(flatten)]
    token: TokenView,
    /// The secret to send as `Authorization: Bearer <token>`; it is never shown again.
    #[serde(rename = "token")]
    secret: String,
}

/// Creates an API token of the caller's scope or a narrower one.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tokens",
    tag = "tokens",
    operation_id = "tokens_create",
    request_body = NewToken,
    responses((status = 201, description = "Created; the secret is in `token`", body = IssuedToken), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let created = create_token(&app, &actor, req).await?;
    Ok((StatusCode::CREATED, Json(IssuedToken { token: created.token.into(), secret: created.secret })))
}

/// The tokens the caller may see.
#[derive(Serialize, ToSchema)]
struct TokenList {
    items: Vec<TokenView>,
}

/// Lists API tokens: all of them for an operator, its tenant's for a tenant-scoped actor.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tokens",
    tag = "tokens",
    operation_id = "tokens_list",
    responses((status = 200, description = "The tokens", body = TokenList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(State(app): State<AppState>, actor: Actor) -> Result<Json<TokenList>> {
    let items = visible_tokens(&app, &actor).await?.into_iter().map(TokenView::from).collect();
    Ok(Json(TokenList { items }))
}

/// Deletes an API token (not the bootstrap token, which the environment manages).
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tokens/{id}",
    tag = "tokens",
    operation_id = "tokens_remove",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(State(app): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<StatusCode> {
    delete_token(&app, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
