//! Admin UI pages of a tenant's email: SMTP settings with "send test mail", the outbox (filter by state and kind,
//! search, totals, paging, retry) and the dev mailbox (mail HTML shown in a sandboxed iframe served with its own
//! locked-down CSP). The webhooks pages (`webhook_pages`) list their deliveries with this module's outbox rows.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::CsrfOnly;
use super::lists::{offset_of, with_query};
use super::ui::{Paging, When, query_pairs};
use super::{Chrome, CsrfForm, UiSession};
use crate::app::{App, AppState};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::email::api::{self as email_api, MailboxItem, SmtpInput, SmtpView};
use crate::email::outbox::{self, OutboxItem};
use crate::email::{EmailKind, parse_address};
use crate::error::Error;
use crate::http::page::{PageError, PageResult, render};

/// Rows per page of the outbox.
const OUTBOX_PAGE: u32 = 50;

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
    q: String,
    paging: Paging,
}

/// One outbox row as the tables of `templates/admin/outbox_rows.html` show it (the outbox and a webhook's
/// deliveries): times relative, the error and the receiver's answer cut to one line with the full text behind a
/// `<details>`.
pub(super) struct OutboxRow {
    pub(super) item: OutboxItem,
    pub(super) created: When,
    pub(super) next_attempt: When,
    pub(super) error: Option<OneLine>,
    pub(super) answer: Option<OneLine>,
}

/// A text shown on one line: its first line cut to `ONE_LINE_CHARS` characters, and the whole text when the line
/// leaves some of it out.
pub(super) struct OneLine {
    pub(super) line: String,
    pub(super) full: Option<String>,
}

const ONE_LINE_CHARS: usize = 120;

impl OneLine {
    pub(super) fn of(text: &str) -> OneLine {
        let first = text.trim().lines().next().unwrap_or_default().trim_end();
        let mut line: String = first.chars().take(ONE_LINE_CHARS).collect();
        let cut = line.len() < first.len();
        if cut {
            line.push('…');
        }
        let full = (cut || first.len() < text.trim().len()).then(|| text.trim().to_owned());
        OneLine { line, full }
    }
}

pub(super) fn outbox_rows(items: Vec<OutboxItem>) -> Vec<OutboxRow> {
    items
        .into_iter()
        .map(|item| OutboxRow {
            created: When::at(item.created_at),
            next_attempt: When::at(item.next_attempt_at / 1000),
            error: item.last_error.as_deref().filter(|e| !e.is_empty()).map(OneLine::of),
            answer: item.last_response.as_deref().filter(|r| !r.trim().is_empty()).map(OneLine::of),
            item,
        })
        .collect()
}

#[derive(Deserialize)]
struct OutboxQuery {
    status: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    offset: Option<String>,
    done: Option<String>,
}

async fn outbox_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<OutboxQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let filter = email_api::outbox_filter(q.status.clone(), q.kind.as_deref(), Some(OUTBOX_PAGE), None)?;
    let status = filter.status.clone().unwrap_or_default();
    let kind = filter.kind.map(|k| k.as_str().to_owned()).unwrap_or_default();
    let text = super::lists::search_text(q.q.as_deref());
    let base = with_query(
        &format!("/admin/tenants/{}/outbox", tenant.slug),
        &query_pairs(&[("status", status.as_str()), ("kind", kind.as_str()), ("q", text.as_str())]),
    );
    let offset = offset_of(q.offset.as_deref());
    let search = (!text.is_empty()).then(|| text.clone());
    let (paging, items) = db::with_conn(&db.pool, move |conn| {
        let total = outbox::count_matching(conn, &filter, search.as_deref())?;
        let paging = Paging::new(total, offset, u64::from(filter.limit), &base);
        let items = outbox::page_matching(conn, &filter, search.as_deref(), paging.offset)?;
        Ok((paging, items))
    })
    .await?;
    let mut chrome = session.chrome("tenants");
    chrome.notice = done_notice(q.done.as_deref());
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
        q: text,
        paging,
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
