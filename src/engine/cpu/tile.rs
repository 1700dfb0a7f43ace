//! Pass 2 of the CPU engine over one strip, in tiles of columns whose state stays in L1.

use std::ops::Range;

use super::FlatPartial;
use crate::engine::accum::{BlockSums, CoordAcc, FlatSpec, MomentAcc, TailAcc};
use crate::engine::ln::{ln_abs_entries, ln_abs_row};
use crate::engine::StatsJob;
use crate::input::{Block, BlockData, Values};
use crate::stats::tail::FLAT_EPS;

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;

/// Columns per tile of pass 2: the tile's per-column state (19 arrays of TILE f64, 19 KiB)
/// stays in L1 across all the block's rows, so the branch-free row loops run at the speed of
/// their arithmetic. (A struct-of-arrays loop over whole strips of up to 2048 columns keeps
/// hundreds of KiB of state and streams it through L2 on every row: that was slower than the
/// scalar loop.)
const TILE: usize = 128;

/// Pass-2 state of one tile, one array per sum. Counts are f64 (exact below 2^53) so every
/// update is a masked add in the same lanes.
///
/// A row inside a complete time block updates only what it must: the moment sums, Σ ln²|u|
/// and the open block's sums. The count of finite samples, of nonzero entries and Σ ln|u|
/// come from those at each block's close (`sl`, `nz`) and from the rare rows that need
/// more: non-finite samples (`nonfinite`), entries within 1e-6 of the centre (`flat_fix`) and
/// rows after the last complete block (`rest_l`, `rest_nz`). [`Tile::fold_into`] puts them
/// together.
struct Tile {
    /// Rows folded so far.
    rows: f64,
    nonfinite: [f64; TILE],
    s1: [f64; TILE],
    s2: [f64; TILE],
    s3: [f64; TILE],
    s4: [f64; TILE],
    /// Σ ln|u| and the count of nonzero u over the closed time blocks.
    sl: [f64; TILE],
    nz: [f64; TILE],
    /// The same over the rows after the last complete time block.
    rest_l: [f64; TILE],
    rest_nz: [f64; TILE],
    sl2: [f64; TILE],
    /// The flat estimator's per-entry term ln(|u| + eps) less ln|u| (0 for u = 0), where
    /// they differ: |u| ≤ 1e-6. Σ ln|u| over nonzero u plus this is Σ ln(|u| + eps).
    flat_fix: [f64; TILE],
    /// Open time block: Σ ln|u|, count of nonzero u, Σ u, and 1 once it held a non-finite x.
    pl: [f64; TILE],
    pm: [f64; TILE],
    ys: [f64; TILE],
    bad: [f64; TILE],
    /// Closed time blocks, as in `TailAcc`.
    lx: [f64; TILE],
    nx: [f64; TILE],
    ly: [f64; TILE],
    ny: [f64; TILE],
    lm: [f64; TILE],
    bad_blocks: [f64; TILE],
}

impl Tile {
    fn new() -> Self {
        const Z: [f64; TILE] = [0.0; TILE];
        Tile {
            rows: 0.0,
            nonfinite: Z,
            s1: Z,
            s2: Z,
            s3: Z,
            s4: Z,
            sl: Z,
            nz: Z,
            rest_l: Z,
            rest_nz: Z,
            sl2: Z,
            flat_fix: Z,
            pl: Z,
            pm: Z,
            ys: Z,
            bad: Z,
            lx: Z,
            nx: Z,
            ly: Z,
            ny: Z,
            lm: Z,
            bad_blocks: Z,
        }
    }

