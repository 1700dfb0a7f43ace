//! The GPU engine (wgpu): the twin of `engine::cpu`, with one WGSL kernel per reduction
//! (`shaders/coord_mean.wgsl`, `coord_moments.wgsl`, `coord_tails.wgsl`, `flat_blocks.wgsl`).
//!
//! Each block is cut into *units* that fit the device's binding limit (`plan`), repacked into
//! rows of whole 16-byte words and uploaded; the kernels write per-(row chunk, column) partial
//! states (and per-segment partials for the flat estimator) that are read back and folded into
//! the f64 accumulators with the same `combine` the CPU engine uses. Two sets of buffers
//! alternate, so a unit is packed and uploaded while the previous one computes; a set's results
//! are folded before it is reused.
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
//! Only this module names `wgpu`.

mod context;
pub mod plan;
mod probe;
mod quiet;
mod roofline;

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, FlatSpec, MeanAcc, MomentAcc, TailAcc};
use crate::engine::{AdapterInfo, Backend, Blocks, EngineInfo, PhaseTimes, StatsJob, TensorAcc};
use crate::error::{Error, Result};
use crate::input::{Block, BlockData};

pub use context::{
    flat_source, ColParams, Dims, FlatPartial, Segment, DTYPE_BF16, DTYPE_F16, DTYPE_F32,
    DTYPE_F64, SHADERS, SUBGROUP_MARKER,
};
use context::{pop_scope, Context};
use plan::{COORD_WG, MEAN_FIELDS, MOMENT_FIELDS, TAIL_FIELDS, WORD};
pub use probe::probe_report;

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

/// A buffer that is reallocated only when a larger one is needed.
struct Grow {
    buf: Option<wgpu::Buffer>,
    usage: wgpu::BufferUsages,
    label: &'static str,
}

impl Grow {
    fn new(label: &'static str, usage: wgpu::BufferUsages) -> Self {
        Grow {
            buf: None,
            usage,
            label,
        }
    }

    fn get(&mut self, device: &wgpu::Device, size: u64) -> &wgpu::Buffer {
        let size = size.max(WORD).div_ceil(WORD) * WORD;
        if self.buf.as_ref().is_none_or(|b| b.size() < size) {
            self.buf = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(self.label),
                size,
                usage: self.usage,
                mapped_at_creation: false,
            }));
        }
        self.buf.as_ref().expect("allocated above")
    }
}

/// What a submitted unit's results are, to fold them when its buffer set comes round again.
struct Pending {
    submission: wgpu::SubmissionIndex,
    mapped: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
    /// Bytes mapped from the start of the readback buffer.
    bytes: u64,
    /// Byte offsets of the output sections in the readback buffer.
    sections: Vec<u64>,
    /// Byte offset of the two resolved timestamps, when timing.
    timestamps: Option<u64>,
    /// Absolute columns of the unit.
    cols: Range<usize>,
    groups: usize,
    chunks: usize,
    kind: PendingKind,
}

enum PendingKind {
    /// Pass 1; per-column references subtracted on the host (f64 input), else empty.
    Mean { refs: Vec<f64> },
    /// Pass 2; for each flat segment, its block in the tensor's and the model's flattening,
    /// and the unit's launch shape (where `coord_tails` put the pooled time-block sums).
    Stats {
        seg_blocks: Vec<(usize, usize)>,
        dims: Dims,
    },
}

/// Where folded results go.
enum Sink<'a> {
    Mean(&'a mut [MeanAcc]),
    Stats(&'a mut TensorAcc, &'a mut FlatAcc),
}

/// One buffer set.
struct Slot {
    input: Grow,
    params: Grow,
    segs: Grow,
    out: Grow,
    readback: Grow,
    dims: wgpu::Buffer,
    query: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    pending: Option<Pending>,
}

/// Which kernel a dispatch runs.
#[derive(Clone, Copy)]
enum Kernel {
    Mean,
    Moments,
    Tails,
    Flat,
}

/// One dispatch of a unit: its kernel, sizes, grid and output section.
struct Dispatch {
    kernel: Kernel,
    dims: Dims,
    grid: (u32, u32),
    section: usize,
}

/// Everything a unit uploads and runs.
struct Launch<'a> {
    dtype: u32,
    input: &'a [u8],
    params: &'a [u8],
    segs: &'a [u8],
    out_sizes: &'a [u64],
    dispatches: &'a [Dispatch],
}

/// The GPU engine: a device with its pipelines, two buffer sets, and the last call's kernel
/// time. Implements [`Backend`] like the CPU engine.
pub struct GpuEngine {
    ctx: Context,
    opts: GpuOptions,
    adapter: AdapterInfo,
    slots: [Slot; 2],
    turn: usize,
    /// Host staging for repacked units.
    stage: Vec<u8>,
    kernel_ns: f64,
    kernel_seconds: Option<f64>,
    /// Phases summed over calls since `reset_phases` (for `bench`).
    phases: PhaseTimes,
    /// Units launched so far.
    units: u64,
}

