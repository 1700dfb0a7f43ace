//! Batches: units staged in a mapped buffer and run by one submission.
//!
//! Each buffer set owns a host-visible staging buffer (`MAP_WRITE | COPY_SRC`) that stays
//! mapped while the set records. A unit's input is packed straight into it, on every core,
//! followed by its parameters, segment table and each dispatch's sizes, every region at the
//! device's offset alignment. A batch closes when the next unit would take it past
//! [`BATCH_BYTES`] or [`BATCH_UNITS`]: then one command buffer copies the staged bytes to a
//! device buffer, runs every unit's dispatches in one compute pass, copies the outputs to the
//! readback buffer and is submitted; the staging buffer is mapped again as soon as the device
//! is done with it. The other set records the next batch meanwhile, so packing overlaps the
//! device's copy and kernels, and small units (narrow tensors, tiny bindings) no longer cost a
//! submission and a readback mapping each.

use std::mem::size_of;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wgpu::WriteOnly;

use crate::error::{Error, Result};

use super::context::{pop_scope, Dims};
use super::engine::{Dispatch, GpuEngine, Kernel};
use super::plan::{self, WORD};
use super::pool::bind;
use super::readback::{mapped, InFlight, MapFlag, Sink, UnitResults};

/// A batch closes before its staged bytes would pass this (unless one unit alone is larger):
/// large enough that a submission's fixed cost is small beside its copy (16 MiB is ~0.3 ms at
/// PCIe 5 speeds), small enough that two sets of staging cost little host memory.
pub const BATCH_BYTES: u64 = 16 << 20;
/// A batch closes at this many units: bounds its bind groups and the readback it folds at once.
pub const BATCH_UNITS: usize = 256;

/// A byte range of the device copy of a batch's staged bytes.
#[derive(Clone, Copy)]
pub(super) struct Region {
    pub(super) at: u64,
    pub(super) len: u64,
}

/// One unit of a batch: where its bytes are, what runs, where its outputs go.
struct Staged {
    dtype: u32,
    input: Region,
    /// Where the input lies when it was not staged: a pass-1 unit's, still on the device.
    input_buf: Option<wgpu::Buffer>,
    params: Region,
    segs: Region,
    /// Per dispatch: the kernel, the offset of its `Dims`, its grid and output section.
    dispatches: Vec<(Kernel, u64, (u32, u32), usize)>,
    /// Output sections: offset in the batch's output buffer and size.
    out: Vec<Region>,
}

/// The units a buffer set has recorded and not yet submitted.
#[derive(Default)]
pub(super) struct Batch {
    staged: u64,
    out: u64,
    units: Vec<Staged>,
    results: Vec<UnitResults>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// What a unit uploads and runs: the input (`input_len` bytes, written by `write_input`, or
/// already on the device at `resident`: a buffer and offset), the parameters and segment table,
/// the dispatches and the sizes of the output sections.
pub(super) struct UnitUpload<'a> {
    pub(super) dtype: u32,
    pub(super) input_len: u64,
    pub(super) write_input: &'a (dyn Fn(WriteOnly<'_, [u8]>) + Sync),
    /// The buffer set whose device buffer holds it, that buffer and the offset.
    pub(super) resident: Option<(usize, wgpu::Buffer, u64)>,
    pub(super) params: &'a [u8],
    pub(super) segs: &'a [u8],
    pub(super) dispatches: &'a [Dispatch],
    pub(super) out_sizes: &'a [u64],
}

impl GpuEngine {
    /// Offset alignment of every region: storage and uniform bindings both start on it.
    fn region_align(&self) -> u64 {
        let l = &self.ctx.limits;
        (l.min_storage_buffer_offset_alignment as u64)
            .max(l.min_uniform_buffer_offset_alignment as u64)
            .max(WORD)
    }