    /// Folds row `x` (widened) of the tile's columns, centred into `u` (0 where x is not
    /// finite) with `l = ln|u|` computed alongside. Every update is a select, so the loops
    /// vectorise; `in_blocks` says whether the row belongs to a complete time block.
    #[inline(always)]
    fn push_row(
        &mut self,
        x: &[f64],
        job: &TileJob<'_>,
        u: &mut [f64],
        l: &mut [f64],
        in_blocks: bool,
    ) {
        let w = x.len();
        let (shift, centre, u, l) = (&job.shift[..w], &job.centre[..w], &mut u[..w], &mut l[..w]);
        for j in 0..w {
            u[j] = if x[j].is_finite() {
                x[j] - centre[j]
            } else {
                0.0
            };
        }
        ln_abs_entries(u, l);
        // A log that does not count is multiplied by 0.0 rather than selected away: the log
        // is finite for every input, so the product is ±0, which leaves a sum unchanged. A
        // select of 0.0 lets the compiler turn the update into masked loads and stores, which
        // cannot take store-to-load forwarding on AMD's Zen 4 and stalled the loop (a third of
        // its time, and the masked stores of `pl` alone a quarter).
        let one_if = |c: bool| if c { 1.0 } else { 0.0 };
        let (mut small, mut nonfinite) = (false, false);
        self.rows += 1.0;
        for j in 0..w {
            let xv = x[j];
            let fin = xv.is_finite();
            let d = if fin { xv - shift[j] } else { 0.0 };
            let d2 = d * d;
            self.s1[j] += d;
            self.s2[j] += d2;
            self.s3[j] += d2 * d;
            self.s4[j] += d2 * d2;
            let lv = l[j] * one_if(u[j] != 0.0);
            self.sl2[j] += lv * lv;
            // ln(|u| + eps) as in `alpha_estimator` is ln|u| where adding eps cannot change
            // it by more than 2.2e-10 relative; the small |u| below.
            small |= fin & (u[j].abs() <= 1e-6);
            nonfinite |= !fin;
        }
        if in_blocks {
            for j in 0..w {
                let nz = one_if(u[j] != 0.0);
                self.pl[j] += l[j] * nz;
                self.pm[j] += nz;
                self.ys[j] += u[j];
                self.bad[j] = if x[j].is_finite() { self.bad[j] } else { 1.0 };
            }
        } else {
            for j in 0..w {
                let nz = one_if(u[j] != 0.0);
                self.rest_l[j] += l[j] * nz;
                self.rest_nz[j] += nz;
            }
        }
        if nonfinite {
            for (c, x) in self.nonfinite[..w].iter_mut().zip(x) {
                *c += one_if(!x.is_finite());
            }
        }
        if small {
            for j in 0..w {
                let a = u[j].abs();
                if x[j].is_finite() && a <= 1e-6 {
                    let lv = l[j] * one_if(u[j] != 0.0);
                    self.flat_fix[j] += (a + FLAT_EPS).ln() - lv;
                }
            }
        }
    }

