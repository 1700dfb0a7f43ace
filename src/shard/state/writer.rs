//! Writing a state: the safetensors header is laid out from the plan before the run (every
//! size is known then), pieces are appended as the run finishes them, and the model's flat
//! state and the shard's wall time last; the checksum, unknown until the end, fills a fixed-width slot of the header.
//! The file is written beside its final path and renamed there once complete.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{
    f64_fields, u64_fields, Header, StructureLayout, F64_FIELDS, HEADER_KEY, PL_FIELDS, U64_FIELDS,
};
use crate::analyze::run::PieceState;
use crate::engine::accum::FlatAcc;
use crate::error::{Error, Result};
use crate::stats::fits::FIT_STATS;

/// The checksum slot's placeholder in the header: 8 hex digits.
const NO_SUM: &str = "00000000";

/// A tensor of the file: name, dtype, shape.
type Slot = (String, &'static str, Vec<usize>);

/// The tensors of piece `k`, in file order: `len` coordinates, the fits or not, `blocks` time
/// blocks, `flat` flat blocks and the structure state `st`. [`piece_data`] yields their bytes
/// in this order.
fn piece_layout(
    k: usize,
    len: usize,
    fits: bool,
    blocks: usize,
    flat: usize,
    st: &StructureLayout,
) -> Vec<Slot> {
    let p = |name: &str| format!("piece{k}/{name}");
    let mut out: Vec<Slot> = Vec::new();
    out.extend(U64_FIELDS.iter().map(|f| (p(f), "U64", vec![len])));
    out.extend(F64_FIELDS.iter().map(|f| (p(f), "F64", vec![len])));
    if fits {
        out.extend(
            FIT_STATS
                .iter()
                .map(|f| (p(&format!("fit_{f}")), "F64", vec![len])),
        );
    }
    out.push((p("time_blocks"), "F64", vec![blocks, 5]));
    out.extend(flat_layout(&format!("piece{k}"), flat));
    out.push((p("sum_sq"), "F64", vec![1]));
    out.push((p("centre_sq"), "F64", vec![1]));
    if let Some(kk) = st.gram {
        out.push((p("gram"), "F64", vec![kk, kk]));
        out.push((p("gram_coords"), "U64", vec![1]));
    }
    if st.samples > 0 {
        out.push((p("abs_u"), "F64", vec![st.samples, len]));
    }
    if st.coords {
        out.extend(PL_FIELDS.iter().map(|f| (p(f), "F64", vec![len])));
        out.push((p("pl_ks_pass"), "U64", vec![len]));
    }
    out
}

fn flat_layout(prefix: &str, blocks: usize) -> Vec<Slot> {
    vec![
        (format!("{prefix}/flat_blocks"), "F64", vec![blocks]),
        (format!("{prefix}/flat_n"), "U64", vec![1]),
        (format!("{prefix}/flat_lx"), "F64", vec![1]),
    ]
}

fn f64s(v: impl IntoIterator<Item = f64>) -> Vec<u8> {
    v.into_iter().flat_map(f64::to_le_bytes).collect()
}

fn u64s(v: impl IntoIterator<Item = u64>) -> Vec<u8> {
    v.into_iter().flat_map(u64::to_le_bytes).collect()
}

/// The bytes of a piece's tensors, in [`piece_layout`] order.
fn piece_data(s: &PieceState) -> Vec<Vec<u8>> {
    // A shard's run keeps its accumulators (`run::run` without finishing).
    debug_assert!(
        s.finished.is_none(),
        "a finished piece has no accumulators to keep"
    );
    let pairs = || s.mean.iter().zip(&s.acc.coords);
    let mut out = Vec::new();
    for f in 0..U64_FIELDS.len() {
        out.push(u64s(pairs().map(|(m, c)| u64_fields(m, c)[f])));
    }
    for f in 0..F64_FIELDS.len() {
        out.push(f64s(pairs().map(|(m, c)| f64_fields(m, c)[f])));
    }
    if let Some(fits) = &s.fits {
        for f in 0..FIT_STATS.len() {
            out.push(f64s(fits.iter().map(|x| x.to_array()[f])));
        }
    }
    let b = &s.acc.blocks;
    out.push(f64s(b.iter().flat_map(|b| [b.sx, b.nx, b.sy, b.ny, b.sm])));
    out.extend(flat_data(&s.acc.flat));
    let st = &s.structure;
    out.push(f64s([st.sum_sq]));
    out.push(f64s([s.centre_sq]));
    if let Some(g) = &st.gram {
        out.push(f64s(g.to_parts()));
        out.push(u64s([g.coords()]));
    }
    if !st.rows.is_empty() {
        out.push(f64s(st.rows.iter().flat_map(|r| r.1.iter().copied())));
    }
    if let Some(pl) = &s.powerlaw {
        for f in 0..PL_FIELDS.len() {
            out.push(f64s(pl.iter().map(|c| c.to_array()[f])));
        }
        out.push(u64s(pl.iter().map(|c| u64::from(c.ks_pass))));
    }
    out
}

fn flat_data(f: &FlatAcc) -> Vec<Vec<u8>> {
    vec![f64s(f.blocks.iter().copied()), u64s([f.n]), f64s([f.lx])]
}

/// A state being written. Dropped before [`StateWriter::finish`], it removes its file.
pub struct StateWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Every tensor in file order, and the next one to write.
    slots: Vec<Slot>,
    next: usize,
    /// Where the checksum slot's digits start in the file.
    sum_at: u64,
    crc: crc32fast::Hasher,
}

