#!/usr/bin/env python3
"""What a researcher runs instead of gradtail: scipy.stats along axis 0, plus a numpy port of
Simsekli et al.'s `alpha_estimator` (umutsimsekli/sgd_tail_index@cc4603f utils.py), per
coordinate (time blocks of K1) and flat (blocks of m consecutive entries), and the
log-moment alpha. Usage: scipy_pipeline.py STACK.npy  (prints timings and a few values)."""
import math
import sys
import time

import numpy as np
from scipy import stats


def largest_divisor_below_sqrt(n):
    m = 1
    for i in range(1, int(math.isqrt(n)) + 1):
        if n % i == 0:
            m = i
    return m


def alpha_estimator(m, x):
    """Original estimator on a 1-D array (d = 1): blocks of m consecutive entries."""
    n = len(x) // m
    y = x[: n * m].reshape(n, m).sum(1)
    eps = np.spacing(1)
    return 1 / ((np.log(np.abs(y) + eps).mean() - np.log(np.abs(x) + eps).mean()) / math.log(m))


def main(path):
    t0 = time.perf_counter()
    g = np.load(path)  # kept in its stored dtype: a float64 copy would not fit in memory
    k = g.shape[0]
    g = g.reshape(k, -1)
    t_load = time.perf_counter()
    var = g.var(0)
    skew = stats.skew(g, axis=0)
    kurt = stats.kurtosis(g, axis=0)
    jb = stats.jarque_bera(g, axis=0)
    k2 = stats.normaltest(g, axis=0)
    u = g - g.mean(0)
    del g
    # log-moment alpha (Ma & Nikias 1995) over nonzero centred values
    with np.errstate(divide="ignore", invalid="ignore"):
        lu = np.where(u != 0, np.log(np.abs(u)), np.nan)
        v = np.nanvar(lu, axis=0, ddof=1)
        alpha_logm = np.where(v > np.pi**2 / 8, (6 / np.pi**2 * v - 0.5) ** -0.5, 2.0)
        del v
        # per-coordinate block sums along time, K1 = largest divisor of K <= sqrt(K)
        k1 = largest_divisor_below_sqrt(k)
        y = u[: k // k1 * k1].reshape(k // k1, k1, -1).sum(1)
        ly = np.where(y != 0, np.log(np.abs(y)), np.nan)
        alpha_block = math.log(k1) / (np.nanmean(ly, 0) - np.nanmean(lu[: k // k1 * k1], 0))
    flat = u.reshape(-1)
    alpha_flat = alpha_estimator(largest_divisor_below_sqrt(flat.size), flat)
    t_end = time.perf_counter()
    print(f"load {t_load - t0:.2f} s, statistics {t_end - t_load:.2f} s, total {t_end - t0:.2f} s")
    print(f"median skew {np.nanmedian(skew):.4f} kurt {np.nanmedian(kurt):.4f} jb {np.nanmedian(jb.statistic):.4f} "
          f"k2 {np.nanmedian(k2.statistic):.4f} alpha_logm {np.nanmedian(alpha_logm):.4f} "
          f"alpha_block {np.nanmedian(alpha_block):.4f} alpha_flat {alpha_flat:.4f} var {np.median(var):.4g}")


if __name__ == "__main__":
    main(sys.argv[1])
