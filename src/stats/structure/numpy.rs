//! numpy's reductions, reproduced operation for operation where a reference computed with
//! numpy must be matched to the last bits that the order of operations decides.

/// `np.sum` of a contiguous float64 array: numpy's pairwise summation
/// (numpy/_core/src/umath/loops_utils.h.src, `pairwise_sum`): blocks of at most 128 values
/// summed with 8 interleaved accumulators, larger arrays split in two at a multiple of 8.
pub fn pairwise_sum(a: &[f64]) -> f64 {
    pairwise_sum_by(a.len(), &|i| a[i])
}

/// `pairwise_sum` of the values `f(0), …, f(n − 1)`, computed on the fly.
pub fn pairwise_sum_by(n: usize, f: &impl Fn(usize) -> f64) -> f64 {
    pairwise_from(0, n, f)
}

fn pairwise_from(start: usize, n: usize, f: &impl Fn(usize) -> f64) -> f64 {
    const BLOCK: usize = 128;
    if n < 8 {
        let mut res = 0.0;
        for i in start..start + n {
            res += f(i);
        }
        res
    } else if n <= BLOCK {
        let mut r: [f64; 8] = std::array::from_fn(|j| f(start + j));
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += f(start + i + j);
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for i in start + full..start + n {
            res += f(i);
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_from(start, n2, f) + pairwise_from(start + n2, n - n2, f)
    }
}

/// `np.mean`: the pairwise sum divided by n.
pub fn mean(a: &[f64]) -> f64 {
    pairwise_sum(a) / a.len() as f64
}

/// `np.std` with ddof 0: sqrt(mean((a - mean(a))²)), both means pairwise.
pub fn std(a: &[f64]) -> f64 {
    let m = mean(a);
    let sq: Vec<f64> = a.iter().map(|&v| (v - m) * (v - m)).collect();
    (pairwise_sum(&sq) / a.len() as f64).sqrt()
}

/// `np.percentile(a, 100 q)` with the default "linear" method on ascending, NaN-free data:
/// virtual index (n − 1) q, then numpy's `_lerp`, which interpolates from the upper
/// neighbour when the fraction is at least 1/2 (numpy/lib/_function_base_impl.py).
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * q;
    let lo = (h.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// `np.median` of NaN-free data (sorted in place): the middle value, or the mean of the two
/// middle values.
pub fn median(values: &mut [f64]) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    values.sort_unstable_by(f64::total_cmp);
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_groups_like_numpy() {
        // 0.1 summed 1000 times: numpy gives 100.00000000000001 (pairwise), a plain loop
        // 99.9999999999986 (python3: np.sum(np.full(1000, 0.1)), sum([0.1]*1000)).
        let a = vec![0.1; 1000];
        assert_eq!(pairwise_sum(&a), 100.00000000000001);
        assert_eq!(a.iter().sum::<f64>(), 99.9999999999986);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile(x, [25, 75, 10, 90]) for x = [3, 1, 4, 1, 5, 9, 2, 6]:
        // [1.75, 5.25, 1.0, 6.8999999999999995]
        let mut x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        x.sort_unstable_by(f64::total_cmp);
        assert_eq!(percentile_sorted(&x, 0.25), 1.75);
        assert_eq!(percentile_sorted(&x, 0.75), 5.25);
        assert_eq!(percentile_sorted(&x, 0.10), 1.0);
        assert_eq!(percentile_sorted(&x, 0.90), 6.8999999999999995);
        assert_eq!(median(&mut x), 3.5);
        // np.std([1, 2, 3, 4.5]) = 1.2930100540985752
        assert_eq!(std(&[1.0, 2.0, 3.0, 4.5]), 1.2930100540985752);
    }
}
