//! Normality of one sorted column against N(x̄, s²) with s the ddof-1 standard deviation:
//! the Anderson–Darling A² of scipy.stats.anderson (scipy/stats/_morestats.py, scipy 1.17), its
//! p-value by D'Agostino & Stephens (1986, Table 4.9) as statsmodels' `normal_ad` computes it
//! (statsmodels/stats/_adnorm.py, 0.15), and the Kolmogorov–Smirnov distance of
//! scipy.stats.kstest against that normal.

use std::f64::consts::{FRAC_1_SQRT_2, LN_2, PI};

use libm::erfc;

/// The standard normal at one point: Φ(w), ln Φ(w) and ln(1 - Φ(w)), all from one erfc of |w|/√2
/// so each is accurate in its own tail (scipy uses `ndtr` and `log_ndtr`, which agree with these
/// to rounding).
#[derive(Clone, Copy, Debug)]
pub struct NormalAt {
    pub cdf: f64,
    pub ln_cdf: f64,
    pub ln_sf: f64,
}

/// Φ(-|w|) = erfc(|w|/√2)/2 and its logarithm. From |w| = 20√2 on, where erfc nears the
/// bottom of the f64 range and loses digits, the logarithm comes from the asymptotic series
/// erfc(y) = e^{-y²}/(y√π)·Σₙ (-1)ⁿ (2n-1)!!/(2y²)ⁿ (Abramowitz & Stegun 7.1.23); twelve terms
/// leave an error below 1e-23 relative at y = 20.
fn lower_tail(w: f64) -> (f64, f64) {
    let y = w.abs() * FRAC_1_SQRT_2;
    let tail = 0.5 * erfc(y);
    if y < 20.0 {
        return (tail, tail.ln());
    }
    let r = 1.0 / (2.0 * y * y);
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 1..=12 {
        term *= -((2 * n - 1) as f64) * r;
        sum += term;
    }
    let ln_erfc = -y * y - (y * PI.sqrt()).ln() + sum.ln();
    (tail, ln_erfc - LN_2)
}

