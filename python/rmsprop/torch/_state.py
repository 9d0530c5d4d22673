"""Per-param bookkeeping of the torch adapter: the core's buffers and the tensors users see.

A slot pairs one torch param with its NumPy view, the core's state dict (NumPy buffers and an
int step) and the dict published in ``optimizer.state[param]`` (torch tensors sharing those
buffers' memory). Installing saved state into a slot checks it first. No math here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._buffers import STATE_KEYS, aligned_full, is_sixteen_bit, state_dtype
from .._checkpoint import MAX_STEP
from ._tensors import array_of, state_tensor

#: The order torch.optim.RMSprop creates its state keys in; ours follow.
STATE_ORDER = ("step", *STATE_KEYS)


class Slot:
    """One param: its view, the core's state and what ``optimizer.state[param]`` shows."""

    __slots__ = ("core", "ids", "param", "ptr", "published", "steps", "steps_tensor", "view")

    def __init__(
        self, param: torch.Tensor, view: np.ndarray, steps: np.ndarray, steps_tensor: torch.Tensor
    ) -> None:
        self.param = param
        self.view = view
        self.ptr = param.data_ptr()
        self.core: dict[str, Any] = {}
        self.published: dict[str, Any] | None = None
        self.ids: tuple[int, ...] = ()
        # This param's step count lives at steps[k] of its group's flat float32 step array
        # (steps_tensor is its 0-d torch view, shown as state["step"]).
        self.steps = steps
        self.steps_tensor = steps_tensor

    def publish(self, state: dict[Any, Any], mapping: dict[str, Any] | None = None) -> None:
        """(Re)write ``optimizer.state[param]`` from the core buffers, in torch's key order."""
        published = {} if mapping is None else mapping
        for key in list(published):
            if key in STATE_ORDER:
                del published[key]
        published["step"] = self.steps_tensor
        for key in STATE_KEYS:
            if key in self.core:
                published[key] = state_tensor(self.core[key])
        state[self.param] = published
        self.published = published
        self.ids = ids_of(published)

    def new_buffer(self, key: str, group: Mapping[str, Any]) -> bool:
        """Create the core buffer ``key`` as a first step does; False if this param needs none."""
        view = self.view
        if key == "master_param":
            if not is_sixteen_bit(view.dtype):
                return False  # float32/float64 params are their own master copy
            self.core[key] = aligned_full(view, 0.0, np.float32)
            np.copyto(self.core[key], view.astype(np.float32))
            return True
        fill = group["initial_square_avg"] if key == "square_avg" else 0.0
        self.core[key] = aligned_full(view, fill, state_dtype(view))
        return True

    def reset(self, state: dict[Any, Any]) -> None:
        """Forget this param's state: its next step starts afresh, as torch does."""
        self.core.clear()
        self.steps[()] = 0.0
        self.published = None
        self.ids = ()
        state.pop(self.param, None)

    def install(self, entry: Mapping[str, Any], state: dict[Any, Any]) -> None:
        """Copy a checked entry (see ``checked_entry``) into this slot's own buffers."""
        if not entry:
            self.reset(state)
            return
        core: dict[str, Any] = {"step": entry["step"]}
        for key in STATE_KEYS:
            if key not in entry:
                continue
            buffer = self.core.get(key)
            if buffer is None or buffer.shape != self.view.shape:
                dtype = np.float32 if key == "master_param" else state_dtype(self.view)
                buffer = aligned_full(self.view, 0.0, dtype)
            # copy_ casts (a 16-bit state saved by torch becomes our float32) and brings
            # values from any device; the buffer keeps its memory.
            torch.from_numpy(buffer).copy_(entry[key])
            core[key] = buffer
        self.core.clear()
        self.core.update(core)
        self.steps[()] = float(entry["step"])
        self.publish(state, None)


def ids_of(mapping: Mapping[str, Any]) -> tuple[int, ...]:
    """What tells that a published dict was edited: the identity of every value, in order.

    Checked on every step, so it must be cheap (a replaced, added or removed entry changes it).
    """
    return tuple(map(id, mapping.values()))


def _step_count(value: Any, where: str) -> int:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ValueError(f"{where}['step'] must be a one-element tensor, got {value.shape}")
        value = value.item()
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}['step'] must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and float(value).is_integer() and 0 <= value <= MAX_STEP):
        raise ValueError(f"{where}['step'] must be a whole number in [0, 2**62], got {value}")
    return int(value)


def checked_entry(entry: Any, param: torch.Tensor, where: str) -> dict[str, Any]:
    """A saved state entry for ``param``, checked: raises naming ``where`` if it does not fit.

    Accepts what torch.optim.RMSprop saves (16-bit state of 16-bit params, a float step
    tensor) and what ours saves; returns ``{}`` for an empty entry.
    """
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
    unknown = [key for key in entry if key not in STATE_ORDER]
    if unknown:
        raise ValueError(
            f"{where} has keys {sorted(map(str, unknown))} that RMSprop does not keep; was it "
            "saved by another optimizer?"
        )
    if not entry:
        return {}
    for key in ("step", "square_avg"):
        if key not in entry:
            raise ValueError(f"{where} lacks {key!r}")
    checked: dict[str, Any] = {"step": _step_count(entry["step"], where)}
    for key in STATE_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value) if value.dtype.kind == "f" else value
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}[{key!r}] must be a tensor, got {type(value).__name__}")
        if not value.is_floating_point() or value.layout != torch.strided:
            raise TypeError(
                f"{where}[{key!r}] must be a dense floating-point tensor, got {value.dtype} "
                f"({value.layout})"
            )
        if value.device.type == "meta":
            raise ValueError(f"{where}[{key!r}] is on the meta device: it holds no values")
        if value.shape != param.shape:
            raise ValueError(
                f"{where}[{key!r}] has shape {tuple(value.shape)}, the param has "
                f"{tuple(param.shape)}"
            )
        if key == "master_param" and not is_sixteen_bit(array_of(param).dtype):
            raise ValueError(f"{where} has a master_param, but the param is {param.dtype}")
        checked[key] = value
    return checked
