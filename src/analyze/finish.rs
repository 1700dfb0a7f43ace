//! Finish: accumulated state → the per-tensor results and the whole-input summary, the same
//! for a single run (`analyze`) and for merged shards (`shard::merge`).

use super::run::PieceState;
use super::structure::{self, MeanSqNorm, StructureOptions};
use super::{shift_of, Center, ModelSummary, TensorResult};
use crate::engine::accum::FlatAcc;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::input::TensorMeta;
use crate::stats::structure::{Centre, Gram};
use crate::stats::{tail, MapsOut, Stat, TensorFinish};

/// What finishing needs besides the accumulators: K, K1 and the rows in complete blocks.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub samples: usize,
    pub k1: usize,
    pub block_rows: usize,
}

/// Why the noise scale has no |ḡ|² when the data were taken as noise.
const NO_MEAN: &str = "the data were taken as noise (--center none), so the mean gradient is unknown; give the full-batch gradient with --center FILE";

/// The covariance is about the sample mean unless the noise is given exactly (a centre file,
/// or data that are noise already).
pub(crate) fn cov_centre(center: &Center) -> Centre {
    match center {
        Center::Mean | Center::Median => Centre::SampleMean,
        Center::File(_) | Center::None => Centre::Exact,
    }
}

/// Finishes tensors one after the other and keeps what the model's structure statistics need
/// of them: the sum of their Grams, Σu² and |ḡ|².
pub struct Finisher<'a> {
    shape: Shape,
    /// Where the per-coordinate statistics run (`--threads`).
    pool: rayon::ThreadPool,
    center: &'a Center,
    structure: &'a StructureOptions,
    gram: Option<Gram>,
    sum_sq: f64,
    mean_sq: f64,
    /// Where the per-coordinate maps go.
    maps: MapsOut,
}

