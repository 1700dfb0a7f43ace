//! The tile that crosses from the input layer to the engines: a [`Block`] of samples ×
//! coordinates, its storage ([`BlockData`], reused between reads) and its typed view
//! ([`BlockView`], an `ndarray` array in the stored element type).

use std::ops::Range;
use std::sync::Arc;

use ndarray::{s, ArrayView2, ArrayViewMut2, Axis, Zip};

use super::Dtype;

/// Row-major `rows × cols` values of one tensor, already in native byte order: read into a
/// buffer of the block's own, or read in place from a memory-mapped file (`Mapped`), where a
/// row's values lie [`Block::stride`] values after the previous row's.
#[derive(Clone, Debug)]
pub enum BlockData {
    F16(Vec<u16>),
    BF16(Vec<u16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Mapped(Mapped),
}

/// A file mapped into memory for reading in place, which lets go of the pages of blocks that
/// are done, so a run's resident memory stays bounded by the blocks in flight and a few more
/// rather than growing to the size of the file. The pages stay in the page cache; releasing
/// them only drops their mapping, and a later read maps them again, unchanged.
#[derive(Debug)]
pub struct MappedFile {
    map: memmap2::Mmap,
    /// Blocks done whose pages are not yet released, when they are fewer than
    /// [`RELEASE_BYTES`]: releasing costs a call (and a flush of every core's address
    /// translations) per row, so a block of whole columns waits for its neighbours. What is
    /// left when the file is dropped goes with the whole map, in one `munmap`.
    done: std::sync::Mutex<Option<Span>>,
}

/// Bytes of finished blocks released at once. A release costs a call per row and, with each,
/// a flush of every core's address translations, so fewer, larger releases cost less: 256 MiB
/// of file pages (which the kernel may reclaim in any case) took 0.06 s of CPU off a 1 GiB
/// read against 64 MiB.
const RELEASE_BYTES: usize = 256 << 20;

/// `rows` runs of `width` bytes, `stride` bytes apart, from byte `at` of a mapped file.
#[derive(Clone, Copy, Debug)]
struct Span {
    at: usize,
    rows: usize,
    width: usize,
    stride: usize,
}

impl MappedFile {
    pub fn new(map: memmap2::Mmap) -> Arc<Self> {
        Arc::new(MappedFile {
            map,
            done: std::sync::Mutex::new(None),
        })
    }

    /// Notes that a block's span is done, and releases the pages of the finished spans once
    /// they are many, or when they cannot grow (the span is not next to the previous one).
    fn finished(self: &Arc<Self>, span: Span) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let next = match *done {
            Some(d)
                if d.rows == span.rows
                    && d.stride == span.stride
                    && d.at + d.width == span.at
                    && d.width + span.width <= d.stride =>
            {
                Span {
                    width: d.width + span.width,
                    ..d
                }
            }
            Some(d) => {
                self.release_later(d);
                span
            }
            None => span,
        };
        if next.rows * next.width >= RELEASE_BYTES || next.width == next.stride {
            self.release_later(next);
            *done = None;
        } else {
            *done = Some(next);
        }
    }

    /// [`MappedFile::release`] on a thread of its own. The block's reader drops it between
    /// one block's kernels and the next, so a release there (a call and a flush of every
    /// core's address translations per row: 0.05 s of a 1 GiB read) would hold every core
    /// up; on its own thread it overlaps the next block's work.
    fn release_later(self: &Arc<Self>, span: Span) {
        let file = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("gradtail-release".into())
            .spawn(move || file.release(span));
        if spawned.is_err() {
            self.release(span);
        }
    }

