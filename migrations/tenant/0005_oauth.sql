-- OAuth 2.0 / OpenID Connect state of a tenant: pending authorization requests, codes, token families, refresh
-- tokens, access tokens issued to users, and remembered consents. Secrets are stored as SHA-256. Unix seconds.

-- An authorization request waiting for the user to sign in or consent. `params` is the validated request (JSON).
--   login_after  the sign-in must be at least this recent (prompt=login, max_age)
CREATE TABLE oauth_requests (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    params      TEXT NOT NULL,
    login_after INTEGER,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX oauth_requests_expiry ON oauth_requests (expires_at);

-- Authorization codes: single-use, bound to client, redirect URI and PKCE challenge.
CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id     TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      INTEGER NOT NULL,
    amr            TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at);

-- Everything issued from one authorization: revoking the family ends its refresh and access tokens.
--   session_id  the session the tokens die with; NULL for offline_access families, which outlive it
--   code_hash   the code the family came from (a second use of the code revokes the family)
CREATE TABLE oauth_families (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id TEXT,
    code_hash  TEXT,
    scope      TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    amr        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoked_reason TEXT
);
CREATE INDEX oauth_families_by_user ON oauth_families (user_id);
CREATE INDEX oauth_families_by_code ON oauth_families (code_hash);

-- Refresh tokens. A used one is `rotated_at`; presenting it again revokes its family (reuse detection).
CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES oauth_families (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER
);
CREATE INDEX oauth_refresh_by_family ON oauth_refresh_tokens (family_id);
CREATE INDEX oauth_refresh_expiry ON oauth_refresh_tokens (expires_at);

-- Access tokens (JWTs) that can be revoked: those of a family, and any revoked one (RFC 7009). Tokens of
-- client_credentials grants get a row only when revoked.
CREATE TABLE oauth_access_tokens (
    jti        TEXT PRIMARY KEY,
    family_id  TEXT REFERENCES oauth_families (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX oauth_access_by_family ON oauth_access_tokens (family_id);
CREATE INDEX oauth_access_expiry ON oauth_access_tokens (expires_at);

-- Consent a user gave a third-party client, remembered until revoked from the account page.
CREATE TABLE oauth_consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
