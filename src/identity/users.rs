//! Users of a tenant (table `users`): the row type, input checks (email, name, custom fields) and SQL.
//! Passwords are hashed by the caller (`App::passwords`, argon2id on the bounded pool) before they reach here.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::identity::settings::{CustomField, FieldType, Lockout};

/// A user of a tenant as the APIs show it (no password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    /// `active` or `disabled`.
    pub status: String,
    pub name: Option<String>,
    /// The tenant's custom fields, by name.
    #[schema(value_type = Object)]
    pub fields: Value,
    pub has_password: bool,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    #[serde(with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_login_at: Option<i64>,
}

const COLUMNS: &str =
    "id, email, email_verified, status, name, fields, password_hash IS NOT NULL, created_at, updated_at, last_login_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    let fields: String = r.get(5)?;
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        email_verified: r.get(2)?,
        status: r.get(3)?,
        name: r.get(4)?,
        fields: serde_json::from_str(&fields).unwrap_or_else(|_| Value::Object(Map::new())),
        has_password: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        last_login_at: r.get(9)?,
    })
}

/// The stored form of an email: trimmed, lower-cased, one valid address.
pub fn normalize_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_lowercase();
    crate::email::parse_address(&email)?;
    Ok(email)
}

pub fn check_name(name: &str) -> Result<()> {
    crate::tenants::check_text("name", name, 200)
}

/// Checks `fields` against the tenant's definitions: only defined keys, values of the defined type, and every
/// required field present.
pub fn check_fields(fields: &Value, defined: &[CustomField]) -> Result<()> {
    let Some(object) = fields.as_object() else { return Err(Error::validation("fields must be a JSON object")) };
    for (key, value) in object {
        let Some(def) = defined.iter().find(|d| &d.name == key) else {
            return Err(Error::validation(format!("fields.{key} is not a custom field of this tenant")));
        };
        let ok = match def.kind {
            FieldType::String => value.as_str().is_some_and(|s| s.chars().count() <= 1000),
            FieldType::Number => value.is_number(),
            FieldType::Bool => value.is_boolean(),
        };
        if !ok {
            return Err(Error::validation(format!("fields.{key} must be a {:?}", def.kind).to_lowercase()));
        }
    }
    if let Some(missing) = defined.iter().find(|d| d.required && !object.contains_key(&d.name)) {
        return Err(Error::validation(format!("fields.{} is required", missing.name)));
    }
    Ok(())
}

/// A user about to be inserted; every value already checked.
pub struct NewUser {
    pub email: String,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub fields: Value,
}

/// Inserts a user; a taken email is a conflict.
pub fn insert(conn: &Connection, user: &NewUser) -> Result<User> {
    let taken: bool =
        conn.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE email = ?1)", [&user.email], |r| r.get(0))?;
    if taken {
        return Err(Error::Conflict("a user with this email exists".into()));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let now = crate::now_unix();
    conn.execute(
        "INSERT INTO users (id, email, email_verified, password_hash, status, name, fields, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7, ?7)",
        params![id, user.email, user.email_verified, user.password_hash, user.name, user.fields.to_string(), now],
    )?;
    get(conn, &id)
}

pub fn get(conn: &Connection, id: &str) -> Result<User> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1"), [id], from_row)
        .optional()?
        .ok_or(Error::NotFound("user"))
}

/// Users newest first, filtered by a substring of email or name and by status; `cursor` is the last id seen.
pub fn list(
    conn: &Connection,
    q: Option<&str>,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<User>, Option<String>)> {
    let pattern = q.map(|q| format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM users
         WHERE (?1 IS NULL OR email LIKE ?1 ESCAPE '\\' OR name LIKE ?1 ESCAPE '\\')
           AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let users: Vec<User> =
        stmt.query_map(params![pattern, status, cursor, limit], from_row)?.collect::<rusqlite::Result<_>>()?;
    let next = (users.len() == limit as usize).then(|| users.last().map(|u| u.id.clone())).flatten();
    Ok((users, next))
}

/// What the admin user list shows: a part of the email or the name (case-insensitive) and a status, `active`,
/// `disabled` or `unverified` (an email not verified yet); `None` means no filter.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub text: Option<String>,
    pub status: Option<String>,
}

/// The orders of the admin user list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    Email,
    Created,
    LastLogin,
}

impl UserFilter {
    /// The `WHERE` clause of `count` and `page` and its three parameters (pattern, status, unverified only).
    const CLAUSE: &'static str = "(?1 IS NULL OR email LIKE ?1 ESCAPE '\\' OR name LIKE ?1 ESCAPE '\\')
           AND (?2 IS NULL OR status = ?2) AND (?3 = 0 OR email_verified = 0)";

