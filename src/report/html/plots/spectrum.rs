//! A covariance spectrum on log–log axes: one dot per eigenvalue λ_k against its rank k, and
//! the fitted line ln λ = a − s·ln k over the fit window (dashed outside the window is not
//! drawn: the fit says nothing there). Both axes are log10 with a tick per decade.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::{Tick, Ticked};
use super::{clean, heading, notes, plain, svg_plot, Plot};
use super::{BAR, BLUE_TB, GRID, INK};
use crate::error::Result;

const WIDTH: u32 = 360;
const PLOT_TOP: u32 = 44;
const PLOT_H: u32 = 150;
const AXIS_H: u32 = 40;
const NOTE_STEP: i32 = 13;
/// Dots drawn at most (every n-th rank beyond that).
const MAX_DOTS: usize = 1000;

pub struct SpectrumSpec<'a> {
    pub id: String,
    pub file: String,
    pub title: &'a str,
    pub subtitle: &'a str,
    /// The fitted slope s (λ_k ∝ k^−s), its R² and window [first, last] rank.
    pub slope: f64,
    pub r2: f64,
    pub window: [usize; 2],
}

/// Ticks at the integer powers of ten in [lo, hi] (log10 coordinates), labelled 10^e.
fn decades(lo: f64, hi: f64) -> Vec<Tick> {
    let (a, b) = (lo.ceil() as i32, hi.floor() as i32);
    let step = ((b - a) / 5 + 1).max(1);
    (a..=b)
        .filter(|e| (e - a) % step == 0)
        .map(|e| (e as f64, format!("1e{e}")))
        .collect()
}

/// Draws `eigenvalues` (descending) as `spec` says; non-positive ones are skipped and counted.
pub fn spectrum(eigenvalues: &[f64], spec: &SpectrumSpec) -> Result<Plot> {
    let pts: Vec<(f64, f64)> = eigenvalues
        .iter()
        .enumerate()
        .filter(|(_, &l)| l > 0.0 && l.is_finite())
        .map(|(i, &l)| (((i + 1) as f64).log10(), l.log10()))
        .collect();
    let skipped = eigenvalues.len() - pts.len();
    // The line through the window: a = mean(ln λ_k + s ln k) over its ranks (the least-squares
    // intercept for the reported slope).
    let [w0, w1] = spec.window;
    let in_window: Vec<(f64, f64)> = (w0..=w1.min(eigenvalues.len()))
        .filter(|&k| eigenvalues[k - 1] > 0.0)
        .map(|k| ((k as f64).log10(), eigenvalues[k - 1].log10()))
        .collect();
    let a = in_window
        .iter()
        .map(|(x, y)| y + spec.slope * x)
        .sum::<f64>()
        / in_window.len().max(1) as f64;
    let (xhi, ylo, yhi) = pts.iter().fold(
        (1.0f64, f64::INFINITY, f64::NEG_INFINITY),
        |(x, lo, hi), &(px, py)| (x.max(px), lo.min(py), hi.max(py)),
    );
    let (ylo, yhi) = if ylo.is_finite() {
        (ylo.floor(), yhi.ceil().max(ylo.floor() + 1.0))
    } else {
        (0.0, 1.0)
    };
    let xhi = xhi.ceil().max(1.0);
    let step = pts.len().div_ceil(MAX_DOTS).max(1);
    let mut lines = vec![format!(
        "λ_k ∝ k^−s: s = {:.3}, R² = {:.3} over ranks {}–{} (the line)",
        spec.slope, spec.r2, w0, w1
    )];
    if skipped > 0 {
        lines.push(format!("{skipped} eigenvalue(s) ≤ 0 (rounding) not drawn"));
    }
    let height = PLOT_TOP + PLOT_H + AXIS_H + 14 + lines.len() as u32 * NOTE_STEP as u32;
    let title = format!("{}: {}", spec.title, spec.subtitle);
    svg_plot(&spec.id, &spec.file, &title, (WIDTH, height), |root| {
        heading(root, spec.title, spec.subtitle)?;
        let mut chart = ChartBuilder::on(root)
            .margin_top(PLOT_TOP)
            .margin_left(4)
            .margin_right(12)
            .margin_bottom(height - PLOT_TOP - PLOT_H - AXIS_H)
            .y_label_area_size(70)
            .x_label_area_size(AXIS_H)
            .build_cartesian_2d(
                Ticked::new(0.0, xhi, decades(0.0, xhi)),
                Ticked::new(ylo, yhi, decades(ylo, yhi)),
            )?;
        chart
            .configure_mesh()
            .bold_line_style(GRID.stroke_width(1))
            .axis_style(RGBColor(0x44, 0x44, 0x44).stroke_width(1))
            .label_style(plain(11.0, INK, HPos::Center))
            .axis_desc_style(plain(11.5, RGBColor(0x33, 0x33, 0x33), HPos::Center))
            .x_desc(clean("rank k (log scale)"))
            .y_desc(clean("eigenvalue λ_k (log scale)"))
            .draw()?;
        chart.draw_series(
            pts.iter()
                .step_by(step)
                .map(|&p| Circle::new(p, 2, BAR.mix(0.7).filled())),
        )?;
        if !in_window.is_empty() && spec.slope.is_finite() {
            let (x0, x1) = ((w0 as f64).log10(), (w1 as f64).log10());
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x0, a - spec.slope * x0), (x1, a - spec.slope * x1)],
                BLUE_TB.stroke_width(2),
            )))?;
        }
        let at = (PLOT_TOP + PLOT_H + AXIS_H + 8) as i32;
        notes(root, (10, at), &lines, 10.5, NOTE_STEP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exact power law: every positive eigenvalue a dot, the line drawn through the window,
    /// the zero one counted.
    #[test]
    fn dots_line_and_skipped() {
        let mut eig: Vec<f64> = (1..=40).map(|k| (k as f64).powf(-1.5)).collect();
        eig.push(0.0);
        let p = spectrum(
            &eig,
            &SpectrumSpec {
                id: "s".into(),
                file: "s.svg".into(),
                title: "Spectrum",
                subtitle: "w",
                slope: 1.5,
                r2: 1.0,
                window: [2, 20],
            },
        )
        .unwrap();
        assert_eq!(p.svg.matches("<circle").count(), 40);
        assert!(
            p.svg.contains("s = 1.500, R² = 1.000 over ranks 2–20"),
            "{}",
            p.svg
        );
        assert!(p.svg.contains("1 eigenvalue(s) ≤ 0"));
        assert!(p.svg.contains("<polyline") || p.svg.contains("<path"));
    }
}
