//! The GPU engine's per-coordinate fits (kernel `coord_fits`) against the CPU engine's
//! (`stats::fits::fit_column` in f64), field by field, within the f32 tolerances of
//! `common::tolerance`: on the digits gradients, and on seeded SαS columns with zeros (tied
//! quantiles), constant columns, two-valued columns, NaN and ±inf samples and too few finite
//! samples, at K = 17, 512 and the kernel's limit (4096); beyond the limit the engine falls
//! back to the host and agrees exactly. Without a GPU adapter each test prints
//! "skipped: no GPU adapter" (a failure when GRADTAIL_REQUIRE_GPU=1).

use crate::common;
use crate::common::tolerance::check_fits;

use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::gpu::{GpuOptions, FITS_K_MAX};
use gradtail::engine::Backend;
use gradtail::input::npy::NpyTensor;
use gradtail::input::{Block, BlockData, TensorSource};
use gradtail::stats::fits::Fits;

/// Both engines' fits of `block` with the given usable flags and centres.
fn both(gpu: &mut dyn Backend, block: &Block, usable: &[bool], centre: &[f64]) -> [Vec<Fits>; 2] {
    let mut cpu = CpuEngine::new(2).unwrap();
    let w = block.width();
    let mut want = vec![Fits::NAN; w];
    cpu.coord_fits(block, usable, centre, &mut want).unwrap();
    let mut got = vec![Fits::NAN; w];
    gpu.coord_fits(block, usable, centre, &mut got).unwrap();
    [got, want]
}

/// The mean of each column's finite samples, the centre the pipeline uses by default.
fn means(block: &Block) -> Vec<f64> {
    let (k, w) = (block.rows.len(), block.width());
    let mut all = vec![0.0; k * w];
    block.data.widen_into(0..k * w, &mut all);
    (0..w)
        .map(|j| {
            let f: Vec<f64> = (0..k)
                .map(|r| all[r * w + j])
                .filter(|x| x.is_finite())
                .collect();
            if f.is_empty() {
                0.0
            } else {
                f.iter().sum::<f64>() / f.len() as f64
            }
        })
        .collect()
}

/// Column kinds of the synthetic block, by column index modulo their count.
const KINDS: usize = 12;

/// One sample of column `j`, row `r`: SαS of several α and scales, with zeros, constants, two
/// values, non-finite samples, and columns with one or three finite samples.
fn sample(j: usize, r: usize, k: usize, d: &mut common::Draws) -> f64 {
    let scale = 10f64.powi((j % 7) as i32 - 3);
    match j % KINDS {
        0 => d.sas(1.5) * scale,
        1 => d.sas(1.1) * scale + 0.3 * scale,
        2 => d.sas(1.9) * scale,
        3 => d.sas(2.0) * scale,
        // Mostly zeros: q95 = q05 (tied), or only the IQR 0.
        4 => {
            if d.uniform() < 0.97 {
                0.0
            } else {
                d.sas(1.5)
            }
        }
        5 => {
            if d.uniform() < 0.6 {
                0.0
            } else {
                d.sas(1.3) * scale
            }
        }
        6 => 2.5,
        7 => {
            if d.uniform() < 0.5 {
                -1.0
            } else {
                3.0
            }
        }
        // Non-finite samples among SαS ones.
        8 => match r % 11 {
            3 => f64::NAN,
            7 => f64::INFINITY,
            _ => d.sas(1.7) * scale,
        },
        9 => {
            if r == k / 2 {
                4.0
            } else {
                f64::NAN
            }
        }
        10 => {
            if r < 3 {
                d.sas(1.5)
            } else {
                f64::NEG_INFINITY
            }
        }
        _ => d.sas(0.8) * scale - 5.0 * scale,
    }
}

fn synth_block(k: usize, w: usize, seed: u64) -> Block {
    let mut d = common::Draws(seed);
    let mut data = vec![0.0f32; k * w];
    for r in 0..k {
        for j in 0..w {
            data[r * w + j] = sample(j, r, k, &mut d) as f32;
        }
    }
    Block::new(0..k, 0..w, BlockData::F32(data))
}

