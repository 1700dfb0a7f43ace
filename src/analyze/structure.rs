//! The structure step over whole columns, beside the per-coordinate fits of `columns`: the
//! K × K Gram matrix of a tensor's centred noise (its covariance spectrum, Xie et al. 2023),
//! Σu² for the gradient noise scale (McCandlish et al. 2018), the magnitudes |u_k| of a few
//! samples k over the tensor's coordinates (dimension-wise power-law fits) and the power-law
//! fit of each coordinate's K magnitudes (iteration-wise), on the blocks the whole-column step
//! reads. The Gram is the engine's (`Backend::gram`, called beside [`run`]); the rest is host
//! code for both engines.
//!
//! What accumulates over a tensor's coordinates is one plain state, [`StructureAcc`], with an
//! identity (`new`) and `combine`, so that coordinate ranges (blocks, shards) can be reduced in
//! any grouping. The statistics themselves are `stats::structure`'s.

use rayon::prelude::*;
use serde::Serialize;

use crate::engine::Backend;
use crate::error::Result;
use crate::input::Block;
use crate::stats::structure::alternatives::compare;
use crate::stats::structure::bootstrap::goodness_of_fit_by;
use crate::stats::structure::powerlaw::{EXACT_MAX_N, KS_C_05};
use crate::stats::structure::summary::{
    DimensionFit, IterationSummary, SpectrumSummary, TensorStructure,
};
use crate::stats::structure::xmin_scan::{fit_all, host_scan, ScanJob, Scanned};
use crate::stats::structure::{noise_scale, Centre, Gram, Sample, StructureError};

/// Bytes of one tile (K × columns, f64).
const TILE_BYTES: usize = 512 << 10;
/// Tiles per group: one task's work, a few MiB of columns.
const GROUP_TILES: usize = 8;
/// Groups run at once: a bound on the tiles' outputs held before they are copied out.
const WAVE: usize = 32;

/// What the structure step computes.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct StructureOptions {
    /// The covariance spectrum per tensor and for the model (`--no-spectrum` turns off).
    pub spectrum: bool,
    /// Dimension-wise power-law fits (`--no-powerlaw` turns off).
    pub powerlaw: bool,
    /// Iteration-wise power-law fits of every coordinate (`--powerlaw-coords`).
    pub powerlaw_coords: bool,
    /// Samples k of the dimension-wise fits; `None`: 0, ⌊K/2⌋ and K − 1.
    pub powerlaw_samples: Option<Vec<usize>>,
    /// Bootstrap replicates of the dimension-wise goodness of fit (0: none).
    pub powerlaw_bootstrap: usize,
    pub powerlaw_seed: u64,
    /// Largest sample whose xmin scan tries every candidate; larger ones use the grid.
    pub exact_max_n: usize,
    /// The minibatch size B of the snapshots, for the noise scale (`--batch-size`).
    pub batch_size: Option<f64>,
}

impl Default for StructureOptions {
    fn default() -> Self {
        StructureOptions {
            spectrum: true,
            powerlaw: true,
            powerlaw_coords: false,
            powerlaw_samples: None,
            powerlaw_bootstrap: 0,
            powerlaw_seed: 0,
            exact_max_n: EXACT_MAX_N,
            batch_size: None,
        }
    }
}

impl StructureOptions {
    /// Whether any part of the step runs (it then needs whole columns).
    pub fn any(&self) -> bool {
        self.spectrum || self.powerlaw || self.powerlaw_coords || self.batch_size.is_some()
    }

    /// The samples of the dimension-wise fits for K samples, ascending and distinct; an
    /// error names the first out of range.
    pub fn samples(&self, k: usize) -> Result<Vec<usize>, String> {
        let mut s = match &self.powerlaw_samples {
            Some(s) => s.clone(),
            None => vec![0, k / 2, k - 1],
        };
        if let Some(bad) = s.iter().find(|&&i| i >= k) {
            return Err(format!(
                "--powerlaw-samples {bad}: the inputs hold {k} samples, numbered 0 to {}",
                k - 1
            ));
        }
        s.sort_unstable();
        s.dedup();
        Ok(s)
    }
}

