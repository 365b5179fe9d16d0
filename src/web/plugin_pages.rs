//! Admin UI pages of a tenant's WebAssembly plugins: the list with a create form, and one page per plugin with its
//! settings, versions (upload, activate, roll back, deactivate), a dry-run form prefilled with a sample input, call
//! counts and recent failures. They call the same services as `plugins::api`.

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::ui::FieldErrors;
use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::app::AppState;
use crate::control::tables::Tenant;
use crate::error::Error;
use crate::http::page::{PageError, PageResult, render};
use crate::plugins::api::{self as plugin_api, PluginInput};
use crate::plugins::records::FailurePolicy;
use crate::plugins::runtime::{Function, MAX_MEMORY_MB};
use crate::plugins::{Failure, MAX_TIMEOUT_MS, Stats, io};

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/plugins";
    Router::new()
        .route(base, get(list_page).post(create))
        .route(&format!("{base}/{{name}}"), get(plugin_page).post(save))
        // The upload reads its own limit (GATEHOUSE_PLUGIN_MAX_BYTES) while streaming the file.
        .route(&format!("{base}/{{name}}/upload"), post(upload).layer(DefaultBodyLimit::disable()))
        .route(&format!("{base}/{{name}}/versions/{{version}}/activate"), post(activate))
        .route(&format!("{base}/{{name}}/deactivate"), post(deactivate))
        .route(&format!("{base}/{{name}}/dry-run"), post(dry_run))
        .route(&format!("{base}/{{name}}/delete"), post(delete))
}

fn form_error(err: Error) -> Result<String, PageError> {
    match err {
        Error::Validation(_)
        | Error::BadRequest(_)
        | Error::Conflict(_)
        | Error::PayloadTooLarge(_)
        | Error::PluginInvalid(_)
        | Error::PluginWrongWorld(_)
        | Error::PluginForbiddenImport(_)
        | Error::NotFound(_) => Ok(err.to_string()),
        other => Err(PageError(other)),
    }
}

#[derive(Deserialize, Default)]
struct DoneQuery {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "created" => "Plugin created. Upload a component to give it a first version.",
        "saved" => "Settings saved.",
        "uploaded" => "Version uploaded and compiled. Activate it to run it.",
        "activated" => "Version activated.",
        "deactivated" => "Plugin deactivated: its hooks no longer run.",
        "deleted" => "Plugin deleted.",
        "unconfirmed" => "Nothing was changed: confirm the activation in the box that opens under its button.",
        _ => return None,
    };
    Some(text.to_owned())
}

struct Row {
    name: String,
    world: &'static str,
    active: String,
    policy: &'static str,
    calls: u64,
    failures: u64,
}

#[derive(Template)]
#[template(path = "admin/plugins.html")]
struct ListPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    rows: Vec<Row>,
    name: String,
    world: String,
}

fn failures(s: &Stats) -> u64 {
    s.trap + s.timeout + s.invalid_output + s.error
}

async fn render_list(app: &AppState, tenant: &Tenant, chrome: Chrome, name: String, world: String) -> PageResult {
    let slug = tenant.slug.clone();
    let list = app.control.read(move |conn| crate::plugins::records::list(conn, &slug)).await?;
    let code = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let rows = list
        .iter()
        .map(|p| {
            let stats = app.plugins.stats(&tenant.slug, &p.settings.name);
            Row {
                name: p.settings.name.clone(),
                world: p.settings.world.as_str(),
                active: p.active_version.map_or("inactive".into(), |v| format!("v{v}")),
                policy: p.settings.failure_policy.as_str(),
                calls: stats.calls,
                failures: failures(&stats),
            }
        })
        .collect();
    let page = ListPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "plugins",
        rows,
        name,
        world,
    };
    Ok((code, render(page)?).into_response())
}

async fn list_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    render_list(&app, &tenant, chrome, String::new(), "login".into()).await
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    world: String,
}

