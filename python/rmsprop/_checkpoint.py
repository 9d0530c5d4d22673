"""Checkpoints of :class:`rmsprop.RMSprop`: the torch-layout snapshot and the checks a
snapshot passes before anything is loaded. No math.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._buffers import STATE_KEYS, aligned_copy, is_sixteen_bit, state_dtype, state_layout
from ._options import check_group_options

MAX_STEP = 2**62  # the core's bound on a step count


def pack_state_dict(
    param_groups: Sequence[Mapping[str, Any]], states: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The snapshot of ``RMSprop.state_dict``: torch's layout, copies of the state arrays."""
    groups = []
    index = 0
    for group in param_groups:
        packed = {key: value for key, value in group.items() if key != "params"}
        packed["params"] = list(range(index, index + len(group["params"])))
        index += len(group["params"])
        groups.append(packed)
    state = {
        index: {
            key: value.copy() if isinstance(value, np.ndarray) else value
            for key, value in entry.items()
        }
        for index, entry in enumerate(states)
        if entry
    }
    return {"state": state, "param_groups": groups}


def load_into(
    param_groups: list[dict[str, Any]], states: list[dict[str, Any]], state_dict: Mapping[str, Any]
) -> None:
    """Check ``state_dict`` against the optimizer's groups, then restore it in place.

    Nothing changes unless every group, shape, dtype, step and required buffer fits.
    """
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
        raise ValueError("state_dict must be a mapping with 'state' and 'param_groups'")
    saved_groups = list(state_dict["param_groups"])
    if len(saved_groups) != len(param_groups):
        raise ValueError(
            f"state_dict has {len(saved_groups)} param groups, this optimizer has "
            f"{len(param_groups)}"
        )
    new_groups = []
    saved_to_ours: dict[int, int] = {}
    ours = 0
    for k, (saved, group) in enumerate(zip(saved_groups, param_groups)):
        if not isinstance(saved, Mapping):
            raise ValueError(
                f"state_dict['param_groups'][{k}] must be a dict, got {type(saved).__name__}"
            )
        saved_ids = list(saved.get("params", ()))
        if len(saved_ids) != len(group["params"]):
            raise ValueError(
                f"param group {k} of state_dict has {len(saved_ids)} params, this "
                f"optimizer's has {len(group['params'])}"
            )
        for saved_id in saved_ids:
            saved_to_ours[int(saved_id)] = ours
            ours += 1
        saved_storage = saved.get("state_dtype", "float32")
        if saved_storage != group["state_dtype"]:
            raise ValueError(
                f"param group {k} of state_dict was saved with state_dtype={saved_storage!r}, "
                f"this optimizer's uses {group['state_dtype']!r}; its state cannot be loaded "
                f"here. Create the optimizer with state_dtype={saved_storage!r}"
            )
        merged = {**group, **{key: v for key, v in saved.items() if key != "params"}}
        merged["params"] = group["params"]
        check_group_options(merged, f"param group {k} of state_dict")
        new_groups.append(merged)
    group_of = [g for g in new_groups for _ in g["params"]]
    params = [p for g in new_groups for p in g["params"]]
    new_state: list[dict[str, Any]] = [{} for _ in params]
    saved_state = state_dict["state"]
    if not isinstance(saved_state, Mapping):
        raise ValueError(
            "state_dict['state'] must be a dict {param index: state}, got "
            f"{type(saved_state).__name__}"
        )
    for key, entry in saved_state.items():
        try:
            index = saved_to_ours[int(key)]
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"state_dict['state'] has an entry {key!r} for no param") from None
        new_state[index] = checked_saved_state(index, entry, params[index], group_of[index])
    # Everything is valid: from here on nothing can fail.
    for index, entry in enumerate(new_state):
        live = states[index]
        restored: dict[str, Any] = {}
        for key, value in entry.items():
            if key == "step":
                restored[key] = value
            elif key in live and live[key].shape == value.shape:
                np.copyto(live[key], value)
                restored[key] = live[key]
            else:
                restored[key] = aligned_copy(value)
        states[index] = restored
    for group, merged in zip(param_groups, new_groups):
        group.clear()
        group.update(merged)


def checked_saved_state(
    index: int, entry: Any, param: np.ndarray, group: Mapping[str, Any]
) -> dict[str, Any]:
    """One saved state entry, checked against its param and group; raises if it does not fit."""
    where = f"state_dict['state'][{index}]"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
    unknown = set(entry) - {"step", *STATE_KEYS}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    step = entry.get("step")
    if isinstance(step, np.ndarray) and step.shape == ():
        step = step.item()
    if isinstance(step, (float, np.floating)) and float(step).is_integer():
        step = int(step)  # torch keeps the step count in a float tensor
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"{where}['step'] must be an int, got {type(step).__name__}")
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"{where}['step'] must be in [0, 2**62], got {step}")
    layout = state_layout(param, group["state_dtype"])
    required = ["square_avg"]
    if "square_avg_scale" in layout:
        required.append("square_avg_scale")
    if group["momentum"] > 0:
        required.append("momentum_buffer")
    if group["centered"]:
        required.append("grad_avg")
    if group["master_weights"] and is_sixteen_bit(param.dtype):
        required.append("master_param")
    missing = [key for key in required if key not in entry]
    if missing:
        raise ValueError(
            f"{where} lacks {', '.join(missing)}, which this configuration (momentum="
            f"{group['momentum']}, centered={group['centered']}) needs; the state_dict comes "
            "from a differently configured optimizer"
        )
    checked: dict[str, Any] = {"step": int(step)}
    for key in STATE_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{where}['{key}'] must be a numpy.ndarray, got {type(value).__name__}")
        shape, dtype = (
            (param.shape, state_dtype(param))
            if key == "master_param"
            else layout.get(key, ((), None))
        )
        if dtype is None:
            raise ValueError(
                f"{where}['{key}'] does not belong to state_dtype={group['state_dtype']!r} "
                f"state of a param of {param.size} elements"
            )
        if value.dtype != dtype:
            raise TypeError(
                f"{where}['{key}'] has dtype {value.dtype}; with state_dtype="
                f"{group['state_dtype']!r} the state of this {param.dtype} param is {dtype}"
            )
        if value.shape != shape:
            raise ValueError(f"{where}['{key}'] has shape {value.shape}, expected {shape}")
        checked[key] = value
    return checked


# ------------------------------------------------------------------ pickle and repr
