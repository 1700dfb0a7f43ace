#!/usr/bin/env python3
"""The same statistics as gradtail, written the way a PyTorch user would, on CUDA: moments,
Jarque-Bera, log-moment alpha and block-sum alpha per coordinate, plus Simsekli's flat
estimator. For timing against `gradtail bench` / `gradtail analyze --backend gpu` in the same
session on the same GPU. Usage: torch_pipeline.py [--samples K] [--params P] [--repeat N]
(seeded data generated on the device) or torch_pipeline.py --npy FILE (end to end from a file).
Not yet run: this workplace had no GPU when it was written (see BENCHMARKS.md)."""
import argparse
import math
import time

import torch


def largest_divisor_below_sqrt(n):
    m = 1
    for i in range(1, math.isqrt(n) + 1):
        if n % i == 0:
            m = i
    return m


def stats(g):
    """g: (K, P) float32 on the device. Returns a dict of per-coordinate tensors."""
    k = g.shape[0]
    mean = g.mean(0)
    u = g - mean
    m2 = (u * u).mean(0)
    m3 = (u * u * u).mean(0)
    m4 = (u * u * u * u).mean(0)
    skew = m3 / m2.pow(1.5)
    kurt = m4 / (m2 * m2) - 3.0
    jb = k / 6.0 * (skew * skew + kurt * kurt / 4.0)
    jb_p = torch.exp(-jb / 2.0)
    nz = u != 0
    lu = torch.where(nz, u.abs().log(), torch.zeros_like(u))
    n = nz.sum(0)
    lmean = lu.sum(0) / n
    lvar = (torch.where(nz, (lu - lmean) ** 2, torch.zeros_like(u))).sum(0) / (n - 1)
    alpha_logm = torch.where(lvar > math.pi**2 / 8, (6 / math.pi**2 * lvar - 0.5).rsqrt(), torch.full_like(lvar, 2.0))
    k1 = largest_divisor_below_sqrt(k)
    if k1 < 4:
        k1 = math.isqrt(k)
    used = k // k1 * k1
    y = u[:used].reshape(k // k1, k1, -1).sum(1)
    ynz = y != 0
    ly = torch.where(ynz, y.abs().log(), torch.zeros_like(y)).sum(0) / ynz.sum(0)
    lx = torch.where(nz[:used], lu[:used], torch.zeros_like(lu[:used])).sum(0) / nz[:used].sum(0)
    alpha_block = math.log(k1) / (ly - lx)
    flat = u.reshape(-1)
    m = largest_divisor_below_sqrt(flat.numel())
    eps = 2.220446049250313e-16
    yf = flat.reshape(-1, m).sum(1)
    alpha_flat = 1.0 / (((yf.abs() + eps).log().mean() - (flat.abs() + eps).log().mean()) / math.log(m))
    return dict(mean=mean, var=m2, skew=skew, kurt=kurt, jb=jb, jb_p=jb_p, alpha_logm=alpha_logm,
                alpha_block=alpha_block, alpha_flat=alpha_flat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--params", type=int, default=4_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--npy")
    a = ap.parse_args()
    dev = "cuda"
    if a.npy:
        import numpy as np
        t0 = time.perf_counter()
        arr = np.load(a.npy)
        g = torch.from_numpy(arr.reshape(arr.shape[0], -1)).to(dev)
        s = stats(g)
        torch.cuda.synchronize()
        print(f"end to end from {a.npy}: {time.perf_counter() - t0:.3f} s, alpha_flat {float(s['alpha_flat']):.4f}")
        return
    gen = torch.Generator(device=dev).manual_seed(1)
    # SaS(1.7) by Chambers-Mallows-Stuck, on the device.
    v = (torch.rand(a.samples, a.params, device=dev, generator=gen) - 0.5) * math.pi
    w = -torch.log1p(-torch.rand(a.samples, a.params, device=dev, generator=gen))
    al = 1.7
    g = (torch.sin(al * v) / torch.cos(v).pow(1 / al) * (torch.cos((1 - al) * v) / w).pow((1 - al) / al)).float()
    del v, w
    stats(g)
    torch.cuda.synchronize()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        s = stats(g)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    gb = g.numel() * 4 / 1e9
    med = times[len(times) // 2]
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}: {a.samples} x {a.params} float32 ({gb:.2f} GB), "
          f"median {med:.4f} s [{times[0]:.4f}, {times[-1]:.4f}], {gb / med:.1f} GB/s of input, "
          f"median alpha_block {float(s['alpha_block'].nanmedian()):.4f}")


if __name__ == "__main__":
    main()
