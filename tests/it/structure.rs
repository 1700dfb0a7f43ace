//! Structure statistics on real gradients against references computed outside gradtail:
//! numpy/scipy spectra and noise scales, the `powerlaw` package's fits and likelihood-ratio
//! tests (tests/data/digits/reference_structure.json, powerlaw_scan.npy) and numpy sweep
//! slopes (tests/data/digits-sweep/reference_sweep.json). The inputs are prepared here with
//! plain loops (a tiny `.npy` reader, the sample mean); only `gradtail::stats::structure`
//! is under test.

use crate::common;

use std::path::Path;

use gradtail::stats::structure::alternatives::{compare, LikelihoodRatio};
use gradtail::stats::structure::powerlaw::EXACT_MAX_N;
use gradtail::stats::structure::sweep::slopes;
use gradtail::stats::structure::{
    noise_scale, BatchColumns, Centre, Gram, Sample, Spectrum, XminSearch,
};
use serde_json::Value;

/// Eigenvalues, trace, effective rank, slopes and noise scales: f64 throughout on both sides,
/// so only summation order and the eigensolver's backward error (~1e-13 relative) differ; 1e-9
/// leaves four orders of margin and fails on any definitional slip (ddof, window, centring).
const SPECTRUM: f64 = 1e-9;

/// Power-law α and D at the selected xmin: closed forms evaluated like the package's; only
/// libm rounding (numpy's SIMD log/pow against glibc) and summation order differ (~1e-15).
const FIT: f64 = 1e-12;

/// xmin, a data value: the last bit of the centred data may differ (see `check_fit`).
const XMIN: f64 = 1e-15;

/// Likelihood ratios: the alternatives are fitted along the same Nelder–Mead path (their
/// parameters come out bit for bit equal here), so R and p differ by libm and summation
/// rounding only (~1e-13 seen). R is compared relative to max(|R|, 1), since it crosses zero,
/// and p in decades (-log10 p); 1e-9 leaves margin for another platform's libm, and any
/// divergence of the optimizer's path would show at ~1e-9 or above.
const RATIO: f64 = 1e-9;

/// Sweep slopes: f64 moments, percentiles and medians reproduced as numpy computes them.
const SWEEP: f64 = 1e-9;

/// A C-order little-endian `<f4` or `<f8` `.npy` file as f64, with its shape.
pub(crate) fn read_npy(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let open = header.find("'shape': (").unwrap() + 10;
    let close = open + header[open..].find(')').unwrap();
    let shape: Vec<usize> = header[open..close]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = &bytes[start + len..];
    let values: Vec<f64> = if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect()
    } else {
        assert!(header.contains("'<f8'"), "{header}");
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

/// The digits stack centred by its sample mean (numpy's `x - x.mean(0)`: the axis-0 sum
/// runs row by row), and the mean itself.
pub(crate) struct Digits {
    pub(crate) k: usize,
    pub(crate) p: usize,
    pub(crate) u: Vec<f64>,
    pub(crate) mean: Vec<f64>,
    pub(crate) tensors: Vec<(String, usize, usize)>,
    pub(crate) reference: Value,
}

pub(crate) fn digits() -> Digits {
    let (shape, x) = read_npy(&common::data("digits/stack.npy"));
    let (k, p) = (shape[0], shape[1]);
    let mut mean = vec![0.0; p];
    for row in x.chunks_exact(p) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= k as f64);
    let u = x
        .chunks_exact(p)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
        .collect();
    Digits {
        k,
        p,
        u,
        mean,
        tensors: common::layout(&common::data("digits/layout.json")),
        reference: serde_json::from_slice(
            &std::fs::read(common::data("digits/reference_structure.json")).unwrap(),
        )
        .unwrap(),
    }
}

fn rel(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs()
    }
}

