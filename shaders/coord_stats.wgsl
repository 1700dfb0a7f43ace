// coord_stats — pass 2, the GPU twin of `engine::cpu::coord_stats`: the moment power sums and
// the tail statistics of each coordinate from one read of the data.
//
// One thread owns four adjacent columns of a unit and one row chunk (a multiple of K1 rows
// starting at a multiple of K1, so time blocks never straddle threads).
//
// Moments (`engine::accum::MomentAcc`): over finite x it forms d = (x_hi - shift_hi) +
// (x_lo - shift_lo) (the pass-1 mean as an f32 hi/lo pair, so centring loses nothing; x_lo is
// 0 except for f64 input) and sums d', d'², d'³, d'⁴ with Neumaier compensation, where
// d' = d·2^-e and 2^e bounds the column's largest |d| (from pass 1's range, `ColParams.exp`):
// |d'| ≤ 1, so d'⁴ can neither overflow f32 nor sink into (flushed) subnormals for gradients
// of 1e-10. The thread writes s1..s4 and e as one `MomentPartial`; the host rescales by
// 2^(k·e) (exact) in f64. The count n is the tails' zeros + nonzero.
//
// Tails: over finite x it forms u = x - centre (the centre as an f32 hi/lo pair) and keeps,
// per column (`engine::accum::TailAcc`):
//   zeros, nz, Σ ln|u|, Σ ln²|u| over nonzero u;
//   for rows < used_rows, per time block of K1 rows: the block sum Y (compensated) and the
//   count m of nonzero u in it; on closing the block, Σ ln|u| with the count of nonzero u
//   inside it, and — when m ≥ 2 and Y ≠ 0 (the zeros rule: such a block is a sum of m iid
//   terms, of scale m^(1/α)) — ln|Y|, a count, and ln m; or, when the block held a non-finite
//   sample, nothing but bad += 1.
// The block sum Y is double-f32: u is formed exactly as a pair by TwoSum (x and the centre's
// hi/lo pair) and every addition's rounding error is kept, so a block that nearly cancels
// still gives ln|Y| of Y, not of rounding noise. Logs are f32 (f64 transcendentals are wrong
// on lavapipe). Every log is summed relative to
// L0, the first ln|u| the thread meets, so Σ(l - L0)² keeps its digits when the mean log is
// far from 0 (the log-moment variance Σl² - (Σl)²/n cancels otherwise); the host adds L0
// back in f64.
//
// The thread writes its columns' tail state as one `TailPartial` per (row chunk, column group).
// Each closed time block's five sums, over the columns whose `pool` flag is set (not constant,
// enough finite samples), are also reduced over the workgroup in workgroup memory and written
// as one `BlockPartial` per (row chunk, time block, workgroup) to `blocks`: the host keeps
// them per time block for the delete-one-time-block jackknife (`engine::accum::BlockSums`).
// Every thread of a workgroup shares its row chunk, so the block boundaries, and the barriers
// at them, are uniform; threads past the last column group stay in the loop, masked.

// common.wgsl, prepended by the host, supplies Dims, ColParams, DTYPE, COORD_WG, load4,
// finite4, add4 and two_sum4.

// Mirrors `engine::gpu::partials::MomentPartial` (#[repr(C)], 80 bytes): one thread's power
// sums of its four columns (lane l is column 4g + l) over one row chunk.
struct MomentPartial {
    s1: vec4<f32>, // Σ d'^k, compensated
    s2: vec4<f32>,
    s3: vec4<f32>,
    s4: vec4<f32>,
    e: vec4<i32>,  // d = d'·2^e
}

// Mirrors `engine::gpu::partials::TailPartial` (#[repr(C)], 176 bytes): one thread's state of
// its four columns (lane l is column 4g + l) over one row chunk, logs relative to l0.
struct TailPartial {
    zeros: vec4<u32>, // finite u = 0
    nz: vec4<u32>,    // finite u ≠ 0
    sl: vec4<f32>,    // Σ(l - l0), l = ln|u|
    sl2: vec4<f32>,   // Σ(l - l0)²
    ny: vec4<u32>,    // counted time blocks
    ly: vec4<f32>,    // their Σ(ln|Y| - l0)
    nx: vec4<u32>,    // nonzero u in good time blocks
    lx: vec4<f32>,    // their Σ(l - l0)
    bad: vec4<u32>,   // time blocks with a non-finite sample
    l0: vec4<f32>,    // the first ln|u| met
    lm: vec4<f32>,    // Σ ln m over counted blocks
}

