//! Branch-free natural logarithms, so the CPU engine's per-element log (its largest cost) runs
//! over a whole row in a loop the compiler can vectorise; glibc's `log` is a call per element.
//!
//! [`ln_pos`] is fdlibm's `__ieee754_log` (Sun Microsystems, 1993; also musl `log.c`) in f64,
//! accurate to under 1 ulp. [`ln_abs_entries`], for the samples themselves, takes the mantissa's
//! logarithm in f32 (Cephes' `logf` polynomial, S. L. Moshier) and adds the exponent's in f64:
//! no division, twice the lanes of a vector, and an absolute error under 5e-8, which is the
//! precision a float32 sample's logarithm has to begin with (its rounding moves ln|x| by up to
//! 6e-8). The statistics built on these logs are means over many samples, whose sampling
//! error is orders of magnitude larger. The AVX-512 kernel takes the mantissa's logarithm by
//! the table-driven reduction of ARM's optimized-routines `logf` (Szabolcs Nagy, 2017) instead,
//! within the same bound: a 16-entry table of 1/c and ln c takes the mantissa to within 3 % of
//! 1, where four terms of ln(1 + r) suffice.

// fdlibm's constants, kept verbatim as published (they round to the intended doubles).
#[allow(clippy::excessive_precision)]
pub(crate) const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
#[allow(clippy::excessive_precision)]
pub(crate) const LG1: f64 = 6.666_666_666_666_735_130e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LG2: f64 = 3.999_999_999_940_941_908e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LG3: f64 = 2.857_142_874_366_239_149e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LG4: f64 = 2.222_219_843_214_978_396e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LG5: f64 = 1.818_357_216_161_805_012e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LG6: f64 = 1.531_383_769_920_937_332e-01;
#[allow(clippy::excessive_precision)]
pub(crate) const LG7: f64 = 1.479_819_860_511_658_591e-01;

/// Cephes `logf`'s polynomial: ln(1 + f) = f - f²/2 + f³ P(f) for f in [√½ - 1, √2 - 1],
/// P's coefficients from the highest power down.
#[allow(clippy::excessive_precision)]
pub(crate) const LNF_P: [f32; 9] = [
    7.037_683_629_2e-2,
    -1.151_461_031_0e-1,
    1.167_699_874_0e-1,
    -1.242_014_084_6e-1,
    1.424_932_278_7e-1,
    -1.666_805_766_5e-1,
    2.000_071_476_5e-1,
    -2.499_999_399_3e-1,
    3.333_333_117_4e-1,
];

/// Start of the reduced range: x = 2^k z with z in [LNF_OFF, 2 LNF_OFF) as bit patterns
/// (0.699 to 1.398), split into 16 slices by the top four bits of z's offset from LNF_OFF.
pub(crate) const LNF_OFF: u32 = 0x3f33_0000;

/// Per slice i: 1/c rounded to f32, for c the slice's midpoint (1 for the slice holding 1, so
/// that ln z near 1 needs no table term); then r = z/c - 1 lies within ±0.0297. The test
/// `the_log_table_is_its_definition` recomputes both tables.
#[allow(clippy::excessive_precision)]
pub(crate) const LNF_INVC: [f32; 16] = [
    1.398_907_1,
    1.340_314_1,
    1.286_432_1,
    1.236_715,
    1.190_697_7,
    1.147_982_1,
    1.108_225_1,
    1.071_129_7,
    1.036_437_3,
    1.0,
    0.948_148_13,
    0.895_104_9,
    0.847_682_1,
    0.805_031_4,
    0.766_467_1,
    0.731_428_56,
];

/// Per slice: ln c = -ln(LNF_INVC[i]), of the rounded 1/c, rounded to f32 (error ≤ 1.5e-8).
#[allow(clippy::excessive_precision)]
pub(crate) const LNF_LOGC: [f32; 16] = [
    -0.335_691_27,
    -0.292_904_02,
    -0.251_872_6,
    -0.212_458_64,
    -0.174_539_42,
    -0.138_005_72,
    -0.102_759_734,
    -0.068_713_866,
    -0.035_789_132,
    0.0,
    0.053_244_53,
    0.110_814_38,
    0.165_249_57,
    0.216_873_97,
    0.265_963_52,
    0.312_755_73,
];

