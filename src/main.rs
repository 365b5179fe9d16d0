//! The `gatehouse` binary: parses the command line and calls the library.
//!
//! The binary allocates with mimalloc: a server answering small requests spends a measurable share of its time in
//! the allocator, and mimalloc's thread-local free lists cost less than glibc's arenas there (scripts/bench-oidc's
//! JWKS figure) while returning memory to the system as well.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
