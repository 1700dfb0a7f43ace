//! Classic Gaussianity statistics with scipy's definitions (scipy/stats/_stats_py.py @ 3dbf660:
//! `skew`, `kurtosis`, `jarque_bera`, `skewtest`, `kurtosistest`, `normaltest`).

/// Central moments m2, m3, m4 (divisor n) from power sums of d = x - shift, with d̄ = s1/n.
pub fn central_moments(n: f64, s1: f64, s2: f64, s3: f64, s4: f64) -> (f64, f64, f64) {
    let (a, b2, b3, b4) = (s1 / n, s2 / n, s3 / n, s4 / n);
    let m2 = b2 - a * a;
    let m3 = b3 - 3.0 * a * b2 + 2.0 * a * a * a;
    let m4 = b4 - 4.0 * a * b3 + 6.0 * a * a * b2 - 3.0 * a * a * a * a;
    (m2.max(0.0), m3, m4)
}

/// Biased skewness g1 = m3 / m2^1.5 (scipy `skew`, bias=True), with m2^1.5 as m2·√m2
/// (within an ulp or two of `pow`, at a fraction of its cost).
pub fn skew(m2: f64, m3: f64) -> f64 {
    m3 / (m2 * m2.sqrt())
}

/// Excess kurtosis g2 = m4 / m2² - 3 (scipy `kurtosis`, fisher=True, bias=True).
pub fn kurt(m2: f64, m4: f64) -> f64 {
    m4 / (m2 * m2) - 3.0
}

/// Survival function of χ² with 2 degrees of freedom, Q(1, x/2) = exp(-x/2), with the
/// underflow cut of scipy's `chi2.sf` (cephes `igamc`: 0 once a·ln y - y < -MAXLOG, which no
/// y ≤ 700 reaches, so the logarithm is taken only above; and 1 at x = 0).
pub fn chi2_2_sf(x: f64) -> f64 {
    const MAXLOG: f64 = 7.097_827_128_933_84e2;
    let y = x / 2.0;
    if y > 700.0 && y.ln() - y < -MAXLOG {
        0.0
    } else {
        (-y).exp()
    }
}

/// Jarque–Bera statistic and its χ²₂ p-value (Jarque & Bera 1980).
pub fn jarque_bera(n: f64, g1: f64, g2: f64) -> (f64, f64) {
    let jb = n / 6.0 * (g1 * g1 + g2 * g2 / 4.0);
    (jb, chi2_2_sf(jb))
}

/// The terms of D'Agostino's skewness test and Anscombe & Glynn's kurtosis test that depend on
/// the sample size n alone (scipy `skewtest`, `kurtosistest`), computed once for the n most
/// coordinates share rather than once per coordinate.
#[derive(Clone, Copy, Debug)]
pub struct NormalTerms {
    n: f64,
    /// skewtest: y = g1 · `skew_scale`; z = `delta` · asinh-like log of y / `alpha`.
    skew_scale: f64,
    delta: f64,
    alpha: f64,
    /// kurtosistest: mean `e` and standard deviation `sd_b2` of b2, Anscombe & Glynn's A and
    /// the pieces of their z built from it.
    e: f64,
    sd_b2: f64,
    a: f64,
    term1: f64,
    x_scale: f64,
    z_scale: f64,
}

impl NormalTerms {
    pub fn new(n: f64) -> Self {
        let skew_scale = ((n + 1.0) * (n + 3.0) / (6.0 * (n - 2.0))).sqrt();
        let beta2 = 3.0 * (n * n + 27.0 * n - 70.0) * (n + 1.0) * (n + 3.0)
            / ((n - 2.0) * (n + 5.0) * (n + 7.0) * (n + 9.0));
        let w2 = -1.0 + (2.0 * (beta2 - 1.0)).sqrt();
        let e = 3.0 * (n - 1.0) / (n + 1.0);
        let varb2 =
            24.0 * n * (n - 2.0) * (n - 3.0) / ((n + 1.0) * (n + 1.0) * (n + 3.0) * (n + 5.0));
        let sqrtbeta1 = 6.0 * (n * n - 5.0 * n + 2.0) / ((n + 7.0) * (n + 9.0))
            * (6.0 * (n + 3.0) * (n + 5.0) / (n * (n - 2.0) * (n - 3.0))).sqrt();
        let a = 6.0
            + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + (1.0 + 4.0 / (sqrtbeta1 * sqrtbeta1)).sqrt());
        NormalTerms {
            n,
            skew_scale,
            delta: 1.0 / (0.5 * w2.ln()).sqrt(),
            alpha: (2.0 / (w2 - 1.0)).sqrt(),
            e,
            sd_b2: varb2.sqrt(),
            a,
            term1: 1.0 - 2.0 / (9.0 * a),
            x_scale: (2.0 / (a - 4.0)).sqrt(),
            z_scale: (2.0 / (9.0 * a)).sqrt(),
        }
    }

    pub fn n(&self) -> f64 {
        self.n
    }

    /// The skewness test's terms: (scale of g1, alpha, delta).
    pub(crate) fn skew_terms(&self) -> (f64, f64, f64) {
        (self.skew_scale, self.alpha, self.delta)
    }

    /// The kurtosis test's terms: (e, sd of b2, A, 1 - 2/(9A), √(2/(A - 4)), √(2/(9A))).
    pub(crate) fn kurt_terms(&self) -> (f64, f64, f64, f64, f64, f64) {
        (
            self.e,
            self.sd_b2,
            self.a,
            self.term1,
            self.x_scale,
            self.z_scale,
        )
    }

    /// D'Agostino's skewness z-score (D'Agostino, Belanger & D'Agostino 1990), as scipy
    /// `skewtest`, including its `y == 0 → 1` quirk.
    pub fn skewtest_z(&self, g1: f64) -> f64 {
        let mut y = g1 * self.skew_scale;
        if y == 0.0 {
            y = 1.0;
        }
        let alpha = self.alpha;
        self.delta * (y / alpha + ((y / alpha).powi(2) + 1.0).sqrt()).ln()
    }

    /// Anscombe & Glynn's kurtosis z-score (1983), as scipy `kurtosistest`; `b2` is
    /// Pearson's kurtosis m4/m2². The cube root is `cbrt` where scipy raises to the power
    /// 1/3 (the same value to an ulp).
    pub fn kurtosistest_z(&self, b2: f64) -> f64 {
        let x = (b2 - self.e) / self.sd_b2;
        let denom = 1.0 + x * self.x_scale;
        let term2 = if denom == 0.0 {
            f64::NAN
        } else {
            denom.signum() * ((1.0 - 2.0 / self.a) / denom.abs()).cbrt()
        };
        (self.term1 - term2) / self.z_scale
    }

    /// D'Agostino–Pearson K² = Z_s² + Z_k² and its χ²₂ p-value (scipy `normaltest`); NaN for
    /// n < 8, where the skewness test is undefined.
    pub fn normaltest(&self, g1: f64, g2: f64) -> (f64, f64) {
        if self.n < 8.0 {
            return (f64::NAN, f64::NAN);
        }
        let zs = self.skewtest_z(g1);
        let zk = self.kurtosistest_z(g2 + 3.0);
        let k2 = zs * zs + zk * zk;
        (k2, chi2_2_sf(k2))
    }
}

