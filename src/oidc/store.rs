//! The provider's rows in the tenant file: pending authorization requests, codes, token families, refresh and
//! access tokens, consents. Plain functions over a connection; callers pick the transaction.
//!
//! Invariants:
//! - Codes and refresh tokens are stored as SHA-256; the clear value exists only in the response that issued it.
//! - A code is used once: `take_code` marks it, and a second use revokes every family issued from it.
//! - A refresh token is used once: `rotate_refresh` marks it, and presenting it again revokes its family.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;

/// An authorization request as validated at `/oauth2/authorize`, kept while the user signs in or consents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

/// How long a user has to sign in and consent.
pub const REQUEST_TTL: i64 = 1800;
/// Codes live this long.
pub const CODE_TTL: i64 = 60;

pub fn save_request(conn: &Connection, id: &str, req: &AuthRequest, login_after: Option<i64>, now: i64) -> Result<()> {
    let params_json = serde_json::to_string(req).map_err(crate::error::Error::internal)?;
    conn.execute(
        "INSERT INTO oauth_requests (id, client_id, params, login_after, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, req.client_id, params_json, login_after, now, now + REQUEST_TTL],
    )?;
    Ok(())
}

pub fn load_request(conn: &Connection, id: &str, now: i64) -> Result<Option<(AuthRequest, Option<i64>)>> {
    let row: Option<(String, Option<i64>)> = conn
        .query_row(
            "SELECT params, login_after FROM oauth_requests WHERE id = ?1 AND expires_at > ?2",
            params![id, now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(raw, after)| serde_json::from_str(&raw).ok().map(|req| (req, after))))
}

pub fn delete_request(conn: &Connection, id: &str) -> Result<()> {
    conn.execute("DELETE FROM oauth_requests WHERE id = ?1", [id])?;
    Ok(())
}

/// What a code stands for.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: String,
}

pub fn insert_code(conn: &Connection, code_hash: &str, g: &CodeGrant, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO oauth_codes (code_hash, client_id, user_id, session_id, redirect_uri, scope, nonce,
           code_challenge, auth_time, amr, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            code_hash,
            g.client_id,
            g.user_id,
            g.session_id,
            g.redirect_uri,
            g.scope,
            g.nonce,
            g.code_challenge,
            g.auth_time,
            g.amr,
            now,
            now + CODE_TTL
        ],
    )?;
    Ok(())
}

pub enum CodeUse {
    Fresh(CodeGrant),
    /// Used before: the families issued from it were revoked now.
    Replayed {
        client_id: String,
        user_id: String,
        revoked: usize,
    },
    Expired,
    Unknown,
}

