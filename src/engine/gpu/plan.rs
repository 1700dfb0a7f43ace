//! Pure dispatch planning for the GPU engine: how a block is cut into *units* (one upload and
//! one set of dispatches each) under the device's binding-size limit, how a unit's rows are cut
//! into row chunks (one thread per four columns and chunk), how many workgroups that makes and
//! how they fold into a 2-D grid of at most `max_compute_workgroups_per_dimension` per side,
//! and how much a region of a batch's buffers takes under the offset alignment. Nothing here touches a
//! device, so every rule is unit-tested.

use std::mem::size_of;
use std::ops::Range;

use super::partials::{BlockPartial, MeanPartial, MomentPartial, TailPartial};

/// Threads per workgroup of the column kernels (`coord_mean`, `coord_stats`);
/// the same name in the WGSL files.
pub const COORD_WG: u32 = 64;
/// Threads per workgroup of `flat_blocks` (one workgroup reduces one segment).
pub const FLAT_WG: u32 = 128;
/// Columns one thread of a column kernel owns: one `vec4` per row.
pub const COLS_PER_THREAD: usize = 4;
/// Bytes of one vec4 word, the unit of every storage array the kernels read or write.
pub const WORD: u64 = 16;

/// Bytes of partial state per row chunk and column group the column kernels of each pass
/// write: `MeanPartial` in pass 1; `MomentPartial` and `TailPartial` in pass 2.
pub const PASS1_PARTIAL: u64 = size_of::<MeanPartial>() as u64;
pub const PASS2_PARTIAL: u64 = (size_of::<MomentPartial>() + size_of::<TailPartial>()) as u64;

/// Threads a dispatch should have before rows are split into more chunks: enough to fill a
/// large GPU (an H100 holds ~270k resident threads; 64k keeps every SM busy with a few waves).
pub const TARGET_THREADS: usize = 1 << 16;
/// Fewest rows one thread folds before writing a partial state: the partials (at most
/// [`PASS2_PARTIAL`] = 256 bytes per column group) then cost at most a quarter of the chunk's
/// f32 input (16 bytes a row) in readback.
pub const MIN_CHUNK_ROWS: usize = 64;

/// Limits the planner respects, taken from the device (and `GpuOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Largest storage binding the engine may use, in bytes.
    pub binding: u64,
    /// Largest buffer (the output sections of a unit share one), in bytes.
    pub buffer: u64,
    /// `max_compute_workgroups_per_dimension`.
    pub max_dim: u32,
}

/// What the kernels of one pass need per unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    /// Bytes per uploaded value: 2 (f16, bf16), 4 (f32) or 8 (f64 as an f32 hi/lo pair).
    pub elem: usize,
    /// Row chunks (and units) start at multiples of this many rows: K1 in pass 2, so a time
    /// block never straddles two threads; 1 in pass 1.
    pub align: usize,
    /// Bytes of partial state per row chunk and column group, over all kernels of the pass
    /// ([`PASS1_PARTIAL`] or [`PASS2_PARTIAL`]).
    pub partial: u64,
    /// Per-column parameters are uploaded (pass 2: shift, centre, pool flag and moment scale,
    /// 24 bytes per column), and `coord_stats` writes a `BlockPartial` per (row chunk, time
    /// block, workgroup).
    pub params: bool,
    /// Flat block lengths `(m_tensor, m_model)` when `flat_blocks` runs (pass 2).
    pub flat: Option<(u64, u64)>,
}

/// One upload: rows × columns of a block, relative to the block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub rows: Range<usize>,
    pub cols: Range<usize>,
}

/// Values per uploaded row: whole 16-byte words and whole groups of four columns, so every
/// row starts on a word and one thread's four columns are one aligned load (f32), half of one
/// (f16, bf16) or two (f64 as hi/lo f32 pairs, `elem` = 8).
pub fn pitch(cols: usize, elem: usize) -> usize {
    let per_word = (WORD as usize / elem).max(COLS_PER_THREAD);
    cols.div_ceil(per_word) * per_word
}

