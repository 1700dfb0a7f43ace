"""Writes powerlaw_scan.npy: powerlaw's own xmin scan of |u_0| over fc0.weight.

u = stack (float64) minus its sample mean over the 256 rows; |u_0| is the first row's
magnitudes over the 4096 coordinates of fc0.weight, zeros dropped. powerlaw.Fit's
xmin_fitting_results give one column per candidate xmin; rows: xmin, D, alpha, valid (1/0).
Run from this folder with powerlaw 2.0.0, numpy 2.4.
"""
import json
import warnings

import numpy as np
import powerlaw

warnings.filterwarnings("ignore")
x = np.load("stack.npy").astype(np.float64)
u = x - x.mean(0)
t = json.load(open("layout.json"))["tensors"][0]
assert t["name"] == "fc0.weight"
a = np.abs(u[0, t["offset"] : t["offset"] + t["size"]])
fit = powerlaw.Fit(a[a > 0], verbose=0)
r = fit.xmin_fitting_results
np.save("powerlaw_scan.npy", np.stack([r["xmins"], r["distances"], r["alphas"], r["valid_fits"].astype(float)]))
print(powerlaw.__version__, fit.xmin, fit.alpha, fit.D, fit.n_tail)
