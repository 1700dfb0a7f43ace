//! What the kernels write, as the host reads it back: one `#[repr(C)]` struct per output,
//! mirrored field for field by a WGSL struct of the same name in the kernel's file
//! (`tests/it/shaders.rs` checks sizes, field offsets and scalar types against naga's
//! reflection), and how each becomes its f64 accumulator in `engine::accum`.
//!
//! The column kernels (`coord_mean`, `coord_stats`) write one partial per
//! (row chunk, column group), stored `[chunk][group]`: a thread owns four adjacent columns, so
//! every field is a `vec4` whose lane `l` is column `4·group + l`. Every field is a 16-byte
//! vec4, so WGSL lays these structs out with no padding, as Rust's `#[repr(C)]` does.

use crate::engine::accum::{BlockSums, MeanAcc, MomentAcc, TailAcc};

/// `coord_mean`'s state of four columns over one row chunk. Mirrors WGSL `struct MeanPartial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MeanPartial {
    /// Finite samples.
    pub n: [u32; 4],
    /// Non-finite samples.
    pub bad: [u32; 4],
    /// The first finite sample the thread met: the sum is taken relative to it.
    pub xref: [f32; 4],
    /// Σ(x - xref) as a double-f32 pair, s + c.
    pub s: [f32; 4],
    pub c: [f32; 4],
    /// Smallest and largest x as normalised (hi, lo) f32 pairs.
    pub mn: [f32; 4],
    pub mn_lo: [f32; 4],
    pub mx: [f32; 4],
    pub mx_lo: [f32; 4],
}

impl MeanPartial {
    /// Column `lane`'s state in f64; `r` was subtracted on the host before upload (f64 input;
    /// 0 otherwise). Σx = n·(r + xref) + Σ(x - xref); min and max mean nothing when n = 0.
    pub fn acc(&self, lane: usize, r: f64) -> MeanAcc {
        let f = |v: [f32; 4]| f64::from(v[lane]);
        let n = u64::from(self.n[lane]);
        let nonfinite = u64::from(self.bad[lane]);
        if n == 0 {
            return MeanAcc {
                nonfinite,
                ..MeanAcc::default()
            };
        }
        MeanAcc {
            n,
            nonfinite,
            sum: n as f64 * (r + f(self.xref)) + (f(self.s) + f(self.c)),
            min: r + (f(self.mn) + f(self.mn_lo)),
            max: r + (f(self.mx) + f(self.mx_lo)),
        }
    }
}

/// `coord_stats`' power sums of four columns over one row chunk. Mirrors WGSL
/// `struct MomentPartial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MomentPartial {
    /// Σ d'^k (Neumaier-compensated) of d' = d·2^-e over finite samples.
    pub s1: [f32; 4],
    pub s2: [f32; 4],
    pub s3: [f32; 4],
    pub s4: [f32; 4],
    /// The binade of the column's largest |d| (`ColParams::exp`): d = d'·2^e.
    pub e: [i32; 4],
}

impl MomentPartial {
    /// Column `lane`'s power sums of d, rescaled by 2^(k·e) in f64 (exact); the finite count
    /// `n` comes from the tail counts.
    pub fn acc(&self, lane: usize, n: u64) -> MomentAcc {
        let f = |v: [f32; 4]| f64::from(v[lane]);
        let sc = 2f64.powi(self.e[lane]);
        let (sc2, sc3, sc4) = (sc * sc, sc * sc * sc, sc * sc * sc * sc);
        MomentAcc {
            n,
            s1: f(self.s1) * sc,
            s2: f(self.s2) * sc2,
            s3: f(self.s3) * sc3,
            s4: f(self.s4) * sc4,
        }
    }
}

/// `coord_stats`' log sums of four columns over one row chunk, every log relative to `l0`.
/// Mirrors WGSL `struct TailPartial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TailPartial {
    /// Finite samples with u = 0, and with u ≠ 0.
    pub zeros: [u32; 4],
    pub nz: [u32; 4],
    /// Σ(l - l0) and Σ(l - l0)² over nonzero u, l = ln|u|.
    pub sl: [f32; 4],
    pub sl2: [f32; 4],
    /// Counted time blocks and their Σ(ln|Y| - l0).
    pub ny: [u32; 4],
    pub ly: [f32; 4],
    /// Nonzero u inside good time blocks and their Σ(l - l0).
    pub nx: [u32; 4],
    pub lx: [f32; 4],
    /// Time blocks holding a non-finite sample.
    pub bad: [u32; 4],
    /// The first ln|u| the thread met (0 when none).
    pub l0: [f32; 4],
    /// Σ ln m over counted blocks (absolute, not relative to l0).
    pub lm: [f32; 4],
}

