//! The GPU engine against the CPU engine (the f64 reference), through the whole pipeline and
//! through the `Backend` trait directly: every per-coordinate statistic, the pooled α's and
//! the counts, on real gradients and on inputs built to break things (non-finite samples,
//! zeros, constant columns, a large offset, P = 1, K = 4, f16 / bf16 / f64 data), with the
//! device's own binding limit and with tiny bindings that force column and row splitting.
//!
//! Runs on whatever adapter exists (lavapipe in CI). With none it prints "skipped: no GPU
//! adapter", and fails instead when GRADTAIL_REQUIRE_GPU=1.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::tolerance;
use gradtail::analyze::{self, Analysis, Center, Options};
use gradtail::engine::accum::{BlockSums, CoordAcc, FlatAcc, FlatSpec, MeanAcc};
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::gpu::{GpuEngine, GpuOptions};
use gradtail::engine::{Backend, PhaseTimes, StatsJob, TensorAcc};
use gradtail::input::npy::NpyTensor;
use gradtail::input::{Block, BlockData, TensorSource};
use gradtail::stats::COORD_STATS;

/// Largest error seen per statistic, in the comparison forms of `common::tolerance`.
#[derive(Default)]
struct Worst(BTreeMap<String, f64>);

impl Worst {
    fn note(&mut self, stat: &str, e: f64) {
        let w = self.0.entry(stat.to_owned()).or_insert(0.0);
        *w = w.max(e);
    }

    fn print(&self, what: &str) {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v:.1e}")).collect();
        eprintln!("{what}: max errors: {}", parts.join(", "));
    }
}

fn inv_err(got: f64, want: f64) -> f64 {
    if got.is_nan() && want.is_nan() || got == want {
        0.0
    } else {
        (1.0 / got - 1.0 / want).abs()
    }
}

/// Compares two analyses of the same inputs; panics on the first disagreement beyond the
/// GPU tolerances, and records the largest errors in `worst`.
fn compare(cpu: &Analysis, gpu: &Analysis, what: &str, worst: &mut Worst) {
    assert_eq!(cpu.tensors.len(), gpu.tensors.len());
    for (c, g) in cpu.tensors.iter().zip(&gpu.tensors) {
        let name = &c.meta.name;
        let var = c.coords.get("var");
        for stat in COORD_STATS {
            let (want, got) = (c.coords.get(stat), g.coords.get(stat));
            for (j, (&w, &v)) in want.iter().zip(got).enumerate() {
                let at = || format!("{what} [{name}] {stat}[{j}]: gpu {v}, cpu {w}");
                if w.is_nan() || v.is_nan() {
                    assert_eq!(w.is_nan(), v.is_nan(), "{} (NaN mismatch)", at());
                    continue;
                }
                if matches!(stat, "n" | "nonfinite") {
                    assert_eq!(v, w, "{}", at());
                    continue;
                }
                let tol = if stat.ends_with("_p") {
                    tolerance::GPU_LOG10_P
                } else {
                    tolerance::GPU
                };
                let e = if stat.ends_with("_p") && v < 1e-300 && w < 1e-300 {
                    0.0 // both at (or next to) scipy's underflow to 0
                } else if stat == "mean" && var[j] == 0.0 {
                    (v - w).abs() / w.abs().max(f64::MIN_POSITIVE)
                } else {
                    tolerance::error(stat, v, w, var[j].sqrt())
                };
                assert!(e <= tol, "{}: error {e:e} > {tol:e}", at());
                worst.note(stat, e);
            }
        }
        let (cs, gs) = (&c.summary, &g.summary);
        for (stat, w, v) in [
            (
                "alpha_time_blocked",
                cs.alpha_time_blocked,
                gs.alpha_time_blocked,
            ),
            (
                "alpha_simsekli_flat",
                cs.alpha_simsekli_flat,
                gs.alpha_simsekli_flat,
            ),
        ] {
            assert_eq!(
                w.is_nan(),
                v.is_nan(),
                "{what} [{name}] {stat}: gpu {v}, cpu {w}"
            );
            let e = inv_err(v, w);
            assert!(
                e <= tolerance::GPU,
                "{what} [{name}] {stat}: gpu {v}, cpu {w}, 1/α error {e:e}"
            );
            worst.note(stat, e);
        }
        for (stat, w, v) in [
            ("constant_coords", cs.constant_coords, gs.constant_coords),
            ("zero_entries", cs.zero_entries, gs.zero_entries),
            (
                "nonfinite_samples",
                cs.nonfinite_samples,
                gs.nonfinite_samples,
            ),
            ("dropped_blocks", cs.dropped_blocks, gs.dropped_blocks),
        ] {
            assert_eq!(v, w, "{what} [{name}] {stat}");
        }
    }
    let (w, v) = (cpu.model.alpha_simsekli_flat, gpu.model.alpha_simsekli_flat);
    assert_eq!(
        w.is_nan(),
        v.is_nan(),
        "{what} model flat: gpu {v}, cpu {w}"
    );
    let e = inv_err(v, w);
    assert!(
        e <= tolerance::GPU,
        "{what} model flat: gpu {v}, cpu {w}, 1/α error {e:e}"
    );
    worst.note("model_simsekli_flat", e);
}