    /// Drops the mapping of the pages wholly inside `span`.
    fn release(&self, span: Span) {
        #[cfg(unix)]
        {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
            let base = self.map.as_ptr() as usize + span.at;
            // Adjacent rows are one run.
            let (runs, len) = if span.width == span.stride {
                (1, span.rows * span.width)
            } else {
                (span.rows, span.width)
            };
            for r in 0..runs {
                let first = base + r * span.stride;
                let (start, end) = (first.next_multiple_of(page), (first + len) / page * page);
                if end > start {
                    // SAFETY: the range is page aligned and lies inside the live read-only
                    // map; MADV_DONTNEED on a read-only file mapping only drops page-table
                    // entries, and a later read of the range maps the file's pages again.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = span;
    }
}

/// Values of `dtype` read in place from a [`MappedFile`], aligned for their type: `rows` runs
/// of `width` values `stride` values apart from byte `at`, `len` values from the first to the
/// last.
#[derive(Debug)]
pub struct Mapped {
    file: Arc<MappedFile>,
    at: usize,
    len: usize,
    dtype: Dtype,
    rows: usize,
    width: usize,
    stride: usize,
}

impl Mapped {
    /// Rows × `width` values `stride` apart from byte `at` of `file`, if they lie inside it
    /// and are aligned for `dtype`.
    pub fn new(
        file: Arc<MappedFile>,
        at: usize,
        dtype: Dtype,
        rows: usize,
        width: usize,
        stride: usize,
    ) -> Option<Self> {
        let len = match rows {
            0 => 0,
            n => (n - 1).checked_mul(stride)?.checked_add(width)?,
        };
        let end = at.checked_add(len.checked_mul(dtype.size())?)?;
        let aligned = (file.map.as_ptr() as usize + at).is_multiple_of(dtype.size());
        (end <= file.map.len() && aligned && stride >= width).then_some(Mapped {
            file,
            at,
            len,
            dtype,
            rows,
            width,
            stride,
        })
    }

    /// The byte of the file just past the last value.
    pub fn end(&self) -> usize {
        self.at + self.len * self.dtype.size()
    }

    fn bytes(&self) -> &[u8] {
        &self.file.map[self.at..self.end()]
    }
}

/// Another handle on the same pages, which are released when the last handle is done.
impl Clone for Mapped {
    fn clone(&self) -> Self {
        Mapped {
            file: self.file.clone(),
            ..*self
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let e = self.dtype.size();
        self.file.finished(Span {
            at: self.at,
            rows: self.rows,
            width: self.width * e,
            stride: self.stride * e,
        });
    }
}

/// A block's values as a slice of their stored type.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    F16(&'a [u16]),
    BF16(&'a [u16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> Values<'a> {
    /// The values' bytes, in native order.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Values::F16(v) | Values::BF16(v) => bytemuck::cast_slice(v),
            Values::F32(v) => bytemuck::cast_slice(v),
            Values::F64(v) => bytemuck::cast_slice(v),
        }
    }
}

impl BlockData {
    /// The values as a slice of their stored type.
    pub fn values(&self) -> Values<'_> {
        match self {
            BlockData::F16(v) => Values::F16(v),
            BlockData::BF16(v) => Values::BF16(v),
            BlockData::F32(v) => Values::F32(v),
            BlockData::F64(v) => Values::F64(v),
            // `Mapped::new` checked the alignment, so the casts cannot fail.
            BlockData::Mapped(m) => match m.dtype {
                Dtype::F16 => Values::F16(bytemuck::cast_slice(m.bytes())),
                Dtype::BF16 => Values::BF16(bytemuck::cast_slice(m.bytes())),
                Dtype::F32 => Values::F32(bytemuck::cast_slice(m.bytes())),
                Dtype::F64 => Values::F64(bytemuck::cast_slice(m.bytes())),
            },
        }
    }

    pub fn len(&self) -> usize {
        match self {
            BlockData::F16(v) | BlockData::BF16(v) => v.len(),
            BlockData::F32(v) => v.len(),
            BlockData::F64(v) => v.len(),
            BlockData::Mapped(m) => m.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> Dtype {
        match self {
            BlockData::F16(_) => Dtype::F16,
            BlockData::BF16(_) => Dtype::BF16,
            BlockData::F32(_) => Dtype::F32,
            BlockData::F64(_) => Dtype::F64,
            BlockData::Mapped(m) => m.dtype,
        }
    }

    /// `reuse` when it is a buffer of `dtype` values (its allocation is kept), else an empty
    /// buffer.
    pub fn reuse_or_empty(reuse: Option<BlockData>, dtype: Dtype) -> Self {
        reuse
            .filter(|d| d.dtype() == dtype && !matches!(d, BlockData::Mapped(_)))
            .unwrap_or_else(|| BlockData::empty(dtype))
    }

    /// An empty buffer of `dtype`.
    pub fn empty(dtype: Dtype) -> Self {
        match dtype {
            Dtype::F16 => BlockData::F16(Vec::new()),
            Dtype::BF16 => BlockData::BF16(Vec::new()),
            Dtype::F32 => BlockData::F32(Vec::new()),
            Dtype::F64 => BlockData::F64(Vec::new()),
        }
    }

    /// Resizes to `len` values and returns the storage as bytes, to be filled in place (a
    /// mapped block becomes a buffer of its own first).
    pub fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        if let BlockData::Mapped(m) = self {
            *self = BlockData::empty(m.dtype);
        }
        match self {
            BlockData::F16(v) | BlockData::BF16(v) => {
                v.resize(len, 0);
                bytemuck::cast_slice_mut(v)
            }
            BlockData::F32(v) => {
                v.resize(len, 0.0);
                bytemuck::cast_slice_mut(v)
            }
            BlockData::F64(v) => {
                v.resize(len, 0.0);
                bytemuck::cast_slice_mut(v)
            }
            BlockData::Mapped(_) => unreachable!("made a buffer above"),
        }
    }

    /// Turns values read in the opposite byte order into native order (mapped values are
    /// mapped only when their order is native).
    pub fn swap_bytes(&mut self) {
        match self {
            BlockData::F16(v) | BlockData::BF16(v) => {
                v.iter_mut().for_each(|x| *x = x.swap_bytes())
            }
            BlockData::F32(v) => v
                .iter_mut()
                .for_each(|x| *x = f32::from_bits(x.to_bits().swap_bytes())),
            BlockData::F64(v) => v
                .iter_mut()
                .for_each(|x| *x = f64::from_bits(x.to_bits().swap_bytes())),
            BlockData::Mapped(_) => panic!("mapped values are read in native byte order only"),
        }
    }

    /// Widens `range` of the values into `out` (same length) as f64, by the rules of
    /// [`BlockView`].
    #[inline(always)]
    pub fn widen_into(&self, range: Range<usize>, out: &mut [f64]) {
        match self.values() {
            Values::F16(v) => widen(&v[range], out, f16_value),
            Values::BF16(v) => widen(&v[range], out, bf16_value),
            Values::F32(v) => widen(&v[range], out, f32_value),
            Values::F64(v) => out.copy_from_slice(&v[range]),
        }
    }
}

/// One piece of a tensor: samples `rows` (axis 0) of coordinates `cols` (the flattened rest).
/// The values are shared (`Block::share`), so one block read once can feed both passes. A
/// block read by [`super::prefetch`] hands its buffer back for reuse when its last holder drops it,
/// so streaming allocates (and page-faults) a handful of buffers, not one per block.
#[derive(Debug)]
pub struct Block {
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub data: Arc<BlockData>,
    /// Values from one row's start to the next's: the width, or more for a block read in
    /// place from a file whose rows are wider.
    stride: usize,
    pub(super) recycle: Option<std::sync::mpsc::Sender<BlockData>>,
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(tx) = self.recycle.take() {
            let data = std::mem::replace(&mut self.data, Arc::new(BlockData::F32(Vec::new())));
            if let Ok(data) = Arc::try_unwrap(data) {
                let _ = tx.send(data);
            }
        }
    }
}

impl Block {
    pub fn new(rows: Range<usize>, cols: Range<usize>, data: BlockData) -> Self {
        let stride = cols.len();
        Block::strided(rows, cols, data, stride)
    }

    /// A block whose rows lie `stride` values apart in `data`.
    pub fn strided(rows: Range<usize>, cols: Range<usize>, data: BlockData, stride: usize) -> Self {
        assert!(stride >= cols.len(), "rows overlap");
        let need = rows
            .len()
            .checked_sub(1)
            .map_or(0, |r| r * stride + cols.len());
        assert!(data.len() >= need, "a block holds rows × columns values");
        Block {
            rows,
            cols,
            data: Arc::new(data),
            stride,
            recycle: None,
        }
    }

    /// Another handle on the same values (no copy).
    pub fn share(&self) -> Block {
        Block {
            rows: self.rows.clone(),
            cols: self.cols.clone(),
            data: self.data.clone(),
            stride: self.stride,
            recycle: None,
        }
    }

    pub fn width(&self) -> usize {
        self.cols.len()
    }

    /// Values from one row's start to the next's in [`BlockData::values`].
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// All values widened to f64, row-major and without gaps (`rows × width`).
    pub fn widen_into(&self, out: &mut [f64]) {
        let (w, view) = (self.width(), self.view());
        assert_eq!(out.len(), self.rows.len() * w, "one f64 per value");
        for (r, row) in out.chunks_exact_mut(w.max(1)).enumerate() {
            view.widen_row(r, 0..w, row);
        }
    }

    /// The values as a samples × coordinates array: the tile the engines read.
    pub fn view(&self) -> BlockView<'_> {
        let (rows, w, stride) = (self.rows.len(), self.width(), self.stride);
        fn tile<T>(v: &[T], rows: usize, w: usize, stride: usize) -> ArrayView2<'_, T> {
            use ndarray::ShapeBuilder;
            let bad = "a block holds rows × columns values";
            // ndarray checks a strided shape's last index against the slice, which an empty
            // block does not have: with one row or none (or no column) the stride means
            // nothing.
            if rows > 1 && w > 0 {
                ArrayView2::from_shape((rows, w).strides((stride, 1)), v).expect(bad)
            } else {
                ArrayView2::from_shape((rows, w), &v[..rows * w]).expect(bad)
            }
        }
        match self.data.values() {
            Values::F16(v) => BlockView::F16(tile(v, rows, w, stride)),
            Values::BF16(v) => BlockView::BF16(tile(v, rows, w, stride)),
            Values::F32(v) => BlockView::F32(tile(v, rows, w, stride)),
            Values::F64(v) => BlockView::F64(tile(v, rows, w, stride)),
        }
    }

