//! Run: drives an engine through a plan's passes, group by group, and hands each piece's
//! accumulated state to the caller — `analyze` finishes it at once, `shard` keeps it.
//! Pass 1 (means and ranges), the whole-column step (medians, fits; `columns`, and the
//! structure statistics; `structure`), then pass 2
//! (moments, tails, flat blocks); a piece read in whole columns by an engine that takes one
//! block per call gets all three from one read of each block.

use std::ops::Range;

use super::checks::check_range;
use super::columns;
use super::plan::{Piece, Plan};
use super::progress::{group_label, step_name, stream, Progress};
use super::structure::{self, PowerLawCoord, StructureAcc};
use super::{pooled, shift_of, spread_of, Center, Options};
use crate::engine::accum::{BlockSums, CoordAcc, FlatAcc, FlatSpec, MeanAcc};
use crate::engine::{Backend, Derived, StatsJob, TensorAcc};
use crate::error::{Error, Result};
use crate::input::{Block, BlockData, TensorMeta, TensorSource};
use crate::stats::fits::Fits;
use crate::stats::structure::Centre;
use crate::stats::{tail, MapsOut, TensorFinish};
use bytemuck::Zeroable;
use rayon::prelude::*;

/// Everything the finishing step needs of one piece: per coordinate its pass-1 and pass-2
/// accumulators and fits, and the piece's share of its tensor's pooled sums (`acc.blocks`,
/// `acc.flat`) and structure state (`structure`: Gram and Σu² add; |u_k| concatenate).
/// Pieces of one tensor concatenate coordinate-wise and `combine` pool-wise.
/// A new accumulator is one more field here: filled in [`run`], combined in
/// [`PieceState::append`], written and read by `shard::state` (`writer::piece_layout`/
/// `piece_data`, `StateFile::piece`) and finished in `finish::Finisher::tensor`.
#[derive(Clone, Debug)]
pub struct PieceState {
    pub piece: Piece,
    pub mean: Vec<MeanAcc>,
    pub acc: TensorAcc,
    pub fits: Option<Vec<Fits>>,
    /// The structure step's Gram, Σu² and |u_k| of the dimension-wise samples.
    pub structure: StructureAcc,
    /// The iteration-wise power-law fit of each coordinate (`--powerlaw-coords`).
    pub powerlaw: Option<Vec<PowerLawCoord>>,
    /// Σ c² of the `--center` file's values over the piece (|ḡ|² of the noise scale).
    pub centre_sq: f64,
    /// The piece's coordinates already finished, block by block as a run that finishes at
    /// once read them (`mean` and `acc.coords` are then empty); `None` where the
    /// accumulators are kept.
    pub finished: Option<TensorFinish>,
}

impl PieceState {
    /// The identity of a piece: nothing accumulated yet.
    pub fn empty(plan: &Plan, piece: Piece, opts: &Options) -> Self {
        let (samples, p) = (plan.samples as u64, plan.coords[piece.tensor]);
        let n_tensor = samples * p as u64;
        let m_tensor = tail::largest_divisor_below_sqrt(n_tensor);
        let len = piece.cols.len();
        PieceState {
            // Filled by the run: pass 1's accumulators, or left empty where the piece is
            // finished block by block.
            mean: Vec::new(),
            acc: TensorAcc {
                // All-zero bits, so zeroed memory from the system: its pages are cleared as
                // the engine's threads first add to them, not by this thread before any work
                // starts (a quarter of a second for 10⁶ coordinates on a virtual machine).
                coords: bytemuck::zeroed_vec(len),
                flat: FlatAcc::new((n_tensor / m_tensor) as usize),
                blocks: vec![BlockSums::default(); plan.block_rows / plan.k1],
            },
            fits: opts.fits.then(|| vec![Fits::NAN; len]),
            structure: StructureAcc::new(
                plan.samples,
                len,
                opts.structure.spectrum,
                &plan.dim_samples,
            ),
            powerlaw: opts
                .structure
                .powerlaw_coords
                .then(|| vec![PowerLawCoord::NAN; len]),
            centre_sq: 0.0,
            finished: None,
            piece,
        }
    }

