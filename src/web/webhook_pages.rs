//! Admin UI pages of a tenant's webhooks: the list (search, sort, totals, paging, a "Failing" badge on a webhook
//! whose recent deliveries all failed) with the create form, and a webhook's page: its URL, events and description
//! edited (every error next to its field, the typed input kept), ping, disable / enable and delete (disable and
//! delete only with `confirm=yes` from the page's confirmation step), and its deliveries with redelivery.
//!
//! The form checks are the admin API's (`webhooks::parse_url`, `check_resolves`, `check_events`,
//! `check_description`), and saving goes through `webhooks::api` (`create_webhook`, `update_webhook`), so the SSRF
//! guard applies the same way here.

use std::collections::HashSet;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::email_pages::{OutboxRow, outbox_rows};
use super::lists::{Sort, SortHeader, list_base, offset_of};
use super::ui::{FieldErrors, Paging, When};
use super::{Chrome, CsrfForm, CsrfOnly, UiSession};
use crate::app::{App, AppState};
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::email::api as email_api;
use crate::email::outbox;
use crate::error::Error;
use crate::http::page::{PageError, PageResult, render};
use crate::webhooks::api::{CreateWebhook, UpdateWebhook, create_webhook, send_ping, update_webhook};
use crate::webhooks::{self, Webhook, events};

/// Webhooks per page of the list (a tenant has at most 50).
const LIST_PAGE: u64 = 25;
/// Deliveries per page of a webhook's page.
const DELIVERIES_PAGE: u32 = 50;
/// The list's sort keys, each with whether it sorts descending by default; the first is the default sort.
const SORTS: [(&str, bool); 2] = [("created", false), ("url", false)];

pub fn router() -> Router<AppState> {
    let base = "/admin/tenants/{slug}/webhooks";
    Router::new()
        .route(base, get(webhooks_page).post(webhook_create))
        .route(&format!("{base}/{{id}}"), get(webhook_page).post(webhook_save))
        .route(&format!("{base}/{{id}}/{{action}}"), post(webhook_action))
        .route(&format!("{base}/{{id}}/deliveries/{{delivery}}/redeliver"), post(webhook_redeliver))
}

/// The tenant a page is about, checked against the session's scope.
async fn open(app: &AppState, session: &UiSession, slug: &str) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "saved" => "Webhook saved.",
        "deleted" => "Webhook deleted.",
        "pinged" => "Ping queued; see the webhook's deliveries.",
        "enabled" => "Webhook enabled.",
        "disabled" => "Webhook disabled: it gets no new events.",
        "redelivered" => "Delivery queued again.",
        "unconfirmed" => "Nothing was changed: confirm the action in the box that opens under its button.",
        _ => return None,
    };
    Some(text.to_owned())
}

fn to_hook(slug: &str, id: &str, done: &str) -> Response {
    Redirect::to(&format!("/admin/tenants/{slug}/webhooks/{id}?done={done}")).into_response()
}

/// The webhook form as submitted or as saved: `url`, `description` and one `events` entry per ticked box.
#[derive(Default)]
struct HookForm {
    url: String,
    description: String,
    events: Vec<String>,
}

impl HookForm {
    fn of(hook: &Webhook) -> HookForm {
        HookForm { url: hook.url.clone(), description: hook.description.clone(), events: hook.events.clone() }
    }

    fn from_pairs(pairs: &[(String, String)]) -> HookForm {
        let mut form = HookForm::default();
        for (key, value) in pairs {
            match key.as_str() {
                "url" => form.url = value.clone(),
                "description" => form.description = value.clone(),
                "events" => form.events.push(value.clone()),
                _ => {}
            }
        }
        form
    }
}

struct EventChoice {
    name: &'static str,
    about: &'static str,
    checked: bool,
}

fn event_choices(chosen: &[String]) -> Vec<EventChoice> {
    std::iter::once(&("*", "every event, including those added later"))
        .chain(events::CATALOGUE)
        .map(|(name, about)| EventChoice { name, about, checked: chosen.iter().any(|e| e == name) })
        .collect()
}

/// The services say `url must …`; the page says `The URL must …`.
fn reword(message: &str) -> String {
    match message.strip_prefix("url ") {
        Some(rest) => format!("the URL {rest}"),
        None => message.to_owned(),
    }
}

/// Files a check's error under `field`; an error that is not the form's fault comes back as the page.
fn add_error(errors: &mut FieldErrors, field: &str, err: Error) -> Result<(), PageError> {
    match err {
        Error::Validation(message) => {
            errors.add(field, reword(&message));
            Ok(())
        }
        other => errors.absorb(other, &[("", field)]),
    }
}

