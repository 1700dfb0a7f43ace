//! The step over whole columns: what needs all K samples of a coordinate at once, which a
//! streaming pass cannot give — the sample median (`--center median`) and the distribution
//! fits of `stats::fits`. It takes blocks that hold every row of a strip of coordinates. The
//! medians run here on the host CPU (rayon), cut into tiles of columns, one scratch per task,
//! so a column costs one selection and no allocation; the fits are the engine's
//! ([`Backend::coord_fits`]: the same host code on the CPU engine, a kernel on the GPU engine).

use rayon::prelude::*;

use crate::engine::cpu::tile_columns;
use crate::engine::Backend;
use crate::error::Result;
use crate::input::Block;
use crate::stats::fits::{self, Fits};

/// One task's buffers, reused across its tiles.
#[derive(Default)]
struct Scratch {
    /// The tile, column-major: column j is `cols[j*K..(j+1)*K]`.
    cols: Vec<f64>,
    /// One column's finite samples.
    finite: Vec<f64>,
    /// The selection copy of `fits::median`.
    sort: Vec<f64>,
}

/// Runs the step on `block`, which must hold every sample of its coordinates `block.cols`.
/// `usable`, `centre` and `fits` have one entry per coordinate of the whole tensor; only the
/// block's are read and written. With `median`, `centre[j]` becomes coordinate j's numpy
/// median over its finite samples (0 when it has none). With `fits`, `fits[j]` becomes
/// [`fits::fit_column`] of u = x − centre[j] over the finite samples of coordinate j, in
/// sampling order, where `usable[j]` (pass 1 found it neither constant nor short of finite
/// samples), and [`Fits::NAN`] elsewhere, as `backend` computes them.
pub fn run(
    block: &Block,
    usable: &[bool],
    median: bool,
    centre: &mut [f64],
    fits: Option<&mut [Fits]>,
    pool: &rayon::ThreadPool,
    backend: &mut dyn Backend,
) -> Result<()> {
    let cols = block.cols.clone();
    if median {
        let width = block.width();
        let tile = tile_columns(block.rows.len());
        let tiles: Vec<Vec<f64>> = pool.install(|| {
            (0..width.div_ceil(tile))
                .into_par_iter()
                .map_init(Scratch::default, |s, t| {
                    medians(block, t * tile..((t + 1) * tile).min(width), s)
                })
                .collect()
        });
        for (t, m) in tiles.into_iter().enumerate() {
            let at = cols.start + t * tile;
            centre[at..at + m.len()].copy_from_slice(&m);
        }
    }
    match fits {
        Some(out) => backend.coord_fits(
            block,
            &usable[cols.clone()],
            &centre[cols.clone()],
            &mut out[cols],
        ),
        None => Ok(()),
    }
}

/// The numpy medians of columns `cols` of the block over their finite samples.
fn medians(block: &Block, cols: std::ops::Range<usize>, s: &mut Scratch) -> Vec<f64> {
    let k = block.rows.len();
    block.gather_columns(cols.clone(), &mut s.cols);
    (0..cols.len())
        .map(|j| {
            s.finite.clear();
            let column = &s.cols[j * k..(j + 1) * k];
            s.finite
                .extend(column.iter().copied().filter(|x| x.is_finite()));
            // A coordinate with no finite sample has nothing to centre; 0 as for the mean.
            let m = fits::median(&s.finite, &mut s.sort);
            if m.is_nan() {
                0.0
            } else {
                m
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::{CpuEngine, TILE_BYTES};
    use crate::input::BlockData;

    /// Equal field by field, NaN equal to NaN.
    fn same(a: &Fits, b: &Fits) -> bool {
        a.to_array()
            .iter()
            .zip(b.to_array())
            .all(|(x, y)| *x == y || (x.is_nan() && y.is_nan()))
    }

    /// A 5 × 3 block: a column with a NaN and an inf, a constant one, and one of even length
    /// once its NaN is dropped; medians by hand (numpy's definition), fits against
    /// `fit_column` on the finite, centred values written out here.
    #[test]
    fn medians_and_fits_per_column() {
        let nan = f64::NAN;
        let rows = [
            [3.0, 7.0, 1.0],
            [nan, 7.0, 4.0],
            [1.0, 7.0, nan],
            [f64::INFINITY, 7.0, 2.0],
            [-2.0, 7.0, 8.0],
        ];
        let data: Vec<f64> = rows.iter().flatten().copied().collect();
        let block = Block::new(0..5, 10..13, BlockData::F64(data));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut cpu = CpuEngine::new(2).unwrap();
        // The block holds coordinates 10..13 of a tensor of 14.
        let usable = [[true; 10].as_slice(), &[true, false, true, true]].concat();
        let mut centre = [9.0; 14];
        let mut out = [Fits::NAN; 14];
        run(
            &block,
            &usable,
            true,
            &mut centre,
            Some(&mut out[..]),
            &pool,
            &mut cpu,
        )
        .unwrap();
        // column 0: finite {3, 1, -2} → 1; column 1: 7; column 2: {1, 4, 2, 8} → (2 + 4) / 2
        assert_eq!(centre[10..13], [1.0, 7.0, 3.0]);
        assert!(centre[..10].iter().chain(&centre[13..]).all(|&c| c == 9.0));
        assert!(out[..10].iter().chain(&out[13..]).all(|f| f.ad.is_nan()));
        let out = &out[10..13];
        let mut s = Vec::new();
        assert!(same(&out[0], &fits::fit_column(&[2.0, 0.0, -3.0], &mut s)));
        assert!(out[1].ad.is_nan(), "an unusable column is not fitted");
        assert!(same(
            &out[2],
            &fits::fit_column(&[-2.0, 1.0, -1.0, 5.0], &mut s)
        ));

        // Without the median the given centre is used and kept.
        let mut centre = [[0.0; 10].as_slice(), &[0.5, 0.0, -1.0, 0.0]].concat();
        let mut out = [Fits::NAN; 14];
        run(
            &block,
            &usable,
            false,
            &mut centre,
            Some(&mut out[..]),
            &pool,
            &mut cpu,
        )
        .unwrap();
        assert_eq!(centre[10..13], [0.5, 0.0, -1.0]);
        let want = fits::fit_column(&[2.0, 5.0, 3.0, 9.0], &mut s);
        assert!(same(&out[12], &want));

        // The median alone.
        let mut centre = [0.0; 14];
        run(&block, &usable, true, &mut centre, None, &pool, &mut cpu).unwrap();
        assert_eq!(centre[10..13], [1.0, 7.0, 3.0]);
    }

    /// Tiles of one column each (K large) and many tiles per block give the same fits as
    /// one column at a time.
    #[test]
    fn tiling_does_not_change_results() {
        let (k, w) = (TILE_BYTES / 8 + 3, 5);
        let data: Vec<f64> = (0..k * w)
            .map(|i| ((i * 7919) % 1013) as f64 - 500.0)
            .collect();
        let block = Block::new(0..k, 0..w, BlockData::F64(data.clone()));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut cpu = CpuEngine::new(2).unwrap();
        let mut centre = [0.0; 5];
        let mut out = [Fits::NAN; 5];
        run(
            &block,
            &[true; 5],
            false,
            &mut centre,
            Some(&mut out[..]),
            &pool,
            &mut cpu,
        )
        .unwrap();
        let mut s = Vec::new();
        for (j, got) in out.iter().enumerate() {
            let col: Vec<f64> = (0..k).map(|r| data[r * w + j]).collect();
            assert!(same(got, &fits::fit_column(&col, &mut s)), "column {j}");
        }
    }
}
