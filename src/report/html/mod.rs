//! `report.html`: one self-contained page (inline SVG and CSS; no script, no network, no web
//! fonts) that shows a run at a glance, and each of its plots as a standalone `.svg` file next
//! to it (`alpha.svg`, `reject.svg`, `hist_<tensor>_<stat>.svg`).
//!
//! The page is a `maud` template of typed sections; the figures are chosen in [`figures`] and
//! drawn by [`plots`]. Everything is a pure function of the run; [`write`] only saves it.

mod figures;
pub mod format;
pub mod plots;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::Path;

use maud::{html, Markup, PreEscaped, DOCTYPE};

use self::figures::{CI_LABEL, MAX_HIST_TENSORS};
use self::format::{fmt_f, fmt_int, fmt_pct, fmt_share, shape_str, unique_slugs};
use self::plots::Plot;
use super::RunReport;
use crate::analyze::{Center, TensorResult, PLOT_SAMPLE};
use crate::error::{Error, Result};
use crate::stats::Quantiles;

/// The page and its plots.
pub struct Page {
    pub html: String,
    pub plots: Vec<Plot>,
}

/// Writes `report.html` and every plot's `.svg` into `dir`.
pub(super) fn write(dir: &Path, r: &RunReport) -> Result<()> {
    let page = render(r)?;
    let save = |name: &str, body: &str| {
        let p = dir.join(name);
        fs::write(&p, body).map_err(|e| Error::io(&p, e))
    };
    save("report.html", &page.html)?;
    for p in &page.plots {
        save(
            &p.file,
            &format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}", p.svg),
        )?;
    }
    Ok(())
}

/// One tensor's histograms, as the page shows them.
struct TensorHists<'a> {
    tensor: &'a TensorResult,
    plots: Vec<Plot>,
}

/// Builds the page and its plots.
pub fn render(r: &RunReport) -> Result<Page> {
    let a = r.analysis;
    let slugs = unique_slugs(a.tensors.iter().map(|t| t.meta.name.as_str()));
    let alpha = figures::alpha(&a.tensors)?;
    let reject = figures::reject(&a.tensors)?;
    let shown = figures::hist_tensors(&a.tensors, MAX_HIST_TENSORS);
    let kurt_top = figures::kurt_top(&a.tensors, &shown);
    let hists = shown
        .iter()
        .map(|&i| {
            let t = &a.tensors[i];
            let plots =
                figures::tensor_hists(t, &slugs[i], a.block_size, kurt_top, a.coords_sampled)?;
            Ok(TensorHists { tensor: t, plots })
        })
        .collect::<Result<Vec<_>>>()?;

    let names: Vec<&str> = a.tensors.iter().map(|t| t.meta.name.as_str()).collect();
    let title = match names.as_slice() {
        [one] => format!("gradtail report: {one}"),
        [first, ..] => format!("gradtail report: {first} and {} more", names.len() - 1),
        [] => "gradtail report".to_owned(),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "gradtail " (env!("CARGO_PKG_VERSION")) };
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { main {
                (header(r))
                (model_section(r))
                section #alpha {
                    h2 { "Tail index α per tensor" }
                    p.note {
                        "α = 2 is Gaussian; α < 2 means heavier, α-stable tails. " b { "Time-blocked α" }
                        " pools the block and entry log-means over all of a tensor's coordinates: it is not \
                        biased by scale differences between coordinates. Its " (CI_LABEL) " re-estimates α \
                        with each time block of K1 samples left out in turn, so it allows for coordinates \
                        that move together (they share every minibatch). " b { "Simsekli flat α" }
                        " is the original estimator on the flattened noise, kept for comparison: it reads \
                        low when coordinates have different scales."
                    }
                    p.note #centring { (centring(r.center)) }
                    figure { (PreEscaped(&alpha.svg)) }
                }
                section #reject {
                    h2 { "Normality rejected per coordinate" }
                    p.note {
                        "Share of each tensor's non-constant coordinates whose K samples fail a normality \
                        test at p < 0.05: Jarque–Bera and D'Agostino–Pearson K² (n/a when fewer than 8 \
                        finite samples). Under Gaussian noise about 5 % reject by chance (dashed line)."
                    }
                    figure { (PreEscaped(&reject.svg)) }
                }
                (tensor_table(&a.tensors))
                (hist_section(a.tensors.len(), a.coords_sampled, &hists, kurt_top))
                footer.note {
                    "gradtail " (env!("CARGO_PKG_VERSION")) " · files next to this page: summary.json, \
                    tensors.csv, coords.safetensors, alpha.svg, reject.svg"
                    @if !hists.is_empty() { ", hist_<tensor>_<stat>.svg" }
                    ". Definitions: README “Statistics”."
                }
            } }
        }
    };
    let mut plots = vec![alpha, reject];
    plots.extend(hists.into_iter().flat_map(|h| h.plots));
    Ok(Page {
        html: page.into_string(),
        plots,
    })
}

