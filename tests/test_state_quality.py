"""Training with bfloat16 and 8-bit state follows float32 state on small real tasks (SPEC §8):
a regression with a known optimum and scikit-learn's digits (skipped without scikit-learn)."""

from __future__ import annotations

import pytest
import quality_tasks


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_regression_reaches_the_float32_state_optimum(momentum: float) -> None:
    base = quality_tasks.regression("float32", momentum, epochs=12)["excess_loss"]
    assert base < 0.02  # the task itself gets close to the known optimum
    for state_dtype in ("bfloat16", "8bit"):
        got = quality_tasks.regression(state_dtype, momentum, epochs=12)["excess_loss"]
        assert got == pytest.approx(base, rel=0.05), state_dtype


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_digits_mlp_matches_float32_state(momentum: float) -> None:
    pytest.importorskip("sklearn")
    base = quality_tasks.digits_mlp("float32", momentum, epochs=6)
    assert base["test_accuracy"] > 0.9
    for state_dtype in ("bfloat16", "8bit"):
        got = quality_tasks.digits_mlp(state_dtype, momentum, epochs=6)
        assert got["train_loss"] == pytest.approx(base["train_loss"], rel=0.05), state_dtype
        assert got["test_accuracy"] >= base["test_accuracy"] - 0.02, state_dtype
