//! Roles of a tenant (tables `roles`, `user_roles`): a name, a description and a list of permission strings,
//! assigned to users. Tokens carry a user's role names and, when asked for, the union of their permissions.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::error::{Error, Result};

/// A role of a tenant.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

const MAX_PERMISSIONS: usize = 200;

fn from_row(r: &Row<'_>) -> rusqlite::Result<Role> {
    let permissions: String = r.get(2)?;
    Ok(Role {
        name: r.get(0)?,
        description: r.get(1)?,
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// A role name: 1-64 of `a-z 0-9 _ - . :`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.:".contains(&b));
    if ok { Ok(()) } else { Err(Error::validation("role name must be 1-64 of a-z, 0-9, _ - . : (lower case)")) }
}

/// Permission strings: 1-128 printable characters without spaces, at most 200, no duplicates (kept in order).
pub fn check_permissions(permissions: &[String]) -> Result<Vec<String>> {
    if permissions.len() > MAX_PERMISSIONS {
        return Err(Error::validation(format!("a role can hold at most {MAX_PERMISSIONS} permissions")));
    }
    let mut out: Vec<String> = Vec::with_capacity(permissions.len());
    for p in permissions {
        let ok = (1..=128).contains(&p.len()) && p.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if !ok {
            return Err(Error::validation(format!("permission {p:?} must be 1-128 characters without spaces")));
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub fn list(conn: &Connection) -> Result<Vec<Role>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, description, permissions, created_at, updated_at FROM roles ORDER BY name LIMIT 1000",
    )?;
    Ok(stmt.query_map([], from_row)?.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, name: &str) -> Result<Role> {
    conn.query_row(
        "SELECT name, description, permissions, created_at, updated_at FROM roles WHERE name = ?1",
        [name],
        from_row,
    )
    .optional()?
    .ok_or(Error::NotFound("role"))
}

pub fn create(conn: &Connection, name: &str, description: &str, permissions: &[String]) -> Result<Role> {
    let exists: bool = conn.query_row("SELECT EXISTS(SELECT 1 FROM roles WHERE name = ?1)", [name], |r| r.get(0))?;
    if exists {
        return Err(Error::Conflict(format!("a role called {name} exists")));
    }
    let now = crate::now_unix();
    conn.execute(
        "INSERT INTO roles (name, description, permissions, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![name, description, serde_json::to_string(permissions).map_err(Error::internal)?, now],
    )?;
    get(conn, name)
}

pub fn update(
    conn: &Connection,
    name: &str,
    description: Option<&str>,
    permissions: Option<&[String]>,
) -> Result<Role> {
    let current = get(conn, name)?;
    let permissions = permissions.unwrap_or(&current.permissions);
    conn.execute(
        "UPDATE roles SET description = ?2, permissions = ?3, updated_at = ?4 WHERE name = ?1",
        params![
            name,
            description.unwrap_or(&current.description),
            serde_json::to_string(permissions).map_err(Error::internal)?,
            crate::now_unix()
        ],
    )?;
    get(conn, name)
}

/// Deletes a role; its assignments go with it.
pub fn delete(conn: &Connection, name: &str) -> Result<()> {
    if conn.execute("DELETE FROM roles WHERE name = ?1", [name])? == 0 {
        return Err(Error::NotFound("role"));
    }
    Ok(())
}

/// The names of the user's roles, sorted.
pub fn of_user(conn: &Connection, user_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")?;
    Ok(stmt.query_map([user_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// The union of the permissions of the user's roles, sorted.
pub fn permissions_of_user(conn: &Connection, user_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT j.value FROM user_roles ur JOIN roles r ON r.name = ur.role, json_each(r.permissions) j
         WHERE ur.user_id = ?1 ORDER BY j.value",
    )?;
    Ok(stmt.query_map([user_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
}

/// Replaces the user's roles with `names` (each must exist); returns (added, removed).
pub fn set_user_roles(conn: &Connection, user_id: &str, names: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    crate::identity::users::get(conn, user_id)?;
    for name in names {
        get(conn, name).map_err(|_| Error::validation(format!("there is no role called {name}")))?;
    }
    let before = of_user(conn, user_id)?;
    conn.execute("DELETE FROM user_roles WHERE user_id = ?1", [user_id])?;
    for name in names {
        conn.execute("INSERT OR IGNORE INTO user_roles (user_id, role) VALUES (?1, ?2)", params![user_id, name])?;
    }
    let added = names.iter().filter(|n| !before.contains(n)).cloned().collect();
    let removed = before.into_iter().filter(|n| !names.contains(n)).collect();
    Ok((added, removed))
}
