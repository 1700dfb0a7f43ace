//! The `gradtail` command line. `main` only maps errors to an exit code; `cli` does the work
//! (`serve`, the HTTP job service, is its own module: the only part with an async runtime).

mod cli;
mod mem;
mod serve;

#[global_allocator]
static ALLOC: mem::HugePages = mem::HugePages;

fn main() -> std::process::ExitCode {
    // A write past the file-size limit (`ulimit -f`) then fails with an error we report and
    // clean up after, instead of the signal killing the process with outputs half-written.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradtail: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
