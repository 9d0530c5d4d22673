"""The RMSprop optimizer class: bookkeeping over the fused C++ step (no math here)."""

from __future__ import annotations

import inspect
import os
import threading
import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from ._buffers import STATE_KEYS, aligned_copy, is_float_array
from ._checkpoint import copy_states, detached_params, load_into, pack_state_dict
from ._new_state import Created, create_missing_state, take_back_unless_applied
from ._options import (
    GROUP_KEYS,
    PRESETS,
    UNSET,
    check_group_options,
    resolve_defaults,
    unknown_keywords_error,
)
from .functional import OPTION_NAMES
from .rows import RowGrad

__all__ = ["PRESETS", "RMSprop"]

# What _core.step_optimizer reports.
_APPLIED, _STATE_MISSING, _SKIPPED_NONFINITE = 0, 1, 2

# The keywords of RMSprop(...).
_KEYWORDS = ("params", *GROUP_KEYS, "skip_if_nonfinite", "preset")

# Iterables that are never a list of gradients (a dict would iterate over its keys).
_NOT_GRAD_LISTS = (Mapping, str, bytes, set, frozenset)

# Every live optimizer, so that a child forked while another thread of the parent held an
# optimizer's lock (inside step()) gets a fresh lock instead of one that is never released.
_LIVE_OPTIMIZERS: weakref.WeakSet[RMSprop] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    for optimizer in list(_LIVE_OPTIMIZERS):
        optimizer._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


