"""The core's fused gradient sum (TensorSpan::grad_addends, ``step_optimizer(addends=)``): the
kernel adds the sources as it loads the gradient, ((g_0 + g_1) + g_2) + ..., and must give the
bits of a step on NumPy's rank-order sum, NaN payloads included, on every ISA and thread count.
The MPI sharder's use of it is checked in tests/mpi/fused_worker.py (launched below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from test_distributed import launch, needs_mpi, passed_ranks

import rmsprop
from rmsprop import _core
from rmsprop.functional import new_state as new_buffers

OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"grad_scale": 3.0},  # the sharder's "mean" folded into the step
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01, "maximize": True},
    {"centered": True, "eps_in_sqrt": True, "grad_scale": 4.0, "decoupled_weight_decay": True,
     "weight_decay": 0.1},
]  # fmt: skip
# Lane counts of every ISA +-1, and a size that two threads split (above 2 x parallel_grain).
SIZES = [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 2 * 32768 + 4099]


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _nan(dtype: type, payload: int, negative: bool = False) -> Any:
    """A quiet NaN with a recognizable payload (NaN bits are what this file is about)."""
    if dtype is np.float32:
        bits = np.uint32(0x7FC00000 | payload | (0x80000000 if negative else 0))
        return bits.view(np.float32)
    bits64 = np.uint64(0x7FF8000000000000 | payload | (1 << 63 if negative else 0))
    return bits64.view(np.float64)


def _sources(dtype: type, size: int, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sources = [rng.standard_normal(size).astype(dtype) for _ in range(count)]
    if size >= 9:
        # Every way two operands' specials meet, at fixed places a SIMD body reaches.
        big = np.finfo(dtype).max
        sources[0][0], sources[1][0] = _nan(dtype, 1), _nan(dtype, 2, True)  # NaN + NaN
        sources[1][1] = _nan(dtype, 3)  # finite + NaN (+ NaN from source 2 below)
        sources[0][2], sources[1][2] = np.inf, -np.inf  # a new NaN
        sources[0][3], sources[1][3] = big, big  # overflow
        sources[0][4], sources[1][4] = -0.0, -0.0  # signed zeros
        sources[0][5], sources[1][5] = np.inf, _nan(dtype, 4)
        sources[0][size - 1] = _nan(dtype, 5, True)  # the tail
        if count > 2:
            sources[2][1] = _nan(dtype, 6, True)
            sources[2][3] = -big  # inf - big: stays inf, order matters
            sources[2][6] = _nan(dtype, 7)
    return sources


def _rank_order_sum(sources: list[np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"):
        total = np.add(sources[0], sources[1])
        for s in sources[2:]:
            np.add(total, s, out=total)
    return total


def _group(param: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
    defaults = rmsprop.RMSprop([np.zeros(1, param.dtype)], lr=0.01, **options).param_groups[0]
    return {**{k: v for k, v in defaults.items() if k != "params"}, "params": [param]}


def _state(param: np.ndarray) -> dict[str, Any]:
    return {
        "step": 2,
        "square_avg": np.full(param.size, 0.5, param.dtype),
        "momentum_buffer": np.full(param.size, 0.25, param.dtype),
        "grad_avg": np.full(param.size, 0.125, param.dtype),
    }


def _step(param: np.ndarray, grad: np.ndarray, addends: list[np.ndarray] | None,
          options: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    p = param.copy()
    state = _state(p)
    extra = None if addends is None else [addends]
    assert _core.step_optimizer([_group(p, options)], [grad], [state], False, False, None,
                                extra) == 0  # fmt: skip
    return p, state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [2, 3, 5])
@pytest.mark.parametrize("options", OPTION_SETS, ids=range(len(OPTION_SETS)))
def test_fused_sum_gives_the_bits_of_a_step_on_the_numpy_rank_order_sum(
    isa: str, threads: int, dtype: type, count: int, options: dict[str, Any]
) -> None:
    for size in SIZES:
        sources = _sources(dtype, size, count, seed=size + count)
        param = np.random.default_rng(size).standard_normal(size).astype(dtype)
        want_p, want_state = _step(param, _rank_order_sum(sources), None, options)
        got_p, got_state = _step(param, sources[0], sources[1:], options)
        assert np.array_equal(_bits(got_p), _bits(want_p)), (size, isa, threads)
        for key in ("square_avg", "momentum_buffer", "grad_avg"):
            assert np.array_equal(_bits(got_state[key]), _bits(want_state[key])), (size, key)
        assert got_state["step"] == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_of_the_earliest_source_wins_as_in_numpy(isa: str, dtype: type) -> None:
    """The left operand's NaN wins when both are NaN: NumPy's np.add does so on x86 (checked
    here, since the contract is "NumPy's bits"), and so must the kernel on every ISA."""
    a, b, c = (np.full(20, 1.0, dtype) for _ in range(3))
    a[3], b[3] = _nan(dtype, 11), _nan(dtype, 12, True)
    b[5], c[5] = _nan(dtype, 13, True), _nan(dtype, 14)
    c[7] = _nan(dtype, 15)
    total = _rank_order_sum([a, b, c])
    assert _bits(total)[3] == _bits(np.array([_nan(dtype, 11)]))[0]
    assert _bits(total)[5] == _bits(np.array([_nan(dtype, 13, True)]))[0]
    assert _bits(total)[7] == _bits(np.array([_nan(dtype, 15)]))[0]
    # The step carries the gradient's NaN into the param unchanged (every later operand is
    # finite), so the param shows which source's NaN the kernel's sum kept.
    p, _ = _step(np.zeros(20, dtype), a, [b, c], {})
    for i in (3, 5, 7):
        assert _bits(p)[i] == _bits(total)[i], i
    assert np.isfinite(p[[0, 1, 2, 4, 6]]).all()
    # And the order is what decides: the reverse order keeps other NaNs.
    reverse, _ = _step(np.zeros(20, dtype), c, [b, a], {})
    assert _bits(reverse)[3] != _bits(p)[3] and _bits(reverse)[5] != _bits(p)[5]


def _refusal(grad: Any, addends: Any, param: np.ndarray, *, skip: bool = False) -> str:
    before = param.copy()
    state = _state(param)
    state_before = {k: v.copy() for k, v in state.items() if isinstance(v, np.ndarray)}
    with pytest.raises((TypeError, ValueError)) as info:
        _core.step_optimizer([_group(param, {})], [grad], [state], False, skip, None, addends)
    assert before.tobytes() == param.tobytes(), "a refused step changed the param"
    for k, v in state_before.items():
        assert v.tobytes() == state[k].tobytes(), k
    assert state["step"] == 2
    return str(info.value)


def test_addends_are_refused_before_anything_is_written() -> None:
    p = np.ones(40, np.float32)
    g = np.ones(40, np.float32)
    assert "addend 1 of grads[0]" in _refusal(g, [[g, np.ones(40, np.float64)]], p)
    assert "addend 0 of grads[0]" in _refusal(g, [[np.ones(39, np.float32)]], p)
    assert "share memory" in _refusal(g, [[g, p]], p)
    assert "holds None" in _refusal(g, [[None]], p)
    assert "one entry" in _refusal(g, [None, None], p)
    assert "list of arrays" in _refusal(g, [(g,)], p)
    assert "skip_if_nonfinite" in _refusal(g, [[g]], p, skip=True)
    assert "dense" in _refusal(rmsprop.RowGrad(np.array([0]), np.ones((1,), np.float32)),
                               [[g]], p)  # fmt: skip
    for dtype in (np.float16, ml_dtypes.bfloat16):
        h = np.ones(40, dtype)
        message = _refusal(h, [[np.ones(40, dtype)]], np.ones(40, dtype))
        assert "float32/float64" in message and "grads[0]" in message


def test_grouped_step_with_a_bad_addend_in_a_later_group_changes_nothing() -> None:
    p0, p1 = np.ones(70_000, np.float32), np.ones(5, np.float64)
    g0, g1 = np.ones(70_000, np.float32), np.ones(5, np.float64)
    s0, s1 = _state(p0), _state(p1)
    groups = [_group(p0, {}), _group(p1, {})]
    with pytest.raises(TypeError, match="addend 0 of grads\\[1\\]"):
        _core.step_optimizer(groups, [g0, g1], [s0, s1], False, False, None,
                             [[g0.copy()], [np.ones(5, np.float32)]])  # fmt: skip
    assert (p0 == 1).all() and (p1 == 1).all() and s0["step"] == 2


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_sharder_sums_in_the_kernel_with_the_bits_of_its_numpy_path(ranks: int) -> None:
    worker = Path(__file__).resolve().parent / "mpi" / "fused_worker.py"
    result = launch(ranks, script=worker)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert passed_ranks(result) == ranks, result.stdout


@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
@pytest.mark.parametrize("options", OPTION_SETS[:3], ids=range(3))
def test_fused_sum_with_compact_state_gives_the_bits_of_the_numpy_sum(
    isa: str, threads: int, state_dtype: str, options: dict[str, Any]
) -> None:
    """Compact state is stored in fewer bits but computed in float32, the gradients' own
    precision: the kernel's sum is NumPy's there too (8-bit tensors from 4096 elements)."""
    for size in (1, 17, 4096 + 33, 2 * 32768 + 4099):
        sources = _sources(np.float32, size, 3, seed=size)
        param = np.random.default_rng(size).standard_normal(size).astype(np.float32)
        group = _group(param, {**options, "state_dtype": state_dtype})
        results = []
        for grad, addends in ((_rank_order_sum(sources), None), (sources[0], [sources[1:]])):
            p = param.copy()
            state: dict[str, Any] = {"step": 1, **new_buffers(p, state_dtype, 0.5)}
            assert _core.step_optimizer([{**group, "params": [p]}], [grad], [state], False,
                                        False, None, addends) == 0  # fmt: skip
            results.append((p, state))
        (want_p, want_state), (got_p, got_state) = results
        assert np.array_equal(_bits(got_p), _bits(want_p)), (size, isa, threads)
        assert want_state.keys() == got_state.keys()
        for key, value in want_state.items():
            if isinstance(value, np.ndarray):  # bytes: NaN payloads too
                assert value.tobytes() == got_state[key].tobytes(), (size, key)
