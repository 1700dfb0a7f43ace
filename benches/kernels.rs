//! Criterion benchmarks of the engines' kernels on seeded in-memory data (no disk), with
//! throughput in input bytes. `cargo bench --bench kernels`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use gradtail::engine::accum::{BlockSums, CoordAcc, FlatAcc, FlatSpec, MeanAcc};
use gradtail::engine::cpu::CpuEngine;
use gradtail::engine::{Backend, StatsJob, TensorAcc};
use gradtail::input::{Block, BlockData};

const K: usize = 256;
const P: usize = 65_536;

fn data() -> Vec<f32> {
    let mut row = vec![0.0; P];
    let scales = vec![1.0; P];
    let mut out = Vec::with_capacity(K * P);
    for r in 0..K {
        gradtail::synth::row(1.7, &scales, 42, r, &mut row);
        out.extend(row.iter().map(|&v| v as f32));
    }
    out
}

/// Benchmarks one engine's two passes on the same seeded block.
fn engine(c: &mut Criterion, name: &str, engine: &mut dyn Backend, x: &[f32]) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes((K * P * 4) as u64));
    g.sample_size(10);
    let block = || Block::new(0..K, 0..P, BlockData::F32(x.to_vec()));
    g.bench_function("coord_mean", |b| {
        b.iter_batched(
            block,
            |blk| {
                let mut out = vec![MeanAcc::default(); P];
                engine
                    .coord_mean(&mut std::iter::once(Ok(blk)), &mut out)
                    .unwrap();
                out
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let zeros = vec![0.0; P];
    // Each column's largest |x| about the zero shift, as pass 1 would give it.
    let mut spread = vec![0.0f64; P];
    for row in x.chunks_exact(P) {
        for (s, &v) in spread.iter_mut().zip(row) {
            *s = s.max(f64::from(v).abs());
        }
    }
    let pool = vec![true; P];
    let m = gradtail::stats::tail::largest_divisor_below_sqrt((K * P) as u64);
    let job = StatsJob {
        k1: 16,
        used_rows: K,
        shift: &zeros,
        spread: &spread,
        centre: &zeros,
        pool: &pool,
        col0: 0,
        flat_tensor: FlatSpec {
            stride: P as u64,
            base: 0,
            m,
        },
        flat_model: FlatSpec {
            stride: P as u64,
            base: 0,
            m,
        },
    };
    g.bench_function("coord_stats", |b| {
        b.iter_batched(
            block,
            |blk| {
                let mut acc = TensorAcc {
                    coords: vec![CoordAcc::default(); P],
                    flat: FlatAcc::new((K * P) / m as usize),
                    blocks: vec![BlockSums::default(); K / 16],
                };
                let mut model = FlatAcc::new((K * P) / m as usize);
                engine
                    .coord_stats(&job, &mut std::iter::once(Ok(blk)), &mut acc, &mut model)
                    .unwrap();
                acc
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let x = data();
    engine(c, "cpu", &mut CpuEngine::new(0).unwrap(), &x);
    // The GPU engine on whatever adapter exists; a CPU device (lavapipe) is named as such.
    match gradtail::engine::gpu::GpuEngine::new(Default::default()) {
        Ok(mut gpu) => {
            let name = if gpu.is_cpu_device() {
                "gpu-on-cpu-device"
            } else {
                "gpu"
            };
            engine(c, name, &mut gpu, &x);
        }
        Err(e) => eprintln!("skipped GPU benchmarks: {e}"),
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
