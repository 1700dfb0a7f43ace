//! `gradtail._native`: the Rust side of the `gradtail` Python package. It analyses numpy
//! arrays in place (no copy) or stacked files written by `gradtail.Accumulator`, with the GIL
//! released while the engines run; the Python package (`python/gradtail/`) checks and shapes
//! the arguments.

mod result;

use std::path::PathBuf;
use std::time::Instant;

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use gradtail::analyze::structure::StructureOptions;
use gradtail::analyze::{self, Center, Options};
use gradtail::engine::{Backend, BackendChoice};
use gradtail::input::mem::MemTensor;
use gradtail::input::{Dtype, Select, Skipped, TensorSource};
use result::{NativeResult, Run};

/// A gradtail error as the Python exception of its kind, with the command line's message.
fn py_err(e: gradtail::Error) -> PyErr {
    use gradtail::Error as E;
    let msg = e.to_string();
    match e {
        E::Io { .. } => PyOSError::new_err(msg),
        E::BadInput { .. } | E::Unusable { .. } | E::Config(_) => PyValueError::new_err(msg),
        E::Gpu(_) | E::GpuFault(_) | E::NoAdapter(_) => PyRuntimeError::new_err(msg),
    }
}

/// The options `analyze` and `Accumulator.finish` share, as the command line reads them.
struct RunOptions {
    center: Center,
    block: Option<usize>,
    backend: BackendChoice,
    /// The minibatch size B of the samples (the gradient noise scale).
    batch_size: Option<usize>,
}

impl RunOptions {
    fn parse(
        center: &str,
        block: Option<usize>,
        backend: &str,
        batch_size: Option<usize>,
    ) -> PyResult<Self> {
        if batch_size == Some(0) {
            return Err(PyValueError::new_err(
                "batch_size=0: the minibatch size must be a positive number",
            ));
        }
        let center = match center {
            "mean" => Center::Mean,
            "median" => Center::Median,
            "none" => Center::None,
            path if path.ends_with(".npy") => Center::File(PathBuf::from(path)),
            other => {
                return Err(PyValueError::new_err(format!(
                    "center={other:?}: expected \"mean\", \"median\", \"none\" or the path of an .npy file"
                )))
            }
        };
        let backend = match backend {
            "auto" => BackendChoice::Auto,
            "cpu" => BackendChoice::Cpu,
            "gpu" => BackendChoice::Gpu,
            other => {
                return Err(PyValueError::new_err(format!(
                    "backend={other:?}: expected \"auto\", \"cpu\" or \"gpu\""
                )))
            }
        };
        Ok(RunOptions {
            center,
            block,
            backend,
            batch_size,
        })
    }
}

