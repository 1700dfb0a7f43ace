//! The pipeline: validate inputs → pass 1 (means) → whole columns (medians, fits; `columns`)
//! → pass 2 (moments, tails, flat blocks) → finish statistics. Two passes because the noise is
//! centred by the per-coordinate mean (or median) before any log or block sum is taken
//! (uncentred data bias α towards 1). The whole-column step needs every sample of a
//! coordinate at once: blocks of whole columns give it for free where the CPU engine reads
//! them anyway; otherwise it is one more read of the tensor, in whole columns.

mod checks;
pub(crate) mod columns;
mod progress;
pub mod structure;

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, FlatSpec, MeanAcc};
use crate::engine::{Backend, StatsJob, TensorAcc};
use crate::error::{Error, Result};
use crate::input::{plan, TensorMeta, TensorSource};
use crate::stats::fits::Fits;
use crate::stats::structure::summary::SpectrumSummary;
use crate::stats::structure::{Centre, Gram};
use crate::stats::{self, tail, CoordTable, Stat, TensorSummary};
pub use checks::{block_size, validate};
use checks::{check_magnitudes, read_centre};
use progress::{group_label, progress_bar, step_name, stream};
use structure::{PowerLawCoord, StructureAcc, StructureOptions};

/// Fewest samples gradtail accepts: block sums need K1 ≥ 2 with at least two blocks.
pub const MIN_SAMPLES: usize = 4;

/// What the noise is measured against.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Center {
    /// The per-coordinate sample mean.
    Mean,
    /// The per-coordinate sample median (numpy's), over the finite samples.
    Median,
    /// The data are already noise.
    None,
    /// Per-coordinate values from an .npy file (e.g. the full-batch gradient).
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub center: Center,
    /// Block-sum length override (`--block`).
    pub block: Option<usize>,
    /// Largest block read at once, in bytes.
    pub block_bytes: usize,
    /// Resident memory to plan for: per-coordinate state of the tensors in flight plus block
    /// buffers. Tensors are processed in groups that fit.
    pub mem_budget: u64,
    pub progress: bool,
    /// Compute the per-coordinate distribution fits (`stats::fits`; `--no-fits` turns off).
    pub fits: bool,
    /// Host threads for the whole-column step (0: every core).
    pub threads: usize,
    /// The covariance spectrum, noise scale and power-law fits (`structure`).
    pub structure: StructureOptions,
}

/// Host bytes per coordinate while its tensor is in flight: pass-1 and pass-2 accumulators,
/// shift and centre, the fits, the iteration-wise power-law fits, |u_k| of the three default
/// dimension-wise power-law samples, and the finished table.
pub const STATE_BYTES_PER_COORD: u64 = (std::mem::size_of::<MeanAcc>()
    + std::mem::size_of::<CoordAcc>()
    + 2 * 8
    + 1
    + std::mem::size_of::<Fits>()
    + std::mem::size_of::<PowerLawCoord>()
    + 3 * 8
    + Stat::ALL.len() * 8) as u64;

/// Blocks alive at once: the one in use, those read ahead, and one being read.
const BLOCKS_IN_FLIGHT: u64 = 4;

/// Fewest coordinates per whole-column block: narrower strips make reads of C-order files
/// too small.
const MIN_STRIP: usize = 256;

/// The moment shift of a coordinate: its mean; for a constant coordinate its value exactly (a
/// summed mean can be an ulp off, which would turn its zeros into ±1e-17 noise).
fn shift_of(m: &MeanAcc) -> f64 {
    match m.n {
        0 => 0.0,
        _ if m.is_constant() => m.min,
        _ => m.mean(),
    }
}

/// Whether a coordinate enters the pooled per-time-block sums: not constant (on the data
/// before centring) and with enough finite samples.
fn pooled(m: &MeanAcc) -> bool {
    stats::pass1_kind(m) == stats::CoordKind::Usable
}

/// Per-coordinate rows kept per tensor for plots once a run is too large to keep them all.
pub const PLOT_SAMPLE: usize = 65_536;

/// A quarter of physical memory (Linux `/proc/meminfo`), or 4 GiB when unknown.
pub fn default_mem_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    total.map_or(4 << 30, |kib| kib * 1024 / 4)
}

/// Splits tensors (by coordinate count) into consecutive groups whose state fits `budget`.
pub fn group_tensors(coords: &[usize], budget: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, &p) in coords.iter().enumerate() {
        let cost = p as u64 * STATE_BYTES_PER_COORD;
        if i > start && used + cost > budget {
            groups.push(start..i);
            start = i;
            used = 0;
        }
        used += cost;
    }
    if start < coords.len() {
        groups.push(start..coords.len());
    }
    groups
}

