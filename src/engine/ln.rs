//! A branch-free natural logarithm for f64, so the CPU engine's per-element log (its largest
//! cost) runs over a whole row in a loop the compiler can vectorise; glibc's `log` is a call
//! per element. The reduction and the polynomial are fdlibm's `__ieee754_log` (Sun
//! Microsystems, 1993; also musl `log.c`), accurate to under 1 ulp.

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
}
