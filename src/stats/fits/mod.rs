//! Per-coordinate distribution fits over the K samples of one coordinate, and their per-tensor
//! summary: McCulloch's stable-law quantile fit, Anderson–Darling and Kolmogorov–Smirnov
//! against the fitted normal, the KS distance to the fitted stable law, and Wu et al.'s
//! finite-variance diagnostics. Each column is sorted once and every fit reads that sort.

pub mod erfc;
pub mod mcculloch;
pub mod normality;
pub mod stable_cdf;
pub mod variance;

#[cfg(test)]
mod tests;

use serde::Serialize;

use normality::{AndersonDarling, KsDistance, NormalAt};

use crate::stats::Quantiles;

/// Per-coordinate fit fields, in output order (the names are the output keys).
pub const FIT_STATS: [&str; 10] = [
    "alpha_mcculloch",
    "beta_mcculloch",
    "scale_mcculloch",
    "loc_mcculloch",
    "ad",
    "ad_p",
    "ks_gauss",
    "ks_stable",
    "top1_share",
    "var_ratio",
];

/// The fits of one coordinate; one field per entry of [`FIT_STATS`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fits {
    /// McCulloch (1986) stable parameters, S1 (scipy's `_fitstart_S1`).
    pub alpha_mcculloch: f64,
    pub beta_mcculloch: f64,
    pub scale_mcculloch: f64,
    pub loc_mcculloch: f64,
    /// Anderson–Darling A² against N(x̄, s²), s with ddof 1 (scipy.stats.anderson).
    pub ad: f64,
    /// p-value of `ad` (D'Agostino & Stephens 1986); NaN where the adjusted A² exceeds 13.
    pub ad_p: f64,
    /// KS distance to N(x̄, s²) (scipy.stats.kstest's statistic).
    pub ks_gauss: f64,
    /// KS distance to the fitted stable law; NaN when the fit has no positive scale.
    pub ks_stable: f64,
    /// Share of Σu² in the ⌈0.01·K⌉ largest u².
    pub top1_share: f64,
    /// s²(K) / s²(first ⌊K/2⌋ samples), both ddof 1.
    pub var_ratio: f64,
}

impl Fits {
    pub const NAN: Fits = Fits {
        alpha_mcculloch: f64::NAN,
        beta_mcculloch: f64::NAN,
        scale_mcculloch: f64::NAN,
        loc_mcculloch: f64::NAN,
        ad: f64::NAN,
        ad_p: f64::NAN,
        ks_gauss: f64::NAN,
        ks_stable: f64::NAN,
        top1_share: f64::NAN,
        var_ratio: f64::NAN,
    };

    /// The fits from their fields in [`FIT_STATS`] order (the inverse of [`Fits::to_array`]).
    pub fn from_array(a: [f64; 10]) -> Fits {
        let [alpha_mcculloch, beta_mcculloch, scale_mcculloch, loc_mcculloch, ad, ad_p, ks_gauss, ks_stable, top1_share, var_ratio] =
            a;
        Fits {
            alpha_mcculloch,
            beta_mcculloch,
            scale_mcculloch,
            loc_mcculloch,
            ad,
            ad_p,
            ks_gauss,
            ks_stable,
            top1_share,
            var_ratio,
        }
    }

    /// The fields in [`FIT_STATS`] order.
    pub fn to_array(&self) -> [f64; 10] {
        [
            self.alpha_mcculloch,
            self.beta_mcculloch,
            self.scale_mcculloch,
            self.loc_mcculloch,
            self.ad,
            self.ad_p,
            self.ks_gauss,
            self.ks_stable,
            self.top1_share,
            self.var_ratio,
        ]
    }
}

