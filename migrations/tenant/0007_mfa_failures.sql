-- Wrong second-factor codes, counted apart from wrong passwords: a correct password must not clear them, or
-- (password, four wrong codes) repeated would guess TOTP codes without ever locking. Only a correct code does.
ALTER TABLE users ADD COLUMN mfa_failures INTEGER NOT NULL DEFAULT 0;
