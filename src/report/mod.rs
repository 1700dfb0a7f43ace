//! Reports: `summary.json` (versioned schema), `tensors.csv` (one row per tensor),
//! `coords.safetensors` (per-coordinate maps), `spectrum.safetensors` (every eigenvalue) and
//! the terminal table. Outputs are written
//! into a staging folder and moved into place only once all of them are complete.

mod coords;
pub mod html;
mod table;

pub use coords::CoordsWriter;
pub use table::print_table;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analyze::structure::StructureOptions;
use crate::analyze::{Analysis, Center, ModelSummary};
use crate::engine::EngineInfo;
use crate::error::{Error, Result};
use crate::input::{Skipped, TensorMeta};
use crate::stats::TensorSummary;

/// Version tag of `summary.json`; bump on any incompatible change (README "Output schema").
pub const SUMMARY_SCHEMA: &str = "gradtail.summary/3";

#[derive(Serialize)]
struct Options<'a> {
    center: &'a Center,
    block: Option<usize>,
    backend: &'a str,
    /// Whether the per-coordinate fits were computed (`--no-fits` turns them off).
    fits: bool,
    /// What of the spectrum, noise scale and power-law fits was computed.
    structure: &'a StructureOptions,
}

#[derive(Serialize)]
struct Summary<'a> {
    schema: &'static str,
    gradtail_version: &'static str,
    inputs: Vec<&'a TensorMeta>,
    samples: usize,
    coords: usize,
    block_size: usize,
    groups: usize,
    options: Options<'a>,
    engine: &'a EngineInfo,
    elapsed_s: f64,
    tensors: Vec<&'a TensorSummary>,
    model: &'a ModelSummary,
    skipped_tensors: &'a [Skipped],
    skipped_files: &'a [Skipped],
}

/// Everything a run writes.
pub struct RunReport<'a> {
    pub analysis: &'a Analysis,
    pub engine: &'a EngineInfo,
    pub center: &'a Center,
    pub block: Option<usize>,
    pub backend: &'a str,
    pub fits: bool,
    pub structure: &'a StructureOptions,
    pub elapsed_s: f64,
    pub skipped: &'a [Skipped],
    pub bad_files: &'a [Skipped],
}

impl RunReport<'_> {
    pub fn summary_json(&self) -> Result<String> {
        let a = self.analysis;
        let s = Summary {
            schema: SUMMARY_SCHEMA,
            gradtail_version: env!("CARGO_PKG_VERSION"),
            inputs: a.tensors.iter().map(|t| &t.meta).collect(),
            samples: a.samples,
            coords: a.model.coords,
            block_size: a.block_size,
            groups: a.groups,
            options: Options {
                center: self.center,
                block: self.block,
                backend: self.backend,
                fits: self.fits,
                structure: self.structure,
            },
            engine: self.engine,
            elapsed_s: self.elapsed_s,
            tensors: a.tensors.iter().map(|t| &t.summary).collect(),
            model: &a.model,
            skipped_tensors: self.skipped,
            skipped_files: self.bad_files,
        };
        serde_json::to_string_pretty(&s)
            .map_err(|e| Error::Config(format!("cannot encode summary: {e}")))
    }

    /// Writes the summary, the CSV and the HTML report into `staging` (the per-coordinate
    /// maps were written there while the analysis ran).
    pub fn write(&self, staging: &Staging) -> Result<()> {
        let dir = staging.path();
        let io = |e| Error::io(dir, e);
        let json = self.summary_json()?;
        fs::write(dir.join("summary.json"), json + "\n").map_err(io)?;
        fs::write(dir.join("tensors.csv"), tensors_csv(self.analysis)).map_err(io)?;
        if self.structure.spectrum {
            let path = dir.join("spectrum.safetensors");
            fs::write(&path, spectrum_safetensors(self.analysis)?)
                .map_err(|e| Error::io(&path, e))?;
        }
        html::write(dir, self)?;
        Ok(())
    }
}

