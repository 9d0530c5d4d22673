"""float16 / bfloat16 params with float32 state, master weights, stochastic rounding, AMP hooks.

The reference runs the float32 math exactly (float64, with the running error bound of float32
arithmetic); a 16-bit param must then hold the rounding of some value inside that bound:
between the roundings of the interval's two ends, rounding being monotone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rmsprop
from cases import REPRESENTATIVE_IDS, REPRESENTATIVE_OPTION_SETS, assert_matches_reference
from conftest import SUPPORTED_ISAS, THREAD_COUNTS
from reference import Precision, exact, new_state, reference_step
from rmsprop import RMSprop

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
SIXTEEN = [F16, BF16]

pytestmark = pytest.mark.usefixtures("isa")


def ids(dtype: np.dtype) -> str:
    return dtype.name


def sixteen_bit_case(dtype: np.dtype, n: int, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(-2, 2, n).astype(dtype)
    grads = [
        (rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 2.5, n)).astype(dtype) for _ in range(steps)
    ]
    return p0, grads


def assert_rounds_from_interval(stored: np.ndarray, expected) -> None:
    """stored == round16(x) for some x within the reference's bound."""
    dtype = stored.dtype
    bound = 2 * expected.err
    low = np.float32(expected.value - bound).astype(dtype).astype(np.float64)
    high = np.float32(expected.value + bound).astype(dtype).astype(np.float64)
    got = stored.astype(np.float64)
    bad = ~((got >= low) & (got <= high))
    assert not bad.any(), (got[bad][:5], expected.value[bad][:5], bound[bad][:5])


@pytest.mark.parametrize("master", [False, True], ids=["plain", "master"])
@pytest.mark.parametrize("options", REPRESENTATIVE_OPTION_SETS, ids=REPRESENTATIVE_IDS)
@pytest.mark.parametrize("dtype", SIXTEEN, ids=ids)
def test_sixteen_bit_params_match_reference_rounding(dtype, options, master) -> None:
    p0, grads = sixteen_bit_case(dtype, 77, 5, seed=3)
    kwargs = {"lr": 0.05, "alpha": 0.9, "eps": 1e-3, **options}
    p = p0.copy()
    opt = RMSprop([p], master_weights=master, **kwargs)
    prec = Precision.of(np.float32)
    state = new_state(p0.astype(np.float32))
    tracked = exact(p0.astype(np.float64), prec)
    for g in grads:
        opt.step([g])
        exact_next = reference_step(tracked, g.astype(np.float64), state, **kwargs)
        assert_rounds_from_interval(p, exact_next)
        # Without master weights the next step starts from the stored 16-bit value; with them,
        # from the float32 master copy, which follows the reference like a float32 param.
        tracked = exact_next if master else exact(p.astype(np.float64), prec)
    assert opt.state[0]["square_avg"].dtype == np.float32
    if master:
        assert_matches_reference(opt.state[0]["master_param"], tracked)


def test_float16_zero_gradient_is_not_nan() -> None:
    """eps = 1e-8 underflows in float16 (torch then divides 0 by 0); our math is float32."""
    p = np.ones(16, np.float16)
    opt = RMSprop([p])
    for _ in range(3):
        opt.step([np.zeros(16, np.float16)])
    assert np.all(p == 1)


def test_stochastic_rounding_is_deterministic_per_seed_and_differs_between_seeds() -> None:
    def run(seed: int) -> bytes:
        p = np.ones(4096, BF16)
        opt = RMSprop([p], lr=1e-3, stochastic_rounding=True, rounding_seed=seed)
        for _ in range(5):
            opt.step([np.full(4096, 0.3, BF16)])
        return p.tobytes()

    assert run(1) == run(1)
    assert run(1) != run(2)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize(
    "n, first",
    [(1, 0), (37, 0), (4099, 0), (1000, 1), (1000, 3), (999, 2**32 - 301), (70, 2**40 + 2)],
)
def test_bfloat16_stochastic_rounding_equals_reference_noise(
    threads: int, n: int, first: int, momentum: float
) -> None:
    """Each param is the float32 result rounded with exactly the reference noise (its own salt,
    keyed on the global index): whole tensors, odd sizes, and pieces placed off a quad (vectors
    take two registers' words, shifted) and across 2^32, on every ISA and thread count."""
    import reference_lowbit as ref

    from rmsprop import _core
    from rmsprop.state_codec import bfloat16_bits_to_float32

    seed, alpha, lr = 11, 0.99, 1e-2
    rng = np.random.default_rng(n)
    param = rng.standard_normal(n).astype(BF16)
    grad = rng.standard_normal(n).astype(BF16)
    v_old = rng.uniform(0.5, 2, n).astype(np.float32)
    state: dict[str, Any] = {"step": 4, "square_avg": v_old.copy()}
    if momentum:
        state["momentum_buffer"] = np.zeros(n, np.float32)
    opts = {"lr": lr, "alpha": alpha, "momentum": momentum}
    group = {
        **RMSprop([param], stochastic_rounding=True, rounding_seed=seed, **opts).param_groups[0],
        "params": [param],
    }
    p32, g32 = param.astype(np.float32), grad.astype(np.float32)
    assert (
        _core.step_optimizer([group], [grad], [state], False, False, [(0, first, first + n)]) == 0
    )
    v_new = np.float32(alpha) * v_old + (np.float32(1 - alpha) * g32) * g32
    u = g32 / (np.sqrt(v_new) + np.float32(1e-8))  # with zero momentum_buffer, m = u exactly
    want = ref.bfloat16_stochastic(p32 - np.float32(lr) * u, ref.param_noise(seed, 0, 5, n, first))
    assert np.array_equal(bfloat16_bits_to_float32(param.view(np.uint16)), want)


