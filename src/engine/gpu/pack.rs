//! Host side of uploads: which kernel variant a block's dtype needs, repacking a unit into
//! rows of whole 16-byte words (f64 as centred hi/lo f32 pairs) from several threads, into a
//! mapped staging buffer or through the queue, and the flat estimator's segment table.

use std::ops::Range;

use crate::engine::accum::FlatSpec;
use crate::input::{Block, BlockData, Dtype, Values};

use wgpu::WriteOnly;

use super::context::{DTYPE_BF16, DTYPE_F16, DTYPE_F32, DTYPE_F64};
use super::plan::WORD;

/// How a block's values go up: the kernel variant and bytes per value.
pub(super) fn upload_type(data: &BlockData) -> (u32, usize) {
    match data.dtype() {
        Dtype::F32 => (DTYPE_F32, 4),
        Dtype::F64 => (DTYPE_F64, 8),
        Dtype::F16 => (DTYPE_F16, 2),
        Dtype::BF16 => (DTYPE_BF16, 2),
    }
}

/// Rows `rows` × columns `cols` (block-relative) of `block` as the kernels read them: `pitch`
/// values per row, zero padded; f64 values minus `refs[j]` (in f64) as (hi, lo) f32 pairs.
/// Borrows the block's own f32, f16 or bf16 data when it is already laid out so, else packs
/// into `stage`.
pub(super) fn pack<'a>(
    block: &'a Block,
    rows: &Range<usize>,
    cols: &Range<usize>,
    pitch: usize,
    refs: &[f64],
    stage: &'a mut Vec<u8>,
) -> &'a [u8] {
    if let Some(whole) = borrowed(block, rows, cols, pitch) {
        return whole;
    }
    let elem = upload_type(&block.data).1;
    stage.clear();
    stage.resize(rows.len() * pitch * elem, 0);
    pack_into(
        block,
        rows,
        cols,
        pitch,
        refs,
        WriteOnly::from(stage.as_mut_slice()),
    );
    stage
}

/// The block's own bytes for `rows` when a unit is all of its columns, unpadded, in a dtype
/// that goes up as stored.
fn borrowed<'a>(
    block: &'a Block,
    rows: &Range<usize>,
    cols: &Range<usize>,
    pitch: usize,
) -> Option<&'a [u8]> {
    let width = block.width();
    if cols.start != 0 || cols.len() != width || pitch != width || block.stride() != width {
        return None;
    }
    let whole = rows.start * width..rows.end * width;
    match block.data.values() {
        Values::F32(v) => Some(bytemuck::cast_slice(&v[whole])),
        Values::F16(v) | Values::BF16(v) => Some(bytemuck::cast_slice(&v[whole])),
        Values::F64(_) => None,
    }
}

/// [`pack`] written straight into `dst` (`rows.len() × pitch` values, e.g. a mapped staging
/// buffer, which is write-only and may be write-combined), pieces of about
/// [`UPLOAD_PIECE`] bytes spread over the rayon pool: one host copy from the block to memory
/// the device reads, on every core. Padding is written too, as zeros: a staging buffer is
/// reused and holds the previous batch's bytes.
pub(super) fn pack_into(
    block: &Block,
    rows: &Range<usize>,
    cols: &Range<usize>,
    pitch: usize,
    refs: &[f64],
    dst: WriteOnly<'_, [u8]>,
) {
    let elem = upload_type(&block.data).1;
    debug_assert_eq!(dst.len(), rows.len() * pitch * elem);
    use rayon::prelude::*;
    if let Some(src) = borrowed(block, rows, cols, pitch) {
        let pieces = split(dst, src.len(), UPLOAD_PIECE);
        pieces
            .into_par_iter()
            .zip(src.par_chunks(UPLOAD_PIECE))
            .for_each(|(Piece(mut d), s)| d.copy_from_slice(s));
        return;
    }
    let row_bytes = pitch * elem;
    let per_task = (UPLOAD_PIECE / row_bytes.max(1)).max(1);
    let pieces = split(dst, rows.len() * row_bytes, per_task * row_bytes);
    pieces
        .into_par_iter()
        .enumerate()
        .for_each(|(i, Piece(mut d))| {
            let mut pairs = Vec::new();
            let r0 = rows.start + i * per_task;
            for r in r0..(r0 + per_task).min(rows.end) {
                let (row, rest) = d.split_at(row_bytes);
                d = rest;
                pack_row(block, r, cols, refs, row, &mut pairs);
            }
        });
}

/// `dst`'s first `len` bytes cut into pieces of `piece` bytes (the last may be shorter).
fn split(mut dst: WriteOnly<'_, [u8]>, len: usize, piece: usize) -> Vec<Piece<'_>> {
    let mut out = Vec::with_capacity(len.div_ceil(piece.max(1)));
    let mut left = len;
    while left > 0 {
        let n = piece.min(left);
        let (head, rest) = dst.split_at(n);
        out.push(Piece(head));
        dst = rest;
        left -= n;
    }
    out
}

/// A piece of a mapped buffer handed to another thread. wgpu implements `Send` for
/// `WriteOnly<T>` with `T: Send` and, implicitly, `T: Sized`, so the slice form lacks it.
struct Piece<'a>(WriteOnly<'a, [u8]>);

// SAFETY: a `WriteOnly<'a, [u8]>` is exclusive write access to its bytes, like `&'a mut [u8]`,
// which is `Send`; bytes have no thread affinity.
unsafe impl Send for Piece<'_> {}

/// Row `r`, columns `cols`, into `dst` (one padded row); `pairs` is scratch for f64 pairs.
fn pack_row(
    block: &Block,
    r: usize,
    cols: &Range<usize>,
    refs: &[f64],
    dst: WriteOnly<'_, [u8]>,
    pairs: &mut Vec<u8>,
) {
    let stride = block.stride();
    let src = r * stride + cols.start..r * stride + cols.end;
    let elem = upload_type(&block.data).1;
    let (mut values, mut pad) = dst.split_at(cols.len() * elem);
    match block.data.values() {
        Values::F32(v) => values.copy_from_slice(bytemuck::cast_slice(&v[src])),
        Values::F16(v) | Values::BF16(v) => values.copy_from_slice(bytemuck::cast_slice(&v[src])),
        Values::F64(v) => {
            debug_assert_eq!(refs.len(), cols.len(), "one reference per column");
            pairs.clear();
            for (&x, &r) in v[src].iter().zip(refs) {
                let x = x - r;
                let hi = x as f32;
                let lo = if x.is_finite() {
                    (x - hi as f64) as f32
                } else {
                    0.0
                };
                pairs.extend_from_slice(&hi.to_ne_bytes());
                pairs.extend_from_slice(&lo.to_ne_bytes());
            }
            values.copy_from_slice(pairs);
        }
    }
    pad.fill(0);
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
    let Values::F64(v) = block.data.values() else {
        return Vec::new();
    };
    let stride = block.stride();
    cols.clone()
        .map(|c| {
            rows.clone()
                .map(|r| v[r * stride + c])
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