impl TailPartial {
    /// Column `lane`'s state in f64, with l0 added back.
    pub fn acc(&self, lane: usize) -> TailAcc {
        let f = |v: [f32; 4]| f64::from(v[lane]);
        let (zeros, nz) = (u64::from(self.zeros[lane]), u64::from(self.nz[lane]));
        let (ny, nx) = (u64::from(self.ny[lane]), u64::from(self.nx[lane]));
        let l0 = f(self.l0);
        let (sl, sl2) = (f(self.sl), f(self.sl2));
        TailAcc {
            zeros,
            nz,
            sl: sl + nz as f64 * l0,
            sl2: sl2 + 2.0 * l0 * sl + nz as f64 * l0 * l0,
            ny,
            ly: f(self.ly) + ny as f64 * l0,
            lm: f(self.lm),
            nx,
            lx: f(self.lx) + nx as f64 * l0,
            bad_blocks: u64::from(self.bad[lane]),
        }
    }
}

/// `coord_stats`' sums of one time block over the pooled columns of one workgroup and row
/// chunk, in absolute logs (`accum::BlockSums`). Mirrors WGSL `struct BlockPartial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockPartial {
    pub sx: f32,
    pub nx: f32,
    pub sy: f32,
    pub ny: f32,
    pub sm: f32,
}

impl From<&BlockPartial> for BlockSums {
    fn from(b: &BlockPartial) -> Self {
        BlockSums {
            sx: f64::from(b.sx),
            nx: f64::from(b.nx),
            sy: f64::from(b.sy),
            ny: f64::from(b.ny),
            sm: f64::from(b.sm),
        }
    }
}

/// `flat_blocks`' Σu and Σ ln(|u| + eps) of one segment, each as an f32 (sum, compensation)
/// pair the host adds in f64. Mirrors WGSL `struct FlatPartial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlatPartial {
    pub su: f32,
    pub su_c: f32,
    pub sl: f32,
    pub sl_c: f32,
}

impl FlatPartial {
    /// (Σu, Σ ln(|u| + eps)) in f64.
    pub fn sums(&self) -> (f64, f64) {
        (
            f64::from(self.su) + f64::from(self.su_c),
            f64::from(self.sl) + f64::from(self.sl_c),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[x, x, v, x]`: lane 2 holds `v`, the others a value that must not leak in.
    fn lane2<T: Copy>(v: T, other: T) -> [T; 4] {
        [other, other, v, other]
    }

    #[test]
    fn mean_lane_in_f64() {
        let p = MeanPartial {
            n: lane2(2, 7),
            bad: lane2(1, 7),
            xref: lane2(0.75, 9.0),
            s: lane2(0.25, 9.0),
            c: lane2(2f32.powi(-30), 9.0),
            mn: lane2(0.75, 9.0),
            mn_lo: lane2(0.0, 9.0),
            mx: lane2(1.0, 9.0),
            mx_lo: lane2(2f32.powi(-30), 9.0),
        };
        // Samples 10.75 and 11 + 2^-30, uploaded less r = 10 (the second as a hi/lo pair).
        let a = p.acc(2, 10.0);
        assert_eq!((a.n, a.nonfinite), (2, 1));
        assert_eq!(a.sum, 21.75 + 2f64.powi(-30));
        assert_eq!((a.min, a.max), (10.75, 11.0 + 2f64.powi(-30)));
        let none = MeanPartial {
            n: lane2(0, 7),
            ..p
        };
        assert_eq!(
            none.acc(2, 10.0),
            MeanAcc {
                nonfinite: 1,
                ..MeanAcc::default()
            }
        );
    }

    #[test]
    fn moments_rescaled_by_powers_of_two() {
        let p = MomentPartial {
            s1: lane2(0.5, 9.0),
            s2: lane2(0.25, 9.0),
            s3: lane2(-0.125, 9.0),
            s4: lane2(0.0625, 9.0),
            e: lane2(3, 9),
        };
        let m = p.acc(2, 5);
        assert_eq!((m.n, m.s1, m.s2, m.s3, m.s4), (5, 4.0, 16.0, -64.0, 256.0));
    }

    /// Logs l = 2 and 3 summed relative to l0 = 2: the host adds l0 back.
    #[test]
    fn tails_add_l0_back() {
        let p = TailPartial {
            zeros: lane2(1, 7),
            nz: lane2(2, 7),
            sl: lane2(1.0, 9.0),
            sl2: lane2(1.0, 9.0),
            ny: lane2(1, 7),
            ly: lane2(0.5, 9.0),
            nx: lane2(2, 7),
            lx: lane2(1.0, 9.0),
            bad: lane2(3, 7),
            l0: lane2(2.0, 9.0),
            lm: lane2(0.25, 9.0),
        };
        let t = p.acc(2);
        assert_eq!((t.zeros, t.nz, t.ny, t.nx, t.bad_blocks), (1, 2, 1, 2, 3));
        assert_eq!((t.sl, t.sl2), (5.0, 13.0));
        assert_eq!((t.ly, t.lx, t.lm), (2.5, 5.0, 0.25));
    }
}
