//! Accumulator monoids. Every per-coordinate and pooled state has an identity (`Default`)
//! and an associative, commutative `combine`, so blocks, threads and GPU partials merge the
//! same way (vello's `monoid.rs`, statrs's online statistics). All host-side state is f64.
//!
//! Moments are power sums of `d = x - shift` with a per-coordinate shift fixed before the
//! pass (the sample mean from pass 1), the shifted-data form that is exact to rounding when
//! the shift is close to the mean (Chan, Golub & LeVeque 1983). Block sums of K1 consecutive
//! samples are aligned to multiples of K1 along the sample axis, so a block never spans two
//! input blocks and the tail state is a plain sum too.

/// Pass 1, kernel `coord_mean`: finite count, sum, range and non-finite count per coordinate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanAcc {
    pub n: u64,
    pub nonfinite: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for MeanAcc {
    fn default() -> Self {
        MeanAcc {
            n: 0,
            nonfinite: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl MeanAcc {
    pub fn push(&mut self, x: f64) {
        if x.is_finite() {
            self.n += 1;
            self.sum += x;
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        } else {
            self.nonfinite += 1;
        }
    }

    pub fn combine(&mut self, o: &Self) {
        self.n += o.n;
        self.nonfinite += o.nonfinite;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }

    /// All finite samples equal (or none): every shape statistic is undefined.
    pub fn is_constant(&self) -> bool {
        self.n == 0 || self.min == self.max
    }
}

/// Kernel `coord_stats`, moments: power sums of `d = x - shift` over finite samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Zeroable)]
pub struct MomentAcc {
    pub n: u64,
    pub s1: f64,
    pub s2: f64,
    pub s3: f64,
    pub s4: f64,
}

impl MomentAcc {
    #[inline]
    pub fn push(&mut self, d: f64) {
        let d2 = d * d;
        self.n += 1;
        self.s1 += d;
        self.s2 += d2;
        self.s3 += d2 * d;
        self.s4 += d2 * d2;
    }

    pub fn combine(&mut self, o: &Self) {
        self.n += o.n;
        self.s1 += o.s1;
        self.s2 += o.s2;
        self.s3 += o.s3;
        self.s4 += o.s4;
    }
}

/// Kernel `coord_stats`, tails: over centred samples u = x - centre, the zero count, the log-moments
/// of ln|u| over nonzero u (Ma & Nikias 1995), and the block-sum sums (Mohammadi et al. 2015)
/// under the zeros rule: a time block of K1 consecutive u with m_b nonzero entries has a sum
/// Y_b of m_b iid terms, of scale m_b^(1/α), so it counts with ln|Y_b| and ln m_b when
/// m_b ≥ 2 and Y_b ≠ 0; ln|u| runs over the nonzero u inside complete blocks. Then
/// 1/α = (ly/ny - lx/nx) / (lm/ny), and with no zeros lm/ny = ln K1, the paper's estimator.
/// A block holding a non-finite sample is left out whole and counted in `bad_blocks`.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Zeroable)]
pub struct TailAcc {
    pub zeros: u64,
    pub nz: u64,
    pub sl: f64,
    pub sl2: f64,
    pub ny: u64,
    pub ly: f64,
    /// Σ ln m_b over the blocks counted in `ny`.
    pub lm: f64,
    pub nx: u64,
    pub lx: f64,
    pub bad_blocks: u64,
}

impl TailAcc {
    pub fn combine(&mut self, o: &Self) {
        self.zeros += o.zeros;
        self.nz += o.nz;
        self.sl += o.sl;
        self.sl2 += o.sl2;
        self.ny += o.ny;
        self.ly += o.ly;
        self.lm += o.lm;
        self.nx += o.nx;
        self.lx += o.lx;
        self.bad_blocks += o.bad_blocks;
    }

    /// The block-sum part, for pooling.
    pub fn block_sums(&self) -> BlockSums {
        BlockSums {
            sx: self.lx,
            nx: self.nx as f64,
            sy: self.ly,
            ny: self.ny as f64,
            sm: self.lm,
        }
    }
}

/// The five sums the block-sum α is a ratio of (Mohammadi et al. 2015 with the zeros rule):
/// Σ ln|u| and the count of nonzero u, Σ ln|Y_b| and the count of counted blocks, Σ ln m_b.
/// Kept per time block b, pooled over a tensor's non-constant coordinates, they give the
/// delete-one-time-block jackknife: time blocks are independent whenever samples are, however
/// strongly coordinates move together. Counts are f64 so GPU partials fold without casts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockSums {
    pub sx: f64,
    pub nx: f64,
    pub sy: f64,
    pub ny: f64,
    pub sm: f64,
}

impl BlockSums {
    pub fn combine(&mut self, o: &Self) {
        self.sx += o.sx;
        self.nx += o.nx;
        self.sy += o.sy;
        self.ny += o.ny;
        self.sm += o.sm;
    }

    /// `self` less `o`: the sums with one block's share removed.
    pub fn without(&self, o: &Self) -> Self {
        BlockSums {
            sx: self.sx - o.sx,
            nx: self.nx - o.nx,
            sy: self.sy - o.sy,
            ny: self.ny - o.ny,
            sm: self.sm - o.sm,
        }
    }

    /// 1/α = (SY/NY - SX/NX) / (SM/NY); NaN without a counted block or entry.
    pub fn inv_alpha(&self) -> f64 {
        if self.ny <= 0.0 || self.nx <= 0.0 || self.sm <= 0.0 {
            return f64::NAN;
        }
        (self.sy / self.ny - self.sx / self.nx) / (self.sm / self.ny)
    }
}

/// Per-coordinate state of pass 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Zeroable)]
pub struct CoordAcc {
    pub moments: MomentAcc,
    pub tails: TailAcc,
}

impl CoordAcc {
    pub fn combine(&mut self, o: &Self) {
        self.moments.combine(&o.moments);
        self.tails.combine(&o.tails);
    }
}

/// Kernel `flat_blocks`: the Simsekli-compatible estimator's state (spec §3.2) over a
/// row-major flattening of centred noise: the sum of each block of `m` consecutive entries,
/// and Σ ln(|u| + eps) over all finite entries. Non-finite entries add nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlatAcc {
    pub n: u64,
    pub lx: f64,
    pub blocks: Vec<f64>,
}

impl FlatAcc {
    pub fn new(blocks: usize) -> Self {
        FlatAcc {
            n: 0,
            lx: 0.0,
            blocks: vec![0.0; blocks],
        }
    }

    pub fn combine(&mut self, o: &Self) {
        self.n += o.n;
        self.lx += o.lx;
        for (a, b) in self.blocks.iter_mut().zip(&o.blocks) {
            *a += b;
        }
    }
}

/// Where entry (row k, coordinate j) of a tensor lands in a flattened index space:
/// `k * stride + base + j`, cut into blocks of `m` consecutive entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatSpec {
    pub stride: u64,
    pub base: u64,
    pub m: u64,
}

