//! The pipeline: validate inputs → pass 1 (means) → whole columns (medians, fits; `columns`)
//! → pass 2 (moments, tails, flat blocks) → finish statistics. Two passes because the noise is
//! centred by the per-coordinate mean (or median) before any log or block sum is taken
//! (uncentred data bias α towards 1). The whole-column step needs every sample of a
//! coordinate at once: blocks of whole columns give it for free where the CPU engine reads
//! them anyway; otherwise it is one more read of the tensor, in whole columns.
//!
//! In three steps: `plan` (what to read, in which groups and passes, under the memory
//! budget), `run` (drives an engine through the passes, yielding each piece's accumulators)
//! and `finish` (accumulators → results). `analyze` is all three over every tensor;
//! `shard` plans a share of the input and keeps the accumulators; `merge` combines them and
//! finishes.

mod checks;
pub(crate) mod columns;
pub mod finish;
pub mod plan;
mod progress;
pub mod run;
pub mod structure;

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::accum::{FlatAcc, MeanAcc};
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::input::{TensorMeta, TensorSource};
use crate::stats::structure::summary::SpectrumSummary;
use crate::stats::{self, CoordTable, MapSink, MapsOut, TensorSummary};
pub(crate) use checks::read_centre;
pub use checks::{block_size, validate};
pub use plan::{
    coords_sampled, default_mem_budget, group_tensors, Piece, Plan, STATE_BYTES_PER_COORD,
};
use structure::StructureOptions;

/// Fewest samples gradtail accepts: block sums need K1 ≥ 2 with at least two blocks.
pub const MIN_SAMPLES: usize = 4;

/// What the noise is measured against.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Center {
    /// The per-coordinate sample mean.
    Mean,
    /// The per-coordinate sample median (numpy's), over the finite samples.
    Median,
    /// The data are already noise.
    None,
    /// Per-coordinate values from an .npy file (e.g. the full-batch gradient).
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub center: Center,
    /// Block-sum length override (`--block`).
    pub block: Option<usize>,
    /// Largest block read at once, in bytes.
    pub block_bytes: usize,
    /// Resident memory to plan for: per-coordinate state of the tensors in flight plus block
    /// buffers. Tensors are processed in groups that fit.
    pub mem_budget: u64,
    pub progress: bool,
    /// Report progress as JSON lines on stderr instead (`gradtail serve` reads them).
    pub progress_json: bool,
    /// Compute the per-coordinate distribution fits (`stats::fits`; `--no-fits` turns off).
    pub fits: bool,
    /// Host threads for the medians of the whole-column step (0: every core).
    pub threads: usize,
    /// The covariance spectrum, noise scale and power-law fits (`structure`).
    pub structure: StructureOptions,
}

/// The moment shift of a coordinate: its mean; for a constant coordinate its value exactly (a
/// summed mean can be an ulp off, which would turn its zeros into ±1e-17 noise).
fn shift_of(m: &MeanAcc) -> f64 {
    match m.n {
        0 => 0.0,
        _ if m.is_constant() => m.min,
        _ => m.mean(),
    }
}

/// The largest |x - shift| over a coordinate's finite samples, from its range (0 when it has
/// none).
fn spread_of(m: &MeanAcc, shift: f64) -> f64 {
    match m.n {
        0 => 0.0,
        _ => (m.max - shift).max(shift - m.min),
    }
}

/// Whether a coordinate enters the pooled per-time-block sums: not constant (on the data
/// before centring) and with enough finite samples.
fn pooled(m: &MeanAcc) -> bool {
    stats::pass1_kind(m) == stats::CoordKind::Usable
}

/// Per-coordinate rows kept per tensor for plots once a run is too large to keep them all.
pub const PLOT_SAMPLE: usize = 65_536;

impl Default for Options {
    fn default() -> Self {
        Options {
            center: Center::Mean,
            block: None,
            block_bytes: 64 << 20,
            mem_budget: default_mem_budget(),
            progress: false,
            progress_json: false,
            fits: true,
            threads: 0,
            structure: StructureOptions::default(),
        }
    }
}

pub struct TensorResult {
    pub meta: TensorMeta,
    pub summary: TensorSummary,
    pub coords: CoordTable,
}

/// The original `main.py` estimate over every tensor concatenated in input order.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    pub alpha_simsekli_flat: f64,
    pub simsekli_m: u64,
    pub coords: usize,
    pub constant_coords: u64,
    pub few_finite_coords: u64,
    pub zero_entries: u64,
    pub nonfinite_samples: u64,
    /// The spectrum of the sum of the tensors' Grams (null when not computed or undefined).
    pub spectrum: Option<SpectrumSummary>,
    /// The noise scale over every coordinate (with a batch size).
    pub noise_scale: Option<f64>,
    /// Why an estimate is null, one sentence each.
    pub notes: Vec<String>,
}

