//! Readback: what a submitted unit's results are, and how each kernel's partial states are
//! folded into the f64 accumulators with the same `combine` the CPU engine uses.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, MeanAcc, MomentAcc, TailAcc};
use crate::engine::TensorAcc;

use super::context::Dims;
use super::plan::{MEAN_FIELDS, MOMENT_FIELDS, TAIL_FIELDS};

/// What a submitted unit's results are, to fold them when its buffer set comes round again.
pub(super) struct Pending {
    pub(super) submission: wgpu::SubmissionIndex,
    pub(super) mapped: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
    /// Bytes mapped from the start of the readback buffer.
    pub(super) bytes: u64,
    /// Byte offsets of the output sections in the readback buffer.
    pub(super) sections: Vec<u64>,
    /// Byte offset of the two resolved timestamps, when timing.
    pub(super) timestamps: Option<u64>,
    /// Absolute columns of the unit.
    pub(super) cols: Range<usize>,
    pub(super) groups: usize,
    pub(super) chunks: usize,
    pub(super) kind: PendingKind,
}

pub(super) enum PendingKind {
    /// Pass 1; per-column references subtracted on the host (f64 input), else empty.
    Mean { refs: Vec<f64> },
    /// Pass 2; for each flat segment, its block in the tensor's and the model's flattening,
    /// and the unit's launch shape (where `coord_tails` put the pooled time-block sums).
    Stats {
        seg_blocks: Vec<(usize, usize)>,
        dims: Dims,
    },
}

/// Where folded results go.
pub(super) enum Sink<'a> {
    Mean(&'a mut [MeanAcc]),
    Stats(&'a mut TensorAcc, &'a mut FlatAcc),
}

pub(super) fn read_f32(words: &[u32], i: usize) -> f64 {
    f32::from_bits(words[i]) as f64
}

/// Folds a pass-1 unit's partial states into `out`; `refs` were subtracted on the host.
pub(super) fn fold_mean(p: &Pending, refs: &[f64], words: &[u32], out: &mut [MeanAcc]) {
    let g4 = p.groups * 4;
    let base = (p.sections[0] / 4) as usize;
    for ch in 0..p.chunks {
        let at = base + ch * MEAN_FIELDS * g4;
        for (j, acc) in out[p.cols.clone()].iter_mut().enumerate() {
            let f = |k: usize| at + k * g4 + j;
            let n = words[f(0)] as u64;
            let r = refs.get(j).copied().unwrap_or(0.0);
            let pair = |k: usize| read_f32(words, f(k)) + read_f32(words, f(k + 1));
            let part = if n == 0 {
                MeanAcc {
                    nonfinite: words[f(1)] as u64,
                    ..MeanAcc::default()
                }
            } else {
                MeanAcc {
                    n,
                    nonfinite: words[f(1)] as u64,
                    // Σx = n·reference + Σ(x - reference), the latter a double-f32 pair.
                    sum: n as f64 * (r + read_f32(words, f(2))) + pair(3),
                    min: r + pair(5),
                    max: r + pair(7),
                }
            };
            acc.combine(&part);
        }
    }
}

