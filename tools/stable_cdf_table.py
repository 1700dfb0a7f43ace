#!/usr/bin/env python3
"""Builds gradtail's table of the standard stable CDF and the scipy check points for its tests.

    python3 tools/stable_cdf_table.py            # writes the three files below (about 1 minute)

Outputs (paths relative to the repository root):
  src/stats/fits/stable_cdf.bin       G(z; alpha, beta) as little-endian u16, round(G * 65535),
                                      index [alpha][beta][u], u fastest
  src/stats/fits/stable_cdf_grid.rs   the grid constants the Rust side reads the table with
  tests/data/stable_cdf/scipy_points.json
                                      scipy.stats.levy_stable(alpha, beta).cdf(x) (S1, loc 0,
                                      scale 1) at seeded random points, for the Rust tests

G is the CDF of the standard stable law in Nolan's S0 parameterisation, which is continuous in
alpha and beta (S1's location runs off to infinity as alpha -> 1 when beta != 0). A law fitted in
S1, loc delta, scale c has CDF G((x - zeta) / c) with zeta = delta + beta c tan(pi alpha / 2), the
S0 location (scipy: `_fitstart_S0`). G(z; alpha, -beta) = 1 - G(-z; alpha, beta), so only
beta >= 0 is stored.

Grid: alpha 0.5 .. 2 step 0.05, beta 0 .. 1 step 0.1, u = asinh(z / 0.25) on 321 uniform nodes
covering |z| <= 1e4. The Rust side interpolates with 4-point Lagrange cubics in all three
directions and extends past |z| = 1e4 with the power-law tail (1 - G)(z) ~ z^-alpha.
Interpolation error against the exact CDF, measured by this script on 40,000 seeded points
(`interpolation_error`, a replica of the Rust interpolation): at most 9.3e-4, worst for alpha
< 0.6 with |beta| near 1, where the density piles up against the edge of the support, and
about 3.5e-4 for alpha >= 0.6.

The values are computed with Nolan's (1997) integral, the one scipy's levy_stable.cdf
evaluates ("piecewise" method), vectorised here with tanh-sinh quadrature split where
g(theta) = 1. This script agrees with scipy to ~1e-15 at most points and prints the
comparison when it runs. Where they differ, scipy's quadrature is the one that fails (checked by
integrating scipy's own pdf, and by continuity in alpha): it returns exactly 0 or 1 in far tails
(off by up to ~2e-3), and for alpha just outside its rounding window around 1 it can be far off
(0.016 instead of 0.350 at alpha = 1.0058, beta = 0.60, z = -0.25; NaN at alpha = 0.995).
"""
import json
import os
import sys
import time
import warnings

import numpy as np
from scipy import special, stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALPHA_MIN, ALPHA_STEP, ALPHA_N = 0.5, 0.05, 31
BETA_STEP, BETA_N = 0.1, 11
Z_SCALE, Z_MAX, U_N = 0.25, 1e4, 321


def de_rule(step=1 / 32, t_max=3.5):
    """tanh-sinh nodes on (-1, 1): offsets from the two ends (exact near them) and weights."""
    t = np.arange(-t_max, t_max + 1e-12, step)
    u = 0.5 * np.pi * np.sinh(t)
    w = step * 0.5 * np.pi * np.cosh(t) / np.cosh(u) ** 2
    from_lo = 2.0 / (np.exp(-2 * u) + 1)  # 1 + tanh(u)
    from_hi = 2.0 / (np.exp(2 * u) + 1)  # 1 - tanh(u)
    return t < 0, from_lo, from_hi, w


LEFT, FROM_LO, FROM_HI, WEIGHT = de_rule()


def log_g(th, x, a, b, zeta, xi):
    """ln g(theta) of Nolan (1997) Theorem 1 for x > zeta (alpha != 1) or beta > 0 (alpha = 1)."""
    with np.errstate(all="ignore"):
        one = a == 1.0
        am1 = np.where(one, 0.5, a - 1.0)
        ln_v = (np.log(np.cos(a * xi)) / am1
                + a / am1 * (np.log(np.cos(th)) - np.log(np.sin(a * (xi + th))))
                + np.log(np.cos(a * xi + (a - 1.0) * th)) - np.log(np.cos(th)))
        ln_g = a / am1 * np.log(x - zeta) + ln_v
        b1 = np.where(one, b, 1.0)
        ln_g1 = (-np.pi * x / (2 * b1) + np.log(2 / np.pi)
                 + np.log((np.pi / 2 + b1 * th) / np.cos(th))
                 + (np.pi / 2 + b1 * th) * np.tan(th) / b1)
        return np.where(one, ln_g1, ln_g)


