//! The tenant's append-only audit log (table `audit_log`; triggers refuse updates and deletes): `record` appends;
//! `list` and `count` read through a `Filter` (type, user, part of an email, actor, time range, id cursor);
//! `user_names` names the users of a page in one query; `label` and `summary` turn a type and its detail JSON into
//! text for people (the admin UI and its CSV export). The detail of each type is what its `record` call sites
//! write; `summary` reads it leniently, since old rows keep whatever shape they were written with.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// Who did something and from where, taken from the request.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `user:{id}`, `operator:{id}`, `token:{id}`, `client:{id}`, `system`, or empty for an anonymous visitor.
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Appends one entry; `kind` is one of the documented types (`user_created`, `login_failed`, …).
pub fn record(conn: &Connection, kind: &str, user_id: Option<&str>, origin: &Origin, detail: Value) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, type, user_id, actor, ip, user_agent, request_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        crate::now_unix(),
        kind,
        user_id,
        origin.actor,
        origin.ip,
        origin.user_agent.as_deref().map(|ua| crate::email::outbox::truncate(ua, 512)),
        origin.request_id,
        detail.to_string()
    ])?;
    Ok(())
}

/// One audit entry as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct Entry {
    pub id: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: i64,
    /// One of the documented types (`user_created`, `login_failed`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: Option<String>,
    /// `user:{id}`, `operator:{id}`, `token:{id}`, `client:{id}`, `system`, or empty for an anonymous visitor.
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub detail: Value,
}

/// What to list: all filters optional. Entries come newest first; `cursor` is the last id seen (the entries older
/// than it follow), `after` asks instead for the `limit` entries just newer than an id (paging back).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    /// Part of an email address: entries about the users whose email contains it (the first 50 such users), and
    /// entries whose detail names a matching `email` (failed sign-ins of unknown addresses, deleted users).
    pub email: Option<String>,
    /// One exact actor (`operator:{id}`, `user:{id}`, …).
    pub actor: Option<String>,
    /// Every actor of one kind.
    pub actor_kind: Option<ActorKind>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, inclusive.
    pub until: Option<i64>,
    pub cursor: Option<i64>,
    pub after: Option<i64>,
    pub limit: u32,
}

/// The kinds of actor: who did something, by the prefix of the `actor` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Operator,
    Token,
    Client,
    System,
    Anonymous,
}

impl ActorKind {
    pub const ALL: [ActorKind; 6] = [
        ActorKind::User,
        ActorKind::Operator,
        ActorKind::Token,
        ActorKind::Client,
        ActorKind::System,
        ActorKind::Anonymous,
    ];

    /// The value in query strings.
    pub fn key(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Operator => "operator",
            ActorKind::Token => "token",
            ActorKind::Client => "client",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }

    pub fn parse(key: &str) -> Option<ActorKind> {
        ActorKind::ALL.into_iter().find(|k| k.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            ActorKind::User => "End users",
            ActorKind::Operator => "Operators and tenant admins",
            ActorKind::Token => "API tokens",
            ActorKind::Client => "OAuth clients",
            ActorKind::System => "System",
            ActorKind::Anonymous => "Anonymous visitors",
        }
    }

    /// The `LIKE` pattern over `actor` (an anonymous visitor's actor is empty: a failed sign-in of an unknown email,
    /// a plugin refusing a sign-up).
    fn pattern(self) -> &'static str {
        match self {
            ActorKind::User => "user:%",
            ActorKind::Operator => "operator:%",
            ActorKind::Token => "token:%",
            ActorKind::Client => "client:%",
            ActorKind::System => "system",
            ActorKind::Anonymous => "",
        }
    }
}

/// The types the log holds (for filters and the admin UI).
pub const TYPES: &[&str] = &[
    "login_succeeded",
    "login_failed",
    "locked_out",
    "logout",
    "password_changed",
    "password_reset_requested",
    "mfa_enabled",
    "mfa_disabled",
    "user_created",
    "user_updated",
    "user_disabled",
    "user_deleted",
    "role_changed",
    "admin_action",
    "consent_granted",
    "consent_revoked",
    "token_reuse",
    "plugin_denied",
    "plugin_failed",
    "payment_event",
];

