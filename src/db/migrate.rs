//! Embedded schema migrations for control.db and the tenant files.
//!
//! Migrations are numbered SQL files under `migrations/{control,tenant}/`, compiled into the binary, applied in
//! order, each in its own transaction, and recorded in `schema_migrations`. A database that records a version
//! newer than the binary knows is refused (`Error::SchemaTooNew`) rather than touched. Merged migrations are
//! never edited: a change is a new file.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const CONTROL: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/control/0001_init.sql") },
    Migration { version: 2, name: "tenant_smtp", sql: include_str!("../../migrations/control/0002_tenant_smtp.sql") },
    Migration { version: 3, name: "oauth", sql: include_str!("../../migrations/control/0003_oauth.sql") },
    Migration { version: 4, name: "plugins", sql: include_str!("../../migrations/control/0004_plugins.sql") },
    Migration {
        version: 5,
        name: "client_resource_server",
        sql: include_str!("../../migrations/control/0005_client_resource_server.sql"),
    },
    Migration { version: 6, name: "smtp_guarded", sql: include_str!("../../migrations/control/0006_smtp_guarded.sql") },
    Migration { version: 7, name: "control_log", sql: include_str!("../../migrations/control/0007_control_log.sql") },
    Migration { version: 8, name: "replicable", sql: include_str!("../../migrations/control/0008_replicable.sql") },
    Migration { version: 9, name: "integrations", sql: include_str!("../../migrations/control/0009_integrations.sql") },
];

pub const TENANT: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/tenant/0001_init.sql") },
    Migration { version: 2, name: "outbox", sql: include_str!("../../migrations/tenant/0002_outbox.sql") },
    Migration { version: 3, name: "users", sql: include_str!("../../migrations/tenant/0003_users.sql") },
    Migration {
        version: 4,
        name: "sessions_roles_mfa",
        sql: include_str!("../../migrations/tenant/0004_sessions_roles_mfa.sql"),
    },
    Migration { version: 5, name: "oauth", sql: include_str!("../../migrations/tenant/0005_oauth.sql") },
    Migration {
        version: 6,
        name: "plugin_claims",
        sql: include_str!("../../migrations/tenant/0006_plugin_claims.sql"),
    },
    Migration { version: 7, name: "mfa_failures", sql: include_str!("../../migrations/tenant/0007_mfa_failures.sql") },
    Migration { version: 8, name: "commerce", sql: include_str!("../../migrations/tenant/0008_commerce.sql") },
    Migration { version: 9, name: "carts", sql: include_str!("../../migrations/tenant/0009_carts.sql") },
    Migration { version: 10, name: "cart_owners", sql: include_str!("../../migrations/tenant/0010_cart_owners.sql") },
    Migration { version: 11, name: "time_indexes", sql: include_str!("../../migrations/tenant/0011_time_indexes.sql") },
    Migration { version: 12, name: "orders", sql: include_str!("../../migrations/tenant/0012_orders.sql") },
    Migration { version: 13, name: "fulfilment", sql: include_str!("../../migrations/tenant/0013_fulfilment.sql") },
];

/// The highest version in `set`.
pub fn latest(set: &[Migration]) -> i64 {
    set.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The version recorded in `conn` (0 for a new database).
pub fn current_version(conn: &Connection) -> Result<i64> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    Ok(conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?)
}

/// Applies the migrations of `set` that `conn` lacks and returns the names applied. `what` names the database
/// in errors (`control.db`, `tenant acme`).
pub fn migrate(conn: &mut Connection, set: &[Migration], what: &str) -> Result<Vec<String>> {
    let known = latest(set);
    let found = current_version(conn)?;
    if found > known {
        return Err(Error::SchemaTooNew { what: what.to_owned(), found, known });
    }
    if found == known {
        return Ok(Vec::new());
    }
    let mut applied = Vec::new();
    for migration in set.iter().filter(|m| m.version > found) {
        // IMMEDIATE takes the write lock first, so two processes migrating at once serialise here.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )?;
        let done: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [migration.version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(migration.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![migration.version, migration.name, crate::now_unix()],
            )?;
            applied.push(format!("{:04}_{}", migration.version, migration.name));
        }
        tx.commit()?;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        let all: Vec<String> = TENANT.iter().map(|m| format!("{:04}_{}", m.version, m.name)).collect();
        assert_eq!(migrate(&mut conn, TENANT, "t").unwrap(), all);
        assert!(migrate(&mut conn, TENANT, "t").unwrap().is_empty());
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)", []).unwrap();
        let err = migrate(&mut conn, TENANT, "tenant t").unwrap_err();
        assert!(matches!(err, Error::SchemaTooNew { found: 999, .. }), "{err}");
        assert!(err.to_string().contains("tenant t"));
    }

    #[test]
    fn versions_are_increasing() {
        for set in [CONTROL, TENANT] {
            for pair in set.windows(2) {
                assert!(pair[0].version < pair[1].version);
            }
        }
    }
}
