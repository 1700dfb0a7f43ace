//! The engine: adapter and device set-up, the two buffer sets, and the `Backend` calls that
//! stream blocks through `launch` and fold the results as buffer sets come round again.

use std::time::Instant;

use crate::engine::accum::{FlatAcc, MeanAcc};
use crate::engine::{AdapterInfo, Backend, Blocks, EngineInfo, PhaseTimes, StatsJob, TensorAcc};
use crate::error::{Error, Result};
use crate::input::Block;
use crate::stats::fits::Fits;
use crate::stats::structure::xmin_scan::{ScanJob, Scanned};
use crate::stats::structure::Gram;

use super::batch::Batch;
use super::context::{self, Context, Dims};
use super::fits::{self, FitsKernel, FITS_K_MAX};
use super::gram::GramKernel;
use super::pool::{Grow, Resident, Slot};
use super::readback::{fold_mean, fold_pooled, fold_stats, mapped, PendingKind, Sink};
use super::xmin_scan::{XminKernel, GPU_EXACT_MAX_N};
use super::{probe, GpuOptions};

/// Which kernel a dispatch runs.
#[derive(Clone, Copy)]
pub(super) enum Kernel {
    Mean,
    Stats,
    Flat,
}

/// One dispatch of a unit: its kernel, sizes, grid and output section.
pub(super) struct Dispatch {
    pub(super) kernel: Kernel,
    pub(super) dims: Dims,
    pub(super) grid: (u32, u32),
    pub(super) section: usize,
}

/// The GPU engine: a device with its pipelines, two buffer sets, and the last call's kernel
/// time. Implements [`Backend`] like the CPU engine.
pub struct GpuEngine {
    pub(super) ctx: Context,
    pub(super) opts: GpuOptions,
    pub(super) adapter: AdapterInfo,
    pub(super) slots: [Slot; 2],
    pub(super) turn: usize,
    pub(super) kernel_ns: f64,
    pub(super) kernel_seconds: Option<f64>,
    /// Phases summed over calls since `reset_phases` (for `bench`).
    pub(super) phases: PhaseTimes,
    /// Units launched so far.
    pub(super) units: u64,
    /// Pass-1 units still on the device for pass 2 of the same block.
    pub(super) resident: Vec<Resident>,
    /// The fits kernel, built on first use.
    pub(super) fits: Option<FitsKernel>,
    /// Whether the host fallback of the fits was announced.
    pub(super) fits_fallback_told: bool,
    /// The Gram kernel, built on first use.
    pub(super) gram: Option<GramKernel>,
    /// The xmin scan kernel, built on first use.
    pub(super) xmin: Option<XminKernel>,
}

fn adapter_info(info: &wgpu::AdapterInfo) -> AdapterInfo {
    AdapterInfo {
        name: info.name.clone(),
        backend: info.backend.to_string(),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_owned(),
    }
}