impl StateWriter {
    /// Lays out the file for `header.pieces` (with `fits` or not, `blocks` time blocks and
    /// `flat[k]` flat blocks for piece k, the structure state `st`, `model` for the whole
    /// input) and writes its header.
    pub fn create(
        path: &Path,
        header: &Header,
        fits: bool,
        blocks: usize,
        flat: &[usize],
        st: &StructureLayout,
        model: usize,
    ) -> Result<StateWriter> {
        let mut slots = Vec::new();
        for (k, (&(_, a, b), &f)) in header.pieces.iter().zip(flat).enumerate() {
            slots.extend(piece_layout(k, b - a, fits, blocks, f, st));
        }
        slots.extend(flat_layout("model", model));
        slots.push(("run/elapsed_s".into(), "F64", vec![1]));
        let mut h = header.clone();
        h.checksum = NO_SUM.into();
        let json = serde_json::to_string(&h)
            .map_err(|e| Error::Config(format!("cannot encode the state header: {e}")))?;
        let mut map = serde_json::Map::new();
        map.insert(
            "__metadata__".into(),
            serde_json::json!({ HEADER_KEY: json }),
        );
        let mut offset = 0usize;
        for (name, dtype, shape) in &slots {
            let bytes = 8 * shape.iter().product::<usize>();
            map.insert(
                name.clone(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
        }
        let mut text = serde_json::to_string(&map)
            .map_err(|e| Error::Config(format!("cannot encode the state header: {e}")))?;
        // The format pads the header with spaces so data starts 8-byte aligned.
        text.push_str(&" ".repeat((8 - text.len() % 8) % 8));
        // The header JSON sits escaped in a string: its one checksum field reads like this.
        let key = format!("checksum\\\":\\\"{NO_SUM}");
        let sum_at = text
            .find(&key)
            .map(|i| 8 + (i + key.len() - NO_SUM.len()) as u64)
            .ok_or_else(|| {
                Error::Config("internal: no checksum slot in the state header".into())
            })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let mut w = StateWriter {
            path: path.to_path_buf(),
            tmp,
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            slots,
            next: 0,
            sum_at,
            crc: crc32fast::Hasher::new(),
        };
        w.raw(&(text.len() as u64).to_le_bytes())?;
        w.raw(text.as_bytes())?;
        Ok(w)
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Writes the next tensors, checking them against the layout.
    fn tensors(&mut self, data: Vec<Vec<u8>>) -> Result<()> {
        for bytes in data {
            let (name, _, shape) = self
                .slots
                .get(self.next)
                .ok_or_else(|| Error::Config("internal: more state than laid out".into()))?;
            if bytes.len() != 8 * shape.iter().product::<usize>() {
                return Err(Error::Config(format!(
                    "internal: state tensor {name} is not the size laid out"
                )));
            }
            self.next += 1;
            self.crc.update(&bytes);
            self.raw(&bytes)?;
        }
        Ok(())
    }

    /// Appends the next piece (in the header's order).
    pub fn piece(&mut self, s: &PieceState) -> Result<()> {
        self.tensors(piece_data(s))
    }

    /// Appends the whole input's flat state and the shard's wall time, fills in the checksum
    /// and moves the file into place.
    pub fn finish(mut self, model: &FlatAcc, elapsed_s: f64) -> Result<()> {
        let mut last = flat_data(model);
        last.push(f64s([elapsed_s]));
        self.tensors(last)?;
        if self.next != self.slots.len() {
            return Err(Error::Config(format!(
                "internal: the state lacks tensors from {}",
                self.slots[self.next].0
            )));
        }
        let sum = format!("{:08x}", self.crc.clone().finalize());
        let path = self.path.clone();
        let io = |e| Error::io(&path, e);
        self.out.seek(SeekFrom::Start(self.sum_at)).map_err(io)?;
        self.out.write_all(sum.as_bytes()).map_err(io)?;
        self.out.flush().map_err(io)?;
        self.out.get_ref().sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(io)
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        // After a successful `finish` the file was renamed and this finds nothing.
        let _ = std::fs::remove_file(&self.tmp);
    }
}