    fn params(&self) -> (Option<String>, Option<&str>, bool) {
        let pattern = self
            .text
            .as_deref()
            .map(|q| format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        match self.status.as_deref() {
            Some("unverified") => (pattern, None, true),
            status => (pattern, status, false),
        }
    }
}

/// How many users `filter` matches.
pub fn count(conn: &Connection, filter: &UserFilter) -> Result<u64> {
    let (pattern, status, unverified) = filter.params();
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM users WHERE {}", UserFilter::CLAUSE))?
        .query_row(params![pattern, status, unverified], |r| r.get(0))?;
    Ok(total.max(0) as u64)
}

/// One page of the users `filter` matches, in `order` (ties broken by id), each with whether TOTP is on. Users
/// who never signed in come first in ascending `LastLogin` order, last in descending.
pub fn page(
    conn: &Connection,
    filter: &UserFilter,
    order: UserOrder,
    descending: bool,
    offset: u64,
    limit: u64,
) -> Result<Vec<(User, bool)>> {
    let (pattern, status, unverified) = filter.params();
    let column = match order {
        UserOrder::Email => "email",
        UserOrder::Created => "created_at",
        UserOrder::LastLogin => "last_login_at",
    };
    let dir = if descending { "DESC" } else { "ASC" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, EXISTS(SELECT 1 FROM totp WHERE totp.user_id = users.id AND totp.confirmed = 1)
         FROM users WHERE {} ORDER BY {column} {dir}, id {dir} LIMIT ?4 OFFSET ?5",
        UserFilter::CLAUSE
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    let rows: Vec<(User, bool)> = stmt
        .query_map(params![pattern, status, unverified, limit, offset], |r| Ok((from_row(r)?, r.get::<_, bool>(10)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Changes the given fields (`None` keeps one). `name: Some(None)` clears the name.
pub fn update(
    conn: &Connection,
    id: &str,
    email: Option<&str>,
    email_verified: Option<bool>,
    name: Option<Option<&str>>,
    fields: Option<&Value>,
) -> Result<User> {
    let current = get(conn, id)?;
    if let Some(email) = email
        && email != current.email
    {
        let taken: bool =
            conn.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE email = ?1)", [email], |r| r.get(0))?;
        if taken {
            return Err(Error::Conflict("a user with this email exists".into()));
        }
    }
    conn.execute(
        "UPDATE users SET email = ?2, email_verified = ?3, name = ?4, fields = ?5, updated_at = ?6 WHERE id = ?1",
        params![
            id,
            email.unwrap_or(&current.email),
            email_verified.unwrap_or(current.email_verified),
            name.unwrap_or(current.name.as_deref()),
            fields.unwrap_or(&current.fields).to_string(),
            crate::now_unix()
        ],
    )?;
    get(conn, id)
}

pub fn set_status(conn: &Connection, id: &str, status: &str) -> Result<User> {
    let changed = conn.execute(
        "UPDATE users SET status = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, status, crate::now_unix()],
    )?;
    if changed == 0 {
        return Err(Error::NotFound("user"));
    }
    get(conn, id)
}

pub fn delete(conn: &Connection, id: &str) -> Result<User> {
    let user = get(conn, id)?;
    conn.execute("DELETE FROM users WHERE id = ?1", [id])?;
    Ok(user)
}

/// What a sign-in needs to know about an account (never serialised).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: Option<String>,
    pub active: bool,
    pub email_verified: bool,
    pub failed_logins: u32,
    pub locked_until: Option<i64>,
    /// Set by wrong second-factor codes; cleared only by a correct one (or an admin removing the factor).
    pub mfa_locked_until: Option<i64>,
}

impl Credentials {
    /// Whether sign-in is refused at `now`: by the password lock or the second factor's.
    pub fn locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|until| until > now) || self.mfa_locked_until.is_some_and(|until| until > now)
    }
}

fn credentials_where(conn: &Connection, clause: &str, value: &str) -> Result<Option<Credentials>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT id, email, name, password_hash, status, email_verified, failed_logins, locked_until,
                    mfa_locked_until
             FROM users WHERE {clause} = ?1"
        ))?
        .query_row([value], |r| {
            Ok(Credentials {
                id: r.get(0)?,
                email: r.get(1)?,
                name: r.get(2)?,
                password_hash: r.get(3)?,
                active: r.get::<_, String>(4)? == "active",
                email_verified: r.get(5)?,
                failed_logins: r.get(6)?,
                locked_until: r.get(7)?,
                mfa_locked_until: r.get(8)?,
            })
        })
        .optional()?)
}

