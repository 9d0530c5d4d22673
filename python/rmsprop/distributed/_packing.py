"""Arrays laid out the way the sharder moves them, so params are gathered with no copy. No MPI."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._buffers import is_float_array
from ._layout import BYTE_ALIGN, Layout


def aligned_bytes(nbytes: int) -> np.ndarray:
    """A zeroed, cache-line aligned uint8 buffer (through NumPy: huge pages when large)."""
    raw = np.zeros(nbytes + BYTE_ALIGN, dtype=np.uint8)
    offset = -raw.__array_interface__["data"][0] % BYTE_ALIGN
    out: np.ndarray = raw[offset : offset + nbytes]
    return out


def packed_copies(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Copies of ``arrays`` that are views of one cache-line aligned buffer.

    Each array starts on a 64-byte boundary, in order: the layout ShardedRMSprop gathers
    params into. Use these copies as the model's params and every step gathers the other
    ranks' updates straight into them (one MPI call, no staging buffer, no copies); any other
    params work too, through a staging buffer. Gradients laid out the same way (write them into
    ``packed_copies`` of zeros with ``out=``) are also sent without a packing copy.

    Args:
        arrays: float32, float64, float16 or bfloat16 arrays, in the optimizer's param order.

    Returns:
        New, C-contiguous, writeable arrays with the same shapes, dtypes and values.

    Example:
        >>> import numpy as np
        >>> from rmsprop.distributed import packed_copies
        >>> a, b = packed_copies([np.ones(3), np.zeros((2, 2), np.float32)])
        >>> a.base is not None and a.ctypes.data % 64 == 0 and b.ctypes.data % 64 == 0
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
