//! Admin API for a tenant's plugins (`/admin/api/v1/tenants/{slug}/plugins`): create and configure, upload
//! versions (validated and compiled on upload), activate (also the rollback), deactivate, dry-run, delete. The
//! admin UI calls the same functions. Every change is a control-plane `Mutation`.
//!
//! Who may call: every route needs an operator or an actor scoped to the tenant in the path.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::records::{self, FailurePolicy, Plugin, PluginSettings, Version};
use super::runtime::{Function, LogLine, MAX_MEMORY_MB, Outcome};
use super::{DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, Stats, World, io};
use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::control::Mutation;
use crate::control::mutation::CHUNK_BYTES;
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
        .routes(routes!(read_versions, upload))
        .routes(routes!(activate))
        .routes(routes!(dry_run_route))
        .routes(routes!(deactivate))
}

/// Whether a request path is a component upload: it gets the plugin size limit and a long time limit.
pub fn is_upload(path: &str) -> bool {
    (path.starts_with("/admin/api/v1/tenants/") && path.ends_with("/versions") && path.contains("/plugins/"))
        || (path.starts_with("/admin/tenants/") && path.ends_with("/upload") && path.contains("/plugins/"))
}

/// How long an upload (which compiles the component) may take.
pub const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_')));
    if ok {
        Ok(())
    } else {
        Err(Error::validation("plugin name: 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"))
    }
}

/// The settings of a new plugin, or the changes to one (every field optional there).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginInput {
    /// Required to create (1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit); cannot change.
    pub name: Option<String>,
    /// Required to create; cannot change.
    #[schema(value_type = Option<World>)]
    pub world: Option<String>,
    /// Default `fail_closed`.
    pub failure_policy: Option<FailurePolicy>,
    /// Per-call deadline, 1-1000; default 50.
    pub timeout_ms: Option<u32>,
    /// Memory cap in MiB; default 32.
    pub memory_mb: Option<u32>,
    /// Lower runs first among the active plugins of a world; default 100.
    pub priority: Option<i32>,
    /// A JSON object of at most 16 KiB, kept for the plugin's author; default `{}`.
    pub config: Option<Value>,
}

impl PluginInput {
    /// Applies this input to `base` (a new plugin's defaults or the current settings) and checks the result.
    fn apply(self, mut base: PluginSettings) -> Result<PluginSettings> {
        if let Some(p) = self.failure_policy {
            base.failure_policy = p;
        }
        if let Some(t) = self.timeout_ms {
            base.timeout_ms = t;
        }
        if let Some(m) = self.memory_mb {
            base.memory_mb = m;
        }
        if let Some(p) = self.priority {
            base.priority = p;
        }
        if let Some(c) = self.config {
            base.config = c;
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&base.timeout_ms) {
            return Err(Error::validation(format!("timeout_ms must be 1 to {MAX_TIMEOUT_MS}")));
        }
        if !(1..=MAX_MEMORY_MB).contains(&base.memory_mb) {
            return Err(Error::validation(format!("memory_mb must be 1 to {MAX_MEMORY_MB}")));
        }
        if !base.config.is_object() {
            return Err(Error::validation("config must be a JSON object"));
        }
        if base.config.to_string().len() > 16 * 1024 {
            return Err(Error::validation("config is larger than 16 KiB"));
        }
        Ok(base)
    }
}

async fn tenant_slug(app: &AppState, actor: &Actor, raw: &str) -> Result<TenantSlug> {
    let slug = TenantSlug::parse(raw)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    Ok(slug)
}

pub async fn find(app: &App, slug: &TenantSlug, name: &str) -> Result<Plugin> {
    let (s, n) = (slug.clone(), name.to_owned());
    app.control.read(move |conn| records::get(conn, &s, &n)).await?.ok_or(Error::NotFound("plugin"))
}

pub async fn versions(app: &App, slug: &TenantSlug, name: &str) -> Result<Vec<Version>> {
    let (s, n) = (slug.clone(), name.to_owned());
    app.control.read(move |conn| records::versions(conn, &s, &n)).await
}