/// How a block's values go up: the kernel variant and bytes per value.
fn upload_type(data: &BlockData) -> (u32, usize) {
    match data {
        BlockData::F32(_) => (DTYPE_F32, 4),
        BlockData::F64(_) => (DTYPE_F64, 8),
        BlockData::F16(_) => (DTYPE_F16, 2),
        BlockData::BF16(_) => (DTYPE_BF16, 2),
    }
}

/// Rows `rows` × columns `cols` (block-relative) of `block` as the kernels read them: `pitch`
/// values per row, zero padded; f64 values minus `refs[j]` (in f64) as (hi, lo) f32 pairs.
/// Borrows the block's own f32, f16 or bf16 data when it is already laid out so.
fn pack<'a>(
    block: &'a Block,
    rows: &Range<usize>,
    cols: &Range<usize>,
    pitch: usize,
    refs: &[f64],
    stage: &'a mut Vec<u8>,
) -> &'a [u8] {
    let width = block.width();
    let w = cols.len();
    if cols.start == 0 && w == width && pitch == width {
        let whole = rows.start * width..rows.end * width;
        match &*block.data {
            BlockData::F32(v) => return bytemuck::cast_slice(&v[whole]),
            BlockData::F16(v) | BlockData::BF16(v) => return bytemuck::cast_slice(&v[whole]),
            BlockData::F64(_) => {}
        }
    }
    let elem = upload_type(&block.data).1;
    stage.clear();
    stage.resize(rows.len() * pitch * elem, 0);
    for (i, r) in rows.clone().enumerate() {
        let src = r * width + cols.start..r * width + cols.end;
        let dst = &mut stage[i * pitch * elem..(i * pitch + w) * elem];
        match &*block.data {
            BlockData::F32(v) => dst.copy_from_slice(bytemuck::cast_slice(&v[src])),
            BlockData::F16(v) | BlockData::BF16(v) => {
                dst.copy_from_slice(bytemuck::cast_slice(&v[src]))
            }
            BlockData::F64(v) => {
                debug_assert_eq!(refs.len(), w, "one reference per column");
                for ((d, &x), &r) in dst.chunks_exact_mut(8).zip(&v[src]).zip(refs) {
                    let x = x - r;
                    let hi = x as f32;
                    let lo = if x.is_finite() {
                        (x - hi as f64) as f32
                    } else {
                        0.0
                    };
                    d[..4].copy_from_slice(&hi.to_ne_bytes());
                    d[4..].copy_from_slice(&lo.to_ne_bytes());
                }
            }
        }
    }
    stage
}

/// Smallest piece [`write_in_pieces`] cuts an upload into.
const UPLOAD_PIECE: usize = 1 << 20;

/// `queue.write_buffer(buf, 0, data)`, in pieces handed over from the rayon pool's threads:
/// wgpu copies each write into staging memory of its own before it takes the queue's lock, so
/// the host copy of a large unit, one thread's memcpy otherwise, runs on every core. The
/// pieces cover disjoint ranges, and all reach the device before the next submission's
/// commands; an error on another thread reaches the device's uncaptured-error handler, which
/// fails the next wait.
fn write_in_pieces(queue: &wgpu::Queue, buf: &wgpu::Buffer, data: &[u8]) {
    use rayon::prelude::*;
    let piece = data
        .len()
        .div_ceil(rayon::current_num_threads())
        .max(UPLOAD_PIECE)
        .next_multiple_of(WORD as usize);
    if data.len() <= piece {
        queue.write_buffer(buf, 0, data);
        return;
    }
    data.par_chunks(piece)
        .enumerate()
        .for_each(|(i, c)| queue.write_buffer(buf, (i * piece) as u64, c));
}

/// Pass-1 references of f64 input: each column's first finite value in the unit, or 0.
fn first_finite(block: &Block, rows: &Range<usize>, cols: &Range<usize>) -> Vec<f64> {
    let BlockData::F64(v) = &*block.data else {
        return Vec::new();
    };
    let width = block.width();
    cols.clone()
        .map(|c| {
            rows.clone()
                .map(|r| v[r * width + c])
                .find(|x| x.is_finite())
                .unwrap_or(0.0)
        })
        .collect()
}

