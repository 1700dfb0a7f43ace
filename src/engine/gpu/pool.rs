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
    /// Batches this set has submitted: its device buffer holds the last one's staged bytes.
    pub(super) gen: u64,
}

/// A pass-1 unit's input as it lies in a buffer set's device buffer after its batch, kept for
/// pass 2 of the same block (a single read: `Backend::single_read`), which then binds it
/// instead of uploading the unit again. Valid while that set submits nothing newer.
pub(super) struct Resident {
    /// The block's data: a weak reference, so the block is recycled as usual, and its
    /// allocation cannot be reused by another block while this entry exists.
    pub(super) block: std::sync::Weak<crate::input::BlockData>,
    /// Absolute rows and columns of the unit, and how it was packed.
    pub(super) rows: std::ops::Range<usize>,
    pub(super) cols: std::ops::Range<usize>,
    pub(super) dtype: u32,
    pub(super) pitch: usize,
    /// Where: buffer set, its batch count once that batch is submitted, byte offset.
    pub(super) slot: usize,
    pub(super) gen: u64,
    pub(super) at: u64,
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
