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

from .._buffers import STATE_KEYS, aligned_full, is_sixteen_bit, new_state_buffer, state_layout
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
        storage = group["state_dtype"]
        if key not in state_layout(view, storage):
            return False  # square_avg_scale: 8-bit state only
        self.core[key] = new_state_buffer(view, key, storage, group["initial_square_avg"])
        return True

    def reset(self, state: dict[Any, Any]) -> None:
        """Forget this param's state: its next step starts afresh, as torch does."""
        self.core.clear()
        self.steps[()] = 0.0
        self.published = None
        self.ids = ()
        state.pop(self.param, None)

    def install(self, entry: Mapping[str, Any], state: dict[Any, Any], storage: str) -> None:
        """Copy a checked entry (see ``checked_entry``) into this slot's own buffers."""
        if not entry:
            self.reset(state)
            return
        layout = state_layout(self.view, storage)
        core: dict[str, Any] = {"step": entry["step"]}
        for key in STATE_KEYS:
            if key not in entry:
                continue
            shape, dtype = (self.view.shape, np.float32) if key == "master_param" else layout[key]
            buffer = self.core.get(key)
            if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
                buffer = aligned_full(np.empty(shape, np.uint8), 0.0, dtype)
            # copy_ casts float state (a 16-bit state saved by torch becomes our float32) and
            # brings values from any device; compact state was checked to have its exact dtype,
            # so its bits are copied unchanged. The buffer keeps its memory.
            state_tensor(buffer).copy_(entry[key])
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


def checked_entry(entry: Any, param: torch.Tensor, where: str, storage: str) -> dict[str, Any]:
    """A saved state entry for ``param`` under ``storage`` (its group's state_dtype), checked:
    raises naming ``where`` if it does not fit.

    With float state, accepts what torch.optim.RMSprop saves (16-bit state of 16-bit params, a
    float step tensor) and what ours saves. Compact state must have its exact dtype and shape
    (bfloat16 tensors, uint8 codes, float32 block scales), as ``state_dict()`` gives it.
    Returns ``{}`` for an empty entry.
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
    view = array_of(param)
    layout = state_layout(view, storage)
    for key in ("step", *(k for k in ("square_avg", "square_avg_scale") if k in layout)):
        if key not in entry:
            raise ValueError(f"{where} lacks {key!r}, which state_dtype={storage!r} state keeps")
    checked: dict[str, Any] = {"step": _step_count(entry["step"], where)}
    for key in STATE_KEYS:
        if key not in entry:
            continue
        if key == "master_param":
            if not is_sixteen_bit(view.dtype):
                raise ValueError(f"{where} has a master_param, but the param is {param.dtype}")
            shape, dtype = view.shape, np.dtype(np.float32)
        elif key in layout:
            shape, dtype = layout[key]
        else:
            raise ValueError(
                f"{where}[{key!r}] does not belong to state_dtype={storage!r} state of a param "
                f"of {param.numel()} elements; the entry was saved with another state_dtype"
            )
        value = _as_tensor(entry[key], f"{where}[{key!r}]")
        if value.device.type == "meta":
            raise ValueError(f"{where}[{key!r}] is on the meta device: it holds no values")
        if key == "square_avg_scale" or dtype not in (np.float32, np.float64):
            expected = _COMPACT_TORCH_DTYPES[(key == "square_avg_scale", np.dtype(dtype))]
            if value.dtype != expected or value.layout != torch.strided:
                raise TypeError(
                    f"{where}[{key!r}] is {value.dtype} ({value.layout}); with "
                    f"state_dtype={storage!r} it is a dense {expected} tensor, as "
                    "state_dict() saves it"
                )
        elif not value.is_floating_point() or value.layout != torch.strided:
            raise TypeError(
                f"{where}[{key!r}] must be a dense floating-point tensor, got {value.dtype} "
                f"({value.layout})"
            )
        if tuple(value.shape) != tuple(shape):
            needs = (
                f"it needs {tuple(shape)}, one scale per 256 elements"
                if key == "square_avg_scale"
                else f"the param has {tuple(param.shape)}"
            )
            raise ValueError(f"{where}[{key!r}] has shape {tuple(value.shape)}, {needs}")
        checked[key] = value
    return checked


#: The torch dtype of each compact state buffer, by (is it the scales, the core's NumPy dtype).
_COMPACT_TORCH_DTYPES = {
    (False, np.dtype(np.uint16)): torch.bfloat16,
    (False, np.dtype(np.uint8)): torch.uint8,
    (True, np.dtype(np.float32)): torch.float32,
}


def _as_tensor(value: Any, where: str) -> torch.Tensor:
    """A saved buffer as a tensor: NumPy arrays (a rmsprop.RMSprop state dict) are viewed,
    their uint16 bfloat16 bits as torch.bfloat16."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint16:
            value = torch.from_numpy(value.view(np.int16)).view(torch.bfloat16)
        elif value.dtype.kind == "f" or value.dtype == np.uint8:
            value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where} must be a tensor, got {type(value).__name__}")
    return value
