//! `coords.safetensors`: each per-coordinate statistic as a tensor named `<tensor>/<stat>`,
//! shaped like the input tensor without its sample axis, so
//! `safetensors.numpy.load_file(path)["fc0.weight/alpha_block"]` is a per-parameter map.

use std::path::Path;

use crate::error::{Error, Result};
use crate::input::Dtype;
use crate::stats::Stat;

/// Writes `coords.safetensors` tensor by tensor as the analysis finishes them, so the maps of
/// a model larger than memory never sit in memory together. The header, with every offset,
/// is known from the shapes and written first.
pub struct CoordsWriter {
    path: std::path::PathBuf,
    /// Written at positions: the header at creation, each piece of a map at its offset.
    file: std::fs::File,
    /// Where the next tensor's maps start in the file.
    at: u64,
    dtype: Dtype,
    order: Vec<String>,
    stats: &'static [Stat],
    next: usize,
}

impl CoordsWriter {
    /// `tensors`: (name, shape without the sample axis) in the order they will be written;
    /// `stats`: the maps of each ([`Stat::CORE`], or [`Stat::ALL`] with the fits).
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
        for (name, shape) in tensors {
            let shape = if shape.is_empty() {
                vec![1]
            } else {
                shape.clone()
            };
            let bytes = shape.iter().product::<usize>() * esize;
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
        Ok(CoordsWriter {
            path: path.to_path_buf(),
            file,
            at: 8 + text.len() as u64,
            dtype,
            order: tensors.iter().map(|t| t.0.clone()).collect(),
            stats,
            next: 0,
        })
    }

    /// Appends one tensor's maps; tensors must come in the order given to `create`.
    pub fn write(&mut self, name: &str, table: &crate::stats::CoordTable) -> Result<()> {
        assert_eq!(
            self.order.get(self.next).map(String::as_str),
            Some(name),
            "coords written out of order"
        );
        self.next += 1;
        assert_eq!(
            table.stats(),
            self.stats,
            "coords of {name} hold other maps"
        );
        use rayon::prelude::*;
        // Every thread converts pieces of the maps and writes each where it belongs in the
        // file, so the conversion and the copy into the page cache are shared.
        const PIECE: usize = 1 << 16;
        let e = self.dtype.size();
        let at = self.at;
        let maps: Vec<&[f64]> = table.iter().map(|(_, v)| v).collect();
        let len = maps.first().map_or(0, |v| v.len());
        self.at += (maps.len() * len * e) as u64;
        let file = &self.file;
        let pieces: Vec<(usize, usize)> = (0..maps.len())
            .flat_map(|m| (0..len).step_by(PIECE).map(move |p| (m, p)))
            .collect();
        pieces
            .par_iter()
            .try_for_each_init(Vec::new, |bytes: &mut Vec<u8>, &(m, p)| {
                let values = &maps[m][p..(p + PIECE).min(len)];
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
                write_at(file, bytes, at + ((m * len + p) * e) as u64)
            })
            .map_err(|e| Error::io(&self.path, e))
    }

    pub fn finish(self) -> Result<()> {
        assert_eq!(
            self.next,
            self.order.len(),
            "coords missing for some tensors"
        );
        Ok(())
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
