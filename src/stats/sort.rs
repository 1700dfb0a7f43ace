//! Sorting f64 in IEEE total order (`f64::total_cmp`) through integer keys: the same order,
//! bit for bit, but the comparisons are plain u64 compares that the sort's small-sort networks
//! run branch-free. The per-coordinate fits sort every coordinate's K samples, which made the
//! comparator a tenth of their time.

/// The u64 whose unsigned order is the total order of the f64 with these bits: negative
/// values have every bit flipped, non-negative ones the sign bit set.
fn key(bits: u64) -> u64 {
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn unkey(k: u64) -> u64 {
    if k >> 63 == 1 {
        k & !(1 << 63)
    } else {
        !k
    }
}

/// Sorts `v` ascending in total order, exactly as `v.sort_unstable_by(f64::total_cmp)` would
/// leave it (equal keys are equal bits, so the unstable order cannot show).
pub fn sort_total(v: &mut [f64]) {
    let bits: &mut [u64] = bytemuck::cast_slice_mut(v);
    bits.iter_mut().for_each(|b| *b = key(*b));
    bits.sort_unstable();
    bits.iter_mut().for_each(|b| *b = unkey(*b));
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

    #[test]
    fn selection_finds_what_sorting_places() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
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
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
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
}
