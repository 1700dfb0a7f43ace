//! Finite-variance diagnostics in the spirit of Wu et al. (2021, arXiv 2109.09833), who argue
//! that gradient noise has finite variance: under a tail index below 2 the largest few values
//! keep carrying a fixed share of Σu² and the running variance keeps jumping as samples arrive.

/// Share of Σu² carried by the ⌈0.01·n⌉ values of largest |u|, from the sorted column: those
/// values sit at the two ends, so two cursors walking inwards find them without a second sort.
pub fn top1_share(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    let k = n.div_ceil(100);
    let total: f64 = sorted.iter().map(|u| u * u).sum();
    let (mut lo, mut hi) = (0, n);
    let mut top = 0.0;
    for _ in 0..k {
        let (a, b) = (sorted[lo] * sorted[lo], sorted[hi - 1] * sorted[hi - 1]);
        if a > b {
            top += a;
            lo += 1;
        } else {
            top += b;
            hi -= 1;
        }
    }
    top / total
}

/// Sample variance (ddof 1), two-pass on values shifted by the first one, so identical values
/// give exactly 0 (an unshifted mean of identical values can round away from them).
pub fn variance(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let shift = values[0];
    let mean = values.iter().map(|v| v - shift).sum::<f64>() / n;
    let ss: f64 = values.iter().map(|v| (v - shift - mean).powi(2)).sum();
    ss / (n - 1.0)
}

/// s²(all n samples) / s²(first ⌊n/2⌋ samples), both ddof 1, in sampling order. Near 1 when
/// the variance has settled; NaN below 4 samples; +∞ when the first half is constant.
pub fn var_ratio(values: &[f64], var_all: f64) -> f64 {
    let half = values.len() / 2;
    if half < 2 {
        return f64::NAN;
    }
    var_all / variance(&values[..half])
}
