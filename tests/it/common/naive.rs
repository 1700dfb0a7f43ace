//! A deliberately plain f64 reimplementation of gradtail's documented per-coordinate and flat
//! statistics on a dense (K, P) matrix, written from the README's definitions (not from the
//! engines), to check the engines on inputs that have no outside reference: non-finite
//! samples, zeros, constant columns, awkward shapes. It calls nothing of the crate: the
//! normality tests are transcribed from scipy's source here.

/// Euler–Mascheroni constant.
const EULER: f64 = 0.577_215_664_901_532_9;

/// χ² survival with 2 degrees of freedom, exp(−x/2), as scipy's `chi2.sf` computes it through
/// cephes `igamc`, which returns 0 once x/2 exceeds MAXLOG = ln(f64::MAX).
fn chi2_2_sf(x: f64) -> f64 {
    if x / 2.0 > 709.782712893384 {
        0.0
    } else {
        (-x / 2.0).exp()
    }
}

/// scipy.stats.normaltest, transcribed from scipy's `skewtest` and `kurtosistest`
/// (D'Agostino 1970; Anscombe & Glynn 1983): K² = Z_s² + Z_k², χ²₂ survival; NaN below n = 8.
fn normaltest(n: f64, g1: f64, g2: f64) -> (f64, f64) {
    if n < 8.0 {
        return (f64::NAN, f64::NAN);
    }
    let y = g1 * (((n + 1.0) * (n + 3.0)) / (6.0 * (n - 2.0))).sqrt();
    let beta2 = 3.0 * (n * n + 27.0 * n - 70.0) * (n + 1.0) * (n + 3.0)
        / ((n - 2.0) * (n + 5.0) * (n + 7.0) * (n + 9.0));
    let w2 = -1.0 + (2.0 * (beta2 - 1.0)).sqrt();
    let delta = 1.0 / (0.5 * w2.ln()).sqrt();
    let alpha = (2.0 / (w2 - 1.0)).sqrt();
    let y = if y == 0.0 { 1.0 } else { y };
    let zs = delta * (y / alpha + ((y / alpha).powi(2) + 1.0).sqrt()).ln();
    let b2 = g2 + 3.0;
    let e = 3.0 * (n - 1.0) / (n + 1.0);
    let varb2 = 24.0 * n * (n - 2.0) * (n - 3.0) / ((n + 1.0) * (n + 1.0) * (n + 3.0) * (n + 5.0));
    let x = (b2 - e) / varb2.sqrt();
    let sqrtbeta1 = 6.0 * (n * n - 5.0 * n + 2.0) / ((n + 7.0) * (n + 9.0))
        * ((6.0 * (n + 3.0) * (n + 5.0)) / (n * (n - 2.0) * (n - 3.0))).sqrt();
    let a =
        6.0 + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + (1.0 + 4.0 / (sqrtbeta1 * sqrtbeta1)).sqrt());
    let term1 = 1.0 - 2.0 / (9.0 * a);
    let denom = 1.0 + x * (2.0 / (a - 4.0)).sqrt();
    let term2 = if denom == 0.0 {
        f64::NAN
    } else {
        denom.signum() * ((1.0 - 2.0 / a) / denom.abs()).powf(1.0 / 3.0)
    };
    let zk = (term1 - term2) / (2.0 / (9.0 * a)).sqrt();
    let k2 = zs * zs + zk * zk;
    (k2, chi2_2_sf(k2))
}

pub struct Naive {
    /// One row per coordinate, columns in `gradtail::stats::COORD_STATS` order.
    pub coords: Vec<[f64; 13]>,
    pub alpha_flat: f64,
}

