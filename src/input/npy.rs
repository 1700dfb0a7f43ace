//! Streaming `.npy` reader (format spec: numpy `lib/format.py`, versions 1–3).
//!
//! Written by hand because gradtail needs positional reads of row and column ranges of files
//! larger than memory, byte-order and Fortran-order handling, and error messages that name
//! the file and the fault; the npy crates read whole arrays.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Block, BlockData, Dtype, TensorMeta, TensorSource};
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The parsed header of an `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub dtype: Dtype,
    pub big_endian: bool,
    pub fortran: bool,
    pub shape: Vec<usize>,
    pub data_offset: u64,
}

pub struct NpyTensor {
    meta: TensorMeta,
    header: Header,
    file: File,
}

impl NpyTensor {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tensor".into());
        Self::open_at(path, file, 0, len, name)
    }

    /// An `.npy` image stored at byte `base` of `file`, `len` bytes long (a whole file, or an
    /// uncompressed `.npz` member).
    pub fn open_at(path: &Path, file: File, base: u64, len: u64, name: String) -> Result<Self> {
        let header = read_header(path, &file, base)?;
        let count: usize = header.shape.iter().product();
        let expected = header.data_offset - base + (count * header.dtype.size()) as u64;
        let data_offset = header.data_offset;
        if len < expected {
            return Err(Error::bad(
                path,
                format!(
                    "truncated: the header promises shape {:?} ({} bytes of data) but the file holds {} bytes of data; re-save or re-copy the file",
                    header.shape,
                    expected - (data_offset - base),
                    len.saturating_sub(data_offset - base)
                ),
            ));
        }
        if len > expected {
            return Err(Error::bad(
                path,
                format!(
                    "the header's shape {:?} disagrees with the file length ({} bytes of data where {} are expected); the file is damaged or was written by a faulty tool",
                    header.shape,
                    len - (data_offset - base),
                    expected - (data_offset - base)
                ),
            ));
        }
        let Some((&samples, rest)) = header.shape.split_first() else {
            return Err(Error::unusable(
                path,
                Some(&name),
                "a 0-d array holds no samples: expected shape (K, ...) with K samples on axis 0",
            ));
        };
        let meta = TensorMeta {
            name,
            path: path.to_path_buf(),
            dtype: header.dtype,
            samples,
            shape: rest.to_vec(),
        };
        Ok(NpyTensor { meta, header, file })
    }

    /// A tensor whose header is already known (a stacked safetensors entry).
    pub fn from_parts(meta: TensorMeta, header: Header, file: File) -> Self {
        NpyTensor { meta, header, file }
    }

    fn path(&self) -> &PathBuf {
        &self.meta.path
    }

    fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, self.header.data_offset + offset)
            .map_err(|e| Error::io(self.path(), e))
    }

    /// Fortran order: coordinate j's K samples are contiguous at its column-major position.
    fn fortran_index(&self, j: usize) -> usize {
        let shape = &self.meta.shape;
        let mut rem = j;
        let mut idx = 0;
        let mut stride = 1;
        // j is the C-order (row-major) flat index over `shape`; rebuild its multi-index from
        // the last axis and re-linearise it column-major.
        let mut digits = vec![0; shape.len()];
        for (d, &n) in digits.iter_mut().zip(shape).rev() {
            *d = rem % n;
            rem /= n;
        }
        for (&d, &n) in digits.iter().zip(shape) {
            idx += d * stride;
            stride *= n;
        }
        idx
    }
}

impl TensorSource for NpyTensor {
    fn meta(&self) -> &TensorMeta {
        &self.meta
    }

    fn is_fortran(&self) -> bool {
        self.header.fortran
    }

    fn read_block_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        reuse: Option<BlockData>,
    ) -> Result<Block> {
        let esize = self.header.dtype.size();
        let (k, p) = (self.meta.samples, self.meta.coords());
        let (nr, nc) = (rows.len(), cols.len());
        let mut data = BlockData::reuse_or_empty(reuse, self.header.dtype);
        let raw = data.bytes_mut(nr * nc);
        if !self.header.fortran {
            if nc == p {
                self.read_bytes((rows.start * p * esize) as u64, raw)?;
            } else {
                for (i, r) in rows.clone().enumerate() {
                    let dst = &mut raw[i * nc * esize..(i + 1) * nc * esize];
                    self.read_bytes(((r * p + cols.start) * esize) as u64, dst)?;
                }
            }
        } else {
            // Column-major: read each run of coordinates whose columns are adjacent on disk,
            // then transpose into row-major.
            let mut col = vec![0u8; k * esize];
            let mut j = cols.start;
            let mut colmajor = vec![0u8; nr * nc * esize];
            while j < cols.end {
                let start = self.fortran_index(j);
                let mut end = j + 1;
                while end < cols.end && self.fortran_index(end) == start + (end - j) {
                    end += 1;
                }
                let run = end - j;
                let dst =
                    &mut colmajor[(j - cols.start) * nr * esize..(end - cols.start) * nr * esize];
                if nr == k {
                    self.read_bytes((start * k * esize) as u64, dst)?;
                } else {
                    for c in 0..run {
                        self.read_bytes(((start + c) * k * esize) as u64, &mut col)?;
                        dst[c * nr * esize..(c + 1) * nr * esize]
                            .copy_from_slice(&col[rows.start * esize..rows.end * esize]);
                    }
                }
                j = end;
            }
            for c in 0..nc {
                for r in 0..nr {
                    let s = (c * nr + r) * esize;
                    let d = (r * nc + c) * esize;
                    raw[d..d + esize].copy_from_slice(&colmajor[s..s + esize]);
                }
            }
        }
        if self.header.big_endian != cfg!(target_endian = "big") {
            data.swap_bytes();
        }
        Ok(Block::new(rows, cols, data))
    }
}

fn read_header(path: &Path, file: &File, base: u64) -> Result<Header> {
    let not_npy = || {
        Error::bad(
            path,
            "not an .npy file (no \\x93NUMPY magic); save arrays with numpy.save",
        )
    };
    let mut pre = [0u8; 12];
    let n = file
        .read_at(&mut pre, base)
        .map_err(|e| Error::io(path, e))?;
    if n < 10 || &pre[..6] != MAGIC {
        return Err(not_npy());
    }
    let (hlen, hstart) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
        2 | 3 if n == 12 => (
            u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize,
            12,
        ),
        v => {
            return Err(Error::bad(
                path,
                format!("unsupported .npy format version {v}"),
            ))
        }
    };
    if hlen > 1 << 20 {
        return Err(Error::bad(
            path,
            format!("implausible .npy header length {hlen}: the file is damaged"),
        ));
    }
    let mut text = vec![0u8; hlen];
    file.read_exact_at(&mut text, base + hstart as u64)
        .map_err(|_| Error::bad(path, "truncated inside the .npy header"))?;
    let text = String::from_utf8_lossy(&text);
    let mut h = parse_header_dict(&text).map_err(|e| match e {
        HeaderError::Unsupported(m) => Error::unusable(path, None, m),
        HeaderError::Malformed(m) => Error::bad(
            path,
            format!("malformed .npy header ({m}): {}", text.trim()),
        ),
    })?;
    h.data_offset = base + (hstart + hlen) as u64;
    Ok(h)
}

/// Why a header cannot be used: it is not valid, or it describes data gradtail does not read.
#[derive(Debug)]
enum HeaderError {
    Malformed(String),
    Unsupported(String),
}

impl From<&str> for HeaderError {
    fn from(m: &str) -> Self {
        HeaderError::Malformed(m.to_owned())
    }
}

impl From<String> for HeaderError {
    fn from(m: String) -> Self {
        HeaderError::Malformed(m)
    }
}

/// Parses the Python-literal dict of an npy header, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (256, 4810), }`.
fn parse_header_dict(text: &str) -> std::result::Result<Header, HeaderError> {
    let field = |key: &str| -> std::result::Result<&str, String> {
        let pat = format!("'{key}':");
        let at = text.find(&pat).ok_or_else(|| format!("no '{key}'"))?;
        Ok(text[at + pat.len()..].trim_start())
    };
    let descr = field("descr")?;
    if !descr.starts_with('\'') {
        return Err(HeaderError::Unsupported(
            "structured dtypes are not supported: store one plain float array per tensor".into(),
        ));
    }
    let descr = descr[1..].split('\'').next().ok_or("unterminated descr")?;
    let (order, code) = descr.split_at(1.min(descr.len()));
    let big_endian = match order {
        ">" => true,
        "<" | "|" | "=" => false,
        _ => return Err(format!("unknown byte order in descr '{descr}'").into()),
    };
    let dtype = match code {
        "f2" | "e" => Dtype::F16,
        "f4" | "f" => Dtype::F32,
        "f8" | "d" => Dtype::F64,
        other => {
            let kind = match other.chars().next() {
                Some('i' | 'u') => "an integer",
                Some('c') => "a complex",
                Some('b') => "a boolean",
                _ => "an unsupported",
            };
            return Err(HeaderError::Unsupported(format!(
                "holds {kind} dtype '{descr}': gradients must be float16, float32 or float64 (convert with .astype(np.float32))"
            )));
        }
    };
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_txt = field("shape")?;
    let close = shape_txt.find(')').ok_or("unterminated shape")?;
    let shape = shape_txt[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Header {
        dtype,
        big_endian,
        fortran,
        shape,
        data_offset: 0,
    })
}

