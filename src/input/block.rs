//! The tile that crosses from the input layer to the engines: a [`Block`] of samples ×
//! coordinates, its storage ([`BlockData`], reused between reads) and its typed view
//! ([`BlockView`], an `ndarray` array in the stored element type).

use std::ops::Range;
use std::sync::Arc;

use ndarray::{s, ArrayView2, ArrayViewMut2, Axis, Zip};

use super::Dtype;

/// Row-major `rows × cols` values of one tensor, already in native byte order.
#[derive(Clone, Debug)]
pub enum BlockData {
    F16(Vec<u16>),
    BF16(Vec<u16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl BlockData {
    pub fn len(&self) -> usize {
        match self {
            BlockData::F16(v) | BlockData::BF16(v) => v.len(),
            BlockData::F32(v) => v.len(),
            BlockData::F64(v) => v.len(),
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
        }
    }

    /// `reuse` when it holds `dtype` values (its allocation is kept), else an empty buffer.
    pub fn reuse_or_empty(reuse: Option<BlockData>, dtype: Dtype) -> Self {
        reuse
            .filter(|d| d.dtype() == dtype)
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

    /// Resizes to `len` values and returns the storage as bytes, to be filled in place.
    pub fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
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
        }
    }

    /// Turns values read in the opposite byte order into native order.
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
        }
    }

    /// Widens `range` of the values into `out` (same length) as f64, by the rules of
    /// [`BlockView`].
    #[inline(always)]
    pub fn widen_into(&self, range: Range<usize>, out: &mut [f64]) {
        match self {
            BlockData::F16(v) => widen(&v[range], out, f16_value),
            BlockData::BF16(v) => widen(&v[range], out, bf16_value),
            BlockData::F32(v) => widen(&v[range], out, f32_value),
            BlockData::F64(v) => out.copy_from_slice(&v[range]),
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
        Block {
            rows,
            cols,
            data: Arc::new(data),
            recycle: None,
        }
    }

    /// Another handle on the same values (no copy).
    pub fn share(&self) -> Block {
        Block {
            rows: self.rows.clone(),
            cols: self.cols.clone(),
            data: self.data.clone(),
            recycle: None,
        }
    }

    pub fn width(&self) -> usize {
        self.cols.len()
    }

    /// The values as a samples × coordinates array: the tile the engines read.
    pub fn view(&self) -> BlockView<'_> {
        let shape = (self.rows.len(), self.width());
        let n = shape.0 * shape.1;
        let tile = |len: usize| {
            assert_eq!(len, n, "a block holds rows × columns values");
            shape
        };
        match &*self.data {
            BlockData::F16(v) => BlockView::F16(ArrayView2::from_shape(tile(v.len()), v).unwrap()),
            BlockData::BF16(v) => {
                BlockView::BF16(ArrayView2::from_shape(tile(v.len()), v).unwrap())
            }
            BlockData::F32(v) => BlockView::F32(ArrayView2::from_shape(tile(v.len()), v).unwrap()),
            BlockData::F64(v) => BlockView::F64(ArrayView2::from_shape(tile(v.len()), v).unwrap()),
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
