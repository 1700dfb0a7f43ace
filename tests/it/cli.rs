//! End-to-end tests of the `gradtail` binary: real files in, files, exit codes and messages out.

use crate::common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn gradtail() -> Command {
    let mut c = Command::cargo_bin("gradtail").unwrap();
    c.env("RUST_LOG", "warn");
    c
}

fn noise(k: usize, p: usize) -> Vec<f32> {
    (0..k * p)
        .map(|i| (((i * 7919) % 1000) as f32 / 1000.0 - 0.5) * (1.0 + (i % 3) as f32))
        .collect()
}

#[test]
fn analyze_writes_all_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    gradtail()
        .args([
            "analyze",
            common::data("digits/stack.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("stack").and(predicate::str::contains("α_tb")));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["schema"], "gradtail.summary/3");
    assert_eq!(summary["samples"], 256);
    assert_eq!(summary["coords"], 4810);
    assert_eq!(summary["engine"]["engine"], "cpu");
    let t = &summary["tensors"][0];
    assert_eq!(t["name"], "stack");
    assert_eq!(t["constant_coords"], 719);
    // Whole-input Simsekli estimate equals the reference's model value (the stack is the model).
    let want = common::digits_reference_json()["model_simsekli_flat"]
        .as_f64()
        .unwrap();
    assert!((summary["model"]["alpha_simsekli_flat"].as_f64().unwrap() - want).abs() < 1e-9);
    let csv = std::fs::read_to_string(out.join("tensors.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2);
    // The README's contract: these columns, in this order, among others.
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = |c: &str| {
        header
            .iter()
            .position(|h| *h == c)
            .unwrap_or_else(|| panic!("no column {c}"))
    };
    assert_eq!(&header[..4], ["name", "shape", "coords", "block_size"]);
    assert!(at("alpha_time_blocked") < at("alpha_time_blocked_ci_low"));
    assert!(at("alpha_time_blocked_ci_low") < at("alpha_time_blocked_ci_high"));
    for c in [
        "alpha_time_blocked_se",
        "alpha_time_blocked_se_iid",
        "alpha_block_q05",
        "alpha_logm_q95",
        "few_finite_coords",
        "dropped_blocks",
        "alpha_mcculloch_q05",
        "alpha_mcculloch_q95",
        "alpha_mcculloch_below_1_9_frac",
        "mcculloch_degenerate",
        "stable_beats_gauss_frac",
        "ad_reject_frac",
        "top1_share_median",
    ] {
        at(c);
    }
    assert!(lines[1].starts_with("stack,4810,4810,16,"));
    let bytes = std::fs::read(out.join("coords.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor("stack/alpha_block").unwrap();
    assert_eq!(
        (v.dtype(), v.shape()),
        (safetensors::Dtype::F32, &[4810][..])
    );
    // Every statistic, the fits included (they are on by default).
    assert_eq!(
        st.names().len(),
        gradtail::stats::Stat::maps(true, false).len()
    );
    assert!(st.tensor("stack/ks_stable").is_ok());
}

#[test]
fn coords_keep_the_tensor_shape_and_center_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let x = noise(8, 6);
    let path = dir.path().join("w.npy");
    common::write_npy_f32(&path, &[8, 2, 3], &x);
    let centre = dir.path().join("c.npy");
    common::write_npy_f32(&centre, &[6], &[0.0; 6]);
    let out = dir.path().join("o");
    gradtail()
        .args([
            "analyze",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--center",
            centre.to_str().unwrap(),
            "--backend",
            "cpu",
        ])
        .assert()
        .success();
    let bytes = std::fs::read(out.join("coords.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("w/mean").unwrap().shape(), &[2, 3]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["options"]["center"]["file"]
        .as_str()
        .unwrap()
        .ends_with("c.npy"));
}

#[test]
fn fortran_and_big_endian_inputs_give_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (k, p) = (12, 5);
    let x = noise(k, p);
    let c = dir.path().join("c.npy");
    common::write_npy_f32(&c, &[k, p], &x);
    // Same array, Fortran order, big-endian float64.
    let mut bytes = gradtail::input::npy::header_bytes(">f8", &[k, p]);
    let text = String::from_utf8(bytes[10..].to_vec())
        .unwrap()
        .replace("'fortran_order': False", "'fortran_order': True ");
    bytes.truncate(10);
    bytes.extend_from_slice(text.as_bytes());
    for j in 0..p {
        for r in 0..k {
            bytes.extend_from_slice(&(x[r * p + j] as f64).to_be_bytes());
        }
    }
    let f = dir.path().join("f.npy");
    std::fs::write(&f, bytes).unwrap();
    let read = |name: &str| {
        let out = dir.path().join(format!("o_{name}"));
        gradtail()
            .args([
                "analyze",
                dir.path().join(name).to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                "cpu",
            ])
            .assert()
            .success();
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        s["tensors"][0]["alpha_time_blocked"].as_f64().unwrap()
    };
    assert_eq!(read("c.npy"), read("f.npy"));
}

#[test]
fn synth_then_analyze_recovers_alpha() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s.npy");
    gradtail()
        .args([
            "synth",
            "--alpha",
            "1.5",
            "--samples",
            "512",
            "--params",
            "2000",
            "--seed",
            "7",
            data.to_str().unwrap(),
        ])
        .assert()
        .success();
    let out = dir.path().join("o");
    gradtail()
        .args([
            "analyze",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--center",
            "none",
            "--backend",
            "cpu",
        ])
        .assert()
        .success();
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let a = s["tensors"][0]["alpha_time_blocked"].as_f64().unwrap();
    assert!((a - 1.5).abs() < 0.02, "{a}");
}

#[test]
fn demo_runs_without_arguments() {
    gradtail()
        .arg("demo")
        .args(["--backend", "cpu"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("sas_alpha_1.5").and(predicate::str::contains("gaussian")),
        );
}

/// Runs `analyze` on bad input and checks: non-zero exit, a one-line message naming `names`
/// and containing `says`, and no output folder.
fn fails(dir: &Path, inputs: &[&Path], extra: &[&str], names: &str, says: &str) {
    let out = dir.join("out");
    let mut args: Vec<String> = vec!["analyze".into()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap().to_owned()));
    args.extend([
        "--out".into(),
        out.to_str().unwrap().into(),
        "--backend".into(),
        "cpu".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let assert = gradtail().args(&args).assert().failure().code(1);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains(names),
        "message should name {names}: {stderr}"
    );
    assert!(
        stderr.contains(says),
        "message should say '{says}': {stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line error expected: {stderr}"
    );
    assert!(!out.exists(), "nothing may be left in --out");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "staging files left behind");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good.npy");
    common::write_npy_f32(&good, &[8, 3], &noise(8, 3));

    let not_npy = d.join("notes.npy");
    std::fs::write(&not_npy, b"hello, this is not an array").unwrap();
    fails(d, &[&not_npy], &[], "notes.npy", "not an .npy file");

    let truncated = d.join("truncated.npy");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    fails(d, &[&truncated], &[], "truncated.npy", "truncated");

    let lying = d.join("lying.npy");
    let mut bytes = gradtail::input::npy::header_bytes("<f4", &[4, 3]);
    bytes.extend(std::iter::repeat_n(0u8, 8 * 3 * 4));
    std::fs::write(&lying, bytes).unwrap();
    fails(
        d,
        &[&lying],
        &[],
        "lying.npy",
        "disagrees with the file length",
    );

    let ints = d.join("ints.npy");
    let mut bytes = gradtail::input::npy::header_bytes("<i4", &[8, 3]);
    bytes.extend(std::iter::repeat_n(1u8, 8 * 3 * 4));
    std::fs::write(&ints, bytes).unwrap();
    fails(d, &[&ints], &[], "ints.npy", "integer dtype");

    let complex = d.join("complex.npy");
    let mut bytes = gradtail::input::npy::header_bytes("<c8", &[8, 3]);
    bytes.extend(std::iter::repeat_n(0u8, 8 * 3 * 8));
    std::fs::write(&complex, bytes).unwrap();
    fails(d, &[&complex], &[], "complex.npy", "complex dtype");

    let few = d.join("few.npy");
    common::write_npy_f32(&few, &[3, 4], &noise(3, 4));
    fails(d, &[&few], &[], "few.npy", "at least 4");

    let empty = d.join("empty.npy");
    common::write_npy_f32(&empty, &[8, 0], &[]);
    fails(d, &[&empty], &[], "empty.npy", "P = 0");

    let other_k = d.join("other_k.npy");
    common::write_npy_f32(&other_k, &[6, 3], &noise(6, 3));
    fails(
        d,
        &[&good, &other_k],
        &[],
        "other_k.npy",
        "same number of samples",
    );

    let short_centre = d.join("centre.npy");
    common::write_npy_f32(&short_centre, &[2], &[0.0, 0.0]);
    fails(
        d,
        &[&good],
        &["--center", short_centre.to_str().unwrap()],
        "centre.npy",
        "one value per coordinate",
    );

    let missing = d.join("missing.npy");
    fails(
        d,
        &[&good],
        &["--center", missing.to_str().unwrap()],
        "missing.npy",
        "No such file",
    );

    fails(d, &[&missing], &[], "missing.npy", "No such file");
}

/// A folder with the first `k` digits step files.
fn step_folder(dir: &Path, k: usize) -> std::path::PathBuf {
    let steps = dir.join("steps");
    std::fs::create_dir_all(&steps).unwrap();
    for i in 0..k {
        let name = format!("step_{i:04}.safetensors");
        std::fs::copy(
            common::data("digits/snapshots").join(&name),
            steps.join(&name),
        )
        .unwrap();
    }
    steps
}

/// Rewrites one step file with its tensors changed by `edit` (name, dtype, shape, bytes).
fn rewrite_step(
    path: &Path,
    edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn bad_step_folders_fail_cleanly() {
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "missing tensor",
            Box::new(|p| rewrite_step(p, |t| t.retain(|(n, ..)| n != "fc1.bias"))),
            "tensor 'fc1.bias' is missing",
        ),
        (
            "shape change",
            Box::new(|p| {
                rewrite_step(p, |t| {
                    for x in t.iter_mut().filter(|x| x.0 == "fc0.bias") {
                        x.2 = vec![32, 2];
                    }
                })
            }),
            "same layout",
        ),
        (
            "dtype change",
            Box::new(|p| {
                rewrite_step(p, |t| {
                    for x in t.iter_mut().filter(|x| x.0 == "fc0.bias") {
                        x.1 = safetensors::Dtype::I32;
                    }
                })
            }),
            "same layout",
        ),
        (
            "truncated",
            Box::new(|p| {
                let b = std::fs::read(p).unwrap();
                std::fs::write(p, &b[..b.len() - 100]).unwrap();
            }),
            "truncated",
        ),
        (
            "lying header length",
            Box::new(|p| {
                let mut b = std::fs::read(p).unwrap();
                b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
                std::fs::write(p, b).unwrap();
            }),
            "header",
        ),
        (
            "lying offsets",
            Box::new(|p| {
                let b = std::fs::read(p).unwrap();
                let text = String::from_utf8_lossy(&b)
                    .replacen("[0,256]", "[0,252]", 1)
                    .into_bytes();
                std::fs::write(p, text).unwrap();
            }),
            "header",
        ),
    ];
    for (what, damage, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let steps = step_folder(dir.path(), 8);
        let bad = steps.join("step_0005.safetensors");
        damage(&bad);
        let out = dir.path().join("out");
        let assert = gradtail()
            .args([
                "analyze",
                steps.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                "cpu",
            ])
            .assert()
            .failure()
            .code(1);
        let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        assert!(
            stderr.contains("step_0005.safetensors") && stderr.contains(says),
            "{what}: {stderr}"
        );
        assert!(!out.exists(), "{what}: output left behind");
        // --skip-bad uses the other seven samples and says so.
        let assert = gradtail()
            .args([
                "analyze",
                steps.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                "cpu",
                "--skip-bad",
            ])
            .assert()
            .success();
        let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
        assert!(
            stderr.contains("step_0005.safetensors") && stderr.contains("using 7 samples"),
            "{what}: {stderr}"
        );
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["samples"], 7, "{what}");
        assert_eq!(s["skipped_files"].as_array().unwrap().len(), 1, "{what}");
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        dir.path(),
        &[&empty],
        &[],
        "empty",
        "no .safetensors step files",
    );
}

#[test]
fn filters_and_unsupported_dtypes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let steps = step_folder(dir.path(), 8);
    for i in 0..8 {
        rewrite_step(&steps.join(format!("step_{i:04}.safetensors")), |t| {
            t.push((
                "step".into(),
                safetensors::Dtype::I64,
                vec![1],
                i64::to_le_bytes(i).to_vec(),
            ))
        });
    }
    let out = dir.path().join("out");
    let assert = gradtail()
        .args([
            "analyze",
            steps.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
            "--include",
            "fc*",
            "--exclude",
            "*.bias",
        ])
        .assert()
        .success();
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let names: Vec<&str> = s["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fc0.weight", "fc1.weight"]);
    // "step" is excluded by --include before its dtype matters; without filters it is skipped.
    assert!(
        s["skipped_tensors"].as_array().unwrap().is_empty(),
        "{stderr}"
    );
    gradtail()
        .args([
            "analyze",
            steps.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("skipped tensor step: dtype I64"));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["skipped_tensors"][0]["name"], "step");
}

