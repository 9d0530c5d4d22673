"""Our results against the float64 reference of SPEC §2, within the error model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cases import (
    assert_matches_reference,
    option_combinations,
    option_id,
    run_reference,
    well_conditioned,
)
from reference import Precision, exact, reference_step
from rmsprop import RMSprop
from rmsprop.functional import rmsprop_step

DTYPES = (np.float32, np.float64)
STEPS = 5

pytestmark = pytest.mark.usefixtures("isa")


def run_optimizer(p0: np.ndarray, grads: list, **kwargs: Any) -> list[np.ndarray]:
    p = p0.copy()
    opt = RMSprop([p], **kwargs)
    history = []
    for g in grads:
        opt.step([g])
        history.append(p.copy())
    return history


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", option_combinations(), ids=option_id)
def test_every_option_combination(options: dict[str, Any], dtype: Any) -> None:
    # eps = 1e-3 so that where eps sits (inside or outside the square root) is visible far
    # above the error model; at 1e-8 the two placements agree to float32 rounding.
    p0, grads = well_conditioned(37, dtype, STEPS, seed=1)
    ours = run_optimizer(p0, grads, lr=0.01, alpha=0.9, eps=1e-3, **options)
    expected, _ = run_reference(p0, grads, lr=0.01, alpha=0.9, eps=1e-3, **options)
    assert_matches_reference(ours[-1], expected[-1])


SIZES = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    65,
    127,
    129,
    4097,
    2 * 32768 + 17,
    1_000_003,
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
        {"eps_in_sqrt": True, "lr_in_momentum": True, "momentum": 0.5, "nesterov": True},
    ],
    ids=option_id,
)
def test_sizes_straddling_lanes_lines_and_grain(
    size: int, dtype: Any, options: dict[str, Any], threads: int
) -> None:
    p0, grads = well_conditioned(size, dtype, 3, seed=size)
    ours = run_optimizer(p0, grads, **options)
    expected, _ = run_reference(p0, grads, **options)
    assert_matches_reference(ours[-1], expected[-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_initial_square_avg_and_extreme_alphas(dtype: Any) -> None:
    p0, grads = well_conditioned(40, dtype, STEPS, seed=3)
    for alpha in (0.0, 0.5, 0.999, 1.0):
        ours = run_optimizer(p0, grads, alpha=alpha, initial_square_avg=1.0, eps_in_sqrt=True)
        expected, _ = run_reference(
            p0, grads, alpha=alpha, initial_square_avg=1.0, eps_in_sqrt=True
        )
        assert_matches_reference(ours[-1], expected[-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_centered_bias_correction_past_the_first_step(dtype: Any) -> None:
    """From step 4 on, with averages of three earlier gradients, the variance is well posed."""
    p0, grads = well_conditioned(50, dtype, STEPS + 3, seed=4)
    options = {"centered": True, "momentum": 0.9, "bias_correction": True, "alpha": 0.9}
    warm = {k: v for k, v in options.items() if k != "bias_correction"}
    _, state = run_reference(p0, grads[:3], **warm)
    prec = Precision.of(dtype)
    # Start both from the same rounded state, which the reference then treats as exact.
    v, ga, m = (
        x.value.astype(dtype) for x in (state.square_avg, state.grad_avg, state.momentum_buffer)
    )
    state.square_avg, state.grad_avg, state.momentum_buffer = (exact(x, prec) for x in (v, ga, m))
    p = p0.copy()
    expected = exact(p0, prec)
    for t, g in enumerate(grads[3:], start=4):
        rmsprop_step(p, g, v, grad_avg=ga, momentum_buffer=m, step=t, **options)
        expected = reference_step(expected, g, state, **options)
    assert_matches_reference(p, expected)
    assert_matches_reference(v, state.square_avg)


def test_state_buffers_match_reference() -> None:
    p0, grads = well_conditioned(33, np.float64, STEPS, seed=5)
    p = p0.copy()
    opt = RMSprop([p], momentum=0.9, centered=True, alpha=0.9)
    for g in grads:
        opt.step([g])
    _, state = run_reference(p0, grads, momentum=0.9, centered=True, alpha=0.9)
    for key in ("square_avg", "grad_avg", "momentum_buffer"):
        assert_matches_reference(opt.state[0][key], getattr(state, key))
