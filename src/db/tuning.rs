//! What holding and opening a SQLite database costs, and the figures that show it: the process-wide settings
//! that keep an open connection small, the per-connection setting that keeps a database's side files, and what
//! `/metrics` and `scripts/bench-tenants` report (the heap SQLite holds, one connection's parts, resident memory).
//!
//! A tenant pool costs what its open connections cost, and with thousands of tenants that is most of the
//! server's memory. `configure_process` (the binary calls it before its first connection):
//! - SQLite allocates through mimalloc, like the rest of the process, instead of the C library's malloc (one
//!   allocator holds the memory; schema and pages of evicted pools went to glibc's per-thread arenas);
//! - no lookaside slots (SQLite's default gives every connection 120 KiB of them): mimalloc's thread-local free
//!   lists already serve small allocations fast.
//!
//! (The bundled SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, so page caches start empty and pages come
//! as they are read; there is no bulk page allocation to turn off.)
//!
//! `persist_wal` keeps a database's `-wal` (emptied) and `-shm` files when its last connection closes: without it
//! every eviction and reopen of a tenant pool deletes and creates both (inode allocation and directory locks were
//! about a tenth of a profile of cold opens).
//!
//! SQLite and mimalloc have no safe Rust wrapper for these calls; the unsafe blocks are here and nowhere else in
//! `db`.

use std::ffi::{c_int, c_void};

use rusqlite::{Connection, ffi};

/// Applies the process-wide memory settings. SQLite takes them only before it is initialised (its first
/// connection), so the binary calls this first thing; a library user (the tests) keeps SQLite's defaults, which
/// changes memory only. Answers whether SQLite took them.
///
/// # Safety
///
/// No other thread may use SQLite while this runs: `sqlite3_config` is not thread-safe, and a concurrent
/// initialisation could allocate with one allocator and later free with the other.
#[allow(unsafe_code)]
pub unsafe fn configure_process() -> bool {
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(mi_malloc),
        xFree: Some(mi_free),
        xRealloc: Some(mi_realloc),
        xSize: Some(mi_size),
        xRoundup: Some(mi_roundup),
        xInit: Some(mi_init),
        xShutdown: Some(mi_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: the caller guarantees no other thread uses SQLite meanwhile. `sqlite3_config` is called with the
    // argument types its documentation gives for these options (a pointer to a `sqlite3_mem_methods`, which SQLite
    // copies; `int, int`); once SQLite is initialised it answers SQLITE_MISUSE and changes nothing. The methods
    // below keep SQLite's contract: 8-byte aligned blocks (mimalloc gives 16), `xSize` the usable size of a block
    // `xMalloc` returned, `xRealloc` given only sizes `xRoundup` made (SQLite never passes NULL or 0 to them).
    #[allow(unsafe_code)]
    let codes = unsafe {
        [
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods),
            // No lookaside slots per connection.
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_LOOKASIDE, 0 as c_int, 0 as c_int),
        ]
    };
    codes.iter().all(|c| *c == ffi::SQLITE_OK)
}

