//! The report's plots, drawn with `plotters` on its SVG backend: one function per kind of plot,
//! each taking plain data and a small spec, each returning a standalone `<svg>` document that
//! the page also inlines.
//!
//! Text: the SVG backend writes `<text>` elements and leaves the glyphs to the viewer, so no font
//! is needed to render. plotters only estimates text extents for its own layout; its default
//! `ttf` feature would do that through font-kit and the system's fontconfig (absent on headless
//! machines), `ab_glyph` needs a font file compiled in, and with neither it uses a built-in
//! estimate, which is enough here because every label area is sized by this module.

pub mod axis;
mod bars;
mod histogram;
mod interval;
pub mod lines;
mod rows;
mod scatter;
mod spectrum;

pub use bars::{bar_plot, BarSeries, BarSpec};
pub use histogram::{histogram, Edges, Hist, HistSpec, Scale};
pub use interval::{interval_plot, Estimate, IntervalSeries, IntervalSpec};
pub use scatter::{scatter, ScatterSpec};
pub use spectrum::{spectrum, SpectrumSpec};

use std::path::Path;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// One plot: its `<svg>` id, its standalone file name, its markup.
pub struct Plot {
    pub id: String,
    pub file: String,
    pub svg: String,
}

pub const BLUE_TB: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
pub const ORANGE_FLAT: RGBColor = RGBColor(0xd9, 0x73, 0x1a);
pub const GREEN_JB: RGBColor = RGBColor(0x3a, 0x8f, 0x7b);
pub const PURPLE_K2: RGBColor = RGBColor(0x8a, 0x5a, 0xb8);
const BAR: RGBColor = RGBColor(0x5b, 0x86, 0xb8);
const EDGE: RGBColor = RGBColor(0xc0, 0x50, 0x4d);
const SPIKE: RGBColor = RGBColor(0x1d, 0x3f, 0x66);
const REF: RGBColor = RGBColor(0x55, 0x55, 0x55);
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const NOTE: RGBColor = RGBColor(0x44, 0x44, 0x44);
const MUTED: RGBColor = RGBColor(0x77, 0x77, 0x77);
const GRID: RGBColor = RGBColor(0xe3, 0xe3, 0xe3);
const ZEBRA: RGBColor = RGBColor(0xf3, 0xf5, 0xf8);

/// The plots' font: generic, short (plotters repeats it on every `<text>`); the page's CSS
/// gives inline plots the page's own font.
const FONT: &str = "sans-serif";

type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

/// Text of `px` CSS pixels (plotters writes `font-size` as its size / 1.24).
fn font(px: f64, colour: RGBColor, style: FontStyle, h: HPos) -> TextStyle<'static> {
    TextStyle {
        font: (FONT, px * 1.24, style).into(),
        color: colour.to_backend_color(),
        pos: Pos::new(h, VPos::Center),
    }
}

fn plain(px: f64, colour: RGBColor, h: HPos) -> TextStyle<'static> {
    font(px, colour, FontStyle::Normal, h)
}

/// Draws `s` with its vertical centre at `y`.
fn text(root: &Root, s: &str, (x, y): (i32, i32), style: &TextStyle) -> Drawn {
    root.draw_text(s, style, (x, y))?;
    Ok(())
}

/// A small plot's heading: its title in bold and, below it, a subtitle cut to 50 characters.
fn heading(root: &Root, title: &str, subtitle: &str) -> Drawn {
    let bold = font(13.0, INK, FontStyle::Bold, HPos::Left);
    text(root, &clean(title), (10, 13), &bold)?;
    let grey = plain(11.0, RGBColor(0x55, 0x55, 0x55), HPos::Left);
    text(root, &truncate(&clean(subtitle), 50), (10, 29), &grey)
}

/// Rough rendered width of `s` in a sans font of `px` pixels (for layout, not exact).
fn text_width(s: &str, px: f64) -> f64 {
    s.chars().count() as f64 * px * 0.6
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

/// `s` with the control characters XML 1.0 forbids replaced by U+FFFD (tensor names are
/// user data and end up in standalone `.svg` files).
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    clean(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws a plot of `size` pixels with `draw` and makes it a standalone, accessible document:
/// an id, `role="img"`, a `<title>` and the page's font.
fn svg_plot(
    id: &str,
    file: &str,
    title: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Root) -> Drawn,
) -> Result<Plot> {
    let mut buf = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(Into::into)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(Into::into))
    };
    drawn.map_err(|e| {
        Error::io(
            Path::new(file),
            std::io::Error::other(format!("cannot draw the plot: {e}")),
        )
    })?;
    let head = format!(
        "<svg id=\"{}\" role=\"img\" aria-label=\"{t}\" ",
        esc(id),
        t = esc(title)
    );
    let svg = buf.replacen("<svg ", &head, 1);
    let svg = match svg.find('>') {
        Some(i) => format!(
            "{}\n<title>{}</title>{}",
            &svg[..=i],
            esc(title),
            &svg[i + 1..]
        ),
        None => svg,
    };
    Ok(Plot {
        id: id.to_owned(),
        file: file.to_owned(),
        svg,
    })
}

/// A legend entry's mark.
#[derive(Clone, Copy)]
pub enum Mark {
    /// A dot on a short horizontal interval (an estimate with its CI).
    DotInterval(RGBColor),
    Square(RGBColor),
    Bar(RGBColor),
    /// The dashed reference line.
    Dashed,
}

/// Legend entries left to right from (x, y) (vertical centre), each a mark and a label.
fn legend(root: &Root, (x, y): (i32, i32), items: &[(Mark, &str)]) -> Drawn {
    let mut x = x;
    for (mark, label) in items {
        let c = (x + 10, y);
        match *mark {
            Mark::DotInterval(col) => {
                root.draw(&PathElement::new(
                    vec![(c.0 - 9, y), (c.0 + 9, y)],
                    col.stroke_width(2),
                ))?;
                root.draw(&Circle::new(c, 4, col.filled()))?;
            }
            Mark::Square(col) => root.draw(&Rectangle::new(
                [(c.0 - 4, y - 4), (c.0 + 4, y + 4)],
                col.filled(),
            ))?,
            Mark::Bar(col) => root.draw(&Rectangle::new(
                [(c.0 - 8, y - 4), (c.0 + 8, y + 4)],
                col.filled(),
            ))?,
            Mark::Dashed => dashed(root, (c.0 - 10, y), (c.0 + 10, y))?,
        }
        text(
            root,
            &clean(label),
            (x + 26, y),
            &plain(12.0, INK, HPos::Left),
        )?;
        x += 26 + text_width(label, 12.0) as i32 + 22;
    }
    Ok(())
}

/// The dashed reference line (α = 2, g2 = 0, the 5 % chance rate), in any coordinates.
fn dashed<C: CoordTranslate>(area: &DrawingArea<SVGBackend, C>, from: C::From, to: C::From) -> Drawn
where
    C::From: Clone,
{
    area.draw(&DashedPathElement::new(
        vec![from, to],
        5,
        4,
        REF.stroke_width(1),
    ))?;
    Ok(())
}

/// Lines of small grey text, the first centred at `y`, `step` pixels apart.
fn notes(root: &Root, (x, y): (i32, i32), lines: &[String], px: f64, step: i32) -> Drawn {
    for (i, line) in lines.iter().enumerate() {
        text(
            root,
            &clean(line),
            (x, y + i as i32 * step),
            &plain(px, NOTE, HPos::Left),
        )?;
    }
    Ok(())
}
