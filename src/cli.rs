//! Command-line parsing and the commands, each a short script over the library.

mod demo;
mod shard;
mod sweep;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use gradtail::analyze::{self, Center, Options};
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::gpu::{GpuEngine, GpuOptions};
use gradtail::engine::{Backend, BackendChoice};
use gradtail::input::Dtype;
use gradtail::report::{print_table, CoordsWriter, RunReport, Staging};
use gradtail::stats::Stat;
use gradtail::synth::{self, SynthSpec, Traps};

use demo::{demo_cmd, DemoArgs};

#[derive(Parser, Debug)]
#[command(
    name = "gradtail",
    version,
    about = "Tail indices and Gaussianity of stochastic gradient noise, per coordinate and per tensor"
)]
struct Cli {
    /// Hide the progress bar.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Analyse gradient snapshots: per-coordinate and per-tensor statistics.
    Analyze(AnalyzeArgs),
    /// Analyse one shard of the input (for job arrays) and write its mergeable state.
    Shard(shard::ShardArgs),
    /// Combine the states of every shard into what `analyze` writes.
    Merge(shard::MergeArgs),
    /// Write symmetric α-stable samples (Chambers–Mallows–Stuck) to an .npy file.
    Synth(SynthArgs),
    /// Run the whole analysis on built-in synthetic data and explain the result.
    Demo(DemoArgs),
    /// Time the engines side by side on seeded in-memory data, with ceilings and agreement.
    Bench(BenchArgs),
    /// List GPU adapters, their limits and features, and what `--backend auto` would pick.
    Info,
    /// Compare snapshots taken at several batch sizes: how the noise's trace, robust scale,
    /// kurtosis and α change with B.
    Sweep(sweep::SweepArgs),
    /// Run analyses submitted over HTTP as jobs, one at a time per engine.
    Serve(crate::serve::ServeArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Samples K.
    #[arg(long, default_value_t = 256)]
    samples: usize,
    /// Coordinates P.
    #[arg(long, default_value_t = 1_000_000)]
    params: usize,
    #[arg(long, default_value = "f32", value_parser = dtype_of(&["f32", "f16", "bf16"]))]
    dtype: Dtype,
    /// Engines to run, comma-separated; the first is the reference for agreement.
    #[arg(long, value_delimiter = ',', default_value = "cpu,gpu", value_parser = backend_of())]
    backends: Vec<BackendChoice>,
    /// Timed repeats per engine (after one warm-up).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Parses one of `names` into the library's dtype (clap lists them in `--help`).
fn dtype_of(names: &'static [&'static str]) -> impl TypedValueParser<Value = Dtype> {
    PossibleValuesParser::new(names).map(|s| s.parse::<Dtype>().expect("a listed dtype"))
}

fn backend_of() -> impl TypedValueParser<Value = BackendChoice> {
    PossibleValuesParser::new(BackendChoice::NAMES)
        .map(|s| s.parse::<BackendChoice>().expect("a listed backend"))
}

#[derive(Args, Debug)]
struct AnalyzeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Output folder for summary.json, tensors.csv and coords.safetensors.
    #[arg(long)]
    out: PathBuf,
}

/// The inputs and options of an analysis (`analyze` and `shard`).
#[derive(Args, Debug)]
struct RunArgs {
    /// Inputs: .npy files of shape (K, ...) (one tensor each); .npz archives; one stacked
    /// .safetensors file; or a folder, glob or list of per-step .safetensors files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Analyse only tensors whose name matches one of these globs.
    #[arg(long)]
    include: Vec<String>,
    /// Leave out tensors whose name matches one of these globs.
    #[arg(long)]
    exclude: Vec<String>,
    /// Skip unreadable or inconsistent step files instead of failing; each is reported.
    #[arg(long)]
    skip_bad: bool,
    /// Memory to plan for, e.g. 8G or 512M (default: a quarter of RAM). Tensors whose state
    /// does not fit together are processed in groups, one pass over the files per group.
    #[arg(long, value_parser = parse_bytes)]
    mem_budget: Option<u64>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Centre: `mean` (per-coordinate sample mean), `median` (per-coordinate sample median),
    /// `none` (data are already noise), or an .npy file with one value per coordinate (e.g.
    /// the full-batch gradient).
    #[arg(long, default_value = "mean")]
    center: String,
    /// Skip the per-coordinate distribution fits (McCulloch, Anderson–Darling, KS to normal
    /// and stable, top-1 % share, variance ratio). They need all K samples of each coordinate:
    /// unless the CPU engine reads a tensor in whole columns anyway, they cost one more read.
    #[arg(long)]
    no_fits: bool,
    /// Block-sum length K1 (default: largest divisor of K not above √K).
    #[arg(long)]
    block: Option<usize>,
    #[command(flatten)]
    structure: StructureArgs,
    /// Float type of coords.safetensors.
    #[arg(long, default_value = "f32", value_parser = dtype_of(&["f32", "f64"]))]
    coords_dtype: Dtype,
    /// Report progress as JSON lines on stderr (for `gradtail serve`).
    #[arg(long, hide = true)]
    progress_json: bool,
}