/// One tensor's structure state over the coordinates seen so far.
#[derive(Clone, Debug)]
pub struct StructureAcc {
    /// UUᵀ of the centred noise (with the spectrum), filled by the engine's `Backend::gram`.
    pub gram: Option<Gram>,
    /// Σ_j Σ_k u_kj² over the same centred noise: (K − 1)·tr(C).
    pub sum_sq: f64,
    /// (k, |u_k|) per sample of the dimension-wise fits: one value per coordinate of the
    /// tensor, 0 where not yet seen or not finite (zeros are dropped by the fit).
    pub rows: Vec<(usize, Vec<f64>)>,
}

impl StructureAcc {
    /// The empty state of a tensor of `coords` coordinates (the identity of `combine`).
    pub fn new(k: usize, coords: usize, spectrum: bool, samples: &[usize]) -> Self {
        StructureAcc {
            gram: spectrum.then(|| Gram::new(k)),
            sum_sq: 0.0,
            rows: samples.iter().map(|&s| (s, vec![0.0; coords])).collect(),
        }
    }

    /// Adds the state of other coordinates of the same tensor and samples.
    pub fn combine(&mut self, other: &StructureAcc) -> Result<(), StructureError> {
        if let (Some(a), Some(b)) = (self.gram.as_mut(), other.gram.as_ref()) {
            a.combine(b)?;
        }
        self.sum_sq += other.sum_sq;
        for ((_, a), (_, b)) in self.rows.iter_mut().zip(&other.rows) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        Ok(())
    }
}

impl StructureAcc {
    /// Appends the state of the coordinates that follow these (the next piece of a tensor,
    /// built with `new` for its own coordinates): Grams and Σu² add, |u_k| concatenate.
    pub fn append(&mut self, next: StructureAcc) -> Result<(), StructureError> {
        if let (Some(a), Some(b)) = (self.gram.as_mut(), next.gram.as_ref()) {
            a.combine(b)?;
        }
        self.sum_sq += next.sum_sq;
        for ((_, a), (_, b)) in self.rows.iter_mut().zip(next.rows) {
            a.extend(b);
        }
        Ok(())
    }
}

/// The power-law fit of one coordinate's K magnitudes (the [`crate::stats::Stat::POWERLAW`]
/// maps), NaN where undefined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerLawCoord {
    pub alpha: f64,
    pub xmin: f64,
    pub ks: f64,
    /// Whether D ≤ 1.358/√n_tail (not a map; counted per tensor).
    pub ks_pass: bool,
}

impl PowerLawCoord {
    pub const NAN: PowerLawCoord = PowerLawCoord {
        alpha: f64::NAN,
        xmin: f64::NAN,
        ks: f64::NAN,
        ks_pass: false,
    };

    /// The maps, in [`crate::stats::Stat::POWERLAW`] order.
    pub fn to_array(&self) -> [f64; 3] {
        [self.alpha, self.xmin, self.ks]
    }
}

/// Runs the step on `block` (every sample of coordinates `block.cols`), all but the Gram.
/// `gram_centre` centres the noise of the covariance, `centre` that of the power-law
/// magnitudes (one value per coordinate of the tensor, like `usable`). With `moments` (or a
/// Gram in `acc`) Σu² is accumulated; with `coords`, coordinates where `usable` get their
/// iteration-wise fit.
#[allow(clippy::too_many_arguments)] // one call site per read path
pub fn run(
    block: &Block,
    gram_centre: &[f64],
    centre: &[f64],
    usable: &[bool],
    acc: &mut StructureAcc,
    moments: bool,
    mut coords: Option<&mut [PowerLawCoord]>,
    exact_max_n: usize,
    pool: &rayon::ThreadPool,
) -> Result<(), StructureError> {
    let (k, width) = (block.rows.len(), block.width());
    let base = block.cols.start;
    let tile = (TILE_BYTES / (8 * k.max(1))).clamp(1, 1024);
    let samples: Vec<usize> = acc.rows.iter().map(|r| r.0).collect();
    let job = Tile {
        block,
        moments: moments || acc.gram.is_some(),
        gram_centre: &gram_centre[block.cols.clone()],
        centre: &centre[block.cols.clone()],
        usable: &usable[block.cols.clone()],
        samples: &samples,
        fits: coords.is_some(),
        exact_max_n,
    };
    // Tiles are added in fixed groups, each group in column order on one task, and the groups'
    // parts are merged in column order: sums do not depend on the thread count.
    let groups = width.div_ceil(tile).div_ceil(GROUP_TILES);
    for first in (0..groups).step_by(WAVE) {
        let parts: Vec<Part> = pool.install(|| {
            (first..(first + WAVE).min(groups))
                .into_par_iter()
                .map(|g| {
                    let mut part = Part::new();
                    for t in g * GROUP_TILES..((g + 1) * GROUP_TILES).min(width.div_ceil(tile)) {
                        job.run(t * tile..((t + 1) * tile).min(width), &mut part);
                    }
                    part
                })
                .collect()
        });
        for part in parts {
            acc.sum_sq += part.sum_sq;
            for (start, w, rows, fitted) in part.tiles {
                let at = base + start;
                for ((_, out), row) in acc.rows.iter_mut().zip(rows.chunks_exact(w)) {
                    out[at..at + row.len()].copy_from_slice(row);
                }
                if let Some(out) = coords.as_deref_mut() {
                    out[at..at + fitted.len()].copy_from_slice(&fitted);
                }
            }
        }
    }
    Ok(())
}