/// [`NormalTerms::skewtest_z`] for a sample of n.
pub fn skewtest_z(n: f64, g1: f64) -> f64 {
    NormalTerms::new(n).skewtest_z(g1)
}

/// [`NormalTerms::kurtosistest_z`] for a sample of n.
pub fn kurtosistest_z(n: f64, b2: f64) -> f64 {
    NormalTerms::new(n).kurtosistest_z(b2)
}

/// [`NormalTerms::normaltest`] for a sample of n.
pub fn normaltest(n: f64, g1: f64, g2: f64) -> (f64, f64) {
    NormalTerms::new(n).normaltest(g1, g2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::X20;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    fn x20_moments() -> (f64, f64, f64, f64) {
        let n = X20.len() as f64;
        let p = |k: i32| X20.iter().map(|x| x.powi(k)).sum::<f64>();
        let (m2, m3, m4) = central_moments(n, p(1), p(2), p(3), p(4));
        (n, m2, m3, m4)
    }

    /// Spec §8 test vector x20 (scipy 1.17.1), to 1e-9 relative.
    #[test]
    fn x20_matches_scipy() {
        let (n, m2, m3, m4) = x20_moments();
        assert!(rel(m2, 3.02266275) < 1e-9);
        let g1 = skew(m2, m3);
        let g2 = kurt(m2, m4);
        assert!(rel(g1, 0.4937068924135242) < 1e-9);
        assert!(rel(g2, 1.7068436619270413) < 1e-9);
        let (jb, p) = jarque_bera(n, g1, g2);
        assert!(rel(jb, 3.240251057272491) < 1e-9);
        assert!(rel(p, 0.19787385868892698) < 1e-9);
        assert!(rel(skewtest_z(n, g1), 1.0842011228361297) < 1e-9);
        assert!(rel(kurtosistest_z(n, g2 + 3.0), 2.0102874281464564) < 1e-9);
        let (k2, p) = normaltest(n, g1, g2);
        assert!(rel(k2, 5.2167476185228185) < 1e-9);
        assert!(rel(p, 0.07365422224073297) < 1e-9);
    }

    /// scipy docstring: skewtest([1..8]) = 1.0108048609177787.
    #[test]
    fn skewtest_docstring() {
        let xs: Vec<f64> = (1..=8).map(f64::from).collect();
        let n = 8.0;
        let mean = 4.5;
        let m2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let m3 = xs.iter().map(|x| (x - mean).powi(3)).sum::<f64>() / n;
        // g1 = 0 here, so this exercises scipy's y == 0 → 1 quirk.
        assert!(rel(skewtest_z(n, skew(m2, m3)), 1.0108048609177787) < 1e-9);
    }

    /// scipy: chi2.sf(0, 2) = 1, chi2.sf(10, 2) = exp(-5); the underflow cut of cephes
    /// `igamc` gives 0 from x/2 ≈ 716.6 on, where exp(-x/2) is still a subnormal.
    #[test]
    fn chi2_sf_ends() {
        assert_eq!(chi2_2_sf(0.0), 1.0);
        assert_eq!(chi2_2_sf(10.0), (-5.0f64).exp());
        assert!(chi2_2_sf(1432.0) > 0.0);
        assert_eq!(chi2_2_sf(1434.0), 0.0);
    }

    #[test]
    fn normaltest_needs_eight() {
        assert!(normaltest(7.0, 0.1, 0.2).0.is_nan());
    }
}
