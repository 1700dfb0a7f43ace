//! Device buffers the engine owns and reuses: a buffer that grows only when a larger one is
//! needed, the two alternating buffer sets, and bindings of sub-ranges.

use super::plan::WORD;
use super::readback::Pending;

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

/// One buffer set.
pub(super) struct Slot {
    pub(super) input: Grow,
    pub(super) params: Grow,
    pub(super) segs: Grow,
    pub(super) out: Grow,
    pub(super) readback: Grow,
    pub(super) dims: wgpu::Buffer,
    pub(super) query: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    pub(super) pending: Option<Pending>,
}

/// A binding of `size` bytes (rounded up to whole vec4 words) at `offset` of `buf`.
pub(super) fn bind(buf: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: buf,
        offset,
        size: wgpu::BufferSize::new(size.max(WORD).div_ceil(WORD) * WORD),
    })
}
