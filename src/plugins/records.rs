//! Plugin rows in control.db: a plugin's settings and its uploaded versions. Written only by `control::apply`
//! (through the plugin mutations), read by the admin API and the active-plugin cache.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::World;
use crate::error::{Error, Result};
use crate::tenants::TenantSlug;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PluginFailurePolicy)]
pub enum FailurePolicy {
    /// A trap, timeout or invalid output refuses the login or registration (mail: retried later).
    FailClosed,
    /// A failure is logged and counted, and the flow goes on as if the plugin were not there.
    FailOpen,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "fail_closed",
            FailurePolicy::FailOpen => "fail_open",
        }
    }

    fn parse(s: &str) -> FailurePolicy {
        if s == "fail_open" { FailurePolicy::FailOpen } else { FailurePolicy::FailClosed }
    }
}

/// A plugin's settings: everything but its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginSettings {
    pub name: String,
    pub world: World,
    pub failure_policy: FailurePolicy,
    pub timeout_ms: u32,
    pub memory_mb: u32,
    /// Lower runs first among the active plugins of a world.
    pub priority: i32,
    /// Free-form settings kept with the plugin for its author (shown in the API and UI).
    pub config: serde_json::Value,
}

/// A plugin: its settings, which version is active and when it changed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Plugin {
    #[serde(flatten)]
    pub settings: PluginSettings,
    /// The version hooks run; null when the plugin is inactive.
    pub active_version: Option<u32>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// An uploaded component of a plugin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PluginVersion)]
pub struct Version {
    /// 1 for the first upload, then one more each time.
    pub version: u32,
    /// Hex SHA-256 of the component bytes.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// The contract version the component was built against (`0.1.0`, `0.2.0`): in the upload's answer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract: Option<super::runtime::Contract>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

/// What the call path needs of an active plugin.
#[derive(Debug, Clone)]
pub struct Active {
    pub settings: PluginSettings,
    pub version: u32,
    pub sha256: String,
}

const COLUMNS: &str =
    "name, world, failure_policy, timeout_ms, memory_mb, priority, config, active_version, created_at, updated_at";

const P_COLUMNS: &str = "p.name, p.world, p.failure_policy, p.timeout_ms, p.memory_mb, p.priority, p.config,
     p.active_version, p.created_at, p.updated_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Plugin> {
    let world: String = r.get(1)?;
    let policy: String = r.get(2)?;
    let config: String = r.get(6)?;
    Ok(Plugin {
        settings: PluginSettings {
            name: r.get(0)?,
            world: World::parse(&world).unwrap_or(World::Login),
            failure_policy: FailurePolicy::parse(&policy),
            timeout_ms: r.get(3)?,
            memory_mb: r.get(4)?,
            priority: r.get(5)?,
            config: serde_json::from_str(&config).unwrap_or_default(),
        },
        active_version: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub fn list(conn: &Connection, slug: &TenantSlug) -> Result<Vec<Plugin>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM plugins WHERE slug = ?1 ORDER BY priority, name"))?;
    let rows = stmt.query_map([slug.as_str()], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, slug: &TenantSlug, name: &str) -> Result<Option<Plugin>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM plugins WHERE slug = ?1 AND name = ?2"),
            params![slug.as_str(), name],
            from_row,
        )
        .optional()?)
}

pub fn versions(conn: &Connection, slug: &TenantSlug, name: &str) -> Result<Vec<Version>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version, sha256, size, created_at FROM plugin_versions WHERE slug = ?1 AND name = ?2
         ORDER BY version DESC",
    )?;
    let rows = stmt.query_map(params![slug.as_str(), name], |r| {
        Ok(Version {
            version: r.get(0)?,
            sha256: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
            created_at: r.get(3)?,
            contract: None,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The component bytes of one version (only read when its compiled artifact is missing).
pub fn component(conn: &Connection, slug: &TenantSlug, name: &str, version: u32) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT component FROM plugin_versions WHERE slug = ?1 AND name = ?2 AND version = ?3",
            params![slug.as_str(), name, version],
            |r| r.get(0),
        )
        .optional()?)
}

/// The tenant's active plugins, in running order.
pub fn active(conn: &Connection, slug: &TenantSlug) -> Result<Vec<Active>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {P_COLUMNS}, v.sha256 FROM plugins p JOIN plugin_versions v
           ON v.slug = p.slug AND v.name = p.name AND v.version = p.active_version
         WHERE p.slug = ?1 ORDER BY p.priority, p.name"
    ))?;
    let rows = stmt.query_map([slug.as_str()], |r| {
        let plugin = from_row(r)?;
        Ok(Active { settings: plugin.settings, version: plugin.active_version.unwrap_or_default(), sha256: r.get(10)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- writes: only from control::apply ----

pub fn put(conn: &Connection, slug: &TenantSlug, p: &PluginSettings, at: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO plugins (slug, name, world, failure_policy, timeout_ms, memory_mb, priority, config,
                              created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT (slug, name) DO UPDATE SET failure_policy = excluded.failure_policy,
           timeout_ms = excluded.timeout_ms, memory_mb = excluded.memory_mb, priority = excluded.priority,
           config = excluded.config, updated_at = excluded.updated_at",
        params![
            slug.as_str(),
            p.name,
            p.world.as_str(),
            p.failure_policy.as_str(),
            p.timeout_ms,
            p.memory_mb,
            p.priority,
            p.config.to_string(),
            at
        ],
    )?;
    Ok(())
}

/// Stores `component` as the plugin's next version (one above the highest it ever had: a deleted version's
/// number is not reused while the plugin lives) and answers that number. Runs inside `control::apply`, so every
/// node assigns the same number.
pub fn add_version(
    conn: &Connection,
    slug: &TenantSlug,
    name: &str,
    sha256: &str,
    component: &[u8],
    at: i64,
) -> Result<u32> {
    if get(conn, slug, name)?.is_none() {
        return Err(Error::NotFound("plugin"));
    }
    let max: Option<u32> = conn.query_row(
        "SELECT MAX(version) FROM plugin_versions WHERE slug = ?1 AND name = ?2",
        params![slug.as_str(), name],
        |r| r.get(0),
    )?;
    let version = max.unwrap_or(0) + 1;
    conn.execute(
        "INSERT INTO plugin_versions (slug, name, version, sha256, size, component, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![slug.as_str(), name, version, sha256, component.len() as i64, component, at],
    )?;
    Ok(version)
}

pub fn set_active(conn: &Connection, slug: &TenantSlug, name: &str, version: Option<u32>, at: i64) -> Result<()> {
    if let Some(v) = version {
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM plugin_versions WHERE slug = ?1 AND name = ?2 AND version = ?3)",
            params![slug.as_str(), name, v],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(Error::NotFound("plugin version"));
        }
    }
    let changed = conn.execute(
        "UPDATE plugins SET active_version = ?3, updated_at = ?4 WHERE slug = ?1 AND name = ?2",
        params![slug.as_str(), name, version, at],
    )?;
    if changed == 0 {
        return Err(Error::NotFound("plugin"));
    }
    Ok(())
}

pub fn delete(conn: &Connection, slug: &TenantSlug, name: &str) -> Result<()> {
    if conn.execute("DELETE FROM plugins WHERE slug = ?1 AND name = ?2", params![slug.as_str(), name])? == 0 {
        return Err(Error::NotFound("plugin"));
    }
    Ok(())
}

/// Component bytes in a mutation's JSON: base64, not an array of numbers.
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
