//! The page built from made-up tensors: every tensor gets its plots, user text is escaped,
//! values that cannot be drawn in place are said, and the histogram cap holds.

use super::figures::MAX_HIST_TENSORS;
use super::*;
use crate::analyze::{Analysis, Center, ModelSummary, TensorResult};
use crate::engine::EngineInfo;
use crate::input::{Dtype, TensorMeta};
use crate::report::RunReport;
use crate::stats::fits::FitsSummary;
use crate::stats::{CoordTable, Quantiles, Stat, TensorSummary};

fn tensor(name: &str, p: usize, alpha: f64, ci: [f64; 2]) -> TensorResult {
    let q = Quantiles {
        q05: 1.0,
        q25: 1.5,
        q50: 1.7,
        q75: 1.9,
        q95: 2.0,
    };
    // Every 7th value NaN, every 7th +inf, the rest spread over [0, 5).
    let col = |j: usize| -> Vec<f64> {
        (0..p)
            .map(|i| match i % 7 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                _ => (i as f64 * 0.37 + j as f64) % 5.0,
            })
            .collect()
    };
    TensorResult {
        meta: TensorMeta {
            name: name.into(),
            path: format!("/data/{name}.npy").into(),
            dtype: Dtype::F32,
            samples: 64,
            shape: vec![p],
        },
        summary: TensorSummary {
            name: name.into(),
            shape: vec![p],
            coords: p,
            block_size: 8,
            block_rows: 64,
            alpha_time_blocked: alpha,
            alpha_time_blocked_se: 0.1,
            alpha_time_blocked_ci: ci,
            alpha_time_blocked_se_iid: 0.02,
            alpha_simsekli_flat: 0.7,
            simsekli_m: 8,
            alpha_block_quantiles: q,
            alpha_logm_quantiles: q,
            jb_reject_frac: 0.4,
            k2_reject_frac: f64::NAN,
            fits: FitsSummary {
                alpha_mcculloch_quantiles: q,
                alpha_mcculloch_below_1_9_frac: 0.8,
                mcculloch_degenerate: Some(0),
                stable_beats_gauss_frac: 0.75,
                ad_reject_frac: 0.6,
                top1_share_median: 0.05,
            },
            constant_coords: 1,
            few_finite_coords: 0,
            logm_clamped_coords: 2,
            zero_entries: 0,
            nonfinite_samples: 0,
            dropped_blocks: 0,
            structure: Default::default(),
            notes: Vec::new(),
        },
        coords: CoordTable::whole((0..Stat::ALL.len()).map(col).collect()),
    }
}

fn page(tensors: Vec<TensorResult>, center: Center) -> Page {
    let a = Analysis {
        samples: 64,
        block_size: 8,
        groups: 1,
        coords_sampled: false,
        bytes_read: 0,
        model: ModelSummary {
            alpha_simsekli_flat: 0.8,
            simsekli_m: 64,
            coords: tensors.iter().map(|t| t.meta.coords()).sum(),
            constant_coords: 1,
            few_finite_coords: 0,
            zero_entries: 3,
            nonfinite_samples: 0,
            spectrum: None,
            noise_scale: None,
            notes: Vec::new(),
        },
        tensors,
    };
    let engine = EngineInfo {
        engine: "cpu",
        threads: 2,
        adapter: None,
    };
    let r = RunReport {
        analysis: &a,
        engine: &engine,
        center: &center,
        block: None,
        backend: "cpu",
        fits: true,
        structure: &Default::default(),
        elapsed_s: 0.5,
        skipped: &[],
        bad_files: &[],
    };
    render(&r).expect("the page renders")
}

