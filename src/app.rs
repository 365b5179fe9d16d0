//! `App`, the state every handler sees, built once from a `Config`; and `run`, which serves a bound listener
//! until a shutdown future resolves.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::admin::accounts::{self, SetupLink};
use crate::admin::lockout::AccountLockout;
use crate::config::Config;
use crate::control::{ControlStore, Mutation, tables};
use crate::crypto::{MasterKey, PasswordHasher};
use crate::db::registry::TenantRegistry;
use crate::email::outbox::Wakeups;
use crate::email::smtp::Mailer;
use crate::email::templates::Catalog;
use crate::telemetry::Metrics;

pub type AppState = Arc<App>;

pub struct App {
    pub config: Config,
    /// This node's id (`data/node_id`): tenants created here name it as their home.
    pub node_id: u64,
    pub control: Arc<ControlStore>,
    pub tenants: Arc<TenantRegistry>,
    pub master_key: MasterKey,
    pub passwords: PasswordHasher,
    pub metrics: Arc<Metrics>,
    pub setup: SetupLink,
    /// Admin login attempts per client IP.
    pub admin_login_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Wrong admin passwords per email (known or not), which lock that email with backoff; in memory, per node,
    /// so a distributed guess at one account is slowed where the per-IP limiter does not see it.
    pub admin_lockout: AccountLockout,
    /// End-user sign-in, sign-up and password-reset requests per client IP.
    pub auth_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Storefront cart writes per client IP (`GATEHOUSE_STORE_PER_MINUTE`).
    pub store_limiter: DefaultKeyedRateLimiter<IpAddr>,
    pub started_at: Instant,
    /// Tenants with outbox work due: fed by `TenantDb::write`, drained by the dispatcher.
    pub outbox: Arc<Wakeups>,
    pub mailer: Mailer,
    pub catalog: Catalog,
    /// The HTTP client webhook deliveries go through (SSRF-guarded).
    pub webhook_client: reqwest::Client,
    /// OAuth/OIDC caches: key rings, clients, discovery documents.
    pub oidc: Arc<crate::oidc::state::Oidc>,
    /// Tenant WebAssembly plugins: engine (made on first use), active lists, stats.
    pub plugins: Arc<crate::plugins::Plugins>,
    /// The stores' live state (running CSV imports); the catalog itself is in the tenant files.
    pub store: crate::commerce::Store,
    /// Continuous backups (`None`: `GATEHOUSE_BACKUP_URL` unset, or an offline command).
    pub backup: Option<Arc<crate::backup::Backup>>,
    /// This node in its cluster (a one-node cluster of itself without `GATEHOUSE_CLUSTER_ADDR`).
    pub cluster: Arc<crate::cluster::Cluster>,
}

