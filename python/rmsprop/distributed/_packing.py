"""Params laid out the way the sharder moves them, so that each rank's range is one message.
No MPI, no math.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._buffers import aligned_full, is_float_array
from ._layout import Layout


def aligned_bytes(nbytes: int) -> np.ndarray:
    """A zeroed, cache-line aligned byte buffer (allocated as the state is: huge pages)."""
    return aligned_full(np.broadcast_to(np.uint8(0), (nbytes,)), 0.0)


def _address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _root(array: np.ndarray) -> Any:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def packed_copies(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Copies of ``arrays`` that are views of one cache-line aligned buffer.

    Each array starts on a 64-byte boundary, in order: the layout in which ShardedRMSprop
    moves params. When every rank's params are such copies (in the optimizer's param order),
    each step gathers a rank's whole range as one message instead of one per tensor piece
    (about 2x faster for a 160-tensor model at 2 ranks); any other params work too.

    Args:
        arrays: float32, float64, float16 or bfloat16 arrays, in the optimizer's param order.

    Returns:
        New, C-contiguous, writeable arrays with the same shapes, dtypes and values.

    Example:
        >>> import numpy as np
        >>> from rmsprop.distributed import packed_copies
        >>> a, b = packed_copies([np.ones(3), np.zeros((2, 2), np.float32)])
        >>> a.ctypes.data % 64 == 0 and b.ctypes.data - a.ctypes.data == 64
        True
    """
    arrays = list(arrays)
    for i, a in enumerate(arrays):
        if not is_float_array(a):
            raise TypeError(f"arrays[{i}] must be a float NumPy array, got {type(a).__name__}")
    layout = Layout([a.size for a in arrays], [a.itemsize for a in arrays], 1)
    flat = aligned_bytes(layout.nbytes)
    out = []
    for a, start in zip(arrays, layout.byte_starts):
        view = flat[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
        np.copyto(view, a)
        out.append(view)
    return out


def flat_view(arrays: Sequence[np.ndarray], layout: Layout) -> np.ndarray | None:
    """The byte buffer the arrays are views of, if they sit exactly where ``layout`` puts them
    (as ``packed_copies`` makes them); else None."""
    placed = [(a, s) for a, s in zip(arrays, layout.byte_starts) if a.size]
    if not placed:
        return None
    root = _root(placed[0][0])
    if not (root.flags.c_contiguous and root.flags.writeable):
        return None
    base = _address(placed[0][0]) - placed[0][1]
    for array, start in placed:  # empty arrays have no address to check
        if _root(array) is not root or _address(array) != base + start:
            return None
    offset = base - _address(root)
    if offset < 0 or offset + layout.nbytes > root.nbytes:
        return None
    flat: np.ndarray = root.reshape(-1).view(np.uint8)[offset : offset + layout.nbytes]
    return flat
