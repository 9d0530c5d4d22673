"""Sparse row updates (SPEC §10): RowGrad steps against dense steps, refusals, checkpoints.

The reference for a step with ``RowGrad(indices, values)`` is a dense step taken from the same
state with the gradient that holds, in each touched row, the sum of that row's values in order
of appearance (in float32 for 16-bit params, rounded once) and zeros elsewhere: its touched rows
must match bit for bit, and every untouched row of the sparse step must be left exactly as it
was. The dense step itself is checked against the float64 reference in test_reference.py.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rmsprop
from cases import option_combinations
from conftest import SUPPORTED_ISAS, THREAD_COUNTS
from rmsprop import RMSprop, RowGrad
from rmsprop._buffers import float32_to_bfloat16_bits
from rmsprop.functional import new_state, rmsprop_step

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), BF16]
STATE_KEYS = ("square_avg", "momentum_buffer", "grad_avg", "master_param")

# Options that each exercise a different path through the step; the exhaustive product of
# switches runs in test_every_option_combination_matches_dense.
OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True, "centered": True},
    {"weight_decay": 0.1},
    {"preset": "keras", "weight_decay": 0.05, "momentum": 0.5},
    {"preset": "tf1", "lr": 0.01, "momentum": 0.9},
    {"preset": "optax", "bias_correction": True},
    {"preset": "seed", "maximize": True},
    {"grad_scale": 1024.0, "lr_in_momentum": True, "momentum": 0.8},
]
OPTION_IDS = [
    "default",
    "momentum",
    "nesterov-centered",
    "wd",
    "keras",
    "tf1",
    "optax",
    "seed-maximize",
    "grad_scale",
]


def sixteen_bit(dtype: np.dtype) -> bool:
    return dtype.itemsize == 2


def summed_rows(values: np.ndarray, indices: np.ndarray) -> dict[int, np.ndarray]:
    """Each touched row's summed gradient, in order of appearance, in the state precision."""
    acc_dtype = np.float32 if sixteen_bit(values.dtype) else values.dtype
    sums: dict[int, np.ndarray] = {}
    for row, value in zip(indices.tolist(), values):
        v = value.astype(acc_dtype)
        sums[row] = v if row not in sums else sums[row] + v
    return sums


def dense_grad(param: np.ndarray, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(param)
    for row, total in summed_rows(values, indices).items():
        grad[row] = total.astype(param.dtype)
    return grad


def make_case(dtype: np.dtype, shape: tuple[int, ...], indices: Any, seed: int = 0):
    rng = np.random.default_rng(seed)
    param = rng.uniform(-2, 2, shape).astype(dtype)
    indices = np.asarray(indices, dtype=np.int64)
    values = (
        rng.choice([-1.0, 1.0], (len(indices), *shape[1:]))
        * rng.uniform(0.25, 2.0, (len(indices), *shape[1:]))
    ).astype(dtype)
    return param, indices, values


def optimizer_options(dtype: np.dtype, options: dict[str, Any]) -> dict[str, Any]:
    out = {"lr": 0.05, **options}
    if dtype == BF16:
        out.update(stochastic_rounding=True, rounding_seed=7)
    if sixteen_bit(dtype):
        out["master_weights"] = True
    return out


def clone_dense(opt: RMSprop, param: np.ndarray, kwargs: dict[str, Any]) -> RMSprop:
    dense = RMSprop([param], **kwargs)
    dense.load_state_dict(opt.state_dict())
    return dense


def assert_same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), what


