//! erfc for the normal tails of the per-point fits, eight sorted points at a time: fdlibm's
//! `erfc` (FreeBSD `s_erf.c`, as the libm crate has it) and its `exp` (`lanes::exp_mid`),
//! operation for operation, so the libm crate's bits (a test holds them to it), but without
//! their branches, so a group of eight points whose arguments share a range runs in vector
//! registers. A fit's points are sorted, so nearly every group does; the others take the libm
//! crate's `erfc`.

// fdlibm's constants as published, which round to the intended doubles.
#![allow(clippy::excessive_precision)]

use crate::stats::lanes::exp_mid;

/// erf on [0, 0.84375): R(z), from z⁰ up.
const PP: [f64; 5] = [
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
];

/// S(z) - 1, from z¹ up.
const QQ: [f64; 5] = [
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
];

/// erf(1) rounded to single precision.
const ERX: f64 = 8.45062911510467529297e-01;

/// erf on [0.84375, 1.25): P(s), s = x - 1, from s⁰ up.
const PA: [f64; 7] = [
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
];

/// Q(s) - 1, from s¹ up.
const QA: [f64; 6] = [
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
];

/// erfc on [1.25, 1/0.35): R(s), s = 1/x², from s⁰ up.
const RA: [f64; 8] = [
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e+01,
    -6.23753324503260060396e+01,
    -1.62396669462573470355e+02,
    -1.84605092906711035994e+02,
    -8.12874355063065934246e+01,
    -9.81432934416914548592e+00,
];

/// S(s) - 1, from s¹ up.
const SA: [f64; 8] = [
    1.96512716674392571292e+01,
    1.37657754143519042600e+02,
    4.34565877475229228821e+02,
    6.45387271733267880336e+02,
    4.29008140027567833386e+02,
    1.08635005541779435134e+02,
    6.57024977031928170135e+00,
    -6.04244152148580987438e-02,
];

/// erfc on [1/0.35, 28): R(s), from s⁰ up.
const RB: [f64; 7] = [
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e+01,
    -1.60636384855821916062e+02,
    -6.37566443368389627722e+02,
    -1.02509513161107724954e+03,
    -4.83519191608651397019e+02,
];

/// S(s) - 1, from s¹ up.
const SB: [f64; 7] = [
    3.03380607434824582924e+01,
    3.25792512996573918826e+02,
    1.53672958608443695994e+03,
    3.19985821950859553908e+03,
    2.55305040643316442583e+03,
    4.74528541206955367215e+02,
    -2.24409524465858183362e+01,
];

/// Horner's rule from the highest coefficient down, as fdlibm nests it: c₀ + x(c₁ + x(…)).
#[inline(always)]
fn horner<const N: usize>(x: f64, c: &[f64; N]) -> f64 {
    let mut p = c[N - 1];
    for &k in c[..N - 1].iter().rev() {
        p = k + x * p;
    }
    p
}

/// 1 + x·(c₁ + x(…)), fdlibm's denominators.
#[inline(always)]
fn one_plus<const N: usize>(x: f64, c: &[f64; N]) -> f64 {
    1.0 + x * horner(x, c)
}

/// fdlibm's ranges of x ≥ 0 by the high word of x, each with its own formula.
const NEAR: u32 = 0x3feb_0000; // 0.84375
const MID: u32 = 0x3ff4_0000; // 1.25
const FAR: u32 = 0x4006_db6d; // 1/0.35
const END: u32 = 0x403a_0000; // 26: below, e^(-x²) stays far from subnormal

/// erfc(x) for x ≥ 0 in [0, 0.84375): 1 - erf(x), erf(x) = x + x·R(x²)/S(x²).
#[inline(always)]
fn near(x: f64) -> f64 {
    let ix = (x.to_bits() >> 32) as u32;
    let z = x * x;
    let y = horner(z, &PP) / one_plus(z, &QQ);
    let v = if ix < 0x3fd0_0000 {
        1.0 - (x + x * y)
    } else {
        0.5 - (x - 0.5 + x * y)
    };
    if ix < 0x3c70_0000 {
        1.0 - x
    } else {
        v
    }
}

