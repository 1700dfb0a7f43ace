//! `gradtail serve`: analyses submitted over HTTP, run as jobs one at a time per engine, kept
//! under `--state` so that none is lost to a crash or restart.
//!
//! `request` checks what a client asks for (inputs under the data root, whitelisted options),
//! `jobs` stores job records, `runner` queues and runs them as `gradtail analyze` processes,
//! and `api` is the HTTP face. The async runtime lives here only; the rest of the program is
//! synchronous.

mod api;
mod jobs;
mod request;
mod runner;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use request::Lane;
use runner::Shared;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Folder holding the data jobs may analyse; job inputs are paths relative to it.
    #[arg(long)]
    data_root: PathBuf,
    /// Folder for job records and outputs (created if needed); jobs left unfinished there run
    /// again when the server starts.
    #[arg(long)]
    state: PathBuf,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// File holding a bearer token that clients must send (`Authorization: Bearer TOKEN`);
    /// required unless the address is loopback.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Jobs held at once, waiting or running; more are refused with 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Largest request body in bytes; larger ones are refused with 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
}

/// Shortest token accepted: 16 characters, 64 bits or more when drawn at random.
const MIN_TOKEN: usize = 16;

pub fn run(args: ServeArgs) -> Result<()> {
    let token = match &args.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    if token.is_none() && !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: other machines can reach this address, so pass --token-file FILE (clients then send `Authorization: Bearer TOKEN`), or listen on 127.0.0.1",
            args.listen
        );
    }
    let root = args
        .data_root
        .canonicalize()
        .with_context(|| format!("--data-root {}", args.data_root.display()))?;
    if !root.is_dir() {
        bail!("--data-root {}: not a folder", args.data_root.display());
    }
    let store = jobs::Store::open(&args.state)
        .with_context(|| format!("--state {}", args.state.display()))?;
    let exe = std::env::current_exe().context("finding this program to run analyses")?;
    let (shared, requeued) = Shared::new(
        root,
        store,
        exe,
        auto_lane(),
        (args.max_queue, args.max_body),
    )
    .with_context(|| format!("loading the jobs in {}", args.state.display()))?;
    let shared = Arc::new(shared);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        let addr = listener.local_addr()?;
        // Written, not printed: a closed stdout must not stop the server.
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "gradtail serve: listening on http://{addr}");
        if requeued > 0 {
            let _ = writeln!(
                stdout,
                "gradtail serve: {requeued} interrupted jobs queued again"
            );
        }
        for lane in [Lane::Cpu, Lane::Gpu] {
            tokio::spawn(runner::lane(shared.clone(), lane));
        }
        axum::serve(listener, api::router(shared, token))
            .await
            .context("serving HTTP")
    })
}

fn read_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "--token-file {}: the token must be one line of at least {MIN_TOKEN} characters without spaces, e.g. from `openssl rand -hex 32`",
            path.display()
        );
    }
    Ok(token.to_owned())
}

/// Where `--backend auto` jobs queue: behind GPU jobs when analyze would pick a real GPU,
/// behind CPU jobs otherwise.
fn auto_lane() -> Lane {
    use gradtail::engine::gpu::{GpuEngine, GpuOptions};
    match GpuEngine::new_real_gpu(GpuOptions::default()) {
        Ok(Some(_)) => Lane::Gpu,
        _ => Lane::Cpu,
    }
}