    /// Ends a time block of K1 samples in every column: commits its ln|u| terms and, when it
    /// holds m_b ≥ 2 nonzero entries and a nonzero sum, ln|Y_b| and ln m_b (the zeros rule,
    /// `TailAcc`); or drops it whole when it held a non-finite sample. Returns the block's
    /// sums pooled over the columns marked in `pool`. Branch-free like [`Tile::push_row`]:
    /// `scratch` holds the logs and each column's pooled share.
    #[inline(always)]
    fn close_block(&mut self, job: &TileJob<'_>, scratch: &mut CloseScratch) -> BlockSums {
        let w = job.pool.len();
        let s = scratch;
        for j in 0..w {
            self.sl[j] += self.pl[j];
            self.nz[j] += self.pm[j];
        }
        // ln|Y_b| as the samples' logs are taken: to 5e-8, far below the spread of ln|Y_b|
        // over blocks, and without the division of the f64 logarithm (which stalled the close).
        ln_abs_entries(&self.ys[..w], &mut s.ly[..w]);
        ln_abs_row(&self.pm[..w], &mut s.lm[..w]);
        let mut overflow = false;
        for j in 0..w {
            let ok = self.bad[j] == 0.0;
            let (sx, m, y) = (self.pl[j], self.pm[j], self.ys[j].abs());
            let counted = ok & (m >= 2.0) & (y != 0.0);
            // Y_b may overflow to inf or be NaN: its log is taken below.
            let finite = y < f64::INFINITY;
            overflow |= counted & !finite;
            let ly = if counted & finite { s.ly[j] } else { 0.0 };
            let lm = if counted { s.lm[j] } else { 0.0 };
            self.bad_blocks[j] += if ok { 0.0 } else { 1.0 };
            self.lx[j] += if ok { sx } else { 0.0 };
            self.nx[j] += if ok { m } else { 0.0 };
            self.ly[j] += ly;
            self.ny[j] += if counted { 1.0 } else { 0.0 };
            self.lm[j] += lm;
            let pooled = job.pool[j];
            s.sx[j] = if pooled & ok { sx } else { 0.0 };
            s.nx[j] = if pooled & ok { m } else { 0.0 };
            s.sy[j] = if pooled { ly } else { 0.0 };
            s.ny[j] = if pooled & counted { 1.0 } else { 0.0 };
            s.sm[j] = if pooled { lm } else { 0.0 };
        }
        if overflow {
            for j in 0..w {
                let (m, y) = (self.pm[j], self.ys[j].abs());
                if self.bad[j] == 0.0 && m >= 2.0 && y != 0.0 && y.is_nan() | (y == f64::INFINITY) {
                    self.ly[j] += y.ln();
                    if job.pool[j] {
                        s.sy[j] += y.ln();
                    }
                }
            }
        }
        for v in [&mut self.pl, &mut self.pm, &mut self.ys, &mut self.bad] {
            v[..w].fill(0.0);
        }
        BlockSums {
            sx: sum_lanes(&s.sx[..w]),
            nx: sum_lanes(&s.nx[..w]),
            sy: sum_lanes(&s.sy[..w]),
            ny: sum_lanes(&s.ny[..w]),
            sm: sum_lanes(&s.sm[..w]),
        }
    }

    /// Finite samples of column `j`.
    fn n(&self, j: usize) -> f64 {
        self.rows - self.nonfinite[j]
    }

    /// Σ ln|u| over column `j`'s nonzero entries.
    fn sl(&self, j: usize) -> f64 {
        self.sl[j] + self.rest_l[j]
    }

    /// Σ ln(|u| + eps) over the tile's first `w` columns, the flat estimator's term.
    fn flat_lx(&self, w: usize) -> f64 {
        let mut terms = [0.0; TILE];
        for (j, t) in terms[..w].iter_mut().enumerate() {
            *t = self.sl(j) + self.flat_fix[j];
        }
        sum_lanes(&terms[..w])
    }

    /// Adds the tile's sums into its columns' accumulators.
    fn fold_into(&self, acc: &mut [CoordAcc]) {
        for (j, a) in acc.iter_mut().enumerate() {
            let n = self.n(j) as u64;
            let nz = (self.nz[j] + self.rest_nz[j]) as u64;
            a.combine(&CoordAcc {
                moments: MomentAcc {
                    n,
                    s1: self.s1[j],
                    s2: self.s2[j],
                    s3: self.s3[j],
                    s4: self.s4[j],
                },
                tails: TailAcc {
                    zeros: n - nz,
                    nz,
                    sl: self.sl(j),
                    sl2: self.sl2[j],
                    ny: self.ny[j] as u64,
                    ly: self.ly[j],
                    lm: self.lm[j],
                    nx: self.nx[j] as u64,
                    lx: self.lx[j],
                    bad_blocks: self.bad_blocks[j] as u64,
                },
            });
        }
    }
}

/// Room for [`Tile::close_block`]: ln|Y_b| and ln m_b per column, and each column's share of
/// the pooled sums.
struct CloseScratch {
    ly: [f64; TILE],
    lm: [f64; TILE],
    sx: [f64; TILE],
    nx: [f64; TILE],
    sy: [f64; TILE],
    ny: [f64; TILE],
    sm: [f64; TILE],
}

/// A tile's columns of the job: shift, centre and pool flags.
struct TileJob<'a> {
    shift: &'a [f64],
    centre: &'a [f64],
    pool: &'a [bool],
}

/// One flattening's runs over a strip: for each row, the (flat block, column range) pieces,
/// with their sums of u filled in tile by tile.
struct Runs {
    /// Row r's runs are `runs[start[r]..start[r + 1]]`.
    start: Vec<usize>,
    runs: Vec<(usize, Range<usize>)>,
    sums: Vec<f64>,
}

