//! Shared test helpers: writing `.npy` files, reading reference maps, and the tolerance rules
//! every comparison uses.
#![allow(dead_code)] // helpers for tests that may run only on some machines

pub mod naive;
pub mod tolerance;

use std::path::{Path, PathBuf};

use gradtail::analyze::{self, Analysis, Options};
use gradtail::engine::Backend;

pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Writes a C-order little-endian float32 `.npy` of `shape` (K first).
pub fn write_npy_f32(path: &Path, shape: &[usize], values: &[f32]) {
    let mut bytes = gradtail::input::npy::header_bytes("<f4", shape);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

pub fn write_npy_f64(path: &Path, shape: &[usize], values: &[f64]) {
    let mut bytes = gradtail::input::npy::header_bytes("<f8", shape);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Runs the whole pipeline on files.
pub fn analyze_files(paths: &[PathBuf], opts: &Options, backend: &mut dyn Backend) -> Analysis {
    let mut sources = Vec::new();
    for p in paths {
        sources.extend(gradtail::input::open(p).unwrap());
    }
    analyze::analyze(&sources, opts, backend).unwrap()
}

/// The per-coordinate reference maps of the digits data, concatenated in `layout.json` order.
pub fn digits_reference(stat: &str) -> Vec<f64> {
    let bytes = std::fs::read(data("digits/reference_coords.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("digits/layout.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for t in layout["tensors"].as_array().unwrap() {
        let name = format!("{}/{stat}", t["name"].as_str().unwrap());
        let view = st.tensor(&name).unwrap();
        out.extend(
            view.data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap())),
        );
    }
    out
}

pub fn digits_reference_json() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data("digits/reference.json")).unwrap()).unwrap()
}

/// The GPU engine on any adapter, or `None` after printing "skipped: no GPU adapter" when
/// there is no adapter at all — a failure instead when GRADTAIL_REQUIRE_GPU=1 (set by
/// `.ci/run`). Any other start-up error fails the test.
pub fn gpu_or_skip(
    opts: gradtail::engine::gpu::GpuOptions,
) -> Option<gradtail::engine::gpu::GpuEngine> {
    match gradtail::engine::gpu::GpuEngine::new(opts) {
        Ok(e) => Some(e),
        Err(gradtail::Error::NoAdapter(why)) => {
            if std::env::var("GRADTAIL_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("no GPU adapter, and GRADTAIL_REQUIRE_GPU=1: {why}");
            }
            println!("skipped: no GPU adapter ({why})");
            None
        }
        Err(e) => panic!("the GPU engine failed to start: {e}"),
    }
}

/// (name, offset, size) of each tensor in a row, from a `layout.json`.
pub fn layout(path: &Path) -> Vec<(String, usize, usize)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["offset"].as_u64().unwrap() as usize,
                t["size"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

/// A seeded xorshift64* stream of uniforms in [0, 1), and SαS(α) draws by Chambers, Mallows &
/// Stuck (1976) written out here, independent of the crate's sampler.
pub struct Draws(pub u64);

impl Draws {
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn sas(&mut self, alpha: f64) -> f64 {
        let v = (self.uniform() - 0.5) * std::f64::consts::PI;
        let w = -(1.0 - self.uniform()).ln();
        (alpha * v).sin() / v.cos().powf(1.0 / alpha)
            * (((1.0 - alpha) * v).cos() / w).powf((1.0 - alpha) / alpha)
    }
}

/// The fits of a tensor, coordinate by coordinate, from per-field maps.
pub fn fits_of(map: impl Fn(&str) -> Vec<f64>) -> Vec<gradtail::stats::fits::Fits> {
    let cols: Vec<Vec<f64>> = gradtail::stats::Stat::FITS
        .iter()
        .map(|s| map(s.name()))
        .collect();
    (0..cols[0].len())
        .map(|j| {
            let v: Vec<f64> = cols.iter().map(|c| c[j]).collect();
            gradtail::stats::fits::Fits {
                alpha_mcculloch: v[0],
                beta_mcculloch: v[1],
                scale_mcculloch: v[2],
                loc_mcculloch: v[3],
                ad: v[4],
                ad_p: v[5],
                ks_gauss: v[6],
                ks_stable: v[7],
                top1_share: v[8],
                var_ratio: v[9],
            }
        })
        .collect()
}

/// The analysis without the structure statistics (covariance spectrum, power-law fits): for
/// the suites that test the per-coordinate and pooled estimators, which run hundreds of
/// analyses in a debug build; `structure_cli` and `shard` test the structure statistics.
pub fn tail_options() -> Options {
    let mut opts = Options::default();
    opts.structure.spectrum = false;
    opts.structure.powerlaw = false;
    opts
}
