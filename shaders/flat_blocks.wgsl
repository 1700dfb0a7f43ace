// flat_blocks — pass 2, the GPU twin of the flat (Simsekli) part of
// `engine::cpu::coord_stats`.
//
// The host cuts each row of a unit into segments: runs of columns lying in one block of `m`
// consecutive flat indices of the tensor's flattening and in one of the whole input's
// (`engine::accum::FlatSpec::runs`, both at once). One workgroup reduces one segment: each
// thread sums u = x - centre and ln(|u| + eps) over finite x, strided by FLAT_WG
// (coalesced); the workgroup then combines the threads' (sum, compensation) pairs with TwoSum
// (Knuth) in a fixed order and writes one `FlatPartial`. The host adds the partials in f64
// into both flat states. No float atomics, so the result is deterministic. The count of
// finite entries comes from coord_stats.
//
// Σu is kept in double-f32 (~48 bits): u itself is formed exactly as a pair by TwoSum from x
// and the centre's hi/lo pair, and every addition's rounding error is kept. Flat blocks can
// cancel almost exactly (the bias gradient of a softmax layer sums to 0 over classes in every
// sample), and then ln|Y| of an f32 sum would be the log of rounding noise.
//
// Two entry points: `main` reduces through workgroup memory only; `main_subgroup` first
// reduces within each subgroup by shuffles (any subgroup size) and needs Features::SUBGROUP.
// The host cuts this file at the SUBGROUP VARIANT marker when the adapter lacks the feature.

// common.wgsl, prepended by the host, supplies Dims, ColParams, DTYPE and widen_f16.

// Mirrors `engine::gpu::context::Segment` (#[repr(C)], 16 bytes): columns c0..c1 of row `row`
// of the unit.
struct Segment {
    row: u32,
    c0: u32,
    c1: u32,
    pad: u32,
}

// Mirrors `engine::gpu::partials::FlatPartial` (#[repr(C)], 16 bytes): Σu and Σ ln(|u| + eps)
// of one segment, each as an f32 (sum, compensation) pair the host adds in f64.
struct FlatPartial {
    su: f32,
    su_c: f32,
    sl: f32,
    sl_c: f32,
}

const FLAT_WG: u32 = 128u;
// eps of the original `alpha_estimator` (np.spacing(1)), `stats::tail::FLAT_EPS`. In f32,
// ln(|u| + eps) equals ln|u| wherever the CPU's `flat_log` skips eps (|u| > 1e-6).
const FLAT_EPS: f32 = 2.220446049250313e-16;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> params: array<ColParams>;
@group(0) @binding(3) var<storage, read> segs: array<Segment>;
@group(0) @binding(4) var<storage, read_write> out: array<FlatPartial>;

var<workgroup> red: array<vec4<f32>, FLAT_WG>;

// Value of row `row`, column `c` of the unit, widened to f32; for f64 input (hi/lo f32
// pairs, 2 values per word) the low part goes to `lo`.
fn load1(row: u32, c: u32, lo: ptr<function, f32>) -> f32 {
    *lo = 0.0;
    if (DTYPE == 0u) {
        return flush4(vec4<f32>(bitcast<f32>(xs[row * dims.row_words + c / 4u][c % 4u]))).x;
    }
    if (DTYPE == 3u) {
        let w = bitcast<vec4<f32>>(xs[row * dims.row_words + c / 2u]);
        let odd = (c & 1u) == 1u;
        *lo = select(w.y, w.w, odd);
        return select(w.x, w.z, odd);
    }
    let w = xs[row * dims.row_words + c / 8u][(c / 2u) % 4u];
    let odd = (c & 1u) == 1u;
    if (DTYPE == 1u) {
        return widen_f16(vec4<u32>(select(w & 0xffffu, w >> 16u, odd))).x;
    }
    return flush4(vec4<f32>(bitcast<f32>(select(w << 16u, w & 0xffff0000u, odd)))).x;
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Knuth's TwoSum: a + b = s + e exactly. Intermediates are multiplied by dims.one, which the
// compiler cannot know is 1, so it cannot simplify (a + b) - a to b and drop e.
fn two_sum(a: f32, b: f32, e: ptr<function, f32>) -> f32 {
    let s = (a + b) * dims.one;
    let bv = (s - a) * dims.one;
    *e = (a - (s - bv)) + (b - bv);
    return s;
}

// Sum of two (sum, compensation) pairs, twice (xy and zw): TwoSum of the sums (Knuth), the
// rounding error added to the compensations.
fn combine(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    let s = (a.xz + b.xz) * dims.one;
    let bv = (s - a.xz) * dims.one;
    let e = (a.xz - (s - bv)) + (b.xz - bv);
    let c = a.yw + b.yw + e;
    return vec4<f32>(s.x, c.x, s.y, c.y);
}

// This thread's share of segment `item`.
fn thread_sum(item: u32, lid: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    if (item < dims.items) {
        let seg = segs[item];
        for (var c = seg.c0 + lid; c < seg.c1; c += FLAT_WG) {
            var xl: f32;
            let x = load1(seg.row, c, &xl);
            if (finite(x)) {
                let p = params[c];
                // u = uh + ul to ~48 bits: x_hi - centre_hi is exact, the low parts are small.
                var e1: f32;
                var e2: f32;
                var e3: f32;
                var e4: f32;
                let uh = two_sum(two_sum(x, -p.centre_hi, &e1), xl - p.centre_lo, &e2);
                let ul = e1 + e2;
                acc.x = two_sum(acc.x, uh, &e3);
                acc.y += e3 + ul;
                acc.z = two_sum(acc.z, log(abs(uh) + FLAT_EPS), &e4);
                acc.w += e4;
            }
        }
    }
    return acc;
}

fn write(item: u32, v: vec4<f32>) {
    if (item < dims.items) {
        out[item] = FlatPartial(v.x, v.y, v.z, v.w);
    }
}

@compute @workgroup_size(FLAT_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = wid.x + wid.y * dims.grid_x;
    red[lid] = thread_sum(item, lid);
    workgroupBarrier();
    for (var stride = FLAT_WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            red[lid] = combine(red[lid], red[lid + stride]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        write(item, red[0]);
    }
}

// --- SUBGROUP VARIANT (needs Features::SUBGROUP; the host drops what follows without it) ---

@compute @workgroup_size(FLAT_WG)
fn main_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) sgs: u32,
) {
    let item = wid.x + wid.y * dims.grid_x;
    var v = thread_sum(item, lid);
    // Butterfly over the subgroup, whatever its width; lane 0's total is the one kept.
    for (var mask = width / 2u; mask > 0u; mask >>= 1u) {
        v = combine(v, subgroupShuffleXor(v, mask));
    }
    if (lane == 0u) {
        red[sg] = v;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var t = red[0];
        for (var i = 1u; i < sgs; i++) {
            t = combine(t, red[i]);
        }
        write(item, t);
    }
}