fn run(paths: &[PathBuf], opts: &Options, backend: &mut dyn Backend) -> Analysis {
    let sources: Vec<Box<dyn TensorSource>> = paths
        .iter()
        .map(|p| Box::new(NpyTensor::open(p).unwrap()) as Box<dyn TensorSource>)
        .collect();
    analyze::analyze(&sources, opts, backend).unwrap()
}

/// Both engines on `paths` under `opts`; returns the GPU analysis's worst errors.
fn both(paths: &[PathBuf], opts: &Options, g: &mut GpuEngine, what: &str, worst: &mut Worst) {
    let mut cpu = CpuEngine::new(0).unwrap();
    let want = run(paths, opts, &mut cpu);
    let got = run(paths, opts, g);
    compare(&want, &got, what, worst);
}

/// The digits stack split into its four tensors (`layout.json`), so the whole-model flat
/// state spans several tensors with offsets.
fn digits_tensors(dir: &Path) -> Vec<PathBuf> {
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::data("digits/layout.json")).unwrap())
            .unwrap();
    let src = NpyTensor::open(&common::data("digits/stack.npy")).unwrap();
    let (k, p) = (src.meta().samples, src.meta().coords());
    let block = src.read_block(0..k, 0..p).unwrap();
    let mut all = vec![0.0; k * p];
    block.data.widen_into(0..k * p, &mut all);
    let mut paths = Vec::new();
    for t in layout["tensors"].as_array().unwrap() {
        let off = t["offset"].as_u64().unwrap() as usize;
        let size = t["size"].as_u64().unwrap() as usize;
        let vals: Vec<f32> = (0..k)
            .flat_map(|r| {
                all[r * p + off..r * p + off + size]
                    .iter()
                    .map(|&v| v as f32)
            })
            .collect();
        let path = dir.join(format!("{}.npy", t["name"].as_str().unwrap()));
        common::write_npy_f32(&path, &[k, size], &vals);
        paths.push(path);
    }
    paths
}

#[test]
fn digits_matches_cpu() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let mut worst = Worst::default();
    let stack = vec![common::data("digits/stack.npy")];
    both(
        &stack,
        &common::tail_options(),
        &mut g,
        "digits stack",
        &mut worst,
    );
    eprintln!(
        "digits stack pass 2 kernel time: {:?} s on {} (subgroups: {})",
        g.kernel_seconds(),
        g.adapter().name,
        g.uses_subgroups()
    );
    let dir = tempfile::tempdir().unwrap();
    let split = digits_tensors(dir.path());
    both(
        &split,
        &common::tail_options(),
        &mut g,
        "digits split",
        &mut worst,
    );
    let none = Options {
        center: Center::None,
        ..common::tail_options()
    };
    both(
        &split,
        &none,
        &mut g,
        "digits split, no centring",
        &mut worst,
    );
    worst.print("digits (device bindings)");
}

