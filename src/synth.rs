//! `gradtail synth`: symmetric α-stable data written straight to an `.npy` file, row chunk by
//! row chunk, so K·P may exceed memory. Each row has its own seeded generator, so the output
//! depends on the seed only, not on the number of threads.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::SeedableRng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::input::{npy, Dtype};
use crate::stats::sas;

/// Appends `values` rounded to `dtype`, little-endian, as .npy and safetensors store them.
fn encode(dtype: Dtype, values: &[f64], out: &mut Vec<u8>) {
    match dtype {
        Dtype::F16 => out.extend(
            values
                .iter()
                .flat_map(|&v| half::f16::from_f64(v).to_le_bytes()),
        ),
        Dtype::BF16 => out.extend(
            values
                .iter()
                .flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()),
        ),
        Dtype::F32 => out.extend(values.iter().flat_map(|&v| (v as f32).to_le_bytes())),
        Dtype::F64 => out.extend(values.iter().flat_map(|&v| v.to_le_bytes())),
    }
}

#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub alpha: f64,
    pub samples: usize,
    pub params: usize,
    pub scale: f64,
    pub seed: u64,
    pub dtype: Dtype,
    /// Standard deviation of ln c_j across coordinates: each coordinate j gets scale
    /// c·exp(s·z_j), z_j ~ N(0, 1), the heterogeneity that biases flat pooling.
    pub log_scale_sd: f64,
    pub traps: Traps,
}

/// Features of real gradients that trip naive estimators, to see each rule at work.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traps {
    /// Fraction of entries set to exactly 0 (sparse gradients, dead units), independently.
    pub zero_frac: f64,
    /// The last this many coordinates are constant, equal to the scale c (frozen parameters).
    pub constant: usize,
    /// The first this many coordinates move together: c_j·z(t) for one SαS series z, as
    /// coordinates that share every minibatch do.
    pub shared: usize,
}

impl Traps {
    /// Applies the traps to row `row` of values drawn from a stream seeded with `seed`.
    fn apply(
        &self,
        alpha: f64,
        scale: f64,
        scales: &[f64],
        seed: u64,
        row: usize,
        out: &mut [f64],
    ) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ 0x7A4B_5EED_0000_0000 ^ (row as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let p = out.len();
        if self.shared > 0 {
            let z = sas::sample(&mut rng, alpha, 1.0);
            for (v, c) in out.iter_mut().zip(scales).take(self.shared) {
                *v = c * z;
            }
        }
        if self.zero_frac > 0.0 {
            use rand::RngExt;
            for v in out.iter_mut() {
                if rng.random::<f64>() < self.zero_frac {
                    *v = 0.0;
                }
            }
        }
        for v in &mut out[p - self.constant.min(p)..] {
            *v = scale;
        }
    }
}

/// Per-coordinate scales c·exp(s·z_j), seeded by `seed` alone.
pub fn coord_scales(spec: &SynthSpec) -> Vec<f64> {
    use rand::RngExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed ^ 0x5CA1_E5CA_1E5C_A1E5);
    (0..spec.params)
        .map(|_| {
            // Box–Muller: one standard normal from two uniforms.
            let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            spec.scale * (spec.log_scale_sd * z).exp()
        })
        .collect()
}

/// One row of SαS(α, c_j) values for row `row` of a stream seeded with `seed`.
pub fn row(alpha: f64, scales: &[f64], seed: u64, row: usize, out: &mut [f64]) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed ^ (row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for (v, &c) in out.iter_mut().zip(scales) {
        *v = sas::sample(&mut rng, alpha, c);
    }
}

pub fn validate(spec: &SynthSpec) -> Result<()> {
    if !(spec.alpha > 0.0 && spec.alpha <= 2.0) {
        return Err(Error::Config(format!(
            "--alpha {} is outside (0, 2]",
            spec.alpha
        )));
    }
    if !(spec.scale > 0.0 && spec.scale.is_finite()) {
        return Err(Error::Config(format!(
            "--scale {} must be positive",
            spec.scale
        )));
    }
    if !(spec.log_scale_sd >= 0.0 && spec.log_scale_sd.is_finite()) {
        return Err(Error::Config(format!(
            "--log-scale-sd {} must be finite and non-negative",
            spec.log_scale_sd
        )));
    }
    let t = &spec.traps;
    if !(0.0..1.0).contains(&t.zero_frac) {
        return Err(Error::Config(format!(
            "--zeros {} must be a fraction in [0, 1)",
            t.zero_frac
        )));
    }
    if t.constant + t.shared > spec.params {
        return Err(Error::Config(format!(
            "--constant {} and --shared {} coordinates exceed --params {}",
            t.constant, t.shared, spec.params
        )));
    }
    if spec.samples == 0 || spec.params == 0 {
        return Err(Error::Config(
            "--samples and --params must be positive".into(),
        ));
    }
    Ok(())
}

