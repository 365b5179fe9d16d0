//! Reading a live SQLite database the way a replica needs it: the WAL's header and its committed frames (salts
//! and the cumulative checksum checked, pages promoted only at a commit frame), and pages of the main file.
//!
//! The backup owns checkpoints, so between two of its syncs the WAL only grows (or restarts from its start after
//! a checkpoint the backup ran); frames are never rewritten under a reader that checks their salts and checksums:
//! a frame being written fails its checksum and ends the read at the last whole transaction.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const WAL_HEADER_SIZE: u64 = 32;
const FRAME_HEADER_SIZE: u64 = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
/// Bytes of WAL read at a time.
const READ_CHUNK: u64 = 1 << 20;

/// The WAL header fields a reader follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub page_size: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// The checksum of the header: the seed of the first frame's cumulative checksum.
    pub checksum: (u32, u32),
    big_endian: bool,
}

/// Where a read of the WAL stopped: the byte offset after the last committed frame read and the cumulative
/// checksum there (the next frame's seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub offset: u64,
    pub checksum: (u32, u32),
}

/// The committed frames found from a cursor on.
#[derive(Debug, Default)]
pub struct Frames {
    /// The newest committed copy of each page: page number → byte offset of the frame's page data.
    pub pages: BTreeMap<u32, u64>,
    /// The database size in pages after the last commit read (`None`: no commit frame).
    pub commit: Option<u32>,
    /// Frames read (committed ones only).
    pub count: u64,
}

pub fn wal_path(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db.display()))
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{}: {what}", path.display()))
}

/// The WAL's header, or `None` when there is no WAL or it holds no header yet.
pub fn read_header(wal: &Path) -> Result<Option<WalHeader>> {
    let mut file = match File::open(wal) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(corrupt(wal, e)),
    };
    let mut head = [0u8; WAL_HEADER_SIZE as usize];
    match file.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(corrupt(wal, e)),
    }
    let word = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let big_endian = match word(0) {
        MAGIC_LE => false,
        MAGIC_BE => true,
        // A header not written yet (zeros) reads as no WAL.
        0 => return Ok(None),
        other => return Err(corrupt(wal, format!("not a WAL header (magic {other:#x})"))),
    };
    let computed = checksum(big_endian, (0, 0), &head[..24]);
    if computed != (word(24), word(28)) {
        // A header torn mid-write: no frame can be trusted yet.
        return Ok(None);
    }
    let page_size = match word(8) {
        1 => 65_536,
        size => size,
    };
    Ok(Some(WalHeader { page_size, salt1: word(16), salt2: word(20), checksum: computed, big_endian }))
}

