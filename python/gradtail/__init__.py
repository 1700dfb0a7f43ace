"""gradtail: how heavy are the tails of stochastic gradient noise?

Analyse K gradient samples per tensor (minibatch gradients taken at fixed weights) for their
tail index α and Gaussianity, per coordinate and per tensor, on the GPU or the CPU: the same
engines and results as the ``gradtail analyze`` command line.

>>> import numpy as np, gradtail
>>> grads = {"w": np.random.default_rng(0).standard_t(3, size=(256, 1000)).astype(np.float32)}
>>> result = gradtail.analyze(grads)
>>> result.tensors[0]["alpha_time_blocked"]      # doctest: +SKIP
>>> result.save("out")                           # report.html, summary.json, ...

Arrays are float16, float32 or float64 numpy arrays of shape (K, ...), samples on axis 0.
bfloat16 values are passed as their uint16 bit patterns wrapped in :func:`bf16`, or as
``ml_dtypes.bfloat16`` arrays. :class:`Accumulator` collects samples one at a time on disk;
``gradtail.torch`` records the gradients of a PyTorch model.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _native
from ._accumulator import Accumulator
from ._arrays import BF16Array, bf16

__version__: str = _native.__version__
__all__ = ["analyze", "Accumulator", "Result", "bf16", "BF16Array", "__version__"]

ArrayLike = Union[np.ndarray, BF16Array]
PathLike = Union[str, "os.PathLike[str]"]


class Result:
    """The outcome of :func:`analyze` or :meth:`Accumulator.finish`.

    Attributes:
        tensors: one dict per tensor, the records of ``summary.json``'s ``tensors`` list
            (undefined estimates are ``None``, as in the file).
        model: the whole-model record (``summary.json``'s ``model``).
        summary: all of ``summary.json`` as a dict (inputs, options, engine, timings).
    """

    def __init__(self, native: "_native.NativeResult") -> None:
        self._native = native
        self.summary: Dict[str, Any] = json.loads(native.summary_json())
        self.tensors: List[Dict[str, Any]] = self.summary["tensors"]
        self.model: Dict[str, Any] = self.summary["model"]
        self._coords: Optional[Dict[str, Dict[str, np.ndarray]]] = None

    @property
    def coords(self) -> Dict[str, Dict[str, np.ndarray]]:
        """Tensor name → statistic name → float64 array shaped like one sample of the tensor
        (the maps of ``coords.safetensors``)."""
        if self._coords is None:
            self._coords = self._native.coords()
        return self._coords

    def save(self, dir: PathLike) -> str:
        """Writes what ``gradtail analyze --out DIR`` writes (report.html, summary.json,
        tensors.csv, coords.safetensors) into ``dir``, created if needed; returns its path."""
        path = os.fspath(dir)
        self._native.save(path)
        return path

    def __repr__(self) -> str:
        return self._native.table()


def analyze(
    arrays: Union[Mapping[str, ArrayLike], ArrayLike],
    *,
    center: Union[str, "os.PathLike[str]"] = "mean",
    block: Optional[int] = None,
    backend: str = "auto",
    batch_size: Optional[int] = None,
) -> Result:
    """Analyses gradient samples held in memory, as ``gradtail analyze`` analyses files.

    Args:
        arrays: tensor name → array of shape (K, ...) with the K samples on axis 0 (every
            tensor the same K), or one such array (named ``"tensor"``). float16, float32,
            float64, or bfloat16 (see :func:`bf16`). The arrays are read in place (copied
            only when not C-contiguous or not in native byte order); do not modify them from
            another thread while the analysis runs.
        center: ``"mean"`` (per-coordinate sample mean), ``"median"``, ``"none"`` (the data
            are already noise), or the path of an .npy file with one value per coordinate of
            all tensors in order (e.g. the full-batch gradient).
        block: block-sum length K1 (default: the largest divisor of K not above √K).
        backend: ``"auto"`` (a GPU when there is one, else the CPU), ``"cpu"`` or ``"gpu"``.
        batch_size: the minibatch size B behind each sample; adds the gradient noise scale
            B·tr(C)/|G|² (McCandlish et al. 2018) to the model and each tensor.

    Raises:
        ValueError: unusable input (too few samples, a dtype gradtail does not read, tensors
            with different K) or a bad option; the message is the command line's.
        OSError: a file (the ``center`` file) cannot be read.
        RuntimeError: the GPU failed (``backend="gpu"``).
    """
    from ._arrays import prepare

    if isinstance(arrays, Mapping):
        items = list(arrays.items())
    else:
        items = [("tensor", arrays)]
    if not items:
        raise ValueError("no arrays given: pass a dict of tensor name → array of shape (K, ...)")
    prepared: List[Tuple[str, np.ndarray, bool]] = [prepare(name, a) for name, a in items]
    native = _native.analyze_arrays(prepared, os.fspath(center), block, backend, batch_size)
    return Result(native)
