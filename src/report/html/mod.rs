//! `report.html`: one self-contained page (inline SVG and CSS; no script, no network, no web
//! fonts) that shows a run at a glance, and each of its plots as a standalone `.svg` file next
//! to it (`alpha.svg`, `reject.svg`, `hist_<tensor>_<stat>.svg`, with the fits
//! `scatter_<tensor>_ks.svg`, with the spectrum `spectrum_<tensor>.svg` and
//! `spectrum__model.svg`).
//!
//! The page is a `maud` template of typed sections ([`sections`]); the figures are chosen in
//! [`figures`] and drawn by [`plots`]. Everything is a pure function of the run; [`write`] only
//! saves it.

mod figures;
pub mod format;
pub mod plots;
mod sections;
mod structure;
pub mod sweep;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::Path;

use maud::{html, PreEscaped, DOCTYPE};

use self::figures::MAX_HIST_TENSORS;
use self::format::unique_slugs;
use self::plots::Plot;
use self::sections::TensorHists;
use super::RunReport;
use crate::error::{Error, Result};

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

    let spectra = structure::spectrum_plots(r, &slugs)?;
    let fitted = hists
        .iter()
        .any(|h| h.plots.iter().any(|p| p.file.starts_with("scatter_")));
    let title = match a.tensors.as_slice() {
        [one] => format!("gradtail report: {}", one.meta.name),
        [first, rest @ ..] => format!(
            "gradtail report: {} and {} more",
            first.meta.name,
            rest.len()
        ),
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
                (sections::header(r))
                (sections::model(r))
                (sections::alpha(r.center, &alpha))
                (sections::reject(&reject))
                (sections::tensor_table(&a.tensors))
                (sections::histograms(a.tensors.len(), a.coords_sampled, &hists, kurt_top))
                (structure::section(r, &spectra))
                footer.note {
                    "gradtail " (env!("CARGO_PKG_VERSION")) " · files next to this page: \
                    summary.json, tensors.csv, coords.safetensors, alpha.svg, reject.svg"
                    @if !hists.is_empty() { ", hist_<tensor>_<stat>.svg" }
                    @if fitted { ", scatter_<tensor>_ks.svg" }
                    @if !spectra.is_empty() { ", spectrum.safetensors, spectrum_<tensor>.svg" }
                    ". Definitions: README “Statistics”."
                }
            } }
        }
    };
    let mut plots = vec![alpha, reject];
    plots.extend(hists.into_iter().flat_map(|h| h.plots));
    plots.extend(spectra);
    Ok(Page {
        html: page.into_string(),
        plots,
    })
}

const CSS: &str = "
:root{color-scheme:light}
body{margin:0;background:#fff;color:#222;font:14px/1.45 system-ui,-apple-system,'Segoe UI',\
'DejaVu Sans','Liberation Sans',Arial,sans-serif}
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
svg text{font-family:inherit}
.hist-row{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:6px 14px;align-items:start}
.hist-row svg{width:100%;height:auto;display:block}
details summary{cursor:pointer;color:#333}
footer{margin-top:36px;border-top:1px solid #ddd;padding-top:8px}
";
