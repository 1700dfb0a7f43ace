//! Safetensors inputs: one stacked file whose tensors carry a leading sample axis, or a folder
//! of per-step files (one sample each, as a training loop saves `{name: p.grad}` with
//! `safetensors.torch.save_file`), matched by tensor name and ordered by natural sort.
//!
//! Headers are parsed and validated by the `safetensors` crate on a memory map of which only
//! the header pages are touched; data is then read with positional reads.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use safetensors::SafeTensors;

use super::npy::{Header, NpyTensor};
use super::{
    pread, tensor_bytes, Block, BlockData, Dtype, Select, Skipped, TensorMeta, TensorSource,
};
use crate::error::{Error, Result};

/// One tensor entry of a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
}

/// A parsed safetensors file: entries in file order.
pub struct StFile {
    pub path: PathBuf,
    pub entries: Vec<(String, Entry)>,
}

pub fn dtype(d: safetensors::Dtype) -> Option<Dtype> {
    match d {
        safetensors::Dtype::F16 => Some(Dtype::F16),
        safetensors::Dtype::BF16 => Some(Dtype::BF16),
        safetensors::Dtype::F32 => Some(Dtype::F32),
        safetensors::Dtype::F64 => Some(Dtype::F64),
        _ => None,
    }
}

pub fn parse(path: &Path) -> Result<StFile> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < 8 {
        return Err(Error::bad(
            path,
            format!("not a safetensors file: only {len} bytes"),
        ));
    }
    // SAFETY: the map is read-only and only the header bytes are read; a concurrent writer
    // could change them, which at worst gives a parse error.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (n, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
        use safetensors::SafeTensorError as E;
        let what = match e {
            E::MetadataIncompleteBuffer => {
                "truncated or padded: the header's data offsets do not end at the end of the file; re-save or re-copy it".to_string()
            }
            E::InvalidHeaderLength | E::HeaderTooLarge | E::HeaderTooSmall => {
                format!("not a safetensors file, or its header length lies ({e}); re-save or re-copy it")
            }
            other => format!("invalid safetensors header: {other}"),
        };
        Error::bad(path, what)
    })?;
    let base = 8 + n as u64;
    let mut entries: Vec<(String, Entry)> = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            (
                name,
                Entry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    offset: base + info.data_offsets.0 as u64,
                },
            )
        })
        .collect();
    // The crate checks each shape's product left to right, but once K = 0 has made it 0 the
    // rest is never checked, and P (the product without K) is computed later.
    if let Some((name, e)) = entries
        .iter()
        .find(|(_, e)| tensor_bytes(&e.shape, 1).is_none())
    {
        return Err(Error::unusable(
            path,
            Some(name),
            format!(
                "shape {:?} has more elements than this machine can count; the file is damaged",
                e.shape
            ),
        ));
    }
    entries.sort_by_key(|(_, e)| e.offset);
    Ok(StFile {
        path: path.to_path_buf(),
        entries,
    })
}