/// Cuts row `row`, absolute columns `cols`, into segments lying in one flat block of both
/// flattenings: `(columns, tensor block, model block)`.
fn segments(
    tensor: &FlatSpec,
    model: &FlatSpec,
    row: usize,
    cols: Range<usize>,
    mut push: impl FnMut(Range<usize>, usize, usize),
) {
    let mut ti = tensor.runs(row, cols.clone());
    let mut mi = model.runs(row, cols.clone());
    let (Some(mut t), Some(mut m)) = (ti.next(), mi.next()) else {
        return;
    };
    let mut c = cols.start;
    while c < cols.end {
        let end = t.1.end.min(m.1.end);
        push(c..end, t.0, m.0);
        c = end;
        if c < cols.end {
            if t.1.end == end {
                t = ti.next().expect("runs cover the columns");
            }
            if m.1.end == end {
                m = mi.next().expect("runs cover the columns");
            }
        }
    }
}

fn read_f32(words: &[u32], i: usize) -> f64 {
    f32::from_bits(words[i]) as f64
}

/// Folds a pass-1 unit's partial states into `out`; `refs` were subtracted on the host.
fn fold_mean(p: &Pending, refs: &[f64], words: &[u32], out: &mut [MeanAcc]) {
    let g4 = p.groups * 4;
    let base = (p.sections[0] / 4) as usize;
    for ch in 0..p.chunks {
        let at = base + ch * MEAN_FIELDS * g4;
        for (j, acc) in out[p.cols.clone()].iter_mut().enumerate() {
            let f = |k: usize| at + k * g4 + j;
            let n = words[f(0)] as u64;
            let r = refs.get(j).copied().unwrap_or(0.0);
            let pair = |k: usize| read_f32(words, f(k)) + read_f32(words, f(k + 1));
            let part = if n == 0 {
                MeanAcc {
                    nonfinite: words[f(1)] as u64,
                    ..MeanAcc::default()
                }
            } else {
                MeanAcc {
                    n,
                    nonfinite: words[f(1)] as u64,
                    // Σx = n·reference + Σ(x - reference), the latter a double-f32 pair.
                    sum: n as f64 * (r + read_f32(words, f(2))) + pair(3),
                    min: r + pair(5),
                    max: r + pair(7),
                }
            };
            acc.combine(&part);
        }
    }
}

/// Folds a pass-2 unit's partial states into the tensor's and the model's state.
fn fold_stats(
    p: &Pending,
    seg_blocks: &[(usize, usize)],
    words: &[u32],
    out: &mut TensorAcc,
    model: &mut FlatAcc,
) {
    let g4 = p.groups * 4;
    let (mb, tb, fb) = (
        (p.sections[0] / 4) as usize,
        (p.sections[1] / 4) as usize,
        (p.sections[2] / 4) as usize,
    );
    let mut finite = 0u64;
    for ch in 0..p.chunks {
        let m_at = mb + ch * MOMENT_FIELDS * g4;
        let t_at = tb + ch * TAIL_FIELDS * g4;
        for (j, acc) in out.coords[p.cols.clone()].iter_mut().enumerate() {
            let m = |k: usize| m_at + k * g4 + j;
            let t = |k: usize| t_at + k * g4 + j;
            let zeros = words[t(0)] as u64;
            let nz = words[t(1)] as u64;
            let n = zeros + nz;
            finite += n;
            // d = d'·2^e: rescale the power sums exactly.
            let sc = 2f64.powi(words[m(4)] as i32);
            let (sc2, sc3, sc4) = (sc * sc, sc * sc * sc, sc * sc * sc * sc);
            let moments = MomentAcc {
                n,
                s1: read_f32(words, m(0)) * sc,
                s2: read_f32(words, m(1)) * sc2,
                s3: read_f32(words, m(2)) * sc3,
                s4: read_f32(words, m(3)) * sc4,
            };
            // Logs were summed as l - L0: add L0 back.
            let l0 = read_f32(words, t(9));
            let (sl, sl2) = (read_f32(words, t(2)), read_f32(words, t(3)));
            let (ny, nx) = (words[t(4)] as u64, words[t(6)] as u64);
            let tails = TailAcc {
                zeros,
                nz,
                sl: sl + nz as f64 * l0,
                sl2: sl2 + 2.0 * l0 * sl + nz as f64 * l0 * l0,
                ny,
                ly: read_f32(words, t(5)) + ny as f64 * l0,
                lm: read_f32(words, t(10)),
                nx,
                lx: read_f32(words, t(7)) + nx as f64 * l0,
                bad_blocks: words[t(8)] as u64,
            };
            acc.combine(&CoordAcc { moments, tails });
        }
    }
    let mut lx = 0.0;
    for (k, &(bt, bm)) in seg_blocks.iter().enumerate() {
        let at = fb + 4 * k;
        let su = read_f32(words, at) + read_f32(words, at + 1);
        lx += read_f32(words, at + 2) + read_f32(words, at + 3);
        out.flat.blocks[bt] += su;
        model.blocks[bm] += su;
    }
    out.flat.n += finite;
    out.flat.lx += lx;
    model.n += finite;
    model.lx += lx;
}

