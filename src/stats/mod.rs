//! Statistics: pure f64 functions that finish accumulator states into estimates, tests and
//! intervals. Nothing here touches files or devices.

pub mod compare;
pub mod gauss;
pub mod sas;
pub mod structure;
pub mod tail;
#[cfg(test)]
pub(crate) mod testdata;

use serde::Serialize;

use crate::engine::accum::{MeanAcc, TailAcc};
use crate::engine::TensorAcc;

/// Per-coordinate statistics, in output order. See README "Statistics" for definitions.
pub const COORD_STATS: [&str; 13] = [
    "n",
    "nonfinite",
    "mean",
    "var",
    "skew",
    "kurt",
    "jb",
    "jb_p",
    "k2",
    "k2_p",
    "alpha_logm",
    "scale_logm",
    "alpha_block",
];

/// One column per statistic, one row per coordinate (C order over the tensor's shape).
#[derive(Clone, Debug)]
pub struct CoordTable {
    pub columns: Vec<Vec<f64>>,
}

impl CoordTable {
    pub fn get(&self, name: &str) -> &[f64] {
        let i = COORD_STATS
            .iter()
            .position(|s| *s == name)
            .unwrap_or_else(|| panic!("unknown statistic {name}"));
        &self.columns[i]
    }

    /// Every `ceil(len / max)`-th coordinate, for plots of very large tensors.
    pub fn sample(&self, max: usize) -> CoordTable {
        let len = self.columns.first().map_or(0, Vec::len);
        let step = len.div_ceil(max.max(1)).max(1);
        CoordTable {
            columns: self
                .columns
                .iter()
                .map(|c| c.iter().step_by(step).copied().collect())
                .collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &[f64])> {
        COORD_STATS
            .iter()
            .copied()
            .zip(self.columns.iter().map(Vec::as_slice))
    }
}

/// Finished per-coordinate record, one field per entry of [`COORD_STATS`].
struct Coord([f64; 13]);

fn finish_coord(
    mean: &MeanAcc,
    shift: f64,
    acc: &crate::engine::accum::CoordAcc,
    k1: usize,
) -> (Coord, bool) {
    let m = &acc.moments;
    let n = m.n as f64;
    let nan = f64::NAN;
    let mean_x = if m.n == 0 { nan } else { shift + m.s1 / n };
    let (m2, m3, m4) = gauss::central_moments(n, m.s1, m.s2, m.s3, m.s4);
    // scipy sets shape statistics to NaN when m2 ≤ (eps·mean)², i.e. for constant data; the
    // exact test (all finite samples equal) comes from pass 1's range.
    let constant = mean.is_constant() || m2 <= (f64::EPSILON * mean_x).powi(2);
    let mut out = [nan; 13];
    out[0] = n;
    out[1] = mean.nonfinite as f64;
    out[2] = mean_x;
    out[3] = if m.n == 0 {
        nan
    } else if mean.is_constant() {
        0.0
    } else {
        m2
    };
    if !constant {
        let g1 = gauss::skew(m2, m3);
        let g2 = gauss::kurt(m2, m4);
        let (jb, jb_p) = gauss::jarque_bera(n, g1, g2);
        let (k2, k2_p) = gauss::normaltest(n, g1, g2);
        let t: &TailAcc = &acc.tails;
        let (a_logm, c_logm, _) = tail::log_moment(t.nz, t.sl, t.sl2);
        let a_block = tail::block_alpha(k1, t.ly, t.ny, t.lx, t.nx);
        out[4..13].copy_from_slice(&[g1, g2, jb, jb_p, k2, k2_p, a_logm, c_logm, a_block]);
    }
    (Coord(out), constant)
}

/// Quantiles 5/25/50/75/95 %.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Quantiles {
    pub q05: f64,
    pub q25: f64,
    pub q50: f64,
    pub q75: f64,
    pub q95: f64,
}

impl Quantiles {
    pub fn of(values: &[f64]) -> Self {
        let q = tail::quantiles(values, &[0.05, 0.25, 0.5, 0.75, 0.95]);
        Quantiles {
            q05: q[0],
            q25: q[1],
            q50: q[2],
            q75: q[3],
            q95: q[4],
        }
    }
}

