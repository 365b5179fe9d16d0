//! The tenant overview, `/admin/tenants/{slug}`: where a tenant's admin lands (the dashboard sends them here).
//! It owns the page and its settings form: status with suspend/resume (operators; the forms post to the tenant
//! list's actions in `pages`), counts linking to their tabs, warnings (suspended, no SMTP, webhooks whose recent
//! deliveries all failed, dead outbox messages), the last audit entries, and the tenant's name, display name,
//! brand colour, logo and locale with a preview of the hosted page's header.
//!
//! Who may call it: an operator, or an admin scoped to this tenant (`Actor::open_tenant`; another tenant's admin
//! gets 403). Suspended tenants are shown: their admins still need to see them. The settings form is a
//! `CsrfForm` and saves through `tenants::update` with a settings patch, as the admin API's PATCH does, so the
//! checks are the same; a refused form is shown again with the input kept and the error next to it.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use rusqlite::{Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Chrome, CsrfForm, UiSession};
use crate::admin::Scope;
use crate::app::AppState;
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::email::api as email_api;
use crate::email::outbox;
use crate::error::{Error, Result};
use crate::http::page::{PageError, PageResult, render};
use crate::identity::audit;
use crate::tenants::{self, TenantStatus};
use crate::webhooks;

/// Audit entries under "Recent activity".
const RECENT_ACTIVITY: u32 = 10;
/// The deliveries of a webhook that "every recent delivery failed" looks at.
const RECENT_DELIVERIES: u32 = 5;
/// The hosted pages' primary colour when the tenant sets none (`static/hosted.css`).
const DEFAULT_COLOR: &str = "#3b5bdb";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tenants/{slug}", get(overview))
        .route("/admin/tenants/{slug}/settings", post(settings_save))
}

async fn open(app: &AppState, session: &UiSession, slug: &str) -> Result<(Arc<Tenant>, TenantDb), PageError> {
    Ok(session.actor.open_tenant(app, slug).await?)
}

fn done_notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "saved" => "Tenant settings saved.",
        "suspended" => "Tenant suspended: its hosted pages say it is temporarily unavailable, its APIs answer 403.",
        "resumed" => "Tenant resumed.",
        _ => return None,
    };
    Some(text.to_owned())
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// A count and the tab (path under the tenant) that lists what it counts.
struct Stat {
    id: &'static str,
    label: &'static str,
    value: i64,
    tab: &'static str,
}

struct Warning {
    id: &'static str,
    text: String,
    /// Where to fix it: (href, link text).
    link: Option<(String, &'static str)>,
}

struct ActivityRow {
    at: String,
    kind: String,
    user_id: Option<String>,
    /// The user's email while the user exists.
    email: Option<String>,
    actor: String,
}

/// An enabled webhook whose recent deliveries were all tried and none got through.
struct FailingHook {
    id: String,
    url: String,
    last_error: Option<String>,
}

/// The counts the tenant's file answers in one read.
struct FileCounts {
    users: i64,
    sessions: i64,
    webhooks: i64,
    products: i64,
    carts: i64,
    dead: i64,
}

/// The settings form, as posted and as shown again after an error.
#[derive(Deserialize, Default)]
struct SettingsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    /// The text box; `primary_color_picker` is the `<input type=color>` beside it and `color_was` the value both
    /// showed (see `chosen_color`).
    #[serde(default)]
    primary_color: String,
    #[serde(default)]
    primary_color_picker: String,
    #[serde(default)]
    color_was: String,
    #[serde(default)]
    logo_url: String,
    #[serde(default)]
    locale: String,
}

impl SettingsForm {
    fn of(tenant: &Tenant) -> Self {
        let s = &tenant.settings;
        let color = s.branding.primary_color.clone().unwrap_or_default();
        SettingsForm {
            name: tenant.name.clone(),
            display_name: s.display_name.clone().unwrap_or_default(),
            primary_color_picker: color.clone(),
            color_was: color.clone(),
            primary_color: color,
            logo_url: s.branding.logo_url.clone().unwrap_or_default(),
            locale: s.locale.clone(),
        }
    }

    /// The brand colour asked for: the text box when it was edited, else the picker when it was moved, else the
    /// colour as it was. (Without script the two inputs cannot follow each other; `admin.js` keeps them in step.)
    fn chosen_color(&self) -> String {
        let text = self.primary_color.trim();
        let was = self.color_was.trim();
        if text != was {
            return text.to_owned();
        }
        let picker = self.primary_color_picker.trim();
        let picker_was = if was.is_empty() { DEFAULT_COLOR } else { was };
        if !picker.is_empty() && !picker.eq_ignore_ascii_case(picker_was) { picker.to_owned() } else { text.to_owned() }
    }

