"""Regression tests for the core's hardening (issue 9, C++ half): overflow in the centered
variance, NaN bits across ISAs, the floating-point environment, fork safety, hostile Python
scalars and the wording of the bindings' refusals."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import rmsprop
from conftest import SUPPORTED_ISAS, THREAD_COUNTS
from rmsprop import RMSprop
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


# ------------------------------------------------------------------------------------------
# Defect 5: the caller's flush-to-zero / denormals-are-zero never reaches the kernel.


def subnormal_case(dtype: np.dtype, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    tiny = np.finfo(dtype).smallest_normal
    p = (rng.standard_normal(n) * tiny / 4).astype(dtype)
    g = (rng.standard_normal(n) * tiny / 8).astype(dtype)
    return p, g, np.zeros(n, dtype)


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)], ids=str)
def test_flush_to_zero_in_the_caller_changes_nothing(
    isa: str, threads: int, dtype: np.dtype
) -> None:
    torch = pytest.importorskip("torch")
    n = 3 * rmsprop.config()["parallel_grain"] + 17  # split across threads when allowed
    p, g, v = subnormal_case(dtype, n)
    expected_p, expected_v = p.copy(), v.copy()
    rmsprop_step(expected_p, g, expected_v, lr=1e-2)
    # A subnormal learning rate: its float32 coefficient must not be flushed either.
    q = np.zeros(n, np.float32)
    expected_q = q.copy()
    rmsprop_step(expected_q, np.ones_like(q), np.zeros_like(q), lr=1e-40)
    assert (expected_q != 0).all()
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        tiny = np.full(4, np.finfo(np.float32).smallest_subnormal, np.float32)
        assert (tiny * np.float32(1)).max() == 0  # the caller really runs with FTZ/DAZ
        rmsprop_step(p, g, v, lr=1e-2)
        rmsprop_step(q, np.ones_like(q), np.zeros_like(q), lr=1e-40)
        assert (tiny * np.float32(1)).max() == 0, "the caller's environment must be restored"
    finally:
        torch.set_flush_denormal(False)
    assert np.array_equal(bits(p), bits(expected_p))
    assert np.array_equal(bits(v), bits(expected_v))
    assert np.array_equal(bits(q), bits(expected_q))


# ------------------------------------------------------------------------------------------
# Defect 2: a forked child never hangs, whoever used libgomp before the fork.

FORK_SCRIPT = """
import ctypes, os, sys
import numpy as np
{prelude}
import rmsprop
from rmsprop import RMSprop
from rmsprop import RMSprop

