"""The RMSprop optimizer class: bookkeeping over the fused C++ step (no math here)."""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from .functional import DEFAULT_OPTIONS, OPTION_NAMES

__all__ = ["PRESETS", "RMSprop"]

# What _core.step_optimizer reports.
_APPLIED, _STATE_MISSING, _SKIPPED_NONFINITE = 0, 1, 2
_STATE_ALIGNMENT = 64  # bytes: one cache line, the unit the threads split work by
_STATE_KEYS = ("square_avg", "momentum_buffer", "grad_avg", "master_param")
_MAX_STEP = 2**62  # the core's bound on a step count


class _Required:
    """Marks a preset value the caller must give (TF1 has no default learning rate)."""

    def __repr__(self) -> str:
        return "<required>"


class _Unset:
    """Default of every keyword of RMSprop: lets a preset fill what the caller did not pass."""

    def __repr__(self) -> str:
        return "<default>"


_REQUIRED: Any = _Required()
_UNSET: Any = _Unset()

#: Hyper-parameters each preset changes from torch's defaults (SPEC §2, README table).
PRESETS: dict[str, dict[str, Any]] = {
    "torch": {},
    "keras": {
        "lr": 1e-3,
        "alpha": 0.9,
        "eps": 1e-7,
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
        "decoupled_weight_decay": True,
    },
    "tf1": {
        "lr": _REQUIRED,
        "alpha": 0.9,
        "eps": 1e-10,
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
        "initial_square_avg": 1.0,
    },
    "optax": {"alpha": 0.9, "eps": 1e-8, "eps_in_sqrt": True, "lr_in_momentum": True},
    "seed": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8, "eps_in_sqrt": True},
}

_GROUP_DEFAULTS: dict[str, Any] = {
    **DEFAULT_OPTIONS,
    "initial_square_avg": 0.0,
    "master_weights": False,
}
_GROUP_KEYS = tuple(_GROUP_DEFAULTS)

# Every live optimizer, so that a child forked while another thread of the parent held an
# optimizer's lock (inside step()) gets a fresh lock instead of one that is never released.
_LIVE_OPTIMIZERS: weakref.WeakSet[RMSprop] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    for optimizer in list(_LIVE_OPTIMIZERS):
        optimizer._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


def _is_flag(value: Any) -> bool:
    """What the core accepts for an on/off option: True/False, numpy.bool_, or the ints 0/1."""
    return isinstance(value, (bool, np.bool_)) or (type(value) is int and value in (0, 1))


def _resolve_defaults(preset: str | None, explicit: Mapping[str, Any]) -> dict[str, Any]:
    if preset is None:
        preset = "torch"
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}")
    defaults = {**_GROUP_DEFAULTS, **PRESETS[preset], **explicit}
    missing = [name for name, value in defaults.items() if value is _REQUIRED]
    if missing:
        raise ValueError(f"preset {preset!r} has no default for {', '.join(missing)}; pass it")
    return defaults


def _check_group_options(group: Mapping[str, Any], where: str) -> None:
    """Refuse invalid hyper-parameters with the core's own checks, naming the group."""
    missing = [key for key in _GROUP_KEYS if key not in group]
    if missing:
        raise ValueError(f"{where}: missing hyper-parameter {', '.join(map(repr, missing))}")
    try:
        _core.validate_options(dict(group))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    initial = group["initial_square_avg"]
    if isinstance(initial, (bool, np.bool_)) or not isinstance(initial, (int, float, np.number)):
        raise TypeError(
            f"{where}: initial_square_avg must be a real number, got {type(initial).__name__}"
        )
    if not (math.isfinite(initial) and initial >= 0.0):
        raise ValueError(f"{where}: initial_square_avg must be a finite number >= 0, got {initial}")
    if not _is_flag(group["master_weights"]):
        raise TypeError(
            f"{where}: master_weights must be True or False, got "
            f"{type(group['master_weights']).__name__}"
        )


def _aligned_full(like: np.ndarray, fill: float, dtype: Any = None) -> np.ndarray:
    """A state buffer shaped like ``like``, cache-line aligned, filled with ``fill``.

    Allocated through NumPy so that large buffers get the transparent huge pages NumPy asks
    for, like the user's own arrays.
    """
    dtype = np.dtype(like.dtype if dtype is None else dtype)
    nbytes = like.size * dtype.itemsize
    raw = np.zeros(nbytes + _STATE_ALIGNMENT, dtype=np.uint8)
    offset = -raw.__array_interface__["data"][0] % _STATE_ALIGNMENT
    buffer: np.ndarray = raw[offset : offset + nbytes].view(dtype).reshape(like.shape)
    if fill != 0.0:
        buffer.fill(fill)
    return buffer


def _aligned_copy(array: np.ndarray) -> np.ndarray:
    out = _aligned_full(array, 0.0)
    np.copyto(out, array)
    return out


def _is_sixteen_bit(dtype: np.dtype) -> bool:
    return dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16")


