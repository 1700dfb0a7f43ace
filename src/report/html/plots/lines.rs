//! Measured points against x on logarithmic (or linear) axes, each series joined by its fitted
//! line or by straight segments, with dashed reference lines: how a quantity scales with the
//! batch size. A power law is a straight line on log–log axes, so a line is drawn as the
//! segment between its two ends.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::{nice_step, ticks, Tick, Ticked};
use super::{clean, dashed, font, heading, legend, plain, svg_plot, Mark, Plot};
use super::{GRID, INK, MUTED};
use crate::error::Result;

const WIDTH: u32 = 380;
const PLOT_TOP: u32 = 44;
const PLOT_H: u32 = 170;
const AXIS_H: u32 = 40;
const LEGEND_STEP: i32 = 17;

/// How an axis maps values: log10 for a logarithmic axis (values ≤ 0 cannot be drawn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    Log,
    Linear,
}

impl Axis {
    fn map(self, v: f64) -> f64 {
        match self {
            Axis::Log if v > 0.0 => v.log10(),
            Axis::Log => f64::NAN,
            Axis::Linear => v,
        }
    }
}

/// A series of measured points.
pub struct LineSeries<'a> {
    pub label: String,
    pub colour: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// The ends (in data units) of the series' fitted line, drawn solid; `None`: the points
    /// are joined by straight segments instead.
    pub fit: Option<[(f64, f64); 2]>,
    /// Written when the series has no drawable point.
    pub missing: &'a str,
}

/// A dashed reference line between two ends, in data units.
pub struct Reference {
    pub label: String,
    pub ends: [(f64, f64); 2],
}

pub struct LinesSpec<'a> {
    pub id: String,
    pub file: String,
    pub title: &'a str,
    pub subtitle: &'a str,
    pub xlabel: &'a str,
    pub ylabel: &'a str,
    pub x: Axis,
    pub y: Axis,
    /// Tick positions on x (e.g. the batch sizes); `None`: chosen from the range.
    pub x_ticks: Option<Vec<f64>>,
    pub series: Vec<LineSeries<'a>>,
    pub references: Vec<Reference>,
}

