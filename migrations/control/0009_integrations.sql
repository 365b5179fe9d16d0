-- Per-tenant integrations with outside services: `stripe` (payments) and `carrier` (signed tracking updates).
-- `config` holds what may be shown again (a publishable key, when it was set); `secrets_sealed` the secrets as one
-- JSON object sealed with the master key (context "integration:{kind}:{slug}"), never shown again. Removed with
-- the tenant.
CREATE TABLE tenant_integrations (
    slug           TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('stripe', 'carrier')),
    config         TEXT NOT NULL DEFAULT '{}',
    secrets_sealed TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (slug, kind)
);
