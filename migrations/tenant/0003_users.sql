-- Users of the tenant and the append-only audit log. Times are unix seconds.
--   email          trimmed and lower-cased; unique
--   password_hash  argon2id PHC string; NULL while the user has no password yet
--   fields         JSON object, checked against settings.custom_fields
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    email_verified INTEGER NOT NULL DEFAULT 0,
    password_hash  TEXT,
    status         TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    name           TEXT,
    fields         TEXT NOT NULL DEFAULT '{}',
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_login_at  INTEGER
);
CREATE INDEX users_created ON users (created_at, id);

-- What happened to accounts, by whom, from where. Rows are only ever inserted.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    type       TEXT NOT NULL,
    user_id    TEXT,
    actor      TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    request_id TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_type ON audit_log (type, id);
CREATE INDEX audit_by_user ON audit_log (user_id, id) WHERE user_id IS NOT NULL;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
