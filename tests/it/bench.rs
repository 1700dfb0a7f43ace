//! `gradtail bench`'s figures for a GPU run: the phases add up to no more than the wall clock,
//! the bytes moved match what the two passes must upload, a CPU device is labelled, and the
//! CPU engine reports no phases. Runs on whatever adapter exists (lavapipe in CI); with none
//! it prints "skipped: no GPU adapter", and fails instead when GRADTAIL_REQUIRE_GPU=1.

use crate::common;

use gradtail::bench::{self, Candidate, MemTensor};
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::gpu::GpuOptions;
use gradtail::input::Dtype;

#[test]
fn gpu_run_reports_its_phases() {
    for dtype in [Dtype::F32, Dtype::BF16] {
        let Some(g) = common::gpu_or_skip(GpuOptions::default()) else {
            return;
        };
        let cpu_device = g.is_cpu_device();
        // The ceilings are measured once (they move 4 GB on a CPU device).
        let (copy, upload) = if dtype == Dtype::F32 {
            g.rooflines().unwrap()
        } else {
            (1.0, 1.0)
        };
        assert!(copy > 0.0 && upload > 0.0, "ceilings {copy} {upload}");
        // P a multiple of 8: rows need no padding in either dtype, so the uploaded input is
        // exactly the stack's bytes, once per pass.
        let (k, p) = (256, 2048);
        let mut candidates = vec![
            Candidate {
                backend: Box::new(CpuEngine::new(1).unwrap()),
                ceiling_gb_s: 1.0,
                ceiling: "host read".into(),
                upload_gb_s: None,
                cpu_device: false,
            },
            Candidate {
                backend: Box::new(g),
                ceiling_gb_s: copy,
                ceiling: "dev copy".into(),
                upload_gb_s: Some(upload),
                cpu_device,
            },
        ];
        let r = bench::run(MemTensor::synthetic(k, p, dtype, 5), &mut candidates, 1).unwrap();
        assert_eq!(r.input_bytes, (k * p * dtype.size()) as u64);

        let cpu = &r.engines[0];
        assert!(cpu.upload_s.is_none() && cpu.host_s.is_none() && cpu.upload_bytes.is_none());

        let e = &r.engines[1];
        assert_eq!(e.engine, "gpu");
        assert_eq!(e.cpu_device, cpu_device);
        // One repeat: each figure is that run's own, so they can be added up.
        let t = |x: Option<bench::Timing>| x.expect("a GPU run has this phase").median;
        let (up, sub, rb, wait, host, fold) = (
            t(e.upload_s),
            t(e.submit_s),
            t(e.readback_s),
            t(e.readback_wait_s),
            t(e.host_s),
            t(e.fold_s),
        );
        let wall = e.end_to_end_s.median;
        for (name, v) in [
            ("upload", up),
            ("submit", sub),
            ("readback", rb),
            ("fold", fold),
        ] {
            assert!(v > 0.0, "{name} {v}");
        }
        assert!(wait <= rb, "waiting {wait} is part of readback {rb}");
        // The engine's timers never overlap, so they fit in the wall clock with the rest.
        assert!(host >= 0.0 && fold <= host, "host {host} fold {fold}");
        assert!(up + sub + rb <= wall, "{up} + {sub} + {rb} > {wall}");

        // Whole columns fit a block here: the input goes up once, and pass 2 reads the units
        // pass 1 left on the device. Parameters, segment tables and sizes add a little (24 B
        // per column, 16 B per row segment, ~5 a row here, 48 B per dispatch: ~6 % in bf16),
        // far below a second upload of the input.
        let moved = e.upload_bytes.unwrap();
        assert!(moved >= r.input_bytes, "{moved} < {}", r.input_bytes);
        assert!(moved < r.input_bytes * 115 / 100, "{moved}");
        assert!(e.readback_bytes.unwrap() > 0);
        let (units, submits) = (e.units.unwrap(), e.submits.unwrap());
        assert!(
            units >= 2 && submits >= 1 && submits <= units,
            "{units} {submits}"
        );
        // The kernels read every unit's input once per pass.
        let read = e.kernel_read_bytes.unwrap();
        assert!(read >= 2 * r.input_bytes, "{read} < 2 × {}", r.input_bytes);
        if let Some(k) = e.kernel_s {
            let rate = e.kernel_gb_s.unwrap();
            assert!((rate - read as f64 / k.median / 1e9).abs() <= 1e-9 * rate);
        }

        let mut text = Vec::new();
        bench::print(&r, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("upload s") && text.contains("readback s"),
            "{text}"
        );
        assert_eq!(text.contains("[CPU device"), cpu_device, "{text}");
    }
}

