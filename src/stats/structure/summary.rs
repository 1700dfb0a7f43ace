//! The structure statistics as `summary.json` reports them, per tensor and for the model:
//! plain data, null (`None`, NaN) where undefined, with the reason in the summary's notes.

use serde::Serialize;

use super::alternatives::LikelihoodRatio;
use super::{Spectrum, XminSearch};

/// Eigenvalues listed in `summary.json` (all of them go to `spectrum.safetensors`).
pub const TOP_EIGENVALUES: usize = 10;

/// The covariance spectrum as `summary.json` gives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpectrumSummary {
    /// The largest [`TOP_EIGENVALUES`] eigenvalues of C, descending.
    pub eigenvalues: Vec<f64>,
    pub slope: f64,
    pub r2: f64,
    pub window: [usize; 2],
    pub trace: f64,
    pub effective_rank: f64,
    /// Every eigenvalue (written to `spectrum.safetensors`).
    #[serde(skip)]
    pub all: Vec<f64>,
}

impl From<Spectrum> for SpectrumSummary {
    fn from(s: Spectrum) -> Self {
        SpectrumSummary {
            eigenvalues: s.top(TOP_EIGENVALUES).to_vec(),
            slope: s.slope,
            r2: s.r2,
            window: s.window,
            trace: s.trace,
            effective_rank: s.effective_rank,
            all: s.eigenvalues,
        }
    }
}

/// One dimension-wise power-law fit: |u_k| over the tensor's coordinates, zeros dropped.
/// Undefined fits (fewer than 4 distinct nonzero values) have null fields and a note.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DimensionFit {
    pub sample: usize,
    /// Nonzero magnitudes fitted.
    pub n: usize,
    pub alpha: f64,
    pub xmin: f64,
    #[serde(rename = "D")]
    pub d: f64,
    pub n_tail: Option<usize>,
    pub sigma: f64,
    pub xmin_search: Option<XminSearch>,
    pub lr_lognormal: Option<LikelihoodRatio>,
    pub lr_exponential: Option<LikelihoodRatio>,
    /// Bootstrap goodness-of-fit p-value (with `--powerlaw-bootstrap`).
    pub p_gof: Option<f64>,
}

/// The iteration-wise fits of a tensor's coordinates, summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IterationSummary {
    /// Coordinates with a fit (usable, with at least 4 distinct nonzero |u|).
    pub fitted_coords: u64,
    /// Fraction of them with D ≤ c/√n_tail.
    pub ks_pass_frac: f64,
    /// c of that criterion (the asymptotic 5 % KS critical value; it ignores that α and xmin
    /// were fitted, so it rejects too rarely).
    pub ks_c: f64,
    /// numpy median of `alpha_pl` over the fitted coordinates.
    pub alpha_median: f64,
}

/// The structure statistics of one tensor (flattened into its `summary.json` entry); every
/// field null when not computed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TensorStructure {
    pub spectrum: Option<SpectrumSummary>,
    pub noise_scale: Option<f64>,
    pub powerlaw_dimension: Option<Vec<DimensionFit>>,
    pub powerlaw_iteration: Option<IterationSummary>,
}
