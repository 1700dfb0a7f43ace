// gram — the K × K Gram matrix UUᵀ of a block's centred columns, the GPU twin of
// `engine::cpu::gram` (faer's triangular product). U is K samples × `cols` coordinates,
// u = (x − centre) · scale, x widened from the input dtype by `load4`.
//
// A tiled GEMM. The output is cut into GRAM_TILE × GRAM_TILE tiles and only the upper
// triangle of tiles (ti ≤ tj) is computed: workgroup (x, y) takes tile pair `gp.pair0 + x`
// over slice y of the coordinates (GRAM_CHUNK-aligned, `gp.slice_cols` long). Per step the
// workgroup stages GRAM_DEPTH coordinates of the tile's 2 × GRAM_TILE rows in workgroup memory
// (one `load4` per thread and row tile); each of its 16 × 16 threads then owns a 4 × 4
// micro-tile of outputs (rows ty + 16a, columns tx + 16b: strided, so the staged rows are read
// without bank conflicts). It writes its partial tile as (sum, compensation) f32 pairs, one
// tile per (slice, pair); the host adds every slice's pairs in f64 (`engine::gpu::gram`).
//
// Precision. Each output sums products over the slice in two levels: a plain f32 run of
// GRAM_CHUNK = 64 products (error ≤ γ_64 ≈ 64·2^-24 of Σ|u_i u_j| over the chunk, about
// √64·2^-24 ≈ 5e-7 of it in practice), then Neumaier's compensated sum of the chunks' totals
// (error ≈ 2^-24 of the slice's |sum| plus O(n·2^-48) of its Σ|·|, whatever the slice's
// length), and the slices' (sum, compensation) pairs are added in f64 on the host. A plain
// f32 sum over millions of coordinates would instead lose ~n·2^-24 of Σ|u_i u_j| (worst case),
// all digits once n approaches 2^24. The entries so carry about the error of u itself (x − c
// rounded to f32: 2^-24 relative per element), ~1e-6 of Σ|u_i||u_j|. No overflow: the host
// picks `scale`, a power of two, so that every |u| ≤ 1 (products ≤ 1, sums ≤ slice length);
// values that flush to 0 at that scale are below 2^-126 of the largest, far under f32's
// resolution of the sums. The host checks the input for NaN and ±∞ first (and then makes the
// Gram NaN itself): no value here is non-finite.

// Mirrors `engine::gpu::gram::GramParams` (#[repr(C)], 32 bytes).
struct GramParams {
    k: u32,          // samples: rows of U
    tiles: u32,      // output tiles per side, ⌈K / GRAM_TILE⌉
    pair0: u32,      // first upper-triangle tile pair of this dispatch
    pairs: u32,      // tile pairs in this dispatch (grid x)
    cols: u32,       // coordinates in this dispatch
    slice_cols: u32, // coordinates per slice, a multiple of GRAM_CHUNK (grid y: slices)
    scale: f32,      // power of two multiplying u, so that |u| ≤ 1
    pad: u32,
}

const GRAM_TILE: u32 = 64u;  // output tile side
const GRAM_DEPTH: u32 = 16u; // coordinates staged per step
const GRAM_CHUNK: u32 = 64u; // coordinates summed in plain f32 before a compensated add
const GRAM_WG: u32 = 256u;   // threads: 16 × 16, 4 × 4 outputs each

// Dims: rows = K, row_words (for `load4`) and one; the rest is unused here.
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> gp: GramParams;
// Per coordinate the centre as an f32 (hi, lo) pair (zero for f64 input: the host subtracts it
// in f64 before the hi/lo split), padded to the input's row pitch.
@group(0) @binding(3) var<storage, read> centre: array<vec2<f32>>;
// Per (slice, pair) a GRAM_TILE × GRAM_TILE tile, row-major, of (sum, compensation).
@group(0) @binding(4) var<storage, read_write> out: array<vec2<f32>>;

// Staged coordinates, [d · GRAM_TILE + row]: rows of tile ti in `ta`, of tile tj in `tb`.
var<workgroup> ta: array<f32, 1024>;
var<workgroup> tb: array<f32, 1024>;

