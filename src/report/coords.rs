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
    out: std::io::BufWriter<std::fs::File>,
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
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(text.len() as u64).to_le_bytes())
            .map_err(|e| Error::io(path, e))?;
        out.write_all(text.as_bytes())
            .map_err(|e| Error::io(path, e))?;
        Ok(CoordsWriter {
            path: path.to_path_buf(),
            out,
            dtype,
            order: tensors.iter().map(|t| t.0.clone()).collect(),
            stats,
            next: 0,
        })
    }

    /// Appends one tensor's maps; tensors must come in the order given to `create`.
    pub fn write(&mut self, name: &str, table: &crate::stats::CoordTable) -> Result<()> {
        use std::io::Write;
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
        // One map's bytes at a time, converted on every thread into one reused buffer.
        const PIECE: usize = 1 << 14;
        let mut bytes = Vec::new();
        for (_, values) in table.iter() {
            let e = self.dtype.size();
            bytes.resize(values.len() * e, 0u8);
            let pieces = bytes
                .par_chunks_mut(PIECE * e)
                .zip(values.par_chunks(PIECE));
            match self.dtype {
                Dtype::F32 => pieces.for_each(|(out, v)| {
                    for (o, &v) in out.chunks_exact_mut(4).zip(v) {
                        o.copy_from_slice(&(v as f32).to_le_bytes());
                    }
                }),
                // f64: `create` refuses the 16-bit types.
                _ => pieces.for_each(|(out, v)| {
                    for (o, &v) in out.chunks_exact_mut(8).zip(v) {
                        o.copy_from_slice(&v.to_le_bytes());
                    }
                }),
            }
            self.out
                .write_all(&bytes)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        use std::io::Write;
        assert_eq!(
            self.next,
            self.order.len(),
            "coords missing for some tensors"
        );
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}
