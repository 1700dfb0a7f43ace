//! `gradtail bench`'s rows for the structure statistics: on the host for every engine, the
//! K × K eigensolve of the Gram (whose pass over the data is each engine's own,
//! `bench::gram`), and the power-law xmin scans — a dimension-wise fit over many coordinates
//! (the grid beyond `EXACT_MAX_N` values), an exact scan of `EXACT_MAX_N` values, and the
//! iteration-wise fits of K values per coordinate; per engine, the xmin scans through
//! `Backend::xmin_scan` ([`time_xmin`]).

use std::time::Instant;

use serde::Serialize;

use super::{MemTensor, Timing};
use crate::analyze::structure::{self, PowerLawCoord, StructureAcc};
use crate::engine::Backend;
use crate::error::Result;
use crate::input::{Dtype, TensorSource};
use crate::stats::structure::powerlaw::EXACT_MAX_N;
use crate::stats::structure::xmin_scan::fit_all;
use crate::stats::structure::{Centre, Gram, Sample, XminSearch};

/// Most coordinates in the Gram and dimension-wise timings (about a second each on one core).
pub const STRUCTURE_COORDS: usize = 200_000;
/// Coordinates of the iteration-wise timing.
pub const COORD_FITS: usize = 2_000;

#[derive(Clone, Debug, Serialize)]
pub struct StructureRun {
    pub samples: usize,
    /// Coordinates of the dimension-wise fit (and of the Gram whose eigenvalues are timed).
    pub coords: usize,
    pub threads: usize,
    /// Eigenvalues of the K × K matrix, slope, trace and effective rank.
    pub eigen_s: Timing,
    /// One dimension-wise fit of |u_0| over `coords` coordinates.
    pub dim_fit_s: Timing,
    pub dim_fit_search: XminSearch,
    /// One exact xmin scan and fit of `EXACT_MAX_N` values.
    pub exact_fit_n: usize,
    pub exact_fit_s: Timing,
    /// Iteration-wise fits (K values each) on every thread, µs per coordinate.
    pub coord_fit_us: f64,
}

/// Times the structure statistics on a seeded K × min(P, [`STRUCTURE_COORDS`]) stack on
/// `threads` host threads: one warm-up, then `repeat` runs of each part.
pub fn time_structure(
    samples: usize,
    params: usize,
    threads: usize,
    repeat: usize,
    seed: u64,
) -> Result<StructureRun> {
    let (k, p) = (samples, params.clamp(1, STRUCTURE_COORDS));
    let src = MemTensor::synthetic(k, p, Dtype::F32, seed);
    let block = src.read_block(0..k, 0..p)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| crate::Error::Config(format!("cannot start {threads} threads: {e}")))?;
    let centre = vec![0.0; p];
    let usable = vec![true; p];
    let err = |e: crate::stats::structure::StructureError| crate::Error::Config(e.to_string());
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<Timing> {
        let mut times = Vec::new();
        for i in 0..=repeat.max(1) {
            let t = Instant::now();
            f()?;
            if i > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        Ok(Timing::of(times))
    };
    let mut acc = StructureAcc::new(k, p, false, &[0]);
    structure::run(
        &block,
        &centre,
        &centre,
        &usable,
        &mut acc,
        false,
        None,
        EXACT_MAX_N,
        &pool,
    )
    .map_err(err)?;
    let mut gram = Gram::new(k);
    pool.install(|| crate::engine::cpu::gram(&block, &centre, &mut gram))
        .map_err(err)?;
    let eigen_s = time(&mut || {
        std::hint::black_box(gram.finish(Centre::Exact).ok());
        Ok(())
    })?;
    let row = acc.rows[0].1.clone();
    let mut search = XminSearch::Exact;
    let dim_fit_s = time(&mut || {
        let s = Sample::new(&row).map_err(err)?;
        search = s.fit(EXACT_MAX_N).map_err(err)?.xmin_search;
        Ok(())
    })?;
    let exact: Vec<f64> = row.iter().copied().cycle().take(EXACT_MAX_N).collect();
    let exact_fit_s = time(&mut || {
        Sample::new(&exact)
            .and_then(|s| s.fit(EXACT_MAX_N))
            .map(drop)
            .map_err(err)
    })?;
    let n = COORD_FITS.min(p);
    let narrow = src.read_block(0..k, 0..n)?;
    let mut fits = vec![PowerLawCoord::NAN; n];
    let mut none = StructureAcc::new(k, n, false, &[]);
    let coord_s = time(&mut || {
        structure::run(
            &narrow,
            &centre[..n],
            &centre[..n],
            &usable[..n],
            &mut none,
            false,
            Some(&mut fits),
            EXACT_MAX_N,
            &pool,
        )
        .map_err(err)
    })?;
    Ok(StructureRun {
        samples: k,
        coords: p,
        threads: pool.current_num_threads(),
        eigen_s,
        dim_fit_s,
        dim_fit_search: search,
        exact_fit_n: EXACT_MAX_N,
        exact_fit_s,
        coord_fit_us: coord_s.median / n as f64 * 1e6,
    })
}