/// Folds `coord_tails`' pooled sums of a unit (after its per-column fields, from word `tail`
/// of the readback) into the tensor's per-time-block sums: one pair of words per (row chunk,
/// time block slot, workgroup), read only for slots whose block closed inside the unit.
fn fold_pooled(d: &Dims, tail: usize, words: &[u32], blocks: &mut [BlockSums]) {
    let (k1, chunk_rows) = (d.k1 as usize, d.chunk_rows as usize);
    let per_chunk = chunk_rows / k1;
    let (row0, col_wgs) = (d.row0 as usize, d.col_wgs as usize);
    let end = (row0 + d.rows as usize).min(d.used_rows as usize);
    let base = tail + d.chunks as usize * TAIL_FIELDS * d.groups as usize * 4;
    for ch in 0..d.chunks as usize {
        for b in 0..per_chunk {
            let start = row0 + ch * chunk_rows + b * k1;
            if start + k1 > end {
                break;
            }
            let sums = &mut blocks[start / k1];
            for w in 0..col_wgs {
                let at = base + 8 * ((ch * per_chunk + b) * col_wgs + w);
                sums.combine(&BlockSums {
                    sx: read_f32(words, at),
                    nx: read_f32(words, at + 1),
                    sy: read_f32(words, at + 2),
                    ny: read_f32(words, at + 3),
                    sm: read_f32(words, at + 4),
                });
            }
        }
    }
}

fn adapter_info(info: &wgpu::AdapterInfo) -> AdapterInfo {
    AdapterInfo {
        name: info.name.clone(),
        backend: info.backend.to_string(),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_owned(),
    }
}

