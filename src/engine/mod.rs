//! Engines: the per-coordinate reductions behind one [`Backend`] trait. The CPU engine
//! (`cpu`) and the GPU engine (`gpu`, WGSL kernels in `shaders/`) implement the same kernels
//! under the same names (`coord_mean`, `coord_stats`, `flat_blocks`,
//! `coord_fits`, `gram`, `xmin_scan`) and fold their results into the same f64 accumulator
//! monoids (`accum`; the Gram into `stats::structure::Gram`).

pub mod accum;
pub mod cpu;
pub mod gpu;
pub mod ln;

use crate::error::Result;
use crate::input::Block;
use crate::stats::fits::Fits;
use crate::stats::structure::xmin_scan::{ScanJob, Scanned};
use crate::stats::structure::Gram;
use accum::{BlockSums, CoordAcc, FlatAcc, FlatSpec, MeanAcc};

/// A stream of one tensor's blocks; each coordinate's rows arrive in order.
pub type Blocks<'a> = &'a mut dyn Iterator<Item = Result<Block>>;

/// What pass 2 needs to know about a tensor.
#[derive(Clone, Debug)]
pub struct StatsJob<'a> {
    /// Block-sum length K1 (spec §3.1).
    pub k1: usize,
    /// Rows in complete blocks, K1·⌊K/K1⌋; later rows are left out of the block sums.
    pub used_rows: usize,
    /// Per-coordinate shift for the moment power sums (the pass-1 mean).
    pub shift: &'a [f64],
    /// Per coordinate: the largest |x - shift| over its finite samples (from pass 1's range),
    /// which the GPU engine scales its f32 power sums by.
    pub spread: &'a [f64],
    /// Per-coordinate centre: u = x - centre is the noise.
    pub centre: &'a [f64],
    /// Per coordinate: whether it enters the pooled per-time-block sums (false for constant
    /// coordinates and those with too few finite samples).
    pub pool: &'a [bool],
    /// The column (of the blocks' tensor) that the first entry of `shift`, `spread`, `centre`
    /// and `pool` belongs to: 0, but for a job that covers one strip of a block.
    pub col0: usize,
    /// The tensor's own flattening (stride P) and its place in the whole input's.
    pub flat_tensor: FlatSpec,
    pub flat_model: FlatSpec,
}

impl StatsJob<'_> {
    /// The same job over other shift, spread, centre and pool arrays.
    pub fn with<'b>(
        &self,
        shift: &'b [f64],
        spread: &'b [f64],
        centre: &'b [f64],
        pool: &'b [bool],
    ) -> StatsJob<'b> {
        StatsJob {
            k1: self.k1,
            used_rows: self.used_rows,
            shift,
            spread,
            centre,
            pool,
            col0: self.col0,
            flat_tensor: self.flat_tensor,
            flat_model: self.flat_model,
        }
    }
}

/// Pass 2's per-coordinate inputs, one entry per column, that [`Backend::coord_both`] has
/// its caller derive from pass 1's results between the passes.
pub struct Derived<'a> {
    pub shift: &'a mut [f64],
    pub spread: &'a mut [f64],
    /// Holds the caller's centre on entry (zeros, or a given centre), which the derivation
    /// may replace (by the mean).
    pub centre: &'a mut [f64],
    pub pool: &'a mut [bool],
}

impl Derived<'_> {
    /// The same arrays, lent again (to the derivation, before pass 2 reads them).
    pub fn reborrow(&mut self) -> Derived<'_> {
        Derived {
            shift: &mut *self.shift,
            spread: &mut *self.spread,
            centre: &mut *self.centre,
            pool: &mut *self.pool,
        }
    }

    /// `job` over these inputs, whose first entry is column `col0` of the blocks' tensor.
    pub fn job<'j>(&'j self, job: &StatsJob<'_>, col0: usize) -> StatsJob<'j> {
        let mut job = job.with(self.shift, self.spread, self.centre, self.pool);
        job.col0 = col0;
        job
    }
}