/// SQLite's WAL checksum: pairs of 32-bit words in the byte order the magic names, folded into `seed`.
fn checksum(big_endian: bool, seed: (u32, u32), data: &[u8]) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    for pair in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([pair[0], pair[1], pair[2], pair[3]]),
                u32::from_be_bytes([pair[4], pair[5], pair[6], pair[7]]),
            )
        } else {
            (
                u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
                u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// Reads the committed frames of `wal` from `from` on (a frame whose salts differ from the header's, whose
/// checksum does not follow, or that is cut short ends the read; frames after the last commit frame are left for
/// the next read). Returns them with the cursor after the last commit frame.
pub fn read_frames(wal: &Path, header: &WalHeader, from: Cursor) -> Result<(Frames, Cursor)> {
    let file = File::open(wal).map_err(|e| corrupt(wal, e))?;
    let len = file.metadata().map_err(|e| corrupt(wal, e))?.len();
    let mut frames = Frames::default();
    let mut cursor = from;
    let frame_size = FRAME_HEADER_SIZE + u64::from(header.page_size);
    // Read in chunks of whole frames into one buffer: a WAL that grew by many megabytes between two syncs is
    // never held in memory at once.
    let per_chunk = (READ_CHUNK / frame_size).max(1);
    let mut buf = vec![0u8; (per_chunk * frame_size) as usize];
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut running = from.checksum;
    let mut read = 0u64;
    let mut at = from.offset;
    'chunks: while at + frame_size <= len {
        let n = ((len - at) / frame_size).min(per_chunk);
        let chunk = &mut buf[..(n * frame_size) as usize];
        match file.read_exact_at(chunk, at) {
            Ok(()) => {}
            // Cut short under us (a restart truncated it): what was read so far stands.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(corrupt(wal, e)),
        }
        for frame in chunk.chunks_exact(frame_size as usize) {
            let word = |at: usize| u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
            if (word(8), word(12)) != (header.salt1, header.salt2) {
                break 'chunks;
            }
            let sum = checksum(header.big_endian, running, &frame[..8]);
            let sum = checksum(header.big_endian, sum, &frame[FRAME_HEADER_SIZE as usize..]);
            if sum != (word(16), word(20)) {
                break 'chunks;
            }
            running = sum;
            pending.push((word(0), at + FRAME_HEADER_SIZE));
            read += 1;
            at += frame_size;
            let commit = word(4);
            if commit != 0 {
                for (pgno, data_at) in pending.drain(..) {
                    frames.pages.insert(pgno, data_at);
                }
                // Pages past the end of a database that shrank are dropped (rare: a check, not a walk, per commit).
                if frames.pages.last_key_value().is_some_and(|(pgno, _)| *pgno > commit) {
                    frames.pages.split_off(&(commit + 1));
                }
                frames.commit = Some(commit);
                frames.count += read;
                read = 0;
                cursor = Cursor { offset: at, checksum: running };
            }
        }
    }
    Ok((frames, cursor))
}

/// The cumulative checksum stored in the frame that ends at `end` (`None`: no such frame).
pub fn frame_checksum_before(wal: &Path, end: u64, page_size: u32) -> Option<(u32, u32)> {
    let frame = FRAME_HEADER_SIZE + u64::from(page_size);
    let start = end.checked_sub(frame).filter(|s| *s >= WAL_HEADER_SIZE)?;
    let file = File::open(wal).ok()?;
    let mut head = [0u8; FRAME_HEADER_SIZE as usize];
    file.read_exact_at(&mut head, start).ok()?;
    let word = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    Some((word(16), word(20)))
}

/// Reads one page's bytes at `offset` of `file` into `page`.
pub fn read_at(file: &File, offset: u64, page: &mut [u8]) -> std::io::Result<()> {
    file.read_exact_at(page, offset)
}

/// The main file's page size and its size in pages (from the header when it is valid, else the file length).
pub fn db_shape(db: &File) -> Result<Option<(u32, u32)>> {
    let len = db.metadata().map_err(Error::internal)?.len();
    if len < 100 {
        return Ok(None);
    }
    let mut head = [0u8; 100];
    db.read_exact_at(&mut head, 0).map_err(Error::internal)?;
    if &head[..16] != b"SQLite format 3\0" {
        return Err(Error::Internal("not an SQLite database".into()));
    }
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536,
        size => u32::from(size),
    };
    let word = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    // The in-header size is valid when the version-valid-for number matches the change counter.
    let pages = if word(28) != 0 && word(92) == word(24) { word(28) } else { (len / u64::from(page_size)) as u32 };
    Ok(Some((page_size, pages)))
}

/// A page of the main file into `page` (its length is the page size), or zeros past its end (a page the
/// database grew into that no frame wrote).
pub fn db_page(db: &File, pgno: u32, page: &mut [u8]) -> Result<()> {
    let offset = u64::from(pgno - 1) * page.len() as u64;
    match read_at(db, offset, page) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            page.fill(0);
            Ok(())
        }
        Err(e) => Err(Error::internal(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_up_to_the_last_commit_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x TEXT);").unwrap();
        for i in 0..50 {
            conn.execute("INSERT INTO t VALUES (?1)", [format!("row {i} {}", "x".repeat(200))]).unwrap();
        }
        let wal = wal_path(&path);
        let header = read_header(&wal).unwrap().unwrap();
        assert_eq!(header.page_size, 4096);
        let start = Cursor { offset: WAL_HEADER_SIZE, checksum: header.checksum };
        let (frames, end) = read_frames(&wal, &header, start).unwrap();
        assert!(frames.count >= 51, "at least a frame per commit: {}", frames.count);
        assert_eq!(end.offset, std::fs::metadata(&wal).unwrap().len());
        assert!(frames.commit.unwrap() >= 3);
        assert_eq!(
            frame_checksum_before(&wal, end.offset, 4096),
            Some(end.checksum),
            "the last frame holds the cursor"
        );
        // Nothing new after the end; a cursor with a wrong seed reads nothing.
        assert_eq!(read_frames(&wal, &header, end).unwrap().0.count, 0);
        let wrong = Cursor { offset: WAL_HEADER_SIZE, checksum: (1, 2) };
        assert_eq!(read_frames(&wal, &header, wrong).unwrap().0.count, 0);
        // More writes continue the chain from the cursor.
        conn.execute("INSERT INTO t VALUES ('more')", []).unwrap();
        let (more, _) = read_frames(&wal, &header, end).unwrap();
        assert_eq!(more.count, 1);
        let db = File::open(&path).unwrap();
        let (page_size, _) = db_shape(&db).unwrap().unwrap();
        assert_eq!(page_size, 4096);
    }
}
