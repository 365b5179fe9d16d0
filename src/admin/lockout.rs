//! Per-account lockout of admin UI sign-in: after `MAX_FAILURES` wrong passwords in a row for one email, that
//! email is refused for `BASE_SECS`, doubling with every further failure, capped at `MAX_SECS`.
//!
//! The state lives in memory on this node (like the per-IP limiter), not in control.db: it is throttling, not
//! account data, and must not turn every failed sign-in into a replicated `Mutation`.
//! Invariants: the key is the normalised email whether or not an operator has it, so a lock reveals nothing about
//! which accounts exist; an attempt is counted before its password is checked (`attempt`), so concurrent guesses
//! cannot overshoot the limit; a failure while locked does not count, so a lock's end is fixed when it starts.
//! The price of a per-account lock is that anyone can keep an email locked (at most an hour at a time); an
//! operator locked out this way still has API tokens and the CLI.

use std::time::Duration;

use moka::sync::Cache;

/// Wrong passwords in a row that lock an email.
pub const MAX_FAILURES: u32 = 5;
/// The first lock's length; each failure after a lock ends doubles it.
pub const BASE_SECS: i64 = 60;
pub const MAX_SECS: i64 = 3600;

/// Longest key kept: `validate_email` allows no operator email past this, so a longer one protects nothing and
/// would only let a caller fill memory with big keys.
const MAX_KEY_BYTES: usize = 254;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    locked_until: i64,
}

/// Failed admin sign-ins per normalised email, on this node.
pub struct AccountLockout(Cache<String, Failures>);

impl Default for AccountLockout {
    fn default() -> Self {
        // Idle longer than the longest lock, so an entry outlives its lock and the next failure still doubles it.
        Self(Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(2 * 3600)).build())
    }
}

impl AccountLockout {
    /// The key for a submitted email: trimmed and lower-cased as operator emails are stored. `None` for one too
    /// long to be any operator's.
    pub fn key(email: &str) -> Option<String> {
        let key = email.trim().to_lowercase();
        (key.len() <= MAX_KEY_BYTES).then_some(key)
    }

    /// `Err(until)` while `key` is locked.
    pub fn check(&self, key: &str, now: i64) -> Result<(), i64> {
        match self.0.get(key) {
            Some(f) if f.locked_until > now => Err(f.locked_until),
            _ => Ok(()),
        }
    }

    /// Counts a wrong password for `key`; returns the lock's end when this failure locked it.
    pub fn record_failure(&self, key: &str, now: i64) -> Option<i64> {
        let mut locked = None;
        self.0.entry(key.to_owned()).and_upsert_with(|old| {
            let old = old.map(|e| e.into_value()).unwrap_or_default();
            // Two requests may pass `check` together; the later failure must not lengthen the lock just set.
            if old.locked_until > now {
                return old;
            }
            let count = old.count.saturating_add(1);
            if count < MAX_FAILURES {
                return Failures { count, locked_until: old.locked_until };
            }
            let doublings = (count - MAX_FAILURES).min(16);
            let until = now + (BASE_SECS << doublings).min(MAX_SECS);
            locked = Some(until);
            Failures { count, locked_until: until }
        });
        locked
    }

    /// Counts a sign-in attempt for `key` before its password is checked, in one atomic step: `Err(until)` while
    /// locked (the password must not be checked), else `Ok(Some(until))` when this attempt is the last one
    /// allowed and locked the key. A correct password then `clear`s the count. Counting first means attempts
    /// queued for password hashing together cannot each get a guess past the limit.
    pub fn attempt(&self, key: &str, now: i64) -> Result<Option<i64>, i64> {
        let mut outcome = Ok(None);
        self.0.entry(key.to_owned()).and_upsert_with(|old| {
            let old = old.map(|e| e.into_value()).unwrap_or_default();
            if old.locked_until > now {
                outcome = Err(old.locked_until);
                return old;
            }
            let count = old.count.saturating_add(1);
            if count < MAX_FAILURES {
                return Failures { count, locked_until: old.locked_until };
            }
            let doublings = (count - MAX_FAILURES).min(16);
            let until = now + (BASE_SECS << doublings).min(MAX_SECS);
            outcome = Ok(Some(until));
            Failures { count, locked_until: until }
        });
        outcome
    }