/// Degenerate inputs get null estimates with a reason, never a number made of rounding
/// residue: `np.ones(100)` (the original flat estimator gives −8.1e13), a tensor whose
/// coordinates are all NaN but one, and K < 8 where the D'Agostino–Pearson test is undefined.
#[test]
fn degenerate_inputs_are_null_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ones = dir.path().join("ones.npy");
    common::write_npy_f64(&ones, &[100], &[1.0; 100]);
    let out = dir.path().join("ones_out");
    let run = gradtail()
        .args([
            "analyze",
            ones.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--backend", "cpu"])
        .assert()
        .success();
    let stdout = String::from_utf8(run.get_output().stdout.clone()).unwrap();
    assert!(
        !stdout.contains("NaN") && !stdout.contains("inf"),
        "{stdout}"
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert!(
        s["model"]["alpha_simsekli_flat"].is_null(),
        "{}",
        s["model"]
    );
    assert!(s["tensors"][0]["alpha_simsekli_flat"].is_null());
    assert!(s["tensors"][0]["alpha_time_blocked"].is_null());
    assert_eq!(s["tensors"][0]["constant_coords"], 1);
    assert!(!s["tensors"][0]["notes"].as_array().unwrap().is_empty());
    assert!(!s["model"]["notes"].as_array().unwrap().is_empty());

    // Three coordinates, two of them all NaN: reported as too few finite samples, not constant.
    let (k, p) = (16, 3);
    let x: Vec<f32> = (0..k * p)
        .map(|i| {
            if i % p == 0 {
                ((i * 37 % 11) as f32 - 5.0) / 3.0
            } else {
                f32::NAN
            }
        })
        .collect();
    let nan = dir.path().join("mostly_nan.npy");
    common::write_npy_f32(&nan, &[k, p], &x);
    let out = dir.path().join("nan_out");
    let run = gradtail()
        .args([
            "analyze",
            nan.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--backend", "cpu"])
        .assert()
        .success();
    let stdout = String::from_utf8(run.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.contains("2 coordinates have fewer than 4 finite samples"),
        "{stdout}"
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["tensors"][0]["few_finite_coords"], 2);
    assert_eq!(s["tensors"][0]["constant_coords"], 0);

    // K = 6 < 8: k2 is undefined for every coordinate, so its reject fraction is null, not 0.
    let (k, p) = (6, 5);
    let x: Vec<f32> = (0..k * p)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let small = dir.path().join("small.npy");
    common::write_npy_f32(&small, &[k, p], &x);
    let out = dir.path().join("small_out");
    gradtail()
        .args([
            "analyze",
            small.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--backend", "cpu"])
        .assert()
        .success();
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert!(s["tensors"][0]["k2_reject_frac"].is_null());
    assert!(s["tensors"][0]["jb_reject_frac"].is_number());
    let csv = std::fs::read_to_string(out.join("tensors.csv")).unwrap();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let col = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "k2_reject_frac")
        .unwrap();
    assert_eq!(row[col], "nan");
}

/// A newcomer's first run on a headless machine shows no driver messages: `--backend auto`
/// probes for adapters with the drivers' output captured (logged at info level).
#[test]
fn auto_backend_prints_no_driver_noise() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = gradtail()
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RUST_LOG")
        .args([
            "analyze",
            common::data("digits/stack.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .assert()
        .success();
    let stderr = String::from_utf8(run.get_output().stderr.clone()).unwrap();
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
}

/// What users read never cites internal documents.
#[test]
fn output_cites_no_internal_documents() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = gradtail()
        .args([
            "analyze",
            common::data("digits/stack.npy").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ])
        .assert()
        .success();
    let mut texts = vec![
        String::from_utf8(run.get_output().stdout.clone()).unwrap(),
        String::from_utf8(run.get_output().stderr.clone()).unwrap(),
    ];
    for f in ["summary.json", "tensors.csv", "report.html"] {
        texts.push(std::fs::read_to_string(out.join(f)).unwrap());
    }
    for cmd in [
        &["--help"][..],
        &["analyze", "--help"],
        &["synth", "--help"],
    ] {
        let o = gradtail().args(cmd).output().unwrap();
        texts.push(String::from_utf8(o.stdout).unwrap());
    }
    for t in texts {
        assert!(!t.contains("spec §") && !t.contains("spec §"), "{t}");
    }
}

/// The CPU engine is deterministic: the same input and options give byte-identical
/// `coords.safetensors` and `spectrum.safetensors` (whose header safetensors would order by a
/// per-process hash) and identical numbers in `summary.json` across runs and thread counts
/// (per-coordinate sums run in sample order within a coordinate whatever the strip
/// partition, and pooled sums are combined in a fixed order).
#[test]
fn cpu_results_are_deterministic_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, threads) in ["1", "2", "3", "2"].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        gradtail()
            .args([
                "analyze",
                common::data("digits/stack.npy").to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                "cpu",
                "--threads",
                threads,
            ])
            .assert()
            .success();
        let coords = std::fs::read(out.join("coords.safetensors")).unwrap();
        let spectrum = std::fs::read(out.join("spectrum.safetensors")).unwrap();
        let mut s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        // What may differ: the wall time and the thread count itself.
        s["elapsed_s"] = serde_json::Value::Null;
        s["engine"]["threads"] = serde_json::Value::Null;
        s["options"] = serde_json::Value::Null;
        runs.push((coords, spectrum, s));
    }
    for (i, r) in runs.iter().enumerate().skip(1) {
        assert!(r.0 == runs[0].0, "coords.safetensors of run {i} differs");
        assert!(r.1 == runs[0].1, "spectrum.safetensors of run {i} differs");
        assert_eq!(r.2, runs[0].2, "summary.json of run {i} differs");
    }
}

/// Faults while writing outputs end in a clear error, exit code 1, and no output directory:
/// an `--out` that cannot be created (its parent is a regular file), and a disk that fills
/// mid-write (the file-size limit `ulimit -f` stands in for it: writes past it fail with
/// EFBIG, as a full disk fails with ENOSPC).
#[test]
fn output_faults_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = common::data("digits/stack.npy");
    let file = dir.path().join("a_file");
    std::fs::write(&file, b"not a folder").unwrap();
    let out = file.join("out");
    gradtail()
        .args([
            "analyze",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--backend", "cpu"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("a_file"));

    let out = dir.path().join("full");
    let bin = assert_cmd::cargo::cargo_bin("gradtail");
    let run = std::process::Command::new("bash")
        .arg("-c")
        // 64 blocks of 1 KiB: the inputs are only read; coords.safetensors (~300 KiB) fails.
        .arg("ulimit -f 64 && exec \"$0\" \"$@\"")
        .arg(&bin)
        .args([
            "analyze",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("File too large") || stderr.contains("too large"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !out.exists(),
        "a half-written output folder was left behind"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "staging left behind: {left:?}");
}

/// A file that another program truncates while the command reads it in place ends the run
/// with exit status 1 and a message naming the file, whether the cut is seen by a block's
/// length check or by a read of a page the file no longer has; no output folder, published or
/// partial, is left.
#[cfg(unix)]
#[test]
fn a_file_cut_short_mid_run_ends_the_run_cleanly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (k, p) = (64, 200_000);
    let path = dir.path().join("shrinks.npy");
    common::write_npy_f32(&path, &[k, p], &noise(k, p));
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gradtail"))
        .args([
            "analyze",
            "--backend",
            "cpu",
            "--progress-json",
            "--no-fits",
        ])
        .args(["--no-spectrum", "--no-powerlaw", "--out"])
        .arg(&out)
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The first block is being read: cut the file then.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let started = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["progress"].as_f64())
            .is_some_and(|f| f > 0.0);
        seen.push(line);
        if started {
            break;
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.wait().unwrap();
    let stderr = seen.join("\n");
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("shrinks.npy"), "{stderr}");
    assert!(
        stderr.contains("shrank") || stderr.contains("truncated"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "shrinks.npy")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
