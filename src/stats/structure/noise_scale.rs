//! The gradient noise scale of McCandlish et al. (2018, "An Empirical Model of Large-Batch
//! Training", §2.2 and App. A): B_simple = tr(Σ)/|G|², with Σ the per-example covariance.
//! Minibatch gradients of size B have covariance C = Σ/B, so B_simple = B·tr(C)/|G|².
//! |G|² is estimated by |ḡ|² of the sample mean, whose expectation is |G|² + tr(C)/K; the
//! unbiased estimate subtracts tr(C)/K. With an exact centre |G|² is known and nothing is
//! subtracted.

use super::{Centre, Undefined};

/// B·tr(C)/(|ḡ|² − tr(C)/K), or B·tr(C)/|g|² about an exact centre g.
/// `mean_sq_norm` is |ḡ|² (sample mean) or |g|² (the exact centre), over the same
/// coordinates as `trace`.
pub fn noise_scale(
    batch: f64,
    trace: f64,
    mean_sq_norm: f64,
    samples: usize,
    centre: Centre,
) -> Result<f64, Undefined> {
    if !(batch > 0.0 && trace.is_finite() && trace >= 0.0 && mean_sq_norm.is_finite()) {
        return Err(Undefined(format!(
            "needs a positive batch size and finite moments (batch {batch}, tr(C) {trace}, |g|² {mean_sq_norm})"
        )));
    }
    let denom = match centre {
        Centre::SampleMean => mean_sq_norm - trace / samples as f64,
        Centre::Exact => mean_sq_norm,
    };
    if denom <= 0.0 {
        return Err(Undefined(match centre {
            Centre::SampleMean => format!(
                "|ḡ|² − tr(C)/K = {denom:.3e} ≤ 0: the mean gradient is not resolved above the \
                 noise with K = {samples} samples; more samples or an exact centre are needed"
            ),
            Centre::Exact => "the exact centre is the zero vector".to_owned(),
        }));
    }
    Ok(batch * trace / denom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_and_its_undefined_cases() {
        // 16 · 0.3 / (0.01 − 0.3/256) = 543.716814159292 (python3)
        let v = noise_scale(16.0, 0.3, 0.01, 256, Centre::SampleMean).unwrap();
        assert!((v - 543.716814159292).abs() < 1e-12 * v);
        assert_eq!(noise_scale(16.0, 0.3, 0.01, 256, Centre::Exact), Ok(480.0));
        let e = noise_scale(16.0, 0.3, 0.001, 256, Centre::SampleMean).unwrap_err();
        assert!(e.0.contains("not resolved"), "{e}");
        assert!(noise_scale(0.0, 0.3, 0.01, 256, Centre::Exact).is_err());
        assert!(noise_scale(16.0, 0.3, 0.0, 256, Centre::Exact).is_err());
    }
}
