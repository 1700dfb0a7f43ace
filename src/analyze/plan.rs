//! Plan: what a run reads, in which groups and passes, under the memory budget — a pure
//! function of the tensors' metadata and the options. A run covers *pieces*: whole tensors,
//! or coordinate ranges of one (a shard of a dominant tensor). A piece is read with the blocks
//! of its tensor's own plan cut to its columns, so every coordinate sees the same row chunks
//! whether its tensor is analysed whole or in pieces, and its per-coordinate results are the
//! same to the bit: the CPU engine's arithmetic per coordinate depends only on a block's rows,
//! and so does the GPU engine's row chunking for blocks of up to about 2^24 values (the
//! default 64 MiB block budget; `engine::gpu::plan::chunking`).

use std::ops::Range;

use super::structure::PowerLawCoord;
use super::{block_size, read_centre, validate, Center, Options};
use crate::engine::accum::{CoordAcc, MeanAcc};
use crate::error::{Error, Result};
use crate::input::{plan, TensorSource};
use crate::stats::fits::Fits;
use crate::stats::{tail, Stat};

/// Host bytes per coordinate while its tensor is in flight: pass-1 and pass-2 accumulators,
/// shift and centre, the fits, the iteration-wise power-law fits, |u_k| of the three default
/// dimension-wise power-law samples, and the finished table.
pub const STATE_BYTES_PER_COORD: u64 = (std::mem::size_of::<MeanAcc>()
    + std::mem::size_of::<CoordAcc>()
    + 2 * 8
    + 1
    + std::mem::size_of::<Fits>()
    + std::mem::size_of::<PowerLawCoord>()
    + 3 * 8
    + Stat::ALL.len() * 8) as u64;

/// Blocks alive at once: the one in use, those read ahead, and one being read.
const BLOCKS_IN_FLIGHT: u64 = 4;

/// What a whole-column block aims to hold, when `MIN_STRIP` columns fit it: a run's blocks in
/// flight are memory it touches fresh (a 64 MiB block costs 16 384 zeroed pages the first time
/// it is filled, which on a virtual machine may cost more than the analysis of its values), and
/// smaller blocks let the engine start sooner and finish with less left over. On 256 × 10⁶
/// float32, 16 MiB blocks instead of 64 MiB took the run from 1.09 to 0.90 s (BENCHMARKS.md).
const WHOLE_COLUMN_BYTES: usize = 16 << 20;

/// What a whole-column block aims to hold when it is read in place from a mapped file
/// (`TensorSource::reads_in_place`), which touches no fresh memory: wider strips per task and
/// half the blocks' fixed costs. On 256 × 10⁶ float32, 32 MiB instead of 16 MiB took the run
/// from 0.565 to 0.525 s and its CPU from 1.05 to 0.98 s, median of 10 interleaved rounds
/// (BENCHMARKS.md).
const MAPPED_WHOLE_COLUMN_BYTES: usize = 32 << 20;

/// Fewest coordinates per whole-column block: narrower strips make reads of C-order files
/// too small.
const MIN_STRIP: usize = 256;

/// A quarter of physical memory (Linux `/proc/meminfo`), or 4 GiB when unknown.
pub fn default_mem_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    total.map_or(4 << 30, |kib| kib * 1024 / 4)
}

/// Bytes left for per-coordinate state once the blocks in flight are set aside.
pub fn state_budget(opts: &Options) -> u64 {
    opts.mem_budget
        .saturating_sub(BLOCKS_IN_FLIGHT * opts.block_bytes as u64)
}

/// A byte count as a person reads it: MiB below a GiB, rounded up (so a suggested budget is
/// enough).
fn size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 1 << 30 {
        let tenths = (bytes as f64 / (1u64 << 30) as f64 * 10.0).ceil();
        format!("{:.1} GiB", tenths / 10.0)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

/// Splits tensors (by coordinate count) into consecutive groups whose state fits `budget`.
pub fn group_tensors(coords: &[usize], budget: u64) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, &p) in coords.iter().enumerate() {
        let cost = p as u64 * STATE_BYTES_PER_COORD;
        if i > start && used + cost > budget {
            groups.push(start..i);
            start = i;
            used = 0;
        }
        used += cost;
    }
    if start < coords.len() {
        groups.push(start..coords.len());
    }
    groups
}

