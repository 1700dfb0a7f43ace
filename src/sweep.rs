//! `gradtail sweep`: the same model at the same weights, sampled at several batch sizes B from a
//! dataset of N examples, and how its noise scales with B — the finite-variance reading
//! (trace ∝ (N − B)/(B(N − 1)), Ziyin et al. 2022; kurtosis ∝ 1/B, Wu et al. 2021) beside the
//! α-stable one (a robust scale ∝ B^(1/α − 1), Simsekli et al. 2019).
//!
//! Each input is analysed as `analyze` would (`crate::analyze`), which gives per batch size the
//! pooled α, the per-coordinate McCulloch α, variance and excess kurtosis. The interquartile
//! ranges need all K samples of a coordinate at once, so each tensor is read once more in
//! whole columns into a [`BatchColumns`]. The slopes are `stats::structure::sweep::slopes`.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::analyze::{self, Analysis, Center, Options};
use crate::engine::{Backend, EngineInfo};
use crate::error::{Error, Result};
use crate::input::{self, plan, Inputs, Select, TensorSource};
use crate::report::shape_label;
use crate::stats::structure::numpy::median;
use crate::stats::structure::sweep::{slopes, BatchColumns, SweepPoint};
use crate::stats::Stat;

/// Version tag of `sweep.json`; bump on any incompatible change (README "gradtail sweep").
pub const SWEEP_SCHEMA: &str = "gradtail.sweep/1";

/// Columns per task of the interquartile-range step: enough to amortise a task, few enough to
/// spread a narrow strip over every thread.
const IQR_TASK_COLS: usize = 32;

/// One command-line input: `BATCH:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labelled {
    pub batch: u64,
    pub path: PathBuf,
}

impl Labelled {
    /// The label as the user wrote it, for messages.
    pub fn label(&self) -> String {
        format!("{}:{}", self.batch, self.path.display())
    }
}

/// Parses `BATCH:PATH` (the batch size a positive integer, split at the first colon).
pub fn parse_label(arg: &str) -> Result<Labelled> {
    let bad = |why: &str| {
        Err(Error::Config(format!(
            "sweep input '{arg}': {why}; write each input as BATCH:PATH, e.g. 32:grads_b32.npz"
        )))
    };
    let Some((b, path)) = arg.split_once(':') else {
        return bad("no batch size");
    };
    let batch = match b.trim().parse::<u64>() {
        Ok(0) => return bad("the batch size must be at least 1"),
        Ok(v) => v,
        Err(_) => return bad(&format!("'{b}' is not a whole number")),
    };
    if path.is_empty() {
        return bad("no path after the batch size");
    }
    Ok(Labelled {
        batch,
        path: PathBuf::from(path),
    })
}

/// The checks that need no file: two or more batch sizes, each once, each in [1, N).
pub fn check_batches(inputs: &[Labelled], dataset_size: u64) -> Result<()> {
    if inputs.len() < 2 {
        let only = inputs.first().map(Labelled::label).unwrap_or_default();
        return Err(Error::Config(format!(
            "sweep input {only}: a sweep needs snapshots at two or more batch sizes; add BATCH:PATH inputs taken at the same weights"
        )));
    }
    for (i, a) in inputs.iter().enumerate() {
        if let Some(b) = inputs[..i].iter().find(|b| b.batch == a.batch) {
            return Err(Error::Config(format!(
                "sweep inputs {} and {} have the same batch size: give each batch size once",
                b.label(),
                a.label()
            )));
        }
        if a.batch >= dataset_size {
            return Err(Error::Config(format!(
                "sweep input {}: batch size {} is not below --dataset-size {dataset_size}; a minibatch drawn without replacement has B < N (check --dataset-size)",
                a.label(),
                a.batch
            )));
        }
    }
    Ok(())
}

/// One batch size's opened input.
pub struct SweepInput {
    pub batch: u64,
    pub path: PathBuf,
    pub inputs: Inputs,
}

impl SweepInput {
    fn label(&self) -> String {
        format!("{}:{}", self.batch, self.path.display())
    }
}

