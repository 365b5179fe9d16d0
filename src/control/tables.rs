//! Control-plane rows and the plain read queries over them. Writes live in `control::apply`.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::admin::Scope;
use crate::error::{Error, Result};
use crate::tenants::{TenantSettings, TenantSlug, TenantStatus};

#[derive(Debug, Clone)]
pub struct Tenant {
    pub slug: TenantSlug,
    pub name: String,
    pub status: TenantStatus,
    pub settings: TenantSettings,
    pub created_at: i64,
    pub updated_at: i64,
    /// The node that keeps the tenant's file (`None`: made before nodes had ids, not yet adopted).
    pub home_node: Option<u64>,
    /// Chosen by the node that proposed the creation and written into the tenant's file, so a file left by an
    /// archived tenant of the same slug is never taken for this one's.
    pub incarnation: Option<String>,
}

const TENANT_COLUMNS: &str = "slug, name, status, settings, created_at, updated_at, home_node, incarnation";

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    let slug: String = row.get(0)?;
    let status: String = row.get(2)?;
    let settings: String = row.get(3)?;
    let bad = |what: &str| rusqlite::Error::InvalidColumnName(format!("tenant {slug}: bad {what} in control.db"));
    Ok(Tenant {
        slug: TenantSlug::parse(&slug).map_err(|_| bad("slug"))?,
        name: row.get(1)?,
        status: TenantStatus::parse(&status).ok_or_else(|| bad("status"))?,
        settings: serde_json::from_str(&settings).map_err(|_| bad("settings"))?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        home_node: row.get::<_, Option<i64>>(6)?.map(|n| n as u64),
        incarnation: row.get(7)?,
    })
}

pub fn get_tenant(conn: &Connection, slug: &TenantSlug) -> Result<Option<Tenant>> {
    Ok(conn
        .query_row(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = ?1"), [slug.as_str()], tenant_from_row)
        .optional()?)
}

/// Tenants ordered by slug, starting after `after`; `only` restricts the page to one slug.
pub fn list_tenants(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
    only: Option<&TenantSlug>,
) -> Result<Vec<Tenant>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants
         WHERE slug > ?1 AND (?2 IS NULL OR slug = ?2) ORDER BY slug LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![after.unwrap_or(""), only.map(|s| s.as_str()), limit], tenant_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every tenant slug (offline migrate, start-up scans).
pub fn all_tenant_slugs(conn: &Connection) -> Result<Vec<TenantSlug>> {
    let mut stmt = conn.prepare("SELECT slug FROM tenants ORDER BY slug")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.map(|r| TenantSlug::parse(&r?)).collect()
}

pub fn count_tenants(conn: &Connection) -> Result<(u64, u64)> {
    Ok(conn.query_row("SELECT COUNT(*), COALESCE(SUM(status = 'suspended'), 0) FROM tenants", [], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?)
}

pub fn key_check(conn: &Connection) -> Result<Option<String>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0)).optional()?)
}

#[derive(Debug, Clone)]
pub struct Operator {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub scope: Scope,
}

fn operator_from_row(row: &Row<'_>) -> rusqlite::Result<Operator> {
    let scope: String = row.get(3)?;
    Ok(Operator {
        id: row.get(0)?,
        email: row.get(1)?,
        password_hash: row.get(2)?,
        scope: Scope::parse(&scope).map_err(|_| rusqlite::Error::InvalidColumnName(format!("scope {scope}")))?,
    })
}

pub fn operator_by_email(conn: &Connection, email: &str) -> Result<Option<Operator>> {
    Ok(conn
        .query_row("SELECT id, email, password_hash, scope FROM operators WHERE email = ?1", [email], operator_from_row)
        .optional()?)
}

/// An admin account as the admin API lists it (no password hash).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminAccount {
    pub id: String,
    pub email: String,
    pub scope: Scope,
    #[serde(with = "crate::rfc3339")]
    pub created_at: i64,
}

