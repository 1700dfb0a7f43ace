//! Continuous power-law fits with a KS-selected xmin (Clauset, Shalizi & Newman 2009, §3),
//! computed exactly as the `powerlaw` package's `Fit` (Alstott, Bullmore & Plenz 2014;
//! version 2.0: powerlaw/fitting.py `find_xmin`, powerlaw/distributions.py `Power_Law`):
//! - zeros are dropped and the values sorted; the candidate xmins are the distinct values
//!   below the maximum, without the largest of them;
//! - at each candidate, α = 1 + n / Σ ln(x/xmin) over the n values ≥ xmin; powerlaw 2.0
//!   bounds α to [0, 3] and, when this closed form falls outside (1.5, 3], refits it by
//!   bounded Nelder–Mead (scipy `minimize`, tol 1e-4) from max(α, 1). Such a refit is
//!   rejected when it fails, leaves [0, 3], or ends within 0.01 of a bound, so exponents
//!   of 3 or more are never selected;
//! - D is the largest gap between the model CDF 1 − (x/xmin)^(1−α) and the data's left-limit
//!   ECDF, both taken at the distinct values ≥ xmin (not the textbook KS statistic, which
//!   also checks the right limit);
//! - the xmin with the smallest D among accepted fits wins; if none is accepted, the smallest
//!   D overall (the package's `noise_flag`, reported here as `valid = false`).
//!
//! The scan costs O(n²). Up to `EXACT_MAX_N` values every candidate is tried
//! (`XminSearch::Exact`); beyond it, the candidates whose tails hold n, n/1.01, n/1.01², …
//! values (every tail size below 100), down to the smallest tail (`XminSearch::Grid`: about
//! 100 + 100 ln(n/100) candidates, O(100 n) work). The grid's D is the smallest D over a
//! subset, so it is never below the exact one. Measured on a loaded 2-core VM (release):
//! exact scans of 10⁴ values in 1.5 s and 3·10⁴ in 18 s; the grid over 10⁶ values in 4.6 s.

use rayon::prelude::*;
use serde::Serialize;

use super::neldermead;
use super::xmin_scan::ScanJob;
use super::StructureError;

/// Largest sample scanned over every candidate xmin; larger samples use the grid.
pub const EXACT_MAX_N: usize = 10_000;

/// Ratio of successive tail sizes in the grid search.
pub const GRID_RATIO: f64 = 1.01;

/// c in the asymptotic 5 % KS critical value c/√n_tail.
pub const KS_C_05: f64 = 1.358;

/// `powerlaw`'s stand-in for a zero likelihood, 10**sys.float_info.min_10_exp.
pub(crate) const TINY: f64 = 1e-307;

/// Which xmin candidates were tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XminSearch {
    Exact,
    Grid,
}

/// Magnitudes prepared for fitting: positive, finite, ascending.
#[derive(Clone, Debug)]
pub struct Sample {
    x: Vec<f64>,
    /// Index in `x` of the first copy of each distinct value.
    first: Vec<usize>,
    /// ln of each distinct value.
    ln: Vec<f64>,
    /// Σ ln x over the values from each distinct value's first copy to the end, a Neumaier
    /// (sum, compensation) pair: every candidate's MLE in O(1) instead of a pass over its tail.
    tail_ln: Vec<(f64, f64)>,
}

/// The fit at one candidate xmin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub xmin: f64,
    pub alpha: f64,
    pub d: f64,
    /// Standard error of α, (α − 1)/√n_tail.
    pub sigma: f64,
    pub n_tail: usize,
    /// In range and not flagged (powerlaw's `in_range() and not noise_flag`).
    pub valid: bool,
}

/// The selected power-law fit. `alpha` is the PDF exponent; the tail index is α − 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PowerLawFit {
    pub alpha: f64,
    pub xmin: f64,
    #[serde(rename = "D")]
    pub d: f64,
    pub n_tail: usize,
    pub sigma: f64,
    pub xmin_search: XminSearch,
    /// False when no candidate gave an accepted fit; the values are then those of the
    /// smallest D overall, as the package reports them.
    pub valid: bool,
    /// Values fitted (zeros dropped).
    pub n: usize,
}

