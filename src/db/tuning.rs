//! What holding and opening a SQLite database costs, and the figures that show it: the process-wide settings
//! that keep an open connection small, the per-connection setting that keeps a database's side files, and what
//! `/metrics` and `scripts/bench-tenants` report (the heap SQLite holds, one connection's parts, resident memory).
//!
//! A tenant pool costs what its open connections cost, and with thousands of tenants that is most of the
//! server's memory. `configure_process` (the binary calls it before its first connection):
//! - SQLite allocates through mimalloc, like the rest of the process, instead of the C library's malloc (one
//!   allocator holds the memory; schema and pages of evicted pools went to glibc's per-thread arenas);
//! - no lookaside slots (SQLite's default gives every connection 120 KiB of them): mimalloc's thread-local free
//!   lists already serve small allocations fast;
//! - no memory statistics in SQLite (`SQLITE_CONFIG_MEMSTATUS`): they sit behind one process-wide mutex that every
//!   allocation and free takes, and opening a tenant (parsing its schema) while another pool closes (freeing
//!   one) made threads queue there. Cold opens under 16 clients went from about 1,100 to 2,200 a second. The
//!   allocator methods count SQLite's heap with relaxed atomics instead (`heap`).
//!
//! (The bundled SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, so page caches start empty and pages come
//! as they are read; there is no bulk page allocation to turn off.)
//!
//! `persist_wal` keeps a database's `-wal` (emptied) and `-shm` files when its last connection closes: without it
//! every eviction and reopen of a tenant pool deletes and creates both (inode allocation and directory locks were
//! about a tenth of a profile of cold opens).
//!
//! The rest of the process's idle memory is settled here too, since the binary sets it at the same moment:
//! - mimalloc commits arena memory on demand and gives a freed page back to the system after 10 ms
//!   (`arena_eager_commit=0`, `purge_delay=10`; `MIMALLOC_*` variables in the environment still win). With its
//!   defaults (eager commit, 1 s) memory freed after start-up stayed resident: mimalloc purges when a later
//!   allocation finds the delay over, which an idle server may not make for a long time (anonymous memory at
//!   idle 27 MiB with the defaults, 12 MiB with these).
//! - `release_startup_code`, called 5 s after the server starts serving, unmaps the binary's code pages (the kernel maps
//!   64 KiB around each page that runs, so start-up's config checks, migrations, route table and OpenAPI document
//!   left about 20 MiB of code mapped). They stay in the page cache (still charged to a container's memory
//!   cgroup, but no longer held as mapped code when the kernel reclaims); code that runs again maps its page back
//!   with a minor fault. Pages a debugger or a uprobe wrote are left alone.
//!
//! SQLite and mimalloc have no safe Rust wrapper for these calls; the unsafe blocks are here and nowhere else in
//! `db`.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

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
            // No memory statistics: SQLite keeps them under one process-wide mutex that every allocation and free
            // takes. The methods below count the heap instead (`heap`).
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
        ]
    };
    COUNTED.store(true, Ordering::Relaxed);
    RELEASE_CODE.store(true, Ordering::Relaxed);
    codes.iter().all(|c| *c == ffi::SQLITE_OK)
}

/// Set once SQLite allocates through the methods below, which count what it holds in `HEAP` (now, peak).
static COUNTED: AtomicBool = AtomicBool::new(false);
static HEAP: [AtomicI64; 2] = [AtomicI64::new(0), AtomicI64::new(0)];

/// Counts `delta` bytes into SQLite's heap (relaxed: a gauge, read for /metrics and the bench).
fn count(delta: i64) {
    let now = HEAP[0].fetch_add(delta, Ordering::Relaxed) + delta;
    if delta > 0 {
        HEAP[1].fetch_max(now, Ordering::Relaxed);
    }
}

/// Set by the binary: library users (the tests, many servers in one process) keep their mappings.
static RELEASE_CODE: AtomicBool = AtomicBool::new(false);

