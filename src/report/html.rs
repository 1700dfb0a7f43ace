//! `report.html`: one self-contained page (inline SVG and CSS; no script, no network, no web
//! fonts) that shows a run at a glance, and each of its plots as a standalone `.svg` file next
//! to it (`alpha.svg`, `reject.svg`, `hist_<tensor>_<stat>.svg`).
//!
//! Everything here is a pure function from the analysis to strings; [`write`] only saves
//! them. The plots are hand-written SVG built with the small helpers in [`svg`]: nice ticks,
//! axes, bars, markers and escaped text.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use self::svg::{esc, Anchor, Area, Linear};
use super::RunReport;
use crate::analyze::{Center, TensorResult};
use crate::error::{Error, Result};

/// Histograms are drawn for at most this many tensors, the largest by coordinate count.
pub const MAX_HIST_TENSORS: usize = 64;
/// Per-tensor α outside this range is drawn at the edge of the α plot and counted.
const ALPHA_CLAMP: (f64, f64) = (0.0, 5.0);
/// Per-coordinate α histograms: range and bins; values outside go to edge bins.
const ALPHA_HIST: (f64, f64, usize) = (0.0, 4.0, 40);
/// Bins of the (symlog) kurtosis histograms.
const KURT_BINS: usize = 40;
/// Lower bound of excess kurtosis (g2 ≥ −2 for any data).
const KURT_MIN: f64 = -2.0;
/// Row-chart tensor labels longer than this are cut (the full name is in a tooltip).
const LABEL_CHARS: usize = 36;

const C_TB: &str = "#1f5fa8";
const C_FLAT: &str = "#d9731a";
const C_JB: &str = "#3a8f7b";
const C_K2: &str = "#8a5ab8";
const C_BAR: &str = "#5b86b8";
const C_EDGE: &str = "#c0504d";
const C_SPIKE: &str = "#1d3f66";
const C_REF: &str = "#555";
/// Grey italic text with a white outline, readable over grid and reference lines.
const HALO_GREY_ITALIC: &str =
    "fill=\"#777\" font-style=\"italic\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\"";

/// One plot: its `<svg>` id, its standalone file name, its markup.
pub struct Plot {
    pub id: String,
    pub file: String,
    pub svg: String,
}

/// The page and its plots.
pub struct Page {
    pub html: String,
    pub plots: Vec<Plot>,
}

/// Writes `report.html` and every plot's `.svg` into `dir`.
pub(super) fn write(dir: &Path, r: &RunReport) -> Result<()> {
    let page = render(r);
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

/// Builds the page and its plots.
pub fn render(r: &RunReport) -> Page {
    let a = r.analysis;
    let slugs = unique_slugs(a.tensors.iter().map(|t| t.meta.name.as_str()));
    let alpha = alpha_plot(&a.tensors);
    let reject = reject_plot(&a.tensors);
    let shown = hist_tensors(&a.tensors, MAX_HIST_TENSORS);
    let kurt_hi = shown
        .iter()
        .flat_map(|&i| a.tensors[i].coords.get("kurt").iter().copied())
        .filter(|v| v.is_finite())
        .fold(10.0f64, f64::max);
    let hists: Vec<(usize, Vec<Plot>)> = shown
        .iter()
        .map(|&i| {
            (
                i,
                tensor_hists(
                    &a.tensors[i],
                    &slugs[i],
                    a.block_size,
                    kurt_hi,
                    a.coords_sampled,
                ),
            )
        })
        .collect();

    let mut h = String::new();
    let names: Vec<&str> = a.tensors.iter().map(|t| t.meta.name.as_str()).collect();
    let title = match names.as_slice() {
        [one] => format!("gradtail report: {one}"),
        [first, ..] => format!("gradtail report: {first} and {} more", names.len() - 1),
        [] => "gradtail report".to_owned(),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"gradtail {ver}\">\n<title>{t}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        ver = env!("CARGO_PKG_VERSION"),
        t = esc(&title),
    );
    header(&mut h, r);
    model_section(&mut h, r);

    let _ = write!(
        h,
        "<section id=\"alpha\">\n<h2>Tail index α per tensor</h2>\n<p class=\"note\">α = 2 is Gaussian; \
         α &lt; 2 means heavier, α-stable tails. <b>Time-blocked α</b> pools the block and entry \
         log-means over all of a tensor's coordinates: it is not biased by scale differences between \
         coordinates; its 95&nbsp;% CI treats coordinates as independent, so read it as a lower bound \
         on the uncertainty. <b>Simsekli flat α</b> is the original estimator on the flattened noise, \
         kept for comparison: it reads low when coordinates have different scales.</p>\n\
         <figure>{}</figure>\n</section>\n",
        alpha.svg
    );
    let _ = write!(
        h,
        "<section id=\"reject\">\n<h2>Normality rejected per coordinate</h2>\n<p class=\"note\">Share \
         of each tensor's non-constant coordinates whose K samples fail a normality test at p &lt; 0.05: \
         Jarque–Bera and D'Agostino–Pearson K² (NaN when fewer than 8 finite samples). Under Gaussian \
         noise about 5&nbsp;% reject by chance (dashed line).</p>\n<figure>{}</figure>\n</section>\n",
        reject.svg
    );
    tensor_table(&mut h, &a.tensors);
    hist_section(
        &mut h,
        a.tensors.len(),
        a.coords_sampled,
        &hists,
        &a.tensors,
        kurt_hi,
    );

    let mut files = [
        "summary.json",
        "tensors.csv",
        "coords.safetensors",
        "alpha.svg",
        "reject.svg",
    ]
    .join(", ");
    if !hists.is_empty() {
        files.push_str(", hist_&lt;tensor&gt;_&lt;stat&gt;.svg");
    }
    let _ = write!(
        h,
        "<footer class=\"note\">gradtail {} · files next to this page: {files}. Definitions: README \
         “Statistics”.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );

    let mut plots = vec![alpha, reject];
    plots.extend(hists.into_iter().flat_map(|(_, p)| p));
    Page { html: h, plots }
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

// ---------------------------------------------------------------------------------------------
// Page sections

fn header(h: &mut String, r: &RunReport) {
    let a = r.analysis;
    let _ = write!(
        h,
        "<header>\n<h1>gradtail report</h1>\n<p class=\"lede\">{} tensor{} · K = {} samples · P = {} \
         coordinates · block length K1 = {} · {} engine · {:.2} s · gradtail {}</p>\n</header>\n",
        a.tensors.len(),
        if a.tensors.len() == 1 { "" } else { "s" },
        fmt_int(a.samples as u64),
        fmt_int(a.model.coords as u64),
        a.block_size,
        esc(r.engine.engine),
        r.elapsed_s,
        env!("CARGO_PKG_VERSION"),
    );

    h.push_str(
        "<section id=\"run\" class=\"cards\">\n<div>\n<h3>Engine</h3>\n<table class=\"kv\">\n",
    );
    let e = r.engine;
    kv(h, "engine", &esc(e.engine));
    kv(h, "threads", &e.threads.to_string());
    match &e.adapter {
        Some(ad) => {
            kv(h, "adapter", &esc(&ad.name));
            kv(h, "graphics API", &esc(&ad.backend));
            kv(h, "device type", &esc(&ad.device_type));
            kv(h, "driver", &esc(&ad.driver));
        }
        None => kv(h, "adapter", "none (CPU engine)"),
    }
    h.push_str("</table>\n</div>\n<div>\n<h3>Options</h3>\n<table class=\"kv\">\n");
    let center = match r.center {
        Center::Mean => "per-coordinate sample mean".to_owned(),
        Center::None => "none (the data are the noise)".to_owned(),
        Center::File(p) => format!(
            "file <code class=\"path\">{}</code>",
            esc(&p.display().to_string())
        ),
    };
    kv(h, "centre", &center);
    let block = match r.block {
        Some(b) => format!("K1 = {b} (--block)"),
        None => format!("K1 = {} (default: largest divisor of K ≤ √K)", a.block_size),
    };
    kv(h, "block length", &block);
    kv(h, "backend", &esc(r.backend));
    kv(h, "samples K", &fmt_int(a.samples as u64));
    h.push_str("</table>\n</div>\n</section>\n");

    let n = a.tensors.len();
    let _ = write!(
        h,
        "<details id=\"inputs\"{}>\n<summary><b>Inputs</b> ({n} tensor{})</summary>\n<div class=\"scroll\">\
         <table>\n<thead><tr><th>tensor</th><th>path</th><th>dtype</th><th class=\"num\">K</th>\
         <th>shape</th><th class=\"num\">P</th></tr></thead>\n<tbody>\n",
        if n <= 12 { " open" } else { "" },
        if n == 1 { "" } else { "s" },
    );
    for t in &a.tensors {
        let m = &t.meta;
        let dtype = serde_json::to_value(m.dtype)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", m.dtype));
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"path\"><code>{}</code></td><td>{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&m.name),
            esc(&m.path.display().to_string()),
            esc(&dtype),
            fmt_int(m.samples as u64),
            shape_str(&m.shape),
            fmt_int(m.coords() as u64),
        );
    }
    h.push_str("</tbody></table></div>\n</details>\n");
    for (what, list) in [("tensors", r.skipped), ("step files", r.bad_files)] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<details class=\"skipped\" open>\n<summary><b>Skipped {what}</b> ({})</summary>\n<ul>\n",
            list.len()
        );
        for s in list {
            let _ = writeln!(
                h,
                "<li><code>{}</code>: {}</li>",
                esc(&s.name),
                esc(&s.reason)
            );
        }
        h.push_str("</ul>\n</details>\n");
    }
}

