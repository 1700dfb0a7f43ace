// coord_fits — the per-coordinate distribution fits of the whole-column step, the GPU twin of
// `engine::cpu::coord_fits` (which runs `stats::fits::fit_column` per column).
//
// One workgroup owns one coordinate. Its input is the coordinate's n finite samples, centred
// on the host in f64 and rounded to f32, in sampling order (column `c` starts at word
// c·dims.rows/4 of `xs`; n = counts[c], 0 for a column that is not fitted). The workgroup
//   1. loads them into workgroup memory and sums, in sampling order, Σu and Σ(u - ū)² over
//      all n and over the first ⌊n/2⌋ samples (Wu et al.'s var_ratio; the latter shifted by
//      its first sample, so identical samples give a variance of exactly 0, as the host's does);
//   2. sorts them (bitonic network over the next power of two, partners past n skipped: they
//      stand for +∞ and never move);
//   3. one thread takes numpy's linear-interpolation quantiles (h = (n-1)p split into integer
//      and fraction exactly, p being a multiple of 1/100) and McCulloch's (1986) fit as scipy's
//      `_fitstart_S1` makes it: bilinear lookups with clamping in Tables III, IV, V and VII
//      (binding 3, `stats::fits::mcculloch::table_words`), the ν_α < 2.439 branch, the S0
//      location ζ and scale c;
//   4. the threads build G(·; α, |β|) on the u grid of the stable CDF table (binding 4, the
//      u16 table of `stats::fits::stable_cdf`) by the same 4 × 4 Lagrange stencil as the host;
//   5. per sorted point: Φ at w = (u - ū)/s for the Kolmogorov–Smirnov distance, its Anderson–
//      Darling term, the stable CDF at (u - ζ)/c for the KS distance to the fit, and u²;
//      reduced over the workgroup; one thread takes the top-1 % share from the sorted ends.
// No value here is NaN or infinite: degenerate fits are reported as `status` bits and the host
// writes the NaNs (shader compilers may assume NaN never occurs).
//
// Anderson–Darling in f32: scipy's A² = -n - Σ_j [2e_j ln Φ(w_j) + 2(1-e_j) ln(1-Φ(w_j))] with
// e_j = (2j+1)/(2n) is a difference of numbers of size n; regrouped as
// A² = A²_floor(n) + Σ_j 2·KL(e_j ‖ Φ(w_j)), with KL the Bernoulli divergence
// e ln(e/t) + (1-e) ln((1-e)/(1-t)) ≥ 0 and A²_floor(n) = -n - Σ_j 2[e_j ln e_j + (1-e_j) ln(1-e_j)]
// (data-free: the host adds it in f64, `stats::fits::normality::ad_floor`), every term is
// small and non-negative and the f32 sum keeps its digits.
// Logs and exponentials are the accurate `ln_acc` and `exp_acc` below, not the builtins (Vulkan
// allows `log` an absolute error of 2^-21 near 1, which the divergences and log1p cannot afford,
// and neither builtin promises errors without bias).

// common.wgsl, prepended by the host, supplies Dims (rows: words·4 per column, items: columns,
// grid_x), COORD_WG and the helpers.

// Mirrors `engine::gpu::fits::CoordFit` (#[repr(C)], 48 bytes): one coordinate's fits, before
// the host's f64 finish (S1 location, A² floor, p-value, variance ratio, NaNs by status).
struct CoordFit {
    alpha: f32,
    beta: f32,
    scale: f32,      // c
    zeta: f32,       // McCulloch's (S0) location ζ
    ad_excess: f32,  // Σ_j 2·KL(e_j ‖ Φ(w_j)): A² minus its floor
    ks_gauss: f32,
    ks_stable: f32,
    top1_share: f32,
    var_all: f32,    // s² of all n samples (ddof 1)
    var_half: f32,   // s² of the first ⌊n/2⌋ samples (ddof 1), 0 when ⌊n/2⌋ < 2
    n: u32,
    status: u32,     // FIT_* bits
}