    /// Appends the next piece of the same tensor: its coordinates follow this one's, its
    /// pooled sums are combined.
    pub fn append(&mut self, next: PieceState) -> Result<()> {
        if self.finished.is_some() || next.finished.is_some() {
            return Err(Error::Config(
                "internal: a piece finished during its run cannot be appended to".into(),
            ));
        }
        if next.piece.tensor != self.piece.tensor || next.piece.cols.start != self.piece.cols.end {
            return Err(Error::Config(format!(
                "internal: piece {:?} does not follow {:?}",
                next.piece, self.piece
            )));
        }
        self.piece.cols.end = next.piece.cols.end;
        self.mean.extend(next.mean);
        self.acc.coords.extend(next.acc.coords);
        self.acc.flat.combine(&next.acc.flat);
        for (a, b) in self.acc.blocks.iter_mut().zip(&next.acc.blocks) {
            a.combine(b);
        }
        match (&mut self.fits, next.fits) {
            (Some(a), Some(b)) => a.extend(b),
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "internal: pieces with and without fits".into(),
                ))
            }
        }
        self.structure
            .append(next.structure)
            .map_err(|e| Error::Config(format!("internal: {e}")))?;
        match (&mut self.powerlaw, next.powerlaw) {
            (Some(a), Some(b)) => a.extend(b),
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "internal: pieces with and without power-law fits".into(),
                ))
            }
        }
        self.centre_sq += next.centre_sq;
        Ok(())
    }
}

/// Columns `cols` of a tensor, seen as a tensor of their own: blocks are numbered from the
/// range's first column, and reads touch only the range's bytes.
struct PieceSource<'a> {
    inner: &'a dyn TensorSource,
    cols: Range<usize>,
    meta: TensorMeta,
}

impl<'a> PieceSource<'a> {
    fn new(inner: &'a dyn TensorSource, cols: Range<usize>) -> Self {
        let mut meta = inner.meta().clone();
        if cols.len() != meta.coords() {
            meta.shape = vec![cols.len()];
        }
        PieceSource { inner, cols, meta }
    }
}

impl TensorSource for PieceSource<'_> {
    fn meta(&self) -> &TensorMeta {
        &self.meta
    }

    fn read_block_into(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        reuse: Option<BlockData>,
    ) -> Result<Block> {
        let at = self.cols.start;
        let mut block = self
            .inner
            .read_block_into(rows, cols.start + at..cols.end + at, reuse)?;
        block.cols = cols;
        Ok(block)
    }

    fn is_fortran(&self) -> bool {
        self.inner.is_fortran()
    }
}

