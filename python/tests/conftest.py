"""Shared helpers: the repository's digits data, the `gradtail` command line built by cargo
(the reference the bindings must equal), and a small safetensors reader and writer that do
not use gradtail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "tests" / "data" / "digits"


def digits() -> Dict[str, np.ndarray]:
    """The digits gradients: tensor name → (256, ...) float32, in the archive's order."""
    with np.load(DIGITS / "stacked.npz") as z:
        return {name: z[name] for name in z.files}


@pytest.fixture(scope="session")
def cli() -> str:
    """The `gradtail` binary: $GRADTAIL_CLI, else built (or found up to date) by cargo."""
    if os.environ.get("GRADTAIL_CLI"):
        return os.environ["GRADTAIL_CLI"]
    if shutil.which("cargo") is None:
        pytest.skip("no cargo to build the gradtail command line; set GRADTAIL_CLI")
    out = subprocess.run(
        ["cargo", "build", "--locked", "--bin", "gradtail", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            return msg["executable"]
    raise RuntimeError("cargo built no gradtail executable")


def run_cli(cli: str, inputs: List[Path], out: Path, *args: str) -> dict:
    """Runs `gradtail analyze` and returns its summary.json."""
    subprocess.run(
        [cli, "analyze", *map(str, inputs), "--out", str(out), "--quiet", *args],
        check=True, capture_output=True,
    )
    return json.loads((out / "summary.json").read_text())


def read_safetensors(path: Path) -> Dict[str, np.ndarray]:
    """Every F32/F64 tensor of a safetensors file."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    types = {"F32": "<f4", "F64": "<f8"}
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        data = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=types[e["dtype"]])
        out[name] = data.reshape(e["shape"])
    return out


def write_safetensors(path: Path, tensors: Dict[str, tuple]) -> None:
    """Writes name → (dtype tag, shape, raw little-endian bytes) as one safetensors file."""
    header, offset, blobs = {}, 0, []
    for name, (tag, shape, blob) in tensors.items():
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns, rounded to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
