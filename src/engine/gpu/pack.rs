//! Host side of uploads: which kernel variant a block's dtype needs, repacking a unit into
//! rows of whole 16-byte words (f64 as centred hi/lo f32 pairs), writing it to the queue from
//! several threads, and the flat estimator's segment table.

use std::ops::Range;

use crate::engine::accum::FlatSpec;
use crate::input::{Block, BlockData};

use super::context::{DTYPE_BF16, DTYPE_F16, DTYPE_F32, DTYPE_F64};
use super::plan::WORD;

/// How a block's values go up: the kernel variant and bytes per value.
pub(super) fn upload_type(data: &BlockData) -> (u32, usize) {
    match data {
        BlockData::F32(_) => (DTYPE_F32, 4),
        BlockData::F64(_) => (DTYPE_F64, 8),
        BlockData::F16(_) => (DTYPE_F16, 2),
        BlockData::BF16(_) => (DTYPE_BF16, 2),
    }
}

/// Rows `rows` × columns `cols` (block-relative) of `block` as the kernels read them: `pitch`
/// values per row, zero padded; f64 values minus `refs[j]` (in f64) as (hi, lo) f32 pairs.
/// Borrows the block's own f32, f16 or bf16 data when it is already laid out so.
pub(super) fn pack<'a>(
    block: &'a Block,
    rows: &Range<usize>,
    cols: &Range<usize>,
    pitch: usize,
    refs: &[f64],
    stage: &'a mut Vec<u8>,
) -> &'a [u8] {
    let width = block.width();
    let w = cols.len();
    if cols.start == 0 && w == width && pitch == width {
        let whole = rows.start * width..rows.end * width;
        match &*block.data {
            BlockData::F32(v) => return bytemuck::cast_slice(&v[whole]),
            BlockData::F16(v) | BlockData::BF16(v) => return bytemuck::cast_slice(&v[whole]),
            BlockData::F64(_) => {}
        }
    }
    let elem = upload_type(&block.data).1;
    stage.clear();
    stage.resize(rows.len() * pitch * elem, 0);
    for (i, r) in rows.clone().enumerate() {
        let src = r * width + cols.start..r * width + cols.end;
        let dst = &mut stage[i * pitch * elem..(i * pitch + w) * elem];
        match &*block.data {
            BlockData::F32(v) => dst.copy_from_slice(bytemuck::cast_slice(&v[src])),
            BlockData::F16(v) | BlockData::BF16(v) => {
                dst.copy_from_slice(bytemuck::cast_slice(&v[src]))
            }
            BlockData::F64(v) => {
                debug_assert_eq!(refs.len(), w, "one reference per column");
                for ((d, &x), &r) in dst.chunks_exact_mut(8).zip(&v[src]).zip(refs) {
                    let x = x - r;
                    let hi = x as f32;
                    let lo = if x.is_finite() {
                        (x - hi as f64) as f32
                    } else {
                        0.0
                    };
                    d[..4].copy_from_slice(&hi.to_ne_bytes());
                    d[4..].copy_from_slice(&lo.to_ne_bytes());
                }
            }
        }
    }
    stage
}

/// Smallest piece [`write_in_pieces`] cuts an upload into.
pub(super) const UPLOAD_PIECE: usize = 1 << 20;

/// `queue.write_buffer(buf, 0, data)`, in pieces handed over from the rayon pool's threads:
/// wgpu copies each write into staging memory of its own before it takes the queue's lock, so
/// the host copy of a large unit, one thread's memcpy otherwise, runs on every core. The
/// pieces cover disjoint ranges, and all reach the device before the next submission's
/// commands; an error on another thread reaches the device's uncaptured-error handler, which
/// fails the next wait.
pub(super) fn write_in_pieces(queue: &wgpu::Queue, buf: &wgpu::Buffer, data: &[u8]) {
    use rayon::prelude::*;
    let piece = data
        .len()
        .div_ceil(rayon::current_num_threads())
        .max(UPLOAD_PIECE)
        .next_multiple_of(WORD as usize);
    if data.len() <= piece {
        queue.write_buffer(buf, 0, data);
        return;
    }
    data.par_chunks(piece)
        .enumerate()
        .for_each(|(i, c)| queue.write_buffer(buf, (i * piece) as u64, c));
}

/// Pass-1 references of f64 input: each column's first finite value in the unit, or 0.
pub(super) fn first_finite(block: &Block, rows: &Range<usize>, cols: &Range<usize>) -> Vec<f64> {
    let BlockData::F64(v) = &*block.data else {
        return Vec::new();
    };
    let width = block.width();
    cols.clone()
        .map(|c| {
            rows.clone()
                .map(|r| v[r * width + c])
                .find(|x| x.is_finite())
                .unwrap_or(0.0)
        })
        .collect()
}

/// Cuts row `row`, absolute columns `cols`, into segments lying in one flat block of both
/// flattenings: `(columns, tensor block, model block)`.
pub(super) fn segments(
    tensor: &FlatSpec,
    model: &FlatSpec,
    row: usize,
    cols: Range<usize>,
    mut push: impl FnMut(Range<usize>, usize, usize),
) {
    let mut ti = tensor.runs(row, cols.clone());
    let mut mi = model.runs(row, cols.clone());
    let (Some(mut t), Some(mut m)) = (ti.next(), mi.next()) else {
        return;
    };
    let mut c = cols.start;
    while c < cols.end {
        let end = t.1.end.min(m.1.end);
        push(c..end, t.0, m.0);
        c = end;
        if c < cols.end {
            if t.1.end == end {
                t = ti.next().expect("runs cover the columns");
            }
            if m.1.end == end {
                m = mi.next().expect("runs cover the columns");
            }
        }
    }
}
