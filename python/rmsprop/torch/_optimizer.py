"""rmsprop.torch.RMSprop: a torch.optim.Optimizer over the fused core (bookkeeping, no math).

Params are stepped in place through NumPy views of their storage; state tensors share memory
with the core's buffers. Must not contain math or copies of params or state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch.autograd.graph import increment_version
from torch.optim.optimizer import (
    Optimizer,
    _global_optimizer_post_hooks,
    _global_optimizer_pre_hooks,
)

from .. import _core
from .._new_state import buffer_keys
from .._options import UNSET, resolve_defaults
from ..rows import RowGrad
from ._checkpoint import load_state_dict
from ._groups import TORCH_KEYS, Group, check_torch_options, core_options
from ._state import Slot, checked_entry
from ._tensors import describe, grad_view, param_view, renamed

__all__ = ["RMSprop"]

_profiler_enabled: Callable[[], bool] = torch.autograd._profiler_enabled  # type: ignore[attr-defined]

# What _core.step_optimizer reports.
_APPLIED, _STATE_MISSING, _SKIPPED_NONFINITE = 0, 1, 2


class RMSprop(Optimizer):
    """Drop-in ``torch.optim.RMSprop`` that steps CPU tensors with the fused rmsprop core.

    Same signature, defaults and results as ``torch.optim.RMSprop`` (to float32 rounding), then
    keyword-only the options of :class:`rmsprop.RMSprop` (see its docstring and the README
    table). Params are updated in place (``data_ptr()`` never changes); ``state[p]`` holds
    torch tensors sharing memory with the core's buffers; ``state_dict()`` has torch's layout
    and loads into ``torch.optim.RMSprop`` and back.

    Args:
        params: tensors, ``(name, tensor)`` pairs, or param-group dicts. CPU, contiguous,
            float32/float64/float16/bfloat16.
        lr, alpha, eps, weight_decay, momentum, centered, maximize: as in torch.
        capturable, differentiable: must be False (CUDA graphs and autograd through the step
            are not what a CPU core does); True raises ValueError.
        foreach: accepted and ignored (a step is always one fused call).
        eps_in_sqrt, lr_in_momentum, nesterov, decoupled_weight_decay, bias_correction,
            initial_square_avg, grad_scale, master_weights, stochastic_rounding, rounding_seed,
            preset: as in :class:`rmsprop.RMSprop`.
        state_dtype: "float32" (default), "bfloat16" or "8bit", per group, as in
            :class:`rmsprop.RMSprop`. ``state[p]`` then holds torch.bfloat16 tensors, and for
            8-bit ``square_avg`` a torch.uint8 tensor plus its float32 ``square_avg_scale``
            (params under 4096 elements keep float32 state); all share the core's memory.
        skip_if_nonfinite: skip the whole step when any gradient holds inf or NaN; then
            ``last_step_skipped`` is True.

    Example:
        >>> import torch
        >>> import rmsprop.torch
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = rmsprop.torch.RMSprop(model.parameters(), lr=0.01, alpha=0.9)
        >>> model(torch.ones(2, 3)).sum().backward()
        >>> opt.step()
        >>> sorted(opt.state[model.weight])
        ['square_avg', 'step']
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = UNSET,
        alpha: float = UNSET,
        eps: float = UNSET,
        weight_decay: float = UNSET,
        momentum: float = UNSET,
        centered: bool = UNSET,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = UNSET,
        differentiable: bool = False,
        *,
        eps_in_sqrt: bool = UNSET,
        lr_in_momentum: bool = UNSET,
        nesterov: bool = UNSET,
        decoupled_weight_decay: bool = UNSET,
        bias_correction: bool = UNSET,
        initial_square_avg: float = UNSET,
        grad_scale: float = UNSET,
        master_weights: bool = UNSET,
        stochastic_rounding: bool = UNSET,
        rounding_seed: int = UNSET,
        state_dtype: str = UNSET,
        skip_if_nonfinite: bool = False,
        preset: str | None = None,
    ) -> None:
        given = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "maximize": maximize,
            "eps_in_sqrt": eps_in_sqrt,
            "lr_in_momentum": lr_in_momentum,
            "nesterov": nesterov,
            "decoupled_weight_decay": decoupled_weight_decay,
            "bias_correction": bias_correction,
            "initial_square_avg": initial_square_avg,
            "grad_scale": grad_scale,
            "master_weights": master_weights,
            "stochastic_rounding": stochastic_rounding,
            "rounding_seed": rounding_seed,
            "state_dtype": state_dtype,
        }
        ours = resolve_defaults(preset, {k: v for k, v in given.items() if v is not UNSET})
        torch_only = {
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        defaults = {key: torch_only[key] if key in torch_only else ours[key] for key in TORCH_KEYS}
        defaults.update((key, value) for key, value in ours.items() if key not in defaults)
        check_torch_options(defaults, "RMSprop")
        self.preset = preset
        self.skip_if_nonfinite = bool(skip_if_nonfinite)
        self.last_step_skipped = False
        self._groups: list[Group] = []
        self._states: list[dict[str, Any]] = []  # the core's, aligned with all params
        self._names: list[str | None] = []
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, as torch does; a refused group leaves the optimizer unchanged.

        Raises:
            TypeError, ValueError: a param is not a CPU contiguous float tensor (named by its
                index across groups, and its name if given), or a hyper-parameter is invalid.
        """
        super().add_param_group(param_group)
        try:
            group = self.param_groups[-1]
            where = f"param group {len(self.param_groups) - 1}"
            check_torch_options(group, where)
            self._groups.append(self._new_group(group, len(self._names)))
        except BaseException:
            self.param_groups.pop()
            raise
        self._index()

    def _new_group(self, group: dict[str, Any], start: int) -> Group:
        params = group["params"]
        names = group.get("param_names", [None] * len(params))
        # torch keeps step counts in its scalar dtype: float32, or float64 when that is the
        # default dtype.
        float64 = torch.get_default_dtype() == torch.float64
        steps = np.zeros(len(params), np.float64 if float64 else np.float32)
        steps_tensor = torch.from_numpy(steps)
        slots = []
        for k, param in enumerate(params):
            where = describe(start + k, [*self._names, *names])
            view = param_view(param, where)
            slots.append(Slot(param, view, steps[k : k + 1].reshape(()), steps_tensor[k]))
        return Group(params, slots, steps)

    def _index(self) -> None:
        """Rebuild the flat lists the core takes (states, names) from the groups."""
        self._states = [slot.core for g in self._groups for slot in g.slots]
        self._names = [
            name
            for group in self.param_groups
            for name in group.get("param_names", [None] * len(group["params"]))
        ]

    def _check_structure(self) -> None:
        groups = self.param_groups
        if len(groups) != len(self._groups) or any(
            g["params"] is not c.params or len(g["params"]) != len(c.slots)
            for g, c in zip(groups, self._groups)
        ):
            self._restructure()

    def _restructure(self) -> None:
        """Someone edited ``param_groups`` behind our back: rebuild, keeping known params' state."""
        known = {id(slot.param): slot for g in self._groups for slot in g.slots}
        self._names = []
        groups: list[Group] = []
        for k, group in enumerate(self.param_groups):
            check_torch_options(group, f"param group {k}")
            new = self._new_group(group, sum(len(g.params) for g in groups))
            for slot in new.slots:
                old = known.get(id(slot.param))
                if old is not None and "square_avg" in old.core:
                    slot.core.update(old.core)
                    slot.steps[()] = float(old.steps)
                    slot.publish(self.state, old.published)
            groups.append(new)
            self._names.extend(group.get("param_names", [None] * len(group["params"])))
        self._groups = groups
        self._index()

    # ------------------------------------------------------------------ the step

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One fused step over every param with a gradient; returns the closure's loss.

        The closure runs under ``torch.enable_grad()``. Params whose ``.grad`` is None are
        skipped. Nothing (params, state, step counts) changes when any input is refused.

        Raises:
            TypeError, ValueError: a gradient does not fit its param (named), or a
                hyper-parameter in ``param_groups`` is invalid.
        """
        # torch's step wrapper (profiler range, hook dispatch) costs tens of microseconds;
        # it runs only when something would observe it.
        # A subclass that overrides step() gets torch's wrapper around its own step (torch
        # wraps any step not marked as hooked), so hooks must not run a second time here.
        if (
            self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or _global_optimizer_pre_hooks
            or _global_optimizer_post_hooks
            or _profiler_enabled()
        ) and type(self).step is RMSprop.step:
            return _observed_step(self, closure)
        return self._step(closure)

    def _step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_structure()
        groups = self.param_groups
        state = self.state
        names = self._names
        grads: list[np.ndarray | RowGrad | None] = []
        core_groups = []
        stepped: list[torch.Tensor] = []
        index = 0
        for group, cache in zip(groups, self._groups):
            counts = cache.steps.tolist()
            for k, slot in enumerate(cache.slots):
                param = slot.param
                grad = param.grad
                if grad is None:
                    grads.append(None)
                    continue
                if param.data_ptr() != slot.ptr:
                    self._refresh_view(cache, k, index + k)
                published = state.get(param)
                if published is not slot.published or (
                    published is not None and tuple(map(id, published.values())) != slot.ids
                ):
                    self._adopt(slot, published, group, index + k)
                    counts[k] = float(slot.steps)
                array: np.ndarray | RowGrad
                try:
                    array = grad.numpy()
                except (TypeError, RuntimeError):
                    array = grad_view(param, grad, describe(index + k, names))
                if isinstance(array, np.ndarray) and not grad.is_contiguous():
                    # A copy of an input only (params and state are never copied): torch
                    # accepts gradients in any layout.
                    array = np.ascontiguousarray(array)
                grads.append(array)
                slot.core["step"] = int(counts[k])
                stepped.append(param)
            core_group = core_options(group)
            core_group["params"] = cache.views
            core_groups.append(core_group)
            index += len(cache.slots)
        if not stepped:
            return loss
        result = self._run(core_groups, grads)
        if result == _STATE_MISSING:
            result = self._create_state_and_run(core_groups, grads)
        self.last_step_skipped = result == _SKIPPED_NONFINITE
        if result == _APPLIED:
            start = 0
            for cache in self._groups:
                n = len(cache.slots)
                mask = [g is not None for g in grads[start : start + n]]
                if all(mask):
                    cache.steps += 1.0
                else:
                    cache.steps[np.array(mask, bool)] += 1.0
                start += n
            # Autograd's version counters see torch's own in-place updates; ours happen in
            # the core, so bump them: a graph that saved a param then refuses a stale backward.
            increment_version(stepped)
        return loss

    def _run(self, core_groups: list[dict[str, Any]], grads: list[Any], first: bool = True) -> int:
        try:
            skip = self.skip_if_nonfinite
            return int(_core.step_optimizer(core_groups, grads, self._states, first, skip))
        except (TypeError, ValueError) as exc:
            raise renamed(exc, self._names) from None

    def _create_state_and_run(self, core_groups: list[dict[str, Any]], grads: list[Any]) -> int:
        """First step of some param (or momentum/centered switched on): add buffers, step."""
        for k, group in enumerate(self.param_groups):
            check_torch_options(group, f"param group {k}")
        created: list[tuple[Slot, str]] = []
        index = 0
        try:
            for group, cache in zip(self.param_groups, self._groups):
                keys = buffer_keys(group)
                for slot in cache.slots:
                    if grads[index] is not None:
                        for key in keys:
                            if key not in slot.core and slot.new_buffer(key, group):
                                created.append((slot, key))
                    index += 1
            result = self._run(core_groups, grads, first=False)
        except BaseException:
            result = -1
            raise
        finally:
            if result != _APPLIED:
                for slot, key in created:
                    del slot.core[key]
        if result == _APPLIED:
            for slot in dict.fromkeys(slot for slot, _ in created):
                slot.publish(self.state, slot.published)
        return result

    def _refresh_view(self, cache: Group, k: int, index: int) -> None:
        """The param's storage moved (``p.data = ...``, ZeRO's bucket views): view it anew."""
        slot = cache.slots[k]
        view = param_view(slot.param, describe(index, self._names))
        if (
            view.shape != slot.view.shape or view.dtype != slot.view.dtype
        ) and "square_avg" in slot.core:
            raise ValueError(
                f"{describe(index, self._names)} changed shape or dtype from "
                f"{slot.view.shape} {slot.view.dtype} to {view.shape} {view.dtype} while it "
                "has optimizer state; clear optimizer.state for it first"
            )
        slot.view = view
        slot.ptr = slot.param.data_ptr()
        cache.views[k] = view

    def _adopt(self, slot: Slot, published: Any, group: dict[str, Any], index: int) -> None:
        """``state[param]`` was replaced or edited (ZeRO's load, a user): take its values in."""
        if published is None:
            slot.reset(self.state)
            return
        storage = group["state_dtype"]
        where = f"state of {describe(index, self._names)}"
        slot.install(checked_entry(published, slot.param, where, storage), self.state, storage)

    # ------------------------------------------------------------------ checkpoints

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by this class or by ``torch.optim.RMSprop``.

        Everything is checked before anything changes; values are then copied into the live
        buffers (never kept as references to the caller's tensors, never cast to 16 bits).

        Raises:
            ValueError, TypeError: the state dict does not fit this optimizer (names what).
        """
        load_state_dict(self, state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("preset", None)
        self.__dict__.setdefault("skip_if_nonfinite", False)
        self.last_step_skipped = False
        # Unpickled: views and buffers are rebuilt; the saved state tensors are taken in
        # (copied into aligned buffers) on the next step.
        self._groups = []
        self._states = []
        self._names = []
        self._restructure()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["preset"] = self.preset
        state["skip_if_nonfinite"] = self.skip_if_nonfinite
        return state


_observed_step = Optimizer.profile_hook_step(RMSprop._step)
# Tells torch.optim.Optimizer not to wrap step() in its profiler/hook wrapper: step() takes
# that wrapper itself, only when hooks or the profiler are active.
RMSprop.step.hooked = True  # type: ignore[attr-defined]
