//! Admin UI pages: sign-in, setup, dashboard, tenants, API tokens.

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Chrome, CsrfForm, UiSession};
use crate::admin::accounts;
use crate::admin::lockout::AccountLockout;
use crate::admin::tokens::{self, NewToken};
use crate::admin::{SESSION_COOKIE, Scope};
use crate::app::{App, AppState};
use crate::config::Secret;
use crate::control::tables;
use crate::crypto;
use crate::error::Error;
use crate::http::cookies;
use crate::http::extract::client_ip;
use crate::http::page::{CsrfOnly, PageError, PageResult, UiForm, render};
use crate::telemetry::pulse::Window;
use crate::tenants::{self, TenantSettings, TenantSlug};

const FORM_CSRF_COOKIE: &str = "gh_csrf";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/", get(|| async { Redirect::permanent("/admin") }))
        .route("/admin/login", get(login_form).post(login))
        .route("/admin/logout", get(logout_page).post(logout))
        .route("/admin/setup", get(setup_form).post(setup))
        .route("/admin/tenants", get(tenant_list).post(tenant_create))
        .route("/admin/tokens", get(token_list).post(token_create))
        .route("/admin/tokens/{id}/delete", post(token_delete))
}

// ---- sign-in and setup (no session yet: double-submit CSRF cookie) ----

/// The visitor's form CSRF value, and a `Set-Cookie` when it had none.
fn form_csrf(headers: &HeaderMap, app: &App) -> (String, Option<String>) {
    match cookies::get(headers, FORM_CSRF_COOKIE).filter(|v| v.len() >= 32) {
        Some(existing) => (existing, None),
        None => {
            let value = crypto::random_token("");
            let cookie = cookies::set(FORM_CSRF_COOKIE, &value, "/admin", "Strict", app.config.is_https(), None);
            (value, Some(cookie))
        }
    }
}

fn check_form_csrf(headers: &HeaderMap, submitted: &str) -> Result<(), PageError> {
    let expected = cookies::get(headers, FORM_CSRF_COOKIE).unwrap_or_default();
    if !expected.is_empty() && crypto::constant_time_eq(&expected, submitted) {
        Ok(())
    } else {
        Err(PageError(Error::Forbidden("this form has expired or did not come from this site; reload and retry")))
    }
}

fn with_cookie(mut response: Response, cookie: Option<String>) -> Response {
    if let Some(value) = cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    csrf_token: String,
    email: String,
    error: Option<String>,
}

async fn login_form(State(app): State<AppState>, headers: HeaderMap) -> PageResult {
    if let Some(cookie) = cookies::get(&headers, SESSION_COOKIE)
        && accounts::session(&app, &cookie).await?.is_some()
    {
        return Ok(Redirect::to("/admin").into_response());
    }
    let (csrf_token, set) = form_csrf(&headers, &app);
    let page = LoginPage { csrf_token, email: String::new(), error: None };
    Ok(with_cookie(render(page)?, set))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    email: String,
    password: String,
}

async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    UiForm(form): UiForm<LoginForm>,
) -> PageResult {
    check_form_csrf(&headers, &form.csrf_token)?;
    let ip = client_ip(&headers, peer.ip(), app.config.trust_proxy);
    if let Err(not_until) = app.admin_login_limiter.check_key(&ip) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        return Err(PageError(Error::RateLimited { retry_after_secs: wait.as_secs().max(1) }));
    }
    let password = Secret::new(form.password);
    let lock_key = AccountLockout::key(&form.email);
    // Counted before the password is checked (see `AccountLockout::attempt`); a correct password clears it.
    let attempt = lock_key.as_deref().map(|key| app.admin_lockout.attempt(key, crate::now_unix()));
    let locked = matches!(attempt, Some(Err(_)));
    // A locked email gets the wrong-password answer without its password being checked: a guess made during the
    // lock learns nothing, even when it is right.
    let operator = if locked { None } else { accounts::verify_login(&app, &form.email, &password).await? };
    match operator {
        Some(operator) => {
            if let Some(key) = &lock_key {
                app.admin_lockout.clear(key);
            }
            tracing::info!(operator = %operator.email, "admin signed in");
            signed_in(&app, &operator.id).await
        }
        None => {
            if locked {
                tracing::info!(email = %form.email.trim(), "admin sign-in refused: the email is locked");
            } else {
                tracing::info!(email = %form.email.trim(), "admin sign-in failed");
                if let Some(key) = &lock_key
                    && let Some(Ok(Some(until))) = attempt
                {
                    tracing::warn!(
                        email = %key,
                        until = %crate::format_time(until),
                        "admin sign-in locked for this email after repeated wrong passwords"
                    );
                }
            }
            let page = LoginPage {
                csrf_token: form.csrf_token,
                email: form.email,
                error: Some("Wrong email or password.".into()),
            };
            Ok((StatusCode::UNAUTHORIZED, render(page)?).into_response())
        }
    }
}