fn synth_case(k: usize, w: usize) {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let block = synth_block(k, w, 0x5eed + k as u64);
    // Every column is offered for fitting, but one in KINDS + 1 (the unusable ones of pass 1).
    let usable: Vec<bool> = (0..w).map(|j| j % (KINDS + 1) != KINDS).collect();
    let centre = means(&block);
    let [got, want] = both(&mut g, &block, &usable, &centre);
    check_fits(&got, &want, &format!("synth K = {k}"));
    // The degenerate kinds really are what the checks need.
    assert!(want[6].ad.is_nan(), "constant column");
    assert!(want[9].ad.is_nan(), "one finite sample");
    assert!(
        want[10].var_ratio.is_nan() && !want[10].ad.is_nan(),
        "three finite samples"
    );
    if k >= 100 {
        assert!(
            want[4].beta_mcculloch.is_nan() && want[4].alpha_mcculloch == 2.0,
            "tied"
        );
        assert!(
            want[5].scale_mcculloch == 0.0 && want[5].ks_stable.is_nan(),
            "IQR 0"
        );
    }
}

#[test]
fn synth_small_k_matches_cpu() {
    synth_case(17, 3 * KINDS + 2);
}

#[test]
fn synth_k512_matches_cpu() {
    synth_case(512, 4 * KINDS);
}

#[test]
fn synth_at_the_limit_matches_cpu() {
    synth_case(FITS_K_MAX as usize, KINDS + 1);
}

/// Past the kernel's K the GPU engine runs the host fits: the same numbers as the CPU engine.
#[test]
fn beyond_the_limit_falls_back_to_the_host() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let k = FITS_K_MAX as usize + 1;
    let block = synth_block(k, 4, 3);
    let usable = vec![true; 4];
    let centre = means(&block);
    let [got, want] = both(&mut g, &block, &usable, &centre);
    for (g, w) in got.iter().zip(&want) {
        for (a, b) in g.to_array().iter().zip(w.to_array()) {
            assert!(*a == b || (a.is_nan() && b.is_nan()), "{a} vs {b}");
        }
    }
}

/// The digits gradients (K = 256), every coordinate, mean-centred.
#[test]
fn digits_matches_cpu() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let src = NpyTensor::open(&common::data("digits/stack.npy")).unwrap();
    let m = src.meta().clone();
    let block = src.read_block(0..m.samples, 0..m.coords()).unwrap();
    let centre = means(&block);
    // Constant columns are not fitted (pass 1 marks them), as in the pipeline.
    let (k, w) = (m.samples, m.coords());
    let mut all = vec![0.0; k * w];
    block.data.widen_into(0..k * w, &mut all);
    let usable: Vec<bool> = (0..w)
        .map(|j| (1..k).any(|r| all[r * w + j] != all[j]))
        .collect();
    let [got, want] = both(&mut g, &block, &usable, &centre);
    check_fits(&got, &want, "digits");
    assert!(want.iter().filter(|f| !f.ad.is_nan()).count() > 1000);
}

/// `gradtail bench`'s fits row on the GPU engine: it times the engine's fits (the kernel) of
/// the seeded K = 512 stack, and the printed row says when the device is a CPU.
#[test]
fn bench_row_runs_the_kernel() {
    let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) else {
        return;
    };
    let cpu_device = g.is_cpu_device();
    let f = gradtail::bench::time_fits(&mut g, cpu_device, 64, 1, 7).unwrap();
    assert_eq!((f.engine.as_str(), f.samples, f.coords), ("gpu", 512, 64));
    assert!(f.seconds.min > 0.0 && f.us_per_coord > 0.0);
    let mut text = Vec::new();
    let report = gradtail::bench::BenchReport {
        fits: vec![f],
        ..gradtail::bench::run(
            gradtail::bench::MemTensor::synthetic(16, 8, gradtail::input::Dtype::F32, 1),
            &mut [],
            1,
        )
        .unwrap()
    };
    gradtail::bench::print(&report, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("fits, gpu engine (K = 512, 64 coordinates"),
        "{text}"
    );
    assert_eq!(
        text.contains("CPU device: not GPU performance"),
        cpu_device,
        "{text}"
    );
}
