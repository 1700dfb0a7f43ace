// coord_mean — pass 1, the GPU twin of `engine::cpu::coord_mean`.
//
// One thread owns four adjacent columns (one vec4 load per row) of a unit and folds one row
// chunk of them: finite count, non-finite count, a reference value (the first finite sample it
// meets), the sum of x - reference in double-f32 (each difference split exactly by TwoSum,
// the pair accumulated with the rounding errors kept: ~48 bits), min and max. It writes these
// as a partial state per (chunk, column); the host folds them into `MeanAcc` in f64
// (sum = n·reference + hi + lo). Why so careful: pass 2 centres by this mean, and ln|x - mean|
// of a sample that lies within 1e-8 of the mean (real gradients have them) moves the
// log-moment α by 1e-4 when the mean moves by 1e-10 of the spread; an f32 sum would.
//
// Input: rows × `row_words` vec4<u32> words: 4 f32 values per word, 8 f16 / bf16 values
// widened here, or 2 f64 values as hi/lo f32 pairs (double-f32, ~48 bits); the DTYPE
// override picks one.

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

// 0: f32, 1: f16, 2: bf16, 3: f64 as hi/lo f32 pairs (`engine::gpu::context::DTYPE_*`).
override DTYPE: u32 = 0u;

const COORD_WG: u32 = 64u;
const MEAN_FIELDS: u32 = 9u;
// Largest finite f32: the min/max start values (inf literals are not WGSL); the host ignores
// min/max of a column with no finite sample.
const BIG: f32 = 3.4028234663852886e38;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;

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

// Knuth's TwoSum: a + b = s + e exactly. Intermediates are multiplied by dims.one, which the
// compiler cannot know is 1, so it cannot simplify (a + b) - a to b and drop e.
fn two_sum4(a: vec4<f32>, b: vec4<f32>, e: ptr<function, vec4<f32>>) -> vec4<f32> {
    let s = (a + b) * dims.one;
    let bv = (s - a) * dims.one;
    *e = (a - (s - bv)) + (b - bv);
    return s;
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
    let one = vec4<u32>(1u);
    let zero = vec4<u32>(0u);
    var n = zero;
    var bad = zero;
    var have = vec4<bool>(false);
    var xref = vec4<f32>(0.0);
    var s = vec4<f32>(0.0);
    var c = vec4<f32>(0.0);
    // Range as (hi, lo) pairs, compared lexicographically (the pairs are normalised).
    var mn = vec4<f32>(BIG);
    var mn_lo = vec4<f32>(0.0);
    var mx = vec4<f32>(-BIG);
    var mx_lo = vec4<f32>(0.0);
    for (var r = r0; r < r1; r++) {
        var xl: vec4<f32>;
        let x = load4(r, g, &xl);
        let fin = finite4(x);
        xref = select(xref, x, fin & !have);
        have = have | fin;
        n += select(zero, one, fin);
        bad += select(one, zero, fin);
        var e1: vec4<f32>;
        var e2: vec4<f32>;
        let d = two_sum4(x, -xref, &e1);
        s = two_sum4(s, select(vec4<f32>(0.0), d, fin), &e2);
        c += select(vec4<f32>(0.0), e1 + xl, fin) + e2;
        let below = fin & ((x < mn) | ((x == mn) & (xl < mn_lo)));
        mn = select(mn, x, below);
        mn_lo = select(mn_lo, xl, below);
        let above = fin & ((x > mx) | ((x == mx) & (xl > mx_lo)));
        mx = select(mx, x, above);
        mx_lo = select(mx_lo, xl, above);
    }
    // Partial states are [chunk][field][group] vec4 words: coalesced stores.
    let at = chunk * MEAN_FIELDS * dims.groups + g;
    out[at] = n;
    out[at + dims.groups] = bad;
    out[at + 2u * dims.groups] = bitcast<vec4<u32>>(xref);
    out[at + 3u * dims.groups] = bitcast<vec4<u32>>(s);
    out[at + 4u * dims.groups] = bitcast<vec4<u32>>(c);
    out[at + 5u * dims.groups] = bitcast<vec4<u32>>(mn);
    out[at + 6u * dims.groups] = bitcast<vec4<u32>>(mn_lo);
    out[at + 7u * dims.groups] = bitcast<vec4<u32>>(mx);
    out[at + 8u * dims.groups] = bitcast<vec4<u32>>(mx_lo);
}