async fn create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let input =
        PluginInput { name: Some(form.name.trim().to_owned()), world: Some(form.world.clone()), ..Default::default() };
    match plugin_api::create_plugin(&app, &tenant.slug, input).await {
        Ok(p) => {
            Ok(Redirect::to(&format!("/admin/tenants/{slug}/plugins/{}?done=created", p.settings.name)).into_response())
        }
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_list(&app, &tenant, chrome, form.name, form.world).await
        }
    }
}

struct VersionRow {
    version: u32,
    sha256: String,
    size: String,
    created: String,
    active: bool,
}

struct DryRunView {
    outcome: String,
    error: String,
    output: String,
    logs: Vec<(String, String)>,
    duration_us: u64,
    memory_peak_kib: u64,
}

#[derive(Template)]
#[template(path = "admin/plugin.html")]
struct PluginPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    name: String,
    world: &'static str,
    /// The settings form: the saved values, or what was typed when saving failed (with `errors`).
    settings: SettingsForm,
    errors: FieldErrors,
    active_version: Option<u32>,
    versions: Vec<VersionRow>,
    functions: Vec<&'static str>,
    dry_function: String,
    dry_version: u32,
    dry_input: String,
    dry: Option<DryRunView>,
    stats: Stats,
    average_us: u64,
    failures: Vec<Failure>,
    max_mib: usize,
}

impl PluginPage {
    fn failure_count(&self) -> u64 {
        failures(&self.stats)
    }

    /// The settings form's number fields: (id, label, value).
    fn numeric_fields(&self) -> [(&'static str, &'static str, &str); 3] {
        [
            ("timeout_ms", "Deadline per call (ms, 1–1000)", &self.settings.timeout_ms),
            ("memory_mb", "Memory cap (MiB, 1–256)", &self.settings.memory_mb),
            ("priority", "Priority (lower runs first)", &self.settings.priority),
        ]
    }
}

/// What a posted dry-run asked for and got, to show on the page.
struct DryRun {
    function: String,
    version: u32,
    input: String,
    result: Option<DryRunView>,
}

async fn render_plugin(app: &AppState, tenant: &Tenant, name: &str, chrome: Chrome, dry: Option<DryRun>) -> PageResult {
    render_plugin_with(app, tenant, name, chrome, dry, None).await
}

/// The plugin page; `typed` is a settings form that failed, shown again as typed with its errors.
async fn render_plugin_with(
    app: &AppState,
    tenant: &Tenant,
    name: &str,
    chrome: Chrome,
    dry: Option<DryRun>,
    typed: Option<(SettingsForm, FieldErrors)>,
) -> PageResult {
    let plugin = plugin_api::find(app, &tenant.slug, name).await?;
    let versions = plugin_api::versions(app, &tenant.slug, name).await?;
    let stats = app.plugins.stats(&tenant.slug, name);
    let world = plugin.settings.world;
    let functions: Vec<&'static str> = world.functions().iter().map(|f| f.as_str()).collect();
    let latest = plugin.active_version.or_else(|| versions.first().map(|v| v.version)).unwrap_or(1);
    let dry = dry.unwrap_or_else(|| {
        let first = world.functions()[0];
        DryRun {
            function: first.as_str().to_owned(),
            version: latest,
            input: serde_json::to_string_pretty(&io::sample(first)).unwrap_or_default(),
            result: None,
        }
    });
    let code = if chrome.error.is_some() || typed.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let (settings, errors) = typed.unwrap_or_else(|| {
        let saved = &plugin.settings;
        let form = SettingsForm {
            failure_policy: if saved.failure_policy == FailurePolicy::FailOpen { "fail_open" } else { "fail_closed" }
                .to_owned(),
            timeout_ms: saved.timeout_ms.to_string(),
            memory_mb: saved.memory_mb.to_string(),
            priority: saved.priority.to_string(),
            config: serde_json::to_string_pretty(&saved.config).unwrap_or_default(),
        };
        (form, FieldErrors::new())
    });
    let page = PluginPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "plugins",
        name: name.to_owned(),
        world: world.as_str(),
        settings,
        errors,
        active_version: plugin.active_version,
        versions: versions
            .iter()
            .map(|v| VersionRow {
                version: v.version,
                sha256: v.sha256[..16].to_owned(),
                size: format!("{:.1} KiB", v.size as f64 / 1024.0),
                created: crate::display_time(v.created_at),
                active: plugin.active_version == Some(v.version),
            })
            .collect(),
        functions,
        dry_function: dry.function,
        dry_version: dry.version,
        dry_input: dry.input,
        dry: dry.result,
        average_us: stats.total_duration_us.checked_div(stats.calls).unwrap_or(0),
        failures: stats.recent_failures.iter().cloned().collect(),
        stats,
        max_mib: app.plugins.max_bytes >> 20,
    };
    Ok((code, render(page)?).into_response())
}