#[test]
fn digits_matches_cpu_with_tiny_bindings() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions {
        max_binding_bytes: Some(4096),
        ..Default::default()
    }) else {
        return;
    };
    let mut worst = Worst::default();
    let stack = vec![common::data("digits/stack.npy")];
    both(
        &stack,
        &common::tail_options(),
        &mut g,
        "digits stack, 4 KiB bindings",
        &mut worst,
    );
    // Small input blocks too: column-split blocks that start mid-row.
    let small = Options {
        block_bytes: 16 * 1000 * 4,
        ..common::tail_options()
    };
    both(
        &stack,
        &small,
        &mut g,
        "digits stack, small blocks, 4 KiB bindings",
        &mut worst,
    );
    worst.print("digits (4 KiB bindings)");
}

type Gen = fn(usize, usize, &mut common::Draws) -> f64;

/// (name, K, P, value at (row, col)).
fn cases() -> Vec<(&'static str, usize, usize, Gen)> {
    vec![
        ("heavy_tails", 256, 300, |_, c, r| {
            r.sas(0.8 + (c % 12) as f64 / 10.0) * 1e-3
        }),
        ("nonfinite", 96, 40, |row, c, r| match (row * 7 + c) % 29 {
            0 => f64::NAN,
            9 => f64::INFINITY,
            17 => f64::NEG_INFINITY,
            _ => r.sas(1.5),
        }),
        ("zeros_and_constants", 64, 24, |row, c, r| match c % 6 {
            0 => 0.0,
            1 => 3.25,
            2 => 0.1, // constant, not exactly representable: mean ≠ value in f64
            3 if row % 3 == 0 => 0.0,
            4 => (r.uniform() * 4.0).floor() - 1.5, // few distinct values
            _ => r.uniform() - 0.5,
        }),
        ("offset", 128, 12, |_, c, r| {
            1e4 + (r.uniform() - 0.5) * 10f64.powi(-(c as i32 % 4))
        }),
        ("tiny_and_huge", 128, 8, |_, c, r| {
            r.sas(1.2) * if c % 2 == 0 { 1e-12 } else { 1e12 }
        }),
        ("p1", 300, 1, |_, _, r| r.sas(1.7)),
        ("p5", 50, 5, |_, _, r| r.uniform() - 0.5),
        ("k4", 4, 7, |_, _, r| r.uniform() - 0.5),
        ("k_not_multiple", 37, 9, |_, _, r| {
            (r.uniform() - 0.5).powi(3)
        }),
        // > 65,535 flat segments in one dispatch: a 2-D grid; many row chunks of K1 = 250.
        ("many_rows", 70_000, 2, |_, _, r| r.sas(1.9)),
    ]
}

fn values(k: usize, p: usize, gen: Gen, seed: u64) -> Vec<f64> {
    let mut rng = common::Draws(seed | 1);
    (0..k * p).map(|i| gen(i / p, i % p, &mut rng)).collect()
}

/// A seeded K × P f32 `.npy` of `gen`'s values, in `dir`.
fn seeded_f32(dir: &Path, name: &str, (k, p): (usize, usize), gen: Gen, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.npy"));
    let x = values(k, p, gen, seed);
    common::write_npy_f32(
        &path,
        &[k, p],
        &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
    );
    path
}

/// Both engines on `paths` without the fits (what the batching tests watch is the column
/// kernels), compared as [`both`] does; returns the GPU engine's phases of that run alone.
fn phases_of(paths: &[PathBuf], opts: &Options, g: &mut GpuEngine, what: &str) -> PhaseTimes {
    let opts = Options {
        fits: false,
        ..opts.clone()
    };
    let mut worst = Worst::default();
    g.reset_phases();
    both(paths, &opts, g, what, &mut worst);
    worst.print(what);
    g.phases().expect("the GPU engine keeps phase times")
}

