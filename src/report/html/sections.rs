//! The page's sections, each a `maud` template of typed data. Every number taken from the
//! summary is tagged with the summary field it shows (`data-stat`), so a reader's tools (and
//! the tests) can tell which value it is.

use maud::{html, Markup, PreEscaped};

use super::figures::{ALPHA_HIST, CI_LABEL};
use super::format::{fmt_f, fmt_int, fmt_pct, fmt_share, shape_str};
use super::plots::Plot;
use super::RunReport;
use crate::analyze::{Center, TensorResult, PLOT_SAMPLE};
use crate::stats::Quantiles;

/// One tensor's histograms, as the page shows them.
pub struct TensorHists<'a> {
    pub tensor: &'a TensorResult,
    pub plots: Vec<Plot>,
}

/// A number shown on the page, tagged with the summary field it shows.
fn stat(field: &str, shown: String) -> Markup {
    html! { span data-stat=(field) { (shown) } }
}

/// A key–value table row.
fn kv(k: &str, v: Markup) -> Markup {
    html! { tr { th { (k) } td { (v) } } }
}

pub fn header(r: &RunReport) -> Markup {
    let a = r.analysis;
    let e = r.engine;
    let n = a.tensors.len();
    let plural = if n == 1 { "" } else { "s" };
    html! {
        header {
            h1 { "gradtail report" }
            p.lede {
                (n) " tensor" (plural) " · K = " (fmt_int(a.samples as u64)) " samples · P = "
                (fmt_int(a.model.coords as u64)) " coordinates · block length K1 = "
                (a.block_size) " · " (e.engine) " engine · " (format!("{:.2}", r.elapsed_s))
                " s · gradtail " (env!("CARGO_PKG_VERSION"))
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
                        Center::Median => html! { "per-coordinate sample median" },
                        Center::None => html! { "none (the data are the noise)" },
                        Center::File(p) => html! { "file " code.path { (p.display()) } },
                    }))
                    (kv("block length", match r.block {
                        Some(b) => html! { "K1 = " (b) " (--block)" },
                        None => html! {
                            "K1 = " (a.block_size) " (default: largest divisor of K ≤ √K)"
                        },
                    }))
                    (kv("backend", html! { (r.backend) }))
                    (kv("fits", if r.fits {
                        html! { "per coordinate, on the host CPU (McCulloch, Anderson–Darling, KS)" }
                    } else {
                        html! { "off (" code { "--no-fits" } ")" }
                    }))
                    (kv("samples K", html! { (fmt_int(a.samples as u64)) }))
                }
            }
        }
        (inputs(r))
    }
}

