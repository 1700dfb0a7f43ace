//! `gradtail bench`: each engine on the same seeded in-memory stack — warm-up, then timed
//! repeats of the whole analysis without the fits — with throughput, the ceiling measured in
//! the same run (host memory streaming for the CPU; device copy and upload for a GPU), and the
//! largest disagreement between engines per statistic; then each engine's per-coordinate fits
//! (`Backend::coord_fits`: host code on the CPU engine, the `coord_fits` kernel on the GPU
//! engine), timed on their own at K = 512; each engine's Gram pass (`gram`,
//! `Backend::gram`), and the rest of the structure statistics (`structure`: the K × K
//! eigenvalues and the xmin scans), host code, timed on their own.

mod gram;
mod structure;
pub use gram::{time_gram, GramRun};
pub use structure::{time_structure, time_xmin, StructureRun, XminRun, STRUCTURE_COORDS};

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::analyze::{self, Analysis, Options};
use crate::engine::{AdapterInfo, Backend, PhaseTimes};
use crate::error::Result;
use crate::input::{Block, BlockData, Dtype, TensorSource};
use crate::stats::fits::Fits;
use crate::stats::{compare, COORD_STATS};

/// The input of `bench`: a (K, P) tensor held in memory, so timings exclude the disk.
pub use crate::input::mem::MemTensor;

impl MemTensor<'static> {
    /// SαS(α = 1.7) noise with per-coordinate scales spread by e^N(0, 0.5), seeded.
    pub fn synthetic(samples: usize, params: usize, dtype: Dtype, seed: u64) -> Self {
        let spec = crate::synth::SynthSpec {
            alpha: 1.7,
            samples,
            params,
            scale: 1e-3,
            seed,
            dtype: Dtype::F32,
            log_scale_sd: 0.5,
            traps: Default::default(),
        };
        let scales = crate::synth::coord_scales(&spec);
        let mut values = vec![0.0f64; samples * params];
        values
            .par_chunks_mut(params)
            .enumerate()
            .for_each(|(r, row)| crate::synth::row(1.7, &scales, seed, r, row));
        let data = match dtype {
            Dtype::F32 => BlockData::F32(values.iter().map(|&v| v as f32).collect()),
            Dtype::F16 => BlockData::F16(
                values
                    .iter()
                    .map(|&v| half::f16::from_f64(v).to_bits())
                    .collect(),
            ),
            Dtype::BF16 => BlockData::BF16(
                values
                    .iter()
                    .map(|&v| half::bf16::from_f64(v).to_bits())
                    .collect(),
            ),
            Dtype::F64 => BlockData::F64(values),
        };
        MemTensor::owned("bench", samples, params, data)
    }
}

/// Median, minimum and maximum of a set of timings, in seconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Timing {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Timing {
    pub fn of(mut xs: Vec<f64>) -> Self {
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let median = if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        Timing {
            median,
            min: xs[0],
            max: xs[n - 1],
        }
    }
}

