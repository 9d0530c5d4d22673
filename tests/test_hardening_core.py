"""Regression tests for the core's hardening (issue 9, C++ half): overflow in the centered
variance, NaN bits across ISAs, the floating-point environment, fork safety, hostile Python
scalars and the wording of the bindings' refusals."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import rmsprop
from conftest import SUPPORTED_ISAS, THREAD_COUNTS
from rmsprop.functional import rmsprop_step

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BF16]
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(UINT[a.itemsize]).copy()


def state_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


# ------------------------------------------------------------------------------------------
# Defect 1: centered=True with an overflowing square average.

# A finite gradient whose (1 - alpha) * g^2 overflows the state type; 16-bit grads cannot hold
# one, so they are unscaled from a tiny grad_scale into the float32 range where it overflows.
HUGE = {
    "float32": (1e30, 1.0),
    "float64": (1e200, 1.0),
    "float16": (6e4, 1e-30),
    "bfloat16": (1e30, 1.0),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias_correction", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_centered_overflow_gives_a_zero_step_not_nan(
    isa: str, dtype: np.dtype, bias_correction: bool, momentum: float
) -> None:
    n = 37  # a vector body and a scalar tail on every ISA
    value, grad_scale = HUGE[str(dtype)]
    p = np.linspace(-1, 1, n).astype(dtype)
    before = bits(p)
    g = np.full(n, value, dtype)
    g[::2] *= -1
    sd = state_dtype(dtype)
    v, ga, m = np.zeros(n, sd), np.zeros(n, sd), np.zeros(n, sd)
    for step in (1, 2):
        rmsprop_step(
            p,
            g,
            v,
            grad_avg=ga,
            momentum_buffer=m if momentum else None,
            step=step,
            centered=True,
            momentum=momentum,
            bias_correction=bias_correction,
            grad_scale=grad_scale,
        )
        assert np.isinf(v).all()
        assert np.array_equal(bits(p), before), "an overflowing square average must not move p"
    # A square average that is already inf, with a grad_avg whose square overflows.
    v[:] = np.inf
    ga[:] = np.finfo(sd).max / 2
    rmsprop_step(p, np.ones(n, dtype), v, grad_avg=ga, centered=True, step=3)
    assert np.array_equal(bits(p), before)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_centered_nonfinite_gradient_still_gives_nan(isa: str, dtype: np.dtype, bad: float) -> None:
    n = 37
    p = np.ones(n, dtype)
    g = np.full(n, 0.5, dtype)
    g[3] = g[n - 1] = bad
    sd = state_dtype(dtype)
    rmsprop_step(p, g, np.zeros(n, sd), grad_avg=np.zeros(n, sd), centered=True)
    assert np.isnan(p.astype(np.float64)[[3, n - 1]]).all()
    assert np.isfinite(np.delete(p.astype(np.float64), [3, n - 1])).all()


def test_centered_grad_avg_nan_still_propagates(isa: str) -> None:
    """Saturating ga^2 must not hide a NaN in the state: it reaches the param as before."""
    p = np.ones(37, np.float32)
    ga = np.zeros(37, np.float32)
    ga[5] = np.nan
    rmsprop_step(p, np.ones_like(p), np.ones_like(p), grad_avg=ga, centered=True)
    assert np.isnan(p[5]) and np.isfinite(np.delete(p, 5)).all()


# ------------------------------------------------------------------------------------------
# Defect 7: NaN bits are the same on every ISA and thread count.

# Two NaNs of each storage type with different signs and payloads, one of them signaling.
NANS = {
    2: {"float16": (0x7C03, 0xFE02), "bfloat16": (0x7F83, 0xFFC2)},
    4: (0x7F800003, 0xFFC00002),
    8: (0x7FF0000000000003, 0xFFF8000000000002),
}


def nan_bits(dtype: np.dtype) -> tuple[int, int]:
    found = NANS[dtype.itemsize]
    return found[str(dtype)] if isinstance(found, dict) else found


def nan_pattern(slots: int, size: int) -> np.ndarray:
    """Row i says, for each of `slots` arrays, whether element i is finite (0) or which NaN
    (1, 2): every combination appears, tiled to `size` elements."""
    combos = np.array(list(itertools.product(range(3), repeat=slots)), np.uint8)
    return combos[np.arange(size) % len(combos)]


def with_nans(values: np.ndarray, which: np.ndarray) -> np.ndarray:
    out = bits(values)
    first, second = nan_bits(values.dtype)
    out[which == 1] = first
    out[which == 2] = second
    return out.view(values.dtype)


NAN_OPTIONS: list[dict[str, Any]] = [
    {},
    {"centered": True, "momentum": 0.9, "weight_decay": 0.1},
    {
        "centered": True,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.1,
        "decoupled_weight_decay": True,
        "eps_in_sqrt": True,
        "bias_correction": True,
    },
    {
        "momentum": 0.5,
        "lr_in_momentum": True,
        "maximize": True,
        "grad_scale": 4.0,
        "weight_decay": 0.01,
    },
]


def nan_step(
    dtype: np.dtype, options: dict[str, Any], size: int, master: bool, stochastic: bool
) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    sd = state_dtype(dtype)
    pattern = nan_pattern(6, size)

    def array(k: int, dt: np.dtype, positive: bool = False) -> np.ndarray:
        x = rng.standard_normal(size)
        x = np.abs(x) if positive else x
        return with_nans(x.astype(dt), pattern[:, k])

    p, g = array(0, dtype), array(1, dtype)
    v, m, ga = array(2, sd, positive=True), array(3, sd), array(4, sd)
    master_param = array(5, sd) if master else None
    rmsprop_step(
        p,
        g,
        v,
        momentum_buffer=m if options.get("momentum") else None,
        grad_avg=ga if options.get("centered") else None,
        master_param=master_param,
        step=3,
        stochastic_rounding=stochastic,
        **options,
    )
    assert np.isnan(p.astype(np.float32)).any()
    arrays = [p, v, m, ga] + ([master_param] if master_param is not None else [])
    return [bits(a) for a in arrays]


@pytest.mark.parametrize("options", NAN_OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("size", [243, 70_001])  # one body + tail; enough for two threads
def test_nan_bits_identical_on_every_isa_and_thread_count(
    dtype: np.dtype, options: dict[str, Any], size: int
) -> None:
    sixteen = dtype.itemsize == 2
    extras = [(False, False)] + ([(True, False)] if sixteen else [])
    extras += [(False, True)] if dtype == BF16 else []
    before_isa, before_threads = rmsprop.config()["isa"], rmsprop.get_num_threads()
    try:
        for master, stochastic in extras:
            results = {}
            for isa, threads in itertools.product(SUPPORTED_ISAS, THREAD_COUNTS):
                rmsprop.set_isa(isa)
                rmsprop.set_num_threads(threads)
                results[isa, threads] = nan_step(dtype, options, size, master, stochastic)
            reference = results[SUPPORTED_ISAS[0], 1]
            for key, got in results.items():
                for name, a, b in zip(
                    ["param", "square_avg", "momentum_buffer", "grad_avg", "master_param"],
                    reference,
                    got,
                ):
                    mismatch = np.flatnonzero(a != b)
                    assert mismatch.size == 0, (
                        f"{name} bits differ on {key} (master={master}, stochastic="
                        f"{stochastic}) at {mismatch[:5]}: {a[mismatch[:3]]} vs "
                        f"{b[mismatch[:3]]}"
                    )
    finally:
        rmsprop.set_isa(before_isa)
        rmsprop.set_num_threads(before_threads)
