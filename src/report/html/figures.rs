//! The report's figures: which plot each statistic gets, with which reference lines, ranges and
//! words. The drawing is in [`super::plots`]; a new estimator's figure is one more function here.

use super::plots::axis::{labelled, symlog, symlog_ticks};
use super::plots::{
    self, BarSeries, BarSpec, Edges, Estimate, HistSpec, IntervalSeries, IntervalSpec, Plot, Scale,
    ScatterSpec,
};
use crate::analyze::TensorResult;
use crate::error::Result;

/// Histograms are drawn for at most this many tensors, the largest by coordinate count.
pub const MAX_HIST_TENSORS: usize = 64;
/// Per-tensor α outside this range is drawn at the edge of the α plot and counted.
const ALPHA_CLAMP: (f64, f64) = (0.0, 5.0);
/// Per-coordinate α histograms: range and bins; values outside go to edge bins.
pub const ALPHA_HIST: (f64, f64, usize) = (0.0, 4.0, 40);
/// Bins of the (symlog) kurtosis histograms.
const KURT_BINS: usize = 40;
/// Lower bound of excess kurtosis (g2 ≥ −2 for any data).
const KURT_MIN: f64 = -2.0;
/// The smallest top of the kurtosis axis, so near-Gaussian tensors still show a decade.
const KURT_TOP_MIN: f64 = 10.0;

/// How the confidence interval of the time-blocked α is made, as the page names it.
pub const CI_LABEL: &str = "95 % CI (jackknife over time blocks)";

fn names(tensors: &[TensorResult]) -> Vec<&str> {
    tensors.iter().map(|t| t.meta.name.as_str()).collect()
}

/// Per-tensor α_time_blocked with its CI and α_simsekli_flat beside it, in input order.
pub fn alpha(tensors: &[TensorResult]) -> Result<Plot> {
    let label = format!("α time-blocked, {CI_LABEL}");
    plots::interval_plot(&IntervalSpec {
        id: "plot-alpha",
        file: "alpha.svg",
        title: "Tail index α per tensor (input order)",
        rows: names(tensors),
        xlabel: "tail index α (dimensionless; 2 = Gaussian, smaller = heavier tails)",
        span: (0.5, 2.5),
        clamp: ALPHA_CLAMP,
        step: 0.5,
        reference: Some((2.0, "α = 2 (Gaussian)")),
        series: vec![
            IntervalSeries {
                label: &label,
                colour: plots::BLUE_TB,
                square: false,
                values: tensors
                    .iter()
                    .map(|t| Estimate {
                        point: t.summary.alpha_time_blocked,
                        ci: Some(t.summary.alpha_time_blocked_ci),
                    })
                    .collect(),
                missing: Some("no time-blocked estimate"),
            },
            IntervalSeries {
                label: "α Simsekli flat",
                colour: plots::ORANGE_FLAT,
                square: true,
                values: tensors
                    .iter()
                    .map(|t| Estimate {
                        point: t.summary.alpha_simsekli_flat,
                        ci: None,
                    })
                    .collect(),
                missing: None,
            },
        ],
    })
}

/// Per-tensor share of coordinates rejecting normality (Jarque–Bera and K²).
pub fn reject(tensors: &[TensorResult]) -> Result<Plot> {
    let series = |label, colour, f: fn(&TensorResult) -> f64| BarSeries {
        label,
        colour,
        values: tensors.iter().map(f).collect(),
    };
    plots::bar_plot(&BarSpec {
        id: "plot-reject",
        file: "reject.svg",
        title: "Coordinates rejecting normality at p < 0.05, per tensor",
        rows: names(tensors),
        xlabel: "coordinates with p < 0.05 (% of the tensor's non-constant coordinates)",
        reference: Some((0.05, "5 % (expected under normality)")),
        series: vec![
            series("Jarque–Bera", plots::GREEN_JB, |t| {
                t.summary.jb_reject_frac
            }),
            series("D'Agostino–Pearson K²", plots::PURPLE_K2, |t| {
                t.summary.k2_reject_frac
            }),
        ],
    })
}

/// Indices of the (at most `cap`) tensors with the most coordinates, in input order.
pub fn hist_tensors(tensors: &[TensorResult], cap: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tensors.len()).collect();
    idx.sort_by_key(|&i| std::cmp::Reverse(tensors[i].meta.coords()));
    idx.truncate(cap);
    idx.sort_unstable();
    idx
}

