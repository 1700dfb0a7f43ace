"""Collecting samples one at a time on disk: each tensor's samples are appended to its own
stacked .safetensors file, whose header (written with room to spare) gets the final sample
count at finish; the files are then analysed as ``gradtail analyze FILE`` would."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import _native
from ._arrays import kind

if TYPE_CHECKING:
    from . import Result

# Room in a spill file's header for the final sample count and byte length.
_MAX_DIGITS = 20


def _header(name: str, tag: str, samples: int, shape: Tuple[int, ...], nbytes: int) -> bytes:
    entry = {name: {"dtype": tag, "shape": [samples, *shape], "data_offsets": [0, nbytes]}}
    return json.dumps(entry, separators=(",", ":")).encode()


def _remove(dir: str) -> None:
    shutil.rmtree(dir, ignore_errors=True)


class _Spill:
    """One tensor's spill file: an 8-byte header length, the header padded with spaces (the
    safetensors format allows it) to a fixed size, then the samples back to back."""

    def __init__(self, path: str, name: str, tag: str, shape: Tuple[int, ...], itemsize: int):
        self.path, self.name, self.tag, self.shape = path, name, tag, shape
        self.sample_bytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        widest = _header(name, tag, 10**_MAX_DIGITS - 1, shape, 10**_MAX_DIGITS - 1)
        self.header_len = -(-len(widest) // 8) * 8
        with open(path, "wb") as f:
            f.write(self._head(0))

    def _head(self, samples: int) -> bytes:
        text = _header(self.name, self.tag, samples, self.shape, samples * self.sample_bytes)
        return self.header_len.to_bytes(8, "little") + text.ljust(self.header_len, b" ")

    def append(self, a: np.ndarray) -> None:
        with open(self.path, "ab") as f:
            f.write(a.data if a.ndim else a.tobytes())

    def seal(self, samples: int) -> None:
        with open(self.path, "r+b") as f:
            f.write(self._head(samples))


class Accumulator:
    """Collects gradient samples one at a time with bounded memory, then analyses them.

    Each :meth:`observe` call takes one sample of every tensor (arrays without the sample
    axis) and appends it to a file in ``spill_dir`` (default: a temporary folder), so memory
    stays at one sample whatever K is. :meth:`finish` analyses the stack exactly as
    :func:`gradtail.analyze` would have analysed it in memory. The files are removed after a
    successful :meth:`finish`, by :meth:`close`, or when the accumulator is garbage collected.

    >>> acc = gradtail.Accumulator()
    >>> for step in range(256):
    ...     acc.observe({"w": grad_of_minibatch(step)})     # doctest: +SKIP
    >>> result = acc.finish(center="median")                # doctest: +SKIP
    """

    def __init__(self, spill_dir: Optional["os.PathLike[str] | str"] = None) -> None:
        if spill_dir is not None:
            os.makedirs(spill_dir, exist_ok=True)
        self._dir = tempfile.mkdtemp(
            prefix="gradtail-", dir=None if spill_dir is None else os.fspath(spill_dir)
        )
        self._cleanup = weakref.finalize(self, _remove, self._dir)
        self._spills: Dict[str, _Spill] = {}
        self._samples = 0

    @property
    def samples(self) -> int:
        """Samples observed so far."""
        return self._samples

    def __len__(self) -> int:
        return self._samples

    def _check_open(self) -> None:
        if not self._cleanup.alive:
            raise RuntimeError("this Accumulator is finished or closed; start a new one")

    def observe(self, sample: Mapping[str, Any]) -> None:
        """Adds one sample: tensor name → array (float16, float32, float64 or
        :func:`gradtail.bf16`) without the sample axis. Every sample must hold the same
        names, shapes and dtypes as the first; a mismatch raises ``ValueError`` naming the
        tensor, and that sample is not added."""
        self._check_open()
        if not isinstance(sample, Mapping) or not sample:
            raise ValueError("observe() takes a dict of tensor name → array (one sample)")
        arrays: List[Tuple[str, np.ndarray, str]] = []
        for name, value in sample.items():
            a, tag = kind(name, value)
            arrays.append((name, a, tag))
        n = self._samples
        if self._spills:
            for name, a, tag in arrays:
                spill = self._spills.get(name)
                if spill is None:
                    raise ValueError(
                        f"tensor {name}: not in the first sample; every sample must hold the same tensors"
                    )
                if a.shape != spill.shape:
                    raise ValueError(
                        f"tensor {name}: sample {n} has shape {a.shape} but the first sample had "
                        f"{spill.shape}"
                    )
                if tag != spill.tag:
                    raise ValueError(
                        f"tensor {name}: sample {n} is {tag} but the first sample was {spill.tag}"
                    )
            missing = [name for name in self._spills if name not in sample]
            if missing:
                raise ValueError(
                    f"tensor {missing[0]}: missing from sample {n}; every sample must hold the "
                    "same tensors as the first"
                )
        else:
            for i, (name, a, tag) in enumerate(arrays):
                path = os.path.join(self._dir, f"{i}.safetensors")
                self._spills[name] = _Spill(path, name, tag, a.shape, a.itemsize)
        for name, a, _ in arrays:
            self._spills[name].append(a)
        self._samples += 1

    def finish(
        self,
        *,
        center: "str | os.PathLike[str]" = "mean",
        block: Optional[int] = None,
        backend: str = "auto",
        batch_size: Optional[int] = None,
    ) -> "Result":
        """Analyses the samples observed, with :func:`gradtail.analyze`'s options, and
        removes the files. When the analysis raises, the samples are kept, so ``finish`` can
        be called again (e.g. with other options)."""
        from . import Result

        self._check_open()
        if not self._spills:
            raise ValueError("no sample observed: call observe() before finish()")
        for spill in self._spills.values():
            spill.seal(self._samples)
        paths = [spill.path for spill in self._spills.values()]
        native = _native.analyze_files(paths, os.fspath(center), block, backend, batch_size)
        self.close()
        return Result(native)

    def close(self) -> None:
        """Removes the spilled samples; the accumulator cannot be used afterwards."""
        self._cleanup()

    def __enter__(self) -> "Accumulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
