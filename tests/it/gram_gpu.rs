//! The GPU engine's Gram kernel (`shaders/gram.wgsl` through `Backend::gram`): every entry of
//! UUᵀ against sums written out here in f64, for each input dtype, a K that is not a multiple
//! of the tile, blocks cut into several calls, dispatches and tile-pair ranges, data far from
//! unit scale, and NaN; then `analyze --backend gpu --center FILE` on the digits gradients
//! against numpy's spectra about the full-batch gradient
//! (tests/data/digits/reference_gram_center.json, from gram_center.py), beside the CPU engine.

use crate::common::{self, Draws};

use std::path::Path;

use assert_cmd::Command;
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::gpu::{GpuEngine, GpuOptions};
use gradtail::engine::Backend;
use gradtail::input::{Block, BlockData};
use gradtail::stats::structure::{Centre, Gram};
use serde_json::Value;

/// Gram entries, relative to √(G_ii·G_jj) (≥ Σ|u_i u_j| by Cauchy–Schwarz, the scale of an
/// entry's rounding): the kernel rounds u = x − c to f32 (2^-24 relative, twice for the
/// centre's hi/lo pair) and sums each run of 64 products in plain f32 (≤ 64·2^-24 ≈ 3.8e-6 of
/// their Σ|u_i u_j|) before compensated and f64 sums; 1e-5 bounds that worst case with
/// margin (lavapipe: ≤ 2.5e-7) and still fails on a wrong centre, a dropped or doubled
/// coordinate, or a mixed-up tile.
const ENTRY: f64 = 1e-5;

/// Eigenvalues of the same Grams, relative to the trace: by Weyl's inequality an eigenvalue
/// moves by at most ‖δG‖₂ ≤ ‖δG‖_F ≤ ENTRY·tr G.
const EIGEN: f64 = ENTRY;

/// The digits spectra against numpy in f64 (top 10 eigenvalues, trace, effective rank),
/// relative: the kernel's f32 rounding moves eigenvalues by ~1e-8 of the trace (above), a
/// few 1e-7 of the 10th eigenvalue at most; measured on lavapipe, 6e-8. 1e-5 leaves room for
/// another adapter and fails on any definitional difference (centre, ddof, a tensor's offset
/// in the centre file: 1e-2 and more).
const DIGITS_GPU: f64 = 1e-5;

/// The CPU engine on the same: f64 throughout, rounding order and eigensolver backward error
/// (~1e-13) differ from numpy.
const DIGITS_CPU: f64 = 1e-9;

fn gpu(opts: GpuOptions) -> Option<GpuEngine> {
    common::gpu_or_skip(opts)
}

/// K × P row-major test data: heavy-tailed noise about per-coordinate offsets, times `scale`.
fn data(k: usize, p: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut d = Draws(seed);
    let offset: Vec<f64> = (0..p).map(|_| d.sas(2.0) * 3.0).collect();
    (0..k * p)
        .map(|i| (offset[i % p] + d.sas(1.8)) * scale)
        .collect()
}

/// The values as the block holds them, widened back to f64 (the oracle sees what the engines
/// see: f16 and bf16 rounding included, subnormals read as 0 as the engines read them).
fn as_block(x: &[f64], k: usize, p: usize, dtype: &str) -> (Block, Vec<f64>) {
    let data = match dtype {
        "f32" => BlockData::F32(x.iter().map(|&v| v as f32).collect()),
        "f64" => BlockData::F64(x.to_vec()),
        "f16" => BlockData::F16(
            x.iter()
                .map(|&v| half::f16::from_f64(v).to_bits())
                .collect(),
        ),
        "bf16" => BlockData::BF16(
            x.iter()
                .map(|&v| half::bf16::from_f64(v).to_bits())
                .collect(),
        ),
        _ => unreachable!(),
    };
    let mut wide = vec![0.0; k * p];
    data.widen_into(0..k * p, &mut wide);
    (Block::new(0..k, 0..p, data), wide)
}

/// The column means in f64.
fn means(x: &[f64], k: usize, p: usize) -> Vec<f64> {
    (0..p)
        .map(|j| (0..k).map(|r| x[r * p + j]).sum::<f64>() / k as f64)
        .collect()
}

/// Σ_j u_aj·u_bj written out in f64, row-major K × K (both triangles).
fn oracle(x: &[f64], c: &[f64], k: usize, p: usize) -> Vec<f64> {
    let u: Vec<f64> = (0..k * p).map(|i| x[i] - c[i % p]).collect();
    let mut g = vec![0.0; k * k];
    for a in 0..k {
        for b in a..k {
            let s: f64 = (0..p).map(|j| u[a * p + j] * u[b * p + j]).sum();
            g[a * k + b] = s;
            g[b * k + a] = s;
        }
    }
    g
}