/// Pooled, per-tensor results (field names are the JSON and CSV schema).
#[derive(Clone, Debug, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub shape: Vec<usize>,
    pub coords: usize,
    /// Block-sum length K1 and the rows inside complete blocks.
    pub block_size: usize,
    pub block_rows: usize,
    pub alpha_time_blocked: f64,
    pub alpha_time_blocked_se: f64,
    pub alpha_time_blocked_ci: [f64; 2],
    /// Jackknife SE over 20 contiguous coordinate groups: allows for correlated coordinates.
    pub alpha_time_blocked_se_jackknife: f64,
    pub alpha_simsekli_flat: f64,
    pub simsekli_m: u64,
    pub alpha_block_quantiles: Quantiles,
    pub alpha_logm_quantiles: Quantiles,
    pub jb_reject_frac: f64,
    pub k2_reject_frac: f64,
    pub constant_coords: u64,
    pub logm_clamped_coords: u64,
    pub zero_entries: u64,
    pub nonfinite_samples: u64,
    pub dropped_blocks: u64,
}

/// z for a two-sided 95 % interval.
pub fn z95() -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(0.975)
}

/// Finishes one tensor: the per-coordinate table and the pooled summary.
#[allow(clippy::too_many_arguments)] // one call site; the arguments are the tensor's parts
pub fn finish_tensor(
    name: &str,
    shape: &[usize],
    means: &[MeanAcc],
    shift: &[f64],
    acc: &TensorAcc,
    k1: usize,
    block_rows: usize,
    simsekli_m: u64,
) -> (TensorSummary, CoordTable) {
    let p = means.len();
    let mut columns = vec![Vec::with_capacity(p); COORD_STATS.len()];
    let mut constant_coords = 0;
    let mut clamped = 0;
    let mut pooled = TailAcc::default();
    let mut groups = vec![(0.0, 0u64, 0.0, 0u64); tail::JACKKNIFE_GROUPS.min(p)];
    let mut nonfinite = 0;
    for j in 0..p {
        let (c, constant) = finish_coord(&means[j], shift[j], &acc.coords[j], k1);
        constant_coords += constant as u64;
        let t = &acc.coords[j].tails;
        if !constant && t.nz >= 2 && tail::log_moment(t.nz, t.sl, t.sl2).2 {
            clamped += 1;
        }
        pooled.combine(t);
        let n_groups = groups.len();
        let g = &mut groups[j * n_groups / p];
        *g = (g.0 + t.ly, g.1 + t.ny, g.2 + t.lx, g.3 + t.nx);
        nonfinite += means[j].nonfinite;
        for (col, v) in columns.iter_mut().zip(c.0) {
            col.push(v);
        }
    }
    let table = CoordTable { columns };
    let tb = tail::time_blocked(k1, pooled.ly, pooled.ny, pooled.lx, pooled.nx, z95());
    let reject = |col: &str| {
        let nonconst = p as u64 - constant_coords;
        let hits = table.get(col).iter().filter(|&&v| v < 0.05).count();
        if nonconst == 0 {
            f64::NAN
        } else {
            hits as f64 / nonconst as f64
        }
    };
    let summary = TensorSummary {
        name: name.to_owned(),
        shape: shape.to_vec(),
        coords: p,
        block_size: k1,
        block_rows,
        alpha_time_blocked: tb.alpha,
        alpha_time_blocked_se: tb.se,
        alpha_time_blocked_se_jackknife: tail::time_blocked_jackknife(k1, &groups),
        alpha_time_blocked_ci: tb.ci,
        alpha_simsekli_flat: tail::simsekli_flat(
            simsekli_m,
            &acc.flat.blocks,
            acc.flat.lx,
            acc.flat.n,
        ),
        simsekli_m,
        alpha_block_quantiles: Quantiles::of(table.get("alpha_block")),
        alpha_logm_quantiles: Quantiles::of(table.get("alpha_logm")),
        jb_reject_frac: reject("jb_p"),
        k2_reject_frac: reject("k2_p"),
        constant_coords,
        logm_clamped_coords: clamped,
        zero_entries: pooled.zeros,
        nonfinite_samples: nonfinite,
        dropped_blocks: pooled.bad_blocks,
    };
    (summary, table)
}
