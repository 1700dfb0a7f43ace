//! The GPU context: instance, adapter, device and queue, the limits and features requested,
//! the bind-group layouts and the compute pipelines, all built once per engine. Also the
//! `#[repr(C)]` structs the host uploads, mirrored in WGSL (`tests/it/shaders.rs` checks their
//! layout against naga's reflection of the shaders); what the kernels write is in `partials`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::plan;

/// Values of the WGSL `override DTYPE`: how a kernel widens its input.
pub const DTYPE_F32: u32 = 0;
pub const DTYPE_F16: u32 = 1;
pub const DTYPE_BF16: u32 = 2;
/// f64 uploaded as normalised (hi, lo) f32 pairs, hi = x as f32, lo = (x - hi) as f32: the
/// kernels keep ~48 bits where it matters (centring, sums).
pub const DTYPE_F64: u32 = 3;

/// One kernel's WGSL source as compiled: `shaders/common.wgsl` (the structs, override and
/// helpers every kernel shares) followed by `shaders/<stem>.wgsl`.
macro_rules! kernel_source {
    ($stem:literal) => {
        concat!(
            include_str!("../../../shaders/common.wgsl"),
            include_str!(concat!("../../../shaders/", $stem, ".wgsl")),
        )
    };
}

/// The kernels' WGSL sources, by stem (file, pipeline label `gradtail.<stem>`, CPU twin), each
/// assembled as common.wgsl + <stem>.wgsl.
pub const SHADERS: [(&str, &str); 6] = [
    ("coord_mean", kernel_source!("coord_mean")),
    ("coord_stats", kernel_source!("coord_stats")),
    ("flat_blocks", kernel_source!("flat_blocks")),
    ("coord_fits", kernel_source!("coord_fits")),
    ("gram", kernel_source!("gram")),
    ("xmin_scan", kernel_source!("xmin_scan")),
];

/// Index of `coord_fits` in [`SHADERS`] (its pipeline is built by `fits` on first use).
pub const COORD_FITS: usize = 3;
/// Index of `gram` in [`SHADERS`] (its pipelines are built by `gram` on first use).
pub const GRAM: usize = 4;

/// Index of `xmin_scan` in [`SHADERS`] (its pipeline is built by `xmin_scan` on first use).
pub const XMIN_SCAN: usize = 5;

/// Where `flat_blocks.wgsl` is cut for adapters without `Features::SUBGROUP`: everything after
/// this line uses subgroup builtins, which naga rejects without the capability.
pub const SUBGROUP_MARKER: &str = "// --- SUBGROUP VARIANT";

/// The assembled `flat_blocks` source with or without its subgroup entry point.
pub fn flat_source(subgroups: bool) -> Cow<'static, str> {
    let src = SHADERS[2].1;
    match (subgroups, src.find(SUBGROUP_MARKER)) {
        (false, Some(at)) => Cow::Owned(src[..at].to_owned()),
        _ => Cow::Borrowed(src),
    }
}

/// Per-dispatch sizes, the uniform of every kernel. Mirrors WGSL `struct Dims`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    pub rows: u32,
    pub groups: u32,
    pub row_words: u32,
    pub chunk_rows: u32,
    pub chunks: u32,
    pub col_wgs: u32,
    pub grid_x: u32,
    pub items: u32,
    pub row0: u32,
    pub used_rows: u32,
    pub k1: u32,
    /// Always 1.0; read from a uniform so shader compilers cannot fold it (it guards the
    /// compensated sums against re-association).
    pub one: f32,
}

/// Shift (pass-1 mean) and centre of one column as f32 hi/lo pairs, whether the column enters
/// the pooled time-block sums (1.0 or 0.0), and the binade that scales its moment sums.
/// Mirrors WGSL `struct ColParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ColParams {
    pub shift_hi: f32,
    pub shift_lo: f32,
    pub centre_hi: f32,
    pub centre_lo: f32,
    pub pool: f32,
    /// e with `spread` < 2^e (frexp's exponent), clamped to ±126 so 2^-e is a normal f32:
    /// `coord_stats` sums powers of d·2^-e, |d·2^-e| ≤ 1, so d⁴ neither overflows f32 nor
    /// sinks into flushed subnormals.
    pub exp: i32,
}

