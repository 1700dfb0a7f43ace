//! Pass 2 on processors with AVX-512: [`super::coord_stats_body`] eight columns at a time down
//! all of a tile's rows, each running sum of those columns held in one register.
//!
//! The portable kernel keeps one array per sum and loads and stores all nineteen for every
//! row; on AVX-512 those memory operations, not the arithmetic, set its pace. Here a group of
//! eight columns is a register, and the operations are those of the portable kernel, lane by
//! lane and in the same order (no fused multiply-adds but the f32 logarithm's, which the
//! portable kernel fuses too), so both kernels give the same bits.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{FlatPartial, Runs, TileJob, TILE};
use crate::engine::accum::{BlockSums, CoordAcc, MomentAcc, TailAcc};
use crate::engine::ln;
use crate::engine::StatsJob;
use crate::input::{bf16_value, f16_value, f32_value, Block, Values};
use crate::stats::tail::FLAT_EPS;

const LANES: usize = 8;
type Lanes = [f64; LANES];

/// Eight values on a cache line of their own.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Row(Lanes);

/// Rows a group centres (and takes the logs of) before it folds them: the logarithm is a long
/// chain of dependent operations, and rows that do not wait on one another's sums let the
/// processor overlap several chains.
const CHUNK: usize = 16;

/// Rows ahead of the one being gathered whose values are asked for: a row's 128 values take
/// little time to widen, so the request must leave the memory's latency room to pass.
const GATHER_AHEAD: usize = 16;

/// [`super::coord_stats_body`] with AVX-512. With `TABLE_LOG` (as the engine runs it) the
/// samples' logarithms are taken by table, within the same 5e-8 as the portable kernel's
/// polynomial but in fewer operations; without it, by that polynomial, and the results are the
/// portable kernel's bits.
///
/// # Safety
/// The processor must support AVX-512 F and DQ.
#[target_feature(enable = "avx512f,avx512dq")]
pub(in crate::engine::cpu) unsafe fn coord_stats<const TABLE_LOG: bool>(
    job: &StatsJob<'_>,
    block: &Block,
    first: usize,
    acc: &mut [CoordAcc],
) -> FlatPartial {
    match block.data.values() {
        Values::F16(v) => strip::<TABLE_LOG, _>(job, block, v, first, acc, f16_value),
        Values::BF16(v) => strip::<TABLE_LOG, _>(job, block, v, first, acc, bf16_value),
        Values::F32(v) => strip::<TABLE_LOG, _>(job, block, v, first, acc, f32_value),
        Values::F64(v) => strip::<TABLE_LOG, _>(job, block, v, first, acc, |x| x),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn splat(v: f64) -> __m512d {
    _mm512_set1_pd(v)
}

/// The lanes of `x` that hold finite values.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn finite(x: __m512d) -> __mmask8 {
    _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_abs_pd(x), splat(f64::INFINITY))
}

