//! The tenant's append-only audit log (table `audit_log`; triggers refuse updates and deletes).

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;

/// Who did something and from where, taken from the request.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// `user:{id}`, `operator:{id}`, `token:{id}` or `system`.
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
    /// `user:{id}`, `operator:{id}`, `token:{id}` or `system`.
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub detail: Value,
}

/// What to list: all filters optional; `cursor` is the last id seen (entries come newest first).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub since: Option<i64>,
    pub cursor: Option<i64>,
    pub limit: u32,
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
];

pub fn list(conn: &Connection, filter: &Filter) -> Result<(Vec<Entry>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, type, user_id, actor, ip, user_agent, request_id, detail FROM audit_log
         WHERE (?1 IS NULL OR type = ?1) AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR at >= ?3)
           AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5",
    )?;
    let entries: Vec<Entry> = stmt
        .query_map(params![filter.kind, filter.user_id, filter.since, filter.cursor, filter.limit], |r| {
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
        })?
        .collect::<rusqlite::Result<_>>()?;
    let next = (entries.len() == filter.limit as usize).then(|| entries.last().map(|e| e.id)).flatten();
    Ok((entries, next))
}
