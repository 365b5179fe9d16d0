//! Second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step) and recovery codes.
//!
//! Invariants:
//! - The TOTP secret is sealed with the master key under the context `totp:{slug}:{user_id}`.
//! - A code is accepted only for a time step later than the last accepted one, so a code cannot be replayed,
//!   not even within its own 30 s window.
//! - Ten recovery codes are made at enrolment, shown once, stored as SHA-256 and each works once.
//! - Enrolment is two steps: `start` stores an unconfirmed secret; `confirm` checks a first code from the
//!   authenticator and only then turns MFA on.

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use totp_rs::{Algorithm, TOTP};

use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};

const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;
const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;

fn context(slug: &str, user_id: &str) -> String {
    format!("totp:{slug}:{user_id}")
}

fn totp(secret: Vec<u8>, issuer: &str, account: &str) -> TOTP {
    // `:` separates issuer and account in the otpauth label; authenticator apps split on it.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS,
        secret,
        Some(issuer.replace(':', " ")),
        account.replace(':', " "),
    )
}

/// What an authenticator app needs to add the account.
pub struct Enrolment {
    /// `otpauth://totp/…` (the QR code's content).
    pub url: String,
    /// The secret in base32, for typing in by hand.
    pub secret_base32: String,
    /// The QR code as an inline SVG document.
    pub qr_svg: String,
}

/// Whether the user has confirmed TOTP.
pub fn is_enrolled(conn: &Connection, user_id: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT EXISTS(SELECT 1 FROM totp WHERE user_id = ?1 AND confirmed = 1)", [user_id], |r| r.get(0))?)
}

/// Starts (or restarts) enrolment with a new secret; refused when TOTP is already on.
pub fn start(conn: &Connection, key: &MasterKey, slug: &str, user_id: &str) -> Result<()> {
    if is_enrolled(conn, user_id)? {
        return Err(Error::Conflict("two-factor authentication is on already; turn it off first".into()));
    }
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill(&mut secret);
    conn.execute(
        "INSERT INTO totp (user_id, secret_sealed, confirmed, last_step, created_at) VALUES (?1, ?2, 0, 0, ?3)
         ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, created_at = excluded.created_at",
        params![user_id, key.seal(&secret, &context(slug, user_id)), crate::now_unix()],
    )?;
    Ok(())
}

fn secret(conn: &Connection, key: &MasterKey, slug: &str, user_id: &str, confirmed: bool) -> Result<Option<Vec<u8>>> {
    let sealed: Option<String> = conn
        .query_row(
            "SELECT secret_sealed FROM totp WHERE user_id = ?1 AND confirmed = ?2",
            params![user_id, confirmed],
            |r| r.get(0),
        )
        .optional()?;
    sealed.map(|s| key.open(&s, &context(slug, user_id))).transpose()
}

/// The pending (unconfirmed) enrolment of the user, rendered for the enrolment page.
pub fn pending(
    conn: &Connection,
    key: &MasterKey,
    slug: &str,
    user_id: &str,
    issuer: &str,
    account: &str,
) -> Result<Option<Enrolment>> {
    let Some(secret) = secret(conn, key, slug, user_id, false)? else { return Ok(None) };
    let totp = totp(secret, issuer, account);
    let url = totp.get_url();
    Ok(Some(Enrolment { secret_base32: totp.get_secret_base32(), qr_svg: qr_svg(&url)?, url }))
}

/// Checks `code` against `secret` for the steps around `now` that are later than `last_step`; the accepted step.
fn accepted_step(secret: Vec<u8>, code: &str, now: u64, last_step: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "", "");
    let current = now / STEP_SECS;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .filter(|step| *step > last_step)
        .find(|step| crypto::constant_time_eq(&totp.generate(step * STEP_SECS), &code))
}