/// The fits row: the given number of coordinates at K = 512 on the requested threads, a
/// per-coordinate time that is the run time over the coordinates, and a printed line.
#[test]
fn fits_row_times_every_coordinate() {
    let mut cpu = CpuEngine::new(2).unwrap();
    let f = bench::time_fits(&mut cpu, false, 300, 2, 7).unwrap();
    assert_eq!((f.samples, f.coords, f.threads), (512, 300, 2));
    assert_eq!(f.engine, "cpu");
    assert!(f.seconds.min > 0.0 && f.seconds.min <= f.seconds.median);
    assert!((f.us_per_coord - f.seconds.median / 300.0 * 1e6).abs() <= 1e-9 * f.us_per_coord);
    assert!((f.us_per_coord_thread - 2.0 * f.us_per_coord).abs() <= 1e-9 * f.us_per_coord);
    let r = bench::run(
        MemTensor::synthetic(16, 64, Dtype::F32, 1),
        &mut [Candidate {
            backend: Box::new(CpuEngine::new(1).unwrap()),
            ceiling_gb_s: 1.0,
            ceiling: "host read".into(),
            upload_gb_s: None,
            cpu_device: false,
        }],
        1,
    )
    .unwrap();
    let mut text = Vec::new();
    bench::print(&bench::BenchReport { fits: vec![f], ..r }, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("fits, cpu engine (K = 512, 300 coordinates, 2 threads)")
            && text.contains("µs per coordinate on one thread"),
        "{text}"
    );
}

/// The Gram rows: one per engine, K²·P over the median time as the rate, the CPU device
/// labelled, and the printed lines.
#[test]
fn gram_rows_for_both_engines() {
    let mut cpu = CpuEngine::new(2).unwrap();
    let mut grams = vec![bench::time_gram(&mut cpu, false, 96, 3000, 2, 7).unwrap()];
    if let Some(mut g) = common::gpu_or_skip(GpuOptions::default()) {
        let cpu_device = g.is_cpu_device();
        grams.push(bench::time_gram(&mut g, cpu_device, 96, 3000, 2, 7).unwrap());
    }
    for r in &grams {
        assert_eq!((r.samples, r.coords), (96, 3000));
        assert!(r.seconds.min > 0.0 && r.seconds.min <= r.seconds.median);
        let rate = (96 * 96 * 3000) as f64 / r.seconds.median / 1e9;
        assert!((r.gmac_s - rate).abs() <= 1e-9 * rate);
    }
    let r = bench::run(
        MemTensor::synthetic(16, 64, Dtype::F32, 1),
        &mut [Candidate {
            backend: Box::new(CpuEngine::new(1).unwrap()),
            ceiling_gb_s: 1.0,
            ceiling: "host read".into(),
            upload_gb_s: None,
            cpu_device: false,
        }],
        1,
    )
    .unwrap();
    let mut text = Vec::new();
    let n = grams.len();
    bench::print(&bench::BenchReport { grams, ..r }, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("Gram pass, cpu engine (K = 96, 3000 coordinates, 2 threads)"),
        "{text}"
    );
    if n == 2 {
        assert!(text.contains("Gram pass, gpu engine (K = 96, 3000 coordinates, "));
    }
}
