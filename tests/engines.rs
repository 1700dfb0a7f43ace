//! One suite for every engine: each case is a generic function over `Backend`, stamped out
//! per engine by `engine_suite!`. GPU cases run on whatever adapter exists (lavapipe in CI);
//! with no adapter they print "skipped: no GPU adapter", and fail instead when
//! GRADTAIL_REQUIRE_GPU=1 (set by `.ci/run`), so the GPU path cannot silently go untested.

mod common;

use std::path::PathBuf;

use common::{naive, tolerance};
use gradtail::analyze::{Center, Options};
use gradtail::engine::Backend;
use gradtail::stats::COORD_STATS;

struct Engine {
    backend: Box<dyn Backend>,
    /// Per-coordinate tolerance against f64 references, and for p-values in decades.
    tol: f64,
    tol_p: f64,
}

/// The GPU engine on any adapter, or `None` after printing "skipped: no GPU adapter" when
/// there is no adapter at all — a failure instead when GRADTAIL_REQUIRE_GPU=1. Any other
/// start-up error fails the test.
fn gpu_with(opts: gradtail::engine::gpu::GpuOptions) -> Option<Engine> {
    match gradtail::engine::gpu::GpuEngine::new(opts) {
        Ok(engine) => Some(Engine {
            backend: Box::new(engine),
            tol: tolerance::GPU,
            tol_p: tolerance::GPU_LOG10_P,
        }),
        Err(gradtail::Error::NoAdapter(why)) => {
            if std::env::var("GRADTAIL_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("GRADTAIL_REQUIRE_GPU=1 but there is no GPU adapter: {why}");
            }
            println!("skipped: no GPU adapter ({why})");
            None
        }
        // An adapter exists but the engine cannot start: that is a failure, not a skip.
        Err(e) => panic!("the GPU engine failed to start: {e}"),
    }
}

fn gpu() -> Option<Engine> {
    gpu_with(Default::default())
}

/// The GPU engine with 4 KiB bindings, so every block is split into many dispatch units.
fn gpu_split() -> Option<Engine> {
    gpu_with(gradtail::engine::gpu::GpuOptions {
        max_binding_bytes: Some(4096),
    })
}

fn cpu() -> Option<Engine> {
    let backend = Box::new(gradtail::engine::cpu::CpuEngine::new(0).unwrap());
    Some(Engine {
        backend,
        tol: tolerance::CPU,
        tol_p: tolerance::CPU,
    })
}

fn check_coords(
    e: &Engine,
    got: &gradtail::stats::CoordTable,
    want: impl Fn(&str) -> Vec<f64>,
    what: &str,
) {
    let var = want("var");
    // Every statistic but the counts `n` and `nonfinite`, which are checked exactly.
    for &stat in &COORD_STATS[2..] {
        let tol = if stat.ends_with("_p") { e.tol_p } else { e.tol };
        if let Err(msg) = tolerance::compare(stat, got.get(stat), &want(stat), &var, tol) {
            panic!("{what}: {msg}");
        }
    }
}

fn close_inv(got: f64, want: f64, tol: f64, what: &str) {
    if got.is_nan() && want.is_nan() {
        return;
    }
    let err = (1.0 / got - 1.0 / want).abs();
    assert!(
        err <= tol,
        "{what}: got {got}, want {want} (1/α error {err:e} > {tol:e})"
    );
}

