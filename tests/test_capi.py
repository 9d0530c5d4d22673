"""The C API (rmsprop.h) through ctypes: the ABI, the same bits as the package, hostile calls.

librmsprop.so is the one the installed package ships (python -m rmsprop --library); it holds
its own copy of the core, so ISA and threads are set through the C API too.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import rmsprop
from cases import REPRESENTATIVE_IDS, REPRESENTATIVE_OPTION_SETS
from rmsprop.__main__ import library_path
from rmsprop.functional import rmsprop_step

OK, INVALID, NULL, OVERLAP, UNSUPPORTED = 0, 1, 2, 3, 4
GRAIN = rmsprop.config()["parallel_grain"]
SIZES = [1, 17, 2 * GRAIN + 5]
FLAGS = [
    "centered",
    "maximize",
    "eps_in_sqrt",
    "lr_in_momentum",
    "nesterov",
    "decoupled_weight_decay",
    "bias_correction",
    "stochastic_rounding",
]
c_u64, c_i64, c_i32, c_dbl, c_ptr = (
    ctypes.c_uint64,
    ctypes.c_int64,
    ctypes.c_int32,
    ctypes.c_double,
    ctypes.c_void_p,
)


class Options(ctypes.Structure):
    _fields_ = (
        [("struct_size", c_u64)]
        + [(n, c_dbl) for n in ("lr", "alpha", "eps", "weight_decay", "momentum")]
        + [(n, c_i32) for n in FLAGS]
        + [("grad_scale", c_dbl), ("rounding_seed", c_u64)]
    )


class Tensor(ctypes.Structure):  # rmsprop_tensor_f32 and rmsprop_tensor_f64
    _fields_ = [
        *[(n, c_ptr) for n in ("param", "grad", "square_avg", "grad_avg", "momentum_buffer")],
        ("size", c_u64),
        ("step", c_i64),
    ]


class Tensor16(ctypes.Structure):  # rmsprop_tensor_16
    _fields_ = [
        *[
            (n, c_ptr)
            for n in ("param", "grad", "square_avg", "grad_avg", "momentum_buffer", "master_param")
        ],
        ("size", c_u64),
        ("step", c_i64),
        ("rounding_stream", c_u64),
    ]


def load() -> ctypes.CDLL:
    path = library_path()
    if not path.is_file():
        pytest.skip(f"{path} is not installed")
    lib = ctypes.CDLL(str(path))
    step_args = [ctypes.POINTER(Options), c_ptr, c_u64, ctypes.c_char_p, c_u64]
    for name in ("rmsprop_step_f32", "rmsprop_step_f64", "rmsprop_step_f16", "rmsprop_step_bf16"):
        getattr(lib, name).argtypes = step_args
        getattr(lib, name).restype = c_i32
    lib.rmsprop_options_init.argtypes = [ctypes.POINTER(Options), c_u64]
    lib.rmsprop_options_init.restype = c_i32
    lib.rmsprop_version.restype = ctypes.c_char_p
    lib.rmsprop_active_isa.restype = ctypes.c_char_p
    lib.rmsprop_set_isa.argtypes = [ctypes.c_char_p, ctypes.c_char_p, c_u64]
    lib.rmsprop_set_isa.restype = c_i32
    lib.rmsprop_isa_supported.argtypes = [ctypes.c_char_p]
    lib.rmsprop_set_num_threads.argtypes = [c_i32, ctypes.c_char_p, c_u64]
    lib.rmsprop_set_num_threads.restype = c_i32
    return lib


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    return load()


@pytest.fixture
def clib(lib: ctypes.CDLL, isa: str, threads: int) -> Iterator[ctypes.CDLL]:
    """The library pinned to the same ISA and thread count as the package for this test."""
    message = ctypes.create_string_buffer(256)
    assert lib.rmsprop_set_isa(isa.encode(), message, 256) == OK, message.value
    assert lib.rmsprop_set_num_threads(threads, message, 256) == OK, message.value
    yield lib
    best = rmsprop.config()["isas_supported"][-1]
    lib.rmsprop_set_isa(best.encode(), None, 0)


def options(lib: ctypes.CDLL, **values: Any) -> Options:
    o = Options()
    assert lib.rmsprop_options_init(ctypes.byref(o), ctypes.sizeof(o)) == OK
    for name, value in values.items():
        setattr(o, name, int(value) if name in FLAGS else value)
    return o


def call(lib: ctypes.CDLL, dtype: str, o: Options, tensors: Any, count: int, size: int = 512):
    message = ctypes.create_string_buffer(size) if size else None
    status = getattr(lib, f"rmsprop_step_{dtype}")(ctypes.byref(o), tensors, count, message, size)
    return status, (message.value.decode() if message is not None else None)


def ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def make(dtype: Any, size: int, seed: int, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = np.float32 if np.dtype(dtype).itemsize == 2 else dtype
    arrays = {
        "param": rng.standard_normal(size).astype(dtype),
        "grad": rng.standard_normal(size).astype(dtype),
        "square_avg": rng.random(size).astype(state),
    }
    if opts.get("centered"):
        arrays["grad_avg"] = (0.1 * rng.standard_normal(size)).astype(state)
    if opts.get("momentum", 0) > 0:
        arrays["momentum_buffer"] = (0.1 * rng.standard_normal(size)).astype(state)
    return arrays


def c_tensors(arrays_list: list[dict[str, np.ndarray]], step: int) -> Any:
    is16 = arrays_list[0]["param"].dtype.itemsize == 2
    kind = Tensor16 if is16 else Tensor
    roles = ["param", "grad", "square_avg", "grad_avg", "momentum_buffer"]
    out = (kind * len(arrays_list))()
    for t, arrays in zip(out, arrays_list):
        for role in roles:
            setattr(t, role, ptr(arrays.get(role)))
        t.size = arrays["param"].size
        t.step = step
    return out


def c_name(dtype: Any) -> str:
    return {np.float32: "f32", np.float64: "f64", np.float16: "f16"}.get(dtype, "bf16")


def dtypes() -> list[Any]:
    out: list[Any] = [np.float32, np.float64, np.float16]
    try:
        import ml_dtypes

        out.append(ml_dtypes.bfloat16)
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("dtype", dtypes(), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("opts", REPRESENTATIVE_OPTION_SETS, ids=REPRESENTATIVE_IDS)
def test_same_bits_as_the_package(clib, isa, threads, dtype, opts) -> None:
    opts = dict(opts)
    if np.dtype(dtype).name == "bfloat16":
        opts.update(stochastic_rounding=True, rounding_seed=12345)
    ours = [make(dtype, size, seed, opts) for seed, size in enumerate(SIZES)]
    theirs = [{k: a.copy() for k, a in arrays.items()} for arrays in ours]
    o = options(clib, lr=0.003, alpha=0.9, eps=1e-6, **opts)
    for step in (1, 2, 3):
        status, message = call(clib, c_name(dtype), o, c_tensors(ours, step), len(ours))
        assert (status, message) == (OK, "")
        for arrays in theirs:
            rmsprop_step(
                arrays["param"],
                arrays["grad"],
                arrays["square_avg"],
                grad_avg=arrays.get("grad_avg"),
                momentum_buffer=arrays.get("momentum_buffer"),
                step=step,
                lr=0.003,
                alpha=0.9,
                eps=1e-6,
                **opts,
            )
    for a, b in zip(ours, theirs):
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), key


def test_version_isa_and_threads(lib) -> None:
    assert lib.rmsprop_version().decode() == rmsprop.__version__
    assert lib.rmsprop_active_isa().decode() in rmsprop.config()["isas_compiled"]
    for name in ("baseline", "avx2", "avx512"):
        expected = name in rmsprop.config()["isas_supported"]
        assert lib.rmsprop_isa_supported(name.encode()) == expected
    assert lib.rmsprop_isa_supported(None) == 0
    message = ctypes.create_string_buffer(128)
    assert lib.rmsprop_set_isa(b"sse9", message, 128) == INVALID
    assert b"unknown ISA" in message.value
    assert lib.rmsprop_set_isa(None, message, 128) == NULL
    assert lib.rmsprop_set_num_threads(0, message, 128) == INVALID
    assert lib.rmsprop_openmp_enabled() == int(rmsprop.config()["openmp"])


# --- Hostile calls: each must return its status, say why, and write nothing. ----------------


@pytest.fixture
def victim() -> dict[str, np.ndarray]:
    return make(np.float32, 1000, 7, {"centered": True, "momentum": 0.9})


def assert_refused(
    lib, arrays_list, o, expected: int, words: str, dtype: str = "f32", tensors=None
) -> None:
    before = [{k: a.copy() for k, a in arrays.items()} for arrays in arrays_list]
    if tensors is None:
        tensors = c_tensors(arrays_list, 1)
    status, message = call(lib, dtype, o, tensors, len(arrays_list))
    assert status == expected, message
    assert words in message
    for arrays, saved in zip(arrays_list, before):
        for key in arrays:
            assert arrays[key].tobytes() == saved[key].tobytes(), key


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("lr", float("nan"), "lr must be a finite number >= 0, got nan"),
        ("lr", -1.0, "lr must be"),
        ("eps", float("inf"), "eps must be"),
        ("alpha", 1.5, "alpha must be in [0, 1]"),
        ("alpha", float("nan"), "alpha must be in [0, 1], got nan"),
        ("momentum", -0.1, "momentum must be"),
        ("weight_decay", float("nan"), "weight_decay must be"),
        ("grad_scale", 0.0, "grad_scale must be"),
        ("lr", 1e39, "beyond float32's range"),
        ("grad_scale", 1e-50, "rounds to 0 in float32"),
        ("centered", 2, "centered must be 0 or 1, got 2"),
        ("bias_correction", -1, "bias_correction must be 0 or 1"),
    ],
)
def test_bad_hyper_parameters_refused(lib, victim, field, value, words) -> None:
    o = options(lib, centered=True, momentum=0.9)
    setattr(o, field, value)
    assert_refused(lib, [victim], o, INVALID, words)


def test_float32_range_applies_to_float32_only(lib) -> None:
    arrays = make(np.float64, 10, 0, {})
    o = options(lib, lr=1e39)
    status, message = call(lib, "f64", o, c_tensors([arrays], 1), 1)
    assert (status, message) == (OK, "")


def test_nesterov_without_momentum_refused(lib, victim) -> None:
    assert_refused(lib, [victim], options(lib, nesterov=True), INVALID, "nesterov")


@pytest.mark.parametrize("role", ["param", "grad", "square_avg", "grad_avg", "momentum_buffer"])
def test_missing_buffer_refused(lib, victim, role) -> None:
    tensors = c_tensors([victim], 1)
    setattr(tensors[0], role, None)
    o = options(lib, centered=True, momentum=0.9)
    assert_refused(lib, [victim], o, NULL, f"tensors[0].{role} is NULL", tensors=tensors)


def test_unused_state_buffers_are_ignored(lib) -> None:
    arrays = make(np.float32, 100, 1, {})
    tensors = c_tensors([arrays], 1)
    tensors[0].grad_avg = arrays["param"].ctypes.data  # would overlap if it were used
    assert call(lib, "f32", options(lib), tensors, 1) == (OK, "")


def test_null_options_and_tensors_refused(lib, victim) -> None:
    message = ctypes.create_string_buffer(256)
    assert lib.rmsprop_step_f32(None, c_tensors([victim], 1), 1, message, 256) == NULL
    assert b"options is NULL" in message.value
    status, text = call(lib, "f32", options(lib), None, 1)
    assert status == NULL and "tensors is NULL" in text
    assert call(lib, "f32", options(lib), None, 0) == (OK, "")  # nothing to do is fine
    assert lib.rmsprop_options_init(None, 96) == NULL


@pytest.mark.parametrize(
    ("first", "second", "offset"),
    [
        ("param", "grad", 0),
        ("square_avg", "param", 400),
        ("grad", "momentum_buffer", 3996),
        ("grad_avg", "square_avg", 1),
    ],
)
def test_overlapping_buffers_refused(lib, victim, first, second, offset) -> None:
    tensors = c_tensors([victim], 1)
    setattr(tensors[0], second, victim[first].ctypes.data + offset)
    o = options(lib, centered=True, momentum=0.9)
    words = "share memory" if offset % 4 == 0 else "not aligned"
    expected = OVERLAP if offset % 4 == 0 else INVALID
    assert_refused(lib, [victim], o, expected, words, tensors=tensors)


def test_overlap_across_tensors_refused(lib) -> None:
    a = make(np.float32, 100, 1, {})
    b = make(np.float32, 100, 2, {})
    tensors = c_tensors([a, b], 1)
    tensors[1].square_avg = a["grad"].ctypes.data + 200  # tensor 1 would write tensor 0's grad
    assert_refused(lib, [a, b], options(lib), OVERLAP, "tensors[0].grad", tensors=tensors)


def test_grad_shared_read_only_is_fine(lib) -> None:
    a = make(np.float32, 100, 1, {})
    b = make(np.float32, 100, 2, {})
    tensors = c_tensors([a, b], 1)
    tensors[1].grad = a["grad"].ctypes.data  # two reads of one buffer cannot corrupt anything
    assert call(lib, "f32", options(lib), tensors, 2) == (OK, "")


def test_step_below_one_refused(lib, victim) -> None:
    o = options(lib, centered=True, momentum=0.9)
    tensors = c_tensors([victim], 0)
    assert_refused(lib, [victim], o, INVALID, "step must be >= 1", tensors=tensors)


def test_older_smaller_options_struct_gets_defaults(lib) -> None:
    """struct_size covering only lr and alpha: the garbage after them must not be read."""
    a = make(np.float32, 100, 3, {})
    b = {k: x.copy() for k, x in a.items()}
    o = options(lib, lr=0.05, alpha=0.8, eps=123.0, centered=7, maximize=1)
    o.struct_size = Options.eps.offset  # an old struct ending before eps
    assert call(lib, "f32", o, c_tensors([a], 1), 1) == (OK, "")
    rmsprop_step(b["param"], b["grad"], b["square_avg"], lr=0.05, alpha=0.8)
    assert a["param"].tobytes() == b["param"].tobytes()
    small = Options()
    assert lib.rmsprop_options_init(ctypes.byref(small), Options.eps.offset) == OK
    assert small.struct_size == Options.eps.offset and small.lr == 1e-2 and small.eps == 0.0


def test_newer_larger_options_struct(lib, victim) -> None:
    class Newer(ctypes.Structure):
        _fields_ = [("base", Options), ("future_option", c_u64)]

    newer = Newer()
    assert (
        lib.rmsprop_options_init(ctypes.cast(ctypes.byref(newer), ctypes.POINTER(Options)), 104)
        == OK
    )
    assert newer.base.struct_size == 104 and newer.future_option == 0
    newer.base.centered, newer.base.momentum = 1, 0.9
    step = lib.rmsprop_step_f32
    message = ctypes.create_string_buffer(256)
    as_options = ctypes.cast(ctypes.byref(newer), ctypes.POINTER(Options))
    before = {k: x.copy() for k, x in victim.items()}
    newer.future_option = 1  # an option this library does not know: refused, nothing written
    assert step(as_options, c_tensors([victim], 1), 1, message, 256) == UNSUPPORTED
    assert b"does not know" in message.value
    assert all(victim[k].tobytes() == before[k].tobytes() for k in victim)
    newer.future_option = 0  # unknown but zero (off): accepted
    assert step(as_options, c_tensors([victim], 1), 1, message, 256) == OK


@pytest.mark.parametrize("size", [0, 1, 7, 4097, 1 << 40])
def test_struct_size_implausible_refused(lib, victim, size) -> None:
    o = options(lib)
    o.struct_size = size  # not even the size field, or absurdly large: an uninitialised struct
    assert_refused(lib, [victim], o, INVALID, "struct_size")


def test_tiny_message_buffers(lib, victim) -> None:
    o = options(lib, lr=float("nan"), centered=True, momentum=0.9)
    tensors = c_tensors([victim], 1)
    for size in (1, 2, 5):
        message = ctypes.create_string_buffer(b"\xff" * 8, 8)
        assert lib.rmsprop_step_f32(ctypes.byref(o), tensors, 1, message, size) == INVALID
        assert message.raw[: size - 1] == b"lr must"[: size - 1]
        assert message.raw[size - 1] == 0 and message.raw[size:] == b"\xff" * (8 - size)
    assert lib.rmsprop_step_f32(ctypes.byref(o), tensors, 1, None, 0) == INVALID
