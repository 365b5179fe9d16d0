//! `data/backup.db`: where each replicated database's replica stands (node-local, not control-plane state: a
//! sync is not a control-plane change). One row per database: its replica root, the last TXID captured into the
//! spool and the last uploaded, and the WAL cursor the next capture continues from.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::backup::tracker::DbKey;
use crate::error::Result;

/// A database's replica position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// The replica root under the backup URL's prefix (`tenants/{slug}/{incarnation}`,
    /// `nodes/{node}/control/{generation}`).
    pub root: String,
    /// The last TXID written into the spool.
    pub txid: u64,
    /// The last TXID uploaded.
    pub uploaded: u64,
    pub page_size: u32,
    /// The database's size in pages at `txid`.
    pub commit: u32,
    /// The WAL byte offset after the last captured frame (0: no WAL header seen yet) and its salts and
    /// cumulative checksum.
    pub wal_offset: u64,
    pub salts: (u32, u32),
    pub checksum: (u32, u32),
    /// A checkpoint ran since the cursor was taken: the WAL may have restarted (salt1 one higher, frames from 32).
    pub may_restart: bool,
    /// The next capture writes a full image (the WAL no longer matches the cursor, or frames were checkpointed
    /// before they were captured).
    pub need_image: bool,
    /// When the last full image was written (unix seconds).
    pub snapshot_at: i64,
    /// The main file's size and modification time after the last checkpoint: a file changed while the server
    /// was down (another program checkpointed it) gets a full image.
    pub db_size: u64,
    pub db_mtime_ns: i64,
}

pub struct Positions {
    conn: Mutex<Connection>,
    /// When this backup.db was made (unix ms): replica roots made later cannot hold files from before it.
    created_ms: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS positions (
    db TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    txid INTEGER NOT NULL,
    uploaded INTEGER NOT NULL,
    page_size INTEGER NOT NULL,
    commit_pages INTEGER NOT NULL,
    wal_offset INTEGER NOT NULL,
    salt1 INTEGER NOT NULL,
    salt2 INTEGER NOT NULL,
    checksum1 INTEGER NOT NULL,
    checksum2 INTEGER NOT NULL,
    may_restart INTEGER NOT NULL,
    need_image INTEGER NOT NULL,
    snapshot_at INTEGER NOT NULL,
    db_size INTEGER NOT NULL,
    db_mtime_ns INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS objects (
    root TEXT NOT NULL,
    level INTEGER NOT NULL,
    min_txid INTEGER NOT NULL,
    max_txid INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (root, level, min_txid, max_txid)
) STRICT;
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    db TEXT NOT NULL,
    root TEXT NOT NULL,
    after_txid INTEGER NOT NULL,
    at INTEGER NOT NULL,
    reason TEXT NOT NULL
) STRICT;
";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Position)> {
    Ok((
        r.get(0)?,
        Position {
            root: r.get(1)?,
            txid: r.get::<_, i64>(2)? as u64,
            uploaded: r.get::<_, i64>(3)? as u64,
            page_size: r.get(4)?,
            commit: r.get(5)?,
            wal_offset: r.get::<_, i64>(6)? as u64,
            salts: (r.get(7)?, r.get(8)?),
            checksum: (r.get(9)?, r.get(10)?),
            may_restart: r.get(11)?,
            need_image: r.get(12)?,
            snapshot_at: r.get(13)?,
            db_size: r.get::<_, i64>(14)? as u64,
            db_mtime_ns: r.get(15)?,
        },
    ))
}

const COLUMNS: &str = "db, root, txid, uploaded, page_size, commit_pages, wal_offset, salt1, salt2, checksum1, \
                       checksum2, may_restart, need_image, snapshot_at, db_size, db_mtime_ns";

impl Positions {
    pub fn open(data_dir: &Path) -> Result<Positions> {
        let conn = crate::db::open_connection(&data_dir.join("backup.db"))?;
        // A position must never fall behind a TXID already uploaded: its commits are durable at once.
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_ms', ?1)",
            [crate::backup::capture::now_ms()],
        )?;
        let created_ms = conn.query_row("SELECT value FROM meta WHERE key = 'created_ms'", [], |r| r.get(0))?;
        Ok(Positions { conn: Mutex::new(conn), created_ms })
    }

    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn all(&self) -> Result<Vec<(DbKey, Position)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM positions ORDER BY db"))?;
        let rows = stmt.query_map([], from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows.into_iter().filter_map(|(db, p)| DbKey::parse(&db).map(|k| (k, p))).collect())
    }

    pub fn get(&self, key: &DbKey) -> Result<Option<Position>> {
        let conn = self.conn();
        let found = conn
            .query_row(&format!("SELECT {COLUMNS} FROM positions WHERE db = ?1"), [key.to_string()], from_row)
            .optional()?;
        Ok(found.map(|(_, p)| p))
    }

    pub fn put(&self, key: &DbKey, p: &Position) -> Result<()> {
        self.conn().execute(
            &format!("INSERT OR REPLACE INTO positions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
            params![
                key.to_string(),
                p.root,
                p.txid as i64,
                p.uploaded as i64,
                p.page_size,
                p.commit,
                p.wal_offset as i64,
                p.salts.0,
                p.salts.1,
                p.checksum.0,
                p.checksum.1,
                p.may_restart,
                p.need_image,
                p.snapshot_at,
                p.db_size as i64,
                p.db_mtime_ns
            ],
        )?;
        Ok(())
    }

    /// Records that an object of `root` reached the bucket (its LTX header was written at `created_ms`).
    pub fn uploaded(&self, root: &str, level: u8, range: (u64, u64), created_ms: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE positions SET uploaded = MAX(uploaded, ?2) WHERE root = ?1 AND ?3 = 0",
            params![root, range.1 as i64, level],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO objects (root, level, min_txid, max_txid, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![root, level, range.0 as i64, range.1 as i64, created_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The objects of `root` in the bucket: (level, min, max, created_ms), by level then TXID.
    pub fn objects(&self, root: &str) -> Result<Vec<(u8, u64, u64, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT level, min_txid, max_txid, created_ms FROM objects WHERE root = ?1 ORDER BY level, max_txid",
        )?;
        let rows = stmt
            .query_map([root], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Forgets an object deleted from the bucket.
    pub fn deleted(&self, root: &str, level: u8, range: (u64, u64)) -> Result<()> {
        self.conn().execute(
            "DELETE FROM objects WHERE root = ?1 AND level = ?2 AND min_txid = ?3 AND max_txid = ?4",
            params![root, level, range.0 as i64, range.1 as i64],
        )?;
        Ok(())
    }

    pub fn delete(&self, key: &DbKey) -> Result<()> {
        self.conn().execute("DELETE FROM positions WHERE db = ?1", [key.to_string()])?;
        Ok(())
    }

    /// Records a point-in-time gap: files after `after_txid` of `root` were dropped unsent.
    pub fn record_gap(&self, key: &DbKey, root: &str, after_txid: u64, reason: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO gaps (db, root, after_txid, at, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.to_string(), root, after_txid as i64, crate::now_unix(), reason],
        )?;
        Ok(())
    }

    pub fn gaps(&self) -> Result<u64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM gaps", [], |r| r.get::<_, i64>(0))? as u64)
    }
}
