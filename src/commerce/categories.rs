//! Categories: a tree (parent, handle, title, position); a category with subcategories cannot be deleted.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::{check_handle, check_title};
use crate::email::outbox::TenantTx;
use crate::error::{Error, Result};

/// Most categories in one store.
pub const MAX_CATEGORIES: i64 = 10_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Category {
    pub id: String,
    pub parent_id: Option<String>,
    pub handle: String,
    pub title: String,
    pub position: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    /// `^[a-z0-9][a-z0-9-]{0,127}$`, unique in the store.
    pub handle: String,
    pub title: String,
    pub parent_id: Option<String>,
    /// Order among its siblings (lower first); default 0.
    pub position: Option<i64>,
}

/// Changes to a category; absent fields stay. `parent_id: null` makes it a top-level category.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    pub handle: Option<String>,
    pub title: Option<String>,
    #[serde(default, deserialize_with = "crate::commerce::double_option")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
    pub position: Option<i64>,
}

fn category_row(r: &Row<'_>) -> rusqlite::Result<Category> {
    Ok(Category { id: r.get(0)?, parent_id: r.get(1)?, handle: r.get(2)?, title: r.get(3)?, position: r.get(4)? })
}

fn check_position(position: Option<i64>) -> Result<()> {
    if position.is_some_and(|p| !(-1_000_000..=1_000_000).contains(&p)) {
        return Err(Error::validation("position must be within ±1000000"));
    }
    Ok(())
}

pub fn create_category(tx: &TenantTx<'_>, input: NewCategory, now: i64) -> Result<Category> {
    check_handle("handle", &input.handle)?;
    check_position(input.position)?;
    check_title("title", &input.title, 200)?;
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM categories", [], |r| r.get(0))?;
    if count >= MAX_CATEGORIES {
        return Err(Error::validation(format!("a store has at most {MAX_CATEGORIES} categories")));
    }
    if let Some(parent) = &input.parent_id {
        get_category(tx, parent)?
            .ok_or_else(|| Error::validation(format!("parent category {parent} does not exist")))?;
    }
    let taken: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM categories WHERE handle = ?1)", [&input.handle], |r| r.get(0))?;
    if taken {
        return Err(Error::Conflict(format!("a category with handle {} exists", input.handle)));
    }
    let id = uuid::Uuid::now_v7().to_string();
    tx.execute(
        "INSERT INTO categories (id, parent_id, handle, title, position, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![id, input.parent_id, input.handle, input.title.trim(), input.position.unwrap_or(0), now],
    )?;
    get_category(tx, &id)?.ok_or_else(|| Error::internal("category vanished"))
}

pub fn update_category(tx: &TenantTx<'_>, id: &str, patch: CategoryPatch, now: i64) -> Result<Category> {
    let current = get_category(tx, id)?.ok_or(Error::NotFound("category"))?;
    check_position(patch.position)?;
    let handle = patch.handle.unwrap_or(current.handle.clone());
    check_handle("handle", &handle)?;
    let title = patch.title.unwrap_or(current.title.clone());
    check_title("title", &title, 200)?;
    let parent = patch.parent_id.unwrap_or(current.parent_id.clone());
    if let Some(parent) = &parent {
        get_category(tx, parent)?
            .ok_or_else(|| Error::validation(format!("parent category {parent} does not exist")))?;
        // The new parent may not be the category itself or one of its descendants.
        let cycle: bool = tx.query_row(
            "WITH RECURSIVE sub(id) AS (SELECT ?1 UNION SELECT c.id FROM categories c JOIN sub ON c.parent_id = sub.id)
             SELECT EXISTS (SELECT 1 FROM sub WHERE id = ?2)",
            params![id, parent],
            |r| r.get(0),
        )?;
        if cycle {
            return Err(Error::validation("a category cannot be moved under itself or its descendants"));
        }
    }
    if handle != current.handle {
        let taken: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM categories WHERE handle = ?1)", [&handle], |r| r.get(0))?;
        if taken {
            return Err(Error::Conflict(format!("a category with handle {handle} exists")));
        }
    }
    tx.execute(
        "UPDATE categories SET handle = ?2, title = ?3, parent_id = ?4, position = ?5, updated_at = ?6 WHERE id = ?1",
        params![id, handle, title.trim(), parent, patch.position.unwrap_or(current.position), now],
    )?;
    get_category(tx, id)?.ok_or_else(|| Error::internal("category vanished"))
}

/// Deletes a category without children (its products stay, without it).
pub fn delete_category(tx: &TenantTx<'_>, id: &str) -> Result<()> {
    get_category(tx, id)?.ok_or(Error::NotFound("category"))?;
    let children: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM categories WHERE parent_id = ?1)", [id], |r| r.get(0))?;
    if children {
        return Err(Error::Conflict("the category has subcategories; move or delete them first".into()));
    }
    tx.execute("DELETE FROM categories WHERE id = ?1", [id])?;
    Ok(())
}

pub fn get_category(conn: &Connection, id: &str) -> Result<Option<Category>> {
    Ok(conn
        .query_row("SELECT id, parent_id, handle, title, position FROM categories WHERE id = ?1", [id], category_row)
        .optional()?)
}

/// Every category, parents before children, siblings by position then title.
pub fn list_categories(conn: &Connection) -> Result<Vec<Category>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE tree(id, parent_id, handle, title, position, path) AS (
            SELECT id, parent_id, handle, title, position, printf('%012d/%s', position + 100000000000, title)
              FROM categories WHERE parent_id IS NULL
            UNION ALL
            SELECT c.id, c.parent_id, c.handle, c.title, c.position,
                   tree.path || '|' || printf('%012d/%s', c.position + 100000000000, c.title)
              FROM categories c JOIN tree ON c.parent_id = tree.id)
         SELECT id, parent_id, handle, title, position FROM tree ORDER BY path",
    )?;
    Ok(stmt.query_map([], category_row)?.collect::<rusqlite::Result<_>>()?)
}