/// Starts a session for `operator_id` and sends the browser to the dashboard with its cookie.
async fn signed_in(app: &App, operator_id: &str) -> PageResult {
    let cookie = accounts::start_session(app, operator_id).await?;
    let set = cookies::set(SESSION_COOKIE, &cookie, "/", "Strict", app.config.is_https(), Some(accounts::SESSION_SECS));
    Ok(with_cookie(Redirect::to("/admin").into_response(), Some(set)))
}

#[derive(Template)]
#[template(path = "admin/logout.html")]
struct LogoutPage {
    chrome: Chrome,
}

/// Sign-out reachable by a link, for pages without the top bar (an error page a tenant admin cannot leave
/// otherwise): a form with the session's CSRF token, posting to the real sign-out.
async fn logout_page(session: UiSession) -> PageResult {
    render(LogoutPage { chrome: session.chrome("") })
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, CsrfForm(_): CsrfForm<CsrfOnly>) -> PageResult {
    if let Some(cookie) = cookies::get(&headers, SESSION_COOKIE) {
        accounts::end_session(&app, &cookie).await?;
    }
    let clear = cookies::clear(SESSION_COOKIE, "/", app.config.is_https());
    Ok(with_cookie(Redirect::to("/admin/login").into_response(), Some(clear)))
}

#[derive(Template)]
#[template(path = "admin/setup.html")]
struct SetupPage {
    csrf_token: String,
    token: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct SetupQuery {
    token: Option<String>,
}

fn setup_link_dead() -> PageResult {
    Ok(super::message_page(
        StatusCode::NOT_FOUND,
        "This setup link is not valid",
        "It was used already or has expired. Restart Gatehouse with no operator account to get a new one, or use `gatehouse admin create`.",
    ))
}

async fn setup_form(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<SetupQuery>) -> PageResult {
    let token = q.token.unwrap_or_default();
    if !app.setup.is_valid(&token) {
        return setup_link_dead();
    }
    let (csrf_token, set) = form_csrf(&headers, &app);
    let page = SetupPage { csrf_token, token, email: String::new(), error: None };
    Ok(with_cookie(render(page)?, set))
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    csrf_token: String,
    token: String,
    email: String,
    password: String,
    confirm: String,
}

async fn setup(State(app): State<AppState>, headers: HeaderMap, UiForm(form): UiForm<SetupForm>) -> PageResult {
    check_form_csrf(&headers, &form.csrf_token)?;
    if !app.setup.is_valid(&form.token) {
        return setup_link_dead();
    }
    let password = Secret::new(form.password);
    let problem = if password.expose() != form.confirm {
        Some("The two passwords differ.".to_owned())
    } else {
        match accounts::new_operator(&app.passwords, &form.email, &password, Scope::Operator).await {
            Err(Error::Validation(msg)) => Some(msg),
            Err(other) => return Err(other.into()),
            Ok(mutation) => {
                if !app.setup.take(&form.token) {
                    return setup_link_dead();
                }
                // The link is for a server without operators: one may have been made since (another node of its
                // cluster), and then the link is dead.
                if let Some(node) = app.control.node() {
                    crate::cluster::node::linearize(&node).await?;
                }
                if app.control.read(crate::control::tables::count_operators).await? > 0 {
                    return setup_link_dead();
                }
                let Some(id) = (match &mutation {
                    crate::control::Mutation::CreateOperator { id, .. } => Some(id.clone()),
                    _ => None,
                }) else {
                    return Err(Error::internal("setup built the wrong mutation").into());
                };
                app.control.apply(mutation).await?;
                tracing::info!(email = %form.email.trim(), "first operator created through the setup link");
                return signed_in(&app, &id).await;
            }
        }
    };
    let page = SetupPage { csrf_token: form.csrf_token, token: form.token, email: form.email, error: problem };
    Ok((StatusCode::BAD_REQUEST, render(page)?).into_response())
}

// ---- signed-in pages ----

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    tenants: u64,
    suspended: u64,
    pools_open: u64,
    uptime: String,
    version: &'static str,
    public_url: String,
    scope: String,
    mail_warning: Option<String>,
    /// Backups off, or degraded (the bucket does not answer, uploads stalled).
    backup_warning: Option<String>,
    /// `hour` or `day`: the plots' window.
    range: &'static str,
    plots: Vec<super::plot::Plot>,
}

