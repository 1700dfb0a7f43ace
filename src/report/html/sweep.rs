//! `sweep.html`: one self-contained page for `gradtail sweep`. Per tensor, four plots against
//! the batch size B, each with one sentence on how to read it, so that the finite-variance
//! reading (trace and kurtosis, Ziyin et al. 2022 and Wu et al. 2021) and the α-stable one
//! (robust scale and α, Simsekli et al. 2019) sit side by side.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::format::{fmt_f, fmt_int, shape_str, unique_slugs};
use super::plots::lines::{lines, Axis, LineSeries, LinesSpec, Reference};
use super::plots::{self, Plot};
use crate::analyze::Center;
use crate::error::Result;
use crate::sweep::{BatchRow, SweepReport, TensorSweep};

/// The page's own layout on top of the report's stylesheet.
const SWEEP_CSS: &str = "
.sweep-row{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:6px 16px;align-items:start}
.sweep-row svg{width:100%;height:auto;display:block}
figcaption{color:#444;font-size:13px;margin-top:2px}
";

/// Renders the page; the plots are inline.
pub fn render(r: &SweepReport) -> Result<String> {
    let slugs = unique_slugs(r.tensors.iter().map(|t| t.name.as_str()));
    let figures = r
        .tensors
        .iter()
        .zip(&slugs)
        .map(|(t, slug)| tensor_plots(t, slug, r.dataset_size))
        .collect::<Result<Vec<_>>>()?;
    let batches: Vec<String> = r.inputs.iter().map(|i| i.batch.to_string()).collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "gradtail " (env!("CARGO_PKG_VERSION")) };
                title { "gradtail sweep: batch sizes " (batches.join(", ")) }
                style { (PreEscaped(super::CSS)) (PreEscaped(SWEEP_CSS)) }
            }
            body { main {
                header {
                    h1 { "gradtail sweep" }
                    p.lede {
                        (r.tensors.len()) " tensor" (if r.tensors.len() == 1 { "" } else { "s" })
                        " · batch sizes B = " (batches.join(", ")) " · dataset N = "
                        (fmt_int(r.dataset_size)) " · " (r.engine.engine) " engine · "
                        (format!("{:.2}", r.elapsed_s)) " s · gradtail " (env!("CARGO_PKG_VERSION"))
                    }
                }
                p.note {
                    "Minibatch gradients taken at the same weights with several batch sizes. \
                    If the per-example gradients have finite variance, the noise covariance \
                    scales as (N − B)/(B(N − 1)) and the excess kurtosis as 1/B, so both \
                    fall on straight lines of known slope on log–log axes. If they are heavy-tailed \
                    with index α < 2, a robust scale (the interquartile range) shrinks only as \
                    B^(1/α − 1). A finite dataset always has finite variance, so an α below 2 \
                    describes how the noise behaves at these batch sizes, not a limit."
                }
                (inputs(r))
                (slope_table(r.tensors, &slugs))
                @for ((t, slug), plots) in r.tensors.iter().zip(&slugs).zip(&figures) {
                    (tensor_section(t, slug, plots))
                }
                footer.note {
                    "gradtail " (env!("CARGO_PKG_VERSION"))
                    " · the numbers on this page are in sweep.json next to it."
                }
            } }
        }
    };
    Ok(page.into_string())
}

fn inputs(r: &SweepReport) -> Markup {
    html! {
        h2 { "Inputs" }
        table {
            thead { tr {
                th.num { "B" } th { "path" } th.num { "K" } th.num { "block length K1" }
            } }
            tbody { @for (i, m) in r.inputs.iter().zip(r.measured) {
                tr {
                    td.num { (i.batch) }
                    td.path { code { (i.path.display()) } }
                    td.num { (fmt_int(m.analysis.samples as u64)) }
                    td.num { (m.analysis.block_size) }
                }
            } }
        }
        p.note { (centre(r.center)) }
    }
}

fn centre(c: &Center) -> Markup {
    match c {
        Center::Mean => html! { "α centred on each coordinate's sample mean." },
        Center::Median => html! { "α centred on each coordinate's sample median." },
        Center::None => html! { "α taken on the data as given (--center none)." },
        Center::File(p) => html! { "α centred on the values in " code { (p.display()) } "." },
    }
}

/// A slope on the page, tagged with its `sweep.json` field; a dash when it is null.
fn slope(field: &str, v: Option<f64>) -> Markup {
    html! { span data-stat=(field) { (v.map_or("—".to_owned(), |v| fmt_f(v, 3))) } }
}