impl ColParams {
    /// Splits each value into hi = v as f32 and lo = (v - hi) as f32, so (x - hi) - lo keeps
    /// the f64 centre's digits beyond f32; `spread` is the column's largest |x - shift|.
    pub fn new(shift: f64, centre: f64, pool: bool, spread: f64) -> Self {
        let split = |v: f64| {
            let hi = v as f32;
            (hi, (v - hi as f64) as f32)
        };
        let (shift_hi, shift_lo) = split(shift);
        let (centre_hi, centre_lo) = split(centre);
        ColParams {
            shift_hi,
            shift_lo,
            centre_hi,
            centre_lo,
            pool: if pool { 1.0 } else { 0.0 },
            exp: if spread > 0.0 && spread.is_finite() {
                libm::frexp(spread).1.clamp(-126, 126)
            } else {
                0
            },
        }
    }
}

/// Columns `c0..c1` of row `row` of a unit, lying in one flat block of each flattening.
/// Mirrors WGSL `struct Segment`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Segment {
    pub row: u32,
    pub c0: u32,
    pub c1: u32,
    pub pad: u32,
}

/// The three pipelines of one input dtype.
pub struct Pipelines {
    pub mean: wgpu::ComputePipeline,
    pub stats: wgpu::ComputePipeline,
    pub flat: wgpu::ComputePipeline,
}

pub struct Layouts {
    /// `coord_mean`: dims, input, output.
    pub mean: wgpu::BindGroupLayout,
    /// `coord_stats`: dims, input, params, moment partials, tail partials, pooled block sums.
    pub stats: wgpu::BindGroupLayout,
    /// `flat_blocks`: dims, input, params, segments, output.
    pub flat: wgpu::BindGroupLayout,
}

/// Everything built once per engine.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub layouts: Layouts,
    /// Per dtype (`DTYPE_*`), built on first use of that dtype.
    pub pipelines: [Option<Pipelines>; 4],
    pub(super) modules: [wgpu::ShaderModule; 6],
    pipeline_layouts: [wgpu::PipelineLayout; 3],
    /// `flat_blocks` uses its subgroup entry point.
    pub subgroups: bool,
    /// A device loss or an error that escaped every error scope; checked after each wait.
    pub fault: Arc<Mutex<Option<String>>>,
}

/// Adapters in wgpu's backends chosen by `WGPU_BACKEND` (all when unset), filtered by
/// `WGPU_ADAPTER_NAME` (case-insensitive substring), best first: discrete, integrated,
/// virtual, other, CPU; Vulkan before the others at equal type.
pub fn adapters_from_env() -> Vec<wgpu::Adapter> {
    let mut found = super::quiet::quietly(|| {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
    });
    found.retain(|a| a.get_info().backend != wgpu::Backend::Noop);
    if let Ok(want) = std::env::var("WGPU_ADAPTER_NAME") {
        let want = want.to_lowercase();
        found.retain(|a| a.get_info().name.to_lowercase().contains(&want));
    }
    found.sort_by_key(|a| rank(&a.get_info()));
    found
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan => 0,
        wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 2,
    };
    (ty, backend)
}

/// The features gradtail uses when the adapter has them.
pub fn wanted_features(adapter: &wgpu::Adapter) -> wgpu::Features {
    let want =
        wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY;
    adapter.features() & want
}

pub(super) fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

pub(super) fn uniform(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Dims>() as u64),
        },
        count: None,
    }
}

/// Pops an error scope into our error type.
pub fn pop_scope(scope: wgpu::ErrorScopeGuard, what: &str) -> Result<()> {
    match pollster::block_on(scope.pop()) {
        None => Ok(()),
        Some(e @ wgpu::Error::OutOfMemory { .. }) => Err(Error::GpuFault(format!("{what}: {e}"))),
        Some(e) => Err(Error::Gpu(format!("{what}: {e}"))),
    }
}

