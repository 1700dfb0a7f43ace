// xmin_scan — the Kolmogorov–Smirnov distance D of a power-law fit at candidate xmins, the
// O(n²) part of the `powerlaw` package's xmin search (Clauset, Shalizi & Newman 2009, §3), the
// GPU twin of `stats::structure::powerlaw::Sample::distance` (which the CPU engine runs, in f64).
//
// One workgroup owns one candidate. The host uploads each sample's distinct values, ascending,
// as words (ln x as a normalised f32 pair hi + lo, formed from f64 on the host; the index of the
// value's first copy in the sorted sample; unused), and per candidate an `XminCand`: where the
// sample's words start, the candidate's distinct index u, the sample's distinct count m and size
// n, the slope 1 − α (α fitted on the host in f64) and whether α is in the package's range
// (0, 3). Over the distinct values j = u … m − 1 the threads form
//   model  = 1 − (x_j/xmin)^(1−α) = 1 − exp((1 − α)·(ln x_j − ln xmin))   (0 out of range: the
//            package's stand-in 1e-307 is 0 in f32),
//   actual = (first_j − first_u)/(n − first_u)   (the left-limit ECDF, renormalised above xmin)
// and reduce max and min of model − actual over the workgroup; D = max(D+, D−) as Python's
// max keeps D+ on a tie. The first point gives model = actual = 0, so D+ ≥ 0 ≥ −D− without
// infinities.
//
// Precision (α ≥ 1; the host keeps α < 1 for itself): ln x_j − ln xmin from the pairs has a
// relative error of ~2^-24, the slope and product add ~2·2^-24, so the exponent e ≤ 0 is off by
// ~3·2^-24·|e| and exp(e) by that times exp(e) ≤ 1/e; exp itself is within (3 + 2|e|) ulp
// (Vulkan); the ECDF is a quotient of exact integers (n < 2^24) or nearly so. Every term is
// within ~1e-6 of its f64 value; the host allows 1e-5 (`engine::gpu::XMIN_BOUND`) and
// recomputes in f64 every candidate within twice that of the smallest D, so the choice is exact.

// common.wgsl, prepended by the host, supplies Dims (items: candidates of this dispatch, grid_x,
// row0: index of the dispatch's first candidate) and the `xs` binding convention.

// Mirrors `engine::gpu::XminCand` (#[repr(C)], 24 bytes).
struct XminCand {
    base: u32,      // word of the sample's first distinct value in `xs`
    u: u32,         // the candidate's distinct index
    m: u32,         // distinct values of the sample
    n: u32,         // values of the sample
    slope: f32,     // 1 − α
    in_range: u32,  // 1 when 0 < α < 3, else 0
}

// Threads per workgroup (one candidate).
const XMIN_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> cands: array<XminCand>;
@group(0) @binding(3) var<storage, read_write> dist: array<f32>;

var<workgroup> red_hi: array<f32, XMIN_WG>;
var<workgroup> red_lo: array<f32, XMIN_WG>;

@compute @workgroup_size(XMIN_WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let k = wg.y * dims.grid_x + wg.x;
    // Uniform across the workgroup: the whole group leaves or none does.
    if (k >= dims.items) {
        return;
    }
    let c = cands[dims.row0 + k];
    let p0 = xs[c.base + c.u];
    let lmin_hi = bitcast<f32>(p0.x);
    let lmin_lo = bitcast<f32>(p0.y);
    let s = p0.z;
    let tail = f32(c.n - s);
    var hi = 0.0;
    var lo = 0.0;
    for (var j = c.u + t; j < c.m; j += XMIN_WG) {
        let p = xs[c.base + j];
        let d = (bitcast<f32>(p.x) - lmin_hi) + (bitcast<f32>(p.y) - lmin_lo);
        var model = 0.0;
        if (c.in_range == 1u) {
            model = 1.0 - exp(c.slope * d);
        }
        let diff = model - f32(p.z - s) / tail;
        hi = max(hi, diff);
        lo = min(lo, diff);
    }
    red_hi[t] = hi;
    red_lo[t] = lo;
    workgroupBarrier();
    for (var w = XMIN_WG / 2u; w > 0u; w = w / 2u) {
        if (t < w) {
            red_hi[t] = max(red_hi[t], red_hi[t + w]);
            red_lo[t] = min(red_lo[t], red_lo[t + w]);
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        let plus = red_hi[0];
        let minus = -red_lo[0];
        dist[dims.row0 + k] = select(plus, minus, minus > plus);
    }
}