impl PowerLawFit {
    /// The KS criterion often reported beside such fits: D ≤ c/√n_tail (c = `KS_C_05` at
    /// 5 %). It ignores that α and xmin were fitted to these very data, so it rejects far
    /// too rarely (it accepts |N(0, 1)| samples); the bootstrap p-value does not.
    pub fn ks_accepts(&self, c: f64) -> bool {
        self.d <= c / (self.n_tail as f64).sqrt()
    }
}

impl Sample {
    /// Takes magnitudes |x|: zeros are dropped (as the package does), negative or non-finite
    /// values are refused.
    pub fn new(values: &[f64]) -> Result<Self, StructureError> {
        let bad = values
            .iter()
            .filter(|v| !(v.is_finite() && **v >= 0.0))
            .count();
        if bad > 0 {
            return Err(StructureError::BadMagnitudes(bad));
        }
        let mut x: Vec<f64> = values.iter().copied().filter(|&v| v > 0.0).collect();
        crate::stats::sort::sort_total(&mut x);
        Ok(Self::from_sorted(x))
    }

    /// From values already positive, finite and ascending (bootstrap replicates).
    pub(crate) fn from_sorted(x: Vec<f64>) -> Self {
        let first: Vec<usize> = (0..x.len())
            .filter(|&i| i == 0 || x[i] != x[i - 1])
            .collect();
        let ln: Vec<f64> = first.iter().map(|&f| x[f].ln()).collect();
        let mut tail_ln = vec![(0.0, 0.0); first.len()];
        let mut acc = (0.0, 0.0);
        for u in (0..first.len()).rev() {
            let copies = first.get(u + 1).unwrap_or(&x.len()) - first[u];
            add_product(&mut acc, copies as f64, ln[u]);
            tail_ln[u] = acc;
        }
        Sample {
            x,
            first,
            ln,
            tail_ln,
        }
    }

    /// Index in the values of the first copy of each distinct value.
    pub fn first(&self) -> &[usize] {
        &self.first
    }

