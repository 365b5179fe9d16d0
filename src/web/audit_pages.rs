//! The tenant's audit log in the admin UI: `/admin/tenants/{slug}/audit` lists entries newest first with the
//! user's email, the actor's name, a readable summary, the browser and OS, and the raw detail behind a disclosure;
//! filters by type, user (part of an email), actor and UTC days, with the total; `…/audit.csv` downloads the same
//! filter as CSV (at most 100,000 rows, streamed a chunk at a time, two exports per node at once, cells a
//! spreadsheet would run as formulas defused).
//!
//! Who may open either: an operator or an admin of the tenant, as every tenant page (`Actor::open_tenant`).
//! Paging is by id (`before` an id, or `after` one when going back), so new entries never shift a page.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::Value;

use super::csv_export;
use super::ui::{FieldErrors, When, query_pairs};
use super::{Chrome, UiSession};
use crate::app::AppState;
use crate::db;
use crate::error::Error;
use crate::http::page::{PageResult, message_page, render};
use crate::identity::audit::{self, ActorKind, Entry, Filter, UserName};
use crate::tenants::TenantSlug;

const PAGE_SIZE: u32 = 50;
const CSV_MAX_ROWS: usize = 100_000;
const CSV_CHUNK: u32 = 1_000;
const CSV_COLUMNS: [&str; 12] = [
    "id",
    "time",
    "type",
    "summary",
    "user_id",
    "user_email",
    "actor",
    "actor_name",
    "ip",
    "user_agent",
    "request_id",
    "detail",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tenants/{slug}/audit", get(audit_page))
        .route("/admin/tenants/{slug}/audit.csv", get(audit_csv))
}

/// The page's query: the filter form's fields as typed (shown again as they were) and the paging position.
#[derive(Deserialize, Default, Clone)]
struct AuditQuery {
    #[serde(default, rename = "type")]
    kind: String,
    /// Part of an email address.
    #[serde(default)]
    user: String,
    /// One user exactly (links from elsewhere).
    #[serde(default)]
    user_id: String,
    /// An `ActorKind` key, or one exact actor (`operator:{id}`, from the actor links).
    #[serde(default)]
    actor: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
}

/// The filter the query asks for (its limit a page), and the errors of its fields.
fn parse(q: &AuditQuery) -> (Filter, FieldErrors) {
    let mut errors = FieldErrors::new();
    let mut filter = Filter { limit: PAGE_SIZE, ..Default::default() };
    let kind = q.kind.trim();
    if !kind.is_empty() {
        if audit::TYPES.contains(&kind) {
            filter.kind = Some(kind.to_owned());
        } else {
            errors.add("type", "choose an event type from the list");
        }
    }
    let user = q.user.trim();
    if user.chars().count() > 254 {
        errors.add("user", "an email address has at most 254 characters");
    } else if !user.is_empty() {
        filter.email = Some(user.to_lowercase());
    }
    let user_id = q.user_id.trim();
    if !user_id.is_empty() && user_id.len() <= 100 {
        filter.user_id = Some(user_id.to_owned());
    }
    let actor = q.actor.trim();
    if !actor.is_empty() {
        match ActorKind::parse(actor) {
            Some(kind) => filter.actor_kind = Some(kind),
            None if actor.contains(':') && actor.len() <= 200 => filter.actor = Some(actor.to_owned()),
            None => errors.add("actor", "choose an actor from the list"),
        }
    }
    let from = day("from", &q.from, &mut errors);
    let to = day("to", &q.to, &mut errors);
    if let (Some(from), Some(to)) = (from, to)
        && to < from
    {
        errors.add("to", "the end date is before the start date");
    }
    filter.since = from;
    // The whole last day.
    filter.until = to.map(|t| t + 86_399);
    (filter, errors)
}

/// A date input's value (`YYYY-MM-DD`) as the unix time of the start of that day in UTC; an error for `field`
/// when it is not a real date.
fn day(field: &str, raw: &str, errors: &mut FieldErrors) -> Option<i64> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let start = parse_day(raw);
    if start.is_none() {
        errors.add(field, "enter a date like 2026-01-31");
    }
    start
}