#[test]
fn adversarial_inputs_match_cpu() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let Some(mut tiny) = common::gpu_or_skip(GpuOptions {
        max_binding_bytes: Some(4096),
        ..Default::default()
    }) else {
        return;
    };
    // K1 = 250 rows of one f64 column group (4 × 8 bytes) need 8000 bytes.
    let Some(mut small) = common::gpu_or_skip(GpuOptions {
        max_binding_bytes: Some(8192),
        ..Default::default()
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut worst = Worst::default();
    for (i, (name, k, p, gen)) in cases().iter().enumerate() {
        let (k, p) = (*k, *p);
        let x = values(k, p, *gen, 0x9e37_79b9 + i as u64);
        let f32_path = dir.path().join(format!("{name}.npy"));
        common::write_npy_f32(
            &f32_path,
            &[k, p],
            &x.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        );
        // f64 input with the full f64 values, except where a constant column would hold a
        // value with more than 24 significant bits: the CPU engine's f64 mean of such a column
        // can be an ulp off, making every u ±1e-17 instead of 0 (ln|u| ≈ -39 in the pooled
        // sums). Both engines agree whenever the mean is exact; rounding noise they need not.
        let x64: Vec<f64> = if *name == "zeros_and_constants" {
            x.iter().map(|&v| v as f32 as f64).collect()
        } else {
            x.clone()
        };
        let f64_path = dir.path().join(format!("{name}_f64.npy"));
        common::write_npy_f64(&f64_path, &[k, p], &x64);
        for (path, dtype) in [(&f32_path, "f32"), (&f64_path, "f64")] {
            for center in [Center::Mean, Center::None] {
                // (many_rows in 1 KiB blocks would only repeat itself, 560 times.)
                let sizes: &[usize] = if *name == "many_rows" {
                    &[64 << 20]
                } else {
                    &[64 << 20, 1024]
                };
                for &block_bytes in sizes {
                    let opts = Options {
                        center: center.clone(),
                        block_bytes,
                        ..common::tail_options()
                    };
                    let what = format!(
                        "{name} {dtype} (K = {k}, P = {p}, centre {center:?}, block bytes {block_bytes})"
                    );
                    let paths = [path.clone()];
                    both(&paths, &opts, &mut g, &what, &mut worst);
                    let (e, kib) = if *name == "many_rows" {
                        (&mut small, 8)
                    } else {
                        (&mut tiny, 4)
                    };
                    both(
                        &paths,
                        &opts,
                        e,
                        &format!("{what}, {kib} KiB bindings"),
                        &mut worst,
                    );
                }
            }
        }
    }
    worst.print("adversarial inputs");
}

/// f16 and bf16 blocks through the `Backend` trait directly (the kernels widen them), against
/// the CPU engine's accumulator states.
#[test]
fn half_precision_blocks_match_cpu() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let (k, p, k1) = (64, 37, 8);
    let x = values(
        k,
        p,
        |row, c, r| match (row + c) % 31 {
            0 => f64::NAN,
            3 => 0.0,
            _ => r.sas(1.6) * 0.01 + 0.5,
        },
        77,
    );
    for kind in ["f16", "bf16"] {
        let data = || match kind {
            "f16" => BlockData::F16(
                x.iter()
                    .map(|&v| half::f16::from_f64(v).to_bits())
                    .collect(),
            ),
            _ => BlockData::BF16(
                x.iter()
                    .map(|&v| half::bf16::from_f64(v).to_bits())
                    .collect(),
            ),
        };
        // Two row blocks, the second one split by columns.
        let blocks = || {
            vec![
                Block::new(0..32, 0..p, data_rows(&data(), 0..32, 0..p, p)),
                Block::new(32..64, 0..20, data_rows(&data(), 32..64, 0..20, p)),
                Block::new(32..64, 20..p, data_rows(&data(), 32..64, 20..p, p)),
            ]
        };
        let mut cpu = CpuEngine::new(1).unwrap();
        let mut means = [vec![MeanAcc::default(); p], vec![MeanAcc::default(); p]];
        for (e, m) in [&mut cpu as &mut dyn Backend, &mut g]
            .into_iter()
            .zip(&mut means)
        {
            e.coord_mean(&mut blocks().into_iter().map(Ok), m).unwrap();
        }
        for (j, (a, b)) in means[0].iter().zip(&means[1]).enumerate() {
            assert_eq!(
                (a.n, a.nonfinite, a.min, a.max),
                (b.n, b.nonfinite, b.min, b.max),
                "{kind} mean[{j}]"
            );
            assert!(
                (a.mean() - b.mean()).abs() <= 1e-12 * a.mean().abs(),
                "{kind} mean[{j}]: {} vs {}",
                a.mean(),
                b.mean()
            );
        }
        let shift: Vec<f64> = means[0].iter().map(|m| m.mean()).collect();
        let spread: Vec<f64> = means[0]
            .iter()
            .zip(&shift)
            .map(|(m, &s)| (m.max - s).max(s - m.min))
            .collect();
        let n = (k * p) as u64;
        // Every third column stays out of the pooled time-block sums.
        let pool: Vec<bool> = (0..p).map(|j| j % 3 != 0).collect();
        let job = StatsJob {
            k1,
            used_rows: k,
            shift: &shift,
            spread: &spread,
            centre: &shift,
            pool: &pool,
            col0: 0,
            flat_tensor: FlatSpec {
                stride: p as u64,
                base: 0,
                m: 37,
            },
            flat_model: FlatSpec {
                stride: 2 * p as u64,
                base: 5,
                m: 16,
            },
        };
        let mut accs = Vec::new();
        for e in [&mut cpu as &mut dyn Backend, &mut g] {
            let mut out = TensorAcc {
                coords: vec![CoordAcc::default(); p],
                flat: FlatAcc::new((n / 37) as usize),
                blocks: vec![BlockSums::default(); k / k1],
            };
            let mut model = FlatAcc::new((2 * n / 16) as usize + 1);
            e.coord_stats(
                &job,
                &mut blocks().into_iter().map(Ok),
                &mut out,
                &mut model,
            )
            .unwrap();
            accs.push((out, model));
        }
        let (c, gg) = (&accs[0], &accs[1]);
        let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-5 * scale.max(a.abs());
        for j in 0..p {
            let (a, b) = (&c.0.coords[j], &gg.0.coords[j]);
            let (ta, tb) = (&a.tails, &b.tails);
            assert_eq!(
                (a.moments.n, ta.zeros, ta.nz, ta.ny, ta.nx, ta.bad_blocks),
                (b.moments.n, tb.zeros, tb.nz, tb.ny, tb.nx, tb.bad_blocks),
                "{kind} counts[{j}]"
            );
            let s2 = a.moments.s2;
            assert!(
                close(a.moments.s1, b.moments.s1, s2.sqrt()),
                "{kind} s1[{j}]"
            );
            assert!(close(a.moments.s2, b.moments.s2, 0.0), "{kind} s2[{j}]");
            assert!(close(a.moments.s4, b.moments.s4, 0.0), "{kind} s4[{j}]");
            for (what, x, y, n) in [
                ("sl", ta.sl, tb.sl, ta.nz),
                ("ly", ta.ly, tb.ly, ta.ny),
                ("lx", ta.lx, tb.lx, ta.nx),
                ("lm", ta.lm, tb.lm, ta.ny),
            ] {
                assert!(close(x, y, n as f64), "{kind} {what}[{j}]: {x} vs {y}");
            }
        }
        // The pooled per-time-block sums: f32 in the kernel, over at most 256 columns.
        for (b, (x, y)) in c.0.blocks.iter().zip(&gg.0.blocks).enumerate() {
            assert!(x.nx > 0.0, "{kind} block {b} is empty");
            assert_eq!((x.nx, x.ny), (y.nx, y.ny), "{kind} block {b} counts");
            for (what, u, v) in [("sx", x.sx, y.sx), ("sy", x.sy, y.sy), ("sm", x.sm, y.sm)] {
                assert!(close(u, v, x.nx), "{kind} block {b} {what}: {u} vs {v}");
            }
        }
        assert_eq!(c.0.flat.n, gg.0.flat.n);
        assert!(close(c.0.flat.lx, gg.0.flat.lx, 0.0), "{kind} flat lx");
        for (a, b) in
            c.0.flat
                .blocks
                .iter()
                .zip(&gg.0.flat.blocks)
                .chain(c.1.blocks.iter().zip(&gg.1.blocks))
        {
            assert!((a - b).abs() <= 1e-5, "{kind} flat block: {a} vs {b}");
        }
    }
}

