//! Streaming `.npy` reader (format spec: numpy `lib/format.py`, versions 1–3).
//!
//! The header's dict is parsed by ndarray-npy's header module once its length has been
//! checked; the data is read here, with positioned reads of row and column ranges (byte-order
//! and Fortran-order aware), because the npy crates read whole arrays and gradtail's inputs
//! may be larger than memory. Every size in the header is checked against the file before
//! anything is allocated for it.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use super::{
    bus, pread, tensor_bytes, Block, BlockData, Dtype, Mapped, MappedFile, TensorMeta, TensorSource,
};
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
    /// Whether row-major data in native byte order is read in place (`bus`), from `map`, the
    /// file mapped into memory on the first read (`None` where it cannot be mapped).
    in_place: bool,
    map: OnceLock<Option<Arc<MappedFile>>>,
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
        let header = read_header(path, &file, base, len)?;
        let head = header.data_offset - base;
        let Some(data) = tensor_bytes(&header.shape, header.dtype.size()) else {
            return Err(Error::bad(
                path,
                format!(
                    "the header's shape {:?} describes more data than a file can hold; the file is damaged",
                    header.shape
                ),
            ));
        };
        let (data, held) = (data as u64, len - head);
        if held < data {
            return Err(Error::bad(
                path,
                format!(
                    "truncated: the header promises shape {:?} ({data} bytes of data) but the file holds {held} bytes of data; re-save or re-copy the file",
                    header.shape,
                ),
            ));
        }
        if held > data {
            return Err(Error::bad(
                path,
                format!(
                    "the header's shape {:?} disagrees with the file length ({held} bytes of data where {data} are expected); the file is damaged or was written by a faulty tool",
                    header.shape,
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
        Ok(NpyTensor::from_parts(meta, header, file))
    }

    /// A tensor whose header is already known (a stacked safetensors entry).
    pub fn from_parts(meta: TensorMeta, header: Header, file: File) -> Self {
        NpyTensor {
            meta,
            header,
            file,
            in_place: bus::in_place(),
            map: OnceLock::new(),
        }
    }

    /// Reads in place (or not) whatever [`bus::read_in_place`] says.
    pub fn reading_in_place(mut self, yes: bool) -> Self {
        self.in_place = yes;
        self
    }

    fn path(&self) -> &PathBuf {
        &self.meta.path
    }

    /// Rows `rows` × columns `cols` read in place from the mapped file, where files are read
    /// in place (`bus::read_in_place`): for row-major data in native byte order whose file
    /// still holds every byte the header promised.
    fn mapped_block(&self, rows: &Range<usize>, cols: &Range<usize>) -> Result<Option<Block>> {
        if !self.reads_in_place() {
            return Ok(None);
        }
        let map = self.map.get_or_init(|| {
            // SAFETY: the map is read-only. A file truncated while mapped makes reads of the
            // lost pages fault; its length is checked before each block is handed out, and a
            // fault after that check ends the process with a message (`bus`).
            let map = unsafe { Mmap::map(&self.file) }.ok()?;
            bus::mapped(self.path(), map.as_ptr() as usize, map.len());
            Some(MappedFile::new(map))
        });
        let Some(map) = map else { return Ok(None) };
        let (dtype, p) = (self.header.dtype, self.meta.coords());
        let at = self.header.data_offset as usize + (rows.start * p + cols.start) * dtype.size();
        let Some(data) = Mapped::new(map.clone(), at, dtype, rows.len(), cols.len(), p) else {
            return Ok(None);
        };
        let held = self
            .file
            .metadata()
            .map_err(|e| Error::io(self.path(), e))?
            .len();
        if (held as usize) < data.end() {
            return Err(Error::io(self.path(), pread::truncated()));
        }
        Ok(Some(Block::strided(
            rows.clone(),
            cols.clone(),
            BlockData::Mapped(data),
            p,
        )))
    }

    fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        pread::read_exact_at(&self.file, buf, self.header.data_offset + offset)
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

    /// Row-major data in native byte order, where files are read in place.
    fn reads_in_place(&self) -> bool {
        let native = self.header.big_endian == cfg!(target_endian = "big");
        self.in_place && native && !self.header.fortran
    }

    fn read_block_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        reuse: Option<BlockData>,
    ) -> Result<Block> {
        if let Some(block) = self.mapped_block(&rows, &cols)? {
            return Ok(block);
        }
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

/// Header text longer than this is refused before it is read. numpy's own reader refuses
/// more than 10,000 bytes unless told otherwise (`numpy.lib.format._MAX_HEADER_SIZE`); a
/// plain float array's header takes about 118.
const MAX_HEADER_LEN: usize = 1 << 16;

/// Brackets a float array's header nests: the dict and the shape tuple. Deeper nesting is a
/// structured dtype or damage, refused before the recursive Python-literal parser sees it.
const MAX_NESTING: usize = 8;

/// Reads and parses the header of the `.npy` image at byte `base` of `file`, `len` bytes long.
/// Its size is checked against the image before anything is allocated for it.
fn read_header(path: &Path, file: &File, base: u64, len: u64) -> Result<Header> {
    let not_npy = || {
        Error::bad(
            path,
            "not an .npy file (no \\x93NUMPY magic); save arrays with numpy.save",
        )
    };
    let mut pre = [0u8; 12];
    let want = pre.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    let n = pread::read_up_to(file, &mut pre[..want], base).map_err(|e| Error::io(path, e))?;
    if n < 10 || &pre[..6] != MAGIC {
        return Err(not_npy());
    }
    let version = pre[6];
    let (hlen, hstart) = match version {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as u64, 10),
        2 | 3 if n == 12 => (
            u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64,
            12,
        ),
        2 | 3 => return Err(Error::bad(path, "truncated inside the .npy header")),
        v => {
            return Err(Error::bad(
                path,
                format!("unsupported .npy format version {v} (numpy writes 1, 2 or 3)"),
            ))
        }
    };
    if hlen > MAX_HEADER_LEN as u64 {
        return Err(Error::bad(
            path,
            format!("implausible .npy header length {hlen} (at most {MAX_HEADER_LEN} expected): the file is damaged"),
        ));
    }
    if hstart + hlen > len {
        return Err(Error::bad(path, "truncated inside the .npy header"));
    }
    let mut text = vec![0u8; hlen as usize];
    pread::read_exact_at(file, &mut text, base + hstart).map_err(|e| Error::io(path, e))?;
    let mut h = parse_header_text(version, &text).map_err(|e| match e {
        HeaderError::Unsupported(m) => Error::unusable(path, None, m),
        HeaderError::Malformed(m) => Error::bad(
            path,
            format!("malformed .npy header ({m}): {}", shown(&text)),
        ),
    })?;
    h.data_offset = base + hstart + hlen;
    Ok(h)
}

/// Header text as one printable line of bounded length, for error messages.
fn shown(text: &[u8]) -> String {
    const MAX: usize = 160;
    let s: String = String::from_utf8_lossy(text)
        .trim()
        .chars()
        .flat_map(|c| {
            let esc = c.is_control().then(|| c.escape_default());
            esc.into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect();
    match s.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s,
    }
}

/// Why a header cannot be used: it is not valid, or it describes data gradtail does not read.
#[derive(Debug)]
enum HeaderError {
    Malformed(String),
    Unsupported(String),
}

impl From<String> for HeaderError {
    fn from(m: String) -> Self {
        HeaderError::Malformed(m)
    }
}

/// Parses the Python-literal dict of a version-`version` npy header, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (256, 4810), }`, with ndarray-npy's
/// parser (which applies numpy's rules: exactly the three keys; ASCII text before version 3).
fn parse_header_text(version: u8, text: &[u8]) -> std::result::Result<Header, HeaderError> {
    use ndarray_npy::npy::header::{Header as NpyHeader, ParseHeaderError as P, ReadHeaderError};
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(format!("brackets nested more than {MAX_NESTING} deep").into());
        }
    }
    let text = if version == 1 {
        drop_long_suffixes(text)
    } else {
        text.to_vec()
    };
    // The parser reads a whole header image; hand it one framed as version 2 (ASCII) or 3
    // (UTF-8) with a u32 length, ending in the newline numpy writes but does not require.
    let newline = !text.ends_with(b"\n");
    let mut image = MAGIC.to_vec();
    image.extend_from_slice(&[if version == 3 { 3 } else { 2 }, 0]);
    image.extend_from_slice(&((text.len() + newline as usize) as u32).to_le_bytes());
    image.extend_from_slice(&text);
    if newline {
        image.push(b'\n');
    }
    let h = NpyHeader::from_reader(&mut image.as_slice()).map_err(|e| match e {
        ReadHeaderError::Parse(P::NonAscii) => {
            format!("non-ASCII bytes in a version {version} header, which must be ASCII")
        }
        ReadHeaderError::Parse(P::Utf8Parse(_)) => "the header text is not UTF-8".into(),
        ReadHeaderError::Parse(P::DictParse(_) | P::MetaNotDict(_)) => {
            "not a Python dict literal".into()
        }
        ReadHeaderError::Parse(P::UnknownKey(k)) => {
            format!("unexpected key {}", shown(k.to_string().as_bytes()))
        }
        // ndarray-npy 0.10 spells the missing 'shape' key "shaper".
        ReadHeaderError::Parse(P::MissingKey(k)) if k.starts_with("shape") => "no 'shape'".into(),
        ReadHeaderError::Parse(P::MissingKey(k)) => format!("no '{k}'"),
        ReadHeaderError::Parse(P::IllegalValue { key, .. }) if key == "shape" => {
            "the shape is not a tuple of non-negative integers that fit this machine".into()
        }
        ReadHeaderError::Parse(P::IllegalValue { key, .. }) => format!("bad value for '{key}'"),
        other => other.to_string(),
    })?;
    let (big_endian, dtype) = descr_dtype(h.type_descriptor.as_string())?;
    Ok(Header {
        dtype,
        big_endian,
        fortran: h.layout.is_fortran(),
        shape: h.shape,
        data_offset: 0,
    })
}

/// Python 2's numpy wrote shapes as `(256L, 10L)`; numpy reads them by dropping an `L` that
/// follows a digit outside a string (`numpy.lib.format._filter_header`), and so does this.
fn drop_long_suffixes(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut quoted = false;
    for &b in text {
        quoted ^= b == b'\'';
        if !(b == b'L' && !quoted && out.last().is_some_and(u8::is_ascii_digit)) {
            out.push(b);
        }
    }
    out
}

/// The byte order and dtype of a plain `descr` such as `'<f4'` (`None`: not a string, so a
/// structured dtype's list of fields).
fn descr_dtype(descr: Option<&String>) -> std::result::Result<(bool, Dtype), HeaderError> {
    let Some(descr) = descr else {
        return Err(HeaderError::Unsupported(
            "structured dtypes are not supported: store one plain float array per tensor".into(),
        ));
    };
    let mut chars = descr.chars();
    let big_endian = match chars.next() {
        Some('>') => true,
        Some('<' | '|' | '=') => false,
        _ => {
            return Err(format!("unknown byte order in descr '{}'", shown(descr.as_bytes())).into())
        }
    };
    let dtype = match chars.as_str() {
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
                "holds {kind} dtype '{}': gradients must be float16, float32 or float64 (convert with .astype(np.float32))",
                shown(descr.as_bytes())
            )));
        }
    };
    Ok((big_endian, dtype))
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

    fn parse(text: &str) -> std::result::Result<Header, HeaderError> {
        parse_header_text(3, format!("{text}\n").as_bytes())
    }

    #[test]
    fn parses_numpy_headers() {
        let h = parse("{'descr': '<f4', 'fortran_order': False, 'shape': (256, 4810), }").unwrap();
        assert_eq!(
            (h.dtype, h.big_endian, h.fortran, h.shape),
            (Dtype::F32, false, false, vec![256, 4810])
        );
        let h = parse("{'descr': '>f8', 'fortran_order': True, 'shape': (7,), }").unwrap();
        assert_eq!(
            (h.dtype, h.big_endian, h.fortran, h.shape),
            (Dtype::F64, true, true, vec![7])
        );
        // numpy writes the newline but its reader does not need it.
        let h = parse_header_text(
            1,
            b"{'descr': '<f2', 'fortran_order': False, 'shape': (3, 2)}",
        )
        .unwrap();
        assert_eq!((h.dtype, h.shape), (Dtype::F16, vec![3, 2]));
        // Python 2's numpy wrote long integers with an L.
        let h = parse_header_text(
            1,
            b"{'descr': '<f8', 'fortran_order': False, 'shape': (256L, 10L), }\n",
        )
        .unwrap();
        assert_eq!(h.shape, vec![256, 10]);
    }

    #[test]
    fn rejects_integer_complex_and_structured() {
        for (descr, word) in [
            ("'<i4'", "integer"),
            ("'<c8'", "complex"),
            ("[('a', '<f4')]", "structured"),
        ] {
            let e = parse(&format!(
                "{{'descr': {descr}, 'fortran_order': False, 'shape': (4, 2), }}"
            ))
            .unwrap_err();
            assert!(
                matches!(&e, HeaderError::Unsupported(m) if m.contains(word)),
                "{e:?}"
            );
        }
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let cases: [(&[u8], &str); 6] = [
            // A multi-byte character where the byte-order mark should be: the substring
            // parser this replaced sliced inside it and panicked.
            ("{'descr': 'é4', 'fortran_order': False, 'shape': (2, 2), }".as_bytes(), "byte order"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }".as_bytes(), "shape"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 99999999999999999999999), }".as_bytes(), "shape"),
            ("{'descr': '<f4', 'fortran_order': False, }".as_bytes(), "no 'shape'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((2,),),),),),),),),),), }".as_bytes(), "nested"),
            (b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, \xff), }", "UTF-8"),
        ];
        for (text, want) in cases {
            let e = parse_header_text(3, text).unwrap_err();
            assert!(
                matches!(&e, HeaderError::Malformed(m) if m.contains(want)),
                "{e:?}"
            );
        }
        let e = parse_header_text(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'é': 1}".as_bytes(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, HeaderError::Malformed(m) if m.contains("ASCII")),
            "{e:?}"
        );
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        let s = shown("{'a\n': 'é'}".repeat(100).as_bytes());
        assert!(!s.contains('\n') && s.chars().count() <= 161, "{s}");
    }

    #[test]
    fn header_round_trips() {
        let bytes = header_bytes("<f4", &[3, 5]);
        assert_eq!(bytes.len() % 64, 0);
        let h = parse_header_text(1, &bytes[10..]).unwrap();
        assert_eq!(h.shape, vec![3, 5]);
    }

    /// Row-major data in native order is read in place, a block of whole columns lying inside
    /// the file's wider rows; the other byte order is copied. Both give the values by index,
    /// and so does a block read again after an earlier one released its pages.
    #[test]
    fn blocks_read_in_place_hold_the_values_by_index() {
        let (k, p) = (6, 2000);
        let values: Vec<f32> = (0..k * p).map(|i| i as f32 * 0.5 - 7.0).collect();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, descr: &str, bytes: Vec<u8>| {
            let path = dir.path().join(name);
            let mut file = header_bytes(descr, &[k, p]);
            file.extend(bytes);
            std::fs::write(&path, file).unwrap();
            NpyTensor::open(&path).unwrap().reading_in_place(true)
        };
        let native = cfg!(target_endian = "little");
        let (same, other) = if native {
            ("<f4", ">f4")
        } else {
            (">f4", "<f4")
        };
        let in_place = write("a.npy", same, bytemuck::cast_slice(&values).to_vec());
        let swapped: Vec<u8> = values
            .iter()
            .flat_map(|v| v.to_bits().swap_bytes().to_ne_bytes())
            .collect();
        let copied = write("b.npy", other, swapped);
        let want = |rows: Range<usize>, cols: Range<usize>| -> Vec<f64> {
            rows.flat_map(|r| cols.clone().map(move |c| r * p + c))
                .map(|i| values[i] as f64)
                .collect()
        };
        for (rows, cols) in [(0..k, 1500..1999), (1..4, 0..p), (0..k, 3..4), (2..2, 0..5)] {
            for (t, mapped) in [(&in_place, true), (&copied, false)] {
                for _ in 0..2 {
                    let b = t.read_block(rows.clone(), cols.clone()).unwrap();
                    assert_eq!(matches!(*b.data, BlockData::Mapped(_)), mapped);
                    let mut got = vec![0.0; rows.len() * cols.len()];
                    b.widen_into(&mut got);
                    assert_eq!(got, want(rows.clone(), cols.clone()), "{rows:?} × {cols:?}");
                }
            }
        }
    }
}
