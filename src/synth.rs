//! `gradtail synth`: symmetric α-stable data written straight to an `.npy` file, row chunk by
//! row chunk, so K·P may exceed memory. Each row has its own seeded generator, so the output
//! depends on the seed only, not on the number of threads.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::SeedableRng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::input::npy;
use crate::stats::sas;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthDtype {
    F16,
    F32,
    F64,
}

#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub alpha: f64,
    pub samples: usize,
    pub params: usize,
    pub scale: f64,
    pub seed: u64,
    pub dtype: SynthDtype,
    /// Standard deviation of ln c_j across coordinates: each coordinate j gets scale
    /// c·exp(s·z_j), z_j ~ N(0, 1), the heterogeneity that biases flat pooling (spec §0.2).
    pub log_scale_sd: f64,
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
            SynthDtype::F16 => "<f2",
            SynthDtype::F32 => "<f4",
            SynthDtype::F64 => "<f8",
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
                .for_each(|(i, out)| row(spec.alpha, &scales, spec.seed, r0 + i, out));
            let bytes: Vec<u8> = match spec.dtype {
                SynthDtype::F16 => buf
                    .iter()
                    .flat_map(|&v| half::f16::from_f64(v).to_le_bytes())
                    .collect(),
                SynthDtype::F32 => buf.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
                SynthDtype::F64 => buf.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            };
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
