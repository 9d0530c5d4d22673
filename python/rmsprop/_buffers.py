"""State buffers: cache-line-aligned allocation and the dtype rules of params and state.

Shared by every front-end. No math.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATE_ALIGNMENT = 64  # bytes: one cache line, the unit the threads split work by
STATE_KEYS = ("square_avg", "momentum_buffer", "grad_avg", "master_param")


def aligned_full(like: np.ndarray, fill: float, dtype: Any = None) -> np.ndarray:
    """A state buffer shaped like ``like``, cache-line aligned, filled with ``fill``.

    Allocated through NumPy so that large buffers get the transparent huge pages NumPy asks
    for, like the user's own arrays.
    """
    dtype = np.dtype(like.dtype if dtype is None else dtype)
    nbytes = like.size * dtype.itemsize
    raw = np.zeros(nbytes + STATE_ALIGNMENT, dtype=np.uint8)
    offset = -raw.__array_interface__["data"][0] % STATE_ALIGNMENT
    buffer: np.ndarray = raw[offset : offset + nbytes].view(dtype).reshape(like.shape)
    if fill != 0.0:
        buffer.fill(fill)
    return buffer


def aligned_copy(array: np.ndarray) -> np.ndarray:
    out = aligned_full(array, 0.0)
    np.copyto(out, array)
    return out


def is_sixteen_bit(dtype: np.dtype) -> bool:
    return dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16")


def is_float_array(obj: Any) -> bool:
    """float32/float64/float16 or ml_dtypes.bfloat16: what the core accepts as a param."""
    return isinstance(obj, np.ndarray) and (
        (obj.dtype.kind == "f" and obj.dtype.itemsize in (2, 4, 8)) or is_sixteen_bit(obj.dtype)
    )


def state_dtype(param: np.ndarray) -> np.dtype:
    """Float32 state for 16-bit params (their math runs in float32), else the param's dtype."""
    return np.dtype(np.float32) if is_sixteen_bit(param.dtype) else param.dtype
