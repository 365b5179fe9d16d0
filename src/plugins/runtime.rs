//! The wasmtime side of plugins: one `Engine` (component model, cranelift, pooling allocator with copy-on-write
//! memory images and resident slots, epoch interruption driven by a 1 ms ticker thread), the generated bindings of
//! the three worlds in both contract versions (0.1.0 and 0.2.0), linkers that provide nothing but `host.log` (and
//! `host.config` in 0.2.0), and `Runtime::call`: a fresh `Store` and
//! instance per call from a cached `InstancePre`, with a deadline, a memory cap, input/output/log caps, and an
//! outcome that says exactly what went wrong.
//!
//! Invariants:
//! - No WASI and no other import: a component can only log and read its own config. Its clock, randomness, files and network do not
//!   exist.
//! - Every call runs on a thread of the blocking pool (the caller holds a slot of `Runtime::slots`), never on the
//!   async executor, and never longer than its deadline plus one tick.
//! - An instance is dropped after every call, trapped or not; guest state never leaks between calls or users.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};

use super::{World, sizes};

/// Contract `gatehouse:plugin@0.1.0` (`plugins/wit/0.1.0`).
pub mod v1 {
    pub mod login {
        wasmtime::component::bindgen!({
            path: "plugins/wit/0.1.0",
            world: "gatehouse:plugin/login",
            additional_derives: [serde::Serialize, serde::Deserialize],
        });
    }

    pub mod email {
        wasmtime::component::bindgen!({
            path: "plugins/wit/0.1.0",
            world: "gatehouse:plugin/email",
            additional_derives: [serde::Serialize, serde::Deserialize],
            with: { "gatehouse:plugin/host": super::login::gatehouse::plugin::host },
        });
    }

    pub mod pricing {
        wasmtime::component::bindgen!({
            path: "plugins/wit/0.1.0",
            world: "gatehouse:plugin/pricing",
            additional_derives: [serde::Serialize, serde::Deserialize],
            with: { "gatehouse:plugin/host": super::login::gatehouse::plugin::host },
        });
    }
}

/// Contract `gatehouse:plugin@0.2.0` (`plugins/wit/0.2.0`): 0.1.0 plus `host.config` and the pricing cart's
/// `subtotal` and `applied`. Its login and email records are 0.1.0's field for field, so the 0.1.0 Rust types serve
/// both (the component model checks records by shape); the 0.2.0 type interfaces are linked as empty instances of
/// their own name (`Runtime::new`).
pub mod v2 {
    pub mod login {
        wasmtime::component::bindgen!({
            path: "plugins/wit/0.2.0",
            world: "gatehouse:plugin/login",
            additional_derives: [serde::Serialize, serde::Deserialize],
            with: { "gatehouse:plugin/login-types": super::super::v1::login::gatehouse::plugin::login_types },
        });
    }

    pub mod email {
        wasmtime::component::bindgen!({
            path: "plugins/wit/0.2.0",
            world: "gatehouse:plugin/email",
            additional_derives: [serde::Serialize, serde::Deserialize],
            with: {
                "gatehouse:plugin/host": super::login::gatehouse::plugin::host,
                "gatehouse:plugin/email-types": super::super::v1::email::gatehouse::plugin::email_types,
            },
        });
    }

    pub mod pricing {
        wasmtime::component::bindgen!({
            path: "plugins/wit/0.2.0",
            world: "gatehouse:plugin/pricing",
            additional_derives: [serde::Serialize, serde::Deserialize],
            with: { "gatehouse:plugin/host": super::login::gatehouse::plugin::host },
        });
    }
}

pub use v1::email::gatehouse::plugin::email_types::Message;
pub use v1::login::gatehouse::plugin::login_types::{Changes, Decision, Field, Request, User};
pub use v2::pricing::gatehouse::plugin::pricing_types::{Adjustment, AdjustmentKind, Cart, Line, Target};

/// The contract version a component was built against, read from its imports at upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PluginContract)]
pub enum Contract {
    #[serde(rename = "0.1.0")]
    V1,
    #[serde(rename = "0.2.0")]
    V2,
}

impl Contract {
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V1 => "0.1.0",
            Contract::V2 => "0.2.0",
        }
    }
}