def check_sparse_step(
    opt: RMSprop, param: np.ndarray, kwargs: dict[str, Any], indices: np.ndarray, values: np.ndarray
) -> None:
    """One sparse step of `opt`, compared with a dense step from the same state."""
    reference_param = param.copy()
    dense = clone_dense(opt, reference_param, kwargs)
    before = {key: opt.state[0][key].copy() for key in STATE_KEYS if key in opt.state[0]}
    param_before = param.copy()
    opt.step([RowGrad(indices, values)])
    dense.step([dense_grad(param, indices, values)])
    touched = np.zeros(param.shape[0], dtype=bool)
    touched[indices] = True
    assert_same_bits(param[touched], reference_param[touched], "touched param rows")
    assert_same_bits(param[~touched], param_before[~touched], "untouched param rows")
    assert opt.state[0]["step"] == dense.state[0]["step"]
    for key in STATE_KEYS:
        if key not in dense.state[0]:
            assert key not in opt.state[0]
            continue
        ours, theirs = opt.state[0][key], dense.state[0][key]
        assert_same_bits(ours[touched], theirs[touched], f"touched {key} rows")
        if key in before:
            assert_same_bits(ours[~touched], before[key][~touched], f"untouched {key} rows")
        else:  # created on this step: untouched rows hold the initial value
            fill = kwargs.get("initial_square_avg", 1.0 if kwargs.get("preset") == "tf1" else 0.0)
            if key == "master_param":
                expected = param_before[~touched].astype(np.float32)
            elif ours.dtype == np.uint16:  # bfloat16 state: the bits of the initial value
                initial = np.float32(fill if key == "square_avg" else 0.0)
                expected = np.full_like(ours[~touched], float32_to_bfloat16_bits(initial))
            else:
                expected = np.full_like(ours[~touched], fill if key == "square_avg" else 0.0)
            assert_same_bits(ours[~touched], expected, f"new {key} rows")


