//! The GPU's ceilings for `gradtail bench`, measured with the same device the engine uses:
//! device-to-device copy bandwidth (bytes read + written) and the host-to-device upload rate.
//! Host timers bracket the work and stop after `poll(wait)`, so the device is synchronised.

use std::time::Instant;

use super::GpuEngine;
use crate::error::{Error, Result};

const REPEAT: usize = 8;
/// Shortest timed span of the copy measurement, and most copies in it.
const MIN_SPAN_S: f64 = 0.1;
const MAX_COPIES: usize = 2048;

impl GpuEngine {
    /// (device copy GB/s counting read + write, upload GB/s), 1 GB = 1e9 bytes.
    pub fn rooflines(&self) -> Result<(f64, f64)> {
        let ctx = &self.ctx;
        let size = (256u64 << 20).min(ctx.limits.max_buffer_size / 2) & !255;
        let make = |label| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (a, b) = (make("gradtail.roofline.a"), make("gradtail.roofline.b"));
        let host: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let wait = || {
            ctx.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map(|_| ())
                .map_err(|e| Error::Gpu(format!("roofline: {e}")))
        };
        ctx.queue.write_buffer(&a, 0, &host);
        ctx.queue.submit([]);
        wait()?;

        let copies = |n: usize| {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("gradtail.roofline.copy"),
                });
            for i in 0..n {
                let (src, dst) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
                enc.copy_buffer_to_buffer(src, 0, dst, 0, size);
            }
            ctx.queue.submit([enc.finish()]);
        };
        copies(2);
        wait()?;
        // A fast device copies 8 × 256 MiB in about a millisecond, where the submit and the
        // wait would weigh: more copies until the timed span is long enough.
        let mut n = REPEAT;
        let copy = loop {
            let t = Instant::now();
            copies(n);
            wait()?;
            let dt = t.elapsed().as_secs_f64();
            if dt >= MIN_SPAN_S || n >= MAX_COPIES {
                break 2.0 * (size as f64) * n as f64 / dt / 1e9;
            }
            n *= 4;
        };

        let t = Instant::now();
        for _ in 0..REPEAT {
            ctx.queue.write_buffer(&a, 0, &host);
        }
        ctx.queue.submit([]);
        wait()?;
        let upload = size as f64 * REPEAT as f64 / t.elapsed().as_secs_f64() / 1e9;
        self.ctx.check_fault()?;
        Ok((copy, upload))
    }
}
