// coord_moments — pass 2, the GPU twin of the moment part of `engine::cpu::coord_stats`.
//
// One thread owns four adjacent columns of a unit and one row chunk. Over finite x it forms
// d = (x_hi - shift_hi) + (x_lo - shift_lo) (the pass-1 mean as an f32 hi/lo pair, so
// centring loses nothing; x_lo is 0 except for f64 input) and sums d, d², d³, d⁴ with Neumaier compensation. Two sweeps: the first finds
// max |d|, the second sums d' = d·2^-e with 2^e the binade of that maximum, so |d'| < 1 and
// d'⁴ can neither overflow f32 nor sink into (flushed) subnormals for gradients of 1e-10.
// The thread writes s1..s4 of d' and e; the host rescales by 2^(k·e) (exact) in f64 and
// folds into `MomentAcc`. The count n comes from coord_tails (zeros + nonzero).

// Mirrors `engine::gpu::context::Dims` (#[repr(C)], 48 bytes). Same text in every kernel.
struct Dims {
    rows: u32,       // rows in this unit
    groups: u32,     // column groups of four (threads per row chunk)
    row_words: u32,  // vec4 words per input row
    chunk_rows: u32, // rows per row chunk (a multiple of K1 in pass 2)
    chunks: u32,     // row chunks
    col_wgs: u32,    // workgroups per row chunk
    grid_x: u32,     // workgroups along x of the 2-D grid
    items: u32,      // workgroups with work (col_wgs * chunks, or segments)
    row0: u32,       // absolute row of the unit's first row
    used_rows: u32,  // rows inside complete time blocks, K1·⌊K/K1⌋
    k1: u32,         // time block length K1
    one: f32,        // 1.0 from a uniform: the compiler cannot fold it (guards the compensated sums)
}

// Mirrors `engine::gpu::context::ColParams` (#[repr(C)], 16 bytes): shift and centre of one
// column as f32 hi/lo pairs (hi = c as f32, lo = (c - hi) as f32).
struct ColParams {
    shift_hi: f32,
    shift_lo: f32,
    centre_hi: f32,
    centre_lo: f32,
}

// 0: f32, 1: f16, 2: bf16, 3: f64 as hi/lo f32 pairs (`engine::gpu::context::DTYPE_*`).
override DTYPE: u32 = 0u;

const COORD_WG: u32 = 64u;
const MOMENT_FIELDS: u32 = 5u;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> params: array<ColParams>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<u32>>;

// IEEE binary16 bits (low 16 bits of each lane) to f32, exactly, in integer arithmetic:
// unpack2x16float would need the SHADER_F16_IN_F32 downlevel capability.
fn widen_f16(h: vec4<u32>) -> vec4<f32> {
    let sign = (h & vec4<u32>(0x8000u)) << vec4<u32>(16u);
    let e = (h >> vec4<u32>(10u)) & vec4<u32>(0x1fu);
    let m = h & vec4<u32>(0x3ffu);
    let normal = bitcast<vec4<f32>>(sign | ((e + vec4<u32>(112u)) << vec4<u32>(23u)) | (m << vec4<u32>(13u)));
    let special = bitcast<vec4<f32>>(sign | vec4<u32>(0x7f800000u) | (m << vec4<u32>(13u)));
    let sub = vec4<f32>(m) * 5.9604644775390625e-8; // m · 2^-24, exact
    let tiny = select(sub, -sub, sign != vec4<u32>(0u));
    return select(select(normal, special, e == vec4<u32>(31u)), tiny, e == vec4<u32>(0u));
}