/// A stacked file: each tensor is a (K, ...) C-order array.
pub fn open_stacked(
    path: &Path,
    select: &Select,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Box<dyn TensorSource>>> {
    let st = parse(path)?;
    let mut out: Vec<Box<dyn TensorSource>> = Vec::new();
    for (name, e) in st.entries {
        if !select.keep(&name) {
            continue;
        }
        let Some(dt) = dtype(e.dtype) else {
            skipped.push(Skipped::new(
                &name,
                format!(
                    "dtype {:?} is not a float type gradtail reads (F16, BF16, F32, F64)",
                    e.dtype
                ),
            ));
            continue;
        };
        if e.shape.is_empty() {
            skipped.push(Skipped::new(&name, "a scalar has no sample axis"));
            continue;
        }
        let file = File::open(path).map_err(|err| Error::io(path, err))?;
        let header = Header {
            dtype: dt,
            big_endian: false,
            fortran: false,
            shape: e.shape.clone(),
            data_offset: e.offset,
        };
        let meta = TensorMeta {
            name: name.clone(),
            path: path.to_path_buf(),
            dtype: dt,
            samples: e.shape[0],
            shape: e.shape[1..].to_vec(),
        };
        out.push(Box::new(NpyTensor::from_parts(meta, header, file)));
    }
    Ok(out)
}

/// Orders file names so that `step_2` comes before `step_10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, sa), (db, sb)) in ca.iter().zip(&cb) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len()
                .cmp(&tb.len())
                .then_with(|| ta.cmp(tb))
                .then_with(|| sa.len().cmp(&sb.len()))
        } else {
            sa.cmp(sb)
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The step files of a folder, shared by all its tensors: each is opened on first use and kept
/// open, so a run opens every step file once however many tensors and blocks read from it.
/// Where the descriptor limit cannot hold them all, each read opens its file instead.
struct StepFiles {
    paths: Vec<PathBuf>,
    open: Vec<OnceLock<File>>,
    keep_open: bool,
}

impl StepFiles {
    fn new(paths: Vec<PathBuf>) -> Self {
        let keep_open = descriptors_for(paths.len());
        StepFiles {
            open: paths.iter().map(|_| OnceLock::new()).collect(),
            paths,
            keep_open,
        }
    }

    /// Runs `read` on step file `r`.
    fn with<T>(&self, r: usize, read: impl FnOnce(&File) -> std::io::Result<T>) -> Result<T> {
        let path = &self.paths[r];
        let opened;
        let file = match self.open[r].get() {
            Some(f) => f,
            None => {
                let f = File::open(path).map_err(|e| Error::io(path, e))?;
                if self.keep_open {
                    // A racing reader may have set it first; either handle is the same file.
                    let _ = self.open[r].set(f);
                    self.open[r].get().expect("just set")
                } else {
                    opened = f;
                    &opened
                }
            }
        };
        read(file).map_err(|e| Error::io(path, e))
    }
}

/// Whether `files` more descriptors fit under the process's limit, raising the soft limit
/// towards the hard one when needed (Linux defaults to a soft limit of 1024).
#[cfg(unix)]
fn descriptors_for(files: usize) -> bool {
    // Room for the outputs, the GPU driver and the standard streams.
    const SPARE: u64 = 256;
    let need = files as u64 + SPARE;
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return false;
        }
        if (lim.rlim_cur as u64) >= need {
            return true;
        }
        if (lim.rlim_max as u64) < need {
            return false;
        }
        lim.rlim_cur = need as libc::rlim_t;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
    }
}

/// Windows has no small per-process handle limit.
#[cfg(not(unix))]
fn descriptors_for(_files: usize) -> bool {
    true
}

/// One tensor of a folder of step files: row k lives in file k.
pub struct StepTensor {
    meta: TensorMeta,
    files: Arc<StepFiles>,
    offsets: Vec<u64>,
}

impl TensorSource for StepTensor {
    fn meta(&self) -> &TensorMeta {
        &self.meta
    }

    fn read_block_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        reuse: Option<BlockData>,
    ) -> Result<Block> {
        let esize = self.meta.dtype.size();
        let nc = cols.len();
        let mut data = BlockData::reuse_or_empty(reuse, self.meta.dtype);
        let raw = data.bytes_mut(rows.len() * nc);
        for (i, r) in rows.clone().enumerate() {
            let dst = &mut raw[i * nc * esize..(i + 1) * nc * esize];
            let at = self.offsets[r] + (cols.start * esize) as u64;
            self.files
                .with(r, |file| pread::read_exact_at(file, dst, at))?;
        }
        Ok(Block::new(rows, cols, data))
    }
}

/// The readable step file whose layout (tensor names, dtypes and shapes) the most files
/// share, ties going to the earliest: the contract every step is checked against, so that
/// one damaged file is the one reported or skipped, wherever it sorts.
fn contract(parsed: &[StFile]) -> Option<&StFile> {
    type Layout<'a> = Vec<(&'a str, safetensors::Dtype, &'a [usize])>;
    let mut seen: std::collections::BTreeMap<Layout, (usize, usize)> = Default::default();
    for (i, st) in parsed.iter().enumerate() {
        let mut layout: Layout = st
            .entries
            .iter()
            .map(|(n, e)| (n.as_str(), e.dtype, e.shape.as_slice()))
            .collect();
        layout.sort();
        seen.entry(layout).or_insert((0, i)).0 += 1;
    }
    let (_, first) = seen
        .into_values()
        .max_by_key(|&(count, first)| (count, std::cmp::Reverse(first)))?;
    parsed.get(first)
}