#[test]
fn every_tensor_has_its_plots_and_user_text_is_escaped() {
    let mut dead = tensor("dead", 5, f64::NAN, [f64::NAN, f64::NAN]);
    dead.summary.alpha_simsekli_flat = f64::NAN;
    let p = page(
        vec![
            tensor("fc0.weight", 100, 1.4, [1.3, 1.5]),
            tensor("<b>&\"x'\u{1}", 30, 9.0, [0.2, f64::INFINITY]),
            dead,
        ],
        Center::Mean,
    );
    let h = &p.html;
    for id in ["plot-alpha", "plot-reject"]
        .into_iter()
        .map(str::to_owned)
        .chain(["fc0.weight", "_b___x__", "dead"].iter().flat_map(|slug| {
            ["alpha_block", "alpha_logm", "alpha_mcculloch", "kurt"]
                .map(|stat| format!("hist-{slug}-{stat}"))
                .into_iter()
                .chain([format!("scatter-{slug}-ks")])
        }))
    {
        assert!(
            h.contains(&format!("<svg id=\"{id}\"")),
            "{id} is not on the page"
        );
        let plot = p.plots.iter().find(|pl| pl.id == id).expect("plot listed");
        assert!(plot.svg.contains("<title>"), "{id} has no title");
    }
    assert_eq!(p.plots.len(), 2 + 3 * 5);
    assert!(p
        .plots
        .iter()
        .any(|pl| pl.file == "scatter_fc0.weight_ks.svg"));
    assert!(p
        .plots
        .iter()
        .any(|pl| pl.file == "hist__b___x___alpha_block.svg"));
    // The name is escaped on the page and in the plots; the control character is gone from
    // the SVG (XML forbids it).
    assert!(!h.contains("<b>&") && h.contains("&lt;b&gt;&amp;&quot;x'"));
    assert!(p
        .plots
        .iter()
        .all(|pl| !pl.svg.contains('\u{1}') && !pl.svg.contains("<b>")));
    assert!(!h.contains("<script") && !h.contains("src=") && !h.contains("href="));
    // Clamped α (9 > 5), the unbounded CI and the missing estimate are said.
    assert!(
        h.contains("outside [0, 5]") && h.contains("unbounded"),
        "notes of the α plot"
    );
    assert!(h.contains("no time-blocked estimate"));
    // Non-finite per-coordinate values are counted, not binned silently.
    assert!(h.contains("NaN skipped") && h.contains("infinite:"));
    // The mean-centring bias is stated.
    assert!(h.contains("--center mean") && h.contains("1.46"));
}

/// Without the fits (`--no-fits`: no fit columns) a tensor gets its three other histograms
/// and no KS plot, and the page does not describe them.
#[test]
fn without_fits_the_fit_plots_are_left_out() {
    let mut t = tensor("w", 20, 1.5, [1.4, 1.6]);
    t.coords.truncate(Stat::CORE.len());
    t.summary.fits = FitsSummary::NONE;
    let p = page(vec![t], Center::Mean);
    assert_eq!(p.plots.len(), 2 + 3);
    assert!(!p.html.contains("alpha_mcculloch\"") && !p.html.contains("scatter-"));
    assert!(!p.html.contains("In the KS plot"));
}

#[test]
fn each_centring_says_its_bias() {
    let t = || vec![tensor("w", 20, 1.5, [1.4, 1.6])];
    let none = page(t(), Center::None).html;
    assert!(none.contains("--center none") && none.contains("toward 1"));
    let file = page(t(), Center::File("/g/full.npy".into())).html;
    assert!(file.contains("/g/full.npy") && file.contains("full-batch gradient"));
    let median = page(t(), Center::Median).html;
    assert!(median.contains("--center median") && median.contains("reads 1.50"));
}

#[test]
fn histograms_are_capped_to_the_largest_tensors() {
    let ts: Vec<TensorResult> = (0..70)
        .map(|i| tensor(&format!("t{i}"), 10 + i, 1.5, [1.4, 1.6]))
        .collect();
    let p = page(ts, Center::Mean);
    assert_eq!(p.plots.len(), 2 + 5 * MAX_HIST_TENSORS);
    // The six smallest (t0..t5) are left out.
    assert!(!p.html.contains("id=\"hist-t5-kurt\"") && p.html.contains("id=\"hist-t6-kurt\""));
    assert!(p.html.contains("64 largest of the 70 tensors"));
}