/// The covariance spectrum, the noise scale and the power-law fits.
#[derive(Args, Debug)]
struct StructureArgs {
    /// Skip the covariance spectrum (eigenvalues of each tensor's and the model's K × K Gram
    /// matrix; spectrum.safetensors).
    #[arg(long)]
    no_spectrum: bool,
    /// Minibatch size B of the snapshots: adds the gradient noise scale B·tr(C)/|G|².
    #[arg(long, value_name = "B")]
    batch_size: Option<f64>,
    /// Skip the dimension-wise power-law fits (|u_k| over a tensor's coordinates).
    #[arg(long)]
    no_powerlaw: bool,
    /// Samples k of the dimension-wise power-law fits, comma-separated (default: 0, K/2 and
    /// K − 1).
    #[arg(long, value_delimiter = ',', value_name = "K")]
    powerlaw_samples: Option<Vec<usize>>,
    /// Bootstrap replicates of the goodness-of-fit p-value of each dimension-wise fit (each
    /// replicate refits, xmin search included).
    #[arg(long, default_value_t = 0, value_name = "N")]
    powerlaw_bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    powerlaw_seed: u64,
    /// Also fit a power law to each coordinate's K magnitudes (maps alpha_pl, xmin_pl,
    /// ks_pl; O(K²) per coordinate).
    #[arg(long)]
    powerlaw_coords: bool,
}

impl StructureArgs {
    fn options(&self) -> Result<analyze::structure::StructureOptions> {
        if let Some(b) = self.batch_size {
            if !(b.is_finite() && b > 0.0) {
                bail!("--batch-size {b}: the minibatch size must be a positive number");
            }
        }
        Ok(analyze::structure::StructureOptions {
            spectrum: !self.no_spectrum,
            powerlaw: !self.no_powerlaw,
            powerlaw_coords: self.powerlaw_coords,
            powerlaw_samples: self.powerlaw_samples.clone(),
            powerlaw_bootstrap: self.powerlaw_bootstrap,
            powerlaw_seed: self.powerlaw_seed,
            batch_size: self.batch_size,
            ..Default::default()
        })
    }
}

