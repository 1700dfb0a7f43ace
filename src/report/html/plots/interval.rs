//! Estimates with confidence intervals, one row per tensor: each series draws a point (and its
//! interval, when it has one) per row, side by side within the row. Values beyond the axis are
//! drawn as arrows at its edge and counted in a note, never dropped.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::{labelled, nice_step};
use super::rows::{Frame, RowArea};
use super::{dashed, font, svg_plot, Drawn, Mark, Plot, MUTED};
use crate::error::Result;

/// A point estimate and, when it has one, its interval.
#[derive(Clone, Copy, Debug)]
pub struct Estimate {
    pub point: f64,
    pub ci: Option<[f64; 2]>,
}

impl Estimate {
    /// The interval to draw: only around a finite point, and only with both ends known.
    fn interval(&self) -> Option<[f64; 2]> {
        self.ci
            .filter(|c| self.point.is_finite() && !c[0].is_nan() && !c[1].is_nan())
    }
}

pub struct IntervalSeries<'a> {
    /// The legend's label.
    pub label: &'a str,
    pub colour: RGBColor,
    /// A square marker instead of a dot.
    pub square: bool,
    /// One estimate per row.
    pub values: Vec<Estimate>,
    /// Written in a row where this series has no estimate (a NaN point), e.g.
    /// "no time-blocked estimate"; `None`: such rows just lack the mark.
    pub missing: Option<&'a str>,
}

pub struct IntervalSpec<'a> {
    pub id: &'a str,
    pub file: &'a str,
    pub title: &'a str,
    /// Row labels, top to bottom.
    pub rows: Vec<&'a str>,
    pub xlabel: &'a str,
    /// The axis always covers `span`, is widened to the data inside `clamp`, and ends on
    /// multiples of `step`; values outside `clamp` become arrows at the edge.
    pub span: (f64, f64),
    pub clamp: (f64, f64),
    pub step: f64,
    /// A dashed vertical line and its legend label.
    pub reference: Option<(f64, &'a str)>,
    pub series: Vec<IntervalSeries<'a>>,
}