pub fn compute(x: &[f64], k: usize, p: usize, k1: usize, centre: Option<&[f64]>) -> Naive {
    let nan = f64::NAN;
    let mut coords = Vec::new();
    let mut us = vec![f64::NAN; k * p];
    for j in 0..p {
        let col: Vec<f64> = (0..k).map(|r| x[r * p + j]).collect();
        let fin: Vec<f64> = col.iter().copied().filter(|v| v.is_finite()).collect();
        let n = fin.len() as f64;
        let mean = fin.iter().sum::<f64>() / n;
        let cm = |e: i32| fin.iter().map(|v| (v - mean).powi(e)).sum::<f64>() / n;
        let (m2, m3, m4) = (cm(2), cm(3), cm(4));
        // Fewer than 4 finite samples, all equal, or scipy's m2 ≤ (eps·mean)²: NaN statistics.
        let constant = fin.len() < 4
            || fin.iter().all(|&v| v == fin[0])
            || m2 <= (f64::EPSILON * mean).powi(2);
        let c = centre.map_or(mean, |c| c[j]);
        let mut row = [nan; 13];
        row[0] = n;
        row[1] = k as f64 - n;
        row[2] = mean;
        row[3] = if fin.is_empty() {
            nan
        } else if fin.iter().all(|&v| v == fin[0]) {
            0.0
        } else {
            m2
        };
        for r in 0..k {
            if col[r].is_finite() {
                us[r * p + j] = col[r] - c;
            }
        }
        if !constant {
            let g1 = m3 / m2.powf(1.5);
            let g2 = m4 / (m2 * m2) - 3.0;
            let jb = n / 6.0 * (g1 * g1 + g2 * g2 / 4.0);
            let (k2, k2p) = normaltest(n, g1, g2);
            let jbp = chi2_2_sf(jb);
            let logs: Vec<f64> = fin
                .iter()
                .map(|v| v - c)
                .filter(|u| *u != 0.0)
                .map(|u| u.abs().ln())
                .collect();
            let (al, cl) = if logs.len() < 2 {
                (nan, nan)
            } else {
                let lm = logs.iter().sum::<f64>() / logs.len() as f64;
                let lv =
                    logs.iter().map(|l| (l - lm).powi(2)).sum::<f64>() / (logs.len() as f64 - 1.0);
                let a = if lv > std::f64::consts::PI.powi(2) / 8.0 {
                    (6.0 / std::f64::consts::PI.powi(2) * lv - 0.5).powf(-0.5)
                } else {
                    2.0
                };
                (a, (lm - EULER * (1.0 / a - 1.0)).exp())
            };
            // Block sums with the zeros rule: a block of m ≥ 2 nonzero entries and a nonzero
            // sum counts with ln|Y| and ln m; every nonzero entry counts with ln|u|.
            let (mut ly, mut ny, mut lm, mut lx, mut nx) = (0.0, 0, 0.0, 0.0, 0);
            for b in 0..k / k1 {
                let blk = &col[b * k1..(b + 1) * k1];
                if blk.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                let y: f64 = blk.iter().map(|v| v - c).sum();
                let m = blk.iter().filter(|v| **v - c != 0.0).count();
                if y != 0.0 && m >= 2 {
                    ly += y.abs().ln();
                    lm += (m as f64).ln();
                    ny += 1;
                }
                for u in blk.iter().map(|v| v - c).filter(|u| *u != 0.0) {
                    lx += u.abs().ln();
                    nx += 1;
                }
            }
            let ab = if ny == 0 || nx == 0 {
                nan
            } else {
                1.0 / ((ly / ny as f64 - lx / nx as f64) / (lm / ny as f64))
            };
            row[4..13].copy_from_slice(&[g1, g2, jb, jbp, k2, k2p, al, cl, ab]);
        }
        coords.push(row);
    }
    let eps = 2.220446049250313e-16;
    let m = (1..=(k * p).isqrt())
        .filter(|d| (k * p).is_multiple_of(*d))
        .max()
        .unwrap_or(1);
    let ys: Vec<f64> = us
        .chunks(m)
        .map(|b| b.iter().filter(|u| !u.is_nan()).sum::<f64>())
        .collect();
    let fin: Vec<f64> = us.iter().copied().filter(|u| !u.is_nan()).collect();
    let lxm = fin.iter().map(|u| (u.abs() + eps).ln()).sum::<f64>() / fin.len() as f64;
    let lym = ys.iter().map(|y| (y.abs() + eps).ln()).sum::<f64>() / ys.len() as f64;
    Naive {
        coords,
        alpha_flat: if m < 2 {
            f64::NAN
        } else {
            1.0 / ((lym - lxm) / (m as f64).ln())
        },
    }
}