fn kv(h: &mut String, k: &str, v_html: &str) {
    let _ = writeln!(h, "<tr><th>{}</th><td>{v_html}</td></tr>", esc(k));
}

fn model_section(h: &mut String, r: &RunReport) {
    let a = r.analysis;
    let m = &a.model;
    let entries = (a.samples as u64).saturating_mul(m.coords as u64);
    let pct = |x: u64, of: u64| {
        if of == 0 {
            String::new()
        } else {
            format!(" ({:.2}&nbsp;%)", 100.0 * x as f64 / of as f64)
        }
    };
    let _ = write!(
        h,
        "<section id=\"model\">\n<h2>Whole input</h2>\n<p class=\"note\">All tensors concatenated in \
         input order, as in Simsekli et al.'s <code>main.py</code>.</p>\n<table class=\"kv\">\n\
         <tr><th>α Simsekli flat</th><td><span class=\"big\">{}</span> &nbsp;(block length m = {}; \
         biased low by scale differences between coordinates: compare the time-blocked α below)</td></tr>\n",
        fmt_f(m.alpha_simsekli_flat, 3),
        fmt_int(m.simsekli_m),
    );
    kv(h, "coordinates P", &fmt_int(m.coords as u64));
    kv(
        h,
        "constant coordinates",
        &format!(
            "{}{} — all finite samples equal; NaN for every shape statistic",
            fmt_int(m.constant_coords),
            pct(m.constant_coords, m.coords as u64)
        ),
    );
    kv(
        h,
        "exact zeros of the noise",
        &format!(
            "{}{} of K·P entries — left out of every log statistic",
            fmt_int(m.zero_entries),
            pct(m.zero_entries, entries)
        ),
    );
    kv(
        h,
        "non-finite samples",
        &format!(
            "{}{} — dropped (and their time blocks)",
            fmt_int(m.nonfinite_samples),
            pct(m.nonfinite_samples, entries)
        ),
    );
    h.push_str("</table>\n</section>\n");
}