// Threads per workgroup; most samples per coordinate (the sort lives in workgroup memory:
// FITS_K_MAX f32 = 16 KiB, plus the reduction and stable-CDF arrays, `FITS_WG_BYTES` on the host).
const FITS_WG: u32 = 256u;
const FITS_K_MAX: u32 = 4096u;

// status bits (`engine::gpu::fits::FIT_*`).
const FIT_NONE: u32 = 1u;     // fewer than 2 samples, or constant: every field NaN
const FIT_TIED: u32 = 2u;     // q95 = q05: α = 2, β, c and the location NaN, no ks_stable
const FIT_NO_SCALE: u32 = 4u; // c = 0 (q75 = q25): no ks_stable

// McCulloch's grids and tables in binding 3, as `mcculloch::table_words` lays them out.
const MC_NU_ALPHA: u32 = 0u;   // 15 values
const MC_NU_BETA: u32 = 15u;   // 7
const MC_ALPHA: u32 = 22u;     // 16
const MC_BETA: u32 = 38u;      // 5
const MC_PSI1: u32 = 43u;      // Table III, 15 × 7
const MC_PSI2: u32 = 148u;     // Table IV, 15 × 7
const MC_PHI3: u32 = 253u;     // Table V, 16 × 5
const MC_PHI5: u32 = 333u;     // Table VII, 16 × 5
const MC_WORDS: u32 = 413u;

// The stable CDF table's grid (`stats::fits::stable_cdf_grid`).
const STABLE_ALPHA_N: u32 = 31u;
const STABLE_BETA_N: u32 = 11u;
const STABLE_U_N: u32 = 321u;
const STABLE_ALPHA_MIN: f32 = 0.5;
const STABLE_ALPHA_STEP: f32 = 0.05;
const STABLE_BETA_STEP: f32 = 0.1;
const STABLE_Z_SCALE: f32 = 0.25;
const STABLE_U_MAX: f32 = 11.289781913812268;
// Z_SCALE·sinh(U_MAX): the |z| where the grid ends.
const STABLE_Z_EDGE: f32 = 10000.0;

// Constants that enter every point's logs are split into an f32 head and its remainder: a
// rounded constant is a systematic error, which A² would add up n times.
const LN2_HI: f32 = 0.693145751953125;        // 12 trailing zero bits: k·LN2_HI is exact
const LN2_LO: f32 = 1.4286068202862268e-6;
const SQRT1_2_HI: f32 = 0.7071067690849304;
const SQRT1_2_LO: f32 = 1.2101617152815436e-8;
const LN_SQRT_PI_HI: f32 = 0.5723649263381958;
const LN_SQRT_PI_LO: f32 = 1.6586504281157488e-8;
const SQRT1_2: f32 = 0.7071067811865476;
const HALF_PI: f32 = 1.5707963267948966;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read> mc: array<f32>;
@group(0) @binding(4) var<storage, read> cdf: array<u32>;
@group(0) @binding(5) var<storage, read_write> fits: array<CoordFit>;

var<workgroup> keys: array<f32, FITS_K_MAX>;
var<workgroup> red: array<vec2<f32>, FITS_WG>;
var<workgroup> slice: array<f32, STABLE_U_N>;
var<workgroup> n_sh: u32;
// The fit thread 0 makes, for every thread: α, β, c, ζ; then the stable law's snapped α,
// Nolan's ζ, the snapping radius, and 1.0 when ks_stable is computed.
var<workgroup> fit_sh: array<vec4<f32>, 2>;
var<workgroup> status_sh: u32;

// 2·atanh(s) by its series, for |s| ≤ 0.172 (truncation below 1e-9 relative).
fn atanh2(s: f32) -> f32 {
    let s2 = s * s;
    return s * (2.0 + s2 * (0.6666667 + s2 * (0.4 + s2 * (0.2857143 + s2 * 0.2222222))));
}