/// One engine's figures.
#[derive(Clone, Debug, Serialize)]
pub struct EngineRun {
    pub engine: String,
    pub adapter: Option<AdapterInfo>,
    /// The adapter is a CPU device (e.g. lavapipe): its figures are not GPU performance.
    pub cpu_device: bool,
    pub end_to_end_s: Timing,
    /// Device kernel time from timestamp queries, both passes, where supported.
    pub kernel_s: Option<Timing>,
    /// Host time packing and handing input to the device (GPU engines).
    pub upload_s: Option<Timing>,
    /// Host time finishing and submitting command buffers (GPU engines): near zero on a GPU;
    /// a CPU device may run the kernels inside it.
    pub submit_s: Option<Timing>,
    /// Host time waiting for results and copying them back (GPU engines).
    pub readback_s: Option<Timing>,
    /// The part of `readback_s` blocked on the device: device-side transfers and kernels
    /// that the host's own work did not hide.
    pub readback_wait_s: Option<Timing>,
    /// The rest of end-to-end time on the host: end_to_end - upload - submit - readback
    /// (reading input blocks, encoding, folding results, finishing the statistics) (GPU
    /// engines).
    pub host_s: Option<Timing>,
    /// The part of `host_s` folding read-back partial states.
    pub fold_s: Option<Timing>,
    /// Bytes moved per run each way, and units (uploads) and queue submissions per run.
    pub upload_bytes: Option<u64>,
    pub readback_bytes: Option<u64>,
    /// Input bytes the kernels read per run: each unit's input once per pass, uploaded or
    /// left on the device by pass 1.
    pub kernel_read_bytes: Option<u64>,
    pub units: Option<u64>,
    pub submits: Option<u64>,
    /// Input bytes the kernels read per second of kernel time (the median of each), GB/s,
    /// and that as a fraction of the device copy ceiling: how fast the kernels consume their
    /// input. Each unit's input counts once per pass, though pass 2's two kernels each read
    /// it, so the device's own memory traffic is higher.
    pub kernel_gb_s: Option<f64>,
    pub kernel_fraction_of_ceiling: Option<f64>,
    /// Input bytes (K·P·element size) per second of end-to-end time, in GB/s (1e9 B).
    pub input_gb_s: f64,
    pub g_elements_s: f64,
    /// The engine's ceiling measured in the same run, GB/s, and what it is.
    pub ceiling_gb_s: f64,
    pub ceiling: String,
    /// Bytes the analysis read from the input per second (once per tensor when whole-column
    /// blocks feed both passes, as on the CPU engine; once per pass otherwise), as a fraction
    /// of the ceiling.
    pub fraction_of_ceiling: f64,
    /// Host-to-device upload rate measured in the same run, GB/s (GPU engines).
    pub upload_gb_s: Option<f64>,
    pub speedup_over_cpu: Option<f64>,
}

/// Largest disagreement of one statistic between two engines (compare-module forms).
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub stat: &'static str,
    pub max_error: f64,
    pub nan_match: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub schema: &'static str,
    pub samples: usize,
    pub params: usize,
    pub dtype: Dtype,
    pub repeat: usize,
    pub input_bytes: u64,
    pub engines: Vec<EngineRun>,
    /// Per statistic, the largest disagreement of each engine after the first with the first.
    pub agreement: Vec<(String, Vec<Agreement>)>,
    /// Each engine's fits, timed on their own ([`time_fits`]); the engine runs leave them out.
    pub fits: Vec<FitsRun>,
    /// Each engine's Gram pass ([`time_gram`]); the engine runs leave it out.
    pub grams: Vec<GramRun>,
    /// The eigenvalues and xmin scans ([`time_structure`]); the engine runs leave them out.
    pub structure: Option<StructureRun>,
    /// Each engine's xmin scans ([`time_xmin`]).
    pub xmin: Vec<XminRun>,
}

/// One engine's per-coordinate fits (`Backend::coord_fits`, as `analyze` runs them over whole
/// columns), end to end: packing, upload, kernel and readback on the GPU engine.
#[derive(Clone, Debug, Serialize)]
pub struct FitsRun {
    pub engine: String,
    /// The engine ran on a CPU device (lavapipe): its time is not GPU performance.
    pub cpu_device: bool,
    pub samples: usize,
    pub coords: usize,
    pub threads: usize,
    /// Wall time of fitting every coordinate once (median [min, max] of the repeats).
    pub seconds: Timing,
    /// Median wall time per coordinate, µs, with every thread.
    pub us_per_coord: f64,
    /// The same times the threads: one coordinate's cost on one thread.
    pub us_per_coord_thread: f64,
}

/// Samples per coordinate of the fits timing (the yardstick, and a common K).
pub const FITS_SAMPLES: usize = 512;

/// A seeded K × P f32 block (SαS 1.7, `MemTensor::synthetic`) and its column means.
fn seeded_block(k: usize, p: usize, seed: u64) -> Result<(Block, Vec<f64>)> {
    let src = MemTensor::synthetic(k, p, Dtype::F32, seed);
    let block = src.read_block(0..k, 0..p)?;
    let mut values = vec![0.0; k * p];
    block.widen_into(&mut values);
    let mut centre = vec![0.0; p];
    for row in values.chunks_exact(p) {
        centre.iter_mut().zip(row).for_each(|(c, x)| *c += x);
    }
    centre.iter_mut().for_each(|c| *c /= k as f64);
    Ok((block, centre))
}