/// Which centring the run used and the bias it is known to carry (simulated: symmetric
/// α-stable noise, 2,000 independent coordinates).
fn centring(center: &Center) -> Markup {
    match center {
        Center::Mean => html! {
            "Centring: the per-coordinate sample mean (" code { "--center mean" } "). With \
            heavy-tailed noise it makes the pooled time-blocked α read low: symmetric α-stable \
            noise with α = 1.5 reads about 1.46 at K = 512, and α = 1.2 reads about 1.15. Centring \
            on the full-batch gradient (" code { "--center FILE" } ") avoids this."
        },
        Center::None => html! {
            "Centring: none (" code { "--center none" } "): the data are taken to be the noise \
            already. Data that are not centred bias α toward 1."
        },
        Center::File(p) => html! {
            "Centring: the per-coordinate values in " code.path { (p.display()) } ". When that \
            file is the full-batch gradient, the noise is exact and the centring adds no bias."
        },
    }
}

fn header(r: &RunReport) -> Markup {
    let a = r.analysis;
    let e = r.engine;
    let n = a.tensors.len();
    let plural = if n == 1 { "" } else { "s" };
    let kv = |k: &str, v: Markup| html! { tr { th { (k) } td { (v) } } };
    html! {
        header {
            h1 { "gradtail report" }
            p.lede {
                (n) " tensor" (plural) " · K = " (fmt_int(a.samples as u64)) " samples · P = "
                (fmt_int(a.model.coords as u64)) " coordinates · block length K1 = " (a.block_size)
                " · " (e.engine) " engine · " (format!("{:.2}", r.elapsed_s)) " s · gradtail "
                (env!("CARGO_PKG_VERSION"))
            }
        }
        section #run .cards {
            div {
                h3 { "Engine" }
                table.kv {
                    (kv("engine", html! { (e.engine) }))
                    (kv("threads", html! { (e.threads) }))
                    @match &e.adapter {
                        Some(ad) => {
                            (kv("adapter", html! { (ad.name) }))
                            (kv("graphics API", html! { (ad.backend) }))
                            (kv("device type", html! { (ad.device_type) }))
                            (kv("driver", html! { (ad.driver) }))
                        }
                        None => (kv("adapter", html! { "none (CPU engine)" })),
                    }
                }
            }
            div {
                h3 { "Options" }
                table.kv {
                    (kv("centre", match r.center {
                        Center::Mean => html! { "per-coordinate sample mean" },
                        Center::None => html! { "none (the data are the noise)" },
                        Center::File(p) => html! { "file " code.path { (p.display()) } },
                    }))
                    (kv("block length", match r.block {
                        Some(b) => html! { "K1 = " (b) " (--block)" },
                        None => html! { "K1 = " (a.block_size) " (default: largest divisor of K ≤ √K)" },
                    }))
                    (kv("backend", html! { (r.backend) }))
                    (kv("samples K", html! { (fmt_int(a.samples as u64)) }))
                }
            }
        }
        details #inputs open[n <= 12] {
            summary { b { "Inputs" } " (" (n) " tensor" (plural) ")" }
            div.scroll { table {
                thead { tr {
                    th { "tensor" } th { "path" } th { "dtype" } th.num { "K" } th { "shape" } th.num { "P" }
                } }
                tbody { @for t in &a.tensors {
                    @let m = &t.meta;
                    tr {
                        td { (m.name) }
                        td.path { code { (m.path.display()) } }
                        td { (serde_json::to_value(m.dtype).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                        td.num { (fmt_int(m.samples as u64)) }
                        td { (shape_str(&m.shape)) }
                        td.num { (fmt_int(m.coords() as u64)) }
                    }
                } }
            } }
        }
        @for (what, list) in [("tensors", r.skipped), ("step files", r.bad_files)] {
            @if !list.is_empty() {
                details.skipped open {
                    summary { b { "Skipped " (what) } " (" (list.len()) ")" }
                    ul { @for s in list { li { code { (s.name) } ": " (s.reason) } } }
                }
            }
        }
    }
}

