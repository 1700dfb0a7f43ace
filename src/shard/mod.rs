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
use crate::analyze::run::run;
use crate::analyze::{Center, Options, Plan};
use crate::engine::accum::FlatAcc;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::input::Inputs;
use crate::stats::tail;

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
            let bytes = input_bytes(&m.path);
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
            structure: opts.structure.clone(),
        },
    })
}

/// Bytes of an input: a file's length, or for a folder of step files the sum of theirs.
fn input_bytes(path: &Path) -> u64 {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .map(|p| len(&p))
            .sum(),
        Err(_) => len(path),
    }
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
            bytes_read: plan.bytes(),
        },
        pieces: plan
            .pieces
            .iter()
            .map(|p| (p.tensor, p.cols.start, p.cols.end))
            .collect(),
        checksum: String::new(),
    };
    let flat: Vec<usize> = plan
        .pieces
        .iter()
        .map(|p| {
            let n = (plan.samples * plan.coords[p.tensor]) as u64;
            (n / tail::largest_divisor_below_sqrt(n)) as usize
        })
        .collect();
    let mut writer = state::StateWriter::create(
        out,
        &header,
        opts.fits,
        plan.block_rows / plan.k1,
        &flat,
        &state::StructureLayout::new(&opts.structure, plan.samples, &plan.dim_samples),
        model.blocks.len(),
    )?;
    let (mut pieces, mut coords) = (0, 0);
    run(
        &plan,
        sources,
        opts,
        backend,
        &mut model,
        None,
        &mut |s, _| {
            pieces += 1;
            coords += s.piece.cols.len();
            writer.piece(&s)
        },
    )?;
    writer.finish(&model, start.elapsed().as_secs_f64())?;
    Ok(ShardReport {
        pieces,
        coords,
        bytes_read: plan.bytes(),
    })
}
