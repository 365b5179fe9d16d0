//! Single-use tokens mailed to users (table `user_tokens`): email verification, password reset and invitations.
//! The mailed value is 256 bits of randomness; only its SHA-256 is stored. Issuing a token voids the user's
//! earlier unused tokens of the same purpose, so only the newest link works.

use rusqlite::{Connection, OptionalExtension, params};

use crate::crypto;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
    Invite,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
            Purpose::Invite => "invite",
        }
    }

    fn parse(raw: &str) -> Option<Purpose> {
        [Purpose::VerifyEmail, Purpose::ResetPassword, Purpose::Invite].into_iter().find(|p| p.as_str() == raw)
    }
}

/// Lifetime of a password-reset link.
pub const RESET_SECS: i64 = 30 * 60;
/// Lifetime of an email-verification link.
pub const VERIFY_SECS: i64 = 24 * 3600;
/// Lifetime of an invitation link.
pub const INVITE_SECS: i64 = 7 * 24 * 3600;

/// Issues a new token; returns the value to put in the link.
pub fn issue(conn: &Connection, user_id: &str, purpose: Purpose, ttl_secs: i64) -> Result<String> {
    let now = crate::now_unix();
    conn.execute(
        "DELETE FROM user_tokens WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
        params![user_id, purpose.as_str()],
    )?;
    let token = crypto::random_token("");
    conn.execute(
        "INSERT INTO user_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![crypto::hash_token(&token), user_id, purpose.as_str(), now, now + ttl_secs],
    )?;
    Ok(token)
}

/// When the user's newest token of `purpose` was issued.
pub fn last_issued(conn: &Connection, user_id: &str, purpose: Purpose) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT MAX(created_at) FROM user_tokens WHERE user_id = ?1 AND purpose = ?2",
            params![user_id, purpose.as_str()],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// The user a still-valid token of one of `purposes` belongs to, without using it up.
pub fn peek(conn: &Connection, token: &str, purposes: &[Purpose]) -> Result<Option<(String, Purpose)>> {
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT user_id, purpose FROM user_tokens WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2",
            params![crypto::hash_token(token), crate::now_unix()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(user, p)| Purpose::parse(&p).filter(|p| purposes.contains(p)).map(|p| (user, p))))
}

/// Uses up a token of one of `purposes`: the user it belongs to, or an error that reads well on a page.
pub fn consume(conn: &Connection, token: &str, purposes: &[Purpose]) -> Result<(String, Purpose)> {
    let found = peek(conn, token, purposes)?.ok_or(Error::InvalidToken)?;
    conn.execute(
        "UPDATE user_tokens SET used_at = ?2 WHERE token_hash = ?1",
        params![crypto::hash_token(token), crate::now_unix()],
    )?;
    Ok(found)
}
