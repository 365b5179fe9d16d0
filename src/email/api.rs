//! Admin API for a tenant's email: SMTP settings, test mail, the outbox and the dev mailbox.
//!
//! - `GET|PUT|DELETE /admin/api/v1/tenants/{slug}/smtp`
//! - `POST /admin/api/v1/tenants/{slug}/emails/test` `{"to"}` → 202 `{"id"}`
//! - `GET /admin/api/v1/tenants/{slug}/outbox?status=&kind=&limit=&cursor=`, `GET …/outbox/{id}`,
//!   `POST …/outbox/{id}/retry`
//! - `GET /admin/api/v1/tenants/{slug}/mailbox?limit=&cursor=`
//!
//! Who may call: every route needs an operator or an actor scoped to that tenant. Saving SMTP settings is
//! stricter for a tenant-scoped actor (see `save_smtp`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::Actor;
use crate::app::{App, AppState};
use crate::config::MailMode;
use crate::control::{Mutation, tables};
use crate::db;
use crate::email::outbox::{self, Filter, Kind};
use crate::email::smtp::{SmtpRecord, TlsMode, check_host};
use crate::email::{EmailKind, parse_address};
use crate::error::{Error, Result};
use crate::http::extract::ApiJson;
use crate::http::openapi::ApiErrors;
use crate::tenants::TenantSlug;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read_smtp, put_smtp, delete_smtp))
        .routes(routes!(send_test))
        .routes(routes!(list_outbox))
        .routes(routes!(read_outbox))
        .routes(routes!(retry_outbox))
        .routes(routes!(list_mailbox))
}

/// The body of `PUT …/smtp`. A missing `password` keeps the stored one; an empty one removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpInput {
    /// A host name or an IP address.
    pub host: String,
    /// 1-65535.
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    #[schema(value_type = TlsMode)]
    pub tls: String,
    pub username: Option<String>,
    /// Missing (or `null`): keep the stored password; `""`: remove it. Changing the host, port, TLS mode or
    /// username while a password is stored needs it sent again (422 `password_required`).
    pub password: Option<String>,
    pub from_email: String,
    pub from_name: Option<String>,
}

/// How a tenant's mail is delivered right now, for the API and the admin UI.
#[derive(Debug, Serialize, ToSchema)]
pub struct SmtpView {
    /// Whether the tenant has SMTP settings of its own.
    pub configured: bool,
    /// `tenant` (its own SMTP), `global` (GATEHOUSE_SMTP_URL) or `dev_mailbox`.
    pub route: &'static str,
    /// The server's mail mode: `dev` (every mail goes to the dev mailbox) or `smtp`.
    pub mode: &'static str,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<TlsMode>,
    pub username: Option<String>,
    /// Whether a password is stored (it is never shown).
    pub password_set: bool,
    pub from_email: Option<String>,
    pub from_name: Option<String>,
}

pub fn smtp_view(app: &App, record: Option<&SmtpRecord>) -> SmtpView {
    let dev = app.mailer.mode() == MailMode::Dev;
    let route = match (dev, record.is_some(), app.mailer.has_global()) {
        (true, _, _) => "dev_mailbox",
        (false, true, _) => "tenant",
        (false, false, true) => "global",
        (false, false, false) => "dev_mailbox",
    };
    SmtpView {
        configured: record.is_some(),
        route,
        mode: if dev { "dev" } else { "smtp" },
        host: record.map(|r| r.host.clone()),
        port: record.map(|r| r.port),
        tls: record.map(|r| r.tls),
        username: record.and_then(|r| r.username.clone()),
        password_set: record.is_some_and(|r| r.password_sealed.is_some()),
        from_email: record.map(|r| r.from_email.clone()),
        from_name: record.and_then(|r| r.from_name.clone()),
    }
}

pub async fn load_smtp(app: &App, slug: &TenantSlug) -> Result<Option<SmtpRecord>> {
    let slug = slug.clone();
    app.control.read(move |conn| tables::tenant_smtp(conn, &slug)).await
}