/// The admin accounts with exactly `scope` (e.g. the admins of one tenant), oldest first.
pub fn operators_in_scope(conn: &Connection, scope: &Scope) -> Result<Vec<AdminAccount>> {
    let mut stmt =
        conn.prepare("SELECT id, email, created_at FROM operators WHERE scope = ?1 ORDER BY created_at, id")?;
    let rows = stmt.query_map([scope.to_string()], |r| {
        Ok(AdminAccount { id: r.get(0)?, email: r.get(1)?, scope: scope.clone(), created_at: r.get(2)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn count_operators(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM operators", [], |r| r.get::<_, i64>(0))? as u64)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_by: Option<String>,
    #[serde(with = "crate::rfc3339")]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339::option")]
    pub expires_at: Option<i64>,
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiToken> {
    let scope: String = row.get(2)?;
    Ok(ApiToken {
        id: row.get(0)?,
        name: row.get(1)?,
        scope: Scope::parse(&scope).map_err(|_| rusqlite::Error::InvalidColumnName(format!("scope {scope}")))?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, scope, created_by, created_at, expires_at";

/// The unexpired token whose hash is `token_hash`.
pub fn token_by_hash(conn: &Connection, token_hash: &str, now: i64) -> Result<Option<ApiToken>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens
                 WHERE token_hash = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
            ),
            params![token_hash, now],
            token_from_row,
        )
        .optional()?)
}

pub fn token_by_id(conn: &Connection, id: &str) -> Result<Option<ApiToken>> {
    Ok(conn
        .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"), [id], token_from_row)
        .optional()?)
}

/// Tokens, newest first; `scope` restricts the list to one scope.
pub fn list_tokens(conn: &Connection, scope: Option<&Scope>) -> Result<Vec<ApiToken>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR scope = ?1 ORDER BY created_at DESC, id"
    ))?;
    let rows = stmt.query_map([scope.map(|s| s.to_string())], token_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The names of the admin-side actors that may act on the tenant `slug` (operators and its tenant admins, API tokens
/// of either scope), keyed the way the audit log writes actors: `operator:{id}` → email, `token:{id}` → token name.
/// Deleted accounts and tokens are missing.
///
/// With `hide_node_actors` (a tenant admin is looking), node-wide operators and tokens are named by their role only
/// ("Gatehouse operator"): their emails and token names are the node's, not the tenant's, business.
pub fn admin_actor_names(
    conn: &Connection,
    slug: &TenantSlug,
    hide_node_actors: bool,
) -> Result<std::collections::HashMap<String, String>> {
    let scope = Scope::Tenant(slug.clone()).to_string();
    let mut names = std::collections::HashMap::new();
    let node = |actual: String, scope: &str, role: &str| {
        if hide_node_actors && scope == "operator" { role.to_owned() } else { actual }
    };
    let mut stmt = conn.prepare_cached("SELECT id, email, scope FROM operators WHERE scope IN ('operator', ?1)")?;
    let rows = stmt.query_map([scope.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
    for row in rows {
        let (id, email, scope) = row?;
        names.insert(format!("operator:{id}"), node(email, &scope, "Gatehouse operator"));
    }
    let mut stmt = conn.prepare_cached("SELECT id, name, scope FROM api_tokens WHERE scope IN ('operator', ?1)")?;
    let rows = stmt.query_map([scope.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
    for row in rows {
        let (id, name, scope) = row?;
        names.insert(format!("token:{id}"), node(name, &scope, "of a Gatehouse operator"));
    }
    Ok(names)
}

#[derive(Debug, Clone)]
pub struct AdminSession {
    pub operator: Operator,
    pub csrf_token: String,
}

/// The live session whose id hashes to `id_hash`, with its account.
pub fn session_by_hash(conn: &Connection, id_hash: &str, now: i64) -> Result<Option<AdminSession>> {
    Ok(conn
        .query_row(
            "SELECT o.id, o.email, o.password_hash, o.scope, s.csrf_token
             FROM admin_sessions s JOIN operators o ON o.id = s.operator_id
             WHERE s.id_hash = ?1 AND s.expires_at > ?2",
            params![id_hash, now],
            |row| Ok(AdminSession { operator: operator_from_row(row)?, csrf_token: row.get(4)? }),
        )
        .optional()?)
}

#[derive(Debug, Clone)]
pub struct ArchivedTenant {
    pub slug: String,
    pub file: String,
    pub archived_at: i64,
}

pub fn archived_tenants(conn: &Connection, limit: u32) -> Result<Vec<ArchivedTenant>> {
    let mut stmt =
        conn.prepare("SELECT slug, file, archived_at FROM tenant_archive ORDER BY archived_at DESC, id DESC LIMIT ?1")?;
    let rows =
        stmt.query_map([limit], |r| Ok(ArchivedTenant { slug: r.get(0)?, file: r.get(1)?, archived_at: r.get(2)? }))?;
    rows.collect::<rusqlite::Result<_>>().map_err(Error::from)
}

/// A tenant's SMTP settings, if it has its own.
pub fn tenant_smtp(conn: &Connection, slug: &TenantSlug) -> Result<Option<crate::email::smtp::SmtpRecord>> {
    use crate::email::smtp::{SmtpRecord, TlsMode};
    Ok(conn
        .query_row(
            "SELECT host, port, tls, username, password_sealed, from_email, from_name, updated_at, guarded
             FROM tenant_smtp WHERE slug = ?1",
            [slug.as_str()],
            |r| {
                let tls: String = r.get(2)?;
                Ok(SmtpRecord {
                    host: r.get(0)?,
                    port: r.get(1)?,
                    tls: TlsMode::parse(&tls).unwrap_or(TlsMode::Starttls),
                    username: r.get(3)?,
                    password_sealed: r.get(4)?,
                    from_email: r.get(5)?,
                    from_name: r.get(6)?,
                    updated_at: r.get(7)?,
                    guarded: r.get(8)?,
                })
            },
        )
        .optional()?)
}

/// One of a tenant's integrations (`stripe`, `carrier`), if set.
pub fn tenant_integration(
    conn: &Connection,
    slug: &TenantSlug,
    kind: &str,
) -> Result<Option<crate::control::mutation::Integration>> {
    Ok(conn
        .query_row(
            "SELECT config, secrets_sealed, updated_at FROM tenant_integrations WHERE slug = ?1 AND kind = ?2",
            rusqlite::params![slug.as_str(), kind],
            |r| {
                Ok(crate::control::mutation::Integration {
                    config: serde_json::from_str(&r.get::<_, String>(0)?).unwrap_or_default(),
                    secrets_sealed: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Slugs of tenants with their own SMTP settings (the admin dashboard's fallback warning).
pub fn tenants_with_smtp(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT slug FROM tenant_smtp")?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}
