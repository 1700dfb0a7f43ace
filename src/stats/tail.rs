//! Tail-index estimators: block sums (Mohammadi, Mohammadpour & Ogata 2015; Simsekli et al.
//! 2019), log-moments (Ma & Nikias 1995; Kuruoglu 2001), their standard errors and the
//! Simsekli-compatible flat pooling. Spec sections are cited per function.

use std::f64::consts::PI;

/// Euler–Mascheroni constant.
pub const EULER: f64 = 0.5772156649015329;

/// Largest divisor of `n` not above √n (the rule of Simsekli's `main.py`).
pub fn largest_divisor_below_sqrt(n: u64) -> u64 {
    let mut best = 1;
    let mut i = 1;
    while i * i <= n {
        if n.is_multiple_of(i) {
            best = i;
        }
        i += 1;
    }
    best
}

/// Block length K1 for K samples: the largest divisor of K not above √K, or ⌊√K⌋ (trailing
/// samples left out) when that divisor is below 4 (spec §3.4 A, §3.6).
pub fn default_k1(k: usize) -> usize {
    let d = largest_divisor_below_sqrt(k as u64) as usize;
    if d >= 4 {
        d
    } else {
        (k as f64).sqrt().floor() as usize
    }
}

/// Block-sum α from log means: ln K1 / (mean ln|Y| - mean ln|X|) (spec §3.1).
pub fn block_alpha(k1: usize, ly: f64, ny: u64, lx: f64, nx: u64) -> f64 {
    if ny == 0 || nx == 0 {
        return f64::NAN;
    }
    (k1 as f64).ln() / (ly / ny as f64 - lx / nx as f64)
}

/// Var ln|X| of an SαS law, v(α) = (π²/12)(1 + 2/α²) (spec §2.1).
pub fn log_variance(alpha: f64) -> f64 {
    PI * PI / 12.0 * (1.0 + 2.0 / (alpha * alpha))
}

/// Log-moment α and scale (spec §4.1) from Σ ln|u|, Σ ln²|u| over `n` nonzero u. Returns
/// (α, c, clamped): α = 2 and `clamped` when the ddof-1 variance is at most π²/8.
pub fn log_moment(n: u64, sl: f64, sl2: f64) -> (f64, f64, bool) {
    if n < 2 {
        return (f64::NAN, f64::NAN, false);
    }
    let nf = n as f64;
    let mean = sl / nf;
    let var = ((sl2 - sl * mean) / (nf - 1.0)).max(0.0);
    let (alpha, clamped) = if var > PI * PI / 8.0 {
        ((6.0 / (PI * PI) * var - 0.5).powf(-0.5), false)
    } else {
        (2.0, true)
    };
    let scale = (mean - EULER * (1.0 / alpha - 1.0)).exp();
    (alpha, scale, clamped)
}

/// A pooled α with its standard error and 95% interval, built in 1/α space (spec §3.5).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Pooled {
    pub alpha: f64,
    pub se: f64,
    /// [low, high]; `high` is +∞ (null in JSON) when the interval for 1/α reaches 0.
    pub ci: [f64; 2],
    /// Blocks the estimate rests on (K2 summed over coordinates).
    pub blocks: u64,
}

/// Time-blocked pooled α (spec §3.4 B): block and entry log-means over all coordinates,
/// SE(1/α) = √(v(α)/K2_total)/ln K1, SE(α) = α²·SE(1/α), CI = inverse of 1/α ± z·SE.
pub fn time_blocked(k1: usize, ly: f64, ny: u64, lx: f64, nx: u64, z: f64) -> Pooled {
    let alpha = block_alpha(k1, ly, ny, lx, nx);
    let inv = 1.0 / alpha;
    let se_inv = (log_variance(alpha) / ny as f64).sqrt() / (k1 as f64).ln();
    let lo = 1.0 / (inv + z * se_inv);
    let hi = if inv - z * se_inv > 0.0 {
        1.0 / (inv - z * se_inv)
    } else {
        f64::INFINITY
    };
    Pooled {
        alpha,
        se: alpha * alpha * se_inv,
        ci: [lo, hi],
        blocks: ny,
    }
}

/// Contiguous coordinate groups of the jackknife below.
pub const JACKKNIFE_GROUPS: usize = 20;

