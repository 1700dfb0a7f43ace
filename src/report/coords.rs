//! `coords.safetensors`: each per-coordinate statistic as a tensor named `<tensor>/<stat>`,
//! shaped like the input tensor without its sample axis, so
//! `safetensors.numpy.load_file(path)["fc0.weight/alpha_block"]` is a per-parameter map.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::input::Dtype;
use crate::stats::{MapSink, Stat};

/// Writes `coords.safetensors` as the analysis finishes the maps, tensor by tensor or block
/// by block ([`MapSink`]), so the maps of a model larger than memory never sit in memory
/// together. The header, with every offset, is known from the shapes and written first; each
/// piece of a map is written at its place, from any thread.
pub struct CoordsWriter {
    path: std::path::PathBuf,
    file: std::fs::File,
    dtype: Dtype,
    /// Tensor name → (where its maps start in the file, its coordinate count).
    tensors: HashMap<String, (u64, usize)>,
    stats: &'static [Stat],
    /// Values written so far, and how many the file holds.
    written: AtomicU64,
    total: u64,
}

/// Values converted and written at a time.
const PIECE: usize = 1 << 14;

impl CoordsWriter {
    /// `tensors`: (name, shape without the sample axis), in file order; `stats`: the maps of
    /// each ([`Stat::CORE`], or another list of [`Stat::maps`]).
    pub fn create(
        path: &Path,
        tensors: &[(String, Vec<usize>)],
        stats: &'static [Stat],
        dtype: Dtype,
    ) -> Result<Self> {
        use std::io::Write;
        let (esize, tag) = match dtype {
            Dtype::F32 => (4, "F32"),
            Dtype::F64 => (8, "F64"),
            other => {
                return Err(Error::Config(format!(
                    "coords.safetensors is written as f32 or f64, not {}",
                    other.name()
                )))
            }
        };
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            serde_json::json!({"schema": "gradtail.coords/1", "gradtail_version": env!("CARGO_PKG_VERSION")}),
        );
        let mut offset = 0usize;
        let mut starts = HashMap::new();
        for (name, shape) in tensors {
            let shape = if shape.is_empty() {
                vec![1]
            } else {
                shape.clone()
            };
            let len = shape.iter().product::<usize>();
            starts.insert(name.clone(), (offset as u64, len));
            let bytes = len * esize;
            for stat in stats {
                header.insert(
                    format!("{name}/{}", stat.name()),
                    serde_json::json!({"dtype": tag, "shape": shape, "data_offsets": [offset, offset + bytes]}),
                );
                offset += bytes;
            }
        }
        let mut text = serde_json::to_string(&header)
            .map_err(|e| Error::Config(format!("cannot encode header: {e}")))?;
        // The format pads the header with spaces so data starts 8-byte aligned.
        text.push_str(&" ".repeat((8 - text.len() % 8) % 8));
        let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut head = (text.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(text.as_bytes());
        file.write_all(&head).map_err(|e| Error::io(path, e))?;
        let data = 8 + text.len() as u64;
        for start in starts.values_mut() {
            start.0 += data;
        }
        Ok(CoordsWriter {
            path: path.to_path_buf(),
            file,
            dtype,
            tensors: starts,
            stats,
            written: AtomicU64::new(0),
            total: (offset / esize) as u64,
        })
    }

    /// Writes one tensor's whole table, its pieces in parallel on the current pool.
    pub fn write(&self, name: &str, table: &crate::stats::CoordTable) -> Result<()> {
        assert_eq!(
            table.stats(),
            self.stats,
            "coords of {name} hold other maps"
        );
        let maps: Vec<(Stat, &[f64])> = self
            .stats
            .iter()
            .copied()
            .zip(table.iter().map(|(_, v)| v))
            .collect();
        self.write_maps(name, 0, &maps)
    }

    /// Every value of every map written, or an error.
    pub fn finish(self) -> Result<()> {
        let written = self.written.into_inner();
        if written != self.total {
            return Err(Error::Config(format!(
                "internal: {} holds {written} of its {} values",
                self.path.display(),
                self.total
            )));
        }
        Ok(())
    }

    fn write_map(&self, tensor: &str, stat: Stat, first: usize, values: &[f64]) -> Result<()> {
        let &(start, len) = self
            .tensors
            .get(tensor)
            .unwrap_or_else(|| panic!("coords of an unknown tensor {tensor}"));
        let m = self.stats.iter().position(|&s| s == stat);
        let m = m.unwrap_or_else(|| panic!("{tensor}/{} is not a map of the file", stat.name()));
        assert!(
            first + values.len() <= len,
            "{tensor}/{} past its end",
            stat.name()
        );
        let e = self.dtype.size();
        let mut at = start + ((m * len + first) * e) as u64;
        thread_local! {
            static BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        BYTES.with_borrow_mut(|bytes| {
            for values in values.chunks(PIECE) {
                // Into a buffer of the right size value by value, which compiles to vector
                // conversions (extending a byte at a time did not).
                bytes.clear();
                bytes.resize(values.len() * e, 0);
                match self.dtype {
                    Dtype::F32 => {
                        for (b, &v) in bytes.chunks_exact_mut(4).zip(values) {
                            b.copy_from_slice(&(v as f32).to_le_bytes());
                        }
                    }
                    // f64: `create` refuses the 16-bit types.
                    _ => {
                        for (b, &v) in bytes.chunks_exact_mut(8).zip(values) {
                            b.copy_from_slice(&v.to_le_bytes());
                        }
                    }
                }
                write_at(&self.file, bytes, at).map_err(|e| Error::io(&self.path, e))?;
                at += bytes.len() as u64;
            }
            Ok(())
        })?;
        self.written
            .fetch_add(values.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl MapSink for CoordsWriter {
    fn write(&self, tensor: &str, stat: Stat, first: usize, values: &[f64]) -> Result<()> {
        self.write_map(tensor, stat, first, values)
    }
}

/// Writes all of `bytes` at byte `at` of `file`, leaving its cursor alone where the platform
/// allows.
fn write_at(file: &std::fs::File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < bytes.len() {
            let n =
                std::os::windows::fs::FileExt::seek_write(file, &bytes[done..], at + done as u64)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, bytes, at);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "positioned writes are not available on this platform",
        ))
    }
}