// ln x for a positive normal x, to a few ulp: x = 2^e·m with m in [√½, √2), ln m = 2 atanh((m-1)/(m+1)).
fn ln_acc(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var e = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.4142135) {
        m = m * 0.5;
        e = e + 1;
    }
    return f32(e) * LN2_HI + (f32(e) * LN2_LO + atanh2((m - 1.0) / (m + 1.0)));
}

// e^x, to a few ulp, without the builtin (Vulkan allows exp 3 + 2|x| ulp, which need not be
// unbiased): x = k·ln 2 + r with |r| ≤ ln2/2, e^r by its Taylor series to r^8 (truncation below
// 1e-9), scaled by 2^k. Results below f32's normal range flush to 0.
fn exp_acc(x: f32) -> f32 {
    if (x < -87.0) {
        return 0.0;
    }
    let k = round(x / 0.6931472);
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r / 2.0 * (1.0 + r / 3.0 * (1.0 + r / 4.0 * (1.0 + r / 5.0
        * (1.0 + r / 6.0 * (1.0 + r / 7.0 * (1.0 + r / 8.0)))))));
    return ldexp(p, i32(k));
}

// ln(1 + x) for x > -1: the series on x/(2+x) near 0, where 1 + x would round.
fn ln1p_acc(x: f32) -> f32 {
    if (x > -0.29 && x < 0.41) {
        return atanh2(x / (2.0 + x));
    }
    return ln_acc(1.0 + x);
}

// ln erfc(z) for z ≥ 0 (z ≤ 46 here: |w| ≤ √(n-1)), with f32 rounding errors only: A² sums
// n of these, so an approximation's systematic error (Numerical Recipes' erfcc: 1.2e-7) would
// add up to n·1e-7. Below 0.75, 1 - erf z by erf's Maclaurin series (12 terms: truncation
// below 1e-11); above, Laplace's continued fraction
// erfc z = e^{-z²}/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …)))), evaluated from a depth
// 55/z² + 8 that leaves a truncation below 2e-8 (checked against scipy at z = 0.75 … 6).
fn ln_erfc(z: f32) -> f32 {
    if (z < 0.75) {
        let z2 = z * z;
        var term = z;
        var sum = z;
        for (var k = 1u; k < 12u; k++) {
            term *= -z2 / f32(k);
            sum += term / f32(2u * k + 1u);
        }
        // 2/√π = 1 + 0.12837917 (the small part's rounding is 1e-9 relative).
        return ln1p_acc(-(sum + 0.12837916612625122 * sum));
    }
    let depth = u32(min(110.0 / (z * z), 120.0)) + 8u;
    var f = z;
    for (var k = depth; k >= 1u; k--) {
        f = z + f32(k) * 0.5 / f;
    }
    return ((-z * z - ln_acc(f)) - LN_SQRT_PI_HI) - LN_SQRT_PI_LO;
}

// Φ(w), ln Φ(w) and ln(1 - Φ(w)), each from the tail that keeps its digits.
struct Normal {
    cdf: f32,
    ln_cdf: f32,
    ln_sf: f32,
}

fn normal_at(w: f32) -> Normal {
    let a = abs(w);
    let ln_tail = (ln_erfc(a * SQRT1_2_HI + a * SQRT1_2_LO) - LN2_HI) - LN2_LO;
    let tail = exp_acc(ln_tail);
    let ln_body = ln1p_acc(-tail);
    if (w < 0.0) {
        return Normal(tail, ln_tail, ln_body);
    }
    return Normal(1.0 - tail, ln_body, ln_tail);
}

// sin and cos by Taylor series for |x| ≤ π/4 (truncation below 3e-9).
fn sin_small(x: f32) -> f32 {
    let x2 = x * x;
    return x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0))));
}

fn cos_small(x: f32) -> f32 {
    let x2 = x * x;
    return 1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0 * (1.0 - x2 / 56.0 * (1.0 - x2 / 90.0))));
}