/// 1.0 where `k` is set, else 0.0: the portable kernel's `one_if`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn ones(k: __mmask8) -> __m512d {
    _mm512_maskz_mov_pd(k, splat(1.0))
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn load(v: &Lanes) -> __m512d {
    // SAFETY: `v` is 8 readable f64.
    unsafe { _mm512_loadu_pd(v.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn store(v: __m512d) -> Lanes {
    let mut out = [0.0; LANES];
    // SAFETY: `out` is 8 writable f64.
    unsafe { _mm512_storeu_pd(out.as_mut_ptr(), v) };
    out
}

/// `ln::ln_pos` of each lane, operation for operation.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn ln_pos(x: __m512d) -> __m512d {
    let sub = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(x, splat(f64::MIN_POSITIVE));
    let x = _mm512_mask_mul_pd(x, sub, x, splat(18014398509481984.0));
    let bits = _mm512_castpd_si512(x);
    let k = _mm512_sub_epi64(_mm512_srli_epi64::<52>(bits), _mm512_set1_epi64(1023));
    let k = _mm512_mask_sub_epi64(k, sub, k, _mm512_set1_epi64(54));
    let mantissa = _mm512_and_si512(bits, _mm512_set1_epi64(0x000f_ffff_ffff_ffff));
    let m = _mm512_castsi512_pd(_mm512_or_si512(
        mantissa,
        _mm512_set1_epi64(0x3ff0_0000_0000_0000),
    ));
    let big = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(m, splat(std::f64::consts::SQRT_2));
    let m = _mm512_mask_mul_pd(m, big, m, splat(0.5));
    let k = _mm512_mask_add_epi64(k, big, k, _mm512_set1_epi64(1));
    let (add, mul) = (_mm512_add_pd, _mm512_mul_pd);
    let f = _mm512_sub_pd(m, splat(1.0));
    let s = _mm512_div_pd(f, add(splat(2.0), f));
    let z = mul(s, s);
    let mut p = mul(z, splat(ln::LG7));
    for c in [ln::LG6, ln::LG5, ln::LG4, ln::LG3, ln::LG2] {
        p = mul(z, add(splat(c), p));
    }
    let r = mul(z, add(splat(ln::LG1), p));
    let hfsq = mul(mul(splat(0.5), f), f);
    let kf = _mm512_cvtepi64_pd(k);
    let t = add(mul(s, add(hfsq, r)), mul(kf, splat(ln::LN2_LO)));
    _mm512_sub_pd(
        mul(kf, splat(ln::LN2_HI)),
        _mm512_sub_pd(_mm512_sub_pd(hfsq, t), f),
    )
}

/// A group's columns: shift, centre and pool flags, and whether every column's shift is its
/// centre (the centre is the mean), so that d = x - shift is u = x - centre.
#[derive(Clone, Copy)]
struct Consts {
    shift: __m512d,
    centre: __m512d,
    pool: __mmask8,
    same: bool,
}

/// A group's running sums, as in the portable kernel's `Tile`.
#[derive(Clone, Copy)]
struct Sums {
    nonfinite: __m512d,
    s1: __m512d,
    s2: __m512d,
    s3: __m512d,
    s4: __m512d,
    sl: __m512d,
    nz: __m512d,
    rest_l: __m512d,
    rest_nz: __m512d,
    sl2: __m512d,
    flat_fix: __m512d,
    pl: __m512d,
    pm: __m512d,
    ys: __m512d,
    bad: __m512d,
    lx: __m512d,
    nx: __m512d,
    ly: __m512d,
    ny: __m512d,
    lm: __m512d,
    bad_blocks: __m512d,
}

/// One closed time block's terms of the pooled columns, per lane.
struct Pooled([__m512d; 5]);

impl Sums {
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn new() -> Self {
        let z = _mm512_setzero_pd();
        Sums {
            nonfinite: z,
            s1: z,
            s2: z,
            s3: z,
            s4: z,
            sl: z,
            nz: z,
            rest_l: z,
            rest_nz: z,
            sl2: z,
            flat_fix: z,
            pl: z,
            pm: z,
            ys: z,
            bad: z,
            lx: z,
            nx: z,
            ly: z,
            ny: z,
            lm: z,
            bad_blocks: z,
        }
    }

    /// `Tile::push_row` for one group: row `x` with its centred values `u` and their logs `lv`
    /// (ln|u|, +0 where u = 0, where the portable kernel's product may give -0: every sum it
    /// enters starts at +0, and x + -0 = x + +0, so the bits agree). The counts of nonzero
    /// entries are committed a chunk at a time ([`Sums::count`]), and rows with a lane where
    /// |u| ≤ 1e-6 (zeros and non-finite samples among them) take their corrections from
    /// [`Sums::push_rare`] after the chunk.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn push<const IN_BLOCKS: bool>(&mut self, c: &Consts, x: __m512d, u: __m512d, lv: __m512d) {
        let (add, mul) = (_mm512_add_pd, _mm512_mul_pd);
        let d = if c.same {
            u
        } else {
            _mm512_maskz_sub_pd(finite(x), x, c.shift)
        };
        let d2 = mul(d, d);
        self.s1 = add(self.s1, d);
        self.s2 = add(self.s2, d2);
        self.s3 = add(self.s3, mul(d2, d));
        self.s4 = add(self.s4, mul(d2, d2));
        self.sl2 = add(self.sl2, mul(lv, lv));
        if IN_BLOCKS {
            self.pl = add(self.pl, lv);
            self.ys = add(self.ys, u);
        } else {
            self.rest_l = add(self.rest_l, lv);
        }
    }

    /// The corrections of a row with a lane where |u| ≤ 1e-6: zeros leave the nonzero
    /// counts, non-finite samples are counted and spoil their time block, and ln(|u| + eps)
    /// differs from ln|u|. Counts and flags do not depend on the order of rows, and the
    /// corrections to ln(|u| + eps) come in row order, so the bits are the portable kernel's.
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn push_rare(&mut self, x: __m512d, u: __m512d, lv: __m512d, in_blocks: bool) {
        let fin = finite(x);
        let zero = ones(_mm512_cmp_pd_mask::<_CMP_EQ_OQ>(u, _mm512_setzero_pd()));
        if in_blocks {
            self.pm = _mm512_sub_pd(self.pm, zero);
            self.bad = _mm512_mask_blend_pd(fin, splat(1.0), self.bad);
        } else {
            self.rest_nz = _mm512_sub_pd(self.rest_nz, zero);
        }
        if fin != 0xff {
            // Non-finite samples (and a last group's padding).
            self.nonfinite = _mm512_add_pd(self.nonfinite, ones(!fin));
        }
        let small = fin & _mm512_cmp_pd_mask::<_CMP_LE_OQ>(_mm512_abs_pd(u), splat(1e-6));
        if small != 0 {
            // ln(|u| + eps) where adding eps changes ln|u|, lane by lane.
            let (u, lv, mut fix) = (store(u), store(lv), store(self.flat_fix));
            for j in 0..LANES {
                if small & (1 << j) != 0 {
                    fix[j] += (u[j].abs() + FLAT_EPS).ln() - lv[j];
                }
            }
            self.flat_fix = load(&fix);
        }
    }

    /// Counts `rows` more rows in the open time block (`in_blocks`) or after the last one as
    /// nonzero in every lane; [`Sums::push_rare`] takes the zeros back out.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn count(&mut self, rows: usize, in_blocks: bool) {
        if rows == 0 {
            return;
        }
        if in_blocks {
            self.pm = _mm512_add_pd(self.pm, splat(rows as f64));
        } else {
            self.rest_nz = _mm512_add_pd(self.rest_nz, splat(rows as f64));
        }
    }

    /// `Tile::close_block` for one group.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn close_block<const TABLE_LOG: bool>(
        &mut self,
        c: &Consts,
        ln_k1: __m512d,
        k1: __m512d,
    ) -> Pooled {
        let (add, zero) = (_mm512_add_pd, _mm512_setzero_pd());
        self.sl = add(self.sl, self.pl);
        self.nz = add(self.nz, self.pm);
        let ok = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(self.bad, zero);
        let (sx, m, y) = (self.pl, self.pm, _mm512_abs_pd(self.ys));
        let counted = ok
            & _mm512_cmp_pd_mask::<_CMP_GE_OQ>(m, splat(2.0))
            & _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(y, zero);
        let finite = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(y, splat(f64::INFINITY));
        let overflow = counted & !finite;
        // `ln::ln_abs_entries` of Y_b, as the portable kernel takes it.
        let ly = _mm512_maskz_mov_pd(counted & finite, ln_entries::<TABLE_LOG>(y, y).0);
        // m = K1 unless the block held a zero or a non-finite sample.
        let full = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(m, k1) == 0xff;
        let lm = _mm512_maskz_mov_pd(counted, if full { ln_k1 } else { ln_pos(m) });
        self.bad_blocks = add(self.bad_blocks, ones(!ok));
        self.lx = add(self.lx, _mm512_maskz_mov_pd(ok, sx));
        self.nx = add(self.nx, _mm512_maskz_mov_pd(ok, m));
        self.ly = add(self.ly, ly);
        self.ny = add(self.ny, ones(counted));
        self.lm = add(self.lm, lm);
        let pool = c.pool;
        let mut p = Pooled([
            _mm512_maskz_mov_pd(pool & ok, sx),
            _mm512_maskz_mov_pd(pool & ok, m),
            _mm512_maskz_mov_pd(pool, ly),
            ones(pool & counted),
            _mm512_maskz_mov_pd(pool, lm),
        ]);
        if overflow != 0 {
            // Y_b overflowed to inf or is NaN: its log, lane by lane.
            let (y, mut ly, mut sy) = (store(y), store(self.ly), store(p.0[2]));
            for j in 0..LANES {
                if overflow & (1 << j) != 0 {
                    ly[j] += y[j].ln();
                    if pool & (1 << j) != 0 {
                        sy[j] += y[j].ln();
                    }
                }
            }
            (self.ly, p.0[2]) = (load(&ly), load(&sy));
        }
        (self.pl, self.pm, self.ys, self.bad) = (zero, zero, zero, zero);
        p
    }

    /// Finite samples per lane, of `rows` folded.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn n(&self, rows: usize) -> __m512d {
        _mm512_sub_pd(splat(rows as f64), self.nonfinite)
    }

    /// Σ ln|u| over nonzero entries, per lane.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn sl(&self) -> __m512d {
        _mm512_add_pd(self.sl, self.rest_l)
    }

    /// Σ ln(|u| + eps) per lane, the flat estimator's term.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn flat_lx(&self) -> __m512d {
        _mm512_add_pd(self.sl(), self.flat_fix)
    }

    /// Adds the group's sums over `rows` rows into its columns' accumulators.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn fold_into(&self, acc: &mut [CoordAcc], rows: usize) {
        let sums = [
            self.n(rows),
            self.s1,
            self.s2,
            self.s3,
            self.s4,
            _mm512_add_pd(self.nz, self.rest_nz),
            self.sl(),
            self.sl2,
            self.ly,
            self.lm,
            self.lx,
            self.nx,
            self.ny,
            self.bad_blocks,
        ];
        // A loop rather than `map`, whose closure would not inherit this function's target
        // features and would cost a call per vector.
        let mut lanes = [[0.0; LANES]; 14];
        for (l, v) in lanes.iter_mut().zip(sums) {
            *l = store(v);
        }
        let [n, s1, s2, s3, s4, nz, sl, sl2, ly, lm, lx, nx, ny, bad] = lanes;
        for (j, a) in acc.iter_mut().enumerate() {
            let (n, nz) = (n[j] as u64, nz[j] as u64);
            a.combine(&CoordAcc {
                moments: MomentAcc {
                    n,
                    s1: s1[j],
                    s2: s2[j],
                    s3: s3[j],
                    s4: s4[j],
                },
                tails: TailAcc {
                    zeros: n - nz,
                    nz,
                    sl: sl[j],
                    sl2: sl2[j],
                    ny: ny[j] as u64,
                    ly: ly[j],
                    lm: lm[j],
                    nx: nx[j] as u64,
                    lx: lx[j],
                    bad_blocks: bad[j] as u64,
                },
            });
        }
    }
}

