//! Statistics: pure f64 functions that finish accumulator states into estimates, tests and
//! intervals. Nothing here touches files or devices.

pub mod compare;
pub mod fits;
pub mod gauss;
mod lanes;
pub mod sas;
pub mod sort;
pub mod stat;
pub mod structure;
pub mod tail;
#[cfg(test)]
pub(crate) mod testdata;

use std::ops::Range;

use rayon::prelude::*;
use serde::Serialize;

pub use stat::{Stat, StatKey, COORD_STATS};

use crate::engine::accum::{BlockSums, CoordAcc, MeanAcc, TailAcc};
use crate::engine::TensorAcc;
use fits::{Fits, FitsSummary};

/// One column per statistic, one row per coordinate (C order over the tensor's shape). A whole
/// table holds one list of [`Stat::maps`]: the columns of [`Stat::CORE`], then those of
/// [`Stat::FITS`] when the fits were computed, then those of [`Stat::POWERLAW`] when the
/// per-coordinate power-law fits were. A run that sent its maps to a file as it finished them
/// ([`MapsOut::Streamed`]) keeps only those of [`Stat::SHOWN`].
#[derive(Clone, Debug)]
pub struct CoordTable {
    /// The statistics held, in [`Stat::ALL`] order, one per column.
    stats: Vec<Stat>,
    columns: Vec<Vec<f64>>,
}

impl CoordTable {
    /// A table of `stats`, one column each.
    pub fn new(stats: Vec<Stat>, columns: Vec<Vec<f64>>) -> Self {
        assert_eq!(stats.len(), columns.len(), "one column per statistic");
        CoordTable { stats, columns }
    }

    /// A whole table: one list of [`Stat::maps`], told by its column count.
    pub fn whole(columns: Vec<Vec<f64>>) -> Self {
        Self::new(Stat::maps_of_len(columns.len()).to_vec(), columns)
    }

    /// One statistic's column, by [`Stat`] or by name. Panics for a statistic the table does
    /// not hold; see [`CoordTable::try_get`].
    pub fn get(&self, stat: impl StatKey) -> &[f64] {
        let stat = stat.stat();
        self.try_get(stat)
            .unwrap_or_else(|| panic!("the table has no column {}", stat.name()))
    }

    /// One statistic's column, `None` when the table does not hold it (a fit of a run with
    /// `--no-fits`).
    pub fn try_get(&self, stat: impl StatKey) -> Option<&[f64]> {
        let stat = stat.stat();
        let at = self.stats.iter().position(|&s| s == stat)?;
        Some(&self.columns[at])
    }

    /// The statistics the table holds, in column order.
    pub fn stats(&self) -> &[Stat] {
        &self.stats
    }

    /// Adds the column of `stat`, which must come after those held.
    pub fn push(&mut self, stat: Stat, column: Vec<f64>) {
        debug_assert!(self.stats.last().is_none_or(|s| s.index() < stat.index()));
        self.stats.push(stat);
        self.columns.push(column);
    }

    /// Keeps the first `n` columns.
    pub fn truncate(&mut self, n: usize) {
        self.stats.truncate(n);
        self.columns.truncate(n);
    }

    /// Every `ceil(len / max)`-th coordinate, for plots of very large tensors.
    pub fn sample(&self, max: usize) -> CoordTable {
        let len = self.columns.first().map_or(0, Vec::len);
        let step = len.div_ceil(max.max(1)).max(1);
        CoordTable {
            stats: self.stats.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| c.iter().step_by(step).copied().collect())
                .collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &[f64])> {
        self.stats
            .iter()
            .map(|s| s.name())
            .zip(self.columns.iter().map(Vec::as_slice))
    }
}

/// Where a run's per-coordinate maps go as they are finished ([`report::CoordsWriter`] for
/// `coords.safetensors`).
///
/// [`report::CoordsWriter`]: crate::report::CoordsWriter
pub trait MapSink: Send + Sync {
    /// Values `first..first + values.len()` of the map of `stat` of tensor `tensor`.
    fn write(&self, tensor: &str, stat: Stat, first: usize, values: &[f64]) -> crate::Result<()>;