// tan(πα/2) for α in [0.5, 2], without the builtin tan (Vulkan allows sin/cos an absolute
// error of 2^-11): with x = (α-1)π/2, tan(πα/2) = -cot x, and for x > π/4, -cot x = -tan(π/2 - x)
// with π/2 - x = (2-α)π/2. At α = 1 exactly the pole is returned as f32's largest value.
fn tan_half_pi(alpha: f32) -> f32 {
    let x = (alpha - 1.0) * HALF_PI;
    if (x > 0.7853982) {
        let y = (2.0 - alpha) * HALF_PI;
        return -sin_small(y) / cos_small(y);
    }
    let s = sin_small(x);
    if (s == 0.0) {
        return -3.4e38;
    }
    return -cos_small(x) / s;
}

// numpy's linear-interpolation quantile of the sorted keys at p = pc/100: h = (n-1)p with its
// integer part and fraction taken exactly; numpy's _lerp counts back from the upper neighbour
// for fractions of 1/2 and more.
fn quantile(n: u32, pc: u32) -> f32 {
    let h = (n - 1u) * pc;
    let lo = h / 100u;
    if (lo >= n - 1u) {
        return keys[n - 1u];
    }
    let t = f32(h % 100u) / 100.0;
    let a = keys[lo];
    let b = keys[lo + 1u];
    let d = b - a;
    if (t >= 0.5) {
        return b - d * (1.0 - t);
    }
    return a + d * t;
}

// Cell of x on the grid of `len` values at mc[g0], x clamped to the grid: (index, weight of
// the next node), as FITPACK evaluates a degree-1 spline.
fn cell(g0: u32, len: u32, x_in: f32) -> vec2<f32> {
    let x = clamp(x_in, mc[g0], mc[g0 + len - 1u]);
    var i = 0u;
    for (var k = 1u; k < len - 1u; k++) {
        if (mc[g0 + k] <= x) {
            i = k;
        }
    }
    return vec2<f32>(f32(i), (x - mc[g0 + i]) / (mc[g0 + i + 1u] - mc[g0 + i]));
}

// Bilinear interpolation of the table at mc[t0] (rows on grid r0 of nr values, columns on
// grid c0 of nc values) at (r, c).
fn bilinear(t0: u32, r0: u32, nr: u32, c0: u32, nc: u32, r: f32, c: f32) -> f32 {
    let ri = cell(r0, nr, r);
    let ci = cell(c0, nc, c);
    let i = u32(ri.x);
    let j = u32(ci.x);
    let a = t0 + i * nc + j;
    let lo = mc[a] + ci.y * (mc[a + 1u] - mc[a]);
    let hi = mc[a + nc] + ci.y * (mc[a + nc + 1u] - mc[a + nc]);
    return lo + ri.y * (hi - lo);
}

