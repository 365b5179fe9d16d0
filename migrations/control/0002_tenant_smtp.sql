-- Per-tenant SMTP transport. The password is sealed with the master key (context "smtp-password:{slug}") and
-- never leaves the server in clear. Removed with the tenant.
CREATE TABLE tenant_smtp (
    slug            TEXT PRIMARY KEY REFERENCES tenants (slug) ON DELETE CASCADE,
    host            TEXT NOT NULL,
    port            INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    tls             TEXT NOT NULL CHECK (tls IN ('none', 'starttls', 'tls')),
    username        TEXT,
    password_sealed TEXT,
    from_email      TEXT NOT NULL,
    from_name       TEXT,
    updated_at      INTEGER NOT NULL
);
