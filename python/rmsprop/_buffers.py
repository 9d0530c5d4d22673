"""State buffers: cache-line-aligned allocation and the dtype rules of params and state.

Shared by every front-end. No math.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATE_ALIGNMENT = 64  # bytes: one cache line, the unit the threads split work by
STATE_KEYS = ("square_avg", "square_avg_scale", "momentum_buffer", "grad_avg", "master_param")

#: Storage of square_avg, grad_avg and momentum_buffer (SPEC §8), per param group.
STATE_DTYPES = ("float32", "bfloat16", "8bit")
EIGHT_BIT_BLOCK = 256  # elements sharing one float32 scale
EIGHT_BIT_MIN_ELEMENTS = 4096  # smaller tensors keep float32 state under "8bit"
_BITS16 = np.dtype(np.uint16)  # bfloat16 state is kept as its bit patterns: NumPy only


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


def state_layout(
    param: np.ndarray, state_dtype_name: str, tensor_size: int | None = None
) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Shape and dtype of each averaged state buffer of ``param`` under ``state_dtype_name``.

    bfloat16 buffers are uint16 bit patterns (view them with ``ml_dtypes.bfloat16`` or decode
    them with :mod:`rmsprop.state_codec`); "8bit" stores ``square_avg`` as uint8 codes plus a
    float32 ``square_avg_scale`` per block of 256 elements, for tensors of at least 4096
    elements (smaller ones keep float32 state). ``tensor_size`` is the whole tensor's element
    count when ``param`` is a piece of it (the MPI sharder's): the whole tensor decides.
    """
    full = state_dtype(param)
    if state_dtype_name == "float32" or full == np.float64:
        return {key: (param.shape, full) for key in ("square_avg", "momentum_buffer", "grad_avg")}
    whole = param.size if tensor_size is None else tensor_size
    if state_dtype_name == "8bit" and whole < EIGHT_BIT_MIN_ELEMENTS:
        return state_layout(param, "float32")
    layout: dict[str, tuple[tuple[int, ...], Any]] = {
        key: (param.shape, _BITS16) for key in ("square_avg", "momentum_buffer", "grad_avg")
    }
    if state_dtype_name == "8bit":
        blocks = -(-param.size // EIGHT_BIT_BLOCK)
        layout["square_avg"] = (param.shape, np.dtype(np.uint8))
        layout["square_avg_scale"] = ((blocks,), np.dtype(np.float32))
    return layout


def new_state_buffer(
    param: np.ndarray,
    key: str,
    state_dtype_name: str,
    initial_square_avg: float,
    tensor_size: int | None = None,
) -> np.ndarray:
    """A fresh state buffer: zeros, or ``initial_square_avg`` for square_avg in its storage.

    In bfloat16 the initial value is rounded to nearest; in 8 bits a constant block is exact
    (scale = the value, every code 255, which stands for 1). ``tensor_size``: as state_layout.
    """
    shape, dtype = state_layout(param, state_dtype_name, tensor_size)[key]
    like = np.empty(shape, dtype=np.uint8) if shape != param.shape else param
    buffer = aligned_full(like, 0.0, dtype)
    fill = float(initial_square_avg) if key in ("square_avg", "square_avg_scale") else 0.0
    if fill == 0.0:
        return buffer
    if dtype == _BITS16:
        buffer.fill(float32_to_bfloat16_bits(np.float32(fill)))
    elif key == "square_avg" and dtype == np.uint8:
        buffer.fill(255)
    else:
        buffer.fill(fill)
    return buffer


def float32_to_bfloat16_bits(values: Any) -> Any:
    """bfloat16 bit patterns of float32 values, rounded to nearest even (NaN stays NaN)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    return np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)
