//! Tail-index estimators: block sums (Mohammadi, Mohammadpour & Ogata 2015; Simsekli et al.
//! 2019), log-moments (Ma & Nikias 1995; Kuruoglu 2001), their standard errors and the
//! Simsekli-compatible flat pooling. Spec sections are cited per function.

use std::f64::consts::PI;

use crate::engine::accum::{BlockSums, TailAcc};

/// eps of the original `alpha_estimator` (`np.spacing(1)`), added to |x| before the log.
pub const FLAT_EPS: f64 = 2.220446049250313e-16;

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

/// Block length K1 for K samples: the largest divisor of K not above √K (Simsekli's rule),
/// unless it falls below max(4, ⌊√K⌋/2); then ⌊√K⌋, with trailing samples left out as in the
/// later `alpha_estimator_one` code. Without the floor K1 would hang on K's factorisation:
/// K = 1000 gives 25 but K = 1004 would give 4.
pub fn default_k1(k: usize) -> usize {
    let d = largest_divisor_below_sqrt(k as u64) as usize;
    let root = (k as f64).sqrt().floor() as usize;
    if d as f64 >= (root as f64 / 2.0).max(4.0) {
        d
    } else {
        root
    }
}

/// Block-sum α of one coordinate from its tail state: 1 / [(ly/ny - lx/nx) / (lm/ny)]
/// (Mohammadi et al. 2015 with the zeros rule, see `TailAcc`).
pub fn block_alpha(t: &TailAcc) -> f64 {
    1.0 / t.block_sums().inv_alpha()
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
        (1.0 / (6.0 / (PI * PI) * var - 0.5).sqrt(), false)
    } else {
        (2.0, true)
    };
    let scale = (mean - EULER * (1.0 / alpha - 1.0)).exp();
    (alpha, scale, clamped)
}

/// A pooled α with its standard errors and 95% interval, built in 1/α space.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Pooled {
    pub alpha: f64,
    /// Delete-one-time-block jackknife SE, α units.
    pub se: f64,
    /// [low, high] from 1/α ± z·SE(1/α) inverted; `high` is +∞ (null in JSON) when the
    /// interval for 1/α reaches 0.
    pub ci: [f64; 2],
    /// The independent-coordinates SE: √(v(α)/NY)/mean ln m_b, α²-scaled.
    pub se_iid: f64,
}

/// Time-blocked pooled α from a tensor's block-sum sums pooled over its non-constant
/// coordinates (`total`), and its delete-one-time-block jackknife SE from the same sums kept
/// per time block (`blocks`, which add up to `total`): 1/α_(-b) from the totals less block b, SE(1/α) = √((n-1)/n · Σ_b (1/α_(-b) - mean)²) over the n blocks
/// that hold entries, SE(α) = α²·SE(1/α) (delta method), CI = the inverse of 1/α ± z·SE(1/α).
/// Coordinates share every minibatch, so only time blocks are independent replicates; a
/// jackknife over coordinate groups reads near zero when coordinates move together.
pub fn time_blocked(total: &BlockSums, blocks: &[BlockSums], z: f64) -> Pooled {
    let inv = total.inv_alpha();
    let alpha = 1.0 / inv;
    let used: Vec<&BlockSums> = blocks.iter().filter(|b| b.nx > 0.0).collect();
    let n = used.len();
    let se_inv = if n < 2 || !inv.is_finite() {
        f64::NAN
    } else {
        let loo: Vec<f64> = used.iter().map(|b| total.without(b).inv_alpha()).collect();
        let mean = loo.iter().sum::<f64>() / n as f64;
        let ss: f64 = loo.iter().map(|t| (t - mean).powi(2)).sum();
        ((n - 1) as f64 / n as f64 * ss).sqrt()
    };
    let se_iid_inv = (log_variance(alpha) / total.ny).sqrt() / (total.sm / total.ny);
    let (ci, se) = if se_inv.is_finite() {
        let lo = 1.0 / (inv + z * se_inv);
        let hi = if inv - z * se_inv > 0.0 {
            1.0 / (inv - z * se_inv)
        } else {
            f64::INFINITY
        };
        ([lo, hi], alpha * alpha * se_inv)
    } else {
        ([f64::NAN; 2], f64::NAN)
    };
    Pooled {
        alpha,
        se,
        ci,
        se_iid: alpha * alpha * se_iid_inv,
    }
}

/// The original `alpha_estimator(m, X)` finished from its sums (spec §3.2): block sums Y,
/// Σ ln(|x| + eps) over `n` entries. NaN when m < 2 (a prime N leaves no block length; the
/// original divides 0 by ln 1 = 0).
pub fn simsekli_flat(m: u64, blocks: &[f64], lx: f64, n: u64) -> f64 {
    if m < 2 || n == 0 {
        return f64::NAN;
    }
    let eps = FLAT_EPS;
    let ly = blocks.iter().map(|y| (y.abs() + eps).ln()).sum::<f64>() / blocks.len() as f64;
    let diff = (ly - lx / n as f64) / (m as f64).ln();
    1.0 / diff
}

/// numpy `percentile` (linear interpolation) over the non-NaN values, like `nanpercentile`.
pub fn quantiles(values: &[f64], qs: &[f64]) -> Vec<f64> {
    quantiles_of(values.iter().copied().filter(|x| !x.is_nan()).collect(), qs)
}