def integral(x, a, b, zeta, xi):
    """int_{-xi}^{pi/2} exp(-g(theta)) d theta. g is monotone in theta, so bisection finds where
    g = 1 and each side gets its own tanh-sinh rule, whose nodes crowd both ends of each side."""
    lo, hi = -xi, np.full_like(x, np.pi / 2)
    increasing = a <= 1.0
    left, right = lo.copy(), hi.copy()
    for _ in range(80):
        mid = 0.5 * (left + right)
        above = log_g(mid, x, a, b, zeta, xi) > 0
        go_left = np.where(increasing, above, ~above)
        right = np.where(go_left, mid, right)
        left = np.where(go_left, left, mid)
    split = 0.5 * (left + right)
    total = np.zeros_like(x)
    for p, q in ((lo, split), (split, hi)):
        r = 0.5 * (q - p)
        th = np.where(LEFT, p[:, None] + r[:, None] * FROM_LO, q[:, None] - r[:, None] * FROM_HI)
        lg = log_g(th, x[:, None], a[:, None], b[:, None], zeta[:, None], xi[:, None])
        with np.errstate(all="ignore"):
            f = np.exp(-np.exp(lg))
        total += r * (np.nan_to_num(f, nan=0.0) * WEIGHT).sum(1)
    return total


def cdf_s0(z, a, b):
    """Standard S0 stable CDF at arrays z, alpha, beta (Nolan 1997, with his case split)."""
    z, a, b = (np.asarray(v, float).ravel() for v in np.broadcast_arrays(z, a, b))
    out = np.empty(z.shape)
    gauss = a == 2.0
    out[gauss] = special.ndtr(z[gauss] / np.sqrt(2))
    cauchy = (a == 1.0) & (b == 0.0)
    out[cauchy] = 0.5 + np.arctan(z[cauchy]) / np.pi
    rest = ~(gauss | cauchy)
    x, al, be = z[rest], a[rest], b[rest]
    zeta = np.where(al == 1.0, 0.0, -be * np.tan(np.pi * al / 2))
    flip = np.where(al == 1.0, be < 0, x < zeta)  # G(x; a, b) = 1 - G(-x; a, -b)
    x, be = np.where(flip, -x, x), np.where(flip, -be, be)
    zeta = np.where(al == 1.0, 0.0, -be * np.tan(np.pi * al / 2))
    xi = np.where(al == 1.0, np.pi / 2, np.arctan(-zeta) / al)
    val = 0.5 - xi / np.pi  # G(zeta)
    off = (al == 1.0) | (x != zeta)
    c1 = np.where(al < 1, 0.5 - xi / np.pi, np.where(al == 1, 0.0, 1.0))
    c3 = np.where(al > 1, -1.0, 1.0) / np.pi
    for k in range(0, off.sum(), 4096):
        idx = np.flatnonzero(off)[k:k + 4096]
        val[idx] = c1[idx] + c3[idx] * integral(x[idx], al[idx], be[idx], zeta[idx], xi[idx])
    out[rest] = np.where(flip, 1 - val, val)
    return out


def grids():
    alpha = np.round(ALPHA_MIN + ALPHA_STEP * np.arange(ALPHA_N), 12)  # 2.0 exactly, not 2 + 4e-16
    beta = np.round(BETA_STEP * np.arange(BETA_N), 12)
    u_max = float(np.arcsinh(Z_MAX / Z_SCALE))
    z = Z_SCALE * np.sinh(np.linspace(-u_max, u_max, U_N))
    return alpha, beta, u_max, z


def scipy_cdf_s1(x, a, b):
    return float(stats.levy_stable.cdf(x, a, b))