// McCulloch's fit from the sorted keys (thread 0): fit_sh and status_sh.
fn mcculloch(n: u32) {
    let p05 = quantile(n, 5u);
    let p25 = quantile(n, 25u);
    let p50 = quantile(n, 50u);
    let p75 = quantile(n, 75u);
    let p95 = quantile(n, 95u);
    var status = 0u;
    if (keys[0] == keys[n - 1u]) {
        status = FIT_NONE;
    } else if (p95 == p05) {
        status = FIT_TIED;
    }
    let spread = select(p95 - p05, 1.0, p95 == p05);
    let iqr = p75 - p25;
    let nu_beta = (p95 + p05 - 2.0 * p50) / spread;
    // ν_α = ∞ when the IQR is 0: the grid's last row, as FITPACK's clamp gives; tied
    // quantiles (0/0 on the host) fail the ν_α ≥ 2.439 test.
    let nu_alpha = select(select(spread / iqr, 25.0, iqr == 0.0), 0.0, p95 == p05);
    var alpha = 2.0;
    var beta = sign(nu_beta);
    if (nu_alpha >= 2.439) {
        alpha = bilinear(MC_PSI1, MC_NU_ALPHA, 15u, MC_NU_BETA, 7u, nu_alpha, abs(nu_beta));
        let b = bilinear(MC_PSI2, MC_NU_ALPHA, 15u, MC_NU_BETA, 7u, nu_alpha, abs(nu_beta));
        // scipy's psi_2_1 is odd in ν_β and takes ν_β = 0 to the negative branch.
        beta = clamp(select(-b, b, nu_beta > 0.0), -1.0, 1.0);
        alpha = clamp(alpha, 1.1920929e-7, 2.0);
    }
    let nu_c = bilinear(MC_PHI3, MC_ALPHA, 16u, MC_BETA, 5u, alpha, abs(beta));
    let nz = bilinear(MC_PHI5, MC_ALPHA, 16u, MC_BETA, 5u, alpha, abs(beta));
    let nu_zeta = select(-nz, nz, beta > 0.0);
    let scale = iqr / nu_c;
    let zeta = p50 + scale * nu_zeta;
    if (status == 0u && scale <= 0.0) {
        status = FIT_NO_SCALE;
    }
    // The stable law for ks_stable, with scipy's (Nolan's STABLE program's) snapping: α within
    // 0.005 of 1 is evaluated at 1, and z within 0.005·α^(1/α) of Nolan's ζ = -β tan(πα/2)
    // (of the unsnapped α) at that ζ.
    var a_s = clamp(alpha, STABLE_ALPHA_MIN, 2.0);
    if (abs(alpha - 1.0) < 0.005) {
        a_s = 1.0;
    }
    let nolan_zeta = -beta * tan_half_pi(alpha);
    let radius = 0.005 * exp_acc(ln_acc(a_s) / a_s);
    fit_sh[0] = vec4<f32>(alpha, beta, scale, zeta);
    fit_sh[1] = vec4<f32>(a_s, nolan_zeta, radius, select(0.0, 1.0, status == 0u));
    status_sh = status;
}

// Weights of the 4-point Lagrange cubic through nodes -1, 0, 1, 2 at offset f from node 0.
fn lagrange4(f: f32) -> vec4<f32> {
    return vec4<f32>(
        -f * (f - 1.0) * (f - 2.0) / 6.0,
        (f + 1.0) * (f - 1.0) * (f - 2.0) / 2.0,
        -(f + 1.0) * f * (f - 2.0) / 2.0,
        (f + 1.0) * f * (f - 1.0) / 6.0,
    );
}

// The table entry G(u_k; α_a, β_b), decoded from its u16.
fn table_at(a: u32, b: u32, k: u32) -> f32 {
    let i = (a * STABLE_BETA_N + b) * STABLE_U_N + k;
    let w = cdf[i / 2u];
    let h = select(w & 0xffffu, w >> 16u, (i & 1u) == 1u);
    return f32(h) / 65535.0;
}

// Node k of G(·; α, |β|) on the u grid, as `StableCdf::new` builds it (β node -1 by reflection).
fn slice_node(k: u32, alpha: f32, beta_abs: f32) -> f32 {
    let ta = (alpha - STABLE_ALPHA_MIN) / STABLE_ALPHA_STEP;
    let ia = min(u32(max(floor(ta), 1.0)), STABLE_ALPHA_N - 3u);
    let wa = lagrange4(ta - f32(ia));
    let tb = beta_abs / STABLE_BETA_STEP;
    let ib = min(u32(floor(tb)), STABLE_BETA_N - 3u);
    let wb = lagrange4(tb - f32(ib));
    var v = 0.0;
    for (var da = 0u; da < 4u; da++) {
        for (var db = 0u; db < 4u; db++) {
            var g: f32;
            if (ib + db == 0u) {
                g = 1.0 - table_at(ia - 1u + da, 1u, STABLE_U_N - 1u - k);
            } else {
                g = table_at(ia - 1u + da, ib + db - 1u, k);
            }
            v += wa[da] * wb[db] * g;
        }
    }
    return v;
}

