//! Pure planning of blocks: which rows × columns each read covers, under a byte budget.

use std::ops::Range;

/// Plans blocks for a (K, P) tensor of `elem` bytes per value.
///
/// Row ranges start at multiples of `k1` and are `k1`-multiples long (except the last, which
/// ends at K), so a block-sum window never spans two blocks. Columns are split only when
/// `k1` rows of all P columns exceed `max_bytes`. Blocks come row-chunk by row-chunk, so each
/// coordinate sees its samples in order. `whole_columns` reads all K rows of as many
/// coordinates as fit (cheap for Fortran order; lets both passes share one read).
pub fn blocks(
    samples: usize,
    coords: usize,
    k1: usize,
    elem: usize,
    max_bytes: usize,
    whole_columns: bool,
) -> Vec<(Range<usize>, Range<usize>)> {
    let k1 = k1.max(1);
    let budget = (max_bytes / elem).max(1);
    let mut out = Vec::new();
    if whole_columns {
        let width = (budget / samples).clamp(1, coords);
        for c0 in (0..coords).step_by(width) {
            out.push((0..samples, c0..(c0 + width).min(coords)));
        }
        return out;
    }
    let (rows, width) = if k1 * coords <= budget {
        let rows = (budget / coords / k1 * k1).max(k1);
        (rows, coords)
    } else {
        (k1, (budget / k1).max(1))
    };
    for r0 in (0..samples).step_by(rows) {
        let r1 = (r0 + rows).min(samples);
        for c0 in (0..coords).step_by(width) {
            out.push((r0..r1, c0..(c0 + width).min(coords)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(plan: &[(Range<usize>, Range<usize>)], k: usize, p: usize) -> bool {
        let mut seen = vec![0u8; k * p];
        for (r, c) in plan {
            for i in r.clone() {
                for j in c.clone() {
                    seen[i * p + j] += 1;
                }
            }
        }
        seen.iter().all(|&s| s == 1)
    }

    #[test]
    fn whole_rows_when_they_fit() {
        let plan = blocks(256, 100, 16, 4, 16 * 100 * 4 * 3, false);
        assert_eq!(plan[0], (0..48, 0..100));
        assert!(covers(&plan, 256, 100));
        assert!(plan.iter().all(|(r, _)| r.start % 16 == 0));
    }

    #[test]
    fn columns_split_when_k1_rows_do_not_fit() {
        let plan = blocks(37, 1000, 6, 4, 6 * 4 * 100, false);
        assert!(plan
            .iter()
            .all(|(r, c)| r.len() * c.len() * 4 <= 6 * 4 * 100));
        assert!(plan.iter().all(|(r, _)| r.start % 6 == 0));
        assert!(covers(&plan, 37, 1000));
    }

    #[test]
    fn fortran_reads_whole_columns() {
        let plan = blocks(10, 7, 3, 8, 8 * 10 * 2, true);
        assert!(plan.iter().all(|(r, c)| *r == (0..10) && c.len() <= 2));
        assert!(covers(&plan, 10, 7));
    }

    #[test]
    fn tiny_budget_still_progresses() {
        let plan = blocks(5, 3, 4, 8, 1, false);
        assert!(covers(&plan, 5, 3));
    }
}