/// Draws `spec`'s series and references. Points that cannot be drawn (NaN, or ≤ 0 on a log
/// axis) are left out of the series and counted in its legend.
pub fn lines(spec: &LinesSpec) -> Result<Plot> {
    let (fx, fy) = (spec.x, spec.y);
    let to = |(x, y): (f64, f64)| (fx.map(x), fy.map(y));
    let ok = |(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let series: Vec<Vec<(f64, f64)>> = spec
        .series
        .iter()
        .map(|s| s.points.iter().copied().map(to).filter(ok).collect())
        .collect();
    let fits: Vec<Option<[(f64, f64); 2]>> = spec
        .series
        .iter()
        .map(|s| s.fit.map(|e| e.map(to)).filter(|e| e.iter().all(ok)))
        .collect();
    let refs: Vec<[(f64, f64); 2]> = spec
        .references
        .iter()
        .map(|r| r.ends.map(to))
        .filter(|e| e.iter().all(ok))
        .collect();
    let all: Vec<(f64, f64)> = series
        .iter()
        .flatten()
        .copied()
        .chain(fits.iter().flatten().flatten().copied())
        .chain(refs.iter().flatten().copied())
        .collect();
    let (xr, yr) = (
        range(all.iter().map(|p| p.0)),
        range(all.iter().map(|p| p.1)),
    );
    let xt = match &spec.x_ticks {
        Some(v) => v
            .iter()
            .map(|&t| (fx.map(t), fmt_g(t)))
            .filter(|t| t.0.is_finite())
            .collect(),
        None => axis_ticks(fx, xr),
    };
    let yt = axis_ticks(fy, yr);

    let mut items: Vec<(Mark, String)> = spec
        .series
        .iter()
        .zip(&series)
        .map(|(s, drawn)| {
            let left = s.points.len() - drawn.len();
            let label = match (drawn.is_empty(), left) {
                (true, _) => format!("{}: {}", s.label, s.missing),
                (false, 0) => s.label.clone(),
                (false, n) => format!("{} ({n} not drawable)", s.label),
            };
            (Mark::DotInterval(s.colour), label)
        })
        .collect();
    items.extend(
        spec.references
            .iter()
            .map(|r| (Mark::Dashed, r.label.clone())),
    );
    let height = PLOT_TOP + PLOT_H + AXIS_H + 8 + items.len() as u32 * LEGEND_STEP as u32;
    let title = format!("{}: {}", spec.title, spec.subtitle);

    svg_plot(&spec.id, &spec.file, &title, (WIDTH, height), |root| {
        heading(root, spec.title, spec.subtitle)?;
        let ylab_w = yt
            .iter()
            .map(|t| super::text_width(&t.1, 11.0))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .margin_top(PLOT_TOP)
            .margin_left(4)
            .margin_right(14)
            .margin_bottom(height - PLOT_TOP - PLOT_H - AXIS_H)
            .y_label_area_size((ylab_w + 34.0) as u32)
            .x_label_area_size(AXIS_H)
            .build_cartesian_2d(Ticked::new(xr.0, xr.1, xt), Ticked::new(yr.0, yr.1, yt))?;
        chart
            .configure_mesh()
            .bold_line_style(GRID.stroke_width(1))
            .axis_style(RGBColor(0x44, 0x44, 0x44).stroke_width(1))
            .label_style(plain(11.0, INK, HPos::Center))
            .axis_desc_style(plain(11.5, RGBColor(0x33, 0x33, 0x33), HPos::Center))
            .x_desc(clean(spec.xlabel))
            .y_desc(clean(spec.ylabel))
            .draw()?;
        let area = chart.plotting_area();
        for [a, b] in &refs {
            dashed(area, *a, *b)?;
        }
        for ((s, pts), fit) in spec.series.iter().zip(&series).zip(&fits) {
            let line = match fit {
                Some(ends) => ends.to_vec(),
                None => pts.clone(),
            };
            area.draw(&PathElement::new(line, s.colour.stroke_width(2)))?;
            for &p in pts {
                area.draw(&Circle::new(p, 4, s.colour.filled()))?;
            }
        }
        if all.is_empty() {
            let style = font(12.0, MUTED, FontStyle::Italic, HPos::Center);
            let mid = ((xr.0 + xr.1) / 2.0, (yr.0 + yr.1) / 2.0);
            area.draw(&Text::new("nothing to draw", mid, style))?;
        }
        let top = (PLOT_TOP + PLOT_H + AXIS_H + 12) as i32;
        for (i, (mark, label)) in items.iter().enumerate() {
            legend(
                root,
                (10, top + i as i32 * LEGEND_STEP),
                &[(*mark, label.as_str())],
            )?;
        }
        Ok(())
    })
}

/// The span of `values` (already mapped), padded by 6 % each side; [0, 1] when there is none,
/// a unit span around a single value.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.06 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

/// Ticks over a mapped range: on a log axis 1-2-5 steps of each decade, thinned to every
/// decade when there are more than 7 and refined to 1…9 when fewer than 3.
fn axis_ticks(axis: Axis, (lo, hi): (f64, f64)) -> Vec<Tick> {
    match axis {
        Axis::Linear => {
            let step = nice_step(hi - lo, 8);
            ticks(lo, hi, step)
                .into_iter()
                .map(|v| (v, fmt_g(v)))
                .collect()
        }
        Axis::Log => {
            let within = |mantissas: &[f64]| -> Vec<Tick> {
                (lo.floor() as i32..=hi.ceil() as i32)
                    .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
                    .filter(|v| (lo..=hi).contains(&v.log10()))
                    .map(|v| (v.log10(), fmt_g(v)))
                    .collect()
            };
            let t = within(&[1.0, 2.0, 5.0]);
            if t.len() > 7 {
                within(&[1.0])
            } else if t.len() < 3 {
                within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
            } else {
                t
            }
        }
    }
}

/// A tick label: at most 3 significant digits, plain between 0.001 and 100 000, else as
/// `2e−5`; minus as U+2212.
pub fn fmt_g(v: f64) -> String {
    let a = v.abs();
    let s = if v == 0.0 {
        "0".to_owned()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    } else {
        let s = format!("{v:.2e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        format!("{m}e{e}")
    };
    s.replace('-', "−")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_log_ticks() {
        assert_eq!(fmt_g(64.0), "64");
        assert_eq!(fmt_g(0.0307), "0.0307");
        assert_eq!(fmt_g(1.23456), "1.23");
        assert_eq!(fmt_g(2e-5), "2e−5");
        assert_eq!(fmt_g(-0.5), "−0.5");
        let labels = |lo: f64, hi: f64| -> Vec<String> {
            axis_ticks(Axis::Log, (lo.log10(), hi.log10()))
                .into_iter()
                .map(|t| t.1)
                .collect()
        };
        assert_eq!(labels(0.004, 0.06), ["0.005", "0.01", "0.02", "0.05"]);
        assert_eq!(
            labels(1e-6, 1.0),
            ["1e−6", "1e−5", "1e−4", "0.001", "0.01", "0.1", "1"]
        );
        assert_eq!(labels(3.5, 9.5), ["4", "5", "6", "7", "8", "9"]);
    }

    #[test]
    fn points_fits_and_undrawable_values() {
        let spec = LinesSpec {
            id: "p".into(),
            file: "p.svg".into(),
            title: "t",
            subtitle: "s",
            xlabel: "x",
            ylabel: "y",
            x: Axis::Log,
            y: Axis::Log,
            x_ticks: Some(vec![4.0, 16.0, 64.0]),
            series: vec![LineSeries {
                label: "r_B".into(),
                colour: super::super::BLUE_TB,
                points: vec![(4.0, 1.0), (16.0, 0.5), (64.0, -1.0)],
                fit: Some([(4.0, 1.0), (64.0, 0.25)]),
                missing: "none",
            }],
            references: vec![Reference {
                label: "slope −1/2".into(),
                ends: [(4.0, 1.0), (64.0, 0.25)],
            }],
        };
        let p = lines(&spec).unwrap();
        // Two drawable points plus the legend's dot.
        assert_eq!(p.svg.matches("<circle").count(), 3, "{}", p.svg);
        assert!(p.svg.contains("r_B (1 not drawable)"));
        assert!(
            p.svg.contains("slope −1/2") && p.svg.contains("\n16\n"),
            "{}",
            p.svg
        );
    }
}