/// How the tenant's mail is delivered: its SMTP settings (without the password), or the global or dev route.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/smtp",
    tag = "email",
    operation_id = "email_read_smtp",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The tenant's mail route and settings", body = SmtpView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_smtp(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<SmtpView>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let record = load_smtp(&app, &slug).await?;
    Ok(Json(smtp_view(&app, record.as_ref())))
}

/// Checks `input` and seals its password; `current` supplies the password when none is given.
pub fn smtp_record(app: &App, slug: &TenantSlug, input: SmtpInput, current: Option<&SmtpRecord>) -> Result<SmtpRecord> {
    let host = input.host.trim().to_owned();
    check_host(&host).map_err(|why| Error::validation(format!("host: {why}")))?;
    if input.port == 0 {
        return Err(Error::validation("port must be 1-65535"));
    }
    let tls = TlsMode::parse(input.tls.trim()).ok_or_else(|| Error::validation("tls must be none, starttls or tls"))?;
    let from_email = parse_address(&input.from_email)?.to_string();
    let clean = |field: &str, value: Option<String>, max: usize| -> Result<Option<String>> {
        match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) if v.chars().count() <= max && !v.chars().any(char::is_control) => Ok(Some(v)),
            Some(_) => Err(Error::validation(format!("{field} must be at most {max} characters of text"))),
        }
    };
    let username = clean("username", input.username, 256)?;
    let from_name = clean("from_name", input.from_name, 200)?;
    let password_sealed = match input.password {
        None => current.and_then(|c| c.password_sealed.clone()),
        Some(p) if p.is_empty() => None,
        Some(p) if p.len() > 1024 => return Err(Error::validation("password must be at most 1024 bytes")),
        Some(p) => Some(app.master_key.seal(p.as_bytes(), &SmtpRecord::password_context(slug))),
    };
    if password_sealed.is_some() && username.is_none() {
        return Err(Error::validation("a password needs a username"));
    }
    Ok(SmtpRecord {
        host,
        port: input.port,
        tls,
        username,
        password_sealed,
        from_email,
        from_name,
        updated_at: 0,
        guarded: false,
    })
}

/// Saves a tenant's SMTP settings through the control plane and drops its cached transport.
///
/// Rules that keep the stored password where it belongs:
/// - Changing where the credentials go (host, port, TLS mode, username) without sending the password again is
///   refused with `password_required`: otherwise anyone who may edit the settings could point them at their own
///   server and receive the stored password.
/// - A tenant-scoped actor gets the webhooks' private-address guard on the host (unless
///   GATEHOUSE_WEBHOOK_ALLOW_PRIVATE is set) and cannot send credentials over `tls: none`; an operator may do
///   both (they own the machine, e.g. a relay on localhost).
pub async fn save_smtp(app: &App, actor: &Actor, slug: &TenantSlug, input: SmtpInput) -> Result<SmtpRecord> {
    let operator = actor.require_operator().is_ok();
    if !operator && !app.config.webhook_allow_private {
        crate::webhooks::check_host_allowed(input.host.trim(), input.port).await?;
    }
    let current = load_smtp(app, slug).await?;
    let password_sent = input.password.is_some();
    let mut record = smtp_record(app, slug, input, current.as_ref())?;
    if let Some(current) = &current
        && current.password_sealed.is_some()
        && !password_sent
        && (current.host != record.host
            || current.port != record.port
            || current.tls != record.tls
            || current.username != record.username)
    {
        return Err(Error::PasswordRequired(
            "changing the host, port, TLS mode or username needs the password sent again",
        ));
    }
    if !operator && record.tls == TlsMode::None && (record.username.is_some() || record.password_sealed.is_some()) {
        return Err(Error::validation("tls: credentials are only sent over starttls or tls"));
    }
    record.guarded = !operator && !app.config.webhook_allow_private;
    // Strictly increasing, so a cached transport built from older settings is never reused.
    record.updated_at = crate::next_version(current.as_ref().map(|c| c.updated_at));
    app.control.apply(Mutation::SetTenantSmtp { slug: slug.clone(), smtp: Some(record.clone()) }).await?;
    app.mailer.forget(slug);
    tracing::info!(tenant = %slug, host = %record.host, port = record.port, "tenant SMTP settings saved");
    Ok(record)
}

