//! The power-law fits' xmin scan on the GPU engine (kernel `xmin_scan`) against the `powerlaw`
//! package's own scan and fits (tests/data/digits: powerlaw_scan.npy and
//! reference_structure.json, written by powerlaw 2.0 outside gradtail) and against the CPU
//! engine: distances within the kernel's stated bound, fits equal, the exact scan beyond the
//! host's limit, bootstrap p-values equal, and a Gaussian sample rejected.

use crate::common;
use crate::structure::{digits, read_npy};

use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::gpu::{GpuEngine, GpuOptions, GPU_EXACT_MAX_N, XMIN_BOUND};
use gradtail::engine::Backend;
use gradtail::stats::structure::bootstrap::{goodness_of_fit, goodness_of_fit_by};
use gradtail::stats::structure::powerlaw::EXACT_MAX_N;
use gradtail::stats::structure::xmin_scan::{fit_all, ScanJob};
use gradtail::stats::structure::{PowerLawFit, Sample, XminSearch};

/// α and D at the chosen xmin against the package: the host recomputes the contenders for
/// the smallest D in f64, so the GPU engine's fit is the host's, whose closed forms differ from
/// the package's by libm rounding and summation order only (~1e-15).
const FIT: f64 = 1e-12;

fn gpu() -> Option<GpuEngine> {
    common::gpu_or_skip(GpuOptions::default())
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

fn fit_on(engine: &mut dyn Backend, s: &Sample, limit: usize) -> PowerLawFit {
    fit_all(&[s], limit, &mut |jobs| engine.xmin_scan(jobs))
        .unwrap()
        .remove(0)
        .unwrap()
}

/// A heavy-tailed sample with a body and ties: Pareto quantiles (PDF exponent 2.5) above 1,
/// uniform below, rounded to 1e-4 so that values repeat.
fn pareto_with_body(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let q = (i as f64 + 0.5) / n as f64;
            let x = if q < 0.3 {
                q / 0.3
            } else {
                (1.0 - (q - 0.3) / 0.7).powf(-1.0 / 1.5)
            };
            (x * 1e4).round() / 1e4
        })
        .collect()
}

