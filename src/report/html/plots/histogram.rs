//! A histogram of one value per coordinate: equal bins over a fixed range (linear or symlog),
//! values outside it counted in red edge bins, NaN counted and said, an optional dashed
//! reference value and an optional exact value whose share of its bin is drawn darker.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::{count_axis, symlog, Tick, Ticked};
use super::{clean, dashed, font, heading, notes, plain, svg_plot, Plot};
use super::{BAR, EDGE, GRID, INK, MUTED, SPIKE};
use crate::error::Result;
use crate::report::html::format::{fmt_f, fmt_int};

const WIDTH: u32 = 360;
const PLOT_TOP: u32 = 44;
const PLOT_H: u32 = 124;
const AXIS_H: u32 = 40;
const NOTE_STEP: i32 = 13;

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
    /// The counts of `map(v)` over `values`, in pieces on the current rayon pool (a table's
    /// columns hold a value per coordinate, millions of them).
    pub fn of(
        values: &[f64],
        map: impl Fn(f64) -> f64 + Sync,
        lo: f64,
        hi: f64,
        bins: usize,
    ) -> Hist {
        use rayon::prelude::*;
        const PIECE: usize = 1 << 16;
        let bins = bins.max(1);
        let scale = bins as f64 / (hi - lo);
        // Bins, then under, over and NaN.
        let slot = |v: f64| {
            if v.is_nan() {
                bins + 2
            } else if v < lo {
                bins
            } else if v > hi {
                bins + 1
            } else {
                (((v - lo) * scale) as usize).min(bins - 1)
            }
        };
        let counts = values
            .par_chunks(PIECE)
            .map(|piece| {
                let mut c = vec![0u64; bins + 3];
                // Mapped a run at a time, in a loop of its own that vectorises.
                let mut mapped = [0.0; 256];
                for run in piece.chunks(mapped.len()) {
                    for (m, &v) in mapped.iter_mut().zip(run) {
                        *m = map(v);
                    }
                    for &v in &mapped[..run.len()] {
                        c[slot(v)] += 1;
                    }
                }
                c
            })
            .reduce(
                || vec![0u64; bins + 3],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        Hist {
            lo,
            hi,
            counts: counts[..bins].to_vec(),
            under: counts[bins],
            over: counts[bins + 1],
            nan: counts[bins + 2],
        }
    }

    /// Values in some bin or edge bin (everything but NaN).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.under + self.over
    }

    fn bin_of(&self, v: f64) -> Option<usize> {
        let bins = self.counts.len();
        (self.lo..=self.hi)
            .contains(&v)
            .then(|| (((v - self.lo) / (self.hi - self.lo) * bins as f64) as usize).min(bins - 1))
    }
}

/// The value axis.
#[derive(Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// sign(x)·log10(1 + |x|): for values spanning decades on both sides of 0.
    Symlog,
}

impl Scale {
    fn map(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Symlog => symlog(v),
        }
    }
}

/// What the red edge bins hold.
#[derive(Clone, Copy, PartialEq)]
pub enum Edges {
    /// Values outside the range (always drawn, labelled `<lo` and `>hi`).
    OutOfRange,
    /// Only ±inf, the range holding every finite value (drawn when there are any).
    Infinite,
}

pub struct HistSpec<'a> {
    pub id: String,
    pub file: String,
    /// The statistic, e.g. "α_logm (log-moment)".
    pub title: &'a str,
    /// What it is of, e.g. the tensor's name.
    pub subtitle: &'a str,
    /// Range and bin count, in the values' own units.
    pub range: (f64, f64),
    pub bins: usize,
    pub scale: Scale,
    /// Tick positions in the scale's (transformed) units, with labels.
    pub ticks: Vec<Tick>,
    pub xlabel: &'a str,
    pub edges: Edges,
    /// A dashed vertical line at this value.
    pub reference: Option<f64>,
    /// The median over all coordinates, said in the first note.
    pub median: Option<f64>,
    /// True when the values are a sample of the coordinates.
    pub sampled: bool,
    /// (value, what it means): the count equal to `value` drawn darker in its bin and said.
    pub spike: Option<(f64, &'a str)>,
}