/// Checks every field of a submitted form with the admin API's checks, so all problems show at once.
async fn check_form(app: &App, form: &HookForm) -> Result<FieldErrors, PageError> {
    let allow = app.config.webhook_allow_private;
    let mut errors = FieldErrors::new();
    match webhooks::parse_url(&form.url, allow) {
        Ok(url) => {
            if let Err(err) = webhooks::check_resolves(&url, allow).await {
                add_error(&mut errors, "url", err)?;
            }
        }
        Err(err) => add_error(&mut errors, "url", err)?,
    }
    if form.events.is_empty() {
        errors.add("events", "choose at least one event");
    } else if let Err(err) = webhooks::check_events(&form.events) {
        add_error(&mut errors, "events", err)?;
    }
    if let Err(err) = webhooks::check_description(&form.description) {
        add_error(&mut errors, "description", err)?;
    }
    Ok(errors)
}

/// Files what a service refused after the form's own checks passed (a limit, a race).
fn add_service_error(errors: &mut FieldErrors, err: Error) -> Result<(), PageError> {
    match err {
        Error::Validation(message) if message.starts_with("url ") => {
            errors.add("url", reword(&message));
            Ok(())
        }
        other => {
            errors.absorb(other, &[("events", "events"), ("unknown event", "events"), ("description", "description")])
        }
    }
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    confirm: String,
}

// ---- the list ----

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    offset: Option<String>,
    done: Option<String>,
}

struct WebhookRow {
    id: String,
    url: String,
    events: Vec<String>,
    description: String,
    enabled: bool,
    failing: bool,
    created: When,
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    q: String,
    sort: &'static str,
    dir: &'static str,
    sort_url: SortHeader,
    sort_created: SortHeader,
    rows: Vec<WebhookRow>,
    paging: Paging,
    event_choices: Vec<EventChoice>,
    new_secret: Option<(String, String)>,
    form: HookForm,
    errors: FieldErrors,
}

async fn render_list(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    q: &ListQuery,
    new_secret: Option<(String, String)>,
    form: HookForm,
    errors: FieldErrors,
) -> PageResult {
    let (hooks, failing) =
        db::with_conn(&db.pool, |conn| Ok((webhooks::list(conn)?, webhooks::failing(conn)?))).await?;
    let failing: HashSet<String> = failing.into_iter().map(|f| f.id).collect();
    let text = super::lists::search_text(q.q.as_deref());
    let needle = text.to_lowercase();
    let sort = Sort::parse(q.sort.as_deref(), q.dir.as_deref(), &SORTS);
    let mut hooks: Vec<Webhook> = hooks
        .into_iter()
        .filter(|h| {
            needle.is_empty()
                || h.url.to_lowercase().contains(&needle)
                || h.description.to_lowercase().contains(&needle)
        })
        .collect();
    match sort.key {
        "url" => hooks.sort_by(|a, b| a.url.cmp(&b.url).then_with(|| a.id.cmp(&b.id))),
        _ => hooks.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id))),
    }
    if sort.descending {
        hooks.reverse();
    }
    let path = format!("/admin/tenants/{}/webhooks", tenant.slug);
    let search = [("q", text.as_str())];
    let base = list_base(&path, &text, &sort);
    let paging = Paging::new(hooks.len() as u64, offset_of(q.offset.as_deref()), LIST_PAGE, &base);
    let rows = paging
        .window(hooks)
        .map(|h| WebhookRow {
            failing: failing.contains(&h.id),
            created: When::at(h.created_at),
            id: h.id,
            url: h.url,
            events: h.events,
            description: h.description,
            enabled: h.enabled,
        })
        .collect();
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = WebhooksPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "webhooks",
        sort_url: sort.header("url", false, &path, &search),
        sort_created: sort.header("created", false, &path, &search),
        q: text,
        sort: sort.key,
        dir: sort.dir(),
        rows,
        paging,
        event_choices: event_choices(&form.events),
        new_secret,
        form,
        errors,
    };
    Ok((code, render(page)?).into_response())
}

async fn webhooks_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", done_notice(q.done.as_deref()));
    render_list(&tenant, &db, chrome, &q, None, HookForm::default(), FieldErrors::new()).await
}

async fn webhook_create(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let form = HookForm::from_pairs(&pairs);
    let mut errors = check_form(&app, &form).await?;
    if errors.is_empty() {
        let body =
            CreateWebhook { url: form.url.clone(), events: form.events.clone(), description: form.description.clone() };
        match create_webhook(&app, &db, body).await {
            Ok((webhook, secret)) => {
                let notice = Some("Webhook created. Copy its signing secret now: it is not shown again.".to_owned());
                let chrome = session.chrome_with("tenants", notice);
                let shown = Some((webhook.url, secret));
                let q = ListQuery::default();
                return render_list(&tenant, &db, chrome, &q, shown, HookForm::default(), FieldErrors::new()).await;
            }
            Err(err) => add_service_error(&mut errors, err)?,
        }
    }
    render_list(&tenant, &db, session.chrome("tenants"), &ListQuery::default(), None, form, errors).await
}

