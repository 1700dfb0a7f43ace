//! The host side of `shaders/xmin_scan.wgsl`: the KS distances of power-law fits at candidate
//! xmins (`stats::structure::xmin_scan`), for a batch of samples at once — the dimension-wise
//! fits of a tensor, or a batch of bootstrap replicates.
//!
//! The samples' distinct values go up as ln x in f32 (hi, lo) pairs with their first-copy
//! indices, the candidates with α (fitted on the host in f64) as `XminCand`; one workgroup per
//! candidate, in dispatches of bounded work, one readback per upload. The distances come back
//! within [`XMIN_BOUND`] of the f64 ones, and `ScanJob::select` recomputes the contenders for
//! the minimum in f64, so the fits equal the host's.
//!
//! Why pairs: ln x in plain f32 would put an absolute error of ~2^-24·|ln x| (3e-7 at x ~ 1e-3)
//! on every ln(x/xmin); the pair's difference keeps the f64 logs' digits, so the kernel's error
//! is its own arithmetic's (~1e-6 in D), and the f64 recheck stays a few candidates wide.
//!
//! Work is O(Σ n_tail): every distinct value at or above each candidate. The exact scan, every
//! candidate, is done up to [`GPU_EXACT_MAX_N`] values (m²/2 ≈ 5.5·10¹¹ terms at the limit);
//! beyond it the grid, as on the host. A sample whose distinct values exceed one binding (8 M
//! on a 128 MiB binding) is scanned on the host.

use crate::error::Result;
use crate::stats::structure::xmin_scan::{ScanJob, Scanned};

use super::context::{pop_scope, storage, uniform, Context, Dims, XMIN_SCAN};
use super::pool::{bind, Grow};
use super::readback::submit_and_read;

/// Threads per workgroup of `xmin_scan` (WGSL `XMIN_WG`).
pub const XMIN_WG: u32 = 256;
/// Largest sample the GPU engine scans over every candidate xmin; larger ones use the grid.
pub const GPU_EXACT_MAX_N: usize = 1 << 20;
/// The kernel's distances are within this of the f64 ones (see shaders/xmin_scan.wgsl, ~1e-6).
pub const XMIN_BOUND: f64 = 1e-5;
/// Terms (distinct values over all candidates) per dispatch, so no dispatch runs long enough
/// to trip a driver's watchdog.
const DISPATCH_WORK: usize = 1 << 30;

/// One candidate xmin. Mirrors WGSL `struct XminCand`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct XminCand {
    pub base: u32,
    pub u: u32,
    pub m: u32,
    pub n: u32,
    /// 1 − α.
    pub slope: f32,
    /// 1 when 0 < α < 3, else 0.
    pub in_range: u32,
}

/// The `xmin_scan` pipeline and its reused buffers.
pub(super) struct XminKernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    dims: wgpu::Buffer,
    points: Grow,
    cands: Grow,
    out: Grow,
    readback: Grow,
}

/// One upload: the words of its samples, its candidates, and where each goes back.
#[derive(Default)]
struct Upload {
    words: Vec<[u32; 4]>,
    cands: Vec<XminCand>,
    /// (job, candidate) of each entry of `cands`.
    to: Vec<(usize, usize)>,
    /// Σ n_tail per candidate, for splitting dispatches.
    work: Vec<usize>,
}

impl Upload {
    /// Adds job `j`'s distinct values and its candidates with α ≥ 1 (others stay NaN: the host
    /// computes them).
    fn add(&mut self, j: usize, job: &ScanJob<'_>) {
        let s = job.sample;
        let base = self.words.len() as u32;
        let (m, n) = (s.first().len(), s.len());
        for (&f, &l) in s.first().iter().zip(s.distinct_ln()) {
            let hi = l as f32;
            let lo = (l - f64::from(hi)) as f32;
            self.words.push([hi.to_bits(), lo.to_bits(), f as u32, 0]);
        }
        for (i, (&u, &(alpha, _))) in job.cands.iter().zip(&job.alphas).enumerate() {
            let in_range = alpha > 0.0 && alpha < 3.0;
            if in_range && alpha < 1.0 || alpha.is_nan() {
                continue;
            }
            self.cands.push(XminCand {
                base,
                u: u as u32,
                m: m as u32,
                n: n as u32,
                slope: (1.0 - alpha) as f32,
                in_range: u32::from(in_range),
            });
            self.to.push((j, i));
            self.work.push(m - u);
        }
    }
}