// G(z; α, |β|) from the slice: a 4-point cubic in u = asinh(z / Z_SCALE); past the grid the
// stable tail |z|^-α.
fn stable_pos(z: f32, a_s: f32) -> f32 {
    let az = abs(z) / STABLE_Z_SCALE;
    let u = sign(z) * ln_acc(az + sqrt(az * az + 1.0));
    if (abs(u) >= STABLE_U_MAX) {
        let decay = exp_acc(a_s * ln_acc(STABLE_Z_EDGE / abs(z)));
        if (z < 0.0) {
            return slice[0] * decay;
        }
        return 1.0 - (1.0 - slice[STABLE_U_N - 1u]) * decay;
    }
    let h = 2.0 * STABLE_U_MAX / f32(STABLE_U_N - 1u);
    let t = (u + STABLE_U_MAX) / h;
    let i = min(u32(max(floor(t), 1.0)), STABLE_U_N - 3u);
    let w = lagrange4(t - f32(i));
    let v = w.x * slice[i - 1u] + w.y * slice[i] + w.z * slice[i + 1u] + w.w * slice[i + 2u];
    return clamp(v, 0.0, 1.0);
}

// G(z; α, β) of the fitted law; G(z; α, β<0) = 1 - G(-z; α, |β|).
fn stable_cdf(z_in: f32) -> f32 {
    let a_s = fit_sh[1].x;
    let nolan_zeta = fit_sh[1].y;
    var z = z_in;
    if (abs(z - nolan_zeta) < fit_sh[1].z) {
        z = nolan_zeta;
    }
    if (a_s == 2.0) {
        // N(0, 2), as scipy evaluates α = 2.
        return normal_at(z * SQRT1_2).cdf;
    }
    if (fit_sh[0].y < 0.0) {
        return 1.0 - stable_pos(-z, a_s);
    }
    return stable_pos(z, a_s);
}