/// Splits the digits stack into its four tensors (layout.json) as separate .npy inputs.
fn digits_tensors(dir: &std::path::Path) -> Vec<PathBuf> {
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::data("digits/layout.json")).unwrap())
            .unwrap();
    let src = gradtail::input::open(&common::data("digits/stack.npy"))
        .unwrap()
        .remove(0);
    let (k, p) = (src.meta().samples, src.meta().coords());
    let block = src.read_block(0..k, 0..p).unwrap();
    let mut all = vec![0.0; k * p];
    block.data.widen_into(0..k * p, &mut all);
    let mut paths = Vec::new();
    for t in layout["tensors"].as_array().unwrap() {
        let (off, size) = (
            t["offset"].as_u64().unwrap() as usize,
            t["size"].as_u64().unwrap() as usize,
        );
        let mut shape = vec![k];
        shape.extend(
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize),
        );
        let vals: Vec<f32> = (0..k)
            .flat_map(|r| {
                all[r * p + off..r * p + off + size]
                    .iter()
                    .map(|&v| v as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        let path = dir.join(format!("{}.npy", t["name"].as_str().unwrap()));
        common::write_npy_f32(&path, &shape, &vals);
        paths.push(path);
    }
    paths
}

/// Real gradients against scipy/numpy references computed independently in f64.
fn digits_matches_reference(mut e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let paths = digits_tensors(dir.path());
    let a = common::analyze_files(&paths, &Options::default(), e.backend.as_mut());
    let reference = common::digits_reference_json();
    let mut tables: Vec<Vec<f64>> = vec![Vec::new(); COORD_STATS.len()];
    for (t, r) in a
        .tensors
        .iter()
        .zip(reference["tensors"].as_array().unwrap())
    {
        let s = &t.summary;
        assert_eq!(s.name, r["name"].as_str().unwrap());
        close_inv(
            s.alpha_time_blocked,
            r["alpha_time_blocked"].as_f64().unwrap(),
            e.tol,
            &format!("{} alpha_time_blocked", s.name),
        );
        close_inv(
            s.alpha_simsekli_flat,
            r["alpha_simsekli_flat"].as_f64().unwrap(),
            e.tol,
            &format!("{} alpha_simsekli_flat", s.name),
        );
        assert_eq!(s.simsekli_m, r["simsekli_m"].as_u64().unwrap());
        assert_eq!(
            s.constant_coords,
            r["constant_coords"].as_u64().unwrap(),
            "{}",
            s.name
        );
        assert!(
            (s.jb_reject_frac - r["jb_reject_frac"].as_f64().unwrap()).abs() <= e.tol,
            "{} jb_reject_frac {}",
            s.name,
            s.jb_reject_frac
        );
        for (q, got) in ["q05", "q25", "q50", "q75", "q95"].iter().zip([
            s.alpha_block_quantiles.q05,
            s.alpha_block_quantiles.q25,
            s.alpha_block_quantiles.q50,
            s.alpha_block_quantiles.q75,
            s.alpha_block_quantiles.q95,
        ]) {
            close_inv(
                got,
                r["alpha_block_quantiles"][q].as_f64().unwrap(),
                e.tol,
                &format!("{} alpha_block {q}", s.name),
            );
        }
        for (q, got) in ["q05", "q25", "q50", "q75", "q95"].iter().zip([
            s.alpha_logm_quantiles.q05,
            s.alpha_logm_quantiles.q25,
            s.alpha_logm_quantiles.q50,
            s.alpha_logm_quantiles.q75,
            s.alpha_logm_quantiles.q95,
        ]) {
            close_inv(
                got,
                r["alpha_logm_quantiles"][q].as_f64().unwrap(),
                e.tol,
                &format!("{} alpha_logm {q}", s.name),
            );
        }
        // The delete-one-time-block jackknife SE: a smooth function of the pooled sums, so
        // it carries their relative error.
        let se = r["alpha_time_blocked_se"].as_f64().unwrap();
        assert!(
            ((s.alpha_time_blocked_se - se) / se).abs() <= e.tol * 10.0,
            "{} alpha_time_blocked_se: got {}, want {se}",
            s.name,
            s.alpha_time_blocked_se
        );
        for (i, (_, col)) in t.coords.iter().enumerate() {
            tables[i].extend_from_slice(col);
        }
    }
    close_inv(
        a.model.alpha_simsekli_flat,
        reference["model_simsekli_flat"].as_f64().unwrap(),
        e.tol,
        "model_simsekli_flat",
    );
    assert_eq!(
        a.model.simsekli_m,
        reference["model_simsekli_m"].as_u64().unwrap()
    );
    let got = gradtail::stats::CoordTable { columns: tables };
    check_coords(&e, &got, common::digits_reference, "digits");
}

/// Spec §8 and §3.8 test vector x20 as one coordinate (K = 20, no centring).
fn x20_vector(mut e: Engine) {
    const X20: [f64; 20] = [
        0.12, -1.53, 0.88, 2.41, -0.37, 0.05, -0.92, 1.17, -2.80, 0.64, 0.33, -0.11, 4.95, -0.58,
        1.02, -1.21, 0.27, -0.06, 0.71, -3.60,
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x20.npy");
    common::write_npy_f64(&path, &[20], &X20);
    let opts = Options {
        center: Center::None,
        ..Options::default()
    };
    let a = common::analyze_files(&[path], &opts, e.backend.as_mut());
    let t = &a.tensors[0].coords;
    let tol = e.tol.max(1e-9);
    let rel = |stat: &str, want: f64| {
        let got = t.get(stat)[0];
        assert!(
            ((got - want) / want).abs() <= tol,
            "x20 {stat}: got {got}, want {want}"
        );
    };
    rel("var", 3.02266275);
    rel("skew", 0.4937068924135242);
    rel("kurt", 1.7068436619270413);
    rel("jb", 3.240251057272491);
    rel("k2", 5.2167476185228185);
    rel("alpha_block", 2.0216184747004124);
    rel("alpha_logm", 1.357874440532745);
}

/// Inputs designed to break things, against the plain f64 reimplementation.
fn adversarial(mut e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state >> 11) as f64 / (1u64 << 53) as f64
    };
    // (name, K, P, value at (row, col) given a uniform draw)
    type Gen = fn(usize, usize, f64) -> f64;
    let cases: [(&str, usize, usize, Gen); 6] = [
        ("random", 64, 37, |r, c, u| {
            gradtail::stats::sas::cms(
                1.5,
                (u - 0.5) * std::f64::consts::PI,
                0.1 + ((r * 31 + c) % 17) as f64 / 5.0,
            )
        }),
        ("zeros_and_constants", 48, 13, |r, c, u| match c % 4 {
            0 => 0.0,
            1 => 3.25,
            2 if r % 3 == 0 => 0.0,
            _ => u - 0.5,
        }),
        ("nonfinite", 40, 9, |r, c, u| match (r * 7 + c) % 23 {
            0 => f64::NAN,
            5 => f64::INFINITY,
            11 => f64::NEG_INFINITY,
            _ => u * 2.0 - 1.0,
        }),
        ("offset", 128, 6, |_, _, u| 1e4 + (u - 0.5) * 0.25),
        ("k4", 4, 5, |_, _, u| u - 0.5),
        ("k_not_multiple", 37, 1, |_, _, u| (u - 0.5).powi(3)),
    ];
    for (name, k, p, gen) in cases {
        let x: Vec<f64> = (0..k * p)
            .map(|i| gen(i / p, i % p, uniform()) as f32 as f64)
            .collect();
        let path = dir.path().join(format!("{name}.npy"));
        common::write_npy_f32(
            &path,
            &[k, p],
            &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        );
        for block_bytes in [64 << 20, 256] {
            let opts = Options {
                block_bytes,
                ..Options::default()
            };
            let a = common::analyze_files(std::slice::from_ref(&path), &opts, e.backend.as_mut());
            let k1 = a.block_size;
            let want = naive::compute(&x, k, p, k1, None);
            let col = |stat: &str| {
                let i = COORD_STATS.iter().position(|s| *s == stat).unwrap();
                want.coords.iter().map(|r| r[i]).collect::<Vec<_>>()
            };
            let what = format!("{name} (K = {k}, P = {p}, block bytes {block_bytes})");
            check_coords(&e, &a.tensors[0].coords, col, &what);
            for stat in ["n", "nonfinite"] {
                assert_eq!(
                    a.tensors[0].coords.get(stat),
                    col(stat).as_slice(),
                    "{what} {stat}"
                );
            }
            close_inv(
                a.tensors[0].summary.alpha_simsekli_flat,
                want.alpha_flat,
                e.tol,
                &format!("{what} flat"),
            );
        }
    }
}

