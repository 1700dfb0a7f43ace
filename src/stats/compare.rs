//! The forms in which two sets of per-coordinate results are compared, shared by the test
//! suite and `gradtail bench`'s agreement column:
//! - α estimates as 1/α (the estimators average in 1/α space; α explodes near 1/α = 0);
//! - p-values as -log10 p, absolute (orders of magnitude; both may underflow to 0);
//! - the mean and McCulloch's location relative to the coordinate's standard deviation
//!   (centred locations are ~0);
//! - skew, kurtosis, McCulloch's β and test statistics relative to max(|value|, 1) (they
//!   cross 0);
//! - everything else relative.

/// Error of `got` against `want` for statistic `stat`; `sd` is the coordinate's standard
/// deviation (used for the mean). Equal values (including equal infinities) give 0.
pub fn error(stat: &str, got: f64, want: f64, sd: f64) -> f64 {
    if got == want {
        return 0.0;
    }
    if stat.starts_with("alpha") {
        (1.0 / got - 1.0 / want).abs()
    } else if stat.ends_with("_p") {
        let (a, b) = (-got.log10(), -want.log10());
        if a == b {
            0.0
        } else {
            (a - b).abs()
        }
    } else if matches!(stat, "mean" | "loc_mcculloch") {
        (got - want).abs() / sd
    } else if matches!(stat, "skew" | "kurt" | "jb" | "k2" | "beta_mcculloch") {
        (got - want).abs() / want.abs().max(1.0)
    } else {
        (got - want).abs() / want.abs()
    }
}

/// Largest error over two columns, and whether NaNs sit in the same places.
pub fn max_error(stat: &str, got: &[f64], want: &[f64], var: &[f64]) -> (f64, bool) {
    let mut worst: f64 = 0.0;
    let mut nan_match = true;
    for ((&g, &w), &v) in got.iter().zip(want).zip(var) {
        if g.is_nan() || w.is_nan() {
            nan_match &= g.is_nan() == w.is_nan();
            continue;
        }
        let e = error(stat, g, w, v.sqrt());
        if e.is_nan() || e > worst {
            worst = if e.is_nan() { f64::INFINITY } else { e };
        }
    }
    (worst, nan_match)
}
