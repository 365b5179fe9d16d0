//! Admin UI pages of a tenant's email and webhooks: SMTP settings with "send test mail", the outbox with retry,
//! the dev mailbox (mail HTML shown in a sandboxed iframe served with its own locked-down CSP), and webhooks
//! with create / enable / disable / delete / ping and their deliveries with redelivery.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::CsrfOnly;
use super::{Chrome, CsrfForm, UiSession};
use crate::app::{App, AppState};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::email::api::{self as email_api, MailboxItem, SmtpInput, SmtpView};
use crate::email::outbox::{self, OutboxItem};
use crate::email::{EmailKind, parse_address};
use crate::error::Error;
use crate::http::page::{PageError, PageResult, UiForm, render};
use crate::webhooks::api::{CreateWebhook, create_webhook, send_ping};
use crate::webhooks::{self, Webhook, events};

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}";
    Router::new()
        .route(&format!("{base}/email"), get(email_page))
        .route(&format!("{base}/email/smtp"), post(smtp_save))
        .route(&format!("{base}/email/smtp/delete"), post(smtp_delete))
        .route(&format!("{base}/email/test"), post(test_send))
        .route(&format!("{base}/outbox"), get(outbox_page))
        .route(&format!("{base}/outbox/{{id}}/retry"), post(outbox_retry))
        .route(&format!("{base}/mailbox"), get(mailbox_page))
        .route(&format!("{base}/mailbox/{{id}}"), get(mailbox_message))
        .route(&format!("{base}/mailbox/{{id}}/body"), get(mailbox_body))
        .route(&format!("{base}/webhooks"), get(webhooks_page).post(webhook_create))
        .route(&format!("{base}/webhooks/{{id}}"), get(webhook_page))
        .route(&format!("{base}/webhooks/{{id}}/{{action}}"), post(webhook_action))
        .route(&format!("{base}/webhooks/{{id}}/deliveries/{{delivery}}/redeliver"), post(webhook_redeliver))
}

/// The tenant a page is about, checked against the session's scope.
async fn open(app: &AppState, session: &UiSession, slug: &str) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "saved" => "SMTP settings saved.",
        "removed" => "SMTP settings removed; mail uses the global transport or the dev mailbox.",
        "queued" => "Test mail queued; see the outbox for its delivery.",
        "retried" => "Message queued again.",
        "deleted" => "Webhook deleted.",
        "pinged" => "Ping queued; see the webhook's deliveries.",
        "enabled" => "Webhook enabled.",
        "disabled" => "Webhook disabled: it gets no new events.",
        "redelivered" => "Delivery queued again.",
        _ => return None,
    };
    Some(text.to_owned())
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

// ---- SMTP settings and test mail ----

#[derive(Template)]
#[template(path = "admin/email.html")]
struct EmailPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    view: SmtpView,
    form: SmtpForm,
    test_to: String,
}

#[derive(Deserialize, Default)]
struct SmtpForm {
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    tls: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    from_email: String,
    #[serde(default)]
    from_name: String,
}

async fn render_email_page(
    app: &App,
    tenant: &Tenant,
    mut chrome: Chrome,
    form: Option<SmtpForm>,
    test_to: String,
) -> PageResult {
    let record = email_api::load_smtp(app, &tenant.slug).await?;
    let view = email_api::smtp_view(app, record.as_ref());
    let form = form.unwrap_or_else(|| SmtpForm {
        host: view.host.clone().unwrap_or_default(),
        port: view.port.map_or_else(|| "587".into(), |p| p.to_string()),
        tls: view.tls.map_or("starttls", |t| t.as_str()).to_owned(),
        username: view.username.clone().unwrap_or_default(),
        from_email: view.from_email.clone().unwrap_or_default(),
        from_name: view.from_name.clone().unwrap_or_default(),
        ..SmtpForm::default()
    });
    chrome.nav = "tenants";
    let status = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = EmailPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "email",
        view,
        form,
        test_to,
    };
    Ok((status, render(page)?).into_response())
}

async fn email_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render_email_page(&app, &tenant, chrome, None, String::new()).await
}

async fn smtp_save(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<SmtpForm>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    let port = form.port.trim().parse::<u16>().map_err(|_| Error::validation("port must be 1-65535"));
    let result = match port {
        Ok(port) => {
            let input = SmtpInput {
                host: form.host.clone(),
                port,
                tls: form.tls.clone(),
                username: Some(form.username.clone()),
                // An empty password field keeps the stored password.
                password: (!form.password.is_empty()).then(|| form.password.clone()),
                from_email: form.from_email.clone(),
                from_name: Some(form.from_name.clone()),
            };
            email_api::save_smtp(&app, &session.actor, &tenant.slug, input).await.map(|_| ())
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/admin/tenants/{slug}/email?done=saved")).into_response()),
        Err(err @ (Error::Validation(_) | Error::PasswordRequired(_))) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(err.to_string());
            let form = SmtpForm { password: String::new(), ..form };
            render_email_page(&app, &tenant, chrome, Some(form), String::new()).await
        }
        Err(other) => Err(other.into()),
    }
}

