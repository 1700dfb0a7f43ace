//! One dot per coordinate on two axes that share a range, with the dashed diagonal y = x: which
//! of two fits is closer, coordinate by coordinate (the KS distances to the fitted normal and
//! to the fitted stable law). Pairs with a NaN are counted and said; a large tensor is drawn
//! from a strided sample of its coordinates.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::{labelled, nice_step, Ticked};
use super::{clean, dashed, font, heading, notes, plain, svg_plot, Plot};
use super::{BAR, GRID, INK, MUTED};
use crate::error::Result;
use crate::report::html::format::{fmt_int, fmt_pct};

const WIDTH: u32 = 360;
const PLOT_TOP: u32 = 44;
const PLOT_H: u32 = 124;
const AXIS_H: u32 = 40;
const NOTE_STEP: i32 = 13;
/// Dots drawn at most; more coordinates are thinned to every n-th (the SVG stays small).
pub const MAX_DOTS: usize = 2000;
/// The smallest top of the axes, so near-zero distances still spread out.
const TOP_MIN: f64 = 0.05;

pub struct ScatterSpec<'a> {
    pub id: String,
    pub file: String,
    pub title: &'a str,
    pub subtitle: &'a str,
    pub xlabel: &'a str,
    pub ylabel: &'a str,
    /// What a dot below the diagonal means, and the share of all coordinates (with both
    /// values) where it holds, e.g. ("stable law closer", 0.83).
    pub below: (&'a str, f64),
    /// True when the values are already a sample of the coordinates.
    pub sampled: bool,
}

/// Draws the pairs (x[i], y[i]) as `spec` says.
pub fn scatter(x: &[f64], y: &[f64], spec: &ScatterSpec) -> Result<Plot> {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(&a, &b)| (a, b))
        .collect();
    let skipped = x.len().min(y.len()) - pairs.len();
    let step = pairs.len().div_ceil(MAX_DOTS).max(1);
    let top = pairs.iter().map(|&(a, b)| a.max(b)).fold(TOP_MIN, f64::max);
    let tick = nice_step(top, 4);
    let top = (top / tick).ceil() * tick;
    let ticks = labelled(0.0, top, tick);
    let mut lines = vec![format!(
        "{} {}{}; {} with a NaN skipped",
        fmt_int(pairs.len() as u64),
        if spec.sampled {
            "sampled pairs"
        } else {
            "pairs"
        },
        if step > 1 {
            format!(", every {step}th drawn")
        } else {
            String::new()
        },
        fmt_int(skipped as u64)
    )];
    lines.push(format!(
        "below the dashed diagonal: {}, {} of coordinates",
        spec.below.0,
        fmt_pct(spec.below.1)
    ));
    let height = PLOT_TOP + PLOT_H + AXIS_H + 14 + lines.len() as u32 * NOTE_STEP as u32;
    let title = format!("{}: {}", spec.title, spec.subtitle);

    svg_plot(&spec.id, &spec.file, &title, (WIDTH, height), |root| {
        heading(root, spec.title, spec.subtitle)?;
        let ylab_w = ticks
            .iter()
            .map(|t| super::text_width(&t.1, 11.0))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .margin_top(PLOT_TOP)
            .margin_left(4)
            .margin_right(10)
            .margin_bottom(height - PLOT_TOP - PLOT_H - AXIS_H)
            .y_label_area_size((ylab_w + 34.0) as u32)
            .x_label_area_size(AXIS_H)
            .build_cartesian_2d(
                Ticked::new(0.0, top, ticks.clone()),
                Ticked::new(0.0, top, ticks.clone()),
            )?;
        chart
            .configure_mesh()
            .bold_line_style(GRID.stroke_width(1))
            .axis_style(RGBColor(0x44, 0x44, 0x44).stroke_width(1))
            .label_style(plain(11.0, INK, HPos::Center))
            .axis_desc_style(plain(11.5, RGBColor(0x33, 0x33, 0x33), HPos::Center))
            .x_desc(clean(spec.xlabel))
            .y_desc(clean(spec.ylabel))
            .draw()?;
        dashed(chart.plotting_area(), (0.0, 0.0), (top, top))?;
        chart.draw_series(
            pairs
                .iter()
                .step_by(step)
                .map(|&p| Circle::new(p, 2, BAR.mix(0.6).filled())),
        )?;
        if pairs.is_empty() {
            let style = font(12.0, MUTED, FontStyle::Italic, HPos::Center);
            chart.plotting_area().draw(&Text::new(
                "no pairs to show (all NaN)",
                (top / 2.0, top / 2.0),
                style,
            ))?;
        }
        let at = (PLOT_TOP + PLOT_H + AXIS_H + 8) as i32;
        notes(root, (10, at), &lines, 10.5, NOTE_STEP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ScatterSpec<'static> {
        ScatterSpec {
            id: "s".into(),
            file: "s.svg".into(),
            title: "KS",
            subtitle: "t",
            xlabel: "x",
            ylabel: "y",
            below: ("stable law closer", 0.5),
            sampled: false,
        }
    }

    /// Every finite pair is a dot, a pair with a NaN is counted, and a large set is thinned
    /// to at most MAX_DOTS dots.
    #[test]
    fn dots_nan_and_thinning() {
        let x = [0.1, 0.2, f64::NAN, 0.05];
        let y = [0.05, f64::NAN, 0.1, 0.2];
        let p = scatter(&x, &y, &spec()).unwrap();
        assert_eq!(p.svg.matches("<circle").count(), 2);
        assert!(p.svg.contains("2 pairs; 2 with a NaN skipped"), "{}", p.svg);
        assert!(p.svg.contains("stable law closer, 50 % of coordinates"));

        let n = 3 * MAX_DOTS + 1;
        let v: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let p = scatter(&v, &v, &spec()).unwrap();
        assert_eq!(p.svg.matches("<circle").count(), n.div_ceil(4));
        assert!(p.svg.contains("every 4th drawn"));
    }
}
