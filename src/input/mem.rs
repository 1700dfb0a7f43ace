//! A tensor already in memory: a (K, ...) C-order array of values in native byte order,
//! borrowed (e.g. a numpy array, read in place) or owned (`bench`'s synthetic stack).

use std::ops::Range;
use std::path::PathBuf;

use super::{tensor_bytes, Block, BlockData, Dtype, TensorMeta, TensorSource};
use crate::error::{Error, Result};

pub struct MemTensor<'a> {
    meta: TensorMeta,
    values: Storage<'a>,
}

enum Storage<'a> {
    Borrowed(&'a [u8]),
    Owned(BlockData),
}

impl Storage<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Borrowed(b) => b,
            Storage::Owned(data) => data.values().bytes(),
        }
    }
}

impl<'a> MemTensor<'a> {
    /// `bytes` holds `shape` (samples first) of `dtype` values, row-major, native order; they
    /// are read in place. `origin` names where they came from in messages and `summary.json`.
    pub fn new(
        name: &str,
        origin: impl Into<PathBuf>,
        dtype: Dtype,
        shape: &[usize],
        bytes: &'a [u8],
    ) -> Result<Self> {
        Self::with_values(name, origin.into(), dtype, shape, Storage::Borrowed(bytes))
    }

    /// Owns `data`, a (samples, params) stack.
    pub fn owned(name: &str, samples: usize, params: usize, data: BlockData) -> Self {
        Self::with_values(
            name,
            "<memory>".into(),
            data.dtype(),
            &[samples, params],
            Storage::Owned(data),
        )
        .expect("the stack holds samples × params values")
    }

    fn with_values(
        name: &str,
        origin: PathBuf,
        dtype: Dtype,
        shape: &[usize],
        values: Storage<'a>,
    ) -> Result<Self> {
        let len = values.bytes().len();
        let Some((&samples, rest)) = shape.split_first() else {
            return Err(Error::unusable(
                origin,
                Some(name),
                "a 0-d array holds no samples: expected shape (K, ...) with K samples on axis 0",
            ));
        };
        if tensor_bytes(shape, dtype.size()) != Some(len) {
            return Err(Error::unusable(
                origin,
                Some(name),
                format!("{len} bytes do not hold shape {shape:?} of {dtype:?} values"),
            ));
        }
        let meta = TensorMeta {
            name: name.to_owned(),
            path: origin,
            dtype,
            samples,
            shape: rest.to_vec(),
        };
        Ok(MemTensor { meta, values })
    }
}

impl TensorSource for MemTensor<'_> {
    fn meta(&self) -> &TensorMeta {
        &self.meta
    }

    fn read_block_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        reuse: Option<BlockData>,
    ) -> Result<Block> {
        let p = self.meta.coords();
        let esize = self.meta.dtype.size();
        let src = self.values.bytes();
        let mut data = BlockData::reuse_or_empty(reuse, self.meta.dtype);
        let nc = cols.len();
        let dst = data.bytes_mut(rows.len() * nc);
        for (i, r) in rows.clone().enumerate() {
            let at = (r * p + cols.start) * esize;
            dst[i * nc * esize..(i + 1) * nc * esize].copy_from_slice(&src[at..at + nc * esize]);
        }
        Ok(Block::new(rows, cols, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_the_rows_and_columns_asked_for() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let t = MemTensor::new(
            "t",
            "<memory>",
            Dtype::F32,
            &[4, 3],
            bytemuck::cast_slice(&values),
        )
        .unwrap();
        assert_eq!((t.meta().samples, t.meta().coords()), (4, 3));
        let b = t.read_block(1..3, 1..3).unwrap();
        match &*b.data {
            BlockData::F32(v) => assert_eq!(v, &[4.0, 5.0, 7.0, 8.0]),
            other => panic!("read {:?}", other.dtype()),
        }
    }

    #[test]
    fn a_length_that_disagrees_with_the_shape_is_refused() {
        let bytes = [0u8; 10];
        let e = MemTensor::new("w", "<memory>", Dtype::F32, &[2, 2], &bytes)
            .err()
            .unwrap();
        assert!(e.to_string().contains("[tensor w]"), "{e}");
        let e = MemTensor::new("s", "<memory>", Dtype::F64, &[], &bytes[..8])
            .err()
            .unwrap();
        assert!(e.to_string().contains("0-d"), "{e}");
    }
}