pub(super) fn parse_day(raw: &str) -> Option<i64> {
    let shape = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !shape {
        return None;
    }
    let year: i32 = raw[0..4].parse().ok()?;
    let month = time::Month::try_from(raw[5..7].parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, raw[8..10].parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// The filter's query pairs as the form holds them, for the paging, CSV and clear links.
fn filter_query(q: &AuditQuery) -> String {
    query_pairs(&[
        ("type", q.kind.trim()),
        ("user", q.user.trim()),
        ("user_id", q.user_id.trim()),
        ("actor", q.actor.trim()),
        ("from", q.from.trim()),
        ("to", q.to.trim()),
    ])
}

/// `path?query&key=value`, leaving out what is empty.
fn link(path: &str, query: &str, extra: Option<(&str, i64)>) -> String {
    let mut pairs = query.to_owned();
    if let Some((key, value)) = extra {
        if !pairs.is_empty() {
            pairs.push('&');
        }
        pairs.push_str(&format!("{key}={value}"));
    }
    if pairs.is_empty() { path.to_owned() } else { format!("{path}?{pairs}") }
}

/// What ids are named with: the users of the entries at hand, the tenant's admins and API tokens, its clients.
#[derive(Default)]
struct Names {
    users: HashMap<String, UserName>,
    /// `operator:{id}` → email, `token:{id}` → token name.
    admins: HashMap<String, String>,
    /// client id → name.
    clients: HashMap<String, String>,
}

/// The first 8 characters of an id, to tell deleted things apart.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl Names {
    /// The names for `viewer`: a tenant admin sees node-wide operators and tokens by their role only.
    async fn load(app: &AppState, slug: &TenantSlug, viewer: &crate::admin::Scope) -> Result<Names, Error> {
        let key = slug.clone();
        let hide = *viewer != crate::admin::Scope::Operator;
        let (admins, clients) = app
            .control
            .read(move |conn| {
                let admins = crate::control::tables::admin_actor_names(conn, &key, hide)?;
                let clients: HashMap<String, String> =
                    crate::oidc::clients::list(conn, &key)?.into_iter().map(|c| (c.client_id, c.name)).collect();
                Ok((admins, clients))
            })
            .await?;
        Ok(Names { users: HashMap::new(), admins, clients })
    }

    /// The actor as people read it: an email, "API token deploy", "OAuth client Shop", "System".
    fn actor(&self, actor: &str) -> String {
        if actor.is_empty() {
            return "Anonymous visitor".to_owned();
        }
        if actor == "system" {
            return "System".to_owned();
        }
        if let Some(id) = actor.strip_prefix("user:") {
            return match self.users.get(id) {
                Some(user) => user.email.clone(),
                None => format!("deleted user {}", short(id)),
            };
        }
        if let Some(id) = actor.strip_prefix("operator:") {
            return match self.admins.get(actor) {
                Some(email) => email.clone(),
                None => format!("deleted admin {}", short(id)),
            };
        }
        if let Some(id) = actor.strip_prefix("token:") {
            return match self.admins.get(actor) {
                Some(name) => format!("API token {name}"),
                None => format!("deleted API token {}", short(id)),
            };
        }
        if let Some(id) = actor.strip_prefix("client:") {
            return format!("OAuth client {}", self.clients.get(id).map_or(id, String::as_str));
        }
        actor.to_owned()
    }

    /// The entry's summary, with the name of the client it names when there is one.
    fn summary(&self, e: &Entry) -> String {
        let name = e.detail.get("client_id").and_then(Value::as_str).and_then(|id| self.clients.get(id));
        match (name, &e.detail) {
            (Some(name), Value::Object(map)) => {
                let mut map = map.clone();
                map.insert("client_name".to_owned(), Value::String(name.clone()));
                audit::summary(&e.kind, &Value::Object(map))
            }
            _ => audit::summary(&e.kind, &e.detail),
        }
    }
}

/// "Chrome 131 on macOS · 203.0.113.9", leaving out what is unknown.
fn from_label(ip: Option<&str>, user_agent: Option<&str>) -> String {
    let browser = user_agent.map(crate::browser_summary).unwrap_or_default();
    [browser.as_str(), ip.unwrap_or("")].into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" · ")
}

/// `1,234`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- the page ----

