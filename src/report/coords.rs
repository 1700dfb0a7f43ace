//! `coords.safetensors`: each per-coordinate statistic as a tensor named `<tensor>/<stat>`,
//! shaped like the input tensor without its sample axis, so
//! `safetensors.numpy.load_file(path)["fc0.weight/alpha_block"]` is a per-parameter map.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::analyze::Analysis;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CoordsDtype {
    F32,
    F64,
}

pub fn write(path: &Path, a: &Analysis, dtype: CoordsDtype) -> Result<()> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &a.tensors {
        let shape = if t.meta.shape.is_empty() {
            vec![1]
        } else {
            t.meta.shape.clone()
        };
        for (stat, values) in t.coords.iter() {
            let bytes = match dtype {
                CoordsDtype::F32 => values
                    .iter()
                    .flat_map(|&v| (v as f32).to_le_bytes())
                    .collect(),
                CoordsDtype::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            };
            buffers.push((format!("{}/{stat}", t.meta.name), shape.clone(), bytes));
        }
    }
    let st_dtype = match dtype {
        CoordsDtype::F32 => Dtype::F32,
        CoordsDtype::F64 => Dtype::F64,
    };
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Config(format!("cannot encode {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([
        ("schema".to_string(), "gradtail.coords/1".to_string()),
        (
            "gradtail_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    safetensors::tensor::serialize_to_file(views, Some(meta), path)
        .map_err(|e| Error::Config(format!("{}: cannot write: {e}", path.display())))
}
