//! The xmin scan of `powerlaw`'s fit split into its parts, so that an engine can take the
//! O(n²) one (the kernel `xmin_scan`, shaders/xmin_scan.wgsl, on the GPU):
//! 1. on the host in f64, per candidate xmin, α and whether the package accepts it: O(1) each
//!    from the sample's tail sums of ln x (`Sample::alpha`), with the package's Nelder–Mead
//!    refit where it refits ([`ScanJob::new`]);
//! 2. per candidate, the KS distance D, O(n_tail) each — host f64 (`ScanJob::host_distances`)
//!    or a device, which returns D within a stated absolute `bound` ([`Scanned`]);
//! 3. on the host, the package's choice ([`ScanJob::select`]): the smallest D among accepted
//!    fits (or among all when none is accepted), first index on ties, NaN first as numpy's
//!    argmin. Every candidate whose approximate D is within 2·bound of the smallest is
//!    recomputed in f64 and the choice is made on those exact values: the candidate with the
//!    smallest exact D always lies within that margin, so a device's choice, α, xmin, D and
//!    n_tail are the host's, bit for bit, whenever its error stays within `bound`.

use rayon::prelude::*;

use super::powerlaw::{PowerLawFit, Sample, XminSearch};
use super::StructureError;

/// Work (Σ n_tail over candidates) above which the host spreads a scan over its threads.
const PARALLEL_WORK: usize = 1 << 16;

/// One sample's scan before its distances: the candidates and their exponents.
#[derive(Clone, Debug)]
pub struct ScanJob<'a> {
    pub sample: &'a Sample,
    pub search: XminSearch,
    /// Indices into the sample's distinct values of the candidate xmins, ascending.
    pub cands: Vec<usize>,
    /// α at each candidate and whether the package accepts it.
    pub alphas: Vec<(f64, bool)>,
}

/// The distances of a batch of jobs, one vector per job in candidate order, each value within
/// `bound` (absolute) of the f64 distance; NaN where the scanner left a candidate to the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Scanned {
    pub d: Vec<Vec<f64>>,
    pub bound: f64,
}

impl<'a> ScanJob<'a> {
    /// Candidates and exponents of `sample` under the search its size picks (`exact_max_n`).
    pub fn new(sample: &'a Sample, exact_max_n: usize) -> Result<Self, StructureError> {
        let distinct = sample.first().len();
        if distinct < 4 {
            return Err(StructureError::TooFewDistinct(distinct));
        }
        let search = sample.search(exact_max_n);
        let cands = sample.candidates(search);
        let alphas = if cands.len() > 1024 {
            cands.par_iter().map(|&u| sample.alpha(u)).collect()
        } else {
            cands.iter().map(|&u| sample.alpha(u)).collect()
        };
        Ok(ScanJob {
            sample,
            search,
            cands,
            alphas,
        })
    }

    /// Σ n_tail over the candidates: the terms of the distances.
    pub fn work(&self) -> usize {
        let (n, first) = (self.sample.len(), self.sample.first());
        self.cands.iter().map(|&u| n - first[u]).sum()
    }

    /// D at every candidate, in f64 on the host.
    pub fn host_distances(&self) -> Vec<f64> {
        let d = |(&u, &(a, _)): (&usize, &(f64, bool))| self.sample.distance(u, a);
        if self.work() > PARALLEL_WORK {
            self.cands.par_iter().zip(&self.alphas).map(d).collect()
        } else {
            self.cands.iter().zip(&self.alphas).map(d).collect()
        }
    }

    /// The package's choice of xmin from distances `d` within `bound` of the f64 ones.
    pub fn select(&self, d: &[f64], bound: f64) -> PowerLawFit {
        let valid = self.alphas.iter().any(|a| a.1);
        let eligible = |i: usize| !valid || self.alphas[i].1;
        let lowest = (0..d.len())
            .filter(|&i| eligible(i) && !d[i].is_nan())
            .map(|i| d[i])
            .fold(f64::INFINITY, f64::min);
        let exact = |i: usize| {
            if bound == 0.0 && !d[i].is_nan() {
                d[i]
            } else {
                self.sample.distance(self.cands[i], self.alphas[i].0)
            }
        };
        // numpy's argmin over the contenders, in candidate order: the first NaN, else the
        // first smallest.
        let mut best: Option<(usize, f64)> = None;
        for i in (0..d.len()).filter(|&i| eligible(i)) {
            if !(d[i].is_nan() || d[i] <= lowest + 2.0 * bound) {
                continue;
            }
            let e = exact(i);
            if e.is_nan() {
                best = Some((i, e));
                break;
            }
            if best.is_none_or(|b| e < b.1) {
                best = Some((i, e));
            }
        }
        let (i, dist) = best.unwrap_or((0, exact(0)));
        let (alpha, ok) = self.alphas[i];
        let c = self.sample.candidate_with(self.cands[i], alpha, ok, dist);
        PowerLawFit {
            alpha: c.alpha,
            xmin: c.xmin,
            d: c.d,
            n_tail: c.n_tail,
            sigma: c.sigma,
            xmin_search: self.search,
            valid,
            n: self.sample.len(),
        }
    }
}

