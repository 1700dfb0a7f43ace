//! How minibatch noise scales with the batch size B, from snapshots taken at the same weights
//! with several B (a dataset of N examples, sampled without replacement):
//! - `trace_slope`: slope of ln tr(C_B) on ln[(N − B)/(B(N − 1))]. For finite-variance noise
//!   C_B = (N − B)/(B(N − 1)) Σ, so the slope is 1 (Ziyin et al. 2022, the finite-population
//!   factor of sampling without replacement).
//! - `alpha_eff` = 1/(1 + slope of ln r_B on ln B), r_B the median over non-constant
//!   coordinates of the per-coordinate interquartile range. A robust scale of a mean of B
//!   draws in the domain of attraction of an α-stable law scales as B^(1/α − 1), so this
//!   reads α (2 for Gaussian scaling) without needing a variance.
//! - `kurtosis_slope`: slope of ln(median excess kurtosis) on ln B: −1 when the fourth moment
//!   is finite (the kurtosis of a mean of B iid draws is g₂/B; Wu et al. 2021), shallower
//!   under infinite variance. Undefined when a median is ≤ 0.
//!
//! Constant coordinates follow scipy's rule m₂ ≤ (eps · mean)² and leave both medians.
//!
//! A sweep command feeds each tensor's K × P gradients at each batch size through a
//! `BatchColumns` (tiles, shards, `combine`), finishes one `SweepPoint` per batch size and
//! calls `slopes`; matching tensors across the inputs (same names and shapes, same weights)
//! is the command's job.

use super::numpy::{median, percentile_sorted};
use super::{least_squares, tile_span, StructureError, Undefined};

/// One batch size's summary of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepPoint {
    pub batch: u64,
    /// tr(C_B): Σ of per-coordinate variances, ddof 1.
    pub trace: f64,
    /// r_B: median per-coordinate IQR (numpy linear percentiles).
    pub iqr_median: f64,
    /// Median per-coordinate excess kurtosis (scipy `kurtosis`, biased).
    pub kurtosis_median: f64,
}

/// The three slopes of one tensor across batch sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSlopes {
    pub trace_slope: f64,
    pub alpha_eff: Result<f64, Undefined>,
    pub kurtosis_slope: Result<f64, Undefined>,
}

/// Fits the slopes over `points` (one per batch size, any order) for a dataset of
/// `dataset_size` examples.
pub fn slopes(points: &[SweepPoint], dataset_size: u64) -> Result<SweepSlopes, StructureError> {
    let fail = |msg: String| Err(StructureError::Sweep(msg));
    if points.len() < 2 {
        return fail(format!(
            "{} batch size(s): a sweep needs snapshots at two or more batch sizes",
            points.len()
        ));
    }
    let mut batches: Vec<u64> = points.iter().map(|p| p.batch).collect();
    batches.sort_unstable();
    if let Some(w) = batches.windows(2).find(|w| w[0] == w[1]) {
        return fail(format!(
            "batch size {} appears twice: give each batch size once",
            w[0]
        ));
    }
    let n = dataset_size as f64;
    if let Some(p) = points
        .iter()
        .find(|p| p.batch == 0 || p.batch >= dataset_size)
    {
        return fail(format!(
            "batch size {} is outside [1, N) for a dataset of N = {dataset_size} examples",
            p.batch
        ));
    }
    if let Some(p) = points
        .iter()
        .find(|p| !(p.trace > 0.0 && p.trace.is_finite()))
    {
        return fail(format!(
            "the noise at batch size {} has trace {}: the tensor's gradients do not vary",
            p.batch, p.trace
        ));
    }
    let ln_b: Vec<f64> = points.iter().map(|p| (p.batch as f64).ln()).collect();
    let factor: Vec<f64> = points
        .iter()
        .map(|p| {
            let b = p.batch as f64;
            ((n - b) / (b * (n - 1.0))).ln()
        })
        .collect();
    let ln_tr: Vec<f64> = points.iter().map(|p| p.trace.ln()).collect();
    let (trace_slope, _, _) = least_squares(&factor, &ln_tr);

    let positive = |what: &str, get: fn(&SweepPoint) -> f64| -> Result<Vec<f64>, Undefined> {
        points
            .iter()
            .map(|p| {
                let v = get(p);
                if v > 0.0 {
                    Ok(v.ln())
                } else {
                    Err(Undefined(format!(
                        "the median {what} at batch size {} is {v}, not positive",
                        p.batch
                    )))
                }
            })
            .collect()
    };
    let alpha_eff = positive("interquartile range", |p| p.iqr_median).and_then(|y| {
        let (b, _, _) = least_squares(&ln_b, &y);
        let a = 1.0 / (1.0 + b);
        if a.is_finite() {
            Ok(a)
        } else {
            Err(Undefined(format!(
                "the IQR slope is {b}, so 1/(1 + slope) is not finite"
            )))
        }
    });
    let kurtosis_slope =
        positive("excess kurtosis", |p| p.kurtosis_median).map(|y| least_squares(&ln_b, &y).0);
    Ok(SweepSlopes {
        trace_slope,
        alpha_eff,
        kurtosis_slope,
    })
}

/// Per-coordinate IQR and excess kurtosis of one tensor at one batch size, fed column tiles
/// of its raw K × P gradients; `combine` joins disjoint coordinate ranges (a monoid with
/// `BatchColumns::new(K)` as identity).
#[derive(Clone, Debug)]
pub struct BatchColumns {
    samples: usize,
    trace: f64,
    iqr: Vec<f64>,
    kurtosis: Vec<f64>,
    constant: u64,
}

impl BatchColumns {
    pub fn new(samples: usize) -> Self {
        BatchColumns {
            samples,
            trace: 0.0,
            iqr: Vec::new(),
            kurtosis: Vec::new(),
            constant: 0,
        }
    }