/// Most input a call accepts, serialised (the WIT records' strings and lists).
pub const MAX_INPUT_BYTES: usize = 128 * 1024;
/// Most output a call may return; more is `invalid_output`.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Most bytes the host copies out of the guest in one lift (wasmtime's hostcall fuel): well above the output cap,
/// far below what a guest could otherwise make the host allocate. Past it the call is `invalid_output`.
pub const HOSTCALL_FUEL: usize = 16 * MAX_OUTPUT_BYTES;
/// Log lines kept per call, and the longest line (longer ones are cut).
pub const MAX_LOG_LINES: usize = 20;
pub const MAX_LOG_LINE_BYTES: usize = 1024;
/// The largest memory cap a plugin may ask for; the pool reserves this much per slot.
pub const MAX_MEMORY_MB: u32 = 256;
/// The engine's tick; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(1);

/// One exported function of a world, as the API and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = PluginFunction)]
pub enum Function {
    PreRegistration,
    PostLogin,
    Render,
    Price,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::PreRegistration => "pre-registration",
            Function::PostLogin => "post-login",
            Function::Render => "render",
            Function::Price => "price",
        }
    }

    pub fn parse(s: &str) -> Option<Function> {
        [Function::PreRegistration, Function::PostLogin, Function::Render, Function::Price]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    pub fn world(self) -> World {
        match self {
            Function::PreRegistration | Function::PostLogin => World::Login,
            Function::Render => World::Email,
            Function::Price => World::Pricing,
        }
    }
}

/// The arguments of one call.
#[derive(Debug, Clone)]
pub enum Input {
    PreRegistration(User, Request),
    PostLogin(User, Request),
    Render(Message),
    Price(Cart),
}

impl Input {
    pub fn function(&self) -> Function {
        match self {
            Input::PreRegistration(..) => Function::PreRegistration,
            Input::PostLogin(..) => Function::PostLogin,
            Input::Render(_) => Function::Render,
            Input::Price(_) => Function::Price,
        }
    }

    fn size(&self) -> usize {
        match self {
            Input::PreRegistration(u, r) | Input::PostLogin(u, r) => sizes::user(u) + sizes::request(r),
            Input::Render(m) => sizes::message(m),
            Input::Price(c) => sizes::cart(c),
        }
    }
}

/// What a call returned (already checked against the output cap).
#[derive(Debug, Clone)]
pub enum Output {
    Decision(Decision),
    Render(Result<Message, String>),
    Price(Result<Vec<Adjustment>, String>),
}

impl Output {
    fn size(&self) -> usize {
        match self {
            Output::Decision(d) => sizes::decision(d),
            Output::Render(Ok(m)) => sizes::message(m),
            Output::Render(Err(e)) | Output::Price(Err(e)) => e.len(),
            Output::Price(Ok(list)) => list.iter().map(sizes::adjustment).sum(),
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PluginOutcome)]
pub enum Outcome {
    Ok,
    /// The guest trapped: `unreachable`, stack overflow, the memory cap, an out-of-bounds access.
    Trap,
    /// The deadline passed (epoch interruption).
    Timeout,
    /// The guest returned something the host refuses: oversize, invalid UTF-8, out-of-range values, bad JSON.
    InvalidOutput,
    /// The host could not run the call: no slot, input too large, instantiation failed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::InvalidOutput => "invalid_output",
            Outcome::Error => "error",
        }
    }
}

/// A line the guest logged through the host interface.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PluginLogLine)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    pub message: String,
}

/// Everything about one call.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub output: Option<Output>,
    /// Why the outcome is not `ok`, in words for the plugin author.
    pub error: Option<String>,
    pub logs: Vec<LogLine>,
    pub duration: Duration,
    pub memory_peak_bytes: u64,
}

/// Per-plugin limits of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout_ms: u32,
    pub memory_mb: u32,
}

/// A compiled component checked against its world, ready to instantiate many times.
pub struct Loaded {
    pub component: Component,
    pub contract: Contract,
    pre: WorldPre,
}

enum WorldPre {
    Login(v1::login::LoginPre<CallState>),
    Email(v1::email::EmailPre<CallState>),
    Pricing(v1::pricing::PricingPre<CallState>),
    Login2(v2::login::LoginPre<CallState>),
    Email2(v2::email::EmailPre<CallState>),
    Pricing2(v2::pricing::PricingPre<CallState>),
}

/// Why a component does not fit a world.
#[derive(Debug)]
pub enum Mismatch {
    /// It imports something that is not part of the world (WASI, another package…).
    ForbiddenImport(String),
    /// It does not export the world's functions with the world's types.
    WrongWorld(String),
}

/// The store's data: the caps, the plugin's config and what the guest logged.
pub struct CallState {
    limiter: MemoryCap,
    config: String,
    logs: Vec<LogLine>,
    dropped_logs: usize,
}