/// Φ(w) alone (scipy's `ndtr`).
pub fn normal_cdf(w: f64) -> f64 {
    let tail = 0.5 * erfc(w.abs() * FRAC_1_SQRT_2);
    if w < 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

impl NormalAt {
    /// [`NormalAt::new`] at every point of `w`, as three columns: `cdf`, `ln_cdf`, `ln_sf`.
    /// The tails come from erfc point by point, their logarithms and those of the bodies
    /// 1 - tail in passes the compiler vectorises (`ln::ln_pos`; glibc's `log` and `log1p` per
    /// point were a quarter of the fits' time). ln(1 - t) is ln s + r/s with s = 1 - t rounded
    /// and r = (1 - s) - t its exact rounding error, the correction of fdlibm's `log1p`, so a
    /// small t keeps its digits.
    // Inlined into `fits::fit_column`, whose vector builds then vectorise its loops.
    #[inline(always)]
    pub fn many(w: &[f64], cdf: &mut [f64], ln_cdf: &mut [f64], ln_sf: &mut [f64]) {
        // First the lower tails in `cdf`, their logs in `ln_cdf`, the bodies' in `ln_sf`. The
        // tails eight at a time (`erfc::erfc8`, libm's bits; the points are sorted, so the
        // eight nearly always share one of its ranges and run in vector registers).
        let (tails, rest) = cdf.split_at_mut(cdf.len() / 8 * 8);
        for (t, w) in tails.chunks_exact_mut(8).zip(w.chunks_exact(8)) {
            let y: [f64; 8] = std::array::from_fn(|j| w[j].abs() * FRAC_1_SQRT_2);
            let t: &mut [f64; 8] = t.try_into().expect("chunks of eight");
            super::erfc::erfc8(&y, t);
            t.iter_mut().for_each(|t| *t *= 0.5);
        }
        for (t, &w) in rest.iter_mut().zip(&w[tails.len()..]) {
            *t = 0.5 * erfc(w.abs() * FRAC_1_SQRT_2);
        }
        ln_cdf.copy_from_slice(cdf);
        crate::engine::ln::ln_abs_in_place(ln_cdf);
        for (b, &t) in ln_sf.iter_mut().zip(cdf.iter()) {
            *b = 1.0 - t;
        }
        crate::engine::ln::ln_abs_in_place(ln_sf);
        for (i, &w) in w.iter().enumerate() {
            let t = cdf[i];
            let s = 1.0 - t;
            let ln_body = ln_sf[i] + ((1.0 - s) - t) / s;
            let (tail, ln_tail) = if w.abs() * FRAC_1_SQRT_2 < 20.0 {
                (t, ln_cdf[i])
            } else {
                lower_tail(w)
            };
            (cdf[i], ln_cdf[i], ln_sf[i]) = if w < 0.0 {
                (tail, ln_tail, ln_body)
            } else {
                (1.0 - tail, ln_body, ln_tail)
            };
        }
    }

    pub fn new(w: f64) -> Self {
        let (tail, ln_tail) = lower_tail(w);
        let ln_body = (-tail).ln_1p();
        if w < 0.0 {
            NormalAt {
                cdf: tail,
                ln_cdf: ln_tail,
                ln_sf: ln_body,
            }
        } else {
            NormalAt {
                cdf: 1.0 - tail,
                ln_cdf: ln_body,
                ln_sf: ln_tail,
            }
        }
    }
}

/// Running Kolmogorov–Smirnov distance over sorted points: D = max(D⁺, D⁻) with
/// D⁺ = max i/n - F(x_i) and D⁻ = max F(x_i) - (i-1)/n (scipy `_compute_d`).
#[derive(Clone, Copy, Debug)]
pub struct KsDistance {
    n: f64,
    d: f64,
}

impl KsDistance {
    pub fn new(n: usize) -> Self {
        KsDistance {
            n: n as f64,
            d: f64::NEG_INFINITY,
        }
    }

    /// Adds the point of 0-based rank `i` with model CDF `f`.
    pub fn push(&mut self, i: usize, f: f64) {
        let above = (i + 1) as f64 / self.n - f;
        let below = f - i as f64 / self.n;
        // f64::max drops a NaN operand; a NaN CDF must poison the distance instead.
        if f.is_nan() {
            self.d = f64::NAN;
        } else if !self.d.is_nan() {
            self.d = self.d.max(above).max(below);
        }
    }

    pub fn value(&self) -> f64 {
        self.d
    }
}

/// Running Anderson–Darling sum. scipy's A² = -n - Σᵢ (2i-1)/n·[ln Φ(wᵢ) + ln(1-Φ(w_{n+1-i}))]
/// regrouped per point (0-based j): point j carries (2j+1)·ln Φ(w_j) + (2n-2j-1)·ln(1-Φ(w_j)),
/// so one pass over the sorted points suffices.
#[derive(Clone, Copy, Debug)]
pub struct AndersonDarling {
    n: usize,
    sum: f64,
}

impl AndersonDarling {
    pub fn new(n: usize) -> Self {
        AndersonDarling { n, sum: 0.0 }
    }

    pub fn push(&mut self, j: usize, at: &NormalAt) {
        let lo = (2 * j + 1) as f64;
        let hi = (2 * (self.n - j) - 1) as f64;
        self.sum += lo * at.ln_cdf + hi * at.ln_sf;
    }

    pub fn value(&self) -> f64 {
        let n = self.n as f64;
        -n - self.sum / n
    }
}

/// The data-free part of A² for a sample of n: with e_j = (2j+1)/(2n), scipy's
/// A² = -n - Σ_j [2e_j ln Φ(w_j) + 2(1-e_j) ln(1-Φ(w_j))] splits into this floor,
/// -n - Σ_j 2[e_j ln e_j + (1-e_j) ln(1-e_j)], plus Σ_j 2·KL(e_j ‖ Φ(w_j)) (Bernoulli
/// divergences, each ≥ 0). The GPU engine sums the divergences in f32, where the original
/// form would cancel to a few digits, and adds this floor in f64.
pub fn ad_floor(n: usize) -> f64 {
    let nf = n as f64;
    let s: f64 = (0..n)
        .map(|j| {
            let e = (2 * j + 1) as f64 / (2.0 * nf);
            e * e.ln() + (1.0 - e) * (-e).ln_1p()
        })
        .sum();
    -nf - 2.0 * s
}

/// p-value of A² for normality with estimated mean and variance (D'Agostino & Stephens 1986):
/// A² is adjusted by (1 + 0.75/n + 2.25/n²) and mapped through four exponential pieces, as in
/// statsmodels' `normal_ad`. Beyond an adjusted 13 the fit is not defined (statsmodels'
/// scalar path returns 0 there, its array path extrapolates); we return NaN.
pub fn ad_pvalue(a2: f64, n: usize) -> f64 {
    let n = n as f64;
    let a = a2 * (1.0 + 0.75 / n + 2.25 / (n * n));
    if a.is_nan() || !(0.0..=13.0).contains(&a) {
        f64::NAN
    } else if a < 0.2 {
        1.0 - (-13.436 + 101.14 * a - 223.73 * a * a).exp()
    } else if a < 0.34 {
        1.0 - (-8.318 + 42.796 * a - 59.938 * a * a).exp()
    } else if a < 0.6 {
        (0.9177 - 4.279 * a - 1.38 * a * a).exp()
    } else {
        (1.2937 - 5.709 * a + 0.0186 * a * a).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floor plus the Bernoulli divergences is scipy's A², as summed by `AndersonDarling`.
    #[test]
    fn ad_floor_plus_divergences_is_a2() {
        for n in [2usize, 17, 512] {
            let w: Vec<f64> = (0..n)
                .map(|j| ((j * 37) % n) as f64 / n as f64 * 3.0 - 1.7)
                .collect();
            let mut w = w;
            w.sort_by(f64::total_cmp);
            let mut ad = AndersonDarling::new(n);
            let mut kl = 0.0;
            for (j, &x) in w.iter().enumerate() {
                let at = NormalAt::new(x);
                ad.push(j, &at);
                let e = (2 * j + 1) as f64 / (2 * n) as f64;
                kl += 2.0 * (e * (e.ln() - at.ln_cdf) + (1.0 - e) * ((-e).ln_1p() - at.ln_sf));
            }
            let a2 = ad.value();
            assert!(
                (ad_floor(n) + kl - a2).abs() < 1e-9 * a2.abs().max(1.0),
                "n = {n}"
            );
        }
    }
}