    /// Values `first..` of several maps of tensor `tensor`, written in pieces on the current
    /// rayon pool.
    fn write_maps(&self, tensor: &str, first: usize, maps: &[(Stat, &[f64])]) -> crate::Result<()> {
        let pieces: Vec<(Stat, usize, &[f64])> = maps
            .iter()
            .flat_map(|&(s, col)| {
                let pieces = col.chunks(MAP_PIECE).enumerate();
                pieces.map(move |(k, v)| (s, first + k * MAP_PIECE, v))
            })
            .collect();
        pieces
            .into_par_iter()
            .try_for_each(|(s, at, v)| self.write(tensor, s, at, v))
    }
}

/// Values per write of [`MapSink::write_maps`] (128 KiB of f64).
const MAP_PIECE: usize = 1 << 14;

/// What a run does with the per-coordinate maps it finishes.
#[derive(Clone, Default)]
pub enum MapsOut {
    /// Keeps them all, in each tensor's [`CoordTable`].
    #[default]
    Table,
    /// Sends each block's maps to the sink as soon as they are finished, and keeps in the
    /// table only [`Stat::SHOWN`] (what the summary and the report read): 13 f64 per
    /// coordinate, or 23 with the fits, would otherwise be fresh memory the size of the
    /// input's coordinate count, filled and then written out at the end.
    Streamed(std::sync::Arc<dyn MapSink>),
}

impl std::fmt::Debug for MapsOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapsOut::Table => "Table",
            MapsOut::Streamed(_) => "Streamed",
        })
    }
}

impl MapsOut {
    /// Whether a table keeps the map of `stat`.
    pub fn keeps(&self, stat: Stat) -> bool {
        match self {
            MapsOut::Table => true,
            MapsOut::Streamed(_) => Stat::SHOWN.contains(&stat),
        }
    }
}

/// Finished per-coordinate record, one value per [`Stat::CORE`] statistic, in order.
struct Coord([f64; Stat::CORE.len()]);

/// Fewest finite samples a coordinate needs for any shape statistic (block sums need two
/// blocks of at least two).
pub const MIN_FINITE: u64 = 4;

/// How a coordinate enters the pooled statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordKind {
    Usable,
    /// All finite samples equal, or scipy's rule m2 ≤ (eps·mean)²: NaN statistics, and left
    /// out of every pooled sum.
    Constant,
    /// Fewer than [`MIN_FINITE`] finite samples (e.g. all NaN): NaN statistics, left out.
    FewFinite,
}

/// The pass-1 verdict, before any centring: whether a coordinate can enter the pooled sums.
/// A range within 2·eps·|mean| implies scipy's m2 ≤ (eps·mean)², so such coordinates are
/// constant by scipy's rule too.
pub fn pass1_kind(m: &MeanAcc) -> CoordKind {
    if m.n < MIN_FINITE {
        CoordKind::FewFinite
    } else if m.is_constant() || m.max - m.min <= 2.0 * f64::EPSILON * m.mean().abs() {
        CoordKind::Constant
    } else {
        CoordKind::Usable
    }
}