// Four centred, scaled values of U: row `row`, coordinates 4g … 4g+3; 0 past K rows or past
// `cols` coordinates (the padding of a row is not noise).
fn centred4(row: u32, g: u32) -> vec4<f32> {
    if (row >= gp.k || 4u * g >= gp.cols) {
        return vec4<f32>(0.0);
    }
    var lo: vec4<f32>;
    let x = load4(row, g, &lo);
    let c0 = centre[4u * g];
    let c1 = centre[4u * g + 1u];
    let c2 = centre[4u * g + 2u];
    let c3 = centre[4u * g + 3u];
    let hi = vec4<f32>(c0.x, c1.x, c2.x, c3.x);
    let clo = vec4<f32>(c0.y, c1.y, c2.y, c3.y);
    let u = (((x - hi) - clo) + lo) * gp.scale;
    let inside = vec4<u32>(4u * g) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(gp.cols);
    return select(vec4<f32>(0.0), u, inside);
}

@compute @workgroup_size(GRAM_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Tile pair q → (ti, tj), ti ≤ tj, row by row of the upper triangle.
    var rem = gp.pair0 + wid.x;
    var ti = 0u;
    loop {
        if (rem < gp.tiles - ti) {
            break;
        }
        rem -= gp.tiles - ti;
        ti += 1u;
    }
    let tj = ti + rem;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // The thread's staging share: row `lr` of both row tiles, coordinates 4·lq … 4·lq+3 of
    // the step.
    let lr = lid / 4u;
    let lq = lid % 4u;
    let c_start = wid.y * gp.slice_cols;
    let c_end = min(c_start + gp.slice_cols, gp.cols);

    var s: array<vec4<f32>, 4>;
    var c: array<vec4<f32>, 4>;
    for (var a = 0u; a < 4u; a++) {
        s[a] = vec4<f32>(0.0);
        c[a] = vec4<f32>(0.0);
    }
    for (var chunk = c_start; chunk < c_end; chunk += GRAM_CHUNK) {
        var part: array<vec4<f32>, 4>;
        for (var a = 0u; a < 4u; a++) {
            part[a] = vec4<f32>(0.0);
        }
        for (var step = chunk; step < chunk + GRAM_CHUNK; step += GRAM_DEPTH) {
            let g = step / 4u + lq;
            let ua = centred4(ti * GRAM_TILE + lr, g);
            let ub = centred4(tj * GRAM_TILE + lr, g);
            workgroupBarrier();
            for (var e = 0u; e < 4u; e++) {
                ta[(4u * lq + e) * GRAM_TILE + lr] = ua[e];
                tb[(4u * lq + e) * GRAM_TILE + lr] = ub[e];
            }
            workgroupBarrier();
            for (var d = 0u; d < GRAM_DEPTH; d++) {
                let b = vec4<f32>(
                    tb[d * GRAM_TILE + tx],
                    tb[d * GRAM_TILE + tx + 16u],
                    tb[d * GRAM_TILE + tx + 32u],
                    tb[d * GRAM_TILE + tx + 48u],
                );
                for (var a = 0u; a < 4u; a++) {
                    part[a] = fma(vec4<f32>(ta[d * GRAM_TILE + ty + 16u * a]), b, part[a]);
                }
            }
        }
        // common.wgsl's `add4` (Neumaier's step), written out: naga's SPIR-V backend cannot
        // pass a pointer to a dynamically indexed array element to a function.
        for (var a = 0u; a < 4u; a++) {
            let y = part[a];
            let t = (s[a] + y) * dims.one;
            c[a] += select((y - t) + s[a], (s[a] - t) + y, abs(s[a]) >= abs(y));
            s[a] = t;
        }
    }
    let base = (wid.y * gp.pairs + wid.x) * GRAM_TILE * GRAM_TILE;
    for (var a = 0u; a < 4u; a++) {
        let row = base + (ty + 16u * a) * GRAM_TILE + tx;
        for (var b = 0u; b < 4u; b++) {
            out[row + 16u * b] = vec2<f32>(s[a][b], c[a][b]);
        }
    }
}