/// Times `backend`'s fits of `coords` coordinates of K = [`FITS_SAMPLES`] seeded samples
/// (SαS 1.7, mean-centred): one warm-up, then `repeat` runs. `cpu_device` as in [`Candidate`].
pub fn time_fits(
    backend: &mut dyn Backend,
    cpu_device: bool,
    coords: usize,
    repeat: usize,
    seed: u64,
) -> Result<FitsRun> {
    let coords = coords.max(1);
    let (block, centre) = seeded_block(FITS_SAMPLES, coords, seed)?;
    let usable = vec![true; coords];
    let mut out = vec![Fits::NAN; coords];
    let mut times = Vec::new();
    for i in 0..=repeat.max(1) {
        let t = Instant::now();
        backend.coord_fits(&block, &usable, &centre, &mut out)?;
        std::hint::black_box(&out);
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let seconds = Timing::of(times);
    let us_per_coord = seconds.median / coords as f64 * 1e6;
    let info = backend.info();
    let threads = info.threads;
    Ok(FitsRun {
        engine: info.engine.to_string(),
        cpu_device,
        samples: FITS_SAMPLES,
        coords,
        threads,
        seconds,
        us_per_coord,
        us_per_coord_thread: us_per_coord * threads as f64,
    })
}

/// Host-memory streaming read bandwidth with every thread: the CPU engine's ceiling. Sums a
/// buffer larger than any cache; bytes read per second, best of 5.
pub fn host_read_gb_s() -> f64 {
    let buf: Vec<f64> = (0..(256usize << 20) / 8).map(|i| i as f64).collect();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let s: f64 = buf.par_chunks(1 << 16).map(|c| c.iter().sum::<f64>()).sum();
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    (buf.len() * 8) as f64 / best / 1e9
}

/// A backend to benchmark, with how to read its device timers and its ceiling.
pub struct Candidate {
    pub backend: Box<dyn Backend>,
    pub ceiling_gb_s: f64,
    pub ceiling: String,
    pub upload_gb_s: Option<f64>,
    pub cpu_device: bool,
}

/// Runs every candidate on `src`: one warm-up, then `repeat` timed analyses.
pub fn run(
    src: MemTensor<'static>,
    candidates: &mut [Candidate],
    repeat: usize,
) -> Result<BenchReport> {
    let sources: Vec<Box<dyn TensorSource>> = vec![Box::new(src)];
    let m = sources[0].meta().clone();
    let input_bytes = (m.samples * m.coords() * m.dtype.size()) as u64;
    // The fits (`time_fits`), the Gram (`time_gram`) and the rest of the structure
    // statistics (`time_structure`, host code whatever the engine) are timed on their own.
    let opts = Options {
        fits: false,
        structure: crate::analyze::structure::StructureOptions {
            spectrum: false,
            powerlaw: false,
            ..Default::default()
        },
        ..Options::default()
    };
    let mut runs = Vec::new();
    let mut results: Vec<Analysis> = Vec::new();
    for c in candidates.iter_mut() {
        let info = c.backend.info();
        let first = analyze::analyze(&sources, &opts, c.backend.as_mut())?;
        let bytes_read = first.bytes_read;
        let mut wall = Vec::new();
        let mut phases = Vec::new();
        for _ in 0..repeat.max(1) {
            c.backend.reset_phases();
            let t = Instant::now();
            // Results are read back and finished inside: the timer stops after the device is
            // synchronised. Each repeat recomputes everything from the input.
            let a = analyze::analyze(&sources, &opts, c.backend.as_mut())?;
            let e2e = t.elapsed().as_secs_f64();
            wall.push(e2e);
            std::hint::black_box(&a);
            if let Some(p) = c.backend.phases() {
                phases.push((e2e, p));
            }
        }
        let end_to_end = Timing::of(wall);
        let phase = |f: &dyn Fn(&(f64, PhaseTimes)) -> f64| {
            (!phases.is_empty()).then(|| Timing::of(phases.iter().map(f).collect()))
        };
        let last = phases.last().map(|p| p.1);
        let kernel: Vec<f64> = phases.iter().filter_map(|p| p.1.kernel_s).collect();
        let kernel_s = (!kernel.is_empty()).then(|| Timing::of(kernel));
        let kernel_gb_s = kernel_s
            .zip(last)
            .map(|(k, p)| p.kernel_read_bytes as f64 / k.median / 1e9);
        let rate = input_bytes as f64 / end_to_end.median;
        runs.push(EngineRun {
            engine: info.engine.to_string(),
            adapter: info.adapter.clone(),
            cpu_device: c.cpu_device,
            end_to_end_s: end_to_end,
            kernel_s,
            upload_s: phase(&|p| p.1.upload_s),
            submit_s: phase(&|p| p.1.submit_s),
            readback_s: phase(&|p| p.1.readback_s),
            readback_wait_s: phase(&|p| p.1.readback_wait_s),
            host_s: phase(&|p| p.0 - p.1.upload_s - p.1.submit_s - p.1.readback_s),
            fold_s: phase(&|p| p.1.fold_s),
            upload_bytes: last.map(|p| p.upload_bytes),
            kernel_read_bytes: last.map(|p| p.kernel_read_bytes),
            readback_bytes: last.map(|p| p.readback_bytes),
            units: last.map(|p| p.units),
            submits: last.map(|p| p.submits),
            kernel_gb_s,
            kernel_fraction_of_ceiling: kernel_gb_s.map(|k| k / c.ceiling_gb_s),
            input_gb_s: rate / 1e9,
            g_elements_s: (m.samples * m.coords()) as f64 / end_to_end.median / 1e9,
            ceiling_gb_s: c.ceiling_gb_s,
            ceiling: c.ceiling.clone(),
            fraction_of_ceiling: bytes_read as f64 / end_to_end.median / 1e9 / c.ceiling_gb_s,
            upload_gb_s: c.upload_gb_s,
            speedup_over_cpu: None,
        });
        results.push(first);
    }
    if let Some(cpu) = runs.iter().position(|r| r.engine == "cpu") {
        let base = runs[cpu].end_to_end_s.median;
        for r in &mut runs {
            r.speedup_over_cpu = Some(base / r.end_to_end_s.median);
        }
    }
    let mut agreement = Vec::new();
    if let Some((reference, others)) = results.split_first() {
        let want = &reference.tensors[0].coords;
        for (run, other) in runs.iter().skip(1).zip(others) {
            let got = &other.tensors[0].coords;
            let rows = COORD_STATS
                .iter()
                .map(|&stat| {
                    let (max_error, nan_match) =
                        compare::max_error(stat, got.get(stat), want.get(stat), want.get("var"));
                    Agreement {
                        stat,
                        max_error,
                        nan_match,
                    }
                })
                .collect();
            agreement.push((format!("{} vs {}", run.engine, runs[0].engine), rows));
        }
    }
    Ok(BenchReport {
        schema: "gradtail.bench/1",
        samples: m.samples,
        params: m.coords(),
        dtype: m.dtype,
        repeat,
        input_bytes,
        engines: runs,
        agreement,
        fits: Vec::new(),
        grams: Vec::new(),
        structure: None,
        xmin: Vec::new(),
    })
}

/// The table `gradtail bench` prints.
pub fn print(r: &BenchReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} × {} {:?} ({:.2} GB), median of {} runs [min, max]",
        r.samples,
        r.params,
        r.dtype,
        r.input_bytes as f64 / 1e9,
        r.repeat
    )?;
    writeln!(
        out,
        "{:<6} {:<60} {:>22} {:>10} {:>8} {:>8} {:>22} {:>8}",
        "engine",
        "adapter",
        "end-to-end s",
        "kernel s",
        "GB/s",
        "Gelem/s",
        "ceiling GB/s (frac)",
        "speedup"
    )?;
    for e in &r.engines {
        let adapter = match &e.adapter {
            Some(a) if e.cpu_device => format!("{} [CPU device: not a GPU figure]", a.name),
            Some(a) => format!("{} ({})", a.name, a.driver),
            None => "host CPU".into(),
        };
        let t = &e.end_to_end_s;
        writeln!(
            out,
            "{:<6} {:<60} {:>22} {:>10} {:>8.2} {:>8.3} {:>22} {:>8}",
            e.engine,
            adapter,
            format!("{:.3} [{:.3}, {:.3}]", t.median, t.min, t.max),
            e.kernel_s
                .map_or("n/a".into(), |k| format!("{:.4}", k.median)),
            e.input_gb_s,
            e.g_elements_s,
            format!(
                "{:.1} {} ({:.0}%)",
                e.ceiling_gb_s,
                e.ceiling,
                100.0 * e.fraction_of_ceiling
            ),
            e.speedup_over_cpu.map_or("".into(), |s| format!("{s:.2}×")),
        )?;
    }
    print_phases(r, out)?;
    for f in &r.fits {
        let on = if f.engine == "cpu" {
            format!("{} threads", f.threads)
        } else if f.cpu_device {
            "CPU device: not GPU performance".into()
        } else {
            "kernel coord_fits".into()
        };
        write!(
            out,
            "fits, {} engine (K = {}, {} coordinates, {on}): {:.3} s [{:.3}, {:.3}], {:.2} µs per coordinate",
            f.engine,
            f.samples,
            f.coords,
            f.seconds.median,
            f.seconds.min,
            f.seconds.max,
            f.us_per_coord,
        )?;
        if f.engine == "cpu" {
            write!(
                out,
                " ({:.1} µs per coordinate on one thread)",
                f.us_per_coord_thread
            )?;
        }
        writeln!(out)?;
    }
    for g in &r.grams {
        gram::print(g, out)?;
    }
    if let Some(s) = &r.structure {
        structure::print(s, out)?;
    }
    for x in &r.xmin {
        structure::print_xmin(x, out)?;
    }
    for (pair, rows) in &r.agreement {
        writeln!(
            out,
            "largest disagreement, {pair} (α as 1/α, p as -log10 p, mean in sd, others relative):"
        )?;
        let line: Vec<String> = rows
            .iter()
            .map(|a| {
                format!(
                    "{} {:.1e}{}",
                    a.stat,
                    a.max_error,
                    if a.nan_match { "" } else { " (NaN mismatch!)" }
                )
            })
            .collect();
        writeln!(out, "  {}", line.join(", "))?;
    }
    Ok(())
}