/// `terms`: the normality tests' sample-size terms for the n most coordinates share. Also
/// whether the log-moment estimate was clamped (a usable coordinate with two nonzero entries
/// or more).
fn finish_coord(
    mean: &MeanAcc,
    shift: f64,
    acc: &crate::engine::accum::CoordAcc,
    terms: &gauss::NormalTerms,
) -> (Coord, CoordKind, bool) {
    let m = &acc.moments;
    let n = m.n as f64;
    let nan = f64::NAN;
    let mean_x = if m.n == 0 { nan } else { shift + m.s1 / n };
    let (m2, m3, m4) = gauss::central_moments(n, m.s1, m.s2, m.s3, m.s4);
    // scipy sets shape statistics to NaN when m2 ≤ (eps·mean)², i.e. for constant data; the
    // exact test (all finite samples equal) comes from pass 1's range.
    let kind = match pass1_kind(mean) {
        CoordKind::Usable if m2 <= (f64::EPSILON * mean_x).powi(2) => CoordKind::Constant,
        k => k,
    };
    let mut out = [nan; Stat::CORE.len()];
    let mut logm_clamped = false;
    let mut set = |s: Stat, v: f64| out[s.index()] = v;
    set(Stat::N, n);
    set(Stat::Nonfinite, mean.nonfinite as f64);
    set(Stat::Mean, mean_x);
    set(
        Stat::Var,
        if m.n == 0 {
            nan
        } else if mean.is_constant() {
            0.0
        } else {
            m2
        },
    );
    if kind == CoordKind::Usable {
        let g1 = gauss::skew(m2, m3);
        let g2 = gauss::kurt(m2, m4);
        let (jb, jb_p) = gauss::jarque_bera(n, g1, g2);
        let (k2, k2_p) = if n == terms.n() {
            terms.normaltest(g1, g2)
        } else {
            gauss::normaltest(n, g1, g2)
        };
        let t: &TailAcc = &acc.tails;
        let (a_logm, c_logm, clamped) = tail::log_moment(t.nz, t.sl, t.sl2);
        logm_clamped = clamped && t.nz >= 2;
        let a_block = tail::block_alpha(t);
        for (s, v) in [
            (Stat::Skew, g1),
            (Stat::Kurt, g2),
            (Stat::Jb, jb),
            (Stat::JbP, jb_p),
            (Stat::K2, k2),
            (Stat::K2P, k2_p),
            (Stat::AlphaLogm, a_logm),
            (Stat::ScaleLogm, c_logm),
            (Stat::AlphaBlock, a_block),
        ] {
            set(s, v);
        }
    }
    (Coord(out), kind, logm_clamped)
}

/// Quantiles 5/25/50/75/95 %.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Quantiles {
    pub q05: f64,
    pub q25: f64,
    pub q50: f64,
    pub q75: f64,
    pub q95: f64,
}

const QS: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

impl Quantiles {
    fn from(q: Vec<f64>) -> Self {
        Quantiles {
            q05: q[0],
            q25: q[1],
            q50: q[2],
            q75: q[3],
            q95: q[4],
        }
    }

    pub fn of(values: &[f64]) -> Self {
        Self::from(tail::quantiles(values, &QS))
    }

    /// Quantiles of tail indices, taken in 1/α space (`tail::alpha_quantiles`).
    pub fn of_alpha(alphas: &[f64]) -> Self {
        Self::from(tail::alpha_quantiles(alphas, &QS))
    }
}

/// Pooled, per-tensor results (field names are the JSON and CSV schema).
#[derive(Clone, Debug, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub shape: Vec<usize>,
    pub coords: usize,
    /// Block-sum length K1 and the rows inside complete blocks.
    pub block_size: usize,
    pub block_rows: usize,
    pub alpha_time_blocked: f64,
    /// Delete-one-time-block jackknife SE and the 95% interval built from it.
    pub alpha_time_blocked_se: f64,
    pub alpha_time_blocked_ci: [f64; 2],
    /// The SE if coordinates were independent; too small when they move together.
    pub alpha_time_blocked_se_iid: f64,
    pub alpha_simsekli_flat: f64,
    pub simsekli_m: u64,
    pub alpha_block_quantiles: Quantiles,
    pub alpha_logm_quantiles: Quantiles,
    pub jb_reject_frac: f64,
    pub k2_reject_frac: f64,
    /// The per-tensor summary of the distribution fits (null without them).
    #[serde(flatten)]
    pub fits: FitsSummary,
    pub constant_coords: u64,
    pub few_finite_coords: u64,
    pub logm_clamped_coords: u64,
    pub zero_entries: u64,
    pub nonfinite_samples: u64,
    pub dropped_blocks: u64,
    /// The covariance spectrum, noise scale and power-law fits (null when not computed).
    #[serde(flatten)]
    pub structure: structure::summary::TensorStructure,
    /// Why an estimate is null, one sentence each (empty when every estimate is defined).
    pub notes: Vec<String>,
}

/// z for a two-sided 95 % interval.
pub fn z95() -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(0.975)
}