def check(rng):
    """Our CDF against closed forms and against scipy's levy_stable.cdf; prints the differences."""
    z = np.linspace(-0.99, 60, 300)
    levy = np.abs(cdf_s0(z, 0.5, 1.0 - 1e-15) - special.erfc(np.sqrt(0.5 / (z + 1)))).max()
    z = np.sinh(np.linspace(-8, 8, 300))
    cauchy = np.abs(cdf_s0(z, 1.0 + 1e-9, 0.0) - (0.5 + np.arctan(z) / np.pi)).max()
    print(f"closed forms: Levy {levy:.1e}, Cauchy (alpha 1 + 1e-9) {cauchy:.1e}")
    n = 1500
    a, b = rng.uniform(0.51, 2.0, n), rng.uniform(-1, 1, n)
    z = np.where(rng.random(n) < 0.5, rng.uniform(-5, 5, n), np.sinh(rng.uniform(-9, 9, n)))
    ours = cdf_s0(z, a, b)
    zeta = -b * np.tan(np.pi * a / 2)
    ref = np.array([scipy_cdf_s1(zz - zt, aa, bb) for zz, zt, aa, bb in zip(z, zeta, a, b)])
    # scipy moves alpha within 0.005 of 1 to 1 and z within 0.005 alpha^(1/alpha) of zeta to zeta
    plain = (np.abs(a - 1) >= 0.005) & (np.abs(z - zeta) >= 0.01 * a ** (1 / a))
    d = np.abs(ours - ref)[plain & np.isfinite(ref)]
    print(f"scipy: median |diff| {np.median(d):.1e}, 99.5% {np.quantile(d, 0.995):.1e}, "
          f"max {d.max():.1e} (scipy's failures), {np.isnan(ref).sum()} NaN from scipy")


def table():
    alpha, beta, _, z = grids()
    A, B, Z = np.meshgrid(alpha, beta, z, indexing="ij")
    values = cdf_s0(Z, A, B).reshape(A.shape)
    assert np.all(np.isfinite(values)) and values.min() >= -1e-12 and values.max() <= 1 + 1e-12
    return np.round(np.clip(values, 0, 1) * 65535).astype("<u2")


def lagrange4(f):
    """Weights of the cubic through nodes -1, 0, 1, 2 at offset f (as stable_cdf.rs)."""
    return np.stack([-f * (f - 1) * (f - 2) / 6, (f + 1) * (f - 1) * (f - 2) / 2,
                     -(f + 1) * f * (f - 2) / 2, (f + 1) * f * (f - 1) / 6], -1)


def interpolate(table_u16, a, b, z):
    """The Rust side's interpolation of the stored table, vectorised, for the error study."""
    t = table_u16.astype(float) / 65535
    _, _, u_max, _ = grids()
    h = 2 * u_max / (U_N - 1)
    ta = (a - ALPHA_MIN) / ALPHA_STEP
    ia = np.clip(np.floor(ta).astype(int), 1, ALPHA_N - 3)
    tb = np.abs(b) / BETA_STEP
    ib = np.minimum(np.floor(tb).astype(int), BETA_N - 3)
    zz = np.where(b < 0, -z, z)  # G(z; a, -b) = 1 - G(-z; a, b)
    u = np.arcsinh(zz / Z_SCALE)
    tu = (np.clip(u, -u_max, u_max) + u_max) / h
    iu = np.clip(np.floor(tu).astype(int), 1, U_N - 3)
    wa, wb, wu = lagrange4(ta - ia), lagrange4(tb - ib), lagrange4(tu - iu)
    g = np.zeros_like(z)
    for p, oa in enumerate((-1, 0, 1, 2)):
        for q, ob in enumerate((-1, 0, 1, 2)):
            for r, ou in enumerate((-1, 0, 1, 2)):
                jb, ju = ib + ob, iu + ou
                v = np.where(jb < 0, 1 - t[ia + oa, 1, U_N - 1 - ju], t[ia + oa, np.abs(jb), ju])
                g += wa[:, p] * wb[:, q] * wu[:, r] * v
    decay = (Z_MAX / np.maximum(np.abs(zz), Z_MAX)) ** a  # power-law tail past |z| = Z_MAX
    g = np.where(zz <= -Z_MAX, g * decay, np.where(zz >= Z_MAX, 1 - (1 - g) * decay, g))
    return np.where(b < 0, 1 - g, g)


def interpolation_error(values, rng, n=40000):
    """Largest |table - exact| on seeded points: uniform alpha and beta, z in the body and the
    tails, and a third of them where it is hardest (alpha < 0.7, |beta| > 0.7, near the edge)."""
    a, b = rng.uniform(0.5, 2.0, n), rng.uniform(-1, 1, n)
    z = np.where(rng.random(n) < 0.5, rng.uniform(-6, 6, n), np.sinh(rng.uniform(-11, 11, n)))
    hard = np.arange(n) < n // 3
    a[hard], b[hard] = rng.uniform(0.5, 0.7, hard.sum()), rng.uniform(0.7, 1, hard.sum())
    z[hard] = rng.uniform(-1.3, 0.3, hard.sum())
    a = np.where(np.abs(a - 1) < 0.005, 1.0, a)
    err = np.abs(interpolate(values, a, b, z) - cdf_s0(z, a, b))
    return err.max(), err[a >= 0.6].max()


