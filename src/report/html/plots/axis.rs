//! Axis ticks and their labels. `plotters` would pick ticks itself; we pass them explicitly so
//! every axis ends on a labelled tick and labels print the decimals their step needs.

use std::ops::Range;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;

/// A tick: its position (in the axis' own, possibly transformed, coordinate) and its label.
pub type Tick = (f64, String);

/// A linear plotters axis over [lo, hi] that draws exactly `ticks`, with their labels, and
/// no light grid lines. (plotters' own `with_key_points` loses the label formatting of f64.)
#[derive(Clone)]
pub struct Ticked {
    range: Range<f64>,
    ticks: Vec<Tick>,
}

impl Ticked {
    pub fn new(lo: f64, hi: f64, ticks: Vec<Tick>) -> Ticked {
        Ticked {
            range: lo..hi,
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(v, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.iter().map(|t| t.0).collect()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for Ticked {
    fn format_ext(&self, v: &f64) -> String {
        label_at(&self.ticks, *v)
    }
}

/// A step of 1, 2 or 5 × 10^k giving at most about `max_ticks` intervals over `span`.
pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / max_ticks.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // 1e-9: a raw step of 2.0000000001 (float noise) is still a step of 2.
    let m = [1.0, 2.0, 5.0]
        .into_iter()
        .find(|m| raw / mag <= m + 1e-9)
        .unwrap_or(10.0);
    m * mag
}

/// Decimals needed to print multiples of `step` exactly (0 for whole steps).
fn decimals(step: f64) -> usize {
    (0..12)
        .find(|&d| {
            let s = step * 10f64.powi(d as i32);
            (s - s.round()).abs() < 1e-6 * s.abs().max(1.0)
        })
        .unwrap_or(12)
}

/// Multiples of `step` inside [lo, hi] (ends included up to rounding), at most 1000.
pub fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && step > 0.0 && hi >= lo) {
        return Vec::new();
    }
    let first = (lo / step - 1e-9).ceil();
    let last = (hi / step + 1e-9).floor();
    if last - first > 1000.0 {
        return Vec::new();
    }
    // Round to the step's decimals so 0.1 · 3 is 0.3, not 0.30000000000000004.
    let p = 10f64.powi(decimals(step) as i32);
    (first as i64..=last as i64)
        .map(|i| (i as f64 * step * p).round() / p + 0.0)
        .collect()
}

/// Ticks every `step` over [lo, hi], labelled with the decimals `step` needs.
pub fn labelled(lo: f64, hi: f64, step: f64) -> Vec<Tick> {
    ticks(lo, hi, step)
        .into_iter()
        .map(|v| (v, fmt_tick(v, step)))
        .collect()
}

/// A tick label with as many decimals as `step` needs; minus as U+2212.
pub fn fmt_tick(v: f64, step: f64) -> String {
    let s = format!("{:.*}", decimals(step), v);
    let s = if s.trim_start_matches(['-', '0', '.']).is_empty() {
        s.trim_start_matches('-').to_owned()
    } else {
        s
    };
    s.replace('-', "−")
}

/// A count axis for bars up to `tallest`: its top (with 5 % headroom, so the tallest bar does
/// not touch the frame, rounded up to a tick) and about four ticks, in k, M or G from 10 000.
pub fn count_axis(tallest: u64) -> (f64, Vec<Tick>) {
    let room = tallest.max(1) as f64 * 1.05;
    let step = nice_step(room, 4).max(1.0);
    let top = (room / step).ceil() * step;
    let unit = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(u, _)| top >= 10.0 * u);
    let ticks = ticks(0.0, top, step)
        .into_iter()
        .map(|v| {
            let label = match unit {
                Some(_) if v == 0.0 => "0".to_owned(),
                Some((u, suffix)) => format!("{}{suffix}", fmt_tick(v / u, step / u)),
                None => fmt_tick(v, step),
            };
            (v, label)
        })
        .collect();
    (top, ticks)
}

