//! CDF of a stable law from a precomputed table, for the KS distance of a column to its
//! McCulloch fit: scipy's `levy_stable.cdf` integrates Nolan's (1997) formula per point, far too
//! slow for millions of coordinates.
//!
//! The table (`stable_cdf.bin`, written with its grid `stable_cdf_grid.rs` by
//! `tools/stable_cdf_table.py`) holds the standard CDF G(z; α, β) in Nolan's S0 parameterisation,
//! which is continuous in α and β, on α = 0.5 … 2 step 0.05, β = 0 … 1 step 0.1 and 321 nodes
//! uniform in u = asinh(z / 0.25) over |z| ≤ 10⁴, as u16 (step 1.5e-5). Negative β use
//! G(z; α, -β) = 1 - G(-z; α, β). Evaluation is a 4-point Lagrange cubic in each direction;
//! past |z| = 10⁴ the tail mass falls off as the stable tail |z|^-α (Nolan 1997, eq. 1.12).
//! Against the exact CDF the interpolation is within 9.3e-4 (worst at α < 0.6 with |β| near 1,
//! where the mass piles against the edge of the support) and within 3.5e-4 for α ≥ 0.6. The
//! table follows the exact CDF where scipy's quadrature fails: scipy returns a flat 0 or 1 in
//! some far tails (up to ~2e-3 off) and can be far off for α just outside 1 ± 0.005.
//!
//! A law fitted in S1 with location δ and scale c has CDF G((x - ζ)/c) where
//! ζ = δ + β·c·tan(πα/2) is its S0 location, McCulloch's ζ. Like scipy, which follows Nolan's
//! STABLE program, α within 0.005 of 1 is evaluated at α = 1 and z within 0.005·α^(1/α) of
//! Nolan's ζ = -β·tan(πα/2) at that ζ, so the values agree with scipy's there too.

use std::f64::consts::{FRAC_1_SQRT_2, PI};
use std::sync::OnceLock;

use super::normality::normal_cdf;

#[allow(clippy::excessive_precision)] // generated digits, kept verbatim
pub mod grid {
    include!("stable_cdf_grid.rs");
}
use grid::*;

/// The table as stored: u16 little-endian, index [α][β][u] with u fastest (also what the GPU
/// engine uploads).
pub static RAW: &[u8] = include_bytes!("stable_cdf.bin");

/// The table decoded once into probabilities.
fn table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        RAW.chunks_exact(2)
            .map(|b| f32::from(u16::from_le_bytes([b[0], b[1]])) / 65535.0)
            .collect()
    })
}

/// Weights of the 4-point Lagrange cubic through nodes -1, 0, 1, 2 at offset `f` from node 0.
fn lagrange4(f: f64) -> [f64; 4] {
    [
        -f * (f - 1.0) * (f - 2.0) / 6.0,
        (f + 1.0) * (f - 1.0) * (f - 2.0) / 2.0,
        -(f + 1.0) * f * (f - 2.0) / 2.0,
        (f + 1.0) * f * (f - 1.0) / 6.0,
    ]
}

/// First node of a 4-node stencil around position `t` on a grid of `n` nodes, and the cubic's
/// weights; near the ends the stencil stays inside and the cubic is one-sided.
fn stencil(t: f64, n: usize) -> (usize, [f64; 4]) {
    // `t as usize` is ⌊t⌋ for t ≥ 0 and 0 below (or NaN), so this is ⌊t⌋ clamped to
    // 1 … n-3 without a call to `floor` (the baseline x86-64 build has no rounding instruction).
    let i = (t as usize).clamp(1, n - 3);
    (i - 1, lagrange4(t - i as f64))
}

/// asinh as ln(a + √(a² + 1)), cheaper than `f64::asinh` (no hypot; this is the per-sample
/// cost of the KS distance). Its error near 0 is absolute rather than relative, which is all the
/// grid needs (nodes are 0.07 apart); past 1e8 it switches to ln(2a) before a² overflows.
fn asinh(x: f64) -> f64 {
    let a = x.abs();
    let u = if a < 1e8 {
        (a + (a * a + 1.0).sqrt()).ln()
    } else {
        (2.0 * a).ln()
    };
    u.copysign(x)
}

/// G(·; α, β) along the u grid for one (α, β), built once per coordinate.
pub struct StableCdf {
    alpha: f64,
    /// Nolan's ζ = -β·tan(πα/2) and the rounding radius around it (scipy's convention).
    nolan_zeta: f64,
    radius: f64,
    slice: [f64; U_N],
}