/// Checks one spectrum against a reference entry; returns the largest relative error.
fn check_spectrum(s: &Spectrum, want: &Value, what: &str) -> f64 {
    let mut worst: f64 = 0.0;
    let top = want["eigenvalues_top"].as_array().unwrap();
    assert_eq!(s.top(10).len(), top.len(), "{what}");
    // Eigenvalues at the rounding floor are compared at the scale of that floor,
    // λ_max · K · eps: fc1.bias has rank 9, not 10 (a softmax layer's bias gradients sum to
    // zero), and its 10th eigenvalue is 5e-19 in the reference.
    let floor = top[0].as_f64().unwrap() * 256.0 * f64::EPSILON;
    for (g, w) in s.top(10).iter().zip(top) {
        let w = w.as_f64().unwrap();
        if w.abs() < floor {
            assert!(
                g.abs() < floor,
                "{what}: eigenvalue {g} where the reference has {w}"
            );
        } else {
            worst = worst.max(rel(*g, w));
        }
    }
    for (g, key) in [
        (s.trace, "trace"),
        (s.effective_rank, "effective_rank"),
        (s.slope, "spectrum_slope"),
        (s.r2, "spectrum_r2"),
    ] {
        worst = worst.max(rel(g, want[key].as_f64().unwrap()));
    }
    let window: Vec<usize> = want["window"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(s.window.to_vec(), window, "{what}");
    assert!(worst < SPECTRUM, "{what}: relative error {worst:e}");
    worst
}

#[test]
fn spectra_and_noise_scales_match_numpy() {
    let d = digits();
    let mut model = Gram::new(d.k);
    let (mut worst, mut worst_ns): (f64, f64) = (0.0, 0.0);
    let (mut model_g2, mut model_trace) = (0.0, 0.0);
    for (name, off, size) in &d.tensors {
        // Column tiles of at most 1000 coordinates, read through the full row stride.
        let mut g = Gram::new(d.k);
        for start in (0..*size).step_by(1000) {
            let cols = 1000.min(size - start);
            g.add_tile(&d.u[off + start..], cols, d.p).unwrap();
        }
        model.combine(&g).unwrap();
        let s = g.finish(Centre::SampleMean).unwrap();
        assert_eq!(s.eigenvalues.len(), (d.k - 1).min(*size));
        let want = &d.reference["tensors"][name];
        worst = worst.max(check_spectrum(&s, want, name));
        let g2: f64 = d.mean[*off..off + size].iter().map(|m| m * m).sum();
        let ns = noise_scale(16.0, s.trace, g2, d.k, Centre::SampleMean).unwrap();
        let e = rel(ns, want["noise_scale"].as_f64().unwrap());
        assert!(e < SPECTRUM, "{name}: noise scale error {e:e}");
        worst_ns = worst_ns.max(e);
        model_g2 += g2;
        model_trace += s.trace;
    }
    let s = model.finish(Centre::SampleMean).unwrap();
    assert_eq!(model.coords(), d.p as u64);
    worst = worst.max(check_spectrum(&s, &d.reference["model"], "model"));
    assert!(rel(s.trace, model_trace) < 1e-13);
    let ns = noise_scale(16.0, s.trace, model_g2, d.k, Centre::SampleMean).unwrap();
    let e = rel(ns, d.reference["model"]["noise_scale"].as_f64().unwrap());
    assert!(e < SPECTRUM, "model: noise scale error {e:e}");
    worst_ns = worst_ns.max(e);
    println!("spectra: max relative error {worst:e}; noise scales {worst_ns:e}");
}

/// Largest errors seen over a set of fits: α and D relative, R relative to max(|R|, 1), p in
/// decades.
#[derive(Default, Debug)]
struct FitErrors {
    fit: f64,
    r: f64,
    p: f64,
}

fn check_ratio(got: &LikelihoodRatio, want: &Value, what: &str, errs: &mut FitErrors) {
    let (r, p) = (want[0].as_f64().unwrap(), want[1].as_f64().unwrap());
    let er = (got.r - r).abs() / r.abs().max(1.0);
    let ep = (got.p.log10() - p.log10()).abs();
    assert!(
        er < RATIO && ep < RATIO,
        "{what}: R {} vs {r}, p {} vs {p}",
        got.r,
        got.p
    );
    errs.r = errs.r.max(er);
    errs.p = errs.p.max(ep);
}

fn check_fit(values: &[f64], want: &Value, what: &str, errs: &mut FitErrors) {
    let sample = Sample::new(values).unwrap();
    let f = sample.fit(EXACT_MAX_N).unwrap();
    assert_eq!(f.xmin_search, XminSearch::Exact);
    assert_eq!(f.n_tail as u64, want["n_tail"].as_u64().unwrap(), "{what}");
    // xmin is one of the data: the iteration-wise references centred each column by its own
    // (pairwise-summed) mean, this test by `x - x.mean(0)`, so it may differ in the last bit.
    let xmin = want["xmin"].as_f64().unwrap();
    assert!(
        rel(f.xmin, xmin) < XMIN,
        "{what}: xmin {} vs {xmin}",
        f.xmin
    );
    let e =
        rel(f.alpha, want["alpha"].as_f64().unwrap()).max(rel(f.d, want["D"].as_f64().unwrap()));
    assert!(e < FIT, "{what}: α {} D {} vs {want}", f.alpha, f.d);
    errs.fit = errs.fit.max(e);
    let c = compare(sample.tail(f.xmin), f.xmin, f.alpha);
    check_ratio(&c.lognormal, &want["lr_lognormal"], what, errs);
    check_ratio(&c.exponential, &want["lr_exponential"], what, errs);
}

#[test]
fn dimension_and_iteration_fits_match_powerlaw() {
    let d = digits();
    let mut errs = FitErrors::default();
    let mut fits = 0;
    for (name, off, size) in &d.tensors {
        let want = &d.reference["tensors"][name];
        let row0: Vec<f64> = d.u[*off..off + size].iter().map(|v| v.abs()).collect();
        check_fit(&row0, &want["dim_powerlaw_sample0"], name, &mut errs);
        fits += 1;
        for (j, w) in want["iter_powerlaw"].as_object().unwrap() {
            let j: usize = j.parse().unwrap();
            let col: Vec<f64> = (0..d.k).map(|r| d.u[r * d.p + off + j].abs()).collect();
            check_fit(&col, w, &format!("{name}[{j}]"), &mut errs);
            fits += 1;
        }
    }
    println!("{fits} power-law fits: {errs:?}");
}

#[test]
fn xmin_scan_matches_powerlaw_at_every_candidate_and_the_grid_picks_from_it() {
    let d = digits();
    let (_, off, size) = &d.tensors[0];
    let row0: Vec<f64> = d.u[*off..off + size].iter().map(|v| v.abs()).collect();
    let sample = Sample::new(&row0).unwrap();
    let (shape, scan_ref) = read_npy(&common::data("digits/powerlaw_scan.npy"));
    let m = shape[1];
    let col = |row: usize| &scan_ref[row * m..(row + 1) * m];
    let (xmins, ds, alphas, valid) = (col(0), col(1), col(2), col(3));

    let scan = sample.scan(XminSearch::Exact);
    assert_eq!(scan.len(), m);
    let mut worst: f64 = 0.0;
    for (i, c) in scan.iter().enumerate() {
        assert_eq!(c.xmin, xmins[i]);
        assert_eq!(c.valid, valid[i] == 1.0, "candidate {i}: {c:?}");
        // Refitted candidates (α ≤ 1.5 or > 3) included: the Nelder–Mead path is the same.
        let e = rel(c.alpha, alphas[i]).max(rel(c.d, ds[i]));
        assert!(
            e < FIT,
            "candidate {i}: {c:?} vs α {} D {}",
            alphas[i],
            ds[i]
        );
        worst = worst.max(e);
    }
    println!("exact scan over {m} candidates: max relative error {worst:e}");

    // The grid: a subset of the same candidates, and the smallest valid D among them.
    let fit = sample.fit(100).unwrap();
    assert_eq!(fit.xmin_search, XminSearch::Grid);
    let grid: Vec<f64> = sample
        .scan(XminSearch::Grid)
        .iter()
        .map(|c| c.xmin)
        .collect();
    assert!(grid.len() < m);
    let best = (0..m)
        .filter(|&i| valid[i] == 1.0 && grid.contains(&xmins[i]))
        .min_by(|&a, &b| ds[a].total_cmp(&ds[b]))
        .unwrap();
    assert_eq!(fit.xmin, xmins[best]);
    assert!(rel(fit.d, ds[best]) < FIT && rel(fit.alpha, alphas[best]) < FIT);
    let exact = sample.fit(EXACT_MAX_N).unwrap();
    assert!(fit.d >= exact.d);
    println!(
        "grid: {} of {m} candidates, xmin {} D {} (exact: xmin {} D {})",
        grid.len(),
        fit.xmin,
        fit.d,
        exact.xmin,
        exact.d
    );
}

#[test]
fn sweep_slopes_match_numpy() {
    let want: Value = serde_json::from_slice(
        &std::fs::read(common::data("digits-sweep/reference_sweep.json")).unwrap(),
    )
    .unwrap();
    let mut points: Vec<(String, Vec<_>)> = Vec::new();
    let mut dataset = 0;
    for b in ["b4", "b16", "b64"] {
        let (shape, x) = read_npy(&common::data(&format!("digits-sweep/{b}/stack.npy")));
        let lay: Value = serde_json::from_slice(
            &std::fs::read(common::data(&format!("digits-sweep/{b}/layout.json"))).unwrap(),
        )
        .unwrap();
        dataset = lay["dataset_size"].as_u64().unwrap();
        let batch = lay["batch"].as_u64().unwrap();
        let (k, p) = (shape[0], shape[1]);
        for (i, (name, off, size)) in
            common::layout(&common::data(&format!("digits-sweep/{b}/layout.json")))
                .into_iter()
                .enumerate()
        {
            // Two coordinate ranges combined, as shards would be.
            let half = size / 2;
            let mut cols = BatchColumns::new(k);
            cols.add_tile(&x[off..], half, p).unwrap();
            let mut rest = BatchColumns::new(k);
            rest.add_tile(&x[off + half..], size - half, p).unwrap();
            cols.combine(&rest).unwrap();
            if points.len() <= i {
                points.push((name.clone(), Vec::new()));
            }
            assert_eq!(points[i].0, name);
            points[i].1.push(cols.finish(batch));
        }
    }
    let mut worst: f64 = 0.0;
    for (name, pts) in &points {
        let s = slopes(pts, dataset).unwrap();
        let w = &want[name];
        for (got, key) in [
            (s.trace_slope, "trace_slope"),
            (s.alpha_eff.clone().unwrap(), "alpha_eff"),
            (s.kurtosis_slope.clone().unwrap(), "kurtosis_slope"),
        ] {
            let e = (got - w[key].as_f64().unwrap()).abs();
            assert!(e < SWEEP, "{name} {key}: {got} vs {}", w[key]);
            worst = worst.max(e);
        }
    }
    println!("sweep slopes: max absolute error {worst:e}");
}