    /// Stages a unit in the recording buffer set, closing and submitting its batch first when
    /// the unit would not fit; `results` says how to fold the unit's outputs. Returns the
    /// buffer set and where the unit's input will lie in its device buffer.
    pub(super) fn stage_unit(
        &mut self,
        sink: &mut Sink<'_>,
        u: &UnitUpload<'_>,
        mut results: UnitResults,
    ) -> Result<(usize, Region)> {
        self.units += 1;
        if self.opts.lose_device_at_unit == Some(self.units - 1) {
            return Err(Error::GpuFault(
                "device lost (simulated by GpuOptions::lose_device_at_unit)".into(),
            ));
        }
        self.ctx.ensure_pipelines(u.dtype)?;
        let a = self.region_align();
        let region = |len: u64| plan::region(len, a);
        let dims = region(size_of::<Dims>() as u64);
        let rest = region(u.params.len() as u64)
            + region(u.segs.len() as u64)
            + dims * u.dispatches.len() as u64;
        // A resident input is bound where it lies, unless it lies in the set about to record:
        // that batch's staging copy would overwrite it first.
        let bound = |s: usize| u.resident.as_ref().filter(|r| r.0 != s);
        let need_in = |s: usize| {
            rest + if bound(s).is_some() {
                0
            } else {
                region(u.input_len)
            }
        };
        let out_need: u64 = u.out_sizes.iter().map(|&b| region(b)).sum();
        let buffer_max = self.ctx.limits.max_buffer_size;
        let open = &self.slots[self.turn].batch;
        let need = need_in(self.turn);
        if !open.is_empty()
            && (open.staged + need > BATCH_BYTES.max(need)
                || open.units.len() >= BATCH_UNITS
                || open.out + out_need > buffer_max)
        {
            self.rotate(sink)?;
        }
        let s = self.turn;
        let need = need_in(s);
        let resident = bound(s);
        let staging = self.staging(s, need)?;

        let t = Instant::now();
        let slot = &mut self.slots[s];
        let mut cursor = slot.batch.staged;
        let mut put = |bytes: Option<&[u8]>, len: u64| -> Result<Region> {
            let r = Region { at: cursor, len };
            let end = cursor + region(len);
            let mut view = staging
                .get_mapped_range_mut(cursor..end)
                .map_err(|e| Error::Gpu(format!("staging a unit: {e}")))?;
            let (mut head, mut pad) = view.slice(..).split_at(len as usize);
            match bytes {
                Some(b) => head.copy_from_slice(b),
                None => (u.write_input)(head),
            }
            pad.fill(0);
            cursor = end;
            Ok(r)
        };
        let (input, input_buf) = match resident {
            Some((_, buf, at)) => (
                Region {
                    at: *at,
                    len: u.input_len,
                },
                Some(buf.clone()),
            ),
            None => (put(None, u.input_len)?, None),
        };
        let params = put(Some(u.params), u.params.len() as u64)?;
        let segs = put(Some(u.segs), u.segs.len() as u64)?;
        let mut dispatches = Vec::with_capacity(u.dispatches.len());
        for d in u.dispatches {
            let at = put(Some(bytemuck::bytes_of(&d.dims)), size_of::<Dims>() as u64)?.at;
            dispatches.push((d.kernel, at, d.grid, d.section));
        }
        let mut out = Vec::with_capacity(u.out_sizes.len());
        results.sections.clear();
        for &len in u.out_sizes {
            out.push(Region {
                at: slot.batch.out,
                len,
            });
            results.sections.push(slot.batch.out);
            slot.batch.out += region(len);
        }
        slot.batch.staged = cursor;
        slot.batch.units.push(Staged {
            dtype: u.dtype,
            input,
            input_buf,
            params,
            segs,
            dispatches,
            out,
        });
        slot.batch.results.push(results);
        self.phases.upload_s += t.elapsed().as_secs_f64();
        self.phases.upload_bytes += need;
        self.phases.kernel_read_bytes += u.input_len;
        self.phases.units += 1;
        Ok((s, input))
    }

    /// Submits the recording set's batch and turns to the other set, folding its results.
    pub(super) fn rotate(&mut self, sink: &mut Sink<'_>) -> Result<()> {
        self.submit(self.turn)?;
        self.turn ^= 1;
        self.finish(self.turn, sink)
    }

