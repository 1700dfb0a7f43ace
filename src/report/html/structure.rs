//! The page's structure section: a log–log plot of the covariance spectrum per tensor and for
//! the model with its fitted slope, and a table of the dimension-wise power-law fits, each
//! with a sentence on how to read it. Left out when the run computed neither.

use maud::{html, Markup, PreEscaped};

use super::figures::MAX_HIST_TENSORS;
use super::format::{fmt_f, fmt_int};
use super::plots::{self, Plot, SpectrumSpec};
use super::RunReport;
use crate::error::Result;
use crate::stats::structure::powerlaw::KS_C_05;
use crate::stats::structure::summary::SpectrumSummary;

fn plot(s: &SpectrumSummary, slug: &str, name: &str) -> Result<Plot> {
    plots::spectrum(
        &s.all,
        &SpectrumSpec {
            id: format!("spectrum-{slug}"),
            file: format!("spectrum_{slug}.svg"),
            title: "covariance spectrum",
            subtitle: name,
            slope: s.slope,
            r2: s.r2,
            window: s.window,
        },
    )
}

/// The spectrum plots: the model's first, then those of the first [`MAX_HIST_TENSORS`]
/// tensors that have one (`slugs` as the tensors' file-name slugs).
pub fn spectrum_plots(r: &RunReport, slugs: &[String]) -> Result<Vec<Plot>> {
    let a = r.analysis;
    let mut out = Vec::new();
    if let Some(s) = &a.model.spectrum {
        // A tensor may be called "model": the model's slug cannot clash with a tensor's, which
        // unique_slugs keeps apart from each other only.
        out.push(plot(s, "_model", "whole model (Grams summed)")?);
    }
    for (t, slug) in a.tensors.iter().zip(slugs).take(MAX_HIST_TENSORS) {
        if let Some(s) = &t.summary.structure.spectrum {
            out.push(plot(s, slug, &t.meta.name)?);
        }
    }
    Ok(out)
}

/// The section; empty when there is nothing to show.
pub fn section(r: &RunReport, spectra: &[Plot]) -> Markup {
    let a = r.analysis;
    let fits: Vec<_> = a
        .tensors
        .iter()
        .flat_map(|t| {
            let dims = t.summary.structure.powerlaw_dimension.as_deref();
            dims.unwrap_or(&[]).iter().map(move |d| (&t.meta.name, d))
        })
        .collect();
    let noise: Vec<_> = a
        .tensors
        .iter()
        .filter_map(|t| t.summary.structure.noise_scale.map(|v| (&t.meta.name, v)))
        .collect();
    if spectra.is_empty() && fits.is_empty() && noise.is_empty() {
        return html! {};
    }
    html! {
        section #structure {
            h2 { "Structure across coordinates" }
            @if !spectra.is_empty() {
                p.note {
                    "Eigenvalues of each covariance matrix, largest first, on log–log axes. A \
                    straight run of dots means a power-law spectrum λ_k ∝ k^−s (Xie et al. \
                    2023); the line is the least-squares fit over the ranks it spans, and a \
                    larger s means the noise is concentrated in fewer directions (compare the \
                    effective rank in summary.json). Every eigenvalue is in "
                    code { "spectrum.safetensors" } "."
                }
                div.hist-row { @for p in spectra { (PreEscaped(&p.svg)) } }
            }
            @if let Some(ns) = a.model.noise_scale {
                p.note {
                    "Gradient noise scale (McCandlish et al. 2018) of the whole model: "
                    span data-stat="noise_scale" { (fmt_f(ns, 1)) }
                    " samples — batches well below it are noise-dominated; per tensor: "
                    @for (i, (name, v)) in noise.iter().enumerate() {
                        @if i > 0 { ", " }
                        (name) " " (fmt_f(*v, 1))
                    }
                    "."
                }
            }
            @if !fits.is_empty() {
                h3 { "Dimension-wise power-law fits" }
                p.note {
                    "Each row fits a power law to one sample's |u| over a tensor's coordinates, \
                    as the powerlaw package does. α is the density's exponent (tail index \
                    α − 1); a row is only a power law if the likelihood ratios R against the \
                    lognormal and exponential tails are not significantly negative (p small \
                    with R < 0 favours the alternative), and p_gof, where computed, is above \
                    0.1 — the KS check D ≤ " (KS_C_05) "/√n_tail alone accepts even Gaussian \
                    data."
                }
                div.scroll { table {
                    thead { tr {
                        th { "tensor" } th.num { "sample" } th.num { "n" } th.num { "α" }
                        th.num { "xmin" } th.num { "n_tail" } th.num { "D" }
                        th.num { "R, p vs lognormal" } th.num { "R, p vs exponential" }
                        th.num { "p_gof" } th { "search" }
                    } }
                    tbody { @for (name, d) in &fits { tr {
                        td { (name) }
                        td.num { (d.sample) }
                        td.num { (fmt_int(d.n as u64)) }
                        td.num { (fmt_f(d.alpha, 3)) }
                        td.num { (format!("{:.3e}", d.xmin)) }
                        td.num { (d.n_tail.map_or("n/a".into(), |n| fmt_int(n as u64))) }
                        td.num { (fmt_f(d.d, 4)) }
                        @for lr in [d.lr_lognormal, d.lr_exponential] {
                            td.num { (lr.map_or("n/a".into(), |l| format!("{}, {:.2e}", fmt_f(l.r, 2), l.p))) }
                        }
                        td.num { (d.p_gof.map_or("—".into(), |p| fmt_f(p, 3))) }
                        td { (d.xmin_search.map_or("n/a".into(), |s| format!("{s:?}").to_lowercase())) }
                    } } }
                } }
            }
        }
    }
}
