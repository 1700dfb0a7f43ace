//! The host side of `shaders/coord_fits.wgsl`, the per-coordinate distribution fits of the
//! whole-column step: packing a block's columns (finite samples less the centre, formed in
//! f64 and rounded to f32, in sampling order), one workgroup per coordinate, and the f64
//! finish of what the kernel reads back (`CoordFit`) into `stats::fits::Fits`.
//!
//! The kernel sorts a column in workgroup memory, so it takes at most [`FITS_K_MAX`] samples
//! per coordinate and needs [`FITS_WG_BYTES`] of workgroup storage (WebGPU's guaranteed
//! minimum is 16 KiB; Vulkan, Metal and D3D12 GPUs offer 32 KiB or more). Beyond either the
//! engine runs the CPU engine's fits on the host instead, and says so once.
//!
//! The finish in f64: the S1 location δ = ζ − β·c·tan(πα/2) (f32's tan is poor near α = 1),
//! the data-free floor of A² (`normality::ad_floor`) added to the kernel's sum of divergences,
//! the p-value of A², s²(all)/s²(first half), and the NaNs of the degenerate cases, which the
//! kernel reports as status bits.

use std::collections::HashMap;
use std::f64::consts::PI;

use rayon::prelude::*;

use crate::engine::cpu::tile_columns;
use crate::error::Result;
use crate::input::Block;
use crate::stats::fits::{mcculloch, normality, stable_cdf, Fits};

use super::context::{pop_scope, storage, uniform, Context, Dims, COORD_FITS};
use super::plan::WORD;
use super::pool::{bind, Grow};
use super::readback::submit_and_read;

/// Threads per workgroup of `coord_fits` (WGSL `FITS_WG`).
pub const FITS_WG: u32 = 256;
/// Most samples per coordinate the kernel sorts in workgroup memory (WGSL `FITS_K_MAX`).
pub const FITS_K_MAX: u32 = 4096;
/// Workgroup storage the kernel declares: the sort (FITS_K_MAX f32), the reduction
/// (FITS_WG vec2<f32>), the stable CDF along its u grid (321 f32), the shared fit
/// (2 vec4<f32>) and two u32.
pub const FITS_WG_BYTES: u32 = 4 * FITS_K_MAX + 8 * FITS_WG + 4 * 321 + 32 + 8;
/// Words of McCulloch's grids and tables (WGSL `MC_WORDS`, `mcculloch::table_words`).
pub const MC_WORDS: u32 = 413;

/// `CoordFit::status` bits (WGSL `FIT_*`): fewer than 2 samples or a constant column (every
/// field NaN); q95 = q05 (α = 2, β, scale and location NaN, no ks_stable); scale 0 (no
/// ks_stable).
pub const FIT_NONE: u32 = 1;
pub const FIT_TIED: u32 = 2;
pub const FIT_NO_SCALE: u32 = 4;

/// Columns per dispatch: one workgroup each, well under the 65,535 workgroups of one grid
/// side, and a readback of 768 KiB.
const CHUNK_COLS: usize = 16_384;
/// Largest packed tile (f32) per dispatch, held on the host and on the device.
const CHUNK_BYTES: usize = 32 << 20;

/// One coordinate's fits as the kernel writes them. Mirrors WGSL `struct CoordFit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CoordFit {
    pub alpha: f32,
    pub beta: f32,
    pub scale: f32,
    /// McCulloch's (S0) location ζ.
    pub zeta: f32,
    /// A² less its data-free floor: Σ_j 2·KL(e_j ‖ Φ(w_j)).
    pub ad_excess: f32,
    pub ks_gauss: f32,
    pub ks_stable: f32,
    pub top1_share: f32,
    /// s² (ddof 1) of all n samples and of the first ⌊n/2⌋.
    pub var_all: f32,
    pub var_half: f32,
    pub n: u32,
    pub status: u32,
}

