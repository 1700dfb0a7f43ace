//! The state file `gradtail.state/1`: one safetensors file (loadable with
//! `safetensors.numpy.load_file`, its size checked against its header when opened) holding a
//! shard's mergeable accumulators, with a JSON header in its metadata under the key
//! `gradtail.state`: schema, shard index and count, the fingerprint of inputs and options,
//! the pieces it covers and a CRC-32 of every tensor's bytes (in name order).
//!
//! Tensors, for piece k (`pieces[k]` in the header: a tensor and a coordinate range):
//! `piece{k}/<field>`, one value per coordinate, for the fields of [`U64_FIELDS`] (U64) and
//! [`F64_FIELDS`] (F64): the pass-1 `MeanAcc` and pass-2 `CoordAcc` of each coordinate;
//! `piece{k}/fit_<stat>` (F64) per fit statistic when the fits ran; the pooled sums of the
//! piece: `piece{k}/time_blocks` (F64, [blocks, 5]: Σln|u|, count, Σln|Y|, count, Σln m per
//! time block), `piece{k}/flat_blocks` (F64), `piece{k}/flat_n` (U64, [1]) and
//! `piece{k}/flat_lx` (F64, [1]). The whole input's flat state: `model/flat_blocks`,
//! `model/flat_n`, `model/flat_lx`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::run::PieceState;
use crate::analyze::{Center, Piece};
use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, MeanAcc};
use crate::engine::TensorAcc;
use crate::error::{Error, Result};
use crate::input::Dtype;
use crate::stats::fits::{Fits, FIT_STATS};

/// Version tag of the state file; bump on any incompatible change.
pub const STATE_SCHEMA: &str = "gradtail.state/1";
/// The metadata key holding the JSON header.
const HEADER_KEY: &str = "gradtail.state";

/// One input tensor as the fingerprint records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputTensor {
    pub name: String,
    pub dtype: Dtype,
    pub samples: usize,
    pub shape: Vec<usize>,
}

/// What must be equal for states to merge: the inputs (tensors, the sizes of input files, what
/// was left out) and every option that changes a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub tensors: Vec<InputTensor>,
    /// (file name, bytes) of each input file, in order.
    pub files: Vec<(String, u64)>,
    /// (name, reason) of tensors and step files left out.
    pub skipped_tensors: Vec<(String, String)>,
    pub skipped_files: Vec<(String, String)>,
    pub options: FingerprintOptions,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FingerprintOptions {
    /// `mean`, `median`, `none` or `file`.
    pub center: String,
    /// For a `--center` file: its values' count and CRC-32 (its path may differ by machine).
    pub center_values: Option<(usize, u32)>,
    pub block: Option<usize>,
    pub fits: bool,
    /// The engine asked for (`auto`, `cpu`, `gpu`).
    pub backend: String,
    pub coords_dtype: String,
}

/// What a merged report shows that is not a statistic: the input paths and centre as the
/// shard saw them, the engine that ran it, and its time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub paths: Vec<PathBuf>,
    pub center: Center,
    pub engine: serde_json::Value,
    pub elapsed_s: f64,
    pub bytes_read: u64,
}

/// The JSON header of a state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub schema: String,
    pub gradtail_version: String,
    pub index: usize,
    pub of: usize,
    pub fingerprint: Fingerprint,
    pub run: RunInfo,
    /// (tensor index, first and end coordinate) of each piece.
    pub pieces: Vec<(usize, usize, usize)>,
    /// CRC-32 of every tensor's bytes, tensors in name order.
    #[serde(default)]
    pub checksum: u32,
}

/// Count fields of a coordinate's state, stored as U64.
pub const U64_FIELDS: [&str; 8] = [
    "mean_n",
    "mean_nonfinite",
    "moments_n",
    "tails_zeros",
    "tails_nz",
    "tails_ny",
    "tails_nx",
    "tails_bad_blocks",
];

fn u64_fields(m: &MeanAcc, c: &CoordAcc) -> [u64; 8] {
    let t = &c.tails;
    [
        m.n,
        m.nonfinite,
        c.moments.n,
        t.zeros,
        t.nz,
        t.ny,
        t.nx,
        t.bad_blocks,
    ]
}