fn slope_table(tensors: &[TensorSweep], slugs: &[String]) -> Markup {
    html! {
        h2 { "Slopes per tensor" }
        p.note {
            "trace_slope: 1 for finite-variance noise. alpha_eff: 2 when the interquartile \
            range scales as a Gaussian's. kurtosis_slope: −1 for finite fourth moments."
        }
        div.scroll { table {
            thead { tr {
                th { "tensor" } th { "shape" } th.num { "trace_slope" } th.num { "alpha_eff" }
                th.num { "kurtosis_slope" } th { "notes" }
            } }
            tbody { @for (t, slug) in tensors.iter().zip(slugs) {
                tr {
                    td { a href={ "#sweep-" (slug) } { (t.name) } }
                    td { (shape_str(&t.shape)) }
                    td.num { (slope("trace_slope", t.trace_slope)) }
                    td.num { (slope("alpha_eff", t.alpha_eff)) }
                    td.num { (slope("kurtosis_slope", t.kurtosis_slope)) }
                    td { (t.notes.join(" ")) }
                }
            } }
        } }
    }
}

/// The sentence under each plot, in the order [`tensor_plots`] draws them.
const READINGS: [&str; 4] = [
    "On the dashed line of slope 1 the covariance scales as finite-variance noise drawn without replacement does (Ziyin et al. 2022); the fitted slope is trace_slope.",
    "The interquartile range of α-stable noise shrinks as B^(1/α − 1): along the dashed slope −1/2 it shrinks as a Gaussian's (α = 2), and a shallower fitted slope reads alpha_eff = 1/(1 + slope) below 2 (Simsekli et al. 2019).",
    "With finite fourth moments the excess kurtosis of a mean of B examples falls as 1/B, the dashed slope −1 (Wu et al. 2021); a shallower fall means heavier tails than that.",
    "α estimated at each batch size on its own: flat below 2 as B grows is the α-stable reading, a climb towards the dashed α = 2 is the central limit theorem taking hold.",
];

fn tensor_section(t: &TensorSweep, slug: &str, plots: &[Plot]) -> Markup {
    html! {
        section id={ "sweep-" (slug) } {
            h2 { (t.name) " " small { (shape_str(&t.shape)) " · " (fmt_int(t.coords as u64)) " coordinates" } }
            div.sweep-row {
                @for (p, reading) in plots.iter().zip(READINGS) {
                    figure { (PreEscaped(&p.svg)) figcaption { (reading) } }
                }
            }
            div.scroll { table {
                thead { tr {
                    th.num { "B" } th.num { "α time-blocked" } th.num { "median α McCulloch" }
                    th.num { "median excess kurtosis" } th.num { "tr(C_B)" }
                    th.num { "r_B (median IQR)" } th.num { "constant coords" }
                } }
                tbody { @for b in &t.batches {
                    tr {
                        td.num { (b.batch) }
                        td.num { (fmt_f(b.alpha_time_blocked, 3)) }
                        td.num { (fmt_f(b.alpha_mcculloch_median, 3)) }
                        td.num { (fmt_e(b.kurtosis_median)) }
                        td.num { (fmt_e(b.trace)) }
                        td.num { (fmt_e(b.iqr_median)) }
                        td.num { (fmt_int(b.constant_coords)) }
                    }
                } }
            } }
        }
    }
}

/// Four significant digits, in exponent form outside [0.01, 10 000).
fn fmt_e(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(0.01..1e4).contains(&v.abs()) {
        format!("{v:.3e}")
    } else {
        fmt_f(v, 4)
    }
}

/// The two ends, over `xs`, of the least-squares line of ln y on ln x with slope `b` (its
/// intercept is mean(ln y) − b·mean(ln x)), in data units; `None` without a slope or a point.
fn fit_ends(xs: &[f64], ys: &[f64], b: Option<f64>) -> Option<[(f64, f64); 2]> {
    let b = b?;
    let (lx, ly): (Vec<f64>, Vec<f64>) = xs.iter().zip(ys).map(|(x, y)| (x.ln(), y.ln())).unzip();
    let n = lx.len() as f64;
    let a = ly.iter().sum::<f64>() / n - b * lx.iter().sum::<f64>() / n;
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(0.0, f64::max),
    );
    let end = |x: f64| (x, (a + b * x.ln()).exp());
    let ends = [end(lo), end(hi)];
    ends.iter()
        .all(|(x, y)| x.is_finite() && y.is_finite())
        .then_some(ends)
}