class RMSprop:
    """RMSProp that updates NumPy arrays in place with one fused C++ pass per step.

    Defaults and results are ``torch.optim.RMSprop``'s (ε added after the square root). Other
    frameworks' variants are options, and ``preset`` fills in a framework's defaults; explicit
    keyword arguments always win. See the README's table for which setting matches which
    framework.

    Args:
        params: a list of float32, float64, float16 or bfloat16 arrays, or a list of dicts
            (param groups) ``{"params": [...], **hyper_parameter_overrides}``.
        lr: learning rate η.
        alpha: smoothing constant α of the squared-gradient average (Keras/TF call it rho).
        eps: ε, added to the denominator for numerical stability.
        weight_decay: λ; coupled L2 (added to the gradient) unless
            ``decoupled_weight_decay``.
        momentum: μ; 0 disables the momentum buffer.
        centered: divide by the estimated variance ``E[g²] - E[g]²`` (clamped at 0, never NaN)
            instead of ``E[g²]``.
        maximize: ascend instead of descend.
        eps_in_sqrt: use ``sqrt(v + ε)`` (Keras, TF, optax) instead of ``sqrt(v) + ε`` (torch).
        lr_in_momentum: ``m = μ·m + η·u; p -= m`` (TF, Keras, optax) instead of
            ``m = μ·m + u; p -= η·m`` (torch). Equal at a constant lr, differ under schedules.
        nesterov: apply ``u + μ·m_new`` (needs momentum > 0).
        decoupled_weight_decay: ``p -= η·λ·p`` before the update (Keras 3, AdamW style).
        bias_correction: divide the averages by ``1 - α^t`` (optax's option).
        initial_square_avg: starting value of ``square_avg`` (TF1 uses 1.0).
        grad_scale: gradients are divided by it in the same pass (an AMP loss scale; edit it
            in ``param_groups`` as the scale changes).
        master_weights: for float16/bfloat16 params, keep a float32 copy in the state
            (``"master_param"``), update it, and write its rounded value into the param.
        stochastic_rounding: round bfloat16 params stochastically (deterministic for a
            ``rounding_seed``), so updates smaller than half an ulp are not always lost.
        rounding_seed: seed of the stochastic-rounding noise (of params and of compact
            state).
        state_dtype: storage of the optimizer state, per group (SPEC §8, README "Optimizer
            state in fewer bits"). ``"float32"`` (default; float64 for float64 params).
            ``"bfloat16"``: square_avg, grad_avg and momentum_buffer in bfloat16 (uint16 bit
            patterns in ``state``), rounded stochastically. ``"8bit"``: square_avg as uint8
            codes with a float32 ``square_avg_scale`` per 256 elements, the others bfloat16;
            tensors under 4096 elements keep float32 state; not with ``centered``. Math runs in
            float32 either way. Read such state with :func:`rmsprop.state_codec.float_state`.
        skip_if_nonfinite: if any gradient of a step holds inf or NaN, skip the whole step
            (nothing changes) and have ``step()`` return False; it returns True otherwise.
        preset: ``"torch"``, ``"keras"``, ``"tf1"``, ``"optax"`` or ``"seed"``.

    Attributes:
        param_groups: list of dicts with the hyper-parameters and ``"params"``; edit ``lr``
            there to schedule it (takes effect on the next step).
        state: list aligned with all params (group order); each ``{}`` until the first step of
            that param, then ``{"step": int, "square_avg": ndarray, ...}`` whose arrays are the
            live buffers the kernel updates.

    Example:
        >>> import numpy as np
        >>> from rmsprop import RMSprop
        >>> w = np.zeros((2, 3), dtype=np.float32)
        >>> opt = RMSprop([w], lr=0.1, momentum=0.9)
        >>> opt.step([np.ones((2, 3), dtype=np.float32)])
        >>> opt.state[0]["step"], sorted(opt.state[0])
        (1, ['momentum_buffer', 'square_avg', 'step'])
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> RMSprop:
        # Other frameworks' keyword names (learning_rate, rho...) would get Python's bare
        # TypeError from __init__; name ours instead. Checked here so that __init__ keeps its
        # exact signature for type checkers. A subclass's own keywords are allowed; one whose
        # __init__ takes no **kwargs (so passes none of the caller's on) is left alone.
        allowed: set[str] | None = set(_KEYWORDS)
        if cls.__init__ is not RMSprop.__init__:
            own = inspect.signature(cls.__init__).parameters.values()
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own):
                allowed = {*_KEYWORDS, *(p.name for p in own)}
            else:
                allowed = None
        if allowed is not None:
            unknown = {key: value for key, value in kwargs.items() if key not in allowed}
            if unknown:
                raise unknown_keywords_error(unknown, _KEYWORDS[1:])
        return super().__new__(cls)

    def __init__(
        self,
        params: Iterable[np.ndarray | Mapping[str, Any]],
        lr: float = UNSET,
        alpha: float = UNSET,
        eps: float = UNSET,
        weight_decay: float = UNSET,
        momentum: float = UNSET,
        centered: bool = UNSET,
        maximize: bool = UNSET,
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
        explicit = {name: value for name, value in given.items() if value is not UNSET}
        self.defaults: dict[str, Any] = resolve_defaults(preset, explicit)
        self.preset = preset
        self.skip_if_nonfinite = bool(skip_if_nonfinite)
        self.param_groups: list[dict[str, Any]] = []
        self.state: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._unpickled = False
        _LIVE_OPTIMIZERS.add(self)
        if isinstance(params, (np.ndarray, Mapping)):
            raise TypeError(
                "params must be a list of arrays or of param-group dicts, got a single "
                f"{type(params).__name__}; wrap it in a list"
            )
        entries = list(params)
        if not entries:
            raise ValueError("params is empty; pass at least one array to optimize")
        group_entries = [entry for entry in entries if isinstance(entry, Mapping)]
        if len(group_entries) == len(entries):
            for group in group_entries:
                self.add_param_group(group)
        elif group_entries:
            raise TypeError("params must be all arrays or all param-group dicts, not a mix")
        else:
            self.add_param_group({"params": entries})

    # ------------------------------------------------------------------ groups and state

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of params with its own hyper-parameter overrides.

        Raises:
            TypeError: a param is not a float32/float64 ndarray, or a key is not a string.
            ValueError: a hyper-parameter is invalid or a param is already optimized.
        """
        if "params" not in param_group:
            raise ValueError("a param group needs a 'params' entry (a list of arrays)")
        params = param_group["params"]
        params = [params] if isinstance(params, np.ndarray) else list(params)
        where = f"param group {len(self.param_groups)}"
        if not params:
            raise ValueError(f"{where}: 'params' is empty")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for k, p in enumerate(params):
            if not is_float_array(p):
                kind = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(
                    f"{where}: params[{k}] must be a float32, float64, float16 or "
                    f"ml_dtypes.bfloat16 numpy.ndarray, got {kind}"
                )
            if id(p) in seen:
                raise ValueError(f"{where}: params[{k}] appears more than once in the optimizer")
            seen.add(id(p))
        group = {**self.defaults, **param_group, "params": params}
        check_group_options(group, where)
        if group["state_dtype"] != "float32":
            for k, p in enumerate(params):
                if p.dtype == np.float64:
                    raise TypeError(
                        f"{where}: params[{k}] is float64, whose state stays float64; "
                        f"state_dtype={group['state_dtype']!r} is for float32, float16 and "
                        "bfloat16 params (put float64 params in a group with "
                        "state_dtype='float32')"
                    )
        with self._lock:  # a step in another thread sees the group with its states, or neither
            self.param_groups.append(group)
            self.state.extend({} for _ in params)

    # ------------------------------------------------------------------ the step

    def step(self, grads: Sequence[np.ndarray | RowGrad | None]) -> bool | None:
        """Update every param in place from its gradient.

        Args:
            grads: one entry per param, in param-group order; ``None`` skips that param (its
                state is untouched). Each gradient has its param's shape and dtype, or is a
                :class:`rmsprop.RowGrad` for a param of shape ``(R, ...)``: then only the
                rows it names change (a lazy step, as TensorFlow's sparse RMSProp).

        Raises:
            TypeError, ValueError: an input is refused. Nothing (params, state, step counts) is
                modified when any input of the step is refused.

        Returns:
            None; with ``skip_if_nonfinite``, True if the step was applied and False if it was
            skipped because a gradient held inf or NaN (then nothing changed).

        The optimizer is locked while stepping: concurrent calls from several threads run one
        after the other. A step is atomic with respect to asynchronous exceptions (a
        KeyboardInterrupt from Ctrl-C): it is applied and recorded, or not applied at all.
        """
        if type(grads) is not list and not isinstance(grads, (tuple, np.ndarray)):
            if isinstance(grads, _NOT_GRAD_LISTS) or not isinstance(grads, Iterable):
                raise TypeError(
                    "grads must be a list with one gradient per param, in param-group order "
                    f"(None skips one), got {type(grads).__name__}"
                    + (
                        " (build the list from it: [grads[name] for name in names])"
                        if isinstance(grads, Mapping)
                        else ""
                    )
                )
            grads = list(grads)  # any other iterable; the core refuses a lone ndarray
        if self._unpickled:
            self._warn_if_detached()
        groups = self.param_groups
        skip = self.skip_if_nonfinite
        with self._lock:
            result = _core.step_optimizer(groups, grads, self.state, True, skip)
            if result == _STATE_MISSING:
                result = self._step_creating_state(grads, skip)
        return result == _APPLIED if skip else None

    def _step_creating_state(self, grads: Sequence[Any], skip: bool) -> int:
        """The step when a param needs new buffers (its first step, or momentum switched on).

        Atomic with respect to exceptions, including asynchronous ones (KeyboardInterrupt from
        a signal handler) landing anywhere in here: the core applies the update and sets the
        step counts in one C call that runs no Python code, so whether it applied can be read
        from the step counts afterwards. If it did not, everything created is taken back.
        """
        created: list[Created] = []
        try:
            # Groups are checked first: buffers are sized and filled from their options.
            for k, group in enumerate(self.param_groups):
                check_group_options(group, f"param group {k}")
            create_missing_state(self.param_groups, self.state, grads, created)
            result: int = _core.step_optimizer(self.param_groups, grads, self.state, False, skip)
        finally:
            # Twice, so that a second interrupt landing in the first clean-up still leaves it
            # done (the clean-up is idempotent).
            try:
                take_back_unless_applied(created)
            finally:
                take_back_unless_applied(created)
        return result

    def _warn_if_detached(self) -> None:
        """Warn once if an unpickled optimizer updates params that nobody else holds."""
        self._unpickled = False
        detached = detached_params(self.param_groups)
        if detached:
            warnings.warn(
                f"this RMSprop was unpickled and params {detached} are held by nothing but the "
                "optimizer: its steps update its own copies of them, not your arrays. Unpickle "
                "your arrays and the optimizer together (one pickle of both), or build RMSprop "
                "on your arrays and call load_state_dict() with the saved state_dict(); "
                "optimizer.param_groups[k]['params'] holds the arrays it updates",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """A snapshot in torch's layout, with copies of the state arrays.

        Returns:
            ``{"state": {index: {"step": int, "square_avg": ndarray, ...}}, "param_groups":
            [{hyper-parameters..., "params": [index, ...]}]}``. Indices count params across
            groups. The arrays are copies, so later steps do not change the snapshot, and it
            is taken under the optimizer's lock: a step running in another thread lands
            wholly before or wholly after it.
        """
        with self._lock:
            return pack_state_dict(self.param_groups, self.state)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict` (or torch's layout with NumPy arrays).

        Hyper-parameters come from the snapshot, as in torch. Every group, shape, dtype, step
        count and required buffer is checked before anything changes; arrays are then copied
        into the live buffers, so views taken from ``state`` stay valid (a live buffer that was
        replaced by something unusable, such as None or a read-only array, is replaced by a
        fresh one). Runs under the optimizer's lock, between steps of other threads.

        Raises:
            ValueError, TypeError: the snapshot does not fit this optimizer. Nothing changes.
        """
        with self._lock:
            load_into(self.param_groups, self.state, state_dict)

    def __getstate__(self) -> dict[str, Any]:
        # Pickle serializes what this returns after it returns, so the state is copied here,
        # under the lock, or a step in another thread could tear it. Params stay the caller's
        # arrays, so that one pickle of (arrays, optimizer) restores them shared.
        with self._lock:
            state = self.__dict__.copy()
            state["param_groups"] = [dict(group) for group in self.param_groups]
            state["state"] = copy_states(self.state)
        del state["_lock"], state["_unpickled"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._unpickled = True
        _LIVE_OPTIMIZERS.add(self)
        # Unpickled arrays come back with NumPy's default alignment; keep ours.
        for entry in self.state:
            for key in STATE_KEYS:
                if isinstance(entry.get(key), np.ndarray):
                    entry[key] = aligned_copy(entry[key])

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            for key in (*OPTION_NAMES, "initial_square_avg", "master_weights", "state_dtype"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
