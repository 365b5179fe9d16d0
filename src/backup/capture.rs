//! Capturing one database into the spool, and checkpointing it afterwards.
//!
//! A capture reads the WAL frames committed since the position's cursor and writes them as the next TXID: an
//! L0 incremental (changed pages, plus every page the database grew into), or, when the cursor no longer
//! matches the WAL or a full image is due, an L9 snapshot `1-{TXID}` of the whole database (the main file
//! overlaid with the WAL's committed pages). Either file lands in the spool (`data/backup/spool/{root}/{level}/`)
//! fsynced before the position moves, so a crash never loses a captured frame: the position is the truth and a
//! spool file beyond it is discarded and written again.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::backup::ltx::{self, Encoder, Header};
use crate::backup::position::Position;
use crate::backup::wal::{self, Cursor, WAL_HEADER_SIZE};
use crate::error::{Error, Result};

/// WAL frames after which a capture is followed by a checkpoint (Litestream's default too).
pub const CHECKPOINT_FRAMES: u64 = 1_000;
/// The level snapshots are stored at.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// A file in the spool, waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub root: String,
    pub level: u8,
    pub min_txid: u64,
    pub max_txid: u64,
    pub bytes: u64,
}

impl Spooled {
    /// The object key under the backup prefix, and the spool path under the spool dir.
    pub fn key(&self) -> String {
        format!("{}/{:04x}/{}", self.root, self.level, ltx::file_name(self.min_txid, self.max_txid))
    }
}

/// The local spool of captured files not yet uploaded: `data/backup/spool/{object key}`.
pub struct Spool {
    pub dir: PathBuf,
}

fn io(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("backup spool {}: {e}", what.display()))
}

impl Spool {
    pub fn path(&self, file: &Spooled) -> PathBuf {
        self.dir.join(file.key())
    }

