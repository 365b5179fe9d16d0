-- WebAssembly plugins per tenant. Removed with the tenant.

-- A plugin: a named slot of one world with its settings and, when active, the version that runs.
--   config        JSON object handed to nothing yet but shown to the plugin author (reserved for config@0.2)
--   priority      lower runs first among the active plugins of one world
CREATE TABLE plugins (
    slug           TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    world          TEXT NOT NULL CHECK (world IN ('login', 'email', 'pricing')),
    failure_policy TEXT NOT NULL CHECK (failure_policy IN ('fail_closed', 'fail_open')),
    timeout_ms     INTEGER NOT NULL,
    memory_mb      INTEGER NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 100,
    config         TEXT NOT NULL DEFAULT '{}',
    active_version INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (slug, name)
);

-- Uploaded components: immutable, numbered per plugin from 1. `sha256` names the compiled artifact on disk.
CREATE TABLE plugin_versions (
    slug       TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    component  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (slug, name, version),
    FOREIGN KEY (slug, name) REFERENCES plugins (slug, name) ON DELETE CASCADE
);