/// A folder beside `--out` that collects a run's outputs; they move into `--out` only on
/// [`Staging::publish`], and the folder is removed whatever happens.
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
}

impl Staging {
    pub fn new(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let dir = out.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        // Named by --out: the staging folder beside it is ours, not the user's.
        fs::create_dir_all(&dir).map_err(|e| Error::io(out, e))?;
        crate::input::bus::unpublished(Some(&dir));
        Ok(Staging {
            dir,
            out: out.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Moves the finished files into `--out` (created if needed).
    pub fn publish(self) -> Result<()> {
        let (staging, dir) = (&self.dir, &self.out);
        if !dir.exists() && fs::rename(staging, dir).is_ok() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for entry in fs::read_dir(staging).map_err(|e| Error::io(staging, e))? {
            let entry = entry.map_err(|e| Error::io(staging, e))?;
            let to = dir.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| Error::io(&to, e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        crate::input::bus::unpublished(None);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One sentence on the centring a run used and the bias it is known to carry (simulated for
/// SαS data, pooled time-blocked α; Simsekli et al.'s definition of the noise is the
/// full-batch gradient).
pub fn centre_note(c: &Center) -> String {
    match c {
        Center::Mean => "centre: the per-coordinate sample mean. For heavy tails it biases the pooled α low (SαS 1.5 reads about 1.46 and 1.2 about 1.15 at K = 512); centre on the full-batch gradient (--center FILE) where you have it, or on the median (--center median) for symmetric noise.".into(),
        Center::Median => "centre: the per-coordinate median: nearly unbiased for symmetric heavy tails (SαS 1.5 reads 1.50 at K = 512 where the mean reads about 1.46); for skewed noise the median is not the mean and the offset biases α towards 1.".into(),
        Center::None => "centre: none, the data are taken to be noise already. Data with a nonzero location bias α towards 1.".into(),
        Center::File(p) => format!("centre: the per-coordinate values in {} (e.g. the full-batch gradient), the exact definition of the noise: no centring bias.", p.display()),
    }
}

/// A tensor shape as `64x64` (empty for a scalar).
pub fn shape_label(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// A float in `tensors.csv`: NaN and ±∞ as `nan`, `inf`, `-inf` (pandas reads them), else
/// the shortest text that reads back to the same f64.
struct CsvF64(f64);

impl Serialize for CsvF64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("nan")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "inf" } else { "-inf" })
        } else {
            s.serialize_str(&format!("{v}"))
        }
    }
}

/// One row of `tensors.csv`: the per-tensor fields of `summary.json`, with the quantile
/// objects and the interval spread over columns. The header is these field names.
#[derive(Serialize)]
struct CsvRow<'a> {
    name: &'a str,
    shape: String,
    coords: usize,
    block_size: usize,
    alpha_time_blocked: CsvF64,
    alpha_time_blocked_se: CsvF64,
    alpha_time_blocked_ci_low: CsvF64,
    alpha_time_blocked_ci_high: CsvF64,
    alpha_time_blocked_se_iid: CsvF64,
    alpha_simsekli_flat: CsvF64,
    simsekli_m: u64,
    alpha_block_q05: CsvF64,
    alpha_block_q25: CsvF64,
    alpha_block_q50: CsvF64,
    alpha_block_q75: CsvF64,
    alpha_block_q95: CsvF64,
    alpha_logm_q05: CsvF64,
    alpha_logm_q25: CsvF64,
    alpha_logm_q50: CsvF64,
    alpha_logm_q75: CsvF64,
    alpha_logm_q95: CsvF64,
    jb_reject_frac: CsvF64,
    k2_reject_frac: CsvF64,
    alpha_mcculloch_q05: CsvF64,
    alpha_mcculloch_q25: CsvF64,
    alpha_mcculloch_q50: CsvF64,
    alpha_mcculloch_q75: CsvF64,
    alpha_mcculloch_q95: CsvF64,
    alpha_mcculloch_below_1_9_frac: CsvF64,
    /// Empty without fits.
    mcculloch_degenerate: Option<u64>,
    stable_beats_gauss_frac: CsvF64,
    ad_reject_frac: CsvF64,
    top1_share_median: CsvF64,
    constant_coords: u64,
    few_finite_coords: u64,
    logm_clamped_coords: u64,
    zero_entries: u64,
    nonfinite_samples: u64,
    dropped_blocks: u64,
    spectrum_slope: CsvF64,
    spectrum_r2: CsvF64,
    spectrum_trace: CsvF64,
    spectrum_effective_rank: CsvF64,
    /// The largest eigenvalue of the covariance.
    spectrum_lambda1: CsvF64,
    noise_scale: CsvF64,
    /// The dimension-wise fit of the first sample fitted (sample 0 by default).
    powerlaw_dim_sample: Option<usize>,
    powerlaw_dim_alpha: CsvF64,
    powerlaw_dim_xmin: CsvF64,
    powerlaw_dim_n_tail: Option<usize>,
    powerlaw_dim_lr_lognormal_r: CsvF64,
    powerlaw_dim_lr_exponential_r: CsvF64,
    powerlaw_iter_ks_pass_frac: CsvF64,
    powerlaw_iter_alpha_median: CsvF64,
}

impl<'a> CsvRow<'a> {
    fn of(s: &'a TensorSummary) -> Self {
        let (b, l) = (&s.alpha_block_quantiles, &s.alpha_logm_quantiles);
        let (f, m) = (&s.fits, &s.fits.alpha_mcculloch_quantiles);
        let st = &s.structure;
        let sp = |get: fn(&crate::stats::structure::summary::SpectrumSummary) -> f64| {
            CsvF64(st.spectrum.as_ref().map_or(f64::NAN, get))
        };
        let dim = st.powerlaw_dimension.as_ref().and_then(|d| d.first());
        let it = st.powerlaw_iteration.as_ref();
        let nan = f64::NAN;
        CsvRow {
            name: &s.name,
            shape: shape_label(&s.shape),
            coords: s.coords,
            block_size: s.block_size,
            alpha_time_blocked: CsvF64(s.alpha_time_blocked),
            alpha_time_blocked_se: CsvF64(s.alpha_time_blocked_se),
            alpha_time_blocked_ci_low: CsvF64(s.alpha_time_blocked_ci[0]),
            alpha_time_blocked_ci_high: CsvF64(s.alpha_time_blocked_ci[1]),
            alpha_time_blocked_se_iid: CsvF64(s.alpha_time_blocked_se_iid),
            alpha_simsekli_flat: CsvF64(s.alpha_simsekli_flat),
            simsekli_m: s.simsekli_m,
            alpha_block_q05: CsvF64(b.q05),
            alpha_block_q25: CsvF64(b.q25),
            alpha_block_q50: CsvF64(b.q50),
            alpha_block_q75: CsvF64(b.q75),
            alpha_block_q95: CsvF64(b.q95),
            alpha_logm_q05: CsvF64(l.q05),
            alpha_logm_q25: CsvF64(l.q25),
            alpha_logm_q50: CsvF64(l.q50),
            alpha_logm_q75: CsvF64(l.q75),
            alpha_logm_q95: CsvF64(l.q95),
            jb_reject_frac: CsvF64(s.jb_reject_frac),
            k2_reject_frac: CsvF64(s.k2_reject_frac),
            alpha_mcculloch_q05: CsvF64(m.q05),
            alpha_mcculloch_q25: CsvF64(m.q25),
            alpha_mcculloch_q50: CsvF64(m.q50),
            alpha_mcculloch_q75: CsvF64(m.q75),
            alpha_mcculloch_q95: CsvF64(m.q95),
            alpha_mcculloch_below_1_9_frac: CsvF64(f.alpha_mcculloch_below_1_9_frac),
            mcculloch_degenerate: f.mcculloch_degenerate,
            stable_beats_gauss_frac: CsvF64(f.stable_beats_gauss_frac),
            ad_reject_frac: CsvF64(f.ad_reject_frac),
            top1_share_median: CsvF64(f.top1_share_median),
            constant_coords: s.constant_coords,
            few_finite_coords: s.few_finite_coords,
            logm_clamped_coords: s.logm_clamped_coords,
            zero_entries: s.zero_entries,
            nonfinite_samples: s.nonfinite_samples,
            dropped_blocks: s.dropped_blocks,
            spectrum_slope: sp(|s| s.slope),
            spectrum_r2: sp(|s| s.r2),
            spectrum_trace: sp(|s| s.trace),
            spectrum_effective_rank: sp(|s| s.effective_rank),
            spectrum_lambda1: sp(|s| s.eigenvalues.first().copied().unwrap_or(f64::NAN)),
            noise_scale: CsvF64(st.noise_scale.unwrap_or(nan)),
            powerlaw_dim_sample: dim.map(|d| d.sample),
            powerlaw_dim_alpha: CsvF64(dim.map_or(nan, |d| d.alpha)),
            powerlaw_dim_xmin: CsvF64(dim.map_or(nan, |d| d.xmin)),
            powerlaw_dim_n_tail: dim.and_then(|d| d.n_tail),
            powerlaw_dim_lr_lognormal_r: CsvF64(
                dim.and_then(|d| d.lr_lognormal).map_or(nan, |l| l.r),
            ),
            powerlaw_dim_lr_exponential_r: CsvF64(
                dim.and_then(|d| d.lr_exponential).map_or(nan, |l| l.r),
            ),
            powerlaw_iter_ks_pass_frac: CsvF64(it.map_or(nan, |i| i.ks_pass_frac)),
            powerlaw_iter_alpha_median: CsvF64(it.map_or(nan, |i| i.alpha_median)),
        }
    }
}

/// `spectrum.safetensors`: every eigenvalue of each tensor's covariance (`<tensor>/eigenvalues`)
/// and of the model's (`model/eigenvalues`), descending, f64; spectra that are undefined are
/// absent (their reason is in `summary.json`).
pub fn spectrum_safetensors(a: &Analysis) -> Result<Vec<u8>> {
    let spectra = a
        .tensors
        .iter()
        .map(|t| (t.summary.name.as_str(), &t.summary.structure.spectrum))
        .chain(std::iter::once(("model", &a.model.spectrum)));
    let mut bytes: Vec<(String, Vec<u8>, usize)> = Vec::new();
    for (name, s) in spectra {
        if let Some(s) = s {
            let data = s.all.iter().flat_map(|v| v.to_le_bytes()).collect();
            bytes.push((format!("{name}/eigenvalues"), data, s.all.len()));
        }
    }
    let views = bytes
        .iter()
        .map(|(name, data, n)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![*n], data)
                .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("cannot encode the eigenvalues: {e}")))?;
    let meta = std::collections::HashMap::from([
        ("schema".to_owned(), "gradtail.spectrum/1".to_owned()),
        (
            "gradtail_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::Config(format!("cannot encode the eigenvalues: {e}")))
        .and_then(sorted_header)
}

/// safetensors takes its metadata as a `HashMap`, whose order changes from run to run: the
/// header is rewritten with every key sorted (serde_json's map is ordered), to the same length,
/// so the same analysis writes the same bytes.
fn sorted_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |e: String| Error::Config(format!("cannot encode the eigenvalues: {e}"));
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(e.to_string()))?;
    let mut text = serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?;
    if text.len() > n {
        return Err(bad("the sorted header is longer".into()));
    }
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    text.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&text);
    Ok(bytes)
}

/// `tensors.csv`: one row per tensor (the `csv` crate quotes names that need it).
pub fn tensors_csv(a: &Analysis) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for t in &a.tensors {
        w.serialize(CsvRow::of(&t.summary))
            .expect("serialising to memory cannot fail");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8 fields")
}
