//! Tenant WebAssembly plugins: the service every hook calls (`Plugins`), the hooks themselves (login,
//! registration, email), upload and validation, and call statistics.
//!
//! - `runtime.rs`: the wasmtime engine, bindings of the three worlds in contract 0.1.0 and 0.2.0
//!   (`plugins/wit/<version>/gatehouse.wit`; a component's imports say which it was built for), one sandboxed call.
//! - `artifacts.rs`: compiled components cached on disk, keyed by content hash and engine fingerprint.
//! - `records.rs`: plugin and version rows in control.db (changed only through `Mutation`s).
//! - `io.rs`: JSON for dry-runs (input mirroring the WIT records, output, sample inputs).
//! - `api.rs`: the admin API.
//!
//! Data flow of a hook: the flow (e.g. `identity::flows::login`) → `Plugins::login_hook` → the tenant's active
//! plugins of the world, in priority order (cached, invalidated by control-plane mutations) → for each: the
//! loaded component (moka, by content hash; else the disk artifact; else compile) → a permit of the tenant's
//! share, then a slot of the bounded call pool → `Runtime::call` on the blocking pool → outcome → stats, metrics,
//! log lines, audit on failure → the failure policy decides what a failure means.
//!
//! Invariants:
//! - A tenant's plugins are looked up by the tenant's slug only: another tenant's plugin cannot run for it, and
//!   every admin route checks the actor's access to the tenant in the path.
//! - Compilation never happens on a call's request path unless the artifact is missing from disk; uploads compile
//!   one at a time.
//! - Fairness between tenants: a tenant holds at most `tenant_share(slots)` call slots (half, at least one) and
//!   compiles one component at a time, waiting for its own turn before it queues for the global compile lock. So a
//!   busy tenant leaves slots to the others, and a compile waits for at most one compile of each other tenant.
//! - The engine is created on first use: a server with no plugins pays nothing.

pub mod api;
pub mod artifacts;
pub mod io;
pub mod records;
pub mod runtime;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::control::Mutation;
use crate::db;
use crate::error::{Error, Result};
use crate::identity::audit::{self, Origin};
use crate::tenants::TenantSlug;
use artifacts::{Artifacts, Source};
use records::{Active, FailurePolicy};
use runtime::{Function, Input, Limits, Loaded, Mismatch, Outcome, Output, Report, Runtime};

/// A hook family; one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PluginWorld)]
pub enum World {
    Login,
    Email,
    Pricing,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Login => "login",
            World::Email => "email",
            World::Pricing => "pricing",
        }
    }

    pub fn parse(s: &str) -> Option<World> {
        match s {
            "login" => Some(World::Login),
            "email" => Some(World::Email),
            "pricing" => Some(World::Pricing),
            _ => None,
        }
    }

    pub fn functions(self) -> &'static [Function] {
        match self {
            World::Login => &[Function::PreRegistration, Function::PostLogin],
            World::Email => &[Function::Render],
            World::Pricing => &[Function::Price],
        }
    }

    /// The only imports a component of this world may have in a contract version: the host interface and the
    /// world's type interface.
    pub fn allowed_imports(self, contract: runtime::Contract) -> [&'static str; 2] {
        use runtime::Contract::{V1, V2};
        match (self, contract) {
            (World::Login, V1) => ["gatehouse:plugin/host@0.1.0", "gatehouse:plugin/login-types@0.1.0"],
            (World::Email, V1) => ["gatehouse:plugin/host@0.1.0", "gatehouse:plugin/email-types@0.1.0"],
            (World::Pricing, V1) => ["gatehouse:plugin/host@0.1.0", "gatehouse:plugin/pricing-types@0.1.0"],
            (World::Login, V2) => ["gatehouse:plugin/host@0.2.0", "gatehouse:plugin/login-types@0.2.0"],
            (World::Email, V2) => ["gatehouse:plugin/host@0.2.0", "gatehouse:plugin/email-types@0.2.0"],
            (World::Pricing, V2) => ["gatehouse:plugin/host@0.2.0", "gatehouse:plugin/pricing-types@0.2.0"],
        }
    }
}

/// Default and largest per-call deadline, and the default memory cap.
pub const DEFAULT_TIMEOUT_MS: u32 = 50;
pub const MAX_TIMEOUT_MS: u32 = 1000;
pub const DEFAULT_MEMORY_MB: u32 = 32;
/// Failures kept per plugin for the API and UI.
const RECENT_FAILURES: usize = 20;
/// How long an unused tenant's gates are kept. Far longer than any call or compile holds them: a gate replaced
/// while still held would let its tenant briefly run past its share.
const GATES_IDLE: Duration = Duration::from_secs(600);

