//! The per-coordinate finish ([`super::finish_coord`]) for runs of coordinates, eight at a
//! time in vector lanes: one loop per step over the eight, with a branch-free exponential,
//! logarithm and cube root, so the compiler turns each step into vector instructions. A
//! coordinate the lanes do not take (not usable, a sample size of its own, zeros enough to
//! leave fewer than two nonzero entries, or an argument outside the range the branch-free
//! functions cover) is finished by the scalar code instead. The functions are within an ulp of
//! the C library's, so the statistics agree with the scalar ones to rounding.

use super::gauss::{self, NormalTerms};
use super::tail::EULER;
use super::{finish_coord, pass1_kind, CoordKind, Stat};
use crate::engine::accum::{CoordAcc, MeanAcc};
use crate::engine::ln::ln_pos;

const LANES: usize = 8;
type Lanes = [f64; LANES];

/// Largest |x| [`exp_mid`] takes: e^x is a normal f64 well inside the exponent's range.
pub(crate) const EXP_MAX: f64 = 700.0;

/// From this y on, `gauss::chi2_2_sf` is 0 (its underflow cut, ln y - y < -709.78, holds).
const CHI2_CUT: f64 = 717.0;

/// `gauss::chi2_2_sf(2y)`, and whether the lanes could take y (not between [`EXP_MAX`] and
/// [`CHI2_CUT`], where e^-y is subnormal).
#[inline(always)]
fn chi2_2_sf_half(y: f64) -> (f64, bool) {
    let p = if y >= CHI2_CUT {
        0.0
    } else {
        exp_mid(-y.min(EXP_MAX))
    };
    (p, !(y > EXP_MAX && y < CHI2_CUT))
}

// fdlibm `e_exp.c` (Sun Microsystems, 1993; musl's `exp.c` has the same), kept verbatim.
#[allow(clippy::excessive_precision)]
const EXP_P: [f64; 5] = [
    1.666_666_666_666_660_190_37e-01,
    -2.777_777_777_701_559_338_42e-03,
    6.613_756_321_437_934_361_17e-05,
    -1.653_390_220_546_525_153_90e-06,
    4.138_136_797_057_238_460_39e-08,
];

/// e^x for |x| ≤ [`EXP_MAX`]: fdlibm's `e_exp.c` as musl and the libm crate have it, without
/// its branches, so the libm crate's bits (under 1 ulp). x = k ln 2 + r with |r| ≤ ln 2 / 2
/// (k = 0 from |x| ≤ ln 2 / 2 down, and 1 + x below 2^-28), e^r from its rational
/// approximation, times 2^k through the exponent bits. `fits::erfc` relies on the same bits.
#[inline(always)]
pub(crate) fn exp_mid(x: f64) -> f64 {
    use crate::engine::ln::{LN2_HI, LN2_LO};
    let hx = (x.to_bits() >> 32) as u32 & 0x7fff_ffff;
    let k = if hx > 0x3fd6_2e42 {
        (x * std::f64::consts::LOG2_E + 0.5f64.copysign(x)) as i64
    } else {
        0
    };
    let kf = k as f64;
    let hi = x - kf * LN2_HI;
    let lo = kf * LN2_LO;
    let r = hi - lo;
    let t = r * r;
    let p = EXP_P;
    let c = r - t * (p[0] + t * (p[1] + t * (p[2] + t * (p[3] + t * p[4]))));
    let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
    let y = if hx <= 0x3e30_0000 { 1.0 + x } else { y };
    f64::from_bits((y.to_bits() as i64).wrapping_add(k << 52) as u64)
}

// musl `cbrt.c` (from FreeBSD's s_cbrt.c, Bruce D. Evans), kept verbatim.
const CBRT_B1: u32 = 715_094_163;
#[allow(clippy::excessive_precision)]
const CBRT_P: [f64; 5] = [
    1.875_951_824_271_770_096_43,
    -1.884_979_795_433_771_698_75,
    1.621_429_720_105_354_466_140,
    -0.758_397_934_778_766_047_437,
    0.145_996_192_886_612_446_982,
];

/// ∛x for a normal x (either sign), musl's `cbrt` without its branches (under 0.667 ulp): a
/// cube root of the bits good to 5 bits, a polynomial step to 23 bits, rounding to 21 bits
/// and one Newton step.
#[inline(always)]
fn cbrt_normal(x: f64) -> f64 {
    let bits = x.to_bits();
    let hx = (bits >> 32) as u32 & 0x7fff_ffff;
    let hx = hx / 3 + CBRT_B1;
    let t = f64::from_bits((bits & (1 << 63)) | (hx as u64) << 32);
    let r = (t * t) * (t / x);
    let p = CBRT_P;
    let t = t * ((p[0] + r * (p[1] + r * p[2])) + ((r * r) * r) * (p[3] + r * p[4]));
    let t = f64::from_bits((t.to_bits() + 0x8000_0000) & 0xffff_ffff_c000_0000);
    let s = t * t;
    let r = x / s;
    let w = t + t;
    let r = (r - t) / (w + r);
    t + t * r
}