async fn smtp_delete(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (tenant, _) = open(&app, &session, &slug).await?;
    email_api::remove_smtp(&app, &tenant.slug).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/email?done=removed")).into_response())
}

#[derive(Deserialize)]
struct TestForm {
    #[serde(default)]
    to: String,
}

async fn test_send(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<TestForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    match parse_address(&form.to) {
        Ok(to) => {
            let to = to.to_string();
            db.write(move |tx| outbox::enqueue_email(tx, EmailKind::Test { to })).await?;
            Ok(Redirect::to(&format!("/admin/tenants/{slug}/email?done=queued")).into_response())
        }
        Err(err) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(err.to_string());
            render_email_page(&app, &tenant, chrome, None, form.to).await
        }
    }
}

// ---- outbox ----

#[derive(Template)]
#[template(path = "admin/outbox.html")]
struct OutboxPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    rows: Vec<OutboxRow>,
    retry_base: String,
    retry_action: &'static str,
    statuses: Vec<(&'static str, bool)>,
    kinds: Vec<(&'static str, bool)>,
    status: String,
    kind: String,
    next_cursor: Option<String>,
}

struct OutboxRow {
    item: OutboxItem,
    created: String,
    next_attempt: String,
}

fn outbox_rows(items: Vec<OutboxItem>) -> Vec<OutboxRow> {
    items
        .into_iter()
        .map(|item| OutboxRow {
            created: crate::display_time(item.created_at),
            next_attempt: crate::display_time(item.next_attempt_at / 1000),
            item,
        })
        .collect()
}

#[derive(Deserialize)]
struct OutboxQuery {
    status: Option<String>,
    kind: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

async fn outbox_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<OutboxQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let filter = email_api::outbox_filter(q.status.clone(), q.kind.as_deref(), Some(50), q.cursor)?;
    let (items, next_cursor) = db::with_conn(&db.pool, move |conn| outbox::list(conn, &filter)).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    let status = q.status.unwrap_or_default();
    let kind = q.kind.unwrap_or_default();
    render(OutboxPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "outbox",
        rows: outbox_rows(items),
        retry_base: format!("/admin/tenants/{}/outbox", tenant.slug),
        retry_action: "retry",
        statuses: outbox::STATUSES.iter().map(|s| (*s, *s == status)).collect(),
        kinds: ["email", "webhook"].into_iter().map(|k| (k, k == kind)).collect(),
        status,
        kind,
        next_cursor,
    })
}

async fn outbox_retry(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    db.write(move |tx| outbox::retry(tx, &id)).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/outbox?done=retried")).into_response())
}

// ---- dev mailbox ----

#[derive(Template)]
#[template(path = "admin/mailbox.html")]
struct MailboxPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    items: Vec<(MailboxItem, String)>,
    next_cursor: Option<String>,
    selected: Option<MailboxItem>,
}

#[derive(Deserialize)]
struct CursorQuery {
    cursor: Option<String>,
}

async fn mailbox_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<CursorQuery>,
) -> PageResult {
    mailbox_view(app, session, slug, q.cursor, None).await
}

async fn mailbox_message(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
) -> PageResult {
    mailbox_view(app, session, slug, None, Some(id)).await
}

async fn mailbox_view(
    app: AppState,
    session: UiSession,
    slug: String,
    cursor: Option<String>,
    selected: Option<String>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let (items, next_cursor, selected) = db::with_conn(&db.pool, move |conn| {
        let (items, next) = email_api::mailbox_page(conn, cursor.as_deref().filter(|c| !c.is_empty()), 50)?;
        let selected = match selected {
            None => None,
            Some(id) => Some(email_api::mailbox_get(conn, &id)?),
        };
        Ok((items, next, selected))
    })
    .await?;
    let items = items.into_iter().map(|i| (crate::display_time(i.created_at), i)).map(|(d, i)| (i, d)).collect();
    render(MailboxPage {
        chrome: session.chrome("tenants"),
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "mailbox",
        items,
        next_cursor,
        selected,
    })
}

/// The mail's HTML for the preview iframe: scripts, forms, plugins and every fetch but images are blocked by
/// the CSP `sandbox`, and only this site may frame it.
async fn mailbox_body(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    let item = db::with_conn(&db.pool, move |conn| email_api::mailbox_get(conn, &id)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'",
            ),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        item.html,
    )
        .into_response())
}

// ---- webhooks ----

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    webhooks: Vec<Webhook>,
    event_choices: Vec<EventChoice>,
    new_secret: Option<(String, String)>,
    form_url: String,
    form_description: String,
}