/// Turns pass 1's results for a run of a block's columns into their [`Derived`] inputs.
pub type Derive<'a> = &'a (dyn Fn(&[MeanAcc], Derived<'_>) -> Result<()> + Sync);

/// Pass-2 state of one tensor.
#[derive(Clone, Debug, Default)]
pub struct TensorAcc {
    pub coords: Vec<CoordAcc>,
    pub flat: FlatAcc,
    /// Per time block (rows bK1..(b+1)K1), the block-sum sums pooled over the coordinates
    /// the job marks `pool`.
    pub blocks: Vec<BlockSums>,
}

impl TensorAcc {
    pub fn combine(&mut self, o: &Self) {
        for (a, b) in self.coords.iter_mut().zip(&o.coords) {
            a.combine(b);
        }
        self.flat.combine(&o.flat);
        for (a, b) in self.blocks.iter_mut().zip(&o.blocks) {
            a.combine(b);
        }
    }
}

/// Which engine ran and on what.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineInfo {
    pub engine: &'static str,
    pub threads: usize,
    /// The GPU adapter, for the GPU engine.
    pub adapter: Option<AdapterInfo>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

/// A reduction engine. Both passes stream a tensor's blocks and fold them into host-side
/// monoid state, so a caller can split a tensor, or process tensors in any order.
pub trait Backend {
    fn info(&self) -> EngineInfo;

    /// Pass 1, kernel `coord_mean`: folds `blocks` into `out` (one entry per coordinate).
    fn coord_mean(&mut self, blocks: Blocks<'_>, out: &mut [MeanAcc]) -> Result<()>;

    /// Pass 2, kernels `coord_stats` and `flat_blocks`: folds `blocks` into
    /// the tensor's state and the whole input's flat state `model`.
    fn coord_stats(
        &mut self,
        job: &StatsJob<'_>,
        blocks: Blocks<'_>,
        out: &mut TensorAcc,
        model: &mut FlatAcc,
    ) -> Result<()>;

    /// Both passes over one block that holds every sample of its columns, from one read:
    /// pass 1 into `mean`, `derive` over its results into `inputs`, then pass 2 with those
    /// inputs (`job`'s own are not used) into `out` and `model`. `mean` and `inputs` have one
    /// entry per column of the block. The CPU engine runs all three strip by strip, so pass
    /// 2 finds each strip in cache; this default runs them one after the other.
    #[allow(clippy::too_many_arguments)] // both passes' arguments, and pass 1's results
    fn coord_both(
        &mut self,
        job: &StatsJob<'_>,
        block: Block,
        derive: Derive<'_>,
        mean: &mut [MeanAcc],
        mut inputs: Derived<'_>,
        out: &mut TensorAcc,
        model: &mut FlatAcc,
    ) -> Result<()> {
        self.coord_mean(&mut std::iter::once(Ok(block.share())), mean)?;
        derive(mean, inputs.reborrow())?;
        let job = inputs.job(job, block.cols.start);
        self.coord_stats(&job, &mut std::iter::once(Ok(block)), out, model)
    }

    /// The whole-column step's distribution fits, kernel `coord_fits`: `block` holds every
    /// sample of its columns; `usable`, `centre` and `out` have one entry per column of the
    /// block. `out[j]` becomes `stats::fits::fit_column` of u = x − centre[j] over column j's
    /// finite samples in sampling order where `usable[j]`, and `Fits::NAN` elsewhere.
    fn coord_fits(
        &mut self,
        block: &Block,
        usable: &[bool],
        centre: &[f64],
        out: &mut [Fits],
    ) -> Result<()>;

    /// The structure step's covariance Gram, kernel `gram`: adds UUᵀ of the block's columns
    /// to `out` (K × K, every sample of each column), u = x − centre[j] for column j
    /// (`centre` has one entry per column of the block), every column included. A NaN or ±∞
    /// in the block makes `out` non-finite (its finish says so).
    fn gram(&mut self, block: &Block, centre: &[f64], out: &mut Gram) -> Result<()>;

    /// The xmin scans of power-law fits, kernel `xmin_scan`: the KS distance D at every
    /// candidate xmin of each job (`stats::structure::xmin_scan`), in candidate order, each
    /// within the returned bound of the f64 value (NaN: left to the host).
    fn xmin_scan(&mut self, jobs: &[ScanJob<'_>]) -> Result<Scanned>;

    /// The largest sample whose xmin scan this engine runs over every candidate, given the
    /// host's limit `host` (`StructureOptions::exact_max_n`); larger samples use the grid.
    fn xmin_exact_max_n(&self, host: usize) -> usize {
        host
    }

    /// Whether one read of a whole-column block should feed both passes (one call per block
    /// per pass); an engine that answers false gets each pass as one stream of blocks.
    fn single_read(&self) -> bool {
        true
    }

    /// The magnitudes of data this engine computes faithfully, `(smallest, largest)` largest
    /// |x| of a coordinate; `None` for any finite value (f64 arithmetic).
    fn magnitude_range(&self) -> Option<(f64, f64)> {
        None
    }

    /// Where the engine's time and transfers went since the last [`Backend::reset_phases`],
    /// for engines that move data to a device; `None` for the CPU engine.
    fn phases(&self) -> Option<PhaseTimes> {
        None
    }

    fn reset_phases(&mut self) {}
}

/// A device engine's phases, summed over its calls. Host figures are wall clock on the thread
/// that drives the engine and do not overlap one another; `kernel_s` is device time from
/// timestamp queries and overlaps them (the device computes one batch while the host packs
/// the next). Device-side transfers are in no timer: they show as waiting in `readback_wait_s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PhaseTimes {
    /// Packing units into upload layout in mapped staging memory (host copies).
    pub upload_s: f64,
    /// Finishing and submitting command buffers. Near zero on a GPU; a CPU device such as
    /// lavapipe may run the kernels inside the submission.
    pub submit_s: f64,
    /// Waiting for batches' results and copying them out of mapped memory.
    pub readback_s: f64,
    /// The part of `readback_s` spent blocked until the device finished a batch.
    pub readback_wait_s: f64,
    /// Folding read-back partial states into the f64 accumulators.
    pub fold_s: f64,
    /// Compute-pass time on the device, where the adapter has timestamp queries.
    pub kernel_s: Option<f64>,
    /// Bytes written to the device (input, parameters, segment tables, sizes).
    pub upload_bytes: u64,
    /// Input bytes the column kernels read: each unit's input once per pass, whether it was
    /// uploaded or pass 1 left it on the device.
    pub kernel_read_bytes: u64,
    /// Bytes read back (partial states and timestamps).
    pub readback_bytes: u64,
    /// Units staged (one input and its dispatches each) and queue submissions (one per
    /// batch of units).
    pub units: u64,
    pub submits: u64,
}

/// The engine a user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Cpu,
    Gpu,
}

impl BackendChoice {
    pub const NAMES: [&'static str; 3] = ["auto", "cpu", "gpu"];

    /// Starts the engine: `auto` takes a real GPU when there is one (not a CPU device such
    /// as lavapipe), else the CPU engine with `threads` threads (0: every core).
    pub fn make(self, threads: usize) -> Result<Box<dyn Backend>> {
        use gpu::{GpuEngine, GpuOptions};
        match self {
            BackendChoice::Cpu => Ok(Box::new(cpu::CpuEngine::new(threads)?)),
            BackendChoice::Gpu => Ok(Box::new(GpuEngine::new(GpuOptions::default())?)),
            BackendChoice::Auto => match GpuEngine::new_real_gpu(GpuOptions::default()) {
                Ok(Some(gpu)) => {
                    tracing::info!(adapter = %gpu.adapter().name, "backend auto: using the GPU engine");
                    Ok(Box::new(gpu))
                }
                Ok(None) => {
                    tracing::info!("backend auto: no real GPU adapter; using the CPU engine");
                    Ok(Box::new(cpu::CpuEngine::new(threads)?))
                }
                Err(e) => {
                    tracing::info!("backend auto: {e}; using the CPU engine");
                    Ok(Box::new(cpu::CpuEngine::new(threads)?))
                }
            },
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "gpu" => Ok(BackendChoice::Gpu),
            _ => Err(format!("unknown backend {s:?}: expected auto, cpu or gpu")),
        }
    }
}