/// The largest entry error relative to √(G_ii·G_jj), over the lower triangle `Gram` keeps.
fn entry_error(got: &Gram, want: &[f64], k: usize) -> f64 {
    let g = got.to_parts();
    let mut worst: f64 = 0.0;
    for i in 0..k {
        for j in 0..=i {
            let scale = (want[i * k + i] * want[j * k + j]).sqrt();
            worst = worst.max((g[i * k + j] - want[i * k + j]).abs() / scale);
        }
    }
    worst
}

/// The largest eigenvalue difference between two Grams' spectra, relative to the trace.
fn eigen_error(a: &Gram, b: &Gram) -> f64 {
    let (a, b) = (
        a.finish(Centre::Exact).unwrap(),
        b.finish(Centre::Exact).unwrap(),
    );
    assert_eq!(a.eigenvalues.len(), b.eigenvalues.len());
    a.eigenvalues
        .iter()
        .zip(&b.eigenvalues)
        .map(|(x, y)| (x - y).abs() / b.trace)
        .fold(0.0, f64::max)
}

/// Each dtype at K = 200 (three full tiles of 64 and one of 8), P = 1,500, about the column
/// means: the GPU Gram against the f64 oracle, entry by entry and in its eigenvalues, and the
/// CPU engine's against the same oracle to rounding.
#[test]
fn every_dtype_matches_sums_in_f64() {
    let Some(mut g) = gpu(GpuOptions::default()) else {
        return;
    };
    let mut cpu = CpuEngine::new(2).unwrap();
    let (k, p) = (200, 1500);
    let x = data(k, p, 1, 1.0);
    for dtype in ["f32", "f16", "bf16", "f64"] {
        let (block, wide) = as_block(&x, k, p, dtype);
        let c = means(&wide, k, p);
        let want = oracle(&wide, &c, k, p);
        let mut on_gpu = Gram::new(k);
        g.gram(&block, &c, &mut on_gpu).unwrap();
        let mut on_cpu = Gram::new(k);
        cpu.gram(&block, &c, &mut on_cpu).unwrap();
        assert_eq!(on_gpu.coords(), p as u64);
        let (e_gpu, e_cpu) = (
            entry_error(&on_gpu, &want, k),
            entry_error(&on_cpu, &want, k),
        );
        let e_eig = eigen_error(&on_gpu, &on_cpu);
        println!("{dtype}: entries {e_gpu:e} (cpu {e_cpu:e}), eigenvalues {e_eig:e} of the trace");
        assert!(e_gpu < ENTRY, "{dtype}: entry error {e_gpu:e}");
        assert!(e_cpu < 1e-12, "{dtype}: cpu entry error {e_cpu:e}");
        assert!(e_eig < EIGEN, "{dtype}: eigenvalue error {e_eig:e}");
    }
}

/// A block cut into three calls of uneven width, each cut again by a binding of a few output
/// tiles into several dispatches of columns and of tile pairs, adds up to the oracle's Gram of
/// the whole: no coordinate or tile pair lost or counted twice at the seams. Also exact
/// centres (not column means) from a file-like vector.
#[test]
fn blocks_dispatches_and_tile_pairs_add_up() {
    let tile_bytes = 64 * 64 * 8;
    let Some(mut g) = gpu(GpuOptions {
        max_binding_bytes: Some(3 * tile_bytes),
        ..Default::default()
    }) else {
        return;
    };
    // K = 130: 3 tiles per side, 6 pairs, at most 3 per dispatch; ≤ 184 columns per dispatch.
    let (k, p) = (130, 1000);
    let x = data(k, p, 2, 1.0);
    let (_, wide) = as_block(&x, k, p, "f32");
    let mut d = Draws(9);
    let c: Vec<f64> = (0..p).map(|_| d.sas(2.0)).collect();
    let want = oracle(&wide, &c, k, p);
    let mut got = Gram::new(k);
    for cols in [0..1, 1..377, 377..p] {
        let vals: Vec<f32> = (0..k)
            .flat_map(|r| cols.clone().map(move |j| (r, j)))
            .map(|(r, j)| wide[r * p + j] as f32)
            .collect();
        let block = Block::new(0..k, cols.clone(), BlockData::F32(vals));
        g.gram(&block, &c[cols], &mut got).unwrap();
    }
    assert_eq!(got.coords(), p as u64);
    let e = entry_error(&got, &want, k);
    println!("three calls, small bindings: entries {e:e}");
    assert!(e < ENTRY, "entry error {e:e}");
}