/// Rows × columns of a dense (·, width) 16-bit array as a block's own data.
fn data_rows(
    all: &BlockData,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    width: usize,
) -> BlockData {
    let pick = |v: &Vec<u16>| -> Vec<u16> {
        rows.clone()
            .flat_map(|r| {
                v[r * width + cols.start..r * width + cols.end]
                    .iter()
                    .copied()
            })
            .collect()
    };
    match all {
        BlockData::F16(v) => BlockData::F16(pick(v)),
        BlockData::BF16(v) => BlockData::BF16(pick(v)),
        _ => unreachable!("16-bit data only"),
    }
}

/// A binding too small for even one group of columns is an error, never zeros.
#[test]
fn impossible_binding_is_an_error() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions {
        max_binding_bytes: Some(64),
        ..Default::default()
    }) else {
        return;
    };
    let src: Vec<Box<dyn TensorSource>> = vec![Box::new(
        NpyTensor::open(&common::data("digits/stack.npy")).unwrap(),
    )];
    match analyze::analyze(&src, &common::tail_options(), &mut g) {
        Err(gradtail::Error::Gpu(msg)) => assert!(msg.contains("max_binding_bytes"), "{msg}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 64-byte binding cannot hold a unit"),
    }
    // The engine is still usable afterwards.
    g.coord_mean(&mut std::iter::empty(), &mut []).unwrap();
}

