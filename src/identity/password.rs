//! The password policy: at least the tenant's `password_min_length` characters (default 10), at most 256, and
//! not one of the 10,000 most common passwords (`common_passwords.txt`, from zxcvbn; see
//! `common_passwords.LICENSE`), compared case-insensitively.

use crate::error::{Error, Result};

/// Longest password accepted, in characters (argon2 would take more, but nobody types more).
pub const MAX_LENGTH: usize = 256;

/// One password per line, lower case, sorted bytewise, looked up by binary search (a few microseconds next to
/// the argon2 hash every password check is followed by).
const COMMON: &str = include_str!("common_passwords.txt");

/// Whether `password` (any case) is on the common-password list.
pub fn is_common(password: &str) -> bool {
    let wanted = password.to_lowercase();
    let lines: Vec<&str> = COMMON.lines().collect();
    lines.binary_search_by(|line| line.as_bytes().cmp(wanted.as_bytes())).is_ok()
}

/// Checks `password` against the policy; the error says what to change and never echoes the password.
pub fn check(password: &str, min_length: u32) -> Result<()> {
    let length = password.chars().count();
    if length < min_length as usize {
        return Err(Error::validation(format!("the password must have at least {min_length} characters")));
    }
    if length > MAX_LENGTH {
        return Err(Error::validation(format!("the password must have at most {MAX_LENGTH} characters")));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::validation("the password must not contain control characters"));
    }
    if is_common(password) {
        return Err(Error::validation("this password is one of the most common ones; choose another"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_complete() {
        let lines: Vec<&str> = COMMON.lines().collect();
        assert_eq!(lines.len(), 10_000);
        assert!(lines.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()), "sorted bytewise, no duplicates");
        assert!(lines.iter().all(|l| *l == l.to_lowercase()));
    }

    #[test]
    fn policy() {
        assert!(is_common("password") && is_common("PassWord") && is_common("123456") && is_common("dragon"));
        assert!(!is_common("correct horse battery staple"));
        assert!(check("short", 10).is_err());
        assert!(check("qwertyuiop", 10).is_err(), "common, though long enough");
        assert!(check("correct horse battery staple", 10).is_ok());
        assert!(check(&"x".repeat(257), 10).is_err());
        assert!(check("tab\there-and-long", 10).is_err());
        let err = check("qwertyuiop", 10).unwrap_err().to_string();
        assert!(!err.contains("qwertyuiop"), "the password is never echoed: {err}");
    }
}