fn model_section(r: &RunReport) -> Markup {
    let a = r.analysis;
    let m = &a.model;
    let entries = (a.samples as u64).saturating_mul(m.coords as u64);
    html! {
        section #model {
            h2 { "Whole input" }
            p.note { "All tensors concatenated in input order, as in Simsekli et al.'s " code { "main.py" } "." }
            table.kv {
                tr { th { "α Simsekli flat" } td {
                    span.big data-stat="model.alpha_simsekli_flat" { (fmt_f(m.alpha_simsekli_flat, 3)) }
                    " (block length m = " (fmt_int(m.simsekli_m)) "; biased low by scale differences \
                    between coordinates: compare the time-blocked α below)"
                } }
                tr { th { "coordinates P" } td { (fmt_int(m.coords as u64)) } }
                tr { th { "constant coordinates" } td {
                    span data-stat="model.constant_coords" { (fmt_share(m.constant_coords, m.coords as u64)) }
                    " — all finite samples equal; NaN for every shape statistic"
                } }
                tr { th { "exact zeros of the noise" } td {
                    span data-stat="model.zero_entries" { (fmt_share(m.zero_entries, entries)) }
                    " of K·P entries — left out of every log statistic"
                } }
                tr { th { "non-finite samples" } td {
                    span data-stat="model.nonfinite_samples" { (fmt_share(m.nonfinite_samples, entries)) }
                    " — dropped (and their time blocks)"
                } }
            }
        }
    }
}

/// A number shown on the page, tagged with the summary field it shows so a reader (or a test)
/// can tell which value it is.
fn stat(field: &str, shown: String) -> Markup {
    html! { span data-stat=(field) { (shown) } }
}

fn quantiles(field: &str, q: &Quantiles) -> Markup {
    html! {
        (stat(&format!("{field}.q50"), fmt_f(q.q50, 2))) " ["
        (stat(&format!("{field}.q25"), fmt_f(q.q25, 2))) ", "
        (stat(&format!("{field}.q75"), fmt_f(q.q75, 2))) "]"
    }
}

fn tensor_table(tensors: &[TensorResult]) -> Markup {
    let head: [Markup; 12] = [
        html! { "P" },
        // CI_LABEL on two lines, so the column stays narrow.
        html! { "α time-blocked" br; "[95 % CI, jackknife" br; "over time blocks]" },
        html! { "SE" },
        html! { "α flat" },
        html! { "α_block" br; "median [IQR]" },
        html! { "α_logm" br; "median [IQR]" },
        html! { "JB" br; "rej." },
        html! { "K²" br; "rej." },
        html! { "constant" },
        html! { "logm" br; "clamped" },
        html! { "zeros" },
        html! { "non-finite /" br; "dropped blocks" },
    ];
    html! {
        section #tensors {
            h2 { "Per-tensor numbers" }
            div.scroll { table.tensors {
                thead { tr { th { "tensor" } th { "shape" } @for h in head { th.num { (h) } } } }
                tbody { @for t in tensors {
                    @let s = &t.summary;
                    tr data-tensor=(s.name) {
                        td { (s.name) }
                        td { (shape_str(&s.shape)) }
                        td.num { (stat("coords", fmt_int(s.coords as u64))) }
                        td.num {
                            b { (stat("alpha_time_blocked", fmt_f(s.alpha_time_blocked, 3))) } " ["
                            (stat("alpha_time_blocked_ci.0", fmt_f(s.alpha_time_blocked_ci[0], 3))) ", "
                            (stat("alpha_time_blocked_ci.1", fmt_f(s.alpha_time_blocked_ci[1], 3))) "]"
                        }
                        td.num { (stat("alpha_time_blocked_se", fmt_f(s.alpha_time_blocked_se, 3))) }
                        td.num { (stat("alpha_simsekli_flat", fmt_f(s.alpha_simsekli_flat, 3))) }
                        td.num { (quantiles("alpha_block_quantiles", &s.alpha_block_quantiles)) }
                        td.num { (quantiles("alpha_logm_quantiles", &s.alpha_logm_quantiles)) }
                        td.num { (stat("jb_reject_frac", fmt_pct(s.jb_reject_frac))) }
                        td.num { (stat("k2_reject_frac", fmt_pct(s.k2_reject_frac))) }
                        td.num { (stat("constant_coords", fmt_int(s.constant_coords))) }
                        td.num { (stat("logm_clamped_coords", fmt_int(s.logm_clamped_coords))) }
                        td.num { (stat("zero_entries", fmt_int(s.zero_entries))) }
                        td.num {
                            (stat("nonfinite_samples", fmt_int(s.nonfinite_samples))) " / "
                            (stat("dropped_blocks", fmt_int(s.dropped_blocks)))
                        }
                    }
                } }
            } }
        }
    }
}