impl Runs {
    fn new(spec: &FlatSpec, rows: Range<usize>, cols: Range<usize>) -> Self {
        let mut start = vec![0];
        let mut runs = Vec::new();
        for row in rows {
            runs.extend(spec.runs(row, cols.clone()));
            start.push(runs.len());
        }
        let sums = vec![0.0; runs.len()];
        Runs { start, runs, sums }
    }

    /// Adds row `r`'s centred values `u` over columns `cols` (absolute) to its runs.
    #[inline(always)]
    fn add(&mut self, r: usize, cols: &Range<usize>, u: &[f64]) {
        for i in self.start[r]..self.start[r + 1] {
            let run = &self.runs[i].1;
            let (a, b) = (run.start.max(cols.start), run.end.min(cols.end));
            if a < b {
                self.sums[i] += sum_lanes(&u[a - cols.start..b - cols.start]);
            }
        }
    }

    /// Adds row `r`'s centred values over columns `cols` (absolute) to its runs, as [`Runs::add`]
    /// does: `whole` (their sum in [`sum_lanes`] order) where one run holds them all, else
    /// each run's part of `u()`, the row's centred values.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    fn add_row(&mut self, r: usize, cols: &Range<usize>, whole: f64, u: impl FnOnce() -> Vec<f64>) {
        let row = self.start[r]..self.start[r + 1];
        if let Some(i) = row.clone().find(|&i| self.runs[i].1.contains(&cols.start)) {
            if self.runs[i].1.end >= cols.end {
                self.sums[i] += whole;
                return;
            }
        }
        self.add(r, cols, &u());
    }

    fn into_sums(self) -> Vec<(usize, f64)> {
        merge_runs(self.runs.into_iter().map(|r| r.0).zip(self.sums).collect())
    }
}

/// Body of [`super::coord_stats`]: the three pass-2 kernels fused into one sweep, tile by tile of
/// [`TILE`] columns, so each value is widened and centred once.
#[inline(always)]
pub(super) fn coord_stats_body(
    job: &StatsJob<'_>,
    block: &Block,
    first: usize,
    acc: &mut [CoordAcc],
) -> FlatPartial {
    let (stride, view) = (block.stride(), block.view());
    let w = acc.len();
    let c0 = block.cols.start + first;
    // A lone tensor's flattening is the whole input's: its block sums serve both.
    let one_flattening = job.flat_tensor == job.flat_model;
    let mut tensor_runs = Runs::new(&job.flat_tensor, block.rows.clone(), c0..c0 + w);
    let mut model_runs =
        (!one_flattening).then(|| Runs::new(&job.flat_model, block.rows.clone(), c0..c0 + w));
    let (mut x, mut u, mut l) = ([0.0; TILE], [0.0; TILE], [0.0; TILE]);
    const Z: [f64; TILE] = [0.0; TILE];
    let mut scratch = CloseScratch {
        ly: Z,
        lm: Z,
        sx: Z,
        nx: Z,
        sy: Z,
        ny: Z,
        sm: Z,
    };
    let mut flat = FlatPartial::default();
    for t0 in (0..w).step_by(TILE) {
        let tw = TILE.min(w - t0);
        let cols = c0 + t0..c0 + t0 + tw;
        let at = cols.start - job.col0..cols.end - job.col0;
        let tj = TileJob {
            shift: &job.shift[at.clone()],
            centre: &job.centre[at.clone()],
            pool: &job.pool[at],
        };
        let mut tile = Tile::new();
        let mut closed = 0;
        for r in 0..block.rows.len() {
            let row = block.rows.start + r;
            let in_blocks = row < job.used_rows;
            let at = r * stride + first + t0;
            prefetch(&block.data, at + PREFETCH_ROWS * stride, tw);
            view.widen_row(r, first + t0..first + t0 + tw, &mut x[..tw]);
            tile.push_row(&x[..tw], &tj, &mut u, &mut l, in_blocks);
            tensor_runs.add(r, &cols, &u[..tw]);
            if let Some(m) = model_runs.as_mut() {
                m.add(r, &cols, &u[..tw]);
            }
            if in_blocks && (row + 1).is_multiple_of(job.k1) {
                let pooled = tile.close_block(&tj, &mut scratch);
                if t0 == 0 {
                    flat.blocks.push((row / job.k1, pooled));
                } else {
                    flat.blocks[closed].1.combine(&pooled);
                }
                closed += 1;
            }
        }
        tile.fold_into(&mut acc[t0..t0 + tw]);
        flat.n += (0..tw).map(|j| tile.n(j)).sum::<f64>() as u64;
        flat.lx += tile.flat_lx(tw);
    }
    flat.tensor = tensor_runs.into_sums();
    flat.model = match model_runs {
        Some(m) => m.into_sums(),
        None => flat.tensor.clone(),
    };
    flat
}

