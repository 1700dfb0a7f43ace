//! McCulloch's (1986) quantile estimator of the four stable parameters, S1 parameterisation,
//! written to reproduce scipy's `_fitstart_S1` (scipy/stats/_levy_stable/__init__.py, scipy
//! 1.17) bit for bit where the arithmetic allows: numpy's linear-interpolation percentiles,
//! McCulloch's Tables III, IV, V and VII, and `RectBivariateSpline(kx=1, ky=1, s=0)` lookups,
//! which are bilinear interpolation with the arguments clamped to the grid (FITPACK's
//! `fpbisp` clamps before it evaluates).

use std::f64::consts::PI;

use super::quantile_sorted;

/// ν_α grid of Tables III and IV.
const NU_ALPHA: [f64; 15] = [
    2.439, 2.5, 2.6, 2.7, 2.8, 3.0, 3.2, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 25.0,
];
/// ν_β grid of Tables III and IV.
const NU_BETA: [f64; 7] = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];

/// Table III: α = ψ₁(ν_α, ν_β); one row per ν_α, one column per ν_β.
const ALPHA_TABLE: [[f64; 7]; 15] = [
    [2.000, 2.000, 2.000, 2.000, 2.000, 2.000, 2.000],
    [1.916, 1.924, 1.924, 1.924, 1.924, 1.924, 1.924],
    [1.808, 1.813, 1.829, 1.829, 1.829, 1.829, 1.829],
    [1.729, 1.730, 1.737, 1.745, 1.745, 1.745, 1.745],
    [1.664, 1.663, 1.663, 1.668, 1.676, 1.676, 1.676],
    [1.563, 1.560, 1.553, 1.548, 1.547, 1.547, 1.547],
    [1.484, 1.480, 1.471, 1.460, 1.448, 1.438, 1.438],
    [1.391, 1.386, 1.378, 1.364, 1.337, 1.318, 1.318],
    [1.279, 1.273, 1.266, 1.250, 1.210, 1.184, 1.150],
    [1.128, 1.121, 1.114, 1.101, 1.067, 1.027, 0.973],
    [1.029, 1.021, 1.014, 1.004, 0.974, 0.935, 0.874],
    [0.896, 0.892, 0.884, 0.883, 0.855, 0.823, 0.769],
    [0.818, 0.812, 0.806, 0.801, 0.780, 0.756, 0.691],
    [0.698, 0.695, 0.692, 0.689, 0.676, 0.656, 0.597],
    [0.593, 0.590, 0.588, 0.586, 0.579, 0.563, 0.513],
];

/// Table IV: β = ψ₂(ν_α, ν_β); same layout as Table III (values above 1 are McCulloch's and
/// are clipped after interpolation, as scipy does).
const BETA_TABLE: [[f64; 7]; 15] = [
    [0.0, 2.160, 1.000, 1.000, 1.000, 1.000, 1.000],
    [0.0, 1.592, 3.390, 1.000, 1.000, 1.000, 1.000],
    [0.0, 0.759, 1.800, 1.000, 1.000, 1.000, 1.000],
    [0.0, 0.482, 1.048, 1.694, 1.000, 1.000, 1.000],
    [0.0, 0.360, 0.760, 1.232, 2.229, 1.000, 1.000],
    [0.0, 0.253, 0.518, 0.823, 1.575, 1.000, 1.000],
    [0.0, 0.203, 0.410, 0.632, 1.244, 1.906, 1.000],
    [0.0, 0.165, 0.332, 0.499, 0.943, 1.560, 1.000],
    [0.0, 0.136, 0.271, 0.404, 0.689, 1.230, 2.195],
    [0.0, 0.109, 0.216, 0.323, 0.539, 0.827, 1.917],
    [0.0, 0.096, 0.190, 0.284, 0.472, 0.693, 1.759],
    [0.0, 0.082, 0.163, 0.243, 0.412, 0.601, 1.596],
    [0.0, 0.074, 0.147, 0.220, 0.377, 0.546, 1.482],
    [0.0, 0.064, 0.128, 0.191, 0.330, 0.478, 1.362],
    [0.0, 0.056, 0.112, 0.167, 0.285, 0.428, 1.274],
];

