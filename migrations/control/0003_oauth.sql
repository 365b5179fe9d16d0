-- OAuth 2.0 / OpenID Connect: signing keys and clients per tenant. Removed with the tenant.

-- Signing keys. The private key (PKCS#8 DER) is sealed with the master key (context "signing-key:{slug}:{kid}").
--   expires_at  NULL for the active key; set when a newer key replaces it to the moment every token it signed
--               has expired. The key is published in JWKS until then and deleted after.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    slug           TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    alg            TEXT NOT NULL CHECK (alg IN ('RS256', 'ES256', 'EdDSA')),
    public_jwk     TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER
);
CREATE INDEX signing_keys_by_tenant ON signing_keys (slug, created_at);

-- OAuth clients. `secret_hash` is the SHA-256 of the 256-bit client secret (confidential clients only); list
-- columns hold JSON arrays.
CREATE TABLE oauth_clients (
    client_id                  TEXT PRIMARY KEY,
    slug                       TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    name                       TEXT NOT NULL,
    client_type                TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    secret_hash                TEXT,
    redirect_uris              TEXT NOT NULL DEFAULT '[]',
    post_logout_redirect_uris  TEXT NOT NULL DEFAULT '[]',
    grant_types                TEXT NOT NULL DEFAULT '[]',
    scopes                     TEXT NOT NULL DEFAULT '[]',
    first_party                INTEGER NOT NULL DEFAULT 0,
    token_endpoint_auth_method TEXT NOT NULL,
    access_token_ttl           INTEGER,
    refresh_token_ttl          INTEGER,
    allowed_cors_origins       TEXT NOT NULL DEFAULT '[]',
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);
CREATE INDEX oauth_clients_by_tenant ON oauth_clients (slug, created_at);
