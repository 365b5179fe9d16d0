//! The tenant overview, `/admin/tenants/{slug}`: where a tenant's admin lands (the dashboard sends them here).
//! It owns the page and its settings form: status with suspend/resume (operators; the forms post to the tenant
//! list's actions in `pages`), counts linking to their tabs, warnings (suspended, no SMTP, webhooks whose recent
//! deliveries all failed, dead outbox messages), the last audit entries, and the tenant's name, display name,
//! brand colour, logo and locale with a preview of the hosted page's header.
//!
//! Its plots (sign-ins, new users, the outbox) are counted on request from the tenant's own rows, per hour of
//! the last 24 hours or per day of the last 30 (`?range=day|month`), with GROUP BY queries that read only the
//! rows of that range (tenant migration 0011 indexes their time columns); so a tenant costs no memory between
//! visits, however many tenants the node holds.
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

use super::plot::{self, Kind, Plot, Series, Style};
use super::ui::When;
use super::{Chrome, CsrfForm, UiSession};
use crate::admin::Scope;
use crate::app::AppState;
use crate::control::tables::Tenant;
use crate::db::{self, registry::TenantDb};
use crate::email::api as email_api;
use crate::error::{Error, Result};
use crate::http::page::{PageError, PageResult, render};
use crate::identity::audit;
use crate::tenants::{self, TenantStatus};
use crate::webhooks;

/// Audit entries under "Recent activity".
const RECENT_ACTIVITY: u32 = 10;
/// The deliveries of a webhook that "every recent delivery failed" looks at.
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
        "unconfirmed" => "Nothing was changed: confirm the action in the box that opens under its button.",
        _ => return None,
    };
    Some(text.to_owned())
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
    /// The plots' range: `day` (the default) or `month`.
    range: Option<String>,
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
    at: When,
    kind: String,
    /// What happened, in words (`audit::summary`).
    summary: String,
    user_id: Option<String>,
    /// The user's email while the user exists.
    email: Option<String>,
    /// Who did it: "the user" when they acted on their own account, else the kind of actor.
    by: &'static str,
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
    /// The node that keeps the tenant's data, or "—".
    home: String,
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
    /// `day` or `month`: the plots' range.
    range: &'static str,
    plots: Vec<Plot>,
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
            let own = e.user_id.as_deref().is_some_and(|id| e.actor.strip_prefix("user:") == Some(id));
            let by = match e.actor.split(':').next().unwrap_or("") {
                _ if own => "the user",
                "user" => "another user",
                "operator" => "an admin",
                "token" => "an API token",
                "client" => "an OAuth client",
                "system" => "the system",
                _ => "a visitor",
            };
            Ok(ActivityRow {
                at: When::at(e.at),
                summary: audit::summary(&e.kind, &e.detail),
                kind: e.kind,
                user_id: e.user_id,
                email,
                by,
            })
        })
        .collect()
}

/// The plots' range: the last 24 hours by hour, or the last 30 days by day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlotRange {
    Day,
    Month,
}

impl PlotRange {
    fn parse(raw: Option<&str>) -> PlotRange {
        if raw == Some("month") { PlotRange::Month } else { PlotRange::Day }
    }

    fn as_str(self) -> &'static str {
        match self {
            PlotRange::Day => "day",
            PlotRange::Month => "month",
        }
    }

    /// Whole hours or days, the last one being the one `now` falls in.
    fn buckets(self, now: i64) -> Buckets {
        let (step, count) = match self {
            PlotRange::Day => (3600, 24),
            PlotRange::Month => (86_400, 30),
        };
        let end = (now.div_euclid(step) + 1) * step;
        Buckets { range: self, start: end - step * count as i64, step, count }
    }
}

/// Consecutive time buckets: `count` of `step` seconds from `start` (unix seconds).
#[derive(Debug, Clone, Copy)]
struct Buckets {
    range: PlotRange,
    start: i64,
    step: i64,
    count: usize,
}

impl Buckets {
    fn end(&self) -> i64 {
        self.start + self.step * self.count as i64
    }
}