/// Whether x is a normal f64 (not zero, subnormal, infinite or NaN).
#[inline(always)]
fn normal(x: f64) -> bool {
    let a = x.abs();
    (f64::MIN_POSITIVE..f64::INFINITY).contains(&a)
}

/// One lane group's inputs, gathered from the accumulators.
#[derive(Default)]
struct Inputs {
    n: Lanes,
    shift: Lanes,
    s: [Lanes; 4],
    nz: Lanes,
    sl: Lanes,
    sl2: Lanes,
    /// Block sums: Σ ln|u|, count of nonzero u, Σ ln|Y_b|, count of counted blocks, Σ ln m_b.
    sx: Lanes,
    nx: Lanes,
    sy: Lanes,
    ny: Lanes,
    sm: Lanes,
}

/// [`super::finish_coord`] of eight usable coordinates with the tests' sample size
/// `terms.n()` and at least two nonzero entries: the core statistics, whether each lane's
/// log-moment estimate was clamped, and whether each lane's arguments stayed where the
/// branch-free functions hold (a lane that did not is finished again by the scalar code).
#[inline(always)]
fn usable(
    v: &Inputs,
    terms: &NormalTerms,
) -> ([Lanes; Stat::CORE.len()], [bool; LANES], [bool; LANES]) {
    use std::f64::consts::PI;
    let mut out = [[f64::NAN; LANES]; Stat::CORE.len()];
    let mut clamped = [false; LANES];
    let mut ok = [true; LANES];
    let n = terms.n();
    let (skew_scale, alpha_s, delta) = terms.skew_terms();
    let (e, sd_b2, a, term1, x_scale, z_scale) = terms.kurt_terms();
    let cube = 1.0 - 2.0 / a;
    for i in 0..LANES {
        let [s1, s2, s3, s4] = [v.s[0][i], v.s[1][i], v.s[2][i], v.s[3][i]];
        let (m2, m3, m4) = gauss::central_moments(n, s1, s2, s3, s4);
        let g1 = gauss::skew(m2, m3);
        let g2 = gauss::kurt(m2, m4);
        let jb = n / 6.0 * (g1 * g1 + g2 * g2 / 4.0);
        // skewtest (a zero skewness takes scipy's y = 1 in the scalar code).
        let y = g1 * skew_scale;
        let ya = y / alpha_s;
        let arg = ya + (ya * ya + 1.0).sqrt();
        let zs = delta * ln_pos(arg);
        // kurtosistest: the signed cube root is the cube root of the signed value.
        let x = (g2 + 3.0 - e) / sd_b2;
        let denom = 1.0 + x * x_scale;
        let q = cube / denom;
        let zk = (term1 - cbrt_normal(q)) / z_scale;
        let k2 = zs * zs + zk * zk;
        let (jb_p, jb_ok) = chi2_2_sf_half(jb / 2.0);
        let (k2_p, k2_ok) = chi2_2_sf_half(k2 / 2.0);
        // Log-moment estimate.
        let nz = v.nz[i];
        let mean = v.sl[i] / nz;
        let var = ((v.sl2[i] - v.sl[i] * mean) / (nz - 1.0)).max(0.0);
        let open = var > PI * PI / 8.0;
        let alpha_logm = if open {
            1.0 / (6.0 / (PI * PI) * var - 0.5).sqrt()
        } else {
            2.0
        };
        let scale_arg = mean - EULER * (1.0 / alpha_logm - 1.0);
        // Block-sum estimate, `BlockSums::inv_alpha`.
        let (sx, nx, sy, ny, sm) = (v.sx[i], v.nx[i], v.sy[i], v.ny[i], v.sm[i]);
        let inv = (sy / ny - sx / nx) / (sm / ny);
        let inv = if (ny > 0.0) & (nx > 0.0) & (sm > 0.0) {
            inv
        } else {
            f64::NAN
        };
        ok[i] = (y != 0.0)
            & normal(arg)
            & normal(q)
            & jb_ok
            & k2_ok
            & (scale_arg.abs() <= EXP_MAX)
            & (v.shift[i] + s1 / n).is_finite();
        let cols = [
            (Stat::N, n),
            (Stat::Mean, v.shift[i] + s1 / n),
            (Stat::Var, m2),
            (Stat::Skew, g1),
            (Stat::Kurt, g2),
            (Stat::Jb, jb),
            (Stat::JbP, jb_p),
            (Stat::K2, k2),
            (Stat::K2P, k2_p),
            (Stat::AlphaLogm, alpha_logm),
            (Stat::ScaleLogm, exp_mid(scale_arg)),
            (Stat::AlphaBlock, 1.0 / inv),
        ];
        for (s, value) in cols {
            out[s.index()][i] = value;
        }
        clamped[i] = !open;
    }
    (out, clamped, ok)
}

