"""Hyper-parameter defaults, framework presets and group checks of :class:`rmsprop.RMSprop`.

Shared by every front-end (NumPy class, torch adapter, MPI sharder). No arrays, no math.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from ._buffers import STATE_DTYPES, is_float_array, state_dtype
from .functional import DEFAULT_OPTIONS


class _Required:
    """Marks a preset value the caller must give (TF1 has no default learning rate)."""

    def __repr__(self) -> str:
        return "<required>"


class _Unset:
    """Default of every keyword of RMSprop: lets a preset fill what the caller did not pass."""

    def __repr__(self) -> str:
        return "<default>"


FLOAT32_MAX = float(np.finfo(np.float32).max)

REQUIRED: Any = _Required()
UNSET: Any = _Unset()

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
        "lr": REQUIRED,
        "alpha": 0.9,
        "eps": 1e-10,
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
        "initial_square_avg": 1.0,
    },
    "optax": {"alpha": 0.9, "eps": 1e-8, "eps_in_sqrt": True, "lr_in_momentum": True},
    "seed": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8, "eps_in_sqrt": True},
}

GROUP_DEFAULTS: dict[str, Any] = {
    **DEFAULT_OPTIONS,
    "initial_square_avg": 0.0,
    "master_weights": False,
    "state_dtype": "float32",
}
GROUP_KEYS = tuple(GROUP_DEFAULTS)


def is_flag(value: Any) -> bool:
    """What the core accepts for an on/off option: True/False, numpy.bool_, or the ints 0/1."""
    return isinstance(value, (bool, np.bool_)) or (type(value) is int and value in (0, 1))


def resolve_defaults(preset: str | None, explicit: Mapping[str, Any]) -> dict[str, Any]:
    if preset is None:
        preset = "torch"
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}")
    defaults = {**GROUP_DEFAULTS, **PRESETS[preset], **explicit}
    missing = [name for name, value in defaults.items() if value is REQUIRED]
    if missing:
        raise ValueError(f"preset {preset!r} has no default for {', '.join(missing)}; pass it")
    return defaults


def check_group_options(group: Mapping[str, Any], where: str) -> None:
    """Refuse invalid hyper-parameters with the core's own checks, naming the group."""
    missing = [key for key in GROUP_KEYS if key not in group]
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
    if initial > FLOAT32_MAX:
        # square_avg would start at inf, and an inf denominator never lets the param move.
        for k, param in enumerate(group.get("params", ())):
            if is_float_array(param) and state_dtype(param) == np.float32:
                raise ValueError(
                    f"{where}: initial_square_avg = {float(initial)!r} is beyond float32's "
                    f"range, in which the state of params[{k}] ({param.dtype}) is kept; use "
                    f"a value <= {FLOAT32_MAX:.7g}"
                )
    if not is_flag(group["master_weights"]):
        raise TypeError(
            f"{where}: master_weights must be True or False, got "
            f"{type(group['master_weights']).__name__}"
        )
    state = group["state_dtype"]
    if not isinstance(state, str):
        raise TypeError(f"{where}: state_dtype must be a str, got {type(state).__name__}")
    if state not in STATE_DTYPES:
        raise ValueError(f"{where}: state_dtype must be one of {STATE_DTYPES}, got {state!r}")
    if state == "8bit" and bool(group["centered"]):
        raise ValueError(
            f"{where}: centered=True is not supported with state_dtype='8bit' (v - grad_avg^2 "
            "cancels in 8 bits); use state_dtype='bfloat16' or 'float32'"
        )


_KERAS = "preset='keras' fills Keras 3's defaults"
_TF1_OPTAX = "preset='tf1' or preset='optax' fills TF1's or optax's defaults"
_OPTAX = "preset='optax' fills optax's defaults"
#: Other frameworks' names of our hyper-parameters: (our name, whose name, the preset to use).
FOREIGN_NAMES: dict[str, tuple[str, str, str | None]] = {
    "learning_rate": ("lr", "the Keras/TF/optax name", _KERAS),
    "rho": ("alpha", "the Keras/TF2 name", _KERAS),
    "decay": ("alpha", "the TF1/optax name", _TF1_OPTAX),
    "beta": ("alpha", "a common paper name", None),
    "gamma1": ("alpha", "the MXNet name", None),
    "gamma2": ("momentum", "the MXNet name", None),
    "epsilon": ("eps", "the Keras/TF name", _KERAS),
    "initial_scale": ("initial_square_avg", "the optax name", _OPTAX),
    "initial_accumulator_value": ("initial_square_avg", "the TF name", None),
    "use_nesterov": ("nesterov", "the TF name", None),
}


def unknown_keywords_error(unknown: Mapping[str, Any], known: Sequence[str]) -> TypeError:
    """The TypeError for keywords RMSprop does not take, naming ours and the matching preset."""
    reasons = []
    listed = ""
    for name in unknown:
        if name in FOREIGN_NAMES:
            ours, whose, preset = FOREIGN_NAMES[name]
            reason = f"RMSprop has no {name!r}; it is called {ours!r} ({name!r} is {whose})"
            if preset is not None:
                reason += f"; {preset}"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            reason = f"RMSprop got an unexpected keyword argument {name!r}{hint}"
            listed = f" (its keywords: {', '.join(known)})"
        reasons.append(reason)
    return TypeError("; ".join(reasons) + listed)