impl App {
    /// Opens the data dir: master key, control plane (migrated, key checked), tenant registry; then first-run
    /// bootstrap.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        // Backups track every connection to a replicated file, so the tracker is registered before any is opened.
        let tracker = match &config.backup {
            Some(_) => {
                std::fs::create_dir_all(&config.data_dir)
                    .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
                Some(crate::backup::tracker::Tracker::register(&config.data_dir))
            }
            None => None,
        };
        let mut app = match Self::open(config) {
            Ok(app) => app,
            Err(err) => {
                tracker.inspect(|t| t.unregister());
                return Err(err);
            }
        };
        match (tracker, app.config.backup.clone()) {
            (Some(tracker), Some(backup)) => {
                let labels = app.config.metrics_tenant_labels;
                app.backup =
                    Some(crate::backup::Backup::open(backup, tracker, app.node_id, app.metrics.clone(), labels)?);
            }
            _ => tracing::warn!("GATEHOUSE_BACKUP_URL is not set: backups are off; a lost disk loses every tenant"),
        }
        // From here on every control-plane write is proposed through this node's Raft log.
        let node = crate::cluster::node::start(
            &app.cluster.dir,
            app.node_id,
            app.cluster.me(&app.config.public_url),
            app.control.clone(),
            app.metrics.clone(),
            app.cluster.transport.clone(),
            app.cluster.config.snapshot_entries,
        )
        .await?;
        let effects = crate::tenants::effects::TenantEffects {
            node: app.node_id,
            registry: app.tenants.clone(),
            outbox: app.outbox.clone(),
        };
        let control = app.control.clone();
        for done in tokio::task::spawn_blocking(move || effects.reconcile(&control)).await?? {
            tracing::warn!(done, "reconciled tenant files with the control plane");
        }
        if node.has_peers() || app.cluster.dir.join("joining").exists() {
            // A member may start before its peers (or wait for the leader it is joining): first-run work waits for a
            // leader instead of failing the start.
            Ok(app)
        } else {
            accounts::bootstrap(&app).await?;
            Ok(app)
        }
    }

    /// Everything `build` does but the bootstrap; offline commands (`migrate`, `admin create`) use this.
    pub fn open(config: Config) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let master_key = MasterKey::load_or_create(&config.data_dir, config.master_key)?;
        let metrics = Arc::new(Metrics::new());
        let control = Arc::new(ControlStore::open(&config.data_dir, metrics.clone())?);
        check_master_key(&control, &master_key)?;
        let outbox = Arc::new(Wakeups::default());
        let limits = crate::db::registry::PoolLimits {
            count: config.tenant_pool_cache,
            memory: config.tenant_pool_memory,
            idle: config.tenant_pool_idle,
        };
        let tenants = Arc::new(TenantRegistry::new(&config.data_dir, limits, metrics.clone(), outbox.clone())?);
        let node_id = crate::tenants::effects::node_id(&config.data_dir, config.cluster.node_id)?;
        let effects =
            crate::tenants::effects::TenantEffects { node: node_id, registry: tenants.clone(), outbox: outbox.clone() };
        control.on_apply(move |mutation| effects.on_apply(mutation));
        let passwords = PasswordHasher::new(config.password)?;
        let oidc = Arc::new(crate::oidc::state::Oidc::default());
        let listener = oidc.clone();
        control.on_apply(move |mutation| {
            listener.invalidate(mutation);
            Ok(())
        });
        let plugins = Arc::new(crate::plugins::Plugins::new(
            config.data_dir.clone(),
            config.plugin_max_bytes,
            config.plugin_slots,
        ));
        let listener = plugins.clone();
        control.on_apply(move |mutation| {
            listener.invalidate(mutation);
            Ok(())
        });
        // A Raft snapshot replaced control.db: every cache drops, and the files follow the new records.
        let (keys, lists) = (oidc.clone(), plugins.clone());
        let effects =
            crate::tenants::effects::TenantEffects { node: node_id, registry: tenants.clone(), outbox: outbox.clone() };
        let weak = Arc::downgrade(&control);
        control.on_reset(move || {
            keys.invalidate_all();
            lists.invalidate_all();
            if let Some(control) = weak.upgrade() {
                for done in effects.reconcile_files(&control)? {
                    tracing::warn!(done, "reconciled tenant files with an installed control-plane snapshot");
                }
            }
            Ok(())
        });
        let per_minute = NonZeroU32::new(config.admin_login_per_minute).unwrap_or(NonZeroU32::MIN);
        let auth_per_minute = NonZeroU32::new(config.auth_per_minute).unwrap_or(NonZeroU32::MIN);
        let store_per_minute = NonZeroU32::new(config.store_per_minute).unwrap_or(NonZeroU32::MIN);
        let store = crate::commerce::Store::new(config.pricing_cache_mb, &config.stripe_api_base);
        let cluster = Arc::new(crate::cluster::Cluster::new(node_id, config.cluster.clone(), &config.data_dir)?);
        tenants.set_on_commit(store.on_commit());
        Ok(App {
            node_id,
            control,
            tenants,
            master_key,
            passwords,
            metrics,
            setup: SetupLink::default(),
            admin_login_limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            admin_lockout: AccountLockout::default(),
            auth_limiter: RateLimiter::keyed(Quota::per_minute(auth_per_minute)),
            store_limiter: RateLimiter::keyed(Quota::per_minute(store_per_minute)),
            started_at: Instant::now(),
            outbox,
            mailer: Mailer::new(&config)?,
            catalog: Catalog::load()?,
            webhook_client: crate::webhooks::client(config.webhook_allow_private, config.webhook_timeout)?,
            oidc,
            plugins,
            store,
            backup: None,
            cluster,
            config,
        })
    }
}

