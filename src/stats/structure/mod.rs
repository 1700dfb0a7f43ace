//! Structure across coordinates and batch sizes, as pure f64 functions of plain data:
//! - `spectrum`: the covariance spectrum of a tensor's (or the model's) noise from its K × K
//!   Gram matrix, which adds over tensors and shards;
//! - `noise_scale`: the gradient noise scale of McCandlish et al. (2018);
//! - `powerlaw`, `alternatives`, `bootstrap`: Clauset, Shalizi & Newman (2009) power-law fits
//!   computed as the `powerlaw` package (Alstott et al., version 2.0) computes them, its
//!   likelihood-ratio tests, and the semi-parametric bootstrap p-value it lacks;
//! - `sweep`: how noise scales with batch size (Ziyin et al. 2022; Wu et al. 2021).
//!
//! Callers own files, devices and tensor names: errors here say what is wrong with the
//! numbers, and the caller adds the file and tensor.

pub mod alternatives;
pub mod bootstrap;
mod neldermead;
pub mod noise_scale;
pub mod numpy;
pub mod powerlaw;
pub mod spectrum;
pub mod summary;
pub mod sweep;
pub mod xmin_scan;

pub use noise_scale::noise_scale;
pub use powerlaw::{PowerLawFit, Sample, XminSearch};
pub use spectrum::{Gram, Spectrum};
pub use sweep::{BatchColumns, SweepPoint, SweepSlopes};

/// What the noise was centred on. The sample mean costs one degree of freedom (rank ≤ K − 1)
/// and biases |ḡ|² upwards by tr(C)/K; an exact centre (the full-batch gradient) does neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Centre {
    SampleMean,
    Exact,
}

/// A quantity that is not defined for these data, with the reason (reported as null plus the
/// reason, never as a number).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undefined(pub String);

/// Why a structure statistic cannot be computed. One line each; the caller prefixes the file
/// and tensor.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StructureError {
    #[error("{0} samples: the covariance needs at least 2")]
    TooFewSamples(usize),

    #[error(
        "a tile has {got} rows but the Gram matrix has {want}: every tile must hold all samples"
    )]
    TileRows { got: usize, want: usize },

    #[error("a tile of {cols} columns with row stride {stride} does not fit in {len} values")]
    TileShape {
        cols: usize,
        stride: usize,
        len: usize,
    },

    #[error(
        "cannot combine Gram matrices of {0} and {1} samples: the inputs must share their samples"
    )]
    SampleMismatch(usize, usize),

    #[error(
        "the noise holds non-finite values: drop or repair the samples that contain NaN or inf"
    )]
    NonFinite,

    #[error("the eigensolver did not converge on the {0} × {0} Gram matrix")]
    Eigen(usize),

    #[error(
        "only {points} eigenvalue(s) in the spectrum's fit window [2, {hi}] (r = min(K − 1, P) = {r}); \
         the slope needs at least 3: use more samples or a larger tensor"
    )]
    WindowTooSmall { points: usize, hi: usize, r: usize },

    #[error(
        "eigenvalue {rank} of the covariance is zero to working precision ({value:e}) inside the \
         fit window [2, {hi}]: the noise has fewer independent directions than the window \
         assumes (duplicate or constant samples?)"
    )]
    ZeroEigenvalue { rank: usize, value: f64, hi: usize },

    #[error("{0} value(s) are negative or not finite: a power-law fit takes magnitudes |x|")]
    BadMagnitudes(usize),

    #[error("the sample has only {0} distinct nonzero value(s); a power-law fit needs at least 4")]
    TooFewDistinct(usize),

    #[error("a power-law exponent of {0} cannot generate bootstrap samples (it must exceed 1)")]
    BootstrapAlpha(f64),

    #[error("the fit was made on {fitted} values but the sample has {given}: bootstrap the sample that was fitted")]
    FitMismatch { fitted: usize, given: usize },

    #[error("{0}")]
    Sweep(String),
}

/// Checks that `len` values hold a tile of `k ≥ 1` rows of `cols` values with row i at
/// `i * row_stride` (a row-major K × P block or a column range of one); returns the length
/// the tile spans.
pub(crate) fn tile_span(
    k: usize,
    len: usize,
    cols: usize,
    row_stride: usize,
) -> Result<usize, StructureError> {
    let span = (k - 1) * row_stride + cols;
    if row_stride < cols || len < span {
        return Err(StructureError::TileShape {
            cols,
            stride: row_stride,
            len,
        });
    }
    Ok(span)
}

/// Ordinary least squares of y on x: slope, intercept and R² (1 − SS_res/SS_tot), from
/// centred sums so that large offsets in x or y do not cancel.
pub(crate) fn least_squares(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (b - intercept - slope * a).powi(2))
        .sum();
    (slope, intercept, 1.0 - ss_res / syy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_a_line_and_scores_noise() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let (b, a, r2) = least_squares(&x, &[3.0, 5.0, 7.0, 9.0]);
        assert!((b - 2.0).abs() < 1e-15 && (a - 1.0).abs() < 1e-14 && (r2 - 1.0).abs() < 1e-15);
        // numpy: np.polyfit([1,2,3,4],[1,3,2,4],1) = [0.8, 0.5]; R² = 0.64.
        let (b, a, r2) = least_squares(&x, &[1.0, 3.0, 2.0, 4.0]);
        assert!((b - 0.8).abs() < 1e-15 && (a - 0.5).abs() < 1e-14 && (r2 - 0.64).abs() < 1e-14);
    }
}
