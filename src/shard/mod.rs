//! Beyond one process: `shard` analyses a share of the input and writes its mergeable state
//! (`state`); `merge` combines the states of every shard and finishes them into what one
//! `analyze` run would have written. The accumulators are monoids (identity and associative
//! combine), so a shard's partial sums add up to the whole run's: per-coordinate state is
//! the same to the bit (each coordinate lies in one shard and is read in the same row
//! chunks), pooled sums equal up to the order of their f64 additions.

mod merge;
pub mod state;

use std::path::Path;
use std::time::Instant;

pub use merge::{merge, Merged};
pub use state::{Fingerprint, FingerprintOptions, InputTensor, StateFile, STATE_SCHEMA};

use crate::analyze::plan::shard_pieces;
use crate::analyze::run::{run, PieceState};
use crate::analyze::{Center, Options, Plan};
use crate::engine::accum::FlatAcc;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::input::Inputs;

/// The fingerprint of `inputs` analysed with `opts` (`backend` and `coords_dtype` as the
/// command line names them).
pub fn fingerprint(
    inputs: &Inputs,
    opts: &Options,
    backend: &str,
    coords_dtype: &str,
) -> Result<Fingerprint> {
    let metas: Vec<_> = inputs.sources.iter().map(|s| s.meta()).collect();
    let mut files: Vec<(String, u64)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &metas {
        if seen.insert(m.path.clone()) {
            let bytes = match std::fs::metadata(&m.path) {
                Ok(md) if md.is_file() => md.len(),
                _ => 0,
            };
            let name = m.path.file_name().map(|n| n.to_string_lossy().into_owned());
            files.push((name.unwrap_or_default(), bytes));
        }
    }
    let (center, center_values) = match &opts.center {
        Center::Mean => ("mean", None),
        Center::Median => ("median", None),
        Center::None => ("none", None),
        Center::File(p) => {
            let total = metas.iter().map(|m| m.coords()).sum();
            let values = crate::analyze::read_centre(p, total)?;
            let mut h = crc32fast::Hasher::new();
            values.iter().for_each(|v| h.update(&v.to_le_bytes()));
            ("file", Some((values.len(), h.finalize())))
        }
    };
    let skipped = |v: &[crate::input::Skipped]| {
        v.iter()
            .map(|s| (s.name.clone(), s.reason.clone()))
            .collect()
    };
    Ok(Fingerprint {
        tensors: metas
            .iter()
            .map(|m| InputTensor {
                name: m.name.clone(),
                dtype: m.dtype,
                samples: m.samples,
                shape: m.shape.clone(),
            })
            .collect(),
        files,
        skipped_tensors: skipped(&inputs.skipped),
        skipped_files: skipped(&inputs.bad_files),
        options: FingerprintOptions {
            center: center.into(),
            center_values,
            block: opts.block,
            fits: opts.fits,
            backend: backend.into(),
            coords_dtype: coords_dtype.into(),
        },
    })
}

/// What a shard did.
pub struct ShardReport {
    pub pieces: usize,
    pub coords: usize,
    pub bytes_read: u64,
}

/// Runs shard `index` of `of` of `inputs` on `backend` and writes its state to `out`.
pub fn shard(
    inputs: &Inputs,
    opts: &Options,
    backend: &mut dyn Backend,
    (index, of): (usize, usize),
    fingerprint: Fingerprint,
    out: &Path,
) -> Result<ShardReport> {
    let start = Instant::now();
    if of == 0 || index >= of {
        return Err(Error::Config(format!(
            "--index {index} --of {of}: the index must be below the number of shards (0 to {})",
            of.saturating_sub(1)
        )));
    }
    let sources = &inputs.sources;
    let mut plan = Plan::new(sources, opts, backend.single_read())?;
    let bytes_per_coord: Vec<u64> = sources
        .iter()
        .map(|s| (s.meta().samples * s.meta().dtype.size()) as u64)
        .collect();
    let pieces = shard_pieces(&plan.coords, &bytes_per_coord, index, of);
    plan.set_pieces(pieces, sources, opts)?;
    let n_model = (plan.samples * plan.total) as u64;
    let mut model = FlatAcc::new((n_model / plan.m_model) as usize);
    let mut states: Vec<PieceState> = Vec::with_capacity(plan.pieces.len());
    run(&plan, sources, opts, backend, &mut model, &mut |s| {
        states.push(s);
        Ok(())
    })?;
    let info = backend.info();
    let header = state::Header {
        schema: STATE_SCHEMA.into(),
        gradtail_version: env!("CARGO_PKG_VERSION").into(),
        index,
        of,
        fingerprint,
        run: state::RunInfo {
            paths: sources.iter().map(|s| s.meta().path.clone()).collect(),
            center: opts.center.clone(),
            engine: serde_json::to_value(&info)
                .map_err(|e| Error::Config(format!("cannot encode the engine: {e}")))?,
            elapsed_s: start.elapsed().as_secs_f64(),
            bytes_read: plan.bytes(),
        },
        pieces: Vec::new(),
        checksum: 0,
    };
    state::write(out, header, &states, &model)?;
    Ok(ShardReport {
        pieces: states.len(),
        coords: states.iter().map(|s| s.piece.cols.len()).sum(),
        bytes_read: plan.bytes(),
    })
}
