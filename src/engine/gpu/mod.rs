//! The GPU engine (wgpu): the twin of `engine::cpu`, with one WGSL kernel per reduction
//! (`shaders/coord_mean.wgsl` in pass 1; `coord_stats.wgsl`, the moments and tail statistics
//! from one read, and `flat_blocks.wgsl` in pass 2) and two for the whole-column step: the
//! per-coordinate fits (`coord_fits.wgsl`, host side in `fits`) and the structure step's Gram
//! matrix (`gram.wgsl`, host side in `gram`).
//!
//! Each block is cut into *units* that fit the device's binding limit (`plan`), repacked into
//! rows of whole 16-byte words and uploaded; each kernel writes its own `#[repr(C)]` output
//! struct, mirrored in WGSL under the same name (`partials`): one `MeanPartial`,
//! `MomentPartial` or `TailPartial` per (row chunk, group of four columns), a `BlockPartial`
//! per (row chunk, time block, workgroup) of pooled sums, a `FlatPartial` per flat segment.
//! They are read back and folded into the f64 accumulators with the same `combine` the CPU
//! engine uses. Units are packed straight into a mapped staging buffer and run in batches, one
//! submission each (`batch`); two buffer sets alternate, so one batch is packed while the
//! previous one is copied and computed, and a set's results are folded before it is reused.
//!
//! Precision: element work (centring, powers, logs) is f32 — f64 transcendentals are wrong on
//! lavapipe and f64 is absent on GL/Metal — and every sum is compensated: Neumaier inside
//! each thread for the power and log sums, double-f32 (TwoSum, ~48 bits) where a sum is later
//! centred on or logged after cancelling: the pass-1 sum (its mean centres pass 2, and a
//! sample 1e-8 from the mean makes ln|u| sensitive to the mean's last digits) and the block
//! sums Y of both tail estimators. Centres and shifts go up as f32 hi/lo pairs and u = x -
//! centre is formed exactly as a pair. Moments are scaled by a power of two per thread (no
//! f32 overflow or flushed subnormals in d⁴), logs are summed relative to the thread's first
//! log, and the final combine is f64 on the host. Against the CPU engine every statistic
//! agrees to ~1e-6 (tests/gpu_smoke.rs).
//! Input dtypes: f32 as is; f16 and bf16 uploaded as 16-bit values and widened in the kernels
//! (a shader variant per dtype, `override DTYPE`); f64 first has a per-column reference
//! subtracted on the host in f64 (pass 1: the column's first finite value in the unit; pass 2:
//! the centre, so u = x - centre is formed exactly as the CPU forms it, and is 0 exactly when
//! the CPU's is), then goes up as normalised f32 (hi, lo) pairs — 8 bytes a value, like f64 —
//! that the kernels sum in double-f32 (~48 bits). Ill-conditioned statistics (a block sum that
//! nearly cancels, a constant column whose f64 mean is one ulp off) then still match the f64
//! CPU engine. Limits of that f64 path: differences beyond f32's range (> 3.4e38) read as
//! non-finite, and below 1e-38 lose bits (f32 subnormals).
//!
//! Rooms: `context` (device, pipelines, bind-group layouts and the structs the host uploads),
//! `plan` (pure dispatch planning), `pack` (repacking into upload layout), `pool` (reused
//! buffers and the two buffer sets), `launch` (what each unit uploads, runs and reads back),
//! `batch` (staging units and submitting them together), `partials` (the kernels' output
//! structs and their f64 accumulators), `readback` (folding them), `engine` (the `Backend`),
//! `fits` (the fits kernel's packing, dispatch and f64 finish), `gram` (the Gram kernel's dispatch sizes,
//! scaling and f64 sum of its partial tiles), `probe` (adapters and why there are none),
//! `roofline` (bandwidth ceilings), `quiet` (driver noise while probing) and `xmin_scan` (the
//! KS distances of the power-law fits' xmin scans).
//!
//! Only this module names `wgpu`.

mod batch;
mod context;
mod engine;
mod fits;
mod gram;
mod launch;
mod pack;
mod partials;
pub mod plan;
mod pool;
mod probe;
mod quiet;
mod readback;
mod roofline;
mod xmin_scan;

pub use batch::{BATCH_BYTES, BATCH_UNITS};
pub use context::{
    flat_source, ColParams, Dims, Segment, DTYPE_BF16, DTYPE_F16, DTYPE_F32, DTYPE_F64, SHADERS,
    SUBGROUP_MARKER,
};
pub use engine::GpuEngine;
pub use fits::{
    finish as finish_fit, CoordFit, FITS_K_MAX, FITS_WG, FITS_WG_BYTES, FIT_NONE, FIT_NO_SCALE,
    FIT_TIED, MC_WORDS,
};
pub use gram::{GramParams, GRAM_CHUNK, GRAM_DEPTH, GRAM_TILE, GRAM_WG, GRAM_WG_BYTES};
pub use partials::{BlockPartial, FlatPartial, MeanPartial, MomentPartial, TailPartial};
pub use probe::probe_report;
pub use xmin_scan::{XminCand, GPU_EXACT_MAX_N, XMIN_BOUND, XMIN_WG};

/// Options of the GPU engine.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Largest storage binding to use, below the adapter's own limit (tests force tiny
    /// bindings to exercise block splitting).
    pub max_binding_bytes: Option<u64>,
    /// Test seam: the device reports itself lost when unit `n` (counted from 0 over the
    /// engine's life) is launched, as a driver reset or an unplugged GPU would mid-run.
    pub lose_device_at_unit: Option<u64>,
}