pub struct Analysis {
    pub samples: usize,
    pub block_size: usize,
    /// Tensor groups processed one after the other (1 when everything fit at once).
    pub groups: usize,
    /// True when `TensorResult::coords` holds a strided sample of at most [`PLOT_SAMPLE`]
    /// coordinates per tensor (the full maps are in `coords.safetensors`).
    pub coords_sampled: bool,
    /// Input bytes read from the sources: once per tensor read in whole columns (both passes
    /// from one read), otherwise once per pass and, when the fits or the median need it, once
    /// more in whole columns.
    pub bytes_read: u64,
    pub tensors: Vec<TensorResult>,
    pub model: ModelSummary,
}

/// Runs `run` on `backend`; when the device fails mid-run (`Error::GpuFault`: lost, or out of
/// memory) and a `fallback` engine can be made, logs a warning and runs it again, from the
/// start, on the fallback (`--backend auto` falls back to the CPU engine). `backend` is left
/// holding the engine that produced the result.
pub fn with_fallback<T>(
    backend: &mut Box<dyn Backend>,
    fallback: Option<&dyn Fn() -> Result<Box<dyn Backend>>>,
    mut run: impl FnMut(&mut dyn Backend) -> Result<T>,
) -> Result<T> {
    match (run(backend.as_mut()), fallback) {
        (Err(Error::GpuFault(why)), Some(make)) => {
            tracing::warn!(
                "the GPU failed mid-run ({why}); running the analysis again on the CPU engine"
            );
            *backend = make()?;
            run(backend.as_mut())
        }
        (result, _) => result,
    }
}

/// Runs both passes over `sources` on `backend` and finishes every statistic.
pub fn analyze(
    sources: &[Box<dyn TensorSource + '_>],
    opts: &Options,
    backend: &mut dyn Backend,
) -> Result<Analysis> {
    analyze_with(sources, opts, backend, &mut |_| Ok(()))
}

/// As [`analyze`], handing each finished tensor to `sink` (which writes its maps) before its
/// per-coordinate table is reduced to a plotting sample, when memory requires it: plan, run
/// every tensor whole, finish each as it comes.
pub fn analyze_with(
    sources: &[Box<dyn TensorSource + '_>],
    opts: &Options,
    backend: &mut dyn Backend,
    sink: &mut dyn FnMut(&TensorResult) -> Result<()>,
) -> Result<Analysis> {
    run_and_finish(sources, opts, backend, MapsOut::Table, sink)
}

/// As [`analyze`], writing the per-coordinate maps to `maps` block by block as they are
/// finished; each tensor's table keeps only [`stats::Stat::SHOWN`] (what the summary and the
/// report read). The maps then never sit in memory whole.
pub fn analyze_streamed(
    sources: &[Box<dyn TensorSource + '_>],
    opts: &Options,
    backend: &mut dyn Backend,
    maps: std::sync::Arc<dyn MapSink>,
) -> Result<Analysis> {
    run_and_finish(sources, opts, backend, MapsOut::Streamed(maps), &mut |_| {
        Ok(())
    })
}

fn run_and_finish(
    sources: &[Box<dyn TensorSource + '_>],
    opts: &Options,
    backend: &mut dyn Backend,
    maps: MapsOut,
    sink: &mut dyn FnMut(&TensorResult) -> Result<()>,
) -> Result<Analysis> {
    let plan = Plan::new(sources, opts, backend.single_read())?;
    let sampled = coords_sampled(plan.total, opts);
    tracing::info!(
        groups = plan.groups.len(),
        budget = opts.mem_budget,
        "planned tensor groups"
    );
    let n_model = (plan.samples * plan.total) as u64;
    let mut model = FlatAcc::new((n_model / plan.m_model) as usize);
    let shape = finish::Shape {
        samples: plan.samples,
        k1: plan.k1,
        block_rows: plan.block_rows,
    };
    let mut finisher = finish::Finisher::new(
        shape,
        &opts.center,
        &opts.structure,
        opts.threads,
        maps.clone(),
    )?;
    let mut results = Vec::with_capacity(sources.len());
    run::run(
        &plan,
        sources,
        opts,
        backend,
        &mut model,
        Some(&maps),
        &mut |state, engine| {
            let meta = sources[state.piece.tensor].meta();
            let mut result = finisher.tensor(meta, state, Some(engine))?;
            sink(&result)?;
            if sampled {
                result.coords = result.coords.sample(PLOT_SAMPLE);
            }
            results.push(result);
            Ok(())
        },
    )?;
    let model = finisher.model(&results, &model, plan.total, plan.m_model);
    Ok(Analysis {
        samples: plan.samples,
        block_size: plan.k1,
        groups: plan.groups.len(),
        coords_sampled: sampled,
        bytes_read: plan.bytes(),
        tensors: results,
        model,
    })
}