const COLUMNS: &str = "id, at, type, user_id, actor, ip, user_agent, request_id, detail";

/// Counts stop here: past it a page says "10,000+" instead of reading the whole log for an exact number.
pub const COUNT_CAP: u64 = 10_000;

/// Which way a page goes from its bound: older entries (newest first) or newer ones (oldest first).
#[derive(Clone, Copy)]
enum Order {
    Older,
    Newer,
}

/// The `WHERE` clause of `filter` (anonymous `?` parameters, in the order of the values) with only the conditions
/// it sets (so SQLite can use the indexes on `type`,
/// `user_id` and `at`; `?N IS NULL OR …` for absent filters would make it read the whole log), and its values.
fn conditions(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as Sql;
    let mut clauses: Vec<&str> = vec!["1"];
    let mut values: Vec<Sql> = Vec::new();
    if let Some(kind) = &filter.kind {
        clauses.push("type = ?");
        values.push(Sql::Text(kind.clone()));
    }
    if let Some(user) = &filter.user_id {
        clauses.push("user_id = ?");
        values.push(Sql::Text(user.clone()));
    }
    if let Some(email) = &filter.email {
        clauses.push(
            "(user_id IN (SELECT id FROM users WHERE email LIKE ? ESCAPE '\\' LIMIT 50)
              OR (json_valid(detail) AND json_extract(detail, '$.email') LIKE ? ESCAPE '\\'))",
        );
        values.push(Sql::Text(contains_pattern(email)));
        values.push(Sql::Text(contains_pattern(email)));
    }
    if let Some(actor) = &filter.actor {
        clauses.push("actor = ?");
        values.push(Sql::Text(actor.clone()));
    }
    if let Some(kind) = filter.actor_kind {
        clauses.push("actor LIKE ?");
        values.push(Sql::Text(kind.pattern().to_owned()));
    }
    if let Some(since) = filter.since {
        clauses.push("at >= ?");
        values.push(Sql::Integer(since));
    }
    if let Some(until) = filter.until {
        clauses.push("at <= ?");
        values.push(Sql::Integer(until));
    }
    (clauses.join(" AND "), values)
}