/// [`quantiles`] of `v`, which holds no NaN, reordering it in place.
fn quantiles_of(mut v: Vec<f64>, qs: &[f64]) -> Vec<f64> {
    if v.is_empty() {
        return vec![f64::NAN; qs.len()];
    }
    let last = v.len() - 1;
    let at = |q: f64| {
        let h = last as f64 * q;
        let lo = h.floor() as usize;
        (h, lo, (lo + 1).min(last))
    };
    let picks: Vec<usize> = qs.iter().flat_map(|&q| [at(q).1, at(q).2]).collect();
    let x = super::sort::select_total(&mut v, &picks);
    qs.iter()
        .enumerate()
        .map(|(i, &q)| {
            let (h, lo, _) = at(q);
            let (vlo, vhi) = (x[2 * i], x[2 * i + 1]);
            vlo + (h - lo as f64) * (vhi - vlo)
        })
        .collect()
}

/// Quantiles of tail indices, taken in 1/α space: α_q = 1 / quantile(1/α, 1 - q) over the
/// finite 1/α. A negative α (block sums smaller than single entries) then sorts as lighter
/// than any α rather than as the heaviest; where the 1/α quantile is ≤ 0, α_q = +∞.
pub fn alpha_quantiles(alphas: &[f64], qs: &[f64]) -> Vec<f64> {
    // One allocation of the largest size (a filtered collect grows by doubling and copying).
    let mut inv = Vec::with_capacity(alphas.len());
    inv.extend(alphas.iter().map(|a| 1.0 / a).filter(|v| v.is_finite()));
    let flipped: Vec<f64> = qs.iter().map(|q| 1.0 - q).collect();
    quantiles_of(inv, &flipped)
        .into_iter()
        .map(|v| {
            if v > 0.0 {
                1.0 / v
            } else if v.is_nan() {
                v
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::X20;

    fn alpha_estimator(m: usize, x: &[f64]) -> f64 {
        let eps = FLAT_EPS;
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
            (1004, 31),
            (1006, 31),
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

    fn sums(sx: f64, nx: f64, sy: f64, m: f64) -> BlockSums {
        BlockSums {
            sx,
            nx,
            sy,
            ny: 1.0,
            sm: m.ln(),
        }
    }

    /// Values from an independent numpy computation of the delete-one-block jackknife.
    #[test]
    fn jackknife_over_time_blocks() {
        let blocks = [
            sums(-10.0, 4.0, -1.0, 4.0),
            sums(-8.0, 4.0, 0.5, 4.0),
            sums(-12.0, 3.0, -2.0, 3.0),
            sums(-9.0, 4.0, 0.2, 4.0),
        ];
        let mut total = BlockSums::default();
        blocks.iter().for_each(|b| total.combine(b));
        let p = time_blocked(&total, &blocks, 1.959963984540054);
        for (got, want) in [
            (p.alpha, 0.6490735027194791),
            (p.se, 0.07245112266425827),
            (p.ci[0], 0.5325618455751912),
            (p.ci[1], 0.830841547809197),
        ] {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        // Identical blocks: every leave-one-out estimate equals the whole, SE 0.
        let same = [blocks[0]; 5];
        let mut total = BlockSums::default();
        same.iter().for_each(|b| total.combine(b));
        assert_eq!(time_blocked(&total, &same, 1.96).se, 0.0);
        assert!(time_blocked(&blocks[0], &blocks[..1], 1.96).se.is_nan());
    }

    /// Zeros rule on one coordinate: [0, 2, 0, -1 | 3, 0, 0, 0 | 1, 1, 1, 1], K1 = 4. Block 1
    /// has m = 2, Y = 1; block 2 has m = 1 and is not counted; block 3 has m = 4, Y = 4.
    #[test]
    fn zeros_rule_counts_nonzero_entries_per_block() {
        let t = TailAcc {
            nx: 7,
            lx: 2f64.ln() + 3f64.ln(),
            ny: 2,
            ly: 4f64.ln(),
            lm: 2f64.ln() + 4f64.ln(),
            ..TailAcc::default()
        };
        let want = 1.0 / ((4f64.ln() / 2.0 - (6f64.ln()) / 7.0) / ((8f64.ln()) / 2.0));
        assert!((block_alpha(&t) - want).abs() < 1e-15);
    }

    #[test]
    fn quantiles_match_numpy() {
        let q = quantiles(&[3.0, f64::NAN, 1.0, 2.0, 4.0], &[0.05, 0.5, 0.95]);
        // numpy.nanpercentile([3, nan, 1, 2, 4], [5, 50, 95]) = [1.15, 2.5, 3.85]
        for (a, b) in q.iter().zip([1.15, 2.5, 3.85]) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// numpy: 1 / np.quantile([0.5, 1, -0.25, 2, 0], 1 - q) for q = 0.05, 0.5, 0.95.
    #[test]
    fn alpha_quantiles_in_inverse_space() {
        let q = alpha_quantiles(
            &[2.0, 1.0, -4.0, 0.5, f64::NAN, f64::INFINITY],
            &[0.05, 0.5, 0.95],
        );
        assert!((q[0] - 0.5555555555555556).abs() < 1e-12, "{q:?}");
        assert!((q[1] - 2.0).abs() < 1e-12, "{q:?}");
        assert_eq!(q[2], f64::INFINITY);
        assert!(alpha_quantiles(&[f64::NAN], &[0.5])[0].is_nan());
    }
}