/// Φ⁻¹ by bisection on erfc, good to ~1e-15: test data only.
fn normal_quantile(q: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if 0.5 * libm::erfc(-mid / std::f64::consts::SQRT_2) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[test]
fn gpu_scan_matches_the_packages_scan_and_fits() {
    let Some(mut gpu) = gpu() else { return };
    let d = digits();
    let (_, off, size) = &d.tensors[0];
    let row0: Vec<f64> = d.u[*off..off + size].iter().map(|v| v.abs()).collect();
    let sample = Sample::new(&row0).unwrap();
    let (shape, scan_ref) = read_npy(&common::data("digits/powerlaw_scan.npy"));
    let m = shape[1];
    let ds = &scan_ref[m..2 * m];
    let job = ScanJob::new(&sample, gpu.xmin_exact_max_n(EXACT_MAX_N)).unwrap();
    assert_eq!(job.cands.len(), m);
    let scanned = gpu.xmin_scan(std::slice::from_ref(&job)).unwrap();
    assert_eq!(scanned.bound, XMIN_BOUND);
    let mut worst: f64 = 0.0;
    let mut host = 0;
    for (i, &got) in scanned.d[0].iter().enumerate() {
        if got.is_nan() {
            host += 1;
            continue;
        }
        let e = (got - ds[i]).abs();
        assert!(e <= XMIN_BOUND, "candidate {i}: D {got} vs {}", ds[i]);
        worst = worst.max(e);
    }
    assert!(host < m / 10, "{host} of {m} candidates left to the host");
    println!("GPU distances over {m} candidates: largest error {worst:e}; {host} left to the host");

    for (name, off, size) in &d.tensors {
        let want = &d.reference["tensors"][name]["dim_powerlaw_sample0"];
        let row: Vec<f64> = d.u[*off..off + size].iter().map(|v| v.abs()).collect();
        let s = Sample::new(&row).unwrap();
        let limit = gpu.xmin_exact_max_n(EXACT_MAX_N);
        let f = fit_on(&mut gpu, &s, limit);
        assert_eq!(f.xmin_search, XminSearch::Exact);
        assert_eq!(f.n_tail as u64, want["n_tail"].as_u64().unwrap(), "{name}");
        // xmin is a data value; the centre may differ from numpy's in the last bit.
        assert!(
            rel(f.xmin, want["xmin"].as_f64().unwrap()) < 1e-15,
            "{name}"
        );
        assert!(
            rel(f.alpha, want["alpha"].as_f64().unwrap()) < FIT,
            "{name}: {f:?}"
        );
        assert!(rel(f.d, want["D"].as_f64().unwrap()) < FIT, "{name}: {f:?}");
    }
}

#[test]
fn gpu_and_cpu_engines_fit_alike() {
    let Some(mut gpu) = gpu() else { return };
    let mut cpu = CpuEngine::new(2).unwrap();
    let samples: Vec<Sample> = [3000, 5000]
        .iter()
        .map(|&n| Sample::new(&pareto_with_body(n)).unwrap())
        .collect();
    let refs: Vec<&Sample> = samples.iter().collect();
    let on_gpu = fit_all(&refs, EXACT_MAX_N, &mut |j| gpu.xmin_scan(j)).unwrap();
    let on_cpu = fit_all(&refs, EXACT_MAX_N, &mut |j| cpu.xmin_scan(j)).unwrap();
    assert_eq!(on_gpu, on_cpu);
    // And candidate by candidate, within the kernel's bound.
    let jobs: Vec<ScanJob> = refs
        .iter()
        .map(|s| ScanJob::new(s, EXACT_MAX_N).unwrap())
        .collect();
    let (g, c) = (gpu.xmin_scan(&jobs).unwrap(), cpu.xmin_scan(&jobs).unwrap());
    assert_eq!(c.bound, 0.0);
    let mut worst: f64 = 0.0;
    for (gd, cd) in g.d.iter().zip(&c.d) {
        for (a, b) in gd.iter().zip(cd).filter(|(a, _)| !a.is_nan()) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst <= XMIN_BOUND, "{worst}");
    println!("GPU vs CPU distances: largest difference {worst:e}");
}

#[test]
fn the_gpu_scans_exactly_beyond_the_hosts_limit() {
    let Some(mut gpu) = gpu() else { return };
    let mut cpu = CpuEngine::new(2).unwrap();
    let n = EXACT_MAX_N + 2000;
    let s = Sample::new(&pareto_with_body(n)).unwrap();
    assert!(s.len() > EXACT_MAX_N);
    let host_limit = cpu.xmin_exact_max_n(EXACT_MAX_N);
    let on_cpu = fit_on(&mut cpu, &s, host_limit);
    assert_eq!(on_cpu.xmin_search, XminSearch::Grid);
    let limit = gpu.xmin_exact_max_n(EXACT_MAX_N);
    assert_eq!(limit, GPU_EXACT_MAX_N);
    let on_gpu = fit_on(&mut gpu, &s, limit);
    assert_eq!(on_gpu.xmin_search, XminSearch::Exact);
    // The host's exact scan, asked for explicitly, is the same fit.
    assert_eq!(on_gpu, s.fit(usize::MAX).unwrap());
    // The grid tries a subset of the candidates: never a smaller D.
    assert!(on_gpu.d <= on_cpu.d, "{on_gpu:?} vs {on_cpu:?}");
}

#[test]
fn bootstrap_p_values_agree_and_a_gaussian_is_rejected() {
    let Some(mut gpu) = gpu() else { return };
    let run = |x: &[f64], reps: usize, gpu: &mut GpuEngine| {
        let s = Sample::new(x).unwrap();
        let f = s.fit(EXACT_MAX_N).unwrap();
        let host = goodness_of_fit(&s, &f, reps, 7, EXACT_MAX_N).unwrap();
        let dev = goodness_of_fit_by(&s, &f, reps, 7, EXACT_MAX_N, &mut |j| gpu.xmin_scan(j))
            .unwrap()
            .unwrap();
        // Same synthetic samples (host RNG) and the host's choice of xmin: the same p.
        assert_eq!(dev, host);
        host.p
    };
    let pareto = run(&pareto_with_body(1500), 40, &mut gpu);
    let n = 1000;
    let gauss: Vec<f64> = (0..n)
        .map(|i| normal_quantile(0.5 + 0.5 * (i as f64 + 0.5) / n as f64))
        .collect();
    let g = run(&gauss, 100, &mut gpu);
    // |N(0, 1)| has an exponential-type tail: Clauset et al.'s test rejects it (p ≤ 0.1) at
    // n = 1000, which the KS criterion alone does not; quantiles of a power law pass.
    assert!(g <= 0.1, "Gaussian p_gof {g}");
    assert!(pareto > 0.1, "power-law p_gof {pareto}");
    println!("p_gof: Gaussian {g}, power law {pareto}");
}
