//! Finish: accumulated state → the per-tensor results and the whole-input summary, the same
//! for a single run (`analyze`) and for merged shards (`shard::merge`).

use super::run::PieceState;
use super::{shift_of, ModelSummary, TensorResult};
use crate::engine::accum::FlatAcc;
use crate::error::{Error, Result};
use crate::input::TensorMeta;
use crate::stats::{self, tail};

/// What finishing needs besides the accumulators: K, K1 and the rows in complete blocks.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub samples: usize,
    pub k1: usize,
    pub block_rows: usize,
}

/// Finishes one whole tensor from its state (every coordinate, pieces already appended).
pub fn tensor(meta: &TensorMeta, state: PieceState, shape: Shape) -> Result<TensorResult> {
    let p = meta.coords();
    if state.piece.cols != (0..p) {
        return Err(Error::Config(format!(
            "internal: tensor {} finished from coordinates {:?} of {p}",
            meta.name, state.piece.cols
        )));
    }
    let shift: Vec<f64> = state.mean.iter().map(shift_of).collect();
    let m_tensor = tail::largest_divisor_below_sqrt((shape.samples * p) as u64);
    let (summary, coords) = stats::finish_tensor(
        &meta.name,
        &meta.shape,
        &state.mean,
        &shift,
        &state.acc,
        state.fits,
        shape.k1,
        shape.block_rows,
        m_tensor,
    );
    tracing::info!(tensor = %meta.name, alpha_time_blocked = summary.alpha_time_blocked, "tensor done");
    Ok(TensorResult {
        meta: meta.clone(),
        summary,
        coords,
    })
}

/// The original `main.py` estimate over every tensor concatenated, from the whole input's
/// flat state and the finished tensors.
pub fn model(
    results: &[TensorResult],
    model: &FlatAcc,
    total: usize,
    m_model: u64,
) -> ModelSummary {
    let constant_coords = results.iter().map(|r| r.summary.constant_coords).sum();
    let few_finite_coords = results.iter().map(|r| r.summary.few_finite_coords).sum();
    let mut notes = Vec::new();
    // With no usable coordinate the centred entries are zeros or rounding residue, and the
    // original estimator would divide by that residue.
    let alpha_simsekli_flat = if constant_coords + few_finite_coords == total as u64 {
        notes.push(
            "alpha_simsekli_flat: every coordinate is constant or has too few finite samples"
                .into(),
        );
        f64::NAN
    } else {
        if m_model < 2 {
            notes.push("alpha_simsekli_flat: the number of entries K·P is prime, so the original estimator has no block length".into());
        }
        tail::simsekli_flat(m_model, &model.blocks, model.lx, model.n)
    };
    ModelSummary {
        alpha_simsekli_flat,
        simsekli_m: m_model,
        coords: total,
        constant_coords,
        few_finite_coords,
        zero_entries: results.iter().map(|r| r.summary.zero_entries).sum(),
        nonfinite_samples: results.iter().map(|r| r.summary.nonfinite_samples).sum(),
        notes,
    }
}
