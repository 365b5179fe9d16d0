//! The control log: every applied mutation as an entry (index, kind, JSON), the last `KEEP` of them, written in
//! the mutation's own transaction with `meta.last_applied`. Today the index is a local counter; with Raft it is
//! the log index, and this table is the seam openraft replaces. `GET /admin/api/v1/control/log` (operators) shows
//! it with secrets and component bytes left out.
//!
//! Invariant: an entry's JSON deserialises to the very mutation that was applied, with its outcome (applied, with
//! any value apply assigned, or refused), so replaying the kept entries into an empty control.db
//! (`ControlStore::apply_entry`) gives the same rows and outcomes — except blob chunks (plugin components), whose
//! bytes this table leaves out to stay small: the entry names them by the SHA-256 of the whole, and the bytes
//! live in `plugin_versions`. (Raft's own log carries the chunks whole.)

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::control::{Mutation, Outcome};
use crate::error::{Error, Result};

/// Entries kept; older ones are dropped as new ones are written.
pub const KEEP: u64 = 10_000;

/// Appends `mutation` as entry `index` with its outcome, records it as the last applied, and drops entries older
/// than `KEEP`.
pub fn record(tx: &Connection, index: u64, mutation: &Mutation, outcome: &Outcome) -> Result<()> {
    let mut json = serde_json::to_value(mutation).map_err(Error::internal)?;
    // A chunk is up to 512 KiB; the entry names its blob by hash, and the bytes end up in `plugin_versions`.
    if let Some(data) = json.get_mut("data") {
        *data = Value::Null;
    }
    let index_sql = i64::try_from(index).map_err(Error::internal)?;
    tx.execute(
        "INSERT INTO control_log (idx, kind, mutation, outcome) VALUES (?1, ?2, ?3, ?4)",
        params![index_sql, mutation.kind(), json.to_string(), serde_json::to_string(outcome).map_err(Error::internal)?],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('last_applied', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [index.to_string()],
    )?;
    tx.execute("DELETE FROM control_log WHERE idx <= ?1", [index_sql - KEEP as i64])?;
    Ok(())
}

/// One entry as stored: the mutation exactly as applied (chunk bytes aside) and what it came to.
pub struct Entry {
    pub index: u64,
    pub kind: String,
    pub mutation: Value,
    pub outcome: Value,
}

/// Up to `limit` entries after `after`, oldest first.
pub fn entries(conn: &Connection, after: u64, limit: u32) -> Result<Vec<Entry>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut stmt =
        conn.prepare("SELECT idx, kind, mutation, outcome FROM control_log WHERE idx > ?1 ORDER BY idx LIMIT ?2")?;
    let rows = stmt.query_map(params![after, limit], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (index, kind, text, outcome) = row?;
        out.push(Entry {
            index: index as u64,
            kind,
            mutation: serde_json::from_str(&text).map_err(Error::internal)?,
            outcome: serde_json::from_str(&outcome).map_err(Error::internal)?,
        });
    }
    Ok(out)
}

/// Keys whose values an operator reading the log does not need and must not get in bulk: hashes of secrets,
/// sealed secrets, session and CSRF tokens, the master-key check.
const SECRET_KEYS: &[&str] = &[
    "password_hash",
    "token_hash",
    "secret_hash",
    "password_sealed",
    "secrets_sealed",
    "private_sealed",
    "id_hash",
    "csrf_token",
    "value",
];

/// An entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    pub index: u64,
    pub kind: String,
    /// The mutation's fields, secrets replaced by `"<redacted>"`.
    pub mutation: Value,
    /// `{"result": "applied"}` (with `assigned`, a value apply chose such as a plugin version) or
    /// `{"result": "refused", "code", "message"}`: a refused entry changed nothing.
    pub outcome: Value,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        let mut mutation = entry.mutation;
        redact(&mut mutation);
        EntryView { index: entry.index, kind: entry.kind, mutation, outcome: entry.outcome }
    }
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) && !v.is_null() {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let entry = Entry {
            index: 3,
            kind: "put_oauth_client".into(),
            mutation: serde_json::json!({"type": "put_oauth_client", "client": {"client_id": "c", "secret_hash": "abc"},
                                         "token_hash": "t", "name": "keep"}),
            outcome: serde_json::json!({"result": "applied"}),
        };
        let view = EntryView::from(entry);
        assert_eq!(view.mutation["client"]["secret_hash"], "<redacted>");
        assert_eq!(view.mutation["token_hash"], "<redacted>");
        assert_eq!(view.mutation["name"], "keep");
        assert_eq!(view.mutation["client"]["client_id"], "c");
    }
}