impl GpuEngine {
    /// Any adapter (lavapipe included), honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`;
    /// `Error::NoAdapter` with the likely reason when there is none.
    pub fn new(opts: GpuOptions) -> Result<Self> {
        let adapter = context::adapters_from_env()
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoAdapter(probe::no_adapter_reason()))?;
        Self::with_adapter(adapter, opts)
    }

    /// For `--backend auto`: an engine only on a real GPU (not a CPU device such as lavapipe).
    pub fn new_real_gpu(opts: GpuOptions) -> Result<Option<Self>> {
        let Some(adapter) = context::adapters_from_env().into_iter().next() else {
            tracing::info!(
                "no GPU adapter ({}); using the CPU engine",
                probe::no_adapter_reason()
            );
            return Ok(None);
        };
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            tracing::info!(
                adapter = %info.name,
                "the only GPU adapter is a CPU device (software Vulkan); using the CPU engine (--backend gpu forces it)"
            );
            return Ok(None);
        }
        Self::with_adapter(adapter, opts).map(Some)
    }

    pub(super) fn with_adapter(adapter: wgpu::Adapter, opts: GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu {
            tracing::warn!(
                adapter = %info.name,
                "the GPU adapter is a CPU device (software Vulkan): results are right, but its timings are not GPU performance"
            );
        }
        let ctx = Context::new(adapter)?;
        tracing::debug!(adapter = %info.name, backend = %info.backend, subgroups = ctx.subgroups, "GPU engine ready");
        let slots = [0, 1].map(|_| Self::slot(&ctx));
        Ok(GpuEngine {
            adapter: adapter_info(&info),
            ctx,
            opts,
            slots,
            turn: 0,
            kernel_ns: 0.0,
            kernel_seconds: None,
            phases: PhaseTimes::default(),
            units: 0,
            resident: Vec::new(),
            fits: None,
            fits_fallback_told: false,
            gram: None,
            xmin: None,
        })
    }

    pub(super) fn slot(ctx: &Context) -> Slot {
        use wgpu::BufferUsages as U;
        let d = &ctx.device;
        let query = ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                (
                    d.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("gradtail.timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    }),
                    d.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("gradtail.timestamps"),
                        size: 16,
                        usage: U::QUERY_RESOLVE | U::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                )
            });
        Slot {
            staging: None,
            remap: None,
            data: Grow::new("gradtail.data", U::STORAGE | U::UNIFORM | U::COPY_DST),
            out: Grow::new("gradtail.partials", U::STORAGE | U::COPY_SRC),
            readback: Grow::new("gradtail.readback", U::MAP_READ | U::COPY_DST),
            query,
            batch: Batch::default(),
            pending: None,
            gen: 0,
        }
    }

    /// The adapter in use: name, backend, device type and driver.
    pub fn adapter(&self) -> &AdapterInfo {
        &self.adapter
    }

    /// Whether the adapter is a CPU device (lavapipe, llvmpipe): its timings are not GPU ones.
    pub fn is_cpu_device(&self) -> bool {
        self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Kernel time of the last `coord_mean` / `coord_stats` call, summed over its dispatches,
    /// from timestamp queries (None when the adapter has none).
    pub fn kernel_seconds(&self) -> Option<f64> {
        self.kernel_seconds
    }

    /// Whether `flat_blocks` reduces with subgroup operations on this adapter.
    pub fn uses_subgroups(&self) -> bool {
        self.ctx.subgroups
    }

    /// Runs `body` over a call's blocks, then submits the open batch and folds what is still
    /// in flight, oldest first; on failure, forgets every batch (its results belong to the
    /// failed call).
    pub(super) fn call(
        &mut self,
        sink: &mut Sink<'_>,
        body: impl FnOnce(&mut Self, &mut Sink<'_>) -> Result<()>,
    ) -> Result<()> {
        self.kernel_ns = 0.0;
        let result = body(self, sink).and_then(|()| {
            self.submit(self.turn)?;
            self.finish(self.turn ^ 1, sink)?;
            self.finish(self.turn, sink)
        });
        if result.is_err() {
            self.slots.iter_mut().for_each(Slot::abandon);
            self.resident.clear();
        }
        self.kernel_seconds = self
            .ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then_some(self.kernel_ns * 1e-9);
        if let Some(k) = self.kernel_seconds {
            *self.phases.kernel_s.get_or_insert(0.0) += k;
        }
        result
    }

    /// Waits for set `s`'s submitted batch, if any, and folds its units' results into `sink`.
    pub(super) fn finish(&mut self, s: usize, sink: &mut Sink<'_>) -> Result<()> {
        let Some(p) = self.slots[s].pending.take() else {
            return Ok(());
        };
        let readback = self.slots[s]
            .readback
            .buf
            .clone()
            .ok_or_else(|| Error::Gpu("readback buffer missing".into()))?;
        let t = Instant::now();
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(p.submission.clone()),
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.phases.readback_wait_s += t.elapsed().as_secs_f64();
        self.ctx.check_fault()?;
        let state = p.mapped.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Err(e) = mapped(state, "reading results back") {
            self.slots[s].readback.buf = None;
            return Err(e);
        }
        let words: Vec<u32> = {
            let view = readback
                .slice(..p.bytes)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("reading results back: {e}")))?;
            view.chunks_exact(4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        readback.unmap();
        self.phases.readback_s += t.elapsed().as_secs_f64();
        self.phases.readback_bytes += p.bytes;
        let t = Instant::now();
        if let Some(at) = p.timestamps {
            let at = (at / 4) as usize;
            let t = |i: usize| words[at + 2 * i] as u64 | (words[at + 2 * i + 1] as u64) << 32;
            let ticks = t(1).saturating_sub(t(0));
            self.kernel_ns += ticks as f64 * self.ctx.queue.get_timestamp_period() as f64;
        }
        for u in &p.units {
            match (&u.kind, &mut *sink) {
                (PendingKind::Mean { refs }, Sink::Mean(out)) => fold_mean(u, refs, &words, out),
                (PendingKind::Stats { seg_blocks, dims }, Sink::Stats(out, model)) => {
                    fold_stats(u, seg_blocks, &words, out, model);
                    fold_pooled(dims, u.sections[2], &words, &mut out.blocks);
                }
                _ => {
                    return Err(Error::Gpu(
                        "internal: results of another pass in flight".into(),
                    ))
                }
            }
        }
        self.phases.fold_s += t.elapsed().as_secs_f64();
        Ok(())
    }
}

impl Backend for GpuEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            engine: "gpu",
            threads: 1,
            adapter: Some(self.adapter.clone()),
        }
    }

    fn phases(&self) -> Option<PhaseTimes> {
        Some(self.phases)
    }

    /// f32 element work: centred values and block sums of a coordinate whose largest |x| is
    /// below 2^-100 come within ~26 binades of f32's subnormal range, which GPUs flush to 0;
    /// block sums of values above 2^100 approach f32's overflow.
    fn magnitude_range(&self) -> Option<(f64, f64)> {
        Some((2f64.powi(-100), 2f64.powi(100)))
    }

    fn reset_phases(&mut self) {
        self.phases = PhaseTimes::default();
    }

    /// Kernel `coord_fits` where K ≤ [`FITS_K_MAX`] and the adapter has the workgroup memory;
    /// the CPU engine's fits on the host otherwise (said once per engine).
    fn coord_fits(
        &mut self,
        block: &Block,
        usable: &[bool],
        centre: &[f64],
        out: &mut [Fits],
    ) -> Result<()> {
        let k = block.rows.len();
        let why = if k > FITS_K_MAX as usize {
            Some(format!(
                "{k} samples per coordinate exceed the fits kernel's {FITS_K_MAX}"
            ))
        } else {
            fits::unsupported(&self.ctx)
        };
        if let Some(why) = why {
            if !self.fits_fallback_told {
                tracing::info!("the per-coordinate fits run on the host CPU: {why}");
                self.fits_fallback_told = true;
            }
            crate::engine::cpu::coord_fits(block, usable, centre, out);
            return Ok(());
        }
        if self.fits.is_none() {
            self.fits = Some(FitsKernel::new(&self.ctx)?);
        }
        let kernel = self.fits.as_mut().expect("built above");
        kernel.block(&self.ctx, block, usable, centre, out)
    }

    /// Kernel `gram`, the partial tiles summed in f64 on the host.
    fn gram(&mut self, block: &Block, centre: &[f64], out: &mut Gram) -> Result<()> {
        if self.gram.is_none() {
            self.gram = Some(GramKernel::new(&self.ctx)?);
        }
        let kernel = self.gram.as_mut().expect("built above");
        kernel.block(&self.ctx, self.opts.max_binding_bytes, block, centre, out)
    }

    /// Kernel `xmin_scan`: every job's distances on the device, within `XMIN_BOUND`.
    fn xmin_scan(&mut self, jobs: &[ScanJob<'_>]) -> Result<Scanned> {
        if self.xmin.is_none() {
            self.xmin = Some(XminKernel::new(&self.ctx)?);
        }
        let kernel = self.xmin.as_mut().expect("built above");
        kernel.scan(&self.ctx, jobs)
    }

    /// The device scans every candidate up to [`GPU_EXACT_MAX_N`] values.
    fn xmin_exact_max_n(&self, host: usize) -> usize {
        host.max(GPU_EXACT_MAX_N)
    }

    fn coord_mean(&mut self, blocks: Blocks<'_>, out: &mut [MeanAcc]) -> Result<()> {
        self.resident.clear();
        let mut sink = Sink::Mean(out);
        self.call(&mut sink, |eng, sink| {
            for block in blocks {
                eng.mean_block(&block?, sink)?;
            }
            Ok(())
        })
    }

    fn coord_stats(
        &mut self,
        job: &StatsJob<'_>,
        blocks: Blocks<'_>,
        out: &mut TensorAcc,
        model: &mut FlatAcc,
    ) -> Result<()> {
        // Record in the buffer set that does not hold the resident units (both are idle
        // between calls), so this call's staging copy cannot overwrite them.
        if self.resident.iter().any(|r| r.slot == self.turn) {
            self.turn ^= 1;
        }
        let mut sink = Sink::Stats(out, model);
        let result = self.call(&mut sink, |eng, sink| {
            for block in blocks {
                eng.stats_block(job, &block?, sink)?;
            }
            Ok(())
        });
        self.resident.clear();
        result
    }
}