/// Opens each input as `analyze` opens one argument, checks each as `analyze` would, and
/// checks that all hold the same tensors (names and shapes).
pub fn open(labelled: &[Labelled], select: &Select, skip_bad: bool) -> Result<Vec<SweepInput>> {
    let opened = labelled
        .iter()
        .map(|l| {
            let inputs = input::open_all(std::slice::from_ref(&l.path), select, skip_bad)?;
            // `analyze`'s own checks (K ≥ 4, P > 0, one K per input), before any is read.
            analyze::validate(&inputs.sources)?;
            Ok(SweepInput {
                batch: l.batch,
                path: l.path.clone(),
                inputs,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_tensors(&opened)?;
    Ok(opened)
}

/// Every input must hold the first input's tensors, by name, with the same shapes.
fn check_tensors(inputs: &[SweepInput]) -> Result<()> {
    let Some((first, rest)) = inputs.split_first() else {
        return Ok(());
    };
    let find = |i: &SweepInput, name: &str| {
        i.inputs
            .sources
            .iter()
            .find(|s| s.meta().name == name)
            .map(|s| s.meta().shape.clone())
    };
    for other in rest {
        for (a, b) in [(first, other), (other, first)] {
            for s in &a.inputs.sources {
                let m = s.meta();
                match find(b, &m.name) {
                    None => {
                        return Err(Error::unusable(
                            &a.path,
                            Some(&m.name),
                            format!(
                                "not in sweep input {}: every batch size must hold the same tensors (use --include/--exclude to pick the common ones)",
                                b.label()
                            ),
                        ))
                    }
                    Some(shape) if shape != m.shape => {
                        return Err(Error::unusable(
                            &a.path,
                            Some(&m.name),
                            format!(
                                "shape {} here but {} in sweep input {}: every batch size must hold the same tensors",
                                shape_label(&m.shape),
                                shape_label(&shape),
                                b.label()
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// One tensor at one batch size (a row of `sweep.json`'s `batches`).
#[derive(Clone, Debug, Serialize)]
pub struct BatchRow {
    pub batch: u64,
    /// Minibatch gradients K at this batch size.
    pub samples: usize,
    /// The pooled time-blocked α of `analyze`.
    pub alpha_time_blocked: f64,
    /// Median per-coordinate McCulloch α (taken in 1/α, as `analyze`'s quantiles).
    pub alpha_mcculloch_median: f64,
    /// Median per-coordinate excess kurtosis over non-constant coordinates.
    pub kurtosis_median: f64,
    /// tr(C_B): Σ per-coordinate variance, ddof 1.
    pub trace: f64,
    /// r_B: median per-coordinate interquartile range over non-constant coordinates.
    pub iqr_median: f64,
    pub constant_coords: u64,
}

impl BatchRow {
    fn point(&self) -> SweepPoint {
        SweepPoint {
            batch: self.batch,
            trace: self.trace,
            iqr_median: self.iqr_median,
            kurtosis_median: self.kurtosis_median,
        }
    }
}

/// One batch size measured: a row per tensor (input order), and the analysis they came from.
pub struct Measured {
    pub rows: Vec<BatchRow>,
    pub analysis: Analysis,
}

/// Analyses one input on `backend` and reads its whole columns for the interquartile ranges.
pub fn measure(input: &SweepInput, opts: &Options, backend: &mut dyn Backend) -> Result<Measured> {
    let sources = &input.inputs.sources;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("gradtail-ranges-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start {} threads: {e}", opts.threads)))?;
    // The ranges before the analysis, so that data they cannot take (NaN, ±∞) fail before
    // the longer step.
    let bytes = sources.iter().map(|s| {
        let m = s.meta();
        (m.samples * m.coords() * m.dtype.size()) as u64
    });
    let pb = progress_bar(bytes.sum(), opts.progress);
    let columns = sources
        .iter()
        .map(|s| iqr_columns(s.as_ref(), opts, &pool, &pb))
        .collect::<Result<Vec<_>>>()?;
    pb.finish_and_clear();
    // trace and kurtosis from the full per-coordinate table, before `analyze` may reduce it
    // to a plotting sample: the engine's moments, the numbers `analyze` reports.
    let mut moments = Vec::with_capacity(sources.len());
    let analysis = analyze::analyze_with(sources, opts, backend, &mut |t| {
        moments.push(trace_and_kurtosis(&t.coords));
        Ok(())
    })?;
    let rows = analysis
        .tensors
        .iter()
        .zip(moments)
        .zip(columns)
        .map(|((t, (trace, kurtosis_median)), cols)| BatchRow {
            batch: input.batch,
            samples: analysis.samples,
            alpha_time_blocked: t.summary.alpha_time_blocked,
            alpha_mcculloch_median: t.summary.fits.alpha_mcculloch_quantiles.q50,
            kurtosis_median,
            trace,
            iqr_median: cols.finish(input.batch).iqr_median,
            constant_coords: cols.constant(),
        })
        .collect();
    Ok(Measured { rows, analysis })
}

/// Σ of per-coordinate variances made ddof 1, and the numpy median of the finite excess
/// kurtoses (NaN exactly for constant coordinates).
fn trace_and_kurtosis(coords: &crate::stats::CoordTable) -> (f64, f64) {
    let trace = coords
        .get(Stat::Var)
        .iter()
        .zip(coords.get(Stat::N))
        .filter(|(v, &n)| v.is_finite() && n >= 2.0)
        .map(|(v, n)| v * n / (n - 1.0))
        .sum();
    let mut kurt: Vec<f64> = coords
        .get(Stat::Kurt)
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    (trace, median(&mut kurt))
}

/// Reads `src` in blocks of whole columns (every sample of a strip of coordinates) and folds
/// them, in parallel column ranges, into one [`BatchColumns`].
fn iqr_columns(
    src: &dyn TensorSource,
    opts: &Options,
    pool: &rayon::ThreadPool,
    pb: &indicatif::ProgressBar,
) -> Result<BatchColumns> {
    let m = src.meta();
    let k = m.samples;
    // Planned at 8 bytes a value: the block is widened to f64 before the ranges are taken.
    let blocks = plan::blocks(k, m.coords(), 1, 8, opts.block_bytes, true);
    let fail = |e: crate::stats::structure::StructureError| {
        Error::unusable(&m.path, Some(&m.name), e.to_string())
    };
    let mut total = BatchColumns::new(k);
    let mut wide = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        for block in input::prefetch(src, &blocks, 2, scope) {
            let block = block?;
            let width = block.width();
            let n = block.rows.len() * width;
            pb.inc((n * m.dtype.size()) as u64);
            wide.resize(n, 0.0);
            block.widen_into(&mut wide);
            let parts = pool
                .install(|| {
                    (0..width.div_ceil(IQR_TASK_COLS))
                        .into_par_iter()
                        .map(|t| {
                            let c0 = t * IQR_TASK_COLS;
                            let cols = IQR_TASK_COLS.min(width - c0);
                            let mut part = BatchColumns::new(k);
                            part.add_tile(&wide[c0..], cols, width).map(|()| part)
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .map_err(fail)?;
            for p in &parts {
                total.combine(p).map_err(fail)?;
            }
        }
        Ok(())
    })?;
    Ok(total)
}

/// The bar of the interquartile-range read, in input bytes (hidden without `progress`).
fn progress_bar(total: u64, show: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let target = match show {
        true => ProgressDrawTarget::stderr(),
        false => ProgressDrawTarget::hidden(),
    };
    let pb = ProgressBar::with_draw_target(Some(total), target);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {bytes}/{total_bytes} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message("ranges");
    pb
}

/// One tensor across the batch sizes (an entry of `sweep.json`'s `tensors`).
#[derive(Clone, Debug, Serialize)]
pub struct TensorSweep {
    pub name: String,
    pub shape: Vec<usize>,
    pub coords: usize,
    /// Slope of ln tr(C_B) on ln[(N − B)/(B(N − 1))]: 1 for finite-variance noise.
    pub trace_slope: Option<f64>,
    /// 1/(1 + slope of ln r_B on ln B): 2 for Gaussian scaling.
    pub alpha_eff: Option<f64>,
    /// Slope of ln(median excess kurtosis) on ln B: −1 for finite fourth moments.
    pub kurtosis_slope: Option<f64>,
    /// Why a slope is null, one sentence each.
    pub notes: Vec<String>,
    /// One row per batch size, ascending.
    pub batches: Vec<BatchRow>,
}

/// Fits each tensor's slopes over the batch sizes. `measured[i]` belongs to `inputs[i]`;
/// tensors come in the first input's order and are matched by name.
pub fn finish(inputs: &[SweepInput], measured: &[Measured], dataset_size: u64) -> Vec<TensorSweep> {
    let Some(first) = inputs.first() else {
        return Vec::new();
    };
    first
        .inputs
        .sources
        .iter()
        .map(|s| {
            let m = s.meta();
            let mut batches: Vec<BatchRow> = inputs
                .iter()
                .zip(measured)
                .filter_map(|(i, r)| {
                    let at = i
                        .inputs
                        .sources
                        .iter()
                        .position(|t| t.meta().name == m.name)?;
                    r.rows.get(at).cloned()
                })
                .collect();
            batches.sort_by_key(|b| b.batch);
            let points: Vec<SweepPoint> = batches.iter().map(BatchRow::point).collect();
            let mut notes = Vec::new();
            let mut keep = |what: &str, r: std::result::Result<f64, String>| match r {
                Ok(v) => Some(v),
                Err(why) => {
                    notes.push(format!("{what}: {why}"));
                    None
                }
            };
            let (trace_slope, alpha_eff, kurtosis_slope) = match slopes(&points, dataset_size) {
                Ok(s) => (
                    keep("trace_slope", Ok(s.trace_slope)),
                    keep("alpha_eff", s.alpha_eff.map_err(|u| u.0)),
                    keep("kurtosis_slope", s.kurtosis_slope.map_err(|u| u.0)),
                ),
                // The batch sizes were checked up front; what is left is a tensor whose
                // gradients do not vary at some batch size.
                Err(e) => {
                    keep("every slope", Err(e.to_string()));
                    (None, None, None)
                }
            };
            TensorSweep {
                name: m.name.clone(),
                shape: m.shape.clone(),
                coords: m.coords(),
                trace_slope,
                alpha_eff,
                kurtosis_slope,
                notes,
                batches,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct InputRow<'a> {
    batch: u64,
    path: &'a Path,
    samples: usize,
    block_size: usize,
}

#[derive(Serialize)]
struct SweepOptions<'a> {
    center: &'a Center,
    block: Option<usize>,
    backend: &'a str,
}

#[derive(Serialize)]
struct SweepJson<'a> {
    schema: &'static str,
    gradtail_version: &'static str,
    dataset_size: u64,
    inputs: Vec<InputRow<'a>>,
    options: SweepOptions<'a>,
    engine: &'a EngineInfo,
    elapsed_s: f64,
    tensors: &'a [TensorSweep],
}

/// Everything a sweep writes.
pub struct SweepReport<'a> {
    pub inputs: &'a [SweepInput],
    pub measured: &'a [Measured],
    pub dataset_size: u64,
    pub center: &'a Center,
    pub block: Option<usize>,
    pub engine: &'a EngineInfo,
    pub elapsed_s: f64,
    pub tensors: &'a [TensorSweep],
}

impl SweepReport<'_> {
    pub fn json(&self) -> Result<String> {
        let j = SweepJson {
            schema: SWEEP_SCHEMA,
            gradtail_version: env!("CARGO_PKG_VERSION"),
            dataset_size: self.dataset_size,
            inputs: self
                .inputs
                .iter()
                .zip(self.measured)
                .map(|(i, m)| InputRow {
                    batch: i.batch,
                    path: &i.path,
                    samples: m.analysis.samples,
                    block_size: m.analysis.block_size,
                })
                .collect(),
            options: SweepOptions {
                center: self.center,
                block: self.block,
                backend: self.engine.engine,
            },
            engine: self.engine,
            elapsed_s: self.elapsed_s,
            tensors: self.tensors,
        };
        serde_json::to_string_pretty(&j)
            .map_err(|e| Error::Config(format!("cannot encode sweep.json: {e}")))
    }

    /// Writes `sweep.json` and `sweep.html` into `dir` (a staging folder).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let save = |name: &str, body: String| {
            let p = dir.join(name);
            std::fs::write(&p, body).map_err(|e| Error::io(&p, e))
        };
        save("sweep.json", self.json()? + "\n")?;
        save("sweep.html", crate::report::html::sweep::render(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_or_say_how_to_write_them() {
        assert_eq!(
            parse_label("32:a/b:c.npz").unwrap(),
            Labelled {
                batch: 32,
                path: "a/b:c.npz".into()
            }
        );
        for (arg, why) in [
            ("grads.npz", "no batch size"),
            ("0:g.npz", "at least 1"),
            ("x8:g.npz", "'x8' is not a whole number"),
            ("-4:g.npz", "not a whole number"),
            ("8:", "no path"),
        ] {
            let e = parse_label(arg).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("BATCH:PATH"), "{arg}: {e}");
        }
    }

    #[test]
    fn batch_sizes_are_checked_before_any_file_is_read() {
        let l = |b, p: &str| Labelled {
            batch: b,
            path: p.into(),
        };
        let err = |v: &[Labelled]| check_batches(v, 100).unwrap_err().to_string();
        assert!(err(&[l(8, "a")]).contains("two or more batch sizes"));
        assert!(err(&[l(8, "a"), l(8, "b")]).contains("8:a and 8:b have the same batch size"));
        assert!(err(&[l(8, "a"), l(100, "b")]).contains("100:b: batch size 100 is not below"));
        assert!(check_batches(&[l(8, "a"), l(99, "b")], 100).is_ok());
    }

    #[test]
    fn trace_is_ddof_one_and_kurtosis_skips_constants() {
        // var (ddof 0) 2 and 4 over n = 5 → 2.5 + 5; a constant column (var 0, kurt NaN).
        let mut columns = vec![Vec::new(); Stat::CORE.len()];
        columns[Stat::N.index()] = vec![5.0, 5.0, 5.0];
        columns[Stat::Var.index()] = vec![2.0, 4.0, 0.0];
        columns[Stat::Kurt.index()] = vec![1.0, 3.0, f64::NAN];
        let (trace, kurt) = trace_and_kurtosis(&crate::stats::CoordTable::whole(columns));
        assert_eq!(trace, 7.5);
        assert_eq!(kurt, 2.0);
    }
}
