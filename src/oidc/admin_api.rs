//! Admin API for a tenant's OAuth clients (`/admin/api/v1/tenants/{slug}/clients`) and signing keys
//! (`/admin/api/v1/tenants/{slug}/keys`). Every change is a control-plane `Mutation`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::control::{Mutation, Tenant};
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::oidc::clients::{self, Client, ClientInput, ClientType};
use crate::oidc::keys::SigningAlg;
use crate::oidc::state;
use crate::tenants::TenantSlug;

pub fn router() -> Router<AppState> {
    let base = "/admin/api/v1/tenants/{slug}";
    Router::new()
        .route(&format!("{base}/clients"), get(list).post(create))
        .route(&format!("{base}/clients/{{id}}"), get(read).patch(update).put(update).delete(remove))
        .route(&format!("{base}/clients/{{id}}/secret"), post(rotate_secret))
        .route(&format!("{base}/keys"), get(list_keys))
        .route(&format!("{base}/keys/rotate"), post(rotate_keys))
}

/// A client as the API shows it (never the secret hash).
pub fn view(client: &Client) -> Value {
    let mut v = serde_json::to_value(client).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.remove("secret_hash");
        map.insert("created_at".into(), json!(crate::format_time(client.created_at)));
        map.insert("updated_at".into(), json!(crate::format_time(client.updated_at)));
    }
    v
}

async fn tenant(app: &AppState, actor: &Actor, raw: &str) -> Result<std::sync::Arc<Tenant>> {
    let slug = TenantSlug::parse(raw)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)
}

async fn find(app: &AppState, slug: &TenantSlug, id: &str) -> Result<Client> {
    let (s, id) = (slug.clone(), id.to_owned());
    app.control.read(move |conn| clients::get(conn, &s, &id)).await?.ok_or(Error::NotFound("client"))
}

async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Value>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let slug = tenant.slug.clone();
    let items = app.control.read(move |conn| clients::list(conn, &slug)).await?;
    Ok(Json(json!({ "items": items.iter().map(view).collect::<Vec<_>>() })))
}

/// Creates a client; a confidential one's secret is in the answer, once.
pub async fn create_client(app: &App, tenant: &Tenant, body: Value) -> Result<(Client, Option<String>)> {
    let input: ClientInput = serde_json::from_value(body).map_err(|e| Error::validation(format!("client: {e}")))?;
    let (secret, hash) = match input.client_type {
        ClientType::Confidential => {
            let (secret, hash) = clients::new_secret();
            (Some(secret), Some(hash))
        }
        ClientType::Public => (None, None),
    };
    let now = crate::now_unix();
    let client = input.into_client(clients::new_client_id(), hash, &tenant.settings.oidc, now, now)?;
    app.control.apply(Mutation::PutOAuthClient { slug: tenant.slug.clone(), client: client.clone() }).await?;
    Ok((client, secret))
}

async fn create(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>)> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let (client, secret) = create_client(&app, &tenant, body).await?;
    let mut out = view(&client);
    if let Some(secret) = secret {
        out["client_secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(out)))
}

async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    Ok(Json(view(&find(&app, &tenant.slug, &id).await?)))
}

/// Applies a partial change (keys not given keep their value); the type cannot change.
pub async fn update_client(app: &App, tenant: &Tenant, current: Client, patch: Value) -> Result<Client> {
    let Value::Object(patch) = patch else { return Err(Error::validation("expected a JSON object")) };
    let mut merged = view(&current);
    for key in ["client_id", "created_at", "updated_at"] {
        if let Value::Object(m) = &mut merged {
            m.remove(key);
        }
    }
    if patch.get("type").is_some_and(|t| *t != merged["type"]) {
        return Err(Error::validation("type cannot change; create a new client instead"));
    }
    for (k, v) in patch {
        merged[k] = v;
    }
    let input: ClientInput = serde_json::from_value(merged).map_err(|e| Error::validation(format!("client: {e}")))?;
    let client = input.into_client(
        current.client_id.clone(),
        current.secret_hash.clone(),
        &tenant.settings.oidc,
        current.created_at,
        crate::now_unix(),
    )?;
    app.control.apply(Mutation::PutOAuthClient { slug: tenant.slug.clone(), client: client.clone() }).await?;
    Ok(client)
}

async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<Value>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let current = find(&app, &tenant.slug, &id).await?;
    Ok(Json(view(&update_client(&app, &tenant, current, patch).await?)))
}

async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let tenant = tenant(&app, &actor, &slug).await?;
    app.control.apply(Mutation::DeleteOAuthClient { slug: tenant.slug.clone(), client_id: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a confidential client's secret; the old one stops working at once.
pub async fn new_secret(app: &App, slug: &TenantSlug, mut client: Client) -> Result<String> {
    if client.client_type != ClientType::Confidential {
        return Err(Error::validation("public clients have no secret"));
    }
    let (secret, hash) = clients::new_secret();
    client.secret_hash = Some(hash);
    client.updated_at = crate::now_unix();
    app.control.apply(Mutation::PutOAuthClient { slug: slug.clone(), client }).await?;
    Ok(secret)
}

async fn rotate_secret(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let client = find(&app, &tenant.slug, &id).await?;
    let secret = new_secret(&app, &tenant.slug, client).await?;
    Ok(Json(json!({ "client_id": id, "client_secret": secret })))
}

/// The tenant's published keys, creating the first one when there is none yet.
pub async fn keys(app: &AppState, tenant: &std::sync::Arc<Tenant>) -> Result<Vec<Value>> {
    app.oidc.keyring(app, tenant).await?;
    let (app2, slug) = (app.clone(), tenant.slug.clone());
    tokio::task::spawn_blocking(move || state::list_keys(&app2, &slug)).await?
}

async fn list_keys(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<Value>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    Ok(Json(json!({ "items": keys(&app, &tenant).await?, "signing_alg": tenant.settings.oidc.signing_alg })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// Defaults to the tenant's `settings.oidc.signing_alg`.
    alg: Option<SigningAlg>,
}

/// Makes a new key active; the old one stays published until its tokens have expired.
pub async fn rotate(app: &AppState, tenant: &std::sync::Arc<Tenant>, alg: Option<SigningAlg>) -> Result<String> {
    let alg = alg.unwrap_or(tenant.settings.oidc.signing_alg);
    if alg != tenant.settings.oidc.signing_alg {
        return Err(Error::validation(format!(
            "the tenant signs with {}; change settings.oidc.signing_alg to switch algorithms",
            tenant.settings.oidc.signing_alg
        )));
    }
    let (app2, t) = (app.clone(), tenant.clone());
    tokio::task::spawn_blocking(move || state::rotate_blocking(&app2, &t, alg)).await?
}

async fn rotate_keys(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let alg = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<RotateBody>(&body)
            .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))?
            .alg
    };
    // Make sure a first key exists so the rotation retires it rather than being the first.
    app.oidc.keyring(&app, &tenant).await?;
    let kid = rotate(&app, &tenant, alg).await?;
    Ok((StatusCode::CREATED, Json(json!({ "kid": kid, "items": keys(&app, &tenant).await? }))))
}
