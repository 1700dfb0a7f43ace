//! How a block is cut into units for pass 1 (`mean_block`) and pass 2 (`stats_block`), and
//! what each unit uploads, runs and reads back; `batch` stages and submits them.

use std::mem::size_of;
use std::ops::Range;
use std::sync::Arc;

use wgpu::WriteOnly;

use crate::engine::StatsJob;
use crate::error::{Error, Result};
use crate::input::{Block, Dtype};

use super::batch::UnitUpload;
use super::context::{ColParams, Dims, Segment, DTYPE_F64};
use super::engine::{Dispatch, GpuEngine, Kernel};
use super::pack::{first_finite, pack_into, segments, upload_type};
use super::partials::{BlockPartial, FlatPartial, MeanPartial, MomentPartial, TailPartial};
use super::plan::{self, COORD_WG, PASS1_PARTIAL, PASS2_PARTIAL, WORD};
use super::pool::Resident;
use super::readback::{PendingKind, Sink, UnitResults};

impl GpuEngine {
    pub(super) fn mean_block(&mut self, block: &Block, sink: &mut Sink<'_>) -> Result<()> {
        let (dtype, elem) = upload_type(&block.data);
        let spec = plan::UnitSpec {
            elem,
            align: 1,
            partial: PASS1_PARTIAL,
            params: false,
            flat: None,
        };
        let caps = self.ctx.caps(self.opts.max_binding_bytes);
        let units =
            plan::units(block.rows.len(), block.width(), &spec, &caps).map_err(Error::Gpu)?;
        for unit in units {
            let w = unit.cols.len();
            let h = unit.rows.len();
            let pitch = plan::pitch(w, elem);
            let refs = first_finite(block, &unit.rows, &unit.cols);
            let row0 = block.rows.start + unit.rows.start;
            let (dims, grid) = coord_dims(h, w, pitch, elem, row0, 0, 1, caps.max_dim)?;
            let out_sizes = [(dims.chunks * dims.groups) as u64 * size_of::<MeanPartial>() as u64];
            let write = |dst: WriteOnly<'_, [u8]>| {
                pack_into(block, &unit.rows, &unit.cols, pitch, &refs, dst)
            };
            let upload = UnitUpload {
                dtype,
                input_len: (h * pitch * elem) as u64,
                write_input: &write,
                resident: None,
                params: &[],
                segs: &[],
                dispatches: &[Dispatch {
                    kernel: Kernel::Mean,
                    dims,
                    grid,
                    section: 0,
                }],
                out_sizes: &out_sizes,
            };
            let a0 = block.cols.start + unit.cols.start;
            let results = UnitResults {
                sections: Vec::new(),
                cols: a0..a0 + w,
                groups: dims.groups as usize,
                chunks: dims.chunks as usize,
                kind: PendingKind::Mean { refs: refs.clone() },
            };
            let (slot, input) = self.stage_unit(sink, &upload, results)?;
            // f64 units are packed relative to other references in pass 2: not reusable.
            if dtype != DTYPE_F64 {
                let r0 = block.rows.start + unit.rows.start;
                self.resident.push(Resident {
                    block: Arc::downgrade(&block.data),
                    rows: r0..r0 + h,
                    cols: a0..a0 + w,
                    dtype,
                    pitch,
                    slot,
                    gen: self.slots[slot].gen + 1,
                    at: input.at,
                });
            }
        }
        Ok(())
    }

    /// The device copy of a unit that pass 1 left there, if it is still valid: the same block
    /// (by allocation), rows, columns and packing, in a buffer set that has submitted nothing
    /// since and is not the one recording.
    fn resident_input(
        &self,
        block: &Block,
        rows: &Range<usize>,
        cols: &Range<usize>,
        dtype: u32,
        pitch: usize,
    ) -> Option<(usize, wgpu::Buffer, u64)> {
        let r = self.resident.iter().find(|r| {
            std::ptr::eq(r.block.as_ptr(), Arc::as_ptr(&block.data))
                && r.rows == *rows
                && r.cols == *cols
                && (r.dtype, r.pitch) == (dtype, pitch)
        })?;
        let slot = &self.slots[r.slot];
        if r.slot == self.turn || slot.gen != r.gen {
            return None;
        }
        Some((r.slot, slot.data.buf.clone()?, r.at))
    }

    pub(super) fn stats_block(
        &mut self,
        job: &StatsJob<'_>,
        block: &Block,
        sink: &mut Sink<'_>,
    ) -> Result<()> {
        if !block.rows.start.is_multiple_of(job.k1) {
            return Err(Error::Gpu(format!(
                "internal: block rows {:?} do not start at a multiple of K1 = {}",
                block.rows, job.k1
            )));
        }
        let (dtype, elem) = upload_type(&block.data);
        let spec = plan::UnitSpec {
            elem,
            align: job.k1,
            partial: PASS2_PARTIAL,
            params: true,
            flat: Some((job.flat_tensor.m, job.flat_model.m)),
        };
        let caps = self.ctx.caps(self.opts.max_binding_bytes);
        let units =
            plan::units(block.rows.len(), block.width(), &spec, &caps).map_err(Error::Gpu)?;
        let f64_input = block.data.dtype() == Dtype::F64;
        for unit in units {
            {
                let w = unit.cols.len();
                let h = unit.rows.len();
                let a0 = block.cols.start + unit.cols.start;
                let acols = a0..a0 + w;
                // The job's per-column arrays start at its column `col0`.
                let jcols = a0 - job.col0..a0 - job.col0 + w;
                let pitch = plan::pitch(w, elem);
                let groups = plan::groups(w);
                // f64 input is centred on the host, in f64, exactly as the CPU centres it: the
                // kernels then see centre 0 and the shift relative to the centre.
                let refs: Vec<f64> = if f64_input {
                    job.centre[jcols.clone()].to_vec()
                } else {
                    Vec::new()
                };
                let mut params = vec![ColParams::default(); groups * 4];
                for (j, c) in jcols.clone().enumerate() {
                    let r = refs.get(j).copied().unwrap_or(0.0);
                    params[j] = ColParams::new(
                        job.shift[c] - r,
                        job.centre[c] - r,
                        job.pool[c],
                        job.spread[c],
                    );
                }
                let mut segs = Vec::new();
                let mut seg_blocks = Vec::new();
                let r0 = block.rows.start + unit.rows.start;
                for r in 0..h {
                    segments(
                        &job.flat_tensor,
                        &job.flat_model,
                        r0 + r,
                        acols.clone(),
                        |cols, bt, bm| {
                            segs.push(Segment {
                                row: r as u32,
                                c0: (cols.start - a0) as u32,
                                c1: (cols.end - a0) as u32,
                                pad: 0,
                            });
                            seg_blocks.push((bt, bm));
                        },
                    );
                }
                let (dims, grid) =
                    coord_dims(h, w, pitch, elem, r0, job.used_rows, job.k1, caps.max_dim)?;
                let flat_grid = plan::grid(segs.len(), caps.max_dim).map_err(Error::Gpu)?;
                let flat_dims = Dims {
                    grid_x: flat_grid.0,
                    items: segs.len() as u32,
                    ..dims
                };
                let partials = (dims.chunks * dims.groups) as usize;
                let pooled = plan::pooled_blocks(
                    dims.chunks as usize,
                    dims.chunk_rows as usize,
                    job.k1,
                    groups,
                );
                // Sections in `readback::fold_stats`' order; `coord_stats` writes the first
                // three. Bindings are whole words: so is each section.
                let out_sizes = [
                    partials * size_of::<MomentPartial>(),
                    partials * size_of::<TailPartial>(),
                    pooled * size_of::<BlockPartial>(),
                    segs.len() * size_of::<FlatPartial>(),
                ]
                .map(|b| (b as u64).next_multiple_of(WORD));
                let dispatches = [
                    Dispatch {
                        kernel: Kernel::Stats,
                        dims,
                        grid,
                        section: 0,
                    },
                    Dispatch {
                        kernel: Kernel::Flat,
                        dims: flat_dims,
                        grid: flat_grid,
                        section: 3,
                    },
                ];
                let write = |dst: WriteOnly<'_, [u8]>| {
                    pack_into(block, &unit.rows, &unit.cols, pitch, &refs, dst)
                };
                let resident = if f64_input {
                    None
                } else {
                    self.resident_input(block, &(r0..r0 + h), &acols, dtype, pitch)
                };
                let upload = UnitUpload {
                    dtype,
                    input_len: (h * pitch * elem) as u64,
                    write_input: &write,
                    resident,
                    params: bytemuck::cast_slice(&params),
                    segs: bytemuck::cast_slice(&segs),
                    dispatches: &dispatches,
                    out_sizes: &out_sizes,
                };
                let results = UnitResults {
                    sections: Vec::new(),
                    cols: acols,
                    groups,
                    chunks: dims.chunks as usize,
                    kind: PendingKind::Stats { seg_blocks, dims },
                };
                self.stage_unit(sink, &upload, results)?;
            }
        }
        Ok(())
    }
}