/// The tenant's rows counted per bucket.
struct Trends {
    buckets: Buckets,
    logins_ok: Vec<i64>,
    logins_failed: Vec<i64>,
    new_users: Vec<i64>,
    outbox_sent: Vec<i64>,
    outbox_dead: Vec<i64>,
    /// Messages waiting at the end of each bucket (the last: now).
    outbox_waiting: Vec<i64>,
    /// Orders placed in each bucket, and how many of those are cancelled now.
    orders_placed: Vec<i64>,
    orders_cancelled: Vec<i64>,
}

/// Runs `sql`, whose rows are (bucket index, a, b) for the buckets `b` (parameters: ?1 start, ?2 end, ?3 step),
/// into a per-bucket column of `a` and one of `b`; buckets without a row count zero.
fn per_bucket(conn: &Connection, sql: &str, b: &Buckets) -> Result<(Vec<i64>, Vec<i64>)> {
    let (mut first, mut second) = (vec![0; b.count], vec![0; b.count]);
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params![b.start, b.end(), b.step], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (bucket, a, c) = row?;
        if let Ok(i) = usize::try_from(bucket)
            && i < b.count
        {
            first[i] = a;
            second[i] = c;
        }
    }
    Ok((first, second))
}

/// Messages waiting at the end of each bucket, walked back from the number waiting now: before a bucket, the
/// messages queued in it were not there yet and those that settled in it were still waiting. (A dead message an
/// admin retried counts as settled when it died, so the walk may be off by those; it never goes below zero.)
fn waiting_by_bucket(now: i64, queued: &[i64], sent: &[i64], dead: &[i64]) -> Vec<i64> {
    let mut level = now;
    let mut waiting: Vec<i64> = queued
        .iter()
        .zip(sent)
        .zip(dead)
        .rev()
        .map(|((q, s), d)| {
            let at_end = level.max(0);
            level += s + d - q;
            at_end
        })
        .collect();
    waiting.reverse();
    waiting
}

/// Counts the tenant's sign-ins, new users and outbox messages per bucket of `range`, reading only the rows of
/// the range (each query has an index on its time column).
fn trends(conn: &Connection, range: PlotRange, now: i64) -> Result<Trends> {
    let b = range.buckets(now);
    let (logins_ok, logins_failed) = per_bucket(
        conn,
        "SELECT (at - ?1) / ?3, SUM(type = 'login_succeeded'), SUM(type = 'login_failed') FROM audit_log
         WHERE type IN ('login_succeeded', 'login_failed') AND at >= ?1 AND at < ?2 GROUP BY 1",
        &b,
    )?;
    let (new_users, _) = per_bucket(
        conn,
        "SELECT (created_at - ?1) / ?3, COUNT(*), 0 FROM users WHERE created_at >= ?1 AND created_at < ?2 GROUP BY 1",
        &b,
    )?;
    let (outbox_sent, outbox_dead) = per_bucket(
        conn,
        "SELECT (updated_at - ?1) / ?3, SUM(status = 'sent'), SUM(status = 'dead') FROM outbox
         WHERE status IN ('sent', 'dead') AND updated_at >= ?1 AND updated_at < ?2 GROUP BY 1",
        &b,
    )?;
    let (queued, _) = per_bucket(
        conn,
        "SELECT (created_at - ?1) / ?3, COUNT(*), 0 FROM outbox WHERE created_at >= ?1 AND created_at < ?2 GROUP BY 1",
        &b,
    )?;
    let waiting_now: i64 =
        conn.query_row("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')", [], |r| r.get(0))?;
    let (orders_placed, orders_cancelled) = per_bucket(
        conn,
        "SELECT (created_at - ?1) / ?3, COUNT(*), SUM(status = 'cancelled') FROM orders
         WHERE created_at >= ?1 AND created_at < ?2 GROUP BY 1",
        &b,
    )?;
    Ok(Trends {
        orders_placed,
        orders_cancelled,
        buckets: b,
        logins_ok,
        logins_failed,
        new_users,
        outbox_waiting: waiting_by_bucket(waiting_now, &queued, &outbox_sent, &outbox_dead),
        outbox_sent,
        outbox_dead,
    })
}