#[derive(Args, Debug)]
struct EngineArgs {
    /// Reduction engine.
    #[arg(long, default_value = "auto", value_parser = backend_of())]
    backend: BackendChoice,
    /// CPU threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Args, Debug)]
struct SynthArgs {
    /// Tail index α in (0, 2]; 2 is Gaussian with variance 2c².
    #[arg(long)]
    alpha: f64,
    /// Samples K (rows).
    #[arg(long)]
    samples: usize,
    /// Coordinates P (columns).
    #[arg(long)]
    params: usize,
    /// Scale c.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Spread of per-coordinate scales: sd of ln c_j across coordinates.
    #[arg(long, default_value_t = 0.0)]
    log_scale_sd: f64,
    /// Fraction of entries set to exactly 0 (sparse gradients).
    #[arg(long, default_value_t = 0.0, value_name = "FRAC")]
    zeros: f64,
    /// Make the last N coordinates constant (frozen parameters).
    #[arg(long, default_value_t = 0, value_name = "N")]
    constant: usize,
    /// Make the first N coordinates move together: c_j·z(t) for one SαS series z.
    #[arg(long, default_value_t = 0, value_name = "N")]
    shared: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "f32", value_parser = dtype_of(&["f16", "bf16", "f32", "f64"]))]
    dtype: Dtype,
    /// Write a made-up model instead: OUT is a folder of per-step safetensors files (one per
    /// sample) holding this many weight tensors that share --params coordinates.
    #[arg(long, value_name = "TENSORS")]
    model: Option<usize>,
    /// Output .npy path (or folder with --model).
    out: PathBuf,
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    init_tracing();
    // This process can end on a fault of a file mapped for reading, with a message naming
    // the file, so it reads its inputs in place (without a copy out of the page cache).
    gradtail::input::bus::read_in_place();
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    match cli.command {
        Command::Analyze(a) => analyze_cmd(a, progress).map(drop),
        Command::Shard(s) => shard::shard_cmd(s, progress),
        Command::Merge(m) => shard::merge_cmd(m),
        Command::Synth(s) => synth_cmd(s),
        Command::Demo(d) => demo_cmd(d, progress),
        Command::Bench(b) => bench_cmd(b),
        Command::Sweep(s) => sweep::run(s, progress),
        Command::Info => {
            print!("{}", gradtail::engine::gpu::probe_report());
            Ok(())
        }
        Command::Serve(s) => crate::serve::run(s),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wgpu_hal=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn make_backend(args: &EngineArgs) -> Result<Box<dyn Backend>> {
    Ok(args.backend.make(args.threads)?)
}

/// Coordinates of `bench`'s fits timing, at most: enough for a steady rate, about a second
/// on one core.
const BENCH_FIT_COORDS: usize = 20_000;

fn bench_cmd(b: BenchArgs) -> Result<()> {
    use gradtail::bench::{self, Candidate};
    let dtype = b.dtype;
    eprintln!("generating {} × {} {:?} ...", b.samples, b.params, dtype);
    let src = bench::MemTensor::synthetic(b.samples, b.params, dtype, b.seed);
    let mut candidates = Vec::new();
    for choice in &b.backends {
        match choice {
            BackendChoice::Cpu => candidates.push(Candidate {
                backend: Box::new(CpuEngine::new(b.threads)?),
                ceiling_gb_s: bench::host_read_gb_s(),
                ceiling: "host read".into(),
                upload_gb_s: None,
                cpu_device: false,
            }),
            BackendChoice::Gpu | BackendChoice::Auto => {
                let gpu = GpuEngine::new(GpuOptions::default())?;
                let cpu_device = gpu.is_cpu_device();
                let (copy, upload) = gpu.rooflines()?;
                eprintln!("GPU ceilings: device copy {copy:.1} GB/s (read + write), upload {upload:.1} GB/s");
                candidates.push(Candidate {
                    backend: Box::new(gpu),
                    ceiling_gb_s: copy,
                    ceiling: "dev copy".into(),
                    upload_gb_s: Some(upload),
                    cpu_device,
                });
            }
        }
    }
    let mut report = bench::run(src, &mut candidates, b.repeat)?;
    let fit_coords = b.params.min(BENCH_FIT_COORDS);
    for c in &mut candidates {
        eprintln!(
            "timing the fits on the {} engine: {} × {fit_coords} ...",
            c.backend.info().engine,
            bench::FITS_SAMPLES
        );
        let f = bench::time_fits(
            c.backend.as_mut(),
            c.cpu_device,
            fit_coords,
            b.repeat,
            b.seed,
        )?;
        report.fits.push(f);
        eprintln!(
            "timing the Gram pass on the {} engine: {} × {} ...",
            c.backend.info().engine,
            b.samples,
            b.params.min(bench::STRUCTURE_COORDS)
        );
        let g = bench::time_gram(
            c.backend.as_mut(),
            c.cpu_device,
            b.samples,
            b.params,
            b.repeat.min(3),
            b.seed,
        )?;
        report.grams.push(g);
        eprintln!(
            "timing the xmin scans on the {} engine ...",
            c.backend.info().engine
        );
        let x = bench::time_xmin(
            c.backend.as_mut(),
            c.cpu_device,
            b.samples,
            b.params,
            b.repeat.min(3),
            b.seed,
        )?;
        report.xmin.push(x);
    }
    eprintln!(
        "timing the eigenvalues and the xmin scans: {} × {} on the host ...",
        b.samples,
        b.params.min(bench::STRUCTURE_COORDS)
    );
    report.structure = Some(bench::time_structure(
        b.samples,
        b.params,
        b.threads,
        b.repeat.min(3),
        b.seed,
    )?);
    bench::print(&report, &mut std::io::stdout().lock())?;
    if let Some(path) = &b.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Parses a byte count with an optional binary suffix: 1536, 512M, 8G.
pub(crate) fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown unit in '{s}': use K, M, G or T")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 8G or 512M"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("'{s}' must be positive"));
    }
    Ok((v * mult as f64) as u64)
}

fn parse_center(s: &str) -> Center {
    match s {
        "mean" => Center::Mean,
        "median" => Center::Median,
        "none" => Center::None,
        path => Center::File(PathBuf::from(path)),
    }
}

/// Opens a run's inputs (reporting what was skipped) and validates its options.
fn prepare(a: &RunArgs, progress: bool) -> Result<(gradtail::input::Inputs, Options)> {
    let center = parse_center(&a.center);
    if let Center::File(p) = &center {
        if p.extension().and_then(|e| e.to_str()) != Some("npy") {
            bail!(
                "--center {}: expected `mean`, `median`, `none` or an .npy file",
                p.display()
            );
        }
    }
    let select = gradtail::input::Select::new(&a.include, &a.exclude)?;
    let inputs = gradtail::input::open_all(&a.inputs, &select, a.skip_bad)?;
    for s in &inputs.skipped {
        eprintln!("gradtail: skipped tensor {}: {}", s.name, s.reason);
    }
    for s in &inputs.bad_files {
        eprintln!("gradtail: skipped step file {}: {}", s.name, s.reason);
    }
    if !inputs.bad_files.is_empty() {
        eprintln!(
            "gradtail: {} step files skipped; using {} samples",
            inputs.bad_files.len(),
            inputs.sources.first().map_or(0, |s| s.meta().samples)
        );
    }
    let opts = Options {
        center,
        block: a.block,
        progress: progress && !a.progress_json,
        progress_json: a.progress_json,
        mem_budget: a.mem_budget.unwrap_or_else(analyze::default_mem_budget),
        fits: !a.no_fits,
        threads: a.engine.threads,
        structure: a.structure.options()?,
        ..Options::default()
    };
    Ok((inputs, opts))
}

