//! The command line. `serve`, `migrate` and `admin create` work on the data dir; the commands that change a
//! running system (`tenant …`, `token create`) call its admin API with `--url` and `--token`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::admin::{Scope, accounts};
use crate::app::App;
use crate::config::{Config, Secret};
use crate::control::tables;

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "Multi-tenant identity, email, commerce and plugins in one binary")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (configured by environment variables, listed below).
    #[command(after_long_help = crate::config::help_table(), after_help = crate::config::help_table())]
    Serve,
    /// Apply pending migrations to control.db and every tenant file, and print what was done.
    Migrate,
    /// Manage admin accounts (works on the data dir; the server may be running).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage tenants through a running server's admin API.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage admin API tokens through a running server's admin API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage a tenant's WebAssembly plugins through a running server's admin API.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// List or rotate a tenant's token signing keys through a running server's admin API.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Restore databases from the backup bucket (see also the admin API for a live tenant).
    #[command(subcommand)]
    Restore(crate::backup::command::RestoreCommand),
    /// Backup status, restore points, verification and forced snapshots.
    #[command(subcommand)]
    Backup(crate::backup::command::BackupCommand),
    /// Form and inspect a cluster through this node's cluster listener (run beside a serving node, with its
    /// environment: GATEHOUSE_CLUSTER_* and the join token).
    #[command(subcommand)]
    Cluster(crate::cluster::command::ClusterCommand),
    /// Exit 0 when the local server answers /healthz (for container health checks).
    Healthcheck {
        /// Base URL to probe; defaults to http://127.0.0.1:$PORT.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an operator (or, with --tenant, a tenant admin) account.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Make a tenant admin of this tenant instead of an operator.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Args)]
pub struct Remote {
    /// Base URL of the running server.
    #[arg(long, env = "GATEHOUSE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An admin API token.
    #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Suspend a tenant: its pages and APIs answer 403 until resumed.
    Suspend {
        slug: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Resume a suspended tenant.
    Resume {
        slug: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a tenant; its file is moved to the archive directory.
    Delete {
        slug: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an admin API token and print it (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// operator or tenant:{slug}; the calling token's scope by default.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Upload a component as a plugin's next version (creating the plugin when --world is given), optionally
    /// activating it.
    Upload {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// login, email or pricing: creates the plugin if it does not exist yet.
        #[arg(long)]
        world: Option<String>,
        /// fail_closed (default) or fail_open, for a new plugin.
        #[arg(long)]
        failure_policy: Option<String>,
        /// Per-call deadline of a new plugin (default 50, at most 1000).
        #[arg(long)]
        timeout_ms: Option<u32>,
        /// Memory cap of a new plugin (default 32).
        #[arg(long)]
        memory_mb: Option<u32>,
        /// Make the uploaded version the active one.
        #[arg(long)]
        activate: bool,
        /// The component (.wasm).
        file: std::path::PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a tenant's plugins with their active versions and call counts.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Activate a version (activating an older one is the rollback).
    Activate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deactivate a plugin: its hooks stop running.
    Deactivate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the published keys: the active one and those retiring (still in JWKS until their tokens expire).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make a new key active now; the previous key stays published until every token it signed has expired.
    Rotate {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    // Before any connection opens: SQLite takes its process-wide memory settings only then.
    // SAFETY: nothing else runs yet (no runtime, no thread, no connection), so no other thread uses SQLite.
    #[allow(unsafe_code)]
    unsafe {
        crate::db::tuning::configure_process();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let needs_config = match &cli.command {
        Command::Serve | Command::Migrate | Command::Admin(_) | Command::Cluster(_) => true,
        Command::Restore(cmd) => cmd.needs_config(),
        Command::Backup(cmd) => cmd.needs_config(),
        _ => false,
    };
    // `restore db --from URL` reads that replica with serve's S3 settings.
    let from = match &cli.command {
        Command::Restore(cmd) => cmd.from_url().map(str::to_owned),
        _ => None,
    };
    let config = if needs_config {
        let loaded = match from {
            Some(url) => Config::from_lookup(move |name| match name {
                "GATEHOUSE_BACKUP_URL" => Some(url.clone()),
                _ => std::env::var(name).ok(),
            }),
            None => Config::from_env(),
        };
        match loaded {
            Ok(config) => Some(config),
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, config: Option<Config>) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config.expect("serve reads config")).await,
        Command::Migrate => migrate(config.expect("migrate reads config")).await,
        Command::Admin(AdminCommand::Create { email, password_stdin, tenant }) => {
            admin_create(config.expect("admin reads config"), email, password_stdin, tenant).await
        }
        Command::Tenant(cmd) => tenant(cmd).await,
        Command::Token(TokenCommand::Create { name, scope, expires_in_days, remote }) => {
            let body = json!({ "name": name, "scope": scope, "expires_in_days": expires_in_days });
            let created = call(&remote, reqwest::Method::POST, "/admin/api/v1/tokens", Some(body)).await?;
            println!("{}", created["token"].as_str().unwrap_or_default());
            eprintln!("token {} ({}) created; it is shown only once", created["id"], created["scope"]);
            Ok(())
        }
        Command::Plugin(cmd) => plugin(cmd).await,
        Command::Keys(cmd) => keys(cmd).await,
        Command::Restore(crate::backup::command::RestoreCommand::Tenant { slug, point, incarnation, yes, remote }) => {
            restore_tenant(&remote, &slug, point.body(incarnation)?, yes).await
        }
        Command::Restore(cmd) => crate::backup::command::run(cmd, config.expect("restore reads config")).await,
        Command::Backup(crate::backup::command::BackupCommand::Status { json, remote }) => {
            backup_status(&remote, json).await
        }
        Command::Backup(crate::backup::command::BackupCommand::Snapshot { db, remote }) => {
            let db = if db == "control" || db.starts_with("tenants/") { db } else { format!("tenants/{db}") };
            let done =
                call(&remote, reqwest::Method::POST, "/admin/api/v1/backups/snapshot", Some(json!({ "db": db })))
                    .await?;
            println!(
                "{db}: snapshot captured at TXID {} into {}; it is uploaded within an interval",
                done["txid"],
                done["root"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Command::Backup(cmd) => crate::backup::command::run_backup(cmd, config.expect("backup reads config")).await,
        Command::Cluster(cmd) => crate::cluster::command::run(cmd, config.expect("cluster reads config")).await,
        Command::Healthcheck { url } => healthcheck(url).await,
        Command::Version => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&config);
    // Held until the process exits: an offline restore refuses to run beside this server.
    let _lock = crate::backup::DataLock::acquire(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, data_dir = %config.data_dir.display(), "starting");
    crate::run(listener, config, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // Opening the app migrates control.db (and reports it in the log); then every tenant file.
        let before = control_version(&data_dir);
        let app = App::open(config)?;
        let after = app.control.read_blocking(crate::db::migrate::current_version)?;
        println!("control.db: schema version {after}{}", if before == after { " (up to date)" } else { " (migrated)" });
        let slugs = app.control.read_blocking(tables::all_tenant_slugs)?;
        for (slug, applied) in app.tenants.migrate_all(&slugs)? {
            if applied.is_empty() {
                println!("tenant {slug}: up to date");
            } else {
                println!("tenant {slug}: applied {}", applied.join(", "));
            }
        }
        println!("{} tenant(s) checked", slugs.len());
        Ok(())
    })
    .await?
}

fn control_version(data_dir: &std::path::Path) -> i64 {
    let path = data_dir.join("control.db");
    if !path.exists() {
        return 0;
    }
    crate::db::open_connection(&path).ok().and_then(|c| crate::db::migrate::current_version(&c).ok()).unwrap_or(0)
}

async fn admin_create(
    config: Config,
    email: String,
    password_stdin: bool,
    tenant: Option<String>,
) -> anyhow::Result<()> {
    let password = if password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            bail!("the passwords differ");
        }
        first
    };
    let scope = match tenant {
        Some(slug) => Scope::Tenant(crate::tenants::TenantSlug::parse(&slug)?),
        None => Scope::Operator,
    };
    let node = crate::tenants::effects::node_id(&config.data_dir, config.cluster.node_id)?;
    if crate::cluster::has_peers_offline(&config.data_dir, node)? {
        bail!(
            "this node is a member of a multi-node cluster: create accounts through the admin API or UI (on a \
             one-node cluster this command writes through the local log)"
        );
    }
    let app = tokio::task::spawn_blocking(move || App::open(config)).await??;
    if let Scope::Tenant(slug) = &scope {
        crate::tenants::get(&app, slug).await?;
    }
    let mutation = accounts::new_operator(&app.passwords, &email, &Secret::new(password), scope.clone()).await?;
    app.control.apply(mutation).await?;
    println!("created {scope} account {}", email.trim().to_lowercase());
    Ok(())
}

async fn tenant(cmd: TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create { slug, name, remote } => {
            let t = call(
                &remote,
                reqwest::Method::POST,
                "/admin/api/v1/tenants",
                Some(json!({"slug": slug, "name": name})),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TenantCommand::List { remote } => {
            let mut cursor: Option<String> = None;
            println!("{:<30} {:<10} {:<18} NAME", "SLUG", "STATUS", "HOME NODE");
            loop {
                let path = match &cursor {
                    Some(c) => format!("/admin/api/v1/tenants?limit=200&cursor={c}"),
                    None => "/admin/api/v1/tenants?limit=200".to_owned(),
                };
                let page = call(&remote, reqwest::Method::GET, &path, None).await?;
                for t in page["items"].as_array().into_iter().flatten() {
                    println!(
                        "{:<30} {:<10} {:<18} {}",
                        t["slug"].as_str().unwrap_or_default(),
                        t["status"].as_str().unwrap_or_default(),
                        t["home_node"].as_u64().map_or("-".to_owned(), |id| id.to_string()),
                        t["name"].as_str().unwrap_or_default()
                    );
                }
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
        }
        TenantCommand::Suspend { slug, remote } => {
            let t =
                call(&remote, reqwest::Method::POST, &format!("/admin/api/v1/tenants/{slug}/suspend"), None).await?;
            println!("{} is {}", t["slug"], t["status"]);
        }
        TenantCommand::Resume { slug, remote } => {
            let t = call(&remote, reqwest::Method::POST, &format!("/admin/api/v1/tenants/{slug}/resume"), None).await?;
            println!("{} is {}", t["slug"], t["status"]);
        }
        TenantCommand::Delete { slug, remote } => {
            let r = call(&remote, reqwest::Method::DELETE, &format!("/admin/api/v1/tenants/{slug}"), None).await?;
            println!("deleted {}; archived to {}", r["deleted"], r["archived_to"]);
        }
    }
    Ok(())
}

async fn plugin(cmd: PluginCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        PluginCommand::Upload {
            tenant,
            name,
            world,
            failure_policy,
            timeout_ms,
            memory_mb,
            activate,
            file,
            remote,
        } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let base = format!("/admin/api/v1/tenants/{tenant}/plugins");
            if let Some(world) = world
                && call(&remote, Method::GET, &format!("{base}/{name}"), None).await.is_err()
            {
                let body = json!({ "name": name, "world": world, "failure_policy": failure_policy,
                                   "timeout_ms": timeout_ms, "memory_mb": memory_mb });
                let body = Value::Object(
                    body.as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                );
                call(&remote, Method::POST, &base, Some(body)).await?;
                eprintln!("created plugin {name}");
            }
            let url = format!("{}{base}/{name}/versions", remote.url.trim_end_matches('/'));
            let request = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&remote.token)
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(bytes);
            let version = answer(request, &url).await?;
            println!(
                "{name} v{} uploaded ({} bytes, sha256 {})",
                version["version"], version["size"], version["sha256"]
            );
            if activate {
                let v = &version["version"];
                call(&remote, Method::POST, &format!("{base}/{name}/versions/{v}/activate"), None).await?;
                println!("{name} v{v} is active");
            }
        }
        PluginCommand::List { tenant, remote } => {
            let list = call(&remote, Method::GET, &format!("/admin/api/v1/tenants/{tenant}/plugins"), None).await?;
            for p in list["items"].as_array().into_iter().flatten() {
                let active = p["active_version"].as_u64().map_or("inactive".to_owned(), |v| format!("v{v} active"));
                println!(
                    "{:<24} {:<8} {:<12} {} calls",
                    p["name"].as_str().unwrap_or(""),
                    p["world"].as_str().unwrap_or(""),
                    active,
                    p["stats"]["calls"]
                );
            }
        }
        PluginCommand::Activate { tenant, name, version, remote } => {
            let path = format!("/admin/api/v1/tenants/{tenant}/plugins/{name}/versions/{version}/activate");
            call(&remote, Method::POST, &path, None).await?;
            println!("{name} v{version} is active");
        }
        PluginCommand::Deactivate { tenant, name, remote } => {
            call(&remote, Method::POST, &format!("/admin/api/v1/tenants/{tenant}/plugins/{name}/deactivate"), None)
                .await?;
            println!("{name} is inactive");
        }
    }
    Ok(())
}

async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    let (tenant, remote, rotate) = match cmd {
        KeysCommand::List { tenant, remote } => (tenant, remote, false),
        KeysCommand::Rotate { tenant, remote } => (tenant, remote, true),
    };
    let base = format!("/admin/api/v1/tenants/{tenant}/keys");
    let list = if rotate {
        let rotated = call(&remote, reqwest::Method::POST, &format!("{base}/rotate"), None).await?;
        eprintln!("{} is the active key of {tenant}", rotated["kid"].as_str().unwrap_or_default());
        rotated
    } else {
        call(&remote, reqwest::Method::GET, &base, None).await?
    };
    for k in list["items"].as_array().into_iter().flatten() {
        println!(
            "{:<40} {:<6} {:<8} {}",
            k["kid"].as_str().unwrap_or(""),
            k["alg"].as_str().unwrap_or(""),
            k["status"].as_str().unwrap_or(""),
            k["retires_at"].as_str().map_or(String::new(), |t| format!("retires {t}"))
        );
    }
    Ok(())
}

/// One admin API call; an error response becomes an error naming its code and message.
/// `gatehouse backup status`: every page of the status, as a table or JSON.
async fn backup_status(remote: &Remote, json: bool) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    let mut first: Option<Value> = None;
    let mut databases = Vec::new();
    loop {
        let query = after.as_deref().map(|a| format!("&after={a}")).unwrap_or_default();
        let page = call(remote, reqwest::Method::GET, &format!("/admin/api/v1/backups?limit=200{query}"), None).await?;
        databases.extend(page["databases"].as_array().cloned().unwrap_or_default());
        after = page["next_after"].as_str().map(str::to_owned);
        first.get_or_insert(page);
        if after.is_none() {
            break;
        }
    }
    let mut status = first.unwrap_or_default();
    status["databases"] = Value::Array(databases);
    status["next_after"] = Value::Null;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let stamp = |ms: &Value| ms.as_i64().map_or("-".to_owned(), crate::backup::restore::time_text);
    println!(
        "{}  {}  lag {}  gaps {}",
        status["url"].as_str().unwrap_or("?"),
        status["health"].as_str().unwrap_or("?"),
        crate::backup::status::age_text(status["lag_seconds"].as_f64().unwrap_or(0.0)),
        status["gaps"]
    );
    println!("{:<28} {:>8} {:>8} {:>8} {:>10}  window", "database", "txid", "uploaded", "lag", "bytes");
    for db in status["databases"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>10}  {} to {}",
            db["db"].as_str().unwrap_or("?"),
            db["txid"],
            db["uploaded_txid"],
            crate::backup::status::age_text(db["lag_seconds"].as_f64().unwrap_or(0.0)),
            db["bytes"],
            stamp(&db["window_from_ms"]),
            stamp(&db["window_to_ms"])
        );
    }
    Ok(())
}

/// `gatehouse restore tenant`: starts the restore through the admin API, then follows it to its end.
async fn restore_tenant(
    remote: &Remote,
    slug: &str,
    body: crate::backup::api::RestoreBody,
    yes: bool,
) -> anyhow::Result<()> {
    let point = match (&body.timestamp, body.txid) {
        (Some(at), _) => format!("its state at {at}"),
        (None, Some(txid)) => format!("its state at TXID {txid}"),
        (None, None) => "the latest state in the bucket".to_owned(),
    };
    crate::backup::command::confirm(
        &format!(
            "Replace tenant {slug} on {} with {point}? It is unavailable meanwhile; its current file is archived",
            remote.url
        ),
        yes,
    )?;
    let body = serde_json::json!({ "timestamp": body.timestamp, "txid": body.txid, "incarnation": body.incarnation });
    let path = format!("/admin/api/v1/tenants/{slug}/restore");
    let mut view = call(remote, reqwest::Method::POST, &path, Some(body)).await?;
    let mut shown = String::new();
    while view["phase"] != "done" && view["phase"] != "failed" {
        let line = format!(
            "{slug}: {} ({}/{} files, {:.1}/{:.1} MB)",
            view["phase"].as_str().unwrap_or("?"),
            view["files_done"],
            view["files"],
            view["bytes_done"].as_f64().unwrap_or(0.0) / 1e6,
            view["bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
        if line != shown {
            eprintln!("{line}");
            shown = line;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        view = call(remote, reqwest::Method::GET, &path, None).await?;
    }
    if view["phase"] == "failed" {
        bail!(
            "{}: {}",
            view["error"]["code"].as_str().unwrap_or("error"),
            view["error"]["message"].as_str().unwrap_or("")
        );
    }
    let done = &view["outcome"];
    println!(
        "restored tenant {slug} to TXID {} (committed {}) from {}: {} files, {:.1} MB in {:.2} s; the old file is {}, \
         and the tenant now replicates under incarnation {}",
        done["txid"],
        done["committed_at"].as_str().unwrap_or("?"),
        view["root"].as_str().unwrap_or("?"),
        done["files"],
        done["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        done["seconds"].as_f64().unwrap_or(0.0),
        done["archived_to"].as_str().unwrap_or("?"),
        done["incarnation"].as_str().unwrap_or("?")
    );
    Ok(())
}

async fn call(remote: &Remote, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url).bearer_auth(&remote.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request, &url).await
}

/// Sends a request; an error response becomes an error naming its code and message.
async fn answer(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or("");
        bail!("{status}: {code}: {message}");
    }
    Ok(value)
}

async fn healthcheck(url: Option<String>) -> anyhow::Result<()> {
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(8080);
        format!("http://127.0.0.1:{port}")
    });
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(format!("{}/healthz", url.trim_end_matches('/')))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("/healthz answered {}", response.status());
    }
    Ok(())
}
