//! How numbers, shapes and tensor names are written on the page and in its plots.

use std::collections::HashSet;

/// A float with `digits` decimals; NaN as "n/a", ±inf as "∞".
pub fn fmt_f(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.is_infinite() {
        if v > 0.0 { "∞" } else { "−∞" }.into()
    } else {
        format!("{v:.digits$}")
    }
}

/// A share as a percentage: whole percent, one decimal below 1 %; NaN as "n/a".
pub fn fmt_pct(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v > 0.0 && v < 0.01 {
        format!("{:.1} %", 100.0 * v)
    } else {
        format!("{:.0} %", 100.0 * v)
    }
}

/// An integer with thousands separators: 1234567 → "1,234,567".
pub fn fmt_int(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `{x} ({pct} %)` of `of`, or just `x` when `of` is 0.
pub fn fmt_share(x: u64, of: u64) -> String {
    if of == 0 {
        fmt_int(x)
    } else {
        format!("{} ({:.2} %)", fmt_int(x), 100.0 * x as f64 / of as f64)
    }
}

/// A tensor shape as `64×64` ("scalar" for none).
pub fn shape_str(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Tensor names as ids and file names: ASCII letters, digits, `_`, `-`, `.` (not leading),
/// everything else `_`; at most 80 characters; made unique with `-2`, `-3`, … (ignoring case,
/// for case-insensitive file systems).
pub fn unique_slugs<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .into_iter()
        .map(|n| {
            let base = sanitize(n);
            let mut s = base.clone();
            let mut k = 2;
            while !seen.insert(s.to_ascii_lowercase()) {
                s = format!("{base}-{k}");
                k += 1;
            }
            s
        })
        .collect()
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .take(80)
        .enumerate()
        .map(|(i, c)| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            '.' if i > 0 => c,
            _ => '_',
        })
        .collect();
    if s.is_empty() {
        "tensor".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_int(4810), "4,810");
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        assert_eq!(fmt_int(12), "12");
        assert_eq!(fmt_f(f64::NAN, 2), "n/a");
        assert_eq!(fmt_f(f64::NEG_INFINITY, 2), "−∞");
        assert_eq!(fmt_f(1.37649, 3), "1.376");
        assert_eq!(fmt_pct(0.0042), "0.4 %");
        assert_eq!(fmt_pct(0.92), "92 %");
        assert_eq!(fmt_share(719, 4810), "719 (14.95 %)");
        assert_eq!(shape_str(&[64, 10]), "64×10");
    }

    #[test]
    fn slugs_are_safe_and_unique() {
        assert_eq!(sanitize("fc0.weight"), "fc0.weight");
        assert_eq!(sanitize("a<b>&\"c"), "a_b___c");
        assert_eq!(sanitize(".hidden"), "_hidden");
        assert_eq!(sanitize(""), "tensor");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 80);
        assert_eq!(
            unique_slugs(["a<b", "a>b", "a_b", "A_B"]),
            vec!["a_b", "a_b-2", "a_b-3", "A_B-4"]
        );
    }
}