/// ln x for x a normal f32 or zero, to an absolute error under 5e-8: the mantissa's log in
/// f32, the exponent's added in f64. Zero gives -127 ln 2, finite, which callers mask.
/// `tile::avx512::ln_entries::<false>` is this, operation for operation.
#[inline(always)]
pub fn ln_f32(x: f32) -> f64 {
    let bits = x.to_bits();
    let mut e = (bits >> 23) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let f = m - 1.0;
    let z = f * f;
    let mut p = LNF_P[0];
    for c in &LNF_P[1..] {
        p = p.mul_add(f, *c);
    }
    let y = (f * z).mul_add(p, -(0.5 * z));
    e as f64 * std::f64::consts::LN_2 + (f + y) as f64
}

/// [`ln_f32`] by table, as the AVX-512 kernel takes it (`tile::avx512::ln_entries::<true>` is
/// this, operation for operation): ln(z/c) + ln c in f32, with ln(1 + r) to its r⁴ term (whose
/// remainder is under 5e-9 for |r| < 0.03), and k ln 2 added in f64. Zero gives a finite
/// value, which callers mask. Four fused multiply-adds and two table lookups where the
/// polynomial takes ten: the AVX-512 kernel looks each table up with one permute, but other
/// vector units would gather, or not vectorise, so the portable kernel keeps the polynomial.
#[cfg(test)]
pub fn ln_f32_table(x: f32) -> f64 {
    let ix = x.to_bits();
    let tmp = ix.wrapping_sub(LNF_OFF);
    let i = ((tmp >> 19) & 15) as usize;
    // The exponent, with z's offset carried into it; arithmetic shift.
    let k = (tmp as i32) >> 23;
    let z = f32::from_bits(ix.wrapping_sub(tmp & 0xff80_0000));
    let r = z.mul_add(LNF_INVC[i], -1.0);
    let q = r.mul_add(-0.25, 1.0 / 3.0).mul_add(r, -0.5);
    let y = q.mul_add(r * r, r) + LNF_LOGC[i];
    k as f64 * std::f64::consts::LN_2 + y as f64
}

/// Whether [`ln_f32`] takes `a = |u|`: zero, or a normal f32 once rounded.
#[inline(always)]
pub fn f32_log_takes(a: f64) -> bool {
    (a >= f32::MIN_POSITIVE as f64) & (a <= f32::MAX as f64) | (a == 0.0)
}

/// `out[j] = ln |u[j]|`, by [`ln_f32`] where it takes |u[j]| (every sample of a float32,
/// float16 or bfloat16 input), else by [`ln_pos`]. A zero gives a finite value, which callers
/// mask.
#[inline(always)]
pub fn ln_abs_entries(u: &[f64], out: &mut [f64]) {
    let mut rare = false;
    for (o, &v) in out.iter_mut().zip(u) {
        let a = v.abs();
        *o = ln_f32(a as f32);
        rare |= !f32_log_takes(a);
    }
    if rare {
        for (o, &v) in out.iter_mut().zip(u) {
            let a = v.abs();
            if !f32_log_takes(a) {
                *o = ln_pos(a);
            }
        }
    }
}

/// ln x for finite x > 0 (subnormals included). Other inputs give unspecified values: callers
/// mask them.
#[inline(always)]
pub fn ln_pos(x: f64) -> f64 {
    // Subnormals are scaled into the normal range first.
    let sub = x < f64::MIN_POSITIVE;
    let x = if sub { x * 18014398509481984.0 } else { x }; // 2^54
    let bits = x.to_bits();
    let mut k = (bits >> 52) as i64 - 1023 - if sub { 54 } else { 0 };
    // m in [1, 2), then in [√2/2, √2) so that f = m - 1 is small.
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    k += big as i64;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let r = z * (LG1 + z * (LG2 + z * (LG3 + z * (LG4 + z * (LG5 + z * (LG6 + z * LG7))))));
    let hfsq = 0.5 * f * f;
    let kf = k as f64;
    kf * LN2_HI - ((hfsq - (s * (hfsq + r) + kf * LN2_LO)) - f)
}

/// `out[j] = ln |u[j]|` wherever u[j] is finite and nonzero.
#[inline(always)]
pub fn ln_abs_row(u: &[f64], out: &mut [f64]) {
    for (o, &v) in out.iter_mut().zip(u) {
        *o = ln_pos(v.abs());
    }
}