// Four values of row `row`, columns 4g..4g+3 of the unit, widened to f32; for f64 input
// (uploaded as normalised hi/lo f32 pairs, 2 values per word) the low parts go to `lo`.
fn load4(row: u32, g: u32, lo: ptr<function, vec4<f32>>) -> vec4<f32> {
    *lo = vec4<f32>(0.0);
    if (DTYPE == 0u) {
        return bitcast<vec4<f32>>(xs[row * dims.row_words + g]);
    }
    if (DTYPE == 3u) {
        let a = bitcast<vec4<f32>>(xs[row * dims.row_words + 2u * g]);
        let b = bitcast<vec4<f32>>(xs[row * dims.row_words + 2u * g + 1u]);
        *lo = vec4<f32>(a.y, a.w, b.y, b.w);
        return vec4<f32>(a.x, a.z, b.x, b.z);
    }
    let w = xs[row * dims.row_words + g / 2u];
    let p = select(w.xy, w.zw, (g & 1u) == 1u);
    if (DTYPE == 1u) {
        return widen_f16(vec4<u32>(p.x & 0xffffu, p.x >> 16u, p.y & 0xffffu, p.y >> 16u));
    }
    return bitcast<vec4<f32>>(vec4<u32>(p.x << 16u, p.x & 0xffff0000u, p.y << 16u, p.y & 0xffff0000u));
}

// Not NaN and not ±inf, from the bits (x != x may be folded away by fast-math compilers).
fn finite4(x: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(x) & vec4<u32>(0x7f800000u)) != vec4<u32>(0x7f800000u);
}

// Neumaier's compensated sum (Neumaier 1974) of (s, c) += y; dims.one keeps the compiler
// from rewriting (s + y) - s as y.
fn add4(s: ptr<function, vec4<f32>>, c: ptr<function, vec4<f32>>, y: vec4<f32>) {
    let t = (*s + y) * dims.one;
    *c += select((y - t) + *s, (*s - t) + y, abs(*s) >= abs(y));
    *s = t;
}

@compute @workgroup_size(COORD_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = wid.x + wid.y * dims.grid_x;
    if (item >= dims.items) {
        return;
    }
    let chunk = item / dims.col_wgs;
    let g = (item % dims.col_wgs) * COORD_WG + lid;
    if (g >= dims.groups) {
        return;
    }
    let r0 = chunk * dims.chunk_rows;
    let r1 = min(r0 + dims.chunk_rows, dims.rows);
    let p0 = params[4u * g];
    let p1 = params[4u * g + 1u];
    let p2 = params[4u * g + 2u];
    let p3 = params[4u * g + 3u];
    let hi = vec4<f32>(p0.shift_hi, p1.shift_hi, p2.shift_hi, p3.shift_hi);
    let lo = vec4<f32>(p0.shift_lo, p1.shift_lo, p2.shift_lo, p3.shift_lo);
    let zero = vec4<f32>(0.0);

    var m = zero;
    for (var r = r0; r < r1; r++) {
        var xl: vec4<f32>;
        let x = load4(r, g, &xl);
        m = max(m, select(zero, abs((x - hi) + (xl - lo)), finite4(x)));
    }
    // |d| < 2^e; clamped so 2^-e stays a normal f32 (exact scaling).
    let e = clamp(frexp(m).exp, vec4<i32>(-126), vec4<i32>(126));
    let scale = ldexp(vec4<f32>(1.0), -e);

    var s1 = zero;
    var c1 = zero;
    var s2 = zero;
    var c2 = zero;
    var s3 = zero;
    var c3 = zero;
    var s4 = zero;
    var c4 = zero;
    for (var r = r0; r < r1; r++) {
        var xl: vec4<f32>;
        let x = load4(r, g, &xl);
        let d = select(zero, ((x - hi) + (xl - lo)) * scale, finite4(x));
        let d2 = d * d;
        add4(&s1, &c1, d);
        add4(&s2, &c2, d2);
        add4(&s3, &c3, d2 * d);
        add4(&s4, &c4, d2 * d2);
    }
    let at = chunk * MOMENT_FIELDS * dims.groups + g;
    out[at] = bitcast<vec4<u32>>(s1 + c1);
    out[at + dims.groups] = bitcast<vec4<u32>>(s2 + c2);
    out[at + 2u * dims.groups] = bitcast<vec4<u32>>(s3 + c3);
    out[at + 3u * dims.groups] = bitcast<vec4<u32>>(s4 + c4);
    out[at + 4u * dims.groups] = bitcast<vec4<u32>>(e);
}
