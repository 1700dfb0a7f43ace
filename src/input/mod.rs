//! Input: opens gradient snapshot files and cuts each tensor into [`Block`]s of rows × columns
//! that the engines consume. A block never exceeds a byte budget, so resident memory is
//! O(block) whatever K and P are; its row range starts at a multiple of the block-sum length
//! K1, so time blocks never straddle two blocks (see `engine::accum::TailAcc`).

mod block;
pub mod bus;
pub mod mem;
pub mod npy;
pub mod npz;
pub mod plan;
pub mod pread;
pub mod safetensors;

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) use block::{bf16_value, f16_value, f32_value};
pub use block::{Block, BlockData, BlockView, Mapped, MappedFile, Values};

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F16,
    BF16,
    F32,
    F64,
}

impl Dtype {
    pub const ALL: [Dtype; 4] = [Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64];

    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Dtype::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown dtype {s:?}: expected f16, bf16, f32 or f64"))
    }
}

/// What the pipeline knows about one input tensor before reading it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TensorMeta {
    pub name: String,
    pub path: PathBuf,
    pub dtype: Dtype,
    /// Number of samples K (axis 0).
    pub samples: usize,
    /// Shape without the sample axis; its product is P.
    pub shape: Vec<usize>,
}

/// Bytes of a C-order tensor of `shape` with `elem`-byte values, or `None` when the product
/// of its nonzero dimensions times `elem` overflows `usize`. Checking the nonzero dimensions
/// means every partial product taken later (P, K·P, byte offsets, in any order) fits too,
/// even when a zero dimension makes the total 0.
pub fn tensor_bytes(shape: &[usize], elem: usize) -> Option<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(elem, |acc, &d| acc.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}

impl TensorMeta {
    pub fn coords(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tensor that can hand out blocks of itself, in any order the caller asks.
pub trait TensorSource: Send + Sync {
    fn meta(&self) -> &TensorMeta;
    fn read_block(&self, rows: Range<usize>, cols: Range<usize>) -> Result<Block> {
        self.read_block_into(rows, cols, None)
    }
    /// Reads a block, reusing `reuse`'s allocation when its dtype fits.
    fn read_block_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        reuse: Option<BlockData>,
    ) -> Result<Block>;
    /// Whether each coordinate's samples are contiguous (Fortran order), which changes the
    /// cheapest block shape.
    fn is_fortran(&self) -> bool {
        false
    }
    /// Whether blocks are read in place from a mapped file rather than into buffers of their
    /// own, so that larger blocks cost no fresh memory.
    fn reads_in_place(&self) -> bool {
        false
    }
}

/// Tensor-name filters (`--include`, `--exclude`), shell-style globs.
#[derive(Clone, Debug, Default)]
pub struct Select {
    pub include: Vec<glob::Pattern>,
    pub exclude: Vec<glob::Pattern>,
}

impl Select {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let compile = |pats: &[String]| {
            pats.iter()
                .map(|p| {
                    glob::Pattern::new(p)
                        .map_err(|e| Error::Config(format!("bad tensor pattern '{p}': {e}")))
                })
                .collect::<Result<Vec<_>>>()
        };
        Ok(Select {
            include: compile(include)?,
            exclude: compile(exclude)?,
        })
    }

    pub fn keep(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }
}

/// A tensor or file left out, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