/// sign(x)·log10(1 + |x|): linear near 0, logarithmic far out; 0, NaN and ±inf pass through.
/// Branch-free, with the engine's logarithm rather than the C library's `log1p` (a call per
/// value), so a histogram's pass over a million values runs in vector lanes; 1 + |x| is
/// rounded first, which moves values below 1e-8 by less than a pixel.
#[inline]
pub fn symlog(x: f64) -> f64 {
    let a = x.abs();
    let l = (crate::engine::ln::ln_pos(1.0 + a) / std::f64::consts::LN_10).copysign(x);
    if (a != 0.0) & (a < f64::INFINITY) {
        l
    } else {
        x
    }
}

/// Ticks of a symlog axis reaching `hi` (untransformed): −1, 0, 1, 10, 100, 1k, …
pub fn symlog_ticks(hi: f64) -> Vec<Tick> {
    let mut out = vec![(-1.0, "−1".to_owned()), (0.0, "0".to_owned())];
    let mut v = 1.0f64;
    // 1e-9: hi = 100 computed as 99.99999999 still gets its 100 tick.
    while v <= hi * (1.0 + 1e-9) {
        let label = match v {
            v if v >= 1e9 => format!("{}G", v / 1e9),
            v if v >= 1e6 => format!("{}M", v / 1e6),
            v if v >= 1e3 => format!("{}k", v / 1e3),
            v => format!("{v}"),
        };
        out.push((v, label));
        v *= 10.0;
    }
    out.into_iter().map(|(v, l)| (symlog(v), l)).collect()
}

/// The label of the tick nearest `v` (plotters asks for labels by position).
pub fn label_at(ticks: &[Tick], v: f64) -> String {
    ticks
        .iter()
        .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()))
        .map(|t| t.1.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_are_round_and_cover_the_range() {
        let nice = |lo: f64, hi: f64, n| ticks(lo, hi, nice_step(hi - lo, n));
        assert_eq!(nice(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice(0.5, 2.5, 8), vec![0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(nice(0.0, 4810.0, 4), vec![0.0, 2000.0, 4000.0]);
        assert_eq!(nice(-3.0, 7.0, 5), vec![-2.0, 0.0, 2.0, 4.0, 6.0]);
        assert_eq!(nice(0.1, 0.35, 5), vec![0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
        assert_eq!(nice(1.0, 1.0, 5), vec![1.0]);
        assert!(nice(f64::NAN, 1.0, 5).is_empty());
        assert!(nice(0.0, f64::INFINITY, 5).is_empty());
        assert_eq!(ticks(0.0, 0.3, 0.1)[3], 0.3);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(-1.5, 0.5), "−1.5");
        assert_eq!(fmt_tick(-0.0, 0.5), "0.0");
        let labels =
            |tallest| -> Vec<String> { count_axis(tallest).1.into_iter().map(|t| t.1).collect() };
        assert_eq!(count_axis(4810).0, 6000.0);
        assert_eq!(labels(3700), ["0", "1000", "2000", "3000", "4000"]);
        assert_eq!(labels(38000), ["0", "10k", "20k", "30k", "40k"]);
        assert_eq!(labels(19_000_000), ["0", "5M", "10M", "15M", "20M"]);
        assert_eq!(labels(2), ["0", "1", "2", "3"]);
        assert_eq!(labels(0), ["0", "1", "2"]);
    }

    #[test]
    fn symlog_is_odd_and_passes_specials() {
        assert_eq!(symlog(0.0), 0.0);
        assert!((symlog(9.0) - 1.0).abs() < 1e-12);
        assert!((symlog(-99.0) + 2.0).abs() < 1e-12);
        assert!(symlog(f64::NAN).is_nan());
        assert_eq!(symlog(f64::INFINITY), f64::INFINITY);
        let t = symlog_ticks(2500.0);
        let labels: Vec<&str> = t.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["−1", "0", "1", "10", "100", "1k"]);
        assert_eq!(label_at(&t, symlog(10.2)), "10");
    }
}
