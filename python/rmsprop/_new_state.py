"""A step's new state buffers: creating them, and taking them back unless the step was applied.

Shared by every front-end that keeps state in dicts for the core. What makes a step atomic with
respect to asynchronous exceptions (KeyboardInterrupt from a signal handler): the core applies
the update and sets the step counts in one C call that runs no Python code, so whether a step
was applied is read from the counts, not from where an exception landed. No math.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._buffers import (
    aligned_full,
    is_float_array,
    is_sixteen_bit,
    new_state_buffer,
    state_layout,
)

# A buffer (or step count) added to a state for a step: (the state, its key, the step count
# the core sees there before the step).
Created = tuple[dict[str, Any], str, Any]


def buffer_keys(group: Mapping[str, Any]) -> list[str]:
    """The state buffers a group's options need (the core refuses a step that lacks one);
    square_avg_scale is made only for params whose state is 8-bit."""
    keys = ["square_avg", "square_avg_scale"]
    if group["momentum"] > 0:
        keys.append("momentum_buffer")
    if group["centered"]:
        keys.append("grad_avg")
    if group["master_weights"]:
        keys.append("master_param")
    return keys


def param_buffer_keys(group: Mapping[str, Any], param: np.ndarray) -> list[str]:
    """The state buffers a param of this group has after a step, in the order they are made:
    buffer_keys less square_avg_scale unless its state is 8-bit and master_param unless it
    is 16-bit (float32/float64 params are their own master copy)."""
    layout = state_layout(param, group.get("state_dtype", "float32"))
    return [
        key
        for key in buffer_keys(group)
        if (is_sixteen_bit(param.dtype) if key == "master_param" else key in layout)
    ]


def create_missing_state(
    param_groups: Sequence[Mapping[str, Any]],
    states: Sequence[dict[str, Any]],
    grads: Sequence[Any],
    created: list[Created],
) -> None:
    """Give every param stepped now the buffers its group's options need.

    Buffers appear on a param's first step, or when an option that needs one (centered,
    momentum) is switched on later. Each buffer is recorded in ``created`` (with the step
    count the core will see) before it enters the state, so that a refused or interrupted
    step can take back everything added, wherever it stopped.
    """
    start = 0
    for group in param_groups:
        params = group["params"]
        for offset, param in enumerate(params):
            state = states[start + offset]
            # A param that is not a float array gets nothing: the core then reports the
            # real problem with it.
            if grads[start + offset] is None or not is_float_array(param):
                continue
            for key in ("step", *param_buffer_keys(group, param)):
                if state.get(key) is not None:
                    continue
                value: Any
                if key == "step":
                    value = 0
                elif key == "master_param":
                    value = aligned_full(param, 0.0, np.float32)
                    np.copyto(value, param.astype(np.float32))
                else:
                    storage = group.get("state_dtype", "float32")
                    initial = group["initial_square_avg"]
                    value = new_state_buffer(param, key, storage, initial)
                created.append((state, key, 0 if key == "step" else state["step"]))
                state[key] = value
        start += len(params)


def take_back_unless_applied(created: Sequence[Created]) -> None:
    """Remove what a step created, unless the core applied the step.

    The core sets the step count of every stepped state together with the update, so a count
    that moved means the update is in the params and the new buffers must stay. Idempotent, so
    that it can run again if a second interrupt lands in it.
    """
    if any(state.get("step", 0) != before for state, _, before in created):
        return
    for state, key, _ in created:
        state.pop(key, None)