/// One failed call, as the plugin page lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PluginFailure)]
pub struct Failure {
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    pub version: u32,
    /// `Function::as_str`.
    #[schema(value_type = Function)]
    pub function: &'static str,
    /// `Outcome::as_str`: never `ok`.
    #[schema(value_type = Outcome)]
    pub outcome: &'static str,
    pub error: String,
}

/// Calls of one plugin since this process started.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[schema(as = PluginStats)]
pub struct Stats {
    pub calls: u64,
    pub ok: u64,
    pub trap: u64,
    pub timeout: u64,
    pub invalid_output: u64,
    pub error: u64,
    pub total_duration_us: u64,
    /// The last failures, newest first.
    #[schema(value_type = Vec<Failure>)]
    pub recent_failures: std::collections::VecDeque<Failure>,
}

struct Engine {
    runtime: Runtime,
    artifacts: Artifacts,
    /// Uploads and missing artifacts compile one at a time (a JS component takes seconds and ~350 MB); each
    /// tenant first waits for its own turn (`Gates::compile`). A tokio mutex because it is FIFO (a std one lets a
    /// tenant barge ahead again and again); taken with `blocking_lock` on the blocking pool.
    compile: tokio::sync::Mutex<()>,
    loaded: moka::sync::Cache<(String, World), Arc<Loaded>>,
}

/// The plugin service in `App`.
pub struct Plugins {
    data_dir: PathBuf,
    slots: u32,
    /// Largest accepted component (`GATEHOUSE_PLUGIN_MAX_BYTES`).
    pub max_bytes: usize,
    engine: OnceLock<std::result::Result<Arc<Engine>, String>>,
    active: moka::sync::Cache<TenantSlug, Arc<Vec<Active>>>,
    stats: Mutex<HashMap<(TenantSlug, String), Stats>>,
    /// Per tenant; idle ones expire, so there are only as many as recently active tenants.
    gates: moka::sync::Cache<TenantSlug, Gates>,
}

/// One tenant's gates, taken before the shared ones so no tenant can hold all of those.
#[derive(Clone)]
struct Gates {
    /// `tenant_share(slots)` permits, acquired before a slot of `Runtime::slots` and held for the call.
    calls: Arc<Semaphore>,
    /// The tenant's compile turn, taken before `Engine::compile`: a tenant spamming uploads queues behind itself.
    /// A tokio mutex (a semaphore of one) because uploads wait for it in async code and artifact loads on the
    /// blocking pool (`blocking_lock`).
    compile: Arc<tokio::sync::Mutex<()>>,
}

/// The call slots one tenant may hold at once: half of them (rounded down), at least one.
fn tenant_share(slots: u32) -> u32 {
    (slots / 2).max(1)
}

/// What the login-family hooks decided, when nobody said no.
#[derive(Debug, Default, Clone)]
pub struct Effects {
    /// Claims for ID and access tokens (registered claims are protected where tokens are made).
    pub claims: Map<String, Value>,
    pub require_mfa: bool,
    /// Custom fields to set (pre-registration).
    pub fields: Map<String, Value>,
}

/// What the email hook decided.
pub enum Mail {
    /// Send this subject, HTML and text (changed by plugins or not).
    Send { subject: String, html: String, text: String },
    /// A fail-closed plugin failed: leave the mail queued and try again later.
    Retry(String),
}

impl Plugins {
    pub fn new(data_dir: PathBuf, max_bytes: usize, slots: u32) -> Plugins {
        Plugins {
            data_dir,
            slots,
            max_bytes,
            engine: OnceLock::new(),
            active: moka::sync::Cache::builder().max_capacity(10_000).build(),
            stats: Mutex::new(HashMap::new()),
            // No size bound: evicting gates in use would hand their tenant a second share.
            gates: moka::sync::Cache::builder().time_to_idle(GATES_IDLE).build(),
        }
    }