/// The overview's plots: sign-ins, new users and orders as bars, the outbox as lines.
fn trend_plots(t: &Trends) -> Vec<Plot> {
    let b = t.buckets;
    let (span, per) = match b.range {
        PlotRange::Day => ("last 24 hours", "per hour"),
        PlotRange::Month => ("last 30 days", "per day"),
    };
    let x_labels: Vec<String> = (0..b.count as i64)
        .map(|i| {
            let at = b.start + i * b.step;
            if b.range == PlotRange::Day { plot::clock_label(at, false) } else { plot::date_label(at) }
        })
        .collect();
    let figure = |id: &str, title: &str, unit: &str, kind: Kind, series: Vec<Series>| Plot {
        id: id.to_owned(),
        title: title.to_owned(),
        unit: unit.to_owned(),
        span: span.to_owned(),
        x_labels: x_labels.clone(),
        series,
        kind,
    };
    vec![
        figure(
            "signins",
            "Sign-ins",
            per,
            Kind::Bars,
            vec![
                count_series("succeeded", Style::Ok, &t.logins_ok),
                count_series("failed", Style::Danger, &t.logins_failed),
            ],
        ),
        figure("users", "New users", per, Kind::Bars, vec![count_series("new users", Style::Accent, &t.new_users)]),
        figure(
            "orders",
            "Orders",
            per,
            Kind::Bars,
            vec![
                count_series("placed", Style::Accent, &t.orders_placed),
                count_series("cancelled since", Style::Danger, &t.orders_cancelled),
            ],
        ),
        figure(
            "outbox",
            "Outbox",
            "messages",
            Kind::Line,
            vec![
                count_series("waiting", Style::Accent, &t.outbox_waiting),
                count_series(&format!("sent {per}"), Style::Ok, &t.outbox_sent),
                count_series(&format!("dead {per}"), Style::Danger, &t.outbox_dead),
            ],
        ),
    ]
}

/// A series of whole counts, one per bucket.
fn count_series(label: &str, style: Style, values: &[i64]) -> Series {
    Series { label: label.to_owned(), points: values.iter().map(|&v| Some(v as f64)).collect(), style }
}

#[allow(clippy::too_many_arguments)] // the page's parts; a struct for one call site would only rename them
async fn render_overview(
    app: &AppState,
    session: &UiSession,
    tenant: &Tenant,
    db: &TenantDb,
    chrome: Chrome,
    form: SettingsForm,
    form_error: Option<String>,
    range: PlotRange,
) -> PageResult {
    let now = crate::now_unix();
    let (counts, failing, activity, trends) = db::with_conn(&db.pool, move |conn| {
        Ok((file_counts(conn, now)?, webhooks::failing(conn)?, recent_activity(conn)?, trends(conn, range, now)?))
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
        home: tenant.home_node.map_or_else(|| "—".to_owned(), |id| id.to_string()),
        stats,
        warnings,
        activity,
        preview_button: button_swatch(&picker),
        picker,
        preview_name,
        preview_logo,
        form,
        form_error,
        range: range.as_str(),
        plots: trend_plots(&trends),
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
    let range = PlotRange::parse(q.range.as_deref());
    render_overview(&app, &session, &tenant, &db, chrome, SettingsForm::of(&tenant), None, range).await
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
    let patch = form.patch();
    let scope = &session.actor.scope;
    let result = match tenants::check_suspended_edit(&app, scope, &tenant.slug, Some(&name), Some(&patch)).await {
        Ok(()) => tenants::update(&app, &tenant.slug, Some(name), Some(&patch)).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/admin/tenants/{}?done=saved", tenant.slug)).into_response()),
        Err(err @ (Error::Validation(_) | Error::Unprocessable(_) | Error::Forbidden(_))) => {
            let chrome = session.chrome("tenants");
            render_overview(&app, &session, &tenant, &db, chrome, form, Some(err.to_string()), PlotRange::Day).await
        }
        Err(other) => Err(other.into()),
    }
}