/// The user an entry is about.
struct UserCell {
    text: String,
    /// The user's page, while the user exists.
    href: Option<String>,
    /// The display name, or a note ("no account").
    note: String,
}

struct Row {
    id: i64,
    when: When,
    kind: String,
    /// `bad`, `active` or `neutral` (`audit::tone`): failures get a red mark beside them.
    tone: &'static str,
    summary: String,
    user: Option<UserCell>,
    actor: String,
    /// This actor's entries only.
    actor_href: Option<String>,
    from: String,
    detail: String,
    ip: String,
    user_agent: String,
    request_id: String,
}

/// An option of a `<select>`: value, label, selected.
type Choice = (&'static str, &'static str, bool);

/// The exact actor or user a link asked for, shown as the filter's current value.
struct Exact {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    slug: String,
    tenant_name: String,
    tab: &'static str,
    errors: FieldErrors,
    types: Vec<Choice>,
    actor_kinds: Vec<Choice>,
    exact_actor: Option<Exact>,
    only_user: Option<Exact>,
    user: String,
    from: String,
    to: String,
    filtered: bool,
    rows: Vec<Row>,
    total: String,
    newest_href: Option<String>,
    newer_href: Option<String>,
    older_href: Option<String>,
    everyone_href: String,
    csv_href: String,
}

struct Loaded {
    entries: Vec<Entry>,
    users: HashMap<String, UserName>,
    total: u64,
    newer: Option<i64>,
    older: Option<i64>,
}

/// The page at `before` (or `after`) an id, with whether pages lie either side, the total and the users.
fn load_page(conn: &Connection, filter: &Filter, before: Option<i64>, after: Option<i64>) -> Result<Loaded, Error> {
    let (mut entries, _) = audit::list(conn, &Filter { cursor: before, after, ..filter.clone() })?;
    if after.is_some() && entries.len() < filter.limit as usize {
        // Back at the newest entries: show a full first page instead of a short one.
        entries = audit::list(conn, filter)?.0;
    }
    let newer = match entries.first() {
        Some(e) => audit::has_newer(conn, filter, e.id)?.then_some(e.id),
        None => None,
    };
    let older = match entries.last() {
        Some(e) => audit::has_older(conn, filter, e.id)?.then_some(e.id),
        None => None,
    };
    let total = audit::count(conn, filter)?;
    let users = audit::user_names(conn, &entries)?;
    Ok(Loaded { entries, users, total, newer, older })
}

fn row(slug: &str, e: Entry, names: &Names) -> Row {
    let user = match (&e.user_id, e.detail.get("email").and_then(Value::as_str)) {
        (Some(id), _) => Some(match names.users.get(id) {
            Some(u) => UserCell {
                text: u.email.clone(),
                href: Some(format!("/admin/tenants/{slug}/users/{id}")),
                note: u.name.clone().unwrap_or_default(),
            },
            None => UserCell { text: format!("deleted user {}", short(id)), href: None, note: String::new() },
        }),
        // A failed sign-in of an address without an account.
        (None, Some(email)) => Some(UserCell { text: email.to_owned(), href: None, note: "no account".to_owned() }),
        (None, None) => None,
    };
    let actor_href = (!e.actor.is_empty())
        .then(|| link(&format!("/admin/tenants/{slug}/audit"), &query_pairs(&[("actor", e.actor.as_str())]), None));
    Row {
        id: e.id,
        when: When::at(e.at),
        summary: names.summary(&e),
        user,
        // Someone acting on their own account: the User column already names them.
        actor: if e.user_id.as_deref().is_some_and(|id| e.actor.strip_prefix("user:") == Some(id)) {
            "the user".to_owned()
        } else {
            names.actor(&e.actor)
        },
        actor_href,
        from: from_label(e.ip.as_deref(), e.user_agent.as_deref()),
        detail: serde_json::to_string_pretty(&e.detail).unwrap_or_else(|_| e.detail.to_string()),
        ip: e.ip.unwrap_or_default(),
        user_agent: e.user_agent.unwrap_or_default(),
        request_id: e.request_id.unwrap_or_default(),
        tone: audit::tone(&e.kind),
        kind: e.kind,
    }
}