/// A new data dir records a check value of its master key; later starts must present the same key.
fn check_master_key(control: &ControlStore, key: &MasterKey) -> anyhow::Result<()> {
    match control.read_blocking(tables::key_check)? {
        Some(stored) if key.verify_key_check(&stored) => Ok(()),
        Some(_) => anyhow::bail!(
            "the master key does not match this data directory (GATEHOUSE_MASTER_KEY or master.key was changed); \
             start with the key this data was created with"
        ),
        None => Ok(control.apply_blocking(Mutation::InitKeyCheck { value: key.key_check() }).map(drop)?),
    }
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight requests for up to the grace period.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_routes(listener, config, shutdown, Router::new()).await
}

/// `run` with `extra` routes merged under the same middleware (tests use it for a panicking route).
pub async fn run_with_routes(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    extra: Router<AppState>,
) -> anyhow::Result<()> {
    let grace = config.shutdown_grace;
    let app: AppState = Arc::new(App::build(config).await?);
    let router = crate::http::router(app.clone(), extra);
    let housekeeping = tokio::spawn(housekeeping(app.clone()));
    let sampler = tokio::spawn(crate::telemetry::pulse::run(app.clone()));
    let (stop_outbox, outbox_stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(crate::email::dispatcher::run(app.clone(), outbox_stopped.clone()));
    let expiry = tokio::spawn(crate::commerce::expiry::run(app.clone(), outbox_stopped));
    let intents = tokio::spawn(crate::commerce::payments::cancel_intents(app.clone()));
    let (stop_backup, backup_stopped) = tokio::sync::watch::channel(false);
    let backup = app.backup.clone().map(|backup| tokio::spawn(backup.run(app.control.clone(), backup_stopped)));
    if app.config.mail.mode == crate::config::MailMode::Dev {
        tracing::warn!("GATEHOUSE_MAIL_MODE=dev: no mail is sent; every message is kept in its tenant's dev mailbox");
    } else if !app.mailer.has_global() {
        tracing::info!("no GATEHOUSE_SMTP_URL: tenants without their own SMTP settings get a dev mailbox");
    }

    let stop = Arc::new(Notify::new());
    let stop_signal = stop.clone();
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { stop_signal.notified().await });
    let server = tokio::spawn(async move { server.await });
    let stop_cluster = Arc::new(Notify::new());
    let cluster_stopped = stop_cluster.clone();
    let cluster_listener =
        crate::cluster::server::start(app.clone(), async move { cluster_stopped.notified().await }).await?;
    if app.control.node().is_some_and(|node| node.has_peers()) || app.cluster.dir.join("joining").exists() {
        tokio::spawn(bootstrap_when_led(app.clone()));
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), public_url = %app.config.public_url, "gatehouse is serving");
    // Once start-up's tail (first housekeeping tick, outbox scan, first requests) is over, its code pages go (the
    // binary only; see db::tuning).
    let trim = tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let released = crate::db::tuning::release_startup_code();
        if released > 0 {
            tracing::debug!(mapped_code_bytes = released, "start-up code unmapped");
        }
    });

    let mut server = server;
    tokio::select! {
        result = &mut server => { result??; }
        () = shutdown => {
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: draining in-flight requests and deliveries");
            stop.notify_one();
            // Open event streams end now, so their connections let the drain finish.
            app.store.live.close();
            let _ = stop_outbox.send(true);
            let deadline = tokio::time::Instant::now() + grace;
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(result) => result??,
                Err(_) => {
                    tracing::warn!("grace period over; closing the remaining connections");
                    server.abort();
                }
            }
            if tokio::time::timeout_at(deadline, dispatcher).await.is_err() {
                tracing::warn!("grace period over; outbox deliveries still in flight are retried at the next start");
            }
            // The last backup pass: every dirty database captured, checkpointed and uploaded within the grace.
            let _ = stop_backup.send(true);
            if let Some(backup) = backup
                && tokio::time::timeout_at(deadline, backup).await.is_err()
            {
                tracing::warn!("grace period over; spooled backup files are uploaded at the next start");
            }
        }
    }
    if let Some(raft) = app.control.raft() {
        let _ = raft.shutdown().await;
    }
    stop_cluster.notify_one();
    if let Some(mut listener) = cluster_listener {
        match tokio::time::timeout(Duration::from_secs(5), &mut listener).await {
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "the cluster listener failed"),
            Err(_) => {
                tracing::warn!("the cluster listener still had calls in flight; closing them");
                listener.abort();
            }
            _ => {}
        }
    }
    housekeeping.abort();
    trim.abort();
    sampler.abort();
    expiry.abort();
    intents.abort();
    app.tenants.close_all();
    if let Some(backup) = &app.backup {
        backup.tracker.unregister();
    }
    tracing::info!("stopped");
    Ok(())
}

