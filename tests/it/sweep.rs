//! `gradtail sweep` end to end: the digits-sweep snapshots (a 64 → 64 → 10 MLP at fixed weights,
//! batch sizes 4, 16 and 64 of N = 1797) against the numpy slopes committed in
//! tests/data/digits-sweep/reference_sweep.json, on both engines; and each bad input.

use crate::common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// The GPU engine's slopes against numpy's. The interquartile ranges are taken on the host in
/// f64 on either engine; the traces and kurtoses come from the engine's f32 moments, ~1e-4
/// relative per coordinate (common::tolerance::GPU), which move a log–log slope over a
/// 16-fold span of B (ln 16 ≈ 2.8) by about 1e-4 / 2.8 per point: 1e-3 bounds that with
/// margin, and still fails on any definitional slip (ddof, bias, a dropped coordinate).
const GPU_SLOPE: f64 = 1e-3;

const DATASET: &str = "1797";

fn gradtail() -> Command {
    let mut c = Command::cargo_bin("gradtail").unwrap();
    c.env("RUST_LOG", "warn");
    c
}

/// The values of a C-order little-endian float32 `.npy`, and its shape.
fn read_f32_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"));
    let open = header.find("'shape': (").unwrap() + 10;
    let close = open + header[open..].find(')').unwrap();
    let shape = header[open..close]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, values)
}

/// One batch size of digits-sweep: K, and per tensor its name, shape and (K, shape) values.
struct Batch {
    k: usize,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

fn batch(b: &str) -> Batch {
    let (shape, x) = read_f32_npy(&common::data(&format!("digits-sweep/{b}/stack.npy")));
    let (k, p) = (shape[0], shape[1]);
    let lay: Value = serde_json::from_slice(
        &std::fs::read(common::data(&format!("digits-sweep/{b}/layout.json"))).unwrap(),
    )
    .unwrap();
    let tensors = lay["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let (off, size) = (
                t["offset"].as_u64().unwrap() as usize,
                t["size"].as_u64().unwrap() as usize,
            );
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let values = (0..k)
                .flat_map(|i| x[i * p + off..i * p + off + size].iter().copied())
                .collect();
            (t["name"].as_str().unwrap().to_owned(), shape, values)
        })
        .collect();
    Batch { k, tensors }
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn npy_bytes(shape: &[usize], v: &[f32]) -> Vec<u8> {
    let mut out = gradtail::input::npy::header_bytes("<f4", shape);
    out.extend(le_bytes(v));
    out
}

fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<u8>)]) {
    let views = tensors.iter().map(|(n, s, b)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap();
        (n.clone(), view)
    });
    safetensors::tensor::serialize_to_file(views, None, path).unwrap();
}

/// Writes digits-sweep in three of the forms `analyze` reads — batch 4 as an .npz, 16 as one
/// stacked .safetensors file, 64 as a folder of per-step files — and returns the `B:PATH`
/// arguments.
fn digits_inputs(dir: &Path) -> Vec<String> {
    let with_k = |k: usize, s: &[usize]| [&[k][..], s].concat();
    let b4 = batch("b4");
    let npz = dir.join("b4.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&npz).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, shape, v) in &b4.tensors {
        zip.start_file(format!("{name}.npy"), stored).unwrap();
        std::io::Write::write_all(&mut zip, &npy_bytes(&with_k(b4.k, shape), v)).unwrap();
    }
    zip.finish().unwrap();

    let b16 = batch("b16");
    let stacked = dir.join("b16.safetensors");
    let tensors: Vec<_> = b16
        .tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), with_k(b16.k, s), le_bytes(v)))
        .collect();
    write_safetensors(&stacked, &tensors);

    let b64 = batch("b64");
    let steps = dir.join("b64");
    std::fs::create_dir(&steps).unwrap();
    for i in 0..b64.k {
        let step: Vec<_> = b64
            .tensors
            .iter()
            .map(|(n, s, v)| {
                let p: usize = s.iter().product();
                (n.clone(), s.clone(), le_bytes(&v[i * p..(i + 1) * p]))
            })
            .collect();
        write_safetensors(&steps.join(format!("step{i:04}.safetensors")), &step);
    }
    let arg = |b: u32, p: PathBuf| format!("{b}:{}", p.display());
    vec![arg(4, npz), arg(16, stacked), arg(64, steps)]
}