/// Finishes one tensor's coordinates in coordinate order, a range at a time, into the
/// per-coordinate table (or, streamed, the maps' file and the maps the summary reads) and
/// what the pooled summary needs of them, so a run that reads whole columns finishes each
/// block's coordinates as soon as it has them and keeps no accumulator for the rest of the
/// tensor. [`TensorFinish::finish`] then gives the table and the summary, the same bits
/// however the coordinates were cut into ranges.
#[derive(Clone, Debug)]
pub struct TensorFinish {
    /// The kept maps' columns (those [`MapsOut::keeps`]), each the tensor's length from the
    /// start (zeroed memory from the system, whose pages are first touched by the threads
    /// that write them); the first `done` values of each are the coordinates added so far.
    columns: Vec<Vec<f64>>,
    /// Every map finished ([`Stat::CORE`], with the fits [`Stat::FITS`] after them).
    maps: &'static [Stat],
    /// The tensor's name, for the sink.
    tensor: String,
    out: MapsOut,
    /// The streamed maps of the coordinates being added, reused from call to call.
    scratch: Vec<Vec<f64>>,
    done: usize,
    /// The normality tests' sample-size terms for the n most coordinates share.
    terms: gauss::NormalTerms,
    constant_coords: u64,
    few_finite: u64,
    clamped: u64,
    /// Coordinates where Jarque–Bera and D'Agostino–Pearson are defined, and where they reject
    /// at 5 %.
    jb: Rejects,
    k2: Rejects,
    /// The usable coordinates' per-time-block sums, in coordinate order.
    pooled: BlockSums,
    zeros: u64,
    bad_blocks: u64,
    nonfinite: u64,
    /// Σ shift² over the coordinates: |ḡ|² of the noise scale when the centre is the mean.
    pub shift_sq: f64,
}

/// Each of `maps`' values for coordinates `at` of a [`TensorFinish`] (those being added, or
/// just added): a stretch of its column where `out` keeps it, else its scratch.
fn parts<'a>(
    maps: &[Stat],
    out: &MapsOut,
    columns: &'a mut [Vec<f64>],
    scratch: &'a mut [Vec<f64>],
    at: Range<usize>,
) -> Vec<&'a mut [f64]> {
    let (mut kept, mut streamed) = (columns.iter_mut(), scratch.iter_mut());
    maps.iter()
        .map(|&s| match out.keeps(s) {
            true => &mut kept.next().expect("a column per kept map")[at.clone()],
            false => &mut streamed.next().expect("a scratch per streamed map")[..],
        })
        .collect()
}

/// A normality test's p-values counted: defined (not NaN) and below 0.05.
#[derive(Clone, Copy, Debug, Default)]
struct Rejects {
    tested: u64,
    hits: u64,
}

impl Rejects {
    fn of(ps: &[f64]) -> Self {
        let ps = ps.iter().filter(|v| !v.is_nan());
        let (tested, hits) = ps.fold((0, 0), |(n, h), &v| (n + 1, h + (v < 0.05) as u64));
        Rejects { tested, hits }
    }

    fn add(self, o: Rejects) -> Self {
        Rejects {
            tested: self.tested + o.tested,
            hits: self.hits + o.hits,
        }
    }

    /// The fraction rejected; NaN where the test is defined nowhere or nothing is usable.
    fn frac(self, usable: u64) -> f64 {
        if usable == 0 || self.tested == 0 {
            f64::NAN
        } else {
            self.hits as f64 / self.tested as f64
        }
    }
}

/// Coordinates per task of [`TensorFinish::add`]: a task writes its stretch of every column.
const FINISH_TASK: usize = 1 << 10;

impl TensorFinish {
    /// For tensor `tensor` of `p` coordinates, whose coordinates mostly have `n` finite
    /// samples (any n gives the same results; the right one saves the tests' setup per
    /// coordinate); its maps go to `out`.
    pub fn new(tensor: &str, p: usize, n: u64, fits: bool, out: &MapsOut) -> Self {
        let maps = Stat::maps(fits, false);
        let kept = maps.iter().filter(|&&s| out.keeps(s)).count();
        TensorFinish {
            maps,
            columns: (0..kept).map(|_| bytemuck::zeroed_vec(p)).collect(),
            scratch: vec![Vec::new(); maps.len() - kept],
            tensor: tensor.to_owned(),
            out: out.clone(),
            done: 0,
            terms: gauss::NormalTerms::new(n as f64),
            constant_coords: 0,
            few_finite: 0,
            clamped: 0,
            jb: Rejects::default(),
            k2: Rejects::default(),
            pooled: BlockSums::default(),
            zeros: 0,
            bad_blocks: 0,
            nonfinite: 0,
            shift_sq: 0.0,
        }
    }

