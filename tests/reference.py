"""Float64 NumPy reference of SPEC §2: the specification, written as plainly as possible.

Independent of the package: no import of rmsprop. Besides the new values it returns, per
element, the magnitude of the terms that produced each result (``scale``), which the tests use
for error-model tolerances: an expression evaluated in floating point with k roundings has an
absolute error of at most about k * eps * (sum of the magnitudes of its terms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

OPTION_DEFAULTS: dict[str, Any] = {
    "lr": 1e-2,
    "alpha": 0.99,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "momentum": 0.0,
    "centered": False,
    "maximize": False,
    "eps_in_sqrt": False,
    "lr_in_momentum": False,
    "nesterov": False,
    "decoupled_weight_decay": False,
    "bias_correction": False,
}


@dataclass
class RefState:
    """State of one parameter, in float64."""

    square_avg: np.ndarray
    grad_avg: np.ndarray | None = None
    momentum_buffer: np.ndarray | None = None
    step: int = 0
    # Accumulated magnitude of everything that went into the parameter (for tolerances).
    scale: np.ndarray | None = field(default=None)


def new_state(param: np.ndarray, initial_square_avg: float = 0.0) -> RefState:
    shape = np.shape(param)
    return RefState(
        square_avg=np.full(shape, initial_square_avg, dtype=np.float64),
        grad_avg=np.zeros(shape),
        momentum_buffer=np.zeros(shape),
        scale=np.abs(np.asarray(param, dtype=np.float64)),
    )


def reference_step(
    param: np.ndarray, grad: np.ndarray, state: RefState, **options: Any
) -> np.ndarray:
    """One step of SPEC §2 in float64. Updates ``state`` and returns the new param (float64)."""
    o = {**OPTION_DEFAULTS, **options}
    unknown = set(options) - set(OPTION_DEFAULTS)
    assert not unknown, unknown
    p = np.asarray(param, dtype=np.float64).copy()
    g = np.asarray(grad, dtype=np.float64).copy()
    lr, alpha, eps, wd, mu = o["lr"], o["alpha"], o["eps"], o["weight_decay"], o["momentum"]
    state.step += 1
    t = state.step
    if o["maximize"]:
        g = -g
    if wd != 0:
        if o["decoupled_weight_decay"]:
            p = p - lr * wd * p
        else:
            g = g + wd * p
    state.square_avg = alpha * state.square_avg + (1 - alpha) * g * g
    v = state.square_avg
    if o["centered"]:
        state.grad_avg = alpha * state.grad_avg + (1 - alpha) * g
    ga = state.grad_avg
    if o["bias_correction"]:
        correction = 1 - alpha**t
        v = v / correction
        ga = ga / correction
    s = v - ga * ga if o["centered"] else v
    s = np.maximum(s, 0.0)
    d = np.sqrt(s + eps) if o["eps_in_sqrt"] else np.sqrt(s) + eps
    with np.errstate(divide="ignore", invalid="ignore"):
        u = g / d
    if mu > 0:
        if o["lr_in_momentum"]:
            state.momentum_buffer = mu * state.momentum_buffer + lr * u
            applied = state.momentum_buffer
            if o["nesterov"]:
                applied = lr * u + mu * state.momentum_buffer
        else:
            state.momentum_buffer = mu * state.momentum_buffer + u
            applied = state.momentum_buffer
            if o["nesterov"]:
                applied = u + mu * state.momentum_buffer
            applied = lr * applied
        step_size = np.abs(applied) + mu * np.abs(state.momentum_buffer) * (1 + lr)
    else:
        applied = lr * u
        step_size = np.abs(applied)
    new_p = p - applied
    if state.scale is None:
        state.scale = np.abs(p)
    state.scale = state.scale + np.abs(new_p) + step_size + lr * wd * np.abs(p)
    return new_p
