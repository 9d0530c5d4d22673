"""state_dtype where other features meet it: RowGrad sparse steps refuse 8-bit state and the MPI
sharder keeps float32 state only, both clearly and before anything is written. (bfloat16 state
with RowGrad: tests/test_rows.py; the torch adapter: tests/test_torch_state_dtype.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from rmsprop import RMSprop, RowGrad
from rmsprop.functional import new_state, rmsprop_step

COMPACT = ("bfloat16", "8bit")


@pytest.mark.parametrize("dense_first", [False, True])
def test_row_grad_with_8bit_state_is_refused_before_any_write(dense_first: bool) -> None:
    rng = np.random.default_rng(3)
    param = rng.standard_normal((64, 128)).astype(np.float32)  # 8192 elements: 8-bit state
    opt = RMSprop([param], lr=0.1, momentum=0.9, state_dtype="8bit")
    if dense_first:
        opt.step([rng.standard_normal(param.shape).astype(np.float32)])
    before = param.copy()
    state_before = {k: np.copy(v) for k, v in opt.state[0].items()}
    grad = RowGrad(np.array([1, 5]), rng.standard_normal((2, 128)).astype(np.float32))
    with pytest.raises(
        ValueError, match=r"RowGrad.*8-bit state.*block's scale.*state_dtype='bfloat16'"
    ):
        opt.step([grad])
    np.testing.assert_array_equal(param, before)
    assert opt.state[0].keys() == state_before.keys()
    for key, value in state_before.items():
        np.testing.assert_array_equal(opt.state[0][key], value)


def test_row_grad_in_an_8bit_group_steps_a_small_table_with_its_float32_state() -> None:
    # Below 4096 elements "8bit" keeps float32 state, which a row update keeps exactly.
    table = np.ones((16, 8), np.float32)
    reference = table.copy()
    opt = RMSprop([table], lr=0.1, momentum=0.9, state_dtype="8bit")
    dense = RMSprop([reference], lr=0.1, momentum=0.9, state_dtype="float32")
    opt.step([RowGrad(np.array([2, 9]), np.full((2, 8), 0.5, np.float32))])
    grad = np.zeros_like(reference)
    grad[[2, 9]] = 0.5
    dense.step([grad])
    assert opt.state[0]["square_avg"].dtype == np.float32
    np.testing.assert_array_equal(table, reference)  # zero-gradient rows do not move either


def test_functional_row_grad_with_8bit_state_is_refused() -> None:
    param = np.ones((64, 128), np.float32)
    state = new_state(param, "8bit")
    copies = {k: v.copy() for k, v in state.items()}
    grad = RowGrad(np.array([0]), np.ones((1, 128), np.float32))
    with pytest.raises(ValueError, match=r"RowGrad.*8-bit state"):
        rmsprop_step(
            param,
            grad,
            state["square_avg"],
            square_avg_scale=state["square_avg_scale"],
            state_dtype="8bit",
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