/// Whether the per-coordinate tables of `total` coordinates are too large to keep for the
/// report (it then keeps a sample of each tensor's).
pub fn coords_sampled(total: usize, opts: &Options) -> bool {
    (total as u64) * STATE_BYTES_PER_COORD > state_budget(opts)
}

/// Coordinates `cols` of input tensor `tensor`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub tensor: usize,
    pub cols: Range<usize>,
}

/// A block to read, `(rows, columns)`.
pub type BlockPlan = Vec<(Range<usize>, Range<usize>)>;

/// Everything a run needs to know before reading data.
pub struct Plan {
    pub samples: usize,
    /// Block-sum length K1 and the rows in complete blocks.
    pub k1: usize,
    pub block_rows: usize,
    /// Coordinates of each input tensor, their offsets in the whole input, and the total P.
    pub coords: Vec<usize>,
    pub bases: Vec<usize>,
    pub total: usize,
    /// Per tensor: read in whole columns (all K rows of a strip of coordinates), and whether
    /// one read of each such block feeds both passes (engines that take blocks one at a time).
    pub columns: Vec<bool>,
    pub whole: Vec<bool>,
    /// The whole-column step runs (medians for `--center median`, the fits, the structure
    /// statistics).
    pub median: bool,
    pub column_step: bool,
    /// The pieces this run covers, in order, and their groups (consecutive pieces whose
    /// state fits the budget together).
    pub pieces: Vec<Piece>,
    pub groups: Vec<Range<usize>>,
    /// Flat block length of the original estimator over the whole input.
    pub m_model: u64,
    /// The `--center` file's values, one per coordinate of the whole input.
    pub centre_file: Option<Vec<f64>>,
    /// The samples k of the dimension-wise power-law fits (empty without them).
    pub dim_samples: Vec<usize>,
    elem: Vec<usize>,
    /// Per tensor: whether its blocks are read in place (`TensorSource::reads_in_place`).
    in_place: Vec<bool>,
    block_bytes: usize,
}