/// One tile's outputs: its first column and width, the sampled rows' |u| one row after the
/// other, its coordinates' fits.
type TileOut = (usize, usize, Vec<f64>, Vec<PowerLawCoord>);

/// What one task adds: Σu² and its tiles' outputs.
struct Part {
    sum_sq: f64,
    tiles: Vec<TileOut>,
    buf: Vec<f64>,
}

impl Part {
    fn new() -> Self {
        Part {
            sum_sq: 0.0,
            tiles: Vec::new(),
            buf: Vec::new(),
        }
    }
}

/// The block's slices and what to compute on each tile.
struct Tile<'a> {
    block: &'a Block,
    /// Whether Σu² is wanted.
    moments: bool,
    gram_centre: &'a [f64],
    centre: &'a [f64],
    usable: &'a [bool],
    samples: &'a [usize],
    fits: bool,
    exact_max_n: usize,
}

impl Tile<'_> {
    fn run(&self, cols: std::ops::Range<usize>, part: &mut Part) {
        let (k, w) = (self.block.rows.len(), cols.len());
        // Row-major K × w, as read.
        part.buf.resize(k * w, 0.0);
        let view = self.block.view();
        for r in 0..k {
            view.widen_row(r, cols.clone(), &mut part.buf[r * w..(r + 1) * w]);
        }
        let x = &part.buf;
        let mut rows = Vec::with_capacity(self.samples.len() * w);
        for &s in self.samples {
            rows.extend((0..w).map(|j| {
                let u = (x[s * w + j] - self.centre[cols.start + j]).abs();
                if u.is_finite() {
                    u
                } else {
                    0.0
                }
            }));
        }
        let mut fitted = Vec::with_capacity(if self.fits { w } else { 0 });
        if self.fits {
            let mut mags = Vec::with_capacity(k);
            for j in 0..w {
                let c = cols.start + j;
                if !self.usable[c] {
                    fitted.push(PowerLawCoord::NAN);
                    continue;
                }
                mags.clear();
                mags.extend(
                    (0..k)
                        .map(|r| x[r * w + j])
                        .filter(|v| v.is_finite())
                        .map(|v| (v - self.centre[c]).abs()),
                );
                fitted.push(fit_coord(&mags, self.exact_max_n));
            }
        }
        if self.moments {
            let gc = &self.gram_centre[cols.clone()];
            part.sum_sq += x
                .chunks_exact(w)
                .flat_map(|row| row.iter().zip(gc).map(|(v, c)| (v - c) * (v - c)))
                .sum::<f64>();
        }
        part.tiles.push((cols.start, w, rows, fitted));
    }
}

fn fit_coord(mags: &[f64], exact_max_n: usize) -> PowerLawCoord {
    let fit = Sample::new(mags).and_then(|s| s.fit(exact_max_n));
    match fit {
        Ok(f) => PowerLawCoord {
            alpha: f.alpha,
            xmin: f.xmin,
            ks: f.d,
            ks_pass: f.ks_accepts(KS_C_05),
        },
        Err(_) => PowerLawCoord::NAN,
    }
}

/// |ḡ|² for the noise scale, or why there is none.
pub type MeanSqNorm = Result<f64, String>;

