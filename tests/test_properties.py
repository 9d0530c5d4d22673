"""Hypothesis: random shapes, dtypes, hyper-parameters, options and hostile values.

Finite inputs must match the float64 reference within its running error bound (which is wide
exactly where the problem is ill conditioned). Non-finite gradients propagate as the reference
says: an inf or NaN gradient element makes that param element NaN (inf/inf or NaN arithmetic),
and every other element is unaffected. Refused inputs never modify anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cases import assert_matches_reference, run_reference
from rmsprop import RMSprop

pytestmark = pytest.mark.usefixtures("isa")

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

dtypes = st.sampled_from([np.float32, np.float64])
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)


@st.composite
def hyper_parameters(draw: st.DrawFn) -> dict[str, Any]:
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99]))
    alpha = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]) | st.floats(0.0, 1.0))
    options = {
        "lr": draw(st.sampled_from([0.0, 1e-4, 1e-2, 1.0]) | st.floats(0.0, 1.0)),
        "alpha": alpha,
        "eps": draw(st.sampled_from([0.0, 1e-10, 1e-8, 1e-3, 1.0])),
        "weight_decay": draw(st.sampled_from([0.0, 1e-4, 0.1, 1.0])),
        "momentum": momentum,
        "centered": draw(st.booleans()),
        "maximize": draw(st.booleans()),
        "eps_in_sqrt": draw(st.booleans()),
        "lr_in_momentum": draw(st.booleans()),
        "nesterov": momentum > 0 and draw(st.booleans()),
        "decoupled_weight_decay": draw(st.booleans()),
        "bias_correction": alpha < 1 and draw(st.booleans()),
    }
    return options


def finite_arrays(dtype: Any, shape: tuple[int, ...], max_magnitude: float) -> st.SearchStrategy:
    # Magnitudes stay where g*g cannot overflow the dtype (float32: |g| < 1.8e19); beyond
    # that torch and we both take a zero step (g / inf) while float64 math would not.
    bound = float(np.asarray(max_magnitude, dtype))  # representable in the dtype
    elements = st.floats(
        -bound,
        bound,
        allow_nan=False,
        allow_infinity=False,
        width=32 if dtype == np.float32 else 64,
    )
    return hnp.arrays(dtype, shape, elements=elements)


@SETTINGS
@given(data=st.data(), dtype=dtypes, shape=shapes, options=hyper_parameters())
def test_random_finite_inputs_match_reference(data, dtype, shape, options) -> None:
    magnitude = 1e15 if dtype == np.float32 else 1e100
    p0 = data.draw(finite_arrays(dtype, shape, 1e3), label="p0")
    grads = [data.draw(finite_arrays(dtype, shape, magnitude), label=f"g{k}") for k in range(3)]
    p = p0.copy()
    opt = RMSprop([p], **options)
    with np.errstate(all="ignore"):
        for g in grads:
            opt.step([g])
        expected, state = run_reference(p0, grads, **options)
    assert_matches_reference(p, expected[-1])
    assert_matches_reference(opt.state[0]["square_avg"], state.square_avg)


@SETTINGS
@given(data=st.data(), dtype=dtypes, options=hyper_parameters())
def test_nonfinite_gradients_propagate_like_the_reference(data, dtype, options) -> None:
    n = 24
    p0 = data.draw(finite_arrays(dtype, (n,), 10.0), label="p0")
    g = data.draw(finite_arrays(dtype, (n,), 10.0), label="g")
    bad = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4, unique=True))
    for i, value in zip(
        bad,
        data.draw(
            st.lists(
                st.sampled_from([np.inf, -np.inf, np.nan]), min_size=len(bad), max_size=len(bad)
            )
        ),
    ):
        g[i] = value
    p = p0.copy()
    with np.errstate(all="ignore"):
        RMSprop([p], **options).step([g])
        expected, _ = run_reference(p0, [g], **options)
    # Whatever the options: u is inf/inf, inf - inf or NaN arithmetic there, so the element
    # becomes NaN (even at lr = 0: 0 * NaN is NaN); the reference agrees element by element.
    assert np.isnan(p[bad]).all()
    assert_matches_reference(p, expected[-1])


@SETTINGS
@given(data=st.data(), dtype=dtypes)
def test_refused_step_never_modifies_anything(data, dtype) -> None:
    n = data.draw(st.integers(1, 40))
    p = data.draw(finite_arrays(dtype, (n,), 10.0))
    q = data.draw(finite_arrays(dtype, (n + 1,), 10.0))
    opt = RMSprop([p, q], momentum=0.9, centered=data.draw(st.booleans()))
    opt.step([np.ones_like(p), np.ones_like(q)])
    before = [p.copy(), q.copy()] + [s["square_avg"].copy() for s in opt.state]
    other = np.float64 if dtype == np.float32 else np.float32
    hostile = data.draw(
        st.sampled_from(
            [
                np.ones(n + 2, dtype),  # wrong shape
                np.ones(n + 1, other),  # wrong dtype
                np.ones(2 * (n + 1), dtype)[::2],  # strided
                q,  # the param itself
                [1.0] * (n + 1),  # not an array
                np.ones(n + 1, np.int64),  # integers
            ]
        )
    )
    with pytest.raises((TypeError, ValueError)):
        opt.step([np.ones_like(p), hostile])
    after = [p, q] + [s["square_avg"] for s in opt.state]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, after))
    assert [s["step"] for s in opt.state] == [1, 1]
