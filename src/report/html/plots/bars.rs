//! Shares per tensor as horizontal bars, one row per tensor and one bar per series, each
//! labelled with its percentage; a missing share reads "n/a" instead of a bar.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::labelled;
use super::rows::{Frame, RowArea};
use super::{dashed, plain, svg_plot, text_width, Drawn, Mark, Plot, INK, MUTED};
use crate::error::Result;
use crate::report::html::format::fmt_pct;

pub struct BarSeries<'a> {
    pub label: &'a str,
    pub colour: RGBColor,
    /// One share in [0, 1] per row; NaN: not available.
    pub values: Vec<f64>,
}

pub struct BarSpec<'a> {
    pub id: &'a str,
    pub file: &'a str,
    pub title: &'a str,
    pub rows: Vec<&'a str>,
    pub xlabel: &'a str,
    /// A dashed vertical line at this share, and its legend label.
    pub reference: Option<(f64, &'a str)>,
    pub series: Vec<BarSeries<'a>>,
}

/// Bar thickness and the gap between a row's bars, in pixels.
const BAR_PX: f64 = 8.0;
const GAP_PX: f64 = 2.0;

pub fn bar_plot(spec: &BarSpec) -> Result<Plot> {
    let frame = Frame::new(&spec.rows);
    let ticks = labelled(0.0, 100.0, 20.0);
    let mut items: Vec<(Mark, &str)> = spec
        .series
        .iter()
        .map(|s| (Mark::Bar(s.colour), s.label))
        .collect();
    items.extend(spec.reference.map(|(_, label)| (Mark::Dashed, label)));
    svg_plot(spec.id, spec.file, spec.title, frame.size(0), |root| {
        let chart = frame.draw(
            root,
            spec.title,
            &items,
            ((0.0, 100.0), &ticks, spec.xlabel),
            &[],
        )?;
        let area = chart.plotting_area();
        let m = spec.series.len() as f64;
        for i in 0..spec.rows.len() {
            for (k, s) in spec.series.iter().enumerate() {
                // The row's bars stacked top to bottom, centred on the row.
                let top = (k as f64 - m / 2.0) * (BAR_PX + GAP_PX) + GAP_PX / 2.0;
                if let Some(&v) = s.values.get(i) {
                    bar(area, &frame, i, (top, top + BAR_PX), v, s.colour)?;
                }
            }
        }
        if let Some((r, _)) = spec.reference {
            dashed(area, (100.0 * r, 0.0), (100.0 * r, frame.rows() as f64))?;
        }
        Ok(())
    })
}

/// One bar of row `i`, `y0` to `y1` pixels below the row's centre, with its label.
fn bar(
    area: &RowArea,
    frame: &Frame,
    i: usize,
    (y0, y1): (f64, f64),
    v: f64,
    colour: RGBColor,
) -> Drawn {
    let mid = frame.y(i, (y0 + y1) / 2.0);
    if v.is_nan() {
        let label =
            EmptyElement::at((0.0, mid)) + Text::new("n/a", (4, 0), plain(10.0, MUTED, HPos::Left));
        area.draw(&label)?;
        return Ok(());
    }
    let pct = (100.0 * v).clamp(0.0, 100.0);
    // At least a sliver (0.15 % of the axis, about a pixel) so that 0 % reads as measured.
    let rect = Rectangle::new(
        [(0.0, frame.y(i, y0)), (pct.max(0.15), frame.y(i, y1))],
        colour.filled(),
    );
    area.draw(&rect)?;
    let label = fmt_pct(v);
    // Inside the bar's end, in white, when the label would run past the axis.
    let px_per_pct = area.dim_in_pixel().0 as f64 / 100.0;
    let fits = pct + (text_width(&label, 10.0) + 8.0) / px_per_pct <= 100.0;
    let (dx, style) = if fits {
        (4, plain(10.0, INK, HPos::Left))
    } else {
        (-4, plain(10.0, WHITE, HPos::Right))
    };
    area.draw(&(EmptyElement::at((pct, mid)) + Text::new(label, (dx, 0), style)))?;
    Ok(())
}
