//! The CPU engine: each kernel is a loop over a block's rows, parallel over column strips
//! with rayon (pass 2 in cache-sized tiles of a strip, `tile`; on AVX-512 processors eight
//! columns at a time in registers, `tile::avx512`, with the same results). A block that holds
//! whole columns gets both passes strip by strip (`coord_both`), so pass 2 reads the strip
//! pass 1 has just brought into cache. Pass 1 reads f32 values as
//! they are; pass 2 widens each value to f64 once. Accumulation is f64 throughout, so this
//! engine is also the reference the GPU engine is tested against. The structure step's Gram
//! matrix (twin of `shaders/gram.wgsl`) is faer's triangular product, in `gram`.

use std::ops::Range;

use ndarray::{s, ArrayView2};
use rayon::prelude::*;

mod gram;
mod tile;
pub use gram::gram;
use tile::coord_stats_body;

use super::accum::{BlockSums, CoordAcc, FlatAcc, MeanAcc};
use super::{Backend, Blocks, Derive, Derived, EngineInfo, StatsJob, TensorAcc};
use crate::error::{Error, Result};
use crate::input::{Block, BlockView};
use crate::stats::fits::{self, Fits};
use crate::stats::sort::{self, LANES, LANES_MAX};
use crate::stats::structure::xmin_scan::{host_scan, ScanJob, Scanned};
use crate::stats::structure::Gram;

/// Columns per rayon task: enough work to amortise scheduling, small enough to stay in L2.
const STRIP: usize = 2048;

pub struct CpuEngine {
    pool: rayon::ThreadPool,
}

impl CpuEngine {
    /// `threads == 0` uses every core.
    pub fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gradtail-cpu-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("cannot start {threads} threads: {e}")))?;
        Ok(CpuEngine { pool })
    }
}

/// Columns per task for a block `width` columns wide: up to 64 tasks, whatever the thread
/// count, so pooled sums (combined strip by strip, in order) come out bit-identical on any
/// number of threads.
fn strips(width: usize) -> usize {
    width.div_ceil(64).clamp(64, STRIP)
}

impl Backend for CpuEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            engine: "cpu",
            threads: self.pool.current_num_threads(),
            adapter: None,
        }
    }

    fn coord_mean(&mut self, blocks: Blocks<'_>, out: &mut [MeanAcc]) -> Result<()> {
        for block in blocks {
            let block = block?;
            let strip = strips(block.width());
            let dst = &mut out[block.cols.clone()];
            self.pool.install(|| {
                dst.par_chunks_mut(strip)
                    .enumerate()
                    .for_each(|(s, acc)| coord_mean(&block, s * strip, acc));
            });
        }
        Ok(())
    }

    fn coord_stats(
        &mut self,
        job: &StatsJob<'_>,
        blocks: Blocks<'_>,
        out: &mut TensorAcc,
        model: &mut FlatAcc,
    ) -> Result<()> {
        for block in blocks {
            let block = block?;
            let strip = strips(block.width());
            let dst = &mut out.coords[block.cols.clone()];
            let partials: Vec<FlatPartial> = self.pool.install(|| {
                dst.par_chunks_mut(strip)
                    .enumerate()
                    .map(|(s, acc)| coord_stats(job, &block, s * strip, acc))
                    .collect()
            });
            fold_partials(partials, out, model);
        }
        Ok(())
    }

    /// Each strip of columns gets pass 1, its derivation and pass 2 in one task, so pass 2
    /// reads the strip from cache rather than memory and the block needs one parallel region
    /// instead of two. The results are those of the passes run one after the other.
    #[allow(clippy::too_many_arguments)] // as the trait's
    fn coord_both(
        &mut self,
        job: &StatsJob<'_>,
        block: Block,
        derive: Derive<'_>,
        mean: &mut [MeanAcc],
        inputs: Derived<'_>,
        out: &mut TensorAcc,
        model: &mut FlatAcc,
    ) -> Result<()> {
        let strip = strips(block.width());
        let dst = &mut out.coords[block.cols.clone()];
        let Derived {
            shift,
            spread,
            centre,
            pool,
        } = inputs;
        let block = &block;
        let partials: Result<Vec<FlatPartial>> = self.pool.install(|| {
            dst.par_chunks_mut(strip)
                .zip(mean.par_chunks_mut(strip))
                .zip(shift.par_chunks_mut(strip))
                .zip(spread.par_chunks_mut(strip))
                .zip(centre.par_chunks_mut(strip))
                .zip(pool.par_chunks_mut(strip))
                .enumerate()
                .map(|(s, (((((acc, mean), shift), spread), centre), pool))| {
                    let first = s * strip;
                    coord_mean(block, first, mean);
                    let mut inputs = Derived {
                        shift,
                        spread,
                        centre,
                        pool,
                    };
                    derive(mean, inputs.reborrow())?;
                    let job = inputs.job(job, block.cols.start + first);
                    Ok(coord_stats(&job, block, first, acc))
                })
                .collect()
        });
        fold_partials(partials?, out, model);
        Ok(())
    }

    /// CPU twin of `shaders/xmin_scan.wgsl`: `Sample::distance` in f64 at every candidate,
    /// exact (bound 0), on this engine's threads.
    fn xmin_scan(&mut self, jobs: &[ScanJob<'_>]) -> Result<Scanned> {
        Ok(self.pool.install(|| host_scan(jobs)))
    }

    fn coord_fits(
        &mut self,
        block: &Block,
        usable: &[bool],
        centre: &[f64],
        out: &mut [Fits],
    ) -> Result<()> {
        self.pool.install(|| coord_fits(block, usable, centre, out));
        Ok(())
    }

    fn gram(&mut self, block: &Block, centre: &[f64], out: &mut Gram) -> Result<()> {
        self.pool
            .install(|| gram(block, centre, out))
            .map_err(|e| Error::Config(format!("internal: {e}")))
    }
}