impl Default for Options {
    fn default() -> Self {
        Options {
            center: Center::Mean,
            block: None,
            block_bytes: 64 << 20,
            mem_budget: default_mem_budget(),
            progress: false,
            fits: true,
            threads: 0,
            structure: StructureOptions::default(),
        }
    }
}

pub struct TensorResult {
    pub meta: TensorMeta,
    pub summary: TensorSummary,
    pub coords: CoordTable,
}

/// The original `main.py` estimate over every tensor concatenated in input order.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    pub alpha_simsekli_flat: f64,
    pub simsekli_m: u64,
    pub coords: usize,
    pub constant_coords: u64,
    pub few_finite_coords: u64,
    pub zero_entries: u64,
    pub nonfinite_samples: u64,
    /// The spectrum of the sum of the tensors' Grams (null when not computed or undefined).
    pub spectrum: Option<SpectrumSummary>,
    /// The noise scale over every coordinate (with a batch size).
    pub noise_scale: Option<f64>,
    /// Why an estimate is null, one sentence each.
    pub notes: Vec<String>,
}

pub struct Analysis {
    pub samples: usize,
    pub block_size: usize,
    /// Tensor groups processed one after the other (1 when everything fit at once).
    pub groups: usize,
    /// True when `TensorResult::coords` holds a strided sample of at most [`PLOT_SAMPLE`]
    /// coordinates per tensor (the full maps are in `coords.safetensors`).
    pub coords_sampled: bool,
    /// Input bytes read from the sources: once per tensor read in whole columns (both passes
    /// from one read), otherwise once per pass and, when the fits or the median need it, once
    /// more in whole columns.
    pub bytes_read: u64,
    pub tensors: Vec<TensorResult>,
    pub model: ModelSummary,
}

/// Runs `run` on `backend`; when the device fails mid-run (`Error::GpuFault`: lost, or out of
/// memory) and a `fallback` engine can be made, logs a warning and runs it again, from the
/// start, on the fallback (`--backend auto` falls back to the CPU engine). `backend` is left
/// holding the engine that produced the result.
pub fn with_fallback<T>(
    backend: &mut Box<dyn Backend>,
    fallback: Option<&dyn Fn() -> Result<Box<dyn Backend>>>,
    mut run: impl FnMut(&mut dyn Backend) -> Result<T>,
) -> Result<T> {
    match (run(backend.as_mut()), fallback) {
        (Err(Error::GpuFault(why)), Some(make)) => {
            tracing::warn!(
                "the GPU failed mid-run ({why}); running the analysis again on the CPU engine"
            );
            *backend = make()?;
            run(backend.as_mut())
        }
        (result, _) => result,
    }
}

/// Runs both passes over `sources` on `backend` and finishes every statistic.
pub fn analyze(
    sources: &[Box<dyn TensorSource>],
    opts: &Options,
    backend: &mut dyn Backend,
) -> Result<Analysis> {
    analyze_with(sources, opts, backend, &mut |_| Ok(()))
}