fn run_sweep(backend: &str) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut args = vec!["sweep".to_owned()];
    args.extend(digits_inputs(dir.path()));
    for a in [
        "--dataset-size",
        DATASET,
        "--backend",
        backend,
        "--out",
        out.to_str().unwrap(),
    ] {
        args.push(a.to_owned());
    }
    gradtail().args(&args).assert().success();
    let json = serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    (dir, json)
}

/// Each tensor's slopes against numpy's; returns the largest absolute error.
fn check_slopes(json: &Value, tol: f64) -> f64 {
    let want: Value = serde_json::from_slice(
        &std::fs::read(common::data("digits-sweep/reference_sweep.json")).unwrap(),
    )
    .unwrap();
    let tensors = json["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), want.as_object().unwrap().len());
    let mut worst: f64 = 0.0;
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        for key in ["trace_slope", "alpha_eff", "kurtosis_slope"] {
            let (got, w) = (t[key].as_f64().unwrap(), want[name][key].as_f64().unwrap());
            assert!((got - w).abs() < tol, "{name} {key}: {got} vs numpy {w}");
            worst = worst.max((got - w).abs());
        }
    }
    worst
}

#[test]
fn cli_matches_numpy_slopes_on_the_cpu_engine() {
    let (dir, json) = run_sweep("cpu");
    let worst = check_slopes(&json, common::tolerance::CPU);
    println!("sweep slopes (CPU engine): max absolute error {worst:e}");
    assert_eq!(json["schema"], "gradtail.sweep/1");
    assert_eq!(json["dataset_size"], 1797);
    assert_eq!(json["engine"]["engine"], "cpu");

    // Per batch size: tr(C_B) against a direct f64 sum of ddof-1 variances, and the pooled α
    // as `analyze` reports it for the same snapshots.
    for (bi, b) in ["b4", "b16", "b64"].into_iter().enumerate() {
        let data = batch(b);
        let k = data.k as f64;
        let inputs: Vec<String> = json["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap().to_owned())
            .collect();
        let analysis = common::analyze_files(
            &[PathBuf::from(&inputs[bi])],
            &Default::default(),
            &mut gradtail::engine::cpu::CpuEngine::new(0).unwrap(),
        );
        for (ti, (name, shape, v)) in data.tensors.iter().enumerate() {
            let p: usize = shape.iter().product();
            let trace: f64 = (0..p)
                .map(|j| {
                    let col: Vec<f64> = (0..data.k).map(|i| v[i * p + j] as f64).collect();
                    let m = col.iter().sum::<f64>() / k;
                    col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1.0)
                })
                .sum();
            let t = &json["tensors"][ti];
            assert_eq!(t["name"], name.as_str());
            let row = &t["batches"][bi];
            assert_eq!(row["batch"], [4, 16, 64][bi]);
            let got = row["trace"].as_f64().unwrap();
            assert!(
                (got / trace - 1.0).abs() < common::tolerance::CPU,
                "{name} B={b}: trace {got} vs {trace}"
            );
            // Matched by name: a safetensors file may list its tensors in another order.
            let tb = analysis
                .tensors
                .iter()
                .find(|t| t.meta.name == *name)
                .unwrap()
                .summary
                .alpha_time_blocked;
            // The same pipeline; threads may sum in another order.
            let got_tb = row["alpha_time_blocked"].as_f64().unwrap();
            assert!(
                (got_tb / tb - 1.0).abs() < 1e-12,
                "{name} {b}: α_tb {got_tb} vs {tb}"
            );
            let mc = row["alpha_mcculloch_median"].as_f64().unwrap();
            assert!(
                (0.5..=2.0).contains(&mc),
                "{name} {b}: McCulloch median {mc}"
            );
            for key in ["kurtosis_median", "iqr_median"] {
                assert!(row[key].as_f64().unwrap() > 0.0, "{name} {b} {key}");
            }
        }
    }

    // The page: four plots per tensor, each with its reading underneath.
    let html = std::fs::read_to_string(dir.path().join("out/sweep.html")).unwrap();
    for t in json["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        for kind in ["trace", "iqr", "kurtosis", "alpha"] {
            assert!(
                html.contains(&format!("<svg id=\"sweep-{name}-{kind}\"")),
                "no {kind} plot for {name}"
            );
        }
    }
    assert_eq!(html.matches("<figcaption>").count(), 4 * 4);
    assert!(html.contains("Simsekli") && html.contains("Wu et al."));
}