    fn gates(&self, slug: &TenantSlug) -> Gates {
        self.gates.get_with(slug.clone(), || Gates {
            calls: Arc::new(Semaphore::new(tenant_share(self.slots) as usize)),
            compile: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn engine(&self) -> Result<Arc<Engine>> {
        self.engine
            .get_or_init(|| {
                let runtime = Runtime::new(self.slots).map_err(|e| format!("cannot start the plugin engine: {e:#}"))?;
                let artifacts = Artifacts::new(&self.data_dir, runtime.engine())
                    .map_err(|e| format!("cannot create the plugin cache directory: {e}"))?;
                tracing::info!(fingerprint = artifacts.fingerprint(), slots = self.slots, "plugin engine started");
                Ok(Arc::new(Engine {
                    runtime,
                    artifacts,
                    compile: tokio::sync::Mutex::new(()),
                    loaded: moka::sync::Cache::builder().max_capacity(64).build(),
                }))
            })
            .clone()
            .map_err(Error::Internal)
    }

    /// Drops cached plugin lists a control-plane change makes stale (called for every applied mutation).
    pub fn invalidate(&self, mutation: &Mutation) {
        match mutation {
            Mutation::PutPlugin { slug, .. }
            | Mutation::SetPluginActive { slug, .. }
            | Mutation::DeletePlugin { slug, .. }
            | Mutation::ArchiveTenant { slug, .. } => self.active.invalidate(slug),
            _ => {}
        }
    }

    /// Drops every cached plugin list (a snapshot replaced control.db as a whole).
    pub fn invalidate_all(&self) {
        self.active.invalidate_all();
    }

    /// The tenant's active plugins, in running order (cached).
    async fn active(&self, app: &App, slug: &TenantSlug) -> Result<Arc<Vec<Active>>> {
        if let Some(list) = self.active.get(slug) {
            return Ok(list);
        }
        let key = slug.clone();
        let list = Arc::new(app.control.read(move |conn| records::active(conn, &key)).await?);
        self.active.insert(slug.clone(), list.clone());
        Ok(list)
    }

    pub async fn has_active(&self, app: &App, slug: &TenantSlug, world: World) -> Result<bool> {
        Ok(self.active(app, slug).await?.iter().any(|p| p.settings.world == world))
    }

    pub fn stats(&self, slug: &TenantSlug, name: &str) -> Stats {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.get(&(slug.clone(), name.to_owned())).cloned().unwrap_or_default()
    }

    pub fn forget(&self, slug: &TenantSlug, name: &str) {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).remove(&(slug.clone(), name.to_owned()));
    }

    // ---- upload ----

    /// Validates and compiles a component `slug` uploaded for `world`; answers its SHA-256 and the contract version
    /// it was built against. The artifact is on
    /// disk and the loaded component cached when this returns.
    pub async fn validate(
        &self,
        slug: &TenantSlug,
        world: World,
        bytes: Arc<Vec<u8>>,
    ) -> Result<(String, runtime::Contract)> {
        check_header(&bytes)?;
        let sha256 = artifacts::hex(&Sha256::digest(&*bytes));
        let engine = self.engine()?;
        let sha = sha256.clone();
        // Waited for here rather than on the blocking pool, so queued uploads do not each park a thread.
        let own_turn = self.gates(slug).compile.lock_owned().await;
        let contract = tokio::task::spawn_blocking(move || -> Result<runtime::Contract> {
            let _own_turn = own_turn;
            let _turn = engine.compile.blocking_lock();
            let component = engine
                .artifacts
                .compile(engine.runtime.engine(), &sha, &bytes)
                .map_err(|e| Error::PluginInvalid(format!("not a valid component: {}", short(&e))))?;
            let loaded = engine.runtime.prepare(component, world).map_err(|m| match m {
                Mismatch::ForbiddenImport(what) => Error::PluginForbiddenImport(format!(
                    "the component imports {what}; a {} plugin may import only {} (contract 0.1.0) or {} (0.2.0)",
                    world.as_str(),
                    world.allowed_imports(runtime::Contract::V1).join(" and "),
                    world.allowed_imports(runtime::Contract::V2).join(" and ")
                )),
                Mismatch::WrongWorld(what) => Error::PluginWrongWorld(format!(
                    "the component does not implement the {} world: {what}",
                    world.as_str()
                )),
            })?;
            let contract = loaded.contract;
            engine.loaded.insert((sha, world), Arc::new(loaded));
            Ok(contract)
        })
        .await??;
        Ok((sha256, contract))
    }

    /// The loaded component of a version: from memory, else from the disk artifact, else compiled from the bytes
    /// in control.db.
    async fn load(
        &self,
        app: &App,
        slug: &TenantSlug,
        name: &str,
        version: u32,
        sha256: &str,
        world: World,
    ) -> Result<Arc<Loaded>> {
        let engine = self.engine()?;
        if let Some(loaded) = engine.loaded.get(&(sha256.to_owned(), world)) {
            return Ok(loaded);
        }
        let control = app.control.clone();
        let own_compile = self.gates(slug).compile;
        let (slug2, name2, sha) = (slug.clone(), name.to_owned(), sha256.to_owned());
        let (loaded, source) = tokio::task::spawn_blocking(move || -> Result<(Arc<Loaded>, Source)> {
            let mut source = Source::Cache;
            let loaded = engine.loaded.try_get_with((sha.clone(), world), || -> Result<Arc<Loaded>> {
                let component = match engine.artifacts.load(engine.runtime.engine(), &sha) {
                    Some(component) => component,
                    None => {
                        source = Source::Compiled;
                        let bytes = control
                            .read_blocking(|conn| records::component(conn, &slug2, &name2, version))?
                            .ok_or(Error::NotFound("plugin version"))?;
                        // Taken only here, so a disk or memory load never waits for the tenant's uploads.
                        let _own_turn = own_compile.blocking_lock();
                        let _turn = engine.compile.blocking_lock();
                        engine.artifacts.compile(engine.runtime.engine(), &sha, &bytes).map_err(|e| {
                            Error::Internal(format!("compiling plugin {name2} v{version}: {}", short(&e)))
                        })?
                    }
                };
                let loaded = engine.runtime.prepare(component, world).map_err(|m| {
                    Error::Internal(format!("plugin {name2} v{version} no longer fits its world: {m:?}"))
                })?;
                Ok(Arc::new(loaded))
            });
            loaded.map(|l| (l, source)).map_err(|e| Arc::try_unwrap(e).unwrap_or_else(Error::internal))
        })
        .await??;
        let label = source.as_str();
        app.metrics
            .record(|| metrics::counter!("gatehouse_plugin_artifact_loads_total", "source" => label).increment(1));
        tracing::info!(tenant = %slug, plugin = name, version, source = label, "plugin loaded");
        Ok(loaded)
    }

    // ---- calls ----

    /// Runs one call of a version and records it (stats, metrics, log lines).
    pub async fn call(
        &self,
        app: &App,
        slug: &TenantSlug,
        settings: &records::PluginSettings,
        version: u32,
        sha256: &str,
        input: Input,
    ) -> Report {
        self.call_checked(app, slug, settings, version, sha256, input, |_| Ok(())).await
    }

    /// `call`, with the caller's check of the output before it is recorded: output the check refuses is the
    /// call's `invalid_output` (with the check's reason) in the stats, the metrics and the report.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_checked(
        &self,
        app: &App,
        slug: &TenantSlug,
        settings: &records::PluginSettings,
        version: u32,
        sha256: &str,
        input: Input,
        check: impl FnOnce(&Output) -> std::result::Result<(), String>,
    ) -> Report {
        let function = input.function();
        let mut report = self.call_unobserved(app, slug, settings, version, sha256, input).await;
        if let Some(output) = report.output.as_ref().filter(|_| report.outcome == Outcome::Ok)
            && let Err(why) = check(output)
        {
            report.outcome = Outcome::InvalidOutput;
            report.error = Some(why);
        }
        self.observe(app, slug, settings, version, function, &report);
        report
    }

    /// The tenant's active plugins of `world`, in the order they run.
    pub async fn active_of(&self, app: &App, slug: &TenantSlug, world: World) -> Result<Vec<Active>> {
        Ok(self.active(app, slug).await?.iter().filter(|p| p.settings.world == world).cloned().collect())
    }

    /// Runs one call of a version on a pool slot, within the tenant's share (a dry-run records nothing). Never
    /// fails: a problem is the report's outcome.
    pub async fn call_unobserved(
        &self,
        app: &App,
        slug: &TenantSlug,
        settings: &records::PluginSettings,
        version: u32,
        sha256: &str,
        input: Input,
    ) -> Report {
        let failed = |error: String| Report {
            outcome: Outcome::Error,
            output: None,
            error: Some(error),
            logs: vec![],
            duration: Duration::ZERO,
            memory_peak_bytes: 0,
        };
        let loaded = match self.load(app, slug, &settings.name, version, sha256, settings.world).await {
            Ok(loaded) => loaded,
            Err(err) => return failed(format!("the plugin could not be loaded: {err}")),
        };
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(err) => return failed(err.to_string()),
        };
        // The tenant's permit first: a tenant past its share waits without holding a slot others could use.
        let share = match self.gates(slug).calls.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return failed("the plugin pool is closed".into()),
        };
        let permit = match engine.runtime.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => return failed("the plugin pool is closed".into()),
        };
        let limits = Limits { timeout_ms: settings.timeout_ms, memory_mb: settings.memory_mb };
        let config = if settings.config.is_object() { settings.config.to_string() } else { "{}".to_owned() };
        tokio::task::spawn_blocking(move || {
            let _slot = (share, permit);
            engine.runtime.call(&loaded, input, limits, config)
        })
        .await
        .unwrap_or_else(|e| failed(format!("the call panicked: {e}")))
    }

    /// Stats, metrics and log lines of a real (not dry-run) call.
    fn observe(
        &self,
        app: &App,
        slug: &TenantSlug,
        settings: &records::PluginSettings,
        version: u32,
        function: Function,
        report: &Report,
    ) {
        let (world, f, outcome) = (settings.world.as_str(), function.as_str(), report.outcome.as_str());
        let seconds = report.duration.as_secs_f64();
        app.metrics.record(|| {
            metrics::counter!("gatehouse_plugin_calls_total", "world" => world, "function" => f, "outcome" => outcome)
                .increment(1);
            metrics::histogram!("gatehouse_plugin_call_duration_seconds", "world" => world, "function" => f)
                .record(seconds);
        });
        app.metrics.pulse.plugin_call(report.outcome == Outcome::Ok);
        for line in &report.logs {
            tracing::info!(tenant = %slug, plugin = %settings.name, version, function = f, level = line.level, message = %line.message, "plugin log");
        }
        if let Some(error) = &report.error {
            tracing::warn!(tenant = %slug, plugin = %settings.name, version, function = f, outcome, error = %error, "plugin call failed");
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let s = stats.entry((slug.clone(), settings.name.clone())).or_default();
        s.calls += 1;
        s.total_duration_us += report.duration.as_micros() as u64;
        match report.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Trap => s.trap += 1,
            Outcome::Timeout => s.timeout += 1,
            Outcome::InvalidOutput => s.invalid_output += 1,
            Outcome::Error => s.error += 1,
        }
        if report.outcome != Outcome::Ok {
            if s.recent_failures.len() >= RECENT_FAILURES {
                s.recent_failures.pop_back();
            }
            s.recent_failures.push_front(Failure {
                at: crate::now_unix(),
                version,
                function: f,
                outcome,
                error: report.error.clone().unwrap_or_default(),
            });
        }
    }

    // ---- hooks ----

    /// Runs the tenant's active login plugins' `pre-registration` or `post-login`. `Err(PluginDenied)` when one
    /// says no (its reason) or a fail-closed one fails (a generic message); otherwise the merged changes.
    pub async fn login_hook(
        &self,
        app: &App,
        db: &db::registry::TenantDb,
        function: Function,
        user: runtime::User,
        origin: &Origin,
        client_id: Option<String>,
    ) -> Result<Effects> {
        let slug = &db.slug;
        let active = self.active(app, slug).await?;
        let mut effects = Effects::default();
        let request = runtime::Request {
            ip: origin.ip.clone().unwrap_or_default(),
            user_agent: origin.user_agent.clone().unwrap_or_default(),
            client_id,
        };
        for plugin in active.iter().filter(|p| p.settings.world == World::Login) {
            let input = match function {
                Function::PreRegistration => Input::PreRegistration(user.clone(), request.clone()),
                _ => Input::PostLogin(user.clone(), request.clone()),
            };
            let report = self.call(app, slug, &plugin.settings, plugin.version, &plugin.sha256, input).await;
            let verdict = match report.output {
                Some(Output::Decision(decision)) => io::apply_decision(decision, function, &mut effects),
                _ => Err(report.error.clone().unwrap_or_else(|| report.outcome.as_str().to_owned())),
            };
            let user_id = (!user.id.is_empty()).then_some(user.id.as_str());
            match verdict {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    let detail = json!({"plugin": plugin.settings.name, "version": plugin.version,
                                        "function": function.as_str(), "reason": reason, "email": user.email});
                    record_audit(db, "plugin_denied", user_id, origin, detail).await;
                    return Err(Error::PluginDenied(reason));
                }
                Err(error) => {
                    let outcome =
                        if report.outcome == Outcome::Ok { "invalid_output" } else { report.outcome.as_str() };
                    let detail = json!({"plugin": plugin.settings.name, "version": plugin.version,
                                        "function": function.as_str(), "outcome": outcome, "error": error,
                                        "policy": plugin.settings.failure_policy.as_str()});
                    record_audit(db, "plugin_failed", user_id, origin, detail).await;
                    if plugin.settings.failure_policy == FailurePolicy::FailClosed {
                        let what = if function == Function::PreRegistration { "Sign-up" } else { "Sign-in" };
                        return Err(Error::PluginDenied(format!(
                            "{what} is not available right now because a check failed; please try again later"
                        )));
                    }
                }
            }
        }
        Ok(effects)
    }

    /// Runs the tenant's active email plugins over a rendered mail, in order. A plugin's `err` or a fail-open
    /// failure keeps the mail as it was before that plugin; a fail-closed failure asks the outbox to retry.
    pub async fn render_email(
        &self,
        app: &App,
        slug: &TenantSlug,
        pool: &db::Pool,
        message: runtime::Message,
    ) -> Result<Mail> {
        let active = self.active(app, slug).await?;
        let mut current = message;
        for plugin in active.iter().filter(|p| p.settings.world == World::Email) {
            let report = self
                .call(app, slug, &plugin.settings, plugin.version, &plugin.sha256, Input::Render(current.clone()))
                .await;
            let failure = match report.output {
                Some(Output::Render(Ok(changed))) => {
                    current.subject = changed.subject;
                    current.html = changed.html;
                    current.text = changed.text;
                    None
                }
                Some(Output::Render(Err(reason))) => {
                    tracing::warn!(tenant = %slug, plugin = %plugin.settings.name, version = plugin.version, reason = %reason, "email plugin declined; sending the built-in rendering");
                    None
                }
                _ => Some(report.error.clone().unwrap_or_else(|| report.outcome.as_str().to_owned())),
            };
            if let Some(error) = failure {
                let detail = json!({"plugin": plugin.settings.name, "version": plugin.version, "function": "render",
                                    "outcome": report.outcome.as_str(), "error": error,
                                    "policy": plugin.settings.failure_policy.as_str()});
                let origin = Origin { actor: "system".into(), ip: None, user_agent: None, request_id: None };
                let pool = pool.clone();
                let _ =
                    db::with_conn(&pool, move |conn| audit::record(conn, "plugin_failed", None, &origin, detail)).await;
                if plugin.settings.failure_policy == FailurePolicy::FailClosed {
                    return Ok(Mail::Retry(format!(
                        "email plugin {} v{} failed ({}): {error}",
                        plugin.settings.name,
                        plugin.version,
                        report.outcome.as_str()
                    )));
                }
            }
        }
        Ok(Mail::Send { subject: current.subject, html: current.html, text: current.text })
    }
}

