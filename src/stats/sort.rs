//! Sorting f64 in IEEE total order (`f64::total_cmp`) through integer keys: the same order,
//! bit for bit, but the comparisons are plain u64 compares that the sort's small-sort networks
//! run branch-free. The per-coordinate fits sort every coordinate's K samples, which made the
//! comparator a tenth of their time.

/// The u64 whose unsigned order is the total order of the f64 with these bits: negative
/// values have every bit flipped, non-negative ones the sign bit set.
#[inline(always)]
pub fn key(bits: u64) -> u64 {
    // Without branches, so loops over keys vectorise: the mask is all ones for a negative
    // value, else the sign bit alone.
    bits ^ (((bits as i64) >> 63) as u64 | 1 << 63)
}

/// The f64 bits of a [`key`].
#[inline(always)]
pub fn unkey(k: u64) -> u64 {
    k ^ (((!k as i64) >> 63) as u64 | 1 << 63)
}

/// Sorts `v` ascending in total order, exactly as `v.sort_unstable_by(f64::total_cmp)` would
/// leave it (equal keys are equal bits, so the unstable order cannot show).
pub fn sort_total(v: &mut [f64]) {
    let bits: &mut [u64] = bytemuck::cast_slice_mut(v);
    bits.iter_mut().for_each(|b| *b = key(*b));
    bits.sort_unstable();
    bits.iter_mut().for_each(|b| *b = unkey(*b));
}

/// Columns [`sort_lanes`] sorts side by side.
pub const LANES: usize = 8;

/// Longest columns [`sort_lanes`] takes: its network grows as n log² n, a comparison sort as
/// n log n, and 1024 rows of eight keys (64 KiB) still sit in L2.
pub const LANES_MAX: usize = 1024;

/// Whether [`sort_lanes`] runs in vector registers on this processor (AVX-512). Elsewhere
/// its network runs a lane at a time and is slower than sorting each column by comparisons.
pub fn lanes_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The network of [`sort_lanes`] over `$rows`, with `$exchange(a, b)` leaving the lane-wise
/// minimum of two rows in `a` and the maximum in `b`.
macro_rules! bitonic {
    ($rows:expr, $exchange:path) => {{
        let rows: &mut [[u64; LANES]] = $rows;
        let n = rows.len();
        let mut size = 2;
        while size <= n {
            // Two sorted halves of each block, the second read backwards, form a bitonic
            // sequence; this step leaves every key of the first half below every key of the
            // second, each half bitonic.
            for block in rows.chunks_exact_mut(size) {
                let (lo, hi) = block.split_at_mut(size / 2);
                for (a, b) in lo.iter_mut().zip(hi.iter_mut().rev()) {
                    $exchange(a, b);
                }
            }
            // Half-cleaners sort each bitonic half.
            let mut stride = size / 4;
            while stride > 0 {
                for block in rows.chunks_exact_mut(2 * stride) {
                    let (lo, hi) = block.split_at_mut(stride);
                    for (a, b) in lo.iter_mut().zip(hi) {
                        $exchange(a, b);
                    }
                }
                stride /= 2;
            }
            size *= 2;
        }
    }};
}

/// Sorts eight columns of keys at once, column `j` being lane `j` of every row of `rows`,
/// whose length is a power of two at most [`LANES_MAX`] (pad a shorter column with
/// `u64::MAX`, which sorts last). Batcher's bitonic network, in the form whose every
/// compare-exchange puts the smaller key first (each merge opens by comparing each row of a
/// block's first half with its mirror in the second): the exchanges do not depend on the
/// data, so on AVX-512 each is one `vpminuq` and one `vpmaxuq` of two whole rows, with no
/// branch and no shuffle. A column of 256 takes 4,608 of them for eight columns, where a
/// comparison sort takes a few thousand data-dependent steps per column. Keys are equal only
/// for equal bits, so the result is the one any sort gives.
pub fn sort_lanes(rows: &mut [[u64; LANES]]) {
    let n = rows.len();
    assert!(n.is_power_of_two() && n <= LANES_MAX, "{n} rows");
    #[cfg(target_arch = "x86_64")]
    if lanes_fast() {
        // SAFETY: the processor supports AVX-512 F, checked just above.
        return unsafe { avx512::sort_lanes(rows) };
    }
    sort_lanes_portable(rows);
}

/// [`sort_lanes`] a lane at a time.
fn sort_lanes_portable(rows: &mut [[u64; LANES]]) {
    bitonic!(rows, exchange);
}

