"""Writes the shrunk failing cases of the mutation harness (tests/fuzz_inputs) as committed
regression inputs, byte by byte, without gradtail. Run from this folder:
python3 make_regressions.py

The first four made the earlier substring parser of .npy headers panic (slicing inside a
multi-byte character, an overflowing shape product) or print a multi-line error; the rest pin
the size limits and the errors that must name their file.
"""
import json
import os
import shutil
import struct
import zipfile

import numpy as np
from safetensors.numpy import save_file

os.makedirs("regressions", exist_ok=True)
DATA = np.arange(24, dtype="<f4").tobytes()  # (8, 3) float32


def npy(name, text, version=1, data=DATA):
    text = text.encode("utf-8") if isinstance(text, str) else text
    text += b"\n"
    if version == 1:
        pre = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text))
    else:
        pre = b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(text))
    with open(os.path.join("regressions", name), "wb") as f:
        f.write(pre + text + data)


# A multi-byte character where the byte-order mark of descr belongs (harness: descr -> 'é4').
npy("descr_multibyte.npy", "{'descr': 'é4', 'fortran_order': False, 'shape': (8, 3), }", 3)
# A combining mark at the start of the shape (harness: insert U+0301 into the header text).
npy("shape_multibyte.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': \u0301(8, 3), }", 3)
# A shape whose byte count overflows (harness: shape -> (18446744073709551615,)).
npy("shape_overflow.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615,), }")
# A header with a newline inside, once echoed into a two-line error (harness: key descr -> desc).
npy("header_newline.npy", "{'desc': '<f4',\n 'fortran_order': False, 'shape': (8, 3), }")
# A header length beyond the file, and one beyond any plausible header.
with open("regressions/header_past_end.npy", "wb") as f:
    f.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", 1000) + b"{'descr'")
with open("regressions/header_huge_in_range.npy", "wb") as f:
    f.write(b"\x93NUMPY\x03\x00" + struct.pack("<I", 70000) + b" " * 70000)

# Stacked safetensors with K = 0: the per-sample product 2^62 * 2^62 overflows although the
# total, 0, does not.
header = json.dumps({"g": {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}})
with open("regressions/zero_samples_overflow.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header.encode())
# Nothing gradtail can read: the error must still name the file.
save_file({"step": np.arange(8, dtype=np.int64)}, "regressions/only_integers.safetensors")

# An .npz whose stored member claims more bytes than the archive holds.
with zipfile.ZipFile("regressions/member_past_end.npz", "w", zipfile.ZIP_STORED) as z:
    with z.open("w.npy", "w") as m:
        np.save(m, np.arange(24, dtype="<f4").reshape(8, 3))
raw = bytearray(open("regressions/member_past_end.npz", "rb").read())
for sig, offs in ((b"PK\x03\x04", (18, 22)), (b"PK\x01\x02", (20, 24))):
    at = raw.index(sig)
    for o in offs:
        raw[at + o:at + o + 4] = struct.pack("<I", 1 << 20)
open("regressions/member_past_end.npz", "wb").write(bytes(raw))

# A step folder in which every file is unreadable (read with --skip-bad).
os.makedirs("regressions/steps_all_bad", exist_ok=True)
for k in range(4):
    open(f"regressions/steps_all_bad/step_{k}.safetensors", "wb").write(b"\x08" + b"\x00" * 7)

# A step folder whose first file holds only an integer tensor (found by the cargo-fuzz steps
# target): it once set the tensor list for every step and left nothing to analyse.
os.makedirs("regressions/steps_first_int", exist_ok=True)
shutil.copy("regressions/only_integers.safetensors", "regressions/steps_first_int/step_0.safetensors")
for k in range(1, 8):
    shutil.copy(f"steps/step_{k}.safetensors", f"regressions/steps_first_int/step_{k}.safetensors")