/// Column groups of four (threads per row chunk).
pub fn groups(cols: usize) -> usize {
    cols.div_ceil(COLS_PER_THREAD)
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Rows per chunk and number of chunks for a unit of `rows` × `groups` column groups: enough
/// chunks for [`TARGET_THREADS`], each at least [`MIN_CHUNK_ROWS`] rows, a multiple of
/// `align` long (the last one ends at `rows`).
pub fn chunking(rows: usize, groups: usize, align: usize) -> (usize, usize) {
    let align = align.max(1);
    if rows == 0 {
        return (align, 0);
    }
    let want = TARGET_THREADS.div_ceil(groups.max(1)).max(1);
    let chunk = round_up(rows.div_ceil(want).max(MIN_CHUNK_ROWS.min(rows)), align);
    (chunk, rows.div_ceil(chunk))
}

/// Upper bound of the row chunks of any unit of `rows` rows (see [`chunking`]).
fn max_chunks(rows: usize, align: usize) -> usize {
    rows.div_ceil(round_up(MIN_CHUNK_ROWS.min(rows).max(1), align.max(1)))
}

/// Bytes of one column's parameters (`ColParams`).
pub const PARAM_BYTES: u64 = 24;

/// `coord_stats`' pooled time-block sums (`BlockPartial`s) for a unit cut into `chunks` row
/// chunks of `chunk_rows` rows (a multiple of `k1`) and `groups` column groups: one per (row
/// chunk, time block slot of a chunk, workgroup).
pub fn pooled_blocks(chunks: usize, chunk_rows: usize, k1: usize, groups: usize) -> usize {
    chunks * (chunk_rows / k1.max(1)) * groups.div_ceil(COORD_WG as usize)
}

/// Upper bound of [`pooled_blocks`] over the chunkings of `rows` rows: a chunk is at most
/// `rows + k1 - 1` rows, so the chunks hold at most 2⌈rows/k1⌉ + 1 block slots.
fn max_pooled_blocks(rows: usize, k1: usize, groups: usize) -> usize {
    (2 * rows.div_ceil(k1.max(1)) + 1) * groups.div_ceil(COORD_WG as usize)
}

/// Upper bound of the flat segments of a unit: per row, one plus the flat-block boundaries of
/// each flattening that can fall strictly inside `cols` consecutive indices.
pub fn max_segments(rows: usize, cols: usize, m_tensor: u64, m_model: u64) -> usize {
    let inner = |m: u64| (cols.saturating_sub(1)).div_ceil(m.max(1) as usize);
    rows * (1 + inner(m_tensor) + inner(m_model))
}

/// Bytes a unit of `rows` × `cols` needs: `(largest binding, largest buffer)`. The bindings
/// are the input, the parameters, the segment table and each kernel's output sections
/// (partials, pooled block sums, flat partials); the output sections share one buffer, and the
/// input, parameters, segment table and sizes are staged in another, each at an aligned offset.
pub fn footprint(rows: usize, cols: usize, spec: &UnitSpec) -> (u64, u64) {
    let g = groups(cols) as u64;
    let input = (rows * pitch(cols, spec.elem) * spec.elem) as u64;
    let params = if spec.params { g * 4 * PARAM_BYTES } else { 0 };
    let chunks = max_chunks(rows, spec.align) as u64;
    let pooled = if spec.params {
        (max_pooled_blocks(rows, spec.align, groups(cols)) * size_of::<BlockPartial>()) as u64
    } else {
        0
    };
    // Each kernel's partials are at most all of the pass's together.
    let coords = chunks * spec.partial * g;
    let segs = match spec.flat {
        Some((mt, mm)) => max_segments(rows, cols, mt, mm) as u64 * WORD,
        None => 0,
    };
    // Four sections at most, allow 256 bytes of alignment each.
    let out = coords + pooled + segs + 4 * 256;
    // Input, parameters, segments and three dispatches' sizes, 256 bytes of alignment each.
    let staged = input + params + segs + 6 * 256;
    (
        input.max(params).max(coords).max(pooled).max(segs),
        out.max(staged),
    )
}

fn fits(rows: usize, cols: usize, spec: &UnitSpec, cap: &Caps) -> bool {
    let (binding, out) = footprint(rows, cols, spec);
    binding <= cap.binding && out <= cap.buffer
}

/// Cuts a `rows` × `cols` block into units that fit `cap.binding`: whole rows when they fit,
/// else the widest column range that fits all rows, else fewer rows (a multiple of
/// `spec.align`). Units come row range by row range, columns in order.
pub fn units(rows: usize, cols: usize, spec: &UnitSpec, cap: &Caps) -> Result<Vec<Unit>, String> {
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    let align = spec.align.max(1);
    let mut h = rows;
    loop {
        // footprint is monotone in the width: binary search the widest that fits.
        let (mut lo, mut hi) = (0usize, cols);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(h, mid, spec, cap) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo > 0 {
            let mut out = Vec::new();
            for r0 in (0..rows).step_by(h) {
                for c0 in (0..cols).step_by(lo) {
                    out.push(Unit {
                        rows: r0..(r0 + h).min(rows),
                        cols: c0..(c0 + lo).min(cols),
                    });
                }
            }
            return Ok(out);
        }
        if h <= align {
            return Err(format!(
                "a binding of {} bytes cannot hold {h} rows of one column group (needs {} bytes); raise max_binding_bytes",
                cap.binding,
                footprint(h, 1, spec).0
            ));
        }
        h = ((h / 2) / align * align).max(align);
    }
}

/// A 2-D grid of workgroups covering `items` (each side at most `max_dim`); the kernels
/// linearise `workgroup_id.x + workgroup_id.y * x` and skip ids ≥ `items`.
pub fn grid(items: usize, max_dim: u32) -> Result<(u32, u32), String> {
    let max = max_dim.max(1) as usize;
    if items == 0 {
        return Ok((0, 0));
    }
    let x = items.min(max);
    let y = items.div_ceil(x);
    if y > max {
        return Err(format!(
            "{items} workgroups exceed a {max} × {max} dispatch grid"
        ));
    }
    Ok((x as u32, y as u32))
}

/// Bytes a region of `len` bytes takes in a buffer of consecutive regions that each start at a
/// multiple of `align` (the larger of the storage and uniform offset alignments): at least one
/// vec4 word, as bindings are, so an empty region still gets a distinct, aligned offset.
pub fn region(len: u64, align: u64) -> u64 {
    len.max(WORD).next_multiple_of(align.max(WORD))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS1: UnitSpec = UnitSpec {
        elem: 4,
        align: 1,
        partial: PASS1_PARTIAL,
        params: false,
        flat: None,
    };

    fn pass2(elem: usize, k1: usize, m: (u64, u64)) -> UnitSpec {
        UnitSpec {
            elem,
            align: k1,
            partial: PASS2_PARTIAL,
            params: true,
            flat: Some(m),
        }
    }

    fn covers(units: &[Unit], rows: usize, cols: usize) -> bool {
        let mut seen = vec![0u8; rows * cols];
        for u in units {
            for r in u.rows.clone() {
                for c in u.cols.clone() {
                    seen[r * cols + c] += 1;
                }
            }
        }
        seen.iter().all(|&s| s == 1)
    }

    #[test]
    fn pitch_is_whole_words() {
        assert_eq!(pitch(1, 4), 4);
        assert_eq!(pitch(4, 4), 4);
        assert_eq!(pitch(4810, 4), 4812);
        assert_eq!(pitch(1, 2), 8);
        assert_eq!(pitch(9, 2), 16);
        assert_eq!(pitch(1, 8), 4);
        assert_eq!(pitch(5, 8), 8);
        assert_eq!(groups(4810), 1203);
    }

    #[test]
    fn whole_block_when_it_fits() {
        let cap = Caps {
            binding: 128 << 20,
            buffer: 256 << 20,
            max_dim: 65535,
        };
        let u = units(256, 4810, &PASS1, &cap).unwrap();
        assert_eq!(
            u,
            vec![Unit {
                rows: 0..256,
                cols: 0..4810
            }]
        );
    }

    #[test]
    fn columns_split_under_a_small_binding() {
        let cap = Caps {
            binding: 4096,
            buffer: 1 << 30,
            max_dim: 65535,
        };
        let u = units(256, 4810, &PASS1, &cap).unwrap();
        assert!(covers(&u, 256, 4810));
        assert!(u.iter().all(|u| u.rows == (0..256)));
        assert!(u
            .iter()
            .all(|u| footprint(u.rows.len(), u.cols.len(), &PASS1).0 <= 4096));
    }

    #[test]
    fn rows_split_at_k1_multiples_when_columns_cannot() {
        let cap = Caps {
            binding: 2048,
            buffer: 1 << 30,
            max_dim: 65535,
        };
        let spec = pass2(4, 16, (1109, 1109));
        let u = units(256, 4810, &spec, &cap).unwrap();
        assert!(covers(&u, 256, 4810));
        assert!(u.iter().any(|u| u.rows.len() < 256));
        assert!(u.iter().all(|u| u.rows.start % 16 == 0));
        assert!(u
            .iter()
            .all(|u| footprint(u.rows.len(), u.cols.len(), &spec).0 <= 2048));
    }

    #[test]
    fn half_precision_counts_two_bytes() {
        let cap = Caps {
            binding: 1 << 20,
            buffer: 1 << 30,
            max_dim: 65535,
        };
        let spec = UnitSpec { elem: 2, ..PASS1 };
        let u4 = units(1024, 4096, &PASS1, &cap).unwrap();
        let u2 = units(1024, 4096, &spec, &cap).unwrap();
        assert!(u2.len() < u4.len());
        assert!(covers(&u2, 1024, 4096));
    }

    #[test]
    fn too_small_a_binding_is_an_error() {
        let cap = Caps {
            binding: 64,
            buffer: 1 << 30,
            max_dim: 65535,
        };
        assert!(units(64, 10, &pass2(4, 32, (8, 8)), &cap).is_err());
    }

    #[test]
    fn empty_blocks_have_no_units() {
        let cap = Caps {
            binding: 4096,
            buffer: 1 << 30,
            max_dim: 65535,
        };
        assert!(units(0, 10, &PASS1, &cap).unwrap().is_empty());
        assert!(units(10, 0, &PASS1, &cap).unwrap().is_empty());
    }

    #[test]
    fn chunks_are_aligned_and_cover() {
        for (rows, groups, align) in [(256, 1203, 16), (1000, 1, 25), (7, 3, 1), (4096, 10, 32)] {
            let (chunk, n) = chunking(rows, groups, align);
            assert_eq!(chunk % align, 0);
            assert!(chunk * n >= rows && chunk * (n - 1) < rows);
            assert!(n <= max_chunks(rows, align));
        }
        // Few columns: rows split into many chunks, but never below MIN_CHUNK_ROWS.
        assert_eq!(
            chunking(1 << 20, 1, 1),
            (MIN_CHUNK_ROWS, (1 << 20) / MIN_CHUNK_ROWS)
        );
        // Many columns: one chunk.
        assert_eq!(chunking(256, 1 << 20, 16), (256, 1));
    }

    #[test]
    fn grid_folds_into_two_dimensions() {
        assert_eq!(grid(10, 65535).unwrap(), (10, 1));
        assert_eq!(grid(65535, 65535).unwrap(), (65535, 1));
        assert_eq!(grid(65536, 65535).unwrap(), (65535, 2));
        let (x, y) = grid(1_000_000_000, 65535).unwrap();
        assert!(x as usize * y as usize >= 1_000_000_000 && y <= 65535);
        assert!(grid(usize::MAX / 2, 65535).is_err());
        assert_eq!(grid(0, 65535).unwrap(), (0, 0));
    }

    #[test]
    fn regions_respect_alignment() {
        // Consecutive regions of 100, 0 and 300 bytes start at 0, 256 and 512.
        let lens = [100, 0, 300];
        let mut at = 0;
        let mut offsets = Vec::new();
        for len in lens {
            offsets.push(at);
            at += region(len, 256);
        }
        assert_eq!(offsets, vec![0, 256, 512]);
        assert_eq!(at, 1024);
        // Below a word the word wins; an alignment below a word is a word.
        assert_eq!(region(0, 4), WORD);
        assert_eq!(region(17, 1), 32);
    }

    #[test]
    fn segments_bound() {
        // 10 consecutive indices hold at most ⌈9/4⌉ = 3 boundaries of blocks of 4.
        assert_eq!(max_segments(3, 10, 4, 4), 3 * 7);
        assert_eq!(max_segments(5, 1, 4, 4), 5);
        // The bound holds for every start.
        for start in 0..8u64 {
            for w in 1..12u64 {
                let b = (start + 1..start + w).filter(|i| i % 4 == 0).count();
                let worst = 1 + 2 * b; // both flattenings cut at the same boundaries
                assert!(worst <= max_segments(1, w as usize, 4, 4));
            }
        }
    }

    #[test]
    fn output_buffer_is_capped_separately() {
        // Few rows of 16-bit data: the partial states outweigh the input.
        let spec = pass2(2, 16, (1109, 1109));
        let (binding, out) = footprint(16, 1000, &spec);
        assert!(out > binding);
        let cap = Caps {
            binding,
            buffer: out - 1,
            max_dim: 65535,
        };
        let u = units(16, 1000, &spec, &cap).unwrap();
        assert!(u.len() > 1 && covers(&u, 16, 1000));
        assert!(u.iter().all(|u| footprint(16, u.cols.len(), &spec).1 < out));
    }
}