#[test]
fn probe_report_lists_the_adapter() {
    let Some(g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let report = gradtail::engine::gpu::probe_report();
    assert!(report.contains(&g.adapter().name), "{report}");
    assert!(report.contains("max_storage_buffer_binding_size"));
    let info = g.info();
    assert_eq!(info.engine, "gpu");
    assert!(info.adapter.is_some());
}

/// With 4 KiB bindings the digits stack is thousands of units: they share submissions, at
/// most `BATCH_UNITS` to one, and the results still match the CPU engine.
#[test]
fn tiny_units_share_submissions() {
    use gradtail::engine::gpu::BATCH_UNITS;
    let Some(mut g) = common::gpu_or_skip(GpuOptions {
        max_binding_bytes: Some(4096),
        ..Default::default()
    }) else {
        return;
    };
    let stack = vec![common::data("digits/stack.npy")];
    let p = phases_of(
        &stack,
        &common::tail_options(),
        &mut g,
        "digits stack, batched",
    );
    eprintln!("{} units in {} submissions", p.units, p.submits);
    assert!(
        p.units > 1000,
        "{} units: the bindings did not split",
        p.units
    );
    assert!(
        p.submits >= p.units.div_ceil(BATCH_UNITS as u64),
        "{} submissions for {} units: a batch exceeded {BATCH_UNITS} units",
        p.submits,
        p.units
    );
    assert!(
        p.submits * 50 <= p.units,
        "{} submissions for {} units: units were not batched",
        p.submits,
        p.units
    );
}

/// A unit larger than a batch's staging (`BATCH_BYTES`) grows it and runs alone; the small
/// tensor after it shares the grown buffer. Both match the CPU engine.
#[test]
fn unit_larger_than_a_batch() {
    use gradtail::engine::gpu::BATCH_BYTES;
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    // Whole-column blocks aim below a batch, but hold 256 columns at least: a K this tall
    // makes one block (and unit) of 256 columns above a batch.
    let (k, p) = (17_000, 256);
    assert!(
        (k * p * 4) as u64 > BATCH_BYTES,
        "the test needs a unit above a batch"
    );
    let dir = tempfile::tempdir().unwrap();
    let big = seeded_f32(
        dir.path(),
        "big",
        (k, p),
        |_, c, r| r.sas(1.2 + (c % 8) as f64 / 10.0),
        7,
    );
    let small = seeded_f32(dir.path(), "small", (k, 10), |_, _, r| r.sas(1.5), 8);
    let opts = common::tail_options();
    let ph = phases_of(&[big, small], &opts, &mut g, "a unit above a batch");
    // Two passes over two tensors, one unit each.
    assert_eq!((ph.units, ph.submits), (4, 4));
    // Pass 1 uploads the big unit; pass 2 reads it where pass 1 left it.
    assert!(ph.upload_bytes as usize >= k * p * 4);
    assert!(ph.kernel_read_bytes as usize >= 2 * k * p * 4);
}

/// Whole columns: pass 2 binds the units pass 1 left on the device, so the input is uploaded
/// once while the kernels read it once per pass; in row chunks (two streams) it is uploaded
/// per pass. Both match the CPU engine.
#[test]
fn pass_two_reads_what_pass_one_left() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let stack = vec![common::data("digits/stack.npy")];
    let src = NpyTensor::open(&stack[0]).unwrap();
    let input = (src.meta().samples * src.meta().coords() * 4) as u64;
    let whole = common::tail_options();
    // 64 KB blocks: a strip of 256 whole columns (256 KiB) does not fit, so row chunks,
    // each pass a stream.
    let chunks = Options {
        block_bytes: 16 * 1000 * 4,
        ..whole.clone()
    };
    for (opts, what, once) in [
        (&whole, "whole columns", true),
        (&chunks, "row chunks", false),
    ] {
        let p = phases_of(&stack, opts, &mut g, what);
        eprintln!(
            "{what}: {} B uploaded, {} B read by the kernels, input {input} B",
            p.upload_bytes, p.kernel_read_bytes
        );
        assert!(
            p.kernel_read_bytes >= 2 * input,
            "{what}: each pass reads the input"
        );
        let input_uploads = p.upload_bytes as f64 / input as f64;
        if once {
            assert!(
                input_uploads < 1.5,
                "{what}: uploaded {input_uploads:.2}× the input"
            );
        } else {
            assert!(
                input_uploads >= 2.0,
                "{what}: uploaded {input_uploads:.2}× the input"
            );
        }
    }
}

/// One read of a block cut into several units (12 MiB bindings, 16 MiB batches): pass 1 leaves
/// units in both buffer sets, and pass 2's batches alternate between the sets, so it may bind
/// only those its own batches have not overwritten, and uploads the rest. Matches the CPU
/// engine.
#[test]
fn one_read_over_alternating_batches() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions {
        max_binding_bytes: Some(12 << 20),
        ..Default::default()
    }) else {
        return;
    };
    let (k, p) = (256, 40_000);
    let dir = tempfile::tempdir().unwrap();
    let path = seeded_f32(
        dir.path(),
        "wide",
        (k, p),
        |_, c, r| r.sas(1.1 + (c % 9) as f64 / 10.0),
        11,
    );
    let ph = phases_of(
        &[path],
        &common::tail_options(),
        &mut g,
        "one read, several units",
    );
    eprintln!(
        "{} units in {} submissions, {} B uploaded, {} B read",
        ph.units, ph.submits, ph.upload_bytes, ph.kernel_read_bytes
    );
    assert!(
        ph.units >= 6,
        "{} units: the bindings did not split",
        ph.units
    );
    assert!(
        ph.submits >= 4,
        "{} submissions: the batches did not alternate",
        ph.submits
    );
}
