//! `gradtail sweep`: the command-line script over `gradtail::sweep`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use gradtail::analyze::{self, Center, Options};
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::{Backend, BackendChoice};
use gradtail::report::Staging;
use gradtail::sweep::{self, SweepReport};

use super::{make_backend, parse_bytes, parse_center, EngineArgs};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Inputs, each BATCH:PATH (e.g. 32:grads_b32.npz): PATH is one input as `analyze` takes
    /// it (an .npy, an .npz, a stacked .safetensors file, or a folder or glob of per-step
    /// files) holding minibatch gradients of batch size BATCH, all taken at the same weights.
    #[arg(required = true, value_name = "BATCH:PATH")]
    inputs: Vec<String>,
    /// Examples N in the dataset the minibatches were drawn from (without replacement).
    #[arg(long, value_name = "N")]
    dataset_size: u64,
    /// Output folder for sweep.json and sweep.html.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// Centre for the α estimates, as for `analyze` (the trace, ranges and kurtosis do not
    /// depend on it).
    #[arg(long, default_value = "mean")]
    center: String,
    /// Block-sum length K1 (default: largest divisor of each input's K not above √K).
    #[arg(long)]
    block: Option<usize>,
    /// Sweep only tensors whose name matches one of these globs.
    #[arg(long)]
    include: Vec<String>,
    /// Leave out tensors whose name matches one of these globs.
    #[arg(long)]
    exclude: Vec<String>,
    /// Memory to plan for per input, as for `analyze`.
    #[arg(long, value_parser = parse_bytes)]
    mem_budget: Option<u64>,
}

pub fn run(s: SweepArgs, progress: bool) -> Result<()> {
    let start = Instant::now();
    let labelled = s
        .inputs
        .iter()
        .map(|a| sweep::parse_label(a))
        .collect::<gradtail::Result<Vec<_>>>()?;
    sweep::check_batches(&labelled, s.dataset_size)?;
    let center = parse_center(&s.center);
    if let Center::File(p) = &center {
        if p.extension().and_then(|e| e.to_str()) != Some("npy") {
            bail!(
                "--center {}: expected `mean`, `median`, `none` or an .npy file",
                p.display()
            );
        }
    }
    let select = gradtail::input::Select::new(&s.include, &s.exclude)?;
    let inputs = sweep::open(&labelled, &select, false)?;
    for i in &inputs {
        for t in &i.inputs.skipped {
            eprintln!(
                "gradtail: {}:{}: skipped tensor {}: {}",
                i.batch,
                i.path.display(),
                t.name,
                t.reason
            );
        }
    }
    let opts = Options {
        center: center.clone(),
        block: s.block,
        progress,
        mem_budget: s.mem_budget.unwrap_or_else(analyze::default_mem_budget),
        threads: s.engine.threads,
        // The sweep's page and summary use none of the per-batch spectra or power-law fits;
        // leaving them out keeps each analysis at its cost without them.
        structure: analyze::structure::StructureOptions {
            spectrum: false,
            powerlaw: false,
            ..Default::default()
        },
        ..Options::default()
    };
    let staging = Staging::new(&s.out)?;
    let mut backend = make_backend(&s.engine)?;
    let threads = s.engine.threads;
    let cpu =
        move || -> gradtail::Result<Box<dyn Backend>> { Ok(Box::new(CpuEngine::new(threads)?)) };
    let fallback = (s.engine.backend == BackendChoice::Auto).then_some(&cpu as &dyn Fn() -> _);
    let mut measured = Vec::with_capacity(inputs.len());
    for input in &inputs {
        if progress {
            eprintln!("batch size {}: {}", input.batch, input.path.display());
        }
        measured.push(analyze::with_fallback(&mut backend, fallback, |b| {
            sweep::measure(input, &opts, b)
        })?);
    }
    let tensors = sweep::finish(&inputs, &measured, s.dataset_size);
    let info = backend.info();
    let report = SweepReport {
        inputs: &inputs,
        measured: &measured,
        dataset_size: s.dataset_size,
        center: &center,
        block: s.block,
        engine: &info,
        elapsed_s: start.elapsed().as_secs_f64(),
        tensors: &tensors,
    };
    report.write(staging.path())?;
    staging
        .publish()
        .with_context(|| format!("writing outputs to {}", s.out.display()))?;
    let fmt = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.3}"));
    let width = tensors
        .iter()
        .map(|t| t.name.chars().count())
        .fold(6, usize::max);
    let mut w = std::io::stdout().lock();
    writeln!(
        w,
        "{:width$}  trace_slope  alpha_eff  kurtosis_slope",
        "tensor"
    )?;
    for t in &tensors {
        writeln!(
            w,
            "{:width$}  {:>11}  {:>9}  {:>14}",
            t.name,
            fmt(t.trace_slope),
            fmt(t.alpha_eff),
            fmt(t.kurtosis_slope)
        )?;
    }
    writeln!(w, "trace_slope 1 and kurtosis_slope −1: finite-variance scaling; alpha_eff 2: Gaussian scaling of the interquartile range.")?;
    writeln!(
        w,
        "wrote {}/{{sweep.json, sweep.html}} in {:.2} s",
        s.out.display(),
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}