/// Bytes of one host task's column-major tile (K × columns, f64) in the whole-column step:
/// about an L2 cache.
pub const TILE_BYTES: usize = 256 << 10;
/// Most columns per task, so a strip of a few thousand columns still spreads over threads.
const MAX_TILE: usize = 64;

/// Columns per host task of the whole-column step for K samples per column.
pub fn tile_columns(k: usize) -> usize {
    (TILE_BYTES / (8 * k.max(1))).clamp(1, MAX_TILE)
}

/// One fitting task's buffers, reused across its tiles.
#[derive(Default)]
struct FitScratch {
    /// The tile, column-major (`Block::gather_columns`).
    cols: Vec<f64>,
    /// Eight columns' finite samples less their centres as sort keys, side by side
    /// (`sort::sort_lanes`).
    keys: Vec<[u64; LANES]>,
    /// One widened row of the tile's grouped columns.
    row: Vec<f64>,
    /// One column's finite samples less its centre, in sampling order, and sorted.
    finite: Vec<f64>,
    sorted: Vec<f64>,
    /// The per-point columns of `fits::fit_presorted` (and the sort copy of
    /// `fits::fit_column`).
    points: Vec<f64>,
}

/// CPU twin of `shaders/coord_fits.wgsl` ([`Backend::coord_fits`]): `fits::fit_column` of
/// each usable column's finite samples less its centre, in sampling order, over tiles of
/// columns in parallel (in the caller's rayon pool), with no allocation once a task's buffers
/// have grown. On AVX-512 processors the columns of a tile are sorted eight at a time in
/// vector lanes (`sort::sort_lanes`, its keys read from the block's rows, where eight
/// neighbouring columns lie side by side); sorting each column on its own was a tenth of a
/// default run. `usable`, `centre` and `out` have one entry per column of the block. The GPU
/// engine falls back to it where its kernel cannot run.
pub fn coord_fits(block: &Block, usable: &[bool], centre: &[f64], out: &mut [Fits]) {
    let k = block.rows.len();
    let tile = tile_columns(k);
    let rows = k.next_power_of_two();
    let lanes = sort::lanes_fast() && rows <= LANES_MAX;
    let view = block.view();
    out.par_chunks_mut(tile)
        .enumerate()
        .for_each_init(FitScratch::default, |s, (t, out)| {
            let first = t * tile;
            block.gather_columns(first..first + out.len(), &mut s.cols);
            // Whole groups of eight columns, sorted in lanes; the rest one at a time.
            let grouped = if lanes { out.len() / LANES * LANES } else { 0 };
            if grouped > 0 {
                let cols = first..first + grouped;
                tile_keys(&view, cols.clone(), &centre[cols], rows, s);
                s.keys.chunks_mut(rows).for_each(sort::sort_lanes);
            }
            for (j, o) in out.iter_mut().enumerate() {
                let c = first + j;
                if !usable[c] {
                    *o = Fits::NAN;
                    continue;
                }
                s.finite.clear();
                let column = s.cols[j * k..(j + 1) * k].iter().filter(|x| x.is_finite());
                s.finite.extend(column.map(|x| x - centre[c]));
                *o = if j < grouped {
                    let keys = &s.keys[j / LANES * rows..][..s.finite.len()];
                    lane_values(keys, j % LANES, &mut s.sorted);
                    fits::fit_presorted(&s.finite, &s.sorted, &mut s.points)
                } else {
                    fits::fit_column(&s.finite, &mut s.points)
                };
            }
        });
}