impl GpuEngine {
    /// Any adapter (lavapipe included), honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`;
    /// `Error::NoAdapter` with the likely reason when there is none.
    pub fn new(opts: GpuOptions) -> Result<Self> {
        let adapter = context::adapters_from_env()
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoAdapter(probe::no_adapter_reason()))?;
        Self::with_adapter(adapter, opts)
    }

    /// For `--backend auto`: an engine only on a real GPU (not a CPU device such as lavapipe).
    pub fn new_real_gpu(opts: GpuOptions) -> Result<Option<Self>> {
        let Some(adapter) = context::adapters_from_env().into_iter().next() else {
            tracing::info!(
                "no GPU adapter ({}); using the CPU engine",
                probe::no_adapter_reason()
            );
            return Ok(None);
        };
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            tracing::info!(
                adapter = %info.name,
                "the only GPU adapter is a CPU device (software Vulkan); using the CPU engine (--backend gpu forces it)"
            );
            return Ok(None);
        }
        Self::with_adapter(adapter, opts).map(Some)
    }

    fn with_adapter(adapter: wgpu::Adapter, opts: GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            tracing::warn!(
                adapter = %info.name,
                "the GPU adapter is a CPU device (software Vulkan): results are right, but its timings are not GPU performance"
            );
        }
        let ctx = Context::new(adapter)?;
        tracing::debug!(adapter = %info.name, backend = %info.backend, subgroups = ctx.subgroups, "GPU engine ready");
        let slots = [0, 1].map(|i| Self::slot(&ctx, i));
        Ok(GpuEngine {
            adapter: adapter_info(&info),
            ctx,
            opts,
            slots,
            turn: 0,
            stage: Vec::new(),
            kernel_ns: 0.0,
            kernel_seconds: None,
            phases: PhaseTimes::default(),
            units: 0,
        })
    }

    fn slot(ctx: &Context, i: usize) -> Slot {
        use wgpu::BufferUsages as U;
        let d = &ctx.device;
        let ualign = ctx.limits.min_uniform_buffer_offset_alignment as u64;
        let (_, dims_size) = plan::sections(&[std::mem::size_of::<Dims>() as u64; 3], ualign);
        let query = ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                (
                    d.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("gradtail.timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    }),
                    d.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("gradtail.timestamps"),
                        size: 16,
                        usage: U::QUERY_RESOLVE | U::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                )
            });
        Slot {
            input: Grow::new("gradtail.input", U::STORAGE | U::COPY_DST),
            params: Grow::new("gradtail.params", U::STORAGE | U::COPY_DST),
            segs: Grow::new("gradtail.segments", U::STORAGE | U::COPY_DST),
            out: Grow::new("gradtail.partials", U::STORAGE | U::COPY_SRC),
            readback: Grow::new("gradtail.readback", U::MAP_READ | U::COPY_DST),
            dims: d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(if i == 0 {
                    "gradtail.dims.0"
                } else {
                    "gradtail.dims.1"
                }),
                size: dims_size,
                usage: U::UNIFORM | U::COPY_DST,
                mapped_at_creation: false,
            }),
            query,
            pending: None,
        }
    }

    /// The adapter in use: name, backend, device type and driver.
    pub fn adapter(&self) -> &AdapterInfo {
        &self.adapter
    }

    /// Whether the adapter is a CPU device (lavapipe, llvmpipe): its timings are not GPU ones.
    pub fn is_cpu_device(&self) -> bool {
        self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Kernel time of the last `coord_mean` / `coord_stats` call, summed over its dispatches,
    /// from timestamp queries (None when the adapter has none).
    pub fn kernel_seconds(&self) -> Option<f64> {
        self.kernel_seconds
    }

    /// Whether `flat_blocks` reduces with subgroup operations on this adapter.
    pub fn uses_subgroups(&self) -> bool {
        self.ctx.subgroups
    }

    /// Runs `body` over a call's blocks, then folds what is still in flight; on failure,
    /// forgets every in-flight unit (its results belong to the failed call).
    fn call(
        &mut self,
        sink: &mut Sink<'_>,
        body: impl FnOnce(&mut Self, &mut Sink<'_>) -> Result<()>,
    ) -> Result<()> {
        self.kernel_ns = 0.0;
        let result = body(self, sink).and_then(|()| {
            for _ in 0..2 {
                let s = self.turn;
                self.turn ^= 1;
                self.finish(s, sink)?;
            }
            Ok(())
        });
        if result.is_err() {
            for slot in &mut self.slots {
                // A readback may still be mapped or mapping: never reuse it.
                slot.pending = None;
                slot.readback.buf = None;
            }
        }
        self.kernel_seconds = self
            .ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then_some(self.kernel_ns * 1e-9);
        if let Some(k) = self.kernel_seconds {
            *self.phases.kernel_s.get_or_insert(0.0) += k;
        }
        result
    }

    /// The next buffer set, its earlier results folded.
    fn take_slot(&mut self, sink: &mut Sink<'_>) -> Result<usize> {
        let s = self.turn;
        self.turn ^= 1;
        self.finish(s, sink)?;
        Ok(s)
    }

    /// Waits for slot `s`'s unit, if any, and folds its results into `sink`.
    fn finish(&mut self, s: usize, sink: &mut Sink<'_>) -> Result<()> {
        let Some(p) = self.slots[s].pending.take() else {
            return Ok(());
        };
        let readback = self.slots[s]
            .readback
            .buf
            .clone()
            .ok_or_else(|| Error::Gpu("readback buffer missing".into()))?;
        let t = Instant::now();
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(p.submission.clone()),
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.phases.readback_wait_s += t.elapsed().as_secs_f64();
        self.ctx.check_fault()?;
        let mapped = p.mapped.lock().unwrap_or_else(|e| e.into_inner()).take();
        match mapped {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                self.slots[s].readback.buf = None;
                return Err(Error::Gpu(format!("reading results back: {e}")));
            }
            None => {
                self.slots[s].readback.buf = None;
                return Err(Error::Gpu(
                    "reading results back: the mapping did not complete".into(),
                ));
            }
        }
        let words: Vec<u32> = {
            let view = readback
                .slice(..p.bytes)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading results back: {e}")))?;
            view.chunks_exact(4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        readback.unmap();
        self.phases.readback_s += t.elapsed().as_secs_f64();
        self.phases.readback_bytes += p.bytes;
        let t = Instant::now();
        if let Some(at) = p.timestamps {
            let at = (at / 4) as usize;
            let t = |i: usize| words[at + 2 * i] as u64 | (words[at + 2 * i + 1] as u64) << 32;
            let ticks = t(1).saturating_sub(t(0));
            self.kernel_ns += ticks as f64 * self.ctx.queue.get_timestamp_period() as f64;
        }
        match (&p.kind, sink) {
            (PendingKind::Mean { refs }, Sink::Mean(out)) => fold_mean(&p, refs, &words, out),
            (PendingKind::Stats { seg_blocks, dims }, Sink::Stats(out, model)) => {
                fold_stats(&p, seg_blocks, &words, out, model);
                fold_pooled(dims, (p.sections[1] / 4) as usize, &words, &mut out.blocks);
            }
            _ => {
                return Err(Error::Gpu(
                    "internal: results of another pass in flight".into(),
                ))
            }
        }
        self.phases.fold_s += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Uploads a unit into slot `s`, runs its dispatches and starts reading the partials back.
    fn launch(&mut self, s: usize, l: &Launch<'_>) -> Result<(wgpu::SubmissionIndex, PendingIo)> {
        self.units += 1;
        if self.opts.lose_device_at_unit == Some(self.units - 1) {
            return Err(Error::GpuFault(
                "device lost (simulated by GpuOptions::lose_device_at_unit)".into(),
            ));
        }
        self.ctx.ensure_pipelines(l.dtype)?;
        let ctx = &self.ctx;
        let device = &ctx.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let slot = &mut self.slots[s];
        let salign = ctx.limits.min_storage_buffer_offset_alignment as u64;
        let ualign = ctx.limits.min_uniform_buffer_offset_alignment as u64;
        let (out_at, out_total) = plan::sections(l.out_sizes, salign);
        let (dims_at, _) = plan::sections(&[std::mem::size_of::<Dims>() as u64; 3], ualign);

        let t = Instant::now();
        let input = slot.input.get(device, l.input.len() as u64).clone();
        write_in_pieces(&ctx.queue, &input, l.input);
        let params = slot.params.get(device, l.params.len() as u64).clone();
        if !l.params.is_empty() {
            ctx.queue.write_buffer(&params, 0, l.params);
        }
        let segs = slot.segs.get(device, l.segs.len() as u64).clone();
        if !l.segs.is_empty() {
            ctx.queue.write_buffer(&segs, 0, l.segs);
        }
        let out = slot.out.get(device, out_total).clone();
        let ts_at = out_total;
        let rb_size = out_total + if slot.query.is_some() { 16 } else { 0 };
        let readback = slot.readback.get(device, rb_size).clone();
        for (i, d) in l.dispatches.iter().enumerate() {
            ctx.queue
                .write_buffer(&slot.dims, dims_at[i], bytemuck::bytes_of(&d.dims));
        }
        self.phases.upload_s += t.elapsed().as_secs_f64();
        self.phases.upload_bytes += (l.input.len()
            + l.params.len()
            + l.segs.len()
            + l.dispatches.len() * std::mem::size_of::<Dims>())
            as u64;

        let pipes = ctx.pipelines[l.dtype as usize]
            .as_ref()
            .expect("compiled above");
        let mut groups = Vec::with_capacity(l.dispatches.len());
        for (i, d) in l.dispatches.iter().enumerate() {
            let mut entries = vec![
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: bind(&slot.dims, dims_at[i], std::mem::size_of::<Dims>() as u64),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: bind(&input, 0, l.input.len() as u64),
                },
            ];
            let (layout, pipeline) = match d.kernel {
                Kernel::Mean => (&ctx.layouts.mean, &pipes.mean),
                Kernel::Moments => (&ctx.layouts.coords, &pipes.moments),
                Kernel::Tails => (&ctx.layouts.coords, &pipes.tails),
                Kernel::Flat => (&ctx.layouts.flat, &pipes.flat),
            };
            if !matches!(d.kernel, Kernel::Mean) {
                entries.push(wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bind(&params, 0, l.params.len() as u64),
                });
            }
            if matches!(d.kernel, Kernel::Flat) {
                entries.push(wgpu::BindGroupEntry {
                    binding: 3,
                    resource: bind(&segs, 0, l.segs.len() as u64),
                });
            }
            entries.push(wgpu::BindGroupEntry {
                binding: entries.len() as u32,
                resource: bind(&out, out_at[d.section], l.out_sizes[d.section]),
            });
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gradtail.unit"),
                layout,
                entries: &entries,
            });
            groups.push((pipeline, bg, d.grid));
        }

        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gradtail.unit"),
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gradtail.unit"),
                timestamp_writes: slot.query.as_ref().map(|(qs, _)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }
                }),
            });
            for (pipeline, bg, (x, y)) in &groups {
                if *x == 0 {
                    continue;
                }
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
        }
        enc.copy_buffer_to_buffer(&out, 0, &readback, 0, out_total);
        if let Some((qs, resolve)) = &slot.query {
            enc.resolve_query_set(qs, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, &readback, ts_at, 16);
        }
        let t = Instant::now();
        let submission = ctx.queue.submit([enc.finish()]);
        self.phases.submit_s += t.elapsed().as_secs_f64();
        self.phases.units += 1;
        self.phases.submits += 1;
        let mapped = Arc::new(Mutex::new(None));
        {
            let mapped = Arc::clone(&mapped);
            readback
                .slice(..rb_size)
                .map_async(wgpu::MapMode::Read, move |r| {
                    *mapped.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
        }
        pop_scope(oom, "out of GPU memory")?;
        pop_scope(validation, "running the kernels")?;
        Ok((
            submission,
            PendingIo {
                mapped,
                bytes: rb_size,
                sections: out_at,
                timestamps: slot.query.is_some().then_some(ts_at),
            },
        ))
    }

    fn mean_block(&mut self, block: &Block, sink: &mut Sink<'_>) -> Result<()> {
        let (dtype, elem) = upload_type(&block.data);
        let spec = plan::UnitSpec {
            elem,
            align: 1,
            fields: MEAN_FIELDS,
            params: false,
            flat: None,
        };
        let caps = self.ctx.caps(self.opts.max_binding_bytes);
        let units =
            plan::units(block.rows.len(), block.width(), &spec, &caps).map_err(Error::Gpu)?;
        let mut stage = std::mem::take(&mut self.stage);
        for unit in units {
            let s = self.take_slot(sink)?;
            let w = unit.cols.len();
            let h = unit.rows.len();
            let pitch = plan::pitch(w, elem);
            let t = Instant::now();
            let refs = first_finite(block, &unit.rows, &unit.cols);
            let input = pack(block, &unit.rows, &unit.cols, pitch, &refs, &mut stage);
            self.phases.upload_s += t.elapsed().as_secs_f64();
            let row0 = block.rows.start + unit.rows.start;
            let (dims, grid) = coord_dims(h, w, pitch, elem, row0, 0, 1, caps.max_dim)?;
            let out_sizes = [(dims.chunks * dims.groups) as u64 * MEAN_FIELDS as u64 * WORD];
            let launch = Launch {
                dtype,
                input,
                params: &[],
                segs: &[],
                out_sizes: &out_sizes,
                dispatches: &[Dispatch {
                    kernel: Kernel::Mean,
                    dims,
                    grid,
                    section: 0,
                }],
            };
            let (submission, io) = self.launch(s, &launch)?;
            let a0 = block.cols.start + unit.cols.start;
            self.slots[s].pending = Some(io.pending(
                submission,
                a0..a0 + w,
                dims.groups as usize,
                dims.chunks as usize,
                PendingKind::Mean { refs },
            ));
        }
        self.stage = stage;
        Ok(())
    }

    fn stats_block(
        &mut self,
        job: &StatsJob<'_>,
        block: &Block,
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        if !block.rows.start.is_multiple_of(job.k1) {
            return Err(Error::Gpu(format!(
                "internal: block rows {:?} do not start at a multiple of K1 = {}",
                block.rows, job.k1
            )));
        }
        let (dtype, elem) = upload_type(&block.data);
        let spec = plan::UnitSpec {
            elem,
            align: job.k1,
            fields: MOMENT_FIELDS + TAIL_FIELDS,
            params: true,
            flat: Some((job.flat_tensor.m, job.flat_model.m)),
        };
        let caps = self.ctx.caps(self.opts.max_binding_bytes);
        let units =
            plan::units(block.rows.len(), block.width(), &spec, &caps).map_err(Error::Gpu)?;
        let f64_input = matches!(*block.data, BlockData::F64(_));
        let mut stage = std::mem::take(&mut self.stage);
        let result = (|| {
            for unit in units {
                let s = self.take_slot(sink)?;
                let w = unit.cols.len();
                let h = unit.rows.len();
                let a0 = block.cols.start + unit.cols.start;
                let acols = a0..a0 + w;
                let pitch = plan::pitch(w, elem);
                let groups = plan::groups(w);
                // f64 input is centred on the host, in f64, exactly as the CPU centres it: the
                // kernels then see centre 0 and the shift relative to the centre.
                let refs: Vec<f64> = if f64_input {
                    job.centre[acols.clone()].to_vec()
                } else {
                    Vec::new()
                };
                let t = Instant::now();
                let input = pack(block, &unit.rows, &unit.cols, pitch, &refs, &mut stage);
                self.phases.upload_s += t.elapsed().as_secs_f64();
                let mut params = vec![ColParams::default(); groups * 4];
                for (j, c) in acols.clone().enumerate() {
                    let r = refs.get(j).copied().unwrap_or(0.0);
                    params[j] = ColParams::new(job.shift[c] - r, job.centre[c] - r, job.pool[c]);
                }
                let mut segs = Vec::new();
                let mut seg_blocks = Vec::new();
                let r0 = block.rows.start + unit.rows.start;
                for r in 0..h {
                    segments(
                        &job.flat_tensor,
                        &job.flat_model,
                        r0 + r,
                        acols.clone(),
                        |cols, bt, bm| {
                            segs.push(Segment {
                                row: r as u32,
                                c0: (cols.start - a0) as u32,
                                c1: (cols.end - a0) as u32,
                                pad: 0,
                            });
                            seg_blocks.push((bt, bm));
                        },
                    );
                }
                let (dims, grid) =
                    coord_dims(h, w, pitch, elem, r0, job.used_rows, job.k1, caps.max_dim)?;
                let flat_grid = plan::grid(segs.len(), caps.max_dim).map_err(Error::Gpu)?;
                let flat_dims = Dims {
                    grid_x: flat_grid.0,
                    items: segs.len() as u32,
                    ..dims
                };
                let coord_out =
                    |fields: usize| (dims.chunks * dims.groups) as u64 * fields as u64 * WORD;
                let pooled = plan::pooled_words(
                    dims.chunks as usize,
                    dims.chunk_rows as usize,
                    job.k1,
                    groups,
                ) as u64;
                let out_sizes = [
                    coord_out(MOMENT_FIELDS),
                    coord_out(TAIL_FIELDS) + pooled * WORD,
                    (segs.len() * std::mem::size_of::<FlatPartial>()) as u64,
                ];
                let dispatches = [
                    Dispatch {
                        kernel: Kernel::Moments,
                        dims,
                        grid,
                        section: 0,
                    },
                    Dispatch {
                        kernel: Kernel::Tails,
                        dims,
                        grid,
                        section: 1,
                    },
                    Dispatch {
                        kernel: Kernel::Flat,
                        dims: flat_dims,
                        grid: flat_grid,
                        section: 2,
                    },
                ];
                let launch = Launch {
                    dtype,
                    input,
                    params: bytemuck::cast_slice(&params),
                    segs: bytemuck::cast_slice(&segs),
                    out_sizes: &out_sizes,
                    dispatches: &dispatches,
                };
                let (submission, io) = self.launch(s, &launch)?;
                self.slots[s].pending = Some(io.pending(
                    submission,
                    acols,
                    groups,
                    dims.chunks as usize,
                    PendingKind::Stats { seg_blocks, dims },
                ));
            }
            Ok(())
        })();
        self.stage = stage;
        result
    }
}