async fn audit_page(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let (tenant, db) = session.actor.open_tenant(&app, &slug).await?;
    let slug = tenant.slug.to_string();
    let (filter, errors) = parse(&q);
    let path = format!("/admin/tenants/{slug}/audit");
    let query = filter_query(&q);
    let before = q.before.trim().parse::<i64>().ok();
    let after = if before.is_none() { q.after.trim().parse::<i64>().ok() } else { None };

    let (mut names, loaded) = if errors.is_empty() {
        let names = Names::load(&app, &tenant.slug, &session.actor.scope).await?;
        let page_filter = filter.clone();
        let loaded = db::with_conn(&db.pool, move |conn| load_page(conn, &page_filter, before, after)).await?;
        (names, Some(loaded))
    } else {
        (Names::default(), None)
    };
    let (entries, total, newer, older) = match loaded {
        Some(l) => {
            names.users = l.users;
            (l.entries, l.total, l.newer, l.older)
        }
        None => (Vec::new(), 0, None, None),
    };

    let kind = filter.kind.clone().unwrap_or_default();
    let exact_actor = filter
        .actor
        .as_ref()
        .map(|a| Exact { value: a.clone(), label: if entries.is_empty() { a.clone() } else { names.actor(a) } });
    let only_user = filter.user_id.as_ref().map(|id| Exact {
        value: id.clone(),
        label: names.users.get(id).map_or_else(|| id.clone(), |u| u.email.clone()),
    });
    let everyone = AuditQuery { user_id: String::new(), ..q.clone() };
    let rows: Vec<Row> = entries.into_iter().map(|e| row(&slug, e, &names)).collect();
    let page = AuditPage {
        chrome: session.chrome("tenants"),
        tenant_name: tenant.name.clone(),
        tab: "audit",
        types: audit::TYPES.iter().map(|t| (*t, audit::label(t), *t == kind)).collect(),
        actor_kinds: ActorKind::ALL.into_iter().map(|k| (k.key(), k.label(), filter.actor_kind == Some(k))).collect(),
        exact_actor,
        only_user,
        user: q.user.trim().to_owned(),
        from: q.from.trim().to_owned(),
        to: q.to.trim().to_owned(),
        filtered: !query.is_empty(),
        rows,
        total: if total > audit::COUNT_CAP {
            format!("{}+ events", thousands(audit::COUNT_CAP))
        } else {
            format!("{} {}", thousands(total), if total == 1 { "event" } else { "events" })
        },
        newest_href: (before.is_some() || after.is_some()).then(|| link(&path, &query, None)),
        newer_href: newer.map(|id| link(&path, &query, Some(("after", id)))),
        older_href: older.map(|id| link(&path, &query, Some(("before", id)))),
        everyone_href: link(&path, &filter_query(&everyone), None),
        csv_href: link(&format!("/admin/tenants/{slug}/audit.csv"), &query, None),
        errors,
        slug,
    };
    let code = if page.errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((code, render(page)?).into_response())
}

// ---- CSV ----

async fn audit_csv(
    State(app): State<AppState>,
    session: UiSession,
    Path(slug): Path<String>,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    let (tenant, db) = session.actor.open_tenant(&app, &slug).await?;
    let (filter, errors) = parse(&q);
    if !errors.is_empty() {
        let text = errors.all().iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" ");
        return Ok(message_page(StatusCode::BAD_REQUEST, "That filter did not work", &text));
    }
    // One export per tenant at a time, and two per node: a tenant cannot take every slot.
    let turn = match csv_export::turn(&format!("audit:{}", tenant.slug), "This tenant's audit log entries") {
        Ok(turn) => turn,
        Err(busy) => return Ok(*busy),
    };
    let names = Names::load(&app, &tenant.slug, &session.actor.scope).await?;
    let first = Chunk { filter: Filter { cursor: None, after: None, ..filter }, names, written: 0, header: true };
    let file = csv_export::filename("audit", tenant.slug.as_str());
    Ok(csv_export::download(turn, db, first, export_chunk, "audit", file))
}

/// Where an export stands: the filter with its cursor, the names it has, the rows written so far.
struct Chunk {
    filter: Filter,
    names: Names,
    written: usize,
    header: bool,
}

/// Text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first) gets a leading `'`.
pub(super) fn safe_cell(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text }
}

