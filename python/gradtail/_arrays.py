"""Turning user arrays into what the engines read: C-contiguous, native byte order, one of
float16, bfloat16 (as uint16 bits), float32 or float64."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np


class BF16Array:
    """A uint16 array of bfloat16 bit patterns (the upper 16 bits of float32), as made by
    :func:`bf16`."""

    __slots__ = ("bits",)

    def __init__(self, bits: np.ndarray) -> None:
        self.bits = bits

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.bits.shape


def bf16(bits: Any) -> BF16Array:
    """Marks an array of bfloat16 bit patterns (uint16 or int16, e.g. from
    ``tensor.view(torch.int16).numpy()``) as bfloat16 for :func:`gradtail.analyze` and
    :meth:`gradtail.Accumulator.observe`."""
    a = np.asarray(bits)
    if a.dtype not in (np.dtype(np.uint16), np.dtype(np.int16)) and a.dtype.name != "bfloat16":
        raise ValueError(
            f"bf16() takes the uint16 bit patterns of bfloat16 values, not {a.dtype}; "
            "pass float arrays to gradtail directly"
        )
    return BF16Array(a.view(np.uint16) if a.dtype.isnative else a.byteswap().view(np.uint16))


_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous, else a C-order copy (``np.ascontiguousarray`` would
    turn a 0-d array into a 1-d one)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def prepare(name: str, value: Any) -> Tuple[str, np.ndarray, bool]:
    """``(name, array, is_bf16)`` with a C-contiguous native-order array, or ValueError
    naming the tensor."""
    if not isinstance(name, str):
        raise ValueError(f"tensor names must be strings, not {type(name).__name__} ({name!r})")
    if isinstance(value, BF16Array):
        return name, _c_order(value.bits), True
    a = np.asarray(value)
    if a.dtype.name == "bfloat16":  # ml_dtypes.bfloat16
        return name, _c_order(a).view(np.uint16), True
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype not in _FLOATS:
        hint = (
            "; if these are bfloat16 bit patterns, wrap the array as gradtail.bf16(array)"
            if a.dtype in (np.dtype(np.uint16), np.dtype(np.int16))
            else "; convert it, e.g. array.astype(numpy.float32)"
        )
        raise ValueError(
            f"tensor {name}: dtype {a.dtype} is not a float type gradtail reads "
            f"(float16, bfloat16, float32, float64){hint}"
        )
    return name, _c_order(a), False


def kind(name: str, value: Any) -> Tuple[np.ndarray, str]:
    """One sample as a C-contiguous array and its safetensors dtype tag."""
    _, a, is_bf16 = prepare(name, value)
    tag = "BF16" if is_bf16 else {"float16": "F16", "float32": "F32", "float64": "F64"}[a.dtype.name]
    return a, tag