impl<'a> Finisher<'a> {
    /// `threads` host threads finish the per-coordinate statistics (0: every core); the maps
    /// go to `maps`.
    pub fn new(
        shape: Shape,
        center: &'a Center,
        structure: &'a StructureOptions,
        threads: usize,
        maps: MapsOut,
    ) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gradtail-finish-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("cannot start {threads} threads: {e}")))?;
        Ok(Finisher {
            shape,
            pool,
            center,
            structure,
            gram: structure.spectrum.then(|| Gram::new(shape.samples)),
            sum_sq: 0.0,
            mean_sq: 0.0,
            maps,
        })
    }

    fn cov_centre(&self) -> Centre {
        cov_centre(self.center)
    }

    /// Finishes one whole tensor from its state (every coordinate, pieces already appended);
    /// the power-law fits' xmin scans run on `engine` (the host's f64 scan without one).
    pub fn tensor(
        &mut self,
        meta: &TensorMeta,
        mut state: PieceState,
        engine: Option<&mut dyn Backend>,
    ) -> Result<TensorResult> {
        let (shape, p) = (self.shape, meta.coords());
        if state.piece.cols != (0..p) {
            return Err(Error::Config(format!(
                "internal: tensor {} finished from coordinates {:?} of {p}",
                meta.name, state.piece.cols
            )));
        }
        let m_tensor = tail::largest_divisor_below_sqrt((shape.samples * p) as u64);
        let finished = match state.finished {
            // Finished block by block as the run read them.
            Some(f) => f,
            None => {
                let shift: Vec<f64> = state.mean.iter().map(shift_of).collect();
                // Every finite sample counted: the n of all coordinates but those with
                // non-finite ones.
                let n_most = state.acc.coords.iter().map(|c| c.moments.n).max();
                let fits = state.fits.is_some();
                let n = n_most.unwrap_or(0);
                let mut f = TensorFinish::new(&meta.name, p, n, fits, &self.maps);
                self.pool.install(|| {
                    f.add(
                        &state.mean,
                        &shift,
                        &state.acc.coords,
                        state.fits.as_deref_mut(),
                    )
                })?;
                f
            }
        };
        if finished.len() != p {
            return Err(Error::Config(format!(
                "internal: tensor {} finished {} coordinates of {p}",
                meta.name,
                finished.len()
            )));
        }
        // |ḡ|² of the noise scale: the sample mean's, or the exact centre's.
        let mean_sq: MeanSqNorm = match self.center {
            Center::None => Err(NO_MEAN.into()),
            Center::File(_) => Ok(state.centre_sq),
            _ => Ok(finished.shift_sq),
        };
        let (mut summary, mut coords) = self.pool.install(|| {
            finished.finish(
                &meta.name,
                &meta.shape,
                &state.acc,
                state.fits.as_deref(),
                shape.k1,
                shape.block_rows,
                m_tensor,
            )
        });
        if let Ok(g2) = &mean_sq {
            self.mean_sq += g2;
        }
        let sacc = &state.structure;
        self.sum_sq += sacc.sum_sq;
        if let (Some(m), Some(g)) = (self.gram.as_mut(), sacc.gram.as_ref()) {
            m.combine(g)
                .map_err(|e| Error::unusable(&meta.path, Some(&meta.name), e.to_string()))?;
        }
        summary.structure = structure::finish(
            sacc,
            state.powerlaw.as_deref(),
            &mean_sq,
            shape.samples,
            self.cov_centre(),
            self.structure,
            engine,
            &mut summary.notes,
        )?;
        if let Some(pl) = &state.powerlaw {
            let cols = pl_columns(pl);
            match &self.maps {
                MapsOut::Streamed(sink) => {
                    let maps: Vec<(Stat, &[f64])> = Stat::POWERLAW
                        .into_iter()
                        .zip(cols.iter().map(Vec::as_slice))
                        .collect();
                    self.pool
                        .install(|| sink.write_maps(&meta.name, 0, &maps))?;
                }
                MapsOut::Table => {
                    for (s, c) in Stat::POWERLAW.into_iter().zip(cols) {
                        coords.push(s, c);
                    }
                }
            }
        }
        tracing::info!(tensor = %meta.name, alpha_time_blocked = summary.alpha_time_blocked, "tensor done");
        Ok(TensorResult {
            meta: meta.clone(),
            summary,
            coords,
        })
    }

    /// The original `main.py` estimate over every tensor concatenated, from the whole input's
    /// flat state and the finished tensors, and the model's spectrum and noise scale.
    pub fn model(
        &self,
        results: &[TensorResult],
        model: &FlatAcc,
        total: usize,
        m_model: u64,
    ) -> ModelSummary {
        let constant_coords = results.iter().map(|r| r.summary.constant_coords).sum();
        let few_finite_coords = results.iter().map(|r| r.summary.few_finite_coords).sum();
        let mut notes = Vec::new();
        // With no usable coordinate the centred entries are zeros or rounding residue, and
        // the original estimator would divide by that residue.
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
        let centre = self.cov_centre();
        let spectrum = self
            .gram
            .as_ref()
            .and_then(|g| structure::spectrum_of(g, centre, &mut notes));
        let mean_sq: MeanSqNorm = match self.center {
            Center::None => Err(NO_MEAN.into()),
            _ => Ok(self.mean_sq),
        };
        let noise_scale = structure::noise_scale_of(
            self.structure,
            self.sum_sq,
            &mean_sq,
            self.shape.samples,
            centre,
            &mut notes,
        );
        ModelSummary {
            alpha_simsekli_flat,
            simsekli_m: m_model,
            coords: total,
            constant_coords,
            few_finite_coords,
            zero_entries: results.iter().map(|r| r.summary.zero_entries).sum(),
            nonfinite_samples: results.iter().map(|r| r.summary.nonfinite_samples).sum(),
            spectrum,
            noise_scale,
            notes,
        }
    }
}

/// The [`Stat::POWERLAW`] columns of a tensor's coordinate fits.
fn pl_columns(pl: &[structure::PowerLawCoord]) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    for c in pl {
        for (col, v) in out.iter_mut().zip(c.to_array()) {
            col.push(v);
        }
    }
    out
}