/// The host scanner: f64 distances, exact (bound 0).
pub fn host_scan(jobs: &[ScanJob<'_>]) -> Scanned {
    Scanned {
        d: jobs.par_iter().map(ScanJob::host_distances).collect(),
        bound: 0.0,
    }
}

/// A sample's fit, or why it has none.
pub type FitOutcome = Result<PowerLawFit, StructureError>;

/// Fits `samples` (exact scan up to `exact_max_n` values, the grid beyond) with their
/// distances from `scan`, all in one batch; `scan`'s error ends the batch.
pub fn fit_all<E>(
    samples: &[&Sample],
    exact_max_n: usize,
    scan: &mut dyn FnMut(&[ScanJob<'_>]) -> Result<Scanned, E>,
) -> Result<Vec<FitOutcome>, E> {
    let jobs: Vec<Result<ScanJob, StructureError>> = samples
        .par_iter()
        .map(|s| ScanJob::new(s, exact_max_n))
        .collect();
    let ready: Vec<ScanJob> = jobs
        .iter()
        .filter_map(|j| j.as_ref().ok())
        .cloned()
        .collect();
    let scanned = scan(&ready)?;
    let mut fits = ready
        .par_iter()
        .zip(&scanned.d)
        .map(|(j, d)| j.select(d, scanned.bound))
        .collect::<Vec<_>>()
        .into_iter();
    Ok(jobs
        .into_iter()
        .map(|j| match j {
            Ok(_) => Ok(fits.next().expect("one fit per job")),
            Err(e) => Err(e),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scanner whose distances are off by up to `err` (a device's rounding), the host's
    /// within `bound`: the choice is the host's exactly while err ≤ bound.
    #[test]
    fn approximate_distances_within_the_bound_give_the_host_fit() {
        let x: Vec<f64> = (0..3000)
            .map(|i| (1.0 - (i as f64 + 0.5) / 3000.0).powf(-1.0 / 1.3) + (i % 7) as f64 * 1e-3)
            .collect();
        let s = Sample::new(&x).unwrap();
        let host = s.fit(10_000).unwrap();
        let job = ScanJob::new(&s, 10_000).unwrap();
        let exact = job.host_distances();
        let err = 1e-4;
        let noisy: Vec<f64> = exact
            .iter()
            .enumerate()
            .map(|(i, d)| d + err * ((i * 7919 % 13) as f64 / 6.0 - 1.0))
            .collect();
        assert_eq!(job.select(&noisy, err), host);
        // NaN: left to the host, which computes it.
        let mut holes = noisy.clone();
        holes.iter_mut().step_by(3).for_each(|d| *d = f64::NAN);
        assert_eq!(job.select(&holes, err), host);
        // Without the bound the noise can move the choice: the test has teeth.
        let fooled = (0..exact.len()).any(|i| {
            let mut v = exact.clone();
            v[i] -= 2.0 * err;
            job.select(&v, 0.0).xmin != host.xmin
        });
        assert!(fooled);
    }

    #[test]
    fn batches_keep_order_and_report_unfit_samples() {
        let a = Sample::new(&[1., 2., 3., 5., 8., 13., 21., 34., 55., 89.]).unwrap();
        let b = Sample::new(&[1.0, 2.0, 2.0]).unwrap();
        let out = fit_all(&[&a, &b, &a], 100, &mut |j| Ok::<_, ()>(host_scan(j))).unwrap();
        assert_eq!(out[0], a.fit(100));
        assert_eq!(out[2], a.fit(100));
        assert!(matches!(out[1], Err(StructureError::TooFewDistinct(2))));
    }
}