    /// Coordinates done so far.
    pub fn len(&self) -> usize {
        self.done
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finishes the next coordinates, those after the ones added so far: their pass-1 and
    /// pass-2 accumulators, pass 1's shift and (when the fits were computed) their fits, all
    /// of one length. Fits of coordinates that are not [`CoordKind::Usable`] are set to NaN
    /// here. Streamed, their maps are written before it returns.
    pub fn add(
        &mut self,
        means: &[MeanAcc],
        shift: &[f64],
        coords: &[CoordAcc],
        mut fits: Option<&mut [Fits]>,
    ) -> crate::Result<()> {
        let p = means.len();
        debug_assert!(shift.len() == p && coords.len() == p);
        let at = self.done..self.done + p;
        for col in &mut self.columns {
            if col.len() < at.end {
                col.resize(at.end, 0.0);
            }
        }
        for col in &mut self.scratch {
            col.clear();
            col.resize(p, 0.0);
        }
        let mut dst = parts(
            self.maps,
            &self.out,
            &mut self.columns,
            &mut self.scratch,
            at.clone(),
        );
        let fit_dst = dst.split_off(Stat::CORE.len());
        // The per-coordinate statistics (normaltest, the estimators' logs and powers) on the
        // current rayon pool, eight coordinates at a time in vector lanes (`lanes`), each task
        // writing its stretch of every map in place; the
        // pooled folds below run in coordinate order, so results do not depend on the threads.
        let mut stretches: Vec<Vec<&mut [f64]>> = (0..p.div_ceil(FINISH_TASK))
            .map(|_| Vec::with_capacity(Stat::CORE.len()))
            .collect();
        for col in dst {
            for (task, part) in stretches.iter_mut().zip(col.chunks_mut(FINISH_TASK)) {
                task.push(part);
            }
        }
        let mut kinds = vec![(CoordKind::Usable, false); p];
        let terms = self.terms;
        let (jb, k2) = stretches
            .into_par_iter()
            .zip(kinds.par_chunks_mut(FINISH_TASK))
            .enumerate()
            .map(|(t, (mut task, kinds))| {
                let at = t * FINISH_TASK..t * FINISH_TASK + kinds.len();
                let (means, shift, coords) = (&means[at.clone()], &shift[at.clone()], &coords[at]);
                lanes::finish_run(means, shift, coords, &terms, &mut task, kinds);
                (
                    Rejects::of(task[Stat::JbP.index()]),
                    Rejects::of(task[Stat::K2P.index()]),
                )
            })
            .reduce(Default::default, |a, b| (a.0.add(b.0), a.1.add(b.1)));
        (self.jb, self.k2) = (self.jb.add(jb), self.k2.add(k2));
        for (j, &(kind, clamped)) in kinds.iter().enumerate() {
            let t = &coords[j].tails;
            match kind {
                CoordKind::Constant => self.constant_coords += 1,
                CoordKind::FewFinite => self.few_finite += 1,
                CoordKind::Usable => {
                    self.clamped += clamped as u64;
                    self.pooled.combine(&t.block_sums());
                }
            }
            self.zeros += t.zeros;
            self.bad_blocks += t.bad_blocks;
            self.nonfinite += means[j].nonfinite;
            self.shift_sq += shift[j] * shift[j];
            if let Some(fits) = fits.as_deref_mut() {
                if kind != CoordKind::Usable {
                    fits[j] = Fits::NAN;
                }
            }
        }
        if let Some(fits) = fits.as_deref() {
            fit_dst.into_par_iter().enumerate().for_each(|(i, col)| {
                for (v, f) in col.iter_mut().zip(fits) {
                    *v = f.to_array()[i];
                }
            });
        }
        self.done = at.end;
        self.stream(at)
    }

    /// Writes every map of the coordinates `at` just added, the kept ones included.
    fn stream(&mut self, at: Range<usize>) -> crate::Result<()> {
        let MapsOut::Streamed(sink) = &self.out else {
            return Ok(());
        };
        let first = at.start;
        let parts = parts(
            self.maps,
            &self.out,
            &mut self.columns,
            &mut self.scratch,
            at,
        );
        let maps: Vec<(Stat, &[f64])> = self
            .maps
            .iter()
            .copied()
            .zip(parts.into_iter().map(|p| &*p))
            .collect();
        sink.write_maps(&self.tensor, first, &maps)
    }

    /// The table and the pooled summary of the tensor `name` of `shape`, once every
    /// coordinate has been added: the time-blocked estimate from the per-time-block sums
    /// `blocks` of `acc` with blocks of `k1` over the first `block_rows` rows, the original
    /// estimate from its flat state with block length `simsekli_m`; the fits' summary from
    /// `fits`, every coordinate's (as [`TensorFinish::add`] left them).
    #[allow(clippy::too_many_arguments)] // one call site; the arguments are the tensor's parts
    pub fn finish(
        self,
        name: &str,
        shape: &[usize],
        acc: &TensorAcc,
        fits: Option<&[Fits]>,
        k1: usize,
        block_rows: usize,
        simsekli_m: u64,
    ) -> (TensorSummary, CoordTable) {
        let p = self.len();
        let (constant_coords, few_finite) = (self.constant_coords, self.few_finite);
        let mut columns = self.columns;
        for col in &mut columns {
            col.truncate(p);
        }
        let kept = self.maps.iter().filter(|&&s| self.out.keeps(s));
        let table = CoordTable::new(kept.copied().collect(), columns);
        let tb = tail::time_blocked(&self.pooled, &acc.blocks, z95());
        let usable = p as u64 - constant_coords - few_finite;
        // Fraction of usable coordinates with p < 0.05, over those where the test is defined
        // (normaltest needs 8 samples): NaN when it is defined nowhere.
        let (jb_reject_frac, k2_reject_frac) = (self.jb.frac(usable), self.k2.frac(usable));
        // Two selections over a million values or more each: side by side on the current pool.
        let quantiles = |s: Stat| Quantiles::of_alpha(table.get(s));
        let (alpha_block_quantiles, alpha_logm_quantiles) = rayon::join(
            || quantiles(Stat::AlphaBlock),
            || quantiles(Stat::AlphaLogm),
        );
        let mut notes = Vec::new();
        if usable == 0 {
            notes.push(format!(
                "no usable coordinate ({constant_coords} constant, {few_finite} with fewer than {MIN_FINITE} finite samples): every pooled estimate is null"
            ));
        } else if tb.alpha.is_nan() {
            notes.push(
                "alpha_time_blocked: no time block holds two nonzero entries with a nonzero sum"
                    .into(),
            );
        }
        // With every coordinate constant the centred entries are zeros or rounding residue, and
        // the original estimator divides by that residue.
        let flat = if usable == 0 {
            f64::NAN
        } else {
            tail::simsekli_flat(simsekli_m, &acc.flat.blocks, acc.flat.lx, acc.flat.n)
        };
        if simsekli_m < 2 && usable > 0 {
            notes.push(
                "alpha_simsekli_flat: the number of entries K·P is prime, so the original estimator has no block length (its largest divisor below the square root is 1)".into(),
            );
        }
        let summary = TensorSummary {
            name: name.to_owned(),
            shape: shape.to_vec(),
            coords: p,
            block_size: k1,
            block_rows,
            alpha_time_blocked: tb.alpha,
            alpha_time_blocked_se: tb.se,
            alpha_time_blocked_ci: tb.ci,
            alpha_time_blocked_se_iid: tb.se_iid,
            alpha_simsekli_flat: flat,
            simsekli_m,
            alpha_block_quantiles,
            alpha_logm_quantiles,
            jb_reject_frac,
            k2_reject_frac,
            fits: fits.map_or(FitsSummary::NONE, fits::summarize),
            constant_coords,
            few_finite_coords: few_finite,
            logm_clamped_coords: self.clamped,
            zero_entries: self.zeros,
            nonfinite_samples: self.nonfinite,
            dropped_blocks: self.bad_blocks,
            structure: Default::default(),
            notes,
        };
        (summary, table)
    }
}
