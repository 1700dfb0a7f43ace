// coord_mean — pass 1, the GPU twin of `engine::cpu::coord_mean`.
//
// One thread owns four adjacent columns (one vec4 load per row) of a unit and folds one row
// chunk of them: finite count, non-finite count, a reference value (the first finite sample it
// meets), the sum of x - reference in double-f32 (each difference split exactly by TwoSum,
// the pair accumulated with the rounding errors kept: ~48 bits), min and max. It writes these
// as one `MeanPartial` per (chunk, column group); the host folds them into `MeanAcc` in f64
// (sum = n·reference + hi + lo). Why so careful: pass 2 centres by this mean, and ln|x - mean|
// of a sample that lies within 1e-8 of the mean (real gradients have them) moves the
// log-moment α by 1e-4 when the mean moves by 1e-10 of the spread; an f32 sum would.
//
// Input: rows × `row_words` vec4<u32> words: 4 f32 values per word, 8 f16 / bf16 values
// widened here, or 2 f64 values as hi/lo f32 pairs (double-f32, ~48 bits); the DTYPE
// override picks one.

// common.wgsl, prepended by the host, supplies Dims, DTYPE, COORD_WG, load4, finite4 and
// two_sum4.

// Mirrors `engine::gpu::partials::MeanPartial` (#[repr(C)], 144 bytes): one thread's state of
// its four columns (lane l is column 4g + l) over one row chunk.
struct MeanPartial {
    n: vec4<u32>,      // finite samples
    bad: vec4<u32>,    // non-finite samples
    xref: vec4<f32>,   // the first finite sample met
    s: vec4<f32>,      // Σ(x - xref) as a double-f32 pair s + c
    c: vec4<f32>,
    mn: vec4<f32>,     // min and max as (hi, lo) pairs
    mn_lo: vec4<f32>,
    mx: vec4<f32>,
    mx_lo: vec4<f32>,
}

// Largest finite f32: the min/max start values (inf literals are not WGSL); the host ignores
// min/max of a column with no finite sample.
const BIG: f32 = 3.4028234663852886e38;

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<MeanPartial>;

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
    // Partial states are [chunk][group].
    out[chunk * dims.groups + g] = MeanPartial(n, bad, xref, s, c, mn, mn_lo, mx, mx_lo);
}