impl FlatSpec {
    pub fn index(&self, row: usize, col: usize) -> u64 {
        row as u64 * self.stride + self.base + col as u64
    }

    /// Splits row `row`, columns `cols`, into runs lying in one flat block each:
    /// `(block, column range)`.
    pub fn runs(
        &self,
        row: usize,
        cols: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + '_ {
        let mut c = cols.start;
        std::iter::from_fn(move || {
            if c >= cols.end {
                return None;
            }
            let idx = self.index(row, c);
            let block = idx / self.m;
            let left = (self.m - idx % self.m) as usize;
            let end = (c + left).min(cols.end);
            let run = (block as usize, c..end);
            c = end;
            Some(run)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_identity_and_combine() {
        let mut a = MeanAcc::default();
        for x in [1.0, f64::NAN, 3.0] {
            a.push(x);
        }
        let mut b = MeanAcc::default();
        b.push(-2.0);
        b.push(f64::INFINITY);
        let mut ab = a;
        ab.combine(&b);
        let mut id = MeanAcc::default();
        id.combine(&ab);
        assert_eq!(id, ab);
        assert_eq!(
            (ab.n, ab.nonfinite, ab.sum, ab.min, ab.max),
            (3, 2, 2.0, -2.0, 3.0)
        );
    }

    #[test]
    fn moments_combine_is_concatenation() {
        let xs = [0.5, -1.25, 2.0, 3.5, -0.75];
        let mut whole = MomentAcc::default();
        xs.iter().for_each(|&x| whole.push(x));
        let (mut a, mut b) = (MomentAcc::default(), MomentAcc::default());
        xs[..2].iter().for_each(|&x| a.push(x));
        xs[2..].iter().for_each(|&x| b.push(x));
        a.combine(&b);
        assert_eq!(a.n, whole.n);
        assert!((a.s4 - whole.s4).abs() < 1e-12);
    }

    #[test]
    fn flat_runs_split_at_block_edges() {
        let spec = FlatSpec {
            stride: 10,
            base: 3,
            m: 4,
        };
        // row 1 covers flat indices 13..20 for cols 0..7
        let runs: Vec<_> = spec.runs(1, 0..7).collect();
        assert_eq!(runs, vec![(3, 0..3), (4, 3..7)]);
    }
}
