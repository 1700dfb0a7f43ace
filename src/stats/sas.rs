//! Symmetric α-stable samples by Chambers, Mallows & Stuck (1976), as scipy's `_rvs_Z1`
//! β = 0 branch (spec §2.2): φ(t) = exp(-|ct|^α).

use std::f64::consts::FRAC_PI_2;

/// One SαS(α, c = 1) value from V ~ U(-π/2, π/2) and W ~ Exp(1).
pub fn cms(alpha: f64, v: f64, w: f64) -> f64 {
    if alpha == 1.0 {
        return v.tan();
    }
    (alpha * v).sin() / v.cos().powf(1.0 / alpha)
        * (((1.0 - alpha) * v).cos() / w).powf((1.0 - alpha) / alpha)
}

/// Draws one SαS(α, c) value; `W = -ln(1 - U)` with U in [0, 1).
pub fn sample<R: rand::RngExt + ?Sized>(rng: &mut R, alpha: f64, scale: f64) -> f64 {
    let v = (rng.random::<f64>() - 0.5) * 2.0 * FRAC_PI_2;
    let w = -(1.0 - rng.random::<f64>()).ln();
    scale * cms(alpha, v, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §2.2 test vectors at V = 0.3, W = 1.2.
    #[test]
    fn cms_vectors() {
        for (a, x) in [
            (1.5, 0.478313272533774),
            (1.0, 0.30933624960962325),
            (2.0, 0.6474523335480166),
        ] {
            assert!((cms(a, 0.3, 1.2) - x).abs() < 1e-13, "alpha {a}");
        }
    }
}
