-- A tenant file. Identity, outbox and commerce tables arrive in later migrations.

-- Facts about the file itself, e.g. which tenant slug it was created for.
CREATE TABLE tenant_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
