//! The `gatehouse` binary: parses the command line and calls the library.

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
