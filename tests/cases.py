"""Shared test inputs and the error-model comparison against the float64 reference."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from reference import Precision, Tracked, exact, new_state, reference_step


def well_conditioned(n: int, dtype: Any, steps: int, seed: int = 0):
    """Params in [-2, 2] and gradients with |g| in [0.5, 2.5] and random signs.

    With weight_decay <= 0.1, |weight_decay * p| stays below |g|, so g + wd*p never cancels:
    the problem has condition number O(1) and the error model above applies. (Cancellation to
    ~eps makes u = g / (sqrt(v) + eps) sensitive by 1/eps, where any two correct
    implementations may differ.)
    """
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(-2.0, 2.0, n).astype(dtype)
    grads = [
        (rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 2.5, n)).astype(dtype) for _ in range(steps)
    ]
    return p0, grads


def run_reference(p0: np.ndarray, grads: list, initial_square_avg: float = 0.0, **options: Any):
    """Tracked params after each step and the final reference state."""
    state = new_state(p0, initial_square_avg)
    p = exact(p0, Precision.of(p0.dtype))
    history = []
    for g in grads:
        p = reference_step(p, g, state, **options)
        history.append(p)
    return history, state


def tolerance(expected: Tracked) -> np.ndarray:
    """Twice the first-order bound: second-order terms are far below it for these sizes."""
    return 2 * expected.err


def assert_matches_reference(actual: np.ndarray, expected: Tracked) -> None:
    """Equal within the error bound; NaN exactly where the reference is NaN.

    Where the bound is infinite (rounding may have sent a denominator to 0), the reference
    proves nothing and any result is accepted.
    """
    ref = expected.value
    got = actual.astype(np.float64)
    bounded = ~np.isinf(tolerance(expected))
    nan_mismatch = np.isnan(got) != np.isnan(ref)
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref)
        same_inf = np.isinf(ref) & (got == ref)
        wrong_value = ~np.isnan(ref) & ~same_inf & ~(err <= tolerance(expected))
        bad = bounded & (nan_mismatch | wrong_value)
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(
            f"{int(bad.sum())} of {actual.size} elements outside the error bound; first at {i}: "
            f"got {actual.flat[i]!r}, reference {ref.flat[i]!r}, |err| {err.flat[i]:.3g} > "
            f"bound {tolerance(expected).flat[i]:.3g}"
        )


# Three representative settings: torch's defaults, the common extras, every non-torch option.
REPRESENTATIVE_OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {
        "eps_in_sqrt": True,
        "lr_in_momentum": True,
        "momentum": 0.9,
        "nesterov": True,
        "decoupled_weight_decay": True,
        "weight_decay": 0.1,
        "bias_correction": True,
        "maximize": True,
    },
]
REPRESENTATIVE_IDS = ["default", "mixed", "extras"]


def option_combinations() -> list[dict[str, Any]]:
    """Every combination of the switches of SPEC §2 that the validation accepts.

    Except centered with bias_correction from a zero state: the debiased variance of a single
    sample is exactly 0, so the first step divides by eps and rounding alone decides the
    result. test_reference covers that pair from a state past its first step.
    """
    out = []
    for centered, maximize, eps_in_sqrt, bias_correction in itertools.product(
        [False, True], repeat=4
    ):
        if centered and bias_correction:
            continue
        for momentum, lr_in_momentum, nesterov in [
            (0.0, False, False),
            (0.9, False, False),
            (0.9, True, False),
            (0.9, False, True),
            (0.9, True, True),
        ]:
            for weight_decay, decoupled in [(0.0, False), (0.1, False), (0.1, True)]:
                out.append(
                    {
                        "centered": centered,
                        "maximize": maximize,
                        "eps_in_sqrt": eps_in_sqrt,
                        "bias_correction": bias_correction,
                        "momentum": momentum,
                        "lr_in_momentum": lr_in_momentum,
                        "nesterov": nesterov,
                        "weight_decay": weight_decay,
                        "decoupled_weight_decay": decoupled,
                    }
                )
    return out


def option_id(options: dict[str, Any]) -> str:
    parts = [k for k, v in options.items() if v is True]
    parts += [f"{k}={v}" for k, v in options.items() if not isinstance(v, bool) and v]
    return "-".join(parts) or "plain"