/// A binding of `size` bytes (rounded up to whole vec4 words) at `offset` of `buf`.
fn bind(buf: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset,
        size: wgpu::BufferSize::new(size.max(WORD).div_ceil(WORD) * WORD),
    })
}

/// The readback side of a launched unit.
struct PendingIo {
    mapped: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
    bytes: u64,
    sections: Vec<u64>,
    timestamps: Option<u64>,
}

impl PendingIo {
    fn pending(
        self,
        submission: wgpu::SubmissionIndex,
        cols: Range<usize>,
        groups: usize,
        chunks: usize,
        kind: PendingKind,
    ) -> Pending {
        Pending {
            submission,
            mapped: self.mapped,
            bytes: self.bytes,
            sections: self.sections,
            timestamps: self.timestamps,
            cols,
            groups,
            chunks,
            kind,
        }
    }
}

/// Launch shape of the per-coordinate kernels for a unit of `h` rows × `w` columns: threads
/// own four columns each, row chunks are multiples of `k1` (1 for `coord_mean`).
#[allow(clippy::too_many_arguments)] // the unit's geometry, each argument a plain number
fn coord_dims(
    h: usize,
    w: usize,
    pitch: usize,
    elem: usize,
    row0: usize,
    used_rows: usize,
    k1: usize,
    max_dim: u32,
) -> Result<(Dims, (u32, u32))> {
    let groups = plan::groups(w);
    let (chunk_rows, chunks) = plan::chunking(h, groups, k1);
    let col_wgs = groups.div_ceil(COORD_WG as usize);
    let items = col_wgs * chunks;
    let grid = plan::grid(items, max_dim).map_err(Error::Gpu)?;
    let dims = Dims {
        rows: h as u32,
        groups: groups as u32,
        row_words: (pitch * elem / WORD as usize) as u32,
        chunk_rows: chunk_rows as u32,
        chunks: chunks as u32,
        col_wgs: col_wgs as u32,
        grid_x: grid.0,
        items: items as u32,
        row0: row0 as u32,
        used_rows: used_rows as u32,
        k1: k1 as u32,
        one: 1.0,
    };
    Ok((dims, grid))
}