#[test]
fn cli_matches_numpy_slopes_on_the_gpu_engine() {
    if common::gpu_or_skip(Default::default()).is_none() {
        return;
    }
    let (_dir, json) = run_sweep("gpu");
    assert_eq!(json["engine"]["engine"], "gpu");
    let worst = check_slopes(&json, GPU_SLOPE);
    println!("sweep slopes (GPU engine): max absolute error {worst:e}");
}

/// A failing sweep: non-zero exit, one line on stderr containing each of `says`, and nothing
/// in `out` (which holds one file of the user's beforehand) nor beside it.
fn fails(dir: &Path, args: &[String], says: &[&str]) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let mut all = vec!["sweep".to_owned()];
    all.extend(args.iter().cloned());
    all.extend(["--dataset-size", DATASET, "--backend", "cpu", "--out"].map(str::to_owned));
    all.push(out.display().to_string());
    let got = gradtail().args(&all).output().unwrap();
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(!got.status.success(), "{args:?} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for s in says {
        assert!(err.contains(s), "{args:?}: '{s}' not in: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["keep.txt"], "{args:?}");
    let beside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(beside.is_empty(), "{args:?}: staging left behind");
}

#[test]
fn bad_sweeps_say_what_to_do_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // One tensor `w` (K = 16) per batch size, in its own folder so the names agree.
    let noise = |p: usize, seed: usize| -> Vec<f32> {
        (0..16 * p)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0) - 0.5)
            .collect()
    };
    let put = |sub: &str, file: &str, p: usize, v: &[f32]| {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        let path = dir.join(sub).join(file);
        std::fs::write(&path, npy_bytes(&[16, p], v)).unwrap();
        path.display().to_string()
    };
    let a = put("b8", "w.npy", 6, &noise(6, 1));
    let b = put("b32", "w.npy", 6, &noise(6, 2));
    let wide = put("wide", "w.npy", 7, &noise(7, 3));
    let other = put("other", "v.npy", 6, &noise(6, 4));
    std::fs::create_dir_all(dir.join("tiny")).unwrap();
    let tiny = dir.join("tiny/w.npy");
    std::fs::write(&tiny, npy_bytes(&[3, 6], &noise(6, 6)[..18])).unwrap();
    let mut bad = noise(6, 5);
    bad[7] = f32::NAN;
    let nan = put("nan", "w.npy", 6, &bad);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    fails(
        dir,
        &s(&[&format!("8:{a}")]),
        &["8:", "two or more batch sizes"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &b]),
        &["sweep input '", "BATCH:PATH"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("x:{b}")]),
        &["'x' is not a whole number", "BATCH:PATH"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("8:{b}")]),
        &["same batch size", "give each batch size once"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("1797:{b}")]),
        &["1797:", "not below --dataset-size 1797"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("32:{wide}")]),
        &["[tensor w]", "shape 6 here but 7", "same tensors"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("32:{other}")]),
        &["[tensor w]", "not in sweep input 32:", "--include"],
    );
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("32:{}", tiny.display())]),
        &["[tensor w]", "only K = 3 samples"],
    );
    // Fails after the output's staging folder exists: it is removed, `out` left as it was.
    fails(
        dir,
        &s(&[&format!("8:{a}"), &format!("32:{nan}")]),
        &["[tensor w]", "non-finite"],
    );
    // The same inputs without the damage succeed, so each failure above is the damage's.
    gradtail()
        .args([
            "sweep",
            &format!("8:{a}"),
            &format!("32:{b}"),
            "--dataset-size",
            DATASET,
            "--backend",
            "cpu",
            "--out",
        ])
        .arg(dir.join("ok"))
        .assert()
        .success();
    assert!(dir.join("ok/sweep.json").exists() && dir.join("ok/sweep.html").exists());
}