def write_grid_rs(path, u_max):
    text = f"""// Generated by tools/stable_cdf_table.py; edit that script and rerun it instead.
// The grid of stable_cdf.bin: G(z; alpha, beta) at alpha = ALPHA_MIN + i*ALPHA_STEP,
// beta = j*BETA_STEP, u = asinh(z / Z_SCALE) = -U_MAX + k*2*U_MAX/(U_N-1).
pub const ALPHA_MIN: f64 = {ALPHA_MIN!r};
pub const ALPHA_STEP: f64 = {ALPHA_STEP!r};
pub const ALPHA_N: usize = {ALPHA_N};
pub const BETA_STEP: f64 = {BETA_STEP!r};
pub const BETA_N: usize = {BETA_N};
pub const Z_SCALE: f64 = {Z_SCALE!r};
pub const U_MAX: f64 = {u_max!r};
pub const U_N: usize = {U_N};
"""
    with open(path, "w") as f:
        f.write(text)


def scipy_points(rng, n=600):
    """Seeded points (alpha, beta, x) with scipy's S1 CDF at x, loc 0, scale 1."""
    a = np.concatenate([rng.uniform(0.513, 2.0, n - 100), np.full(25, 2.0),
                        1 + rng.uniform(-0.0049, 0.0049, 25), rng.uniform(0.513, 0.6, 50)])
    b = rng.uniform(-1, 1, a.size)
    z = np.where(rng.random(a.size) < 0.6, rng.uniform(-4, 4, a.size),
                 np.sinh(rng.uniform(-11, 11, a.size)))
    zeta = np.where(a == 1, 0.0, -b * np.tan(np.pi * a / 2))
    # a few points inside scipy's rounding window around zeta
    near = rng.random(a.size) < 0.05
    z = np.where(near, zeta + rng.uniform(-0.004, 0.004, a.size) * a ** (1 / a), z)
    x = z - zeta  # S1 standard coordinate
    cdf = [scipy_cdf_s1(xx, aa, bb) for xx, aa, bb in zip(x, a, b)]
    # the exact CDF at the inputs scipy actually evaluates (Nolan's STABLE conventions, as in
    # scipy's _nolan_round_difficult_input): alpha within 0.005 of 1 becomes 1, then z within
    # 0.005 alpha^(1/alpha) of zeta becomes zeta
    a_used = np.where(np.abs(a - 1) < 0.005, 1.0, a)
    z_used = np.where(np.abs(z - zeta) < 0.005 * a_used ** (1 / a_used), zeta, z)
    truth = cdf_s0(z_used, a_used, b)
    return [
        {"alpha": float(aa), "beta": float(bb), "x": float(xx), "cdf": c, "exact": float(t),
         "off_truth": bool(abs(c - t) > 1e-6) if np.isfinite(c) else True}
        for aa, bb, xx, c, t in zip(a, b, x, cdf, truth)
    ]


def main():
    warnings.filterwarnings("ignore")
    check(np.random.default_rng(1))
    t = time.time()
    values = table()
    _, _, u_max, _ = grids()
    out = os.path.join(ROOT, "src", "stats", "fits")
    values.tofile(os.path.join(out, "stable_cdf.bin"))
    write_grid_rs(os.path.join(out, "stable_cdf_grid.rs"), u_max)
    print(f"table {values.shape} in {time.time() - t:.0f} s")
    worst, worst_06 = interpolation_error(values, np.random.default_rng(2))
    print(f"interpolation error: at most {worst:.1e}, {worst_06:.1e} for alpha >= 0.6")
    points = scipy_points(np.random.default_rng(3))
    data = os.path.join(ROOT, "tests", "data", "stable_cdf")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "scipy_points.json"), "w") as f:
        json.dump({"about": "scipy.stats.levy_stable(alpha, beta).cdf(x), S1, loc 0, scale 1, "
                   "scipy " + __import__("scipy").__version__ + "; exact: Nolan's integral "
                   "(tools/stable_cdf_table.py) at the point scipy evaluates after its "
                   "rounding; off_truth: scipy differs from exact by more than 1e-6",
                   "points": points}, f, indent=0)
    print(f"{len(points)} scipy points, {sum(p['off_truth'] for p in points)} off the exact CDF")


if __name__ == "__main__":
    sys.exit(main())
