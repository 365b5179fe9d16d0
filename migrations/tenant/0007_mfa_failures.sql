-- Wrong second-factor codes, counted apart from wrong passwords: a correct password must not clear them, or
-- (password, four wrong codes) repeated would guess TOTP codes without ever locking. Only a correct code does.
-- Its lock is separate too: a password reset (which clears the password lock) must not reopen code guessing
-- to whoever controls the mailbox.
ALTER TABLE users ADD COLUMN mfa_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN mfa_locked_until INTEGER;
