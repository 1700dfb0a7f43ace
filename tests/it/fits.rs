//! The per-coordinate fits and `--center median` from the command line. The digits data in
//! every input form, on the CPU engine and on the GPU engine (any adapter; lavapipe in CI),
//! against the scipy/statsmodels values computed outside the crate
//! (`tests/data/digits/reference_fits.*`), within the tolerances of `stats::fits`' own tests;
//! the extra whole-column read; `--no-fits`; and the median centre. GPU cases print
//! "skipped: no GPU adapter" without one, and fail instead when GRADTAIL_REQUIRE_GPU=1.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use gradtail::analyze::Options;
use gradtail::stats::fits::Fits;
use gradtail::stats::{Stat, COORD_STATS};

use crate::common::tolerance::FitField;

fn gradtail() -> Command {
    let mut c = Command::cargo_bin("gradtail").unwrap();
    c.env("RUST_LOG", "warn");
    c
}

/// The engines to run: the CPU, and the GPU when an adapter exists.
fn engines() -> Vec<&'static str> {
    match common::gpu_or_skip(Default::default()) {
        Some(_) => vec!["cpu", "gpu"],
        None => vec!["cpu"],
    }
}

/// Runs `analyze INPUT --out DIR --backend ENGINE --coords-dtype f64 EXTRA...`.
fn analyze(input: &Path, out: &Path, engine: &str, extra: &[&str]) {
    gradtail()
        .arg("analyze")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--backend", engine, "--coords-dtype", "f64", "-q"])
        .args(extra)
        .assert()
        .success();
}

/// Every map of a `coords.safetensors` written with `--coords-dtype f64`, by key.
fn read_coords(out: &Path) -> HashMap<String, Vec<f64>> {
    let bytes = std::fs::read(out.join("coords.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name}");
            let v = view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, v)
        })
        .collect()
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// Checks one run's fit maps against the references. `column(tensor, stat)` is the run's map
/// of a digits tensor (for `stack.npy`, the slice of the one tensor). The tolerances are those
/// of `stats::fits`' tests against the same references, each for the reason given there; a
/// GPU run (`gpu`, kernel `coord_fits` in f32) is held to `tolerance::FitField`'s instead,
/// which add the kernel's f32 error to that f64 agreement.
fn check_fits(column: impl Fn(&str, &str) -> Vec<f64>, what: &str, gpu: bool) {
    let bytes = std::fs::read(common::data("digits/reference_fits.safetensors")).unwrap();
    let refs = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Python's json writes NaN bare, which JSON does not allow.
    let text = std::fs::read_to_string(common::data("digits/reference_fits.json")).unwrap();
    let ks: serde_json::Value = serde_json::from_str(&text.replace("NaN", "null")).unwrap();
    let mut worst: HashMap<&str, f64> = HashMap::new();
    let mut ks_checked = 0;
    for (name, _, size) in common::layout(&common::data("digits/layout.json")) {
        let scale = column(&name, "scale_mcculloch");
        // A GPU run's fits and the references', whole (ks_stable's reference is sparse and
        // compared below: zeros stand in for it).
        let both = gpu.then(|| {
            let want = common::fits_of(|s| match s {
                "ks_stable" => vec![0.0; size],
                _ => reference(&refs, &name, s),
            });
            (common::fits_of(|s| column(&name, s)), want)
        });
        for stat in Stat::FITS.map(Stat::name) {
            let got = column(&name, stat);
            assert_eq!(got.len(), size, "{what} {name}/{stat}");
            if stat == "ks_stable" {
                let r = &ks[&name];
                let coords = r["ks_stable_coords"].as_array().unwrap();
                for (j, w) in coords.iter().zip(r["ks_stable"].as_array().unwrap()) {
                    let g = got[j.as_u64().unwrap() as usize];
                    match w.as_f64() {
                        // scipy's CDF fails where the fitted scale is 0; ks_stable is NaN there
                        None => assert!(g.is_nan(), "{what} {name} ks_stable[{j}] = {g}"),
                        Some(w) => {
                            let e = worst.entry(stat).or_default();
                            *e = e.max((g - w).abs());
                            ks_checked += 1;
                        }
                    }
                }
                continue;
            }
            if let Some((g, w)) = &both {
                gpu_worst(g, w, stat, &mut worst, &format!("{what} {name}"));
                continue;
            }
            let want = reference(&refs, &name, stat);
            for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.is_nan(),
                    w.is_nan(),
                    "{what} {name}/{stat}[{j}]: {g} vs {w}"
                );
                if w.is_nan() || g == w {
                    continue;
                }
                let e = match stat {
                    "alpha_mcculloch" => (1.0 / g - 1.0 / w).abs(),
                    "ad_p" | "var_ratio" | "scale_mcculloch" | "top1_share" => {
                        (g - w).abs() / w.abs()
                    }
                    "loc_mcculloch" => (g - w).abs() / scale[j].max(w.abs()),
                    _ => (g - w).abs(),
                };
                let at = worst.entry(stat).or_default();
                *at = at.max(e);
            }
        }
    }
    let tol = |stat: &str| match stat {
        // scipy's levy_stable.cdf against the table (2e-3), and the kernel's f32 error.
        "ks_stable" if gpu => 2e-3 + FitField::KsStable.tolerance(),
        _ if gpu => {
            FitField::ALL[Stat::FITS.iter().position(|s| s.name() == stat).unwrap()].tolerance()
        }
        "alpha_mcculloch" => 1e-6,
        "loc_mcculloch" | "ad_p" => 1e-8,
        "top1_share" => 1e-12,
        "ks_stable" => 2e-3,
        _ => 1e-9,
    };
    println!("{what}: largest errors {worst:?}");
    for (stat, e) in &worst {
        assert!(*e <= tol(stat), "{what}: {stat} off by {e:e}");
    }
    assert!(
        ks_checked >= 15,
        "{what}: {ks_checked} ks_stable values checked"
    );
}