impl v1::login::gatehouse::plugin::host::Host for CallState {
    fn log(&mut self, level: v1::login::gatehouse::plugin::host::Level, message: String) {
        use v1::login::gatehouse::plugin::host::Level;
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.push_log(level, message);
    }
}

impl v2::login::gatehouse::plugin::host::Host for CallState {
    fn log(&mut self, level: v2::login::gatehouse::plugin::host::Level, message: String) {
        use v2::login::gatehouse::plugin::host::Level;
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.push_log(level, message);
    }

    fn config(&mut self) -> String {
        self.config.clone()
    }
}

impl CallState {
    fn push_log(&mut self, level: &'static str, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.logs.push(LogLine { level, message });
    }
}

// The type-only interfaces have nothing to provide.
impl v1::login::gatehouse::plugin::login_types::Host for CallState {}
impl v1::email::gatehouse::plugin::email_types::Host for CallState {}
impl v1::pricing::gatehouse::plugin::pricing_types::Host for CallState {}
impl v2::pricing::gatehouse::plugin::pricing_types::Host for CallState {}

/// The error a memory growth past the cap raises inside the guest (it becomes a trap).
#[derive(Debug)]
struct MemoryCapReached(u32);

impl std::fmt::Display for MemoryCapReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the plugin's memory cap of {} MiB was reached", self.0)
    }
}

impl std::error::Error for MemoryCapReached {}