async fn plugin_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let chrome = session.chrome_with("tenants", notice(q.done.as_deref()));
    render_plugin(&app, &tenant, &name, chrome, None).await
}

#[derive(Deserialize, Clone)]
struct SettingsForm {
    failure_policy: String,
    timeout_ms: String,
    memory_mb: String,
    priority: String,
    config: String,
}

async fn save(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let mut errors = FieldErrors::new();
    let input = settings_input(&form, &mut errors);
    if let Some(input) = input.filter(|_| errors.is_empty()) {
        match plugin_api::update_plugin(&app, &tenant.slug, &name, input).await {
            Ok(_) => {
                let to = format!("/admin/tenants/{}/plugins/{name}?done=saved", tenant.slug);
                return Ok(Redirect::to(&to).into_response());
            }
            Err(err) => errors.absorb(
                err,
                &[("timeout", "timeout_ms"), ("memory", "memory_mb"), ("priority", "priority"), ("config", "config")],
            )?,
        }
    }
    render_plugin_with(&app, &tenant, &name, session.chrome("tenants"), None, Some((form, errors))).await
}

/// The settings as the API takes them, each field checked on its own so that every error shows at once.
fn settings_input(form: &SettingsForm, errors: &mut FieldErrors) -> Option<PluginInput> {
    let mut number =
        |field: &str, what: &str, text: &str, range: std::ops::RangeInclusive<i64>| match text.trim().parse::<i64>() {
            Ok(n) if range.contains(&n) => Some(n),
            Ok(_) => {
                errors.add(field, format!("{what} must be {} to {}", range.start(), range.end()));
                None
            }
            Err(_) => {
                errors.add(field, format!("{what} must be a whole number"));
                None
            }
        };
    let timeout = number("timeout_ms", "the deadline", &form.timeout_ms, 1..=i64::from(MAX_TIMEOUT_MS));
    let memory = number("memory_mb", "the memory cap", &form.memory_mb, 1..=i64::from(MAX_MEMORY_MB));
    let priority = number("priority", "the priority", &form.priority, i64::from(i32::MIN)..=i64::from(i32::MAX));
    let text = if form.config.trim().is_empty() { "{}" } else { form.config.as_str() };
    let config = match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Some(v),
        Ok(_) => {
            errors.add("config", "the config must be a JSON object, like {\"key\": \"value\"}");
            None
        }
        Err(e) => {
            errors.add("config", format!("the config is not JSON: {e}"));
            None
        }
    };
    let policy = if form.failure_policy == "fail_open" { FailurePolicy::FailOpen } else { FailurePolicy::FailClosed };
    Some(PluginInput {
        failure_policy: Some(policy),
        timeout_ms: Some(u32::try_from(timeout?).ok()?),
        memory_mb: Some(u32::try_from(memory?).ok()?),
        priority: Some(i32::try_from(priority?).ok()?),
        config: Some(config?),
        ..Default::default()
    })
}

