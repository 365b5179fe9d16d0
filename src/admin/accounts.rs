//! Operator accounts and admin UI sessions: first-run bootstrap, the one-time setup link, password login.
//!
//! First run: `GATEHOUSE_ADMIN_EMAIL`/`GATEHOUSE_ADMIN_PASSWORD` create the first operator; without them and
//! with no operator, a setup link valid for one hour is logged. `GATEHOUSE_BOOTSTRAP_TOKEN` is installed (hashed)
//! as an operator API token on every start, and removed again when the variable is unset.

use std::sync::Mutex;

use crate::admin::{Scope, validate_email};
use crate::app::App;
use crate::config::Secret;
use crate::control::{ControlStore, Mutation, tables};
use crate::crypto::{self, PasswordHasher};
use crate::error::{Error, Result};

/// How long an admin UI session lives.
pub const SESSION_SECS: i64 = 12 * 3600;
const SETUP_LINK_SECS: i64 = 3600;
pub const MIN_PASSWORD_CHARS: usize = 10;

/// The pending one-time setup link: the SHA-256 of its token and its expiry.
#[derive(Default)]
pub struct SetupLink(Mutex<Option<(String, i64)>>);

impl SetupLink {
    /// Whether `token` is the pending setup token. Does not consume it.
    pub fn is_valid(&self, token: &str) -> bool {
        let guard = self.0.lock().expect("setup link lock");
        guard.as_ref().is_some_and(|(hash, expires)| {
            *expires > crate::now_unix() && crypto::constant_time_eq(hash, &crypto::hash_token(token))
        })
    }

    fn set(&self, token: &str) {
        *self.0.lock().expect("setup link lock") =
            Some((crypto::hash_token(token), crate::now_unix() + SETUP_LINK_SECS));
    }

    /// Drops the pending link (this node joined a cluster: its operators are the cluster's).
    pub fn clear(&self) {
        *self.0.lock().expect("setup link lock") = None;
    }

    /// Consumes the link if `token` matches; true when it did.
    pub fn take(&self, token: &str) -> bool {
        let mut guard = self.0.lock().expect("setup link lock");
        let ok = guard.as_ref().is_some_and(|(hash, expires)| {
            *expires > crate::now_unix() && crypto::constant_time_eq(hash, &crypto::hash_token(token))
        });
        if ok {
            *guard = None;
        }
        ok
    }
}

pub fn check_password(password: &Secret) -> Result<()> {
    let n = password.expose().chars().count();
    if !(MIN_PASSWORD_CHARS..=256).contains(&n) {
        return Err(Error::validation(format!("password must be {MIN_PASSWORD_CHARS}-256 characters")));
    }
    Ok(())
}

/// The mutation creating an operator account; hashes the password (the slow part) before.
pub async fn new_operator(hasher: &PasswordHasher, email: &str, password: &Secret, scope: Scope) -> Result<Mutation> {
    let email = email.trim().to_lowercase();
    validate_email(&email)?;
    check_password(password)?;
    let password_hash = hasher.hash(password).await?;
    Ok(Mutation::CreateOperator {
        id: uuid::Uuid::now_v7().to_string(),
        email,
        password_hash,
        scope,
        at: crate::now_unix(),
    })
}

/// First-run work at start: the bootstrap operator, the bootstrap token, or a setup link in the log.
pub async fn bootstrap(app: &App) -> anyhow::Result<()> {
    let operators = app.control.read(tables::count_operators).await?;
    if let (Some(email), Some(password)) = (&app.config.admin_email, &app.config.admin_password) {
        if operators == 0 {
            let mutation = new_operator(&app.passwords, email, password, Scope::Operator).await?;
            app.control.apply(mutation).await?;
            tracing::info!(email = %email, "created the first operator from GATEHOUSE_ADMIN_EMAIL");
        }
    } else if operators == 0 {
        let token = crypto::random_token("");
        app.setup.set(&token);
        tracing::warn!(
            setup_url = format!("{}/admin/setup?token={token}", app.config.public_url),
            "no operator account yet: open the setup link within one hour to create one"
        );
    }
    // In a cluster the token is the cluster's: a member started without the variable leaves it alone.
    let clustered = app.control.node().is_some_and(|node| node.has_peers());
    if app.config.bootstrap_token.is_some() || !clustered {
        sync_bootstrap_token(&app.control, app.config.bootstrap_token.as_ref()).await?;
    }
    Ok(())
}

async fn sync_bootstrap_token(control: &std::sync::Arc<ControlStore>, token: Option<&Secret>) -> Result<()> {
    match token {
        Some(token) => {
            let token_hash = crypto::hash_token(token.expose());
            control.apply(Mutation::SetBootstrapToken { token_hash, at: crate::now_unix() }).await.map(drop)
        }
        None => {
            let existing = control.read(|conn| tables::token_by_id(conn, "bootstrap")).await?;
            if existing.is_some() {
                control.apply(Mutation::DeleteApiToken { id: "bootstrap".into() }).await?;
                tracing::info!("GATEHOUSE_BOOTSTRAP_TOKEN is unset: removed the bootstrap token");
            }
            Ok(())
        }
    }
}

/// Checks an email and password; the same work is done for an unknown email.
pub async fn verify_login(app: &App, email: &str, password: &Secret) -> Result<Option<tables::Operator>> {
    let email = email.trim().to_lowercase();
    let lookup = email.clone();
    let operator = app.control.read(move |conn| tables::operator_by_email(conn, &lookup)).await?;
    let ok = app.passwords.verify(operator.as_ref().map(|o| o.password_hash.clone()), password).await?;
    Ok(operator.filter(|_| ok))
}

/// Starts an admin UI session; returns the cookie value.
pub async fn start_session(app: &App, operator_id: &str) -> Result<String> {
    let cookie = crypto::random_token("");
    let now = crate::now_unix();
    app.control
        .apply(Mutation::CreateAdminSession {
            id_hash: crypto::hash_token(&cookie),
            operator_id: operator_id.to_owned(),
            csrf_token: crypto::random_token(""),
            at: now,
            expires_at: now + SESSION_SECS,
        })
        .await?;
    Ok(cookie)
}

/// The live session behind a cookie value.
pub async fn session(app: &App, cookie: &str) -> Result<Option<tables::AdminSession>> {
    let hash = crypto::hash_token(cookie);
    let now = crate::now_unix();
    app.control.read(move |conn| tables::session_by_hash(conn, &hash, now)).await
}

pub async fn end_session(app: &App, cookie: &str) -> Result<()> {
    app.control.apply(Mutation::DeleteAdminSession { id_hash: crypto::hash_token(cookie) }).await.map(drop)
}