    /// Adds `cols` coordinates: K rows, row i at `tile[i * row_stride ..][..cols]`.
    pub fn add_tile(
        &mut self,
        tile: &[f64],
        cols: usize,
        row_stride: usize,
    ) -> Result<(), StructureError> {
        let k = self.samples;
        if cols == 0 {
            return Ok(());
        }
        if k < 2 {
            return Err(StructureError::TooFewSamples(k));
        }
        tile_span(k, tile.len(), cols, row_stride)?;
        let mut col = vec![0.0; k];
        for j in 0..cols {
            for (i, v) in col.iter_mut().enumerate() {
                *v = tile[i * row_stride + j];
            }
            if col.iter().any(|v| !v.is_finite()) {
                return Err(StructureError::NonFinite);
            }
            let kf = k as f64;
            let mean = col.iter().sum::<f64>() / kf;
            let (mut m2, mut m4) = (0.0, 0.0);
            for &v in &col {
                let d = (v - mean) * (v - mean);
                m2 += d;
                m4 += d * d;
            }
            self.trace += m2 / (kf - 1.0);
            let (m2, m4) = (m2 / kf, m4 / kf);
            // scipy's constant rule (`_stats_py.kurtosis`): m2 ≤ (eps · mean)².
            if m2 <= (f64::EPSILON * mean).powi(2) {
                self.constant += 1;
                continue;
            }
            self.kurtosis.push(m4 / (m2 * m2) - 3.0);
            col.sort_unstable_by(f64::total_cmp);
            self.iqr
                .push(percentile_sorted(&col, 0.75) - percentile_sorted(&col, 0.25));
        }
        Ok(())
    }

    pub fn combine(&mut self, other: &BatchColumns) -> Result<(), StructureError> {
        if other.samples != self.samples {
            return Err(StructureError::SampleMismatch(self.samples, other.samples));
        }
        self.trace += other.trace;
        self.iqr.extend_from_slice(&other.iqr);
        self.kurtosis.extend_from_slice(&other.kurtosis);
        self.constant += other.constant;
        Ok(())
    }

    /// Constant coordinates seen so far.
    pub fn constant(&self) -> u64 {
        self.constant
    }

    /// The batch size's point; medians are NaN when every coordinate is constant.
    pub fn finish(&self, batch: u64) -> SweepPoint {
        SweepPoint {
            batch,
            trace: self.trace,
            iqr_median: median(&mut self.iqr.clone()),
            kurtosis_median: median(&mut self.kurtosis.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(batch: u64, trace: f64, iqr: f64, kurt: f64) -> SweepPoint {
        SweepPoint {
            batch,
            trace,
            iqr_median: iqr,
            kurtosis_median: kurt,
        }
    }

    #[test]
    fn ideal_scalings_give_ideal_slopes() {
        // Finite-variance, Gaussian-like scaling: tr ∝ (N−B)/(B(N−1)), IQR ∝ B^-1/2,
        // kurtosis ∝ 1/B → slopes 1, α_eff 2, −1.
        let n = 1797u64;
        let pts: Vec<SweepPoint> = [4u64, 16, 64]
            .iter()
            .map(|&b| {
                let bf = b as f64;
                let f = (n as f64 - bf) / (bf * (n as f64 - 1.0));
                point(b, 3.0 * f, 0.2 / bf.sqrt(), 5.0 / bf)
            })
            .collect();
        let s = slopes(&pts, n).unwrap();
        assert!((s.trace_slope - 1.0).abs() < 1e-13);
        assert!((s.alpha_eff.unwrap() - 2.0).abs() < 1e-13);
        assert!((s.kurtosis_slope.unwrap() + 1.0).abs() < 1e-13);
    }

    #[test]
    fn bad_sweeps_are_named() {
        let p = |b| point(b, 1.0, 1.0, 1.0);
        let err = |pts: &[SweepPoint]| slopes(pts, 100).unwrap_err().to_string();
        assert!(err(&[p(4)]).contains("two or more"));
        assert!(err(&[p(4), p(4)]).contains("appears twice"));
        assert!(err(&[p(4), p(100)]).contains("outside"));
        assert!(err(&[p(4), point(8, 0.0, 1.0, 1.0)]).contains("do not vary"));
        let s = slopes(&[p(4), point(8, 1.0, 1.0, -0.2)], 100).unwrap();
        assert!(s.kurtosis_slope.unwrap_err().0.contains("not positive"));
        assert!(s.alpha_eff.is_ok());
    }

    #[test]
    fn columns_skip_constants_and_combine() {
        // K = 4 rows × 3 columns; column 1 is constant.
        let tile = [
            1.0, 5.0, 0.0, //
            2.0, 5.0, 10.0, //
            4.0, 5.0, 0.0, //
            8.0, 5.0, 1.0,
        ];
        let mut a = BatchColumns::new(4);
        a.add_tile(&tile, 2, 3).unwrap();
        let mut b = BatchColumns::new(4);
        b.add_tile(&tile[2..], 1, 3).unwrap();
        a.combine(&b).unwrap();
        assert_eq!(a.constant(), 1);
        let pt = a.finish(8);
        // numpy: var([1,2,4,8], ddof=1) + var([0,10,0,1], ddof=1) = 9.583333333333334 +
        // 23.583333333333332; IQRs 3.25 and 3.25; scipy kurtosis -1.0989792060491494 and
        // -0.6933036996341571 → median -0.8961414528416533.
        assert!((pt.trace - (9.583333333333334 + 23.583333333333332)).abs() < 1e-13);
        assert_eq!(pt.iqr_median, 3.25);
        assert!((pt.kurtosis_median - -0.8961414528416533).abs() < 1e-13);
    }
}
