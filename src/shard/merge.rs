//! Merge: checks that the states belong together (one sharding, every index once, the same
//! inputs and options), combines them tensor by tensor in input order, and finishes each with
//! the code `analyze` uses. Nothing is read twice and one tensor's state is in memory at a
//! time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::state::{Fingerprint, StateFile};
use crate::analyze::plan::{self, shard_pieces};
use crate::analyze::run::PieceState;
use crate::analyze::{self, finish, Analysis, Center, Options, TensorResult, PLOT_SAMPLE};
use crate::engine::accum::FlatAcc;
use crate::engine::{AdapterInfo, EngineInfo};
use crate::error::{Error, Result};
use crate::input::{Skipped, TensorMeta};
use crate::stats::{tail, MapsOut};

/// A merged run: what `analyze` returns, and what its report shows besides.
pub struct Merged {
    pub analysis: Analysis,
    pub fingerprint: Fingerprint,
    pub center: Center,
    pub engine: EngineInfo,
    /// Wall time of every shard and of the merge, added up.
    pub elapsed_s: f64,
    pub skipped: Vec<Skipped>,
    pub bad_files: Vec<Skipped>,
}

/// Opens and checks every state; returns them ordered by shard index.
fn open_all(paths: &[PathBuf]) -> Result<Vec<StateFile>> {
    let states = paths
        .iter()
        .map(|p| StateFile::open(p))
        .collect::<Result<Vec<_>>>()?;
    let first = states
        .first()
        .ok_or_else(|| Error::Config("no state given".into()))?;
    let (of, want) = (first.header.of, first.header.fingerprint.clone());
    let mut slots: Vec<Option<StateFile>> = (0..of).map(|_| None).collect();
    for s in states {
        let h = &s.header;
        if h.of != of {
            return Err(Error::bad(
                &s.path,
                format!(
                    "shard {} of {}, but {} is a shard of {of}: merge the states of one sharding",
                    h.index,
                    h.of,
                    paths[0].display()
                ),
            ));
        }
        if let Some(why) = differs(&paths[0], &s, &want) {
            return Err(why);
        }
        let index = h.index;
        if index >= of {
            return Err(Error::bad(
                &s.path,
                format!("damaged state: shard {index} of {of}"),
            ));
        }
        if let Some(other) = &slots[index] {
            return Err(Error::bad(
                &s.path,
                format!(
                    "shard {index} of {of} is given twice (also {}): give each shard's state once",
                    other.path.display()
                ),
            ));
        }
        slots[index] = Some(s);
    }
    let missing: Vec<String> = (0..of)
        .filter(|&i| slots[i].is_none())
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::unusable(
            given.join(", "),
            None,
            format!(
                "shard {} of {of} missing: give the states written with --index {} too",
                missing.join(", "),
                missing.join(", ")
            ),
        ));
    }
    Ok(slots.into_iter().flatten().collect())
}

/// Why state `s` cannot merge with one of fingerprint `want` (from `first`), in one line.
fn differs(first: &Path, s: &StateFile, want: &Fingerprint) -> Option<Error> {
    let got = &s.header.fingerprint;
    if got == want {
        return None;
    }
    let what = if got.options != want.options {
        let (a, b) = (&got.options, &want.options);
        let diff = [
            (
                "--center",
                a.center != b.center || a.center_values != b.center_values,
            ),
            ("--block", a.block != b.block),
            ("--no-fits", a.fits != b.fits),
            ("--backend", a.backend != b.backend),
            ("--coords-dtype", a.coords_dtype != b.coords_dtype),
            (
                "the structure options (--no-spectrum, --no-powerlaw, --batch-size, --powerlaw-*)",
                a.structure != b.structure,
            ),
        ]
        .iter()
        .filter(|d| d.1)
        .map(|d| d.0)
        .collect::<Vec<_>>()
        .join(", ");
        format!(
            "was made with other options ({diff}) than {}",
            first.display()
        )
    } else {
        let tensor = got
            .tensors
            .iter()
            .zip(&want.tensors)
            .find(|(a, b)| a != b)
            .map(|(a, _)| format!(" (tensor {} differs)", a.name))
            .unwrap_or_default();
        format!(
            "was made from other inputs{tensor} than {}",
            first.display()
        )
    };
    Some(Error::bad(
        &s.path,
        format!("{what}: shard and merge one analysis at a time"),
    ))
}

/// An engine description read back from a state.
fn engine_info(v: &serde_json::Value) -> EngineInfo {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    EngineInfo {
        engine: match v["engine"].as_str() {
            Some("gpu") => "gpu",
            _ => "cpu",
        },
        threads: v["threads"].as_u64().unwrap_or(0) as usize,
        adapter: v["adapter"].is_object().then(|| AdapterInfo {
            name: s(&v["adapter"], "name"),
            backend: s(&v["adapter"], "backend"),
            device_type: s(&v["adapter"], "device_type"),
            driver: s(&v["adapter"], "driver"),
        }),
    }
}