fn tensor_table(h: &mut String, tensors: &[TensorResult]) {
    const HEAD: [&str; 14] = [
        "tensor",
        "shape",
        "P",
        "α time-blocked<br>[95&nbsp;% CI]",
        "SE<br>(time-block jackknife)",
        "α flat",
        "α_block<br>median [IQR]",
        "α_logm<br>median [IQR]",
        "JB<br>rej.",
        "K²<br>rej.",
        "constant",
        "logm<br>clamped",
        "zeros",
        "non-finite /<br>dropped blocks",
    ];
    h.push_str(
        "<section id=\"tensors\">\n<h2>Per-tensor numbers</h2>\n<div class=\"scroll\"><table class=\"tensors\">\n<thead><tr>",
    );
    for (i, c) in HEAD.iter().enumerate() {
        let _ = write!(
            h,
            "<th{}>{c}</th>",
            if i >= 2 { " class=\"num\"" } else { "" }
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for t in tensors {
        let s = &t.summary;
        let q = |q: &crate::stats::Quantiles| {
            format!(
                "{} [{}, {}]",
                fmt_f(q.q50, 2),
                fmt_f(q.q25, 2),
                fmt_f(q.q75, 2)
            )
        };
        let cells = [
            fmt_int(s.coords as u64),
            format!(
                "<b>{}</b> [{}, {}]",
                fmt_f(s.alpha_time_blocked, 3),
                fmt_f(s.alpha_time_blocked_ci[0], 3),
                fmt_f(s.alpha_time_blocked_ci[1], 3)
            ),
            fmt_f(s.alpha_time_blocked_se, 3),
            fmt_f(s.alpha_simsekli_flat, 3),
            q(&s.alpha_block_quantiles),
            q(&s.alpha_logm_quantiles),
            fmt_pct(s.jb_reject_frac),
            fmt_pct(s.k2_reject_frac),
            fmt_int(s.constant_coords),
            fmt_int(s.logm_clamped_coords),
            fmt_int(s.zero_entries),
            format!(
                "{} / {}",
                fmt_int(s.nonfinite_samples),
                fmt_int(s.dropped_blocks)
            ),
        ];
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            esc(&s.name),
            shape_str(&s.shape)
        );
        for c in cells {
            let _ = write!(h, "<td class=\"num\">{c}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n</section>\n");
}

fn hist_section(
    h: &mut String,
    total: usize,
    sampled: bool,
    hists: &[(usize, Vec<Plot>)],
    tensors: &[TensorResult],
    kurt_hi: f64,
) {
    let sampled = if sampled {
        format!(
            " This run was large, so each histogram is drawn from a strided sample of at most {} \
             of the tensor's coordinates (counts are of the sample; the quantiles and fractions \
             elsewhere use every coordinate).",
            fmt_int(crate::analyze::PLOT_SAMPLE as u64)
        )
    } else {
        String::new()
    };
    let cap = if hists.len() < total {
        format!(
            " Shown for the {} largest of the {total} tensors (by coordinate count), in input order; \
             every map is in <code>coords.safetensors</code>.",
            hists.len()
        )
    } else {
        String::new()
    };
    let _ = write!(
        h,
        "<section id=\"hist\">\n<h2>Per-coordinate distributions</h2>\n<p class=\"note\">One value per \
         coordinate (parameter). α axes span [{lo}, {hi}]: values outside are counted in the red edge \
         bins. Kurtosis uses a symlog axis, sign(g2)·log10(1 + |g2|), from −2 (its minimum) to the \
         largest value shown ({kmax}), the same for every tensor. Dashed lines: the Gaussian values \
         α = 2 and g2 = 0. NaN values (constant coordinates) are skipped and counted.{sampled}{cap}</p>\n",
        lo = ALPHA_HIST.0,
        hi = ALPHA_HIST.1,
        kmax = fmt_f(kurt_hi, 1),
    );
    for (i, plots) in hists {
        let t = &tensors[*i];
        let _ = write!(
            h,
            "<div class=\"hist-tensor\">\n<h3>{} <small>shape {} · {} coordinates</small></h3>\n\
             <div class=\"hist-row\">\n",
            esc(&t.meta.name),
            shape_str(&t.meta.shape),
            fmt_int(t.meta.coords() as u64)
        );
        for p in plots {
            h.push_str(&p.svg);
        }
        h.push_str("</div>\n</div>\n");
    }
    h.push_str("</section>\n");
}

// ---------------------------------------------------------------------------------------------
// Plots

/// Geometry of a row chart: one row per tensor in input order, names on the left.
struct Rows {
    w: f64,
    area: Area,
    row: f64,
    labels: Vec<(String, bool)>,
}

impl Rows {
    const W: f64 = 960.0;

    fn new(names: &[&str], top: f64) -> Rows {
        let labels: Vec<(String, bool)> = names
            .iter()
            .map(|n| {
                let t = svg::truncate(n, LABEL_CHARS);
                let cut = t != *n;
                (t, cut)
            })
            .collect();
        let widest = labels
            .iter()
            .map(|(l, _)| svg::text_width(l, 12.0))
            .fold(0.0, f64::max);
        let x0 = (widest + 18.0).clamp(70.0, 300.0);
        let n = names.len().max(1) as f64;
        // Rows of 24 px; fewer tensors get taller rows so the chart keeps some height.
        let row = (120.0 / n).clamp(24.0, 40.0);
        Rows {
            w: Self::W,
            area: Area {
                x0,
                x1: Self::W - 24.0,
                y0: top,
                y1: top + n * row,
            },
            row,
            labels,
        }
    }

    fn y(&self, i: usize) -> f64 {
        self.area.y0 + (i as f64 + 0.5) * self.row
    }

    /// Zebra bands and the tensor names.
    fn frame(&self, names: &[&str]) -> String {
        let mut s = String::new();
        for (i, ((label, cut), full)) in self.labels.iter().zip(names).enumerate() {
            let y = self.y(i);
            if i % 2 == 1 {
                s += &svg::rect(
                    self.area.x0,
                    y - self.row / 2.0,
                    self.area.x1 - self.area.x0,
                    self.row,
                    "fill=\"#f3f5f8\"",
                );
            }
            s += &svg::text_tip(
                self.area.x0 - 8.0,
                y + 4.0,
                label,
                if *cut { Some(full) } else { None },
                Anchor::End,
                12.0,
                "",
            );
        }
        s
    }
}

/// Draws a legend marker centred at (x, y).
type Marker<'a> = &'a dyn Fn(f64, f64) -> String;

/// The dashed reference line (α = 2, the 5 % chance rate) of every plot and its legend.
fn ref_line(x0: f64, y0: f64, x1: f64, y1: f64) -> String {
    svg::line(
        x0,
        y0,
        x1,
        y1,
        &format!("stroke=\"{C_REF}\" stroke-width=\"1.3\" stroke-dasharray=\"5 4\""),
    )
}

/// Legend entries laid out left to right: (marker markup at (x, y), label).
fn legend(x: f64, y: f64, items: &[(Marker, &str)]) -> String {
    let mut s = String::new();
    let mut x = x;
    for (marker, label) in items {
        s += &marker(x + 10.0, y - 4.0);
        s += &svg::text(x + 26.0, y, label, Anchor::Start, 12.0, "");
        x += 26.0 + svg::text_width(label, 12.0) + 22.0;
    }
    s
}

/// Per-tensor α_time_blocked with its CI and α_simsekli_flat, one row per tensor.
fn alpha_plot(tensors: &[TensorResult]) -> Plot {
    let names: Vec<&str> = tensors.iter().map(|t| t.meta.name.as_str()).collect();
    let many = tensors.len() > 20;
    let rows = Rows::new(&names, if many { 72.0 } else { 58.0 });
    let a = &rows.area;

    // Axis: [min(0.5, data), max(2.5, data)] inside ALPHA_CLAMP, on multiples of 0.5.
    let data = tensors.iter().flat_map(|t| {
        let s = &t.summary;
        [
            s.alpha_time_blocked,
            s.alpha_time_blocked_ci[0],
            s.alpha_time_blocked_ci[1],
            s.alpha_simsekli_flat,
        ]
    });
    let (dmin, dmax) = data
        .filter(|v| (ALPHA_CLAMP.0..=ALPHA_CLAMP.1).contains(v))
        .fold((0.5f64, 2.5f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = (dmin * 2.0).floor() / 2.0;
    let hi = (dmax * 2.0).ceil() / 2.0;
    let x = Linear::new(lo, hi, a.x0, a.x1);
    let inside = |v: f64| v >= lo && v <= hi;

    let title = "Tail index α per tensor (input order)";
    let mut body = String::new();
    body += &svg::text(
        14.0,
        22.0,
        title,
        Anchor::Start,
        15.0,
        "font-weight=\"bold\"",
    );
    let tb_marker = |cx: f64, cy: f64| {
        svg::line(
            cx - 9.0,
            cy,
            cx + 9.0,
            cy,
            &format!("stroke=\"{C_TB}\" stroke-width=\"1.6\""),
        ) + &svg::circle(cx, cy, 4.5, &format!("fill=\"{C_TB}\""))
    };
    let flat_marker =
        |cx: f64, cy: f64| svg::rect(cx - 4.0, cy - 4.0, 8.0, 8.0, &format!("fill=\"{C_FLAT}\""));
    let ref_marker = |cx: f64, cy: f64| ref_line(cx - 10.0, cy, cx + 10.0, cy);
    body += &legend(
        14.0,
        44.0,
        &[
            (&tb_marker, "α time-blocked with 95 % CI"),
            (&flat_marker, "α Simsekli flat"),
            (&ref_marker, "α = 2 (Gaussian)"),
        ],
    );
    body += &rows.frame(&names);
    let step = svg::nice_step(hi - lo, 8);
    let ticks: Vec<(f64, String)> = svg::ticks(lo, hi, step)
        .into_iter()
        .map(|v| (v, svg::fmt_tick(v, step)))
        .collect();
    body += &svg::x_axis(
        a,
        &x,
        &ticks,
        "tail index α (dimensionless; 2 = Gaussian, smaller = heavier tails)",
        true,
    );
    if many {
        body += &svg::x_tick_labels_top(a, &x, &ticks);
    }
    if inside(2.0) {
        body += &ref_line(x.map(2.0), a.y0, x.map(2.0), a.y1);
    }

    let (mut clamped, mut unbounded, mut missing) = (0usize, 0usize, 0usize);
    for (i, t) in tensors.iter().enumerate() {
        let s = &t.summary;
        let yc = rows.y(i);
        let (ytb, yfl) = (yc - 3.0, yc + 6.0);
        let tip = format!(
            "{}: α time-blocked {} [{}, {}], α flat {}",
            s.name,
            fmt_f(s.alpha_time_blocked, 3),
            fmt_f(s.alpha_time_blocked_ci[0], 3),
            fmt_f(s.alpha_time_blocked_ci[1], 3),
            fmt_f(s.alpha_simsekli_flat, 3)
        );
        let _ = write!(body, "<g><title>{}</title>", esc(&tip));
        let tb = s.alpha_time_blocked;
        let [c0, c1] = s.alpha_time_blocked_ci;
        let tb_style = format!("fill=\"{C_TB}\"");
        if tb.is_finite() && !c0.is_nan() && !c1.is_nan() {
            let stroke = format!("stroke=\"{C_TB}\" stroke-width=\"1.6\"");
            let (x0, x1) = (x.clamp_map(c0), x.clamp_map(c1));
            body += &svg::line(x0, ytb, x1, ytb, &stroke);
            if inside(c0) {
                body += &svg::line(x0, ytb - 4.0, x0, ytb + 4.0, &stroke);
            } else {
                clamped += 1;
                body += &svg::arrow(a.x0, ytb, -1.0, 7.0, &tb_style);
            }
            if inside(c1) {
                body += &svg::line(x1, ytb - 4.0, x1, ytb + 4.0, &stroke);
            } else {
                if c1 == f64::INFINITY {
                    unbounded += 1;
                } else {
                    clamped += 1;
                }
                body += &svg::arrow(a.x1, ytb, 1.0, 7.0, &tb_style);
            }
        }
        if tb.is_finite() && inside(tb) {
            body += &svg::circle(x.map(tb), ytb, 4.5, &tb_style);
        } else if !tb.is_nan() {
            clamped += 1;
            let dir = if tb < lo { -1.0 } else { 1.0 };
            body += &svg::arrow(x.clamp_map(tb), ytb, dir, 9.0, &tb_style);
        }
        let fl = s.alpha_simsekli_flat;
        let fl_style = format!("fill=\"{C_FLAT}\"");
        if fl.is_finite() && inside(fl) {
            body += &svg::rect(x.map(fl) - 4.0, yfl - 4.0, 8.0, 8.0, &fl_style);
        } else if !fl.is_nan() {
            clamped += 1;
            let dir = if fl < lo { -1.0 } else { 1.0 };
            body += &svg::arrow(x.clamp_map(fl), yfl, dir, 8.0, &fl_style);
        }
        if tb.is_nan() {
            // Say so where the flat marker is not.
            missing += 1;
            let flat_left = fl.is_nan() || x.clamp_map(fl) < (a.x0 + a.x1) / 2.0;
            let (tx, anchor) = if flat_left {
                (a.x1 - 14.0, Anchor::End)
            } else {
                (a.x0 + 14.0, Anchor::Start)
            };
            body += &svg::text(
                tx,
                yc + 4.0,
                "no time-blocked estimate",
                anchor,
                11.0,
                HALO_GREY_ITALIC,
            );
        }
        body += "</g>";
    }

    let mut notes = Vec::new();
    if clamped > 0 {
        notes.push(format!(
            "{clamped} value(s) outside [{}, {}] are drawn at the axis edge as arrows.",
            ALPHA_CLAMP.0, ALPHA_CLAMP.1
        ));
    }
    if unbounded > 0 {
        notes.push(format!(
            "{unbounded} CI upper end(s) unbounded (1/α − z·SE ≤ 0): arrow at the right edge."
        ));
    }
    if missing > 0 {
        notes.push(format!(
            "{missing} tensor(s) without a time-blocked estimate (e.g. all coordinates constant)."
        ));
    }
    let mut y = a.y1 + 58.0;
    for n in &notes {
        body += &svg::text(a.x0, y, n, Anchor::Start, 12.0, "fill=\"#444\"");
        y += 16.0;
    }
    let h = y - 8.0;
    Plot {
        id: "plot-alpha".into(),
        file: "alpha.svg".into(),
        svg: svg::document("plot-alpha", rows.w, h, title, &body),
    }
}

/// Per-tensor fraction of coordinates rejecting normality (JB and K²), one row per tensor.
fn reject_plot(tensors: &[TensorResult]) -> Plot {
    let names: Vec<&str> = tensors.iter().map(|t| t.meta.name.as_str()).collect();
    let many = tensors.len() > 20;
    let rows = Rows::new(&names, if many { 72.0 } else { 58.0 });
    let a = &rows.area;
    let x = Linear::new(0.0, 100.0, a.x0, a.x1);
    let title = "Coordinates rejecting normality at p < 0.05, per tensor";
    let mut body = String::new();
    body += &svg::text(
        14.0,
        22.0,
        title,
        Anchor::Start,
        15.0,
        "font-weight=\"bold\"",
    );
    let jb =
        |cx: f64, cy: f64| svg::rect(cx - 8.0, cy - 4.0, 16.0, 8.0, &format!("fill=\"{C_JB}\""));
    let k2 =
        |cx: f64, cy: f64| svg::rect(cx - 8.0, cy - 4.0, 16.0, 8.0, &format!("fill=\"{C_K2}\""));
    let rf = |cx: f64, cy: f64| ref_line(cx - 10.0, cy, cx + 10.0, cy);
    body += &legend(
        14.0,
        44.0,
        &[
            (&jb, "Jarque–Bera"),
            (&k2, "D'Agostino–Pearson K²"),
            (&rf, "5 % (expected under normality)"),
        ],
    );
    body += &rows.frame(&names);
    let ticks: Vec<(f64, String)> = svg::ticks(0.0, 100.0, 20.0)
        .into_iter()
        .map(|v| (v, svg::fmt_tick(v, 20.0)))
        .collect();
    body += &svg::x_axis(
        a,
        &x,
        &ticks,
        "coordinates with p < 0.05 (% of the tensor's non-constant coordinates)",
        true,
    );
    if many {
        body += &svg::x_tick_labels_top(a, &x, &ticks);
    }
    for (i, t) in tensors.iter().enumerate() {
        let s = &t.summary;
        let yc = rows.y(i);
        let tip = format!(
            "{}: Jarque–Bera {}, K² {}",
            s.name,
            fmt_pct(s.jb_reject_frac),
            fmt_pct(s.k2_reject_frac)
        );
        let _ = write!(body, "<g><title>{}</title>", esc(&tip));
        for (v, yb, colour) in [
            (s.jb_reject_frac, yc - 9.0, C_JB),
            (s.k2_reject_frac, yc + 1.0, C_K2),
        ] {
            if v.is_nan() {
                body += &svg::text(
                    a.x0 + 4.0,
                    yb + 7.5,
                    "n/a",
                    Anchor::Start,
                    10.0,
                    "fill=\"#777\"",
                );
                continue;
            }
            let pct = (100.0 * v).clamp(0.0, 100.0);
            let xe = x.map(pct);
            body += &svg::rect(
                a.x0,
                yb,
                (xe - a.x0).max(0.5),
                8.0,
                &format!("fill=\"{colour}\""),
            );
            let label = fmt_pct(v);
            if xe + 8.0 + svg::text_width(&label, 10.0) > a.x1 {
                body += &svg::text(
                    xe - 4.0,
                    yb + 7.5,
                    &label,
                    Anchor::End,
                    10.0,
                    "fill=\"#fff\"",
                );
            } else {
                body += &svg::text(
                    xe + 4.0,
                    yb + 7.5,
                    &label,
                    Anchor::Start,
                    10.0,
                    "fill=\"#333\"",
                );
            }
        }
        body += "</g>";
    }
    body += &ref_line(x.map(5.0), a.y0, x.map(5.0), a.y1);
    let h = a.y1 + 48.0;
    Plot {
        id: "plot-reject".into(),
        file: "reject.svg".into(),
        svg: svg::document("plot-reject", rows.w, h, title, &body),
    }
}

/// Indices of the (at most `cap`) tensors with the most coordinates, in input order.
fn hist_tensors(tensors: &[TensorResult], cap: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tensors.len()).collect();
    idx.sort_by_key(|&i| std::cmp::Reverse(tensors[i].meta.coords()));
    idx.truncate(cap);
    idx.sort_unstable();
    idx
}

/// Counts of values in `bins` equal bins over [lo, hi] (the last bin closed), plus values
/// below (`under`, −inf included), above (`over`, +inf included) and NaN.
#[derive(Clone, Debug, PartialEq)]
pub struct Hist {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
    pub under: u64,
    pub over: u64,
    pub nan: u64,
}

impl Hist {
    /// Values in some bin or edge bin (everything but NaN).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.under + self.over
    }
}

pub fn histogram(values: impl IntoIterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Hist {
    let bins = bins.max(1);
    let mut h = Hist {
        lo,
        hi,
        counts: vec![0; bins],
        under: 0,
        over: 0,
        nan: 0,
    };
    let scale = bins as f64 / (hi - lo);
    for v in values {
        if v.is_nan() {
            h.nan += 1;
        } else if v < lo {
            h.under += 1;
        } else if v > hi {
            h.over += 1;
        } else {
            let i = ((v - lo) * scale) as usize;
            h.counts[i.min(bins - 1)] += 1;
        }
    }
    h
}

/// sign(x)·log10(1 + |x|): linear near 0, logarithmic far out; NaN and ±inf pass through.
pub fn symlog(x: f64) -> f64 {
    if x == 0.0 || x.is_nan() {
        x
    } else {
        x.signum() * x.abs().ln_1p() / std::f64::consts::LN_10
    }
}

/// Ticks of a symlog axis whose domain reaches `hi` (untransformed): −1, 0, 1, 10, 100, …
fn symlog_ticks(hi: f64) -> Vec<(f64, String)> {
    let mut out = vec![(-1.0, "−1".to_owned()), (0.0, "0".to_owned())];
    let mut v = 1.0;
    while v <= hi * (1.0 + 1e-9) {
        out.push((v, svg::fmt_compact(v)));
        v *= 10.0;
    }
    out.into_iter().map(|(v, l)| (symlog(v), l)).collect()
}

/// The three histograms of one tensor: α_block, α_logm, excess kurtosis.
fn tensor_hists(t: &TensorResult, slug: &str, k1: usize, kurt_hi: f64, sampled: bool) -> Vec<Plot> {
    let s = &t.summary;
    let values_word = if sampled { "sampled values" } else { "values" };
    let (alo, ahi, abins) = ALPHA_HIST;
    let alpha_ticks: Vec<(f64, String)> = svg::ticks(alo, ahi, 1.0)
        .into_iter()
        .map(|v| (v, svg::fmt_tick(v, 1.0)))
        .collect();
    let mut out = Vec::new();
    for (stat, label, q) in [
        (
            "alpha_block",
            format!("α_block (block sums, K1 = {k1})"),
            &s.alpha_block_quantiles,
        ),
        (
            "alpha_logm",
            "α_logm (log-moment)".to_owned(),
            &s.alpha_logm_quantiles,
        ),
    ] {
        let values = t.coords.get(stat);
        let hist = histogram(values.iter().copied(), alo, ahi, abins);
        let mut notes = vec![
            format!(
                "{} {values_word}, median {}; {} NaN skipped",
                fmt_int(hist.total()),
                fmt_f(q.q50, 2),
                fmt_int(hist.nan)
            ),
            format!(
                "outside [{alo}, {ahi}]: {} below, {} above (red edge bins)",
                fmt_int(hist.under),
                fmt_int(hist.over)
            ),
        ];
        let mut spike = None;
        if stat == "alpha_logm" {
            let at2 = values.iter().filter(|&&v| v == 2.0).count() as u64;
            notes.push(format!(
                "dark: {} clamped to exactly 2 (var ln|u| ≤ π²/8)",
                fmt_int(at2)
            ));
            spike = Some((2.0, at2));
        }
        out.push(hist_plot(&HistFig {
            id: format!("hist-{slug}-{stat}"),
            file: format!("hist_{slug}_{stat}.svg"),
            stat_label: label,
            tensor: &t.meta.name,
            hist,
            ticks: alpha_ticks.clone(),
            xlabel: "α per coordinate (dimensionless)",
            edge: Some((format!("<{alo}"), format!(">{ahi}"))),
            reference: Some(2.0),
            spike,
            notes,
        }));
    }
    let hist = histogram(
        t.coords.get("kurt").iter().map(|&v| symlog(v)),
        symlog(KURT_MIN),
        symlog(kurt_hi),
        KURT_BINS,
    );
    let mut notes = vec![
        format!(
            "{} {values_word}; {} NaN skipped",
            fmt_int(hist.total()),
            fmt_int(hist.nan)
        ),
        "symlog axis: sign(g2)·log10(1 + |g2|)".to_owned(),
    ];
    let infinite = hist.under + hist.over;
    if infinite > 0 {
        notes.push(format!("infinite: {} (red edge bins)", fmt_int(infinite)));
    }
    out.push(hist_plot(&HistFig {
        id: format!("hist-{slug}-kurt"),
        file: format!("hist_{slug}_kurt.svg"),
        stat_label: "excess kurtosis g2".to_owned(),
        tensor: &t.meta.name,
        hist,
        ticks: symlog_ticks(kurt_hi),
        xlabel: "excess kurtosis per coordinate (symlog)",
        edge: (infinite > 0).then(|| ("−∞".to_owned(), "+∞".to_owned())),
        reference: Some(0.0),
        spike: None,
        notes,
    }));
    out
}

/// What one histogram shows. `ticks`, `reference` and `spike` are in the histogram's
/// (possibly transformed) coordinates.
struct HistFig<'a> {
    id: String,
    file: String,
    stat_label: String,
    tensor: &'a str,
    hist: Hist,
    ticks: Vec<(f64, String)>,
    xlabel: &'a str,
    /// Labels of the under/over bins, drawn outside the main range; None: no edge bins.
    edge: Option<(String, String)>,
    /// A dashed vertical line (the Gaussian value).
    reference: Option<f64>,
    /// (value, count): the part of the bin holding `value` that is exactly `value`, darker.
    spike: Option<(f64, u64)>,
    /// Up to three lines under the plot.
    notes: Vec<String>,
}

fn hist_plot(f: &HistFig) -> Plot {
    const W: f64 = 360.0;
    const SLOT: f64 = 16.0;
    const GAP: f64 = 9.0;
    let h = &f.hist;
    let counts_max = h
        .counts
        .iter()
        .copied()
        .chain(f.edge.as_ref().map(|_| h.under.max(h.over)))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    // 5 % headroom so the tallest bar does not touch the frame.
    let ystep = svg::nice_step(counts_max * 1.05, 4).max(1.0);
    let ytop = (counts_max * 1.05 / ystep).ceil() * ystep;
    let yticks: Vec<(f64, String)> = svg::ticks(0.0, ytop, ystep)
        .into_iter()
        .map(|v| (v, svg::fmt_count(v, ystep, ytop)))
        .collect();
    let ylab_w = yticks
        .iter()
        .map(|(_, l)| svg::text_width(l, 11.0))
        .fold(0.0, f64::max);
    let area = Area {
        x0: (ylab_w + 30.0).max(44.0),
        x1: W - 10.0,
        y0: 44.0,
        y1: 168.0,
    };
    let main = if f.edge.is_some() {
        Area {
            x0: area.x0 + SLOT + GAP,
            x1: area.x1 - SLOT - GAP,
            ..area
        }
    } else {
        area
    };
    let x = Linear::new(h.lo, h.hi, main.x0, main.x1);
    let y = Linear::new(0.0, ytop, area.y1, area.y0);

    let title = format!("{}: {}", f.stat_label, f.tensor);
    let mut body = String::new();
    body += &svg::text(
        10.0,
        18.0,
        &f.stat_label,
        Anchor::Start,
        13.0,
        "font-weight=\"bold\"",
    );
    let shown = svg::truncate(f.tensor, ((W - 20.0) / (11.0 * 0.62)) as usize);
    body += &svg::text_tip(
        10.0,
        33.0,
        &shown,
        (shown != f.tensor).then_some(f.tensor),
        Anchor::Start,
        11.0,
        "fill=\"#555\"",
    );
    body += &svg::y_axis(&area, &y, &yticks, "coordinates (count)", true);
    let bins = h.counts.len();
    let bw = (main.x1 - main.x0) / bins as f64;
    let bin_of = |v: f64| (((v - h.lo) / (h.hi - h.lo) * bins as f64) as usize).min(bins - 1);
    let spike = f
        .spike
        .filter(|&(v, c)| c > 0 && v >= h.lo && v <= h.hi)
        .map(|(v, c)| (bin_of(v), c));
    for (i, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let (bx, bwid) = (main.x0 + i as f64 * bw, (bw - 0.6).max(0.5));
        let top = y.map(c as f64);
        body += &svg::rect(bx, top, bwid, area.y1 - top, &format!("fill=\"{C_BAR}\""));
        if let Some((_, s)) = spike.filter(|&(j, _)| j == i) {
            let stop = y.map(s.min(c) as f64);
            body += &svg::rect(
                bx,
                stop,
                bwid,
                area.y1 - stop,
                &format!("fill=\"{C_SPIKE}\""),
            );
        }
    }
    // x axis along the main range only; edge bins get their own labels.
    body += &svg::x_axis(&main, &x, &f.ticks, f.xlabel, false);
    if h.total() == 0 {
        body += &svg::text(
            (area.x0 + area.x1) / 2.0,
            (area.y0 + area.y1) / 2.0,
            "no values to show (all NaN)",
            Anchor::Middle,
            12.0,
            HALO_GREY_ITALIC,
        );
    }
    if let Some((under, over)) = &f.edge {
        for (c, x0, label) in [(h.under, area.x0, under), (h.over, area.x1 - SLOT, over)] {
            if c > 0 {
                let top = y.map(c as f64);
                body += &svg::rect(x0, top, SLOT, area.y1 - top, &format!("fill=\"{C_EDGE}\""));
            }
            body += &svg::line(x0, area.y1, x0 + SLOT, area.y1, "stroke=\"#444\"");
            body += &svg::text(
                x0 + SLOT / 2.0,
                area.y1 + 15.0,
                label,
                Anchor::Middle,
                10.0,
                &format!("fill=\"{C_EDGE}\""),
            );
        }
    }
    if let Some(r) = f.reference.filter(|r| *r >= h.lo && *r <= h.hi) {
        body += &svg::line(
            x.map(r),
            area.y0,
            x.map(r),
            area.y1,
            &format!("stroke=\"{C_REF}\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\""),
        );
    }
    let mut ny = area.y1 + 52.0;
    for n in f.notes.iter().take(3) {
        body += &svg::text(10.0, ny, n, Anchor::Start, 10.5, "fill=\"#444\"");
        ny += 13.5;
    }
    let hgt = area.y1 + 52.0 + 3.0 * 13.5;
    Plot {
        id: f.id.clone(),
        file: f.file.clone(),
        svg: svg::document(&f.id, W, hgt, &title, &body),
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// Tensor names as ids and file names: ASCII letters, digits, `_`, `-`, `.` (not leading),
/// everything else `_`; at most 80 characters; made unique with `-2`, `-3`, ….
pub fn unique_slugs<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .into_iter()
        .map(|n| {
            let base = sanitize(n);
            let mut s = base.clone();
            let mut k = 2;
            while !seen.insert(s.to_ascii_lowercase()) {
                s = format!("{base}-{k}");
                k += 1;
            }
            s
        })
        .collect()
}

pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(80)
        .enumerate()
        .map(|(i, c)| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            '.' if i > 0 => c,
            _ => '_',
        })
        .collect();
    if s.is_empty() {
        s.push_str("tensor");
    }
    s
}

fn shape_str(shape: &[usize]) -> String {
    if shape.is_empty() {
        "scalar".into()
    } else {
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×")
    }
}

/// A float with `digits` decimals; NaN as "n/a", ±inf as "∞".
pub fn fmt_f(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.is_infinite() {
        if v > 0.0 { "∞" } else { "−∞" }.into()
    } else {
        format!("{v:.digits$}")
    }
}

fn fmt_pct(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v > 0.0 && v < 0.01 {
        format!("{:.1} %", 100.0 * v)
    } else {
        format!("{:.0} %", 100.0 * v)
    }
}

/// An integer with thousands separators: 1234567 → "1,234,567".
pub fn fmt_int(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------

/// Hand-written SVG: escaped text, elements, linear scales, nice ticks and axes. Pure
/// functions returning strings; styles are attribute strings written by this module's callers.
pub mod svg {
    use std::fmt::Write as _;

    pub const FONT: &str =
        "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif";

    /// Escapes text for XML and HTML content and attribute values; control characters that
    /// XML 1.0 forbids become U+FFFD.
    pub fn esc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                '\t' | '\n' | '\r' => out.push(c),
                c if (c as u32) < 0x20 || c == '\u{7f}' => out.push('\u{fffd}'),
                c => out.push(c),
            }
        }
        out
    }

    /// A coordinate: one decimal, no trailing ".0".
    pub fn n(v: f64) -> String {
        let s = format!("{:.1}", if v.is_finite() { v } else { 0.0 });
        match s.strip_suffix(".0") {
            Some("-0") => "0".into(),
            Some(t) => t.into(),
            None => s,
        }
    }

    /// A whole `<svg>` document (also valid inline in HTML).
    pub fn document(id: &str, w: f64, h: f64, title: &str, body: &str) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\" font-family=\"{FONT}\" \
             font-size=\"12\" fill=\"#222\"><title>{t}</title>\
             <rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>{body}</svg>\n",
            id = esc(id),
            w = n(w),
            h = n(h),
            t = esc(title),
        )
    }

    pub fn line(x1: f64, y1: f64, x2: f64, y2: f64, style: &str) -> String {
        format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {style}/>",
            n(x1),
            n(y1),
            n(x2),
            n(y2)
        )
    }

    pub fn rect(x: f64, y: f64, w: f64, h: f64, style: &str) -> String {
        format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" {style}/>",
            n(x),
            n(y),
            n(w),
            n(h)
        )
    }

    pub fn circle(cx: f64, cy: f64, r: f64, style: &str) -> String {
        format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" {style}/>",
            n(cx),
            n(cy),
            n(r)
        )
    }

    /// A triangle with its tip at (x, y) pointing along `dir` (+1 right, −1 left).
    pub fn arrow(x: f64, y: f64, dir: f64, size: f64, style: &str) -> String {
        let b = x - dir * size;
        format!(
            "<polygon points=\"{},{} {},{} {},{}\" {style}/>",
            n(x),
            n(y),
            n(b),
            n(y - size * 0.6),
            n(b),
            n(y + size * 0.6)
        )
    }

    #[derive(Clone, Copy, Debug)]
    pub enum Anchor {
        Start,
        Middle,
        End,
    }

    impl Anchor {
        fn attr(self) -> &'static str {
            match self {
                Anchor::Start => "start",
                Anchor::Middle => "middle",
                Anchor::End => "end",
            }
        }
    }

    /// Escaped text at (x, baseline y).
    pub fn text(x: f64, y: f64, s: &str, anchor: Anchor, size: f64, style: &str) -> String {
        text_tip(x, y, s, None, anchor, size, style)
    }

    /// Text with an optional tooltip (e.g. the full form of a shortened label).
    pub fn text_tip(
        x: f64,
        y: f64,
        s: &str,
        tip: Option<&str>,
        anchor: Anchor,
        size: f64,
        style: &str,
    ) -> String {
        let tip = tip
            .map(|t| format!("<title>{}</title>", esc(t)))
            .unwrap_or_default();
        format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{}\" font-size=\"{}\" {style}>{tip}{}</text>",
            n(x),
            n(y),
            anchor.attr(),
            n(size),
            esc(s)
        )
    }

    /// Rough rendered width of `s` in a sans font of `size` px (for layout, not exact).
    pub fn text_width(s: &str, size: f64) -> f64 {
        s.chars().count() as f64 * size * 0.6
    }

    /// `s` cut to `max` characters with an ellipsis.
    pub fn truncate(s: &str, max: usize) -> String {
        if s.chars().count() <= max {
            s.to_owned()
        } else {
            let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
            t.push('…');
            t
        }
    }

    /// Maps the domain [d0, d1] linearly onto the range [r0, r1].
    #[derive(Clone, Copy, Debug)]
    pub struct Linear {
        pub d0: f64,
        pub d1: f64,
        pub r0: f64,
        pub r1: f64,
    }

    impl Linear {
        pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Self {
            Linear { d0, d1, r0, r1 }
        }

        pub fn map(&self, v: f64) -> f64 {
            if self.d1 == self.d0 {
                return (self.r0 + self.r1) / 2.0;
            }
            self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
        }

        /// `map` of `v` clamped into the domain (±inf go to the ends).
        pub fn clamp_map(&self, v: f64) -> f64 {
            let (lo, hi) = (self.d0.min(self.d1), self.d0.max(self.d1));
            self.map(v.clamp(lo, hi))
        }
    }

    /// A step of 1, 2 or 5 × 10^k giving at most about `max_ticks` intervals over `span`.
    pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
        if !(span.is_finite() && span > 0.0) {
            return 1.0;
        }
        let raw = span / max_ticks.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let m = if f <= 1.0 + 1e-9 {
            1.0
        } else if f <= 2.0 + 1e-9 {
            2.0
        } else if f <= 5.0 + 1e-9 {
            5.0
        } else {
            10.0
        };
        m * mag
    }

    /// Decimals needed to print multiples of `step` exactly (0 for whole steps).
    pub fn decimals(step: f64) -> usize {
        (0..12)
            .find(|&d| {
                let s = step * 10f64.powi(d as i32);
                (s - s.round()).abs() < 1e-6 * s.abs().max(1.0)
            })
            .unwrap_or(12)
    }

    /// Multiples of `step` inside [lo, hi] (ends included up to rounding), at most 1000.
    pub fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
        if !(lo.is_finite() && hi.is_finite() && step > 0.0 && hi >= lo) {
            return Vec::new();
        }
        let first = (lo / step - 1e-9).ceil();
        let last = (hi / step + 1e-9).floor();
        if last - first > 1000.0 {
            return Vec::new();
        }
        let p = 10f64.powi(decimals(step) as i32);
        (first as i64..=last as i64)
            .map(|i| {
                let v = (i as f64 * step * p).round() / p;
                if v == 0.0 {
                    0.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// Nice ticks over [lo, hi], about `max_ticks` intervals.
    pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
        ticks(lo, hi, nice_step(hi - lo, max_ticks))
    }

    /// A tick label with as many decimals as `step` needs; minus as U+2212.
    pub fn fmt_tick(v: f64, step: f64) -> String {
        let s = format!("{:.*}", decimals(step), v);
        let s = if s.trim_start_matches(['-', '0', '.']).is_empty() {
            s.trim_start_matches('-').to_owned()
        } else {
            s
        };
        s.replace('-', "−")
    }

    /// A count tick on an axis reaching `top`: plain below 10 000, else in k, M or G.
    pub fn fmt_count(v: f64, step: f64, top: f64) -> String {
        for (unit, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
            if top >= 10.0 * unit {
                if v == 0.0 {
                    return "0".into();
                }
                return format!("{}{suffix}", fmt_tick(v / unit, step / unit));
            }
        }
        fmt_tick(v, step.max(1.0))
    }

    /// 1 → "1", 1000 → "1k", 2.5e6 → "2.5M".
    pub fn fmt_compact(v: f64) -> String {
        for (unit, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
            if v.abs() >= unit {
                let x = v / unit;
                return format!(
                    "{}{suffix}",
                    fmt_tick(x, if x.fract() == 0.0 { 1.0 } else { 0.1 })
                );
            }
        }
        fmt_tick(v, if v.fract() == 0.0 { 1.0 } else { 0.1 })
    }

    /// The plot rectangle: x0..x1 left to right, y0 (top)..y1 (bottom).
    #[derive(Clone, Copy, Debug)]
    pub struct Area {
        pub x0: f64,
        pub x1: f64,
        pub y0: f64,
        pub y1: f64,
    }

    const AXIS: &str = "stroke=\"#444\" stroke-width=\"1\"";
    const GRID: &str = "stroke=\"#e3e3e3\" stroke-width=\"1\"";

    /// Bottom axis: line, ticks, tick labels, centred label; optional vertical grid lines.
    pub fn x_axis(
        a: &Area,
        x: &Linear,
        ticks: &[(f64, String)],
        label: &str,
        grid: bool,
    ) -> String {
        let mut s = String::new();
        for (v, l) in ticks {
            let px = x.map(*v);
            if grid {
                s += &line(px, a.y0, px, a.y1, GRID);
            }
            s += &line(px, a.y1, px, a.y1 + 4.0, AXIS);
            s += &text(px, a.y1 + 16.0, l, Anchor::Middle, 11.0, "");
        }
        s += &line(a.x0, a.y1, a.x1, a.y1, AXIS);
        s += &text(
            (a.x0 + a.x1) / 2.0,
            a.y1 + 34.0,
            label,
            Anchor::Middle,
            12.0,
            "fill=\"#333\"",
        );
        s
    }

    /// Tick labels repeated above the plot (tall charts).
    pub fn x_tick_labels_top(a: &Area, x: &Linear, ticks: &[(f64, String)]) -> String {
        let mut s = line(a.x0, a.y0, a.x1, a.y0, AXIS);
        for (v, l) in ticks {
            let px = x.map(*v);
            s += &line(px, a.y0 - 4.0, px, a.y0, AXIS);
            s += &text(px, a.y0 - 7.0, l, Anchor::Middle, 11.0, "");
        }
        s
    }

    /// Left axis: line, ticks, tick labels, rotated label; optional horizontal grid lines.
    pub fn y_axis(
        a: &Area,
        y: &Linear,
        ticks: &[(f64, String)],
        label: &str,
        grid: bool,
    ) -> String {
        let mut s = String::new();
        let mut widest: f64 = 0.0;
        for (v, l) in ticks {
            let py = y.map(*v);
            if grid {
                s += &line(a.x0, py, a.x1, py, GRID);
            }
            s += &line(a.x0 - 4.0, py, a.x0, py, AXIS);
            s += &text(a.x0 - 7.0, py + 4.0, l, Anchor::End, 11.0, "");
            widest = widest.max(text_width(l, 11.0));
        }
        s += &line(a.x0, a.y0, a.x0, a.y1, AXIS);
        let lx = a.x0 - widest - 14.0;
        let ly = (a.y0 + a.y1) / 2.0;
        let _ = write!(
            s,
            "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">{}</text>",
            n(lx),
            n(ly),
            esc(label)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::svg::*;
    use super::*;

    #[test]
    fn nice_ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.5, 2.5, 8), vec![0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(nice_ticks(0.6, 2.4, 10).len(), 10);
        assert_eq!(nice_ticks(0.0, 4810.0, 4), vec![0.0, 2000.0, 4000.0]);
        assert_eq!(
            nice_ticks(0.0, 4810.0, 5),
            vec![0.0, 1000.0, 2000.0, 3000.0, 4000.0]
        );
        assert_eq!(nice_ticks(-3.0, 7.0, 5), vec![-2.0, 0.0, 2.0, 4.0, 6.0]);
        assert_eq!(
            nice_ticks(0.1, 0.35, 5),
            vec![0.1, 0.15, 0.2, 0.25, 0.3, 0.35]
        );
        assert_eq!(nice_step(1.0, 4), 0.5);
        assert_eq!(nice_step(7.0, 4), 2.0);
        assert!(nice_ticks(1.0, 1.0, 5) == vec![1.0]);
        assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
        assert!(nice_ticks(0.0, f64::INFINITY, 5).is_empty());
        assert!(ticks(2.0, 1.0, 1.0).is_empty());
        // No float noise: 0.1 · 3 prints as 0.3.
        assert_eq!(ticks(0.0, 0.3, 0.1)[3], 0.3);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(decimals(1.0), 0);
        assert_eq!(decimals(0.5), 1);
        assert_eq!(decimals(0.05), 2);
        assert_eq!(decimals(20.0), 0);
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(-1.5, 0.5), "−1.5");
        assert_eq!(fmt_tick(-0.0, 0.5), "0.0");
        assert_eq!(fmt_tick(-0.00001, 1.0), "0");
        assert_eq!(fmt_count(3000.0, 1000.0, 4000.0), "3000");
        assert_eq!(fmt_count(30000.0, 10000.0, 40000.0), "30k");
        assert_eq!(fmt_count(25e6, 5e6, 3e7), "25M");
        assert_eq!(fmt_count(2.5e6, 5e5, 1e7), "2.5M");
        assert_eq!(fmt_count(40.0, 10.0, 50.0), "40");
        assert_eq!(fmt_count(0.0, 1e6, 1e7), "0");
        assert_eq!(fmt_compact(1000.0), "1k");
        assert_eq!(fmt_compact(100.0), "100");
        assert_eq!(fmt_int(4810), "4,810");
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        assert_eq!(fmt_int(12), "12");
        assert_eq!(fmt_f(f64::NAN, 2), "n/a");
        assert_eq!(fmt_f(f64::INFINITY, 2), "∞");
        assert_eq!(n(-0.04), "0");
        assert_eq!(n(12.0), "12");
        assert_eq!(n(12.34), "12.3");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("a<b>&\"c\" 'd'"),
            "a&lt;b&gt;&amp;&quot;c&quot; &#39;d&#39;"
        );
        assert_eq!(esc("α\u{1}"), "α\u{fffd}");
        let t = text(1.0, 2.0, "<script>", Anchor::Start, 12.0, "");
        assert!(t.contains("&lt;script&gt;") && !t.contains("<script>"));
        let d = document("x", 10.0, 10.0, "a & b", "");
        assert!(d.contains("<title>a &amp; b</title>"));
    }

    #[test]
    fn slugs_are_safe_and_unique() {
        assert_eq!(sanitize("fc0.weight"), "fc0.weight");
        assert_eq!(sanitize("a<b>&\"c"), "a_b___c");
        assert_eq!(sanitize(".hidden"), "_hidden");
        assert_eq!(sanitize(""), "tensor");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 80);
        assert_eq!(
            unique_slugs(["a<b", "a>b", "a_b", "A_B"]),
            vec!["a_b", "a_b-2", "a_b-3", "A_B-4"]
        );
    }

    #[test]
    fn histogram_counts_edges_nan_and_inf() {
        let v = [
            0.0,
            0.5,
            1.0,
            3.99,
            4.0,
            4.5,
            -0.1,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            2.0,
        ];
        let h = histogram(v, 0.0, 4.0, 4);
        assert_eq!(h.counts, vec![2, 1, 1, 2]); // 4.0 falls in the closed last bin
        assert_eq!((h.under, h.over, h.nan), (2, 2, 1));
        assert_eq!(h.total(), 10);
        let e = histogram(std::iter::empty(), 0.0, 1.0, 3);
        assert_eq!((e.total(), e.counts), (0, vec![0, 0, 0]));
    }

    #[test]
    fn symlog_is_odd_and_passes_specials() {
        assert_eq!(symlog(0.0), 0.0);
        assert!((symlog(9.0) - 1.0).abs() < 1e-12);
        assert!((symlog(-99.0) + 2.0).abs() < 1e-12);
        assert!(symlog(f64::NAN).is_nan());
        assert_eq!(symlog(f64::INFINITY), f64::INFINITY);
        let labels: Vec<String> = symlog_ticks(250.0).into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["−1", "0", "1", "10", "100"]);
    }

    #[test]
    fn scale_and_arrow() {
        let x = Linear::new(0.0, 4.0, 100.0, 500.0);
        assert_eq!(x.map(2.0), 300.0);
        assert_eq!(x.clamp_map(f64::INFINITY), 500.0);
        assert_eq!(x.clamp_map(-7.0), 100.0);
        assert_eq!(
            arrow(10.0, 5.0, 1.0, 5.0, ""),
            "<polygon points=\"10,5 5,2 5,8\" />"
        );
    }

    mod page {
        use super::super::*;
        use crate::analyze::{Analysis, Center, ModelSummary, TensorResult};
        use crate::engine::EngineInfo;
        use crate::input::{Dtype, TensorMeta};
        use crate::report::RunReport;
        use crate::stats::{CoordTable, Quantiles, TensorSummary, COORD_STATS};

        fn tensor(name: &str, p: usize, alpha: f64, ci: [f64; 2]) -> TensorResult {
            let q = Quantiles {
                q05: 1.0,
                q25: 1.5,
                q50: 1.7,
                q75: 1.9,
                q95: 2.0,
            };
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
                    constant_coords: 1,
                    few_finite_coords: 0,
                    logm_clamped_coords: 2,
                    zero_entries: 0,
                    nonfinite_samples: 0,
                    dropped_blocks: 0,
                    notes: Vec::new(),
                },
                coords: CoordTable {
                    columns: (0..COORD_STATS.len()).map(col).collect(),
                },
            }
        }

        fn page(tensors: Vec<TensorResult>) -> Page {
            let a = Analysis {
                samples: 64,
                block_size: 8,
                groups: 1,
                coords_sampled: false,
                model: ModelSummary {
                    alpha_simsekli_flat: 0.8,
                    simsekli_m: 64,
                    coords: tensors.iter().map(|t| t.meta.coords()).sum(),
                    constant_coords: 1,
                    few_finite_coords: 0,
                    zero_entries: 3,
                    nonfinite_samples: 0,
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
                center: &Center::Mean,
                block: None,
                backend: "cpu",
                elapsed_s: 0.5,
                skipped: &[],
                bad_files: &[],
            };
            render(&r)
        }

        #[test]
        fn page_has_every_plot_escaped_names_and_no_network() {
            let mut dead = tensor("dead", 5, f64::NAN, [f64::NAN, f64::NAN]);
            dead.summary.alpha_simsekli_flat = f64::NAN;
            let p = page(vec![
                tensor("fc0.weight", 100, 1.4, [1.3, 1.5]),
                tensor("<b>&\"x'", 30, 9.0, [0.2, f64::INFINITY]),
                dead,
            ]);
            let h = &p.html;
            for id in [
                "plot-alpha",
                "plot-reject",
                "hist-fc0.weight-alpha_block",
                "hist-fc0.weight-alpha_logm",
                "hist-fc0.weight-kurt",
                "hist-_b___x_-kurt",
            ] {
                assert!(
                    h.contains(&format!(
                        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\""
                    )),
                    "{id}"
                );
                assert!(p.plots.iter().any(|pl| pl.id == id));
            }
            assert_eq!(p.plots.len(), 2 + 3 * 3);
            assert!(p
                .plots
                .iter()
                .any(|pl| pl.file == "hist__b___x__alpha_block.svg"));
            assert!(!h.contains("<b>&") && h.contains("&lt;b&gt;&amp;&quot;x&#39;"));
            assert!(!h.contains("<script") && !h.contains("src=") && !h.contains("href="));
            // Clamped α (9 > 5) and the unbounded CI are stated.
            assert!(h.contains("outside [0, 5]") && h.contains("unbounded"));
            assert!(h.contains("no time-blocked estimate"));
            // Non-finite per-coordinate values are counted, not binned silently.
            assert!(h.contains("NaN skipped"));
        }

        #[test]
        fn histograms_are_capped_to_the_largest_tensors() {
            let ts: Vec<TensorResult> = (0..70)
                .map(|i| tensor(&format!("t{i}"), 10 + i, 1.5, [1.4, 1.6]))
                .collect();
            let p = page(ts);
            assert_eq!(p.plots.len(), 2 + 3 * MAX_HIST_TENSORS);
            // The six smallest (t0..t5) are left out.
            assert!(
                !p.html.contains("id=\"hist-t5-kurt\"") && p.html.contains("id=\"hist-t6-kurt\"")
            );
            assert!(p.html.contains("64 largest of the 70 tensors"));
        }
    }
}
