//! The host side of `shaders/gram.wgsl`, the structure step's Gram matrix UUᵀ: a block's
//! columns go up as the other kernels read them (`pack`: f32, f16 and bf16 as stored, widened
//! in the kernel; f64 less the centre in f64, as (hi, lo) f32 pairs), the kernel writes one
//! partial upper-triangle tile per (coordinate slice, tile pair) as f32 (sum, compensation)
//! pairs, and the host adds them in f64 (the shader's header gives the precision argument).
//!
//! Before the upload one host pass over the block finds NaN and ±∞ (the Gram is then NaN, as
//! the CPU engine's) and the largest |u| it may see, from which a power-of-two `scale` keeps
//! every |u| ≤ 1 in the kernel: no f32 overflow in the products whatever the data's scale.
//! Where that scale is not a normal f32 (data beyond f32's range), or the device's bindings
//! cannot hold one tile of output, the block's Gram is the CPU engine's, on the host.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::input::{Block, Dtype, Values};
use crate::stats::structure::Gram;

use super::context::{pop_scope, storage, uniform, Context, Dims, GRAM};
use super::pack::{pack, upload_type};
use super::pool::{bind, Grow};
use super::readback::submit_and_read;

/// Output tile side (WGSL `GRAM_TILE`).
pub const GRAM_TILE: u32 = 64;
/// Coordinates staged in workgroup memory per step (WGSL `GRAM_DEPTH`).
pub const GRAM_DEPTH: u32 = 16;
/// Coordinates summed in plain f32 before a compensated add (WGSL `GRAM_CHUNK`).
pub const GRAM_CHUNK: u32 = 64;
/// Threads per workgroup (WGSL `GRAM_WG`).
pub const GRAM_WG: u32 = 256;
/// Workgroup storage: two staged GRAM_DEPTH × GRAM_TILE f32 tiles (8 KiB, under WebGPU's
/// guaranteed 16 KiB).
pub const GRAM_WG_BYTES: u32 = 2 * 4 * GRAM_DEPTH * GRAM_TILE;

/// Bytes of one partial output tile.
const TILE_OUT: u64 = (GRAM_TILE * GRAM_TILE) as u64 * 8;
/// Workgroups a dispatch aims for: enough to fill a large GPU several times over.
const TARGET_WGS: usize = 1024;
/// Largest packed input per dispatch, held on the host and on the device.
const CHUNK_BYTES: usize = 64 << 20;
/// Columns per dispatch are a multiple of this: whole 16-byte words of f16/bf16 values.
const COL_ALIGN: usize = 8;

/// The kernel's own sizes, beside `Dims` (which carries K, row_words and 1.0 for `load4`).
/// Mirrors WGSL `struct GramParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GramParams {
    pub k: u32,
    pub tiles: u32,
    pub pair0: u32,
    pub pairs: u32,
    pub cols: u32,
    pub slice_cols: u32,
    pub scale: f32,
    pub pad: u32,
}

/// The `gram` pipelines (one per input dtype, built on first use) and reused buffers.
pub(super) struct GramKernel {
    layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    pipelines: [Option<wgpu::ComputePipeline>; 4],
    dims: wgpu::Buffer,
    params: wgpu::Buffer,
    input: Grow,
    centre: Grow,
    out: Grow,
    readback: Grow,
    stage: Vec<u8>,
}

/// How a block's Gram is cut into dispatches.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cut {
    /// Columns per dispatch (a multiple of `COL_ALIGN`).
    cols: usize,
    /// Coordinate slices of a dispatch of `cols` columns, and each slice's length.
    slices: usize,
    slice_cols: usize,
    /// Tile pairs per dispatch (the upper triangle is `tiles·(tiles+1)/2`).
    pairs: usize,
}