/// `%part%` for `LIKE … ESCAPE '\'`, with the wildcards of `part` taken literally.
fn contains_pattern(part: &str) -> String {
    format!("%{}%", part.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let detail: String = r.get(8)?;
    Ok(Entry {
        id: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        user_id: r.get(3)?,
        actor: r.get(4)?,
        ip: r.get(5)?,
        user_agent: r.get(6)?,
        request_id: r.get(7)?,
        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
    })
}

/// The entries matching `filter` in `order` from the id `bound` (exclusive), at most `filter.limit`.
fn query(conn: &Connection, filter: &Filter, order: Order, bound: Option<i64>) -> Result<Vec<Entry>> {
    let (mut sql, mut values) = conditions(filter);
    match (order, bound) {
        (Order::Older, Some(id)) => {
            sql.push_str(" AND id < ?");
            values.push(id.into());
        }
        (Order::Newer, Some(id)) => {
            sql.push_str(" AND id > ?");
            values.push(id.into());
        }
        _ => {}
    }
    let direction = match order {
        Order::Older => "DESC",
        Order::Newer => "ASC",
    };
    sql.push_str(&format!(" ORDER BY id {direction} LIMIT ?"));
    values.push(i64::from(filter.limit).into());
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM audit_log WHERE {sql}"))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values), from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A page of entries, newest first, and the cursor of the next (older) page: the last id when the page is full.
/// With `filter.after`, the page just newer than that id; its cursor is then its oldest id.
pub fn list(conn: &Connection, filter: &Filter) -> Result<(Vec<Entry>, Option<i64>)> {
    match filter.after {
        None => {
            let entries = query(conn, filter, Order::Older, filter.cursor)?;
            let next = (entries.len() == filter.limit as usize).then(|| entries.last().map(|e| e.id)).flatten();
            Ok((entries, next))
        }
        Some(after) => {
            let mut entries = query(conn, filter, Order::Newer, Some(after))?;
            entries.reverse();
            let next = entries.last().map(|e| e.id);
            Ok((entries, next))
        }
    }
}

/// How many entries match `filter` (its cursor and limit aside), counted up to `COUNT_CAP + 1` at most.
pub fn count(conn: &Connection, filter: &Filter) -> Result<u64> {
    let (sql, mut values) = conditions(filter);
    values.push(i64::try_from(COUNT_CAP + 1).unwrap_or(i64::MAX).into());
    let mut stmt =
        conn.prepare_cached(&format!("SELECT COUNT(*) FROM (SELECT 1 FROM audit_log WHERE {sql} LIMIT ?)"))?;
    let n: i64 = stmt.query_row(rusqlite::params_from_iter(values), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Whether an entry matching `filter` is newer than the id `than` (whether a "newer" link leads anywhere).
pub fn has_newer(conn: &Connection, filter: &Filter, than: i64) -> Result<bool> {
    let probe = Filter { cursor: None, after: None, limit: 1, ..filter.clone() };
    Ok(!query(conn, &probe, Order::Newer, Some(than))?.is_empty())
}

/// Whether an entry matching `filter` is older than the id `than`.
pub fn has_older(conn: &Connection, filter: &Filter, than: i64) -> Result<bool> {
    let probe = Filter { cursor: None, after: None, limit: 1, ..filter.clone() };
    Ok(!query(conn, &probe, Order::Older, Some(than))?.is_empty())
}

/// A user as lists name them.
#[derive(Debug, Clone)]
pub struct UserName {
    pub email: String,
    pub name: Option<String>,
}

/// The users the entries are about or were done by (`user_id`, `user:{id}` actors), by id, in one query. Users
/// deleted since are missing.
pub fn user_names(conn: &Connection, entries: &[Entry]) -> Result<HashMap<String, UserName>> {
    let mut ids: Vec<&str> =
        entries.iter().flat_map(|e| [e.user_id.as_deref(), e.actor.strip_prefix("user:")]).flatten().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = serde_json::to_string(&ids).map_err(crate::error::Error::internal)?;
    let mut stmt =
        conn.prepare_cached("SELECT id, email, name FROM users WHERE id IN (SELECT value FROM json_each(?1))")?;
    let rows =
        stmt.query_map([ids], |r| Ok((r.get::<_, String>(0)?, UserName { email: r.get(1)?, name: r.get(2)? })))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- text for people ----

/// The type as a short label ("Sign-in failed" for `login_failed`).
pub fn label(kind: &str) -> &'static str {
    match kind {
        "login_succeeded" => "Signed in",
        "login_failed" => "Sign-in failed",
        "locked_out" => "Locked out",
        "logout" => "Signed out",
        "password_changed" => "Password changed",
        "password_reset_requested" => "Password reset requested",
        "mfa_enabled" => "Two-factor turned on",
        "mfa_disabled" => "Two-factor turned off",
        "user_created" => "User created",
        "user_updated" => "User updated",
        "user_disabled" => "User disabled",
        "user_deleted" => "User deleted",
        "role_changed" => "Roles changed",
        "admin_action" => "Admin action",
        "consent_granted" => "Consent granted",
        "consent_revoked" => "Consent withdrawn",
        "token_reuse" => "Token reused",
        "plugin_denied" => "Plugin refused",
        "plugin_failed" => "Plugin failed",
        "payment_event" => "Payment provider event",
        _ => "Other event",
    }
}

/// How lists mark a type, as a badge class of the admin CSS: `bad` for failures and refusals, `active` for
/// sign-ins and new things, `neutral` for the rest.
pub fn tone(kind: &str) -> &'static str {
    match kind {
        "login_failed" | "locked_out" | "user_disabled" | "user_deleted" | "token_reuse" | "plugin_denied"
        | "plugin_failed" => "bad",
        "login_succeeded" | "user_created" | "mfa_enabled" | "consent_granted" => "active",
        _ => "neutral",
    }
}

fn text<'a>(detail: &'a Value, key: &str) -> Option<&'a str> {
    detail.get(key)?.as_str().filter(|s| !s.is_empty())
}

fn number(detail: &Value, key: &str) -> i64 {
    detail.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// An array of strings, or a space-separated string.
fn strings(detail: &Value, key: &str) -> Vec<String> {
    match detail.get(key) {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn count_of(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `client Foo`: the client's name when the caller added it to the detail as `client_name`, else its id.
fn client(detail: &Value) -> String {
    match text(detail, "client_name").or_else(|| text(detail, "client_id")) {
        Some(c) => format!("client {c}"),
        None => "a client".to_owned(),
    }
}

/// ", 2 sessions ended, 1 app grant revoked", for what is not zero.
fn ended(detail: &Value) -> String {
    let mut out = String::new();
    let sessions = number(detail, "sessions_ended");
    if sessions > 0 {
        out.push_str(&format!(", {} ended", count_of(sessions, "session", "sessions")));
    }
    let grants = number(detail, "grants_revoked");
    if grants > 0 {
        out.push_str(&format!(", {} revoked", count_of(grants, "app grant", "app grants")));
    }
    out
}

/// One readable line for an entry: "Sign-in failed: wrong password", "Role admin granted", "Consent granted to
/// client Shop for openid, email". `detail` is the entry's detail, optionally with a `client_name` added.
pub fn summary(kind: &str, detail: &Value) -> String {
    match kind {
        "login_succeeded" => match text(detail, "mfa") {
            Some("totp") => "Signed in with an authenticator code".to_owned(),
            Some("recovery_code") => "Signed in with a recovery code".to_owned(),
            Some("enrolled") => "Signed in after setting up two-factor authentication".to_owned(),
            _ => "Signed in".to_owned(),
        },
        "login_failed" => match text(detail, "reason") {
            Some("wrong_password") => "Sign-in failed: wrong password".to_owned(),
            Some("unknown_email") => match text(detail, "email") {
                Some(email) => format!("Sign-in failed: no account for {email}"),
                None => "Sign-in failed: no such account".to_owned(),
            },
            Some("locked") => "Sign-in failed: account locked".to_owned(),
            Some("disabled") => "Sign-in failed: account disabled".to_owned(),
            Some("wrong_code") => "Sign-in failed: wrong two-factor code".to_owned(),
            Some(other) => format!("Sign-in failed: {}", other.replace('_', " ")),
            None => "Sign-in failed".to_owned(),
        },
        "locked_out" => {
            let until = text(detail, "until").map(|u| {
                time::OffsetDateTime::parse(u, &time::format_description::well_known::Rfc3339)
                    .map_or_else(|_| u.to_owned(), |t| crate::display_time(t.unix_timestamp()))
            });
            match until {
                Some(until) => format!("Locked out until {until}"),
                None => "Locked out".to_owned(),
            }
        }
        "logout" if detail.get("revoked").and_then(Value::as_bool) == Some(true) => {
            "Ended one of their sessions".to_owned()
        }
        "logout" => "Signed out".to_owned(),
        "password_changed" => {
            let what = match text(detail, "via") {
                Some("reset") => "Password reset with an emailed link",
                Some("invite") => "Password set from an invitation",
                _ => "Password changed",
            };
            format!("{what}{}", ended(detail))
        }
        "password_reset_requested" => match text(detail, "by") {
            Some("admin") if detail.get("invite").and_then(Value::as_bool) == Some(true) => {
                "Invitation mailed by an admin".to_owned()
            }
            Some("admin") => "Password reset mailed by an admin".to_owned(),
            _ => "Password reset requested".to_owned(),
        },
        "mfa_enabled" => match text(detail, "method") {
            Some("totp") => "Two-factor authentication turned on (authenticator app)".to_owned(),
            _ => "Two-factor authentication turned on".to_owned(),
        },
        "mfa_disabled" => match text(detail, "by") {
            Some("admin") => "Two-factor authentication removed by an admin".to_owned(),
            _ => "Two-factor authentication turned off".to_owned(),
        },
        "user_created" => match text(detail, "by") {
            Some("self") => "Signed up".to_owned(),
            Some("admin") if detail.get("invited").and_then(Value::as_bool) == Some(true) => {
                "Created by an admin and invited by email".to_owned()
            }
            Some("admin") => "Created by an admin".to_owned(),
            _ => "User created".to_owned(),
        },
        "user_updated" => {
            if detail.get("email_verified").and_then(Value::as_bool) == Some(true) {
                "Email address verified".to_owned()
            } else if text(detail, "status") == Some("active") {
                "Enabled".to_owned()
            } else {
                "Profile updated".to_owned()
            }
        }
        "user_disabled" => format!("Disabled{}", ended(detail)),
        "user_deleted" => match text(detail, "email") {
            Some(email) => format!("User {email} deleted"),
            None => "User deleted".to_owned(),
        },
        "role_changed" => {
            let (added, removed) = (strings(detail, "added"), strings(detail, "removed"));
            let part = |names: &[String], what: &str| {
                format!("{} {} {what}", if names.len() == 1 { "role" } else { "roles" }, names.join(", "))
            };
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(part(added.as_slice(), "granted"));
            }
            if !removed.is_empty() {
                parts.push(part(removed.as_slice(), "removed"));
            }
            if parts.is_empty() { "Roles changed".to_owned() } else { capitalized(&parts.join("; ")) }
        }
        "admin_action" => {
            let role = text(detail, "role").unwrap_or("?");
            match text(detail, "action") {
                Some("session_revoked") => "Session ended by an admin".to_owned(),
                Some("role_created") => format!("Role {role} created"),
                Some("role_updated") => format!("Role {role} changed"),
                Some("role_deleted") => format!("Role {role} deleted"),
                Some(other) => format!("Admin action: {}", other.replace('_', " ")),
                None => "Admin action".to_owned(),
            }
        }
        "consent_granted" => {
            let scopes = strings(detail, "scopes");
            if scopes.is_empty() {
                format!("Consent granted to {}", client(detail))
            } else {
                format!("Consent granted to {} for {}", client(detail), scopes.join(", "))
            }
        }
        "consent_revoked" => format!("Consent withdrawn from {}", client(detail)),
        "token_reuse" => match text(detail, "token") {
            Some("authorization_code") => {
                format!("Authorization code used twice by {}; its tokens were revoked", client(detail))
            }
            Some("refresh_token") => {
                format!("Refresh token used twice by {}; its token family was revoked", client(detail))
            }
            _ => format!("Token used twice by {}", client(detail)),
        },
        "plugin_denied" | "plugin_failed" => plugin_summary(kind, detail),
        "payment_event" => {
            let what = text(detail, "outcome").unwrap_or("received").replace('_', " ");
            match text(detail, "event_type") {
                Some(event) => format!("Payment event {event}: {what}"),
                None => format!("Payment: {what}"),
            }
        }
        other => match label(other) {
            "Other event" => capitalized(&other.replace('_', " ")),
            known => known.to_owned(),
        },
    }
}

fn plugin_summary(kind: &str, detail: &Value) -> String {
    let plugin = match (text(detail, "plugin"), detail.get("version").and_then(Value::as_i64)) {
        (Some(name), Some(v)) if kind == "plugin_failed" => format!("Plugin {name} v{v}"),
        (Some(name), _) => format!("Plugin {name}"),
        (None, _) => "A plugin".to_owned(),
    };
    let during = match text(detail, "function") {
        Some("pre-registration") => "sign-up".to_owned(),
        Some("post-login") => "sign-in".to_owned(),
        Some("render") => "an email".to_owned(),
        Some("price") => "pricing".to_owned(),
        Some(other) => other.replace(['_', '-'], " "),
        None => "a request".to_owned(),
    };
    if kind == "plugin_denied" {
        return match text(detail, "reason") {
            Some(reason) => format!("{plugin} denied {during}: {reason}"),
            None => format!("{plugin} denied {during}"),
        };
    }
    let outcome = text(detail, "outcome").map(|o| format!(" ({})", o.replace('_', " "))).unwrap_or_default();
    let then = match text(detail, "policy") {
        Some("fail_open") => "; let through",
        Some("fail_closed") => "; refused",
        _ => "",
    };
    format!("{plugin} failed on {during}{outcome}{then}")
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