/// numpy's `quantile(…, method="linear")` of a sorted, NaN-free slice: virtual index
/// h = (n-1)·p between neighbours, blended with numpy's `_lerp`, which for weights of 1/2 and
/// more counts back from the upper neighbour (that keeps the result monotone in p).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * p;
    if h >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if h <= 0.0 {
        return sorted[0];
    }
    let lo = h.floor();
    let t = h - lo;
    let (a, b) = (sorted[lo as usize], sorted[lo as usize + 1]);
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// numpy's `median`: the middle order statistic, or the mean of the two middle ones for even n;
/// NaN when empty or when any value is NaN. `scratch` is reused across calls.
pub fn median(values: &[f64], scratch: &mut Vec<f64>) -> f64 {
    let n = values.len();
    if n == 0 || values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    let (left, mid, _) = scratch.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *mid;
    if n % 2 == 1 {
        return hi;
    }
    let lo = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

multiversion! {
    /// Fits one coordinate from its K centred samples in sampling order. `scratch` holds the
    /// sorted copy and four columns of per-point values, and is reused across coordinates, so
    /// a column costs one sort and no allocation once `scratch` has grown to 5K. Fewer than 2
    /// samples, a non-finite sample or a constant column give NaN in every field. Compiled
    /// for AVX-512 and AVX2 too, with the passes over the points and the stable law's slice
    /// inlined (`NormalAt::many`, `StableCdf::new`, `StableCdf::cdf_many`), so their loops run
    /// in 512- or 256-bit registers rather than x86-64's baseline 128: the same operations in
    /// the same order, the same bits.
    pub fn fit_column(values: &[f64], scratch: &mut Vec<f64>) -> Fits => fit_column_body
}

multiversion! {
    /// [`fit_column`] of `values` whose sorted copy (in total order, `sort::sort_total`) the
    /// caller has made: `sorted`. `scratch` holds four columns of per-point values.
    pub fn fit_presorted(values: &[f64], sorted: &[f64], scratch: &mut Vec<f64>) -> Fits => fit_presorted_body
}

/// Body of [`fit_column`].
#[inline(always)]
fn fit_column_body(values: &[f64], scratch: &mut Vec<f64>) -> Fits {
    let n = values.len();
    if !fittable(values) {
        return Fits::NAN;
    }
    // The sorted copy, then the points in each law's units and the laws at them.
    if scratch.len() < 5 * n {
        scratch.resize(5 * n, 0.0);
    }
    let (sorted, rest) = scratch[..5 * n].split_at_mut(n);
    sorted.copy_from_slice(values);
    super::sort::sort_total(sorted);
    fit_sorted(values, sorted, rest)
}

/// Body of [`fit_presorted`].
#[inline(always)]
fn fit_presorted_body(values: &[f64], sorted: &[f64], scratch: &mut Vec<f64>) -> Fits {
    let n = values.len();
    debug_assert_eq!(sorted.len(), n);
    if !fittable(values) {
        return Fits::NAN;
    }
    if scratch.len() < 4 * n {
        scratch.resize(4 * n, 0.0);
    }
    fit_sorted(values, sorted, &mut scratch[..4 * n])
}

/// Whether a column can be fitted: two samples or more, all finite.
#[inline(always)]
fn fittable(values: &[f64]) -> bool {
    values.len() >= 2 && values.iter().all(|v| v.is_finite())
}

/// The fits of `values` from their sorted copy, with `rest` (4n) for the per-point columns.
#[inline(always)]
fn fit_sorted(values: &[f64], sorted: &[f64], rest: &mut [f64]) -> Fits {
    let n = values.len();
    if sorted[0] == sorted[n - 1] {
        return Fits::NAN;
    }
    let mc = mcculloch::fit_sorted(sorted);
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = variance::variance(values);
    let sd = var.sqrt();
    let stable = (mc.scale > 0.0).then(|| stable_cdf::StableCdf::new(mc.alpha, mc.beta));
    let mut ad = AndersonDarling::new(n);
    let mut ks_gauss = KsDistance::new(n);
    let mut ks_stable = KsDistance::new(n);
    // Both laws at every point, a column at a time (`NormalAt::many`, `StableCdf::cdf_many`),
    // so their logarithms run in vector passes.
    let (w, rest) = rest.split_at_mut(n);
    let (cdf, rest) = rest.split_at_mut(n);
    let (ln_cdf, ln_sf) = rest.split_at_mut(n);
    for (w, &x) in w.iter_mut().zip(sorted) {
        *w = (x - mean) / sd;
    }
    NormalAt::many(w, cdf, ln_cdf, ln_sf);
    for i in 0..n {
        let at = NormalAt {
            cdf: cdf[i],
            ln_cdf: ln_cdf[i],
            ln_sf: ln_sf[i],
        };
        ad.push(i, &at);
        ks_gauss.push(i, at.cdf);
    }
    if let Some(law) = &stable {
        for (z, &x) in w.iter_mut().zip(sorted) {
            *z = (x - mc.zeta) / mc.scale;
        }
        law.cdf_many(w, cdf);
        for (i, &f) in cdf.iter().enumerate() {
            ks_stable.push(i, f);
        }
    }
    let ad = ad.value();
    Fits {
        alpha_mcculloch: mc.alpha,
        beta_mcculloch: mc.beta,
        scale_mcculloch: mc.scale,
        loc_mcculloch: mc.loc,
        ad,
        ad_p: normality::ad_pvalue(ad, n),
        ks_gauss: ks_gauss.value(),
        ks_stable: if stable.is_some() {
            ks_stable.value()
        } else {
            f64::NAN
        },
        top1_share: variance::top1_share(sorted),
        var_ratio: variance::var_ratio(values, var),
    }
}

/// Per-tensor summary of the fits (the fields are flattened into the tensor's record of
/// `summary.json`). [`FitsSummary::NONE`] when the fits were not computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FitsSummary {
    /// Quantiles of `alpha_mcculloch` over coordinates with a proper McCulloch fit, taken in
    /// 1/α space: the q-quantile of α is 1 / (the (1-q)-quantile of 1/α), +∞ where that
    /// quantile of 1/α is not positive.
    pub alpha_mcculloch_quantiles: Quantiles,
    /// Fraction of those coordinates with α < 1.9.
    pub alpha_mcculloch_below_1_9_frac: f64,
    /// Coordinates whose quantiles are too tied for McCulloch's fit: non-constant, but with
    /// q95 = q05 (α reads 2 with no scale) or q75 = q25 (scale 0). `None` without fits.
    pub mcculloch_degenerate: Option<u64>,
    /// Fraction of coordinates with both KS distances where the stable law is closer
    /// (`ks_stable < ks_gauss`).
    pub stable_beats_gauss_frac: f64,
    /// Fraction of non-constant coordinates that reject normality by Anderson–Darling at 5 %;
    /// an A² beyond the p-value table (ad_p NaN) rejects.
    pub ad_reject_frac: f64,
    /// numpy median of `top1_share` over non-constant coordinates.
    pub top1_share_median: f64,
}