    /// Columns `cols` (relative to the block) widened to f64, column-major: column j of the
    /// range is `out[j*K..(j+1)*K]`, K = the block's rows. `out` is reused.
    pub fn gather_columns(&self, cols: Range<usize>, out: &mut Vec<f64>) {
        self.view().gather_columns(cols, out)
    }
}

/// A block's values as a samples × coordinates array (row-major), in their stored type.
/// Widening to f64 follows one rule for both engines: f32 and bf16 subnormals (|x| < 1.2e-38,
/// a few significant bits at most) are read as 0, as GPUs flush them, so both engines see
/// the same data; f16 subnormals are kept (a GPU widens them exactly).
#[derive(Clone, Copy, Debug)]
pub enum BlockView<'a> {
    F16(ArrayView2<'a, u16>),
    BF16(ArrayView2<'a, u16>),
    F32(ArrayView2<'a, f32>),
    F64(ArrayView2<'a, f64>),
}

impl BlockView<'_> {
    /// Widens columns `cols` of sample row `r` into `out` (same length) as f64.
    #[inline(always)]
    pub fn widen_row(&self, r: usize, cols: Range<usize>, out: &mut [f64]) {
        // A row of a C-order array is contiguous, so each arm works on a plain slice.
        fn row<T>(a: ArrayView2<'_, T>, r: usize, cols: Range<usize>) -> &[T] {
            let whole = a.index_axis_move(Axis(0), r);
            &whole
                .to_slice()
                .expect("rows of a C-order tile are contiguous")[cols]
        }
        match *self {
            BlockView::F16(a) => widen(row(a, r, cols), out, f16_value),
            BlockView::BF16(a) => widen(row(a, r, cols), out, bf16_value),
            BlockView::F32(a) => widen(row(a, r, cols), out, f32_value),
            BlockView::F64(a) => out.copy_from_slice(row(a, r, cols)),
        }
    }

    /// Columns `cols` widened to f64, column-major (see [`Block::gather_columns`]).
    pub fn gather_columns(&self, cols: Range<usize>, out: &mut Vec<f64>) {
        let (k, w) = (self.rows(), cols.len());
        out.clear();
        out.resize(k * w, 0.0);
        // `out` as a columns × samples array, seen transposed: samples × columns like the tile.
        let dst = ArrayViewMut2::from_shape((w, k), &mut out[..])
            .expect("sized above")
            .reversed_axes();
        let zip = Zip::from(dst);
        match self {
            BlockView::F16(a) => zip
                .and(a.slice(s![.., cols]))
                .for_each(|o, &x| *o = f16_value(x)),
            BlockView::BF16(a) => zip
                .and(a.slice(s![.., cols]))
                .for_each(|o, &x| *o = bf16_value(x)),
            BlockView::F32(a) => zip
                .and(a.slice(s![.., cols]))
                .for_each(|o, &x| *o = f32_value(x)),
            BlockView::F64(a) => zip.and(a.slice(s![.., cols])).for_each(|o, &x| *o = x),
        }
    }

    /// Number of sample rows.
    pub fn rows(&self) -> usize {
        match self {
            BlockView::F16(a) | BlockView::BF16(a) => a.nrows(),
            BlockView::F32(a) => a.nrows(),
            BlockView::F64(a) => a.nrows(),
        }
    }
}

#[inline(always)]
fn widen<T: Copy>(src: &[T], out: &mut [f64], value: impl Fn(T) -> f64) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = value(x);
    }
}

