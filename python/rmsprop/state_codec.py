"""Reading compact optimizer state (``state_dtype="bfloat16"`` or ``"8bit"``) as float32.

The optimizer keeps bfloat16 state as uint16 bit patterns (so that run time and checkpoints need
NumPy only) and 8-bit ``square_avg`` as uint8 codes with one float32 scale per block of 256
elements. These functions decode them for inspection; the kernel never needs them.

Example:
    >>> import numpy as np
    >>> from rmsprop import RMSprop
    >>> from rmsprop.state_codec import float_state
    >>> w = np.zeros(5000, dtype=np.float32)
    >>> opt = RMSprop([w], lr=0.01, alpha=0.9, state_dtype="8bit")
    >>> opt.step([np.full(5000, 2.0, dtype=np.float32)])
    >>> opt.state[0]["square_avg"].dtype, float(float_state(opt.state[0])["square_avg"][0])
    (dtype('uint8'), 0.4000000059604645)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._buffers import EIGHT_BIT_BLOCK

#: Code c of 8-bit square_avg stands for r = float32 with bits (c + 761) << 20 (5 exponent and
#: 3 mantissa bits; c = 255 is 1.0, c = 0 is 1.125 * 2**-32), and v = r * scale of its block.
CODE_BIAS = 761


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (uint16), exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def decode_8bit(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 values of 8-bit ``square_avg`` codes with their per-block scales."""
    flat = np.asarray(codes, dtype=np.uint8).reshape(-1)
    ratios = ((flat.astype(np.uint32) + CODE_BIAS) << 20).view(np.float32)
    per_element = np.repeat(np.asarray(scales, dtype=np.float32), EIGHT_BIT_BLOCK)[: flat.size]
    return (ratios * per_element).reshape(np.shape(codes))


def float_state(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of one param's state (``opt.state[i]``) with every buffer as a float array."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "square_avg_scale":
            continue
        if key == "square_avg" and isinstance(value, np.ndarray) and value.dtype == np.uint8:
            out[key] = decode_8bit(value, entry["square_avg_scale"])
        elif isinstance(value, np.ndarray) and value.dtype == np.uint16:
            out[key] = bfloat16_bits_to_float32(value)
        elif isinstance(value, np.ndarray):
            out[key] = value.copy()
        else:
            out[key] = value
    return out
