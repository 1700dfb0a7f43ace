// common — declarations shared by every kernel. The host prepends this file to each kernel's
// source (`engine::gpu::context::SHADERS` is common.wgsl + <kernel>.wgsl), so it is never a
// module of its own: it holds the host-mirrored structs `Dims` and `ColParams`, the `DTYPE`
// override, the coordinate workgroup size, and the load / finiteness / compensated-sum helpers.
// The helpers use the bindings `dims` (the `Dims` uniform, binding 0) and `xs` (the input words,
// binding 1), which every kernel declares with these names and types.

// Mirrors `engine::gpu::context::Dims` (#[repr(C)], 48 bytes). The uniform of every kernel.
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

// Mirrors `engine::gpu::context::ColParams` (#[repr(C)], 24 bytes): shift and centre of one
// column as f32 hi/lo pairs (hi = c as f32, lo = (c - hi) as f32), 1.0 when the column enters
// the pooled time-block sums (not constant, enough finite samples), else 0.0, and the binade e
// of its largest |x - shift| (which is < 2^e) that scales its moment sums.
struct ColParams {
    shift_hi: f32,
    shift_lo: f32,
    centre_hi: f32,
    centre_lo: f32,
    pool: f32,
    exp: i32,
}

// 0: f32, 1: f16, 2: bf16, 3: f64 as hi/lo f32 pairs (`engine::gpu::context::DTYPE_*`).
override DTYPE: u32 = 0u;

// Threads per workgroup of the per-coordinate kernels (coord_mean, coord_stats).
const COORD_WG: u32 = 64u;

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

// f32 subnormals (exponent bits 0) as 0: GPUs may flush them in arithmetic, and the CPU
// engine reads them as 0 too (`input::BlockData::widen_into`), so both engines agree.
fn flush4(x: vec4<f32>) -> vec4<f32> {
    let normal = (bitcast<vec4<u32>>(x) & vec4<u32>(0x7f800000u)) != vec4<u32>(0u);
    return select(vec4<f32>(0.0), x, normal);
}

// Four values of row `row`, columns 4g..4g+3 of the unit, widened to f32; for f64 input
// (uploaded as normalised hi/lo f32 pairs, 2 values per word) the low parts go to `lo`.
fn load4(row: u32, g: u32, lo: ptr<function, vec4<f32>>) -> vec4<f32> {
    *lo = vec4<f32>(0.0);
    if (DTYPE == 0u) {
        return flush4(bitcast<vec4<f32>>(xs[row * dims.row_words + g]));
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
    return flush4(bitcast<vec4<f32>>(vec4<u32>(p.x << 16u, p.x & 0xffff0000u, p.y << 16u, p.y & 0xffff0000u)));
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

// Knuth's TwoSum: a + b = s + e exactly. Intermediates are multiplied by dims.one, which the
// compiler cannot know is 1, so it cannot simplify (a + b) - a to b and drop e.
fn two_sum4(a: vec4<f32>, b: vec4<f32>, e: ptr<function, vec4<f32>>) -> vec4<f32> {
    let s = (a + b) * dims.one;
    let bv = (s - a) * dims.one;
    *e = (a - (s - bv)) + (b - bv);
    return s;
}