def index_patterns(rows: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [
        np.array([], dtype=np.int64),  # k = 0
        np.array([rows - 1, 0]),  # both ends, unsorted
        rng.permutation(rows),  # every row once
        rng.integers(0, rows, 3 * rows + 1),  # duplicates, unsorted
        np.array([2, 2, 2, 0, 2]) % rows,  # one row many times
    ]


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_matches_dense_step_on_touched_rows(isa, dtype, options) -> None:
    rng = np.random.default_rng(1)
    for width in (1, 15, 17, 1000):
        for shape in [(23, width)] + ([(9, 3, 5)] if width == 15 else []):
            param, _, _ = make_case(dtype, shape, [], seed=width)
            kwargs = optimizer_options(dtype, options)
            opt = RMSprop([param], **kwargs)
            for indices in index_patterns(shape[0], rng):
                _, _, values = make_case(dtype, shape, indices, seed=len(indices))
                check_sparse_step(opt, param, kwargs, indices, values)


def test_every_option_combination_matches_dense(isa) -> None:
    rng = np.random.default_rng(2)
    for options in option_combinations():
        param, _, _ = make_case(np.dtype(np.float32), (11, 17), [], seed=5)
        opt = RMSprop([param], **options)
        for indices in (rng.integers(0, 11, 9), rng.permutation(11), np.array([3, 3])):
            _, _, values = make_case(np.dtype(np.float32), (11, 17), indices, seed=len(indices))
            check_sparse_step(opt, param, options, indices, values)


def assert_same_bits_on_every_isa_and_thread_count(
    param0: np.ndarray, kwargs: dict, indices: np.ndarray, values: np.ndarray, state_keys
) -> None:
    """Two row steps from param0 give the same param and state bits on every ISA and
    thread count."""
    results = {}
    before_isa, before_threads = rmsprop.config()["isa"], rmsprop.get_num_threads()
    try:
        for isa in SUPPORTED_ISAS:
            for threads in THREAD_COUNTS:
                rmsprop.set_isa(isa)
                rmsprop.set_num_threads(threads)
                param = param0.copy()
                opt = RMSprop([param], **kwargs)
                for _ in range(2):
                    opt.step([RowGrad(indices, values)])
                results[isa, threads] = (param, *(opt.state[0][k] for k in state_keys))
    finally:
        rmsprop.set_isa(before_isa)
        rmsprop.set_num_threads(before_threads)
    first = next(iter(results.values()))
    for key, arrays in results.items():
        for name, ours, theirs in zip(("param", *state_keys), arrays, first):
            assert_same_bits(ours, theirs, f"{name} on {key}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_bit_identical_across_isas_and_threads(dtype) -> None:
    # Large enough (about 400K elements touched) for the rows to be split across threads.
    shape = (600, 1000)
    rng = np.random.default_rng(3)
    indices = rng.integers(0, shape[0], 400)
    param0, _, values = make_case(dtype, shape, indices, seed=4)
    kwargs = optimizer_options(dtype, {"momentum": 0.9, "centered": True, "weight_decay": 0.01})
    assert_same_bits_on_every_isa_and_thread_count(param0, kwargs, indices, values, STATE_KEYS[:1])


def test_large_step_matches_dense_with_threads(isa, threads) -> None:
    shape = (700, 1000)
    rng = np.random.default_rng(4)
    indices = rng.integers(0, shape[0], 500)
    param, _, values = make_case(np.dtype(np.float32), shape, indices, seed=6)
    kwargs = {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
    opt = RMSprop([param], **kwargs)
    check_sparse_step(opt, param, kwargs, indices, values)
    check_sparse_step(opt, param, kwargs, indices[::-1].copy(), values[::-1].copy())


COMPACT_DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BF16]


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
@pytest.mark.parametrize("dtype", COMPACT_DTYPES, ids=lambda d: d.name)
def test_bfloat16_state_matches_dense_step_on_touched_rows(isa, dtype, options) -> None:
    # bfloat16 state is rounded stochastically with noise keyed on each element's index in the
    # whole tensor: a row update must draw the dense step's noise, hence its bits.
    rng = np.random.default_rng(11)
    for width in (1, 15, 17, 300):
        shape = (23, width)
        param, _, _ = make_case(dtype, shape, [], seed=width)
        kwargs = {**optimizer_options(dtype, options), "state_dtype": "bfloat16"}
        opt = RMSprop([param], **kwargs)
        for indices in index_patterns(shape[0], rng):
            _, _, values = make_case(dtype, shape, indices, seed=len(indices))
            check_sparse_step(opt, param, kwargs, indices, values)
        assert opt.state[0]["square_avg"].dtype == np.uint16


@pytest.mark.parametrize("dtype", COMPACT_DTYPES, ids=lambda d: d.name)
def test_bfloat16_state_bit_identical_across_isas_and_threads(dtype) -> None:
    shape = (600, 1000)
    rng = np.random.default_rng(12)
    indices = rng.integers(0, shape[0], 400)
    param0, _, values = make_case(dtype, shape, indices, seed=13)
    kwargs = optimizer_options(dtype, {"momentum": 0.9, "centered": True, "weight_decay": 0.01})
    kwargs["state_dtype"] = "bfloat16"
    assert_same_bits_on_every_isa_and_thread_count(param0, kwargs, indices, values, STATE_KEYS[:3])


def test_bfloat16_state_with_threads_matches_dense(isa, threads) -> None:
    shape = (700, 1000)
    rng = np.random.default_rng(14)
    indices = rng.integers(0, shape[0], 500)
    param, _, values = make_case(np.dtype(np.float32), shape, indices, seed=15)
    kwargs = {"momentum": 0.9, "nesterov": True, "state_dtype": "bfloat16"}
    opt = RMSprop([param], **kwargs)
    check_sparse_step(opt, param, kwargs, indices, values)
    check_sparse_step(opt, param, kwargs, indices[::-1].copy(), values[::-1].copy())


def test_functional_row_step_with_bfloat16_state_matches_dense() -> None:
    rng = np.random.default_rng(16)
    param = rng.standard_normal((40, 33)).astype(np.float32)
    state = new_state(param, "bfloat16")
    indices = np.array([5, 39, 5, 0])
    touched = np.isin(np.arange(40), indices)
    for step in (1, 2, 3):
        values = rng.standard_normal((4, 33)).astype(np.float32)
        kwargs = {"lr": 0.05, "alpha": 0.9, "step": step, "state_dtype": "bfloat16"}
        dense_param, dense_v = param.copy(), state["square_avg"].copy()
        before_param, before_v = param.copy(), state["square_avg"].copy()
        rmsprop_step(param, RowGrad(indices, values), state["square_avg"], **kwargs)
        rmsprop_step(dense_param, dense_grad(param, indices, values), dense_v, **kwargs)
        assert_same_bits(param[touched], dense_param[touched], "touched rows")
        assert_same_bits(state["square_avg"][touched], dense_v[touched], "touched square_avg")
        assert_same_bits(param[~touched], before_param[~touched], "untouched rows")
        assert_same_bits(state["square_avg"][~touched], before_v[~touched], "untouched v")


def test_duplicates_are_summed_in_order_of_appearance() -> None:
    # 1 + 2^-24 + 2^-24 rounds differently from (2^-24 + 2^-24) + 1 in float32.
    param = np.zeros((3, 1), np.float32)
    opt = RMSprop([param], lr=1.0, alpha=0.0)
    tiny = np.float32(2.0**-24)
    values = np.array([[1.0], [tiny], [tiny]], np.float32)
    opt.step([RowGrad([1, 1, 1], values)])
    g = (np.float32(1.0) + tiny) + tiny
    assert opt.state[0]["square_avg"][1, 0] == g * g
    reordered = np.zeros((3, 1), np.float32)
    opt2 = RMSprop([reordered], lr=1.0, alpha=0.0)
    opt2.step([RowGrad([1, 1, 1], values[::-1].copy())])
    g2 = (tiny + tiny) + np.float32(1.0)
    assert g2 != g and opt2.state[0]["square_avg"][1, 0] == g2 * g2


def test_sixteen_bit_duplicates_sum_in_float32_and_round_once() -> None:
    param = np.zeros((2, 2), np.float16)
    opt = RMSprop([param], lr=1.0, alpha=0.0)
    # Each addition of 2^-11 to 1 is below half an ulp of float16, but the float32 sum is not.
    values = np.array([[1.0, 1.0]] + [[2.0**-11, 2.0**-11]] * 3, np.float16)
    opt.step([RowGrad([0, 0, 0, 0], values)])
    g = np.float32(np.float16(np.float32(1.0) + np.float32(3 * 2.0**-11)))
    assert g != np.float32(1.0)
    assert opt.state[0]["square_avg"][0, 0] == g * g


def test_state_created_on_first_sparse_step() -> None:
    table = np.ones((50, 4), np.float32)
    opt = RMSprop([table], preset="tf1", lr=0.1, momentum=0.9)
    opt.step([RowGrad([3], np.full((1, 4), 2.0, np.float32))])
    state = opt.state[0]
    assert state["step"] == 1
    assert state["square_avg"].shape == (50, 4) and state["momentum_buffer"].shape == (50, 4)
    assert (state["square_avg"][np.arange(50) != 3] == 1.0).all()
    assert (state["momentum_buffer"][np.arange(50) != 3] == 0.0).all()
    assert (state["square_avg"][3] != 1.0).all()


def test_mixed_dense_and_sparse_params_in_groups() -> None:
    rng = np.random.default_rng(8)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    table = rng.standard_normal((40, 8))

    def groups(w: np.ndarray, table: np.ndarray) -> list[dict[str, Any]]:
        return [{"params": [w]}, {"params": [table], "lr": 0.1, "momentum": 0.5}]

    opt = RMSprop(groups(w, table), lr=0.01)
    for _ in range(3):
        gw = rng.standard_normal((5, 3)).astype(np.float32)
        indices = rng.integers(0, 40, 12)
        values = rng.standard_normal((12, 8))
        w_ref, table_ref, table_before = w.copy(), table.copy(), table.copy()
        ref = RMSprop(groups(w_ref, table_ref), lr=0.01)
        ref.load_state_dict(opt.state_dict())
        opt.step([gw, RowGrad(indices, values)])
        ref.step([gw, dense_grad(table, indices, values)])
        touched = np.isin(np.arange(40), indices)
        assert_same_bits(w, w_ref, "dense param")
        assert_same_bits(table[touched], table_ref[touched], "touched table rows")
        assert_same_bits(table[~touched], table_before[~touched], "untouched table rows")
    assert opt.state[0]["step"] == opt.state[1]["step"] == 3


def test_functional_api_matches_dense() -> None:
    rng = np.random.default_rng(9)
    param = rng.standard_normal((30, 7)).astype(np.float32)
    square_avg = np.full_like(param, 0.5)
    momentum_buffer = rng.standard_normal((30, 7)).astype(np.float32)
    indices = np.array([4, 29, 4, 0])
    values = rng.standard_normal((4, 7)).astype(np.float32)
    copies = [a.copy() for a in (param, square_avg, momentum_buffer)]
    options = {"lr": 0.1, "momentum": 0.9, "step": 3, "bias_correction": True}
    rmsprop_step(
        param, RowGrad(indices, values), square_avg, momentum_buffer=momentum_buffer, **options
    )
    rmsprop_step(
        copies[0],
        dense_grad(param, indices, values),
        copies[1],
        momentum_buffer=copies[2],
        **options,
    )
    touched = np.isin(np.arange(30), indices)
    for ours, theirs in zip((param, square_avg, momentum_buffer), copies):
        assert_same_bits(ours[touched], theirs[touched], "touched rows")
    with pytest.raises(ValueError, match=r"grad\.indices\[0\] = 30 is out of range"):
        rmsprop_step(param, RowGrad([30], values[:1]), square_avg)


def test_state_dict_and_pickle_round_trip_after_sparse_steps() -> None:
    rng = np.random.default_rng(10)
    table = rng.standard_normal((64, 5)).astype(np.float32)
    kwargs = {"lr": 0.05, "momentum": 0.9, "centered": True}
    opt = RMSprop([table], **kwargs)
    steps = [
        (rng.integers(0, 64, 20), rng.standard_normal((20, 5)).astype(np.float32)) for _ in range(6)
    ]
    for indices, values in steps[:3]:
        opt.step([RowGrad(indices, values)])
    restored_table = table.copy()
    restored = RMSprop([restored_table], **kwargs)
    restored.load_state_dict(opt.state_dict())
    unpickled, unpickled_table = pickle.loads(pickle.dumps((opt, table)))
    unpickled_table = unpickled.param_groups[0]["params"][0]
    for indices, values in steps[3:]:
        for o in (opt, restored, unpickled):
            o.step([RowGrad(indices, values)])
    for other, other_table in ((restored, restored_table), (unpickled, unpickled_table)):
        assert_same_bits(other_table, table, "params")
        for key in ("square_avg", "momentum_buffer", "grad_avg"):
            assert_same_bits(other.state[0][key], opt.state[0][key], key)


def test_skip_if_nonfinite_sees_the_merged_rows() -> None:
    table = np.zeros((10, 3), np.float16)
    dense = np.zeros(4, np.float16)
    opt = RMSprop([dense, table], lr=0.1, skip_if_nonfinite=True)
    big = np.full((2, 3), 40000.0, np.float16)  # finite, but 80000 overflows float16
    assert opt.step([np.ones(4, np.float16), RowGrad([5, 5], big)]) is False
    assert opt.state == [{}, {}] and not table.any() and not dense.any()
    assert opt.step([np.ones(4, np.float16), RowGrad([5, 6], big)]) is True
    assert table[5].all() and table[6].all() and not table[7].any()
    inf_values = np.array([[1.0, np.inf, 1.0]], np.float16)
    before = table.copy()
    assert opt.step([np.ones(4, np.float16), RowGrad([1], inf_values)]) is False
    assert_same_bits(table, before, "table after a skipped step")
    assert opt.state[1]["step"] == 1


def test_nonfinite_values_without_skip_match_dense() -> None:
    param, indices, values = make_case(np.dtype(np.float32), (6, 4), [1, 2, 1])
    values[0, 0], values[2, 1], values[1, 2] = np.inf, -np.inf, np.nan
    opt = RMSprop([param], lr=0.1)
    check_sparse_step(opt, param, {"lr": 0.1}, indices, values)


# ------------------------------------------------------------------------- refusals


def snapshot(opt: RMSprop, params: list[np.ndarray]) -> list[Any]:
    return [p.copy() for p in params] + [pickle.dumps(opt.state)]


def assert_unchanged(opt: RMSprop, params: list[np.ndarray], before: list[Any]) -> None:
    for p, b in zip(params, before):
        assert_same_bits(p, b, "param after a refused step")
    assert pickle.dumps(opt.state) == before[-1], "state after a refused step"


@pytest.mark.parametrize("first_step", [True, False], ids=["fresh", "stepped"])
@pytest.mark.parametrize(
    ("indices", "values_shape", "error", "match"),
    [
        ([-1], (1, 4), ValueError, r"grads\[1\]\.indices\[0\] = -1 is out of range"),
        ([0, 10], (2, 4), ValueError, r"indices\[1\] = 10 is out of range.*\[0, 10\)"),
        ([2**63 - 1], (1, 4), ValueError, "out of range"),
        ([1, 2], (2, 5), ValueError, r"grads\[1\]\.values has shape \(2, 5\) but must be \(2, 4\)"),
        ([1, 2], (2, 4, 1), ValueError, "must be"),
    ],
    ids=["negative", "equal-to-rows", "huge", "row-shape", "ndim"],
)
def test_refused_step_changes_nothing(indices, values_shape, error, match, first_step) -> None:
    w = np.ones(3, np.float32)
    table = np.ones((10, 4), np.float32)
    opt = RMSprop([w, table], lr=0.1, momentum=0.9)
    if not first_step:
        opt.step([np.ones(3, np.float32), RowGrad([1], np.ones((1, 4), np.float32))])
    before = snapshot(opt, [w, table])
    bad = RowGrad(np.array(indices, dtype=np.int64), np.ones(values_shape, np.float32))
    with pytest.raises(error, match=match):
        opt.step([np.ones(3, np.float32), bad])
    assert_unchanged(opt, [w, table], before)


def test_refused_values_dtype_layout_and_param() -> None:
    w = np.ones(3, np.float32)
    table = np.ones((10, 4), np.float32)
    opt = RMSprop([w, table], lr=0.1)
    before = snapshot(opt, [w, table])
    g = np.ones(3, np.float32)
    with pytest.raises(TypeError, match=r"grads\[1\]\.values has dtype float64 but params\[1\]"):
        opt.step([g, RowGrad([1], np.ones((1, 4)))])
    strided = np.ones((2, 8), np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"grads\[1\]\.values is not C-contiguous"):
        opt.step([g, RowGrad([1, 2], strided)])
    swapped = np.ones((1, 4), np.dtype(">f4"))
    with pytest.raises((TypeError, ValueError), match="values"):
        opt.step([g, RowGrad([1], swapped)])
    overlapping = table[2:4]
    with pytest.raises(ValueError, match="share memory"):
        opt.step([g, RowGrad([0, 1], overlapping)])
    assert_unchanged(opt, [w, table], before)
    read_only = np.ones((10, 4), np.float32)
    read_only.flags.writeable = False
    ro_opt = RMSprop([read_only], lr=0.1)
    with pytest.raises(ValueError, match="read-only"):
        ro_opt.step([RowGrad([1], np.ones((1, 4), np.float32))])
    scalar = np.ones((), np.float32)
    with pytest.raises(ValueError, match="0-d"):
        RMSprop([scalar]).step([RowGrad([0], np.ones(1, np.float32))])


def test_read_only_values_and_indices_are_fine() -> None:
    table = np.zeros((5, 2), np.float32)
    values = np.ones((2, 2), np.float32)
    indices = np.array([4, 1])
    values.flags.writeable = False
    indices.flags.writeable = False
    RMSprop([table], lr=0.1).step([RowGrad(indices, values)])
    assert table[4].all() and table[1].all() and not table[0].any()


@pytest.mark.parametrize(
    ("indices", "error", "match"),
    [
        (np.array([1.0, 2.0]), TypeError, "must be integers"),
        (np.array([True, False]), TypeError, "flatnonzero"),
        (np.array([[1, 2]]), ValueError, r"1-D.*indices\[0\]"),
        (np.array([[1], [2]]), ValueError, "1-D"),
        (np.array(3), ValueError, "1-D"),
        (np.array([2**64 - 1], dtype=np.uint64), ValueError, "beyond any row"),
        ([1.5], TypeError, "must be integers"),
        ("ab", TypeError, "must be integers"),
    ],
    ids=["float", "bool", "coo-2d", "column", "0-d", "uint64-huge", "float-list", "str"],
)
def test_hostile_indices_refused_at_construction(indices, error, match) -> None:
    with pytest.raises(error, match=match):
        RowGrad(indices, np.ones((2, 3), np.float32))


def test_values_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        RowGrad([1], [[1.0, 2.0]])
    with pytest.raises(TypeError, match="dtype int64"):
        RowGrad([1], np.ones((1, 2), np.int64))
    with pytest.raises(ValueError, match="one row per index"):
        RowGrad([1, 2], np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match="one row per index"):
        RowGrad([1], np.ones((), np.float32))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint16, np.uint32, np.uint64])