/// A sum over a tile's columns in `sum_lanes` order, built a group at a time: full groups add
/// lane by lane, a last partial group is summed on its own.
#[derive(Clone, Copy)]
struct LaneSum {
    lanes: Row,
    rest: f64,
}

impl LaneSum {
    fn new() -> Self {
        LaneSum {
            lanes: Row([0.0; LANES]),
            rest: [0.0f64; 0].iter().sum(),
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512dq")]
    fn add(&mut self, v: __m512d, width: usize) {
        if width == LANES {
            self.lanes.0 = store(_mm512_add_pd(load(&self.lanes.0), v));
        } else {
            self.rest = store(v)[..width].iter().sum();
        }
    }

    fn total(&self) -> f64 {
        self.lanes.0.iter().sum::<f64>() + self.rest
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn strip<const TABLE_LOG: bool, T: Copy>(
    job: &StatsJob<'_>,
    block: &Block,
    data: &[T],
    first: usize,
    acc: &mut [CoordAcc],
    value: impl Fn(T) -> f64 + Copy,
) -> FlatPartial {
    let (width, rows, stride) = (block.width(), block.rows.len(), block.stride());
    debug_assert!(first + acc.len() <= width);
    assert!(
        rows == 0 || data.len() >= (rows - 1) * stride + width,
        "a block holds rows × columns values"
    );
    let w = acc.len();
    let c0 = block.cols.start + first;
    // A lone tensor's flattening is the whole input's: its block sums serve both.
    let one_flattening = job.flat_tensor == job.flat_model;
    let mut tensor_runs = Runs::new(&job.flat_tensor, block.rows.clone(), c0..c0 + w);
    let mut model_runs =
        (!one_flattening).then(|| Runs::new(&job.flat_model, block.rows.clone(), c0..c0 + w));
    // The rows (relative to the block) that end a complete time block.
    let closes: Vec<usize> = (0..rows)
        .filter(|&r| {
            let row = block.rows.start + r;
            row < job.used_rows && (row + 1).is_multiple_of(job.k1)
        })
        .collect();
    let at = c0 - job.col0..c0 - job.col0 + w;
    let strip_job = TileJob {
        shift: &job.shift[at.clone()],
        centre: &job.centre[at.clone()],
        pool: &job.pool[at],
    };
    // The next strip's values (the block's next columns, which the same thread most often
    // takes next), asked for a few lines at a time while this strip computes from cache.
    let next = (first + w).min(width)..(first + 2 * w).min(width);
    let chunks = w.div_ceil(LANES) * rows.div_ceil(CHUNK);
    let mut ahead = Ahead::new(data, stride, next, rows, chunks);
    let mut row_sums = vec![LaneSum::new(); rows];
    let mut pooled = vec![[LaneSum::new(); 5]; closes.len()];
    let mut xs: Vec<Row> = Vec::new();
    let mut centred = Centred::new();
    // ln K1, a complete time block's ln m_b when it holds no zero.
    let k1 = splat(job.k1 as f64);
    let ln_k1 = ln_pos(k1);
    let mut flat = FlatPartial::default();
    for t0 in (0..w).step_by(TILE) {
        let tw = TILE.min(w - t0);
        let groups = tw.div_ceil(LANES);
        row_sums.fill(LaneSum::new());
        pooled.fill([LaneSum::new(); 5]);
        // The tile's values, widened, group by group: `xs[g * rows + r]` is row r of group g
        // (NaN in padding lanes). Read straight from the block, a group's rows lie a block
        // width apart, often a power of two, so they would share a few cache sets.
        if xs.len() < groups * rows {
            xs.resize(groups * rows, Row([0.0; LANES]));
        }
        if !tw.is_multiple_of(LANES) {
            // NaN in the padding lanes of the last group: never finite, so never counted.
            for x in &mut xs[(groups - 1) * rows..groups * rows] {
                // SAFETY: a `Row` is 64 aligned, writable bytes.
                unsafe { _mm512_store_pd(x.0.as_mut_ptr(), splat(f64::NAN)) };
            }
        }
        for r in 0..rows {
            let at = r * stride + first + t0;
            super::prefetch_slice(data, at + GATHER_AHEAD * stride, tw);
            let src = &data[at..at + tw];
            // Float32 values two groups at a time: one load and one test for subnormals.
            let pairs = if std::mem::size_of::<T>() == 4 {
                tw / (2 * LANES)
            } else {
                0
            };
            for g in (0..2 * pairs).step_by(2) {
                // SAFETY: T is f32 (the only 4-byte element type) and `src` holds 16 of them
                // from `g * LANES`.
                let (lo, hi) = unsafe { widen_f32_pair(src.as_ptr().add(g * LANES).cast()) };
                // SAFETY: a `Row` is 64 aligned, writable bytes.
                unsafe {
                    _mm512_store_pd(xs[g * rows + r].0.as_mut_ptr(), lo);
                    _mm512_store_pd(xs[(g + 1) * rows + r].0.as_mut_ptr(), hi);
                }
            }
            for g in 2 * pairs..tw / LANES {
                let x = widen(&src[g * LANES..(g + 1) * LANES], value);
                // SAFETY: a `Row` is 64 aligned, writable bytes.
                unsafe { _mm512_store_pd(xs[g * rows + r].0.as_mut_ptr(), x) };
            }
            let full = tw / LANES * LANES;
            for (o, &v) in xs[(groups - 1) * rows + r].0.iter_mut().zip(&src[full..]) {
                *o = value(v);
            }
        }
        let mut flat_lx = LaneSum::new();
        for g in 0..groups {
            let g0 = t0 + g * LANES;
            let gw = LANES.min(t0 + tw - g0);
            let consts = group_consts(&strip_job, g0..g0 + gw);
            let mut sums = Sums::new();
            let xs = &xs[g * rows..(g + 1) * rows];
            let mut r0 = 0;
            for (i, &close) in closes.iter().chain([&usize::MAX]).enumerate() {
                // Chunks of rows up to the next time block's end.
                while r0 < rows.min(close.saturating_add(1)) {
                    let end = (r0 + CHUNK).min(rows).min(close.saturating_add(1));
                    let chunk = r0..end;
                    ahead.step();
                    centre_chunk::<TABLE_LOG>(&consts, &xs[chunk.clone()], &mut centred);
                    let in_blocks = (job.used_rows.saturating_sub(block.rows.start)).clamp(r0, end);
                    fold_chunk(
                        &mut sums,
                        &consts,
                        &xs[chunk.clone()],
                        &centred,
                        in_blocks - r0,
                        &mut row_sums[chunk],
                        gw,
                    );
                    r0 = end;
                }
                if close < rows {
                    let p = sums.close_block::<TABLE_LOG>(&consts, ln_k1, k1);
                    for (s, v) in pooled[i].iter_mut().zip(p.0) {
                        s.add(v, gw);
                    }
                }
            }
            sums.fold_into(&mut acc[g0..g0 + gw], rows);
            flat.n += store(sums.n(rows))[..gw].iter().sum::<f64>() as u64;
            flat_lx.add(sums.flat_lx(), gw);
        }
        for (i, (&r, p)) in closes.iter().zip(&pooled).enumerate() {
            let [sx, nx, sy, ny, sm] = p.map(|s| s.total());
            let sums = BlockSums { sx, nx, sy, ny, sm };
            if t0 == 0 {
                flat.blocks.push(((block.rows.start + r) / job.k1, sums));
            } else {
                flat.blocks[i].1.combine(&sums);
            }
        }
        flat.lx += flat_lx.total();
        let cols = c0 + t0..c0 + t0 + tw;
        let centred = |r: usize| -> Vec<f64> {
            let at = r * stride + first + t0;
            data[at..at + tw]
                .iter()
                .zip(&strip_job.centre[t0..t0 + tw])
                .map(|(&x, &c)| {
                    let x = value(x);
                    if x.is_finite() {
                        x - c
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        for (r, s) in row_sums.iter().enumerate() {
            let whole = s.total();
            tensor_runs.add_row(r, &cols, whole, || centred(r));
            if let Some(m) = model_runs.as_mut() {
                m.add_row(r, &cols, whole, || centred(r));
            }
        }
    }
    flat.tensor = tensor_runs.into_sums();
    flat.model = match model_runs {
        Some(m) => m.into_sums(),
        None => flat.tensor.clone(),
    };
    flat
}

/// Walks the lines of `rows` rows of some columns (`stride` values apart), asking for a
/// share of them at each [`Ahead::step`] so that `steps` steps ask for all.
struct Ahead<'a, T> {
    data: &'a [T],
    stride: usize,
    cols: Range<usize>,
    rows: usize,
    /// Values per cache line, lines per step, and the next line (row, column).
    per_line: usize,
    per_step: usize,
    at: (usize, usize),
}

impl<'a, T> Ahead<'a, T> {
    fn new(data: &'a [T], stride: usize, cols: Range<usize>, rows: usize, steps: usize) -> Self {
        let per_line = (64 / std::mem::size_of::<T>()).max(1);
        let lines = rows * cols.len().div_ceil(per_line);
        Ahead {
            data,
            stride,
            per_step: lines.div_ceil(steps.max(1)),
            per_line,
            at: (0, cols.start),
            cols,
            rows,
        }
    }

    #[inline]
    fn step(&mut self) {
        if self.cols.is_empty() {
            return;
        }
        for _ in 0..self.per_step {
            let (r, c) = self.at;
            if r >= self.rows {
                return;
            }
            // Into L2: this strip's working set keeps L1.
            // SAFETY: SSE is part of x86-64; a prefetch reads nothing and never faults.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(
                    self.data
                        .as_ptr()
                        .wrapping_add(r * self.stride + c)
                        .cast::<i8>(),
                )
            };
            self.at = if c + self.per_line < self.cols.end {
                (r, c + self.per_line)
            } else {
                (r + 1, self.cols.start)
            };
        }
    }
}

/// Eight values widened by `value`, the f32 ones (the common case) in one conversion.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn widen<T: Copy>(v: &[T], value: impl Fn(T) -> f64) -> __m512d {
    if std::mem::size_of::<T>() == 4 {
        // SAFETY: T is f32 (the only 4-byte element type), and `v` holds 8 of them.
        let x = _mm512_cvtps_pd(unsafe { _mm256_loadu_ps(v.as_ptr().cast::<f32>()) });
        // `f32_value`: subnormals are read as 0.
        let normal =
            _mm512_cmp_pd_mask::<_CMP_NLT_UQ>(_mm512_abs_pd(x), splat(f32::MIN_POSITIVE as f64));
        _mm512_maskz_mov_pd(normal, x)
    } else {
        let x: Lanes = std::array::from_fn(|j| value(v[j]));
        load(&x)
    }
}

/// Sixteen f32 from `v` widened as [`widen`] widens eight: subnormals read as 0, tested in
/// f32 (the same test, since widening is exact) for both halves at once.
///
/// # Safety
/// `v` must point to 16 readable f32.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn widen_f32_pair(v: *const f32) -> (__m512d, __m512d) {
    // SAFETY: the caller's promise.
    let x = unsafe { _mm512_loadu_ps(v) };
    let normal =
        _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(_mm512_abs_ps(x), _mm512_set1_ps(f32::MIN_POSITIVE));
    let x = _mm512_maskz_mov_ps(normal, x);
    (
        _mm512_cvtps_pd(_mm512_castps512_ps256(x)),
        _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(x)),
    )
}

/// Columns `cols` of the strip as a group's constants; padding lanes have pool false.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn group_consts(job: &TileJob<'_>, cols: Range<usize>) -> Consts {
    let (mut shift, mut centre, mut pool) = ([0.0; LANES], [0.0; LANES], 0u8);
    for (j, c) in cols.enumerate() {
        (shift[j], centre[j]) = (job.shift[c], job.centre[c]);
        pool |= (job.pool[c] as u8) << j;
    }
    let (shift, centre) = (load(&shift), load(&centre));
    let same = _mm512_cmpeq_epi64_mask(_mm512_castpd_si512(shift), _mm512_castpd_si512(centre));
    Consts {
        shift,
        centre,
        pool,
        same: same == 0xff,
    }
}

/// A chunk of a group's rows centred (`us`), their logs where u ≠ 0 (`ls`, +0 at u = 0) and
/// per row the lanes with |u| ≤ 1e-6 (`rare`), for [`fold_chunk`].
struct Centred {
    us: [Row; CHUNK],
    ls: [Row; CHUNK],
    rare: [__mmask8; CHUNK],
}

impl Centred {
    fn new() -> Self {
        Centred {
            us: [Row([0.0; LANES]); CHUNK],
            ls: [Row([0.0; LANES]); CHUNK],
            rare: [0; CHUNK],
        }
    }
}

/// Centres a chunk of a group's rows `xs` into `out` and takes the logs, two rows at a time in
/// the sixteen f32 lanes of [`ln_entries`]. Its own function, so that the registers the
/// logarithm needs are not taken from the running sums of [`fold_chunk`].
#[inline(never)]
#[target_feature(enable = "avx512f,avx512dq")]
fn centre_chunk<const TABLE_LOG: bool>(c: &Consts, xs: &[Row], out: &mut Centred) {
    let centre = |x: &Row| {
        let x = load(&x.0);
        _mm512_maskz_sub_pd(finite(x), x, c.centre)
    };
    for (i, pair) in xs.chunks(2).enumerate() {
        let u0 = centre(&pair[0]);
        // An odd last row is paired with itself.
        let u1 = pair.get(1).map_or(u0, centre);
        let (l0, l1, r0, r1) = ln_entries::<TABLE_LOG>(u0, u1);
        (out.us[2 * i].0, out.ls[2 * i].0, out.rare[2 * i]) = (store(u0), store(l0), r0);
        if pair.len() == 2 {
            (
                out.us[2 * i + 1].0,
                out.ls[2 * i + 1].0,
                out.rare[2 * i + 1],
            ) = (store(u1), store(l1), r1);
        }
    }
}

/// `ln::ln_abs_entries` of two rows, operation for operation but for the mantissas' logs,
/// taken by table where `TABLE_LOG` ([`mantissa_logs`]): those of both rows in one vector of
/// sixteen f32, lanes an f32 cannot hold by `ln::ln_pos`; +0 where u = 0. Also each row's
/// lanes with |u| ≤ 1e-6.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn ln_entries<const TABLE_LOG: bool>(
    u0: __m512d,
    u1: __m512d,
) -> (__m512d, __m512d, __mmask8, __mmask8) {
    let (a0, a1) = (_mm512_abs_pd(u0), _mm512_abs_pd(u1));
    let x = _mm512_insertf32x8::<1>(
        _mm512_castps256_ps512(_mm512_cvtpd_ps(a0)),
        _mm512_cvtpd_ps(a1),
    );
    let (e, r) = mantissa_logs::<TABLE_LOG>(x);
    let ln2 = splat(std::f64::consts::LN_2);
    let half = |e: __m256i, r: __m256| {
        _mm512_add_pd(
            _mm512_mul_pd(_mm512_cvtepi32_pd(e), ln2),
            _mm512_cvtps_pd(r),
        )
    };
    let l0 = half(_mm512_castsi512_si256(e), _mm512_castps512_ps256(r));
    let l1 = half(
        _mm512_extracti32x8_epi32::<1>(e),
        _mm512_extractf32x8_ps::<1>(r),
    );
    // |u| > 1e-6 is not rare: neither zero nor small enough to round to a subnormal f32.
    let rare = |a: __m512d| !_mm512_cmp_pd_mask::<_CMP_GT_OQ>(a, splat(1e-6));
    let (r0, r1) = (rare(a0), rare(a1));
    let huge = |a: __m512d| _mm512_cmp_pd_mask::<_CMP_GT_OQ>(a, splat(f32::MAX as f64));
    if r0 | r1 | huge(a0) | huge(a1) == 0 {
        return (l0, l1, 0, 0);
    }
    // `ln::f32_log_takes`: zero, or a normal f32 once rounded.
    let takes = |a: __m512d| {
        (_mm512_cmp_pd_mask::<_CMP_GE_OQ>(a, splat(f32::MIN_POSITIVE as f64))
            & _mm512_cmp_pd_mask::<_CMP_LE_OQ>(a, splat(f32::MAX as f64)))
            | _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(a, _mm512_setzero_pd())
    };
    let (k0, k1) = (takes(a0), takes(a1));
    let nonzero = |a: __m512d| _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(a, _mm512_setzero_pd());
    let pick = |k: __mmask8, a: __m512d, l: __m512d| {
        let l = if k == 0xff {
            l
        } else {
            _mm512_mask_blend_pd(k, ln_pos(a), l)
        };
        _mm512_maskz_mov_pd(nonzero(a), l)
    };
    (pick(k0, a0, l0), pick(k1, a1, l1), r0, r1)
}