impl XminKernel {
    pub(super) fn new(ctx: &Context) -> Result<Self> {
        use wgpu::BufferUsages as U;
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gradtail.xmin_scan"),
            entries: &[
                uniform(0),
                storage(1, true),
                storage(2, true),
                storage(3, false),
            ],
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gradtail.xmin_scan"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("gradtail.xmin_scan"),
            layout: Some(&pl),
            module: &ctx.modules[XMIN_SCAN],
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every workgroup variable is written before it is read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let dims = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gradtail.dims.xmin_scan"),
            size: std::mem::size_of::<Dims>() as u64,
            usage: U::UNIFORM | U::COPY_DST,
            mapped_at_creation: false,
        });
        pop_scope(scope, "compiling the xmin scan kernel")?;
        Ok(XminKernel {
            pipeline,
            layout,
            dims,
            points: Grow::new("gradtail.xmin_scan.points", U::STORAGE | U::COPY_DST),
            cands: Grow::new("gradtail.xmin_scan.cands", U::STORAGE | U::COPY_DST),
            out: Grow::new("gradtail.xmin_scan.out", U::STORAGE | U::COPY_SRC),
            readback: Grow::new("gradtail.xmin_scan.readback", U::MAP_READ | U::COPY_DST),
        })
    }

    /// The distances of every job's candidates, in uploads that fit one binding each.
    pub(super) fn scan(&mut self, ctx: &Context, jobs: &[ScanJob<'_>]) -> Result<Scanned> {
        let binding = ctx.caps(None).binding as usize;
        let (max_words, max_cands) = (binding / 16, binding / 24);
        let mut d: Vec<Vec<f64>> = jobs.iter().map(|j| vec![f64::NAN; j.cands.len()]).collect();
        let mut up = Upload::default();
        for (j, job) in jobs.iter().enumerate() {
            let m = job.sample.first().len();
            if m > max_words || job.cands.len() > max_cands {
                tracing::info!(
                    distinct = m,
                    "a power-law sample exceeds one GPU binding; its xmin scan runs on the host"
                );
                d[j] = job.host_distances();
                continue;
            }
            if up.words.len() + m > max_words || up.cands.len() + job.cands.len() > max_cands {
                self.run(ctx, &std::mem::take(&mut up), &mut d)?;
            }
            up.add(j, job);
        }
        if !up.cands.is_empty() {
            self.run(ctx, &up, &mut d)?;
        }
        Ok(Scanned {
            d,
            bound: XMIN_BOUND,
        })
    }

    /// Uploads `up`, runs its dispatches, reads the distances back into `d`.
    fn run(&mut self, ctx: &Context, up: &Upload, d: &mut [Vec<f64>]) -> Result<()> {
        if up.cands.is_empty() {
            return Ok(());
        }
        let device = &ctx.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let words: &[u8] = bytemuck::cast_slice(&up.words);
        let cands: &[u8] = bytemuck::cast_slice(&up.cands);
        let out_bytes = (up.cands.len() * 4) as u64;
        let points = self.points.get(device, words.len() as u64).clone();
        ctx.queue.write_buffer(&points, 0, words);
        let cand_buf = self.cands.get(device, cands.len() as u64).clone();
        ctx.queue.write_buffer(&cand_buf, 0, cands);
        let out = self.out.get(device, out_bytes).clone();
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gradtail.xmin_scan"),
            layout: &self.layout,
            entries: &[
                (0, bind(&self.dims, 0, std::mem::size_of::<Dims>() as u64)),
                (1, bind(&points, 0, words.len() as u64)),
                (2, bind(&cand_buf, 0, cands.len() as u64)),
                (3, bind(&out, 0, out_bytes)),
            ]
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }),
        });
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
        let max_count = max_dim * max_dim.min(1 << 14);
        // Dispatches of consecutive candidates, each within DISPATCH_WORK terms; the uniform
        // is rewritten between submissions, so each dispatch is its own submission.
        let mut first = 0;
        while first < up.cands.len() {
            let (mut end, mut work) = (first, 0);
            while end < up.cands.len()
                && end - first < max_count
                && (end == first || work + up.work[end] <= DISPATCH_WORK)
            {
                work += up.work[end];
                end += 1;
            }
            let count = end - first;
            let grid_x = count.min(max_dim);
            let dims = Dims {
                items: count as u32,
                grid_x: grid_x as u32,
                row0: first as u32,
                one: 1.0,
                ..Dims::default()
            };
            ctx.queue
                .write_buffer(&self.dims, 0, bytemuck::bytes_of(&dims));
            let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gradtail.xmin_scan"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("gradtail.xmin_scan"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(grid_x as u32, count.div_ceil(grid_x) as u32, 1);
            }
            ctx.queue.submit([enc.finish()]);
            first = end;
        }
        let enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gradtail.xmin_scan.readback"),
        });
        let got: Vec<f32> = submit_and_read(
            ctx,
            enc,
            &out,
            &mut self.readback,
            out_bytes,
            (oom, validation),
            "xmin scan",
        )?;
        for (&(j, i), &v) in up.to.iter().zip(&got) {
            d[j][i] = f64::from(v);
        }
        Ok(())
    }
}