/// Runs the plan's pieces on `backend`, handing each finished piece to `each` in plan order
/// (with the engine, for the power-law fits' xmin scans)
/// and folding the whole input's flat state into `model`. With `finish` (where the maps go),
/// the caller finishes each piece at once, so a whole tensor read in whole columns in one
/// read is finished block by block ([`PieceState::finished`]): its per-coordinate
/// accumulators live only as long as a block, and the finishing work overlaps the reading.
pub fn run(
    plan: &Plan,
    sources: &[Box<dyn TensorSource + '_>],
    opts: &Options,
    backend: &mut dyn Backend,
    model: &mut FlatAcc,
    finish: Option<&MapsOut>,
    each: &mut dyn FnMut(PieceState, &mut dyn Backend) -> Result<()>,
) -> Result<()> {
    let pb = Progress::new(plan.bytes(), opts.progress, opts.progress_json);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("gradtail-columns-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start {} threads: {e}", opts.threads)))?;
    let (median, column_step) = (plan.median, plan.column_step);
    // The medians and fits run when asked for; the column step may run for the structure
    // statistics alone.
    let fit_step = median || opts.fits;
    let so = &opts.structure;
    let exact = super::finish::cov_centre(&opts.center) == Centre::Exact;
    let n_groups = plan.groups.len();
    for (g, group) in plan.groups.iter().enumerate() {
        let pieces = &plan.pieces[group.clone()];
        let sources: Vec<PieceSource> = pieces
            .iter()
            .map(|p| PieceSource::new(sources[p.tensor].as_ref(), p.cols.clone()))
            .collect();
        let blocks: Vec<_> = pieces
            .iter()
            .map(|p| plan.blocks(p, plan.columns[p.tensor]))
            .collect();
        // Pass 1 (means and ranges) for pieces read in row chunks; pieces read as whole
        // columns get both passes from one read of each block, below.
        pb.set_message(format!("{}pass 1/2", group_label(g, n_groups)));
        let mut means: Vec<Option<Vec<MeanAcc>>> = Vec::with_capacity(pieces.len());
        for (i, p) in pieces.iter().enumerate() {
            if plan.whole[p.tensor] {
                means.push(None);
                continue;
            }
            let mut acc = vec![MeanAcc::default(); p.cols.len()];
            stream(&sources[i], &blocks[i], &pb, |b| {
                backend.coord_mean(b, &mut acc)
            })?;
            tracing::debug!(tensor = %sources[i].meta().name, "pass 1 done");
            means.push(Some(acc));
        }
        let pass2 = if pieces.iter().all(|p| plan.whole[p.tensor]) {
            "both passes"
        } else {
            "pass 2/2"
        };
        pb.set_message(format!("{}{pass2}", group_label(g, n_groups)));
        for (i, (piece, mean)) in pieces.iter().zip(means).enumerate() {
            let (s, t) = (&sources[i], piece.tensor);
            let meta = s.meta();
            let (p, c0) = (plan.coords[t], piece.cols.start);
            let m_tensor = tail::largest_divisor_below_sqrt((plan.samples * p) as u64);
            let job = StatsJob {
                k1: plan.k1,
                used_rows: plan.block_rows,
                shift: &[],
                spread: &[],
                centre: &[],
                pool: &[],
                col0: 0,
                flat_tensor: FlatSpec {
                    stride: p as u64,
                    base: c0 as u64,
                    m: m_tensor,
                },
                flat_model: FlatSpec {
                    stride: plan.total as u64,
                    base: (plan.bases[t] + c0) as u64,
                    m: plan.m_model,
                },
            };
            let mut state = PieceState::empty(plan, piece.clone(), opts);
            let len = piece.cols.len();
            // A whole tensor read in one read of whole columns, for a caller that finishes it
            // at once: finished block by block.
            let early = finish.is_some() && mean.is_none() && len == p;
            if early {
                state.acc.coords = Vec::new();
            }
            let mut centre = match &plan.centre_file {
                Some(c) => {
                    let at = plan.bases[t] + c0;
                    c[at..at + len].to_vec()
                }
                None => vec![0.0; len],
            };
            let centre_is_mean = opts.center == Center::Mean;
            let (acc, fits) = (&mut state.acc, &mut state.fits);
            let finished = &mut state.finished;
            let (sacc, pl) = (&mut state.structure, &mut state.powerlaw);
            let structure_err = |e: crate::stats::structure::StructureError| {
                Error::unusable(&meta.path, Some(&meta.name), e.to_string())
            };
            // The whole-column step on one block: medians and fits, then the structure
            // statistics, the Gram through the engine (the covariance about the exact centre
            // when there is one).
            let mut whole_columns = |block: &Block,
                                     pool_mask: &[bool],
                                     shift: &[f64],
                                     centre: &mut Vec<f64>,
                                     fits: &mut Option<Vec<Fits>>,
                                     backend: &mut dyn Backend|
             -> Result<()> {
                if fit_step {
                    let fits = fits.as_deref_mut();
                    columns::run(block, pool_mask, median, centre, fits, &pool, backend)?;
                }
                if so.any() {
                    let gc: &[f64] = if exact { centre } else { shift };
                    structure::run(
                        block,
                        gc,
                        centre,
                        pool_mask,
                        sacc,
                        so.batch_size.is_some(),
                        pl.as_deref_mut(),
                        so.exact_max_n,
                        &pool,
                    )
                    .map_err(structure_err)?;
                    if let Some(g) = sacc.gram.as_mut() {
                        backend.gram(block, &gc[block.cols.clone()], g)?;
                    }
                }
                Ok(())
            };
            // Pass 2's inputs from pass 1, for the whole piece or (one read) block by block: the
            // shift (and the centre, when it is the mean), the spread and the pooled flag, once
            // the magnitudes are ones the engine computes faithfully.
            let mut shift = vec![0.0; len];
            let mut spread = vec![0.0; len];
            let mut pool_mask = vec![false; len];
            let range = backend.magnitude_range();
            let derive = |mean: &[MeanAcc], d: Derived<'_>| {
                check_range(range, meta, mean)?;
                for (j, m) in mean.iter().enumerate() {
                    d.shift[j] = shift_of(m);
                    d.spread[j] = spread_of(m, d.shift[j]);
                    d.pool[j] = pooled(m);
                    if centre_is_mean {
                        d.centre[j] = d.shift[j];
                    }
                }
                Ok(())
            };
            state.mean = match mean {
                // The whole-column step, then pass 2: moments about the mean, tails about the
                // centre, flat blocks.
                Some(mean) => {
                    let inputs = Derived {
                        shift: &mut shift,
                        spread: &mut spread,
                        centre: &mut centre,
                        pool: &mut pool_mask,
                    };
                    derive(&mean, inputs)?;
                    if column_step {
                        pb.set_message(format!(
                            "{}{} read",
                            group_label(g, n_groups),
                            step_name(median, opts.fits)
                        ));
                        let cols = if plan.columns[t] {
                            blocks[i].clone()
                        } else {
                            plan.blocks(piece, true)
                        };
                        stream(s, &cols, &pb, |blocks| {
                            for block in blocks {
                                let block = &block?;
                                whole_columns(
                                    block,
                                    &pool_mask,
                                    &shift,
                                    &mut centre,
                                    fits,
                                    backend,
                                )?;
                            }
                            Ok(())
                        })?;
                        pb.set_message(format!("{}{pass2}", group_label(g, n_groups)));
                    }
                    stream(s, &blocks[i], &pb, |blocks| {
                        backend.coord_stats(
                            &job.with(&shift, &spread, &centre, &pool_mask),
                            blocks,
                            acc,
                            model,
                        )
                    })?;
                    mean
                }
                // One read: each block of whole columns gets pass 1, the whole-column step,
                // then pass 2 (and, early, its coordinates' finish).
                None => {
                    let mut mean = if early {
                        Vec::new()
                    } else {
                        vec![MeanAcc::default(); len]
                    };
                    let mut finish = finish.filter(|_| early).map(|out| {
                        TensorFinish::new(&meta.name, len, plan.samples as u64, opts.fits, out)
                    });
                    let whole_step = fit_step || so.any();
                    // Early and with both passes from one call, a block's finish runs on the
                    // column threads while the engine takes the next block, which fills the
                    // gaps either leaves: `pending` holds the columns of the block waiting for
                    // its finish, whose accumulators are in `spare` (reset by that finish, to
                    // serve the block after). On one thread (`--threads 1`) the run keeps to
                    // one core: no overlap.
                    let pipelined =
                        early && !whole_step && fits.is_none() && pool.current_num_threads() > 1;
                    let mut pending: Option<Range<usize>> = None;
                    let mut spare: (Vec<MeanAcc>, Vec<CoordAcc>) = (Vec::new(), Vec::new());
                    stream(s, &blocks[i], &pb, |blocks| {
                        for block in blocks {
                            let block = block?;
                            let cols = block.cols.clone();
                            // Early, the engine sees the block as a tensor of its own columns,
                            // so its accumulators are the block's size.
                            let mut local = block.share();
                            let at = if early {
                                local.cols = 0..cols.len();
                                // Reset by the last finish when they are this size.
                                if mean.len() != cols.len() {
                                    mean.clear();
                                    mean.resize(cols.len(), MeanAcc::default());
                                    acc.coords.clear();
                                    acc.coords.resize(cols.len(), Zeroable::zeroed());
                                }
                                cols.start
                            } else {
                                0
                            };
                            let mut job = job.with(&[], &[], &[], &[]);
                            job.flat_tensor.base += at as u64;
                            job.flat_model.base += at as u64;
                            if pipelined {
                                let finish = finish.as_mut().expect("early runs finish");
                                // The waiting block's shift lies before this block's columns.
                                let (done, ahead) = shift.split_at_mut(cols.start);
                                let inputs = Derived {
                                    shift: &mut ahead[..cols.len()],
                                    spread: &mut spread[cols.clone()],
                                    centre: &mut centre[cols.clone()],
                                    pool: &mut pool_mask[cols.clone()],
                                };
                                let waiting = pending.take();
                                let (spare_mean, spare_coords) = (&mut spare.0, &mut spare.1);
                                let current = &mut mean[..];
                                let mut waited = Ok(());
                                let slot = &mut waited;
                                pool.in_place_scope(|scope| {
                                    if let Some(w) = waiting {
                                        let shift = &done[w];
                                        scope.spawn(move |_| {
                                            *slot = finish_block(
                                                finish,
                                                spare_mean,
                                                shift,
                                                spare_coords,
                                            );
                                        });
                                    }
                                    backend.coord_both(
                                        &job, local, &derive, current, inputs, acc, model,
                                    )
                                })?;
                                waited?;
                                // This block's accumulators wait for its finish; the last
                                // block's, reset, serve the next.
                                std::mem::swap(&mut mean, &mut spare.0);
                                std::mem::swap(&mut acc.coords, &mut spare.1);
                                pending = Some(cols);
                                continue;
                            }
                            let mean = &mut mean[local.cols.clone()];
                            let inputs = Derived {
                                shift: &mut shift[cols.clone()],
                                spread: &mut spread[cols.clone()],
                                centre: &mut centre[cols.clone()],
                                pool: &mut pool_mask[cols.clone()],
                            };
                            if whole_step {
                                // The whole-column step needs the block's pass 1 first.
                                backend
                                    .coord_mean(&mut std::iter::once(Ok(local.share())), mean)?;
                                derive(mean, inputs)?;
                                whole_columns(
                                    &block,
                                    &pool_mask,
                                    &shift,
                                    &mut centre,
                                    fits,
                                    backend,
                                )?;
                                let c = at..;
                                let job = job.with(
                                    &shift[c.clone()],
                                    &spread[c.clone()],
                                    &centre[c.clone()],
                                    &pool_mask[c],
                                );
                                backend.coord_stats(
                                    &job,
                                    &mut std::iter::once(Ok(local)),
                                    acc,
                                    model,
                                )?;
                            } else {
                                backend
                                    .coord_both(&job, local, &derive, mean, inputs, acc, model)?;
                            }
                            if let Some(finish) = finish.as_mut() {
                                let fits = fits.as_deref_mut().map(|f| &mut f[cols.clone()]);
                                pool.install(|| {
                                    let added =
                                        finish.add(mean, &shift[cols.clone()], &acc.coords, fits);
                                    reset(mean, &mut acc.coords);
                                    added
                                })?;
                            }
                        }
                        Ok(())
                    })?;
                    if let (Some(w), Some(finish)) = (pending, finish.as_mut()) {
                        let (mean, coords) = (&mut spare.0, &mut spare.1);
                        pool.install(|| finish_block(finish, mean, &shift[w], coords))?;
                    }
                    if early {
                        acc.coords = Vec::new();
                        *finished = finish;
                        mean = Vec::new();
                    }
                    mean
                }
            };
            if plan.centre_file.is_some() {
                state.centre_sq = centre.iter().map(|c| c * c).sum();
            }
            each(state, backend)?;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Accumulators read, reset for the next block: on the threads of the pool it runs in
/// (hundreds of MB over a large tensor), rather than on one thread while the others wait.
fn reset(mean: &mut [MeanAcc], coords: &mut [CoordAcc]) {
    const RESET: usize = 1 << 12;
    mean.par_chunks_mut(RESET)
        .for_each(|m| m.fill(MeanAcc::default()));
    coords
        .par_chunks_mut(RESET)
        .for_each(|c| c.fill(Zeroable::zeroed()));
}

/// A block's coordinates finished, without fits, and its accumulators reset.
fn finish_block(
    finish: &mut TensorFinish,
    mean: &mut [MeanAcc],
    shift: &[f64],
    coords: &mut [CoordAcc],
) -> Result<()> {
    let added = finish.add(mean, shift, coords, None);
    reset(mean, coords);
    added
}
