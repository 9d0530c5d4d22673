"""Checkpoints of :class:`rmsprop.RMSprop`: the torch-layout snapshot and the checks a
snapshot passes before anything is loaded. No math.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._buffers import STATE_KEYS, aligned_full, state_dtype, state_layout
from ._new_state import param_buffer_keys
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

    Nothing changes unless every group, index, shape, dtype, step and required buffer fits;
    every buffer the restore writes is chosen (or allocated) before the first write, so that
    nothing can fail once writing has begun.
    """
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
        raise ValueError("state_dict must be a mapping with 'state' and 'param_groups'")
    refuse_torch_tensors(state_dict)
    saved_groups = state_dict["param_groups"]
    if isinstance(saved_groups, (str, bytes, Mapping)) or not isinstance(saved_groups, Sequence):
        raise ValueError(
            f"state_dict['param_groups'] must be a list of dicts, got {type(saved_groups).__name__}"
        )
    if len(saved_groups) != len(param_groups):
        raise ValueError(
            f"state_dict has {len(saved_groups)} param groups, this optimizer has "
            f"{len(param_groups)}"
        )
    new_groups = []
    saved_to_ours: dict[int, int] = {}
    ours = 0
    for k, (saved, group) in enumerate(zip(saved_groups, param_groups)):
        where = f"state_dict['param_groups'][{k}]"
        if not isinstance(saved, Mapping):
            raise ValueError(f"{where} must be a dict, got {type(saved).__name__}")
        saved_ids = saved.get("params", ())
        if isinstance(saved_ids, (str, bytes)) or not isinstance(saved_ids, Sequence):
            raise ValueError(
                f"{where}['params'] must be a list of param indices, got {type(saved_ids).__name__}"
            )
        if len(saved_ids) != len(group["params"]):
            raise ValueError(
                f"param group {k} of state_dict has {len(saved_ids)} params, this "
                f"optimizer's has {len(group['params'])}"
            )
        for j, saved_id in enumerate(saved_ids):
            index = param_index(saved_id, f"{where}['params'][{j}]")
            if index in saved_to_ours:
                raise ValueError(
                    f"{where}['params'][{j}] is param index {index} again; every index must "
                    "appear once in state_dict['param_groups']"
                )
            saved_to_ours[index] = ours
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
    key_of: dict[int, Any] = {}
    for key, entry in saved_state.items():
        index = param_index(key, f"the key {key!r} of state_dict['state']")
        if index not in saved_to_ours:
            raise ValueError(
                f"state_dict['state'] has an entry {key!r} for no param (its param groups "
                f"hold the indices {sorted(saved_to_ours)})"
            )
        if index in key_of:
            raise ValueError(
                f"state_dict['state'] has two entries for param {index}: the keys "
                f"{key_of[index]!r} and {key!r}"
            )
        key_of[index] = key
        ours = saved_to_ours[index]
        new_state[ours] = checked_saved_state(ours, entry, params[ours], group_of[ours])
    targets = restore_targets(states, new_state, params)
    # Everything is valid and every target exists: from here on nothing can fail.
    for entry, target in zip(new_state, targets):
        for key, buffer in target.items():
            if key != "step":
                np.copyto(buffer, entry[key])
    for index, target in enumerate(targets):
        states[index] = target
    for group, merged in zip(param_groups, new_groups):
        group.clear()
        group.update(merged)


def _is_tensor(value: Any) -> bool:
    """A torch.Tensor, recognized without importing torch."""
    return (
        not isinstance(value, np.ndarray)
        and type(value).__module__.split(".")[0] == "torch"
        and hasattr(value, "numpy")
        and hasattr(value, "detach")
    )


def refuse_torch_tensors(state_dict: Mapping[str, Any]) -> None:
    """Refuse an unconverted torch state dict with the recipe that converts it."""
    places: list[tuple[str, Any]] = []
    saved_state = state_dict["state"]
    if isinstance(saved_state, Mapping):
        for key, entry in saved_state.items():
            if isinstance(entry, Mapping):
                places += [(f"state_dict['state'][{key!r}][{n!r}]", v) for n, v in entry.items()]
    groups = state_dict["param_groups"]
    if isinstance(groups, Sequence):
        for k, group in enumerate(groups):
            if isinstance(group, Mapping):
                places += [(f"state_dict['param_groups'][{k}][{n!r}]", v) for n, v in group.items()]
    for where, value in places:
        if _is_tensor(value):
            raise TypeError(
                f"{where} is a torch.Tensor: this is a torch state dict, which holds tensors. "
                "Convert it to NumPy first: sd['state'] = {k: {n: v.item() if n == 'step' else "
                "v.numpy() for n, v in s.items()} for k, s in sd['state'].items()} (and "
                "float(v) for tensor hyper-parameters), or load it into rmsprop.torch.RMSprop, "
                "which takes torch state dicts as they are"
            )