multiversion! {
    /// The sort keys of columns `cols` of the block less `centre`, eight columns to a group of
    /// `rows` rows of `s.keys` (row i of group g: sample i of columns 8g..8g + 8), read row by
    /// row; a non-finite sample's key and the rows past K are `u64::MAX`, after every finite
    /// key, so a column's first n sorted keys are its n finite samples.
    fn tile_keys(view: &BlockView<'_>, cols: Range<usize>, centre: &[f64], rows: usize, s: &mut FitScratch) => tile_keys_body
}

#[inline(always)]
fn tile_keys_body(
    view: &BlockView<'_>,
    cols: Range<usize>,
    centre: &[f64],
    rows: usize,
    s: &mut FitScratch,
) {
    let groups = cols.len() / LANES;
    s.keys.clear();
    s.keys.resize(groups * rows, [u64::MAX; LANES]);
    s.row.resize(cols.len(), 0.0);
    for r in 0..view.rows() {
        view.widen_row(r, cols.clone(), &mut s.row);
        for (g, (x, c)) in s
            .row
            .chunks_exact(LANES)
            .zip(centre.chunks_exact(LANES))
            .enumerate()
        {
            let key = &mut s.keys[g * rows + r];
            for t in 0..LANES {
                // All ones where the sample is not finite.
                let missing = (!x[t].is_finite() as u64).wrapping_neg();
                key[t] = sort::key((x[t] - c[t]).to_bits()) | missing;
            }
        }
    }
}

/// Lane `lane` of `keys`, as the f64 they key, into `out`.
fn lane_values(keys: &[[u64; LANES]], lane: usize, out: &mut Vec<f64>) {
    out.clear();
    out.extend(keys.iter().map(|k| f64::from_bits(sort::unkey(k[lane]))));
}

/// Body of [`coord_mean`].
#[inline(always)]
fn coord_mean_body(block: &Block, first: usize, acc: &mut [MeanAcc]) {
    let cols = first..first + acc.len();
    let (n, sum, lo, hi) = match block.view() {
        BlockView::F32(tile) => mean_rows_f32(tile.slice(s![.., cols])),
        view => mean_rows_wide(view, cols),
    };
    let rows = block.rows.len() as u64;
    for (j, a) in acc.iter_mut().enumerate() {
        let finite = n[j] as u64;
        a.combine(&MeanAcc {
            n: finite,
            nonfinite: rows - finite,
            sum: sum[j],
            min: lo[j],
            max: hi[j],
        });
    }
}

/// Rows ahead of the one being summed that pass 1 asks for.
const MEAN_AHEAD: usize = 8;

/// Per column of a strip: finite count, sum, min and max.
type StripMeans = (Vec<u32>, Vec<f64>, Vec<f64>, Vec<f64>);

/// Pass 1 over f32 values without widening them to f64 first: the range is taken in f32
/// (widening is exact, so the f64 range is the same) and only the sum is widened, eight lanes
/// to a 256-bit register instead of four. Subnormals count as 0, as in `BlockView`.
#[inline(always)]
fn mean_rows_f32(tile: ArrayView2<f32>) -> StripMeans {
    let w = tile.ncols();
    let mut n = vec![0u32; w];
    let mut sum = vec![0.0f64; w];
    let (mut lo, mut hi) = (vec![f32::INFINITY; w], vec![f32::NEG_INFINITY; w]);
    let (base, stride) = (tile.as_ptr(), tile.strides()[0]);
    for (r, row) in tile.rows().into_iter().enumerate() {
        // A strip's rows lie a block width apart, too far for the hardware prefetcher.
        tile::prefetch_ptr(base.wrapping_offset(stride * (r + MEAN_AHEAD) as isize), w);
        let row = row
            .to_slice()
            .expect("rows of a C-order tile are contiguous");
        let (n, sum, lo, hi) = (&mut n[..w], &mut sum[..w], &mut lo[..w], &mut hi[..w]);
        for j in 0..w {
            let x = row[j];
            let e = x.to_bits() & 0x7f80_0000;
            let fin = e != 0x7f80_0000;
            let x = if e == 0 { 0.0 } else { x };
            n[j] += fin as u32;
            sum[j] += if fin { x } else { 0.0 } as f64;
            let (l, h) = if fin {
                (x, x)
            } else {
                (f32::INFINITY, f32::NEG_INFINITY)
            };
            lo[j] = if l < lo[j] { l } else { lo[j] };
            hi[j] = if h > hi[j] { h } else { hi[j] };
        }
    }
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect();
    (n, sum, widen(lo), widen(hi))
}

/// Pass 1 over values widened to f64 (f16, bf16, f64 inputs).
#[inline(always)]
fn mean_rows_wide(view: BlockView<'_>, cols: Range<usize>) -> StripMeans {
    let w = cols.len();
    let mut row = vec![0.0; w];
    // Branch-free running sums, one array each, so the row loop vectorises.
    let (mut n, mut sum) = (vec![0u32; w], vec![0.0; w]);
    let (mut lo, mut hi) = (vec![f64::INFINITY; w], vec![f64::NEG_INFINITY; w]);
    for r in 0..view.rows() {
        view.widen_row(r, cols.clone(), &mut row);
        for j in 0..w {
            let x = row[j];
            let fin = x.is_finite();
            n[j] += fin as u32;
            sum[j] += if fin { x } else { 0.0 };
            lo[j] = if fin && x < lo[j] { x } else { lo[j] };
            hi[j] = if fin && x > hi[j] { x } else { hi[j] };
        }
    }
    (n, sum, lo, hi)
}

multiversion! {
    /// CPU twin of `shaders/coord_mean.wgsl`: folds columns `first..first + acc.len()` of the
    /// block (relative to the block's columns) into `acc`.
    pub fn coord_mean(block: &Block, first: usize, acc: &mut [MeanAcc]) => coord_mean_body
}

/// CPU twin of `coord_stats.wgsl` and `flat_blocks.wgsl`: pass 2 over columns
/// `first..first + acc.len()` of the block, in registers on processors with AVX-512
/// (`tile::avx512`), else the portable kernel.
fn coord_stats(
    job: &StatsJob<'_>,
    block: &Block,
    first: usize,
    acc: &mut [CoordAcc],
) -> FlatPartial {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the processor supports AVX-512 F and DQ, checked just above.
        return unsafe { tile::avx512::coord_stats::<true>(job, block, first, acc) };
    }
    coord_stats_portable(job, block, first, acc)
}