pub async fn create_plugin(app: &App, slug: &TenantSlug, input: PluginInput) -> Result<Plugin> {
    let name = input.name.clone().ok_or_else(|| Error::validation("name is required"))?;
    check_name(&name)?;
    let world =
        input
            .world
            .as_deref()
            .ok_or_else(|| Error::validation("world is required: login, email or pricing"))
            .and_then(|w| World::parse(w).ok_or_else(|| Error::validation("world must be login, email or pricing")))?;
    if find(app, slug, &name).await.is_ok() {
        return Err(Error::Conflict(format!("a plugin named {name} exists already")));
    }
    let settings = input.apply(PluginSettings {
        name: name.clone(),
        world,
        failure_policy: FailurePolicy::FailClosed,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        memory_mb: DEFAULT_MEMORY_MB,
        priority: 100,
        config: json!({}),
    })?;
    app.control.apply(Mutation::PutPlugin { slug: slug.clone(), plugin: settings, at: crate::now_unix() }).await?;
    find(app, slug, &name).await
}

pub async fn update_plugin(app: &App, slug: &TenantSlug, name: &str, input: PluginInput) -> Result<Plugin> {
    let current = find(app, slug, name).await?;
    if input.name.as_deref().is_some_and(|n| n != name) {
        return Err(Error::validation("a plugin cannot be renamed"));
    }
    if input.world.as_deref().is_some_and(|w| w != current.settings.world.as_str()) {
        return Err(Error::validation("a plugin's world cannot change; create another plugin"));
    }
    let settings = input.apply(current.settings)?;
    app.control.apply(Mutation::PutPlugin { slug: slug.clone(), plugin: settings, at: crate::now_unix() }).await?;
    find(app, slug, name).await
}

/// Validates, compiles and stores a component as the plugin's next version (not active yet).
pub async fn upload_version(app: &App, slug: &TenantSlug, name: &str, bytes: Vec<u8>) -> Result<Version> {
    let plugin = find(app, slug, name).await?;
    if bytes.len() > app.plugins.max_bytes {
        return Err(Error::PayloadTooLarge(app.plugins.max_bytes));
    }
    let bytes = Arc::new(bytes);
    let (sha256, contract) = app.plugins.validate(slug, plugin.settings.world, bytes.clone()).await?;
    let size = bytes.len() as u64;
    let at = crate::now_unix();
    // The component travels in chunks of at most 512 KiB, then one entry adds the version (numbered there).
    let upload = uuid::Uuid::now_v7().to_string();
    let total = bytes.len().div_ceil(CHUNK_BYTES).max(1) as u32;
    for (seq, data) in bytes.chunks(CHUNK_BYTES).enumerate() {
        let chunk = Mutation::PutBlobChunk {
            slug: slug.clone(),
            upload: upload.clone(),
            sha256: sha256.clone(),
            seq: seq as u32,
            total,
            data: data.to_vec(),
            at,
        };
        app.control.apply(chunk).await?;
    }
    let add =
        Mutation::AddPluginVersion { slug: slug.clone(), name: name.to_owned(), upload, sha256: sha256.clone(), at };
    let added = app.control.apply(add).await?;
    let version = added.assigned.and_then(|v| u32::try_from(v).ok()).ok_or_else(|| Error::internal("no version"))?;
    tracing::info!(tenant = %slug, plugin = name, version, sha256 = %sha256, size, "plugin version uploaded");
    Ok(Version { version, sha256, size, created_at: at, contract: Some(contract) })
}

pub async fn set_active(app: &App, slug: &TenantSlug, name: &str, version: Option<u32>) -> Result<Plugin> {
    find(app, slug, name).await?;
    let mutation =
        Mutation::SetPluginActive { slug: slug.clone(), name: name.to_owned(), version, at: crate::now_unix() };
    app.control.apply(mutation).await?;
    tracing::info!(tenant = %slug, plugin = name, version = ?version, "plugin activation changed");
    find(app, slug, name).await
}

pub async fn delete_plugin(app: &App, slug: &TenantSlug, name: &str) -> Result<()> {
    app.control.apply(Mutation::DeletePlugin { slug: slug.clone(), name: name.to_owned() }).await?;
    app.plugins.forget(slug, name);
    Ok(())
}

/// The body of a dry run (documentation only: the handler reads it as JSON, so its checks and messages stay in
/// `dry_run`).
#[derive(ToSchema)]
#[allow(dead_code)]
struct DryRunRequest {
    /// One of the functions of the plugin's world.
    function: Function,
    /// The function's arguments, any JSON: the WIT records with snake_case names (`{"user","request"}` for the
    /// login functions, `{"message"}` for `render`, `{"cart"}` for `price`). The function's sample when absent.
    input: Option<Value>,
    /// `price` only, instead of `input`: a cart of the tenant's store, priced by the built-in rules up to the
    /// plugins (its lines, codes, destination and customer become the `cart` argument).
    cart_id: Option<String>,
}

