"""Param groups of the torch adapter: torch's own keys and their checks, and the per-group
cache the step walks (slots, the core's list of param views, flat step counters). No math.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._options import check_group_options
from ._state import Slot

#: torch.optim.RMSprop's own group keys, in its order; ours follow them.
TORCH_KEYS = (
    "lr",
    "momentum",
    "alpha",
    "eps",
    "centered",
    "weight_decay",
    "capturable",
    "foreach",
    "maximize",
    "differentiable",
)


def check_torch_options(group: dict[str, Any], where: str) -> None:
    """The torch-only keys: what a CPU step over the core cannot honour is refused."""
    if group.get("capturable"):
        raise ValueError(
            f"{where}: capturable=True is for CUDA graph capture; rmsprop.torch.RMSprop steps "
            "CPU tensors and cannot be captured. Pass capturable=False"
        )
    if group.get("differentiable"):
        raise ValueError(
            f"{where}: differentiable=True needs autograd through the step; the fused core "
            "updates memory outside autograd. Use torch.optim.RMSprop for that"
        )
    check_group_options(core_options(group), where)
    storage = group["state_dtype"]
    if storage != "float32":
        for k, param in enumerate(group.get("params", ())):
            if isinstance(param, torch.Tensor) and param.dtype == torch.float64:
                raise TypeError(
                    f"{where}: params[{k}] is float64, whose state stays float64; "
                    f"state_dtype={storage!r} is for float32, float16 and bfloat16 params "
                    "(put float64 params in a group with state_dtype='float32')"
                )


def core_options(group: dict[str, Any]) -> dict[str, Any]:
    """The group as the core takes it: torch allows 0-d tensors as hyper-parameters (a tensor
    lr), the core takes real numbers only, so those are read out with .item()."""
    out = dict(group)
    for key, value in group.items():
        if isinstance(value, torch.Tensor) and key != "params":
            out[key] = value.item()
    return out


class Group:
    """A param group's slots, the core's view list and its flat step counters."""

    __slots__ = ("params", "slots", "steps", "views")

    def __init__(self, params: list[torch.Tensor], slots: list[Slot], steps: np.ndarray) -> None:
        self.params = params
        self.slots = slots
        self.steps = steps
        self.views = [slot.view for slot in slots]
