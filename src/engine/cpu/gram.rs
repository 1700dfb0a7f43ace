//! The CPU twin of `shaders/gram.wgsl`: UUᵀ of a block's centred columns in f64, faer's
//! triangular matrix product over column tiles (`stats::structure::Gram::add_tile`).

use rayon::prelude::*;

use crate::input::Block;
use crate::stats::structure::{Gram, StructureError};

/// Bytes of one tile (K × columns, f64).
const TILE_BYTES: usize = 512 << 10;
/// Tiles per group: one task's work, a few MiB of columns.
const GROUP_TILES: usize = 8;
/// Memory for the groups' Grams alive at once (K² f64 each), and their most.
const WAVE_BYTES: usize = 256 << 20;
const MAX_WAVE: usize = 32;

/// Adds UUᵀ of `block` to `out`, u = x − centre[j] for every sample of column j (`centre` has
/// one value per column of the block); a NaN or ±∞ makes the Gram non-finite, which its
/// finish reports. Runs on the current rayon pool. Tiles are added in fixed groups, each group
/// in column order on one task, and the groups' Grams are combined in column order, so the sum
/// does not depend on the thread count; groups run in waves, so at most a wave's Grams are
/// alive at once.
pub fn gram(block: &Block, centre: &[f64], out: &mut Gram) -> Result<(), StructureError> {
    let (k, width) = (block.rows.len(), block.width());
    if width == 0 {
        return Ok(());
    }
    let tile = (TILE_BYTES / (8 * k.max(1))).clamp(1, 1024);
    let tiles = width.div_ceil(tile);
    let groups = tiles.div_ceil(GROUP_TILES);
    let wave = (WAVE_BYTES / (8 * k * k).max(1)).clamp(1, MAX_WAVE);
    for first in (0..groups).step_by(wave) {
        let parts: Vec<Result<Gram, StructureError>> = (first..(first + wave).min(groups))
            .into_par_iter()
            .map(|g| {
                let mut part = Gram::new(k);
                let (mut x, mut u) = (Vec::new(), Vec::new());
                for t in g * GROUP_TILES..((g + 1) * GROUP_TILES).min(tiles) {
                    let cols = t * tile..((t + 1) * tile).min(width);
                    let w = cols.len();
                    // Row-major K × w, as read, then centred.
                    x.resize(k * w, 0.0);
                    for r in 0..k {
                        let at = r * block.stride() + cols.start;
                        block
                            .data
                            .widen_into(at..at + w, &mut x[r * w..(r + 1) * w]);
                    }
                    let c = &centre[cols];
                    u.clear();
                    for row in x.chunks_exact(w) {
                        u.extend(row.iter().zip(c).map(|(v, c)| v - c));
                    }
                    part.add_tile(&u, w, w)?;
                }
                Ok(part)
            })
            .collect();
        for part in parts {
            out.combine(&part?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::BlockData;
    use crate::stats::structure::Centre;

    /// The Gram on 1, 2 and 3 threads is bit-identical and equal to the product written out
    /// in one tile; a NaN makes it non-finite.
    #[test]
    fn same_gram_on_any_number_of_threads() {
        // 70,000 columns of 16 rows: 3 groups of tiles (4096 columns each, 8 per group).
        let (k, p) = (16, 70_000);
        let x: Vec<f64> = (0..k * p)
            .map(|i| ((i * 7919) % 1013) as f64 / 100.0 - 5.0)
            .collect();
        let centre: Vec<f64> = (0..p).map(|j| (j % 100) as f64 * 1e-2).collect();
        let run_on = |threads, x: &[f64]| {
            let block = Block::new(0..k, 0..p, BlockData::F64(x.to_vec()));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut g = Gram::new(k);
            pool.install(|| gram(&block, &centre, &mut g)).unwrap();
            g
        };
        let one = run_on(1, &x);
        assert_eq!(one.coords(), p as u64);
        let g1 = one.finish(Centre::Exact).unwrap();
        let u: Vec<f64> = (0..k * p).map(|i| x[i] - centre[i % p]).collect();
        let mut direct = Gram::new(k);
        direct.add_tile(&u, p, p).unwrap();
        let d = direct.finish(Centre::Exact).unwrap();
        for (a, b) in g1.eigenvalues.iter().zip(&d.eigenvalues) {
            assert!((a - b).abs() < 1e-12 * d.eigenvalues[0], "{a} vs {b}");
        }
        let ss: f64 = u.iter().map(|v| v * v).sum();
        assert!((g1.trace - ss / (k - 1) as f64).abs() < 1e-12 * ss);
        for threads in [2, 3] {
            let other = run_on(threads, &x).finish(Centre::Exact).unwrap();
            assert_eq!(other, g1, "{threads} threads");
        }
        let mut bad = x.clone();
        bad[3 * p + 17] = f64::NAN;
        let nan = run_on(2, &bad).finish(Centre::Exact);
        assert!(matches!(nan, Err(StructureError::NonFinite)));
    }
}