/// Launch shape of the per-coordinate kernels for a unit of `h` rows × `w` columns: threads
/// own four columns each, row chunks are multiples of `k1` (1 for `coord_mean`).
#[allow(clippy::too_many_arguments)] // the unit's geometry, each argument a plain number
pub(super) fn coord_dims(
    h: usize,
    w: usize,
    pitch: usize,
    elem: usize,
    row0: usize,
    used_rows: usize,
    k1: usize,
    max_dim: u32,
) -> Result<(Dims, (u32, u32))> {
    let groups = plan::groups(w);
    let (chunk_rows, chunks) = plan::chunking(h, groups, k1);
    let col_wgs = groups.div_ceil(COORD_WG as usize);
    let items = col_wgs * chunks;
    let grid = plan::grid(items, max_dim).map_err(Error::Gpu)?;
    let dims = Dims {
        rows: h as u32,
        groups: groups as u32,
        row_words: (pitch * elem / WORD as usize) as u32,
        chunk_rows: chunk_rows as u32,
        chunks: chunks as u32,
        col_wgs: col_wgs as u32,
        grid_x: grid.0,
        items: items as u32,
        row0: row0 as u32,
        used_rows: used_rows as u32,
        k1: k1 as u32,
        one: 1.0,
    };
    Ok((dims, grid))
}