/// Folds a pass-2 unit's partial states into the tensor's and the model's state.
pub(super) fn fold_stats(
    p: &Pending,
    seg_blocks: &[(usize, usize)],
    words: &[u32],
    out: &mut TensorAcc,
    model: &mut FlatAcc,
) {
    let g4 = p.groups * 4;
    let (mb, tb, fb) = (
        (p.sections[0] / 4) as usize,
        (p.sections[1] / 4) as usize,
        (p.sections[2] / 4) as usize,
    );
    let mut finite = 0u64;
    for ch in 0..p.chunks {
        let m_at = mb + ch * MOMENT_FIELDS * g4;
        let t_at = tb + ch * TAIL_FIELDS * g4;
        for (j, acc) in out.coords[p.cols.clone()].iter_mut().enumerate() {
            let m = |k: usize| m_at + k * g4 + j;
            let t = |k: usize| t_at + k * g4 + j;
            let zeros = words[t(0)] as u64;
            let nz = words[t(1)] as u64;
            let n = zeros + nz;
            finite += n;
            // d = d'·2^e: rescale the power sums exactly.
            let sc = 2f64.powi(words[m(4)] as i32);
            let (sc2, sc3, sc4) = (sc * sc, sc * sc * sc, sc * sc * sc * sc);
            let moments = MomentAcc {
                n,
                s1: read_f32(words, m(0)) * sc,
                s2: read_f32(words, m(1)) * sc2,
                s3: read_f32(words, m(2)) * sc3,
                s4: read_f32(words, m(3)) * sc4,
            };
            // Logs were summed as l - L0: add L0 back.
            let l0 = read_f32(words, t(9));
            let (sl, sl2) = (read_f32(words, t(2)), read_f32(words, t(3)));
            let (ny, nx) = (words[t(4)] as u64, words[t(6)] as u64);
            let tails = TailAcc {
                zeros,
                nz,
                sl: sl + nz as f64 * l0,
                sl2: sl2 + 2.0 * l0 * sl + nz as f64 * l0 * l0,
                ny,
                ly: read_f32(words, t(5)) + ny as f64 * l0,
                lm: read_f32(words, t(10)),
                nx,
                lx: read_f32(words, t(7)) + nx as f64 * l0,
                bad_blocks: words[t(8)] as u64,
            };
            acc.combine(&CoordAcc { moments, tails });
        }
    }
    let mut lx = 0.0;
    for (k, &(bt, bm)) in seg_blocks.iter().enumerate() {
        let at = fb + 4 * k;
        let su = read_f32(words, at) + read_f32(words, at + 1);
        lx += read_f32(words, at + 2) + read_f32(words, at + 3);
        out.flat.blocks[bt] += su;
        model.blocks[bm] += su;
    }
    out.flat.n += finite;
    out.flat.lx += lx;
    model.n += finite;
    model.lx += lx;
}

/// Folds `coord_tails`' pooled sums of a unit (after its per-column fields, from word `tail`
/// of the readback) into the tensor's per-time-block sums: one pair of words per (row chunk,
/// time block slot, workgroup), read only for slots whose block closed inside the unit.
pub(super) fn fold_pooled(d: &Dims, tail: usize, words: &[u32], blocks: &mut [BlockSums]) {
    let (k1, chunk_rows) = (d.k1 as usize, d.chunk_rows as usize);
    let per_chunk = chunk_rows / k1;
    let (row0, col_wgs) = (d.row0 as usize, d.col_wgs as usize);
    let end = (row0 + d.rows as usize).min(d.used_rows as usize);
    let base = tail + d.chunks as usize * TAIL_FIELDS * d.groups as usize * 4;
    for ch in 0..d.chunks as usize {
        for b in 0..per_chunk {
            let start = row0 + ch * chunk_rows + b * k1;
            if start + k1 > end {
                break;
            }
            let sums = &mut blocks[start / k1];
            for w in 0..col_wgs {
                let at = base + 8 * ((ch * per_chunk + b) * col_wgs + w);
                sums.combine(&BlockSums {
                    sx: read_f32(words, at),
                    nx: read_f32(words, at + 1),
                    sy: read_f32(words, at + 2),
                    ny: read_f32(words, at + 3),
                    sm: read_f32(words, at + 4),
                });
            }
        }
    }
}
/// The readback side of a launched unit.
pub(super) struct PendingIo {
    pub(super) mapped: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
    pub(super) bytes: u64,
    pub(super) sections: Vec<u64>,
    pub(super) timestamps: Option<u64>,
}

impl PendingIo {
    pub(super) fn pending(
        self,
        submission: wgpu::SubmissionIndex,
        cols: Range<usize>,
        groups: usize,
        chunks: usize,
        kind: PendingKind,
    ) -> Pending {
        Pending {
            submission,
            mapped: self.mapped,
            bytes: self.bytes,
            sections: self.sections,
            timestamps: self.timestamps,
            cols,
            groups,
            chunks,
            kind,
        }
    }
}