/// The exponents e and the reduced mantissas' logarithms r of sixteen normal f32 (or zeros):
/// ln x = e ln 2 + r. By table (`ln::ln_f32_table`) or by Cephes' polynomial (`ln::ln_f32`),
/// operation for operation.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn mantissa_logs<const TABLE_LOG: bool>(x: __m512) -> (__m512i, __m512) {
    if TABLE_LOG {
        let ix = _mm512_castps_si512(x);
        let tmp = _mm512_sub_epi32(ix, _mm512_set1_epi32(ln::LNF_OFF as i32));
        let e = _mm512_srai_epi32::<23>(tmp);
        // The permutes read the slice from the low four bits of each lane.
        let slice = _mm512_srli_epi32::<19>(tmp);
        let z = _mm512_castsi512_ps(_mm512_sub_epi32(
            ix,
            _mm512_and_si512(tmp, _mm512_set1_epi32(0xff80_0000_u32 as i32)),
        ));
        // SAFETY: each table is 16 readable f32.
        let (invc, logc) = unsafe {
            (
                _mm512_loadu_ps(ln::LNF_INVC.as_ptr()),
                _mm512_loadu_ps(ln::LNF_LOGC.as_ptr()),
            )
        };
        let (invc, logc) = (
            _mm512_permutexvar_ps(slice, invc),
            _mm512_permutexvar_ps(slice, logc),
        );
        let f = _mm512_fmsub_ps(z, invc, _mm512_set1_ps(1.0));
        let q = _mm512_fmadd_ps(f, _mm512_set1_ps(-0.25), _mm512_set1_ps(1.0 / 3.0));
        let q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(-0.5));
        let r = _mm512_add_ps(_mm512_fmadd_ps(q, _mm512_mul_ps(f, f), f), logc);
        (e, r)
    } else {
        let bits = _mm512_castps_si512(x);
        let e = _mm512_sub_epi32(_mm512_srli_epi32::<23>(bits), _mm512_set1_epi32(127));
        let m = _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff)),
            _mm512_set1_epi32(0x3f80_0000),
        ));
        let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, _mm512_set1_ps(std::f32::consts::SQRT_2));
        let m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5));
        let e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
        let f = _mm512_sub_ps(m, _mm512_set1_ps(1.0));
        let z = _mm512_mul_ps(f, f);
        let mut p = _mm512_set1_ps(ln::LNF_P[0]);
        for c in &ln::LNF_P[1..] {
            p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(*c));
        }
        let y = _mm512_fmsub_ps(
            _mm512_mul_ps(f, z),
            p,
            _mm512_mul_ps(_mm512_set1_ps(0.5), z),
        );
        (e, _mm512_add_ps(f, y))
    }
}