/// Runs the analysis as `gradtail analyze` does (the engine asked for; `auto` falls back to
/// the CPU engine when the GPU fails mid-run), keeping every per-coordinate map whole.
fn run(
    sources: &[Box<dyn TensorSource + '_>],
    o: RunOptions,
    skipped: Vec<Skipped>,
) -> gradtail::Result<Run> {
    let start = Instant::now();
    let opts = Options {
        center: o.center.clone(),
        block: o.block,
        structure: StructureOptions {
            batch_size: o.batch_size.map(|b| b as f64),
            ..StructureOptions::default()
        },
        ..Options::default()
    };
    let total = sources.iter().map(|s| s.meta().coords()).sum();
    // The analysis keeps only a plotting sample of each map when all of them would not fit
    // its memory budget; Python callers get every map, so the whole ones are kept here.
    let keep_whole = gradtail::analyze::coords_sampled(total, &opts);
    let mut backend = o.backend.make(opts.threads)?;
    let attempt = |backend: &mut dyn Backend| {
        let mut whole = Vec::new();
        let analysis = analyze::analyze_with(sources, &opts, backend, &mut |t| {
            if keep_whole {
                whole.push(t.coords.clone());
            }
            Ok(())
        })?;
        Ok((analysis, keep_whole.then_some(whole)))
    };
    let cpu = || BackendChoice::Cpu.make(opts.threads);
    let fallback =
        (o.backend == BackendChoice::Auto).then_some(&cpu as &dyn Fn() -> gradtail::Result<_>);
    let (analysis, whole) = analyze::with_fallback(&mut backend, fallback, attempt)?;
    Ok(Run {
        engine: backend.info(),
        analysis,
        whole,
        center: o.center,
        block: o.block,
        fits: opts.fits,
        structure: opts.structure.clone(),
        elapsed_s: start.elapsed().as_secs_f64(),
        skipped,
    })
}

/// One array's values as bytes, read in place; the borrow keeps numpy from handing out a
/// writable view while the engines read it.
enum Held<'py> {
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    BF16(PyReadonlyArrayDyn<'py, u16>),
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

impl Held<'_> {
    fn bytes(&self) -> PyResult<&[u8]> {
        let contiguous = |e| PyValueError::new_err(format!("the array must be C-contiguous ({e})"));
        Ok(match self {
            Held::F16(a) => bytemuck::cast_slice(a.as_slice().map_err(contiguous)?),
            Held::BF16(a) => bytemuck::cast_slice(a.as_slice().map_err(contiguous)?),
            Held::F32(a) => bytemuck::cast_slice(a.as_slice().map_err(contiguous)?),
            Held::F64(a) => bytemuck::cast_slice(a.as_slice().map_err(contiguous)?),
        })
    }

    fn dtype(&self) -> Dtype {
        match self {
            Held::F16(_) => Dtype::F16,
            Held::BF16(_) => Dtype::BF16,
            Held::F32(_) => Dtype::F32,
            Held::F64(_) => Dtype::F64,
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Held::F16(a) => a.shape(),
            Held::BF16(a) => a.shape(),
            Held::F32(a) => a.shape(),
            Held::F64(a) => a.shape(),
        }
    }
}

/// Analyses `(name, array, bf16)` triples: C-contiguous float16, float32 or float64 arrays,
/// or uint16 arrays of bfloat16 bits where `bf16` is true.
#[pyfunction]
#[pyo3(signature = (arrays, center, block, backend, batch_size))]
fn analyze_arrays(
    py: Python<'_>,
    arrays: Vec<(String, Bound<'_, PyAny>, bool)>,
    center: &str,
    block: Option<usize>,
    backend: &str,
    batch_size: Option<usize>,
) -> PyResult<NativeResult> {
    let opts = RunOptions::parse(center, block, backend, batch_size)?;
    let mut held = Vec::with_capacity(arrays.len());
    for (name, array, bf16) in &arrays {
        let h = if *bf16 {
            array.extract().map(Held::BF16)
        } else {
            array
                .extract()
                .map(Held::F32)
                .or_else(|_| array.extract().map(Held::F64))
                .or_else(|_| array.extract().map(Held::F16))
        };
        let h = h.map_err(|_| {
            PyValueError::new_err(format!(
                "tensor {name}: expected a float16, float32 or float64 array (or bfloat16 bits)"
            ))
        })?;
        held.push((name.as_str(), h));
    }
    let mut sources: Vec<Box<dyn TensorSource + '_>> = Vec::with_capacity(held.len());
    for (name, h) in &held {
        let t = MemTensor::new(name, "<array>", h.dtype(), h.shape(), h.bytes()?);
        sources.push(Box::new(t.map_err(py_err)?));
    }
    let run = py
        .detach(|| run(&sources, opts, Vec::new()))
        .map_err(py_err)?;
    Ok(NativeResult::new(run))
}

/// Analyses stacked `.safetensors` files (one or more (K, ...) tensors each), as
/// `gradtail analyze FILE` reads one.
#[pyfunction]
#[pyo3(signature = (paths, center, block, backend, batch_size))]
fn analyze_files(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    center: &str,
    block: Option<usize>,
    backend: &str,
    batch_size: Option<usize>,
) -> PyResult<NativeResult> {
    let opts = RunOptions::parse(center, block, backend, batch_size)?;
    let run = py
        .detach(|| {
            let mut skipped = Vec::new();
            let mut sources = Vec::new();
            for path in &paths {
                let all = Select::default();
                sources.extend(gradtail::input::safetensors::open_stacked(
                    path,
                    &all,
                    &mut skipped,
                )?);
            }
            run(&sources, opts, skipped)
        })
        .map_err(py_err)?;
    Ok(NativeResult::new(run))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Warnings (a GPU fallback) go to stderr as the command line prints them; RUST_LOG
    // chooses more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wgpu_hal=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    m.add_function(wrap_pyfunction!(analyze_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(analyze_files, m)?)?;
    m.add_class::<NativeResult>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