/// Opens per-step files as one sample each. Every file must hold every selected tensor of
/// the [`contract`] with the same dtype and shape; with `skip_bad`, files that fail that are
/// left out and listed.
pub fn open_steps(
    paths: &[PathBuf],
    select: &Select,
    skip_bad: bool,
    skipped: &mut Vec<Skipped>,
    bad_files: &mut Vec<Skipped>,
) -> Result<Vec<Box<dyn TensorSource>>> {
    let mut parsed: Vec<StFile> = Vec::with_capacity(paths.len());
    for p in paths {
        match parse(p) {
            Ok(st) => parsed.push(st),
            Err(e) if skip_bad => {
                bad_files.push(Skipped::new(&p.display().to_string(), e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    let Some(first) = contract(&parsed) else {
        let dir = paths[0].parent().unwrap_or(Path::new("."));
        let why = bad_files
            .first()
            .map(|b| format!("; the first: {}", b.reason))
            .unwrap_or_default();
        return Err(Error::unusable(
            dir,
            None,
            format!("no readable step files{why}"),
        ));
    };
    let mut wanted: Vec<(String, Entry, Dtype)> = Vec::new();
    for (name, e) in &first.entries {
        if !select.keep(name) {
            continue;
        }
        match dtype(e.dtype) {
            Some(dt) => wanted.push((name.clone(), e.clone(), dt)),
            None => skipped.push(Skipped::new(
                name,
                format!(
                    "dtype {:?} is not a float type gradtail reads (F16, BF16, F32, F64)",
                    e.dtype
                ),
            )),
        }
    }
    let first_path = first.path.clone();
    let mut good: Vec<StFile> = Vec::with_capacity(parsed.len());
    for st in parsed {
        let index: HashMap<&str, &Entry> =
            st.entries.iter().map(|(n, e)| (n.as_str(), e)).collect();
        let mut problem = None;
        for (name, e, _) in &wanted {
            match index.get(name.as_str()) {
                None => problem = Some((name.clone(), format!("tensor '{name}' is missing (it is in {})", first_path.display()))),
                Some(f) if f.dtype != e.dtype || f.shape != e.shape => {
                    problem = Some((
                        name.clone(),
                        format!(
                            "tensor '{name}' is {:?} {:?} here but {:?} {:?} in {}; every step must have the same layout",
                            f.dtype,
                            f.shape,
                            e.dtype,
                            e.shape,
                            first_path.display()
                        ),
                    ))
                }
                _ => {}
            }
            if problem.is_some() {
                break;
            }
        }
        match problem {
            None => good.push(st),
            Some((_, msg)) if skip_bad => {
                bad_files.push(Skipped::new(&st.path.display().to_string(), msg))
            }
            Some((tensor, msg)) => return Err(Error::unusable(&st.path, Some(&tensor), msg)),
        }
    }
    let files = Arc::new(StepFiles::new(
        good.iter().map(|s| s.path.clone()).collect(),
    ));
    let dir = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(wanted
        .into_iter()
        .map(|(name, e, dt)| {
            let offsets = good
                .iter()
                .map(|st| {
                    st.entries
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, f)| f.offset)
                        .expect("checked above")
                })
                .collect();
            Box::new(StepTensor {
                meta: TensorMeta {
                    name,
                    path: dir.clone(),
                    dtype: dt,
                    samples: files.paths.len(),
                    shape: e.shape,
                },
                files: files.clone(),
                offsets,
            }) as Box<dyn TensorSource>
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `k` step files holding one 1 × 3 f32 tensor "w" with values k·10 + j.
    fn steps(dir: &Path, k: usize) -> Vec<PathBuf> {
        (0..k)
            .map(|r| {
                let values: Vec<u8> = (0..3)
                    .flat_map(|j| ((r * 10 + j) as f32).to_le_bytes())
                    .collect();
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![1, 3],
                    &values,
                )
                .unwrap();
                let path = dir.join(format!("step_{r}.safetensors"));
                safetensors::tensor::serialize_to_file([("w", view)], None, &path).unwrap();
                path
            })
            .collect()
    }

    /// Every read after the first of a step file uses the handle opened then: with the files
    /// unlinked, a reader that opened them again per block would fail.
    #[cfg(unix)]
    #[test]
    fn step_files_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = steps(dir.path(), 5);
        let (mut skipped, mut bad) = (Vec::new(), Vec::new());
        let sources =
            open_steps(&paths, &Select::default(), false, &mut skipped, &mut bad).unwrap();
        let w = &sources[0];
        let first = w.read_block(0..5, 0..1).unwrap();
        for p in &paths {
            std::fs::remove_file(p).unwrap();
        }
        let again = w.read_block(0..5, 1..3).unwrap();
        let mut col = vec![0.0; 2];
        again.data.widen_into(8..10, &mut col);
        assert_eq!(col, [41.0, 42.0]);
        let mut x = vec![0.0; 1];
        first.data.widen_into(4..5, &mut x);
        assert_eq!(x, [40.0]);
    }

    #[test]
    fn natural_order() {
        let mut v = vec![
            "step_10.safetensors",
            "step_2.safetensors",
            "step_1.safetensors",
            "step_02.safetensors",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "step_1.safetensors",
                "step_2.safetensors",
                "step_02.safetensors",
                "step_10.safetensors"
            ]
        );
    }
}
