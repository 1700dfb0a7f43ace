#!/usr/bin/env python3
"""The same statistics as gradtail, written the way a PyTorch user would, on CUDA: moments,
Jarque-Bera, log-moment alpha and block-sum alpha per coordinate, plus Simsekli's flat
estimator. For timing against `gradtail bench` / `gradtail analyze --backend gpu` in the same
session on the same GPU. Usage: torch_pipeline.py [--samples K] [--params P] [--repeat N]
[--dtype float32|bfloat16] [--json FILE] (seeded data generated on the device; times the
statistics on data already on the device, then again from pinned host memory with the upload
included, as `gradtail bench` times its GPU engine) or torch_pipeline.py --npy FILE (end to
end from a file). bfloat16 data is widened to float32 inside the timed region.
Not yet run on a GPU: this workplace had none when it was written (see BENCHMARKS.md)."""
import argparse
import json
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


def timed(fn, repeat):
    """fn() once as a warm-up, then `repeat` timed calls, each ended by a device sync."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        s = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    return s, dict(median=med, min=times[0], max=times[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--params", type=int, default=4_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--json", help="write the figures here as JSON")
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
    dtype = getattr(torch, a.dtype)
    gen = torch.Generator(device=dev).manual_seed(1)
    # SaS(1.7) by Chambers-Mallows-Stuck, on the device.
    v = (torch.rand(a.samples, a.params, device=dev, generator=gen) - 0.5) * math.pi
    w = -torch.log1p(-torch.rand(a.samples, a.params, device=dev, generator=gen))
    al = 1.7
    g = (torch.sin(al * v) / torch.cos(v).pow(1 / al) * (torch.cos((1 - al) * v) / w).pow((1 - al) / al)).to(dtype)
    del v, w
    torch.cuda.empty_cache()
    s, resident = timed(lambda: stats(g.float()), a.repeat)
    summary = {k: float(s[k].nanmedian()) for k in ("alpha_block", "alpha_logm")}
    summary["alpha_flat"] = float(s["alpha_flat"])
    del s
    # The same statistics from pinned host memory: the upload is part of each run.
    host = g.cpu().pin_memory()
    del g
    torch.cuda.empty_cache()
    _, from_host = timed(lambda: stats(host.to(dev, non_blocking=True).float()), a.repeat)
    gb = host.numel() * host.element_size() / 1e9
    out = dict(
        tool="torch", torch=torch.__version__, cuda=torch.version.cuda, device=torch.cuda.get_device_name(),
        samples=a.samples, params=a.params, dtype=a.dtype, input_bytes=host.numel() * host.element_size(),
        repeat=a.repeat, device_resident_s=resident, from_host_s=from_host,
        peak_device_bytes=torch.cuda.max_memory_allocated(), medians=summary,
    )
    print(f"torch {torch.__version__} on {out['device']}: {a.samples} x {a.params} {a.dtype} ({gb:.2f} GB), "
          f"on the device: median {resident['median']:.4f} s [{resident['min']:.4f}, {resident['max']:.4f}], "
          f"{gb / resident['median']:.1f} GB/s of input; from pinned host memory: median {from_host['median']:.4f} s; "
          f"median alpha_block {summary['alpha_block']:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