/// As [`analyze`], handing each finished tensor to `sink` (which writes its maps) before its
/// per-coordinate table is reduced to a plotting sample, when memory requires it.
pub fn analyze_with(
    sources: &[Box<dyn TensorSource>],
    opts: &Options,
    backend: &mut dyn Backend,
    sink: &mut dyn FnMut(&TensorResult) -> Result<()>,
) -> Result<Analysis> {
    let samples = validate(sources)?;
    let k1 = block_size(samples, opts.block)?;
    let block_rows = k1 * (samples / k1);
    let coords: Vec<usize> = sources.iter().map(|s| s.meta().coords()).collect();
    let total: usize = coords.iter().sum();
    let centre_file = match &opts.center {
        Center::File(p) => Some(read_centre(p, total)?),
        _ => None,
    };
    let state_budget = opts
        .mem_budget
        .saturating_sub(BLOCKS_IN_FLIGHT * opts.block_bytes as u64);
    for (s, &p) in sources.iter().zip(&coords) {
        let need = p as u64 * STATE_BYTES_PER_COORD;
        if need > state_budget {
            let m = s.meta();
            return Err(Error::unusable(
                &m.path,
                Some(&m.name),
                format!(
                    "needs {:.1} GiB of per-coordinate state but --mem-budget leaves {:.1} GiB; raise --mem-budget",
                    need as f64 / (1u64 << 30) as f64,
                    state_budget as f64 / (1u64 << 30) as f64
                ),
            ));
        }
    }
    let groups = group_tensors(&coords, state_budget);
    let coords_sampled = (total as u64) * STATE_BYTES_PER_COORD > state_budget;
    tracing::info!(
        groups = groups.len(),
        budget = opts.mem_budget,
        "planned tensor groups"
    );
    // Whole columns (all K rows of a strip of coordinates) when a strip of at least
    // MIN_STRIP columns fits a block; then, for engines that take blocks one call at a time,
    // each block is read once for both passes (`whole`).
    let columns: Vec<bool> = sources
        .iter()
        .map(|s| {
            s.is_fortran()
                || samples * s.meta().dtype.size().max(4) * MIN_STRIP.min(s.meta().coords())
                    <= opts.block_bytes
        })
        .collect();
    let whole: Vec<bool> = columns
        .iter()
        .map(|&c| c && backend.single_read())
        .collect();
    // The whole-column step (medians for `--center median`, the fits): inside the one read
    // of a tensor read in whole columns; one more read, in whole columns, otherwise.
    let median = opts.center == Center::Median;
    let so = &opts.structure;
    let dim_samples = if so.powerlaw {
        so.samples(samples).map_err(Error::Config)?
    } else {
        Vec::new()
    };
    let column_step = median || opts.fits || so.any();
    // Bytes to read: once per tensor read in whole columns, once per pass otherwise, plus
    // the extra whole-column read.
    let bytes: u64 = sources
        .iter()
        .zip(&whole)
        .map(|(s, &w)| {
            (s.meta().samples * s.meta().coords() * s.meta().dtype.size()) as u64
                * match (w, column_step) {
                    (true, _) => 1,
                    (false, false) => 2,
                    (false, true) => 3,
                }
        })
        .sum();
    let pb = progress_bar(bytes, opts.progress);
    let plan_of = |s: &dyn TensorSource, whole_columns: bool| {
        let m = s.meta();
        plan::blocks(
            samples,
            m.coords(),
            k1,
            m.dtype.size().max(4),
            opts.block_bytes,
            whole_columns,
        )
    };
    let plans: Vec<_> = sources
        .iter()
        .zip(&columns)
        .map(|(s, &w)| plan_of(s.as_ref(), w))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("gradtail-columns-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start {} threads: {e}", opts.threads)))?;
    let bases: Vec<usize> = coords
        .iter()
        .scan(0, |acc, &p| {
            let b = *acc;
            *acc += p;
            Some(b)
        })
        .collect();

    let n_model = (samples * total) as u64;
    let m_model = tail::largest_divisor_below_sqrt(n_model);
    let mut model = FlatAcc::new((n_model / m_model) as usize);
    // The covariance is about the sample mean unless the noise is given exactly (a centre
    // file, or data that are noise already).
    let cov_centre = match opts.center {
        Center::Mean | Center::Median => Centre::SampleMean,
        Center::File(_) | Center::None => Centre::Exact,
    };
    let mut model_gram = so.spectrum.then(|| Gram::new(samples));
    let (mut model_sum_sq, mut model_mean_sq) = (0.0, 0.0);
    let mut results = Vec::with_capacity(sources.len());
    for (g, group) in groups.iter().enumerate() {
        // Pass 1 (means and ranges) for tensors read in row chunks; tensors read as whole
        // columns get both passes from one read of each block, below.
        pb.set_message(format!("{}pass 1/2", group_label(g, groups.len())));
        let mut means: Vec<Option<Vec<MeanAcc>>> = Vec::with_capacity(group.len());
        for i in group.clone() {
            if whole[i] {
                means.push(None);
                continue;
            }
            let s = &sources[i];
            let mut acc = vec![MeanAcc::default(); coords[i]];
            stream(s.as_ref(), &plans[i], &pb, |blocks| {
                backend.coord_mean(blocks, &mut acc)
            })?;
            tracing::debug!(tensor = %s.meta().name, "pass 1 done");
            means.push(Some(acc));
        }
        let pass2 = if group.clone().all(|i| whole[i]) {
            "both passes"
        } else {
            "pass 2/2"
        };
        pb.set_message(format!("{}{pass2}", group_label(g, groups.len())));
        for (i, mean) in group.clone().zip(means) {
            let (s, base, p) = (&sources[i], bases[i], coords[i]);
            let meta = s.meta();
            let n_tensor = (samples * p) as u64;
            let m_tensor = tail::largest_divisor_below_sqrt(n_tensor);
            let job = StatsJob {
                k1,
                used_rows: block_rows,
                shift: &[],
                centre: &[],
                pool: &[],
                flat_tensor: FlatSpec {
                    stride: p as u64,
                    base: 0,
                    m: m_tensor,
                },
                flat_model: FlatSpec {
                    stride: total as u64,
                    base: base as u64,
                    m: m_model,
                },
            };
            let mut acc = TensorAcc {
                coords: vec![CoordAcc::default(); p],
                flat: FlatAcc::new((n_tensor / m_tensor) as usize),
                blocks: vec![BlockSums::default(); block_rows / k1],
            };
            let mut centre = match (&opts.center, &centre_file) {
                (Center::File(_), Some(c)) => c[base..base + p].to_vec(),
                _ => vec![0.0; p],
            };
            let centre_is_mean = opts.center == Center::Mean;
            let mut fits = opts.fits.then(|| vec![Fits::NAN; p]);
            let mut sacc = StructureAcc::new(samples, p, so.spectrum, &dim_samples);
            let mut pl_coords = so.powerlaw_coords.then(|| vec![PowerLawCoord::NAN; p]);
            let structure_err = |e: stats::structure::StructureError| {
                Error::unusable(&meta.path, Some(&meta.name), e.to_string())
            };
            let (mean, shift) = match mean {
                // The whole-column step, then pass 2: moments about the mean, tails about the
                // centre, flat blocks.
                Some(mean) => {
                    check_magnitudes(backend, meta, &mean)?;
                    let shift: Vec<f64> = mean.iter().map(shift_of).collect();
                    let pool_mask: Vec<bool> = mean.iter().map(pooled).collect();
                    if centre_is_mean {
                        centre.copy_from_slice(&shift);
                    }
                    if column_step {
                        pb.set_message(format!(
                            "{}{} read",
                            group_label(g, groups.len()),
                            step_name(median, opts.fits)
                        ));
                        let plan = if columns[i] {
                            plans[i].clone()
                        } else {
                            plan_of(s.as_ref(), true)
                        };
                        stream(s.as_ref(), &plan, &pb, |blocks| {
                            for block in blocks {
                                let (fits, block) = (fits.as_deref_mut(), &block?);
                                if median || opts.fits {
                                    columns::run(
                                        block,
                                        &pool_mask,
                                        median,
                                        &mut centre,
                                        fits,
                                        &pool,
                                    );
                                }
                                if so.any() {
                                    let gc = if cov_centre == Centre::Exact {
                                        &centre
                                    } else {
                                        &shift
                                    };
                                    structure::run(
                                        block,
                                        gc,
                                        &centre,
                                        &pool_mask,
                                        &mut sacc,
                                        so.batch_size.is_some(),
                                        pl_coords.as_deref_mut(),
                                        so.exact_max_n,
                                        &pool,
                                    )
                                    .map_err(structure_err)?;
                                }
                            }
                            Ok(())
                        })?;
                        pb.set_message(format!("{}{pass2}", group_label(g, groups.len())));
                    }
                    stream(s.as_ref(), &plans[i], &pb, |blocks| {
                        backend.coord_stats(
                            &job.with(&shift, &centre, &pool_mask),
                            blocks,
                            &mut acc,
                            &mut model,
                        )
                    })?;
                    (mean, shift)
                }
                // One read: each block of whole columns gets pass 1, the whole-column step,
                // then pass 2.
                None => {
                    let mut mean = vec![MeanAcc::default(); p];
                    let mut shift = vec![0.0; p];
                    let mut pool_mask = vec![false; p];
                    stream(s.as_ref(), &plans[i], &pb, |blocks| {
                        for block in blocks {
                            let block = block?;
                            let cols = block.cols.clone();
                            backend
                                .coord_mean(&mut std::iter::once(Ok(block.share())), &mut mean)?;
                            check_magnitudes(backend, meta, &mean[cols.clone()])?;
                            for j in cols.clone() {
                                shift[j] = shift_of(&mean[j]);
                                pool_mask[j] = pooled(&mean[j]);
                                if centre_is_mean {
                                    centre[j] = shift[j];
                                }
                            }
                            if median || opts.fits {
                                let fits = fits.as_deref_mut();
                                columns::run(&block, &pool_mask, median, &mut centre, fits, &pool);
                            }
                            if so.any() {
                                let gc = if cov_centre == Centre::Exact {
                                    &centre
                                } else {
                                    &shift
                                };
                                structure::run(
                                    &block,
                                    gc,
                                    &centre,
                                    &pool_mask,
                                    &mut sacc,
                                    so.batch_size.is_some(),
                                    pl_coords.as_deref_mut(),
                                    so.exact_max_n,
                                    &pool,
                                )
                                .map_err(structure_err)?;
                            }
                            backend.coord_stats(
                                &job.with(&shift, &centre, &pool_mask),
                                &mut std::iter::once(Ok(block)),
                                &mut acc,
                                &mut model,
                            )?;
                        }
                        Ok(())
                    })?;
                    (mean, shift)
                }
            };
            let (mut summary, mut coords) = stats::finish_tensor(
                &meta.name,
                &meta.shape,
                &mean,
                &shift,
                &acc,
                fits,
                k1,
                block_rows,
                m_tensor,
            );
            // |ḡ|² of the noise scale: the sample mean's, or the exact centre's.
            let mean_sq: structure::MeanSqNorm = match opts.center {
                Center::None => Err("the data were taken as noise (--center none), so the mean gradient is unknown; give the full-batch gradient with --center FILE".into()),
                Center::File(_) => Ok(centre.iter().map(|c| c * c).sum()),
                _ => Ok(shift.iter().map(|c| c * c).sum()),
            };
            if let Ok(g2) = &mean_sq {
                model_mean_sq += g2;
            }
            model_sum_sq += sacc.sum_sq;
            if let (Some(m), Some(g)) = (model_gram.as_mut(), sacc.gram.as_ref()) {
                m.combine(g).map_err(structure_err)?;
            }
            summary.structure = structure::finish(
                &sacc,
                pl_coords.as_deref(),
                &mean_sq,
                samples,
                cov_centre,
                so,
                &mut summary.notes,
            );
            if let Some(pl) = &pl_coords {
                for (i, col) in pl_columns(pl).into_iter().enumerate() {
                    debug_assert_eq!(Stat::POWERLAW[i].index(), Stat::ALL.len() - 3 + i);
                    coords.columns.push(col);
                }
            }
            tracing::info!(tensor = %meta.name, alpha_time_blocked = summary.alpha_time_blocked, "tensor done");
            let mut result = TensorResult {
                meta: meta.clone(),
                summary,
                coords,
            };
            sink(&result)?;
            if coords_sampled {
                result.coords = result.coords.sample(PLOT_SAMPLE);
            }
            results.push(result);
        }
    }
    pb.finish_and_clear();

    let constant_coords = results.iter().map(|r| r.summary.constant_coords).sum();
    let few_finite_coords = results.iter().map(|r| r.summary.few_finite_coords).sum();
    let mut notes = Vec::new();
    // With no usable coordinate the centred entries are zeros or rounding residue, and the
    // original estimator would divide by that residue.
    let alpha_simsekli_flat = if constant_coords + few_finite_coords == total as u64 {
        notes.push(
            "alpha_simsekli_flat: every coordinate is constant or has too few finite samples"
                .into(),
        );
        f64::NAN
    } else {
        if m_model < 2 {
            notes.push("alpha_simsekli_flat: the number of entries K·P is prime, so the original estimator has no block length".into());
        }
        tail::simsekli_flat(m_model, &model.blocks, model.lx, model.n)
    };
    let spectrum = model_gram
        .as_ref()
        .and_then(|g| structure::spectrum_of(g, cov_centre, &mut notes));
    let mean_sq: structure::MeanSqNorm = match opts.center {
        Center::None => Err("the data were taken as noise (--center none), so the mean gradient is unknown; give the full-batch gradient with --center FILE".into()),
        _ => Ok(model_mean_sq),
    };
    let noise_scale =
        structure::noise_scale_of(so, model_sum_sq, &mean_sq, samples, cov_centre, &mut notes);
    let model = ModelSummary {
        alpha_simsekli_flat,
        simsekli_m: m_model,
        coords: total,
        constant_coords,
        few_finite_coords,
        zero_entries: results.iter().map(|r| r.summary.zero_entries).sum(),
        nonfinite_samples: results.iter().map(|r| r.summary.nonfinite_samples).sum(),
        spectrum,
        noise_scale,
        notes,
    };
    Ok(Analysis {
        samples,
        block_size: k1,
        groups: groups.len(),
        coords_sampled,
        bytes_read: bytes,
        tensors: results,
        model,
    })
}

/// The [`Stat::POWERLAW`] columns of a tensor's coordinate fits.
fn pl_columns(pl: &[PowerLawCoord]) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    for c in pl {
        for (col, v) in out.iter_mut().zip(c.to_array()) {
            col.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_fit_the_budget() {
        let per = STATE_BYTES_PER_COORD;
        assert_eq!(group_tensors(&[10, 10, 10], 1000 * per), vec![0..3]);
        assert_eq!(group_tensors(&[10, 10, 10], 20 * per), vec![0..2, 2..3]);
        assert_eq!(
            group_tensors(&[10, 10, 10], 10 * per),
            vec![0..1, 1..2, 2..3]
        );
    }
}
