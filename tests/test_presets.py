"""Presets, equivalences between options, and the centered variant that never returns NaN."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cases import assert_matches_reference, run_reference, tolerance, well_conditioned
from rmsprop import PRESETS, RMSprop

pytestmark = pytest.mark.usefixtures("isa")


def resolved(**kwargs: Any) -> dict[str, Any]:
    p = np.zeros(3, np.float32)
    group = RMSprop([p], **kwargs).param_groups[0]
    return {k: v for k, v in group.items() if k != "params"}


def test_presets_fill_documented_defaults() -> None:
    keras = resolved(preset="keras")
    assert (keras["lr"], keras["alpha"], keras["eps"]) == (1e-3, 0.9, 1e-7)
    assert keras["eps_in_sqrt"] and keras["lr_in_momentum"] and keras["decoupled_weight_decay"]
    tf1 = resolved(preset="tf1", lr=0.1)
    assert (tf1["alpha"], tf1["eps"], tf1["initial_square_avg"]) == (0.9, 1e-10, 1.0)
    assert tf1["eps_in_sqrt"] and tf1["lr_in_momentum"]
    optax = resolved(preset="optax")
    assert (optax["alpha"], optax["eps"], optax["eps_in_sqrt"]) == (0.9, 1e-8, True)
    seed = resolved(preset="seed")
    assert (seed["lr"], seed["alpha"], seed["eps_in_sqrt"], seed["lr_in_momentum"]) == (
        1e-3,
        0.9,
        True,
        False,
    )
    assert resolved(preset="torch") == resolved()
    assert set(PRESETS) == {"torch", "keras", "tf1", "optax", "seed"}


def test_explicit_keywords_win_over_presets() -> None:
    group = resolved(preset="keras", lr=0.5, eps=1e-3, eps_in_sqrt=False)
    assert (group["lr"], group["eps"], group["eps_in_sqrt"]) == (0.5, 1e-3, False)
    assert group["alpha"] == 0.9  # still the preset's


def test_tf1_needs_a_learning_rate() -> None:
    with pytest.raises(ValueError, match="preset 'tf1' has no default for lr"):
        resolved(preset="tf1")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_matches_the_reference_with_its_options(preset: str) -> None:
    options = {k: v for k, v in PRESETS[preset].items() if k != "initial_square_avg"}
    options["lr"] = 0.01
    initial = PRESETS[preset].get("initial_square_avg", 0.0)
    p0, grads = well_conditioned(33, np.float32, 5, seed=21)
    p = p0.copy()
    opt = RMSprop([p], preset=preset, lr=0.01, momentum=0.9)
    for g in grads:
        opt.step([g])
    expected, _ = run_reference(p0, grads, initial_square_avg=initial, momentum=0.9, **options)
    assert_matches_reference(p, expected[-1])


def run(p0: np.ndarray, grads: list, lrs: list[float], **kwargs: Any) -> np.ndarray:
    p = p0.copy()
    opt = RMSprop([p], **kwargs)
    for lr, g in zip(lrs, grads):
        opt.param_groups[0]["lr"] = lr
        opt.step([g])
    return p


def test_lr_in_momentum_equals_torch_style_at_constant_lr_and_differs_under_a_schedule() -> None:
    p0, grads = well_conditioned(64, np.float64, 8, seed=3)
    constant = [0.01] * 8
    a = run(p0, grads, constant, momentum=0.9)
    b = run(p0, grads, constant, momentum=0.9, lr_in_momentum=True)
    expected, _ = run_reference(p0, grads, momentum=0.9, lr=0.01)
    assert np.all(np.abs(a - b) <= 2 * tolerance(expected[-1]))
    decaying = [0.01 / (k + 1) for k in range(8)]
    a = run(p0, grads, decaying, momentum=0.9)
    b = run(p0, grads, decaying, momentum=0.9, lr_in_momentum=True)
    # Under a decaying lr torch re-scales the whole buffer by today's lr; TF scaled each past
    # update by its own lr, so TF's steps are larger: the difference is of the order of lr.
    assert np.max(np.abs(a - b)) > 1e-3


def test_decoupled_weight_decay_differs_from_coupled_and_matches_its_formula() -> None:
    p0, grads = well_conditioned(40, np.float64, 4, seed=5)
    coupled = run(p0, grads, [0.01] * 4, weight_decay=0.1)
    decoupled = run(p0, grads, [0.01] * 4, weight_decay=0.1, decoupled_weight_decay=True)
    assert np.max(np.abs(coupled - decoupled)) > 1e-4
    expected, _ = run_reference(p0, grads, weight_decay=0.1, decoupled_weight_decay=True)
    assert_matches_reference(decoupled, expected[-1])


def test_bias_correction_with_alpha_zero_is_the_plain_rule() -> None:
    p0, grads = well_conditioned(20, np.float64, 3, seed=8)
    a = run(p0, grads, [0.01] * 3, alpha=0.0)
    b = run(p0, grads, [0.01] * 3, alpha=0.0, bias_correction=True)
    assert a.tobytes() == b.tobytes()  # 1 - 0**t == 1 exactly: the multiplier is exactly 1


def near_constant_gradients(n: int, steps: int) -> list[np.ndarray]:
    """g = 1000 + tiny noise: in float32, v - ga^2 rounds below zero for many elements."""
    rng = np.random.default_rng(0)
    return [(1000.0 + 1e-3 * rng.standard_normal(n)).astype(np.float32) for _ in range(steps)]


def test_centered_never_nan_where_torch_is() -> None:
    torch = pytest.importorskip("torch")
    n, steps, alpha = 256, 40, 0.5
    grads = near_constant_gradients(n, steps)
    p = np.zeros(n, np.float32)
    opt = RMSprop([p], centered=True, alpha=alpha, lr=1e-3)
    tp = torch.zeros(n, requires_grad=True)
    topt = torch.optim.RMSprop([tp], centered=True, alpha=alpha, lr=1e-3)
    for g in grads:
        opt.step([g])
        tp.grad = torch.from_numpy(g)
        topt.step()
    theirs = tp.detach().numpy()
    assert np.isnan(theirs).any(), "the case no longer shows torch's NaN"
    assert np.isfinite(p).all()


def test_centered_negative_variance_is_clamped_to_zero() -> None:
    """A state with grad_avg^2 > square_avg (rounding can produce it) steps by g / eps."""
    from rmsprop.functional import rmsprop_step

    p = np.zeros(4)
    g = np.ones(4)
    v = np.zeros(4)
    ga = np.full(4, 0.9)  # after the update: v = 0.1, ga = 1.0, v - ga^2 = -0.9
    rmsprop_step(p, g, v, grad_avg=ga, centered=True, alpha=0.9, eps=1e-2, lr=1e-3)
    assert np.all(p == -1e-3 * (1.0 / 1e-2))
    rmsprop_step(
        p, g, v, grad_avg=ga, centered=True, alpha=0.9, eps=1e-2, lr=1e-3, eps_in_sqrt=True
    )
    assert np.all(np.isfinite(p))


def test_centered_with_alpha_zero_has_exactly_zero_variance() -> None:
    p0, grads = well_conditioned(16, np.float64, 3, seed=9)
    p = run(p0, grads, [1e-3] * 3, centered=True, alpha=0.0, eps=1e-2)
    expected, _ = run_reference(p0, grads, centered=True, alpha=0.0, eps=1e-2, lr=1e-3)
    assert_matches_reference(p, expected[-1])
