"""state_dtype where other features meet it: RowGrad sparse steps and the torch adapter keep
float32 state only, and refuse compact state clearly before anything is written; the MPI
sharder keeps a group's state_dtype fixed after construction (tests/mpi/compact_worker.py
checks its compact state over real MPI jobs)."""

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
def test_sharded_rmsprop_compact_state_is_fixed_at_construction(state_dtype: str) -> None:
    mpi = pytest.importorskip("mpi4py.MPI")
    from rmsprop.distributed import ShardedRMSprop

    w = np.zeros(8192, dtype=np.float32)
    opt = ShardedRMSprop([{"params": [w], "state_dtype": "float32"}], mpi.COMM_SELF, lr=0.1)
    opt.param_groups[0]["state_dtype"] = state_dtype
    with pytest.raises(ValueError, match="state_dtype changed from 'float32'"):
        opt.step([np.ones(8192, dtype=np.float32)])
    np.testing.assert_array_equal(w, np.zeros(8192, dtype=np.float32))
    # Created with compact state, it steps and stores state as rmsprop.RMSprop does.
    ref = np.zeros(8192, dtype=np.float32)
    sharded = ShardedRMSprop([w], mpi.COMM_SELF, lr=0.1, momentum=0.9, state_dtype=state_dtype)
    single = RMSprop([ref], lr=0.1, momentum=0.9, state_dtype=state_dtype)
    for seed in range(3):
        g = np.random.default_rng(seed).standard_normal(8192).astype(np.float32)
        sharded.step([g])
        single.step([g])
    assert w.tobytes() == ref.tobytes()
    mine, theirs = sharded.consolidated_state_dict(), single.state_dict()
    assert mine is not None and sorted(mine["state"][0]) == sorted(theirs["state"][0])
    for key, value in theirs["state"][0].items():
        if isinstance(value, np.ndarray):
            assert mine["state"][0][key].dtype == value.dtype
            assert mine["state"][0][key].tobytes() == value.tobytes(), key


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


def _piece_step(
    begin: int, end: int, tensor_size: int, steps: int = 3
) -> tuple[np.ndarray, dict[str, object], RMSprop, np.ndarray]:
    """Steps elements [begin, end) of a tensor as a shard piece, and the whole tensor alone."""
    from rmsprop import _core
    from rmsprop._buffers import new_state_buffer

    rng = np.random.default_rng(11)
    init = rng.standard_normal(tensor_size).astype(np.float32)
    whole = init.copy()
    single = RMSprop([whole], lr=0.1, momentum=0.9, state_dtype="8bit", rounding_seed=4)
    piece = init[begin:end].copy()
    keys = ("square_avg", "square_avg_scale", "momentum_buffer")
    state: dict[str, object] = {
        "step": 0,
        **{key: new_state_buffer(piece, key, "8bit", 0.0, tensor_size) for key in keys},
    }
    group = {**single.param_groups[0], "params": [piece]}
    for _ in range(steps):
        g = rng.standard_normal(tensor_size).astype(np.float32)
        single.step([g])
        piece_grad = g[begin:end].copy()
        placement = [(0, begin, tensor_size)]
        assert _core.step_optimizer([group], [piece_grad], [state], False, False, placement) == 0
    return piece, state, single, whole


def test_a_shard_piece_steps_as_its_part_of_the_whole_tensor() -> None:
    """The core's placement (the sharder's interface): a piece of an 8-bit tensor gets the whole
    tensor's storage (its size decides), block scales and stochastic-rounding noise."""
    begin, end = 512, 3072  # 2560 elements: below 4096, yet 8-bit as its tensor is
    piece, state, single, whole = _piece_step(begin, end, 5000)
    after = single.state_dict()["state"][0]
    assert piece.tobytes() == whole[begin:end].tobytes()
    for key in ("square_avg", "momentum_buffer"):
        assert isinstance(state[key], np.ndarray)
        assert state[key].tobytes() == after[key][begin:end].tobytes(), key
    scales = after["square_avg_scale"][begin // 256 : end // 256]
    assert isinstance(state["square_avg_scale"], np.ndarray)
    assert state["square_avg_scale"].tobytes() == scales.tobytes()
    # The last piece ends at the tensor's end, in a partial block.
    piece, state, single, whole = _piece_step(4864, 5000, 5000)
    assert piece.tobytes() == whole[4864:].tobytes()


@pytest.mark.parametrize(
    ("begin", "end", "size", "kind", "message"),
    [
        (128, 2688, 5000, ValueError, "cuts an 8-bit block"),
        (256, 2600, 5000, ValueError, "cuts an 8-bit block"),
        (4096, 6656, 5000, ValueError, "does not hold"),
        (0, 2560, 3000, TypeError, "holds bfloat16/8-bit state but this param's state is float"),
    ],
)
def test_a_placement_that_breaks_the_whole_tensors_blocks_is_refused(
    begin: int, end: int, size: int, kind: type[Exception], message: str
) -> None:
    from rmsprop import _core
    from rmsprop._buffers import new_state_buffer

    piece = np.zeros(end - begin, np.float32)
    state = {
        "step": 0,
        "square_avg": np.zeros(piece.size, np.uint8),
        "square_avg_scale": new_state_buffer(piece, "square_avg_scale", "8bit", 0.0, 5000),
    }
    group = {**RMSprop([piece], state_dtype="8bit").param_groups[0], "params": [piece]}
    grad = np.ones_like(piece)
    with pytest.raises(kind, match=message):
        _core.step_optimizer([group], [grad], [state], False, False, [(0, begin, size)])
    assert not piece.any() and not state["square_avg"].any() and state["step"] == 0
    with pytest.raises(TypeError, match="triples"):
        _core.step_optimizer([group], [grad], [state], False, False, [(0, begin)])
