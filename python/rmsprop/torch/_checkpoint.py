"""load_state_dict of rmsprop.torch.RMSprop: check a whole state dict, then copy it in.

torch's own ``Optimizer.load_state_dict`` casts the float32 state of 16-bit params to 16 bits
and keeps references to the caller's tensors; this one checks everything first, then copies
values into the optimizer's own buffers. No math here.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from typing import TYPE_CHECKING, Any

from ._groups import check_torch_options
from ._state import Slot, checked_entry
from ._tensors import describe

if TYPE_CHECKING:
    from ._optimizer import RMSprop


def load_state_dict(optimizer: RMSprop, state_dict: Mapping[str, Any]) -> None:
    """Load ``state_dict`` into ``optimizer`` (see ``RMSprop.load_state_dict``)."""
    if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
        raise ValueError("state_dict must be a mapping with 'state' and 'param_groups'")
    state_dict = dict(state_dict)
    for pre_hook in optimizer._optimizer_load_state_dict_pre_hooks.values():
        result = pre_hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    optimizer._check_structure()
    groups = optimizer.param_groups
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(groups):
        raise ValueError(
            f"state_dict has {len(saved_groups)} param groups, this optimizer has {len(groups)}"
        )
    merged_groups = []
    slot_of: dict[Any, tuple[int, Slot, str]] = {}
    index = 0
    for k, (saved, group, cache) in enumerate(zip(saved_groups, groups, optimizer._groups)):
        if not isinstance(saved, Mapping) or "params" not in saved:
            raise ValueError(f"state_dict['param_groups'][{k}] must be a dict with 'params'")
        saved_ids = list(saved["params"])
        if len(saved_ids) != len(group["params"]):
            raise ValueError(
                f"param group {k} of state_dict has {len(saved_ids)} params, this optimizer's "
                f"has {len(group['params'])}"
            )
        # torch.optim.RMSprop saves no state_dtype: its state is float, as ours with "float32".
        saved_storage = saved.get("state_dtype", "float32")
        if saved_storage != group["state_dtype"]:
            origin = "" if "state_dtype" in saved else " (it has no state_dtype key: float state)"
            raise ValueError(
                f"param group {k} of state_dict was saved with state_dtype={saved_storage!r}"
                f"{origin}, this optimizer's uses state_dtype={group['state_dtype']!r}; its "
                "state cannot be loaded here. Create the optimizer with "
                f"state_dtype={saved_storage!r} to load it"
            )
        # Keys torch.optim.RMSprop does not save (ours) keep their current values.
        merged = {**group, **{key: deepcopy(v) for key, v in saved.items() if key != "params"}}
        merged["params"] = group["params"]
        check_torch_options(merged, f"param group {k} of state_dict")
        for saved_id, slot in zip(saved_ids, cache.slots):
            slot_of[saved_id] = (index, slot, merged["state_dtype"])
            index += 1
        merged_groups.append(merged)
    saved_state = state_dict["state"]
    if not isinstance(saved_state, Mapping):
        raise ValueError(f"state_dict['state'] must be a dict, got {type(saved_state).__name__}")
    entries: dict[int, dict[str, Any]] = {}
    for key, entry in saved_state.items():
        if key not in slot_of:
            raise ValueError(f"state_dict['state'] has an entry {key!r} that no param group lists")
        index, slot, storage = slot_of[key]
        where = f"state_dict['state'][{key!r}] (for {describe(index, optimizer._names)})"
        entries[index] = checked_entry(entry, slot.param, where, storage)
    # Everything fits: from here on nothing fails.
    index = 0
    for cache, merged in zip(optimizer._groups, merged_groups):
        for slot in cache.slots:
            slot.install(entries.get(index, {}), optimizer.state, merged["state_dtype"])
            index += 1
    for group, merged in zip(groups, merged_groups):
        group.clear()
        group.update(merged)
    optimizer._index()
    for post_hook in optimizer._optimizer_load_state_dict_post_hooks.values():
        post_hook(optimizer)