/// A reference line of slope `b` on log–log axes through the points' centre (geometric means).
fn reference(label: &str, xs: &[f64], ys: &[f64], b: f64) -> Reference {
    let n = xs.len() as f64;
    let (mx, my) = (
        xs.iter().map(|x| x.ln()).sum::<f64>() / n,
        ys.iter().map(|y| y.ln()).sum::<f64>() / n,
    );
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0, f64::max);
    let end = |x: f64| (x, (my + b * (x.ln() - mx)).exp());
    Reference {
        label: label.to_owned(),
        ends: [end(lo), end(hi)],
    }
}

/// The tensor's four plots: trace against the finite-population factor, r_B and the median
/// kurtosis against B (log–log), and the per-batch α against B.
fn tensor_plots(t: &TensorSweep, slug: &str, n: u64) -> Result<Vec<Plot>> {
    let col = |f: fn(&BatchRow) -> f64| -> Vec<f64> { t.batches.iter().map(f).collect() };
    let bs = col(|b| b.batch as f64);
    let nf = n as f64;
    let factor: Vec<f64> = bs.iter().map(|b| (nf - b) / (b * (nf - 1.0))).collect();
    let (trace, iqr, kurt) = (
        col(|b| b.trace),
        col(|b| b.iqr_median),
        col(|b| b.kurtosis_median),
    );
    let pairs = |x: &[f64], y: &[f64]| x.iter().copied().zip(y.iter().copied()).collect();
    let spec = |kind: &str, title, xlabel, ylabel, x_ticks, series, references| LinesSpec {
        id: format!("sweep-{slug}-{kind}"),
        file: format!("sweep_{slug}_{kind}.svg"),
        title,
        subtitle: &t.name,
        xlabel,
        ylabel,
        x: Axis::Log,
        y: if kind == "alpha" {
            Axis::Linear
        } else {
            Axis::Log
        },
        x_ticks,
        series,
        references,
    };
    let fitted = |label: String, x: &[f64], y: &[f64], b: Option<f64>| LineSeries {
        label,
        colour: plots::BLUE_TB,
        points: pairs(x, y),
        fit: fit_ends(x, y, b),
        missing: "no positive value",
    };
    let slope_label = |what: &str, v: Option<f64>| match v {
        Some(v) => format!("{what}, fitted slope {}", fmt_f(v, 3)),
        None => format!("{what}, no slope"),
    };
    let iqr_slope = t.alpha_eff.map(|a| 1.0 / a - 1.0);
    let alpha_series = |label: &str, colour, f: fn(&BatchRow) -> f64| LineSeries {
        label: label.to_owned(),
        colour,
        points: pairs(&bs, &col(f)),
        fit: None,
        missing: "not estimated",
    };
    let (blo, bhi) = (
        bs.first().copied().unwrap_or(1.0),
        bs.last().copied().unwrap_or(1.0),
    );
    Ok(vec![
        lines(&spec(
            "trace",
            "noise trace tr(C_B)",
            "(N − B) / (B (N − 1))",
            "tr(C_B)",
            None,
            vec![fitted(
                slope_label("tr(C_B)", t.trace_slope),
                &factor,
                &trace,
                t.trace_slope,
            )],
            vec![reference("slope 1 (finite variance)", &factor, &trace, 1.0)],
        ))?,
        lines(&spec(
            "iqr",
            "robust scale r_B (median IQR)",
            "batch size B",
            "r_B",
            Some(bs.clone()),
            vec![fitted(
                format!(
                    "{}, α_eff {}",
                    slope_label("r_B", iqr_slope),
                    t.alpha_eff.map_or("—".into(), |a| fmt_f(a, 3))
                ),
                &bs,
                &iqr,
                iqr_slope,
            )],
            vec![reference("slope −1/2 (Gaussian, α = 2)", &bs, &iqr, -0.5)],
        ))?,
        lines(&spec(
            "kurtosis",
            "median excess kurtosis",
            "batch size B",
            "median excess kurtosis",
            Some(bs.clone()),
            vec![fitted(
                slope_label("median g2", t.kurtosis_slope),
                &bs,
                &kurt,
                t.kurtosis_slope,
            )],
            vec![reference(
                "slope −1 (finite fourth moment)",
                &bs,
                &kurt,
                -1.0,
            )],
        ))?,
        lines(&spec(
            "alpha",
            "tail index α at each B",
            "batch size B",
            "α",
            Some(bs.clone()),
            vec![
                alpha_series("α time-blocked (pooled)", plots::BLUE_TB, |b| {
                    b.alpha_time_blocked
                }),
                alpha_series("median α McCulloch", plots::ORANGE_FLAT, |b| {
                    b.alpha_mcculloch_median
                }),
            ],
            vec![Reference {
                label: "α = 2 (Gaussian)".into(),
                ends: [(blo, 2.0), (bhi, 2.0)],
            }],
        ))?,
    ])
}