impl Context {
    pub fn new(adapter: wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let features = wanted_features(&adapter);
        // Ask for everything the adapter offers: the defaults (128 MiB per binding, 256 MiB
        // per buffer) would needlessly cut blocks into more dispatches.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gradtail"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("cannot open a device on {}: {e}", info.name)))?;

        let fault = Arc::new(Mutex::new(None::<String>));
        {
            let fault = Arc::clone(&fault);
            device.set_device_lost_callback(move |reason, msg| {
                let mut f = fault.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
            });
        }
        {
            // Errors outside every scope would panic in wgpu's default handler; record them
            // and fail the next wait instead.
            let fault = Arc::clone(&fault);
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut f = fault.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert_with(|| e.to_string());
            }));
        }

        // GRADTAIL_GPU_NO_SUBGROUP=1 forces the workgroup-memory path (to test it).
        let no_subgroup =
            std::env::var("GRADTAIL_GPU_NO_SUBGROUP").is_ok_and(|v| !v.is_empty() && v != "0");
        let subgroups = features.contains(wgpu::Features::SUBGROUP) && !no_subgroup;

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = |label: &str, entries: &[wgpu::BindGroupLayoutEntry]| {
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries,
            })
        };
        let layouts = Layouts {
            mean: layout(
                "gradtail.coord_mean",
                &[uniform(0), storage(1, true), storage(2, false)],
            ),
            stats: layout(
                "gradtail.coord_stats",
                &[
                    uniform(0),
                    storage(1, true),
                    storage(2, true),
                    storage(3, false),
                    storage(4, false),
                    storage(5, false),
                ],
            ),
            flat: layout(
                "gradtail.flat_blocks",
                &[
                    uniform(0),
                    storage(1, true),
                    storage(2, true),
                    storage(3, true),
                    storage(4, false),
                ],
            ),
        };
        let pl = |label: &str, bgl: &wgpu::BindGroupLayout| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(bgl)],
                immediate_size: 0,
            })
        };
        let pipeline_layouts = [
            pl("gradtail.coord_mean", &layouts.mean),
            pl("gradtail.coord_stats", &layouts.stats),
            pl("gradtail.flat_blocks", &layouts.flat),
        ];
        let module = |i: usize, src: Cow<'static, str>| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&format!("gradtail.{}", SHADERS[i].0)),
                source: wgpu::ShaderSource::Wgsl(src),
            })
        };
        let modules = [
            module(0, Cow::Borrowed(SHADERS[0].1)),
            module(1, Cow::Borrowed(SHADERS[1].1)),
            module(2, flat_source(subgroups)),
            module(COORD_FITS, Cow::Borrowed(SHADERS[COORD_FITS].1)),
            module(GRAM, Cow::Borrowed(SHADERS[GRAM].1)),
            module(XMIN_SCAN, Cow::Borrowed(SHADERS[XMIN_SCAN].1)),
        ];
        pop_scope(scope, "building the GPU context")?;

        Ok(Context {
            device,
            queue,
            info,
            limits,
            features,
            layouts,
            pipelines: [None, None, None, None],
            modules,
            pipeline_layouts,
            subgroups,
            fault,
        })
    }

    /// The pipelines for input dtype `dtype` (`DTYPE_*`), compiled on first use.
    pub fn ensure_pipelines(&mut self, dtype: u32) -> Result<&Pipelines> {
        let i = dtype as usize;
        if self.pipelines[i].is_none() {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let constants = [("DTYPE", dtype as f64)];
            let make = |k: usize, layout: usize, entry: &str| {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(&format!("gradtail.{}", SHADERS[k].0)),
                        layout: Some(&self.pipeline_layouts[layout]),
                        module: &self.modules[k],
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            // Every workgroup variable is written before it is read.
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    })
            };
            let flat_entry = if self.subgroups {
                "main_subgroup"
            } else {
                "main"
            };
            let p = Pipelines {
                mean: make(0, 0, "main"),
                stats: make(1, 1, "main"),
                flat: make(2, 2, flat_entry),
            };
            pop_scope(scope, "compiling the kernels")?;
            self.pipelines[i] = Some(p);
        }
        Ok(self.pipelines[i].as_ref().expect("built above"))
    }

    /// Planner limits: the smaller of the device's binding and buffer limits and `cap`.
    pub fn caps(&self, cap: Option<u64>) -> plan::Caps {
        let dev = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        // Bindings are bound in whole vec4 words.
        let binding = cap.map_or(dev, |c| c.min(dev)) / plan::WORD * plan::WORD;
        plan::Caps {
            binding,
            buffer: self.limits.max_buffer_size,
            max_dim: self.limits.max_compute_workgroups_per_dimension,
        }
    }

    pub fn check_fault(&self) -> Result<()> {
        let f = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        match &*f {
            Some(msg) => Err(Error::GpuFault(msg.clone())),
            None => Ok(()),
        }
    }
}