/// Draws `values` as `spec` says.
pub fn histogram(values: &[f64], spec: &HistSpec) -> Result<Plot> {
    let (lo, hi) = (spec.scale.map(spec.range.0), spec.scale.map(spec.range.1));
    let h = Hist::of(values, |v| spec.scale.map(v), lo, hi, spec.bins);
    let spike = spec.spike.map(|(v, what)| {
        let n = values.iter().filter(|&&x| x == v).count() as u64;
        (h.bin_of(spec.scale.map(v)), n, what)
    });
    let lines = hist_notes(spec, &h, spike.map(|(_, n, what)| (what, n)));
    let edges = spec.edges == Edges::OutOfRange || h.under + h.over > 0;

    let w = (hi - lo) / spec.bins.max(1) as f64;
    // Edge bins two bins wide, a bin and a half away from the range (room for their labels).
    let (x0, x1) = if edges {
        (lo - 3.5 * w, hi + 3.5 * w)
    } else {
        (lo, hi)
    };
    let edge_max = if edges { h.under.max(h.over) } else { 0 };
    let (ytop, yticks) = count_axis(h.counts.iter().copied().fold(edge_max, u64::max));
    let ylab_w = yticks
        .iter()
        .map(|t| super::text_width(&t.1, 11.0))
        .fold(0.0, f64::max);
    let height = PLOT_TOP + PLOT_H + AXIS_H + 14 + lines.len() as u32 * NOTE_STEP as u32;
    let title = format!("{}: {}", spec.title, spec.subtitle);

    svg_plot(&spec.id, &spec.file, &title, (WIDTH, height), |root| {
        heading(root, spec.title, spec.subtitle)?;
        let mut chart = ChartBuilder::on(root)
            .margin_top(PLOT_TOP)
            .margin_left(4)
            .margin_right(10)
            .margin_bottom(height - PLOT_TOP - PLOT_H - AXIS_H)
            .y_label_area_size((ylab_w + 34.0) as u32)
            .x_label_area_size(AXIS_H)
            .build_cartesian_2d(
                Ticked::new(x0, x1, spec.ticks.clone()),
                Ticked::new(0.0, ytop, yticks.clone()),
            )?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(GRID.stroke_width(1))
            .axis_style(RGBColor(0x44, 0x44, 0x44).stroke_width(1))
            .label_style(plain(11.0, INK, HPos::Center))
            .axis_desc_style(plain(11.5, RGBColor(0x33, 0x33, 0x33), HPos::Center))
            .x_desc(clean(spec.xlabel))
            .y_desc("coordinates (count)")
            .draw()?;

        let bar = |a: f64, b: f64, c: u64, colour: RGBColor| {
            let mut r = Rectangle::new([(a, 0.0), (b, c as f64)], colour.filled());
            r.set_margin(0, 0, 0, 1);
            r
        };
        let at = |i: usize| lo + i as f64 * w;
        chart.draw_series(
            h.counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| bar(at(i), at(i + 1), c, BAR)),
        )?;
        if let Some((Some(i), n, _)) = spike.filter(|s| s.1 > 0) {
            chart.draw_series([bar(at(i), at(i + 1), n.min(h.counts[i]), SPIKE)])?;
        }
        if edges {
            let (below, above) = match spec.edges {
                Edges::OutOfRange => (format!("<{}", spec.range.0), format!(">{}", spec.range.1)),
                Edges::Infinite => ("−∞".to_owned(), "+∞".to_owned()),
            };
            for (c, a, label) in [(h.under, x0, below), (h.over, hi + 1.5 * w, above)] {
                chart.draw_series([bar(a, a + 2.0 * w, c, EDGE)])?;
                let style = plain(10.0, EDGE, HPos::Center);
                chart
                    .plotting_area()
                    .draw(&(EmptyElement::at((a + w, 0.0)) + Text::new(label, (0, 16), style)))?;
            }
        }
        if let Some(r) = spec
            .reference
            .map(|r| spec.scale.map(r))
            .filter(|r| (lo..=hi).contains(r))
        {
            dashed(chart.plotting_area(), (r, 0.0), (r, ytop))?;
        }
        if h.total() == 0 {
            let style = font(12.0, MUTED, FontStyle::Italic, HPos::Center);
            chart.plotting_area().draw(&Text::new(
                "no values to show (all NaN)",
                ((x0 + x1) / 2.0, ytop / 2.0),
                style,
            ))?;
        }
        let top = (PLOT_TOP + PLOT_H + AXIS_H + 8) as i32;
        notes(root, (10, top), &lines, 10.5, NOTE_STEP)
    })
}

/// The lines under a histogram: how many values and NaN, the axis, the edge bins, the spike.
fn hist_notes(spec: &HistSpec, h: &Hist, spike: Option<(&str, u64)>) -> Vec<String> {
    let word = if spec.sampled {
        "sampled values"
    } else {
        "values"
    };
    let median = spec
        .median
        .map(|m| format!(", median {}", fmt_f(m, 2)))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{} {word}{median}; {} NaN skipped",
        fmt_int(h.total()),
        fmt_int(h.nan)
    )];
    if spec.scale == Scale::Symlog {
        lines.push("symlog axis: sign(x)·log10(1 + |x|)".to_owned());
    }
    match spec.edges {
        Edges::OutOfRange => lines.push(format!(
            "outside [{}, {}]: {} below, {} above (red edge bins)",
            spec.range.0,
            spec.range.1,
            fmt_int(h.under),
            fmt_int(h.over)
        )),
        Edges::Infinite if h.under + h.over > 0 => lines.push(format!(
            "infinite: {} (red edge bins)",
            fmt_int(h.under + h.over)
        )),
        Edges::Infinite => {}
    }
    if let Some((what, n)) = spike {
        lines.push(format!("dark: {} {what}", fmt_int(n)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_edges_nan_and_inf() {
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
        let h = Hist::of(&v, |v| v, 0.0, 4.0, 4);
        assert_eq!(h.counts, vec![2, 1, 1, 2]); // 4.0 falls in the closed last bin
        assert_eq!((h.under, h.over, h.nan), (2, 2, 1));
        assert_eq!(h.total(), 10);
        assert_eq!(
            (h.bin_of(4.0), h.bin_of(0.99), h.bin_of(-1.0)),
            (Some(3), Some(0), None)
        );
        let e = Hist::of(&[], |v| v, 0.0, 1.0, 3);
        assert_eq!((e.total(), e.counts), (0, vec![0, 0, 0]));
    }
}