pub async fn remove_smtp(app: &App, slug: &TenantSlug) -> Result<()> {
    app.control.apply(Mutation::SetTenantSmtp { slug: slug.clone(), smtp: None }).await?;
    app.mailer.forget(slug);
    Ok(())
}

/// Saves the tenant's SMTP settings.
///
/// Changing the host, port, TLS mode or username while a password is stored needs the password sent again
/// (422 `password_required`). A tenant-scoped actor cannot point them at a private address (unless the server
/// allows it) nor send credentials over `tls: none`.
#[utoipa::path(
    put,
    path = "/admin/api/v1/tenants/{slug}/smtp",
    tag = "email",
    operation_id = "email_put_smtp",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = SmtpInput,
    responses((status = 200, description = "The settings as saved", body = SmtpView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn put_smtp(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<SmtpInput>,
) -> Result<Json<SmtpView>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    let record = save_smtp(&app, &actor, &slug, input).await?;
    Ok(Json(smtp_view(&app, Some(&record))))
}

/// Removes the tenant's SMTP settings: its mail goes the global route (or the dev mailbox) again.
#[utoipa::path(
    delete,
    path = "/admin/api/v1/tenants/{slug}/smtp",
    tag = "email",
    operation_id = "email_delete_smtp",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    responses((status = 200, description = "The mail route without tenant settings", body = SmtpView), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn delete_smtp(State(app): State<AppState>, actor: Actor, Path(slug): Path<String>) -> Result<Json<SmtpView>> {
    let slug = TenantSlug::parse(&slug)?;
    actor.require_tenant(&slug)?;
    app.control.tenant(&slug).await?.ok_or(Error::TenantNotFound)?;
    remove_smtp(&app, &slug).await?;
    Ok(Json(smtp_view(&app, None)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TestMail {
    /// One email address.
    to: String,
}

/// A queued test mail.
#[derive(Serialize, ToSchema)]
struct TestMailQueued {
    /// The outbox row of the mail.
    id: String,
}

/// Queues a test mail through the tenant's mail route.
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/emails/test",
    tag = "email",
    operation_id = "email_send_test",
    params(("slug" = TenantSlug, Path, description = "The tenant")),
    request_body = TestMail,
    responses((status = 202, description = "Queued in the outbox", body = TestMailQueued), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn send_test(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<TestMail>,
) -> Result<(StatusCode, Json<TestMailQueued>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let to = parse_address(&body.to)?.to_string();
    let id = db.write(move |tx| outbox::enqueue_email(tx, EmailKind::Test { to })).await?;
    Ok((StatusCode::ACCEPTED, Json(TestMailQueued { id })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OutboxQuery {
    /// `pending`, `sending`, `sent` or `dead`.
    status: Option<String>,
    /// `email` or `webhook`.
    kind: Option<String>,
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of outbox rows (mail and webhook deliveries), newest first.
#[derive(Serialize, ToSchema)]
pub struct OutboxPage {
    pub items: Vec<outbox::OutboxItem>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Checks list query values shared by the outbox and deliveries listings.
pub fn outbox_filter(
    status: Option<String>,
    kind: Option<&str>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<Filter> {
    let status = status.filter(|s| !s.is_empty());
    if let Some(s) = &status
        && !outbox::STATUSES.contains(&s.as_str())
    {
        return Err(Error::validation("status must be pending, sending, sent or dead"));
    }
    let kind = match kind.filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| Error::validation("kind must be email or webhook"))?),
    };
    let limit = crate::http::extract::page_limit(limit)?;
    Ok(Filter { status, kind, webhook_id: None, cursor: cursor.filter(|c| !c.is_empty()), limit })
}

/// Lists the tenant's outbox: queued, sent and dead mail and webhook deliveries.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/outbox",
    tag = "email",
    operation_id = "email_list_outbox",
    params(("slug" = TenantSlug, Path, description = "The tenant"), OutboxQuery),
    responses((status = 200, description = "A page of outbox rows", body = OutboxPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_outbox(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<OutboxPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let filter = outbox_filter(q.status, q.kind.as_deref(), q.limit, q.cursor)?;
    let (items, next_cursor) = db::with_conn(&db.pool, move |conn| outbox::list(conn, &filter)).await?;
    Ok(Json(OutboxPage { items, next_cursor }))
}

/// Reads one outbox row (without its payload, which can hold one-time links).
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/outbox/{id}",
    tag = "email",
    operation_id = "email_read_outbox",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The outbox row"),
    ),
    responses((status = 200, description = "The outbox row", body = outbox::OutboxItem), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn read_outbox(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Json<outbox::OutboxItem>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    Ok(Json(db::with_conn(&db.pool, move |conn| outbox::get(conn, &id)).await?))
}

/// Retries a dead outbox row: it is pending again with its attempts reset (anything but a dead row is a conflict).
#[utoipa::path(
    post,
    path = "/admin/api/v1/tenants/{slug}/outbox/{id}/retry",
    tag = "email",
    operation_id = "email_retry_outbox",
    params(
        ("slug" = TenantSlug, Path, description = "The tenant"),
        ("id" = String, Path, description = "The outbox row"),
    ),
    responses((status = 202, description = "The row, pending again", body = outbox::OutboxItem), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn retry_outbox(
    State(app): State<AppState>,
    actor: Actor,
    Path((slug, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<outbox::OutboxItem>)> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let item = db
        .write(move |tx| {
            outbox::retry(tx, &id)?;
            outbox::get(tx, &id)
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(item)))
}

/// A message the dev mailbox caught instead of sending it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailboxItem {
    pub id: String,
    pub message_id: String,
    pub template: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

const MAILBOX_COLUMNS: &str = "id, message_id, template, from_addr, to_addr, subject, html, text, created_at";

fn mailbox_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxItem> {
    Ok(MailboxItem {
        id: r.get(0)?,
        message_id: r.get(1)?,
        template: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        subject: r.get(5)?,
        html: r.get(6)?,
        text: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// One dev-mailbox message.
pub fn mailbox_get(conn: &Connection, id: &str) -> Result<MailboxItem> {
    use rusqlite::OptionalExtension;
    conn.query_row(&format!("SELECT {MAILBOX_COLUMNS} FROM mailbox WHERE id = ?1"), [id], mailbox_from_row)
        .optional()?
        .ok_or(Error::NotFound("message"))
}

/// Dev-mailbox messages, newest first, after `cursor` (an id).
pub fn mailbox_page(conn: &Connection, cursor: Option<&str>, limit: u32) -> Result<(Vec<MailboxItem>, Option<String>)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailbox WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let items: Vec<MailboxItem> =
        stmt.query_map(params![cursor, limit], mailbox_from_row)?.collect::<rusqlite::Result<_>>()?;
    let next = (items.len() == limit as usize).then(|| items.last().map(|i| i.id.clone())).flatten();
    Ok((items, next))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// 1-200, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of dev-mailbox messages, newest first.
#[derive(Serialize, ToSchema)]
struct MailboxPage {
    items: Vec<MailboxItem>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

/// Lists the messages the dev mailbox caught for the tenant.
#[utoipa::path(
    get,
    path = "/admin/api/v1/tenants/{slug}/mailbox",
    tag = "email",
    operation_id = "email_list_mailbox",
    params(("slug" = TenantSlug, Path, description = "The tenant"), PageQuery),
    responses((status = 200, description = "A page of messages", body = MailboxPage), ApiErrors),
    security(("admin_token" = []), ("admin_session" = []))
)]
async fn list_mailbox(
    State(app): State<AppState>,
    actor: Actor,
    Path(slug): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<MailboxPage>> {
    let (_, db) = actor.open_tenant(&app, &slug).await?;
    let limit = crate::http::extract::page_limit(q.limit)?;
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let (items, next_cursor) =
        db::with_conn(&db.pool, move |conn| mailbox_page(conn, cursor.as_deref(), limit)).await?;
    Ok(Json(MailboxPage { items, next_cursor }))
}