/// `v[j] = ln |v[j]|` wherever v[j] is finite and nonzero.
#[inline(always)]
pub fn ln_abs_in_place(v: &mut [f64]) {
    for x in v.iter_mut() {
        *x = ln_pos(x.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        (a - b).abs() / (b.abs() * f64::EPSILON).max(f64::MIN_POSITIVE)
    }

    #[test]
    fn matches_libm_to_an_ulp() {
        let mut worst: f64 = 0.0;
        let mut x = 1.0e-310_f64;
        while x < 1.0e300 {
            let r2 = std::f64::consts::SQRT_2;
            for t in [1.0, 1.0000001, 1.2, r2 - 1e-9, r2 + 1e-7, 1.5, 1.9999999] {
                let v = x * t;
                let e = if (v - 1.0).abs() < 1e-3 {
                    (ln_pos(v) - v.ln()).abs() / f64::EPSILON
                } else {
                    ulps(ln_pos(v), v.ln())
                };
                worst = worst.max(e);
            }
            x *= 1.7;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(ln_pos(1.0), 0.0);
        assert!((ln_pos(f64::MIN_POSITIVE / 8.0) - (f64::MIN_POSITIVE / 8.0).ln()).abs() < 1e-12);
    }

    /// Every f32 mantissa from 1 to 2 at several exponents, and values either side of √2 and
    /// of the powers of two: both f32 logarithms' absolute error against glibc's f64 `log`.
    #[test]
    fn f32_logs_are_within_their_budget() {
        for (name, ln) in [
            ("polynomial", ln_f32 as fn(f32) -> f64),
            ("table", ln_f32_table),
        ] {
            let mut worst: f64 = 0.0;
            for e in [-126, -60, -7, -1, 0, 1, 20, 127] {
                let scale = 2f64.powi(e);
                for bits in (0x3f80_0000u32..0x4000_0000).step_by(7) {
                    let x = f32::from_bits(bits) as f64 * scale;
                    if x > f32::MAX as f64 {
                        continue;
                    }
                    let got = ln(x as f32);
                    worst = worst.max((got - (x as f32 as f64).ln()).abs());
                }
            }
            // Cephes' polynomial is good to 2.4e-8 on the reduced range; rounding f + y to f32
            // adds up to 1.5e-8. By table, ln c rounded to f32 is off by up to 1.5e-8, rounding
            // the sum by as much again, and the series' remainder is under 5e-9.
            assert!(worst < 5e-8, "{name}: worst absolute error {worst}");
            assert_eq!(ln(1.0), 0.0, "{name}");
        }
    }

    /// The tables as their comments define them, recomputed in f64.
    #[test]
    fn the_log_table_is_its_definition() {
        for i in 0..16u32 {
            let lo = f32::from_bits(LNF_OFF + (i << 19)) as f64;
            let hi = f32::from_bits(LNF_OFF + ((i + 1) << 19)) as f64;
            let c = if lo <= 1.0 && 1.0 < hi {
                1.0
            } else {
                (lo + hi) / 2.0
            };
            let invc = LNF_INVC[i as usize];
            assert_eq!(invc, (1.0 / c) as f32, "slice {i}");
            assert_eq!(
                LNF_LOGC[i as usize],
                (-(invc as f64).ln()) as f32,
                "slice {i}"
            );
            let r = (lo * invc as f64 - 1.0)
                .abs()
                .max((hi * invc as f64 - 1.0).abs());
            assert!(r < 0.0297, "slice {i}: |r| up to {r}");
        }
    }

    #[test]
    fn entries_outside_f32_take_the_f64_log() {
        let u = [0.0, -3.5, 1e-300, -1e300, 2e-40, 1e-45, 5.0e38, 1e38];
        let mut out = [f64::NAN; 8];
        ln_abs_entries(&u, &mut out);
        assert!(out[0].is_finite());
        for (&v, &l) in u.iter().zip(&out).skip(1) {
            assert!(
                (l - v.abs().ln()).abs() < 5e-8 * v.abs().ln().abs().max(1.0),
                "{v}: {l}"
            );
        }
        // The ones an f32 cannot hold as a normal number are exact to an ulp.
        for j in [2, 3, 4, 5, 6] {
            assert!((out[j] - u[j].abs().ln()).abs() <= 2.0 * f64::EPSILON * out[j].abs());
        }
    }
}