/// The spectrum of `gram`, or a note why it is undefined.
pub fn spectrum_of(
    gram: &Gram,
    centre: Centre,
    notes: &mut Vec<String>,
) -> Option<SpectrumSummary> {
    match gram.finish(centre) {
        Ok(s) => Some(s.into()),
        Err(e) => {
            notes.push(format!("spectrum: {e}"));
            None
        }
    }
}

/// The noise scale from Σu² over K samples, or a note why it is undefined.
pub fn noise_scale_of(
    opts: &StructureOptions,
    sum_sq: f64,
    mean_sq: &MeanSqNorm,
    k: usize,
    centre: Centre,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let batch = opts.batch_size?;
    let value = mean_sq
        .clone()
        .and_then(|g2| noise_scale(batch, sum_sq / (k - 1) as f64, g2, k, centre).map_err(|e| e.0));
    match value {
        Ok(v) => Some(v),
        Err(why) => {
            notes.push(format!("noise_scale: {why}"));
            None
        }
    }
}

/// Finishes one tensor's structure statistics; reasons for nulls go to `notes`. The
/// dimension-wise fits' xmin scans (bootstrap replicates included) run on `engine`'s
/// `xmin_scan`, or on the host without one; only the engine's failure is an error.
#[allow(clippy::too_many_arguments)] // one call site, the finisher's
pub fn finish(
    acc: &StructureAcc,
    coords: Option<&[PowerLawCoord]>,
    mean_sq: &MeanSqNorm,
    k: usize,
    centre: Centre,
    opts: &StructureOptions,
    engine: Option<&mut dyn Backend>,
    notes: &mut Vec<String>,
) -> Result<TensorStructure> {
    let spectrum = acc
        .gram
        .as_ref()
        .and_then(|g| spectrum_of(g, centre, notes));
    let noise_scale = noise_scale_of(opts, acc.sum_sq, mean_sq, k, centre, notes);
    let powerlaw_dimension = if opts.powerlaw {
        Some(dimension_fits(&acc.rows, opts, engine, notes)?)
    } else {
        None
    };
    Ok(TensorStructure {
        spectrum,
        noise_scale,
        powerlaw_dimension,
        powerlaw_iteration: coords.map(iteration_summary),
    })
}

/// The dimension-wise fits of `rows` ((sample k, |u_k|) each), their scans in one batch.
fn dimension_fits(
    rows: &[(usize, Vec<f64>)],
    opts: &StructureOptions,
    mut engine: Option<&mut dyn Backend>,
    notes: &mut Vec<String>,
) -> Result<Vec<DimensionFit>> {
    let exact_max_n = engine
        .as_deref()
        .map_or(opts.exact_max_n, |e| e.xmin_exact_max_n(opts.exact_max_n));
    let mut scan = |jobs: &[ScanJob<'_>]| -> Result<Scanned> {
        match engine.as_deref_mut() {
            Some(e) => e.xmin_scan(jobs),
            None => Ok(host_scan(jobs)),
        }
    };
    let samples: Vec<std::result::Result<Sample, StructureError>> =
        rows.iter().map(|(_, row)| Sample::new(row)).collect();
    let ok: Vec<&Sample> = samples.iter().filter_map(|s| s.as_ref().ok()).collect();
    let mut fits = fit_all(&ok, exact_max_n, &mut scan)?.into_iter();
    let mut out = Vec::with_capacity(rows.len());
    for ((sample, row), s) in rows.iter().zip(&samples) {
        let mut fit = DimensionFit {
            sample: *sample,
            n: row.iter().filter(|&&v| v > 0.0).count(),
            alpha: f64::NAN,
            xmin: f64::NAN,
            d: f64::NAN,
            n_tail: None,
            sigma: f64::NAN,
            xmin_search: None,
            lr_lognormal: None,
            lr_exponential: None,
            p_gof: None,
        };
        let fitted = match s {
            Ok(s) => fits.next().expect("one fit per sample").map(|f| (s, f)),
            Err(e) => Err(e.clone()),
        };
        let (s, f) = match fitted {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("powerlaw_dimension sample {sample}: {e}"));
                out.push(fit);
                continue;
            }
        };
        let c = compare(s.tail(f.xmin), f.xmin, f.alpha);
        fit.alpha = f.alpha;
        fit.xmin = f.xmin;
        fit.d = f.d;
        fit.n_tail = Some(f.n_tail);
        fit.sigma = f.sigma;
        fit.xmin_search = Some(f.xmin_search);
        fit.lr_lognormal = Some(c.lognormal);
        fit.lr_exponential = Some(c.exponential);
        if opts.powerlaw_bootstrap > 0 {
            let (n, seed) = (opts.powerlaw_bootstrap, opts.powerlaw_seed);
            match goodness_of_fit_by(s, &f, n, seed, exact_max_n, &mut scan)? {
                Ok(b) => fit.p_gof = Some(b.p),
                Err(e) => notes.push(format!("powerlaw_dimension sample {sample} p_gof: {e}")),
            }
        }
        out.push(fit);
    }
    Ok(out)
}