/// Finishes coordinates `0..means.len()` of a run into `cols` (one stretch per
/// [`Stat::CORE`] column) and `kinds` (kind, and whether the log-moment estimate was clamped),
/// the lanes' way where they take a coordinate and the scalar way elsewhere.
#[inline(always)]
fn finish_run_body(
    means: &[MeanAcc],
    shift: &[f64],
    coords: &[CoordAcc],
    terms: &NormalTerms,
    cols: &mut [&mut [f64]],
    kinds: &mut [(CoordKind, bool)],
) {
    let len = means.len();
    let mut v = Inputs::default();
    let mut lane = [false; LANES];
    for j0 in (0..len).step_by(LANES) {
        if j0 + LANES > len {
            for j in j0..len {
                let (coord, kind, clamped) = finish_coord(&means[j], shift[j], &coords[j], terms);
                for (col, v) in cols.iter_mut().zip(coord.0) {
                    col[j] = v;
                }
                kinds[j] = (kind, clamped);
            }
            break;
        }
        for (i, lane) in lane.iter_mut().enumerate() {
            let j = j0 + i;
            let (m, t) = (&coords[j].moments, &coords[j].tails);
            // The normality tests need n ≥ 8 (NaN below, in the scalar code).
            *lane = m.n as f64 == terms.n()
                && terms.n() >= 8.0
                && t.nz >= 2
                && pass1_kind(&means[j]) == CoordKind::Usable;
            v.n[i] = m.n as f64;
            v.shift[i] = shift[j];
            v.s[0][i] = m.s1;
            v.s[1][i] = m.s2;
            v.s[2][i] = m.s3;
            v.s[3][i] = m.s4;
            v.nz[i] = t.nz as f64;
            v.sl[i] = t.sl;
            v.sl2[i] = t.sl2;
            let b = t.block_sums();
            (v.sx[i], v.nx[i], v.sy[i], v.ny[i], v.sm[i]) = (b.sx, b.nx, b.sy, b.ny, b.sm);
        }
        let (mut out, clamped, ok) = usable(&v, terms);
        for i in 0..LANES {
            let j = j0 + i;
            // scipy's constant rule on the centred moments, as in the scalar code.
            let m2 = out[Stat::Var.index()][i];
            let mean = out[Stat::Mean.index()][i];
            if !(lane[i] && ok[i]) || m2 <= (f64::EPSILON * mean).powi(2) {
                let (coord, kind, clamped) = finish_coord(&means[j], shift[j], &coords[j], terms);
                for (col, v) in out.iter_mut().zip(coord.0) {
                    col[i] = v;
                }
                kinds[j] = (kind, clamped);
            } else {
                out[Stat::Nonfinite.index()][i] = means[j].nonfinite as f64;
                kinds[j] = (CoordKind::Usable, clamped[i]);
            }
        }
        // Whole lane groups into the columns, a vector store each.
        for (col, lanes) in cols.iter_mut().zip(&out) {
            col[j0..j0 + LANES].copy_from_slice(lanes);
        }
    }
}

