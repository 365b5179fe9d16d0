//! The `gatehouse` binary: parses the command line and calls the library.
//!
//! The binary allocates with mimalloc: a server answering small requests spends a measurable share of its time in
//! the allocator, and mimalloc's thread-local free lists cost less than glibc's arenas there (scripts/bench-oidc's
//! JWKS figure) while returning memory to the system as well.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options are set before its first allocation (see `db::tuning::configure_allocator`). mimalloc
/// starts from a constructor of its own, which already reserves its first arena; the linker puts constructors
/// with a priority (`.init_array.NNNNN`, lowest first) before those without (mimalloc's has none under gcc, 101
/// under clang), and the loader runs them all before Rust's `main`.
// SAFETY: the entry is a plain `extern "C" fn()` (the loader passes argc, argv and envp, which the C calling
// convention lets a function without parameters ignore); it runs once, on the main thread, before `main`, and
// neither allocates nor panics (it reads and stores mimalloc options).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array.00100")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

#[cfg(target_os = "linux")]
extern "C" fn configure_allocator() {
    gatehouse::db::tuning::configure_allocator();
}

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