/// Pooled time-blocked α recovers SαS α at K = 512, P = 2000 (spec §3.7: |α̂ - α| < 0.02).
fn sas_recovery(mut e: Engine) {
    let dir = tempfile::tempdir().unwrap();
    for alpha in [1.0, 1.5, 2.0] {
        let path = dir.path().join(format!("sas{alpha}.npy"));
        let spec = gradtail::synth::SynthSpec {
            alpha,
            samples: 512,
            params: 2000,
            scale: 1.0,
            seed: 12345,
            dtype: gradtail::synth::SynthDtype::F32,
            log_scale_sd: 0.0,
            traps: Default::default(),
        };
        gradtail::synth::write_npy(&spec, &path).unwrap();
        // The data are noise around a known centre of 0; centring Cauchy-like data by its
        // sample mean would shift each coordinate by a draw of the same law (spec §1).
        let opts = Options {
            center: Center::None,
            ..Options::default()
        };
        let a = common::analyze_files(&[path], &opts, e.backend.as_mut());
        let s = &a.tensors[0].summary;
        assert!(
            (s.alpha_time_blocked - alpha).abs() < 0.02,
            "α = {alpha}: time-blocked {}",
            s.alpha_time_blocked
        );
        assert!(
            s.alpha_time_blocked_ci[0] < s.alpha_time_blocked
                && s.alpha_time_blocked < s.alpha_time_blocked_ci[1]
        );
        // Independent coordinates: the time-block jackknife agrees with the
        // independent-coordinates SE up to its own sampling noise (32 blocks: about ±25 %).
        let ratio = s.alpha_time_blocked_se / s.alpha_time_blocked_se_iid;
        assert!(
            (0.4..2.5).contains(&ratio),
            "α = {alpha}: jackknife/iid SE {ratio}"
        );
        // Per-coordinate medians (spec §3.7, §4.1 at K = 512): block-sum 1.00/1.48/1.99,
        // log-moment 1.000/1.490/2.000; the median over 2000 coordinates has sd < 0.01.
        let (blk, logm) = match alpha as u32 * 10 + (alpha * 10.0) as u32 % 10 {
            10 => (1.00, 1.000),
            15 => (1.48, 1.490),
            _ => (1.99, 2.000),
        };
        assert!(
            (s.alpha_block_quantiles.q50 - blk).abs() < 0.04,
            "α = {alpha}: block median {}",
            s.alpha_block_quantiles.q50
        );
        assert!(
            (s.alpha_logm_quantiles.q50 - logm).abs() < 0.04,
            "α = {alpha}: logm median {}",
            s.alpha_logm_quantiles.q50
        );
    }
}