impl Skipped {
    pub fn new(name: &str, reason: impl Into<String>) -> Self {
        Skipped {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Everything opened from the command line's inputs.
#[derive(Default)]
pub struct Inputs {
    pub sources: Vec<Box<dyn TensorSource>>,
    /// Tensors left out (unsupported dtype, scalar).
    pub skipped: Vec<Skipped>,
    /// Step files left out by `--skip-bad`.
    pub bad_files: Vec<Skipped>,
}

fn ext(p: &Path) -> Option<&str> {
    p.extension().and_then(|e| e.to_str())
}

fn step_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| ext(p) == Some("safetensors"))
        .collect();
    if files.is_empty() {
        return Err(Error::unusable(
            dir,
            None,
            "no .safetensors step files in this folder",
        ));
    }
    sort_steps(&mut files);
    Ok(files)
}

fn sort_steps(files: &mut [PathBuf]) {
    files.sort_by(|a, b| safetensors::natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
}

/// Opens one input path with no filters.
pub fn open(path: &Path) -> Result<Vec<Box<dyn TensorSource>>> {
    Ok(open_all(&[path.to_path_buf()], &Select::default(), false)?.sources)
}

/// Opens the command line's inputs:
/// - a folder, a glob, or several `.safetensors` files: per-step files, one sample each;
/// - one `.safetensors` file: tensors stacked with a leading sample axis;
/// - `.npy` files: one (K, ...) tensor each, named by file stem;
/// - `.npz` archives (numpy.savez): one tensor per member.
pub fn open_all(paths: &[PathBuf], select: &Select, skip_bad: bool) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    let is_glob = |p: &Path| !p.exists() && p.to_string_lossy().contains(['*', '?', '[']);
    let steps: Option<Vec<PathBuf>> = match paths {
        [one] if one.is_dir() => Some(step_files_in(one)?),
        [one] if is_glob(one) => {
            let pattern = one.to_string_lossy();
            let mut files: Vec<PathBuf> = glob::glob(&pattern)
                .map_err(|e| Error::Config(format!("bad glob '{pattern}': {e}")))?
                .filter_map(|p| p.ok())
                .collect();
            if files.is_empty() {
                return Err(Error::unusable(one, None, "the glob matches no file"));
            }
            sort_steps(&mut files);
            Some(files)
        }
        many if many.len() > 1 && many.iter().all(|p| ext(p) == Some("safetensors")) => {
            let mut files = many.to_vec();
            sort_steps(&mut files);
            Some(files)
        }
        _ => None,
    };
    match steps {
        Some(files) => {
            inputs.sources = safetensors::open_steps(
                &files,
                select,
                skip_bad,
                &mut inputs.skipped,
                &mut inputs.bad_files,
            )?
        }
        None => open_files(paths, select, &mut inputs)?,
    }
    if inputs.sources.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::unusable(
            names.join(", "),
            None,
            "no tensor left to analyse after --include/--exclude and dtype checks",
        ));
    }
    Ok(inputs)
}

/// Opens `.npy`, `.npz` and stacked `.safetensors` inputs, one tensor source per tensor.
fn open_files(paths: &[PathBuf], select: &Select, inputs: &mut Inputs) -> Result<()> {
    for path in paths {
        if path.is_dir() {
            return Err(Error::unusable(
                path,
                None,
                "a folder of step files must be the only input",
            ));
        }
        match ext(path) {
            Some("npy") => {
                let t = npy::NpyTensor::open(path)?;
                if select.keep(&t.meta().name) {
                    inputs.sources.push(Box::new(t));
                }
            }
            Some("npz") => inputs.sources.extend(npz::open(path, select)?),
            Some("safetensors") => inputs.sources.extend(safetensors::open_stacked(path, select, &mut inputs.skipped)?),
            _ => {
                return Err(Error::bad(
                    path,
                    "unsupported input: expected .npy, .npz, a .safetensors file or a folder of per-step .safetensors files",
                ))
            }
        }
    }
    Ok(())
}

/// Reads a tensor's blocks in the planned order on a background thread, `depth` blocks ahead,
/// so disk reads overlap the engine's work.
pub fn prefetch<'a>(
    src: &'a dyn TensorSource,
    plan: &'a [(Range<usize>, Range<usize>)],
    depth: usize,
    scope: &'a std::thread::Scope<'a, '_>,
) -> impl Iterator<Item = Result<Block>> + 'a {
    let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
    let (back_tx, back_rx) = std::sync::mpsc::channel();
    scope.spawn(move || {
        for (rows, cols) in plan {
            let reuse = back_rx.try_recv().ok();
            let block = src
                .read_block_into(rows.clone(), cols.clone(), reuse)
                .map(|mut b| {
                    b.recycle = Some(back_tx.clone());
                    b
                });
            let failed = block.is_err();
            if tx.send(block).is_err() || failed {
                break;
            }
        }
    });
    rx.into_iter()
}

#[cfg(test)]
mod tests {
    use super::tensor_bytes;

    #[test]
    fn tensor_bytes_checks_every_partial_product() {
        assert_eq!(tensor_bytes(&[3, 5], 4), Some(60));
        assert_eq!(tensor_bytes(&[], 8), Some(8));
        assert_eq!(tensor_bytes(&[0, 7], 4), Some(0));
        assert_eq!(tensor_bytes(&[1 << 31, 1 << 31, 4], 1), None);
        // The total is 0, but P = 2^32 · 2^32 alone overflows.
        assert_eq!(tensor_bytes(&[0, 1 << 32, 1 << 32], 4), None);
    }
}