/// A `ResourceLimiter` that refuses (with a trap) any memory beyond the plugin's cap and remembers the peak.
struct MemoryCap {
    cap_mb: u32,
    peak: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > (self.cap_mb as usize) << 20 {
            return Err(MemoryCapReached(self.cap_mb).into());
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// JS components need ~7,700 table elements.
const TABLE_ELEMENTS: usize = 20_000;
/// Core instances per component: JS, C and Rust components use one or two; componentize-py's need 38.
const MAX_CORE_INSTANCES: usize = 64;

/// The engine, its linkers and the ticker.
pub struct Runtime {
    engine: Engine,
    /// One linker per contract and world: (0.1.0, 0.2.0) × (login, email, pricing).
    linkers: [[Linker<CallState>; 3]; 2],
    /// How many calls may run at once: the pool has this many instance slots.
    pub slots: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    /// Builds the engine with `slots` concurrent instances and starts its epoch ticker (which stops when the
    /// engine is dropped).
    pub fn new(slots: u32) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 4)
            .total_memories(slots)
            .total_tables(slots * 4)
            .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
            .max_memories_per_component(1)
            .max_tables_per_component(4)
            .max_memory_size((MAX_MEMORY_MB as usize) << 20)
            .table_elements(TABLE_ELEMENTS)
            // A slot keeps up to 16 MiB resident between calls (more than a JS plugin's 9 MiB initial heap):
            // resetting it then costs a scan of dirty pages instead of page faults on the next call.
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(1 << 20)
            .max_unused_warm_slots(slots.min(8))
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .cranelift_opt_level(OptLevel::Speed)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .max_wasm_stack(512 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })?;
        let linker = || Linker::<CallState>::new(&engine);
        let (mut l1, mut e1, mut p1, mut l2, mut e2, mut p2) =
            (linker(), linker(), linker(), linker(), linker(), linker());
        v1::login::Login::add_to_linker::<CallState, HasSelf<CallState>>(&mut l1, |s| s)?;
        v1::email::Email::add_to_linker::<CallState, HasSelf<CallState>>(&mut e1, |s| s)?;
        v1::pricing::Pricing::add_to_linker::<CallState, HasSelf<CallState>>(&mut p1, |s| s)?;
        v2::login::Login::add_to_linker::<CallState, HasSelf<CallState>>(&mut l2, |s| s)?;
        v2::email::Email::add_to_linker::<CallState, HasSelf<CallState>>(&mut e2, |s| s)?;
        v2::pricing::Pricing::add_to_linker::<CallState, HasSelf<CallState>>(&mut p2, |s| s)?;
        // The 0.2.0 login and email worlds reuse 0.1.0's type modules, which link their interface under its 0.1.0
        // name; a 0.2.0 component imports the 0.2.0 name (types only: an empty instance satisfies it).
        l2.instance("gatehouse:plugin/login-types@0.2.0")?;
        e2.instance("gatehouse:plugin/email-types@0.2.0")?;
        Ok(Runtime {
            engine,
            linkers: [[l1, e1, p1], [l2, e2, p2]],
            slots: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks a compiled component against `world`: imports first (only the world's own, of one contract version:
    /// that version is the component's), then exports. A component that imports nothing is tried as 0.1.0, then
    /// as 0.2.0.
    pub fn prepare(&self, component: Component, world: World) -> Result<Loaded, Mismatch> {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let mut contracts = Vec::new();
        for name in &imports {
            let contract = if world.allowed_imports(Contract::V1).contains(&name.as_str()) {
                Contract::V1
            } else if world.allowed_imports(Contract::V2).contains(&name.as_str()) {
                Contract::V2
            } else {
                // Another world's type interface means a plugin built for another world, not a sandbox escape.
                let ours = ["login-types", "email-types", "pricing-types"].iter().any(|i| {
                    [Contract::V1, Contract::V2].iter().any(|c| *name == format!("gatehouse:plugin/{i}@{}", c.as_str()))
                });
                return Err(if ours {
                    Mismatch::WrongWorld(format!("it imports {name}, which belongs to another world"))
                } else {
                    Mismatch::ForbiddenImport(name.clone())
                });
            };
            if !contracts.contains(&contract) {
                contracts.push(contract);
            }
        }
        match contracts[..] {
            [] => self
                .prepare_as(component.clone(), world, Contract::V1)
                .or_else(|first| self.prepare_as(component, world, Contract::V2).map_err(|_| first)),
            [contract] => self.prepare_as(component, world, contract),
            _ => Err(Mismatch::WrongWorld(format!(
                "it imports interfaces of two contract versions ({}); build it against one",
                imports.join(", ")
            ))),
        }
    }

    fn prepare_as(&self, component: Component, world: World, contract: Contract) -> Result<Loaded, Mismatch> {
        let linker = &self.linkers[contract as usize][world as usize];
        let pre: InstancePre<CallState> =
            linker.instantiate_pre(&component).map_err(|e| Mismatch::ForbiddenImport(format!("{e:#}")))?;
        let wrong = |e: wasmtime::Error| Mismatch::WrongWorld(format!("{e:#}"));
        let pre = match (contract, world) {
            (Contract::V1, World::Login) => WorldPre::Login(v1::login::LoginPre::new(pre).map_err(wrong)?),
            (Contract::V1, World::Email) => WorldPre::Email(v1::email::EmailPre::new(pre).map_err(wrong)?),
            (Contract::V1, World::Pricing) => WorldPre::Pricing(v1::pricing::PricingPre::new(pre).map_err(wrong)?),
            (Contract::V2, World::Login) => WorldPre::Login2(v2::login::LoginPre::new(pre).map_err(wrong)?),
            (Contract::V2, World::Email) => WorldPre::Email2(v2::email::EmailPre::new(pre).map_err(wrong)?),
            (Contract::V2, World::Pricing) => WorldPre::Pricing2(v2::pricing::PricingPre::new(pre).map_err(wrong)?),
        };
        Ok(Loaded { component, contract, pre })
    }

    /// Runs one call on a fresh instance. Blocking: call it from the blocking pool while holding a slot.
    /// `config` is what `host.config` answers (0.2.0).
    pub fn call(&self, loaded: &Loaded, input: Input, limits: Limits, config: String) -> Report {
        let started = Instant::now();
        let state = CallState {
            limiter: MemoryCap { cap_mb: limits.memory_mb, peak: 0 },
            config,
            logs: vec![],
            dropped_logs: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // What the host copies out of the guest in one lift (an answer, a log line): strings and list entries count.
        // Many list entries naming one large string would otherwise be copied once each.
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        store.set_epoch_deadline(u64::from(limits.timeout_ms.max(1)));
        store.epoch_deadline_trap();
        let result = if input.size() > MAX_INPUT_BYTES {
            Err(Failure::Host(format!("the input is larger than {} KiB", MAX_INPUT_BYTES / 1024)))
        } else {
            run(&mut store, loaded, input)
        };
        let duration = started.elapsed();
        let mut state = store.into_data();
        if state.dropped_logs > 0 {
            state.logs.push(LogLine {
                level: "warn",
                message: format!("{} more log lines were dropped (limit {MAX_LOG_LINES})", state.dropped_logs),
            });
        }
        let (outcome, output, error) = match result {
            Ok(output) if output.size() > MAX_OUTPUT_BYTES => (
                Outcome::InvalidOutput,
                None,
                Some(format!("the output is larger than {} KiB", MAX_OUTPUT_BYTES / 1024)),
            ),
            Ok(output) => (Outcome::Ok, Some(output), None),
            Err(Failure::Host(msg)) => (Outcome::Error, None, Some(msg)),
            Err(Failure::Instantiate(e)) => (Outcome::Error, None, Some(format!("instantiation failed: {e:#}"))),
            Err(Failure::Call(e)) => {
                let (outcome, msg) = classify(&e, limits);
                (outcome, None, Some(msg))
            }
        };
        Report { outcome, output, error, logs: state.logs, duration, memory_peak_bytes: state.limiter.peak as u64 }
    }
}

enum Failure {
    Host(String),
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

fn run(store: &mut Store<CallState>, loaded: &Loaded, input: Input) -> Result<Output, Failure> {
    let mismatch = || Failure::Host("the function is not part of this plugin's world".into());
    // Instantiates from `$pre` and calls `$method` with `$args`.
    macro_rules! call {
        ($pre:expr, $method:ident, $($arg:expr),*) => {{
            let instance = $pre.instantiate(&mut *store).map_err(Failure::Instantiate)?;
            instance.$method(store, $($arg),*).map_err(Failure::Call)
        }};
    }
    match (&loaded.pre, input) {
        (WorldPre::Login(pre), Input::PreRegistration(user, request)) => {
            call!(pre, call_pre_registration, &user, &request).map(Output::Decision)
        }
        (WorldPre::Login(pre), Input::PostLogin(user, request)) => {
            call!(pre, call_post_login, &user, &request).map(Output::Decision)
        }
        (WorldPre::Login2(pre), Input::PreRegistration(user, request)) => {
            call!(pre, call_pre_registration, &user, &request).map(Output::Decision)
        }
        (WorldPre::Login2(pre), Input::PostLogin(user, request)) => {
            call!(pre, call_post_login, &user, &request).map(Output::Decision)
        }
        (WorldPre::Email(pre), Input::Render(message)) => call!(pre, call_render, &message).map(Output::Render),
        (WorldPre::Email2(pre), Input::Render(message)) => call!(pre, call_render, &message).map(Output::Render),
        (WorldPre::Pricing(pre), Input::Price(cart)) => {
            let out = call!(pre, call_price, &contract_01::cart(cart))?;
            Ok(Output::Price(out.map(|list| list.into_iter().map(contract_01::adjustment).collect())))
        }
        (WorldPre::Pricing2(pre), Input::Price(cart)) => call!(pre, call_price, &cart).map(Output::Price),
        _ => Err(mismatch()),
    }
}

/// The 0.1.0 pricing records, converted from and to 0.2.0's (the host prices with 0.2.0's).
mod contract_01 {
    use super::v1::pricing::gatehouse::plugin::pricing_types as old;
    use super::{Adjustment, AdjustmentKind, Cart, Target};

    /// A 0.1.0 cart has no `subtotal` and no `applied`.
    pub fn cart(c: Cart) -> old::Cart {
        old::Cart {
            currency: c.currency,
            lines: c
                .lines
                .into_iter()
                .map(|l| old::Line {
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    categories: l.categories,
                })
                .collect(),
            discount_codes: c.discount_codes,
            customer_id: c.customer_id,
            customer_roles: c.customer_roles,
            shipping_country: c.shipping_country,
        }
    }

    pub fn adjustment(a: old::Adjustment) -> Adjustment {
        Adjustment {
            target: match a.target {
                old::Target::Order => Target::Order,
                old::Target::Line(i) => Target::Line(i),
                old::Target::Shipping => Target::Shipping,
            },
            kind: match a.kind {
                old::AdjustmentKind::Discount => AdjustmentKind::Discount,
                old::AdjustmentKind::Tax => AdjustmentKind::Tax,
                old::AdjustmentKind::Shipping => AdjustmentKind::Shipping,
                old::AdjustmentKind::Fee => AdjustmentKind::Fee,
            },
            amount: a.amount,
            label: a.label,
        }
    }
}

/// Tells a trap from a timeout from output the host could not lift (bad UTF-8, an invalid discriminant…).
fn classify(e: &wasmtime::Error, limits: Limits) -> (Outcome, String) {
    if let Some(cap) = e.downcast_ref::<MemoryCapReached>() {
        return (Outcome::Trap, cap.to_string());
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            (Outcome::Timeout, format!("the call ran past its deadline of {} ms", limits.timeout_ms))
        }
        Some(trap) => (Outcome::Trap, format!("the plugin trapped: {trap}")),
        None => (Outcome::InvalidOutput, format!("the plugin returned invalid output: {e:#}")),
    }
}
