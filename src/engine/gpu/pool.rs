//! Device buffers the engine owns and reuses: a buffer that grows only when a larger one is
//! needed, the two alternating buffer sets, and bindings of sub-ranges.

use super::batch::Batch;
use super::plan::WORD;
use super::readback::{InFlight, MapFlag};

/// A buffer that is reallocated only when a larger one is needed.
pub(super) struct Grow {
    pub(super) buf: Option<wgpu::Buffer>,
    pub(super) usage: wgpu::BufferUsages,
    pub(super) label: &'static str,
}

impl Grow {
    pub(super) fn new(label: &'static str, usage: wgpu::BufferUsages) -> Self {
        Grow {
            buf: None,
            usage,
            label,
        }
    }

    pub(super) fn get(&mut self, device: &wgpu::Device, size: u64) -> &wgpu::Buffer {
        let size = size.max(WORD).div_ceil(WORD) * WORD;
        if self.buf.as_ref().is_none_or(|b| b.size() < size) {
            self.buf = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(self.label),
                size,
                usage: self.usage,
                mapped_at_creation: false,
            }));
        }
        self.buf.as_ref().expect("allocated above")
    }
}

/// One buffer set: the batch it records, the buffers that batch runs in, and the batch it
/// submitted last.
pub(super) struct Slot {
    /// Host-visible staging (`MAP_WRITE | COPY_SRC`), mapped while the set records.
    pub(super) staging: Option<wgpu::Buffer>,
    /// The staging buffer's mapping after the last submission, until it is waited for.
    pub(super) remap: Option<MapFlag>,
    /// The device copy of the staged bytes: inputs, parameters, segment tables and sizes.
    pub(super) data: Grow,
    pub(super) out: Grow,
    pub(super) readback: Grow,
    pub(super) query: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    pub(super) batch: Batch,
    pub(super) pending: Option<InFlight>,
}

impl Slot {
    /// Forgets everything in flight after a failed call: a buffer may still be mapped or
    /// mapping, so none is reused.
    pub(super) fn abandon(&mut self) {
        self.batch = Batch::default();
        self.pending = None;
        self.remap = None;
        self.staging = None;
        self.readback.buf = None;
    }
}

/// A binding of `size` bytes (rounded up to whole vec4 words) at `offset` of `buf`.
pub(super) fn bind(buf: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset,
        size: wgpu::BufferSize::new(size.max(WORD).div_ceil(WORD) * WORD),
    })
}
