//! End-user sessions of a tenant (table `sessions`): the `gh_session` cookie, its server-side row, idle and
//! absolute expiry, the half-finished stages of a sign-in (second factor, TOTP enrolment) and revocation.
//!
//! Invariants:
//! - The cookie value is a 256-bit random token; only its SHA-256 is stored. The cookie is scoped to
//!   `Path=/t/{slug}/` and the row lives in that tenant's file, so a cookie of one tenant means nothing at another.
//! - A session in stage `mfa` or `enrol` only opens the second-factor pages and lives at most `PENDING_SECS`.
//! - Finishing the second factor replaces the cookie value (no session fixation across stages).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::crypto;
use crate::error::{Error, Result};
use crate::identity::audit::Origin;
use crate::tenants::TenantSettings;

pub const COOKIE: &str = "gh_session";
/// How long a half-finished sign-in (waiting for a code or an enrolment) may stay open.
pub const PENDING_SECS: i64 = 600;
/// `last_seen_at` is written at most this often per session: reading a session stays a read.
const TOUCH_EVERY_SECS: i64 = 60;

/// How far a sign-in has got: `active` sessions are signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = SessionStage)]
pub enum Stage {
    Active,
    /// Password checked; a TOTP or recovery code is needed.
    Mfa,
    /// Password checked; the tenant requires MFA and the user has not enrolled yet.
    Enrol,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Active => "active",
            Stage::Mfa => "mfa",
            Stage::Enrol => "enrol",
        }
    }

    fn parse(raw: &str) -> Stage {
        match raw {
            "active" => Stage::Active,
            "mfa" => Stage::Mfa,
            _ => Stage::Enrol,
        }
    }
}

/// A user's session (the CSRF token and the idle expiry are not shown).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub stage: Stage,
    #[serde(skip)]
    pub csrf_token: String,
    /// How the user authenticated, space-separated: `pwd`, `pwd otp`.
    pub amr: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub auth_time: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: i64,
    /// The absolute expiry.
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
    #[serde(skip)]
    pub idle_expires_at: i64,
}

const COLUMNS: &str = "id, user_id, stage, csrf_token, amr, ip, user_agent, created_at, auth_time, last_seen_at, expires_at, idle_expires_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let stage: String = r.get(2)?;
    Ok(Session {
        id: r.get(0)?,
        user_id: r.get(1)?,
        stage: Stage::parse(&stage),
        csrf_token: r.get(3)?,
        amr: r.get(4)?,
        ip: r.get(5)?,
        user_agent: r.get(6)?,
        created_at: r.get(7)?,
        auth_time: r.get(8)?,
        last_seen_at: r.get(9)?,
        expires_at: r.get(10)?,
        idle_expires_at: r.get(11)?,
    })
}

/// A tenant's session lifetimes in seconds: (idle, absolute).
pub fn lifetimes(settings: &TenantSettings) -> (i64, i64) {
    (i64::from(settings.session_idle_minutes) * 60, i64::from(settings.session_max_hours) * 3600)
}

/// Starts a session; returns the cookie value (shown once, stored hashed) and the row.
pub fn create(
    conn: &Connection,
    user_id: &str,
    stage: Stage,
    amr: &str,
    origin: &Origin,
    settings: &TenantSettings,
) -> Result<(String, Session)> {
    let now = crate::now_unix();
    conn.execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND (expires_at <= ?2 OR idle_expires_at <= ?2)",
        params![user_id, now],
    )?;
    let (idle, max) = lifetimes(settings);
    let (idle_expires, expires) = match stage {
        Stage::Active => (now + idle, now + max),
        Stage::Mfa | Stage::Enrol => (now + PENDING_SECS, now + PENDING_SECS),
    };
    let cookie = crypto::random_token("");
    let id = uuid::Uuid::now_v7().to_string();
    conn.execute(
        "INSERT INTO sessions (id, id_hash, user_id, stage, csrf_token, amr, ip, user_agent, created_at, auth_time,
                               last_seen_at, idle_expires_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?9, ?10, ?11)",
        params![
            id,
            crypto::hash_token(&cookie),
            user_id,
            stage.as_str(),
            crypto::random_token(""),
            amr,
            origin.ip,
            origin.user_agent.as_deref().map(|ua| crate::email::outbox::truncate(ua, 512)),
            now,
            idle_expires.min(expires),
            expires
        ],
    )?;
    Ok((cookie, get(conn, &id)?.ok_or(Error::NotFound("session"))?))
}

