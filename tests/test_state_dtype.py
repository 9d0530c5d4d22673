"""Optimizer state in bfloat16 and 8 bits (SPEC §8): exactness against the float64 reference of
the quantizer, bit-identity across ISAs and threads, edge values, refusals and round trips."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import reference_lowbit as ref

import rmsprop
from reference import exact, new_state, reference_step
from rmsprop import RMSprop
from rmsprop.functional import new_state as new_buffers
from rmsprop.functional import rmsprop_step
from rmsprop.state_codec import bfloat16_bits_to_float32, decode_8bit, float_state

# Straddling lanes, blocks (256), the 8-bit threshold (4096) and the parallel grain (32K).
SIZES = (1, 17, 255, 257, 4095, 4096, 4097, 5000, 65536 + 300)


def _run(sizes: tuple[int, ...], state_dtype: str, steps: int = 4, **options: Any) -> list[Any]:
    rng = np.random.default_rng(7)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    opt = RMSprop(params, state_dtype=state_dtype, rounding_seed=11, **options)
    for _ in range(steps):
        opt.step([rng.standard_normal(n).astype(np.float32) for n in sizes])
    out = [p.copy() for p in params]
    for entry in opt.state:
        out += [value.copy() for key, value in sorted(entry.items()) if key != "step"]
    return out


@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_bit_identical_across_isas_and_threads(
    isa: str, threads: int, state_dtype: str, momentum: float
) -> None:
    got = _run(SIZES, state_dtype, momentum=momentum, weight_decay=0.01)
    saved = (rmsprop.config()["isa"], rmsprop.get_num_threads())
    rmsprop.set_isa("baseline")
    rmsprop.set_num_threads(1)
    try:
        want = _run(SIZES, state_dtype, momentum=momentum, weight_decay=0.01)
    finally:
        rmsprop.set_isa(saved[0])
        rmsprop.set_num_threads(saved[1])
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_state_layout_and_small_tensors_keep_float32() -> None:
    small, big = np.zeros(4095, np.float32), np.zeros((64, 80), np.float32)
    opt = RMSprop([small, big], momentum=0.9, state_dtype="8bit")
    opt.step([np.ones_like(small), np.ones_like(big)])
    assert {k: v.dtype for k, v in opt.state[0].items() if k != "step"} == {
        "square_avg": np.float32,
        "momentum_buffer": np.float32,
    }
    s = opt.state[1]
    assert s["square_avg"].dtype == np.uint8 and s["square_avg"].shape == (64, 80)
    assert s["square_avg_scale"].dtype == np.float32 and s["square_avg_scale"].shape == (20,)
    assert s["momentum_buffer"].dtype == np.uint16
    # The small tensor's float32 state gives exactly the float32 optimizer's result.
    twin = np.zeros(4095, np.float32)
    other = RMSprop([twin], momentum=0.9)
    other.step([np.ones_like(twin)])
    assert np.array_equal(twin, small)


def _one_step(
    state_dtype: str, n: int, seed: int, step: int, momentum: float, **options: Any
) -> dict[str, Any]:
    """A step from a random non-trivial state, with everything needed to check it."""
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(np.float32)
    grad = (rng.standard_normal(n) * np.exp(rng.uniform(-4, 4, n))).astype(np.float32)
    state = new_buffers(param, state_dtype)
    v_old = (rng.standard_normal(n) ** 2 * np.exp(rng.uniform(-6, 2, n))).astype(np.float32)
    m_old = rng.standard_normal(n).astype(np.float32)
    if state_dtype == "8bit":
        state["square_avg"][...] = rng.integers(0, 256, n, dtype=np.uint8)
        state["square_avg_scale"][...] = rng.uniform(0.5, 2.0, state["square_avg_scale"].size)
        v_old = decode_8bit(state["square_avg"], state["square_avg_scale"])
    else:
        state["square_avg"][...] = (v_old.view(np.uint32) >> 16).astype(np.uint16)
        v_old = bfloat16_bits_to_float32(state["square_avg"])
    state["momentum_buffer"][...] = (m_old.view(np.uint32) >> 16).astype(np.uint16)
    m_old = bfloat16_bits_to_float32(state["momentum_buffer"])
    state["grad_avg"][...] = (m_old.view(np.uint32) >> 16).astype(np.uint16)  # any values
    before = {"param": param.copy(), "grad": grad, "v": v_old, "m": m_old, "ga": m_old.copy()}
    kwargs = {k: v for k, v in state.items() if k != "grad_avg" or options.get("centered")}
    if momentum == 0.0:
        kwargs.pop("momentum_buffer")
    rmsprop_step(
        param,
        grad,
        step=step,
        momentum=momentum,
        state_dtype=state_dtype,
        rounding_seed=seed,
        **kwargs,
        **options,
    )
    return {"before": before, "after": state, "param": param}


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("n", [4096, 5000, 70001])
def test_8bit_codes_equal_float64_reference(
    isa: str, threads: int, n: int, momentum: float
) -> None:
    alpha, lr = 0.99, 1e-2
    r = _one_step("8bit", n, seed=n, step=3, momentum=momentum, alpha=alpha, lr=lr)
    b, s = r["before"], r["after"]
    g = b["grad"]
    # The new v in float32, operation by operation as SPEC §2 orders them.
    v_new = np.float32(alpha) * b["v"] + (np.float32(1 - alpha) * g) * g
    u_v = ref.code_noise(seed=n, stream=0, step=3, size=n)
    u_m = ref.state_noise(seed=n, stream=0, step=3, size=n, buffer="momentum_buffer")
    scales, codes = ref.quantize(v_new, u_v)
    assert np.array_equal(s["square_avg_scale"], scales)
    assert np.array_equal(s["square_avg"], codes)
    # The step itself uses the unquantized new v: the param is within the float64 reference's
    # rounding bound.
    st = new_state(b["param"])
    st.square_avg = exact(b["v"], st.square_avg.prec)
    st.momentum_buffer = exact(b["m"], st.square_avg.prec)
    st.step = 2
    want = reference_step(
        exact(b["param"], st.square_avg.prec), g, st, lr=lr, alpha=alpha, momentum=momentum
    )
    assert np.all(np.abs(r["param"] - want.value) <= want.err)
    if momentum:
        m_want = ref.bfloat16_stochastic(
            np.float32(momentum) * b["m"] + (g / (np.sqrt(v_new) + np.float32(1e-8))), u_m
        )
        assert np.array_equal(bfloat16_bits_to_float32(s["momentum_buffer"]), m_want)


@pytest.mark.parametrize("centered", [False, True])
def test_bfloat16_state_equals_float64_reference(isa: str, threads: int, centered: bool) -> None:
    n, alpha, momentum = 40000, 0.999, 0.5
    r = _one_step("bfloat16", n, seed=3, step=5, momentum=momentum, alpha=alpha, centered=centered)
    b, s = r["before"], r["after"]
    g = b["grad"]
    a32, one_minus = np.float32(alpha), np.float32(1 - alpha)
    v_new = a32 * b["v"] + (one_minus * g) * g
    noise = {
        key: ref.state_noise(seed=3, stream=0, step=5, size=n, buffer=key)
        for key in ("square_avg", "momentum_buffer", "grad_avg")
    }
    assert np.array_equal(
        bfloat16_bits_to_float32(s["square_avg"]),
        ref.bfloat16_stochastic(v_new, noise["square_avg"]),
    )
    centered_v = v_new
    if centered:
        ga_new = a32 * b["ga"] + one_minus * g
        assert np.array_equal(
            bfloat16_bits_to_float32(s["grad_avg"]),
            ref.bfloat16_stochastic(ga_new, noise["grad_avg"]),
        )
        centered_v = np.maximum(v_new - ga_new * ga_new, np.float32(0))
    u_m = noise["momentum_buffer"]
    m_new = np.float32(momentum) * b["m"] + g / (np.sqrt(centered_v) + np.float32(1e-8))
    assert np.array_equal(
        bfloat16_bits_to_float32(s["momentum_buffer"]), ref.bfloat16_stochastic(m_new, u_m)
    )


@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
def test_stochastic_rounding_is_unbiased(state_dtype: str) -> None:
    """alpha = 0 makes the new v exactly g*g; stored at 400 different steps (different noise),
    its stored values average to it."""
    n = 8192
    rng = np.random.default_rng(0)
    g = np.exp(rng.uniform(-4, 0, n)).astype(np.float32)
    v_new = g * g
    decoded = []
    for step in range(1, 401):
        p = np.zeros(n, np.float32)
        state = new_buffers(p, state_dtype)
        kwargs = {k: a for k, a in state.items() if k in ("square_avg", "square_avg_scale")}
        rmsprop_step(p, g, alpha=0.0, lr=0.0, state_dtype=state_dtype, step=step, **kwargs)
        decoded.append(float_state(state)["square_avg"].astype(np.float64))
    relative = np.mean(decoded, axis=0) / v_new - 1
    per_element, overall = (0.03, 2e-3) if state_dtype == "8bit" else (0.005, 2e-4)
    assert np.max(np.abs(relative)) < per_element
    assert abs(np.mean(relative)) < overall


def test_8bit_edge_values() -> None:
    n = 16 * 256  # the 8-bit threshold; blocks 4-15 are ordinary
    p = np.zeros(n, np.float32)
    g = np.ones(n, np.float32)
    g[0:256] = 0.0  # block 0: all zero -> scale 0, codes 0, decodes to 0
    g[256] = 1e-30  # block 1: a subnormal-squared v next to ordinary ones
    g[512] = np.inf  # block 2: v = inf -> the whole block decodes to inf (steps of 0)
    g[768] = np.nan  # block 3: NaN poisons its block on the next step
    g[1024:1280] = 1e-20  # block 4: every v subnormal, so is the scale (divided, not inverted)
    state = new_buffers(p, "8bit")
    with np.errstate(all="ignore"):
        rmsprop_step(
            p,
            g,
            state["square_avg"],
            square_avg_scale=state["square_avg_scale"],
            state_dtype="8bit",
            alpha=0.9,
        )
    scales, codes = state["square_avg_scale"], state["square_avg"]
    assert scales[0] == 0.0 and not codes[:256].any()
    assert scales[1] == np.float32(0.1) and codes[256] == 0 and np.all(codes[257:512] == 255)
    assert np.isinf(scales[2]) and np.isnan(scales[3])
    decoded = decode_8bit(codes, scales)
    assert np.all(decoded[:256] == 0) and np.all(np.isinf(decoded[512:768]))
    assert np.all(np.isnan(decoded[768:1024])) and np.all(decoded[1280:] == np.float32(0.1))
    tiny = (np.float32(0.1) * np.float32(1e-20)) * np.float32(1e-20)
    assert 0 < scales[4] == tiny < np.finfo(np.float32).tiny and np.all(codes[1024:1280] == 255)
    assert decoded[256] == np.float32(0.1) * np.float32(1.125 * 2.0**-32)


def test_initial_square_avg_is_exact_in_8bit_and_nearest_in_bfloat16() -> None:
    p = np.zeros(5000, np.float32)
    s8 = new_buffers(p, "8bit", initial_square_avg=0.3)
    assert np.all(decode_8bit(s8["square_avg"], s8["square_avg_scale"]) == np.float32(0.3))
    s16 = new_buffers(p, "bfloat16", initial_square_avg=0.3)
    assert np.all(bfloat16_bits_to_float32(s16["square_avg"]) == np.float32(0.30078125))


def test_gradient_drop_at_alpha_0999_tracks_float32_state() -> None:
    """After the gradient drops 10x, v must decay: step sizes follow float32 state (no stale v).

    Round to nearest keeps v where it was (a decrease of 0.1 % is below half an ulp), so steps
    stay ~0.1x their float32 size; stochastic rounding keeps them within a few percent.
    """
    n, alpha, lr = 8192, 0.999, 1e-6
    rng = np.random.default_rng(5)
    sizes: dict[str, np.ndarray] = {}
    for state_dtype in ("float32", "bfloat16", "8bit"):
        p = np.zeros(n, np.float32)
        opt = RMSprop([p], lr=lr, alpha=alpha, eps=1e-12, state_dtype=state_dtype)
        noise = np.random.default_rng(5)
        for t in range(4000):
            scale = 1.0 if t < 2000 else 0.1
            g = (noise.standard_normal(n) * scale).astype(np.float32)
            before = p.copy()
            opt.step([g])
        sizes[state_dtype] = np.abs(p - before) / np.abs(g)  # lr / sqrt(v) per element
    del rng
    for state_dtype in ("bfloat16", "8bit"):
        ratio = np.median(sizes[state_dtype] / sizes["float32"])
        assert 0.95 < ratio < 1.05, (state_dtype, ratio)
        assert np.mean(sizes[state_dtype]) / np.mean(sizes["float32"]) == pytest.approx(1, abs=0.05)


# ------------------------------------------------------------------ refusals and round trips


def test_refusals_name_the_argument_and_change_nothing() -> None:
    with pytest.raises(ValueError, match="state_dtype"):
        RMSprop([np.zeros(3, np.float32)], state_dtype="int8")
    with pytest.raises(TypeError, match="float64"):
        RMSprop([np.zeros(3)], state_dtype="bfloat16")
    with pytest.raises(ValueError, match="centered=True is not supported"):
        RMSprop([np.zeros(5000, np.float32)], centered=True, state_dtype="8bit")
    p = np.ones(5000, np.float32)
    state = new_buffers(p, "8bit")
    snapshot = {k: v.copy() for k, v in state.items()}
    bad_scale = np.zeros(19, np.float32)
    with pytest.raises(ValueError, match=r"square_avg_scale has shape \(19,\)"):
        rmsprop_step(
            p, p.copy(), state["square_avg"], square_avg_scale=bad_scale, state_dtype="8bit"
        )
    with pytest.raises(TypeError, match="uint8"):
        rmsprop_step(
            p,
            p.copy(),
            state["momentum_buffer"],
            square_avg_scale=state["square_avg_scale"],
            state_dtype="8bit",
        )
    with pytest.raises(TypeError, match="uint16"):
        rmsprop_step(p, p.copy(), np.zeros(5000, np.float32), state_dtype="bfloat16")
    assert np.all(p == 1) and all(np.array_equal(state[k], snapshot[k]) for k in state)
    # A group whose state_dtype is edited after its first step: refused, nothing written.
    w = np.ones(5000, np.float32)
    opt = RMSprop([w], state_dtype="bfloat16")
    opt.step([np.ones_like(w)])
    kept = w.copy()
    opt.param_groups[0]["state_dtype"] = "float32"
    with pytest.raises(TypeError, match="state_dtype"):
        opt.step([np.ones_like(w)])
    assert np.array_equal(w, kept) and opt.state[0]["step"] == 1


def _trained(state_dtype: str, steps: int, momentum: float = 0.9) -> tuple[list[Any], RMSprop]:
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s).astype(np.float32) for s in ((70, 90), (300,), (9000,))]
    opt = RMSprop(params, lr=1e-2, momentum=momentum, state_dtype=state_dtype, rounding_seed=4)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(np.float32) for p in params])
    return params, opt


def _grads(k: int, params: list[Any]) -> list[Any]:
    rng = np.random.default_rng(100 + k)
    return [rng.standard_normal(p.shape).astype(np.float32) for p in params]


@pytest.mark.parametrize("state_dtype", ["bfloat16", "8bit"])
def test_state_dict_and_pickle_resume_bit_identically(state_dtype: str) -> None:
    params, opt = _trained(state_dtype, 3)
    sd = opt.state_dict()
    copies = [p.copy() for p in params]
    fresh = RMSprop(copies, state_dtype=state_dtype)
    fresh.load_state_dict(sd)
    pickled_params, unpickled = pickle.loads(pickle.dumps((params, opt)))
    for k in range(3):
        grads = _grads(k, params)
        opt.step(grads)
        fresh.step(grads)
        unpickled.step(grads)
    for a, b, c in zip(params, copies, pickled_params):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    assert sd["state"][2]["square_avg"].dtype == (np.uint8 if state_dtype == "8bit" else np.uint16)


def test_loading_across_state_dtypes_is_refused() -> None:
    params, opt = _trained("8bit", 2)
    sd = opt.state_dict()
    for other in ("float32", "bfloat16"):
        target_params = [p.copy() for p in params]
        target = RMSprop(target_params, momentum=0.9, state_dtype=other)
        target.step(_grads(0, target_params))
        before = target.state_dict()
        with pytest.raises(ValueError, match="state_dtype='8bit'"):
            target.load_state_dict(sd)
        after = target.state_dict()
        for i, entry in before["state"].items():
            for key, value in entry.items():
                assert np.array_equal(value, after["state"][i][key])
    # A forged snapshot with float32 arrays under "8bit" is refused by dtype, naming the key.
    forged = opt.state_dict()
    forged["state"][2]["square_avg"] = np.zeros(9000, np.float32)
    with pytest.raises(TypeError, match=r"\['square_avg'\].*uint8"):
        RMSprop([p.copy() for p in params], momentum=0.9, state_dtype="8bit").load_state_dict(
            forged
        )


def test_state_codec_docstring_example() -> None:
    import doctest

    import rmsprop.state_codec

    result = doctest.testmod(rmsprop.state_codec, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def _assert_first_momentum_is_the_reference(
    state: dict[str, Any], grad: np.ndarray, v_new: np.ndarray, seed: int, first: int
) -> None:
    """A zero bfloat16 momentum_buffer after one step (step 5, stream 0): the first u, rounded
    with the reference noise of the elements first, first + 1, ..."""
    m_new = grad / (np.sqrt(v_new) + np.float32(1e-8))
    u_m = ref.state_noise(
        seed=seed, stream=0, step=5, size=grad.size, buffer="momentum_buffer", first=first
    )
    got_m = bfloat16_bits_to_float32(state["momentum_buffer"])
    assert np.array_equal(got_m, ref.bfloat16_stochastic(m_new, u_m))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("first", [3, 2**32 - 300, 2**32 - 301, 2**40 + 2])
def test_bfloat16_noise_of_a_piece_placed_anywhere(
    isa: str, threads: int, momentum: float, first: int
) -> None:
    """A piece placed at any global index (as the sharder places pieces of tensors, and rows
    of a table are placed) gets exactly the reference noise: starts on and off a quad (AES
    in registers or from the buffer) and across a multiple of 2^32."""
    from rmsprop import _core

    n, seed, alpha = 1000, 11, 0.999
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(np.float32)
    grad = rng.standard_normal(n).astype(np.float32)
    v_old = np.float32(0.5)
    state = {
        "step": 4,
        "square_avg": np.full(n, np.float32(v_old).view(np.uint32) >> 16, np.uint16),
    }
    if momentum:
        state["momentum_buffer"] = np.zeros(n, np.uint16)
    opts = {"lr": 1e-3, "alpha": alpha, "momentum": momentum, "rounding_seed": seed}
    group = {
        **RMSprop([param], state_dtype="bfloat16", **opts).param_groups[0],
        "params": [param],
    }
    placement = [(0, first, first + n + 5)]
    assert _core.step_optimizer([group], [grad], [state], False, False, placement) == 0
    v_new = np.float32(alpha) * np.float32(v_old) + (np.float32(1 - alpha) * grad) * grad
    u_v = ref.state_noise(seed=seed, stream=0, step=5, size=n, buffer="square_avg", first=first)
    got = bfloat16_bits_to_float32(state["square_avg"])
    assert np.array_equal(got, ref.bfloat16_stochastic(v_new, u_v))
    if momentum:
        _assert_first_momentum_is_the_reference(state, grad, v_new, seed, first)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("first", [256, 2**32 - 256, 2**40])
def test_8bit_noise_of_a_piece_placed_anywhere(
    isa: str, threads: int, momentum: float, first: int
) -> None:
    """An 8-bit piece placed at a block border of a larger tensor (as the sharder places them)
    gets exactly the reference codes and momentum: the codes' noise keyed on the global index,
    across a multiple of 2^32, and a last block of 16 elements (half a group of 32)."""
    from rmsprop import _core

    n, seed, alpha = 4112, 11, 0.999
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(np.float32)
    grad = rng.standard_normal(n).astype(np.float32)
    v_old = np.float32(0.5)  # code 255 (exactly 1) times the scale
    state = {
        "step": 4,
        "square_avg": np.full(n, 255, np.uint8),
        "square_avg_scale": np.full(-(-n // 256), v_old, np.float32),
    }
    if momentum:
        state["momentum_buffer"] = np.zeros(n, np.uint16)
    opts = {"lr": 1e-3, "alpha": alpha, "momentum": momentum, "rounding_seed": seed}
    group = {
        **RMSprop([np.zeros(4096, np.float32)], state_dtype="8bit", **opts).param_groups[0],
        "params": [param],
    }
    placement = [(0, first, first + n)]  # a piece spans whole blocks or ends the tensor
    assert _core.step_optimizer([group], [grad], [state], False, False, placement) == 0
    v_new = np.float32(alpha) * v_old + (np.float32(1 - alpha) * grad) * grad
    scales, codes = ref.quantize(v_new, ref.code_noise(seed, 0, 5, n, first))
    assert np.array_equal(state["square_avg_scale"], scales)
    assert np.array_equal(state["square_avg"], codes)
    if momentum:
        _assert_first_momentum_is_the_reference(state, grad, v_new, seed, first)