pub fn interval_plot(spec: &IntervalSpec) -> Result<Plot> {
    let values = spec.series.iter().flat_map(|s| &s.values);
    let (lo, hi) = values
        .flat_map(|e| [e.point].into_iter().chain(e.ci.into_iter().flatten()))
        .filter(|v| (spec.clamp.0..=spec.clamp.1).contains(v))
        .fold(spec.span, |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (
        (lo / spec.step).floor() * spec.step,
        (hi / spec.step).ceil() * spec.step,
    );
    let ticks = labelled(lo, hi, nice_step(hi - lo, 10).max(spec.step));

    let notes = outside_notes(spec, lo, hi);
    let frame = Frame::new(&spec.rows);
    let mark = |s: &IntervalSeries| match s.square {
        true => Mark::Square(s.colour),
        false => Mark::DotInterval(s.colour),
    };
    let mut items: Vec<(Mark, &str)> = spec.series.iter().map(|s| (mark(s), s.label)).collect();
    items.extend(spec.reference.map(|(_, label)| (Mark::Dashed, label)));

    svg_plot(
        spec.id,
        spec.file,
        spec.title,
        frame.size(notes.len()),
        |root| {
            let chart = frame.draw(
                root,
                spec.title,
                &items,
                ((lo, hi), &ticks, spec.xlabel),
                &notes,
            )?;
            let area = chart.plotting_area();
            if let Some((r, _)) = spec.reference.filter(|(r, _)| (lo..=hi).contains(r)) {
                dashed(area, (r, 0.0), (r, frame.rows() as f64))?;
            }
            let m = spec.series.len() as f64;
            for i in 0..spec.rows.len() {
                for (k, s) in spec.series.iter().enumerate() {
                    // Series side by side, 9 px apart, centred on the row.
                    let y = frame.y(i, (k as f64 - (m - 1.0) / 2.0) * 9.0);
                    let Some(e) = s.values.get(i) else { continue };
                    draw_estimate(area, e, s, y, (lo, hi))?;
                    if let (true, Some(msg)) = (e.point.is_nan(), s.missing) {
                        missing_text(area, spec, i, msg, frame.y(i, 0.0), (lo, hi))?;
                    }
                }
            }
            Ok(())
        },
    )
}

/// `msg` in row `i`, on the side of the axis free of the row's other marks.
fn missing_text(
    area: &RowArea,
    spec: &IntervalSpec,
    i: usize,
    msg: &str,
    y: f64,
    (lo, hi): (f64, f64),
) -> Drawn {
    let mid = (lo + hi) / 2.0;
    let right_free = spec
        .series
        .iter()
        .filter_map(|s| s.values.get(i))
        .all(|e| e.point.is_nan() || e.point.clamp(lo, hi) < mid);
    let pad = (hi - lo) * 0.015;
    let (x, h) = if right_free {
        (hi - pad, HPos::Right)
    } else {
        (lo + pad, HPos::Left)
    };
    area.draw(&Text::new(
        msg.to_owned(),
        (x, y),
        font(11.0, MUTED, FontStyle::Italic, h),
    ))?;
    Ok(())
}

/// One series' mark in one row at chart height `y`.
fn draw_estimate(
    area: &RowArea,
    e: &Estimate,
    s: &IntervalSeries,
    y: f64,
    (lo, hi): (f64, f64),
) -> Drawn {
    let inside = |v: f64| (lo..=hi).contains(&v);
    let arrow = |v: f64, size: i32| {
        let dir = if v < lo { -1 } else { 1 };
        let back = -dir * size;
        EmptyElement::at((v.clamp(lo, hi), y))
            + Polygon::new(
                vec![(0, 0), (back, -size * 3 / 5), (back, size * 3 / 5)],
                s.colour.filled(),
            )
    };
    if let Some([c0, c1]) = e.interval() {
        let ends = vec![(c0.clamp(lo, hi), y), (c1.clamp(lo, hi), y)];
        area.draw(&PathElement::new(ends, s.colour.stroke_width(2)))?;
        for c in [c0, c1] {
            if inside(c) {
                // End caps thinner than the line, so a short interval still reads as one.
                let cap = PathElement::new(vec![(0, -4), (0, 4)], s.colour.stroke_width(1));
                area.draw(&(EmptyElement::at((c, y)) + cap))?;
            } else {
                area.draw(&arrow(c, 7))?;
            }
        }
    }
    let p = e.point;
    if p.is_finite() && inside(p) {
        if s.square {
            area.draw(
                &(EmptyElement::at((p, y)) + Rectangle::new([(-4, -4), (4, 4)], s.colour.filled())),
            )?;
        } else {
            area.draw(&Circle::new((p, y), 4, s.colour.filled()))?;
        }
    } else if !p.is_nan() {
        area.draw(&arrow(p, 9))?;
    }
    Ok(())
}

/// The notes under the plot: what is drawn at the edge, what is missing.
fn outside_notes(spec: &IntervalSpec, lo: f64, hi: f64) -> Vec<String> {
    let outside = |v: f64| !v.is_nan() && !(lo..=hi).contains(&v);
    let (mut clamped, mut unbounded) = (0, 0);
    let mut notes = Vec::new();
    for s in &spec.series {
        for e in &s.values {
            clamped += outside(e.point) as usize;
            if let Some([c0, c1]) = e.interval() {
                clamped += outside(c0) as usize;
                if c1 == f64::INFINITY {
                    unbounded += 1;
                } else {
                    clamped += outside(c1) as usize;
                }
            }
        }
    }
    if clamped > 0 {
        notes.push(format!(
            "{clamped} value(s) outside [{}, {}] are drawn at the axis edge as arrows.",
            spec.clamp.0, spec.clamp.1
        ));
    }
    if unbounded > 0 {
        notes.push(format!(
            "{unbounded} CI upper end(s) unbounded: arrow at the right edge."
        ));
    }
    for s in &spec.series {
        let n = s.values.iter().filter(|e| e.point.is_nan()).count();
        if let (Some(msg), true) = (s.missing, n > 0) {
            notes.push(format!(
                "{n} tensor(s) with {msg} (e.g. all coordinates constant)."
            ));
        }
    }
    notes
}