    /// The patch `tenants::update` merges into the settings; an empty optional field resets its key.
    fn patch(&self) -> Value {
        let optional = |v: &str| match v.trim() {
            "" => Value::Null,
            v => Value::String(v.to_owned()),
        };
        json!({
            "display_name": optional(&self.display_name),
            "locale": self.locale.trim(),
            "branding": { "primary_color": optional(&self.primary_color), "logo_url": optional(&self.logo_url) },
        })
    }
}

fn is_hex_color(c: &str) -> bool {
    c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hosted sign-in button in `color`, as an SVG data URI: the admin CSP allows no inline styles, so a colour
/// only known at run time reaches the page as an image.
fn button_swatch(color: &str) -> String {
    let hex = if is_hex_color(color) { &color[1..] } else { &DEFAULT_COLOR[1..] };
    format!(
        "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='240' height='40'%3E\
         %3Crect width='240' height='40' rx='8' fill='%23{hex}'/%3E\
         %3Ctext x='120' y='26' font-family='system-ui,sans-serif' font-size='16' font-weight='600' fill='white' \
         text-anchor='middle'%3ESign in%3C/text%3E%3C/svg%3E"
    )
}

#[derive(Template)]
#[template(path = "admin/tenant_overview.html")]
struct OverviewPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    is_operator: bool,
    status: &'static str,
    suspended: bool,
    created: String,
    updated: String,
    sign_in_url: String,
    stats: Vec<Stat>,
    warnings: Vec<Warning>,
    activity: Vec<ActivityRow>,
    form: SettingsForm,
    form_error: Option<String>,
    /// The `<input type=color>` value: always a valid colour.
    picker: String,
    preview_name: String,
    preview_logo: Option<String>,
    preview_button: String,
}

fn file_counts(conn: &Connection, now: i64) -> Result<FileCounts> {
    Ok(conn.query_row(
        "SELECT (SELECT COUNT(*) FROM users),
                (SELECT COUNT(*) FROM sessions WHERE stage = 'active' AND expires_at > ?1 AND idle_expires_at > ?1),
                (SELECT COUNT(*) FROM webhooks),
                (SELECT COUNT(*) FROM products),
                (SELECT COUNT(*) FROM carts WHERE expires_at > ?1),
                (SELECT COUNT(*) FROM outbox WHERE status = 'dead')",
        [now],
        |r| {
            Ok(FileCounts {
                users: r.get(0)?,
                sessions: r.get(1)?,
                webhooks: r.get(2)?,
                products: r.get(3)?,
                carts: r.get(4)?,
                dead: r.get(5)?,
            })
        },
    )?)
}

fn failing_webhooks(conn: &Connection) -> Result<Vec<FailingHook>> {
    let mut failing = Vec::new();
    for hook in webhooks::list(conn)?.into_iter().filter(|h| h.enabled) {
        let filter =
            outbox::Filter { webhook_id: Some(hook.id.clone()), limit: RECENT_DELIVERIES, ..Default::default() };
        let (deliveries, _) = outbox::list(conn, &filter)?;
        let tried: Vec<_> = deliveries.iter().filter(|d| d.status == "sent" || d.attempts > 0).collect();
        if let Some(last) = tried.first()
            && tried.iter().all(|d| d.status != "sent")
        {
            failing.push(FailingHook { id: hook.id, url: hook.url, last_error: last.last_error.clone() });
        }
    }
    Ok(failing)
}

fn recent_activity(conn: &Connection) -> Result<Vec<ActivityRow>> {
    let filter = audit::Filter { limit: RECENT_ACTIVITY, ..Default::default() };
    let (entries, _) = audit::list(conn, &filter)?;
    let mut email_of = conn.prepare_cached("SELECT email FROM users WHERE id = ?1")?;
    entries
        .into_iter()
        .map(|e| -> Result<ActivityRow> {
            let email = match &e.user_id {
                Some(id) => email_of.query_row([id.as_str()], |r| r.get::<_, String>(0)).optional()?,
                None => None,
            };
            Ok(ActivityRow { at: crate::display_time(e.at), kind: e.kind, user_id: e.user_id, email, actor: e.actor })
        })
        .collect()
}