rmsprop.set_num_threads(2)
{use_openmp}
pid = os.fork()
if pid == 0:
    p = np.ones(1 << 17, np.float32)  # above the parallel threshold
    RMSprop([p]).step([np.ones_like(p)])
    os._exit(0 if p[0] < 1 else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""

# Another library's parallel region, straight through libgomp's entry point: free(NULL) on two
# threads leaves libgomp's pool (with its worker) behind, as any -fopenmp extension would.
CTYPES_OPENMP = """
gomp = ctypes.CDLL("libgomp.so.1")
gomp.GOMP_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
free = ctypes.cast(ctypes.CDLL(None).free, ctypes.c_void_p)
gomp.GOMP_parallel(free, None, 2, 0)
"""

TORCH_OPENMP = """
torch.set_num_threads(2)
torch.ones(1 << 22).mul_(2.0).sum()
"""


def run_isolated(script: str, timeout: float = 120) -> int:
    """Runs script in a new session; a hang fails the test and kills the whole process group
    (the forked child included)."""
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the process hung")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("user", ["ctypes", "torch"])
def test_forked_child_never_hangs_after_another_library_used_openmp(user: str) -> None:
    if not rmsprop.config()["openmp"]:
        pytest.skip("built without OpenMP")
    if user == "torch":
        pytest.importorskip("torch")
        prelude, use_openmp = "import torch", TORCH_OPENMP
    else:
        prelude, use_openmp = "", CTYPES_OPENMP
    script = FORK_SCRIPT.format(prelude=prelude, use_openmp=use_openmp)
    assert run_isolated(script) == 0


# ------------------------------------------------------------------------------------------
# Defect 6: Python code met while a step is parsed cannot crash the interpreter. Each case runs
# in its own process, so a crash fails the test instead of killing pytest.

HOSTILE_PRELUDE = """
import gc
import numpy as np
from rmsprop import RMSprop
from rmsprop.functional import rmsprop_step

called = []
params = [np.ones(1000, np.float32) for _ in range(4)]
opt = RMSprop([{"params": params[:2]}, {"params": params[2:]}])
grads = [np.ones(1000, np.float32) for _ in range(4)]
opt.step(grads)  # every param has state now

def wreck():
    called.append(True)
    opt.state.clear()  # frees the state dicts (nothing else refers to them)
    grads.clear()
    junk = [np.zeros(1000, np.float32) for _ in range(200)]
    gc.collect()
    del junk

# Puts a key whose hash equals hash(name) first in d, so that looking up name calls its
# __eq__, which wrecks everything the step reads.
def collide_first(d, name):
    armed = []
    class Key:
        def __hash__(self):
            return hash(name)
        def __eq__(self, other):
            if armed:
                wreck()
            return False
    items = dict(d)
    d.clear()
    d[Key()] = 0
    d.update(items)
    armed.append(True)

def expect(exc, fn):
    try:
        fn()
    except exc:
        return
    raise AssertionError(f"{fn} did not raise {exc}")
"""

HOSTILE_CASES = {
    # __float__ / __index__ of foreign objects are never called: they are refused.
    "float_of_object": """
class Evil:
    def __float__(self):
        wreck()
        return 0.01
opt.param_groups[1]["lr"] = Evil()
expect(TypeError, lambda: opt.step(grads))
assert not called
""",
    "index_of_object_as_step": """
class Evil:
    def __index__(self):
        wreck()
        return 3
opt.state[3]["step"] = Evil()
expect(TypeError, lambda: opt.step(grads))
assert not called
""",
    "numpy_scalar_subclass": """
class Evil(np.float32):
    def __float__(self):
        wreck()
        return 0.01
opt.param_groups[1]["lr"] = Evil(0.01)
expect(TypeError, lambda: opt.step(grads))
assert not called
""",
    "functional_options": """
class Evil:
    def __float__(self):
        wreck()
        return 0.01
p, g, v = np.ones(70000, np.float32), np.ones(70000, np.float32), np.zeros(70000, np.float32)
expect(TypeError, lambda: rmsprop_step(p, g, v, alpha=Evil()))
assert not called and (p == 1).all()
""",
    # float/int subclasses are read by their value, not through their methods.
    "float_and_int_subclasses": """
class EvilFloat(float):
    def __float__(self):
        wreck()
        return 1e9
class EvilInt(int):
    def __index__(self):
        wreck()
        return 10**9
    def __int__(self):
        wreck()
        return 10**9
opt.param_groups[1]["lr"] = EvilFloat(0.5)
opt.param_groups[0]["rounding_seed"] = EvilInt(3)
opt.state[3]["step"] = EvilInt(7)
opt.step(grads)
assert not called and opt.state[3]["step"] == 8
""",
    # Dict lookups can run a colliding key's __eq__; everything read is owned by then.
    "colliding_key_in_state": """
collide_first(opt.state[2], "square_avg")
try:
    opt.step(grads)
except (TypeError, ValueError, IndexError, KeyError):
    pass
assert called
""",
    "colliding_key_in_group": """
collide_first(opt.param_groups[1], "lr")
try:
    opt.step(grads)
except (TypeError, ValueError, IndexError, KeyError):
    pass
assert called
""",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_hostile_python_code_cannot_crash_a_step(case: str) -> None:
    script = HOSTILE_PRELUDE + textwrap.dedent(HOSTILE_CASES[case]) + "\nprint('survived')\n"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip().endswith("survived")


# ------------------------------------------------------------------------------------------
# Messages of the bindings: each refusal names the fix.


class ArrayInterfaceOnly:
    """A foreign array that NumPy could read (like a jax.Array) but that is not an ndarray."""

    def __init__(self, a: np.ndarray) -> None:
        self.__array_interface__ = a.__array_interface__


def two_param_optimizer() -> tuple[RMSprop, list[np.ndarray], list[np.ndarray]]:
    params = [np.ones(5, np.float32), np.ones(3, np.float32)]
    return RMSprop(params), params, [np.ones(5, np.float32), np.ones(3, np.float32)]


def test_read_only_param_message_says_pass_a_writeable_copy() -> None:
    p = np.ones(5, np.float32)
    p.flags.writeable = False
    with pytest.raises(
        ValueError,
        match=r"param is read-only.*pass a writeable copy "
        r"\(np\.array\(x\)\) and keep that array as the parameter",
    ):
        rmsprop_step(p, np.ones_like(p), np.zeros_like(p))


def test_array_like_grad_message_says_how_to_convert() -> None:
    opt, params, grads = two_param_optimizer()
    grads[1] = ArrayInterfaceOnly(grads[1])  # type: ignore[call-overload]
    with pytest.raises(
        TypeError,
        match=r"grads\[1\] must be a numpy\.ndarray \(or an rmsprop\.RowGrad of rows\), got "
        r"ArrayInterfaceOnly; convert it with np\.asarray\(grads\[1\]\).*"
        r"rmsprop\.torch\.RMSprop",
    ):
        opt.step(grads)
    assert (params[0] == 1).all()


def test_torch_tensor_messages_name_the_conversion() -> None:
    torch = pytest.importorskip("torch")
    opt, _, grads = two_param_optimizer()
    grads[0] = torch.ones(5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"grads\[0\].*np\.asarray\(grads\[0\]\)"):
        opt.step(grads)
    with pytest.raises(
        TypeError,
        match=r"param must be a numpy\.ndarray.*writeable NumPy copy "
        r"\(np\.array\(x\)\).*rmsprop\.torch\.RMSprop",
    ):
        rmsprop_step(torch.ones(3), np.ones(3, np.float32), np.zeros(3, np.float32))


def test_not_array_like_message_has_no_conversion_hint() -> None:
    opt, _, grads = two_param_optimizer()
    grads[1] = "gradient"  # type: ignore[call-overload]
    with pytest.raises(
        TypeError,
        match=r"grads\[1\] must be a numpy\.ndarray \(or an rmsprop\.RowGrad of rows\), got str$",
    ):
        opt.step(grads)


@pytest.mark.parametrize(
    ("param_dtype", "spelled"),
    [(np.float32, "np.float32"), (np.float64, "np.float64"), (BF16, "ml_dtypes.bfloat16")],
    ids=str,
)
def test_dtype_mismatch_message_names_the_astype(param_dtype: Any, spelled: str) -> None:
    p = np.ones(3, param_dtype)
    g = np.ones(3, np.float16)
    v = np.zeros(3, state_dtype(np.dtype(param_dtype)))
    with pytest.raises(TypeError, match=rf"pass grad\.astype\({spelled}\)"):
        rmsprop_step(p, g, v)
    opt = RMSprop([np.ones(2, np.float32), np.ones(3, param_dtype)])
    with pytest.raises(TypeError, match=rf"pass grads\[1\]\.astype\({spelled}\)"):
        opt.step([np.ones(2, np.float32), g])


@pytest.mark.parametrize(
    ("key", "value", "exc", "match"),
    [
        ("alpha", 2.0, ValueError, r"^param group 1: alpha must be in \[0, 1\]"),
        ("lr", "0.1", TypeError, r"^param group 1: lr must be a real number"),
        ("centered", "yes", TypeError, r"^param group 1: centered must be True or False"),
        ("lr", 1e39, ValueError, r"^param group 1: lr = 1e\+39 is beyond float32's range"),
    ],
)
def test_step_time_group_refusals_name_the_group(
    key: str, value: Any, exc: type, match: str
) -> None:
    params = [np.ones(3, np.float32), np.ones(4, np.float32)]
    opt = RMSprop([{"params": params[:1]}, {"params": params[1:]}])
    grads = [np.ones_like(p) for p in params]
    opt.step(grads)  # state exists: the refusal comes from the core, at step time
    opt.param_groups[1][key] = value
    with pytest.raises(exc, match=match):
        opt.step(grads)
    assert opt.state[0]["step"] == 1 and opt.state[1]["step"] == 1