/// Confirms a pending enrolment with a first code; returns the recovery codes to show once.
pub fn confirm(conn: &Connection, key: &MasterKey, slug: &str, user_id: &str, code: &str) -> Result<Vec<String>> {
    let secret = secret(conn, key, slug, user_id, false)?
        .ok_or_else(|| Error::Conflict("no two-factor set-up is in progress; start again".into()))?;
    let step = accepted_step(secret, code, crate::now_unix() as u64, 0)
        .ok_or_else(|| Error::validation("that code is not right; check the time on your device and try again"))?;
    conn.execute("UPDATE totp SET confirmed = 1, last_step = ?2 WHERE user_id = ?1", params![user_id, step as i64])?;
    new_recovery_codes(conn, user_id)
}

/// Replaces the user's recovery codes with ten new ones; returns them.
pub fn new_recovery_codes(conn: &Connection, user_id: &str) -> Result<Vec<String>> {
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    let alphabet = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw: String = (0..10).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect();
        conn.execute(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
            params![user_id, crypto::hash_token(&raw)],
        )?;
        codes.push(format!("{}-{}", &raw[..5], &raw[5..]));
    }
    Ok(codes)
}

/// How a second factor was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    RecoveryCode,
}

/// Checks a TOTP code (not replayable) or an unused recovery code, and uses it up.
pub fn verify(conn: &Connection, key: &MasterKey, slug: &str, user_id: &str, code: &str) -> Result<Option<Proof>> {
    let row: Option<(String, i64)> = conn
        .query_row("SELECT secret_sealed, last_step FROM totp WHERE user_id = ?1 AND confirmed = 1", [user_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((sealed, last_step)) = row else { return Ok(None) };
    let secret = key.open(&sealed, &context(slug, user_id))?;
    if let Some(step) = accepted_step(secret, code, crate::now_unix() as u64, last_step as u64) {
        conn.execute("UPDATE totp SET last_step = ?2 WHERE user_id = ?1", params![user_id, step as i64])?;
        return Ok(Some(Proof::Totp));
    }
    let normalized: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    if normalized.len() == 10 {
        let used = conn.execute(
            "UPDATE recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
            params![user_id, crypto::hash_token(&normalized), crate::now_unix()],
        )?;
        if used == 1 {
            return Ok(Some(Proof::RecoveryCode));
        }
    }
    Ok(None)
}

/// Unused recovery codes left.
pub fn recovery_codes_left(conn: &Connection, user_id: &str) -> Result<u32> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
        [user_id],
        |r| r.get(0),
    )?)
}

/// Turns TOTP off and drops the recovery codes; false when it was not on.
pub fn disable(conn: &Connection, user_id: &str) -> Result<bool> {
    let removed = conn.execute("DELETE FROM totp WHERE user_id = ?1", [user_id])?;
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    Ok(removed > 0)
}

/// `text` as a QR code (error correction M) in an SVG document with a 4-module quiet zone.
pub fn qr_svg(text: &str) -> Result<String> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).map_err(Error::internal)?;
    let size = qr.size();
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + 4, y + 4));
            }
        }
    }
    let full = size + 8;
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {full} {full}\" width=\"220\" height=\"220\" \
         role=\"img\" aria-label=\"QR code for your authenticator app\" shape-rendering=\"crispEdges\">\
         <rect width=\"{full}\" height=\"{full}\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_and_window() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 → 94287082 (8 digits); 6 digits: 287082.
        let secret = b"12345678901234567890".to_vec();
        assert_eq!(accepted_step(secret.clone(), "287082", 59, 0), Some(1));
        assert_eq!(accepted_step(secret.clone(), "287082", 59 + 30, 0), Some(1), "one step late is fine");
        assert_eq!(accepted_step(secret.clone(), "287082", 59 + 90, 0), None, "three steps late is not");
        assert_eq!(accepted_step(secret.clone(), "287082", 59, 1), None, "a used step is refused");
        assert_eq!(accepted_step(secret, "28708x", 59, 0), None);
    }

    #[test]
    fn qr_is_svg() {
        let svg = qr_svg("otpauth://totp/Acme:ann@example.com?secret=ABC").unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<path d=\"M"));
    }
}