/// The dispatch sizes for K samples, `width` columns of `elem` bytes, under the binding limit
/// `binding` and `max_dim` workgroups per grid side; `None` when one output tile does not fit.
fn cut(k: usize, width: usize, elem: usize, binding: u64, max_dim: usize) -> Option<Cut> {
    let tiles = k.div_ceil(GRAM_TILE as usize);
    let total = tiles * (tiles + 1) / 2;
    let tile_out = TILE_OUT as usize;
    let binding = binding as usize;
    if binding < tile_out {
        return None;
    }
    let per_col = k * elem;
    let cap = (binding.min(CHUNK_BYTES) / per_col) / COL_ALIGN * COL_ALIGN;
    if cap == 0 {
        return None;
    }
    let cols = width.next_multiple_of(COL_ALIGN).min(cap);
    // Enough slices to fill the device, but never more partial tiles to read back than a
    // quarter of the input's bytes, nor slices shorter than a chunk.
    let want = TARGET_WGS.div_ceil(total);
    let by_readback = (cols * per_col / (4 * total * tile_out)).max(1);
    let by_cols = cols.div_ceil(GRAM_CHUNK as usize);
    let by_binding = binding / tile_out;
    let slices = want
        .min(by_readback)
        .min(by_cols)
        .min(by_binding)
        .min(max_dim)
        .max(1);
    let slice_cols = cols.div_ceil(slices).next_multiple_of(GRAM_CHUNK as usize);
    let slices = cols.div_ceil(slice_cols);
    let pairs = total.min(max_dim).min(binding / (slices * tile_out)).max(1);
    Some(Cut {
        cols,
        slices,
        slice_cols,
        pairs,
    })
}

/// Over the block's columns: `None` if any value is NaN or ±∞, else a bound on |x − centre|
/// (for f64 exact; for the other dtypes max |x| + max |centre|, from the bits).
fn bound(block: &Block, centre: &[f64]) -> Option<f64> {
    let (w, stride) = (block.width(), block.stride());
    let c = centre.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    // The block's rows, each its own columns only (a block read in place lies inside wider
    // rows).
    fn rows<T: Sync>(v: &[T], stride: usize, w: usize) -> impl ParallelIterator<Item = &[T]> {
        v.par_chunks(stride.max(1)).map(move |row| &row[..w])
    }
    let max_bits = |bits: &[u16], exp: u16| -> Option<u16> {
        rows(bits, stride, w)
            .map(|p| {
                p.iter().try_fold(0u16, |m, &b| {
                    let a = b & 0x7fff;
                    (a & exp != exp).then_some(m.max(a))
                })
            })
            .try_reduce(|| 0, |a, b| Some(a.max(b)))
    };
    match block.data.values() {
        Values::F32(v) => {
            let m = rows(v, stride, w)
                .map(|p| {
                    p.iter().try_fold(0u32, |m, x| {
                        let a = x.to_bits() & 0x7fff_ffff;
                        (a < 0x7f80_0000).then_some(m.max(a))
                    })
                })
                .try_reduce(|| 0, |a, b| Some(a.max(b)))?;
            Some(f64::from(f32::from_bits(m)) + c)
        }
        Values::F16(v) => {
            let m = max_bits(v, 0x7c00)?;
            Some(half::f16::from_bits(m).to_f64() + c)
        }
        Values::BF16(v) => {
            let m = max_bits(v, 0x7f80)?;
            Some(half::bf16::from_bits(m).to_f64() + c)
        }
        Values::F64(v) => rows(v, stride, w)
            .map(|row| {
                row.iter().zip(centre).try_fold(0.0f64, |m, (x, c)| {
                    let u = (x - c).abs();
                    u.is_finite().then_some(m.max(u))
                })
            })
            .try_reduce(|| 0.0, |a, b| Some(a.max(b))),
    }
}

/// The power of two 2^-e with bound · 2^-e ≤ 1, if it is a normal f32.
fn scale_for(bound: f64) -> Option<f32> {
    if bound == 0.0 {
        return Some(1.0);
    }
    let e = bound.log2().ceil() as i32;
    // 2^-e from its exponent bits: normal f32 exponents run from -126 to 127.
    (-126..=127)
        .contains(&-e)
        .then(|| f32::from_bits(((127 - e) as u32) << 23))
        .filter(|s| f64::from(*s) * bound <= 1.0)
}