async fn upload(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name)): Path<(String, String)>,
    mut multipart: Multipart,
) -> PageResult {
    let limit = app.plugins.max_bytes;
    let mut csrf = String::new();
    let mut bytes: Option<Vec<u8>> = None;
    let bad = |e: axum::extract::multipart::MultipartError| PageError(Error::BadRequest(format!("upload: {e}")));
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("csrf_token") => csrf = field.text().await.map_err(bad)?,
            Some("component") => {
                let mut buf = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if buf.len() + chunk.len() > limit {
                        return Err(PageError(Error::PayloadTooLarge(limit)));
                    }
                    buf.extend_from_slice(&chunk);
                }
                bytes = Some(buf);
            }
            _ => {}
        }
    }
    session.check_csrf(&csrf)?;
    let tenant = session.tenant(&app, &slug).await?;
    let result = match bytes.filter(|b| !b.is_empty()) {
        Some(bytes) => plugin_api::upload_version(&app, &tenant.slug, &name, bytes).await.map(|_| ()),
        None => Err(Error::validation("choose a .wasm component to upload")),
    };
    after_change(&app, &session, &tenant, &name, result, "uploaded").await
}

/// After a change from a plugin's page: back to the page with a notice, or the page again with the error.
async fn after_change(
    app: &AppState,
    session: &UiSession,
    tenant: &Tenant,
    name: &str,
    result: Result<(), Error>,
    done: &str,
) -> PageResult {
    match result {
        Ok(()) => {
            Ok(Redirect::to(&format!("/admin/tenants/{}/plugins/{name}?done={done}", tenant.slug)).into_response())
        }
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(form_error(err)?);
            render_plugin(app, tenant, name, chrome, None).await
        }
    }
}

#[derive(Deserialize)]
struct ConfirmForm {
    /// `yes` from the opened confirmation; without it nothing changes.
    #[serde(default)]
    confirm: String,
}

async fn activate(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name, version)): Path<(String, String, u32)>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    if form.confirm != "yes" {
        return Ok(Redirect::to(&format!("/admin/tenants/{slug}/plugins/{name}?done=unconfirmed")).into_response());
    }
    plugin_api::set_active(&app, &tenant.slug, &name, Some(version)).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/plugins/{name}?done=activated")).into_response())
}

async fn deactivate(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    plugin_api::set_active(&app, &tenant.slug, &name, None).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/plugins/{name}?done=deactivated")).into_response())
}

async fn delete(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    plugin_api::delete_plugin(&app, &tenant.slug, &name).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/plugins?done=deleted")).into_response())
}

#[derive(Deserialize)]
struct DryRunForm {
    function: String,
    version: u32,
    input: String,
}

async fn dry_run(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, name)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<DryRunForm>,
) -> PageResult {
    let tenant = session.tenant(&app, &slug).await?;
    let mut chrome = session.chrome("tenants");
    // A function picked without an input gets its sample.
    let input = if form.input.trim().is_empty() {
        Function::parse(&form.function).map(io::sample).unwrap_or(Value::Null)
    } else {
        match serde_json::from_str::<Value>(&form.input) {
            Ok(v) => v,
            Err(e) => {
                chrome.error = Some(format!("the input is not JSON: {e}"));
                Value::Null
            }
        }
    };
    let mut result = None;
    if chrome.error.is_none() {
        let body = serde_json::json!({ "function": form.function, "input": input });
        match plugin_api::dry_run(&app, &tenant.slug, &name, form.version, body).await {
            Ok(report) => {
                result = Some(DryRunView {
                    outcome: report["outcome"].as_str().unwrap_or("").to_owned(),
                    error: report["error"].as_str().unwrap_or("").to_owned(),
                    output: if report["output"].is_null() {
                        String::new()
                    } else {
                        serde_json::to_string_pretty(&report["output"]).unwrap_or_default()
                    },
                    logs: report["logs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            (
                                l["level"].as_str().unwrap_or("").to_owned(),
                                l["message"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect(),
                    duration_us: report["duration_us"].as_u64().unwrap_or(0),
                    memory_peak_kib: report["memory_peak_bytes"].as_u64().unwrap_or(0) / 1024,
                })
            }
            Err(err) => chrome.error = Some(form_error(err)?),
        }
    }
    let dry = DryRun { function: form.function, version: form.version, input: form.input, result };
    render_plugin(&app, &tenant, &name, chrome, Some(dry)).await
}