/// The digits data in every input form: step-file folder, stacked safetensors, npz and the
/// (K, P) stack give identical per-coordinate results, and per-tensor results that match
/// reference.json.
fn input_forms(mut e: Engine) {
    let reference = common::digits_reference_json();
    let stack = common::analyze_files(
        &[common::data("digits/stack.npy")],
        &Options::default(),
        e.backend.as_mut(),
    );
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::data("digits/layout.json")).unwrap())
            .unwrap();
    for form in [
        "digits/snapshots",
        "digits/stacked.safetensors",
        "digits/stacked.npz",
    ] {
        let a = common::analyze_files(
            &[common::data(form)],
            &Options::default(),
            e.backend.as_mut(),
        );
        assert_eq!(a.tensors.len(), 4, "{form}");
        for t in layout["tensors"].as_array().unwrap() {
            let name = t["name"].as_str().unwrap();
            let (off, size) = (
                t["offset"].as_u64().unwrap() as usize,
                t["size"].as_u64().unwrap() as usize,
            );
            let got = a
                .tensors
                .iter()
                .find(|r| r.meta.name == name)
                .unwrap_or_else(|| panic!("{form}: no {name}"));
            for (stat, col) in got.coords.iter() {
                let want = &stack.tensors[0].coords.get(stat)[off..off + size];
                let same = col
                    .iter()
                    .zip(want)
                    .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()));
                assert!(same, "{form} {name}/{stat} differs from stack.npy");
            }
            let r = reference["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            let s = &got.summary;
            close_inv(
                s.alpha_time_blocked,
                r["alpha_time_blocked"].as_f64().unwrap(),
                e.tol,
                &format!("{form} {name}"),
            );
            close_inv(
                s.alpha_simsekli_flat,
                r["alpha_simsekli_flat"].as_f64().unwrap(),
                e.tol,
                &format!("{form} {name} flat"),
            );
            assert!(
                (s.jb_reject_frac - r["jb_reject_frac"].as_f64().unwrap()).abs() <= e.tol,
                "{form} {name}"
            );
            assert_eq!(
                s.constant_coords,
                r["constant_coords"].as_u64().unwrap(),
                "{form} {name}"
            );
        }
    }
}

macro_rules! engine_suite {
    ($engine:ident) => {
        mod $engine {
            fn engine() -> Option<super::Engine> {
                super::$engine()
            }
            #[test]
            fn digits_matches_reference() {
                if let Some(e) = engine() {
                    super::digits_matches_reference(e)
                }
            }
            #[test]
            fn x20_vector() {
                if let Some(e) = engine() {
                    super::x20_vector(e)
                }
            }
            #[test]
            fn adversarial() {
                if let Some(e) = engine() {
                    super::adversarial(e)
                }
            }
            #[test]
            fn input_forms() {
                if let Some(e) = engine() {
                    super::input_forms(e)
                }
            }
            #[test]
            fn sas_recovery() {
                if let Some(e) = engine() {
                    super::sas_recovery(e)
                }
            }
        }
    };
}

engine_suite!(cpu);
engine_suite!(gpu);
engine_suite!(gpu_split);
