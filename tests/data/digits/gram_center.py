"""Writes reference_gram_center.json: the covariance spectra of the digits gradients about an
exact centre, the full-batch gradient full.npy, per tensor and for the whole model; and
full_input_order.npy, that gradient in the tensor order of stacked.safetensors (its data
offsets), for `gradtail analyze stacked.safetensors --center full_input_order.npy`.

u = stack (float64) minus full.npy (float32 widened to float64), no sample-mean centring;
C's nonzero eigenvalues are those of G/(K - 1), G = U Uᵀ (K × K), numpy's eigvalsh,
descending, min(K, P) of them; trace = tr(G)/(K - 1); effective_rank = (Σλ)²/Σλ²
(Σλ² = ‖G/(K - 1)‖_F²). Run from this folder with numpy 2.x.
"""
import json

import numpy as np

x = np.load("stack.npy").astype(np.float64)
c = np.load("full.npy").astype(np.float64)
k = x.shape[0]
u = x - c
layout = json.load(open("layout.json"))["tensors"]


def spectrum(v):
    g = v @ v.T / (k - 1)
    lam = np.sort(np.linalg.eigvalsh(g))[::-1][: min(k, v.shape[1])]
    return {
        "eigenvalues": [float(e) for e in lam],
        "trace": float(np.trace(g)),
        "effective_rank": float(np.trace(g) ** 2 / np.sum(g * g)),
    }


header_len = int.from_bytes(open("stacked.safetensors", "rb").read(8), "little")
header = json.loads(open("stacked.safetensors", "rb").read(8 + header_len)[8:])
order = sorted((h["data_offsets"][0], n) for n, h in header.items() if n != "__metadata__")
by_name = {t["name"]: t for t in layout}
np.save(
    "full_input_order.npy",
    np.concatenate(
        [np.load("full.npy")[by_name[n]["offset"] : by_name[n]["offset"] + by_name[n]["size"]] for _, n in order]
    ),
)
out = {"tensors": {}, "model": spectrum(u)}
for t in layout:
    out["tensors"][t["name"]] = spectrum(u[:, t["offset"] : t["offset"] + t["size"]])
json.dump(out, open("reference_gram_center.json", "w"), indent=1)
print(np.__version__, {n: s["eigenvalues"][:2] for n, s in out["tensors"].items()})