fn inputs(r: &RunReport) -> Markup {
    let tensors = &r.analysis.tensors;
    let n = tensors.len();
    let dtype = |t: &TensorResult| {
        let v = serde_json::to_value(t.meta.dtype).ok();
        v.and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    html! {
        details #inputs open[n <= 12] {
            summary { b { "Inputs" } " (" (n) " tensor" (if n == 1 { "" } else { "s" }) ")" }
            div.scroll { table {
                thead { tr {
                    th { "tensor" } th { "path" } th { "dtype" } th.num { "K" }
                    th { "shape" } th.num { "P" }
                } }
                tbody { @for t in tensors {
                    tr {
                        td { (t.meta.name) }
                        td.path { code { (t.meta.path.display()) } }
                        td { (dtype(t)) }
                        td.num { (fmt_int(t.meta.samples as u64)) }
                        td { (shape_str(&t.meta.shape)) }
                        td.num { (fmt_int(t.meta.coords() as u64)) }
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

pub fn model(r: &RunReport) -> Markup {
    let a = r.analysis;
    let m = &a.model;
    let entries = (a.samples as u64).saturating_mul(m.coords as u64);
    html! {
        section #model {
            h2 { "Whole input" }
            p.note {
                "All tensors concatenated in input order, as in Simsekli et al.'s "
                code { "main.py" } "."
            }
            table.kv {
                (kv("α Simsekli flat", html! {
                    span.big data-stat="model.alpha_simsekli_flat" {
                        (fmt_f(m.alpha_simsekli_flat, 3))
                    }
                    " (block length m = " (fmt_int(m.simsekli_m)) "; biased low by scale \
                    differences between coordinates: compare the time-blocked α below)"
                }))
                (kv("coordinates P", html! { (fmt_int(m.coords as u64)) }))
                (kv("constant coordinates", html! {
                    (stat("model.constant_coords", fmt_share(m.constant_coords, m.coords as u64)))
                    " — all finite samples equal; NaN for every shape statistic and left out \
                    of every pooled sum"
                }))
                (kv("coordinates with too few finite samples", html! {
                    (stat("model.few_finite_coords", fmt_share(m.few_finite_coords, m.coords as u64)))
                    " — fewer than 4 finite samples; NaN, and left out like constant ones"
                }))
                (kv("exact zeros of the noise", html! {
                    (stat("model.zero_entries", fmt_share(m.zero_entries, entries)))
                    " of K·P entries — left out of every log statistic"
                }))
                (kv("non-finite samples", html! {
                    (stat("model.nonfinite_samples", fmt_share(m.nonfinite_samples, entries)))
                    " — dropped (and their time blocks)"
                }))
            }
            @let notes: Vec<String> = a.tensors.iter()
                .flat_map(|t| t.summary.notes.iter().map(move |n| format!("{}: {n}", t.summary.name)))
                .chain(m.notes.iter().map(|n| format!("whole input: {n}")))
                .collect();
            @if !notes.is_empty() {
                h3 { "Estimates left undefined" }
                ul.notes { @for n in &notes { li { (n) } } }
            }
        }
    }
}

pub fn alpha(center: &Center, plot: &Plot) -> Markup {
    html! {
        section #alpha {
            h2 { "Tail index α per tensor" }
            p.note {
                "α = 2 is Gaussian; α < 2 means heavier, α-stable tails. "
                b { "Time-blocked α" }
                " pools the block and entry log-means over all of a tensor's coordinates: it is \
                not biased by scale differences between coordinates. Its " (CI_LABEL)
                " re-estimates α with each time block of K1 samples left out in turn, so it \
                allows for coordinates that move together (they share every minibatch). "
                b { "Simsekli flat α" } " is the original estimator on the flattened noise, kept \
                for comparison: it reads low when coordinates have different scales."
            }
            p.note #centring { (centring(center)) }
            figure { (PreEscaped(&plot.svg)) }
        }
    }
}

/// Which centring the run used and the bias it is known to carry (simulated: symmetric
/// α-stable noise, 2,000 independent coordinates, pooled time-blocked α).
fn centring(center: &Center) -> Markup {
    match center {
        Center::Mean => html! {
            "Centring: the per-coordinate sample mean (" code { "--center mean" } "). With \
            heavy-tailed noise it makes the pooled time-blocked α read low: symmetric α-stable \
            noise with α = 1.5 reads about 1.46 at K = 512, and α = 1.2 reads about 1.15. \
            Centring on the full-batch gradient (" code { "--center FILE" } ") avoids this; \
            for symmetric noise, so does the median (" code { "--center median" } ")."
        },
        Center::Median => html! {
            "Centring: the per-coordinate median (" code { "--center median" } "): nearly \
            unbiased for symmetric heavy tails (symmetric α-stable noise with α = 1.5 reads \
            1.50 at K = 512, where the mean reads about 1.46). For skewed noise the median is \
            not the mean, and the offset biases α toward 1."
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

pub fn reject(plot: &Plot) -> Markup {
    html! {
        section #reject {
            h2 { "Normality rejected per coordinate" }
            p.note {
                "Share of each tensor's non-constant coordinates whose K samples fail a \
                normality test at p < 0.05: Jarque–Bera and D'Agostino–Pearson K² (n/a when \
                fewer than 8 finite samples). Under Gaussian noise about 5 % reject by chance \
                (dashed line)."
            }
            figure { (PreEscaped(&plot.svg)) }
        }
    }
}

fn quantiles(field: &str, q: &Quantiles) -> Markup {
    html! {
        (stat(&format!("{field}.q50"), fmt_f(q.q50, 2))) " ["
        (stat(&format!("{field}.q25"), fmt_f(q.q25, 2))) ", "
        (stat(&format!("{field}.q75"), fmt_f(q.q75, 2))) "]"
    }
}

pub fn tensor_table(tensors: &[TensorResult]) -> Markup {
    let head: [Markup; 15] = [
        html! { "P" },
        // CI_LABEL over two lines, so the column stays narrow.
        html! { "α time-blocked" br; "[95 % CI, jackknife" br; "over time blocks]" },
        html! { "SE" },
        html! { "α flat" },
        html! { "α_block" br; "median [IQR]" },
        html! { "α_logm" br; "median [IQR]" },
        html! { "JB" br; "rej." },
        html! { "K²" br; "rej." },
        html! { "α_mcculloch" br; "median [IQR]" },
        html! { "stable" br; "closer" },
        html! { "AD" br; "rej." },
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
                tbody { @for t in tensors { (tensor_row(t)) } }
            } }
        }
    }
}

fn tensor_row(t: &TensorResult) -> Markup {
    let s = &t.summary;
    let [lo, hi] = s.alpha_time_blocked_ci;
    html! {
        tr data-tensor=(s.name) {
            td { (s.name) }
            td { (shape_str(&s.shape)) }
            td.num { (stat("coords", fmt_int(s.coords as u64))) }
            td.num {
                b { (stat("alpha_time_blocked", fmt_f(s.alpha_time_blocked, 3))) } " ["
                (stat("alpha_time_blocked_ci.0", fmt_f(lo, 3))) ", "
                (stat("alpha_time_blocked_ci.1", fmt_f(hi, 3))) "]"
            }
            td.num { (stat("alpha_time_blocked_se", fmt_f(s.alpha_time_blocked_se, 3))) }
            td.num { (stat("alpha_simsekli_flat", fmt_f(s.alpha_simsekli_flat, 3))) }
            td.num { (quantiles("alpha_block_quantiles", &s.alpha_block_quantiles)) }
            td.num { (quantiles("alpha_logm_quantiles", &s.alpha_logm_quantiles)) }
            td.num { (stat("jb_reject_frac", fmt_pct(s.jb_reject_frac))) }
            td.num { (stat("k2_reject_frac", fmt_pct(s.k2_reject_frac))) }
            td.num { (quantiles("alpha_mcculloch_quantiles", &s.fits.alpha_mcculloch_quantiles)) }
            td.num { (stat("stable_beats_gauss_frac", fmt_pct(s.fits.stable_beats_gauss_frac))) }
            td.num { (stat("ad_reject_frac", fmt_pct(s.fits.ad_reject_frac))) }
            td.num { (stat("constant_coords", fmt_int(s.constant_coords))) }
            td.num { (stat("logm_clamped_coords", fmt_int(s.logm_clamped_coords))) }
            td.num { (stat("zero_entries", fmt_int(s.zero_entries))) }
            td.num {
                (stat("nonfinite_samples", fmt_int(s.nonfinite_samples))) " / "
                (stat("dropped_blocks", fmt_int(s.dropped_blocks)))
            }
        }
    }
}

pub fn histograms(total: usize, sampled: bool, hists: &[TensorHists], kurt_top: f64) -> Markup {
    let (lo, hi, _) = ALPHA_HIST;
    let fitted = hists
        .iter()
        .any(|h| h.tensor.coords.try_get("ks_gauss").is_some());
    html! {
        section #hist {
            h2 { "Per-coordinate distributions" }
            p.note {
                "One value per coordinate (parameter). α axes span [" (lo) ", " (hi) "]: values \
                outside are counted in the red edge bins. Kurtosis uses a symlog axis, \
                sign(g2)·log10(1 + |g2|), from −2 (its minimum) to the largest value shown ("
                (fmt_f(kurt_top, 1)) "), the same for every tensor. Dashed lines: the \
                Gaussian values α = 2 and g2 = 0. NaN values (constant coordinates) are skipped \
                and counted."
                @if fitted {
                    " The three α histograms (block sums, log-moment, McCulloch's quantiles) \
                    share axis and bins: read them side by side, since estimators that agree \
                    on a tensor measure its tails and ones that disagree point at too few \
                    samples or tails that are not stable-like. In the KS plot each dot is a \
                    coordinate, its distance to the fitted normal across and to the fitted \
                    stable law up: dots below the dashed diagonal are described better by the \
                    stable law, dots on it equally well by both."
                }
                @if sampled {
                    " This run was large, so each histogram is drawn from a strided sample of at \
                    most " (fmt_int(PLOT_SAMPLE as u64)) " of the tensor's coordinates (counts \
                    are of the sample; the quantiles and fractions elsewhere use every coordinate)."
                }
                @if hists.len() < total {
                    " Shown for the " (hists.len()) " largest of the " (total) " tensors (by \
                    coordinate count), in input order; every map is in "
                    code { "coords.safetensors" } "."
                }
            }
            @for h in hists {
                @let m = &h.tensor.meta;
                div.hist-tensor data-tensor=(m.name) {
                    h3 {
                        (m.name) " "
                        small {
                            "shape " (shape_str(&m.shape)) " · "
                            (fmt_int(m.coords() as u64)) " coordinates"
                        }
                    }
                    div.hist-row { @for p in &h.plots { (PreEscaped(&p.svg)) } }
                }
            }
        }
    }
}