def test_bfloat16_with_master_or_stochastic_rounding_tracks_float32_where_plain_stalls() -> None:
    n, steps, lr = 2048, 200, 1e-3
    g32 = np.ones(n, np.float32)

    def train(dtype: Any, **kwargs: Any) -> np.ndarray:
        p = np.ones(n, dtype)
        opt = RMSprop([p], lr=lr, alpha=0.9, **kwargs)
        g = g32.astype(dtype)
        for _ in range(steps):
            opt.step([g])
        return p.astype(np.float64)

    full = train(np.float32)
    assert full.mean() < 0.85  # float32 moves about lr per step
    plain = train(BF16)
    # Only the first two updates (lr/sqrt(0.1) = 3.2e-3, lr/sqrt(0.19) = 2.3e-3) exceed half an
    # ulp (2^-9); every later one (-> lr) is rounded away: plain bfloat16 stalls two ulps below 1
    # while float32 goes on to 0.8.
    assert np.all(plain == 1.0 - 2.0**-7)
    master = train(BF16, master_weights=True)
    ulp = 2.0**-8  # bfloat16 spacing just below 1.0
    assert np.max(np.abs(master - full)) <= ulp
    stochastic = train(BF16, stochastic_rounding=True, rounding_seed=5)
    # Unbiased: the mean follows float32 to within the averaged rounding noise.
    assert abs(stochastic.mean() - full.mean()) < 0.1 * (1 - full.mean())


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64), *SIXTEEN], ids=ids)
def test_grad_scale_power_of_two_is_exact(dtype) -> None:
    p0, grads = sixteen_bit_case(dtype, 40, 3, seed=4)
    a, b = p0.copy(), p0.copy()
    opt_a = RMSprop([a], momentum=0.9)
    opt_b = RMSprop([b], momentum=0.9, grad_scale=1024.0)
    for g in grads:
        opt_a.step([g])
        opt_b.step([(g.astype(np.float64) * 1024).astype(dtype)])
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), *SIXTEEN], ids=ids)
def test_skip_if_nonfinite_changes_nothing_and_reports(dtype) -> None:
    p, q = np.ones(33, dtype), np.ones(7, dtype)
    opt = RMSprop([p, q], momentum=0.9, skip_if_nonfinite=True)
    assert opt.step([np.ones(33, dtype), np.ones(7, dtype)]) is True
    before = [p.tobytes(), q.tobytes(), opt.state[0]["square_avg"].tobytes()]
    bad = np.ones(7, dtype)
    bad[3] = np.inf
    assert opt.step([np.ones(33, dtype), bad]) is False
    assert [p.tobytes(), q.tobytes(), opt.state[0]["square_avg"].tobytes()] == before
    assert opt.state[0]["step"] == 1
    fresh = RMSprop([np.ones(5, dtype)], skip_if_nonfinite=True)
    assert fresh.step([np.full(5, np.nan, dtype)]) is False
    assert fresh.state == [{}]  # state created for the skipped step was taken back
    assert RMSprop([np.ones(5, dtype)]).step([np.ones(5, dtype)]) is None


def test_sixteen_bit_refusals() -> None:
    p = np.ones(8, np.float16)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float32 but params\[0\]"):
        RMSprop([p]).step([np.ones(8, np.float32)])
    opt = RMSprop([p])
    opt.step([np.ones(8, np.float16)])
    opt.state[0]["square_avg"] = np.zeros(8, np.float16)
    with pytest.raises(TypeError, match="the state of a float16 param is float32"):
        opt.step([np.ones(8, np.float16)])
    with pytest.raises(ValueError, match="grad_scale must be a finite number > 0"):
        RMSprop([p], grad_scale=0.0)