def test_other_integer_dtypes_step_like_int64(dtype) -> None:
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    a = np.zeros((9, 2), np.float32)
    b = np.zeros((9, 2), np.float32)
    RMSprop([a], lr=0.1).step([RowGrad(np.array([8, 0, 8], dtype=dtype), values)])
    RMSprop([b], lr=0.1).step([RowGrad(np.array([8, 0, 8], dtype=np.int64), values)])
    assert_same_bits(a, b, "params")
    assert RowGrad(np.array([1], dtype=dtype), values[:1]).indices.dtype == np.int64


def test_rowgrad_is_read_only_and_lists_work() -> None:
    grad = RowGrad([3, 1], np.ones((2, 2), np.float32))
    assert grad.indices.dtype == np.int64 and len(grad) == 2
    assert not grad.indices.flags.writeable and not grad.values.flags.writeable
    assert RowGrad([], np.ones((0, 2), np.float32)).indices.dtype == np.int64
    with pytest.raises(AttributeError):
        grad.indices = np.array([0, 0])  # type: ignore[misc]
    assert "k=2" in repr(grad)


def test_one_dimensional_and_empty_row_params() -> None:
    vector, indices, values = make_case(np.dtype(np.float64), (12,), [11, 0, 11, 5])
    opt = RMSprop([vector], lr=0.1, momentum=0.9)
    check_sparse_step(opt, vector, {"lr": 0.1, "momentum": 0.9}, indices, values)
    empty_rows = np.zeros((4, 0), np.float32)
    opt = RMSprop([empty_rows], lr=0.1)
    opt.step([RowGrad([3, 3], np.zeros((2, 0), np.float32))])
    assert opt.state[0]["step"] == 1
    with pytest.raises(ValueError, match="out of range"):
        opt.step([RowGrad([4], np.zeros((1, 0), np.float32))])


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    options=st.sampled_from(option_combinations()),
    master=st.booleans(),
    stochastic=st.booleans(),
    state_dtype=st.sampled_from(["float32", "bfloat16"]),
)
def test_random_cases_match_dense(
    isa, data, dtype, options, master, stochastic, state_dtype
) -> None:
    rows = data.draw(st.integers(1, 40), label="rows")
    row_shape = data.draw(st.sampled_from([(), (1,), (3,), (17,), (2, 9), (33,)]), label="row")
    steps = data.draw(st.integers(1, 3), label="steps")
    kwargs: dict[str, Any] = {
        "lr": data.draw(st.sampled_from([1e-3, 0.05, 0.5])),
        "alpha": data.draw(st.sampled_from([0.0, 0.5, 0.9, 0.99])),
        "eps": data.draw(st.sampled_from([1e-8, 1e-3])),
        "initial_square_avg": data.draw(st.sampled_from([0.0, 1.0])),
        **options,
    }
    if options["bias_correction"] and kwargs["alpha"] == 0.0:
        kwargs["alpha"] = 0.9
    if sixteen_bit(dtype):
        kwargs.update(master_weights=master, stochastic_rounding=stochastic, rounding_seed=3)
    if dtype != np.float64:  # float64 params keep float64 state
        kwargs["state_dtype"] = state_dtype
    param, _, _ = make_case(dtype, (rows, *row_shape), [], seed=rows)
    opt = RMSprop([param], **kwargs)
    for step in range(steps):
        k = data.draw(st.integers(0, 2 * rows + 2), label="k")
        indices = np.array(
            data.draw(st.lists(st.integers(0, rows - 1), min_size=k, max_size=k), label="ids"),
            dtype=np.int64,
        )
        _, _, values = make_case(dtype, (rows, *row_shape), indices, seed=100 * rows + step)
        check_sparse_step(opt, param, kwargs, indices, values)
