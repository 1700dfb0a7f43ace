//! The `gradtail` command line. `main` only maps errors to an exit code; `cli` does the work.

mod cli;

fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradtail: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