/// Rows ahead of the one being folded that [`prefetch`] asks for.
const PREFETCH_ROWS: usize = 4;

/// Asks for `len` values from index `at` of `data` to be brought into cache. A tile reads
/// 128 values per row from rows a whole block width apart, too short a run for the hardware
/// prefetcher to start on before the values are needed. Indices past the end are harmless:
/// a prefetch never faults.
#[inline(always)]
fn prefetch(data: &BlockData, at: usize, len: usize) {
    match data.values() {
        Values::F16(v) | Values::BF16(v) => prefetch_slice(v, at, len),
        Values::F32(v) => prefetch_slice(v, at, len),
        Values::F64(v) => prefetch_slice(v, at, len),
    }
}

/// [`prefetch`] of a slice of values.
#[inline(always)]
fn prefetch_slice<T>(data: &[T], at: usize, len: usize) {
    prefetch_ptr(data.as_ptr().wrapping_add(at), len);
}

/// Asks for the `len` values from `ptr` to be brought into cache. The pointer need not point
/// into anything: a prefetch reads nothing and never faults.
#[inline(always)]
pub(super) fn prefetch_ptr<T>(ptr: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (ptr, size) = (ptr.cast::<i8>(), std::mem::size_of::<T>());
        for line in (0..len * size).step_by(64) {
            // SAFETY: SSE is part of x86-64; a prefetch reads nothing and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One strip's results from one kernel: the columns' accumulators and the pooled state.
    type Run = (Vec<CoordAcc>, FlatPartial);

    /// A run as text, which shows every bit of every f64 (shortest round-trip form, sign of
    /// zero included).
    fn text((acc, p): &Run) -> String {
        format!(
            "{acc:?}\n{} {:?} {:?} {:?} {:?}",
            p.n, p.lx, p.tensor, p.model, p.blocks
        )
    }

    /// One strip of `rows × width` values through the portable kernel, through the one the
    /// engine runs on this processor (`avx512` where it has AVX-512, which takes the logs by
    /// table) and through that one with the portable kernel's logarithm (on other processors,
    /// the portable kernel again).
    fn runs(
        rows: Range<usize>,
        width: usize,
        k1: usize,
        m: u64,
        seed: u64,
        f64_data: bool,
        same: bool,
    ) -> [Run; 3] {
        let mut state = seed;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let n = rows.len() * width;
        let big = if f64_data { f64::MAX } else { f32::MAX as f64 };
        let tiny = if f64_data { 1e-300 } else { 1e-30 };
        let values: Vec<f64> = (0..n)
            .map(|i| {
                let (r, c) = (i / width, i % width);
                match c % 11 {
                    // A constant column, and one constant but for a few entries.
                    0 => 0.25,
                    1 if r % 7 != 3 => -1.5,
                    // Exact zeros, subnormals, non-finite values.
                    2 if uniform() < 0.3 => 0.0,
                    3 if uniform() < 0.2 => 1e-40,
                    4 if uniform() < 0.05 => [f64::NAN, f64::INFINITY, -f64::INFINITY][r % 3],
                    // Entries within 1e-6 of the centre; huge entries, whose time-block sums
                    // overflow in f64 data.
                    5 => 0.5 + (uniform() - 0.5) * 1e-6,
                    6 => big * if uniform() < 0.3 { -0.9 } else { 0.9 },
                    // Below f32's normal range in f64 data (centred on 0): the f32 logarithm
                    // hands these to the f64 one.
                    7 => tiny * (uniform() + 0.5),
                    _ => (uniform() - 0.5) / (uniform() + 1e-3),
                }
            })
            .collect();
        let data = if f64_data {
            BlockData::F64(values)
        } else {
            BlockData::F32(values.iter().map(|&v| v as f32).collect())
        };
        let block = Block::new(rows.clone(), 0..width, data);
        let (mut shift, mut centre) = (vec![0.0; width], vec![0.0; width]);
        for j in 0..width {
            shift[j] = (uniform() - 0.5) * 2.0;
            centre[j] = if j % 11 == 5 {
                0.5
            } else if j % 11 == 7 {
                0.0
            } else {
                shift[j] * uniform()
            };
            // The centre is the shift (the mean's case) in all groups of eight columns but
            // every fourth.
            if same && (j / 8) % 4 != 3 {
                shift[j] = centre[j];
            }
        }
        let pool: Vec<bool> = (0..width).map(|j| j % 5 != 1).collect();
        let spread = vec![1.0; width];
        let job = StatsJob {
            k1,
            used_rows: rows.end - rows.len() % k1 - 1,
            shift: &shift,
            spread: &spread,
            centre: &centre,
            pool: &pool,
            col0: 0,
            flat_tensor: FlatSpec {
                stride: width as u64,
                base: 0,
                m,
            },
            flat_model: FlatSpec {
                stride: 3 * width as u64,
                base: 5,
                m: m + 3,
            },
        };
        let run = |f: &dyn Fn(&mut [CoordAcc]) -> FlatPartial| {
            let first = 3;
            let mut acc = vec![CoordAcc::default(); width - first];
            let p = f(&mut acc);
            (acc, p)
        };
        let portable = run(&|acc| coord_stats_body(&job, &block, 3, acc));
        let engine = run(&|acc| super::super::coord_stats(&job, &block, 3, acc));
        #[cfg(target_arch = "x86_64")]
        if super::super::has_avx512() {
            // SAFETY: the processor supports AVX-512 F and DQ, checked just above.
            let polynomial =
                run(&|acc| unsafe { avx512::coord_stats::<false>(&job, &block, 3, acc) });
            return [portable, engine, polynomial];
        }
        let again = run(&|acc| coord_stats_body(&job, &block, 3, acc));
        [portable, engine, again]
    }

    /// Widths with partial groups and several tiles, row ranges that start mid time block,
    /// flat blocks shorter and longer than a tile; f32 and f64 data, with the shift the
    /// centre or not.
    fn cases() -> impl Iterator<Item = (Range<usize>, usize, usize, u64, u64, bool, bool)> {
        [
            (0..40, 300, 4, 50, 1),
            (5..69, 131, 16, 7, 2),
            (0..17, 8, 16, 1000, 3),
            (3..200, 517, 5, 333, 4),
        ]
        .into_iter()
        .flat_map(|(rows, width, k1, m, seed)| {
            [(false, false), (true, false), (false, true), (true, true)]
                .map(|(f64_data, same)| (rows.clone(), width, k1, m, seed, f64_data, same))
        })
    }

    #[test]
    fn the_register_kernel_gives_the_portable_bits() {
        for (rows, width, k1, m, seed, f64_data, same) in cases() {
            let [portable, _, polynomial] = runs(rows.clone(), width, k1, m, seed, f64_data, same);
            let (portable, polynomial) = (text(&portable), text(&polynomial));
            assert!(
                portable == polynomial,
                "rows {rows:?} width {width} f64 {f64_data} same {same}: the kernels differ:\n{portable}\n---\n{polynomial}"
            );
        }
    }

    /// The engine's kernel, whose logs (by table) differ from the portable kernel's by up to
    /// 5e-8 each where an f32 holds |u|: every count and power sum the same bits, every sum of
    /// logs within the logs' error. A sum of n logs ℓ moves by up to 5e-8·n, a sum of ℓ² by
    /// up to 1e-7·Σ|ℓ| ≤ 1e-7·(n + Σℓ²), and rounding adds a few ulps of the sum: 2e-7·(n +
    /// |sum|) bounds both with margin, with n the strip's rows × columns for pooled sums. A log
    /// taken wrongly or a term dropped moves a sum by O(1).
    #[test]
    fn the_engine_kernel_is_the_portable_one_within_the_logs_error() {
        let differ = std::cell::Cell::new(0);
        for (rows, width, k1, m, seed, f64_data, same) in cases() {
            let [(pa, pp), (ea, ep), _] = runs(rows.clone(), width, k1, m, seed, f64_data, same);
            let at = format!("rows {rows:?} width {width} f64 {f64_data} same {same}");
            let close = |what: &str, n: f64, a: f64, b: f64| {
                let ok =
                    a == b || a.is_nan() && b.is_nan() || (a - b).abs() <= 2e-7 * (n + a.abs());
                assert!(ok, "{at}: {what}: portable {a}, engine {b}");
                differ.set(differ.get() + (a.to_bits() != b.to_bits()) as usize);
            };
            let cells = (rows.len() * width) as f64;
            for (j, (a, b)) in pa.iter().zip(&ea).enumerate() {
                // As text, in which NaN equals NaN.
                let bits = |m: &MomentAcc| format!("{m:?}");
                assert_eq!(
                    bits(&a.moments),
                    bits(&b.moments),
                    "{at}: column {j}'s moments"
                );
                let (a, b, n) = (&a.tails, &b.tails, rows.len() as f64);
                assert_eq!(
                    (a.zeros, a.nz, a.ny, a.nx, a.bad_blocks),
                    (b.zeros, b.nz, b.ny, b.nx, b.bad_blocks),
                    "{at}: column {j}'s counts"
                );
                for (what, x, y) in [
                    ("Σ ln|u|", a.sl, b.sl),
                    ("Σ ln²|u|", a.sl2, b.sl2),
                    ("Σ ln|Y_b|", a.ly, b.ly),
                    ("Σ ln m_b", a.lm, b.lm),
                    ("Σ ln|u| in blocks", a.lx, b.lx),
                ] {
                    close(&format!("column {j}'s {what}"), n, x, y);
                }
            }
            assert_eq!(pp.n, ep.n, "{at}: pooled count");
            close("pooled Σ ln(|u| + eps)", cells, pp.lx, ep.lx);
            let sums = |v: &[(usize, f64)]| format!("{v:?}");
            assert_eq!(sums(&pp.tensor), sums(&ep.tensor), "{at}: flat block sums");
            assert_eq!(sums(&pp.model), sums(&ep.model), "{at}: flat block sums");
            assert_eq!(pp.blocks.len(), ep.blocks.len(), "{at}: time blocks");
            for ((i, a), (k, b)) in pp.blocks.iter().zip(&ep.blocks) {
                assert_eq!(i, k, "{at}: time blocks");
                assert_eq!((a.nx, a.ny), (b.nx, b.ny), "{at}: time block {i}'s counts");
                for (what, x, y) in [
                    ("Σ ln|u|", a.sx, b.sx),
                    ("Σ ln|Y_b|", a.sy, b.sy),
                    ("Σ ln m_b", a.sm, b.sm),
                ] {
                    close(&format!("time block {i}'s {what}"), cells, x, y);
                }
            }
        }
        // Where the engine takes its logs by table, they must differ somewhere, or this
        // compared a kernel with itself.
        #[cfg(target_arch = "x86_64")]
        if super::super::has_avx512() {
            assert!(
                differ.get() > 0,
                "no log sum differs from the portable kernel's"
            );
        }
    }

    /// The comparisons above reach the rarest path: a time-block sum that overflows.
    #[test]
    fn the_comparison_reaches_the_rare_paths() {
        let portable = text(&runs(0..40, 300, 4, 50, 1, true, false)[0]);
        assert!(
            portable.contains("inf"),
            "no overflowing block sum: {portable}"
        );
    }
}
