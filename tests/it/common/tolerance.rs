//! How results are compared with references, and how closely. Every rule says why.
//!
//! Comparison forms are those of `gradtail::stats::compare` (α as 1/α, p-values as
//! -log10 p, the mean relative to its standard deviation, ...); NaN must appear exactly where
//! the reference has NaN.

/// CPU engine (f64 accumulation) against scipy/numpy in f64: only summation order differs,
/// so 1e-6 leaves five orders of margin over the ~1e-12 errors seen, yet fails on any
/// definitional mistake (ddof, bias, clamping, a dropped zero).
pub const CPU: f64 = 1e-6;

/// GPU engine (f32 element work, compensated f32 partial sums, f64 finish) against f64: f32
/// logs carry ~6e-8 relative error and sums over K ≤ 1024 compensated terms stay near that,
/// so 1e-4 for moments, statistics and 1/α bounds a rounding-level disagreement with margin.
pub const GPU: f64 = 1e-4;

/// GPU p-values, in -log10 p: the statistics carry ~1e-5 relative error, and p = exp(-x/2)
/// amplifies an absolute error δ in x to δ/(2 ln 10) decades, so 1e-3 decades.
pub const GPU_LOG10_P: f64 = 1e-3;

pub use gradtail::stats::compare::error;

/// Compares two per-coordinate columns; returns a description of the first failure.
pub fn compare(
    stat: &str,
    got: &[f64],
    want: &[f64],
    var: &[f64],
    tol: f64,
) -> Result<f64, String> {
    assert_eq!(got.len(), want.len(), "{stat}: lengths differ");
    let mut worst: f64 = 0.0;
    for (j, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() {
            if w.is_nan() != g.is_nan() {
                return Err(format!("{stat}[{j}]: got {g}, want {w} (NaN mismatch)"));
            }
            continue;
        }
        let e = error(stat, g, w, var[j].sqrt());
        if e.is_nan() || e > tol {
            return Err(format!(
                "{stat}[{j}]: got {g}, want {w}, error {e:e} > {tol:e}"
            ));
        }
        worst = worst.max(e);
    }
    Ok(worst)
}

/// A run merged from shards against the same run in one process, same engine: per-coordinate
/// state is identical (each coordinate lies in one shard and is read in the same row
/// chunks), but the pooled sums (per time block, flat blocks, Σ ln(|u| + eps) over the
/// input) add the same f64 terms in another order, which moves a sum of n terms by at most
/// ~n·eps of Σ|terms|. The pooled estimates are smooth ratios of such sums, so 1e-9 relative
/// leaves orders of margin over that (≤ 1e-12 at these sizes) and still fails on any term
/// dropped or counted twice.
pub const MERGED: f64 = 1e-9;

/// The same, on the GPU engine: its pooled per-time-block sums are f32 partial sums over the
/// columns of one workgroup (f64 across workgroups), and a cut inside a tensor regroups the
/// columns, moving each partial by f32 rounding (~6e-8 of its terms). The pooled estimates
/// are smooth ratios of those sums (4e-9 seen), so 1e-6.
pub const MERGED_GPU: f64 = 1e-6;

use gradtail::stats::fits::Fits;

/// The GPU fits (kernel `coord_fits`) against the CPU engine's f64 fits, one rule per field of
/// `stats::fits::Fits`. The kernel's samples are the host's f64 u = x - centre rounded to f32
/// (6e-8 relative) and its arithmetic is f32, with accurate logs and normal tails of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitField {
    Alpha,
    Beta,
    Scale,
    Loc,
    Ad,
    AdP,
    KsGauss,
    KsStable,
    Top1Share,
    VarRatio,
}

impl FitField {
    /// In `stats::fits::FIT_STATS` order.
    pub const ALL: [FitField; 10] = [
        FitField::Alpha,
        FitField::Beta,
        FitField::Scale,
        FitField::Loc,
        FitField::Ad,
        FitField::AdP,
        FitField::KsGauss,
        FitField::KsStable,
        FitField::Top1Share,
        FitField::VarRatio,
    ];