/// Consumes a code: the first use gets its grant, a second use revokes what the first one issued.
pub fn take_code(conn: &Connection, code_hash: &str, now: i64) -> Result<CodeUse> {
    let row = conn
        .query_row(
            "SELECT client_id, user_id, session_id, redirect_uri, scope, nonce, code_challenge, auth_time, amr,
                    expires_at, used_at
             FROM oauth_codes WHERE code_hash = ?1",
            [code_hash],
            |r| {
                Ok((
                    CodeGrant {
                        client_id: r.get(0)?,
                        user_id: r.get(1)?,
                        session_id: r.get(2)?,
                        redirect_uri: r.get(3)?,
                        scope: r.get(4)?,
                        nonce: r.get(5)?,
                        code_challenge: r.get(6)?,
                        auth_time: r.get(7)?,
                        amr: r.get(8)?,
                    },
                    r.get::<_, i64>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            },
        )
        .optional()?;
    let Some((grant, expires_at, used_at)) = row else { return Ok(CodeUse::Unknown) };
    if used_at.is_some() {
        let families: Vec<String> = {
            let mut stmt = conn.prepare("SELECT id FROM oauth_families WHERE code_hash = ?1 AND revoked_at IS NULL")?;
            stmt.query_map([code_hash], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        for family in &families {
            revoke_family(conn, family, "code_reuse", now)?;
        }
        return Ok(CodeUse::Replayed { client_id: grant.client_id, user_id: grant.user_id, revoked: families.len() });
    }
    conn.execute("UPDATE oauth_codes SET used_at = ?2 WHERE code_hash = ?1", params![code_hash, now])?;
    if expires_at <= now {
        return Ok(CodeUse::Expired);
    }
    Ok(CodeUse::Fresh(grant))
}

/// A token family: what one authorization issued.
#[derive(Debug, Clone)]
pub struct Family {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub scope: String,
    pub auth_time: i64,
    pub amr: String,
    pub revoked: bool,
}

pub fn create_family(conn: &Connection, f: &Family, code_hash: Option<&str>, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO oauth_families (id, client_id, user_id, session_id, code_hash, scope, auth_time, amr, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![f.id, f.client_id, f.user_id, f.session_id, code_hash, f.scope, f.auth_time, f.amr, now],
    )?;
    Ok(())
}

/// Revokes a family and everything it issued. Returns whether it was live.
pub fn revoke_family(conn: &Connection, id: &str, reason: &str, now: i64) -> Result<bool> {
    let changed = conn.execute(
        "UPDATE oauth_families SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now, reason],
    )?;
    conn.execute(
        "UPDATE oauth_access_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(changed > 0)
}

pub fn insert_refresh(
    conn: &Connection,
    token_hash: &str,
    family_id: &str,
    scope: &str,
    now: i64,
    ttl: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO oauth_refresh_tokens (token_hash, family_id, scope, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, family_id, scope, now, now + ttl],
    )?;
    Ok(())
}

pub fn insert_access(
    conn: &Connection,
    jti: &str,
    family_id: Option<&str>,
    client_id: &str,
    expires_at: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO oauth_access_tokens (jti, family_id, client_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![jti, family_id, client_id, expires_at],
    )?;
    Ok(())
}

pub enum RefreshUse {
    /// Live: it is now rotated; issue the next one in `family`.
    Fresh {
        family: Family,
        scope: String,
    },
    /// Presented after it was rotated: its family was revoked now.
    Reused {
        family: Family,
    },
    /// Expired, or its family was revoked earlier.
    Dead,
    Unknown,
}

fn family_by_id(conn: &Connection, id: &str) -> Result<Option<Family>> {
    Ok(conn
        .query_row(
            "SELECT id, client_id, user_id, session_id, scope, auth_time, amr, revoked_at IS NOT NULL
             FROM oauth_families WHERE id = ?1",
            [id],
            |r| {
                Ok(Family {
                    id: r.get(0)?,
                    client_id: r.get(1)?,
                    user_id: r.get(2)?,
                    session_id: r.get(3)?,
                    scope: r.get(4)?,
                    auth_time: r.get(5)?,
                    amr: r.get(6)?,
                    revoked: r.get(7)?,
                })
            },
        )
        .optional()?)
}

/// Consumes a refresh token (reuse detection included).
pub fn rotate_refresh(conn: &Connection, token_hash: &str, now: i64) -> Result<RefreshUse> {
    let row: Option<(String, String, i64, Option<i64>)> = conn
        .query_row(
            "SELECT family_id, scope, expires_at, rotated_at FROM oauth_refresh_tokens WHERE token_hash = ?1",
            [token_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((family_id, scope, expires_at, rotated_at)) = row else { return Ok(RefreshUse::Unknown) };
    let Some(family) = family_by_id(conn, &family_id)? else { return Ok(RefreshUse::Unknown) };
    if rotated_at.is_some() {
        if !family.revoked {
            revoke_family(conn, &family.id, "refresh_token_reuse", now)?;
            return Ok(RefreshUse::Reused { family });
        }
        return Ok(RefreshUse::Dead);
    }
    if family.revoked || expires_at <= now {
        return Ok(RefreshUse::Dead);
    }
    conn.execute("UPDATE oauth_refresh_tokens SET rotated_at = ?2 WHERE token_hash = ?1", params![token_hash, now])?;
    Ok(RefreshUse::Fresh { family, scope })
}

/// The family of a live refresh token, for introspection and revocation.
pub fn refresh_family(conn: &Connection, token_hash: &str, now: i64) -> Result<Option<(Family, String, i64, bool)>> {
    let row: Option<(String, String, i64, Option<i64>)> = conn
        .query_row(
            "SELECT family_id, scope, expires_at, rotated_at FROM oauth_refresh_tokens WHERE token_hash = ?1",
            [token_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((family_id, scope, expires_at, rotated_at)) = row else { return Ok(None) };
    let Some(family) = family_by_id(conn, &family_id)? else { return Ok(None) };
    let live = !family.revoked && rotated_at.is_none() && expires_at > now;
    Ok(Some((family, scope, expires_at, live)))
}

/// Whether an access token with this `jti` was revoked (itself or through its family).
pub fn access_revoked(conn: &Connection, jti: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT revoked_at IS NOT NULL FROM oauth_access_tokens WHERE jti = ?1")?
        .query_row([jti], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// Revokes one access token (RFC 7009). Tokens without a row (client_credentials) get one.
pub fn revoke_access(conn: &Connection, jti: &str, client_id: &str, expires_at: i64, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO oauth_access_tokens (jti, family_id, client_id, expires_at, revoked_at) VALUES (?1, NULL, ?2, ?3, ?4)
         ON CONFLICT (jti) DO UPDATE SET revoked_at = COALESCE(oauth_access_tokens.revoked_at, excluded.revoked_at)",
        params![jti, client_id, expires_at, now],
    )?;
    Ok(())
}

/// Whether the user `id` exists and is active.
pub fn user_active(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1 AND status = 'active')")?
        .query_row([id], |r| r.get(0))?)
}

/// Revokes every live token family of a user (and so their refresh and access tokens), except those tied to
/// the session `keep`. Returns how many were revoked.
pub fn revoke_user_families(
    conn: &Connection,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: i64,
) -> Result<usize> {
    let families: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT id FROM oauth_families WHERE user_id = ?1 AND revoked_at IS NULL
               AND (?2 IS NULL OR session_id IS NULL OR session_id != ?2)",
        )?;
        stmt.query_map(params![user_id, keep], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    for family in &families {
        revoke_family(conn, family, reason, now)?;
    }
    Ok(families.len())
}

/// Whether the session `id` is live and fully signed in.
pub fn session_live(conn: &Connection, id: &str, now: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM sessions WHERE id = ?1 AND stage = 'active' AND expires_at > ?2 AND idle_expires_at > ?2)",
        )?
        .query_row(params![id, now], |r| r.get(0))?)
}

// ---- consent ----

/// The scopes the user already granted the client.
pub fn consented_scopes(conn: &Connection, user_id: &str, client_id: &str) -> Result<Vec<String>> {
    let raw: Option<String> = conn
        .query_row(
            "SELECT scopes FROM oauth_consents WHERE user_id = ?1 AND client_id = ?2",
            params![user_id, client_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(raw.map(|s| s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()).unwrap_or_default())
}

/// Remembers a consent, adding `scopes` to what was granted before.
pub fn grant_consent(conn: &Connection, user_id: &str, client_id: &str, scopes: &[String], now: i64) -> Result<()> {
    let mut all = consented_scopes(conn, user_id, client_id)?;
    for s in scopes {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    conn.execute(
        "INSERT INTO oauth_consents (user_id, client_id, scopes, granted_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
        params![user_id, client_id, all.join(" "), now],
    )?;
    Ok(())
}

/// The user's consents: client id, scopes, when.
pub fn consents_of(conn: &Connection, user_id: &str) -> Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT client_id, scopes, granted_at FROM oauth_consents WHERE user_id = ?1 ORDER BY granted_at DESC",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Withdraws a consent and revokes the client's live token families for the user.
pub fn revoke_consent(conn: &Connection, user_id: &str, client_id: &str, now: i64) -> Result<bool> {
    let gone =
        conn.execute("DELETE FROM oauth_consents WHERE user_id = ?1 AND client_id = ?2", params![user_id, client_id])?;
    let families: Vec<String> = {
        let mut stmt =
            conn.prepare("SELECT id FROM oauth_families WHERE user_id = ?1 AND client_id = ?2 AND revoked_at IS NULL")?;
        stmt.query_map(params![user_id, client_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    for family in families {
        revoke_family(conn, &family, "consent_revoked", now)?;
    }
    Ok(gone > 0)
}

/// Deletes expired requests, codes, tokens and the families nothing refers to any more.
pub fn purge_expired(conn: &Connection, now: i64) -> Result<usize> {
    let mut n = 0;
    n += conn.execute("DELETE FROM oauth_requests WHERE expires_at <= ?1", [now])?;
    n += conn.execute("DELETE FROM oauth_codes WHERE expires_at <= ?1", [now - 3600])?;
    n += conn.execute("DELETE FROM oauth_access_tokens WHERE expires_at <= ?1", [now])?;
    n += conn.execute("DELETE FROM oauth_refresh_tokens WHERE expires_at <= ?1", [now])?;
    n += conn.execute(
        "DELETE FROM oauth_families WHERE created_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM oauth_refresh_tokens r WHERE r.family_id = oauth_families.id)
           AND NOT EXISTS (SELECT 1 FROM oauth_access_tokens a WHERE a.family_id = oauth_families.id)
           AND NOT EXISTS (SELECT 1 FROM oauth_codes c WHERE c.code_hash = oauth_families.code_hash)",
        [now - 86_400],
    )?;
    Ok(n)
}

/// Purges expired OAuth rows in every open tenant file (housekeeping).
pub async fn purge_open_tenants(app: &crate::app::App) {
    for db in app.tenants.open_dbs() {
        let now = crate::now_unix();
        if let Err(err) = db.write(move |tx| purge_expired(tx, now)).await {
            tracing::warn!(tenant = %db.slug, error = %err, "purging expired OAuth rows failed");
        }
    }
}

/// Stores the plugin claims of a token family (copied from the session at code exchange).
pub fn set_family_claims(conn: &Connection, id: &str, claims: &Map<String, Value>) -> Result<()> {
    conn.execute(
        "UPDATE oauth_families SET claims = ?2 WHERE id = ?1",
        params![id, Value::Object(claims.clone()).to_string()],
    )?;
    Ok(())
}

/// The plugin claims of a token family.
pub fn family_claims(conn: &Connection, id: &str) -> Result<Map<String, Value>> {
    let text: Option<String> =
        conn.query_row("SELECT claims FROM oauth_families WHERE id = ?1", [id], |r| r.get(0)).optional()?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
}