#[derive(Deserialize)]
struct DashboardQuery {
    /// `hour` (the default) or `day`.
    range: Option<String>,
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

async fn dashboard(State(app): State<AppState>, session: UiSession, Query(q): Query<DashboardQuery>) -> PageResult {
    // A tenant admin has one tenant: its overview is their home, not the node's.
    if let Scope::Tenant(slug) = &session.actor.scope {
        return Ok(Redirect::to(&format!("/admin/tenants/{slug}")).into_response());
    }
    let registry = app.tenants.clone();
    let (tenants, suspended) = app.control.read(tables::count_tenants).await?;
    let pools_open = tokio::task::spawn_blocking(move || registry.open_pools()).await.map_err(Error::from)?;
    let window = Window::parse(q.range.as_deref());
    render(DashboardPage {
        chrome: session.chrome("dashboard"),
        tenants,
        suspended,
        pools_open,
        uptime: human_duration(app.started_at.elapsed().as_secs()),
        version: env!("CARGO_PKG_VERSION"),
        public_url: app.config.public_url.clone(),
        scope: session.actor.scope.to_string(),
        mail_warning: mail_warning(&app, &session).await?,
        backup_warning: match app.backup.as_ref().map(|b| b.health()) {
            None => Some("Backups are off (no GATEHOUSE_BACKUP_URL): a lost disk loses every tenant.".into()),
            Some(crate::backup::Health::Degraded(why)) => Some(format!("Backups are degraded: {why}")),
            Some(_) => None,
        },
        range: window.as_str(),
        plots: super::node_plots::plots(&app, window),
    })
}

/// Why mail may not be going out: dev mode, or tenants with no transport at all (their mail waits in the dev
/// mailbox).
async fn mail_warning(app: &App, session: &UiSession) -> Result<Option<String>, PageError> {
    if app.config.mail.mode == crate::config::MailMode::Dev {
        return Ok(Some(
            "GATEHOUSE_MAIL_MODE=dev: no mail is sent; every message is kept in its tenant's dev mailbox.".into(),
        ));
    }
    if app.mailer.has_global() {
        return Ok(None);
    }
    let with_smtp = app.control.read(tables::tenants_with_smtp).await?;
    let without = match &session.actor.scope {
        Scope::Operator => {
            let (all, _) = app.control.read(tables::count_tenants).await?;
            all.saturating_sub(with_smtp.len() as u64)
        }
        Scope::Tenant(slug) => u64::from(!with_smtp.iter().any(|s| s == slug.as_str())),
    };
    Ok((without > 0).then(|| {
        format!(
            "{without} tenant(s) have no SMTP settings and there is no GATEHOUSE_SMTP_URL: their mail is kept in \
             the dev mailbox instead of being sent. Open a tenant's Email settings to fix this."
        )
    }))
}

struct TenantRow {
    slug: String,
    name: String,
    status: &'static str,
    created: String,
    /// The home node's id, or "—".
    home: String,
}

#[derive(Template)]
#[template(path = "admin/tenants.html")]
struct TenantsPage {
    chrome: Chrome,
    is_operator: bool,
    tenants: Vec<TenantRow>,
    next_cursor: Option<String>,
    form_slug: String,
    form_name: String,
}

#[derive(Deserialize)]
struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

async fn tenants_page(
    app: &App,
    session: &UiSession,
    cursor: Option<String>,
    mut chrome: Chrome,
    form: (String, String),
) -> PageResult {
    let only = match &session.actor.scope {
        Scope::Operator => None,
        Scope::Tenant(slug) => Some(slug.clone()),
    };
    let cursor = cursor.filter(|c| TenantSlug::parse(c).is_ok());
    let (items, next_cursor) = tenants::list(app, cursor, 50, only).await?;
    let tenants = items
        .into_iter()
        .map(|t| TenantRow {
            slug: t.slug.to_string(),
            name: t.name,
            status: t.status.as_str(),
            created: crate::display_time(t.created_at),
            home: t.home_node.map_or_else(|| "—".to_owned(), |id| id.to_string()),
        })
        .collect();
    chrome.nav = "tenants";
    let status = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = TenantsPage {
        chrome,
        is_operator: session.actor.scope == Scope::Operator,
        tenants,
        next_cursor,
        form_slug: form.0,
        form_name: form.1,
    };
    Ok((status, render(page)?).into_response())
}

fn notice_for(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "created" => "Tenant created.",
        "suspended" => {
            "Tenant suspended: until it is resumed, its hosted pages say it is temporarily unavailable and its APIs \
             answer 403."
        }
        "resumed" => "Tenant resumed.",
        "deleted" => "Tenant deleted; its file was moved to the archive.",
        "unconfirmed" => "Nothing was changed: confirm the action in the box that opens under its button.",
        "revoked" => "Token revoked.",
        _ => return None,
    };
    Some(text.to_owned())
}

