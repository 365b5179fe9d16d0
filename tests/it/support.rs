//! Test harness: an in-process server on a random port with its own temp data dir, the real binary as a child
//! process, and helpers for external tools.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use gatehouse::{AppState, Config};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-bootstrap-token-0123456789abcdef";
/// The password test users (`create_user`) and the test operator are created with.
pub const PASSWORD: &str = "correct horse battery staple";
/// A route only test servers have: its handler hands the server's `App` to the `TestApp` (see `TestApp::state`).
const STATE_ROUTE: &str = "/test-support/app-state";

pub struct TestApp {
    pub base: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    /// Filled by the first request to `STATE_ROUTE`.
    state: Arc<Mutex<Option<AppState>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::for_tests(dir);
    config.bootstrap_token = Some(gatehouse::config::Secret::new(TOKEN));
    config.plugin_slots = 4;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}, Router::new()).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Config), extra: Router<AppState>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_in(dir.path(), tweak, extra).await.expect("server starts");
    app._dir = Some(dir);
    app
}

/// Starts a server over an existing data dir (restart tests); the caller owns the dir.
pub async fn spawn_in(dir: &Path, tweak: impl FnOnce(&mut Config), extra: Router<AppState>) -> anyhow::Result<TestApp> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut config = test_config(dir);
    config.public_url = base.clone();
    tweak(&mut config);
    // `run_with_routes` builds the `App` inside; a route of our own is the way to get hold of it.
    let state = Arc::new(Mutex::new(None));
    let slot = state.clone();
    let extra = extra.route(
        STATE_ROUTE,
        get(move |State(app): State<AppState>| async move {
            *slot.lock().unwrap() = Some(app);
            StatusCode::NO_CONTENT
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gatehouse::run_with_routes(
        listener,
        config,
        async move {
            let _ = stopped.await;
        },
        extra,
    ));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let app =
        TestApp { base, data_dir: dir.to_path_buf(), client, state, stop: Some(stop), task: Some(task), _dir: None };
    // Ready when /healthz answers, or failed when the task ended.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if app.task.as_ref().unwrap().is_finished() {
            let mut app = app;
            return Err(app.task.take().unwrap().await?.err().unwrap_or_else(|| anyhow::anyhow!("server exited")));
        }
        if let Ok(r) = app.client.get(format!("{}/healthz", app.base)).send().await
            && r.status().is_success()
        {
            return Ok(app);
        }
        anyhow::ensure!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the bootstrap operator token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    /// A JSON request with the operator token: the status and the parsed answer (`Null` when it has no body).
    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.admin(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path} answered {status} with no JSON ({e}): {text}"))
        };
        (status, value)
    }

    /// The running server's `App`, for stepping its background work instead of sleeping.
    pub async fn state(&self) -> AppState {
        let known = self.state.lock().unwrap().clone();
        if let Some(state) = known {
            return state;
        }
        let r = self.client.get(self.url(STATE_ROUTE)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "the state route answers");
        self.state.lock().unwrap().clone().expect("the state route keeps the App")
    }

    /// Works off every outbox row due now (mail and webhook deliveries) and returns how many it attempted: one
    /// pass of the dispatcher, awaited. Call it before asserting that nothing more was sent.
    pub async fn run_outbox(&self) -> usize {
        gatehouse::email::dispatcher::run_pending(&self.state().await).await.expect("an outbox pass")
    }

    pub async fn create_tenant(&self, slug: &str) -> Value {
        let response = self
            .admin(Method::POST, "/admin/api/v1/tenants")
            .json(&json!({ "slug": slug, "name": format!("Tenant {slug}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create {slug}");
        response.json().await.unwrap()
    }

    /// Creates an API token with `scope` (`operator` or `tenant:{slug}`) and returns its secret.
    pub async fn create_token(&self, name: &str, scope: &str) -> String {
        let response = self
            .admin(Method::POST, "/admin/api/v1/tokens")
            .json(&json!({ "name": name, "scope": scope }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create token {name}");
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Creates a verified user named Ada with `PASSWORD` through the admin API, and returns it.
pub async fn create_user(app: &TestApp, slug: &str, email: &str) -> Value {
    let body = json!({ "email": email, "password": PASSWORD, "email_verified": true, "name": "Ada" });
    let (status, user) = app.json(Method::POST, &format!("/admin/api/v1/tenants/{slug}/users"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "create user {email}: {user}");
    user
}

/// The value of one metric line `name{labels} value`, matching a prefix of the series.
pub fn metric_value(text: &str, series_prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series_prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A destination that is down: a listener that hangs up on every connection, so each attempt fails at once. It
/// holds its port until stopped or dropped, so no other test's listener can take the port meanwhile (an attempt
/// would then wait for an answer until its timeout, as it would if the client happened to connect to itself).
pub struct HangUp {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl HangUp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((conn, _)) = listener.accept().await {
                    drop(conn);
                }
            }
        });
        Self { port, task }
    }

    /// Closes the listener: the port is free again when this returns.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

/// Runs a CLI command of the binary against the server at `base` with the test token: (success, stdout, stderr).
pub fn run_cli(base: &str, args: &[&str]) -> (bool, String, String) {
    let out =
        Command::new(binary()).args(args).env("GATEHOUSE_URL", base).env("GATEHOUSE_TOKEN", TOKEN).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GETs `url` and parses the JSON answer.
pub async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The real binary serving a data dir on a free port.
pub struct BinServer {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

impl BinServer {
    /// Runs `gatehouse serve` with `cwd` as its working directory, so its data dir is the default `./data`.
    pub async fn start(cwd: &Path, env: &[(&str, &str)]) -> BinServer {
        Self::start_at(cwd, env, free_port()).await
    }

    /// `start` on a port the caller chose (to name it in the environment first, as a public URL).
    pub async fn start_at(cwd: &Path, env: &[(&str, &str)], port: u16) -> BinServer {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(cwd)
            .env("PORT", port.to_string())
            .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEHOUSE_BOOTSTRAP_TOKEN", TOKEN)
            .env("GATEHOUSE_PASSWORD_MEMORY_KIB", "64")
            .env("GATEHOUSE_PASSWORD_ITERATIONS", "1")
            .env("GATEHOUSE_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            // To a file, not a pipe: an unread pipe would fill up and stall the server's logging.
            .stderr(std::fs::File::create(cwd.join("gatehouse.log")).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start gatehouse");
        let server = BinServer { child, base: format!("http://127.0.0.1:{port}"), port };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", server.base)).send().await
                && r.status().is_success()
            {
                return server;
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(cwd.join("gatehouse.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!(
                    "binary did not become ready; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an external tool is on PATH. In CI a missing tool fails the test; elsewhere it is skipped loudly.
pub fn require_tool(tool: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI (scripts/test installs it)");
        }
        eprintln!("SKIPPED: {tool} is not installed; run scripts/test to install it");
    }
    found
}

/// Whether `python3` can import `module`. In CI a missing module fails the test; elsewhere it is skipped loudly.
pub fn require_python_module(module: &str) -> bool {
    let found = Command::new("python3").arg("-c").arg(format!("import {module}")).status().is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("python module {module} is required in CI (scripts/test installs it)");
        }
        eprintln!("SKIPPED: python module {module} is not installed; run scripts/test to install it");
    }
    found
}

/// A real SMTP server (aiosmtpd, `tests/it/smtp_sink.py`) recording every accepted message.
pub struct SmtpSink {
    child: Option<Child>,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

#[derive(Default, Clone)]
pub struct SinkOptions {
    pub port: Option<u16>,
    pub delay_ms: u64,
    pub auth: Option<(String, String)>,
}

impl SmtpSink {
    pub async fn start(options: SinkOptions) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("messages.jsonl");
        let port = options.port.unwrap_or_else(free_port);
        let mut sink = SmtpSink { child: None, port, out, _dir: dir };
        sink.launch(&options).await;
        sink
    }

    async fn launch(&mut self, options: &SinkOptions) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.args(["-W", "ignore", script])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--out")
            .arg(&self.out)
            .arg("--delay-ms")
            .arg(options.delay_ms.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((user, password)) = &options.auth {
            cmd.arg("--user").arg(user).arg("--password").arg(password);
        }
        self.child = Some(cmd.spawn().expect("start the SMTP sink"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "SMTP sink did not start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every message received so far, in order. A line the sink is still writing (no newline yet) is left for
    /// the next call.
    pub fn messages(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Waits until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(Instant::now() < deadline, "expected {n} messages, got {}", messages.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The SMTP settings body pointing a tenant at this sink.
    pub fn settings(&self, from_email: &str) -> Value {
        json!({ "host": "127.0.0.1", "port": self.port, "tls": "none", "from_email": from_email, "from_name": "Sink Test" })
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
