"""Checks of the sharder's inputs: everything the core would refuse, refused before the agreement
step, so that no rank can fail once data moves. No math, no MPI.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .._options import GROUP_KEYS, check_group_options
from ..functional import rmsprop_step
from ._packing import _address


def check_params(params: Sequence[np.ndarray]) -> None:
    """What the core would refuse at the first step, refused now, before any rank moves on."""
    spans = []
    for i, p in enumerate(params):
        if not p.dtype.isnative:
            raise TypeError(
                f"params[{i}] has non-native byte order; pass p.astype(p.dtype.newbyteorder('='))"
            )
        if not p.flags.c_contiguous:
            raise ValueError(f"params[{i}] is not C-contiguous; pass np.ascontiguousarray(p)")
        if not p.flags.writeable:
            raise ValueError(f"params[{i}] is read-only; the optimizer updates params in place")
        if p.nbytes:
            spans.append((_address(p), _address(p) + p.nbytes, i))
    spans.sort()
    for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"params[{i}] and params[{j}] share memory; pass separate arrays")


def check_state_dtypes(groups: Sequence[Mapping[str, Any]], fixed: Sequence[str]) -> None:
    """A group's state_dtype is fixed at construction: the shard cuts follow it (8-bit state
    needs cuts on its blocks) and the state was created in it."""
    for k, (group, storage) in enumerate(zip(groups, fixed)):
        if group.get("state_dtype") != storage:
            raise ValueError(
                f"param group {k}: state_dtype changed from {storage!r} to "
                f"{group.get('state_dtype')!r} after ShardedRMSprop was created; its shards and "
                f"state follow the constructor's. Set it back to {storage!r}, or create a new "
                "ShardedRMSprop with the new state_dtype"
            )


class GradChecks:
    """Per-step checks of the gradients and hyper-parameters against fixed params."""

    def __init__(self, params: Sequence[np.ndarray], state_dtypes: Sequence[str]) -> None:
        self._params = list(params)
        self._state_dtypes = list(state_dtypes)
        self._param_spans = sorted(
            (_address(p), _address(p) + p.nbytes) for p in params if p.nbytes
        )
        self._probe = [np.zeros(1, dtype=np.float32) for _ in range(5)]

    def checked(
        self, grads: Any, param_groups: Sequence[Mapping[str, Any]]
    ) -> list[np.ndarray | None]:
        """The grads as a list, after every check the core would make (and nothing written)."""
        if isinstance(grads, np.ndarray) or not isinstance(grads, Iterable):
            hint = (
                " (wrap a single gradient: step([grad]))" if isinstance(grads, np.ndarray) else ""
            )
            raise TypeError(
                "grads must be a list with one gradient per param, got "
                f"{type(grads).__name__}{hint}"
            )
        checked: list[np.ndarray | None] = list(grads)
        params = self._params
        if len(checked) != len(params):
            raise ValueError(
                f"step() got {len(checked)} gradients for {len(params)} params; pass one per "
                "param in param-group order (None skips one)"
            )
        for i, (g, p) in enumerate(zip(checked, params)):
            if g is None:
                continue
            if not isinstance(g, np.ndarray):
                raise TypeError(
                    f"grads[{i}] must be a numpy.ndarray or None, got {type(g).__name__}"
                )
            if g.dtype != p.dtype:
                raise TypeError(
                    f"grads[{i}] has dtype {g.dtype} but params[{i}] is {p.dtype}; pass a "
                    "gradient of the param's dtype"
                )
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape}, params[{i}] has {p.shape}")
            if not g.flags.c_contiguous:
                raise ValueError(f"grads[{i}] is not C-contiguous; pass np.ascontiguousarray(g)")
            if g.nbytes and self._overlaps_params(_address(g), _address(g) + g.nbytes):
                raise ValueError(
                    f"grads[{i}] shares memory with a param; pass a copy of the gradient"
                )
        for i, p in enumerate(params):
            if not (p.flags.writeable and p.flags.c_contiguous):
                raise ValueError(f"params[{i}] became read-only or non-contiguous; restore it")
        for k, group in enumerate(param_groups):
            check_group_options(group, f"param group {k}")
        check_state_dtypes(param_groups, self._state_dtypes)
        for k, group in enumerate(param_groups):
            if any(p.dtype != np.float64 for p in group["params"]):
                self._probe_float32(group, k)
        return checked

    def _overlaps_params(self, start: int, end: int) -> bool:
        k = bisect.bisect_left(self._param_spans, (end, -1)) - 1
        return k >= 0 and self._param_spans[k][1] > start

    def _probe_float32(self, group: Mapping[str, Any], k: int) -> None:
        """Options float32 cannot hold are refused by the core only for non-float64 params:
        ask it on a one-element scratch step, so that refusal comes before any data moves."""
        p, g, v, m, a = self._probe
        options = {
            key: group[key]
            for key in GROUP_KEYS
            if key not in ("initial_square_avg", "master_weights", "state_dtype")
        }
        try:
            rmsprop_step(p, g, v, momentum_buffer=m, grad_avg=a, **options)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param group {k}: {exc}") from None