// Mirrors `engine::gpu::partials::BlockPartial` (#[repr(C)], 20 bytes): one time block's sums
// over the pooled columns of one workgroup, in absolute logs (`engine::accum::BlockSums`).
struct BlockPartial {
    sx: f32, // Σ ln|u| over nonzero u
    nx: f32, // their count
    sy: f32, // Σ ln|Y| over counted columns
    ny: f32, // their count
    sm: f32, // Σ ln m over counted columns
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> xs: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> params: array<ColParams>;
@group(0) @binding(3) var<storage, read_write> moments: array<MomentPartial>;
@group(0) @binding(4) var<storage, read_write> out: array<TailPartial>;
@group(0) @binding(5) var<storage, read_write> blocks: array<BlockPartial>;

// One thread's pooled block sums: (Σ ln|u|, #u, Σ ln|Y|, #Y) and Σ ln m.
var<workgroup> red_a: array<vec4<f32>, COORD_WG>;
var<workgroup> red_m: array<f32, COORD_WG>;

@compute @workgroup_size(COORD_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = wid.x + wid.y * dims.grid_x;
    if (item >= dims.items) {
        return;
    }
    let chunk = item / dims.col_wgs;
    let wg_col = item % dims.col_wgs;
    let g_raw = wg_col * COORD_WG + lid;
    let live = g_raw < dims.groups;
    // Threads past the last column group read group 0 and contribute nothing.
    let g = select(0u, g_raw, live);
    let r0 = chunk * dims.chunk_rows;
    let r1 = min(r0 + dims.chunk_rows, dims.rows);
    let p0 = params[4u * g];
    let p1 = params[4u * g + 1u];
    let p2 = params[4u * g + 2u];
    let p3 = params[4u * g + 3u];
    let chi = vec4<f32>(p0.centre_hi, p1.centre_hi, p2.centre_hi, p3.centre_hi);
    let clo = vec4<f32>(p0.centre_lo, p1.centre_lo, p2.centre_lo, p3.centre_lo);
    let pool = vec4<f32>(p0.pool, p1.pool, p2.pool, p3.pool) * select(0.0, 1.0, live);
    let shi = vec4<f32>(p0.shift_hi, p1.shift_hi, p2.shift_hi, p3.shift_hi);
    let slo = vec4<f32>(p0.shift_lo, p1.shift_lo, p2.shift_lo, p3.shift_lo);
    let e = vec4<i32>(p0.exp, p1.exp, p2.exp, p3.exp);
    let scale = ldexp(vec4<f32>(1.0), -e);
    let zero = vec4<f32>(0.0);
    let one = vec4<f32>(1.0);
    let n0 = vec4<u32>(0u);
    let n1 = vec4<u32>(1u);

    var s1 = zero;
    var c1 = zero;
    var s2 = zero;
    var c2 = zero;
    var s3 = zero;
    var c3 = zero;
    var s4 = zero;
    var c4 = zero;
    var zeros = n0;
    var nz = n0;
    var l0 = zero;
    var sl = zero;
    var slc = zero;
    var sl2 = zero;
    var sl2c = zero;
    var ny = n0;
    var ly = zero;
    var lyc = zero;
    var lm = zero;
    var lmc = zero;
    var nx = n0;
    var lx = zero;
    var lxc = zero;
    var bad = n0;
    // The open time block: Σu (double-f32), Σ(l - L0) and count of nonzero u, poison flag.
    var ys = zero;
    var ysc = zero;
    var ps = zero;
    var psc = zero;
    var pn = n0;
    var poison = vec4<bool>(false);
    // Pooled block sums of this workgroup: one per (row chunk, time block of the chunk,
    // workgroup).
    let blocks_per_chunk = dims.chunk_rows / dims.k1;

    for (var r = r0; r < r1; r++) {
        var xl: vec4<f32>;
        let x = load4(r, g, &xl);
        let fin = finite4(x);
        let d = select(zero, ((x - shi) + (xl - slo)) * scale, fin);
        let d2 = d * d;
        add4(&s1, &c1, d);
        add4(&s2, &c2, d2);
        add4(&s3, &c3, d2 * d);
        add4(&s4, &c4, d2 * d2);
        // u = uh + (e1 + e2): x_hi - centre_hi is exact (TwoSum), the low parts are small.
        var e1: vec4<f32>;
        var e2: vec4<f32>;
        let uh = two_sum4(two_sum4(x, -chi, &e1), xl - clo, &e2);
        let u = select(zero, uh, fin);
        let nzm = fin & (u != zero);
        zeros += select(n0, n1, fin & !nzm);
        let l = log(select(one, abs(u), nzm));
        l0 = select(l0, l, nzm & (nz == n0));
        nz += select(n0, n1, nzm);
        let dl = select(zero, l - l0, nzm);
        add4(&sl, &slc, dl);
        add4(&sl2, &sl2c, dl * dl);

        let row = dims.row0 + r;
        if (row < dims.used_rows) {
            poison = poison | !fin;
            var e3: vec4<f32>;
            ys = two_sum4(ys, u, &e3);
            ysc += select(zero, e1 + e2, fin) + e3;
            add4(&ps, &psc, dl);
            pn += select(n0, n1, nzm);
            if ((row + 1u) % dims.k1 == 0u) {
                let good = !poison;
                bad += select(n1, n0, good);
                add4(&lx, &lxc, select(zero, ps + psc, good));
                nx += select(n0, pn, good);
                let y = ys + ysc;
                // Counted: m ≥ 2 nonzero entries and Y ≠ 0 (which implies L0 is set).
                let counted = good & (y != zero) & (pn >= vec4<u32>(2u));
                let lyb = log(select(one, abs(y), counted));
                let lmb = log(vec4<f32>(max(pn, n1)));
                add4(&ly, &lyc, select(zero, lyb - l0, counted));
                add4(&lm, &lmc, select(zero, lmb, counted));
                ny += select(n0, n1, counted);

                // This thread's share of the pooled block sums, in absolute logs.
                let gp = select(zero, pool, good);
                let cp = select(zero, pool, counted);
                let pnf = vec4<f32>(pn);
                let sx = (ps + psc + pnf * l0) * gp;
                red_a[lid] = vec4<f32>(
                    dot(sx, one),
                    dot(pnf, gp),
                    dot(select(zero, lyb, counted), cp),
                    dot(select(zero, one, counted), cp),
                );
                red_m[lid] = dot(select(zero, lmb, counted), cp);
                workgroupBarrier();
                for (var s = COORD_WG / 2u; s > 0u; s >>= 1u) {
                    if (lid < s) {
                        red_a[lid] += red_a[lid + s];
                        red_m[lid] += red_m[lid + s];
                    }
                    workgroupBarrier();
                }
                if (lid == 0u) {
                    let b = (r - r0) / dims.k1;
                    let a = red_a[0];
                    blocks[(chunk * blocks_per_chunk + b) * dims.col_wgs + wg_col] =
                        BlockPartial(a.x, a.y, a.z, a.w, red_m[0]);
                }
                // The next block's writes to red_* must wait until thread 0 has read them.
                workgroupBarrier();

                ys = zero;
                ysc = zero;
                ps = zero;
                psc = zero;
                pn = n0;
                poison = vec4<bool>(false);
            }
        }
    }
    if (!live) {
        return;
    }
    // Partial states are [chunk][group].
    moments[chunk * dims.groups + g] = MomentPartial(s1 + c1, s2 + c2, s3 + c3, s4 + c4, e);
    out[chunk * dims.groups + g] = TailPartial(
        zeros, nz, sl + slc, sl2 + sl2c, ny, ly + lyc, nx, lx + lxc, bad, l0, lm + lmc,
    );
}