// mimalloc v3's option numbers (`mi_option_e` in its mimalloc.h; the sys crate names only the stable ones).
const MI_OPTION_ARENA_EAGER_COMMIT: c_int = 4;
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Milliseconds before mimalloc gives a freed page back to the system.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Commit on demand, purge soon, unless the environment sets the option (`MIMALLOC_ARENA_EAGER_COMMIT`,
/// `MIMALLOC_PURGE_DELAY`). The binary runs this from its `.init_array`, before mimalloc's own constructor
/// reserves its first arena with the commit setting of that moment, and before Rust's runtime starts: so nothing
/// here allocates (the environment is read with `getenv`).
pub fn configure_allocator() {
    // SAFETY: `mi_version` reads a constant.
    #[allow(unsafe_code)]
    let version = unsafe { libmimalloc_sys::mi_version() };
    // The option numbers above are v3's (the version reads major·10000 + minor·100 + patch); another major
    // version numbers them differently.
    if !(30_000..40_000).contains(&version) {
        return;
    }
    for (option, variable, value) in [
        (MI_OPTION_ARENA_EAGER_COMMIT, c"MIMALLOC_ARENA_EAGER_COMMIT", 0),
        // 10 ms (arenas: 100 ms): at 0 every freed page was a system call, 25 % more CPU per write in
        // scripts/bench-backup; 10 ms leaves as little resident at idle.
        (MI_OPTION_PURGE_DELAY, c"MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS),
    ] {
        // SAFETY: `getenv` reads the environment through a NUL-terminated name and allocates nothing; nothing
        // sets variables meanwhile (before `main` nothing else runs; this program never sets any).
        // `mi_option_set` stores a value in mimalloc's option table for an option number of this version, and
        // allocates nothing; mimalloc's start-up keeps an option already set.
        #[allow(unsafe_code)]
        unsafe {
            if libc::getenv(variable.as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(option, value);
            }
        }
    }
}

/// Unmaps the binary's code pages once start-up is over (only in the binary; see the module docs). Answers the
/// bytes unmapped. A page that is no longer the file's own (a debugger's breakpoint or a uprobe wrote a private
/// copy) is kept.
pub fn release_startup_code() -> u64 {
    use std::os::unix::fs::MetadataExt;
    if !RELEASE_CODE.swap(false, Ordering::Relaxed) {
        return 0;
    }
    // The running file (followed even when it was replaced or removed since), and its name in the maps.
    let (Ok(exe), Ok(link), Ok(maps), Ok(pagemap)) = (
        std::fs::metadata("/proc/self/exe"),
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::File::open("/proc/self/pagemap"),
    ) else {
        return 0;
    };
    let name = link.file_name().and_then(|n| n.to_str()).map(|n| n.trim_end_matches(" (deleted)").to_owned());
    // SAFETY: `sysconf` reads a system constant.
    #[allow(unsafe_code)]
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return 0,
    };
    let mut released = 0;
    for line in maps.lines() {
        // "start-end perms offset dev inode path"
        let mut fields = line.splitn(6, char::is_whitespace);
        let (Some(range), Some(perms), Some(inode)) = (fields.next(), fields.next(), fields.nth(2)) else {
            continue;
        };
        let path = fields.next().unwrap_or("").trim();
        let named = name.as_deref().is_some_and(|n| path.trim_end_matches(" (deleted)").ends_with(n));
        if perms != "r-xp" || inode.parse::<u64>().ok() != Some(exe.ino()) || !named {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        for (from, to) in file_page_runs(&pagemap, start, end, page) {
            // SAFETY: the range lies in a mapping of this process's own executable that is read and execute only
            // (code) and private, and holds no page written since it was mapped (those are skipped), so
            // MADV_DONTNEED only drops page table entries: the next access maps the same bytes from the file
            // again. Threads running there meanwhile just fault them back in.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::madvise(from as *mut c_void, to - from, libc::MADV_DONTNEED) };
            if rc == 0 {
                released += (to - from) as u64;
            }
        }
    }
    released
}

/// The runs of pages in `start..end` that are not private copies: `/proc/self/pagemap` has a word per page whose
/// bit 63 says it is present and bit 61 that it is a page of the file (or shared); a present page without bit 61
/// was written in this process.
fn file_page_runs(pagemap: &std::fs::File, start: usize, end: usize, page: usize) -> Vec<(usize, usize)> {
    use std::os::unix::fs::FileExt;
    let pages = (end - start) / page;
    let mut words = vec![0u8; pages * 8];
    if pagemap.read_exact_at(&mut words, (start / page * 8) as u64).is_err() {
        return Vec::new();
    }
    let mut runs = Vec::new();
    let mut from = None;
    for (i, word) in words.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let private_copy = word & (1 << 63) != 0 && word & (1 << 61) == 0;
        let at = start + i * page;
        match (private_copy, from) {
            (false, None) => from = Some(at),
            (true, Some(f)) => {
                runs.push((f, at));
                from = None;
            }
            _ => {}
        }
    }
    runs.extend(from.map(|f| (f, end)));
    runs
}

// SQLite's allocator methods on mimalloc. SQLite never asks for a negative size; one that came would get NULL (an
// out-of-memory error) rather than a wrapped size.
#[allow(unsafe_code)]
unsafe extern "C" fn mi_malloc(size: c_int) -> *mut c_void {
    match usize::try_from(size) {
        Ok(size) => {
            // SAFETY: a plain allocation; mimalloc answers NULL when it has no memory, and `mi_usable_size` takes
            // a block it returned.
            unsafe {
                let block = libmimalloc_sys::mi_malloc(size);
                if !block.is_null() {
                    count(libmimalloc_sys::mi_usable_size(block) as i64);
                }
                block
            }
        }
        Err(_) => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_free(block: *mut c_void) {
    // SAFETY: SQLite frees only blocks `mi_malloc`/`mi_realloc` returned, once each (never NULL).
    unsafe {
        count(-(libmimalloc_sys::mi_usable_size(block) as i64));
        libmimalloc_sys::mi_free(block)
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn mi_realloc(block: *mut c_void, size: c_int) -> *mut c_void {
    match usize::try_from(size) {
        // SAFETY: `block` came from `mi_malloc`/`mi_realloc` (SQLite's contract, never NULL); on failure mimalloc
        // keeps it (and its size counted).
        Ok(size) => unsafe {
            let before = libmimalloc_sys::mi_usable_size(block) as i64;
            let moved = libmimalloc_sys::mi_realloc(block, size);
            if !moved.is_null() {
                count(libmimalloc_sys::mi_usable_size(moved) as i64 - before);
            }
            moved
        },
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

/// The heap SQLite holds in this process now and at its peak, in bytes: counted by the allocator methods once
/// `configure_process` set them, else SQLite's own statistics.
pub fn heap() -> (i64, i64) {
    if COUNTED.load(Ordering::Relaxed) {
        return (HEAP[0].load(Ordering::Relaxed), HEAP[1].load(Ordering::Relaxed));
    }
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

    #[test]
    fn the_allocator_commits_on_demand_and_purges_soon() {
        configure_allocator();
        for (option, name) in [
            (MI_OPTION_ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT"),
            (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
        ] {
            // SAFETY: reads mimalloc's option table.
            #[allow(unsafe_code)]
            let value = unsafe { libmimalloc_sys::mi_option_get(option) };
            match std::env::var(name) {
                Ok(set) => assert_eq!(value.to_string(), set, "{name} set in the environment is kept"),
                Err(_) => {
                    let wanted = if option == MI_OPTION_PURGE_DELAY { PURGE_DELAY_MS } else { 0 };
                    assert_eq!(value, wanted, "{name}");
                }
            }
        }
    }

    #[test]
    fn startup_code_is_unmapped_once_and_runs_again() {
        assert_eq!(release_startup_code(), 0, "a library user keeps its mappings");
        RELEASE_CODE.store(true, Ordering::Relaxed);
        let released = release_startup_code();
        assert!(released > 1 << 20, "the binary's code mappings: {released} bytes");
        assert_eq!(release_startup_code(), 0, "once");
        // Code unmapped a moment ago runs again (mapped back from the page cache).
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::migrate::migrate(&mut conn, crate::db::migrate::TENANT, "t").unwrap();
        assert!(connection(&conn).schema > 0);
    }
}