impl Backend for GpuEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            engine: "gpu",
            threads: 1,
            adapter: Some(self.adapter.clone()),
        }
    }

    fn phases(&self) -> Option<PhaseTimes> {
        Some(self.phases)
    }

    fn single_read(&self) -> bool {
        false
    }

    /// f32 element work: centred values and block sums of a coordinate whose largest |x| is
    /// below 2^-100 come within ~26 binades of f32's subnormal range, which GPUs flush to 0;
    /// block sums of values above 2^100 approach f32's overflow.
    fn magnitude_range(&self) -> Option<(f64, f64)> {
        Some((2f64.powi(-100), 2f64.powi(100)))
    }

    fn reset_phases(&mut self) {
        self.phases = PhaseTimes::default();
    }

    fn coord_mean(&mut self, blocks: Blocks<'_>, out: &mut [MeanAcc]) -> Result<()> {
        let mut sink = Sink::Mean(out);
        self.call(&mut sink, |eng, sink| {
            for block in blocks {
                eng.mean_block(&block?, sink)?;
            }
            Ok(())
        })
    }

    fn coord_stats(
        &mut self,
        job: &StatsJob<'_>,
        blocks: Blocks<'_>,
        out: &mut TensorAcc,
        model: &mut FlatAcc,
    ) -> Result<()> {
        let mut sink = Sink::Stats(out, model);
        self.call(&mut sink, |eng, sink| {
            for block in blocks {
                eng.stats_block(job, &block?, sink)?;
            }
            Ok(())
        })
    }
}