/// What a dry run did.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunReport {
    pub outcome: Outcome,
    /// What the function returned, as JSON; null when it returned nothing usable.
    pub output: Option<Value>,
    /// Why the outcome is not `ok`; null when it is.
    pub error: Option<String>,
    pub logs: Vec<LogLine>,
    pub duration_us: u64,
    pub memory_peak_bytes: u64,
}

/// `dry_run_report` as JSON, for the admin UI.
pub async fn dry_run(app: &App, slug: &TenantSlug, name: &str, version: u32, body: Value) -> Result<Value> {
    serde_json::to_value(dry_run_report(app, slug, name, version, body).await?).map_err(Error::internal)
}

/// Runs one function of one version against a JSON input; nothing is recorded but the answer.
pub async fn dry_run_report(
    app: &App,
    slug: &TenantSlug,
    name: &str,
    version: u32,
    body: Value,
) -> Result<DryRunReport> {
    let plugin = find(app, slug, name).await?;
    let function =
        body.get("function").and_then(Value::as_str).ok_or_else(|| Error::validation("function is required"))?;
    let function = Function::parse(function).filter(|f| f.world() == plugin.settings.world).ok_or_else(|| {
        let names: Vec<_> = plugin.settings.world.functions().iter().map(|f| f.as_str()).collect();
        Error::validation(format!("function must be one of: {}", names.join(", ")))
    })?;
    let input = match body.get("cart_id").and_then(Value::as_str) {
        Some(_) if function != Function::Price => {
            return Err(Error::validation("cart_id is an input of the price function only"));
        }
        Some(_) if body.get("input").is_some() => return Err(Error::validation("give either input or cart_id")),
        Some(cart_id) => crate::commerce::sandbox::plugin_input_of_cart(app, slug, cart_id.to_owned()).await?,
        None => body.get("input").cloned().unwrap_or_else(|| io::sample(function)),
    };
    let input = io::parse_input(function, input)?;
    let sha256 = versions(app, slug, name)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or(Error::NotFound("plugin version"))?
        .sha256;
    let report = app.plugins.call_unobserved(app, slug, &plugin.settings, version, &sha256, input).await;
    Ok(DryRunReport {
        outcome: report.outcome,
        output: report.output.as_ref().map(io::output_json),
        error: report.error,
        logs: report.logs,
        duration_us: report.duration.as_micros() as u64,
        memory_peak_bytes: report.memory_peak_bytes,
    })
}

/// A plugin with its versions, call stats and a sample input per function.
#[derive(Serialize, ToSchema)]
pub struct PluginDetail {
    #[serde(flatten)]
    pub plugin: Plugin,
    /// Newest first.
    pub versions: Vec<Version>,
    pub stats: Stats,
    /// A sample dry-run input per function of the plugin's world, by function name.
    pub samples: BTreeMap<String, Value>,
}

/// A plugin with its versions, stats and sample inputs.
pub async fn detail(app: &App, slug: &TenantSlug, name: &str) -> Result<PluginDetail> {
    let plugin = find(app, slug, name).await?;
    let versions = versions(app, slug, name).await?;
    let samples = plugin.settings.world.functions().iter().map(|f| (f.as_str().to_owned(), io::sample(*f))).collect();
    let stats = app.plugins.stats(slug, name);
    Ok(PluginDetail { plugin, versions, stats, samples })
}

/// A plugin with its call stats, as the list shows it.
#[derive(Serialize, ToSchema)]
struct PluginSummary {
    #[serde(flatten)]
    plugin: Plugin,
    stats: Stats,
}

/// A tenant's plugins, by priority then name.
#[derive(Serialize, ToSchema)]
struct PluginList {
    items: Vec<PluginSummary>,
}

/// Lists a tenant's plugins with their call stats.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/plugins",
    tag = "plugins",
    operation_id = "plugins_list",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant's plugins", body = PluginList), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<PluginList>> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    let s = slug.clone();
    let items = app.control.read(move |conn| records::list(conn, &s)).await?;
    let items = items
        .into_iter()
        .map(|plugin| {
            let stats = app.plugins.stats(&slug, &plugin.settings.name);
            PluginSummary { plugin, stats }
        })
        .collect();
    Ok(Json(PluginList { items }))
}

