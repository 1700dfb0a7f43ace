//! Launching units: upload, bind, dispatch and start the readback of one unit (`launch`), and
//! how a block is cut into units for pass 1 (`mean_block`) and pass 2 (`stats_block`).

use std::mem::size_of;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::engine::StatsJob;
use crate::error::{Error, Result};
use crate::input::{Block, BlockData};

use super::context::{pop_scope, ColParams, Dims, Segment};
use super::engine::{Dispatch, GpuEngine, Kernel, Launch};
use super::pack::{first_finite, pack, segments, upload_type, write_in_pieces};
use super::partials::{BlockPartial, FlatPartial, MeanPartial, MomentPartial, TailPartial};
use super::plan::{self, COORD_WG, PASS1_PARTIAL, PASS2_PARTIAL, WORD};
use super::pool::bind;
use super::readback::{PendingIo, PendingKind, Sink};

impl GpuEngine {
    /// Uploads a unit into slot `s`, runs its dispatches and starts reading the partials back.
    pub(super) fn launch(
        &mut self,
        s: usize,
        l: &Launch<'_>,
    ) -> Result<(wgpu::SubmissionIndex, PendingIo)> {
        self.units += 1;
        if self.opts.lose_device_at_unit == Some(self.units - 1) {
            return Err(Error::GpuFault(
                "device lost (simulated by GpuOptions::lose_device_at_unit)".into(),
            ));
        }
        self.ctx.ensure_pipelines(l.dtype)?;
        let ctx = &self.ctx;
        let device = &ctx.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let slot = &mut self.slots[s];
        let salign = ctx.limits.min_storage_buffer_offset_alignment as u64;
        let ualign = ctx.limits.min_uniform_buffer_offset_alignment as u64;
        let (out_at, out_total) = plan::sections(l.out_sizes, salign);
        let (dims_at, _) = plan::sections(&[std::mem::size_of::<Dims>() as u64; 3], ualign);

        let t = Instant::now();
        let input = slot.input.get(device, l.input.len() as u64).clone();
        write_in_pieces(&ctx.queue, &input, l.input);
        let params = slot.params.get(device, l.params.len() as u64).clone();
        if !l.params.is_empty() {
            ctx.queue.write_buffer(&params, 0, l.params);
        }
        let segs = slot.segs.get(device, l.segs.len() as u64).clone();
        if !l.segs.is_empty() {
            ctx.queue.write_buffer(&segs, 0, l.segs);
        }
        let out = slot.out.get(device, out_total).clone();
        let ts_at = out_total;
        let rb_size = out_total + if slot.query.is_some() { 16 } else { 0 };
        let readback = slot.readback.get(device, rb_size).clone();
        for (i, d) in l.dispatches.iter().enumerate() {
            ctx.queue
                .write_buffer(&slot.dims, dims_at[i], bytemuck::bytes_of(&d.dims));
        }
        self.phases.upload_s += t.elapsed().as_secs_f64();
        self.phases.upload_bytes += (l.input.len()
            + l.params.len()
            + l.segs.len()
            + l.dispatches.len() * std::mem::size_of::<Dims>())
            as u64;

        let pipes = ctx.pipelines[l.dtype as usize]
            .as_ref()
            .expect("compiled above");
        let mut groups = Vec::with_capacity(l.dispatches.len());
        for (i, d) in l.dispatches.iter().enumerate() {
            let mut entries = vec![
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: bind(&slot.dims, dims_at[i], std::mem::size_of::<Dims>() as u64),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: bind(&input, 0, l.input.len() as u64),
                },
            ];
            let (layout, pipeline) = match d.kernel {
                Kernel::Mean => (&ctx.layouts.mean, &pipes.mean),
                Kernel::Moments => (&ctx.layouts.moments, &pipes.moments),
                Kernel::Tails => (&ctx.layouts.tails, &pipes.tails),
                Kernel::Flat => (&ctx.layouts.flat, &pipes.flat),
            };
            if !matches!(d.kernel, Kernel::Mean) {
                entries.push(wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bind(&params, 0, l.params.len() as u64),
                });
            }
            if matches!(d.kernel, Kernel::Flat) {
                entries.push(wgpu::BindGroupEntry {
                    binding: 3,
                    resource: bind(&segs, 0, l.segs.len() as u64),
                });
            }
            entries.push(wgpu::BindGroupEntry {
                binding: entries.len() as u32,
                resource: bind(&out, out_at[d.section], l.out_sizes[d.section]),
            });
            if matches!(d.kernel, Kernel::Tails) {
                // Its pooled block sums: the section after its partials.
                entries.push(wgpu::BindGroupEntry {
                    binding: entries.len() as u32,
                    resource: bind(&out, out_at[d.section + 1], l.out_sizes[d.section + 1]),
                });
            }
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("gradtail.unit"),
                layout,
                entries: &entries,
            });
            groups.push((pipeline, bg, d.grid));
        }

        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gradtail.unit"),
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gradtail.unit"),
                timestamp_writes: slot.query.as_ref().map(|(qs, _)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }
                }),
            });
            for (pipeline, bg, (x, y)) in &groups {
                if *x == 0 {
                    continue;
                }
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
        }
        enc.copy_buffer_to_buffer(&out, 0, &readback, 0, out_total);
        if let Some((qs, resolve)) = &slot.query {
            enc.resolve_query_set(qs, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, &readback, ts_at, 16);
        }
        let t = Instant::now();
        let submission = ctx.queue.submit([enc.finish()]);
        self.phases.submit_s += t.elapsed().as_secs_f64();
        self.phases.units += 1;
        self.phases.submits += 1;
        let mapped = Arc::new(Mutex::new(None));
        {
            let mapped = Arc::clone(&mapped);
            readback
                .slice(..rb_size)
                .map_async(wgpu::MapMode::Read, move |r| {
                    *mapped.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
        }
        pop_scope(oom, "out of GPU memory")?;
        pop_scope(validation, "running the kernels")?;
        Ok((
            submission,
            PendingIo {
                mapped,
                bytes: rb_size,
                sections: out_at,
                timestamps: slot.query.is_some().then_some(ts_at),
            },
        ))
    }

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
        let mut stage = std::mem::take(&mut self.stage);
        for unit in units {
            let s = self.take_slot(sink)?;
            let w = unit.cols.len();
            let h = unit.rows.len();
            let pitch = plan::pitch(w, elem);
            let t = Instant::now();
            let refs = first_finite(block, &unit.rows, &unit.cols);
            let input = pack(block, &unit.rows, &unit.cols, pitch, &refs, &mut stage);
            self.phases.upload_s += t.elapsed().as_secs_f64();
            let row0 = block.rows.start + unit.rows.start;
            let (dims, grid) = coord_dims(h, w, pitch, elem, row0, 0, 1, caps.max_dim)?;
            let out_sizes = [(dims.chunks * dims.groups) as u64 * size_of::<MeanPartial>() as u64];
            let launch = Launch {
                dtype,
                input,
                params: &[],
                segs: &[],
                out_sizes: &out_sizes,
                dispatches: &[Dispatch {
                    kernel: Kernel::Mean,
                    dims,
                    grid,
                    section: 0,
                }],
            };
            let (submission, io) = self.launch(s, &launch)?;
            let a0 = block.cols.start + unit.cols.start;
            self.slots[s].pending = Some(io.pending(
                submission,
                a0..a0 + w,
                dims.groups as usize,
                dims.chunks as usize,
                PendingKind::Mean { refs },
            ));
        }
        self.stage = stage;
        Ok(())
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
        let f64_input = matches!(*block.data, BlockData::F64(_));
        let mut stage = std::mem::take(&mut self.stage);
        let result = (|| {
            for unit in units {
                let s = self.take_slot(sink)?;
                let w = unit.cols.len();
                let h = unit.rows.len();
                let a0 = block.cols.start + unit.cols.start;
                let acols = a0..a0 + w;
                let pitch = plan::pitch(w, elem);
                let groups = plan::groups(w);
                // f64 input is centred on the host, in f64, exactly as the CPU centres it: the
                // kernels then see centre 0 and the shift relative to the centre.
                let refs: Vec<f64> = if f64_input {
                    job.centre[acols.clone()].to_vec()
                } else {
                    Vec::new()
                };
                let t = Instant::now();
                let input = pack(block, &unit.rows, &unit.cols, pitch, &refs, &mut stage);
                self.phases.upload_s += t.elapsed().as_secs_f64();
                let mut params = vec![ColParams::default(); groups * 4];
                for (j, c) in acols.clone().enumerate() {
                    let r = refs.get(j).copied().unwrap_or(0.0);
                    params[j] = ColParams::new(job.shift[c] - r, job.centre[c] - r, job.pool[c]);
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
                // Sections in `readback::fold_stats`' order; `coord_tails` also binds the
                // next one. Bindings are whole words: so is each section.
                let out_sizes = [
                    partials * size_of::<MomentPartial>(),
                    partials * size_of::<TailPartial>(),
                    pooled * size_of::<BlockPartial>(),
                    segs.len() * size_of::<FlatPartial>(),
                ]
                .map(|b| (b as u64).next_multiple_of(WORD));
                let dispatches = [
                    Dispatch {
                        kernel: Kernel::Moments,
                        dims,
                        grid,
                        section: 0,
                    },
                    Dispatch {
                        kernel: Kernel::Tails,
                        dims,
                        grid,
                        section: 1,
                    },
                    Dispatch {
                        kernel: Kernel::Flat,
                        dims: flat_dims,
                        grid: flat_grid,
                        section: 3,
                    },
                ];
                let launch = Launch {
                    dtype,
                    input,
                    params: bytemuck::cast_slice(&params),
                    segs: bytemuck::cast_slice(&segs),
                    out_sizes: &out_sizes,
                    dispatches: &dispatches,
                };
                let (submission, io) = self.launch(s, &launch)?;
                self.slots[s].pending = Some(io.pending(
                    submission,
                    acols,
                    groups,
                    dims.chunks as usize,
                    PendingKind::Stats { seg_blocks, dims },
                ));
            }
            Ok(())
        })();
        self.stage = stage;
        result
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