/// A reference map of the digits data.
fn reference(refs: &safetensors::SafeTensors, tensor: &str, stat: &str) -> Vec<f64> {
    refs.tensor(&format!("{tensor}/{stat}"))
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// A GPU run's largest error in `stat` (not ks_stable), in the form of
/// `tolerance::FitField`, against the references; NaN exactly where they have NaN.
fn gpu_worst(
    got: &[Fits],
    want: &[Fits],
    stat: &'static str,
    worst: &mut HashMap<&'static str, f64>,
    what: &str,
) {
    let i = Stat::FITS.iter().position(|s| s.name() == stat).unwrap();
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        let (gv, wv) = (g.to_array()[i], w.to_array()[i]);
        assert_eq!(gv.is_nan(), wv.is_nan(), "{what}/{stat}[{j}]: {gv} vs {wv}");
        if !wv.is_nan() && gv != wv {
            let e = worst.entry(stat).or_default();
            *e = e.max(FitField::ALL[i].error(g, w));
        }
    }
}

/// The fits of a run on one digits input form, checked against the references.
fn check_form(out: &Path, form: &str, what: &str, gpu: bool) {
    let maps = read_coords(out);
    let spans: HashMap<String, (usize, usize)> =
        common::layout(&common::data("digits/layout.json"))
            .into_iter()
            .map(|(n, off, size)| (n, (off, size)))
            .collect();
    check_fits(
        |tensor, stat| {
            if form == "stack.npy" {
                let (off, size) = spans[tensor];
                maps[&format!("stack/{stat}")][off..off + size].to_vec()
            } else {
                maps[&format!("{tensor}/{stat}")].clone()
            }
        },
        what,
        gpu,
    );
}

#[test]
fn digits_fits_match_scipy_in_every_input_form() {
    let dir = tempfile::tempdir().unwrap();
    for engine in engines() {
        for form in [
            "stack.npy",
            "stacked.safetensors",
            "stacked.npz",
            "snapshots",
        ] {
            let out = dir.path().join(format!("{engine}-{form}"));
            analyze(&common::data(&format!("digits/{form}")), &out, engine, &[]);
            check_form(&out, form, &format!("{engine} {form}"), engine == "gpu");
            let s = summary(&out);
            assert_eq!(s["options"]["fits"], true);
            for t in s["tensors"].as_array().unwrap() {
                for field in [
                    "alpha_mcculloch_below_1_9_frac",
                    "stable_beats_gauss_frac",
                    "ad_reject_frac",
                    "top1_share_median",
                ] {
                    let v = t[field].as_f64().unwrap_or(f64::NAN);
                    assert!((0.0..=1.0).contains(&v), "{engine} {form}: {field} = {v}");
                }
                let q = &t["alpha_mcculloch_quantiles"];
                assert!(q["q05"].as_f64().unwrap() <= q["q95"].as_f64().unwrap());
                assert!(t["mcculloch_degenerate"].is_u64());
            }
        }
    }
}

/// A budget too small for 256 whole columns (256 samples × 4 bytes × 256 columns = 256 KiB)
/// sends even the CPU engine down the row-chunk path, where the fits take one more read of
/// the tensor in whole columns; the fits come out the same.
#[test]
fn extra_whole_column_read_matches_scipy() {
    let mut cpu = gradtail::engine::cpu::CpuEngine::new(2).unwrap();
    let opts = Options {
        block_bytes: 64 << 10,
        ..Options::default()
    };
    let a = common::analyze_files(&[common::data("digits/stack.npy")], &opts, &mut cpu);
    let spans: HashMap<String, (usize, usize)> =
        common::layout(&common::data("digits/layout.json"))
            .into_iter()
            .map(|(n, off, size)| (n, (off, size)))
            .collect();
    let table = &a.tensors[0].coords;
    check_fits(
        |tensor, stat| {
            let (off, size) = spans[tensor];
            table.get(stat)[off..off + size].to_vec()
        },
        "row chunks + whole-column read",
        false,
    );
}