/// First-run work on a member of a larger cluster, once a leader is known (retried every 2 s until it is done).
async fn bootstrap_when_led(app: AppState) {
    loop {
        let led = app.control.node().is_some_and(|node| crate::cluster::node::leader(&node.raft).is_some());
        if led {
            match accounts::bootstrap(&app).await {
                Ok(()) => return,
                Err(err) => tracing::warn!(error = %err, "first-run work failed; retrying"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Periodic upkeep, by this node as the owner of these proposals (the Raft leader later): expired admin sessions
/// and retired signing keys are purged, and every tenant gets the active signing key its settings ask for (the
/// first tick runs at start, reconciling tenants created before keys came with the tenant).
async fn housekeeping(app: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tick.tick().await;
        let keeper = app.clone();
        match tokio::task::spawn_blocking(move || crate::oidc::state::ensure_all_signing_keys(&keeper)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(made)) => tracing::info!(keys = made, "signing keys made for tenants without one"),
            Ok(Err(err)) => tracing::warn!(error = %err, "making missing signing keys failed"),
            Err(err) => tracing::warn!(error = %err, "making missing signing keys failed"),
        }
        // Each purge is proposed only when it has something to remove: an idle node writes nothing to the log.
        let now = crate::now_unix();
        let purges = [
            (
                "SELECT EXISTS(SELECT 1 FROM admin_sessions WHERE expires_at <= ?1)",
                now,
                Mutation::PurgeExpiredSessions { now },
            ),
            (
                "SELECT EXISTS(SELECT 1 FROM signing_keys WHERE expires_at IS NOT NULL AND expires_at <= ?1)",
                now,
                Mutation::PurgeSigningKeys { now },
            ),
            // Chunks of an upload whose proposer stopped half-way; a finished upload consumed its own.
            (
                "SELECT EXISTS(SELECT 1 FROM blob_chunks WHERE created_at < ?1)",
                now - 3600,
                Mutation::PurgeBlobChunks { before: now - 3600 },
            ),
        ];
        for (due_sql, at, mutation) in purges {
            let due = app.control.read(move |c| Ok(c.query_row(due_sql, [at], |r| r.get::<_, bool>(0))?)).await;
            let kind = mutation.kind();
            let result = match due {
                Ok(false) => continue,
                Ok(true) => app.control.apply(mutation).await.map(|_| ()),
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, purge = kind, "housekeeping purge failed");
            }
        }
        crate::oidc::store::purge_open_tenants(&app).await;
    }
}