    /// Forgets `key`'s failures (a correct password while not locked).
    pub fn clear(&self, key: &str) {
        self.0.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    #[test]
    fn five_failures_lock() {
        let lockout = AccountLockout::default();
        for i in 0..MAX_FAILURES - 1 {
            assert_eq!(lockout.record_failure("ops@example.com", T0 + i64::from(i)), None);
            assert_eq!(lockout.check("ops@example.com", T0 + i64::from(i)), Ok(()));
        }
        let now = T0 + 10;
        assert_eq!(lockout.record_failure("ops@example.com", now), Some(now + BASE_SECS));
        assert_eq!(lockout.check("ops@example.com", now), Err(now + BASE_SECS));
        assert_eq!(lockout.check("ops@example.com", now + BASE_SECS - 1), Err(now + BASE_SECS));
        assert_eq!(lockout.check("ops@example.com", now + BASE_SECS), Ok(()));
        assert_eq!(lockout.check("other@example.com", now), Ok(()), "other emails are not affected");
    }

    #[test]
    fn failures_while_locked_do_not_count() {
        let lockout = AccountLockout::default();
        for _ in 0..MAX_FAILURES {
            lockout.record_failure("a@example.com", T0);
        }
        assert_eq!(lockout.record_failure("a@example.com", T0 + 30), None);
        assert_eq!(lockout.check("a@example.com", T0 + BASE_SECS), Ok(()), "the lock was not lengthened");
    }

    #[test]
    fn backoff_doubles_after_each_lock_up_to_the_cap() {
        let lockout = AccountLockout::default();
        for _ in 0..MAX_FAILURES {
            lockout.record_failure("a@example.com", T0);
        }
        let mut now = T0 + BASE_SECS;
        let mut expected = 2 * BASE_SECS;
        for _ in 0..10 {
            assert_eq!(lockout.check("a@example.com", now), Ok(()), "the previous lock has ended");
            assert_eq!(lockout.record_failure("a@example.com", now), Some(now + expected));
            assert_eq!(lockout.check("a@example.com", now), Err(now + expected));
            now += expected;
            expected = (expected * 2).min(MAX_SECS);
        }
        assert_eq!(expected, MAX_SECS, "ten doublings reach the cap");
    }

    #[test]
    fn clear_resets() {
        let lockout = AccountLockout::default();
        for _ in 0..MAX_FAILURES - 1 {
            lockout.record_failure("a@example.com", T0);
        }
        lockout.clear("a@example.com");
        assert_eq!(lockout.record_failure("a@example.com", T0), None, "the count starts again");
        for _ in 0..MAX_FAILURES - 1 {
            lockout.record_failure("a@example.com", T0);
        }
        assert!(lockout.check("a@example.com", T0).is_err());
        lockout.clear("a@example.com");
        assert_eq!(lockout.check("a@example.com", T0), Ok(()));
    }

    #[test]
    fn attempts_count_before_the_password_is_checked() {
        let lockout = AccountLockout::default();
        // Five attempts in flight at once: each is counted as it starts, the fifth sets the lock, a sixth is
        // refused before its password is looked at.
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(lockout.attempt("a@example.com", T0), Ok(None));
        }
        assert_eq!(lockout.attempt("a@example.com", T0), Ok(Some(T0 + BASE_SECS)));
        assert_eq!(lockout.attempt("a@example.com", T0), Err(T0 + BASE_SECS));
        // The fifth had the right password: clearing lifts the lock it set.
        lockout.clear("a@example.com");
        assert_eq!(lockout.attempt("a@example.com", T0), Ok(None));
    }

    #[test]
    fn keys_are_normalised_and_bounded() {
        assert_eq!(AccountLockout::key("  Ops@Example.COM ").as_deref(), Some("ops@example.com"));
        assert_eq!(AccountLockout::key(&"a".repeat(MAX_KEY_BYTES + 1)), None);
    }
}