/// The top of the shared kurtosis axis: the largest finite g2 among `shown` tensors.
pub fn kurt_top(tensors: &[TensorResult], shown: &[usize]) -> f64 {
    shown
        .iter()
        .flat_map(|&i| tensors[i].coords.get("kurt").iter().copied())
        .filter(|v| v.is_finite())
        .fold(KURT_TOP_MIN, f64::max)
}

/// One tensor's per-coordinate plots, files named by `slug`: histograms of α_block, α_logm
/// and (with the fits) α_mcculloch side by side on one axis, of excess kurtosis, and (with
/// the fits) the KS distances to the fitted normal and stable laws against each other.
pub fn tensor_hists(
    t: &TensorResult,
    slug: &str,
    k1: usize,
    kurt_top: f64,
    sampled: bool,
) -> Result<Vec<Plot>> {
    let s = &t.summary;
    let (alo, ahi, abins) = ALPHA_HIST;
    let alpha_title = format!("α_block (block sums, K1 = {k1})");
    let alpha_hist = |stat: &str, title: &str, median: f64, spike| {
        let spec = HistSpec {
            id: format!("hist-{slug}-{stat}"),
            file: format!("hist_{slug}_{stat}.svg"),
            title,
            subtitle: &t.meta.name,
            range: (alo, ahi),
            bins: abins,
            scale: Scale::Linear,
            ticks: labelled(alo, ahi, 1.0),
            xlabel: "α per coordinate (dimensionless)",
            edges: Edges::OutOfRange,
            reference: Some(2.0),
            median: Some(median),
            sampled,
            spike,
        };
        plots::histogram(t.coords.get(stat), &spec)
    };
    let kurt = HistSpec {
        id: format!("hist-{slug}-kurt"),
        file: format!("hist_{slug}_kurt.svg"),
        title: "excess kurtosis g2",
        subtitle: &t.meta.name,
        range: (KURT_MIN, kurt_top),
        bins: KURT_BINS,
        scale: Scale::Symlog,
        ticks: symlog_ticks(kurt_top)
            .into_iter()
            .filter(|t| t.0 >= symlog(KURT_MIN))
            .collect(),
        xlabel: "excess kurtosis per coordinate (symlog)",
        edges: Edges::Infinite,
        reference: Some(0.0),
        median: None,
        sampled,
        spike: None,
    };
    let fitted = t.coords.try_get("ks_gauss").is_some();
    // A million values or more per histogram: the histograms side by side.
    let ((block, logm), (mcculloch, kurt)) = rayon::join(
        || {
            rayon::join(
                || {
                    alpha_hist(
                        "alpha_block",
                        &alpha_title,
                        s.alpha_block_quantiles.q50,
                        None,
                    )
                },
                || {
                    alpha_hist(
                        "alpha_logm",
                        "α_logm (log-moment)",
                        s.alpha_logm_quantiles.q50,
                        // The log-moment α is clamped to 2 when var ln|u| ≤ π²/8 (its Gaussian
                        // value).
                        Some((2.0, "clamped to exactly 2 (var ln|u| ≤ π²/8)")),
                    )
                },
            )
        },
        || {
            rayon::join(
                || {
                    fitted
                        .then(|| {
                            alpha_hist(
                                "alpha_mcculloch",
                                "α_mcculloch (quantiles, McCulloch 1986)",
                                s.fits.alpha_mcculloch_quantiles.q50,
                                // McCulloch's table ends at the Gaussian's quantile spread
                                // (ν_α = 2.439).
                                Some((
                                    2.0,
                                    "exactly 2 (quantile spread at or below the Gaussian's)",
                                )),
                            )
                        })
                        .transpose()
                },
                || plots::histogram(t.coords.get("kurt"), &kurt),
            )
        },
    );
    let mut out = vec![block?, logm?];
    out.extend(mcculloch?);
    out.push(kurt?);
    if fitted {
        out.push(ks_scatter(t, slug, sampled)?);
    }
    Ok(out)
}

/// KS distance to the fitted stable law against that to the fitted normal, per coordinate.
fn ks_scatter(t: &TensorResult, slug: &str, sampled: bool) -> Result<Plot> {
    plots::scatter(
        t.coords.get("ks_gauss"),
        t.coords.get("ks_stable"),
        &ScatterSpec {
            id: format!("scatter-{slug}-ks"),
            file: format!("scatter_{slug}_ks.svg"),
            title: "KS distance: normal vs stable fit",
            subtitle: &t.meta.name,
            xlabel: "KS to fitted normal (ks_gauss)",
            ylabel: "KS to stable (ks_stable)",
            below: ("stable law closer", t.summary.fits.stable_beats_gauss_frac),
            sampled,
        },
    )
}