/// Data 2^±80 from unit scale (inside the engine's f32 range of 2^-100 … 2^100, but with
/// products past f32's range): the kernel's power-of-two scaling gives the oracle's Gram.
#[test]
fn scale_of_the_data_does_not_matter() {
    let Some(mut g) = gpu(GpuOptions::default()) else {
        return;
    };
    let (k, p) = (70, 600);
    for scale in [2f64.powi(80), 2f64.powi(-80)] {
        let x = data(k, p, 3, scale);
        let (block, wide) = as_block(&x, k, p, "f32");
        let c = means(&wide, k, p);
        let want = oracle(&wide, &c, k, p);
        let mut got = Gram::new(k);
        g.gram(&block, &c, &mut got).unwrap();
        let e = entry_error(&got, &want, k);
        assert!(e < ENTRY, "scale {scale:e}: entry error {e:e}");
    }
}

/// A NaN or an infinity anywhere makes the Gram non-finite, as on the CPU engine.
#[test]
fn non_finite_values_make_the_gram_non_finite() {
    let Some(mut g) = gpu(GpuOptions::default()) else {
        return;
    };
    let (k, p) = (20, 50);
    for bad in [f32::NAN, f32::INFINITY] {
        let mut x: Vec<f32> = data(k, p, 4, 1.0).iter().map(|&v| v as f32).collect();
        x[7 * p + 33] = bad;
        let block = Block::new(0..k, 0..p, BlockData::F32(x));
        let mut got = Gram::new(k);
        g.gram(&block, &vec![0.0; p], &mut got).unwrap();
        assert!(got.finish(Centre::Exact).is_err(), "{bad}");
    }
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

/// `analyze` on the digits gradients about the full-batch gradient (`--center FILE`, the
/// file in the input's tensor order); the largest relative error of
/// every tensor's and the model's spectrum (top eigenvalues, trace, effective rank) against
/// numpy's about the same centre.
fn digits_about_full_gradient(backend: &str, dir: &Path) -> f64 {
    let out = dir.join(backend);
    Command::cargo_bin("gradtail")
        .unwrap()
        .env("RUST_LOG", "warn")
        .args([
            "analyze",
            "--backend",
            backend,
            "--no-fits",
            "--no-powerlaw",
        ])
        .arg("--center")
        .arg(common::data("digits/full_input_order.npy"))
        .arg(common::data("digits/stacked.safetensors"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let reference: Value = serde_json::from_slice(
        &std::fs::read(common::data("digits/reference_gram_center.json")).unwrap(),
    )
    .unwrap();
    let mut pairs: Vec<(String, &Value, &Value)> = summary["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap().to_owned();
            let want = &reference["tensors"][&name];
            (name, &t["spectrum"], want)
        })
        .collect();
    assert_eq!(pairs.len(), 4);
    pairs.push((
        "model".into(),
        &summary["model"]["spectrum"],
        &reference["model"],
    ));
    let mut worst: f64 = 0.0;
    for (name, got, want) in pairs {
        let eig = got["eigenvalues"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no spectrum"));
        let all = want["eigenvalues"].as_array().unwrap();
        assert_eq!(eig.len(), 10.min(all.len()), "{name}");
        let trace = want["trace"].as_f64().unwrap();
        for (g, w) in eig.iter().zip(all) {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            // fc1.bias has rank 9 (softmax bias gradients, and the full gradient, sum to
            // zero): its 10th eigenvalue is rounding residue, compared relative to the trace.
            worst = worst.max(if w > 1e-9 * trace {
                rel(g, w)
            } else {
                (g - w).abs() / trace
            });
        }
        for key in ["trace", "effective_rank"] {
            worst = worst.max(rel(got[key].as_f64().unwrap(), want[key].as_f64().unwrap()));
        }
    }
    worst
}

#[test]
fn digits_about_an_exact_centre_match_numpy_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = digits_about_full_gradient("cpu", dir.path());
    println!("cpu engine: largest relative error {cpu:e}");
    assert!(cpu < DIGITS_CPU, "cpu engine: {cpu:e}");
    if gpu(GpuOptions::default()).is_none() {
        return;
    }
    let on_gpu = digits_about_full_gradient("gpu", dir.path());
    println!("gpu engine: largest relative error {on_gpu:e}");
    assert!(on_gpu < DIGITS_GPU, "gpu engine: {on_gpu:e}");
}