/// The per-phase table of the engines that report phases (GPU engines).
fn print_phases(r: &BenchReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut rows = r.engines.iter().filter(|e| e.upload_s.is_some()).peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    writeln!(
        out,
        "phases, median per run: host wall clock (upload + submit + readback + host = end to end); kernel is device time and overlaps them"
    )?;
    writeln!(
        out,
        "{:<6} {:>9} {:>9} {:>20} {:>18} {:>9} {:>10} {:>10} {:>13} {:>26} {:>10}",
        "engine",
        "upload s",
        "submit s",
        "readback s (wait)",
        "host s (fold)",
        "kernel s",
        "uploaded",
        "read back",
        "units/submits",
        "kernel GB/s (of dev copy)",
        "upload ceiling GB/s"
    )?;
    let s = |t: Option<Timing>| t.map_or("n/a".into(), |t| format!("{:.4}", t.median));
    let gb = |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.3} GB", b as f64 / 1e9));
    for e in rows {
        writeln!(
            out,
            "{:<6} {:>9} {:>9} {:>20} {:>18} {:>9} {:>10} {:>10} {:>13} {:>26} {:>10}{}",
            e.engine,
            s(e.upload_s),
            s(e.submit_s),
            format!("{} ({})", s(e.readback_s), s(e.readback_wait_s)),
            format!("{} ({})", s(e.host_s), s(e.fold_s)),
            s(e.kernel_s),
            gb(e.upload_bytes),
            gb(e.readback_bytes),
            format!("{}/{}", e.units.unwrap_or(0), e.submits.unwrap_or(0)),
            e.kernel_gb_s
                .zip(e.kernel_fraction_of_ceiling)
                .map_or("n/a".into(), |(k, f)| {
                    format!("{k:.1} ({:.0}% of {:.1})", 100.0 * f, e.ceiling_gb_s)
                }),
            e.upload_gb_s.map_or("n/a".into(), |u| format!("{u:.1}")),
            if e.cpu_device {
                "  [CPU device: not GPU figures]"
            } else {
                ""
            },
        )?;
    }
    Ok(())
}