impl GramKernel {
    pub(super) fn new(ctx: &Context) -> Result<Self> {
        use wgpu::BufferUsages as U;
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("gradtail.gram"),
            entries: &[
                uniform(0),
                storage(1, true),
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(
                            std::mem::size_of::<GramParams>() as u64
                        ),
                    },
                    count: None,
                },
                storage(3, true),
                storage(4, false),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("gradtail.gram"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let uniform_buf = |label, size: usize| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size as u64,
                usage: U::UNIFORM | U::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let dims = uniform_buf("gradtail.dims.gram", std::mem::size_of::<Dims>());
        let params = uniform_buf("gradtail.gram.params", std::mem::size_of::<GramParams>());
        pop_scope(scope, "setting up the Gram kernel")?;
        Ok(GramKernel {
            layout,
            pipeline_layout,
            pipelines: [None, None, None, None],
            dims,
            params,
            input: Grow::new("gradtail.gram.input", U::STORAGE | U::COPY_DST),
            centre: Grow::new("gradtail.gram.centre", U::STORAGE | U::COPY_DST),
            out: Grow::new("gradtail.gram.out", U::STORAGE | U::COPY_SRC),
            readback: Grow::new("gradtail.gram.readback", U::MAP_READ | U::COPY_DST),
            stage: Vec::new(),
        })
    }

    fn pipeline(&mut self, ctx: &Context, dtype: u32) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = &self.pipelines[dtype as usize] {
            return Ok(p.clone());
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let p = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("gradtail.gram"),
                layout: Some(&self.pipeline_layout),
                module: &ctx.modules[GRAM],
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[("DTYPE", f64::from(dtype))],
                    // Every workgroup variable is written before it is read.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        pop_scope(scope, "compiling the Gram kernel")?;
        self.pipelines[dtype as usize] = Some(p.clone());
        Ok(p)
    }

    /// Adds the block's Gram to `out` (see `Backend::gram`); `cap` lowers the binding limit.
    pub(super) fn block(
        &mut self,
        ctx: &Context,
        cap: Option<u64>,
        block: &Block,
        centre: &[f64],
        out: &mut Gram,
    ) -> Result<()> {
        let (k, width) = (block.rows.len(), block.width());
        if k == 0 || width == 0 {
            return Ok(());
        }
        let Some(bound) = bound(block, centre) else {
            // NaN or ±∞ in the data: a non-finite Gram, as the CPU engine's.
            let nan = vec![f64::NAN; k * k];
            return combine(out, k, width, &nan);
        };
        let (dtype, elem) = upload_type(&block.data);
        let caps = ctx.caps(cap);
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
        let (Some(scale), Some(cut)) =
            (scale_for(bound), cut(k, width, elem, caps.binding, max_dim))
        else {
            return crate::engine::cpu::gram(block, centre, out)
                .map_err(|e| Error::Config(format!("internal: {e}")));
        };
        let pipeline = self.pipeline(ctx, dtype)?;
        let tiles = k.div_ceil(GRAM_TILE as usize);
        let total = tiles * (tiles + 1) / 2;
        // The lower triangle, row-major, as `Gram::from_parts` reads it.
        let mut g = vec![0.0f64; k * k];
        for c0 in (0..width).step_by(cut.cols) {
            let cols = c0..(c0 + cut.cols).min(width);
            let pitch = cols.len().next_multiple_of(COL_ALIGN);
            let w = cols.len();
            let slice_cols = cut.slice_cols.min(w.next_multiple_of(GRAM_CHUNK as usize));
            let slices = w.div_ceil(slice_cols);
            let mut pairs_c = vec![[0.0f32; 2]; pitch];
            if block.data.dtype() != Dtype::F64 {
                for (p, &c) in pairs_c.iter_mut().zip(&centre[cols.clone()]) {
                    let hi = c as f32;
                    *p = [hi, (c - f64::from(hi)) as f32];
                }
            }
            let refs = &centre[cols.clone()];
            let mut stage = std::mem::take(&mut self.stage);
            let input = pack(block, &(0..k), &cols, pitch, refs, &mut stage);
            let dims = Dims {
                rows: k as u32,
                row_words: (pitch * elem / 16) as u32,
                one: 1.0,
                ..Dims::default()
            };
            self.upload(ctx, input, bytemuck::cast_slice(&pairs_c), &dims);
            self.stage = stage;
            for pair0 in (0..total).step_by(cut.pairs) {
                let pairs = cut.pairs.min(total - pair0);
                let params = GramParams {
                    k: k as u32,
                    tiles: tiles as u32,
                    pair0: pair0 as u32,
                    pairs: pairs as u32,
                    cols: w as u32,
                    slice_cols: slice_cols as u32,
                    scale,
                    pad: 0,
                };
                let partials = self.dispatch(ctx, &pipeline, &params, slices)?;
                fold(&partials, &params, slices, &mut g);
            }
        }
        // Undo the scale: exact, a power of two.
        let unscale = (1.0 / f64::from(scale)).powi(2);
        g.iter_mut().for_each(|v| *v *= unscale);
        combine(out, k, width, &g)
    }

