//! `gradtail analyze` with the structure statistics, end to end: the covariance spectra, noise
//! scales and power-law fits it writes for the digits gradients against numpy/scipy/powerlaw
//! (tests/data/digits/reference_structure.json), on the CPU engine and on the GPU engine; and
//! the undefined cases, each a null with its reason or a clear refusal with nothing written.

use crate::common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// Eigenvalues, trace, effective rank, slope, R² and noise scale on the CPU engine: f64
/// throughout, only summation order and the eigensolver's backward error (~1e-13) differ from
/// numpy; the contract is 1e-6 relative.
const CPU_SPECTRUM: f64 = 1e-6;

/// Power-law α and D: closed forms on the same data; the centre (the per-coordinate mean)
/// may differ from numpy's `x.mean(0)` in the last bit, which moves α and D by ~1e-15.
const FIT: f64 = 1e-12;

/// Likelihood ratios (R relative to max(|R|, 1), p in decades): the alternatives' Nelder–Mead
/// fits follow the package's path, so only rounding differs (~1e-13).
const RATIO: f64 = 1e-9;

/// The GPU engine: the Gram matrix is the `gram` kernel's, products of u rounded to f32 and
/// summed in runs of 64 before compensated and f64 sums (tests/it/gram_gpu.rs), so entries
/// carry ~2e-7 of √(G_ii·G_jj) and eigenvalues move by ~1e-8 of the trace. The window's
/// eigenvalues (down to rank 127, ~1e-3 of λ_max here) and the slope and R² fitted to them
/// are relative to far smaller values: the largest error on lavapipe is 1.4e-7 (slope, R²,
/// traces, eigenvalues, noise scale). 1e-5 leaves room for another adapter's rounding and
/// still fails on any definitional difference between the engines (a centre, ddof or window,
/// which move these by 1e-3 or more).
const GPU_SPECTRUM: f64 = 1e-5;

/// GPU power-law fits: the same shift of the centre moves every |u|, hence α, xmin and D, by
/// about as much (9e-15 on lavapipe); n_tail must be equal.
const GPU_FIT: f64 = 1e-9;

fn gradtail() -> Command {
    let mut c = Command::cargo_bin("gradtail").unwrap();
    c.env("RUST_LOG", "warn");
    c
}

fn rel(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs()
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every f64 tensor of a safetensors file, by name.
fn read_safetensors(path: &Path) -> std::collections::HashMap<String, Vec<f64>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name}");
            let v = view
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, v)
        })
        .collect()
}