#[test]
fn no_fits_leaves_them_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    analyze(
        &common::data("digits/stacked.safetensors"),
        &out,
        "cpu",
        &["--no-fits"],
    );
    let maps = read_coords(&out);
    assert_eq!(maps.len(), 4 * COORD_STATS.len());
    for (name, ..) in common::layout(&common::data("digits/layout.json")) {
        for stat in COORD_STATS {
            assert!(
                maps.contains_key(&format!("{name}/{stat}")),
                "{name}/{stat}"
            );
        }
    }
    let s = summary(&out);
    assert_eq!(s["options"]["fits"], false);
    for t in s["tensors"].as_array().unwrap() {
        for field in [
            "alpha_mcculloch_below_1_9_frac",
            "mcculloch_degenerate",
            "stable_beats_gauss_frac",
            "ad_reject_frac",
            "top1_share_median",
        ] {
            assert!(t[field].is_null(), "{field}: {}", t[field]);
        }
        assert!(t["alpha_mcculloch_quantiles"]["q50"].is_null());
        assert!(t["alpha_time_blocked"].is_f64());
    }
    let csv = std::fs::read_to_string(out.join("tensors.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    let at = |c: &str| header.iter().position(|h| *h == c).unwrap();
    assert_eq!(row[at("ad_reject_frac")], "nan");
    assert_eq!(row[at("mcculloch_degenerate")], "");
    let plots: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(plots.iter().any(|f| f.ends_with("_alpha_block.svg")));
    assert!(
        !plots
            .iter()
            .any(|f| f.starts_with("scatter_") || f.contains("mcculloch")),
        "{plots:?}"
    );
}

/// numpy's median of the finite values, by sorting (the oracle; the crate selects).
fn numpy_median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `--center median` is the same run as `--center FILE` with each coordinate's median written
/// to the file, on each engine: every map equal.
#[test]
fn median_centre_is_the_per_coordinate_median() {
    let dir = tempfile::tempdir().unwrap();
    let stack = common::data("digits/stack.npy");
    let src = gradtail::input::open(&stack).unwrap().remove(0);
    let (k, p) = (src.meta().samples, src.meta().coords());
    let block = src.read_block(0..k, 0..p).unwrap();
    let mut x = vec![0.0; k * p];
    block.data.widen_into(0..k * p, &mut x);
    let medians: Vec<f64> = (0..p)
        .map(|j| numpy_median(&(0..k).map(|r| x[r * p + j]).collect::<Vec<_>>()))
        .collect();
    let file = dir.path().join("medians.npy");
    common::write_npy_f64(&file, &[p], &medians);
    for engine in engines() {
        let (a, b) = (
            dir.path().join(format!("{engine}-median")),
            dir.path().join(format!("{engine}-file")),
        );
        analyze(&stack, &a, engine, &["--center", "median"]);
        analyze(&stack, &b, engine, &["--center", file.to_str().unwrap()]);
        assert_eq!(summary(&a)["options"]["center"], "median");
        let (ma, mb) = (read_coords(&a), read_coords(&b));
        assert_eq!(ma.len(), Stat::maps(true, false).len());
        for (key, va) in &ma {
            let same = va
                .iter()
                .zip(&mb[key])
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
            assert!(
                same,
                "{engine} {key}: --center median differs from the median file"
            );
        }
    }
}

/// Independent SαS(1.5) coordinates, P = 2000, K = 512: mean-centring reads the pooled α low
/// (about 1.457 in simulation), the median about 1.495. With P = 2000 the pooled α has an sd of
/// about 0.006, so 0.02 and 1.48 separate the two with margin.
#[test]
fn median_centring_removes_the_mean_bias() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("sas.npy");
    gradtail()
        .args([
            "synth",
            "--alpha",
            "1.5",
            "--samples",
            "512",
            "--params",
            "2000",
        ])
        .args(["--seed", "1"])
        .arg(&data)
        .assert()
        .success();
    for engine in engines() {
        let alpha = |centre: &str| {
            let out = dir.path().join(format!("{engine}-{centre}"));
            analyze(&data, &out, engine, &["--center", centre, "--no-fits"]);
            summary(&out)["tensors"][0]["alpha_time_blocked"]
                .as_f64()
                .unwrap()
        };
        let (median, mean) = (alpha("median"), alpha("mean"));
        assert!(
            (median - 1.5).abs() < 0.02,
            "{engine}: median-centred α {median}"
        );
        assert!(mean < 1.48, "{engine}: mean-centred α {mean}");
    }
}