/// α grid of Tables V and VII, increasing (McCulloch prints it decreasing).
const ALPHA: [f64; 16] = [
    0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0,
];
/// β grid of Tables V and VII.
const BETA: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// Table V: ν_c = φ₃(α, β), c = IQR/ν_c; one row per α (increasing), one column per β.
const NU_C_TABLE: [[f64; 5]; 16] = [
    [2.588, 3.073, 4.534, 6.636, 9.144],
    [2.337, 2.634, 3.542, 4.808, 6.247],
    [2.189, 2.392, 3.004, 3.844, 4.775],
    [2.098, 2.244, 2.676, 3.265, 3.912],
    [2.040, 2.149, 2.461, 2.886, 3.356],
    [2.000, 2.085, 2.311, 2.624, 2.973],
    [1.980, 2.040, 2.205, 2.435, 2.696],
    [1.965, 2.007, 2.125, 2.294, 2.491],
    [1.955, 1.984, 2.067, 2.188, 2.333],
    [1.946, 1.967, 2.022, 2.106, 2.211],
    [1.939, 1.952, 1.988, 2.045, 2.116],
    [1.933, 1.940, 1.962, 1.997, 2.043],
    [1.927, 1.930, 1.943, 1.961, 1.987],
    [1.921, 1.922, 1.927, 1.936, 1.947],
    [1.914, 1.915, 1.916, 1.918, 1.921],
    [1.908, 1.908, 1.908, 1.908, 1.908],
];

/// Table VII: ν_ζ = φ₅(α, β), ζ = q50 + c·ν_ζ; layout as Table V.
const NU_ZETA_TABLE: [[f64; 5]; 16] = [
    [0.0, -0.061, -0.279, -0.659, -1.198],
    [0.0, -0.078, -0.272, -0.581, -0.997],
    [0.0, -0.089, -0.262, -0.520, -0.853],
    [0.0, -0.096, -0.250, -0.469, -0.742],
    [0.0, -0.099, -0.237, -0.424, -0.652],
    [0.0, -0.098, -0.223, -0.380, -0.576],
    [0.0, -0.095, -0.208, -0.346, -0.508],
    [0.0, -0.090, -0.192, -0.310, -0.447],
    [0.0, -0.084, -0.173, -0.276, -0.390],
    [0.0, -0.075, -0.154, -0.241, -0.335],
    [0.0, -0.066, -0.134, -0.206, -0.283],
    [0.0, -0.056, -0.111, -0.170, -0.232],
    [0.0, -0.043, -0.088, -0.132, -0.179],
    [0.0, -0.030, -0.061, -0.092, -0.123],
    [0.0, -0.017, -0.032, -0.049, -0.064],
    [0.0, 0.0, 0.0, 0.0, 0.0],
];

/// The grids and tables as one array for a device: NU_ALPHA, NU_BETA, ALPHA, BETA, then Tables
/// III, IV, V and VII row by row (`shaders/coord_fits.wgsl` reads them at offsets `MC_*`).
pub fn table_words() -> Vec<f32> {
    let grids = [&NU_ALPHA[..], &NU_BETA, &ALPHA, &BETA];
    let tables = [
        ALPHA_TABLE.as_flattened(),
        BETA_TABLE.as_flattened(),
        NU_C_TABLE.as_flattened(),
        NU_ZETA_TABLE.as_flattened(),
    ];
    grids
        .into_iter()
        .chain(tables)
        .flatten()
        .map(|&v| v as f32)
        .collect()
}

/// Below this ν_α the sample is lighter-tailed than any stable law and McCulloch returns
/// α = 2 (first row of Table III).
pub const NU_ALPHA_MIN: f64 = NU_ALPHA[0];