/// Merges the states at `paths`, handing each finished tensor to `sink` before its table is
/// cut to a plotting sample. `mem_budget` plays the part it plays for `analyze`: whether the
/// report keeps every coordinate, and the groups a single run would have used.
pub fn merge(
    paths: &[PathBuf],
    mem_budget: u64,
    sink: &mut dyn FnMut(&TensorResult) -> Result<()>,
) -> Result<Merged> {
    let start = Instant::now();
    let states = open_all(paths)?;
    let first = &states[0].header;
    let fp = first.fingerprint.clone();
    let of = first.of;
    let coords: Vec<usize> = fp
        .tensors
        .iter()
        .map(|t| t.shape.iter().product())
        .collect();
    let bytes_per_coord: Vec<u64> = fp
        .tensors
        .iter()
        .map(|t| (t.samples * t.dtype.size()) as u64)
        .collect();
    for s in &states {
        let want: Vec<(usize, usize, usize)> =
            shard_pieces(&coords, &bytes_per_coord, s.header.index, of)
                .into_iter()
                .map(|p| (p.tensor, p.cols.start, p.cols.end))
                .collect();
        if want != s.header.pieces {
            return Err(Error::bad(
                &s.path,
                "holds other coordinates than its shard index gives: it was written by another gradtail version or damaged; shard again",
            ));
        }
    }
    let samples = fp.tensors.first().map_or(0, |t| t.samples);
    let k1 = analyze::block_size(samples, fp.options.block)?;
    let shape = finish::Shape {
        samples,
        k1,
        block_rows: k1 * (samples / k1),
    };
    let total: usize = coords.iter().sum();
    let opts = Options {
        mem_budget,
        ..Options::default()
    };
    let sampled = plan::coords_sampled(total, &opts);
    let metas: Vec<TensorMeta> = fp
        .tensors
        .iter()
        .zip(&first.run.paths)
        .map(|(t, path)| TensorMeta {
            name: t.name.clone(),
            path: path.clone(),
            dtype: t.dtype,
            samples: t.samples,
            shape: t.shape.clone(),
        })
        .collect();
    let n_model = (samples * total) as u64;
    let m_model = tail::largest_divisor_below_sqrt(n_model);
    let mut model = FlatAcc::new((n_model / m_model) as usize);
    let mut results: Vec<TensorResult> = Vec::with_capacity(metas.len());
    let mut open: Option<PieceState> = None;
    let so = &fp.options.structure;
    let dim_samples = if so.powerlaw {
        so.samples(samples).map_err(Error::Config)?
    } else {
        Vec::new()
    };
    let mut finisher = finish::Finisher::new(shape, &first.run.center, so, 0, MapsOut::Table)?;
    let mut done = |state: PieceState, results: &mut Vec<TensorResult>| -> Result<()> {
        let mut result = finisher.tensor(&metas[state.piece.tensor], state, None)?;
        sink(&result)?;
        if sampled {
            result.coords = result.coords.sample(PLOT_SAMPLE);
        }
        results.push(result);
        Ok(())
    };
    // Shards hold consecutive coordinate ranges of the input in index order, so reading
    // them in order meets every tensor's pieces in order.
    for s in &states {
        let part = s.model()?;
        if part.blocks.len() != model.blocks.len() {
            return Err(Error::bad(
                &s.path,
                "damaged state: the model's flat state has the wrong size; shard again",
            ));
        }
        model.combine(&part);
        for k in 0..s.header.pieces.len() {
            let piece = s.piece(k, fp.options.fits, so, samples, &dim_samples)?;
            match open.as_mut() {
                Some(o) if o.piece.tensor == piece.piece.tensor => o.append(piece)?,
                _ => {
                    if let Some(o) = open.replace(piece) {
                        done(o, &mut results)?;
                    }
                }
            }
        }
    }
    if let Some(o) = open {
        done(o, &mut results)?;
    }
    let model = finisher.model(&results, &model, total, m_model);
    let shards_s = states
        .iter()
        .map(StateFile::elapsed_s)
        .sum::<Result<f64>>()?;
    let engine = engine_info(&first.run.engine);
    if states
        .iter()
        .any(|s| engine_info(&s.header.run.engine).engine != engine.engine)
    {
        tracing::warn!("the shards ran on different engines; the report names the first's");
    }
    let skipped =
        |v: &[(String, String)]| v.iter().map(|(n, r)| Skipped::new(n, r.clone())).collect();
    let analysis = Analysis {
        samples,
        block_size: k1,
        groups: plan::group_tensors(&coords, plan::state_budget(&opts)).len(),
        coords_sampled: sampled,
        bytes_read: states.iter().map(|s| s.header.run.bytes_read).sum(),
        tensors: results,
        model,
    };
    Ok(Merged {
        analysis,
        center: first.run.center.clone(),
        engine,
        elapsed_s: shards_s + start.elapsed().as_secs_f64(),
        skipped: skipped(&fp.skipped_tensors),
        bad_files: skipped(&fp.skipped_files),
        fingerprint: fp,
    })
}