impl Plan {
    /// Plans a run over every coordinate of `sources`, one piece per tensor.
    pub fn new(
        sources: &[Box<dyn TensorSource + '_>],
        opts: &Options,
        single_read: bool,
    ) -> Result<Plan> {
        let samples = validate(sources)?;
        let k1 = block_size(samples, opts.block)?;
        let coords: Vec<usize> = sources.iter().map(|s| s.meta().coords()).collect();
        let total: usize = coords.iter().sum();
        let centre_file = match &opts.center {
            Center::File(p) => Some(read_centre(p, total)?),
            _ => None,
        };
        let bases = coords
            .iter()
            .scan(0, |acc, &p| {
                let b = *acc;
                *acc += p;
                Some(b)
            })
            .collect();
        let elem: Vec<usize> = sources.iter().map(|s| s.meta().dtype.size()).collect();
        // Whole columns when a strip of at least MIN_STRIP columns fits a block; then, for
        // engines that take blocks one call at a time, each block is read once for both
        // passes (`whole`).
        let columns: Vec<bool> = (0..sources.len())
            .map(|i| {
                sources[i].is_fortran()
                    || samples * elem[i].max(4) * MIN_STRIP.min(coords[i]) <= opts.block_bytes
            })
            .collect();
        let whole = columns.iter().map(|&c| c && single_read).collect();
        let median = opts.center == Center::Median;
        let so = &opts.structure;
        let dim_samples = if so.powerlaw {
            so.samples(samples).map_err(Error::Config)?
        } else {
            Vec::new()
        };
        let n_model = (samples * total) as u64;
        let pieces = (0..coords.len())
            .map(|tensor| Piece {
                tensor,
                cols: 0..coords[tensor],
            })
            .collect();
        let mut plan = Plan {
            samples,
            k1,
            block_rows: k1 * (samples / k1),
            coords,
            bases,
            total,
            columns,
            whole,
            median,
            column_step: median || opts.fits || so.any(),
            pieces: Vec::new(),
            groups: Vec::new(),
            m_model: tail::largest_divisor_below_sqrt(n_model),
            centre_file,
            dim_samples,
            elem,
            in_place: sources.iter().map(|s| s.reads_in_place()).collect(),
            block_bytes: opts.block_bytes,
        };
        plan.set_pieces(pieces, sources, opts)?;
        Ok(plan)
    }

    /// Restricts the run to `pieces` (a shard), regrouping them under the budget.
    pub fn set_pieces(
        &mut self,
        pieces: Vec<Piece>,
        sources: &[Box<dyn TensorSource + '_>],
        opts: &Options,
    ) -> Result<()> {
        let budget = state_budget(opts);
        // A piece's K × K Gram (f64), with the spectrum.
        let gram = if opts.structure.spectrum {
            (self.samples * self.samples * 8) as u64
        } else {
            0
        };
        for piece in &pieces {
            let need = piece.cols.len() as u64 * STATE_BYTES_PER_COORD + gram;
            if need > budget {
                let m = sources[piece.tensor].meta();
                return Err(Error::unusable(
                    &m.path,
                    Some(&m.name),
                    format!(
                        "needs {} of per-coordinate state, but --mem-budget {} leaves {} once the read buffers ({}) are set aside; raise --mem-budget to {} or more",
                        size(need),
                        size(opts.mem_budget),
                        size(budget),
                        size(opts.mem_budget - budget),
                        size(need + opts.mem_budget - budget)
                    ),
                ));
            }
        }
        let lens: Vec<usize> = pieces.iter().map(|p| p.cols.len()).collect();
        self.groups = group_tensors(&lens, budget);
        self.pieces = pieces;
        Ok(())
    }

    /// Bytes the run reads: a piece read in whole columns once, otherwise once per pass plus
    /// the extra whole-column read when that step runs.
    pub fn bytes(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| {
                let t = p.tensor;
                (self.samples * p.cols.len() * self.elem[t]) as u64
                    * match (self.whole[t], self.column_step) {
                        (true, _) => 1,
                        (false, false) => 2,
                        (false, true) => 3,
                    }
            })
            .sum()
    }

    /// The blocks of `piece`, in whole columns or in the tensor's own layout: those of the
    /// whole tensor's plan cut to the piece's columns, renumbered from its first column.
    pub fn blocks(&self, piece: &Piece, whole_columns: bool) -> BlockPlan {
        let t = piece.tensor;
        let elem = self.elem[t].max(4);
        let target = if self.in_place[t] {
            MAPPED_WHOLE_COLUMN_BYTES
        } else {
            WHOLE_COLUMN_BYTES
        };
        let bytes = if whole_columns {
            target
                .max(self.samples * elem * MIN_STRIP)
                .min(self.block_bytes)
        } else {
            self.block_bytes
        };
        let full = plan::blocks(
            self.samples,
            self.coords[t],
            self.k1,
            elem,
            bytes,
            whole_columns,
        );
        let (c0, c1) = (piece.cols.start, piece.cols.end);
        full.into_iter()
            .filter_map(|(rows, cols)| {
                let (a, b) = (cols.start.max(c0), cols.end.min(c1));
                (a < b).then(|| (rows, a - c0..b - c0))
            })
            .collect()
    }
}

/// Shard `index` of `of`: the pieces whose input bytes fall in its share of the whole input,
/// in input order. The whole input is laid out tensor after tensor; shard i takes the bytes
/// from i/N to (i+1)/N of it. A cut that falls inside a tensor moves to the tensor's edge
/// when that edge is within a quarter of a share (small tensors stay whole), and otherwise
/// splits the tensor there (a tensor that dominates the input is split into coordinate
/// ranges). `bytes_per_coord[t]` is K times the element size of tensor t.
pub fn shard_pieces(
    coords: &[usize],
    bytes_per_coord: &[u64],
    index: usize,
    of: usize,
) -> Vec<Piece> {
    let cuts = shard_cuts(coords, bytes_per_coord, of);
    let (lo, hi) = (cuts[index], cuts[index + 1]);
    let mut pieces = Vec::new();
    let mut start = 0usize;
    for (tensor, &p) in coords.iter().enumerate() {
        let (a, b) = (lo.max(start), hi.min(start + p));
        if a < b {
            pieces.push(Piece {
                tensor,
                cols: a - start..b - start,
            });
        }
        start += p;
    }
    pieces
}

/// The N + 1 cut points of the sharding, as global coordinate indices (0 and P at the ends).
fn shard_cuts(coords: &[usize], bytes_per_coord: &[u64], of: usize) -> Vec<usize> {
    let total: u64 = coords
        .iter()
        .zip(bytes_per_coord)
        .map(|(&p, &b)| p as u64 * b)
        .sum();
    let share = total as f64 / of as f64;
    let mut cuts = vec![0usize];
    for i in 1..of {
        let target = share * i as f64;
        // Find the tensor the target byte falls in.
        let (mut start, mut at) = (0usize, 0u64);
        let mut cut = coords.iter().sum();
        for (&p, &b) in coords.iter().zip(bytes_per_coord) {
            let end = at + p as u64 * b;
            if (end as f64) > target {
                let snap = share / 4.0;
                cut = if target - at as f64 <= snap {
                    start
                } else if end as f64 - target <= snap {
                    start + p
                } else {
                    start + ((target - at as f64) / b as f64).round() as usize
                };
                break;
            }
            (start, at) = (start + p, end);
        }
        let prev = *cuts.last().expect("starts with 0");
        cuts.push(cut.max(prev));
    }
    cuts.push(coords.iter().sum());
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up() {
        assert_eq!(size(1), "1 MiB");
        assert_eq!(size(100 << 20), "100 MiB");
        assert_eq!(size((100 << 20) + 1), "101 MiB");
        assert_eq!(size(1 << 30), "1.0 GiB");
        assert_eq!(size((1 << 30) + (1 << 20)), "1.1 GiB");
    }

    #[test]
    fn groups_fit_the_budget() {
        let per = STATE_BYTES_PER_COORD;
        assert_eq!(group_tensors(&[10, 10, 10], 1000 * per), vec![0..3]);
        assert_eq!(group_tensors(&[10, 10, 10], 20 * per), vec![0..2, 2..3]);
        assert_eq!(
            group_tensors(&[10, 10, 10], 10 * per),
            vec![0..1, 1..2, 2..3]
        );
    }

    /// Every coordinate lands in exactly one shard, in order.
    fn covers(coords: &[usize], bpc: &[u64], of: usize) -> Vec<Vec<Piece>> {
        let shards: Vec<_> = (0..of).map(|i| shard_pieces(coords, bpc, i, of)).collect();
        let mut next = vec![0usize; coords.len()];
        for p in shards.iter().flatten() {
            assert_eq!(p.cols.start, next[p.tensor], "{p:?}");
            next[p.tensor] = p.cols.end;
        }
        assert_eq!(next, coords);
        shards
    }

    #[test]
    fn small_tensors_stay_whole() {
        // Four equal tensors in two shards: cut between the second and the third.
        let shards = covers(&[100, 100, 100, 100], &[4; 4], 2);
        assert_eq!(shards[0].len(), 2);
        assert_eq!(
            shards[1][0],
            Piece {
                tensor: 2,
                cols: 0..100
            }
        );
    }

    #[test]
    fn a_dominant_tensor_is_split_by_bytes() {
        // 10 + 1000 + 10 coordinates in three shards: the big tensor is cut in ranges, the
        // shares within a few coordinates of a third each.
        let shards = covers(&[10, 1000, 10], &[8, 8, 8], 3);
        let sizes: Vec<usize> = shards
            .iter()
            .map(|s| s.iter().map(|p| p.cols.len()).sum())
            .collect();
        assert!(sizes.iter().all(|&s| (335..=345).contains(&s)), "{sizes:?}");
        assert!(shards[1].iter().all(|p| p.tensor == 1));
        // Bytes, not coordinates: an f64 tensor counts twice an f32 one.
        let shards = covers(&[100, 200], &[8, 4], 2);
        assert_eq!(
            shards[0],
            vec![Piece {
                tensor: 0,
                cols: 0..100
            }]
        );
    }

    #[test]
    fn more_shards_than_coordinates_leaves_some_empty() {
        let shards = covers(&[2], &[4], 4);
        assert!(shards.iter().any(Vec::is_empty));
    }
}
