//! The covariance spectrum through the Gram matrix. For centred noise U (K samples × P
//! coordinates) the nonzero eigenvalues of C = UᵀU/(K − 1) (P × P) are those of
//! G/(K − 1) with G = UUᵀ (K × K), so a tensor of millions of coordinates costs one K × K
//! eigenproblem, and Grams of tensors or shards simply add (a monoid: `Gram::new(K)` is the
//! identity, `combine` the operation). The rank-ordered eigenvalues are summarised by a
//! log–log least-squares slope, as for the power-law covariance spectra of Xie et al. (2023).

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};

use super::{least_squares, tile_span, Centre, StructureError};

/// G = UUᵀ accumulated over column tiles of U; only the lower triangle is kept.
#[derive(Clone, Debug)]
pub struct Gram {
    g: Mat<f64>,
    coords: u64,
}

impl Gram {
    /// The empty Gram of `k` samples (the identity of `combine`).
    pub fn new(k: usize) -> Self {
        Gram {
            g: Mat::zeros(k, k),
            coords: 0,
        }
    }

    /// A Gram computed elsewhere (a device, a shard): `g` row-major K × K (symmetric; the
    /// lower triangle is read), over `coords` coordinates.
    pub fn from_parts(k: usize, coords: u64, g: &[f64]) -> Result<Self, StructureError> {
        if g.len() != k * k {
            return Err(StructureError::TileShape {
                cols: k,
                stride: k,
                len: g.len(),
            });
        }
        Ok(Gram {
            g: Mat::from_fn(k, k, |i, j| if j <= i { g[i * k + j] } else { 0.0 }),
            coords,
        })
    }

    /// The matrix row-major K × K as [`Gram::from_parts`] reads it (the lower triangle
    /// holds the sums; the upper is zero).
    pub fn to_parts(&self) -> Vec<f64> {
        let k = self.samples();
        (0..k * k).map(|i| self.g[(i / k, i % k)]).collect()
    }

    pub fn samples(&self) -> usize {
        self.g.nrows()
    }

    /// P: the coordinates added so far.
    pub fn coords(&self) -> u64 {
        self.coords
    }

    /// Adds a tile of centred noise: K rows of `cols` values, row i at
    /// `tile[i * row_stride .. i * row_stride + cols]` (a row-major K × P block, or a column
    /// range of one).
    pub fn add_tile(
        &mut self,
        tile: &[f64],
        cols: usize,
        row_stride: usize,
    ) -> Result<(), StructureError> {
        let k = self.samples();
        if cols == 0 || k == 0 {
            return Ok(());
        }
        let needed = tile_span(k, tile.len(), cols, row_stride)?;
        let u = MatRef::from_row_major_slice_with_stride(&tile[..needed], k, cols, row_stride);
        // Lower triangle of G += U Uᵀ: half the flops of a full product.
        matmul(
            self.g.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            u,
            BlockStructure::Rectangular,
            u.transpose(),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        self.coords += cols as u64;
        Ok(())
    }

    /// Adds the Gram of other coordinates of the same samples (another tensor or shard).
    pub fn combine(&mut self, other: &Gram) -> Result<(), StructureError> {
        if other.samples() != self.samples() {
            return Err(StructureError::SampleMismatch(
                self.samples(),
                other.samples(),
            ));
        }
        self.g += &other.g;
        self.coords += other.coords;
        Ok(())
    }

    /// Eigenvalues of G/(K − 1), the spectrum's log–log slope, trace and effective rank.
    pub fn finish(&self, centre: Centre) -> Result<Spectrum, StructureError> {
        let k = self.samples();
        if k < 2 {
            return Err(StructureError::TooFewSamples(k));
        }
        let scale = 1.0 / (k - 1) as f64;
        let c = Mat::from_fn(k, k, |i, j| {
            let (a, b) = if j <= i { (i, j) } else { (j, i) };
            self.g[(a, b)] * scale
        });
        if !c.as_ref().is_all_finite() {
            return Err(StructureError::NonFinite);
        }
        // tr and Σλ² straight from the matrix (tr C and ‖C‖_F²), independent of the solver.
        let trace: f64 = (0..k).map(|i| c[(i, i)]).sum();
        let frob: f64 = (0..k)
            .flat_map(|i| (0..k).map(move |j| (i, j)))
            .map(|(i, j)| c[(i, j)] * c[(i, j)])
            .sum();
        let mut eig = c
            .self_adjoint_eigenvalues(Side::Lower)
            .map_err(|_| StructureError::Eigen(k))?;
        eig.reverse();
        let p = usize::try_from(self.coords).unwrap_or(usize::MAX);
        // After sample-mean centring the rows of U sum to zero, so rank ≤ K − 1; never
        // more than P. Eigenvalues past that bound are zero up to rounding.
        let kept = match centre {
            Centre::SampleMean => (k - 1).min(p),
            Centre::Exact => k.min(p),
        };
        eig.truncate(kept);
        let r = (k - 1).min(p);
        let (slope, r2, window) = loglog_slope(&eig, r)?;
        Ok(Spectrum {
            eigenvalues: eig,
            slope,
            r2,
            window,
            trace,
            effective_rank: trace * trace / frob,
        })
    }
}

/// The spectrum of one tensor or of the whole model.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    /// Eigenvalues of C, descending: min(K − 1, P) of them after sample-mean centring,
    /// min(K, P) about an exact centre.
    pub eigenvalues: Vec<f64>,
    /// Minus the least-squares slope of ln λ_k on ln k over the window.
    pub slope: f64,
    pub r2: f64,
    /// Ranks [2, ⌊r/2⌋] with r = min(K − 1, P): skips the top outlier and the floor.
    pub window: [usize; 2],
    /// tr C = Σ_j var(u_j) (ddof 1 after sample-mean centring).
    pub trace: f64,
    /// (Σλ)² / Σλ².
    pub effective_rank: f64,
}

