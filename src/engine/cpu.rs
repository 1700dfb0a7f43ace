//! The CPU engine: each kernel is a plain f64 loop over a block's rows, parallel over
//! column strips with rayon. Values are widened to f64 once per row segment; accumulation
//! is f64 throughout, so this engine is also the reference the GPU engine is tested against.

use rayon::prelude::*;

use super::accum::{BlockSums, CoordAcc, FlatAcc, MeanAcc, TailAcc};
use super::{Backend, Blocks, EngineInfo, StatsJob, TensorAcc};
use crate::error::Result;
use crate::input::{Block, BlockData};

use crate::stats::tail::FLAT_EPS;

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
            .map_err(|e| {
                crate::error::Error::Config(format!("cannot start {threads} threads: {e}"))
            })?;
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
        Ok(())
    }
}

/// Body of [`coord_mean`].
#[inline(always)]
fn coord_mean_body(block: &Block, first: usize, acc: &mut [MeanAcc]) {
    let (n, sum, lo, hi) = match &*block.data {
        BlockData::F32(v) => mean_rows_f32(v, block.width(), block.rows.len(), first, acc.len()),
        _ => mean_rows_wide(block, first, acc.len()),
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

/// Per column of a strip: finite count, sum, min and max.
type StripMeans = (Vec<u32>, Vec<f64>, Vec<f64>, Vec<f64>);

/// Pass 1 over f32 values without widening them to f64 first: the range is taken in f32
/// (widening is exact, so the f64 range is the same) and only the sum is widened, eight lanes
/// to a 256-bit register instead of four. Subnormals count as 0, as in `widen_into`.
#[inline(always)]
fn mean_rows_f32(v: &[f32], width: usize, rows: usize, first: usize, w: usize) -> StripMeans {
    let mut n = vec![0u32; w];
    let mut sum = vec![0.0f64; w];
    let (mut lo, mut hi) = (vec![f32::INFINITY; w], vec![f32::NEG_INFINITY; w]);
    for r in 0..rows {
        let row = &v[r * width + first..][..w];
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
fn mean_rows_wide(block: &Block, first: usize, w: usize) -> StripMeans {
    let width = block.width();
    let mut row = vec![0.0; w];
    // Branch-free running sums, one array each, so the row loop vectorises.
    let (mut n, mut sum) = (vec![0u32; w], vec![0.0; w]);
    let (mut lo, mut hi) = (vec![f64::INFINITY; w], vec![f64::NEG_INFINITY; w]);
    for r in 0..block.rows.len() {
        let at = r * width + first;
        block.data.widen_into(at..at + w, &mut row);
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

/// Compiles `$body` twice on x86-64, once for AVX2 (chosen at run time when the processor
/// has it) and once for the baseline, so the vectorised row loops use 256-bit registers
/// without requiring them. Results are identical: no FMA contraction is enabled.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the processor supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

multiversion! {
    /// CPU twin of `shaders/coord_mean.wgsl`: folds columns `first..first + acc.len()` of the
    /// block (relative to the block's columns) into `acc`.
    pub fn coord_mean(block: &Block, first: usize, acc: &mut [MeanAcc]) => coord_mean_body
}

multiversion! {
    /// CPU twin of `coord_moments.wgsl`, `coord_tails.wgsl` and `flat_blocks.wgsl`.
    fn coord_stats(job: &StatsJob<'_>, block: &Block, first: usize, acc: &mut [CoordAcc]) -> FlatPartial => coord_stats_body
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

/// ln(|u| + eps) as in `alpha_estimator`, reusing ln|u| where adding eps cannot change it
/// by more than 2.2e-10 relative.
#[inline]
pub fn flat_log(u: f64, ln_abs: f64) -> f64 {
    if u.abs() > 1e-6 {
        ln_abs
    } else {
        (u.abs() + FLAT_EPS).ln()
    }
}

/// Body of [`coord_stats`]: the three pass-2 kernels fused into one sweep, so each value is
/// widened and centred once.
#[inline(always)]
fn coord_stats_body(
    job: &StatsJob<'_>,
    block: &Block,
    first: usize,
    acc: &mut [CoordAcc],
) -> FlatPartial {
    let width = block.width();
    let w = acc.len();
    let c0 = block.cols.start + first;
    let shift = &job.shift[c0..c0 + w];
    let centre = &job.centre[c0..c0 + w];
    let pool = &job.pool[c0..c0 + w];
    let mut x = vec![0.0; w];
    let mut u = vec![0.0; w];
    let mut logs = vec![0.0; w];
    // Σ ln(|u| + eps) per coordinate: one accumulator per column keeps the row loop free of
    // a loop-carried dependency.
    let mut flat_lx = vec![0.0; w];
    // Open time block: running sum of u, Σ ln|u| and count of nonzero u, and a poison flag.
    let mut ysum = vec![0.0; w];
    let mut pend = vec![(0.0, 0u64); w];
    let mut bad = vec![false; w];
    let mut flat = FlatPartial::default();
    // A lone tensor's flattening is the whole input's: its block sums serve both.
    let one_flattening = job.flat_tensor == job.flat_model;
    for r in 0..block.rows.len() {
        let row = block.rows.start + r;
        let in_blocks = row < job.used_rows;
        let at = r * width + first;
        block.data.widen_into(at..at + w, &mut x);
        // Centre and take every log first, in loops the compiler vectorises (values of
        // non-finite or zero u are computed but not used).
        for j in 0..w {
            u[j] = x[j] - centre[j];
        }
        super::ln::ln_abs_row(&u, &mut logs);
        for j in 0..w {
            let xv = x[j];
            let a = &mut acc[j];
            if !xv.is_finite() {
                u[j] = 0.0;
                bad[j] = true;
                continue;
            }
            a.moments.push(xv - shift[j]);
            let uv = xv - centre[j];
            u[j] = uv;
            let t = &mut a.tails;
            if uv == 0.0 {
                t.zeros += 1;
                flat_lx[j] += FLAT_EPS.ln();
            } else {
                let l = logs[j];
                t.nz += 1;
                t.sl += l;
                t.sl2 += l * l;
                flat_lx[j] += flat_log(uv, l);
                if in_blocks {
                    pend[j].0 += l;
                    pend[j].1 += 1;
                }
            }
            flat.n += 1;
            if in_blocks {
                ysum[j] += uv;
            }
        }
        for (b, cols) in job.flat_tensor.runs(row, c0..c0 + w) {
            let y = sum_lanes(&u[cols.start - c0..cols.end - c0]);
            flat.tensor.push((b, y));
            if one_flattening {
                flat.model.push((b, y));
            }
        }
        if !one_flattening {
            for (b, cols) in job.flat_model.runs(row, c0..c0 + w) {
                flat.model
                    .push((b, sum_lanes(&u[cols.start - c0..cols.end - c0])));
            }
        }
        if in_blocks && (row + 1).is_multiple_of(job.k1) {
            let mut pooled = BlockSums::default();
            for j in 0..w {
                let share = close_block(&mut acc[j].tails, &mut ysum[j], &mut pend[j], &mut bad[j]);
                if pool[j] {
                    pooled.combine(&share);
                }
            }
            flat.blocks.push((row / job.k1, pooled));
        }
    }
    flat.lx = flat_lx.iter().sum();
    flat.tensor = merge_runs(flat.tensor);
    flat.model = merge_runs(flat.model);
    flat
}

/// Ends a time block of K1 samples: commits its ln|u| terms and, when it holds m_b ≥ 2
/// nonzero entries and a nonzero sum, ln|Y_b| and ln m_b (the zeros rule, `TailAcc`); or drops
/// it whole when it held a non-finite sample. Returns the block's share of the pooled sums.
#[inline]
fn close_block(
    t: &mut TailAcc,
    ysum: &mut f64,
    pend: &mut (f64, u64),
    bad: &mut bool,
) -> BlockSums {
    let mut share = BlockSums::default();
    if *bad {
        t.bad_blocks += 1;
    } else {
        let (sx, m) = *pend;
        t.lx += sx;
        t.nx += m;
        share.sx = sx;
        share.nx = m as f64;
        if m >= 2 && *ysum != 0.0 {
            let (ly, lm) = (ysum.abs().ln(), (m as f64).ln());
            t.ly += ly;
            t.ny += 1;
            t.lm += lm;
            share.sy = ly;
            share.ny = 1.0;
            share.sm = lm;
        }
    }
    *ysum = 0.0;
    *pend = (0.0, 0);
    *bad = false;
    share
}

/// Σ v in eight interleaved partial sums, so the adds vectorise instead of waiting on one
/// another.
#[inline(always)]
fn sum_lanes(v: &[f64]) -> f64 {
    let mut lanes = [0.0; 8];
    let chunks = v.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// Adds up contributions to the same flat block (consecutive rows often share one).
fn merge_runs(mut runs: Vec<(usize, f64)>) -> Vec<(usize, f64)> {
    runs.sort_unstable_by_key(|r| r.0);
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(runs.len());
    for (b, y) in runs {
        match out.last_mut() {
            Some(last) if last.0 == b => last.1 += y,
            _ => out.push((b, y)),
        }
    }
    out
}
