//! Admin API for a tenant's OAuth clients (`/admin/api/v1/tenants/{slug}/clients`) and signing keys
//! (`/admin/api/v1/tenants/{slug}/keys`). Every change is a control-plane `Mutation`. The client handlers check
//! access, call one service of `oidc::clients` (shared with the admin UI) and shape the answer; the key services
//! (`keys`, `rotate`, over `oidc::state`) are still here, and the admin UI calls them from here.
//!
//! Who may call: every route needs an operator or an actor scoped to the tenant in the path (an admin API token
//! or the admin UI session).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::AppState;
use crate::control::{Mutation, Tenant};
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::oidc::clients::{self, AuthMethod, Client, ClientInput, ClientType};
use crate::oidc::keys::{PublicJwk, SigningAlg};
use crate::oidc::state;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, update_put, remove))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
}

/// An OAuth client as the API shows it (never the secret hash).
#[derive(Serialize, ToSchema)]
pub struct ClientView {
    client_id: String,
    name: String,
    #[serde(rename = "type")]
    client_type: ClientType,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    scopes: Vec<String>,
    /// The tenant's own app: may hold the account scopes.
    first_party: bool,
    /// May introspect the tokens of every client of the tenant.
    resource_server: bool,
    token_endpoint_auth_method: AuthMethod,
    /// Seconds; `null` means the tenant's default.
    access_token_ttl: Option<u32>,
    /// Seconds; `null` means the tenant's default.
    refresh_token_ttl: Option<u32>,
    allowed_cors_origins: Vec<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: i64,
}

/// A client as the API shows it (never the secret hash).
pub fn view(client: &Client) -> ClientView {
    // Destructured without `..`: a new field of `Client` must be placed here, shown or dropped on purpose.
    let Client {
        client_id,
        name,
        client_type,
        secret_hash: _,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        scopes,
        first_party,
        resource_server,
        token_endpoint_auth_method,
        access_token_ttl,
        refresh_token_ttl,
        allowed_cors_origins,
        created_at,
        updated_at,
    } = client.clone();
    ClientView {
        client_id,
        name,
        client_type,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        scopes,
        first_party,
        resource_server,
        token_endpoint_auth_method,
        access_token_ttl,
        refresh_token_ttl,
        allowed_cors_origins,
        created_at,
        updated_at,
    }
}

async fn tenant(app: &AppState, actor: &Actor, raw: &str) -> Result<std::sync::Arc<Tenant>> {
    let slug = TenantSlug::parse(raw)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)
}

/// The tenant's clients.
#[derive(Serialize, ToSchema)]
struct ClientList {
    items: Vec<ClientView>,
}

/// Lists the tenant's OAuth clients, oldest first.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/clients",
    tag = "clients",
    operation_id = "clients_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant's clients", body = ClientList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<ClientList>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let slug = tenant.slug.clone();
    let items = app.control.read(move |conn| clients::list(conn, &slug)).await?;
    Ok(Json(ClientList { items: items.iter().map(view).collect() }))
}

/// A client just created: a confidential one's secret is here, once.
#[derive(Serialize, ToSchema)]
struct CreatedClient {
    #[serde(flatten)]
    client: ClientView,
    /// Confidential clients only; it cannot be read again (rotate it to get a new one).
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

/// Registers an OAuth client; a confidential client's secret is in the answer, once.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/clients",
    tag = "clients",
    operation_id = "clients_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = ClientInput,
    responses((status = 201, description = "Created", body = CreatedClient), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<CreatedClient>)> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let (client, client_secret) = clients::create(&app, &tenant, body).await?;
    Ok((StatusCode::CREATED, Json(CreatedClient { client: view(&client), client_secret })))
}

/// Reads an OAuth client.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/clients/{id}",
    tag = "clients",
    operation_id = "clients_read",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The client id")
    ),
    responses((status = 200, description = "The client", body = ClientView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<ClientView>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    Ok(Json(view(&clients::find(&app, &tenant.slug, &id).await?)))
}

/// A change to a client: the keys of `ClientInput`, each optional; a key not given keeps its value (`null` resets
/// `grant_types`, `scopes`, `token_endpoint_auth_method` and the TTLs to their defaults). Documents the body; the
/// handler merges it into the current client as JSON.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ClientPatch {
    name: Option<String>,
    /// Must equal the client's type: it cannot change (create a new client instead).
    #[serde(rename = "type")]
    client_type: Option<ClientType>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    first_party: Option<bool>,
    resource_server: Option<bool>,
    token_endpoint_auth_method: Option<AuthMethod>,
    access_token_ttl: Option<u32>,
    refresh_token_ttl: Option<u32>,
    allowed_cors_origins: Option<Vec<String>>,
}

