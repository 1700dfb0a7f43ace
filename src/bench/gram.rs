//! `gradtail bench`'s Gram-pass rows: each engine's `Backend::gram` (faer's triangular
//! product on the CPU engine, the `gram` kernel on the GPU engine) over whole columns of the
//! seeded stack, as `analyze` runs it for the covariance spectrum, end to end (on the GPU
//! engine: the host's scan for NaN and scale, upload, kernel, readback and the f64 sum).

use std::time::Instant;

use serde::Serialize;

use super::{Timing, STRUCTURE_COORDS};
use crate::engine::Backend;
use crate::error::Result;
use crate::stats::structure::Gram;

#[derive(Clone, Debug, Serialize)]
pub struct GramRun {
    pub engine: String,
    /// The engine ran on a CPU device (lavapipe): its time is not GPU performance.
    pub cpu_device: bool,
    pub samples: usize,
    pub coords: usize,
    pub threads: usize,
    /// Wall time of one K × K Gram over `coords` coordinates (median [min, max]).
    pub seconds: Timing,
    /// K²·P multiply-adds per second, in 10⁹ (both engines compute about half of them: the
    /// upper or lower triangle).
    pub gmac_s: f64,
}

/// Times `backend`'s Gram of a seeded K × min(P, [`STRUCTURE_COORDS`]) f32 stack about its
/// column means: one warm-up, then `repeat` runs. `cpu_device` as in `Candidate`.
pub fn time_gram(
    backend: &mut dyn Backend,
    cpu_device: bool,
    samples: usize,
    params: usize,
    repeat: usize,
    seed: u64,
) -> Result<GramRun> {
    let (k, p) = (samples, params.clamp(1, STRUCTURE_COORDS));
    let (block, centre) = super::seeded_block(k, p, seed)?;
    let mut times = Vec::new();
    for i in 0..=repeat.max(1) {
        let mut g = Gram::new(k);
        let t = Instant::now();
        backend.gram(&block, &centre, &mut g)?;
        std::hint::black_box(&g);
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let seconds = Timing::of(times);
    let info = backend.info();
    Ok(GramRun {
        engine: info.engine.to_string(),
        cpu_device,
        samples: k,
        coords: p,
        threads: info.threads,
        gmac_s: (k * k * p) as f64 / seconds.median / 1e9,
        seconds,
    })
}

/// The row `gradtail bench` prints for one engine.
pub fn print(g: &GramRun, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let on = if g.engine == "cpu" {
        format!("{} threads", g.threads)
    } else if g.cpu_device {
        "CPU device: not GPU performance".into()
    } else {
        "kernel gram".into()
    };
    writeln!(
        out,
        "Gram pass, {} engine (K = {}, {} coordinates, {on}): {:.3} s [{:.3}, {:.3}], {:.1} G multiply-adds/s",
        g.engine, g.samples, g.coords, g.seconds.median, g.seconds.min, g.seconds.max, g.gmac_s
    )
}
