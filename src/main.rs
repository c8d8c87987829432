//! The `sendauth-siem` binary: the command line lives in the library (`sendauth_siem::cli`).

fn main() -> std::process::ExitCode {
    sendauth_siem::cli::main()
}