// ---- one webhook ----

#[derive(Template)]
#[template(path = "admin/webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    webhook: Webhook,
    created: When,
    failing: bool,
    form: HookForm,
    event_choices: Vec<EventChoice>,
    errors: FieldErrors,
    rows: Vec<OutboxRow>,
    retry_base: String,
    retry_action: &'static str,
    paging: Paging,
}

#[derive(Deserialize)]
struct PageQuery {
    offset: Option<String>,
    done: Option<String>,
}

/// The webhook's page; `form` is what was typed when saving failed (else the saved values).
async fn render_hook(
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    id: String,
    offset: u64,
    form: Option<HookForm>,
    errors: FieldErrors,
) -> PageResult {
    let mut filter = email_api::outbox_filter(None, Some("webhook"), Some(DELIVERIES_PAGE), None)?;
    filter.webhook_id = Some(id.clone());
    let base = format!("/admin/tenants/{}/webhooks/{id}", tenant.slug);
    let (webhook, failing, paging, items) = db::with_conn(&db.pool, move |conn| {
        let webhook = webhooks::get(conn, &id)?;
        let failing = webhooks::failing(conn)?.iter().any(|f| f.id == id);
        let total = outbox::count_matching(conn, &filter, None)?;
        let paging = Paging::new(total, offset, u64::from(filter.limit), &base);
        let items = outbox::page_matching(conn, &filter, None, paging.offset)?;
        Ok((webhook, failing, paging, items))
    })
    .await?;
    let form = form.unwrap_or_else(|| HookForm::of(&webhook));
    let code = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = WebhookPage {
        chrome,
        slug: tenant.slug.to_string(),
        tenant_name: tenant.name.clone(),
        tab: "webhooks",
        retry_base: format!("/admin/tenants/{}/webhooks/{}/deliveries", tenant.slug, webhook.id),
        retry_action: "redeliver",
        created: When::at(webhook.created_at),
        webhook,
        failing,
        event_choices: event_choices(&form.events),
        form,
        errors,
        rows: outbox_rows(items),
        paging,
    };
    Ok((code, render(page)?).into_response())
}

async fn webhook_page(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", done_notice(q.done.as_deref()));
    render_hook(&tenant, &db, chrome, id, offset_of(q.offset.as_deref()), None, FieldErrors::new()).await
}

/// Saves the edit form: URL, events and description.
async fn webhook_save(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id)): Path<(String, String)>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let form = HookForm::from_pairs(&pairs);
    let mut errors = check_form(&app, &form).await?;
    if errors.is_empty() {
        let changes = UpdateWebhook {
            url: Some(form.url.clone()),
            events: Some(form.events.clone()),
            description: Some(form.description.trim().to_owned()),
            enabled: None,
        };
        match update_webhook(&app, &db, id.clone(), changes).await {
            Ok(_) => return Ok(to_hook(&slug, &id, "saved")),
            Err(err) => add_service_error(&mut errors, err)?,
        }
    }
    render_hook(&tenant, &db, session.chrome("tenants"), id, 0, Some(form), errors).await
}

/// `ping`, `enable`, and with `confirm=yes` `disable` and `delete`.
async fn webhook_action(
    State(app): State<AppState>,
    session: UiSession,
    Path((slug, id, action)): Path<(String, String, String)>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> PageResult {
    let (_, db) = open(&app, &session, &slug).await?;
    let confirmed = form.confirm == "yes";
    match action.as_str() {
        "delete" | "disable" if !confirmed => Ok(to_hook(&slug, &id, "unconfirmed")),
        "delete" => {
            db::with_conn(&db.pool, move |conn| webhooks::delete(conn, &id)).await?;
            Ok(Redirect::to(&format!("/admin/tenants/{slug}/webhooks?done=deleted")).into_response())
        }
        "ping" => {
            send_ping(&db, id.clone()).await?;
            Ok(to_hook(&slug, &id, "pinged"))
        }
        "enable" | "disable" => {
            let (hook, enabled) = (id.clone(), action == "enable");
            db::with_conn(&db.pool, move |conn| webhooks::update(conn, &hook, None, None, None, Some(enabled))).await?;
            Ok(to_hook(&slug, &id, if enabled { "enabled" } else { "disabled" }))
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
    Ok(to_hook(&slug, &id, "redelivered"))
}
