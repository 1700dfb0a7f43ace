"""The floor the CPU engine is measured against: one pass of ln|x| over a (K, ...) .npy stack
on one thread, in 16-row slabs, summed per coordinate (numpy's SIMD float32 log).

    OMP_NUM_THREADS=1 python3 benches/peers/numpy_ln_pass.py FILE.npy [--repeat 3]

Prints the best wall time of the repeats and the sum of the per-coordinate sums (so the work
cannot be skipped)."""

import argparse
import time

import numpy as np


def ln_pass(path: str) -> float:
    x = np.load(path, mmap_mode="r")
    x = x.reshape(x.shape[0], -1)
    acc = np.zeros(x.shape[1], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for r in range(0, x.shape[0], 16):
            acc += np.log(np.abs(x[r : r + 16])).sum(axis=0)
    return float(acc[np.isfinite(acc)].sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    best = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        total = ln_pass(args.path)
        best = min(best, time.perf_counter() - t)
    print(f"numpy ln pass: best of {args.repeat}: {best:.3f} s (checksum {total:.6e})")


if __name__ == "__main__":
    main()