fn hist_section(total: usize, sampled: bool, hists: &[TensorHists], kurt_top: f64) -> Markup {
    let (lo, hi, _) = figures::ALPHA_HIST;
    html! {
        section #hist {
            h2 { "Per-coordinate distributions" }
            p.note {
                "One value per coordinate (parameter). α axes span [" (lo) ", " (hi) "]: values \
                outside are counted in the red edge bins. Kurtosis uses a symlog axis, \
                sign(g2)·log10(1 + |g2|), from −2 (its minimum) to the largest value shown ("
                (fmt_f(kurt_top, 1)) "), the same for every tensor. Dashed lines: the Gaussian \
                values α = 2 and g2 = 0. NaN values (constant coordinates) are skipped and counted."
                @if sampled {
                    " This run was large, so each histogram is drawn from a strided sample of at \
                    most " (fmt_int(PLOT_SAMPLE as u64)) " of the tensor's coordinates (counts are of \
                    the sample; the quantiles and fractions elsewhere use every coordinate)."
                }
                @if hists.len() < total {
                    " Shown for the " (hists.len()) " largest of the " (total) " tensors (by \
                    coordinate count), in input order; every map is in " code { "coords.safetensors" } "."
                }
            }
            @for h in hists {
                @let m = &h.tensor.meta;
                div.hist-tensor data-tensor=(m.name) {
                    h3 { (m.name) " " small { "shape " (shape_str(&m.shape)) " · " (fmt_int(m.coords() as u64)) " coordinates" } }
                    div.hist-row { @for p in &h.plots { (PreEscaped(&p.svg)) } }
                }
            }
        }
    }
}

const CSS: &str = "
:root{color-scheme:light}
body{margin:0;background:#fff;color:#222;font:14px/1.45 system-ui,-apple-system,'Segoe UI','DejaVu Sans','Liberation Sans',Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:25px;margin:0 0 2px}
h2{font-size:19px;margin:34px 0 8px;padding-bottom:4px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 4px}
h3 small{font-weight:normal;color:#666}
.lede{color:#555;margin:0 0 14px}
.note{color:#555;font-size:13px;max-width:980px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid #ccc;vertical-align:bottom}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.kv th{font-weight:600;color:#444;white-space:nowrap}
.kv th,.kv td{vertical-align:baseline}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(360px,1fr));gap:8px 32px}
.path{word-break:break-all}
.scroll{overflow-x:auto}
.big{font-size:20px;font-weight:600}
figure{margin:6px 0 14px}
figure svg{display:block;max-width:100%;height:auto}
.hist-row{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:6px 14px;align-items:start}
.hist-row svg{width:100%;height:auto;display:block}
details summary{cursor:pointer;color:#333}
footer{margin-top:36px;border-top:1px solid #ddd;padding-top:8px}
";
