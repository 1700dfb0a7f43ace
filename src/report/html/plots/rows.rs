//! The frame of a per-tensor row chart (the α and the normality-rejection plots): a title and a
//! legend above, one zebra-striped row per tensor in input order with its name on the left, a
//! value axis below (repeated above when the chart is tall) and notes under it.

use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use super::axis::{Tick, Ticked};
use super::{clean, legend, notes, plain, text, text_width, truncate, Mark, Root};
use super::{GRID, INK, ZEBRA};

/// Row-chart tensor labels longer than this are cut (the full name is in the table).
const LABEL_CHARS: usize = 36;
/// Charts with more rows than this repeat the tick labels above the rows.
const MANY_ROWS: usize = 20;
pub const WIDTH: u32 = 960;
const RIGHT: u32 = 24;
/// Below the rows: tick labels, then the axis label.
const AXIS_H: u32 = 44;
const NOTE_STEP: i32 = 16;

/// Chart coordinates: x the value, y the rows (row i centred at `Frame::y(i, 0)`).
pub type RowCoord = Cartesian2d<Ticked, Ticked>;
pub type RowChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, RowCoord>;
pub type RowArea<'b> = DrawingArea<SVGBackend<'b>, RowCoord>;

/// Geometry of a row chart.
pub struct Frame {
    labels: Vec<String>,
    label_w: u32,
    top: u32,
    /// Pixels per row, which is also one unit of the chart's y coordinate.
    row: u32,
}

impl Frame {
    pub fn new(names: &[&str]) -> Frame {
        let labels: Vec<String> = names
            .iter()
            .map(|n| truncate(&clean(n), LABEL_CHARS))
            .collect();
        let widest = labels
            .iter()
            .map(|l| text_width(l, 12.0))
            .fold(0.0, f64::max);
        let n = names.len().max(1) as u32;
        Frame {
            label_w: (widest + 32.0).clamp(84.0, 314.0) as u32,
            top: if names.len() > MANY_ROWS { 76 } else { 58 },
            // Rows of 24 px; few tensors get taller rows so the chart keeps some height.
            row: (120 / n).clamp(24, 40),
            labels,
        }
    }

    pub fn rows(&self) -> usize {
        self.labels.len()
    }

    fn bottom(&self) -> u32 {
        self.top + self.rows().max(1) as u32 * self.row
    }

    /// The picture's size with `notes` lines of notes under the axis.
    pub fn size(&self, notes: usize) -> (u32, u32) {
        (
            WIDTH,
            self.bottom() + AXIS_H + 14 + notes as u32 * NOTE_STEP as u32,
        )
    }

    /// Row `i`'s centre in chart coordinates, moved down by `px` pixels.
    pub fn y(&self, i: usize, px: f64) -> f64 {
        self.rows() as f64 - i as f64 - 0.5 - px / self.row as f64
    }

    /// Draws the frame and returns the chart to draw the rows' marks in: x spans `x` with
    /// `ticks`, y spans the rows (one unit per row).
    pub fn draw<'a, 'b>(
        &self,
        root: &'a Root<'b>,
        title: &str,
        items: &[(Mark, &str)],
        (x, ticks, xlabel): ((f64, f64), &[Tick], &str),
        notes_text: &[String],
    ) -> Result<RowChart<'a, 'b>, Box<dyn std::error::Error>> {
        let bold = super::font(15.0, INK, FontStyle::Bold, HPos::Left);
        text(root, &clean(title), (14, 18), &bold)?;
        legend(root, (14, 40), items)?;

        let many = self.rows() > MANY_ROWS;
        let (_, h) = root.dim_in_pixel();
        let rows = self.rows().max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .margin_top(self.top - if many { 20 } else { 0 })
            .margin_right(RIGHT)
            .margin_bottom(h - self.bottom() - 20)
            .y_label_area_size(self.label_w)
            .x_label_area_size(20)
            .top_x_label_area_size(if many { 20 } else { 0 })
            .build_cartesian_2d(
                Ticked::new(x.0, x.1, ticks.to_vec()),
                Ticked::new(
                    0.0,
                    rows,
                    self.labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (self.y(i, 0.0), l.clone()))
                        .collect(),
                ),
            )?;
        let bands = (0..self.rows()).filter(|i| i % 2 == 1).map(|i| {
            let y = self.y(i, 0.0);
            Rectangle::new([(x.0, y - 0.5), (x.1, y + 0.5)], ZEBRA.filled())
        });
        chart.draw_series(bands)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .bold_line_style(GRID.stroke_width(1))
            .axis_style(RGBColor(0x44, 0x44, 0x44).stroke_width(1))
            .x_label_style(plain(11.0, INK, HPos::Center))
            .y_label_style(plain(12.0, INK, HPos::Right))
            .draw()?;

        // The axis label is drawn here: plotters would repeat it above tall charts too.
        let mid = ((self.label_w + WIDTH - RIGHT) / 2) as i32;
        let axis_y = (self.bottom() + 34) as i32;
        text(
            root,
            &clean(xlabel),
            (mid, axis_y),
            &plain(12.0, RGBColor(0x33, 0x33, 0x33), HPos::Center),
        )?;
        notes(
            root,
            (self.label_w as i32, axis_y + 26),
            notes_text,
            12.0,
            NOTE_STEP,
        )?;
        Ok(chart)
    }
}