    /// The comparison form of this field of the GPU's fit `got` against the CPU's `want`
    /// (both finite there).
    pub fn error(self, got: &Fits, want: &Fits) -> f64 {
        let i = FitField::ALL.iter().position(|&f| f == self).unwrap();
        let (g, w) = (got.to_array()[i], want.to_array()[i]);
        let rel = |g: f64, w: f64| (g - w).abs() / w.abs().max(f64::MIN_POSITIVE);
        match self {
            FitField::Alpha => (1.0 / g - 1.0 / w).abs(),
            FitField::Beta | FitField::KsGauss | FitField::KsStable => (g - w).abs(),
            FitField::Loc => {
                // δ = ζ - β·c·tan(πα/2) is finished on the host in f64 from the kernel's ζ; it
                // is as good as α, β and c (checked on their own) and ζ, which is compared here
                // in units of c (of |ζ| where c = 0). Near α = 1 tan(πα/2) would turn α's
                // f32-level error into any error at all in δ.
                let zeta = |f: &Fits| {
                    let t = (std::f64::consts::PI * f.alpha_mcculloch / 2.0).tan();
                    let shift = if f.alpha_mcculloch != 1.0 { t } else { 0.0 };
                    f.loc_mcculloch + f.beta_mcculloch * f.scale_mcculloch * shift
                };
                let (zg, zw) = (zeta(got), zeta(want));
                (zg - zw).abs() / want.scale_mcculloch.max(zw.abs()).max(f64::MIN_POSITIVE)
            }
            FitField::Ad => (g - w).abs() / w.abs().max(1.0),
            FitField::AdP => (g.log10() - w.log10()).abs(),
            FitField::Scale | FitField::Top1Share | FitField::VarRatio => rel(g, w),
        }
    }

    pub fn tolerance(self) -> f64 {
        match self {
            // 1/α. ν_α is a ratio of differences of f32 quantiles (~1e-7 relative each; more
            // where the quartiles lie far from the centre relative to their spread) and
            // Table III falls by up to 1.4 per unit ν_α: 4.6e-6 seen on the digits' heaviest
            // columns, 1e-6 on SαS.
            FitField::Alpha => 2e-5,
            // ν_β = (q95 + q05 - 2q50)/(q95 - q05) cancels, and Table IV rises by up to ~30
            // per unit ν_β at small ν_α: 2e-6 seen.
            FitField::Beta => 2e-5,
            // Relative. c = IQR/ν_c: the IQR keeps only f32's 6e-8 of |q25|, |q75| where they
            // sit far from the centre (α near 0.5, where the mean lies among the outliers):
            // 1e-4 seen on one digits column, 2e-6 on SαS.
            FitField::Scale => 5e-4,
            // ζ = q50 + c·ν_ζ, in units of c (or of |ζ|): f32 quantiles and Table VII's
            // interpolation at f32 α and β: 2.4e-7 seen.
            FitField::Loc => 5e-6,
            // Relative to max(1, A²). Per-point Bernoulli divergences in f32 with rounding
            // errors only (split constants, own log, exp and erfc: nothing systematic), over
            // n ≤ 4096 points, ~√n·1e-7: 2.6e-6 seen.
            FitField::Ad => 2e-5,
            // -log10 p: ln p is a quadratic in A² with slope up to 5.7, so 2e-5 of A² ≤ 13
            // moves p by at most 1.3e-4 decades; 1e-5 seen.
            FitField::AdP => 2e-4,
            // Φ in f32 (~1e-7) against i/n: 1e-7 seen.
            FitField::KsGauss => 1e-6,
            // The stable CDF at (u - ζ)/c in f32 (~2e-7 seen on SαS) inherits c's error where
            // c is ill-conditioned (see Scale): 6e-5 seen there.
            FitField::KsStable => 2e-4,
            // Relative: ratio of f32 sums of squares (n ≤ 4096): 4.5e-7 seen.
            FitField::Top1Share => 5e-6,
            // Relative: ratio of two f32 variances, each ~1e-6 relative at worst: 2e-6 seen.
            FitField::VarRatio => 2e-5,
        }
    }
}

/// Asserts every field within its tolerance (NaN exactly where the CPU has NaN); returns the
/// largest error per field for the log.
pub fn check_fits(got: &[Fits], want: &[Fits], what: &str) -> [f64; 10] {
    let mut worst = [0.0f64; 10];
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        let (ga, wa) = (g.to_array(), w.to_array());
        for (i, field) in FitField::ALL.iter().enumerate() {
            let name = gradtail::stats::fits::FIT_STATS[i];
            let (gv, wv) = (ga[i], wa[i]);
            let at = || format!("{what} column {j} {name}: gpu {gv}, cpu {wv}");
            assert_eq!(gv.is_nan(), wv.is_nan(), "{} (NaN mismatch)", at());
            if wv.is_nan() || gv == wv {
                continue;
            }
            let e = field.error(g, w);
            assert!(e <= field.tolerance(), "{}: error {e:e}", at());
            worst[i] = worst[i].max(e);
        }
    }
    println!(
        "{what}: largest errors {:?}",
        gradtail::stats::fits::FIT_STATS
            .iter()
            .zip(worst)
            .collect::<Vec<_>>()
    );
    worst
}