/// One engine's xmin scans (`Backend::xmin_scan` with the host's α and choice), end to end.
#[derive(Clone, Debug, Serialize)]
pub struct XminRun {
    pub engine: String,
    /// The engine ran on a CPU device (lavapipe): its time is not GPU performance.
    pub cpu_device: bool,
    /// The exact scan of `EXACT_MAX_N` values (the host's limit).
    pub exact_n: usize,
    pub exact_s: Timing,
    /// The dimension-wise fit of `dim_n` values under the engine's own limit; not timed on a
    /// CPU device (its exact scan of 10⁵ values would take minutes).
    pub dim_n: usize,
    pub dim_search: Option<XminSearch>,
    pub dim_s: Option<Timing>,
}

/// Times `backend`'s xmin scans on |u_0| of the seeded stack of [`time_structure`]: one
/// warm-up, then `repeat` runs of each.
pub fn time_xmin(
    backend: &mut dyn Backend,
    cpu_device: bool,
    samples: usize,
    params: usize,
    repeat: usize,
    seed: u64,
) -> Result<XminRun> {
    let (k, p) = (samples, params.clamp(1, STRUCTURE_COORDS));
    let src = MemTensor::synthetic(k, p, Dtype::F32, seed);
    // |u_0| as the structure step forms it with centre 0.
    let mut row = vec![0.0; p];
    src.read_block(0..1, 0..p)?.widen_into(&mut row);
    row.iter_mut()
        .for_each(|v| *v = if v.is_finite() { v.abs() } else { 0.0 });
    let exact: Vec<f64> = row.iter().copied().cycle().take(EXACT_MAX_N).collect();
    let limit = backend.xmin_exact_max_n(EXACT_MAX_N);
    let mut fit = |values: &[f64], limit: usize| -> Result<(XminSearch, Timing)> {
        let s = Sample::new(values).map_err(|e| crate::Error::Config(e.to_string()))?;
        let mut search = XminSearch::Exact;
        let mut times = Vec::new();
        for i in 0..=repeat.max(1) {
            let t = Instant::now();
            let f = fit_all(&[&s], limit, &mut |jobs| backend.xmin_scan(jobs))?.remove(0);
            if i > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
            search = f
                .map_err(|e| crate::Error::Config(e.to_string()))?
                .xmin_search;
        }
        Ok((search, Timing::of(times)))
    };
    let (_, exact_s) = fit(&exact, EXACT_MAX_N)?;
    let dim = (!cpu_device).then(|| fit(&row, limit)).transpose()?;
    Ok(XminRun {
        engine: backend.info().engine.to_string(),
        cpu_device,
        exact_n: EXACT_MAX_N,
        exact_s,
        dim_n: p,
        dim_search: dim.as_ref().map(|d| d.0),
        dim_s: dim.map(|d| d.1),
    })
}

/// The row `gradtail bench` prints for one engine's xmin scans.
pub fn print_xmin(x: &XminRun, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let device = if x.cpu_device {
        " (a CPU device: not GPU performance)"
    } else {
        ""
    };
    let dim = match (&x.dim_s, x.dim_search) {
        (Some(t), Some(s)) => format!(
            "; dimension-wise fit of {} values ({s:?}) {:.3} s [{:.3}, {:.3}]",
            x.dim_n, t.median, t.min, t.max
        ),
        _ => String::new(),
    };
    writeln!(
        out,
        "xmin scans on the {} engine{device}: exact scan of {} values {:.3} s [{:.3}, {:.3}]{dim}",
        x.engine, x.exact_n, x.exact_s.median, x.exact_s.min, x.exact_s.max
    )
}

/// The rows `gradtail bench` prints.
pub fn print(s: &StructureRun, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "K × K eigenvalues on the host (both engines; K = {}): {:.4} s",
        s.samples, s.eigen_s.median
    )?;
    writeln!(
        out,
        "xmin scans: dimension-wise fit of {} values ({:?}) {:.3} s; exact scan of {} values {:.3} s; iteration-wise fits of K = {} values {:.1} µs per coordinate ({} threads)",
        s.coords, s.dim_fit_search, s.dim_fit_s.median, s.exact_fit_n, s.exact_fit_s.median, s.samples, s.coord_fit_us, s.threads
    )
}