impl StableCdf {
    /// The standard law S0(α, β); α is clamped to the table (McCulloch's α ≥ 0.513).
    // Inlined into `fits::fit_column`, whose vector builds then vectorise its row loops.
    #[inline(always)]
    pub fn new(alpha: f64, beta: f64) -> Self {
        let nolan_zeta = -beta * (PI * alpha / 2.0).tan();
        let alpha = if (alpha - 1.0).abs() < 0.005 {
            1.0
        } else {
            alpha.clamp(ALPHA_MIN, 2.0)
        };
        let radius = 0.005 * alpha.powf(1.0 / alpha);
        let mut slice = [0.0; U_N];
        if alpha < 2.0 {
            let (a0, wa) = stencil((alpha - ALPHA_MIN) / ALPHA_STEP, ALPHA_N);
            // β nodes -1 … BETA_N-1 may be used: node -1 is β = -BETA_STEP, by reflection.
            let tb = beta.abs() / BETA_STEP;
            let i = (tb.floor() as usize).min(BETA_N - 3);
            let wb = lagrange4(tb - i as f64);
            let table = table();
            let row = |a: usize, b: usize| &table[(a * BETA_N + b) * U_N..][..U_N];
            // Row by row of the table, each node's 16 terms added in the same order as node by
            // node (so the same bits), but as loops over contiguous rows that vectorise: this
            // runs once per fitted coordinate.
            for (da, wa) in wa.iter().enumerate() {
                for (db, wb) in wb.iter().enumerate() {
                    let w = wa * wb;
                    if i + db == 0 {
                        let r = row(a0 + da, 1);
                        for (s, &g) in slice.iter_mut().zip(r.iter().rev()) {
                            *s += w * (1.0 - f64::from(g));
                        }
                    } else {
                        let r = row(a0 + da, i + db - 1);
                        for (s, &g) in slice.iter_mut().zip(r) {
                            *s += w * f64::from(g);
                        }
                    }
                }
            }
            if beta < 0.0 {
                slice.reverse();
                slice.iter_mut().for_each(|s| *s = 1.0 - *s);
            }
        }
        StableCdf {
            alpha,
            nolan_zeta,
            radius,
            slice,
        }
    }

    /// [`StableCdf::cdf`] at every point of `z`, into `out`: the grid coordinates' logarithms
    /// in one pass the compiler vectorises (`ln::ln_pos`, within an ulp of glibc's `log`), the
    /// rest point by point.
    // Inlined into `fits::fit_column`, whose vector builds then vectorise its loops.
    #[inline(always)]
    pub fn cdf_many(&self, z: &[f64], out: &mut [f64]) {
        if self.alpha == 2.0 {
            out.iter_mut().zip(z).for_each(|(o, &z)| *o = self.cdf(z));
            return;
        }
        let z_of = |z: f64| {
            if (z - self.nolan_zeta).abs() < self.radius {
                self.nolan_zeta
            } else {
                z
            }
        };
        // asinh(a) = ln(a + √(a² + 1)), as in `asinh`.
        for (o, &z) in out.iter_mut().zip(z) {
            let a = (z_of(z) / Z_SCALE).abs();
            *o = if a < 1e8 {
                a + (a * a + 1.0).sqrt()
            } else {
                2.0 * a
            };
        }
        crate::engine::ln::ln_abs_in_place(out);
        let h = 2.0 * U_MAX / (U_N - 1) as f64;
        // Here out holds |u|. With every point inside the grid (nearly every column) the
        // stencils run in one loop without a branch, which vectorises (the table lookups
        // become gathers); a point beyond it, or a NaN, sends the column to the loop below.
        if out.iter().all(|&a| a < U_MAX) {
            for (o, &z) in out.iter_mut().zip(z) {
                let u = o.copysign(z_of(z) / Z_SCALE);
                *o = self.in_grid(u, h);
            }
            return;
        }
        for (o, &z) in out.iter_mut().zip(z) {
            let z = z_of(z);
            let u = o.copysign(z / Z_SCALE);
            *o = self.at_grid(z, u, h);
        }
    }

    /// G at z, whose grid coordinate is u = asinh(z / Z_SCALE); h is the grid step.
    #[inline(always)]
    fn at_grid(&self, z: f64, u: f64, h: f64) -> f64 {
        if u.abs() >= U_MAX {
            // Beyond the grid: G(z) ∝ |z|^-α on the left, 1 - G(z) ∝ z^-α on the right.
            let decay = (Z_SCALE * U_MAX.sinh() / z.abs()).powf(self.alpha);
            return if z < 0.0 {
                self.slice[0] * decay
            } else {
                1.0 - (1.0 - self.slice[U_N - 1]) * decay
            };
        }
        self.in_grid(u, h)
    }

    /// G at grid coordinate u (|u| < U_MAX or NaN): the cubic through the slice's four
    /// nearest nodes, clamped to [0, 1].
    #[inline(always)]
    fn in_grid(&self, u: f64, h: f64) -> f64 {
        let (k, w) = stencil((u + U_MAX) / h, U_N);
        // k ≤ U_N - 4 already; saying so spares the loop a bounds check, which kept it scalar.
        let g = &self.slice[k.min(U_N - 4)..][..4];
        let v = w[0] * g[0] + w[1] * g[1] + w[2] * g[2] + w[3] * g[3];
        v.clamp(0.0, 1.0)
    }

    /// G(z; α, β), clamped to [0, 1].
    pub fn cdf(&self, z: f64) -> f64 {
        let z = if (z - self.nolan_zeta).abs() < self.radius {
            self.nolan_zeta
        } else {
            z
        };
        if self.alpha == 2.0 {
            // N(0, 2), as scipy evaluates α = 2.
            return normal_cdf(z * FRAC_1_SQRT_2);
        }
        let h = 2.0 * U_MAX / (U_N - 1) as f64;
        self.at_grid(z, asinh(z / Z_SCALE), h)
    }
}
