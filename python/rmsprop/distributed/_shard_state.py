"""Optimizer state of shard pieces: which buffers a piece has, creating them, cutting a full
(single-process layout) state entry into a piece's part and putting pieces back together.

A piece's state is stored as its whole tensor's would be (SPEC §8): the whole tensor's size
decides between 8-bit and float32 state, and an 8-bit piece holds whole blocks of its tensor
(it starts on a multiple of 256 from the tensor's start), so its codes are the tensor's codes
[begin, end) and its scales the tensor's scales [begin / 256, ceil(end / 256)). No math, no MPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._buffers import (
    EIGHT_BIT_BLOCK,
    aligned_copy,
    aligned_full,
    new_state_buffer,
    state_layout,
)
from .._new_state import param_buffer_keys
from ._layout import CUT_UNIT, EIGHT_BIT_CUT_UNIT, Piece

SCALE = "square_avg_scale"


def is_eight_bit(group: Mapping[str, Any], param: np.ndarray) -> bool:
    """Does this whole param keep 8-bit state in this group (as rmsprop.RMSprop decides)?"""
    return SCALE in state_layout(param, group["state_dtype"])


def cut_unit(group: Mapping[str, Any], param: np.ndarray) -> int:
    """Shard cuts inside this param sit on multiples of this many elements from its start."""
    return EIGHT_BIT_CUT_UNIT if is_eight_bit(group, param) else CUT_UNIT


def create_missing(
    state: dict[str, Any], group: Mapping[str, Any], piece: np.ndarray, param: np.ndarray
) -> None:
    """Give a piece's state the buffers its group needs now, filled as rmsprop.RMSprop fills a
    new state (its whole tensor's size deciding the storage)."""
    for key in param_buffer_keys(group, param):
        if key in state:
            continue
        if key == "master_param":
            state[key] = aligned_full(piece, 0.0, np.float32)
            np.copyto(state[key], piece, casting="same_kind")
        else:
            state[key] = new_state_buffer(
                piece, key, group["state_dtype"], group["initial_square_avg"], param.size
            )


def _blocks(piece: Piece) -> slice:
    return slice(piece.begin // EIGHT_BIT_BLOCK, -(-piece.end // EIGHT_BIT_BLOCK))


def cut(entry: Mapping[str, Any], piece: Piece) -> dict[str, Any]:
    """A piece's part of a full state entry (checked already), as fresh aligned buffers."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "step":
            out[key] = value
        elif key == SCALE:
            out[key] = aligned_copy(value[_blocks(piece)])
        else:
            out[key] = aligned_copy(value.reshape(-1)[piece.begin : piece.end])
    return out


def empty_entry(storage: str, param: np.ndarray, keys: list[str], step: int) -> dict[str, Any]:
    """A full state entry of ``param`` (state_dtype ``storage``) to assemble pieces into."""
    layout = state_layout(param, storage)
    entry: dict[str, Any] = {"step": step}
    for key in keys:
        shape, dtype = (param.shape, np.float32) if key == "master_param" else layout[key]
        entry[key] = np.empty(shape, dtype=dtype)
    return entry


def put(entry: dict[str, Any], piece: Piece, buffers: Mapping[str, np.ndarray]) -> None:
    """Write a piece's buffers into their places of the full entry."""
    for key, values in buffers.items():
        if key == SCALE:
            target = entry[key][_blocks(piece)]
        else:
            target = entry[key].reshape(-1)[piece.begin : piece.end]
        np.copyto(target, values.reshape(-1), casting="no")  # never a silent conversion