impl FitsSummary {
    /// The summary of a run without fits: every field null.
    pub const NONE: FitsSummary = FitsSummary {
        alpha_mcculloch_quantiles: Quantiles {
            q05: f64::NAN,
            q25: f64::NAN,
            q50: f64::NAN,
            q75: f64::NAN,
            q95: f64::NAN,
        },
        alpha_mcculloch_below_1_9_frac: f64::NAN,
        mcculloch_degenerate: None,
        stable_beats_gauss_frac: f64::NAN,
        ad_reject_frac: f64::NAN,
        top1_share_median: f64::NAN,
    };
}

/// The quantiles of `alphas` in 1/α space; NaN entries are left out.
pub fn alpha_quantiles(alphas: &[f64]) -> Quantiles {
    let mut inv: Vec<f64> = alphas
        .iter()
        .filter(|a| !a.is_nan())
        .map(|a| 1.0 / a)
        .collect();
    inv.sort_unstable_by(f64::total_cmp);
    let q = |p: f64| {
        let v = quantile_sorted(&inv, 1.0 - p);
        if v > 0.0 {
            1.0 / v
        } else if v.is_nan() {
            f64::NAN
        } else {
            f64::INFINITY
        }
    };
    Quantiles {
        q05: q(0.05),
        q25: q(0.25),
        q50: q(0.5),
        q75: q(0.75),
        q95: q(0.95),
    }
}

fn frac(hits: usize, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        hits as f64 / of as f64
    }
}

/// Summarises one tensor's per-coordinate fits.
pub fn summarize(fits: &[Fits]) -> FitsSummary {
    let proper = |f: &&Fits| f.scale_mcculloch > 0.0;
    let alphas: Vec<f64> = fits
        .iter()
        .filter(proper)
        .map(|f| f.alpha_mcculloch)
        .collect();
    let fitted = fits.iter().filter(|f| !f.ad.is_nan()).count();
    let below = alphas.iter().filter(|&&a| a < 1.9).count();
    let both_ks = fits
        .iter()
        .filter(|f| !f.ks_gauss.is_nan() && !f.ks_stable.is_nan());
    let (mut ks_n, mut ks_hits) = (0, 0);
    for f in both_ks {
        ks_n += 1;
        ks_hits += (f.ks_stable < f.ks_gauss) as usize;
    }
    let rejects = fits
        .iter()
        .filter(|f| !f.ad.is_nan() && (f.ad_p.is_nan() || f.ad_p < 0.05))
        .count();
    let top1: Vec<f64> = fits
        .iter()
        .map(|f| f.top1_share)
        .filter(|v| !v.is_nan())
        .collect();
    FitsSummary {
        alpha_mcculloch_quantiles: alpha_quantiles(&alphas),
        alpha_mcculloch_below_1_9_frac: frac(below, alphas.len()),
        mcculloch_degenerate: Some((fitted - alphas.len()) as u64),
        stable_beats_gauss_frac: frac(ks_hits, ks_n),
        ad_reject_frac: frac(rejects, fitted),
        top1_share_median: median(&top1, &mut Vec::new()),
    }
}
