//! The tenant's append-only audit log (table `audit_log`; triggers refuse updates and deletes).

use rusqlite::{Connection, params};
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