fn iteration_summary(coords: &[PowerLawCoord]) -> IterationSummary {
    let fitted: Vec<&PowerLawCoord> = coords.iter().filter(|c| !c.alpha.is_nan()).collect();
    let n = fitted.len();
    let pass = fitted.iter().filter(|c| c.ks_pass).count();
    let mut alphas: Vec<f64> = fitted.iter().map(|c| c.alpha).collect();
    alphas.sort_unstable_by(f64::total_cmp);
    let alpha_median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => alphas[n / 2],
        _ => (alphas[n / 2 - 1] + alphas[n / 2]) / 2.0,
    };
    IterationSummary {
        fitted_coords: n as u64,
        ks_pass_frac: if n == 0 {
            f64::NAN
        } else {
            pass as f64 / n as f64
        },
        ks_c: KS_C_05,
        alpha_median,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::BlockData;

    /// The step on 1, 2 and 3 threads gives bit-identical state, equal to sums written out
    /// here; the sampled rows hold |x − centre| with non-finite values as 0. (The Gram in
    /// `acc` is the engine's, `engine::cpu::gram`'s tests.)
    #[test]
    fn state_is_the_same_on_any_number_of_threads() {
        // 70,000 columns of 16 rows: 3 groups of tiles (4096 columns each, 8 per group).
        let (k, p) = (16, 70_000);
        let x: Vec<f64> = (0..k * p)
            .map(|i| ((i * 7919) % 1013) as f64 / 100.0 - 5.0)
            .collect();
        let centre: Vec<f64> = (0..p).map(|j| (j % 100) as f64 * 1e-2).collect();
        let run_on = |threads, x: &[f64]| {
            let block = Block::new(0..k, 0..p, BlockData::F64(x.to_vec()));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut acc = StructureAcc::new(k, p, true, &[0, 3]);
            let usable = vec![true; p];
            run(
                &block, &centre, &centre, &usable, &mut acc, true, None, 100, &pool,
            )
            .unwrap();
            acc
        };
        let one = run_on(1, &x);
        // Against sums written out here.
        let u = |r: usize, j: usize| x[r * p + j] - centre[j];
        let ss: f64 = (0..k * p).map(|i| u(i / p, i % p).powi(2)).sum();
        assert!((one.sum_sq - ss).abs() < 1e-12 * ss);
        // The step leaves the Gram to the engine.
        assert_eq!(one.gram.as_ref().unwrap().coords(), 0);
        for threads in [2, 3] {
            let other = run_on(threads, &x);
            assert_eq!(other.sum_sq.to_bits(), one.sum_sq.to_bits());
            assert_eq!(other.rows[1].1, one.rows[1].1);
        }
        assert_eq!(one.rows[1].0, 3);
        assert_eq!(one.rows[0].1[42], u(0, 42).abs());
        // A NaN: 0 in the sampled row (dropped by the fit), NaN in Σu².
        let mut bad = x.clone();
        bad[3 * p + 17] = f64::NAN;
        let nan = run_on(2, &bad);
        assert_eq!(nan.rows[1].1[17], 0.0);
        assert!(nan.sum_sq.is_nan());
    }

    #[test]
    fn dimension_samples_default_and_checked() {
        let o = StructureOptions::default();
        assert_eq!(o.samples(256).unwrap(), [0, 128, 255]);
        let o = StructureOptions {
            powerlaw_samples: Some(vec![5, 1, 5]),
            ..o
        };
        assert_eq!(o.samples(8).unwrap(), [1, 5]);
        assert!(o.samples(5).unwrap_err().contains("--powerlaw-samples 5"));
    }
}