    /// Uploads one dispatch's input, centres and sizes.
    fn upload(&mut self, ctx: &Context, input: &[u8], centre: &[u8], dims: &Dims) {
        let device = &ctx.device;
        let buf = self.input.get(device, input.len() as u64).clone();
        super::pack::write_in_pieces(&ctx.queue, &buf, input);
        let c = self.centre.get(device, centre.len() as u64).clone();
        ctx.queue.write_buffer(&c, 0, centre);
        ctx.queue
            .write_buffer(&self.dims, 0, bytemuck::bytes_of(dims));
    }

    /// Runs `params.pairs` tile pairs over `slices` slices, waits, and reads the partial
    /// tiles back: (sum, compensation) per entry, slice-major.
    fn dispatch(
        &mut self,
        ctx: &Context,
        pipeline: &wgpu::ComputePipeline,
        params: &GramParams,
        slices: usize,
    ) -> Result<Vec<[f32; 2]>> {
        let device = &ctx.device;
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        ctx.queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(params));
        let out_bytes = slices as u64 * params.pairs as u64 * TILE_OUT;
        let out = self.out.get(device, out_bytes).clone();
        let input = self.input.buf.clone().expect("uploaded first");
        let centre = self.centre.buf.clone().expect("uploaded first");
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("gradtail.gram"),
            layout: &self.layout,
            entries: &[
                (0, bind(&self.dims, 0, std::mem::size_of::<Dims>() as u64)),
                (1, bind(&input, 0, input.size())),
                (
                    2,
                    bind(&self.params, 0, std::mem::size_of::<GramParams>() as u64),
                ),
                (3, bind(&centre, 0, centre.size())),
                (4, bind(&out, 0, out_bytes)),
            ]
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }),
        });
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("gradtail.gram"),
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gradtail.gram"),
                timestamp_writes: None,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(params.pairs, slices as u32, 1);
        }
        submit_and_read(
            ctx,
            enc,
            &out,
            &mut self.readback,
            out_bytes,
            (oom, validation),
            "Gram",
        )
    }
}

/// Adds one dispatch's partial tiles into `g` (row-major K × K, lower triangle: entry (j, i)
/// with i ≤ j holds Σ u_i u_j), in f64, slice by slice.
fn fold(partials: &[[f32; 2]], p: &GramParams, slices: usize, g: &mut [f64]) {
    let (k, t) = (p.k as usize, GRAM_TILE as usize);
    let tiles = p.tiles as usize;
    let mut pair_tiles = Vec::with_capacity(p.pairs as usize);
    let (mut ti, mut rem) = (0, p.pair0 as usize);
    while rem >= tiles - ti {
        rem -= tiles - ti;
        ti += 1;
    }
    let mut tj = ti + rem;
    for _ in 0..p.pairs {
        pair_tiles.push((ti, tj));
        tj += 1;
        if tj == tiles {
            ti += 1;
            tj = ti;
        }
    }
    for s in 0..slices {
        for (q, &(ti, tj)) in pair_tiles.iter().enumerate() {
            let tile = &partials[(s * p.pairs as usize + q) * t * t..][..t * t];
            for r in 0..t.min(k - ti * t) {
                let i = ti * t + r;
                for c in 0..t.min(k - tj * t) {
                    let j = tj * t + c;
                    if i <= j {
                        let [sum, comp] = tile[r * t + c];
                        g[j * k + i] += f64::from(sum) + f64::from(comp);
                    }
                }
            }
        }
    }
}