/// Writes a (K, P) array; the file appears only when complete.
pub fn write_npy(spec: &SynthSpec, path: &Path) -> Result<()> {
    validate(spec)?;
    let tmp = path.with_extension("npy.partial");
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 22, file);
        let descr = match spec.dtype {
            Dtype::BF16 => {
                return Err(Error::Config(
                    "numpy has no bfloat16: write bf16 with --model (safetensors)".into(),
                ))
            }
            Dtype::F16 => "<f2",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        };
        let io = |e| Error::io(&tmp, e);
        w.write_all(&npy::header_bytes(descr, &[spec.samples, spec.params]))
            .map_err(io)?;
        let rows_per_chunk = ((32 << 20) / (spec.params * 8)).clamp(1, spec.samples);
        let mut chunk = vec![0.0f64; rows_per_chunk * spec.params];
        let scales = coord_scales(spec);
        for r0 in (0..spec.samples).step_by(rows_per_chunk) {
            let nr = rows_per_chunk.min(spec.samples - r0);
            let buf = &mut chunk[..nr * spec.params];
            buf.par_chunks_mut(spec.params)
                .enumerate()
                .for_each(|(i, out)| {
                    row(spec.alpha, &scales, spec.seed, r0 + i, out);
                    spec.traps
                        .apply(spec.alpha, spec.scale, &scales, spec.seed, r0 + i, out);
                });
            let mut bytes = Vec::with_capacity(buf.len() * 8);
            encode(spec.dtype, buf, &mut bytes);
            w.write_all(&bytes).map_err(io)?;
        }
        w.flush().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Shapes of a made-up model of `tensors` weight matrices sharing `params` coordinates:
/// `layers.{i}.weight` of shape (rows, 1024) (the last takes the remainder).
pub fn model_layout(params: usize, tensors: usize) -> Vec<(String, Vec<usize>)> {
    let tensors = tensors.clamp(1, params);
    let per = params / tensors;
    (0..tensors)
        .map(|i| {
            let p = if i + 1 == tensors {
                params - per * (tensors - 1)
            } else {
                per
            };
            let shape = if p % 1024 == 0 {
                vec![p / 1024, 1024]
            } else {
                vec![p]
            };
            (format!("layers.{i}.weight"), shape)
        })
        .collect()
}

/// Writes `spec.samples` per-step safetensors files `step_{k}.safetensors` into `dir`, each one
/// sample of every tensor of [`model_layout`], as a training loop saving `{name: p.grad}`
/// would. Each tensor draws from its own seeded stream; scales differ per tensor.
pub fn write_model(spec: &SynthSpec, tensors: usize, dir: &Path) -> Result<()> {
    validate(spec)?;
    if spec.dtype == Dtype::F64 {
        return Err(Error::Config("--model writes bf16, f16 or f32".into()));
    }
    if spec.traps != Traps::default() {
        return Err(Error::Config(
            "--zeros, --constant and --shared apply to .npy output, not --model".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let layout = model_layout(spec.params, tensors);
    let tag = match spec.dtype {
        Dtype::BF16 => "BF16",
        Dtype::F16 => "F16",
        _ => "F32",
    };
    let esize = if spec.dtype == Dtype::F32 { 4 } else { 2 };
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape) in &layout {
        let bytes = shape.iter().product::<usize>() * esize;
        header.insert(name.clone(), serde_json::json!({"dtype": tag, "shape": shape, "data_offsets": [offset, offset + bytes]}));
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).map_err(|e| Error::Config(e.to_string()))?;
    text.push_str(&" ".repeat((8 - text.len() % 8) % 8));
    let scales: Vec<Vec<f64>> = layout
        .iter()
        .enumerate()
        .map(|(t, (_, shape))| {
            let sub = SynthSpec {
                params: shape.iter().product(),
                seed: spec.seed ^ (t as u64 + 1),
                scale: spec.scale * (1.0 + t as f64 / 4.0),
                ..spec.clone()
            };
            coord_scales(&sub)
        })
        .collect();
    let digits = spec.samples.saturating_sub(1).to_string().len().max(4);
    for k in 0..spec.samples {
        let path = dir.join(format!("step_{k:0digits$}.safetensors"));
        let tmp = path.with_extension("safetensors.partial");
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 22, file);
        let io = |e| Error::io(&tmp, e);
        w.write_all(&(text.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(text.as_bytes()).map_err(io)?;
        for (t, c) in scales.iter().enumerate() {
            const CHUNK: usize = 1 << 16;
            let mut bytes = Vec::with_capacity(c.len() * esize);
            let mut values = vec![0.0; c.len()];
            values
                .par_chunks_mut(CHUNK)
                .zip(c.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(i, (out, cs))| {
                    row(
                        spec.alpha,
                        cs,
                        spec.seed ^ ((t as u64) << 32) ^ i as u64,
                        k,
                        out,
                    )
                });
            encode(spec.dtype, &values, &mut bytes);
            w.write_all(&bytes).map_err(io)?;
        }
        w.flush().map_err(io)?;
        drop(w);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