fn get(conn: &Connection, id: &str) -> Result<Option<Session>> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"), [id], from_row).optional()?)
}

/// The live session behind a cookie value, if it has neither expired nor been idle too long.
pub fn find(conn: &Connection, cookie: &str, now: i64) -> Result<Option<Session>> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE id_hash = ?1 AND expires_at > ?2 AND idle_expires_at > ?2"
        ))?
        .query_row(params![crypto::hash_token(cookie), now], from_row)
        .optional()?;
    Ok(found)
}

/// Whether `session` is due for a `touch` (an active session last seen more than a minute ago).
pub fn needs_touch(session: &Session, now: i64) -> bool {
    session.stage == Stage::Active && now - session.last_seen_at >= TOUCH_EVERY_SECS
}

/// Records use of an active session and pushes its idle expiry out (never past the absolute one).
pub fn touch(conn: &Connection, id: &str, settings: &TenantSettings, now: i64) -> Result<()> {
    let (idle, _) = lifetimes(settings);
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?2, idle_expires_at = MIN(?2 + ?3, expires_at)
         WHERE id = ?1 AND stage = 'active'",
        params![id, now, idle],
    )?;
    Ok(())
}

/// Turns a half-finished sign-in into an active session with a new cookie value; returns it.
pub fn promote(conn: &Connection, id: &str, amr: &str, settings: &TenantSettings) -> Result<String> {
    let now = crate::now_unix();
    let (idle, max) = lifetimes(settings);
    let cookie = crypto::random_token("");
    let changed = conn.execute(
        "UPDATE sessions SET stage = 'active', amr = ?2, id_hash = ?3, csrf_token = ?4, last_seen_at = ?5,
                auth_time = ?5, idle_expires_at = ?6, expires_at = ?7
         WHERE id = ?1 AND stage != 'active'",
        params![id, amr, crypto::hash_token(&cookie), crypto::random_token(""), now, now + idle.min(max), now + max],
    )?;
    if changed == 0 {
        return Err(Error::NotFound("session"));
    }
    Ok(cookie)
}

/// Stores the claims a post-login plugin added; tokens issued from this session carry them.
pub fn set_claims(conn: &Connection, id: &str, claims: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET claims = ?2 WHERE id = ?1",
        params![id, serde_json::Value::Object(claims.clone()).to_string()],
    )?;
    Ok(())
}

/// The plugin claims of a session (an empty map for none or an unknown session).
pub fn claims(conn: &Connection, id: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text: Option<String> =
        conn.query_row("SELECT claims FROM sessions WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
}

/// The user's active, unexpired sessions, newest first.
pub fn list(conn: &Connection, user_id: &str) -> Result<Vec<Session>> {
    let now = crate::now_unix();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions
         WHERE user_id = ?1 AND stage = 'active' AND expires_at > ?2 AND idle_expires_at > ?2 ORDER BY id DESC"
    ))?;
    Ok(stmt.query_map(params![user_id, now], from_row)?.collect::<rusqlite::Result<_>>()?)
}

/// Ends one session of `user_id`; false when there is no such session.
pub fn revoke(conn: &Connection, user_id: &str, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM sessions WHERE user_id = ?1 AND id = ?2", params![user_id, id])? > 0)
}

/// Ends every session of `user_id` but `keep`; returns how many ended.
pub fn revoke_all(conn: &Connection, user_id: &str, keep: Option<&str>) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE user_id = ?1 AND id IS NOT ?2", params![user_id, keep])?)
}

/// The `Set-Cookie` value for an active session of `tenant` (kept for `session_max_hours`); `None` clears it.
pub fn active_cookie(tenant: &crate::control::Tenant, value: Option<&str>, secure: bool) -> String {
    let max_age = value.map(|_| i64::from(tenant.settings.session_max_hours) * 3600);
    cookie_header(tenant.slug.as_str(), value, max_age, secure)
}

/// The `Set-Cookie` value for a session cookie of tenant `slug`; `None` clears it.
pub fn cookie_header(slug: &str, value: Option<&str>, max_age: Option<i64>, secure: bool) -> String {
    let path = format!("/t/{slug}/");
    match value {
        Some(v) => crate::http::cookies::set(COOKIE, v, &path, "Lax", secure, max_age),
        None => crate::http::cookies::clear(COOKIE, &path, secure),
    }
}