/// Why the kernel cannot run on this device, if it cannot.
pub(super) fn unsupported(ctx: &Context) -> Option<String> {
    let l = &ctx.limits;
    if l.max_compute_workgroup_storage_size < FITS_WG_BYTES {
        return Some(format!(
            "the adapter offers {} bytes of workgroup memory, the fits kernel needs {FITS_WG_BYTES}",
            l.max_compute_workgroup_storage_size
        ));
    }
    if l.max_compute_invocations_per_workgroup < FITS_WG || l.max_compute_workgroup_size_x < FITS_WG
    {
        return Some(format!(
            "the adapter runs fewer than {FITS_WG} threads per workgroup"
        ));
    }
    if l.max_storage_buffers_per_shader_stage < 5 {
        return Some("the adapter binds fewer than 5 storage buffers per kernel".into());
    }
    None
}

/// The `coord_fits` pipeline, its tables on the device and its reused buffers.
pub(super) struct FitsKernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    mc: wgpu::Buffer,
    cdf: wgpu::Buffer,
    dims: wgpu::Buffer,
    input: Grow,
    counts: Grow,
    out: Grow,
    readback: Grow,
    /// `normality::ad_floor` by sample count.
    floors: HashMap<usize, f64>,
}

/// A storage buffer holding `bytes`, padded to whole words.
fn table(ctx: &Context, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().div_ceil(WORD as usize) * WORD as usize, 0);
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: padded.len() as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buf, 0, &padded);
    buf
}

impl FitsKernel {
    pub(super) fn new(ctx: &Context) -> Result<Self> {
        use wgpu::BufferUsages as U;
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gradtail.coord_fits"),
            entries: &[
                uniform(0),
                storage(1, true),
                storage(2, true),
                storage(3, true),
                storage(4, true),
                storage(5, false),
            ],
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gradtail.coord_fits"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("gradtail.coord_fits"),
            layout: Some(&pl),
            module: &ctx.modules[COORD_FITS],
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every workgroup variable is written before it is read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let words = mcculloch::table_words();
        let mc = table(ctx, "gradtail.mcculloch", bytemuck::cast_slice(&words));
        let cdf = table(ctx, "gradtail.stable_cdf", stable_cdf::RAW);
        let dims = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gradtail.dims.fits"),
            size: std::mem::size_of::<Dims>() as u64,
            usage: U::UNIFORM | U::COPY_DST,
            mapped_at_creation: false,
        });
        pop_scope(scope, "compiling the fits kernel")?;
        Ok(FitsKernel {
            pipeline,
            layout,
            mc,
            cdf,
            dims,
            input: Grow::new("gradtail.fits.input", U::STORAGE | U::COPY_DST),
            counts: Grow::new("gradtail.fits.counts", U::STORAGE | U::COPY_DST),
            out: Grow::new("gradtail.fits.out", U::STORAGE | U::COPY_SRC),
            readback: Grow::new("gradtail.fits.readback", U::MAP_READ | U::COPY_DST),
            floors: HashMap::new(),
        })
    }

    /// The fits of a block whose K ≤ [`FITS_K_MAX`] (see `Backend::coord_fits`).
    pub(super) fn block(
        &mut self,
        ctx: &Context,
        block: &Block,
        usable: &[bool],
        centre: &[f64],
        out: &mut [Fits],
    ) -> Result<()> {
        let k = block.rows.len();
        let pitch = k.next_multiple_of(4).max(4);
        // Columns per dispatch, also within the binding limit.
        let bytes = (ctx.caps(None).binding as usize).min(CHUNK_BYTES);
        let cap = (bytes / (4 * pitch)).clamp(1, CHUNK_COLS);
        let mut tile = Vec::new();
        let mut counts = Vec::new();
        for c0 in (0..block.width()).step_by(cap) {
            let c1 = (c0 + cap).min(block.width());
            pack(block, c0..c1, usable, centre, pitch, &mut tile, &mut counts);
            let fits = self.run(ctx, &tile, &counts, pitch)?;
            for (o, f) in out[c0..c1].iter_mut().zip(&fits) {
                let floor = *self
                    .floors
                    .entry(f.n as usize)
                    .or_insert_with(|| normality::ad_floor(f.n as usize));
                *o = finish(f, floor);
            }
        }
        Ok(())
    }

    /// One dispatch over `counts.len()` packed columns, waited for and read back.
    fn run(
        &mut self,
        ctx: &Context,
        tile: &[f32],
        counts: &[u32],
        pitch: usize,
    ) -> Result<Vec<CoordFit>> {
        let device = &ctx.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let cols = counts.len();
        let out_bytes = (cols * std::mem::size_of::<CoordFit>()) as u64;
        let input = self.input.get(device, (tile.len() * 4) as u64).clone();
        ctx.queue
            .write_buffer(&input, 0, bytemuck::cast_slice(tile));
        let count_buf = self.counts.get(device, (cols * 4) as u64).clone();
        ctx.queue
            .write_buffer(&count_buf, 0, bytemuck::cast_slice(counts));
        let out = self.out.get(device, out_bytes).clone();
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
        let grid_x = cols.min(max_dim);
        let dims = Dims {
            rows: pitch as u32,
            items: cols as u32,
            grid_x: grid_x as u32,
            one: 1.0,
            ..Dims::default()
        };
        ctx.queue
            .write_buffer(&self.dims, 0, bytemuck::bytes_of(&dims));
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gradtail.coord_fits"),
            layout: &self.layout,
            entries: &[
                (0, bind(&self.dims, 0, std::mem::size_of::<Dims>() as u64)),
                (1, bind(&input, 0, (tile.len() * 4) as u64)),
                (2, bind(&count_buf, 0, (cols * 4) as u64)),
                (3, bind(&self.mc, 0, self.mc.size())),
                (4, bind(&self.cdf, 0, self.cdf.size())),
                (5, bind(&out, 0, out_bytes)),
            ]
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }),
        });
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gradtail.coord_fits"),
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gradtail.coord_fits"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(grid_x as u32, cols.div_ceil(grid_x) as u32, 1);
        }
        submit_and_read(
            ctx,
            enc,
            &out,
            &mut self.readback,
            out_bytes,
            (oom, validation),
            "fits",
        )
    }
}