#[inline(always)]
pub(crate) fn f16_value(bits: u16) -> f64 {
    half::f16::from_bits(bits).to_f64()
}

#[inline(always)]
pub(crate) fn bf16_value(bits: u16) -> f64 {
    if bits & 0x7f80 == 0 {
        0.0
    } else {
        half::bf16::from_bits(bits).to_f64()
    }
}

#[inline(always)]
pub(crate) fn f32_value(x: f32) -> f64 {
    // |x| < MIN_POSITIVE is a zero exponent (NaN compares false): a float comparison, which
    // vectorises where a test of the bits of each lane did not.
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gathered columns equal the values picked by index, widened by the same rules.
    #[test]
    fn gather_columns_transposes_and_widens() {
        let (k, p) = (3, 5);
        let v: Vec<f32> = (0..k * p).map(|i| i as f32 - 7.0).collect();
        let mut v = v;
        v[1] = 1e-40; // subnormal: read as 0
        let block = Block::new(0..k, 0..p, BlockData::F32(v.clone()));
        let mut out = Vec::new();
        block.gather_columns(1..4, &mut out);
        assert_eq!(out.len(), k * 3);
        for j in 0..3 {
            for r in 0..k {
                let x = v[r * p + 1 + j];
                let want = if x == 1e-40 { 0.0 } else { x as f64 };
                assert_eq!(out[j * k + r], want, "column {j} row {r}");
            }
        }
        let mut row = vec![0.0; 2];
        block.view().widen_row(2, 3..5, &mut row);
        assert_eq!(row, [v[2 * p + 3] as f64, v[2 * p + 4] as f64]);
    }
}