/// erfc(x) on [0.84375, 1.25): 1 - erx - P(s)/Q(s), s = x - 1.
#[inline(always)]
fn mid(x: f64) -> f64 {
    let s = x - 1.0;
    1.0 - ERX - horner(s, &PA) / one_plus(s, &QA)
}

/// erfc(x) on [1.25, 26): e^(-x² - 0.5625 + R/S) / x with s = 1/x², e^(-x²) split at z (x
/// cut to its high word, so that z² is exact).
#[inline(always)]
fn far<const N: usize, const M: usize>(x: f64, r: &[f64; N], s: &[f64; M]) -> f64 {
    let t = 1.0 / (x * x);
    let ratio = horner(t, r) / one_plus(t, s);
    let z = f64::from_bits(x.to_bits() & 0xffff_ffff_0000_0000);
    exp_mid(-z * z - 0.5625) * exp_mid((z - x) * (z + x) + ratio) / x
}

/// erfc of eight arguments into `out`: by one formula for all eight where they share a range,
/// else by the libm crate's `erfc` one by one (taking every formula and selecting was slower
/// than that for the few groups that straddle a boundary).
#[inline(always)]
pub fn erfc8(x: &[f64; 8], out: &mut [f64; 8]) {
    let hi = |v: f64| (v.to_bits() >> 32) as u32;
    let (mut lo_w, mut hi_w) = (u32::MAX, 0);
    for &v in x {
        // Negative or NaN arguments have high words above END, so they fall to libm.
        lo_w = lo_w.min(hi(v));
        hi_w = hi_w.max(hi(v));
    }
    let range = |a: u32, b: u32| a <= lo_w && hi_w < b;
    if range(0, NEAR) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = near(v);
        }
    } else if range(NEAR, MID) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = mid(v);
        }
    } else if range(MID, FAR) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = far(v, &RA, &SA);
        }
    } else if range(FAR, END) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = far(v, &RB, &SB);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = libm::erfc(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    /// Bit for bit the libm crate's erfc, one range at a time (every range, its edges, spread
    /// bit patterns) and in mixed groups.
    #[test]
    fn erfc8_is_libms_bit_for_bit() {
        let edges = [
            0.0,
            1e-300,
            2f64.powi(-57),
            2f64.powi(-56),
            0.25,
            0.84375,
            1.25,
            1.0 / 0.35,
            6.0,
            25.99,
            26.0,
            27.9,
            28.0,
            40.0,
        ];
        let mut xs: Vec<f64> = Vec::new();
        for &e in &edges {
            for d in [-2i64, -1, 0, 1, 2] {
                xs.push(f64::from_bits((f64::to_bits(e) as i64 + d).max(0) as u64));
            }
        }
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..100_000 {
            xs.push(rng.random::<f64>() * 30.0);
            xs.push(f64::from_bits(
                rng.random_range(0x3c00_0000_0000_0000u64..0x403a_0000_0000_0000),
            ));
        }
        xs.extend([f64::NAN, f64::INFINITY, -1.0, -0.0]);
        // Sorted, most groups share a range; as drawn, most are mixed.
        let mut sorted = xs.clone();
        sorted.sort_by(f64::total_cmp);
        let (mut shared, mut groups) = (0, 0);
        for v in [sorted, xs] {
            for g in v.chunks_exact(8) {
                let x: [f64; 8] = g.try_into().unwrap();
                let mut out = [0.0; 8];
                erfc8(&x, &mut out);
                for (o, &v) in out.iter().zip(&x) {
                    let want = libm::erfc(v);
                    assert!(
                        o.to_bits() == want.to_bits() || o.is_nan() && want.is_nan(),
                        "erfc({v:e}): {o:e} vs {want:e}"
                    );
                }
                let h = x.map(|v| (v.to_bits() >> 32) as u32);
                let (a, b) = (h.iter().min().unwrap(), h.iter().max().unwrap());
                let ranges = [(0, NEAR), (NEAR, MID), (MID, FAR), (FAR, END)];
                shared += ranges.iter().any(|&(l, u)| l <= *a && *b < u) as usize;
                groups += 1;
            }
        }
        // The vector path ran: groups that share a range are most of the sorted half.
        assert!(shared > groups / 3, "{shared} of {groups}");
    }
}
