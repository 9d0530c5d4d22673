"""rmsprop.torch.RMSprop: torch's results, rmsprop.RMSprop's bits, torch.optim's machinery."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from cases import run_reference, tolerance, well_conditioned
from rmsprop import RMSprop as NumpyRMSprop

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
rt = pytest.importorskip("rmsprop.torch")

TORCH_OPTIONS = [
    {"weight_decay": wd, "momentum": mom, "centered": centered, "maximize": maximize}
    for wd, mom, centered, maximize in itertools.product(
        [0.0, 0.1], [0.0, 0.9], [False, True], [False, True]
    )
]


def option_id(options: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items())


def tensors(arrays: list[np.ndarray]) -> list[Any]:
    """Leaf params holding copies of the arrays (bfloat16 arrays through an int16 view)."""
    out = []
    for a in arrays:
        if a.dtype == ml_dtypes.bfloat16:
            t = torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(a.copy())
        out.append(torch.nn.Parameter(t))
    return out


def as_array(t: Any) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


def set_grads(params: list[Any], grads: list[np.ndarray | None]) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else tensors([g])[0].detach()


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", TORCH_OPTIONS, ids=option_id)
def test_matches_torch_optim(options: dict[str, Any], dtype: Any) -> None:
    sizes = [1, 17, 4099]
    cases = [well_conditioned(n, dtype, 4, seed=n) for n in sizes]
    kwargs = {"lr": 0.01, "alpha": 0.9, "eps": 1e-3, **options}
    ours = tensors([p0 for p0, _ in cases])
    theirs = tensors([p0 for p0, _ in cases])
    opt = rt.RMSprop(ours, **kwargs)
    topt = torch.optim.RMSprop(theirs, **kwargs)
    for step in range(4):
        set_grads(ours, [g[step] for _, g in cases])
        set_grads(theirs, [g[step] for _, g in cases])
        opt.step()
        topt.step()
    for (p0, grads), p, tp in zip(cases, ours, theirs):
        expected, _ = run_reference(p0, grads, **kwargs)
        # Both are within the error bound of the exact result, so within twice it of each
        # other (torch's CPU sqrt is not correctly rounded; ours is).
        err = np.abs(as_array(p).astype(np.float64) - as_array(tp))
        assert np.all(err <= 2 * tolerance(expected[-1])), float(err.max(initial=0.0))
    assert sorted(opt.state[ours[0]]) == sorted(topt.state[theirs[0]])


EXTRA_OPTIONS = [
    {},
    {"momentum": 0.9, "nesterov": True, "lr_in_momentum": True},
    {"centered": True, "eps_in_sqrt": True, "bias_correction": True, "weight_decay": 0.01},
    {"decoupled_weight_decay": True, "weight_decay": 0.1, "grad_scale": 4.0},
    {"preset": "keras", "momentum": 0.5},
    {"preset": "tf1", "lr": 0.01},
    {"preset": "optax"},
    {"preset": "seed", "maximize": True},
]


@pytest.mark.usefixtures("isa", "threads")
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("options", EXTRA_OPTIONS, ids=option_id)
def test_bit_identical_to_numpy_api(options: dict[str, Any], dtype: str) -> None:
    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    if dtype in ("float16", "bfloat16"):
        options = {**options, "master_weights": True}
        if dtype == "bfloat16":
            options.update(stochastic_rounding=True, rounding_seed=7)
    rng = np.random.default_rng(3)
    shapes = [(33, 65), (1,), (1000,), (70001,)]
    p0 = [rng.standard_normal(s).astype(np_dtype) for s in shapes]
    steps = [[rng.standard_normal(s).astype(np_dtype) for s in shapes] for _ in range(3)]
    steps[1][2] = None  # type: ignore[call-overload]  # a skipped param
    arrays = [p.copy() for p in p0]
    # Two groups, the second with its own lr, in both APIs.
    ref = NumpyRMSprop([{"params": arrays[:2]}, {"params": arrays[2:], "lr": 0.003}], **options)
    params = tensors(p0)
    opt = rt.RMSprop([{"params": params[:2]}, {"params": params[2:], "lr": 0.003}], **options)
    ptrs = [p.data_ptr() for p in params]
    for grads in steps:
        ref.step(grads)
        set_grads(params, grads)
        opt.step()
    for a, p in zip(arrays, params):
        np.testing.assert_array_equal(as_array(p).view(np.uint8), a.view(np.uint8))
    assert [p.data_ptr() for p in params] == ptrs
    for k, p in enumerate(params):
        for key, value in ref.state[k].items():
            if key == "step":
                assert opt.state[p]["step"].item() == value
                assert opt.state[p]["step"].dtype == torch.float32
            else:
                np.testing.assert_array_equal(opt.state[p][key].numpy(), value)


def test_state_tensors_share_memory_with_the_core() -> None:
    w = torch.nn.Parameter(torch.ones(5))
    opt = rt.RMSprop([w], momentum=0.9, centered=True)
    w.grad = torch.full((5,), 2.0)
    opt.step()
    held = dict(opt.state[w])
    w.grad = torch.full((5,), 3.0)
    opt.step()
    assert held["step"].item() == 2.0 and held["step"].shape == ()
    for key in ("square_avg", "momentum_buffer", "grad_avg"):
        assert held[key] is opt.state[w][key]
    # v = 0.99 * (0.01 * 2**2) + 0.01 * 3**2, in float32
    np.testing.assert_allclose(held["square_avg"].numpy(), np.float32(0.1296), rtol=1e-6)
    core = opt._states[0]
    for key in ("square_avg", "momentum_buffer", "grad_avg"):
        assert held[key].data_ptr() == core[key].ctypes.data
        assert core[key].ctypes.data % 64 == 0  # the core's cache-line aligned buffers


def test_signature_matches_torch() -> None:
    import inspect

    theirs = list(inspect.signature(torch.optim.RMSprop).parameters)
    ours = list(inspect.signature(rt.RMSprop).parameters)
    assert ours[: len(theirs)] == theirs
    for name in ours[len(theirs) :]:
        assert inspect.signature(rt.RMSprop).parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    positional = rt.RMSprop([torch.nn.Parameter(torch.ones(2))], 0.1, 0.8, 1e-6, 0.01, 0.5, True)
    group = positional.param_groups[0]
    assert (group["lr"], group["alpha"], group["eps"], group["weight_decay"]) == (
        0.1,
        0.8,
        1e-6,
        0.01,
    )
    assert (group["momentum"], group["centered"]) == (0.5, True)
    defaults = torch.optim.RMSprop([torch.nn.Parameter(torch.ones(2))]).defaults
    assert {
        k: rt.RMSprop([torch.nn.Parameter(torch.ones(2))]).defaults[k] for k in defaults
    } == defaults
