"""Writes the seed inputs of the mutation harness (tests/fuzz_inputs.rs) with numpy and
safetensors, independently of gradtail. Run from this folder: python3 make_seeds.py

Each seed is a small valid input of one kind gradtail reads; the harness mutates them.
"""
import json
import os

import numpy as np
from numpy.lib import format as npf
from safetensors.numpy import save_file

rng = np.random.default_rng(16)
K = 8  # samples: enough for gradtail's minimum of 4 and two time blocks
expected = {}  # input -> tensor -> shape, dtype and a position-weighted checksum


def note(input_name, tensor, arr):
    """Records what a correct reader must see: sum over sample k and C-order coordinate j of
    x[k, j] * ((k + 1) + (j + 1) / 16), in float64, so swapped axes or bytes change it."""
    x = np.asarray(arr, dtype=np.float64).reshape(arr.shape[0], -1)
    k = np.arange(x.shape[0])[:, None]
    j = np.arange(x.shape[1])[None, :]
    expected.setdefault(input_name, {})[tensor] = {
        "shape": list(arr.shape),
        "dtype": {2: "f16", 4: "f32", 8: "f64"}[arr.dtype.itemsize],
        "checksum": float((x * ((k + 1) + (j + 1) / 16)).sum()),
    }


def npy(path, arr, version, fortran=False):
    arr = np.asfortranarray(arr) if fortran else np.ascontiguousarray(arr)
    note(path, path[:-4], arr)
    with open(path, "wb") as f:
        npf.write_array(f, arr, version=version)


# .npy in each header version, dtype, byte order and memory order gradtail reads.
npy("v1_f4.npy", rng.standard_normal((K, 3)).astype("<f4"), (1, 0))
npy("v2_f8_big_fortran.npy", rng.standard_normal((K, 2, 3)).astype(">f8"), (2, 0), fortran=True)
npy("v3_f2.npy", rng.standard_normal((K, 5)).astype("<f2"), (3, 0))

# .npz as numpy.savez writes it (stored members), and a compressed one gradtail refuses.
members = {"w": rng.standard_normal((K, 3)).astype("<f4"),
           "b": rng.standard_normal((K, 2)).astype("<f8")}
np.savez("savez.npz", **members)
for name, arr in members.items():
    note("savez.npz", name, arr)
np.savez_compressed("compressed.npz", w=rng.standard_normal((K, 3)).astype("<f4"))

# One stacked safetensors file (leading sample axis), with an integer tensor gradtail skips.
stacked = {
    "layer.weight": rng.standard_normal((K, 2, 3)).astype(np.float32),
    "layer.bias": rng.standard_normal((K, 3)).astype(np.float16),
}
save_file({**stacked, "step": np.arange(K, dtype=np.int64)}, "stacked.safetensors")
for name, arr in stacked.items():
    note("stacked.safetensors", name, arr)

# A folder of per-step files, one sample each.
os.makedirs("steps", exist_ok=True)
steps = {"w": rng.standard_normal((K, 2, 3)).astype(np.float32),
         "b": rng.standard_normal((K, 3)).astype(np.float64)}
for k in range(K):
    save_file({name: arr[k] for name, arr in steps.items()}, f"steps/step_{k}.safetensors")
for name, arr in steps.items():
    note("steps", name, arr)

with open("expected.json", "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