// SQLite's allocator methods on mimalloc. SQLite never asks for a negative size; one that came would get NULL (an
// out-of-memory error) rather than a wrapped size.
#[allow(unsafe_code)]
unsafe extern "C" fn mi_malloc(size: c_int) -> *mut c_void {
    match usize::try_from(size) {
        // SAFETY: a plain allocation; mimalloc answers NULL when it has no memory.
        Ok(size) => unsafe { libmimalloc_sys::mi_malloc(size) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_free(block: *mut c_void) {
    // SAFETY: SQLite frees only blocks `mi_malloc`/`mi_realloc` returned, once each.
    unsafe { libmimalloc_sys::mi_free(block) }
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_realloc(block: *mut c_void, size: c_int) -> *mut c_void {
    match usize::try_from(size) {
        // SAFETY: `block` came from `mi_malloc`/`mi_realloc` (SQLite's contract); on failure mimalloc keeps it.
        Ok(size) => unsafe { libmimalloc_sys::mi_realloc(block, size) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_size(block: *mut c_void) -> c_int {
    // SAFETY: SQLite asks only for blocks it holds from `mi_malloc`/`mi_realloc`.
    let size = unsafe { libmimalloc_sys::mi_usable_size(block) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_roundup(size: c_int) -> c_int {
    let Ok(wanted) = usize::try_from(size) else { return size };
    // SAFETY: a pure size computation.
    let good = unsafe { libmimalloc_sys::mi_good_size(wanted) };
    c_int::try_from(good).unwrap_or(size)
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_shutdown(_: *mut c_void) {}

/// Keeps the database's `-wal` and `-shm` files when the last connection closes (the WAL is checkpointed and,
/// with `journal_size_limit=0`, emptied).
pub fn persist_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut on: c_int = 1;
    // SAFETY: the handle belongs to `conn`, alive for the call; `SQLITE_FCNTL_PERSIST_WAL` reads and writes one
    // int through the pointer, which points at a live local; the schema name is a NUL-terminated literal.
    #[allow(unsafe_code)]
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut c_int).cast::<c_void>(),
        )
    };
    match rc {
        // An in-memory database has no files to keep.
        ffi::SQLITE_OK | ffi::SQLITE_NOTFOUND => Ok(()),
        code => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some("persist_wal".into()))),
    }
}

/// The heap SQLite holds in this process now and at its peak, in bytes.
pub fn heap() -> (i64, i64) {
    let (mut now, mut peak) = (0i64, 0i64);
    // SAFETY: `sqlite3_status64` writes two integers through the pointers given, which point at live locals.
    #[allow(unsafe_code)]
    let rc = unsafe { ffi::sqlite3_status64(ffi::SQLITE_STATUS_MEMORY_USED, &mut now, &mut peak, 0) };
    if rc == ffi::SQLITE_OK { (now, peak) } else { (0, 0) }
}

/// What one connection holds, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionMemory {
    /// The parsed schema of the database (every table, index, trigger and virtual table).
    pub schema: i64,
    /// Pages in the connection's page cache.
    pub page_cache: i64,
    /// Prepared statements (rusqlite's statement cache keeps some).
    pub statements: i64,
    /// Lookaside slots in use (a count, not bytes; 0 when lookaside is off).
    pub lookaside_slots: i64,
}

impl ConnectionMemory {
    pub fn total(&self) -> i64 {
        self.schema + self.page_cache + self.statements
    }
}

/// What `conn` holds now.
pub fn connection(conn: &Connection) -> ConnectionMemory {
    let status = |op: c_int| -> i64 {
        let (mut now, mut peak) = (0 as c_int, 0 as c_int);
        // SAFETY: the handle belongs to `conn`, which outlives this call and is not used concurrently (a
        // `Connection` is not `Sync`); `sqlite3_db_status` writes two integers through pointers to live locals.
        #[allow(unsafe_code)]
        let rc = unsafe { ffi::sqlite3_db_status(conn.handle(), op, &mut now, &mut peak, 0) };
        if rc == ffi::SQLITE_OK { i64::from(now) } else { 0 }
    };
    ConnectionMemory {
        schema: status(ffi::SQLITE_DBSTATUS_SCHEMA_USED),
        page_cache: status(ffi::SQLITE_DBSTATUS_CACHE_USED),
        statements: status(ffi::SQLITE_DBSTATUS_STMT_USED),
        lookaside_slots: status(ffi::SQLITE_DBSTATUS_LOOKASIDE_USED),
    }
}

/// The process's resident memory from `/proc/self/status`, in bytes: (total, anonymous, file-backed).
/// Anonymous is the heap and thread stacks; file-backed is the binary's code that ran and SQLite's `-shm` maps
/// (32 KiB per open WAL database). `None` off Linux.
pub fn resident() -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_reports_its_schema_and_pages() {
        let mut conn = Connection::open_in_memory().unwrap();
        let before = connection(&conn);
        crate::db::migrate::migrate(&mut conn, crate::db::migrate::TENANT, "t").unwrap();
        let after = connection(&conn);
        assert!(after.schema > before.schema + 10_000, "{before:?} → {after:?}");
        assert!(after.page_cache > 0, "{after:?}");
        let (now, peak) = heap();
        assert!(now >= after.total() && peak >= now, "{now} {peak} {after:?}");
    }
}