def _is_float_array(obj: Any) -> bool:
    """float32/float64/float16 or ml_dtypes.bfloat16: what the core accepts as a param."""
    return isinstance(obj, np.ndarray) and (
        (obj.dtype.kind == "f" and obj.dtype.itemsize in (2, 4, 8)) or _is_sixteen_bit(obj.dtype)
    )


def _state_dtype(param: np.ndarray) -> np.dtype:
    """Float32 state for 16-bit params (their math runs in float32), else the param's dtype."""
    return np.dtype(np.float32) if _is_sixteen_bit(param.dtype) else param.dtype


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
        rounding_seed: seed of the stochastic-rounding noise.
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

    def __init__(
        self,
        params: Iterable[np.ndarray | Mapping[str, Any]],
        lr: float = _UNSET,
        alpha: float = _UNSET,
        eps: float = _UNSET,
        weight_decay: float = _UNSET,
        momentum: float = _UNSET,
        centered: bool = _UNSET,
        maximize: bool = _UNSET,
        *,
        eps_in_sqrt: bool = _UNSET,
        lr_in_momentum: bool = _UNSET,
        nesterov: bool = _UNSET,
        decoupled_weight_decay: bool = _UNSET,
        bias_correction: bool = _UNSET,
        initial_square_avg: float = _UNSET,
        grad_scale: float = _UNSET,
        master_weights: bool = _UNSET,
        stochastic_rounding: bool = _UNSET,
        rounding_seed: int = _UNSET,
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
        }
        explicit = {name: value for name, value in given.items() if value is not _UNSET}
        self.defaults: dict[str, Any] = _resolve_defaults(preset, explicit)
        self.preset = preset
        self.skip_if_nonfinite = bool(skip_if_nonfinite)
        self.param_groups: list[dict[str, Any]] = []
        self.state: list[dict[str, Any]] = []
        self._lock = threading.Lock()
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
            if not _is_float_array(p):
                kind = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(
                    f"{where}: params[{k}] must be a float32, float64, float16 or "
                    f"ml_dtypes.bfloat16 numpy.ndarray, got {kind}"
                )
            if id(p) in seen:
                raise ValueError(f"{where}: params[{k}] appears more than once in the optimizer")
            seen.add(id(p))
        group = {**self.defaults, **param_group, "params": params}
        _check_group_options(group, where)
        self.param_groups.append(group)
        self.state.extend({} for _ in params)

    def _create_missing_state(
        self, grads: Sequence[Any], created: list[tuple[dict[str, Any], str]]
    ) -> None:
        """Give every param stepped now the buffers its group's options need.

        Buffers appear on a param's first step, or when an option that needs one (centered,
        momentum) is switched on later. Appends what it adds to ``created`` as it goes, so
        that a refused step can take it back even if this fails halfway.
        """
        start = 0
        for group in self.param_groups:
            params = group["params"]
            keys = ["square_avg"]
            if group["momentum"] > 0:
                keys.append("momentum_buffer")
            if group["centered"]:
                keys.append("grad_avg")
            if group["master_weights"]:
                keys.append("master_param")
            for offset, param in enumerate(params):
                state = self.state[start + offset]
                # A param that is not a float array gets nothing: the core then reports the
                # real problem with it.
                if grads[start + offset] is None or not _is_float_array(param):
                    continue
                for key in ("step", *keys):
                    if state.get(key) is not None:
                        continue
                    if key == "step":
                        state[key] = 0
                    elif key == "master_param":
                        if not _is_sixteen_bit(param.dtype):
                            continue  # float32/float64 params are their own master copy
                        state[key] = _aligned_full(param, 0.0, np.float32)
                        np.copyto(state[key], param.astype(np.float32))
                    else:
                        fill = group["initial_square_avg"] if key == "square_avg" else 0.0
                        state[key] = _aligned_full(param, fill, _state_dtype(param))
                    created.append((state, key))
            start += len(params)

    # ------------------------------------------------------------------ the step

    def step(self, grads: Sequence[np.ndarray | None]) -> bool | None:
        """Update every param in place from its gradient.

        Args:
            grads: one entry per param, in param-group order; ``None`` skips that param (its
                state is untouched). Each gradient has its param's shape and dtype.

        Raises:
            TypeError, ValueError: an input is refused. Nothing (params, state, step counts) is
                modified when any input of the step is refused.

        Returns:
            None; with ``skip_if_nonfinite``, True if the step was applied and False if it was
            skipped because a gradient held inf or NaN (then nothing changed).

        The optimizer is locked while stepping: concurrent calls from several threads run one
        after the other.
        """
        if type(grads) is not list and not isinstance(grads, (tuple, np.ndarray)):
            if not isinstance(grads, Iterable):
                raise TypeError(
                    "grads must be a list with one gradient per param (None skips one), got "
                    f"{type(grads).__name__}"
                )
            grads = list(grads)  # any other iterable; the core refuses a lone ndarray
        groups = self.param_groups
        skip = self.skip_if_nonfinite
        with self._lock:
            result = _core.step_optimizer(groups, grads, self.state, True, skip)
            if result == _STATE_MISSING:
                # A param is stepped for the first time (or an option now needs a new buffer).
                # Groups are checked first: buffers are sized and filled from their options.
                created: list[tuple[dict[str, Any], str]] = []
                try:
                    for k, group in enumerate(groups):
                        _check_group_options(group, f"param group {k}")
                    self._create_missing_state(grads, created)
                    result = _core.step_optimizer(groups, grads, self.state, False, skip)
                except BaseException:
                    self._remove(created)
                    raise
                if result == _SKIPPED_NONFINITE:
                    self._remove(created)
        return result == _APPLIED if skip else None

    @staticmethod
    def _remove(created: list[tuple[dict[str, Any], str]]) -> None:
        for state, key in created:
            del state[key]

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """A snapshot in torch's layout, with copies of the state arrays.

        Returns:
            ``{"state": {index: {"step": int, "square_avg": ndarray, ...}}, "param_groups":
            [{hyper-parameters..., "params": [index, ...]}]}``. Indices count params across
            groups. The arrays are copies, so later steps do not change the snapshot.
        """
        groups = []
        index = 0
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(packed)
        state = {
            index: {
                key: value.copy() if isinstance(value, np.ndarray) else value
                for key, value in entry.items()
            }
            for index, entry in enumerate(self.state)
            if entry
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict` (or torch's layout with NumPy arrays).

        Hyper-parameters come from the snapshot, as in torch. Every group, shape, dtype, step
        count and required buffer is checked before anything changes; arrays are then copied
        into the live buffers, so views taken from ``state`` stay valid.

        Raises:
            ValueError, TypeError: the snapshot does not fit this optimizer. Nothing changes.
        """
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict must be a mapping with 'state' and 'param_groups'")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict has {len(saved_groups)} param groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        new_groups = []
        saved_to_ours: dict[int, int] = {}
        ours = 0
        for k, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
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
            merged = {**group, **{key: v for key, v in saved.items() if key != "params"}}
            merged["params"] = group["params"]
            _check_group_options(merged, f"param group {k} of state_dict")
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
            new_state[index] = self._checked_saved_state(
                index, entry, params[index], group_of[index]
            )
        # Everything is valid: from here on nothing can fail.
        for index, entry in enumerate(new_state):
            live = self.state[index]
            restored: dict[str, Any] = {}
            for key, value in entry.items():
                if key == "step":
                    restored[key] = value
                elif key in live and live[key].shape == value.shape:
                    np.copyto(live[key], value)
                    restored[key] = live[key]
                else:
                    restored[key] = _aligned_copy(value)
            self.state[index] = restored
        for group, merged in zip(self.param_groups, new_groups):
            group.clear()
            group.update(merged)

    @staticmethod
    def _checked_saved_state(
        index: int, entry: Any, param: np.ndarray, group: Mapping[str, Any]
    ) -> dict[str, Any]:
        where = f"state_dict['state'][{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        unknown = set(entry) - {"step", *_STATE_KEYS}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
        step = entry.get("step")
        if isinstance(step, np.ndarray) and step.shape == ():
            step = step.item()
        if isinstance(step, (float, np.floating)) and float(step).is_integer():
            step = int(step)  # torch keeps the step count in a float tensor
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)):
            raise ValueError(f"{where}['step'] must be an int, got {type(step).__name__}")
        if not 0 <= step <= _MAX_STEP:
            raise ValueError(f"{where}['step'] must be in [0, 2**62], got {step}")
        required = ["square_avg"]
        if group["momentum"] > 0:
            required.append("momentum_buffer")
        if group["centered"]:
            required.append("grad_avg")
        if group["master_weights"] and _is_sixteen_bit(param.dtype):
            required.append("master_param")
        missing = [key for key in required if key not in entry]
        if missing:
            raise ValueError(
                f"{where} lacks {', '.join(missing)}, which this configuration (momentum="
                f"{group['momentum']}, centered={group['centered']}) needs; the state_dict comes "
                "from a differently configured optimizer"
            )
        checked: dict[str, Any] = {"step": int(step)}
        for key in _STATE_KEYS:
            if key not in entry:
                continue
            value = entry[key]
            if not isinstance(value, np.ndarray):
                raise TypeError(
                    f"{where}['{key}'] must be a numpy.ndarray, got {type(value).__name__}"
                )
            if value.dtype != _state_dtype(param):
                raise TypeError(
                    f"{where}['{key}'] has dtype {value.dtype}; the state of this "
                    f"{param.dtype} param is {_state_dtype(param)}"
                )
            if value.shape != param.shape:
                raise ValueError(
                    f"{where}['{key}'] has shape {value.shape}, the param has {param.shape}"
                )
            checked[key] = value
        return checked

    # ------------------------------------------------------------------ pickle and repr

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        _LIVE_OPTIMIZERS.add(self)
        # Unpickled arrays come back with NumPy's default alignment; keep ours.
        for entry in self.state:
            for key in _STATE_KEYS:
                if key in entry:
                    entry[key] = _aligned_copy(entry[key])

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            for key in (*OPTION_NAMES, "initial_square_avg", "master_weights"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