pub fn credentials_by_email(conn: &Connection, email: &str) -> Result<Option<Credentials>> {
    credentials_where(conn, "email", email)
}

pub fn credentials_by_id(conn: &Connection, id: &str) -> Result<Option<Credentials>> {
    credentials_where(conn, "id", id)
}

/// Counts a failed sign-in. From the `max_failures`-th failure in a row on, the account is locked for
/// `backoff_seconds · 2^(failures - max_failures)`, capped at `max_backoff_seconds`. Returns the lock's end when
/// this failure locked the account.
pub fn record_failure(conn: &Connection, id: &str, lockout: &Lockout, now: i64) -> Result<Option<i64>> {
    let failures: u32 = conn.query_row(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?1 RETURNING failed_logins",
        [id],
        |r| r.get(0),
    )?;
    lock_after(conn, id, failures, lockout, now)
}

/// Counts a wrong second-factor code; answers the end of the second-factor lock when this one sets it. Only
/// `record_mfa_success` clears the count and the lock: neither a correct password nor a password reset does, so
/// whoever controls the mailbox cannot reopen code guessing.
pub fn record_mfa_failure(conn: &Connection, id: &str, lockout: &Lockout, now: i64) -> Result<Option<i64>> {
    let failures: u32 = conn.query_row(
        "UPDATE users SET mfa_failures = mfa_failures + 1 WHERE id = ?1 RETURNING mfa_failures",
        [id],
        |r| r.get(0),
    )?;
    let Some(until) = lock_end(failures, lockout, now) else { return Ok(None) };
    conn.execute("UPDATE users SET mfa_locked_until = ?2 WHERE id = ?1", params![id, until])?;
    Ok(Some(until))
}

/// A correct second factor (or an admin removing it): its failure count and lock start again.
pub fn record_mfa_success(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("UPDATE users SET mfa_failures = 0, mfa_locked_until = NULL WHERE id = ?1", [id])?;
    Ok(())
}

/// Locks the account once `failures` reaches the limit (see `lock_end`).
fn lock_after(conn: &Connection, id: &str, failures: u32, lockout: &Lockout, now: i64) -> Result<Option<i64>> {
    let Some(until) = lock_end(failures, lockout, now) else { return Ok(None) };
    conn.execute("UPDATE users SET locked_until = ?2 WHERE id = ?1", params![id, until])?;
    Ok(Some(until))
}

/// The end of a lock after `failures` in a row: `backoff_seconds` at the limit, doubled per failure past it.
fn lock_end(failures: u32, lockout: &Lockout, now: i64) -> Option<i64> {
    if failures < lockout.max_failures {
        return None;
    }
    let doublings = (failures - lockout.max_failures).min(30);
    let secs = (u64::from(lockout.backoff_seconds) << doublings).min(u64::from(lockout.max_backoff_seconds));
    Some(now + secs as i64)
}

/// A successful sign-in: the failure counter and any lock are cleared and the time recorded.
pub fn record_login(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// Clears the failure counter and lock without recording a sign-in (password step passed, second factor next).
pub fn clear_failures(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1", [id])?;
    Ok(())
}

/// Stores a new password hash. With `unlock`, the failure counter and lock are cleared too (a reset proves the
/// mailbox, so the owner of a locked account gets back in).
pub fn set_password(conn: &Connection, id: &str, hash: &str, unlock: bool) -> Result<()> {
    let sql = if unlock {
        "UPDATE users SET password_hash = ?2, failed_logins = 0, locked_until = NULL, updated_at = ?3 WHERE id = ?1"
    } else {
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1"
    };
    if conn.execute(sql, params![id, hash, crate::now_unix()])? == 0 {
        return Err(Error::NotFound("user"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_fields_are_checked() {
        let defined = vec![
            CustomField { name: "plan".into(), kind: FieldType::String, required: true, label: None },
            CustomField { name: "seats".into(), kind: FieldType::Number, required: false, label: None },
        ];
        assert!(check_fields(&json!({"plan": "pro", "seats": 3}), &defined).is_ok());
        assert!(check_fields(&json!({"seats": 3}), &defined).is_err(), "required");
        assert!(check_fields(&json!({"plan": 1}), &defined).is_err(), "type");
        assert!(check_fields(&json!({"plan": "x", "other": 1}), &defined).is_err(), "unknown");
        assert!(check_fields(&json!([1]), &defined).is_err());
        assert_eq!(normalize_email("  Ann@Example.COM ").unwrap(), "ann@example.com");
        assert!(normalize_email("not an email").is_err());
    }
}