    /// ln of each distinct value.
    pub fn distinct_ln(&self) -> &[f64] {
        &self.ln
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// The values, ascending.
    pub fn values(&self) -> &[f64] {
        &self.x
    }

    /// The values ≥ `xmin`, ascending.
    pub fn tail(&self, xmin: f64) -> &[f64] {
        &self.x[self.x.partition_point(|&v| v < xmin)..]
    }

    /// The search the package's rule picks for this sample under `exact_max_n`.
    pub fn search(&self, exact_max_n: usize) -> XminSearch {
        if self.len() <= exact_max_n {
            XminSearch::Exact
        } else {
            XminSearch::Grid
        }
    }

    /// Indices into the distinct values of the candidate xmins, ascending.
    pub fn candidates(&self, search: XminSearch) -> Vec<usize> {
        let m = self.first.len().saturating_sub(2);
        match search {
            XminSearch::Exact => (0..m).collect(),
            XminSearch::Grid => {
                let n = self.len();
                let mut out: Vec<usize> = Vec::new();
                let mut t = n as f64;
                while t >= 1.0 {
                    // The distinct value holding the (n − t)-th order statistic.
                    let s = n - (t as usize).min(n);
                    let u = self.first.partition_point(|&f| f <= s) - 1;
                    if u < m && out.last() != Some(&u) {
                        out.push(u);
                    }
                    let next = t / GRID_RATIO;
                    t = if t - next < 1.0 {
                        t - 1.0
                    } else {
                        next.floor()
                    };
                }
                out
            }
        }
    }

    /// The fit at every candidate of `search`, in ascending xmin.
    pub fn scan(&self, search: XminSearch) -> Vec<Candidate> {
        let cands = self.candidates(search);
        let work: usize = cands.iter().map(|&u| self.len() - self.first[u]).sum();
        if work > 1 << 16 {
            cands.par_iter().map(|&u| self.candidate(u)).collect()
        } else {
            cands.iter().map(|&u| self.candidate(u)).collect()
        }
    }

    /// The package's `Fit(values)`: xmin by minimal D, with α, D, n_tail and σ there.
    pub fn fit(&self, exact_max_n: usize) -> Result<PowerLawFit, StructureError> {
        let job = ScanJob::new(self, exact_max_n)?;
        Ok(job.select(&job.host_distances(), 0.0))
    }

    /// `Power_Law(xmin)` on the tail, then its KS distance against the parent's ECDF.
    fn candidate(&self, u: usize) -> Candidate {
        let (alpha, valid) = self.alpha(u);
        self.candidate_with(u, alpha, valid, self.distance(u, alpha))
    }

    /// The candidate at distinct value `u` with its exponent and distance.
    pub(crate) fn candidate_with(&self, u: usize, alpha: f64, valid: bool, d: f64) -> Candidate {
        let n_tail = self.len() - self.first[u];
        Candidate {
            xmin: self.x[self.first[u]],
            alpha,
            d,
            sigma: (alpha - 1.0) / (n_tail as f64).sqrt(),
            n_tail,
            valid,
        }
    }

    /// `Power_Law(xmin)`'s α at distinct value `u` and whether the package accepts it, from
    /// the tail's Σ ln x: Σ ln(x/xmin) = Σ ln x − n_tail·ln xmin with the product and the
    /// difference taken exactly (`add_product`), so only the logs' own rounding remains.
    pub fn alpha(&self, u: usize) -> (f64, bool) {
        let n = self.len() - self.first[u];
        let (hi, lo) = self.tail_ln[u];
        let mut s = (hi, lo);
        add_product(&mut s, -(n as f64), self.ln[u]);
        fit_alpha(n, s.0 + s.1, hi + lo, self.x[self.first[u]])
    }

    /// powerlaw's `compute_distance_metrics` with a parent Fit: the parent's ECDF at the
    /// distinct values (searchsorted-left / n), cut at xmin and renormalised, against the
    /// model CDF there.
    pub fn distance(&self, u: usize, alpha: f64) -> f64 {
        ks_distance(self, u, alpha)
    }
}

multiversion! {
    /// [`Sample::distance`], compiled for AVX-512 and AVX2 too: its loop has no call or branch,
    /// so it runs in vector registers.
    fn ks_distance(sample: &Sample, u: usize, alpha: f64) -> f64 => ks_distance_body
}

/// Body of [`ks_distance`]. (x/xmin)^(1-α) is exp((1-α)·(ln x - ln xmin)) from the cached
/// logs, by the branch-free fdlibm `exp` of the per-coordinate finish (`lanes::exp_mid`, under
/// an ulp, like glibc's): a fifth of `powf`'s cost once vectorised, and within a few ulps of
/// it (the logs' rounding, ~2e-15 absolute). An argument beyond that `exp`'s range (a tail
/// spanning e^700) sends the column to the scalar loop with the library's `exp`.
#[inline(always)]
fn ks_distance_body(sample: &Sample, u: usize, alpha: f64) -> f64 {
    use crate::stats::lanes::{exp_mid, EXP_MAX};
    let (first, ln) = (&sample.first[u..], &sample.ln[u..]);
    let n = sample.len() as f64;
    let dropped = sample.first[u] as f64 / n;
    let in_range = alpha > 0.0 && alpha < 3.0;
    let lmin = sample.ln[u];
    let actual = |f: usize| (f as f64 / n - dropped) / (1.0 - dropped);
    let term = |f: usize, lx: f64| {
        let arg = (1.0 - alpha) * (lx - lmin);
        let model = if in_range {
            1.0 - exp_mid(arg.clamp(-EXP_MAX, EXP_MAX))
        } else {
            TINY
        };
        (model - actual(f), arg.is_nan() || arg.abs() > EXP_MAX)
    };
    // Eight running maxima and minima, one per lane (a single running max would be a chain
    // the compiler cannot split); selects rather than `f64::max`, whose NaN rule keeps the
    // loop scalar, with NaN flagged on its own. The extremes are exact, in any order.
    const L: usize = 8;
    let (mut his, mut los) = ([f64::NEG_INFINITY; L], [f64::INFINITY; L]);
    let (mut nans, mut wides) = ([false; L], [false; L]);
    let (fs, ls) = (first.chunks_exact(L), ln.chunks_exact(L));
    let rest = fs.remainder().iter().zip(ls.remainder());
    for (f, l) in fs.zip(ls) {
        for j in 0..L {
            let (diff, w) = term(f[j], l[j]);
            his[j] = if diff > his[j] { diff } else { his[j] };
            los[j] = if diff < los[j] { diff } else { los[j] };
            nans[j] |= diff.is_nan();
            wides[j] |= w;
        }
    }
    for (&f, &l) in rest {
        let (diff, w) = term(f, l);
        his[0] = if diff > his[0] { diff } else { his[0] };
        los[0] = if diff < los[0] { diff } else { los[0] };
        nans[0] |= diff.is_nan();
        wides[0] |= w;
    }
    let mut hi = his.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut lo = los.iter().fold(f64::INFINITY, |a, &b| a.min(b));
    let (mut nan, wide) = (nans.contains(&true), wides.contains(&true));
    if in_range && wide {
        (hi, lo, nan) = (f64::NEG_INFINITY, f64::INFINITY, false);
        for (&f, &lx) in first.iter().zip(ln) {
            let diff = 1.0 - ((1.0 - alpha) * (lx - lmin)).exp() - actual(f);
            nan |= diff.is_nan();
            hi = hi.max(diff);
            lo = lo.min(diff);
        }
    }
    if nan {
        return f64::NAN;
    }
    // Python's max(D+, D-) keeps D+ unless D- is larger.
    let (plus, minus) = (hi, -lo);
    if minus > plus {
        minus
    } else {
        plus
    }
}

/// Adds k·v to a Neumaier (sum, compensation) pair, the product's rounding error included
/// (fused multiply-add), so that a sum of logs less n·ln xmin keeps its digits.
fn add_product(acc: &mut (f64, f64), k: f64, v: f64) {
    let p = k * v;
    for term in [p, k.mul_add(v, -p)] {
        let t = acc.0 + term;
        acc.1 += if acc.0.abs() >= term.abs() {
            (acc.0 - t) + term
        } else {
            (term - t) + acc.0
        };
        acc.0 = t;
    }
}

/// α of `Power_Law(xmin)` on a tail of `n` values (those ≥ xmin) with Σ ln(x/xmin) = `s` and
/// Σ ln x = `sum_ln`, and whether the package accepts it.
pub(crate) fn fit_alpha(n: usize, s: f64, sum_ln: f64, xmin: f64) -> (f64, bool) {
    // generate_initial_parameters: the closed-form MLE, floored at 1.
    let alpha = (1.0 + n as f64 / s).max(1.0);
    if alpha > 1.5 && alpha <= 3.0 {
        return (alpha, alpha < 3.0);
    }
    // Distribution.fit: bounded Nelder–Mead on the negative log-likelihood. In closed form
    // it is -(n ln C − α Σ ln x) with C = (α − 1) xmin^(α−1); out of range every point
    // counts as the package's TINY likelihood, and for α < 1 the package's negative
    // normaliser gives NaN.
    let nf = n as f64;
    let nll = |p: &[f64]| {
        let a = p[0];
        if !(a > 0.0 && a < 3.0) || a == 1.0 {
            -nf * TINY.ln()
        } else if a < 1.0 {
            f64::NAN
        } else {
            let c = (a - 1.0) * xmin.powf(a - 1.0);
            -(nf * c.ln() - a * sum_ln)
        }
    };
    let m = neldermead::minimize(nll, &[alpha], &[0.0], &[3.0], 1e-4);
    let a = m.x[0];
    let in_range = a > 0.0 && a < 3.0;
    // Near a bound (within 0.01) the package flags the fit; α exactly 1 makes it raise.
    let flagged = !m.success || a - 1e-2 < 0.0 || a + 1e-2 > 3.0 || a == 1.0;
    (a, in_range && !flagged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vector_with_automatic_xmin() {
        // powerlaw 2.0.0: Fit([1,2,3,5,8,13,21,34,55,89]).xmin_fitting_results and the
        // selected fit (python3, printed with repr).
        let s = Sample::new(&[1., 2., 3., 5., 8., 13., 21., 34., 55., 89.]).unwrap();
        let scan = s.scan(XminSearch::Exact);
        let ds = [
            0.20159952, 0.18926435, 0.20210348, 0.2032188, 0.2175122, 0.23212062, 0.23685127,
            0.28451791,
        ];
        let alphas = [
            1.43266741, 1.53336127, 1.58692355, 1.69619765, 1.82934852, 2.04013786, 2.38467584, 3.0,
        ];
        assert_eq!(scan.len(), 8);
        for (c, (&d, &a)) in scan.iter().zip(ds.iter().zip(&alphas)) {
            // The package printed 8 significant digits.
            assert!(
                (c.d - d).abs() < 1e-8 && (c.alpha - a).abs() < 1e-8,
                "{c:?}"
            );
        }
        assert!(scan[..7].iter().all(|c| c.valid) && !scan[7].valid);
        let f = s.fit(EXACT_MAX_N).unwrap();
        assert_eq!(
            (f.xmin, f.n_tail, f.xmin_search),
            (2.0, 9, XminSearch::Exact)
        );
        // Closed-form α and D: only summation order and libm rounding can differ.
        assert!((f.alpha - 1.533361268092036).abs() < 1e-14);
        assert!((f.d - 0.18926435285523335).abs() < 1e-14);
        assert!((f.sigma - 0.17778708936401202).abs() < 1e-14);
        assert!(f.valid);
        // 1.358/√9 = 0.453 ≥ D = 0.189; c = 0.5 gives 0.167 < D and rejects.
        assert!(f.ks_accepts(KS_C_05) && !f.ks_accepts(0.5));
    }

    #[test]
    fn refit_below_one_and_a_half_follows_the_package() {
        // Quantiles of a Pareto law with PDF exponent 1.3: xᵢ = (1 − (i + ½)/40)^(−1/0.3).
        // powerlaw 2.0.0 Fit(x): alpha 1.3065031012004562, xmin 1.0428207216280099,
        // D 0.016858151963458412, n_tail 40 — a Nelder–Mead refit, since α ≤ 1.5.
        let x: Vec<f64> = (0..40)
            .map(|i| (1.0 - (i as f64 + 0.5) / 40.0).powf(-1.0 / 0.3))
            .collect();
        let f = Sample::new(&x).unwrap().fit(EXACT_MAX_N).unwrap();
        assert_eq!(f.n_tail, 40);
        assert!((f.xmin - 1.0428207216280099).abs() < 1e-15);
        // The refit's objective is summed in closed form here and per point by the package:
        // a rounding-level difference, far inside the optimizer's tolerance of 1e-4.
        assert!((f.alpha - 1.3065031012004562).abs() < 1e-12, "{}", f.alpha);
        assert!((f.d - 0.016858151963458412).abs() < 1e-12, "{}", f.d);
    }

    #[test]
    fn ties_use_the_left_limit_ecdf() {
        // powerlaw 2.0.0: Fit([1,1,2,2,2,3,4,4,5,7,7,9,12,12]): xmin 2.0, alpha
        // 2.164915938556873, D 0.22067642122132608, n_tail 12.
        let s = Sample::new(&[1., 1., 2., 2., 2., 3., 4., 4., 5., 7., 7., 9., 12., 12.]).unwrap();
        let f = s.fit(EXACT_MAX_N).unwrap();
        assert_eq!((f.xmin, f.n_tail), (2.0, 12));
        assert!((f.alpha - 2.164915938556873).abs() < 1e-14);
        assert!((f.d - 0.22067642122132608).abs() < 1e-14);
    }

    #[test]
    fn grid_candidates_cover_every_tail_size_within_one_percent() {
        let x: Vec<f64> = (1..=5000).map(|i| i as f64).collect();
        let s = Sample::new(&x).unwrap();
        let grid = s.candidates(XminSearch::Grid);
        let tails: Vec<usize> = grid.iter().map(|&u| 5000 - s.first[u]).collect();
        assert!(tails.windows(2).all(|w| w[0] > w[1]));
        assert_eq!((tails[0], *tails.last().unwrap()), (5000, 3));
        for w in tails.windows(2) {
            assert!(
                w[0] as f64 <= (w[1] as f64 * GRID_RATIO).ceil() + 1.0,
                "{w:?}"
            );
        }
        assert!(grid.len() < 800, "{}", grid.len());
    }

    #[test]
    fn bad_samples_are_refused() {
        assert!(matches!(
            Sample::new(&[1.0, -2.0, f64::NAN]),
            Err(StructureError::BadMagnitudes(2))
        ));
        let s = Sample::new(&[0.0, 0.0, 1.0, 2.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.len(), 4);
        assert!(matches!(
            s.fit(EXACT_MAX_N),
            Err(StructureError::TooFewDistinct(3))
        ));
        assert!(matches!(
            Sample::new(&[0.0; 5]).unwrap().fit(EXACT_MAX_N),
            Err(StructureError::TooFewDistinct(0))
        ));
    }
}
