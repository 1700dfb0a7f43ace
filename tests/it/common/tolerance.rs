//! How results are compared with references, and how closely. Every rule says why.
//!
//! Comparison forms are those of `gradtail::stats::compare` (α as 1/α, p-values as
//! -log10 p, the mean relative to its standard deviation, ...); NaN must appear exactly where
//! the reference has NaN.

/// CPU engine (f64 accumulation) against scipy/numpy in f64: only summation order differs,
/// so 1e-6 leaves five orders of margin over the ~1e-12 errors seen, yet fails on any
/// definitional mistake (ddof, bias, clamping, a dropped zero).
pub const CPU: f64 = 1e-6;

/// GPU engine (f32 element work, compensated f32 partial sums, f64 finish) against f64: f32
/// logs carry ~6e-8 relative error and sums over K ≤ 1024 compensated terms stay near that,
/// so 1e-4 for moments, statistics and 1/α bounds a rounding-level disagreement with margin.
pub const GPU: f64 = 1e-4;

/// GPU p-values, in -log10 p: the statistics carry ~1e-5 relative error, and p = exp(-x/2)
/// amplifies an absolute error δ in x to δ/(2 ln 10) decades, so 1e-3 decades.
pub const GPU_LOG10_P: f64 = 1e-3;

pub use gradtail::stats::compare::error;

/// Compares two per-coordinate columns; returns a description of the first failure.
pub fn compare(
    stat: &str,
    got: &[f64],
    want: &[f64],
    var: &[f64],
    tol: f64,
) -> Result<f64, String> {
    assert_eq!(got.len(), want.len(), "{stat}: lengths differ");
    let mut worst: f64 = 0.0;
    for (j, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() || g.is_nan() {
            if w.is_nan() != g.is_nan() {
                return Err(format!("{stat}[{j}]: got {g}, want {w} (NaN mismatch)"));
            }
            continue;
        }
        let e = error(stat, g, w, var[j].sqrt());
        if e.is_nan() || e > tol {
            return Err(format!(
                "{stat}[{j}]: got {g}, want {w}, error {e:e} > {tol:e}"
            ));
        }
        worst = worst.max(e);
    }
    Ok(worst)
}

/// A run merged from shards against the same run in one process, same engine: per-coordinate
/// state is identical (each coordinate lies in one shard and is read in the same row
/// chunks), but the pooled sums (per time block, flat blocks, Σ ln(|u| + eps) over the
/// input) add the same f64 terms in another order, which moves a sum of n terms by at most
/// ~n·eps of Σ|terms|. The pooled estimates are smooth ratios of such sums, so 1e-9 relative
/// leaves orders of margin over that (≤ 1e-12 at these sizes) and still fails on any term
/// dropped or counted twice.
pub const MERGED: f64 = 1e-9;

/// The same, on the GPU engine: its pooled per-time-block sums are f32 partial sums over the
/// columns of one workgroup (f64 across workgroups), and a cut inside a tensor regroups the
/// columns, moving each partial by f32 rounding (~6e-8 of its terms). The pooled estimates
/// are smooth ratios of those sums (4e-9 seen), so 1e-6.
pub const MERGED_GPU: f64 = 1e-6;
