"""state_dtype where other features meet it: RowGrad sparse steps, the MPI sharder and the torch
adapter keep float32 state only, and refuse compact state clearly before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from rmsprop import RMSprop, RowGrad
from rmsprop.functional import new_state, rmsprop_step

COMPACT = ("bfloat16", "8bit")


@pytest.mark.parametrize("state_dtype", COMPACT)
@pytest.mark.parametrize("dense_first", [False, True])
def test_row_grad_with_compact_state_is_refused_before_any_write(
    state_dtype: str, dense_first: bool
) -> None:
    rng = np.random.default_rng(3)
    param = rng.standard_normal((64, 128)).astype(np.float32)  # 8192 elements: 8-bit state
    opt = RMSprop([param], lr=0.1, momentum=0.9, state_dtype=state_dtype)
    if dense_first:
        opt.step([rng.standard_normal(param.shape).astype(np.float32)])
    before = param.copy()
    state_before = {k: np.copy(v) for k, v in opt.state[0].items()}
    grad = RowGrad(np.array([1, 5]), rng.standard_normal((2, 128)).astype(np.float32))
    with pytest.raises(ValueError, match=r"RowGrad.*state_dtype='float32'"):
        opt.step([grad])
    np.testing.assert_array_equal(param, before)
    assert opt.state[0].keys() == state_before.keys()
    for key, value in state_before.items():
        np.testing.assert_array_equal(opt.state[0][key], value)


@pytest.mark.parametrize("state_dtype", COMPACT)
def test_functional_row_grad_with_compact_state_is_refused(state_dtype: str) -> None:
    param = np.ones((64, 128), np.float32)
    state = new_state(param, state_dtype)
    copies = {k: v.copy() for k, v in state.items()}
    grad = RowGrad(np.array([0]), np.ones((1, 128), np.float32))
    with pytest.raises(ValueError, match="RowGrad"):
        rmsprop_step(
            param,
            grad,
            state["square_avg"],
            square_avg_scale=state.get("square_avg_scale"),
            state_dtype=state_dtype,
        )
    np.testing.assert_array_equal(param, np.ones((64, 128), np.float32))
    for key, value in copies.items():
        np.testing.assert_array_equal(state[key], value)


def test_row_grad_with_float32_state_still_steps() -> None:
    param = np.ones((8, 4), np.float32)
    opt = RMSprop([param], lr=0.1, state_dtype="float32")
    opt.step([RowGrad(np.array([2]), np.ones((1, 4), np.float32))])
    assert not np.array_equal(param[2], np.ones(4, np.float32))
    np.testing.assert_array_equal(param[3], np.ones(4, np.float32))


@pytest.mark.parametrize("state_dtype", COMPACT)
def test_sharded_rmsprop_refuses_compact_state(state_dtype: str) -> None:
    mpi = pytest.importorskip("mpi4py.MPI")
    from rmsprop.distributed import ShardedRMSprop

    w = np.zeros(8192, dtype=np.float32)
    with pytest.raises(ValueError, match=r"state_dtype=.*not supported by ShardedRMSprop"):
        ShardedRMSprop([{"params": [w], "state_dtype": state_dtype}], mpi.COMM_SELF, lr=0.1)
    opt = ShardedRMSprop([{"params": [w], "state_dtype": "float32"}], mpi.COMM_SELF, lr=0.1)
    opt.param_groups[0]["state_dtype"] = state_dtype
    with pytest.raises(ValueError, match="not supported by ShardedRMSprop"):
        opt.step([np.ones(8192, dtype=np.float32)])
    np.testing.assert_array_equal(w, np.zeros(8192, dtype=np.float32))


@pytest.mark.parametrize("state_dtype", COMPACT)
def test_torch_adapter_refuses_compact_state(state_dtype: str) -> None:
    torch = pytest.importorskip("torch")
    import rmsprop.torch

    w = torch.zeros(8192)
    with pytest.raises(ValueError, match=r"not supported by rmsprop\.torch\.RMSprop"):
        rmsprop.torch.RMSprop([{"params": [w], "state_dtype": state_dtype}], lr=0.1)
    opt = rmsprop.torch.RMSprop([w], lr=0.1)
    with pytest.raises(ValueError, match=r"not supported by rmsprop\.torch\.RMSprop"):
        opt.add_param_group({"params": [torch.zeros(3)], "state_dtype": state_dtype})
    opt.param_groups[0]["state_dtype"] = state_dtype
    w.grad = torch.ones(8192)
    with pytest.raises(ValueError, match=r"not supported by rmsprop\.torch\.RMSprop"):
        opt.step()
    assert torch.equal(w, torch.zeros(8192))