/// Whether the processor has the AVX-512 subsets (F, DQ) of the register kernel.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq")
}

multiversion! {
    /// The portable pass-2 kernel, [`tile::coord_stats_body`].
    fn coord_stats_portable(job: &StatsJob<'_>, block: &Block, first: usize, acc: &mut [CoordAcc]) -> FlatPartial => coord_stats_body
}

/// Folds the strips' partial pooled states, in strip order, into the tensor's and the whole
/// input's.
fn fold_partials(partials: Vec<FlatPartial>, out: &mut TensorAcc, model: &mut FlatAcc) {
    for p in partials {
        out.flat.n += p.n;
        out.flat.lx += p.lx;
        model.n += p.n;
        model.lx += p.lx;
        for (b, y) in p.tensor {
            out.flat.blocks[b] += y;
        }
        for (b, y) in p.model {
            model.blocks[b] += y;
        }
        for (b, sums) in p.blocks {
            out.blocks[b].combine(&sums);
        }
    }
}

/// One strip's share of the pooled state: the flat (Simsekli) state, whose block
/// contributions are kept sparse because a strip touches only a few flat blocks per row, and
/// the per-time-block sums of its pooled coordinates.
#[derive(Default)]
struct FlatPartial {
    n: u64,
    lx: f64,
    tensor: Vec<(usize, f64)>,
    model: Vec<(usize, f64)>,
    blocks: Vec<(usize, BlockSums)>,
}