async fn record_audit(
    db: &db::registry::TenantDb,
    kind: &'static str,
    user: Option<&str>,
    origin: &Origin,
    detail: Value,
) {
    let (user, origin) = (user.map(str::to_owned), origin.clone());
    if let Err(err) = db.write(move |tx| audit::record(tx, kind, user.as_deref(), &origin, detail)).await {
        tracing::warn!(error = %err, "cannot write the plugin audit entry");
    }
}

/// Tells garbage and core modules from components before wasmtime sees them, for a clear error.
fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(Error::PluginInvalid("not a WebAssembly binary (the file does not start with \\0asm)".into()));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(Error::PluginInvalid(
            "this is a core WebAssembly module, not a component; build a component (e.g. `wasm-tools component new`)"
                .into(),
        )),
        [0x0d, 0, 1, 0] => Ok(()),
        _ => Err(Error::PluginInvalid("unsupported WebAssembly binary version or layer".into())),
    }
}

/// The first line of an error chain, short enough for an API message.
fn short(e: &anyhow::Error) -> String {
    let mut text = format!("{e:#}");
    if text.len() > 500 {
        let mut cut = 500;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Serialised sizes of the WIT values, for the input and output caps.
mod sizes {
    use super::runtime::{Adjustment, Cart, Decision, Field, Message, Request, User};

    fn fields(f: &[Field]) -> usize {
        f.iter().map(|f| f.key.len() + f.value.len() + 8).sum()
    }

    fn strings(s: &[String]) -> usize {
        s.iter().map(|s| s.len() + 8).sum()
    }

    pub fn user(u: &User) -> usize {
        u.id.len() + u.email.len() + 1 + strings(&u.roles) + fields(&u.fields)
    }

    pub fn request(r: &Request) -> usize {
        r.ip.len() + r.user_agent.len() + r.client_id.as_ref().map_or(0, String::len)
    }

    pub fn decision(d: &Decision) -> usize {
        match d {
            Decision::Allow => 1,
            Decision::Deny(reason) => reason.len(),
            Decision::Modify(c) => fields(&c.claims) + fields(&c.fields) + 1,
        }
    }

    pub fn message(m: &Message) -> usize {
        m.template.len()
            + m.locale.len()
            + m.to.len()
            + m.subject.len()
            + m.html.len()
            + m.text.len()
            + m.data.iter().map(|f| f.key.len() + f.value.len() + 8).sum::<usize>()
    }

    pub fn cart(c: &Cart) -> usize {
        c.currency.len()
            + c.lines.iter().map(|l| l.sku.len() + 16 + strings(&l.categories)).sum::<usize>()
            + strings(&c.discount_codes)
            + c.customer_id.as_ref().map_or(0, String::len)
            + strings(&c.customer_roles)
            + c.shipping_country.as_ref().map_or(0, String::len)
            + 8
            + c.applied.iter().map(adjustment).sum::<usize>()
    }

    pub fn adjustment(a: &Adjustment) -> usize {
        a.label.len() + 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{Changes, Decision, Field};

    #[test]
    fn headers_tell_garbage_and_core_modules_from_components() {
        assert!(
            matches!(check_header(b"hello world"), Err(Error::PluginInvalid(m)) if m.contains("not a WebAssembly"))
        );
        assert!(matches!(check_header(b"\0asm\x01\0\0\0"), Err(Error::PluginInvalid(m)) if m.contains("core")));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn a_tenant_gets_half_the_call_slots_and_at_least_one() {
        assert_eq!(tenant_share(1), 1);
        assert_eq!(tenant_share(2), 1);
        assert_eq!(tenant_share(3), 1);
        assert_eq!(tenant_share(4), 2);
        assert_eq!(tenant_share(8), 4);
    }

    #[test]
    fn names_are_slugs() {
        assert!(api::check_name("deny-free-mail").is_ok());
        assert!(api::check_name("a_b1").is_ok());
        for bad in ["", "-x", "Upper", "a b", "../etc", &"x".repeat(64)] {
            assert!(api::check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decisions_fold_into_effects_and_bad_json_is_invalid_output() {
        let mut effects = Effects::default();
        let field = |k: &str, v: &str| Field { key: k.into(), value: v.into() };
        let modify = Decision::Modify(Changes {
            claims: vec![
                field("plan", "\"pro\""),
                field("tier", "3"),
                field("sub", "\"u-admin\""),
                field("roles", "[]"),
            ],
            require_mfa: true,
            fields: vec![field("source", "\"ads\"")],
        });
        assert_eq!(io::apply_decision(modify.clone(), Function::PostLogin, &mut effects), Ok(None));
        assert_eq!(effects.claims["plan"], json!("pro"));
        assert!(!effects.claims.contains_key("sub") && !effects.claims.contains_key("roles"), "protected: dropped");
        assert!(effects.require_mfa);
        assert!(effects.fields.is_empty(), "fields are for pre-registration only");
        io::apply_decision(modify, Function::PreRegistration, &mut effects).unwrap();
        assert_eq!(effects.fields["source"], json!("ads"));
        let bad = Decision::Modify(Changes { claims: vec![field("plan", "pro")], require_mfa: false, fields: vec![] });
        assert!(io::apply_decision(bad, Function::PostLogin, &mut effects).unwrap_err().contains("not JSON"));
        let deny = io::apply_decision(Decision::Deny("  ".into()), Function::PostLogin, &mut effects).unwrap();
        assert_eq!(deny.as_deref(), Some("refused by a policy of this site"));
    }

    #[test]
    fn every_sample_parses_as_its_function_input() {
        for f in [Function::PreRegistration, Function::PostLogin, Function::Render, Function::Price] {
            let input = io::parse_input(f, io::sample(f)).unwrap();
            assert_eq!(input.function(), f);
        }
    }
}