fn set_u64_fields(m: &mut MeanAcc, c: &mut CoordAcc, v: [u64; 8]) {
    let t = &mut c.tails;
    [
        m.n,
        m.nonfinite,
        c.moments.n,
        t.zeros,
        t.nz,
        t.ny,
        t.nx,
        t.bad_blocks,
    ] = v;
}

/// Sum and range fields of a coordinate's state, stored as F64.
pub const F64_FIELDS: [&str; 12] = [
    "mean_sum",
    "mean_min",
    "mean_max",
    "moments_s1",
    "moments_s2",
    "moments_s3",
    "moments_s4",
    "tails_sl",
    "tails_sl2",
    "tails_ly",
    "tails_lm",
    "tails_lx",
];

fn f64_fields(m: &MeanAcc, c: &CoordAcc) -> [f64; 12] {
    let (o, t) = (&c.moments, &c.tails);
    [
        m.sum, m.min, m.max, o.s1, o.s2, o.s3, o.s4, t.sl, t.sl2, t.ly, t.lm, t.lx,
    ]
}

fn set_f64_fields(m: &mut MeanAcc, c: &mut CoordAcc, v: [f64; 12]) {
    let (o, t) = (&mut c.moments, &mut c.tails);
    [
        m.sum, m.min, m.max, o.s1, o.s2, o.s3, o.s4, t.sl, t.sl2, t.ly, t.lm, t.lx,
    ] = v;
}

/// A tensor to write: dtype, shape and little-endian bytes.
struct Entry {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f64s(shape: Vec<usize>, v: impl IntoIterator<Item = f64>) -> Entry {
    Entry {
        dtype: safetensors::Dtype::F64,
        shape,
        bytes: v.into_iter().flat_map(f64::to_le_bytes).collect(),
    }
}

fn u64s(shape: Vec<usize>, v: impl IntoIterator<Item = u64>) -> Entry {
    Entry {
        dtype: safetensors::Dtype::U64,
        shape,
        bytes: v.into_iter().flat_map(u64::to_le_bytes).collect(),
    }
}

fn flat_entries(prefix: &str, flat: &FlatAcc, out: &mut Vec<(String, Entry)>) {
    out.push((
        format!("{prefix}/flat_blocks"),
        f64s(vec![flat.blocks.len()], flat.blocks.iter().copied()),
    ));
    out.push((format!("{prefix}/flat_n"), u64s(vec![1], [flat.n])));
    out.push((format!("{prefix}/flat_lx"), f64s(vec![1], [flat.lx])));
}

fn piece_entries(k: usize, s: &PieceState, out: &mut Vec<(String, Entry)>) {
    let len = s.mean.len();
    let prefix = format!("piece{k}");
    let pairs = || s.mean.iter().zip(&s.acc.coords);
    for (f, name) in U64_FIELDS.iter().enumerate() {
        let v = pairs().map(|(m, c)| u64_fields(m, c)[f]);
        out.push((format!("{prefix}/{name}"), u64s(vec![len], v)));
    }
    for (f, name) in F64_FIELDS.iter().enumerate() {
        let v = pairs().map(|(m, c)| f64_fields(m, c)[f]);
        out.push((format!("{prefix}/{name}"), f64s(vec![len], v)));
    }
    if let Some(fits) = &s.fits {
        for (f, name) in FIT_STATS.iter().enumerate() {
            let v = fits.iter().map(|x| x.to_array()[f]);
            out.push((format!("{prefix}/fit_{name}"), f64s(vec![len], v)));
        }
    }
    let blocks = s
        .acc
        .blocks
        .iter()
        .flat_map(|b| [b.sx, b.nx, b.sy, b.ny, b.sm]);
    out.push((
        format!("{prefix}/time_blocks"),
        f64s(vec![s.acc.blocks.len(), 5], blocks),
    ));
    flat_entries(&prefix, &s.acc.flat, out);
}

/// CRC-32 of the entries' bytes, in name order.
fn checksum<'a>(entries: impl Iterator<Item = (&'a str, &'a [u8])>) -> u32 {
    let mut sorted: Vec<_> = entries.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = crc32fast::Hasher::new();
    for (_, bytes) in sorted {
        h.update(bytes);
    }
    h.finalize()
}