/// Packs columns `cols` of the block, each `pitch` values apart: the finite samples of a
/// usable column less its centre (in f64, then rounded to f32), in sampling order, and their
/// count (0 for a column not fitted). Parallel over tiles of columns.
fn pack(
    block: &Block,
    cols: std::ops::Range<usize>,
    usable: &[bool],
    centre: &[f64],
    pitch: usize,
    tile: &mut Vec<f32>,
    counts: &mut Vec<u32>,
) {
    let k = block.rows.len();
    let strip = tile_columns(k);
    tile.clear();
    tile.resize(cols.len() * pitch, 0.0);
    counts.clear();
    counts.resize(cols.len(), 0);
    tile.par_chunks_mut(strip * pitch)
        .zip(counts.par_chunks_mut(strip))
        .enumerate()
        .for_each_init(Vec::new, |values, (t, (tile, counts))| {
            let first = cols.start + t * strip;
            block.gather_columns(first..first + counts.len(), values);
            for (j, n) in counts.iter_mut().enumerate() {
                let c = first + j;
                if !usable[c] {
                    continue;
                }
                let dst = &mut tile[j * pitch..(j + 1) * pitch];
                let finite = values[j * k..(j + 1) * k].iter().filter(|x| x.is_finite());
                for (d, x) in dst.iter_mut().zip(finite) {
                    *d = (x - centre[c]) as f32;
                    *n += 1;
                }
            }
        });
}