/// Index `i` of the grid cell holding `x` (clamped to the grid) and the weight of `grid[i+1]`.
fn cell(grid: &[f64], x: f64) -> (usize, f64) {
    let last = grid.len() - 1;
    let x = x.clamp(grid[0], grid[last]);
    let i = grid[..last].partition_point(|&g| g <= x).saturating_sub(1);
    (i, (x - grid[i]) / (grid[i + 1] - grid[i]))
}

/// Bilinear interpolation of `table[row][col]` at (`r` on `rows`, `c` on `cols`), clamped.
fn bilinear<const C: usize>(table: &[[f64; C]], rows: &[f64], cols: &[f64], r: f64, c: f64) -> f64 {
    let (i, s) = cell(rows, r);
    let (j, t) = cell(cols, c);
    let lo = table[i][j] + t * (table[i][j + 1] - table[i][j]);
    let hi = table[i + 1][j] + t * (table[i + 1][j + 1] - table[i + 1][j]);
    lo + s * (hi - lo)
}

/// McCulloch's four parameters (S1) and the location ζ of his own parameterisation, which is
/// Nolan's S0 location: the fitted law is ζ + c·Z with Z standard S0(α, β).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct McCulloch {
    pub alpha: f64,
    pub beta: f64,
    /// Scale c = IQR / φ₃(α, β); 0 when the interquartile range is 0.
    pub scale: f64,
    /// S1 location δ = ζ - β·c·tan(πα/2) (δ = ζ at α = 1), scipy's `loc`.
    pub loc: f64,
    pub zeta: f64,
}

/// Fits a sorted, finite sample of at least one value. Degenerate quantiles follow scipy: when
/// q95 = q05 the ratios are 0/0, ν_α ≥ 2.439 is false, so α = 2 and β, c, δ are NaN; when only
/// the IQR is 0, ν_α = ∞ clamps to the table's last row and c = 0.
pub fn fit_sorted(sorted: &[f64]) -> McCulloch {
    let q = |p: f64| quantile_sorted(sorted, p);
    let (p05, p50, p95, p25, p75) = (q(0.05), q(0.5), q(0.95), q(0.25), q(0.75));
    let nu_alpha = (p95 - p05) / (p75 - p25);
    let nu_beta = (p95 + p05 - 2.0 * p50) / (p95 - p05);
    let (alpha, beta) = if nu_alpha >= NU_ALPHA_MIN {
        let a = bilinear(&ALPHA_TABLE, &NU_ALPHA, &NU_BETA, nu_alpha, nu_beta.abs());
        let b = bilinear(&BETA_TABLE, &NU_ALPHA, &NU_BETA, nu_alpha, nu_beta.abs());
        // scipy's psi_2_1: odd in ν_β, and ν_β = 0 takes the negative branch (-0 = 0).
        let b = if nu_beta > 0.0 { b } else { -b };
        (a.clamp(f64::EPSILON, 2.0), b.clamp(-1.0, 1.0))
    } else {
        // numpy's sign: 0 for 0, NaN for NaN.
        let s = if nu_beta.is_nan() || nu_beta == 0.0 {
            nu_beta * 0.0
        } else {
            nu_beta.signum()
        };
        (2.0, s)
    };
    let nu_c = bilinear(&NU_C_TABLE, &ALPHA, &BETA, alpha, beta.abs());
    let nu_zeta = bilinear(&NU_ZETA_TABLE, &ALPHA, &BETA, alpha, beta.abs());
    let nu_zeta = if beta > 0.0 { nu_zeta } else { -nu_zeta };
    let scale = (p75 - p25) / nu_c;
    let zeta = p50 + scale * nu_zeta;
    let loc = if alpha != 1.0 {
        zeta - beta * scale * (PI * alpha / 2.0).tan()
    } else {
        zeta
    };
    McCulloch {
        alpha,
        beta,
        scale,
        loc,
        zeta,
    }
}