/// The next chunk of the export as CSV (with the header row first), and what is left, if anything.
fn export_chunk(conn: &Connection, mut chunk: Chunk) -> Result<(Vec<u8>, Option<Chunk>), Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| Error::internal(format!("write CSV: {e}"));
    if chunk.header {
        out.write_record(CSV_COLUMNS).map_err(io)?;
        chunk.header = false;
    }
    chunk.filter.limit = CSV_CHUNK.min((CSV_MAX_ROWS - chunk.written) as u32);
    let (entries, next) = audit::list(conn, &chunk.filter)?;
    let names = &mut chunk.names;
    names.users = audit::user_names(conn, &entries)?;
    for e in &entries {
        let user_email = e.user_id.as_ref().and_then(|id| names.users.get(id)).map(|u| u.email.clone());
        let record = [
            e.id.to_string(),
            crate::format_time(e.at),
            e.kind.clone(),
            names.summary(e),
            e.user_id.clone().unwrap_or_default(),
            user_email.unwrap_or_default(),
            e.actor.clone(),
            names.actor(&e.actor),
            e.ip.clone().unwrap_or_default(),
            e.user_agent.clone().unwrap_or_default(),
            e.request_id.clone().unwrap_or_default(),
            e.detail.to_string(),
        ]
        .map(safe_cell);
        out.write_record(&record).map_err(io)?;
    }
    chunk.written += entries.len();
    if chunk.written >= CSV_MAX_ROWS && next.is_some() {
        // Said in the file itself: the rest is there, but not in this export.
        let mut note = [""; 12].map(str::to_owned);
        note[2] = "truncated".to_owned();
        note[3] = format!("This export stops at {CSV_MAX_ROWS} rows; narrow the dates for the older entries.");
        out.write_record(&note).map_err(io)?;
    }
    let bytes = out.into_inner().map_err(|e| Error::internal(format!("write CSV: {e}")))?;
    let more = match next {
        Some(cursor) if chunk.written < CSV_MAX_ROWS => {
            chunk.filter.cursor = Some(cursor);
            Some(chunk)
        }
        _ => None,
    };
    Ok((bytes, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_checked() {
        assert_eq!(parse_day("1970-01-02"), Some(86_400));
        assert_eq!(parse_day("2026-02-29"), None, "not a leap year");
        for bad in ["2026-1-01", "2026/01/01", "2026-13-01", "+026-01-01", "yesterday", "2026-01-01T00"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        let q = AuditQuery { from: "2026-03-02".into(), to: "2026-03-01".into(), ..Default::default() };
        let (_, errors) = parse(&q);
        assert_eq!(errors.get("to"), Some("The end date is before the start date."));
        let q = AuditQuery { from: "2026-03-01".into(), to: "2026-03-01".into(), ..Default::default() };
        let (filter, errors) = parse(&q);
        assert!(errors.is_empty());
        assert_eq!(filter.until.unwrap() - filter.since.unwrap(), 86_399, "the whole day");
    }

    #[test]
    fn actors_are_kinds_or_exact() {
        let (filter, _) = parse(&AuditQuery { actor: "operator".into(), ..Default::default() });
        assert_eq!(filter.actor_kind, Some(ActorKind::Operator));
        let (filter, _) = parse(&AuditQuery { actor: "operator:abc".into(), ..Default::default() });
        assert_eq!(filter.actor.as_deref(), Some("operator:abc"));
        let (_, errors) = parse(&AuditQuery { actor: "whoever".into(), ..Default::default() });
        assert!(errors.get("actor").is_some());
    }

    #[test]
    fn cells_and_numbers() {
        assert_eq!(safe_cell("=cmd|' /C calc'!A0".into()), "'=cmd|' /C calc'!A0");
        assert_eq!(safe_cell("-1".into()), "'-1");
        assert_eq!(safe_cell("plain, text".into()), "plain, text");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(from_label(Some("203.0.113.9"), Some("curl/8.5.0")), "curl/8.5.0 · 203.0.113.9");
        assert_eq!(from_label(None, None), "");
        assert_eq!(link("/p", "", Some(("before", 5))), "/p?before=5");
        assert_eq!(link("/p", "type=x", Some(("after", 5))), "/p?type=x&after=5");
        assert_eq!(link("/p", "", None), "/p");
    }
}
