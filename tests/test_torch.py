"""Agreement with torch.optim.RMSprop, the reference implementation of the default semantics."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from cases import run_reference, tolerance, well_conditioned
from reference import Precision, exact, new_state, reference_step
from rmsprop import RMSprop

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("isa")

TORCH_OPTIONS = [
    {"weight_decay": wd, "momentum": mom, "centered": centered, "maximize": maximize}
    for wd, mom, centered, maximize in itertools.product(
        [0.0, 0.1], [0.0, 0.9], [False, True], [False, True]
    )
]
STEPS = 4


def option_id(options: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items())


def run_torch(p0: np.ndarray, grads: list, **kwargs: Any) -> np.ndarray:
    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.RMSprop([tp], **kwargs)
    for g in grads:
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
    return tp.detach().numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 15, 17, 1_000_003])
@pytest.mark.parametrize("options", TORCH_OPTIONS, ids=option_id)
def test_matches_torch(options: dict[str, Any], size: int, dtype: Any) -> None:
    p0, grads = well_conditioned(size, dtype, STEPS, seed=size + 7)
    kwargs = {"lr": 0.01, "alpha": 0.9, "eps": 1e-3, **options}
    p = p0.copy()
    opt = RMSprop([p], **kwargs)
    for g in grads:
        opt.step([g])
    expected_torch = run_torch(p0, grads, **kwargs)
    expected, _ = run_reference(p0, grads, **kwargs)
    # Both are within the error bound of the exact result, so within twice it of each other.
    err = np.abs(p.astype(np.float64) - expected_torch)
    assert np.all(err <= 2 * tolerance(expected[-1])), float(err.max(initial=0.0))


def test_defaults_match_torch_defaults() -> None:
    p0, grads = well_conditioned(64, np.float32, 6, seed=11)
    p = p0.copy()
    opt = RMSprop([p])
    for g in grads:
        opt.step([g])
    expected = run_torch(p0, grads)
    reference, _ = run_reference(p0, grads)
    assert np.all(np.abs(p - expected) <= 2 * tolerance(reference[-1]))


def test_lr_schedule_through_param_groups_matches_torch() -> None:
    p0, grads = well_conditioned(40, np.float32, 6, seed=12)
    p = p0.copy()
    opt = RMSprop([p], lr=0.1, momentum=0.9)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    topt = torch.optim.RMSprop([tp], lr=0.1, momentum=0.9)
    for k, g in enumerate(grads):
        opt.param_groups[0]["lr"] = topt.param_groups[0]["lr"] = 0.1 / (k + 1)
        opt.step([g])
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
    # The reference cannot follow a schedule through run_reference; step it by hand.
    state = new_state(p0)
    expected = exact(p0, Precision.of(p0.dtype))
    for k, g in enumerate(grads):
        expected = reference_step(expected, g, state, lr=0.1 / (k + 1), momentum=0.9)
    err = np.abs(p.astype(np.float64) - tp.detach().numpy())
    assert np.all(err <= 2 * tolerance(expected))


@pytest.mark.parametrize(
    ("dtype", "grad", "alpha"),
    [
        (np.float32, 2e19, 0.99),  # g*g overflows float32; (1-alpha)*g*g does not
        (np.float32, -3e19, 0.9),
        (np.float32, 2e19, 1.0),  # 0 * inf would be NaN
        (np.float64, 1.5e154, 0.99),
        (np.float64, 1e200, 1.0),
    ],
)
def test_huge_finite_gradients_match_torch(dtype: Any, grad: float, alpha: float) -> None:
    """The square average is formed in torch's order, so it overflows exactly where torch's
    does, not earlier; a finite gradient never makes NaN."""
    p0 = np.array([1.0, -2.0, 0.5], dtype)
    grads = [np.array([grad, 1.0, -grad], dtype)] * 2
    p = p0.copy()
    opt = RMSprop([p], lr=0.1, alpha=alpha)
    for g in grads:
        opt.step([g])
    expected = run_torch(p0, grads, lr=0.1, alpha=alpha)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(opt.state[0]["square_avg"]))
    np.testing.assert_allclose(p, expected, rtol=8 * np.finfo(dtype).eps)