/// Changes an OAuth client: keys not given keep their value; the type cannot change.
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/clients/{id}",
    tag = "clients",
    operation_id = "clients_update",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The client id")
    ),
    request_body = ClientPatch,
    responses((status = 200, description = "The client as updated", body = ClientView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<ClientView>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let current = clients::find(&app, &tenant.slug, &id).await?;
    Ok(Json(view(&clients::update(&app, &tenant, current, patch).await?)))
}

/// Changes an OAuth client, as `PATCH` does: keys not given keep their value; the type cannot change.
#[utoipa::path(
    put,
    path = "/admin/api/v1/tenants/{slug}/clients/{id}",
    tag = "clients",
    operation_id = "clients_update_put",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The client id")
    ),
    request_body = ClientPatch,
    responses((status = 200, description = "The client as updated", body = ClientView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update_put(
    state: State<AppState>,
    actor: Actor,
    path: Path<(String, String)>,
    patch: ApiJson<Value>,
) -> Result<Json<ClientView>> {
    update(state, actor, path, patch).await
}

/// Deletes an OAuth client.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/clients/{id}",
    tag = "clients",
    operation_id = "clients_remove",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The client id")
    ),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let tenant = tenant(&app, &actor, &slug).await?;
    app.control.apply(Mutation::DeleteOAuthClient { slug: tenant.slug.clone(), client_id: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A confidential client's new secret, shown once.
#[derive(Serialize, ToSchema)]
struct NewClientSecret {
    client_id: String,
    client_secret: String,
}

/// Replaces a confidential client's secret; the old one stops working at once.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/clients/{id}/secret",
    tag = "clients",
    operation_id = "clients_rotate_secret",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The client id")
    ),
    responses((status = 200, description = "The new secret, shown once", body = NewClientSecret), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn rotate_secret(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<NewClientSecret>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let client = clients::find(&app, &tenant.slug, &id).await?;
    let client_secret = clients::rotate_secret(&app, &tenant.slug, client).await?;
    Ok(Json(NewClientSecret { client_id: id, client_secret }))
}

/// The tenant's published keys, creating the first one when there is none yet.
pub async fn keys(app: &AppState, tenant: &std::sync::Arc<Tenant>) -> Result<Vec<Value>> {
    app.oidc.keyring(app, tenant).await?;
    let (app2, slug) = (app.clone(), tenant.slug.clone());
    tokio::task::spawn_blocking(move || state::list_keys(&app2, &slug)).await?
}

/// Whether a key signs new tokens or only verifies the ones it signed before a rotation.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum SigningKeyStatus {
    Active,
    Retiring,
}

/// A published signing key, as `state::list_keys` builds it (documents that JSON; never built here).
#[derive(ToSchema)]
#[allow(dead_code)]
struct SigningKeyView {
    kid: String,
    alg: SigningAlg,
    status: SigningKeyStatus,
    /// When a retiring key stops being published; `null` for the active key.
    #[schema(format = DateTime)]
    retires_at: Option<String>,
    public_jwk: PublicJwk,
}

/// The tenant's published keys and the algorithm it signs with.
#[derive(Serialize, ToSchema)]
struct SigningKeyList {
    /// The active key and the retiring ones.
    #[schema(value_type = Vec<SigningKeyView>)]
    items: Vec<Value>,
    signing_alg: SigningAlg,
}

/// Lists the tenant's signing keys, creating the first one when there is none yet.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/keys",
    tag = "keys",
    operation_id = "keys_list_keys",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The published keys", body = SigningKeyList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_keys(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
) -> Result<Json<SigningKeyList>> {
    let tenant = tenant(&app, &actor, &slug).await?;
    Ok(Json(SigningKeyList { items: keys(&app, &tenant).await?, signing_alg: tenant.settings.oidc.signing_alg }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateKeysBody {
    /// Defaults to the tenant's `settings.oidc.signing_alg`; another algorithm is refused (change the setting to
    /// switch).
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
    // A rotation racing another answers 409 `conflict`: one of them made the new key.
    tokio::task::spawn_blocking(move || {
        let replaces = state::active_kid(&app2, &t)?;
        state::rotate_blocking(&app2, &t, alg, replaces)
    })
    .await?
}

/// The new active key's id and the keys now published.
#[derive(Serialize, ToSchema)]
struct RotatedKeys {
    kid: String,
    #[schema(value_type = Vec<SigningKeyView>)]
    items: Vec<Value>,
}

/// Makes a new key active; the old one stays published until the tokens it signed have expired.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/keys/rotate",
    tag = "keys",
    operation_id = "keys_rotate_keys",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body(
        content = Option<RotateKeysBody>,
        description = "Optional: an empty body rotates with the tenant's algorithm",
        content_type = "application/json"
    ),
    responses((status = 201, description = "Rotated", body = RotatedKeys), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn rotate_keys(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RotatedKeys>)> {
    let tenant = tenant(&app, &actor, &slug).await?;
    let alg = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<RotateKeysBody>(&body)
            .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))?
            .alg
    };
    // Make sure a first key exists so the rotation retires it rather than being the first.
    app.oidc.keyring(&app, &tenant).await?;
    let kid = rotate(&app, &tenant, alg).await?;
    Ok((StatusCode::CREATED, Json(RotatedKeys { kid, items: keys(&app, &tenant).await? })))
}
