"""Hyper-parameters and inputs new users get wrong: out-of-range initial_square_avg, other
frameworks' keyword names, and gradients passed as something other than a list."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rmsprop import RMSprop

SIXTEEN_BIT = [np.float16]
try:
    import ml_dtypes

    SIXTEEN_BIT.append(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    pass


@pytest.mark.parametrize("dtype", [np.float32, *SIXTEEN_BIT])
def test_initial_square_avg_beyond_float32_is_refused_at_construction(dtype: Any) -> None:
    p = np.zeros(3, dtype)
    with pytest.raises(
        ValueError,
        match=r"param group 0: initial_square_avg = 1e\+39 is beyond float32's range.*params\[0\]",
    ):
        RMSprop([p], initial_square_avg=1e39)


def test_initial_square_avg_beyond_float32_is_refused_in_add_param_group() -> None:
    opt = RMSprop([np.zeros(3, np.float64)], initial_square_avg=1e39)  # float64 state holds it
    with pytest.raises(ValueError, match=r"param group 1: .*params\[1\] \(float32\)"):
        opt.add_param_group({"params": [np.zeros(2), np.zeros(2, np.float32)]})
    assert len(opt.param_groups) == 1


def test_initial_square_avg_edited_before_the_first_step_is_refused_then() -> None:
    p = np.ones(4, np.float32)
    opt = RMSprop([{"params": [np.ones(2)]}, {"params": [p]}])
    opt.param_groups[1]["initial_square_avg"] = 3.5e38
    with pytest.raises(ValueError, match=r"param group 1: initial_square_avg .*params\[0\]"):
        opt.step([None, np.ones(4, np.float32)])
    assert np.array_equal(p, np.ones(4, np.float32))
    assert opt.state == [{}, {}]
    opt.param_groups[1]["initial_square_avg"] = float(np.finfo(np.float32).max)
    opt.step([None, np.ones(4, np.float32)])  # the largest float32 is allowed
    assert np.isfinite(opt.state[1]["square_avg"]).all()


def test_a_state_dict_with_initial_square_avg_beyond_float32_is_refused() -> None:
    opt = RMSprop([np.ones(4, np.float32)])
    sd = opt.state_dict()
    sd["param_groups"][0]["initial_square_avg"] = 1e39
    with pytest.raises(ValueError, match="initial_square_avg"):
        opt.load_state_dict(sd)
    assert opt.param_groups[0]["initial_square_avg"] == 0.0


@pytest.mark.parametrize(
    ("keyword", "message"),
    [
        ("learning_rate", r"no 'learning_rate'; it is called 'lr'.*preset='keras'"),
        ("rho", r"no 'rho'; it is called 'alpha'.*preset='keras'"),
        ("epsilon", r"no 'epsilon'; it is called 'eps'"),
        ("decay", r"no 'decay'; it is called 'alpha'.*preset='tf1'"),
        ("initial_scale", r"it is called 'initial_square_avg'.*preset='optax'"),
        ("centred", r"unexpected keyword argument 'centred'; did you mean 'centered'"),
    ],
)
def test_other_frameworks_keywords_name_ours_and_the_preset(keyword: str, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        RMSprop([np.zeros(2, np.float32)], **{keyword: 0.9})


@pytest.mark.parametrize(
    "grads",
    [{"w": np.ones(2, np.float32)}, "grad", {np.float32(1.0)}, frozenset(), b"\x00"],
    ids=["dict", "str", "set", "frozenset", "bytes"],
)
def test_grads_that_are_not_a_list_are_refused_as_such(grads: Any) -> None:
    p = np.zeros(2, np.float32)
    opt = RMSprop([p])
    with pytest.raises(TypeError, match=r"^grads must be a list with one gradient per param"):
        opt.step(grads)
    assert opt.state == [{}]
    assert np.array_equal(p, np.zeros(2, np.float32))


def test_a_dict_of_grads_gets_the_recipe() -> None:
    opt = RMSprop([np.zeros(2, np.float32)])
    with pytest.raises(TypeError, match=r"got dict .*\[grads\[name\] for name in names\]"):
        opt.step({"w": np.ones(2, np.float32)})


def test_other_iterables_of_grads_still_work() -> None:
    p = np.zeros(2, np.float32)
    opt = RMSprop([p])
    opt.step(g for g in [np.ones(2, np.float32)])
    assert opt.state[0]["step"] == 1


def test_a_subclass_with_its_own_keywords_is_not_second_guessed() -> None:
    class Sharded(RMSprop):
        def __init__(self, params: Any, comm: Any = None, **options: Any) -> None:
            super().__init__(params, **options)
            self.comm = comm

    opt = Sharded([np.zeros(2, np.float32)], comm="world", lr=0.5)
    assert opt.comm == "world" and opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(TypeError, match="'learning_rate'; it is called 'lr'"):
        Sharded([np.zeros(2, np.float32)], learning_rate=0.5)