/// One coordinate's [`Fits`] from the kernel's output, finished in f64 as the module doc says;
/// `floor` is `normality::ad_floor(f.n)`.
pub fn finish(f: &CoordFit, floor: f64) -> Fits {
    if f.status & FIT_NONE != 0 {
        return Fits::NAN;
    }
    let n = f.n as usize;
    let alpha = f64::from(f.alpha);
    let (beta, scale, loc) = if f.status & FIT_TIED != 0 {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        let (beta, scale, zeta) = (f64::from(f.beta), f64::from(f.scale), f64::from(f.zeta));
        let loc = if alpha != 1.0 {
            zeta - beta * scale * (PI * alpha / 2.0).tan()
        } else {
            zeta
        };
        (beta, scale, loc)
    };
    let ad = floor + f64::from(f.ad_excess);
    let no_stable = f.status & (FIT_TIED | FIT_NO_SCALE) != 0;
    Fits {
        alpha_mcculloch: alpha,
        beta_mcculloch: beta,
        scale_mcculloch: scale,
        loc_mcculloch: loc,
        ad,
        ad_p: normality::ad_pvalue(ad, n),
        ks_gauss: f64::from(f.ks_gauss),
        ks_stable: if no_stable {
            f64::NAN
        } else {
            f64::from(f.ks_stable)
        },
        top1_share: f64::from(f.top1_share),
        var_ratio: if n / 2 < 2 {
            f64::NAN
        } else {
            f64::from(f.var_all) / f64::from(f.var_half)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(status: u32, n: u32) -> CoordFit {
        CoordFit {
            alpha: 1.5,
            beta: 0.25,
            scale: 2.0,
            zeta: 0.5,
            ad_excess: 0.75,
            ks_gauss: 0.125,
            ks_stable: 0.0625,
            top1_share: 0.5,
            var_all: 3.0,
            var_half: 1.5,
            n,
            status,
        }
    }

    #[test]
    fn finish_in_f64() {
        let f = finish(&fit(0, 100), 0.25);
        // δ = ζ - β·c·tan(3π/4) = 0.5 + 0.25·2
        assert!((f.loc_mcculloch - 1.0).abs() < 1e-15);
        assert_eq!(f.ad, 1.0);
        assert_eq!(f.ad_p, normality::ad_pvalue(1.0, 100));
        assert!(f.ad_p > 0.0);
        assert_eq!(f.var_ratio, 2.0);
        assert_eq!((f.alpha_mcculloch, f.ks_stable), (1.5, 0.0625));
        let at_one = CoordFit {
            alpha: 1.0,
            ..fit(0, 100)
        };
        assert_eq!(finish(&at_one, 0.0).loc_mcculloch, 0.5);
    }

    /// Each status bit leaves NaN where `stats::fits::fit_column` does.
    #[test]
    fn status_bits_give_the_host_nans() {
        let none = finish(&fit(FIT_NONE, 100), 0.0);
        assert!(none.to_array().iter().all(|v| v.is_nan()));
        let tied = finish(&fit(FIT_TIED, 100), 0.0);
        assert_eq!(tied.alpha_mcculloch, 1.5);
        for v in [
            tied.beta_mcculloch,
            tied.scale_mcculloch,
            tied.loc_mcculloch,
            tied.ks_stable,
        ] {
            assert!(v.is_nan());
        }
        assert!(!tied.ad.is_nan() && !tied.ks_gauss.is_nan());
        let flat = finish(&fit(FIT_NO_SCALE, 100), 0.0);
        assert!(flat.ks_stable.is_nan() && !flat.scale_mcculloch.is_nan());
        // Fewer than 4 samples: no variance ratio; a constant first half: +∞.
        assert!(finish(&fit(0, 3), 0.0).var_ratio.is_nan());
        let still = CoordFit {
            var_half: 0.0,
            ..fit(0, 100)
        };
        assert_eq!(finish(&still, 0.0).var_ratio, f64::INFINITY);
    }
}
