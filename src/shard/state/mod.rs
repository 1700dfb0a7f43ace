//! The state file `gradtail.state/1`: one safetensors file (loadable with
//! `safetensors.numpy.load_file`, its size checked against its header when opened) holding a
//! shard's mergeable accumulators, with a JSON header in its metadata under the key
//! `gradtail.state`: schema, shard index and count, the fingerprint of inputs and options,
//! the pieces it covers and a CRC-32 of its data section. The writer streams pieces to disk
//! as the run finishes them, so a shard holds one group's state at a time, as `analyze` does.
//!
//! Tensors, for piece k (`pieces[k]` in the header: a tensor and a coordinate range):
//! `piece{k}/<field>`, one value per coordinate, for the fields of [`U64_FIELDS`] (U64) and
//! [`F64_FIELDS`] (F64): the pass-1 `MeanAcc` and pass-2 `CoordAcc` of each coordinate;
//! `piece{k}/fit_<stat>` (F64) per fit statistic when the fits ran; the pooled sums of the
//! piece: `piece{k}/time_blocks` (F64, [blocks, 5]: Σln|u|, count, Σln|Y|, count, Σln m per
//! time block), `piece{k}/flat_blocks` (F64), `piece{k}/flat_n` (U64, [1]) and
//! `piece{k}/flat_lx` (F64, [1]); the structure state of the piece: `piece{k}/sum_sq` (F64,
//! [1]: Σu² over its coordinates), `piece{k}/centre_sq` (F64, [1]: Σc² of the `--center`
//! file's values), with the spectrum `piece{k}/gram` (F64, [K, K]: the lower triangle of UUᵀ)
//! and `piece{k}/gram_coords` (U64, [1]), with dimension-wise power-law fits `piece{k}/abs_u`
//! (F64, [samples, len]: |u_k| of each fitted sample k), with `--powerlaw-coords`
//! `piece{k}/pl_alpha`, `pl_xmin`, `pl_ks` (F64) and `pl_ks_pass` (U64), one per coordinate.
//! The whole input's flat state: `model/flat_blocks`,
//! `model/flat_n`, `model/flat_lx`; the shard's wall time: `run/elapsed_s` (F64, [1]).

mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::run::PieceState;
use crate::analyze::structure::{PowerLawCoord, StructureAcc, StructureOptions};
use crate::analyze::{Center, Piece};
use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, MeanAcc};
use crate::engine::TensorAcc;
use crate::error::{Error, Result};
use crate::input::Dtype;
use crate::stats::fits::{Fits, FIT_STATS};
use crate::stats::structure::Gram;
pub use writer::StateWriter;

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
    /// (name, bytes) of each input: a file's length, or the total of a step folder's
    /// .safetensors files.
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
    /// The structure statistics asked for (spectrum, power-law fits and their settings,
    /// batch size).
    pub structure: StructureOptions,
}

/// The structure tensors of each piece: the Gram's K (with the spectrum), how many samples'
/// |u_k| (dimension-wise fits), and whether the iteration-wise fits ran.
#[derive(Clone, Debug)]
pub struct StructureLayout {
    pub gram: Option<usize>,
    pub samples: usize,
    pub coords: bool,
}

impl StructureLayout {
    /// The layout for `opts` over `k` samples, whose dimension-wise fits use `dim_samples`.
    pub fn new(opts: &StructureOptions, k: usize, dim_samples: &[usize]) -> Self {
        StructureLayout {
            gram: opts.spectrum.then_some(k),
            samples: dim_samples.len(),
            coords: opts.powerlaw_coords,
        }
    }
}

/// The iteration-wise power-law fit's fields stored as F64, in `PowerLawCoord::to_array` order.
pub const PL_FIELDS: [&str; 3] = ["pl_alpha", "pl_xmin", "pl_ks"];

/// What a merged report shows that is not a statistic: the input paths and centre as the
/// shard saw them, the engine that ran it, and the bytes it read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub paths: Vec<PathBuf>,
    pub center: Center,
    pub engine: serde_json::Value,
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
    /// CRC-32 of the data section (every tensor's bytes, in file order), 8 hex digits.
    pub checksum: String,
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

pub(super) fn u64_fields(m: &MeanAcc, c: &CoordAcc) -> [u64; 8] {
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

pub(super) fn f64_fields(m: &MeanAcc, c: &CoordAcc) -> [f64; 12] {
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
        let sum = crc32fast::hash(&state.map[state.data_at..]);
        if format!("{sum:08x}") != state.header.checksum {
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

    /// The piece of `k`-th entry of the header, read back; `dim_samples` are the samples of
    /// the dimension-wise fits (in the layout's order).
    pub fn piece(
        &self,
        k: usize,
        fits: bool,
        structure: &StructureOptions,
        samples: usize,
        dim_samples: &[usize],
    ) -> Result<PieceState> {
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
        let mut st = StructureAcc::new(samples, 0, false, &[]);
        st.sum_sq = self.f64s(&format!("{prefix}/sum_sq"), 1)?[0];
        let centre_sq = self.f64s(&format!("{prefix}/centre_sq"), 1)?[0];
        if structure.spectrum {
            let name = format!("{prefix}/gram");
            let g = self.f64s(&name, samples * samples)?;
            let n = self.u64s(&format!("{prefix}/gram_coords"), 1)?[0];
            st.gram = Some(Gram::from_parts(samples, n, &g).map_err(|_| self.damaged(&name))?);
        }
        if !dim_samples.is_empty() {
            let u = self.f64s(&format!("{prefix}/abs_u"), dim_samples.len() * len)?;
            st.rows = dim_samples
                .iter()
                .zip(u.chunks_exact(len.max(1)))
                .map(|(&s, row)| (s, row.to_vec()))
                .collect();
        }
        let powerlaw = if structure.powerlaw_coords {
            let cols: Vec<Vec<f64>> = PL_FIELDS
                .iter()
                .map(|f| self.f64s(&format!("{prefix}/{f}"), len))
                .collect::<Result<_>>()?;
            let pass = self.u64s(&format!("{prefix}/pl_ks_pass"), len)?;
            Some(
                (0..len)
                    .map(|j| PowerLawCoord {
                        alpha: cols[0][j],
                        xmin: cols[1][j],
                        ks: cols[2][j],
                        ks_pass: pass[j] != 0,
                    })
                    .collect(),
            )
        } else {
            None
        };
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
            structure: st,
            powerlaw,
            centre_sq,
            finished: None,
        })
    }

    /// This shard's share of the whole input's flat state.
    pub fn model(&self) -> Result<FlatAcc> {
        self.flat("model")
    }

    /// The shard's wall time, in seconds.
    pub fn elapsed_s(&self) -> Result<f64> {
        Ok(self.f64s("run/elapsed_s", 1)?[0])
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