/// Folds a chunk of a group's rows `xs`, centred and logged by [`centre_chunk`], into the
/// running sums, which stay in registers over the chunk; the first `in_blocks` rows belong to
/// complete time blocks. Adds each row's centred values to its `row_sums`.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512dq")]
fn fold_chunk(
    sums: &mut Sums,
    c: &Consts,
    xs: &[Row],
    centred: &Centred,
    in_blocks: usize,
    row_sums: &mut [LaneSum],
    width: usize,
) {
    let mut s = *sums;
    // Two loops, so that the choice of sums is made once, not a select per row (which kept
    // the chosen sum in memory).
    for (r, (x, row_sum)) in xs
        .iter()
        .zip(row_sums.iter_mut())
        .enumerate()
        .take(in_blocks)
    {
        let u = load(&centred.us[r].0);
        s.push::<true>(c, load(&x.0), u, load(&centred.ls[r].0));
        row_sum.add(u, width);
    }
    for (r, (x, row_sum)) in xs.iter().zip(row_sums).enumerate().skip(in_blocks) {
        let u = load(&centred.us[r].0);
        s.push::<false>(c, load(&x.0), u, load(&centred.ls[r].0));
        row_sum.add(u, width);
    }
    s.count(in_blocks, true);
    s.count(xs.len() - in_blocks, false);
    *sums = s;
    if centred.rare[..xs.len()].iter().any(|&k| k != 0) {
        for (r, x) in xs.iter().enumerate() {
            if centred.rare[r] != 0 {
                let (u, lv) = (load(&centred.us[r].0), load(&centred.ls[r].0));
                sums.push_rare(load(&x.0), u, lv, r < in_blocks);
            }
        }
    }
}