struct EventChoice {
    name: &'static str,
    about: &'static str,
    checked: bool,
}

async fn render_webhooks(
    tenant: &Tenant,
    db: &TenantDb,
    mut chrome: Chrome,
    new_secret: Option<(String, String)>,
    form: (String, String, Vec<String>),
) -> PageResult {
    let webhooks = db::with_conn(&db.pool, |conn| webhooks::list(conn)).await?;
    chrome.nav = "tenants";
    let status = if chrome.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = WebhooksPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "webhooks",
        webhooks,
        event_choices: std::iter::once(&("*", "every event, including those added later"))
            .chain(events::CATALOGUE)
            .map(|(name, about)| EventChoice { name, about, checked: form.2.iter().any(|e| e == name) })
            .collect(),
        new_secret,
        form_url: form.0,
        form_description: form.1,
    };
    Ok((status, render(page)?).into_response())
}

async fn webhooks_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render_webhooks(&tenant, &db, chrome, None, Default::default()).await
}

/// The create form: `url`, `description` and one `events` entry per ticked box.
async fn webhook_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    UiForm(fields): UiForm<Vec<(String, String)>>,
) -> PageResult {
    let mut values: HashMap<&str, &str> = HashMap::new();
    let mut chosen = Vec::new();
    for (key, value) in &fields {
        if key == "events" {
            chosen.push(value.clone());
        } else {
            values.insert(key, value);
        }
    }
    session.check_csrf(values.get("csrf_token").copied().unwrap_or_default())?;
    let (tenant, db) = open(&app, &session, &slug).await?;
    let url = values.get("url").copied().unwrap_or_default().to_owned();
    let description = values.get("description").copied().unwrap_or_default().to_owned();
    let body = CreateWebhook { url: url.clone(), events: chosen.clone(), description: description.clone() };
    match create_webhook(&app, &db, body).await {
        Ok((webhook, secret)) => {
            let mut chrome = session.chrome("tenants");
            chrome.notice = Some("Webhook created. Copy its signing secret now: it is not shown again.".into());
            let shown = Some((webhook.url, secret));
            render_webhooks(&tenant, &db, chrome, shown, Default::default()).await
        }
        Err(err @ (Error::Validation(_) | Error::Conflict(_))) => {
            let mut chrome = session.chrome("tenants");
            chrome.error = Some(err.to_string());
            render_webhooks(&tenant, &db, chrome, None, (url, description, chosen)).await
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "admin/webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    webhook: Webhook,
    rows: Vec<OutboxRow>,
    retry_base: String,
    retry_action: &'static str,
    next_cursor: Option<String>,
}

async fn webhook_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<OutboxQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let mut filter = email_api::outbox_filter(q.status, Some("webhook"), Some(50), q.cursor)?;
    filter.webhook_id = Some(id.clone());
    let (webhook, (items, next_cursor)) =
        db::with_conn(&db.pool, move |conn| Ok((webhooks::get(conn, &id)?, outbox::list(conn, &filter)?))).await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
    render(WebhookPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "webhooks",
        retry_base: format!("/admin/tenants/{}/webhooks/{}/deliveries", tenant.slug, webhook.id),
        retry_action: "redeliver",
        webhook,
        rows: outbox_rows(items),
        next_cursor,
    })
}

async fn webhook_action(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id, action)): Path<(String, String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    let back = |done: &str| Redirect::to(&format!("/admin/tenants/{slug}/webhooks?done={done}")).into_response();
    let to_page =
        |done: &str| Redirect::to(&format!("/admin/tenants/{slug}/webhooks/{id}?done={done}")).into_response();
    match action.as_str() {
        "delete" => {
            let id = id.clone();
            db::with_conn(&db.pool, move |conn| webhooks::delete(conn, &id)).await?;
            Ok(back("deleted"))
        }
        "ping" => {
            send_ping(&db, id.clone()).await?;
            Ok(to_page("pinged"))
        }
        "enable" | "disable" => {
            let (hook, enabled) = (id.clone(), action == "enable");
            db::with_conn(&db.pool, move |conn| webhooks::update(conn, &hook, None, None, None, Some(enabled))).await?;
            Ok(back(if enabled { "enabled" } else { "disabled" }))
        }
        _ => Err(Error::NotFound("action").into()),
    }
}

async fn webhook_redeliver(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id, delivery)): Path<(String, String, String)>,
    CsrfForm(_): CsrfForm<CsrfOnly>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    let hook = id.clone();
    db.write(move |tx| outbox::redeliver(tx, &hook, &delivery)).await?;
    Ok(Redirect::to(&format!("/admin/tenants/{slug}/webhooks/{id}?done=redelivered")).into_response())
}
