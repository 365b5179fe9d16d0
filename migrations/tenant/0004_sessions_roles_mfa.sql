-- Sessions, one-time user tokens, roles and second factors. Times are unix seconds.

-- A signed-in browser or app. The cookie value is never stored: `id_hash` is its SHA-256.
--   id         public id (UUIDv7), shown in session lists and used to revoke one
--   stage      active, or a half-finished sign-in: mfa (code needed) or enrol (TOTP set-up needed)
--   amr        how the user proved who they are, space-separated: pwd, otp
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    id_hash      TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stage        TEXT NOT NULL CHECK (stage IN ('active', 'mfa', 'enrol')),
    csrf_token   TEXT NOT NULL,
    amr          TEXT NOT NULL DEFAULT 'pwd',
    ip           TEXT,
    user_agent   TEXT,
    created_at   INTEGER NOT NULL,
    auth_time    INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Single-use tokens mailed to a user: email verification, password reset, invitation. Stored as SHA-256.
CREATE TABLE user_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'invite')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX user_tokens_by_user ON user_tokens (user_id, purpose);

-- Roles of the tenant; `permissions` is a JSON array of strings.
CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    permissions TEXT NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (user_id, role)
);
CREATE INDEX user_roles_by_role ON user_roles (role);

-- TOTP (RFC 6238). The secret is sealed with the master key. `confirmed` is 0 until the user entered a first
-- code; `last_step` is the time step of the last accepted code, so a code cannot be used twice.
CREATE TABLE totp (
    user_id       TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_sealed TEXT NOT NULL,
    confirmed     INTEGER NOT NULL DEFAULT 0,
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- Recovery codes, SHA-256 each; a used code keeps its row with `used_at` set.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