/// Runs `analyze` on the stacked digits gradients with the spectrum, the noise scale at the
/// recorded batch size 16 and the dimension-wise fits, and `extra`; returns the output folder.
fn run_digits(backend: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("out-{backend}{}", extra.len()));
    gradtail()
        .args(["analyze", "--backend", backend, "--batch-size", "16"])
        .args(["--coords-dtype", "f64", "--no-fits"])
        .args(extra)
        .arg(common::data("digits/stacked.safetensors"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

/// Compares a `spectrum` object (and the noise scale beside it) with a reference entry;
/// returns the largest relative error.
/// `eps` is the unit roundoff of the engine's Gram: f64's on the CPU engine, f32's on the GPU.
fn check_spectrum(
    s: &Value,
    noise_scale: &Value,
    want: &Value,
    (tol, eps): (f64, f64),
    what: &str,
) -> f64 {
    let got: Vec<f64> = s["eigenvalues"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no spectrum: {s}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let top: Vec<f64> = want["eigenvalues_top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), top.len(), "{what}");
    // fc1.bias has rank 9 (softmax bias gradients sum to zero): its 10th eigenvalue is
    // rounding residue, compared at the scale λ_max · K · eps.
    let floor = top[0] * 256.0 * eps;
    let mut worst: f64 = 0.0;
    for (g, w) in got.iter().zip(&top) {
        if w.abs() < floor {
            assert!(
                g.abs() < floor,
                "{what}: eigenvalue {g} where numpy has {w}"
            );
        } else {
            worst = worst.max(rel(*g, *w));
        }
    }
    for (key, reference) in [
        ("slope", "spectrum_slope"),
        ("r2", "spectrum_r2"),
        ("trace", "trace"),
        ("effective_rank", "effective_rank"),
    ] {
        let e = rel(s[key].as_f64().unwrap(), want[reference].as_f64().unwrap());
        worst = worst.max(e);
    }
    worst = worst.max(rel(
        noise_scale.as_f64().unwrap(),
        want["noise_scale"].as_f64().unwrap(),
    ));
    assert_eq!(s["window"], want["window"], "{what}");
    assert!(worst < tol, "{what}: relative error {worst:e} > {tol:e}");
    worst
}

/// Compares a fit (α, xmin, D, n_tail, and with `ratios` the likelihood ratios) with the
/// package's; returns the largest relative error of α, xmin and D.
fn check_fit(got: (f64, f64, f64, u64), want: &Value, tol: f64, what: &str) -> f64 {
    let (alpha, xmin, d, n_tail) = got;
    assert_eq!(n_tail, want["n_tail"].as_u64().unwrap(), "{what}: n_tail");
    let e = rel(alpha, want["alpha"].as_f64().unwrap())
        .max(rel(xmin, want["xmin"].as_f64().unwrap()))
        .max(rel(d, want["D"].as_f64().unwrap()));
    assert!(e < tol, "{what}: α {alpha} xmin {xmin} D {d} vs {want}");
    e
}

fn check_ratio(got: &Value, want: &Value, what: &str) {
    let (r, p) = (want[0].as_f64().unwrap(), want[1].as_f64().unwrap());
    let (gr, gp) = (got["R"].as_f64().unwrap(), got["p"].as_f64().unwrap());
    let er = (gr - r).abs() / r.abs().max(1.0);
    let ep = (gp.log10() - p.log10()).abs();
    assert!(
        er < RATIO && ep < RATIO,
        "{what}: R {gr} vs {r}, p {gp} vs {p}"
    );
}

/// Checks a whole digits run against the reference; `tol` for spectra, `fit_tol` for fits.
fn check_digits(out: &Path, spectrum_tol: (f64, f64), fit_tol: f64, ratios: bool) {
    let reference = read_json(&common::data("digits/reference_structure.json"));
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["schema"], "gradtail.summary/3");
    let eig = read_safetensors(&out.join("spectrum.safetensors"));
    let (mut worst_s, mut worst_f): (f64, f64) = (0.0, 0.0);
    let tensors = summary["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 4);
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let want = &reference["tensors"][name];
        worst_s = worst_s.max(check_spectrum(
            &t["spectrum"],
            &t["noise_scale"],
            want,
            spectrum_tol,
            name,
        ));
        // Every eigenvalue in spectrum.safetensors: min(K − 1, P) of them, descending, the
        // first ten those of the summary.
        let all = &eig[&format!("{name}/eigenvalues")];
        assert_eq!(all.len(), 255.min(t["coords"].as_u64().unwrap() as usize));
        assert!(all.windows(2).all(|w| w[0] >= w[1]), "{name}");
        for (a, s) in all
            .iter()
            .zip(t["spectrum"]["eigenvalues"].as_array().unwrap())
        {
            // serde_json's default float parsing may be one ulp off.
            assert!(rel(*a, s.as_f64().unwrap()) < 1e-15, "{name}: {a} vs {s}");
        }
        // Dimension-wise: samples 0, 128 and 255; the reference fitted sample 0.
        let dim = t["powerlaw_dimension"].as_array().unwrap();
        let samples: Vec<u64> = dim.iter().map(|d| d["sample"].as_u64().unwrap()).collect();
        assert_eq!(samples, [0, 128, 255]);
        let (d0, w0) = (&dim[0], &want["dim_powerlaw_sample0"]);
        assert_eq!(d0["xmin_search"], "exact");
        let got = (
            d0["alpha"].as_f64().unwrap(),
            d0["xmin"].as_f64().unwrap(),
            d0["D"].as_f64().unwrap(),
            d0["n_tail"].as_u64().unwrap(),
        );
        worst_f = worst_f.max(check_fit(got, w0, fit_tol, name));
        if ratios {
            check_ratio(&d0["lr_lognormal"], &w0["lr_lognormal"], name);
            check_ratio(&d0["lr_exponential"], &w0["lr_exponential"], name);
        }
        assert!(t["powerlaw_iteration"].is_null());
    }
    worst_s = worst_s.max(check_spectrum(
        &summary["model"]["spectrum"],
        &summary["model"]["noise_scale"],
        &reference["model"],
        spectrum_tol,
        "model",
    ));
    assert_eq!(eig["model/eigenvalues"].len(), 255);
    println!("spectra: max relative error {worst_s:e}; power-law fits {worst_f:e}");
}

/// The iteration-wise fits of the reference's coordinates of the `fc1` tensors (630 + 10
/// coordinates: O(K²) fits each are slow in a test build), from
/// coords.safetensors (n_tail is not a map).
fn check_iteration_wise(backend: &str, dir: &Path, tol: f64) {
    let out = run_digits(
        backend,
        dir,
        &["--include", "fc1.*", "--powerlaw-coords", "--no-spectrum"],
    );
    let reference = read_json(&common::data("digits/reference_structure.json"));
    let summary = read_json(&out.join("summary.json"));
    let coords = read_safetensors(&out.join("coords.safetensors"));
    let mut worst: f64 = 0.0;
    for t in summary["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let map = |stat: &str| &coords[&format!("{name}/{stat}")];
        for (j, w) in reference["tensors"][name]["iter_powerlaw"]
            .as_object()
            .unwrap()
        {
            let j: usize = j.parse().unwrap();
            let e = rel(map("alpha_pl")[j], w["alpha"].as_f64().unwrap())
                .max(rel(map("xmin_pl")[j], w["xmin"].as_f64().unwrap()))
                .max(rel(map("ks_pl")[j], w["D"].as_f64().unwrap()));
            assert!(e < tol, "{name}[{j}]: error {e:e}");
            worst = worst.max(e);
        }
        let it = &t["powerlaw_iteration"];
        let fitted = it["fitted_coords"].as_u64().unwrap();
        let finite = map("alpha_pl").iter().filter(|v| v.is_finite()).count();
        assert_eq!(fitted as usize, finite, "{name}: {it}");
        let frac = it["ks_pass_frac"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&frac), "{name}: {it}");
        assert_eq!(it["ks_c"], 1.358);
    }
    assert_eq!(summary["tensors"].as_array().unwrap().len(), 2);
    println!("iteration-wise fits: max relative error {worst:e}");
}

#[test]
fn cpu_run_matches_numpy_and_powerlaw() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_digits("cpu", dir.path(), &[]);
    check_digits(&out, (CPU_SPECTRUM, f64::EPSILON), FIT, true);
    check_iteration_wise("cpu", dir.path(), FIT);
    // The CSV carries the scalars of the summary.
    let csv = std::fs::read_to_string(out.join("tensors.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for col in ["spectrum_slope", "spectrum_effective_rank", "noise_scale"] {
        assert!(header.contains(&col), "{col} missing from {header:?}");
    }
}

#[test]
fn gpu_run_matches_numpy_and_powerlaw() {
    if common::gpu_or_skip(Default::default()).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run_digits("gpu", dir.path(), &[]);
    check_digits(
        &out,
        (GPU_SPECTRUM, f64::from(f32::EPSILON)),
        GPU_FIT,
        false,
    );
    check_iteration_wise("gpu", dir.path(), GPU_FIT);
}

/// Runs `analyze` on one K × P float64 `.npy` with `args`; returns (summary, out folder).
fn run_npy(dir: &Path, k: usize, p: usize, x: &[f64], args: &[&str]) -> (Value, PathBuf) {
    let input = dir.join(format!("x{k}x{p}.npy"));
    common::write_npy_f64(&input, &[k, p], x);
    let out = dir.join(format!("out{k}x{p}"));
    gradtail()
        .arg("analyze")
        .arg(&input)
        .args(["--backend", "cpu", "--out"])
        .arg(&out)
        .args(args)
        .assert()
        .success();
    (read_json(&out.join("summary.json")), out)
}

/// Seeded heavy-tailed noise, K × P row-major.
fn noise(k: usize, p: usize, seed: u64) -> Vec<f64> {
    let mut d = common::Draws(seed);
    (0..k * p).map(|_| d.sas(1.7)).collect()
}

fn notes(v: &Value) -> String {
    v["notes"].to_string()
}

#[test]
fn a_window_with_fewer_than_three_eigenvalues_is_null_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    // P = 7 < K = 40: r = min(K − 1, P) = 7, window [2, 3] holds 2 eigenvalues.
    let (s, out) = run_npy(dir.path(), 40, 7, &noise(40, 7, 1), &[]);
    let t = &s["tensors"][0];
    assert!(t["spectrum"].is_null(), "{t}");
    assert!(notes(t).contains("only 2 eigenvalue(s)"), "{}", notes(t));
    assert!(s["model"]["spectrum"].is_null());
    assert!(notes(&s["model"]).contains("spectrum:"));
    // Nothing half-written: no eigenvalues for the tensor or the model.
    assert!(read_safetensors(&out.join("spectrum.safetensors")).is_empty());

    // K = 6 with many coordinates: r = K − 1 = 5, window [2, 2], one eigenvalue.
    let (s, _) = run_npy(dir.path(), 6, 300, &noise(6, 300, 2), &[]);
    assert!(s["tensors"][0]["spectrum"].is_null());
    assert!(notes(&s["tensors"][0]).contains("only 1 eigenvalue(s)"));

    // P = 12 < K = 40 is defined: 12 eigenvalues, window [2, 6], and they sum to the trace.
    let (s, out) = run_npy(dir.path(), 40, 12, &noise(40, 12, 3), &[]);
    let sp = &s["tensors"][0]["spectrum"];
    assert_eq!(sp["window"], serde_json::json!([2, 6]), "{s}");
    let all = &read_safetensors(&out.join("spectrum.safetensors"))["x40x12/eigenvalues"];
    assert_eq!(all.len(), 12);
    let trace = sp["trace"].as_f64().unwrap();
    assert!(rel(all.iter().sum::<f64>(), trace) < 1e-12);
}

#[test]
fn an_all_zero_sample_and_an_unresolved_mean_are_null_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (k, p) = (16, 50);
    // Rows in ± pairs of multiples of 2⁻¹⁰ (sums exact): every column mean is exactly 0, so
    // |ḡ|² = 0 < tr(C)/K; rows 0 and K/2 are 0.
    let half: Vec<f64> = noise(k / 2, p, 4)
        .iter()
        .map(|v| (v * 1024.0).round() / 1024.0)
        .collect();
    let mut x: Vec<f64> = half
        .iter()
        .copied()
        .chain(half.iter().map(|v| -v))
        .collect();
    x[..p].iter_mut().for_each(|v| *v = 0.0);
    x[(k / 2) * p..(k / 2 + 1) * p]
        .iter_mut()
        .for_each(|v| *v = 0.0);
    let (s, _) = run_npy(dir.path(), k, p, &x, &["--batch-size", "32"]);
    let t = &s["tensors"][0];
    assert!(t["noise_scale"].is_null() && s["model"]["noise_scale"].is_null());
    assert!(
        notes(t).contains("noise_scale: |ḡ|² − tr(C)/K"),
        "{}",
        notes(t)
    );
    let dim = &t["powerlaw_dimension"][0];
    assert_eq!(
        (dim["sample"].as_u64(), dim["n"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(dim["alpha"].is_null() && dim["n_tail"].is_null());
    assert!(
        notes(t).contains("powerlaw_dimension sample 0: the sample has only 0 distinct"),
        "{}",
        notes(t)
    );
    // Sample K/2 = 8 is zero too; sample K − 1 is fitted.
    assert!(t["powerlaw_dimension"][1]["alpha"].is_null());
    assert_eq!(t["powerlaw_dimension"][2]["sample"], 15);
    assert!(t["powerlaw_dimension"][2]["alpha"].as_f64().is_some());

    // With --center none the mean gradient is unknown: stated, not guessed.
    let (s, _) = run_npy(
        dir.path(),
        k,
        p,
        &noise(k, p, 5),
        &["--batch-size", "32", "--center", "none"],
    );
    assert!(notes(&s["tensors"][0]).contains("--center none"));
}

#[test]
fn bad_options_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.npy");
    common::write_npy_f64(&input, &[16, 20], &noise(16, 20, 6));
    for (args, message) in [
        (
            vec!["--powerlaw-samples", "3,16"],
            "--powerlaw-samples 16: the inputs hold 16 samples, numbered 0 to 15",
        ),
        (
            vec!["--batch-size", "0"],
            "--batch-size 0: the minibatch size must be a positive number",
        ),
    ] {
        let out = dir.path().join("out");
        gradtail()
            .arg("analyze")
            .arg(&input)
            .args(["--backend", "cpu", "--out"])
            .arg(&out)
            .args(&args)
            .assert()
            .failure()
            .stderr(predicates::str::contains(message));
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

#[test]
fn switches_turn_the_parts_off() {
    let dir = tempfile::tempdir().unwrap();
    let (s, out) = run_npy(
        dir.path(),
        16,
        40,
        &noise(16, 40, 7),
        &["--no-spectrum", "--no-powerlaw", "--powerlaw-samples", "5"],
    );
    let t = &s["tensors"][0];
    assert!(t["spectrum"].is_null() && t["powerlaw_dimension"].is_null());
    assert!(t["noise_scale"].is_null() && t["powerlaw_iteration"].is_null());
    assert_eq!(t["notes"], serde_json::json!([]));
    assert!(!out.join("spectrum.safetensors").exists());
    let bytes = std::fs::read(out.join("coords.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .len();
    // The core maps and the fits, no power-law maps.
    assert_eq!(names, gradtail::stats::Stat::maps(true, false).len());
    // Chosen samples, in order.
    let (s, _) = run_npy(
        dir.path(),
        16,
        41,
        &noise(16, 41, 8),
        &["--powerlaw-samples", "9,2"],
    );
    let samples: Vec<u64> = s["tensors"][0]["powerlaw_dimension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sample"].as_u64().unwrap())
        .collect();
    assert_eq!(samples, [2, 9]);
}
