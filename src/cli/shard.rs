//! `gradtail shard` and `gradtail merge`: an analysis cut into shards for job arrays, and
//! the merge of their states into what `analyze` writes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use super::{cpu_fallback, make_backend, parse_bytes, prepare, RunArgs};
use gradtail::analyze;
use gradtail::engine::BackendChoice;
use gradtail::input::Dtype;
use gradtail::report::{print_table, CoordsWriter, RunReport, Staging};
use gradtail::stats::Stat;

#[derive(Args, Debug)]
pub(super) struct ShardArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Which shard this is, from 0 (e.g. $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX).
    #[arg(long)]
    index: usize,
    /// Number of shards.
    #[arg(long)]
    of: usize,
    /// The state file to write (a gradtail.state/1 safetensors file), e.g. state-3.safetensors.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub(super) struct MergeArgs {
    /// The state files of every shard (any order), as written by gradtail shard.
    #[arg(required = true)]
    states: Vec<PathBuf>,
    /// Output folder for summary.json, tensors.csv, coords.safetensors and report.html.
    #[arg(long)]
    out: PathBuf,
    /// Memory to plan for, e.g. 8G (default: a quarter of RAM): as for analyze, decides
    /// whether the report keeps every coordinate's row or a sample per tensor.
    #[arg(long, value_parser = parse_bytes)]
    mem_budget: Option<u64>,
}

pub(super) fn shard_cmd(args: ShardArgs, progress: bool) -> Result<()> {
    let start = Instant::now();
    let a = &args.run;
    let (inputs, opts) = prepare(a, progress)?;
    let backend_name = format!("{:?}", a.engine.backend).to_lowercase();
    let dtype_name = a.coords_dtype.name();
    let fingerprint = gradtail::shard::fingerprint(&inputs, &opts, &backend_name, dtype_name)?;
    let mut backend = make_backend(&a.engine)?;
    let cpu = cpu_fallback(&a.engine);
    let fallback = (a.engine.backend == BackendChoice::Auto).then_some(&cpu as &dyn Fn() -> _);
    let shard = (args.index, args.of);
    let done = analyze::with_fallback(&mut backend, fallback, |backend| {
        gradtail::shard::shard(
            &inputs,
            &opts,
            backend,
            shard,
            fingerprint.clone(),
            &args.out,
        )
    })?;
    println!(
        "wrote shard {} of {} ({} coordinates in {} pieces, {:.1} MB read) to {} in {:.2} s",
        args.index,
        args.of,
        done.coords,
        done.pieces,
        done.bytes_read as f64 / 1e6,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(super) fn merge_cmd(m: MergeArgs) -> Result<()> {
    let start = Instant::now();
    // Every state is opened and checked before anything is written.
    let budget = m.mem_budget.unwrap_or_else(analyze::default_mem_budget);
    let staging = Staging::new(&m.out)?;
    // The maps file is laid out from the first state's inputs; `merge` refuses states that
    // disagree with them before the first tensor is written.
    let fp = gradtail::shard::StateFile::open(&m.states[0])?
        .header
        .fingerprint;
    let layout: Vec<(String, Vec<usize>)> = fp
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let maps = Stat::maps(fp.options.fits, fp.options.structure.powerlaw_coords);
    let dtype: Dtype = fp
        .options
        .coords_dtype
        .parse()
        .map_err(anyhow::Error::msg)?;
    let path = staging.path().join("coords.safetensors");
    let coords = CoordsWriter::create(&path, &layout, maps, dtype)?;
    let merged = gradtail::shard::merge(&m.states, budget, &mut |t| {
        coords.write(&t.meta.name, &t.coords)
    })?;
    coords.finish()?;
    let analysis = &merged.analysis;
    let report = RunReport {
        analysis,
        engine: &merged.engine,
        center: &merged.center,
        block: merged.fingerprint.options.block,
        backend: merged.engine.engine,
        fits: merged.fingerprint.options.fits,
        structure: &merged.fingerprint.options.structure,
        elapsed_s: merged.elapsed_s,
        skipped: &merged.skipped,
        bad_files: &merged.bad_files,
    };
    report.write(&staging)?;
    staging
        .publish()
        .with_context(|| format!("writing outputs to {}", m.out.display()))?;
    print_table(analysis, &mut std::io::stdout().lock())?;
    println!("{}", gradtail::report::centre_note(&merged.center));
    println!(
        "merged {} shards into {}/{{report.html, summary.json, tensors.csv, coords.safetensors{}}} in {:.2} s",
        m.states.len(),
        m.out.display(),
        if merged.fingerprint.options.structure.spectrum {
            ", spectrum.safetensors"
        } else {
            ""
        },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
