//! Readback: what a submitted unit's results are, and how each kernel's output structs
//! (`partials`) are folded into the f64 accumulators with the same `combine` the CPU engine
//! uses.

use std::mem::size_of;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, MeanAcc};
use crate::engine::TensorAcc;

use super::context::{pop_scope, Context, Dims};
use super::partials::{BlockPartial, FlatPartial, MeanPartial, MomentPartial, TailPartial};
use super::pool::Grow;
use crate::error::{Error, Result};

/// Set by a `map_async` callback: the mapping's outcome, once the device is done.
pub(super) type MapFlag = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// The outcome of a `map_async` once the device is done (`state`: what its callback gave, if it
/// ran) as this engine's error, `what` naming the work ("reading results back: …"). A buffer
/// whose mapping failed or never completed must not be reused: the caller drops it.
pub(super) fn mapped(
    state: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    what: &str,
) -> Result<()> {
    match state {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::Gpu(format!("{what}: {e}"))),
        None => Err(Error::Gpu(format!("{what}: the mapping did not complete"))),
    }
}

/// A submitted batch, to fold when its buffer set comes round again.
pub(super) struct InFlight {
    pub(super) submission: wgpu::SubmissionIndex,
    pub(super) mapped: MapFlag,
    /// Bytes mapped from the start of the readback buffer.
    pub(super) bytes: u64,
    /// Byte offset of the two resolved timestamps, when timing.
    pub(super) timestamps: Option<u64>,
    /// Its units, in the order they were staged.
    pub(super) units: Vec<UnitResults>,
}

/// What a staged unit's results are and where they lie in its batch's readback.
pub(super) struct UnitResults {
    /// Byte offsets of the unit's output sections in the readback buffer.
    pub(super) sections: Vec<u64>,
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
    /// and the unit's launch shape (where `coord_stats` put the pooled time-block sums).
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

/// The `n` structs at byte `offset` of the readback (a multiple of 4: sections are aligned).
fn section<T: bytemuck::Pod>(words: &[u32], offset: u64, n: usize) -> &[T] {
    let at = (offset / 4) as usize;
    bytemuck::cast_slice(&words[at..at + n * size_of::<T>() / 4])
}

/// Folds a pass-1 unit's partial states into `out`; `refs` were subtracted on the host.
pub(super) fn fold_mean(p: &UnitResults, refs: &[f64], words: &[u32], out: &mut [MeanAcc]) {
    let parts: &[MeanPartial] = section(words, p.sections[0], p.chunks * p.groups);
    for chunk in parts.chunks_exact(p.groups) {
        for (j, acc) in out[p.cols.clone()].iter_mut().enumerate() {
            let r = refs.get(j).copied().unwrap_or(0.0);
            acc.combine(&chunk[j / 4].acc(j % 4, r));
        }
    }
}

/// Folds a pass-2 unit's partial states into the tensor's and the model's state: sections 0
/// and 1 hold the `MomentPartial`s and `TailPartial`s, section 3 the `FlatPartial`s (section
/// 2, the pooled block sums, is `fold_pooled`'s).
pub(super) fn fold_stats(
    p: &UnitResults,
    seg_blocks: &[(usize, usize)],
    words: &[u32],
    out: &mut TensorAcc,
    model: &mut FlatAcc,
) {
    let n = p.chunks * p.groups;
    let moments: &[MomentPartial] = section(words, p.sections[0], n);
    let tails: &[TailPartial] = section(words, p.sections[1], n);
    let mut finite = 0u64;
    for (m, t) in moments
        .chunks_exact(p.groups)
        .zip(tails.chunks_exact(p.groups))
    {
        for (j, acc) in out.coords[p.cols.clone()].iter_mut().enumerate() {
            let tails = t[j / 4].acc(j % 4);
            let n = tails.zeros + tails.nz;
            finite += n;
            let moments = m[j / 4].acc(j % 4, n);
            acc.combine(&CoordAcc { moments, tails });
        }
    }
    let flat: &[FlatPartial] = section(words, p.sections[3], seg_blocks.len());
    let mut lx = 0.0;
    for (f, &(bt, bm)) in flat.iter().zip(seg_blocks) {
        let (su, sl) = f.sums();
        lx += sl;
        out.flat.blocks[bt] += su;
        model.blocks[bm] += su;
    }
    out.flat.n += finite;
    out.flat.lx += lx;
    model.n += finite;
    model.lx += lx;
}

/// Folds `coord_stats`' pooled sums of a unit (its `BlockPartial`s, at byte `offset` of the
/// readback) into the tensor's per-time-block sums: one per (row chunk, time block slot,
/// workgroup), read only for slots whose block closed inside the unit.
pub(super) fn fold_pooled(d: &Dims, offset: u64, words: &[u32], blocks: &mut [BlockSums]) {
    let (k1, chunk_rows) = (d.k1 as usize, d.chunk_rows as usize);
    let per_chunk = chunk_rows / k1;
    let (row0, col_wgs) = (d.row0 as usize, d.col_wgs as usize);
    let end = (row0 + d.rows as usize).min(d.used_rows as usize);
    let chunks = d.chunks as usize;
    let parts: &[BlockPartial] = section(words, offset, chunks * per_chunk * col_wgs);
    for ch in 0..chunks {
        for b in 0..per_chunk {
            let start = row0 + ch * chunk_rows + b * k1;
            if start + k1 > end {
                break;
            }
            let sums = &mut blocks[start / k1];
            let at = (ch * per_chunk + b) * col_wgs;
            for part in &parts[at..at + col_wgs] {
                sums.combine(&BlockSums::from(part));
            }
        }
    }
}
/// The end of a one-shot kernel call (`coord_fits`, `gram`, `xmin_scan`): copies the first
/// `bytes` of `out` into the readback buffer of `slot` at the end of `enc`, submits, pops the
/// error scopes pushed before the work was recorded (`scopes`: out of memory, validation),
/// waits and returns the bytes as `T`s. A mapping that fails empties `slot`, so a fresh buffer
/// replaces it. `name` names the work in errors ("running the {name} kernel").
pub(super) fn submit_and_read<T: bytemuck::Pod>(
    ctx: &Context,
    mut enc: wgpu::CommandEncoder,
    out: &wgpu::Buffer,
    slot: &mut Grow,
    bytes: u64,
    scopes: (wgpu::ErrorScopeGuard, wgpu::ErrorScopeGuard),
    name: &str,
) -> Result<Vec<T>> {
    let readback = slot.get(&ctx.device, bytes).clone();
    enc.copy_buffer_to_buffer(out, 0, &readback, 0, bytes);
    let submission = ctx.queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    readback
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
    let (oom, validation) = scopes;
    pop_scope(oom, "out of GPU memory")?;
    pop_scope(validation, &format!("running the {name} kernel"))?;
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: None,
        })
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    ctx.check_fault()?;
    if let Err(e) = mapped(rx.try_recv().ok(), &format!("reading the {name} back")) {
        slot.buf = None;
        return Err(e);
    }
    let values = {
        let view = readback
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading the {name} back: {e}")))?;
        bytemuck::pod_collect_to_vec(&view)
    };
    readback.unmap();
    Ok(values)
}