// Workgroup sum (or max) of one vec2 per thread, returned to every thread.
fn reduce(v: vec2<f32>, lid: u32, take_max: bool) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = FITS_WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let o = red[lid + s];
            red[lid] = select(red[lid] + o, max(red[lid], o), take_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// One compare-exchange of the sort: keys a < b put in order; a partner past n stands for +∞
// and is skipped.
fn order(a: u32, b: u32, n: u32) {
    if (b < n) {
        let x = keys[a];
        let y = keys[b];
        if (y < x) {
            keys[a] = y;
            keys[b] = x;
        }
    }
}

fn value(i: u32) -> f32 {
    return bitcast<f32>(xs[i / 4u][i % 4u]);
}

@compute @workgroup_size(FITS_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col = wid.x + wid.y * dims.grid_x;
    if (col >= dims.items) {
        return;
    }
    if (lid == 0u) {
        n_sh = min(counts[col], FITS_K_MAX);
    }
    let n = workgroupUniformLoad(&n_sh);
    if (n < 2u) {
        if (lid == 0u) {
            var f: CoordFit;
            f.n = n;
            f.status = FIT_NONE;
            fits[col] = f;
        }
        return;
    }
    let base = col * dims.rows;
    for (var i = lid; i < n; i += FITS_WG) {
        keys[i] = value(base + i);
    }
    workgroupBarrier();

    // 1. Mean and variances in sampling order: of all samples as they come (centred on the
    // host), of the first half about its first sample, so a constant first half gives exactly 0.
    let x0 = vec2<f32>(0.0, keys[0]);
    let half = n / 2u;
    var s = vec2<f32>(0.0);
    for (var i = lid; i < n; i += FITS_WG) {
        let d = keys[i] - x0;
        s += vec2<f32>(d.x, select(0.0, d.y, i < half));
    }
    let sums = reduce(s, lid, false);
    let m = vec2<f32>(sums.x / f32(n), sums.y / f32(max(half, 1u)));
    var q = vec2<f32>(0.0);
    for (var i = lid; i < n; i += FITS_WG) {
        let d = keys[i] - x0 - m;
        q += vec2<f32>(d.x * d.x, select(0.0, d.y * d.y, i < half));
    }
    let ss = reduce(q, lid, false);
    let var_all = ss.x / f32(n - 1u);
    let var_half = select(0.0, ss.y / f32(max(half, 2u) - 1u), half >= 2u);
    let mean = m.x;
    let sd = sqrt(var_all);
    let inv_sd = select(1.0 / sd, 0.0, sd == 0.0);

    // 2. Sort.
    var np2 = 1u;
    while (np2 < n) {
        np2 <<= 1u;
    }
    let pairs = np2 / 2u;
    for (var size = 2u; size <= np2; size <<= 1u) {
        let hs = size / 2u;
        for (var p = lid; p < pairs; p += FITS_WG) {
            order((p / hs) * size + p % hs, (p / hs) * size + size - 1u - p % hs, n);
        }
        workgroupBarrier();
        for (var st = hs / 2u; st > 0u; st >>= 1u) {
            for (var p = lid; p < pairs; p += FITS_WG) {
                let a = (p / st) * 2u * st + p % st;
                order(a, a + st, n);
            }
            workgroupBarrier();
        }
    }

    // 3. McCulloch.
    if (lid == 0u) {
        mcculloch(n);
    }
    workgroupBarrier();
    let fit = fit_sh[0];
    let law = fit_sh[1];
    let stable = law.w == 1.0;
    let inv_c = select(0.0, 1.0 / fit.z, stable);

    // 4. The stable CDF along the u grid.
    for (var k = lid; k < STABLE_U_N; k += FITS_WG) {
        slice[k] = select(0.0, slice_node(k, law.x, abs(fit.y)), stable && law.x < 2.0);
    }
    workgroupBarrier();

    // 5. Per sorted point.
    let nf = f32(n);
    var sum = vec2<f32>(0.0);  // Σ 2·KL, Σ u²
    var ks = vec2<f32>(0.0);   // KS to the normal, to the stable fit
    for (var i = lid; i < n; i += FITS_WG) {
        let x = keys[i];
        let at = normal_at((x - mean) * inv_sd);
        let e = (2.0 * f32(i) + 1.0) / (2.0 * nf);
        let kl = e * (ln_acc(e) - at.ln_cdf) + (1.0 - e) * (ln1p_acc(-e) - at.ln_sf);
        sum += vec2<f32>(2.0 * kl, x * x);
        let above = f32(i + 1u) / nf;
        let below = f32(i) / nf;
        ks.x = max(ks.x, max(above - at.cdf, at.cdf - below));
        if (stable) {
            let g = stable_cdf((x - fit.w) * inv_c);
            ks.y = max(ks.y, max(above - g, g - below));
        }
    }
    let total = reduce(sum, lid, false);
    let dist = reduce(ks, lid, true);

    if (lid == 0u) {
        // The ⌈n/100⌉ largest u² lie at the sorted ends: two cursors walk inwards.
        let top_k = (n + 99u) / 100u;
        var lo = 0u;
        var hi = n;
        var top = 0.0;
        for (var j = 0u; j < top_k; j++) {
            let a = keys[lo] * keys[lo];
            let b = keys[hi - 1u] * keys[hi - 1u];
            if (a > b) {
                top += a;
                lo += 1u;
            } else {
                top += b;
                hi -= 1u;
            }
        }
        var f: CoordFit;
        f.alpha = fit.x;
        f.beta = fit.y;
        f.scale = fit.z;
        f.zeta = fit.w;
        f.ad_excess = total.x;
        f.ks_gauss = dist.x;
        f.ks_stable = dist.y;
        f.top1_share = top / select(total.y, 1.0, total.y == 0.0);
        f.var_all = var_all;
        f.var_half = var_half;
        f.n = n;
        f.status = status_sh;
        fits[col] = f;
    }
}