async fn tenant_list(State(app): State<AppState>, session: UiSession, Query(q): Query<ListQuery>) -> PageResult {
    let chrome = session.chrome_with("tenants", notice_for(q.done.as_deref()));
    tenants_page(&app, &session, q.cursor, chrome, Default::default()).await
}

#[derive(Deserialize)]
struct CreateTenantForm {
    slug: String,
    name: String,
}

async fn tenant_create(
    State(app): State<AppState>,
    session: UiSession,
    CsrfForm(form): CsrfForm<CreateTenantForm>,
) -> PageResult {
    session.actor.require_operator()?;
    let slug = form.slug.trim().to_owned();
    let name = form.name.trim().to_owned();
    let result = match TenantSlug::parse(&slug) {
        Ok(parsed) => tenants::create(&app, parsed, name.clone(), TenantSettings::default(), None).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/admin/tenants?done=created").into_response()),
        Err(err @ (Error::Validation(_) | Error::Conflict(_))) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(err.to_string());
            tenants_page(&app, &session, None, chrome, (slug, name)).await
        }
        Err(other) => Err(other.into()),
    }
}

struct TokenRow {
    id: String,
    name: String,
    scope: String,
    created: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "admin/tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenRow>,
    new_secret: Option<String>,
    default_scope: String,
}

async fn tokens_page(app: &App, session: &UiSession, chrome: Chrome, new_secret: Option<String>) -> PageResult {
    let date = crate::display_time;
    let tokens = tokens::visible_tokens(app, &session.actor)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            scope: t.scope.to_string(),
            created: date(t.created_at),
            expires: t.expires_at.map_or_else(|| "never".to_owned(), date),
        })
        .collect();
    let status = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = TokensPage { chrome, tokens, new_secret, default_scope: session.actor.scope.to_string() };
    Ok((status, render(page)?).into_response())
}

async fn token_list(State(app): State<AppState>, session: UiSession, Query(q): Query<ListQuery>) -> PageResult {
    let chrome = session.chrome_with("tokens", notice_for(q.done.as_deref()));
    tokens_page(&app, &session, chrome, None).await
}

#[derive(Deserialize)]
struct CreateTokenForm {
    name: String,
    scope: String,
    expires_in_days: Option<String>,
}

async fn token_create(
    State(app): State<AppState>,
    session: UiSession,
    CsrfForm(form): CsrfForm<CreateTokenForm>,
) -> PageResult {
    let request = (|| -> Result<NewToken, Error> {
        let scope = match form.scope.trim() {
            "" => None,
            raw => Some(Scope::parse(raw)?),
        };
        let expires_in_days = match form.expires_in_days.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse().map_err(|_| Error::validation("expires in days must be a whole number"))?),
        };
        Ok(NewToken { name: form.name.trim().to_owned(), scope, expires_in_days })
    })();
    let created = match request {
        Ok(req) => tokens::create_token(&app, &session.actor, req).await,
        Err(err) => Err(err),
    };
    let mut chrome = session.chrome("tokens");
    match created {
        Ok(created) => {
            chrome.notice = Some(format!("Token \u{201c}{}\u{201d} created.", created.token.name));
            tokens_page(&app, &session, chrome, Some(created.secret)).await
        }
        Err(err @ (Error::Validation(_) | Error::Forbidden(_) | Error::TenantNotFound)) => {
            chrome.error = Some(err.to_string());
            tokens_page(&app, &session, chrome, None).await
        }
        Err(other) => Err(other.into()),
    }
}

async fn token_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    tokens::delete_token(&app, &session.actor, &id).await?;
    Ok(Redirect::to("/admin/tokens?done=revoked").into_response())
}