async fn render_overview(
    app: &AppState,
    session: &UiSession,
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    form: SettingsForm,
    form_error: Option<String>,
) -> PageResult {
    let now = crate::now_unix();
    let (counts, failing, activity) = db::with_conn(&db.pool, move |conn| {
        Ok((file_counts(conn, now)?, failing_webhooks(conn)?, recent_activity(conn)?))
    })
    .await?;
    let key = tenant.slug.clone();
    let (clients, plugins) = app
        .control
        .read(move |conn| {
            let clients = crate::oidc::clients::list(conn, &key)?.len();
            let plugins = crate::plugins::records::list(conn, &key)?;
            Ok((clients, plugins.iter().filter(|p| p.active_version.is_some()).count()))
        })
        .await?;
    let smtp = email_api::smtp_view(app, email_api::load_smtp(app, &tenant.slug).await?.as_ref());

    let slug = tenant.slug.to_string();
    let suspended = tenant.status == TenantStatus::Suspended;
    let mut warnings = Vec::new();
    if suspended {
        warnings.push(Warning {
            id: "suspended",
            text: "This tenant is suspended: its users cannot sign in, its hosted pages say it is temporarily \
                   unavailable and its APIs answer 403 until an operator resumes it."
                .into(),
            link: None,
        });
    }
    if smtp.route == "dev_mailbox" {
        let text = if smtp.mode == "dev" {
            "GATEHOUSE_MAIL_MODE=dev: no mail is sent; this tenant's messages are kept in its dev mailbox."
        } else {
            "No SMTP configured for this tenant and no GATEHOUSE_SMTP_URL: its mail is kept in the dev mailbox \
             instead of being sent."
        };
        warnings.push(Warning {
            id: "smtp",
            text: text.into(),
            link: Some((format!("/admin/tenants/{slug}/email"), "Email settings")),
        });
    }
    for hook in &failing {
        let why = hook.last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default();
        warnings.push(Warning {
            id: "webhook",
            text: format!("Every recent delivery to the webhook {} failed{why}.", hook.url),
            link: Some((format!("/admin/tenants/{slug}/webhooks/{}", hook.id), "Deliveries")),
        });
    }
    if counts.dead > 0 {
        warnings.push(Warning {
            id: "dead",
            text: format!("{} outbox message(s) gave up after their last attempt.", counts.dead),
            link: Some((format!("/admin/tenants/{slug}/outbox?status=dead"), "Outbox")),
        });
    }

    let stat = |id: &'static str, label: &'static str, value: i64, tab: &'static str| Stat { id, label, value, tab };
    let stats = vec![
        stat("users", "Users", counts.users, "users"),
        stat("sessions", "Active sessions", counts.sessions, "users"),
        stat("clients", "OAuth clients", clients as i64, "clients"),
        stat("webhooks", "Webhooks", counts.webhooks, "webhooks"),
        stat("plugins", "Active plugins", plugins as i64, "plugins"),
        stat("products", "Products", counts.products, "store/products"),
        stat("carts", "Open carts", counts.carts, "store/quote"),
    ];

    let color = form.primary_color.trim();
    let picker = if is_hex_color(color) {
        color.to_ascii_lowercase()
    } else if is_hex_color(form.color_was.trim()) {
        form.color_was.trim().to_ascii_lowercase()
    } else {
        DEFAULT_COLOR.to_owned()
    };
    let preview_name = match form.display_name.trim() {
        "" => form.name.trim().to_owned(),
        display => display.to_owned(),
    };
    let logo = form.logo_url.trim();
    let preview_logo = (logo.starts_with("https://") || logo.starts_with("http://")).then(|| logo.to_owned());
    let status_code = if form_error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let page = OverviewPage {
        chrome,
        sign_in_url: format!("{}/t/{slug}/login", app.config.public_url),
        slug,
        tenant_name: tenant.name.clone(),
        tab: "overview",
        is_operator: session.actor.scope == Scope::Operator,
        status: tenant.status.as_str(),
        suspended,
        created: crate::display_time(tenant.created_at),
        updated: crate::display_time(tenant.updated_at),
        stats,
        warnings,
        activity,
        preview_button: button_swatch(&picker),
        picker,
        preview_name,
        preview_logo,
        form,
        form_error,
    };
    Ok((status_code, render(page)?).into_response())
}

async fn overview(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let chrome = session.chrome_with("tenants", done_notice(q.done.as_deref()));
    render_overview(&app, &session, &tenant, &db, chrome, SettingsForm::of(&tenant), None).await
}

async fn settings_save(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> PageResult {
    let (tenant, db) = open(&app, &session, &slug).await?;
    let form = SettingsForm { primary_color: form.chosen_color(), ..form };
    let name = form.name.trim().to_owned();
    match tenants::update(&app, &tenant.slug, Some(name), Some(&form.patch())).await {
        Ok(_) => Ok(Redirect::to(&format!("/admin/tenants/{}?done=saved", tenant.slug)).into_response()),
        Err(err @ (Error::Validation(_) | Error::Unprocessable(_))) => {
            let chrome = session.chrome("tenants");
            render_overview(&app, &session, &tenant, &db, chrome, form, Some(err.to_string())).await
        }
        Err(other) => Err(other.into()),
    }
}