def test_sixteen_bit_state_dict_round_trip() -> None:
    p = np.linspace(-1, 1, 12).astype(BF16)
    opt = RMSprop([p], master_weights=True, momentum=0.9)
    opt.step([np.ones(12, BF16)])
    sd = opt.state_dict()
    assert sd["state"][0]["master_param"].dtype == np.float32
    q = p.copy()
    opt2 = RMSprop([q], master_weights=True, momentum=0.9)
    opt2.load_state_dict(sd)
    for o in (opt, opt2):
        o.step([np.ones(12, BF16)])
    assert p.tobytes() == q.tobytes()
    bad = opt.state_dict()
    bad["state"][0]["master_param"] = bad["state"][0]["master_param"].astype(np.float64)
    with pytest.raises(TypeError, match="float32"):
        opt2.load_state_dict(bad)


# ---------------------------------------------------------------- bit identity


def run_everywhere(make, **options: Any) -> None:
    results = []
    for isa in SUPPORTED_ISAS:
        for threads in THREAD_COUNTS:
            rmsprop.set_isa(isa)
            rmsprop.set_num_threads(threads)
            params, grads = make()
            opt = RMSprop(params, **options)
            with np.errstate(all="ignore"):
                for g in grads:
                    opt.step(g)
            buffers = [s[k] for s in opt.state for k in s if k != "step"]
            results.append(b"".join(a.tobytes() for a in (*params, *buffers)))
    assert all(r == results[0] for r in results[1:])


@pytest.mark.parametrize("dtype", SIXTEEN, ids=ids)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"master_weights": True, "momentum": 0.9},
        {"stochastic_rounding": True, "rounding_seed": 3, "centered": True},
    ],
    ids=["plain", "master", "stochastic"],
)
def test_sixteen_bit_same_bits_on_every_isa_and_thread_count(dtype, options) -> None:
    sizes = [1, 15, 33, 70_001, 100_003]

    def make():
        rng = np.random.default_rng(0)
        params = [rng.standard_normal(n).astype(dtype) for n in sizes]
        grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3)]
        return params, grads

    run_everywhere(make, lr=1e-2, **options)


@pytest.mark.parametrize("dtype", SIXTEEN, ids=ids)
def test_every_sixteen_bit_pattern_converts_identically(dtype) -> None:
    """All 65536 encodings as params with lr = 0: non-NaN values come back unchanged, and NaNs
    come back as the same quiet NaN on every ISA (software and hardware conversions agree)."""
    patterns = np.arange(65536, dtype=np.uint16).view(dtype)

    def make():
        return [patterns.copy()], [[np.zeros(65536, dtype)]]

    run_everywhere(make, lr=0.0)
    p = patterns.copy()
    with np.errstate(all="ignore"):
        RMSprop([p], lr=0.0).step([np.zeros(65536, dtype)])
    keep = ~np.isnan(patterns.astype(np.float32))
    assert p[keep].tobytes() == patterns[keep].tobytes()


@pytest.mark.parametrize("dtype", SIXTEEN, ids=ids)
def test_rounding_of_every_float32_neighbourhood_matches_numpy(dtype) -> None:
    """Rounding float32 results to 16 bits is round-to-nearest-even like NumPy / ml_dtypes,
    including ties, subnormals and overflow: params take values p - lr*u chosen to hit them."""
    rng = np.random.default_rng(1)
    targets = np.concatenate(
        [
            rng.standard_normal(5000).astype(np.float32),
            (rng.standard_normal(3000) * 1e-6).astype(np.float32),  # float16 subnormals
            np.float32([65504, 65519, 65520, 65536, 1e-8, 3e38]),
        ]
    )
    # lr = 0 and a zero gradient: the float32 result is the master value itself, exactly, so
    # the stored param is the rounding of `targets`.
    from rmsprop.functional import rmsprop_step

    got = np.zeros(targets.size, dtype)
    master = targets.copy()
    rmsprop_step(
        got,
        np.zeros(targets.size, dtype),
        np.zeros(targets.size, np.float32),
        master_param=master,
        lr=0.0,
        eps=1e-3,
    )
    with np.errstate(over="ignore"):
        expected = targets.astype(dtype)  # NumPy's / ml_dtypes' round to nearest even
    assert got.tobytes() == expected.tobytes()