/// Writes a state atomically: into a file beside `path`, renamed into place once complete.
pub fn write(
    path: &Path,
    mut header: Header,
    pieces: &[PieceState],
    model: &FlatAcc,
) -> Result<()> {
    let mut entries = Vec::new();
    for (k, s) in pieces.iter().enumerate() {
        piece_entries(k, s, &mut entries);
    }
    flat_entries("model", model, &mut entries);
    header.pieces = pieces
        .iter()
        .map(|s| (s.piece.tensor, s.piece.cols.start, s.piece.cols.end))
        .collect();
    header.checksum = checksum(
        entries
            .iter()
            .map(|(n, e)| (n.as_str(), e.bytes.as_slice())),
    );
    let json = serde_json::to_string(&header)
        .map_err(|e| Error::Config(format!("cannot encode the state header: {e}")))?;
    let views = entries
        .iter()
        .map(|(n, e)| {
            safetensors::tensor::TensorView::new(e.dtype, e.shape.clone(), &e.bytes)
                .map(|v| (n.clone(), v))
                .map_err(|err| Error::Config(format!("internal: state tensor {n}: {err}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([(HEADER_KEY.to_owned(), json)]);
    let bytes = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| Error::Config(format!("cannot encode the state: {e}")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let result = std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(path, e));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An opened state: its header checked, its tensors mapped.
pub struct StateFile {
    pub path: PathBuf,
    pub header: Header,
    map: memmap2::Mmap,
    /// The safetensors layout, and where its data start in the file.
    layout: safetensors::tensor::Metadata,
    data_at: usize,
}

impl StateFile {
    /// Opens and checks a state: safetensors layout and size, schema, checksum.
    pub fn open(path: &Path) -> Result<StateFile> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read only; a state changed while merging fails its checksum or
        // yields wrong numbers, as reading it would.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (n, layout) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| {
            Error::bad(
                path,
                format!("not a complete gradtail state (truncated or damaged: {e}); write it again with gradtail shard"),
            )
        })?;
        let json = layout
            .metadata()
            .as_ref()
            .and_then(|m| m.get(HEADER_KEY))
            .ok_or_else(|| Error::bad(path, "a safetensors file but not a gradtail state (no state header); give the files gradtail shard wrote"))?;
        let schema = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("schema").and_then(|s| s.as_str().map(str::to_owned)));
        match schema.as_deref() {
            Some(STATE_SCHEMA) => {}
            Some(other) => {
                return Err(Error::bad(
                    path,
                    format!("a {other} state, but this gradtail reads {STATE_SCHEMA}; merge with the gradtail version that wrote it, or shard again"),
                ))
            }
            None => return Err(Error::bad(path, "the state header has no schema; the file is damaged: write it again with gradtail shard")),
        }
        let header: Header = serde_json::from_str(json).map_err(|e| {
            Error::bad(
                path,
                format!("the state header is damaged ({e}); write it again with gradtail shard"),
            )
        })?;
        let state = StateFile {
            path: path.to_path_buf(),
            header,
            map,
            layout,
            data_at: 8 + n,
        };
        let names = state.layout.tensors();
        let sum = checksum(names.iter().map(|(name, info)| {
            let (a, b) = info.data_offsets;
            (
                name.as_str(),
                &state.map[state.data_at + a..state.data_at + b],
            )
        }));
        if sum != state.header.checksum {
            return Err(Error::bad(
                path,
                "damaged: its contents do not match its checksum; write it again with gradtail shard",
            ));
        }
        if let Some(&(t, a, b)) = state.header.pieces.iter().find(|&&(t, a, b)| {
            a >= b
                || state
                    .header
                    .fingerprint
                    .tensors
                    .get(t)
                    .is_none_or(|m| b > m.shape.iter().product())
        }) {
            return Err(Error::bad(
                path,
                format!("damaged state: piece {t} [{a}, {b}) lies outside its tensor; write it again with gradtail shard"),
            ));
        }
        Ok(state)
    }

    /// The piece of `k`-th entry of the header, read back.
    pub fn piece(&self, k: usize, fits: bool) -> Result<PieceState> {
        let (tensor, c0, c1) = self.header.pieces[k];
        let len = c1 - c0;
        let prefix = format!("piece{k}");
        let mut mean = vec![MeanAcc::default(); len];
        let mut coords = vec![CoordAcc::default(); len];
        let u: Vec<Vec<u64>> = U64_FIELDS
            .iter()
            .map(|f| self.u64s(&format!("{prefix}/{f}"), len))
            .collect::<Result<_>>()?;
        let f: Vec<Vec<f64>> = F64_FIELDS
            .iter()
            .map(|f| self.f64s(&format!("{prefix}/{f}"), len))
            .collect::<Result<_>>()?;
        for j in 0..len {
            set_u64_fields(
                &mut mean[j],
                &mut coords[j],
                std::array::from_fn(|i| u[i][j]),
            );
            set_f64_fields(
                &mut mean[j],
                &mut coords[j],
                std::array::from_fn(|i| f[i][j]),
            );
        }
        let fits = if fits {
            let cols: Vec<Vec<f64>> = FIT_STATS
                .iter()
                .map(|f| self.f64s(&format!("{prefix}/fit_{f}"), len))
                .collect::<Result<_>>()?;
            Some(
                (0..len)
                    .map(|j| Fits::from_array(std::array::from_fn(|i| cols[i][j])))
                    .collect(),
            )
        } else {
            None
        };
        let tb = self.f64s_any(&format!("{prefix}/time_blocks"))?;
        if tb.len() % 5 != 0 {
            return Err(self.damaged(&format!("{prefix}/time_blocks")));
        }
        let blocks = tb
            .chunks_exact(5)
            .map(|b| BlockSums {
                sx: b[0],
                nx: b[1],
                sy: b[2],
                ny: b[3],
                sm: b[4],
            })
            .collect();
        Ok(PieceState {
            piece: Piece {
                tensor,
                cols: c0..c1,
            },
            mean,
            acc: TensorAcc {
                coords,
                flat: self.flat(&prefix)?,
                blocks,
            },
            fits,
        })
    }

    /// This shard's share of the whole input's flat state.
    pub fn model(&self) -> Result<FlatAcc> {
        self.flat("model")
    }

    fn flat(&self, prefix: &str) -> Result<FlatAcc> {
        Ok(FlatAcc {
            n: self.u64s(&format!("{prefix}/flat_n"), 1)?[0],
            lx: self.f64s(&format!("{prefix}/flat_lx"), 1)?[0],
            blocks: self.f64s_any(&format!("{prefix}/flat_blocks"))?,
        })
    }

    fn view(&self, name: &str, dtype: safetensors::Dtype) -> Result<&[u8]> {
        let info = self.layout.info(name).ok_or_else(|| self.damaged(name))?;
        if info.dtype != dtype {
            return Err(self.damaged(name));
        }
        let (a, b) = info.data_offsets;
        Ok(&self.map[self.data_at + a..self.data_at + b])
    }

    fn damaged(&self, name: &str) -> Error {
        Error::bad(
            &self.path,
            format!("damaged state: tensor {name} is missing or malformed; write it again with gradtail shard"),
        )
    }

    fn u64s(&self, name: &str, len: usize) -> Result<Vec<u64>> {
        let b = self.view(name, safetensors::Dtype::U64)?;
        if b.len() != len * 8 {
            return Err(self.damaged(name));
        }
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    fn f64s(&self, name: &str, len: usize) -> Result<Vec<f64>> {
        let v = self.f64s_any(name)?;
        if v.len() != len {
            return Err(self.damaged(name));
        }
        Ok(v)
    }

    fn f64s_any(&self, name: &str) -> Result<Vec<f64>> {
        Ok(self
            .view(name, safetensors::Dtype::F64)?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }
}