/// Creates a plugin (no version yet, so inactive).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/plugins",
    tag = "plugins",
    operation_id = "plugins_create",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = PluginInput,
    responses((status = 201, description = "Created", body = Plugin), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn create(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<PluginInput>,
) -> Result<(StatusCode, Json<Plugin>)> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    Ok((StatusCode::CREATED, Json(create_plugin(&app, &slug, input).await?)))
}

/// Reads a plugin with its versions, call stats and sample inputs.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}",
    tag = "plugins",
    operation_id = "plugins_read",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name")
    ),
    responses((status = 200, description = "The plugin", body = PluginDetail), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Json<PluginDetail>> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    Ok(Json(detail(&app, &slug, &name).await?))
}

/// Reads a plugin with its versions (the same answer as reading the plugin).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}/versions",
    tag = "plugins",
    operation_id = "plugins_read_versions",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name")
    ),
    responses(
        (status = 200, description = "The plugin, its versions under `versions`", body = PluginDetail),
        ApiErrors
    ),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_versions(
    state: State<AppState>,
    actor: Actor,
    path: Path<(String, String)>,
) -> Result<Json<PluginDetail>> {
    read(state, actor, path).await
}

/// Changes a plugin's settings (not its name or world).
#[utoipa::path(
    patch,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}",
    tag = "plugins",
    operation_id = "plugins_update",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name")
    ),
    request_body = PluginInput,
    responses((status = 200, description = "The plugin as updated", body = Plugin), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn update(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
    ApiJson(input): ApiJson<PluginInput>,
) -> Result<Json<Plugin>> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    Ok(Json(update_plugin(&app, &slug, &name, input).await?))
}

/// Deletes a plugin with all its versions.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}",
    tag = "plugins",
    operation_id = "plugins_remove",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name")
    ),
    responses((status = 204, description = "Deleted"), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn remove(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    delete_plugin(&app, &slug, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a request body up to `limit` bytes without buffering more: a larger body is 413.
pub async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(_) => Err(Error::PayloadTooLarge(limit)),
    }
}

/// Uploads a component as the plugin's next version: validated against the plugin's world and compiled, not
/// active yet.
///
/// The body is the component's bytes (`Content-Type: application/wasm` or `application/octet-stream`), up to
/// `GATEHOUSE_PLUGIN_MAX_BYTES`.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}/versions",
    tag = "plugins",
    operation_id = "plugins_upload",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name")
    ),
    request_body(
        description = "A WebAssembly component",
        content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))
    ),
    responses((status = 201, description = "The new version", body = Version), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn upload(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Version>)> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    find(&app, &slug, &name).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.is_empty()
        && !content_type.starts_with("application/wasm")
        && !content_type.starts_with("application/octet-stream")
    {
        return Err(Error::BadRequest("send the component as the body with Content-Type: application/wasm".into()));
    }
    let bytes = read_limited(body, app.plugins.max_bytes).await?;
    Ok((StatusCode::CREATED, Json(upload_version(&app, &slug, &name, bytes).await?)))
}

/// Makes a version the active one (also the rollback to an older version).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}/versions/{version}/activate",
    tag = "plugins",
    operation_id = "plugins_activate",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = u32, Path, description = "The version to run")
    ),
    responses((status = 200, description = "The plugin, with this version active", body = Plugin), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn activate(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name, version)): Path<(String, String, u32)>,
) -> Result<Json<Plugin>> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    Ok(Json(set_active(&app, &slug, &name, Some(version)).await?))
}

/// Deactivates a plugin: hooks stop calling it; its versions are kept.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}/deactivate",
    tag = "plugins",
    operation_id = "plugins_deactivate",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name")
    ),
    responses((status = 200, description = "The plugin, inactive", body = Plugin), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn deactivate(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name)): Path<(String, String)>,
) -> Result<Json<Plugin>> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    Ok(Json(set_active(&app, &slug, &name, None).await?))
}

/// Runs one function of a version against an input; nothing is recorded (no stats, metrics or audit).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/plugins/{name}/versions/{version}/dry-run",
    tag = "plugins",
    operation_id = "plugins_dry_run",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("name" = String, Path, description = "The plugin's name"),
        ("version" = u32, Path, description = "The version to run")
    ),
    request_body = DryRunRequest,
    responses(
        (status = 200, description = "How the call went (a failed call is still 200)", body = DryRunReport),
        ApiErrors
    ),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn dry_run_route(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, name, version)): Path<(String, String, u32)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<DryRunReport>> {
    let slug = tenant_slug(&app, &actor, &slug).await?;
    Ok(Json(dry_run_report(&app, &slug, &name, version, body).await?))
}
