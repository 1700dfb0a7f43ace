// coord_moments — pass 2, the GPU twin of the moment part of `engine::cpu::coord_stats`.
//
// One thread owns four adjacent columns of a unit and one row chunk. Over finite x it forms
// d = (x_hi - shift_hi) + (x_lo - shift_lo) (the pass-1 mean as an f32 hi/lo pair, so
// centring loses nothing; x_lo is 0 except for f64 input) and sums d, d², d³, d⁴ with Neumaier compensation. Two sweeps: the first finds
// max |d|, the second sums d' = d·2^-e with 2^e the binade of that maximum, so |d'| < 1 and
// d'⁴ can neither overflow f32 nor sink into (flushed) subnormals for gradients of 1e-10.
// The thread writes s1..s4 of d' and e as one `MomentPartial`; the host rescales by 2^(k·e) (exact) in f64 and
// folds into `MomentAcc`. The count n comes from coord_tails (zeros + nonzero).

// common.wgsl, prepended by the host, supplies Dims, ColParams, DTYPE, COORD_WG, load4,
// finite4 and add4.

// Mirrors `engine::gpu::partials::MomentPartial` (#[repr(C)], 80 bytes): one thread's power
// sums of its four columns (lane l is column 4g + l) over one row chunk.
struct MomentPartial {
    s1: vec4<f32>, // Σ d'^k, compensated
    s2: vec4<f32>,
    s3: vec4<f32>,
    s4: vec4<f32>,
    e: vec4<i32>,  // d = d'·2^e
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> params: array<ColParams>;
@group(0) @binding(3) var<storage, read_write> out: array<MomentPartial>;

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
    // Partial states are [chunk][group].
    out[chunk * dims.groups + g] = MomentPartial(s1 + c1, s2 + c2, s3 + c3, s4 + c4, e);
}
