//! Goodness of fit of a power law by the semi-parametric bootstrap of Clauset, Shalizi &
//! Newman (2009, §4.1), which the `powerlaw` package does not provide. Each replicate has n
//! points: with probability n_tail/n a draw from the fitted power law above xmin,
//! x = xmin (1 − U)^(−1/(α−1)), otherwise a uniform draw from the observed values below xmin.
//! The replicate is refitted from scratch, xmin search included, and p is the fraction of
//! replicates whose D is at least the observed D. Small p (≤ 0.1 in Clauset et al.) rejects
//! the power law; the KS distance alone does not, even for Gaussian data.
//!
//! Replicate r draws from its own generator seeded by (seed, r), so p depends on the seed
//! and the number of replicates only, not on the thread count.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use super::powerlaw::{PowerLawFit, Sample};
use super::xmin_scan::{fit_all, host_scan, ScanJob, Scanned};
use super::StructureError;

/// The bootstrap p-value and how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bootstrap {
    pub p: f64,
    pub replicates: usize,
    /// Replicates whose refit was impossible (fewer than 4 distinct values); they are left
    /// out of p's denominator.
    pub failed: usize,
    pub seed: u64,
}

/// Values of the replicates held at once (synthesized, scanned, then dropped).
const BATCH_VALUES: usize = 1 << 24;

/// Bootstraps the fit `fit` of `sample` with `replicates` synthetic samples, refitted on the
/// host. The replicates use the xmin search the observed fit used (`exact_max_n` as there).
pub fn goodness_of_fit(
    sample: &Sample,
    fit: &PowerLawFit,
    replicates: usize,
    seed: u64,
    exact_max_n: usize,
) -> Result<Bootstrap, StructureError> {
    let host = &mut |jobs: &[ScanJob<'_>]| Ok::<_, std::convert::Infallible>(host_scan(jobs));
    match goodness_of_fit_by(sample, fit, replicates, seed, exact_max_n, host) {
        Ok(b) => b,
        Err(never) => match never {},
    }
}

/// As [`goodness_of_fit`], with the replicates' distances from `scan` (an engine's
/// `xmin_scan`), in batches of replicates; the synthetic samples and hence p do not depend on
/// the scanner, only on the seed and the number of replicates. The outer error is `scan`'s.
pub fn goodness_of_fit_by<E>(
    sample: &Sample,
    fit: &PowerLawFit,
    replicates: usize,
    seed: u64,
    exact_max_n: usize,
    scan: &mut dyn FnMut(&[ScanJob<'_>]) -> Result<Scanned, E>,
) -> Result<Result<Bootstrap, StructureError>, E> {
    if fit.alpha.is_nan() || fit.alpha <= 1.0 {
        return Ok(Err(StructureError::BootstrapAlpha(fit.alpha)));
    }
    let x = sample.values();
    let n = x.len();
    if fit.n != n || fit.n_tail > n {
        return Ok(Err(StructureError::FitMismatch {
            fitted: fit.n,
            given: n,
        }));
    }
    let below = &x[..n - fit.n_tail];
    let p_tail = fit.n_tail as f64 / n as f64;
    let per_batch = (BATCH_VALUES / n.max(1)).max(1);
    let (mut failed, mut exceed) = (0, 0);
    for first in (0..replicates).step_by(per_batch) {
        let batch: Vec<Sample> = (first..(first + per_batch).min(replicates))
            .into_par_iter()
            .map(|r| {
                let mut rng = StdRng::seed_from_u64(
                    seed.wrapping_add((r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                );
                let mut synth: Vec<f64> = (0..n)
                    .map(|_| {
                        if below.is_empty() || rng.random::<f64>() < p_tail {
                            draw_tail(&mut rng, fit.xmin, fit.alpha)
                        } else {
                            below[rng.random_range(0..below.len())]
                        }
                    })
                    .collect();
                synth.sort_unstable_by(f64::total_cmp);
                Sample::from_sorted(synth)
            })
            .collect();
        let refs: Vec<&Sample> = batch.iter().collect();
        for outcome in fit_all(&refs, exact_max_n, scan)? {
            match outcome {
                Ok(f) => exceed += usize::from(f.d >= fit.d),
                Err(_) => failed += 1,
            }
        }
    }
    let used = replicates - failed;
    Ok(Ok(Bootstrap {
        p: if used == 0 {
            f64::NAN
        } else {
            exceed as f64 / used as f64
        },
        replicates,
        failed,
        seed,
    }))
}

/// One draw from the power law above xmin by inversion; a draw that overflows f64 (α near
/// 1 and U near 1) is redrawn.
fn draw_tail(rng: &mut StdRng, xmin: f64, alpha: f64) -> f64 {
    loop {
        let u: f64 = rng.random();
        let x = xmin * (1.0 - u).powf(-1.0 / (alpha - 1.0));
        if x.is_finite() {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Φ⁻¹ by bisection on erfc: an inverse normal CDF good to 1e-15, for test data only.
    fn normal_quantile(q: f64) -> f64 {
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            let cdf = 0.5 * libm::erfc(-mid / std::f64::consts::SQRT_2);
            if cdf < q {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn accepts_a_power_law_and_rejects_a_gaussian() {
        // Quantiles, not random draws: the data are fixed and only the bootstrap is random.
        let n = 400;
        let pareto: Vec<f64> = (0..n)
            .map(|i| (1.0 - (i as f64 + 0.5) / n as f64).powf(-1.0 / 1.5))
            .collect();
        let gauss: Vec<f64> = (0..n)
            .map(|i| normal_quantile(0.5 + 0.5 * (i as f64 + 0.5) / n as f64))
            .collect();
        let run = |x: &[f64], seed| {
            let s = Sample::new(x).unwrap();
            let f = s.fit(0).unwrap();
            goodness_of_fit(&s, &f, 100, seed, 0).unwrap()
        };
        let pl = run(&pareto, 1);
        let g = run(&gauss, 1);
        // Exact quantiles of a Pareto law fit better than almost any random sample of it.
        assert!(pl.p > 0.5, "{pl:?}");
        // |N(0,1)| has an exponential-type tail: with n = 400, Clauset et al.'s test rejects.
        assert!(g.p <= 0.1, "{g:?}");
        assert_eq!(pl.failed + g.failed, 0);
        // Same seed, same p; the thread count plays no part.
        assert_eq!(run(&gauss, 1), g);
    }

    #[test]
    fn refuses_a_foreign_fit_and_an_exponent_at_most_one() {
        let s = Sample::new(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let mut f = s.fit(10).unwrap();
        let other = Sample::new(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(matches!(
            goodness_of_fit(&other, &f, 10, 0, 10),
            Err(StructureError::FitMismatch {
                fitted: 5,
                given: 4
            })
        ));
        f.alpha = 1.0;
        assert!(matches!(
            goodness_of_fit(&s, &f, 10, 0, 10),
            Err(StructureError::BootstrapAlpha(_))
        ));
    }
}
