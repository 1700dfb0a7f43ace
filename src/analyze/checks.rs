//! Checks before and during a run: inputs that can be analysed together, the block length,
//! the `--center` file, and magnitudes the engine computes faithfully.

use std::path::Path;

use super::{pooled, MIN_SAMPLES};
use crate::engine::accum::MeanAcc;
use crate::error::{Error, Result};
use crate::input::{self, TensorMeta, TensorSource};
use crate::stats::tail;

/// Checks that the inputs can be analysed together; returns K.
pub fn validate(sources: &[Box<dyn TensorSource + '_>]) -> Result<usize> {
    let first = sources
        .first()
        .ok_or_else(|| Error::Config("no input given".into()))?
        .meta();
    let mut names = std::collections::HashSet::new();
    for s in sources {
        let m = s.meta();
        if m.samples < MIN_SAMPLES {
            return Err(Error::unusable(
                &m.path,
                Some(&m.name),
                format!("only K = {} samples on axis 0; at least {MIN_SAMPLES} are needed: stack more minibatch gradients", m.samples),
            ));
        }
        if m.coords() == 0 {
            return Err(Error::unusable(
                &m.path,
                Some(&m.name),
                format!("shape {:?} per sample has no coordinates (P = 0)", m.shape),
            ));
        }
        if m.samples != first.samples {
            return Err(Error::unusable(
                &m.path,
                Some(&m.name),
                format!(
                    "has K = {} samples but {} has K = {}; every input must hold the same number of samples on axis 0",
                    m.samples,
                    first.path.display(),
                    first.samples
                ),
            ));
        }
        if !names.insert(m.name.clone()) {
            return Err(Error::unusable(
                &m.path,
                Some(&m.name),
                "two inputs have the same tensor name; rename one file",
            ));
        }
    }
    Ok(first.samples)
}

/// Resolves K1 from the option or the default rule.
pub fn block_size(samples: usize, block: Option<usize>) -> Result<usize> {
    match block {
        None => Ok(tail::default_k1(samples)),
        Some(k1) if k1 >= 2 && 2 * k1 <= samples => Ok(k1),
        Some(k1) => Err(Error::Config(format!("--block {k1}: the block length must be at least 2 and leave at least two blocks in K = {samples} samples"))),
    }
}

pub(crate) fn read_centre(path: &Path, total: usize) -> Result<Vec<f64>> {
    let t = input::npy::NpyTensor::open(path)?;
    let n = t.meta().samples * t.meta().coords().max(1);
    let n = if t.meta().shape.is_empty() {
        t.meta().samples
    } else {
        n
    };
    if n != total {
        return Err(Error::unusable(
            path,
            None,
            format!("--center file holds {n} values but the inputs have P = {total} coordinates; it must hold one value per coordinate, in input order"),
        ));
    }
    let block = if t.meta().shape.is_empty() {
        t.read_block(0..n, 0..1)?
    } else {
        t.read_block(0..t.meta().samples, 0..t.meta().coords())?
    };
    let mut out = vec![0.0; n];
    block.widen_into(&mut out);
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(Error::unusable(
            path,
            None,
            format!(
                "--center value {i} is {}: the centre must be finite",
                out[i]
            ),
        ));
    }
    Ok(out)
}

/// Refuses a tensor whose usable coordinates lie outside `range`, the magnitudes the engine
/// computes faithfully (`Backend::magnitude_range`: the GPU engine's f32 arithmetic), before
/// pass 2 would return wrong numbers.
pub(super) fn check_range(
    range: Option<(f64, f64)>,
    meta: &TensorMeta,
    mean: &[MeanAcc],
) -> Result<()> {
    let Some((lo, hi)) = range else {
        return Ok(());
    };
    let bad = mean.iter().filter(|m| pooled(m)).find_map(|m| {
        let big = m.min.abs().max(m.max.abs());
        (big < lo || big > hi).then_some(big)
    });
    match bad {
        None => Ok(()),
        Some(big) => Err(Error::unusable(
            &meta.path,
            Some(&meta.name),
            format!(
                "a coordinate's largest |x| is {big:.3e}, outside the {lo:.1e} to {hi:.1e} the GPU engine's f32 arithmetic handles faithfully; multiply the data by a power of two (every statistic but the mean, variance and log-moment scale is scale-free) or use --backend cpu"
            ),
        )),
    }
}