impl Spectrum {
    /// The `n` largest eigenvalues (fewer if there are fewer).
    pub fn top(&self, n: usize) -> &[f64] {
        &self.eigenvalues[..n.min(self.eigenvalues.len())]
    }
}

/// Fits ln λ_k = a − s ln k over ranks k = 2 … ⌊r/2⌋ (1-based); returns (s, R², window).
fn loglog_slope(eig: &[f64], r: usize) -> Result<(f64, f64, [usize; 2]), StructureError> {
    let hi = r / 2;
    let points = hi.saturating_sub(1);
    if points < 3 {
        return Err(StructureError::WindowTooSmall { points, hi, r });
    }
    // Zero to working precision: below the rank tolerance of numpy's `matrix_rank`,
    // λ_max · K · eps; rounding noise there has no meaningful logarithm.
    let floor = eig[0] * eig.len() as f64 * f64::EPSILON;
    let mut x = Vec::with_capacity(points);
    let mut y = Vec::with_capacity(points);
    for rank in 2..=hi {
        let value = eig[rank - 1];
        if value <= floor {
            return Err(StructureError::ZeroEigenvalue { rank, value, hi });
        }
        x.push((rank as f64).ln());
        y.push(value.ln());
    }
    let (b, _, r2) = least_squares(&x, &y);
    Ok((-b, r2, [2, hi]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major K × P noise whose covariance spectrum is known: U = Q diag(s) with
    /// orthogonal columns built from a Hadamard-like sign pattern, centred by construction.
    fn noise(k: usize, p: usize) -> Vec<f64> {
        (0..k * p)
            .map(|i| {
                let (r, c) = (i / p, i % p);
                let x = ((r * 7919 + c * 104_729) % 1000) as f64 / 1000.0 - 0.5;
                x * (1.0 + c as f64).powf(-0.7)
            })
            .collect()
    }

    fn centre(u: &mut [f64], k: usize, p: usize) {
        for c in 0..p {
            let m = (0..k).map(|r| u[r * p + c]).sum::<f64>() / k as f64;
            (0..k).for_each(|r| u[r * p + c] -= m);
        }
    }

    /// Eigenvalues of a small symmetric matrix by cyclic Jacobi rotations: an oracle that
    /// shares nothing with faer.
    fn jacobi_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
        let n = a.len();
        for _ in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
                .map(|(i, j)| a[i][j] * a[i][j])
                .sum();
            if off < 1e-30 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    if a[p][q].abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                    for row in a.iter_mut() {
                        let (x, y) = (row[p], row[q]);
                        row[p] = c * x - s * y;
                        row[q] = s * x + c * y;
                    }
                    let (upper, lower) = a.split_at_mut(q);
                    for (x, y) in upper[p].iter_mut().zip(lower[0].iter_mut()) {
                        (*x, *y) = (c * *x - s * *y, s * *x + c * *y);
                    }
                }
            }
        }
        let mut d: Vec<f64> = (0..n).map(|i| a[i][i]).collect();
        d.sort_by(|x, y| y.total_cmp(x));
        d
    }

    #[test]
    fn eigenvalues_are_those_of_the_coordinate_covariance() {
        // P < K on purpose: the P × P covariance is then small enough for the Jacobi oracle,
        // and the Gram route must still return exactly its P eigenvalues.
        let (k, p) = (40, 12);
        let mut u = noise(k, p);
        centre(&mut u, k, p);
        let cov: Vec<Vec<f64>> = (0..p)
            .map(|i| {
                (0..p)
                    .map(|j| (0..k).map(|r| u[r * p + i] * u[r * p + j]).sum::<f64>() / 39.0)
                    .collect()
            })
            .collect();
        let want = jacobi_eigenvalues(cov);
        // Two tiles through a row stride, then the same data as one tile: equal Grams.
        let mut g = Gram::new(k);
        g.add_tile(&u, 5, p).unwrap();
        g.add_tile(&u[5..], 7, p).unwrap();
        let s = g.finish(Centre::SampleMean).unwrap();
        assert_eq!(s.eigenvalues.len(), p);
        for (a, b) in s.eigenvalues.iter().zip(&want) {
            // Both solvers are backward stable: errors of a few ulps of λ_max.
            assert!((a - b).abs() < 1e-14 * want[0], "{a} vs {b}");
        }
        let trace: f64 = want.iter().sum();
        assert!((s.trace - trace).abs() < 1e-13 * trace);
        let er = trace * trace / want.iter().map(|v| v * v).sum::<f64>();
        assert!((s.effective_rank - er).abs() < 1e-12 * er);
        assert_eq!(s.window, [2, 6]);
    }

    #[test]
    fn grams_add_over_coordinates() {
        let (k, p) = (16, 30);
        let u = noise(k, p);
        let mut whole = Gram::new(k);
        whole.add_tile(&u, p, p).unwrap();
        let mut left = Gram::new(k);
        left.add_tile(&u, 11, p).unwrap();
        let mut right = Gram::new(k);
        right.add_tile(&u[11..], 19, p).unwrap();
        left.combine(&right).unwrap();
        assert_eq!(left.coords(), 30);
        let (a, b) = (
            whole.finish(Centre::Exact).unwrap(),
            left.finish(Centre::Exact).unwrap(),
        );
        assert_eq!(a.eigenvalues.len(), 16);
        for (x, y) in a.eigenvalues.iter().zip(&b.eigenvalues) {
            assert!((x - y).abs() < 1e-14 * a.eigenvalues[0]);
        }
        assert!(matches!(
            left.combine(&Gram::new(3)),
            Err(StructureError::SampleMismatch(16, 3))
        ));
        // A Gram computed elsewhere (row-major, symmetric) combines like a local one.
        let mut full = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                full[i * k + j] = (0..p).map(|c| u[i * p + c] * u[j * p + c]).sum();
            }
        }
        let mut outside = Gram::from_parts(k, 30, &full).unwrap();
        outside.combine(&Gram::new(k)).unwrap();
        let c = outside.finish(Centre::Exact).unwrap();
        for (x, y) in a.eigenvalues.iter().zip(&c.eigenvalues) {
            assert!((x - y).abs() < 1e-14 * a.eigenvalues[0]);
        }
        assert!(Gram::from_parts(k, 30, &full[1..]).is_err());
    }

    #[test]
    fn exact_power_law_spectrum_gives_its_exponent() {
        // C = diag(k^-1.5) exactly: U with orthogonal rows U = diag(sqrt((K−1) λ_k)) · I.
        let k = 64;
        let mut u = vec![0.0; k * k];
        for i in 0..k {
            u[i * k + i] = ((k - 1) as f64 * (i as f64 + 1.0).powf(-1.5)).sqrt();
        }
        let mut g = Gram::new(k);
        g.add_tile(&u, k, k).unwrap();
        let s = g.finish(Centre::Exact).unwrap();
        assert!((s.slope - 1.5).abs() < 1e-12, "{}", s.slope);
        assert!((s.r2 - 1.0).abs() < 1e-12);
        assert_eq!(s.window, [2, 31]);
    }

    #[test]
    fn degenerate_inputs_are_named() {
        let mut g = Gram::new(4);
        assert!(matches!(
            g.add_tile(&[0.0; 7], 2, 2),
            Err(StructureError::TileShape { .. })
        ));
        g.add_tile(&[1.0, -1.0, 0.5, -0.5, 2.0, 0.0, -3.5, 1.5], 2, 2)
            .unwrap();
        // r = min(3, 2) = 2: window [2, 1] holds no rank at all.
        assert!(matches!(
            g.finish(Centre::SampleMean),
            Err(StructureError::WindowTooSmall { points: 0, .. })
        ));
        // Rank-one noise in a 20 × 20 problem: λ_2 = 0 inside the window.
        let mut u = vec![0.0; 20 * 20];
        for r in 0..20 {
            for c in 0..20 {
                u[r * 20 + c] = (r as f64 - 9.5) * (c as f64 + 1.0);
            }
        }
        let mut g = Gram::new(20);
        g.add_tile(&u, 20, 20).unwrap();
        assert!(matches!(
            g.finish(Centre::SampleMean),
            Err(StructureError::ZeroEigenvalue { rank: 2, .. })
        ));
        let mut g = Gram::new(3);
        g.add_tile(&[f64::NAN, 0.0, 0.0], 1, 1).unwrap();
        assert!(matches!(
            g.finish(Centre::SampleMean),
            Err(StructureError::NonFinite)
        ));
    }
}