    /// Writes `bytes` durably (temp file, fsync, rename).
    pub fn write(&self, root: &str, level: u8, header: &Header, bytes: &[u8]) -> Result<Spooled> {
        let file = Spooled {
            root: root.to_owned(),
            level,
            min_txid: header.min_txid,
            max_txid: header.max_txid,
            bytes: bytes.len() as u64,
        };
        let path = self.path(&file);
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let temp = path.with_extension("tmp");
        let mut out = File::create(&temp).map_err(|e| io(&temp, e))?;
        out.write_all(bytes).and_then(|()| out.sync_all()).map_err(|e| io(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| io(&path, e))?;
        // The rename is durable only once the directory is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
        Ok(file)
    }

    pub fn remove(&self, file: &Spooled) -> Result<()> {
        let path = self.path(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Every spooled file (start-up), in no particular order; temp files left by a crash are removed.
    pub fn scan(&self) -> Result<Vec<Spooled>> {
        let mut found = Vec::new();
        if self.dir.exists() {
            self.walk(&self.dir.clone(), &mut found)?;
        }
        Ok(found)
    }

    fn walk(&self, dir: &Path, found: &mut Vec<Spooled>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            if path.is_dir() {
                self.walk(&path, found)?;
                continue;
            }
            if path.extension().is_some_and(|ext| ext == "tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(file) = self.parse(&path) {
                found.push(file);
            }
        }
        Ok(())
    }

    fn parse(&self, path: &Path) -> Option<Spooled> {
        let rel = path.strip_prefix(&self.dir).ok()?.to_str()?;
        let (rest, name) = rel.rsplit_once('/')?;
        let (root, level) = rest.rsplit_once('/')?;
        let (min, max) = name.strip_suffix(".ltx")?.split_once('-')?;
        Some(Spooled {
            root: root.to_owned(),
            level: u8::from_str_radix(level, 16).ok()?,
            min_txid: u64::from_str_radix(min, 16).ok()?,
            max_txid: u64::from_str_radix(max, 16).ok()?,
            bytes: std::fs::metadata(path).ok()?.len(),
        })
    }
}

/// Where the WAL read of a capture starts, or why it cannot continue from the cursor.
enum Start {
    From(Cursor),
    Image,
    NoWal,
}

fn start(pos: &Position, header: Option<&wal::WalHeader>, db_stat: (u64, i64), wal_path: &Path) -> Start {
    if pos.need_image || pos.txid == 0 {
        return Start::Image;
    }
    // The main file changes only by our checkpoints, which record it: any other change (another program
    // checkpointed it, it was replaced) may hold commits no WAL frame shows us any more.
    if pos.db_size != 0 && db_stat != (pos.db_size, pos.db_mtime_ns) {
        return Start::Image;
    }
    let Some(h) = header else {
        // No WAL: nothing new, unless frames were captured from a WAL that someone else then removed.
        return if pos.wal_offset > WAL_HEADER_SIZE && !pos.may_restart { Start::Image } else { Start::NoWal };
    };
    if h.page_size != pos.page_size {
        return Start::Image;
    }
    let same = (h.salt1, h.salt2) == pos.salts;
    if pos.wal_offset >= WAL_HEADER_SIZE && same {
        // The last frame captured must still be there, unchanged (a WAL that lost frames in a power cut and was
        // written again under the same salts would otherwise stop every read at the cursor, silently).
        let intact = pos.wal_offset == WAL_HEADER_SIZE
            || wal::frame_checksum_before(wal_path, pos.wal_offset, pos.page_size) == Some(pos.checksum);
        return if intact {
            Start::From(Cursor { offset: pos.wal_offset, checksum: pos.checksum })
        } else {
            Start::Image
        };
    }
    // Our checkpoint let the WAL restart once (salt1 is one higher), or no WAL existed when the cursor was taken.
    let restarted = pos.may_restart && (h.salt1 == pos.salts.0.wrapping_add(1) || pos.wal_offset == 0);
    if restarted { Start::From(Cursor { offset: WAL_HEADER_SIZE, checksum: h.checksum }) } else { Start::Image }
}

/// Captures the commits of `db_path` since `pos` into the spool and moves `pos` on (in memory; the caller
/// persists it). `image` asks for a full image even when the WAL continues (a periodic snapshot). `None` when
/// there was nothing new.
pub fn capture(db_path: &Path, pos: &mut Position, image: bool, spool: &Spool, now_ms: i64) -> Result<Option<Spooled>> {
    let db = match File::open(db_path) {
        Ok(db) => db,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(db_path, e)),
    };
    let wal_path = wal::wal_path(db_path);
    let header = wal::read_header(&wal_path)?;
    let cursor = match start(pos, header.as_ref(), stat(db_path), &wal_path) {
        Start::Image => None,
        Start::NoWal if !image => return Ok(None),
        Start::NoWal => None,
        Start::From(cursor) => Some(cursor),
    };
    let incremental = match (cursor, &header) {
        (Some(cursor), Some(h)) => {
            let (frames, end) = wal::read_frames(&wal_path, h, cursor)?;
            if frames.count == 0 && !image {
                return Ok(None);
            }
            if image { None } else { Some((frames, end)) }
        }
        _ => None,
    };
    let txid = pos.txid + 1;
    let written = match (incremental, header) {
        (Some((frames, end)), Some(h)) => {
            let commit = frames.commit.unwrap_or(pos.commit);
            let ltx_header =
                Header { page_size: h.page_size, commit, min_txid: txid, max_txid: txid, timestamp_ms: now_ms };
            let wal_file = File::open(&wal_path).map_err(|e| io(&wal_path, e))?;
            let mut encoder = Encoder::new(ltx_header)?;
            let lock = ltx::lock_pgno(h.page_size);
            // Changed pages, and every page the database grew into (from the file when no frame wrote it).
            let mut pages: Vec<u32> = frames.pages.keys().copied().collect();
            pages.extend((pos.commit + 1..=commit).filter(|p| !frames.pages.contains_key(p)));
            pages.sort_unstable();
            let mut data = vec![0u8; h.page_size as usize];
            for pgno in pages.into_iter().filter(|p| *p != lock && *p <= commit) {
                match frames.pages.get(&pgno) {
                    Some(at) => wal::read_at(&wal_file, *at, &mut data).map_err(|e| io(&wal_path, e))?,
                    None => wal::db_page(&db, pgno, &mut data)?,
                }
                encoder.page(pgno, &data)?;
            }
            let file = spool.write(&pos.root, 0, &ltx_header, &encoder.finish()?)?;
            pos.commit = commit;
            pos.wal_offset = end.offset;
            pos.checksum = end.checksum;
            pos.salts = (h.salt1, h.salt2);
            pos.may_restart = false;
            file
        }
        (_, header) => {
            let Some(file) = write_image(&db, db_path, header.as_ref(), pos, txid, spool, now_ms)? else {
                return Ok(None);
            };
            file
        }
    };
    pos.txid = txid;
    Ok(Some(written))
}

/// Writes the whole database as snapshot `1-{txid}`: the main file overlaid with every committed WAL page.
fn write_image(
    db: &File,
    db_path: &Path,
    header: Option<&wal::WalHeader>,
    pos: &mut Position,
    txid: u64,
    spool: &Spool,
    now_ms: i64,
) -> Result<Option<Spooled>> {
    let wal_path = wal::wal_path(db_path);
    let db_stat = stat(db_path);
    let shape = wal::db_shape(db)?;
    let (frames, end) = match header {
        Some(h) => {
            let (frames, end) =
                wal::read_frames(&wal_path, h, Cursor { offset: WAL_HEADER_SIZE, checksum: h.checksum })?;
            (frames, Some(end))
        }
        None => (wal::Frames::default(), None),
    };
    let page_size = match (header, shape) {
        (Some(h), _) => h.page_size,
        (None, Some((size, _))) => size,
        (None, None) => return Ok(None),
    };
    let Some(commit) = frames.commit.or(shape.map(|(_, pages)| pages)).filter(|c| *c > 0) else {
        return Ok(None);
    };
    let ltx_header = Header { page_size, commit, min_txid: 1, max_txid: txid, timestamp_ms: now_ms };
    let wal_file = match header {
        Some(_) => Some(File::open(&wal_path).map_err(|e| io(&wal_path, e))?),
        None => None,
    };
    let mut encoder = Encoder::new(ltx_header)?;
    let lock = ltx::lock_pgno(page_size);
    let mut data = vec![0u8; page_size as usize];
    for pgno in (1..=commit).filter(|p| *p != lock) {
        match (frames.pages.get(&pgno), &wal_file) {
            (Some(at), Some(wal_file)) => wal::read_at(wal_file, *at, &mut data).map_err(|e| io(&wal_path, e))?,
            _ => wal::db_page(db, pgno, &mut data)?,
        }
        encoder.page(pgno, &data)?;
    }
    let file = spool.write(&pos.root, SNAPSHOT_LEVEL, &ltx_header, &encoder.finish()?)?;
    pos.page_size = page_size;
    pos.commit = commit;
    match (header, end) {
        (Some(h), Some(end)) => {
            pos.wal_offset = end.offset;
            pos.checksum = end.checksum;
            pos.salts = (h.salt1, h.salt2);
            pos.may_restart = false;
        }
        _ => {
            // No WAL yet: the first header SQLite writes starts the cursor.
            pos.wal_offset = 0;
            pos.checksum = (0, 0);
            pos.salts = (0, 0);
            pos.may_restart = true;
        }
    }
    pos.need_image = false;
    pos.snapshot_at = now_ms / 1000;
    (pos.db_size, pos.db_mtime_ns) = db_stat;
    Ok(Some(file))
}

/// WAL frames captured so far in the current WAL.
pub fn captured_frames(pos: &Position) -> u64 {
    if pos.wal_offset <= WAL_HEADER_SIZE || pos.page_size == 0 {
        return 0;
    }
    (pos.wal_offset - WAL_HEADER_SIZE) / (24 + u64::from(pos.page_size))
}

/// Checkpoints a database whose frames are all captured (`RESTART` without waiting for readers), so the
/// WAL starts over at the next write. SQLite answers how many frames the WAL held: any other number than were
/// captured means a writer slipped in between capture and checkpoint (those frames are now only in the main
/// file) or frames were lost, so the next capture writes a full image. Records the main file's size and time.
pub fn checkpoint(db_path: &Path, pos: &mut Position) -> Result<()> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match rusqlite::Connection::open_with_flags(db_path, flags) {
        Ok(conn) => conn,
        Err(_) if !db_path.exists() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // No waiting at all: with readers or a writer about, RESTART does what PASSIVE would and answers busy, and
    // the WAL restarts at a later write (this runs under the writer turn, which writers wait on).
    conn.busy_timeout(std::time::Duration::ZERO)?;
    // Not TRUNCATE: it answers 0 frames whatever it copied, and this count is how a writer that slipped in is seen.
    let (_busy, log, _done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    drop(conn);
    // The WAL held other frames than were captured: more (a writer slipped in; those are now only in the main
    // file) or fewer (frames lost under the cursor). Either way the next capture is a full image.
    if log >= 0 && log as u64 != captured_frames(pos) {
        pos.need_image = true;
    }
    pos.may_restart = true;
    (pos.db_size, pos.db_mtime_ns) = stat(db_path);
    Ok(())
}

/// Milliseconds since the Unix epoch (LTX timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The main file's size and modification time (zeros when it is gone).
pub fn stat(db_path: &Path) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(db_path) {
        Ok(m) => (m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec()),
        Err(_) => (0, 0),
    }
}