def param_index(value: Any, where: str) -> int:
    """A saved param index: an int >= 0, or its decimal string (JSON turns keys into strings)."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if is_int and value >= 0:
        return int(value)
    raise ValueError(
        f"{where} must be a param index: an int >= 0 (or its decimal string, as JSON makes "
        f"it), got {value!r}"
    )


_DECIMAL = re.compile(r"[0-9]+")


def _bounds(array: np.ndarray) -> tuple[int, int]:
    """The bytes an array spans, [start, end)."""
    start = end = int(array.__array_interface__["data"][0])
    for extent, stride in zip(array.shape, array.strides):
        reach = (extent - 1) * stride
        start, end = (start + reach, end) if reach < 0 else (start, end + reach)
    return start, end + array.itemsize


def restore_targets(
    states: Sequence[Any], new_state: Sequence[Mapping[str, Any]], params: Sequence[np.ndarray]
) -> list[dict[str, Any]]:
    """The state each param gets: its live buffers where they can take the saved values.

    A live buffer is reused (so views of it stay valid) only if it is a writeable, aligned,
    C-contiguous array of the saved shape and dtype that shares no memory with a param or
    another buffer; anything else (None, read-only, replaced by the user...) gets a fresh
    aligned copy, allocated here, before anything is written.
    """
    targets: list[dict[str, Any]] = []
    reused: list[tuple[int, int, int, str]] = []
    for index, entry in enumerate(new_state):
        live = states[index] if index < len(states) else None
        target: dict[str, Any] = {}
        for key, value in entry.items():
            buffer = live.get(key) if isinstance(live, dict) else None
            if key == "step":
                target[key] = value
            elif (
                isinstance(buffer, np.ndarray)
                and buffer.dtype == value.dtype
                and buffer.shape == value.shape
                and buffer.flags.c_contiguous
                and buffer.flags.aligned
                and buffer.flags.writeable
            ):
                target[key] = buffer
                if buffer.size:
                    reused.append((*_bounds(buffer), index, key))
            else:
                target[key] = aligned_full(value, 0.0)
        targets.append(target)
    # Byte ranges of the params, the saved arrays and the reused buffers, swept in order: a
    # reused buffer that overlaps any other would write into it (or into a value not yet
    # copied), so it is replaced too. Fresh buffers overlap nothing.
    spans = [(*_bounds(p), -1, "") for p in params if p.size] + reused
    spans += [
        (*_bounds(value), -1, "")
        for entry in new_state
        for value in entry.values()
        if isinstance(value, np.ndarray) and value.size
    ]
    spans.sort()
    end_so_far, last = -1, None
    for start, end, index, key in spans:
        if start < end_so_far:
            for clash in (last, (start, end, index, key)):
                if clash is not None and clash[2] >= 0:
                    old = targets[clash[2]][clash[3]]
                    targets[clash[2]][clash[3]] = aligned_full(old, 0.0)
        if end > end_so_far:
            end_so_far, last = end, (start, end, index, key)
    return targets


def checked_saved_state(
    index: int, entry: Any, param: np.ndarray, group: Mapping[str, Any]
) -> dict[str, Any]:
    """One saved state entry, checked against its param and group; raises if it does not fit."""
    where = f"state_dict['state'][{index}]"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
    unknown = set(entry) - {"step", *STATE_KEYS}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(map(repr, unknown))}")
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
    missing = [key for key in param_buffer_keys(group, param) if key not in entry]
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


# ------------------------------------------------------------------ pickle


def copy_states(states: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The state list with every array copied (what a pickle of the optimizer holds)."""
    return [
        {
            key: value.copy() if isinstance(value, np.ndarray) else value
            for key, value in entry.items()
        }
        for entry in states
    ]


def _reference_counts(arrays: list[np.ndarray]) -> list[int]:
    return [sys.getrefcount(array) for array in arrays]


def detached_params(param_groups: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the params that nothing but the optimizer's groups holds."""
    params = [p for group in param_groups for p in group["params"]]
    # What a count is for an array nobody else holds: measured, not assumed, because
    # interpreters count the references of a call's own frame differently.
    alone = _reference_counts([np.empty(0)])[0]
    # A param nobody else holds is in two lists: its group's and ``params``.
    return [k for k, count in enumerate(_reference_counts(params)) if count <= alone + 1]