/// Writes a C-order `.npy` header for `shape` of little-endian `descr`; returns the bytes
/// (padded so data starts at a multiple of 64, as numpy does).
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - total % 64) % 64));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_headers() {
        let h =
            parse_header_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (256, 4810), }")
                .unwrap();
        assert_eq!(
            (h.dtype, h.big_endian, h.fortran, h.shape),
            (Dtype::F32, false, false, vec![256, 4810])
        );
        let h =
            parse_header_dict("{'descr': '>f8', 'fortran_order': True, 'shape': (7,), }").unwrap();
        assert_eq!(
            (h.dtype, h.big_endian, h.fortran, h.shape),
            (Dtype::F64, true, true, vec![7])
        );
    }

    #[test]
    fn rejects_integer_and_complex() {
        let e = parse_header_dict("{'descr': '<i4', 'fortran_order': False, 'shape': (4, 2), }")
            .unwrap_err();
        assert!(
            matches!(&e, HeaderError::Unsupported(m) if m.contains("integer")),
            "{e:?}"
        );
        let e = parse_header_dict("{'descr': '<c8', 'fortran_order': False, 'shape': (4, 2), }")
            .unwrap_err();
        assert!(
            matches!(&e, HeaderError::Unsupported(m) if m.contains("complex")),
            "{e:?}"
        );
    }

    #[test]
    fn header_round_trips() {
        let bytes = header_bytes("<f4", &[3, 5]);
        assert_eq!(bytes.len() % 64, 0);
        let text = String::from_utf8_lossy(&bytes[10..]);
        let h = parse_header_dict(&text).unwrap();
        assert_eq!(h.shape, vec![3, 5]);
    }
}
