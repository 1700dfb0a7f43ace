//! The host step over whole columns: what needs all K samples of a coordinate at once, which a
//! streaming pass cannot give — the sample median (`--center median`) and the distribution
//! fits of `stats::fits`. It is engine-neutral: it takes blocks that hold every row of a strip
//! of coordinates, cuts their columns into tiles, and runs the tiles in parallel on the host
//! CPU (rayon), one scratch per task, so a column costs one sort and no allocation. Both
//! engines use it; a GPU sort or selection kernel would move it to the device, and is not
//! written yet.

use rayon::prelude::*;

use crate::input::Block;
use crate::stats::fits::{self, Fits};

/// Bytes of one task's column-major tile (K × columns, f64): about an L2 cache.
const TILE_BYTES: usize = 256 << 10;
/// Most columns per task, so a strip of a few thousand columns still spreads over threads.
const MAX_TILE: usize = 64;

/// One task's buffers, reused across its tiles.
#[derive(Default)]
struct Scratch {
    /// The tile, column-major: column j is `cols[j*K..(j+1)*K]`.
    cols: Vec<f64>,
    row: Vec<f64>,
    /// One column's finite samples, then their centred values.
    finite: Vec<f64>,
    /// The sort (or selection) copy of `fits::fit_column` and `fits::median`.
    sort: Vec<f64>,
}

/// Runs the step on `block`, which must hold every sample of its coordinates `block.cols`.
/// `usable`, `centre` and `fits` have one entry per coordinate of the whole tensor; only the
/// block's are read and written. With `median`, `centre[j]` becomes coordinate j's numpy
/// median over its finite samples (0 when it has none). With `fits`, `fits[j]` becomes
/// [`fits::fit_column`] of u = x − centre[j] over the finite samples of coordinate j, in
/// sampling order, where `usable[j]` (pass 1 found it neither constant nor short of finite
/// samples), and [`Fits::NAN`] elsewhere.
pub fn run(
    block: &Block,
    usable: &[bool],
    median: bool,
    centre: &mut [f64],
    mut fits: Option<&mut [Fits]>,
    pool: &rayon::ThreadPool,
) {
    let (k, width) = (block.rows.len(), block.width());
    let cols = block.cols.clone();
    let job = Job {
        usable: &usable[cols.clone()],
        median,
        fits: fits.is_some(),
    };
    let tile = (TILE_BYTES / (8 * k.max(1))).clamp(1, MAX_TILE);
    let centre = &mut centre[cols.clone()];
    let centre_in: &[f64] = centre;
    let tiles: Vec<(Vec<f64>, Vec<Fits>)> = pool.install(|| {
        (0..width.div_ceil(tile))
            .into_par_iter()
            .map_init(Scratch::default, |s, t| {
                let at = t * tile..((t + 1) * tile).min(width);
                run_tile(block, &job, at.clone(), &centre_in[at], s)
            })
            .collect()
    });
    for (t, (medians, fitted)) in tiles.into_iter().enumerate() {
        let at = t * tile;
        centre[at..at + medians.len()].copy_from_slice(&medians);
        if let Some(out) = fits.as_deref_mut() {
            out[cols.start + at..cols.start + at + fitted.len()].copy_from_slice(&fitted);
        }
    }
}

/// What a tile computes: the block's slice of `usable`, and which of the two results.
struct Job<'a> {
    usable: &'a [bool],
    median: bool,
    fits: bool,
}

/// One tile of columns `cols` of the block: their medians (with `job.median`) and fits.
fn run_tile(
    block: &Block,
    job: &Job,
    cols: std::ops::Range<usize>,
    centre: &[f64],
    s: &mut Scratch,
) -> (Vec<f64>, Vec<Fits>) {
    let (k, width, w) = (block.rows.len(), block.width(), cols.len());
    s.cols.resize(k * w, 0.0);
    s.row.resize(w, 0.0);
    for r in 0..k {
        let at = r * width + cols.start;
        block.data.widen_into(at..at + w, &mut s.row);
        for (j, &x) in s.row.iter().enumerate() {
            s.cols[j * k + r] = x;
        }
    }
    let mut medians = Vec::with_capacity(if job.median { w } else { 0 });
    let mut fitted = Vec::with_capacity(if job.fits { w } else { 0 });
    for (j, &given) in centre.iter().enumerate() {
        s.finite.clear();
        let column = &s.cols[j * k..(j + 1) * k];
        s.finite
            .extend(column.iter().copied().filter(|x| x.is_finite()));
        let c = if job.median {
            // A coordinate with no finite sample has nothing to centre; 0 as for the mean.
            let m = fits::median(&s.finite, &mut s.sort);
            let m = if m.is_nan() { 0.0 } else { m };
            medians.push(m);
            m
        } else {
            given
        };
        if job.fits {
            fitted.push(if job.usable[cols.start + j] {
                s.finite.iter_mut().for_each(|x| *x -= c);
                fits::fit_column(&s.finite, &mut s.sort)
            } else {
                Fits::NAN
            });
        }
    }
    (medians, fitted)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        );
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
        );
        assert_eq!(centre[10..13], [0.5, 0.0, -1.0]);
        let want = fits::fit_column(&[2.0, 5.0, 3.0, 9.0], &mut s);
        assert!(same(&out[12], &want));

        // The median alone.
        let mut centre = [0.0; 14];
        run(&block, &usable, true, &mut centre, None, &pool);
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
        let mut centre = [0.0; 5];
        let mut out = [Fits::NAN; 5];
        run(
            &block,
            &[true; 5],
            false,
            &mut centre,
            Some(&mut out[..]),
            &pool,
        );
        let mut s = Vec::new();
        for (j, got) in out.iter().enumerate() {
            let col: Vec<f64> = (0..k).map(|r| data[r * w + j]).collect();
            assert!(same(got, &fits::fit_column(&col, &mut s)), "column {j}");
        }
    }
}