multiversion! {
    /// [`finish_run_body`] in the widest vectors the processor has.
    pub(super) fn finish_run(means: &[MeanAcc], shift: &[f64], coords: &[CoordAcc], terms: &NormalTerms, cols: &mut [&mut [f64]], kinds: &mut [(CoordKind, bool)]) => finish_run_body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::accum::{MomentAcc, TailAcc};

    fn ulps(a: f64, b: f64) -> f64 {
        (a - b).abs() / (b.abs() * f64::EPSILON)
    }

    #[test]
    fn exp_is_within_an_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = -EXP_MAX;
        while x <= EXP_MAX {
            for d in [0.0, 1e-9, 0.3466, 0.3467] {
                let v = (x + d).min(EXP_MAX);
                worst = worst.max(ulps(exp_mid(v), v.exp()));
            }
            x += 0.0137;
        }
        for v in [
            0.0,
            -0.0,
            1e-300,
            -1e-20,
            2e-9,
            0.5 * std::f64::consts::LN_2,
        ] {
            worst = worst.max(ulps(exp_mid(v), v.exp()));
        }
        assert!(worst <= 1.0, "worst error {worst} ulp");
    }

    #[test]
    fn cbrt_is_within_an_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = f64::MIN_POSITIVE;
        while x < 1e300 {
            for t in [1.0, 1.1, 1.5, 2.0 - 1e-12, 2.7, 7.9] {
                for s in [1.0, -1.0] {
                    let v = s * x * t;
                    worst = worst.max(ulps(cbrt_normal(v), v.cbrt()));
                }
            }
            x *= 3.3;
        }
        assert!(worst <= 1.0, "worst error {worst} ulp");
        assert_eq!(cbrt_normal(27.0), 3.0);
        assert_eq!(cbrt_normal(-8.0), -2.0);
    }

    /// Coordinates of every kind the scalar code tells apart, and ordinary ones, through the
    /// lanes: each statistic within a few ulps of the scalar finish, kinds and clamps equal.
    #[test]
    fn lanes_agree_with_the_scalar_finish() {
        let k = 64u64;
        let terms = NormalTerms::new(k as f64);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut means, mut shift, mut coords) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..203 {
            let xs: Vec<f64> = (0..k)
                .map(|_| {
                    let u = uniform() - 0.5;
                    match j % 7 {
                        0 => u.powi(3) * 1e3,
                        1 => 0.25,
                        2 => (u * 8.0).round(),
                        3 => 1e6 + u,
                        4 if uniform() < 0.9 => 0.0,
                        5 => u * 1e-30,
                        _ => u / (uniform() + 1e-3),
                    }
                })
                .collect();
            let mut mean = MeanAcc::default();
            xs.iter().for_each(|&x| mean.push(x));
            let c = mean.mean();
            let mut acc = CoordAcc::default();
            let mut t = TailAcc::default();
            for (b, block) in xs.chunks(8).enumerate() {
                let mut y = 0.0;
                let (mut sx, mut m) = (0.0, 0.0f64);
                for &x in block {
                    let u = x - c;
                    acc.moments.push(u);
                    if u != 0.0 {
                        let l = u.abs().ln();
                        (t.nz, t.sl, t.sl2) = (t.nz + 1, t.sl + l, t.sl2 + l * l);
                        (sx, m) = (sx + l, m + 1.0);
                    }
                    y += u;
                }
                (t.nx, t.lx) = (t.nx + m as u64, t.lx + sx);
                if m >= 2.0 && y != 0.0 && b != 3 {
                    (t.ny, t.ly, t.lm) = (t.ny + 1, t.ly + y.abs().ln(), t.lm + m.ln());
                }
            }
            acc.tails = t;
            if j == 11 {
                acc.moments = MomentAcc {
                    n: k - 1,
                    ..acc.moments
                };
            }
            means.push(mean);
            shift.push(c);
            coords.push(acc);
        }
        let p = means.len();
        let core = Stat::CORE.len();
        let mut lanes = vec![vec![0.0; p]; core];
        let mut kinds = vec![(CoordKind::Usable, false); p];
        {
            let mut cols: Vec<&mut [f64]> = lanes.iter_mut().map(|c| c.as_mut_slice()).collect();
            finish_run(&means, &shift, &coords, &terms, &mut cols, &mut kinds);
        }
        let (mut taken, mut underflow) = (0, 0);
        for j in 0..p {
            let (want, kind, clamped) = finish_coord(&means[j], shift[j], &coords[j], &terms);
            assert_eq!(kinds[j], (kind, clamped), "coordinate {j}");
            taken += (kind == CoordKind::Usable) as usize;
            underflow += (kind == CoordKind::Usable && want.0[Stat::JbP.index()] == 0.0) as usize;
            for (s, w) in Stat::CORE.iter().zip(want.0) {
                // The lanes' exp, log and cube root are within an ulp of the C library's; the
                // kurtosis test's z subtracts the cube root from a number near it, which
                // magnifies that ulp, so 1e-12 relative or absolute.
                let got = lanes[s.index()][j];
                let close = got == w
                    || (got.is_nan() && w.is_nan())
                    || (got - w).abs() <= 1e-12 * w.abs().max(1.0);
                assert!(close, "coordinate {j} {}: {got} against {w}", s.name());
            }
        }
        assert!(taken > p / 2, "only {taken} usable coordinates");
        assert!(underflow > 0, "no p-value past the χ² cut");
    }
}