fn combine(out: &mut Gram, k: usize, coords: usize, g: &[f64]) -> Result<()> {
    Gram::from_parts(k, coords as u64, g)
        .and_then(|part| out.combine(&part))
        .map_err(|e| Error::Config(format!("internal: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::BlockData;

    #[test]
    fn cuts_fit_the_limits() {
        // K = 256, 65,536 f32 columns, 128 MiB bindings: 10 tile pairs; slices to fill the
        // device, within a quarter of the input's bytes read back.
        let c = cut(256, 65_536, 4, 128 << 20, 65_535).unwrap();
        assert_eq!((c.cols, c.pairs), (65_536, 10));
        assert!(c.slices * c.slice_cols >= c.cols && c.slice_cols.is_multiple_of(64));
        let back = (c.slices * c.pairs) as u64 * TILE_OUT;
        assert!(back * 4 <= (256 * 65_536 * 4) as u64, "{c:?}");
        assert!(c.slices > 1);
        // A binding of 3 output tiles: pairs and slices cut down to fit.
        let small = 3 * TILE_OUT;
        let c = cut(300, 1000, 4, small, 65_535).unwrap();
        assert!((c.slices * c.pairs) as u64 * TILE_OUT <= small, "{c:?}");
        assert!(c.cols * 300 * 4 <= small as usize && c.cols.is_multiple_of(COL_ALIGN));
        assert!(cut(300, 1000, 4, TILE_OUT - 16, 65_535).is_none());
    }

    #[test]
    fn scale_keeps_u_at_most_one() {
        assert_eq!(scale_for(0.0), Some(1.0));
        assert_eq!(scale_for(1.0), Some(1.0));
        assert_eq!(scale_for(3.0), Some(0.25));
        assert_eq!(scale_for(2f64.powi(100)), Some(2f32.powi(-100)));
        assert_eq!(scale_for(1e-3), Some(512.0));
        assert_eq!(scale_for(1e300), None);
        assert_eq!(scale_for(1e-300), None);
    }

    #[test]
    fn bound_finds_non_finite_values() {
        let b = |d: BlockData| Block::new(0..2, 0..2, d);
        let c = [0.5, -2.0];
        assert_eq!(
            bound(&b(BlockData::F32(vec![1.0, -3.0, 0.0, 2.0])), &c),
            Some(5.0)
        );
        assert_eq!(
            bound(&b(BlockData::F32(vec![1.0, f32::NAN, 0.0, 2.0])), &c),
            None
        );
        assert_eq!(
            bound(&b(BlockData::F64(vec![1.0, -3.0, 0.0, 2.0])), &c),
            Some(4.0)
        );
        assert_eq!(
            bound(&b(BlockData::F64(vec![1.0, 0.0, f64::INFINITY, 2.0])), &c),
            None
        );
        let h = |v: f32| half::f16::from_f32(v).to_bits();
        let f16 = BlockData::F16(vec![h(1.0), h(-6.0), 0, h(2.0)]);
        assert_eq!(bound(&b(f16), &c), Some(8.0));
        let inf = BlockData::F16(vec![h(1.0), h(f32::INFINITY), 0, h(2.0)]);
        assert_eq!(bound(&b(inf), &c), None);
        let bf = |v: f32| half::bf16::from_f32(v).to_bits();
        let nan = BlockData::BF16(vec![bf(1.0), bf(f32::NAN), 0, bf(2.0)]);
        assert_eq!(bound(&b(nan), &c), None);
    }

    /// A block lying inside wider rows (read in place) is bounded over its own columns only:
    /// values beside them, NaN or large, do not count.
    #[test]
    fn bound_reads_a_strided_block_by_its_columns() {
        let c = [0.5, -2.0];
        let rows = BlockData::F32(vec![1.0, -3.0, f32::NAN, 0.0, 2.0]);
        assert_eq!(bound(&Block::strided(0..2, 0..2, rows, 3), &c), Some(5.0));
        let rows = BlockData::F64(vec![1.0, -3.0, 1e300, 0.0, 2.0]);
        assert_eq!(bound(&Block::strided(0..2, 0..2, rows, 3), &c), Some(4.0));
    }
}