#[inline(always)]
fn exchange(a: &mut [u64; LANES], b: &mut [u64; LANES]) {
    let (x, y) = (*a, *b);
    for t in 0..LANES {
        a[t] = x[t].min(y[t]);
        b[t] = x[t].max(y[t]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::LANES;
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exchange(a: &mut [u64; LANES], b: &mut [u64; LANES]) {
        // SAFETY: each row is eight u64, read and written whole.
        unsafe {
            let x = _mm512_loadu_si512(a.as_ptr().cast());
            let y = _mm512_loadu_si512(b.as_ptr().cast());
            _mm512_storeu_si512(a.as_mut_ptr().cast(), _mm512_min_epu64(x, y));
            _mm512_storeu_si512(b.as_mut_ptr().cast(), _mm512_max_epu64(x, y));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn sort_lanes(rows: &mut [[u64; LANES]]) {
        bitonic!(rows, exchange);
    }
}

/// The values at positions `at` of `v` sorted in total order, as `sort_total` would place
/// them, by selection (linear time per position) instead of a whole sort; `v` is left
/// partly ordered.
pub fn select_total(v: &mut [f64], at: &[usize]) -> Vec<f64> {
    let bits: &mut [u64] = bytemuck::cast_slice_mut(v);
    bits.iter_mut().for_each(|b| *b = key(*b));
    let mut order: Vec<usize> = at.to_vec();
    order.sort_unstable();
    order.dedup();
    let mut found = Vec::with_capacity(order.len());
    select_keys(bits, 0, &order, &mut found);
    found.sort_unstable();
    bits.iter_mut().for_each(|b| *b = unkey(*b));
    at.iter()
        .map(|k| {
            let i = found
                .binary_search_by_key(k, |f| f.0)
                .expect("selected above");
            f64::from_bits(unkey(found[i].1))
        })
        .collect()
}

/// The keys at the positions `order` (ascending, distinct, counted from `base`, the position
/// of `bits[0]`), pushed to `found`. The middle position is selected first; the others then
/// lie wholly below or above it, so each side searches only its part: about log2 of the
/// positions' count passes over the values instead of one per position, and a position just
/// after a selected one is the minimum of its part.
fn select_keys(bits: &mut [u64], base: usize, order: &[usize], found: &mut Vec<(usize, u64)>) {
    let Some(&k) = order.get(order.len() / 2) else {
        return;
    };
    let (below, x, above) = bits.select_nth_unstable(k - base);
    found.push((k, *x));
    let (left, right) = order.split_at(order.len() / 2);
    select_keys(below, base, left, found);
    select_keys(above, k + 1, &right[1..], found);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marsaglia's xorshift64 from `seed`: reproducible test data without a dependency.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn selection_finds_what_sorting_places() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let specials = [0.0, -0.0, 1.5, -1.5, f64::INFINITY, f64::NEG_INFINITY];
        let v: Vec<f64> = (0..10_001)
            .map(|i| match next() % 4 {
                0 => specials[i % specials.len()],
                1 => (next() % 7) as f64,
                _ => f64::from_bits(next() >> 2) * if i % 2 == 0 { 1.0 } else { -1.0 },
            })
            .collect();
        let mut sorted = v.clone();
        sort_total(&mut sorted);
        let at = [9_000, 0, 10_000, 5_000, 5_000, 5_001, 250, 9_999];
        let mut work = v.clone();
        let got = select_total(&mut work, &at);
        for (k, g) in at.iter().zip(&got) {
            assert_eq!(g.to_bits(), sorted[*k].to_bits(), "position {k}");
        }
    }

    #[test]
    fn same_order_as_total_cmp() {
        let specials = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE / 4.0,
            -f64::MIN_POSITIVE / 4.0,
            f64::MAX,
            f64::MIN,
            1.0,
            -1.0,
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        for n in [0, 1, 2, 7, 20, 256, 1000] {
            let mut v: Vec<f64> = (0..n)
                .map(|i| match next() % 4 {
                    0 => specials[i % specials.len()],
                    1 => f64::from_bits(next()), // any bits: NaN payloads, subnormals
                    _ => (next() % 2001) as f64 / 100.0 - 10.0, // ties
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable_by(f64::total_cmp);
            sort_total(&mut v);
            let bits = |x: &[f64]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v), bits(&want), "n = {n}");
        }
    }

    #[test]
    fn lanes_sort_each_column_as_sort_total() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        for n in [1, 2, 4, 16, 128, 256, 1024] {
            // Ties, signed zeros, infinities and any bits, columns of every length up to n.
            let specials = [0.0, -0.0, 2.5, -2.5, f64::INFINITY, f64::NEG_INFINITY];
            let cols: Vec<Vec<f64>> = (0..LANES)
                .map(|j| {
                    let len = n - (next() as usize % n) * (j % 2);
                    (0..len)
                        .map(|i| match next() % 3 {
                            0 => specials[i % specials.len()],
                            1 => (next() % 9) as f64 - 4.0,
                            _ => f64::from_bits(next()),
                        })
                        .collect()
                })
                .collect();
            let mut rows = vec![[u64::MAX; LANES]; n];
            for (j, c) in cols.iter().enumerate() {
                for (i, x) in c.iter().enumerate() {
                    rows[i][j] = key(x.to_bits());
                }
            }
            let mut portable = rows.clone();
            sort_lanes(&mut rows);
            sort_lanes_portable(&mut portable);
            assert!(rows == portable);
            for (j, c) in cols.iter().enumerate() {
                let mut want = c.clone();
                sort_total(&mut want);
                let got: Vec<u64> = (0..c.len()).map(|i| unkey(rows[i][j])).collect();
                let want: Vec<u64> = want.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "n = {n}, column {j}");
                assert!(rows[c.len()..].iter().all(|r| r[j] == u64::MAX));
            }
        }
    }
}