/// `--backend auto`'s fallback to the CPU engine when the GPU fails mid-run.
fn cpu_fallback(engine: &EngineArgs) -> impl Fn() -> gradtail::Result<Box<dyn Backend>> {
    let threads = engine.threads;
    move || Ok(Box::new(CpuEngine::new(threads)?))
}

fn analyze_cmd(args: AnalyzeArgs, progress: bool) -> Result<analyze::Analysis> {
    let start = Instant::now();
    let a = &args.run;
    let (mut inputs, opts) = prepare(a, progress)?;
    let center = opts.center.clone();
    let sources = &inputs.sources;
    let mut backend = make_backend(&a.engine)?;
    let out = &args.out;
    let maps = Stat::maps(opts.fits, opts.structure.powerlaw_coords);
    let staging = Staging::new(out)?;
    let layout: Vec<(String, Vec<usize>)> = sources
        .iter()
        .map(|s| (s.meta().name.clone(), s.meta().shape.clone()))
        .collect();
    // One attempt: the maps are written afresh, so a rerun after a GPU fault starts clean.
    let attempt = |backend: &mut dyn Backend| {
        let coords = Arc::new(CoordsWriter::create(
            &staging.path().join("coords.safetensors"),
            &layout,
            maps,
            a.coords_dtype,
        )?);
        let analysis = analyze::analyze_streamed(sources, &opts, backend, coords.clone())?;
        Arc::into_inner(coords)
            .expect("the run holds no writer once it returns")
            .finish()?;
        Ok(analysis)
    };
    let cpu = cpu_fallback(&a.engine);
    let fallback = (a.engine.backend == BackendChoice::Auto).then_some(&cpu as &dyn Fn() -> _);
    let analysis = analyze::with_fallback(&mut backend, fallback, attempt)?;
    // Nothing reads the inputs any more: their maps go on a thread of their own while the
    // outputs are written (unmapping 1 GiB takes about 10 ms).
    let sources = std::mem::take(&mut inputs.sources);
    std::thread::spawn(move || drop(sources));
    let info = backend.info();
    let report = RunReport {
        analysis: &analysis,
        engine: &info,
        center: &center,
        block: a.block,
        backend: info.engine,
        fits: opts.fits,
        structure: &opts.structure,
        elapsed_s: start.elapsed().as_secs_f64(),
        skipped: &inputs.skipped,
        bad_files: &inputs.bad_files,
    };
    report.write(&staging)?;
    staging
        .publish()
        .with_context(|| format!("writing outputs to {}", out.display()))?;
    print_table(&analysis, &mut std::io::stdout().lock())?;
    println!("{}", gradtail::report::centre_note(&center));
    // The report's plots, each also written as its own file.
    let plots = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "svg"))
                .count()
        })
        .unwrap_or(0);
    println!(
        "wrote {}/{{report.html, summary.json, tensors.csv, coords.safetensors{}{}}} in {:.2} s",
        out.display(),
        if opts.structure.spectrum {
            ", spectrum.safetensors"
        } else {
            ""
        },
        match plots {
            0 => String::new(),
            1 => ", 1 plot as .svg".into(),
            n => format!(", {n} plots as .svg"),
        },
        start.elapsed().as_secs_f64()
    );
    Ok(analysis)
}

fn synth_cmd(s: SynthArgs) -> Result<()> {
    let spec = SynthSpec {
        alpha: s.alpha,
        samples: s.samples,
        params: s.params,
        scale: s.scale,
        seed: s.seed,
        dtype: s.dtype,
        log_scale_sd: s.log_scale_sd,
        traps: Traps {
            zero_frac: s.zeros,
            constant: s.constant,
            shared: s.shared,
        },
    };
    if let Some(tensors) = s.model {
        synth::write_model(&spec, tensors, &s.out)?;
        println!(
            "wrote {} step files of {tensors} tensors to {}",
            s.samples,
            s.out.display()
        );
        return Ok(());
    }
    synth::write_npy(&spec, &s.out)?;
    println!(
        "wrote {} ({} × {} {:?}, α = {})",
        s.out.display(),
        s.samples,
        s.params,
        s.dtype,
        s.alpha
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