    /// Set `s`'s staging buffer, mapped for writing and able to take `need` more bytes after
    /// what its batch holds (grown, only while the batch is empty, when it cannot).
    fn staging(&mut self, s: usize, need: u64) -> Result<wgpu::Buffer> {
        self.wait_staging(s)?;
        let slot = &mut self.slots[s];
        let fits = slot
            .staging
            .as_ref()
            .is_some_and(|b| slot.batch.staged + need <= b.size());
        if !fits {
            debug_assert!(slot.batch.is_empty(), "a batch closes before it overflows");
            slot.staging = Some(self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gradtail.staging"),
                size: BATCH_BYTES.max(need),
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            }));
        }
        Ok(slot.staging.clone().expect("made above"))
    }

    /// Waits until set `s`'s staging buffer is mapped again after its last submission.
    fn wait_staging(&mut self, s: usize) -> Result<()> {
        let Some(flag) = self.slots[s].remap.take() else {
            return Ok(());
        };
        let done = |flag: &MapFlag| flag.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut state = done(&flag);
        if state.is_none() {
            self.ctx
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
            self.ctx.check_fault()?;
            state = done(&flag);
        }
        let result = mapped(state, "mapping the staging buffer");
        if result.is_err() {
            self.slots[s].staging = None;
        }
        result
    }

    /// Closes set `s`'s batch: one copy of the staged bytes to the device, every unit's
    /// dispatches in one compute pass, the outputs copied for readback, one submission.
    pub(super) fn submit(&mut self, s: usize) -> Result<()> {
        if self.slots[s].batch.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        let device = &ctx.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let slot = &mut self.slots[s];
        let batch = std::mem::take(&mut slot.batch);
        let staging = slot.staging.clone().expect("a batch was staged");
        staging.unmap();
        let data = slot.data.get(device, batch.staged).clone();
        let out = slot.out.get(device, batch.out).clone();
        let ts_at = batch.out;
        let rb_size = batch.out + if slot.query.is_some() { 16 } else { 0 };
        let readback = slot.readback.get(device, rb_size).clone();

        let mut groups = Vec::new();
        for unit in &batch.units {
            let pipes = ctx.pipelines[unit.dtype as usize]
                .as_ref()
                .expect("compiled when staged");
            for &(kernel, dims_at, grid, section) in &unit.dispatches {
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: bind(&data, dims_at, size_of::<Dims>() as u64),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: bind(
                            unit.input_buf.as_ref().unwrap_or(&data),
                            unit.input.at,
                            unit.input.len,
                        ),
                    },
                ];
                let (layout, pipeline) = match kernel {
                    Kernel::Mean => (&ctx.layouts.mean, &pipes.mean),
                    Kernel::Stats => (&ctx.layouts.stats, &pipes.stats),
                    Kernel::Flat => (&ctx.layouts.flat, &pipes.flat),
                };
                if !matches!(kernel, Kernel::Mean) {
                    entries.push(wgpu::BindGroupEntry {
                        binding: 2,
                        resource: bind(&data, unit.params.at, unit.params.len),
                    });
                }
                if matches!(kernel, Kernel::Flat) {
                    entries.push(wgpu::BindGroupEntry {
                        binding: 3,
                        resource: bind(&data, unit.segs.at, unit.segs.len),
                    });
                }
                // `coord_stats` writes three sections from `section` on (moment partials, tail
                // partials, pooled block sums); the others one.
                let sections = if matches!(kernel, Kernel::Stats) {
                    3
                } else {
                    1
                };
                for o in &unit.out[section..section + sections] {
                    entries.push(wgpu::BindGroupEntry {
                        binding: entries.len() as u32,
                        resource: bind(&out, o.at, o.len),
                    });
                }
                let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("gradtail.unit"),
                    layout,
                    entries: &entries,
                });
                groups.push((pipeline, bg, grid));
            }
        }

        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gradtail.batch"),
        });
        enc.copy_buffer_to_buffer(&staging, 0, &data, 0, batch.staged);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gradtail.batch"),
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
        enc.copy_buffer_to_buffer(&out, 0, &readback, 0, batch.out);
        if let Some((qs, resolve)) = &slot.query {
            enc.resolve_query_set(qs, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, &readback, ts_at, 16);
        }
        let t = Instant::now();
        let submission = ctx.queue.submit([enc.finish()]);
        self.phases.submit_s += t.elapsed().as_secs_f64();
        self.phases.submits += 1;
        // The device buffer now holds this batch: units of the set's earlier batches are gone.
        slot.gen += 1;
        let gen = slot.gen;
        self.resident.retain(|r| r.slot != s || r.gen == gen);
        let watch = |buf: &wgpu::Buffer, mode, bytes: u64| -> MapFlag {
            let flag: MapFlag = Arc::new(Mutex::new(None));
            let done = Arc::clone(&flag);
            buf.slice(..bytes).map_async(mode, move |r| {
                *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
            flag
        };
        let mapped = watch(&readback, wgpu::MapMode::Read, rb_size);
        slot.remap = Some(watch(&staging, wgpu::MapMode::Write, staging.size()));
        slot.pending = Some(InFlight {
            submission,
            mapped,
            bytes: rb_size,
            timestamps: slot.query.is_some().then_some(ts_at),
            units: batch.results,
        });
        pop_scope(oom, "out of GPU memory")?;
        pop_scope(validation, "running the kernels")?;
        Ok(())
    }
}
