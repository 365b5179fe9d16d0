-- Control plane: tenants, operators, API tokens, admin sessions, settings.
-- Written only by control::apply. Times are unix seconds.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    slug       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    settings   TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Deleted tenants: where their file went. The slug is free again.
CREATE TABLE tenant_archive (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL,
    name        TEXT NOT NULL,
    file        TEXT NOT NULL,
    archived_at INTEGER NOT NULL
);

-- Admin-side accounts. scope is 'operator' or 'tenant:{slug}' (tenant admins).
CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    scope         TEXT NOT NULL DEFAULT 'operator',
    created_at    INTEGER NOT NULL
);

-- Admin API tokens, stored as SHA-256 of the token.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scope      TEXT NOT NULL,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);

-- Admin UI sessions, keyed by SHA-256 of the cookie value.
CREATE TABLE admin_sessions (
    id_hash     TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);