/// Delete-one-group jackknife SE of the time-blocked α (spec §3.5), from per-group sums
/// (Σ ln|Y|, #Y, Σ ln|u|, #u) of contiguous coordinate groups. Neighbouring coordinates (a
/// weight matrix's rows, a layer's units) share inputs, so their estimates are correlated;
/// the analytic SE assumes they are not. Computed in 1/α, returned in α units; NaN with fewer
/// than two groups holding blocks.
pub fn time_blocked_jackknife(k1: usize, groups: &[(f64, u64, f64, u64)]) -> f64 {
    let used: Vec<_> = groups.iter().filter(|g| g.1 > 0).collect();
    let g = used.len();
    if g < 2 {
        return f64::NAN;
    }
    let total = used.iter().fold((0.0, 0, 0.0, 0), |a, b| {
        (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
    });
    let inv = |s: (f64, u64, f64, u64)| 1.0 / block_alpha(k1, s.0, s.1, s.2, s.3);
    let loo: Vec<f64> = used
        .iter()
        .map(|b| inv((total.0 - b.0, total.1 - b.1, total.2 - b.2, total.3 - b.3)))
        .collect();
    let mean = loo.iter().sum::<f64>() / g as f64;
    let se_inv =
        ((g - 1) as f64 / g as f64 * loo.iter().map(|t| (t - mean).powi(2)).sum::<f64>()).sqrt();
    let alpha = 1.0 / inv(total);
    alpha * alpha * se_inv
}

/// The original `alpha_estimator(m, X)` finished from its sums (spec §3.2): block sums Y,
/// Σ ln(|x| + eps) over `n` entries. NaN when m < 2 (a prime N leaves no block length; the
/// original divides 0 by ln 1 = 0).
pub fn simsekli_flat(m: u64, blocks: &[f64], lx: f64, n: u64) -> f64 {
    if m < 2 || n == 0 {
        return f64::NAN;
    }
    let eps = crate::engine::cpu::FLAT_EPS;
    let ly = blocks.iter().map(|y| (y.abs() + eps).ln()).sum::<f64>() / blocks.len() as f64;
    let diff = (ly - lx / n as f64) / (m as f64).ln();
    1.0 / diff
}

/// numpy `percentile` (linear interpolation) over the non-NaN values, like `nanpercentile`.
pub fn quantiles(values: &[f64], qs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return vec![f64::NAN; qs.len()];
    }
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    qs.iter()
        .map(|q| {
            let h = (v.len() - 1) as f64 * q;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(v.len() - 1);
            v[lo] + (h - lo as f64) * (v[hi] - v[lo])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::X20;

    fn alpha_estimator(m: usize, x: &[f64]) -> f64 {
        let eps = crate::engine::cpu::FLAT_EPS;
        let ys: Vec<f64> = x.chunks(m).map(|c| c.iter().sum()).collect();
        let lx: f64 = x.iter().map(|v| (v.abs() + eps).ln()).sum();
        simsekli_flat(m as u64, &ys, lx, x.len() as u64)
    }

    #[test]
    fn divisor_rule() {
        for (k, k1) in [
            (512, 16),
            (500, 20),
            (600, 24),
            (1000, 25),
            (1024, 32),
            (100, 10),
            (256, 16),
        ] {
            assert_eq!(default_k1(k), k1, "K = {k}");
        }
        assert_eq!(largest_divisor_below_sqrt(997), 1);
        assert_eq!(default_k1(997), 31);
        assert_eq!(largest_divisor_below_sqrt(256 * 4096), 1024);
    }

    /// Spec §3.8 worked examples.
    #[test]
    fn worked_examples() {
        assert!((alpha_estimator(2, &[1.0, 1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((alpha_estimator(2, &[1.0, -2.0, 3.0, -4.0]) - -0.872417).abs() < 1e-6);
        let a = alpha_estimator(4, &X20);
        assert!(
            ((a - 2.0216184747004124) / 2.0216184747004124).abs() < 1e-9,
            "{a}"
        );
    }

    /// Spec §4.1 worked example on x20: α = 1.357874440532745.
    #[test]
    fn log_moment_x20() {
        let sl: f64 = X20.iter().map(|x| x.abs().ln()).sum();
        let sl2: f64 = X20.iter().map(|x| x.abs().ln().powi(2)).sum();
        let (a, _, clamped) = log_moment(20, sl, sl2);
        assert!(!clamped);
        assert!(((a - 1.357874440532745) / a).abs() < 1e-9, "{a}");
    }

    #[test]
    fn log_moment_clamps_at_gaussian() {
        // Constant magnitude: variance 0 ≤ π²/8.
        let (a, _, clamped) = log_moment(4, 0.0, 0.0);
        assert_eq!((a, clamped), (2.0, true));
    }

    #[test]
    fn jackknife_of_identical_groups_is_zero() {
        let g = (-9.0 * 10.0, 10, -11.0 * 160.0, 160);
        assert_eq!(time_blocked_jackknife(16, &[g; 5]), 0.0);
        assert!(time_blocked_jackknife(16, &[g]).is_nan());
    }

    #[test]
    fn quantiles_match_numpy() {
        let q = quantiles(&[3.0, f64::NAN, 1.0, 2.0, 4.0], &[0.05, 0.5, 0.95]);
        // numpy.nanpercentile([3, nan, 1, 2, 4], [5, 50, 95]) = [1.15, 2.5, 3.85]
        for (a, b) in q.iter().zip([1.15, 2.5, 3.85]) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn ci_is_asymmetric_and_brackets() {
        let p = time_blocked(
            16,
            -10.0 * 100.0 + 0.5 * 16f64.ln() * 100.0,
            100,
            -10.0 * 1600.0,
            1600,
            1.959963984540054,
        );
        assert!((p.alpha - 2.0).abs() < 1e-12);
        assert!(p.ci[0] < p.alpha && p.alpha < p.ci[1]);
        assert!(p.ci[1] - p.alpha > p.alpha - p.ci[0]);
    }
}
