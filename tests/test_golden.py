"""Each preset against golden values produced by the framework itself (tests/golden/*.json).

The goldens hold a framework's own RMSProp trajectory (inputs, the framework's
hyper-parameters in its own names, the param after every step); see
tests/golden/generate_goldens.py. Here we run ``RMSprop(..., preset=<framework>)`` with those
hyper-parameters translated to our names, and compare every step. No framework is imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rmsprop import PRESETS, RMSprop

pytestmark = pytest.mark.usefixtures("isa")

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

# Framework keyword -> ours, per preset. Anything else in a golden is an error (KeyError): a
# framework option we do not map must not be silently dropped.
NAMES: dict[str, dict[str, str]] = {
    "torch": {
        name: name
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
    },
    "keras": {
        "learning_rate": "lr",
        "rho": "alpha",
        "epsilon": "eps",
        "momentum": "momentum",
        "centered": "centered",
        "weight_decay": "weight_decay",  # decoupled: the keras preset sets that
    },
    "tf1": {
        "learning_rate": "lr",
        "decay": "alpha",
        "momentum": "momentum",
        "epsilon": "eps",
        "centered": "centered",
    },
    "optax": {
        "learning_rate": "lr",
        "decay": "alpha",
        "eps": "eps",
        "initial_scale": "initial_square_avg",
        "eps_in_sqrt": "eps_in_sqrt",
        "centered": "centered",
        "momentum": "momentum",
        "nesterov": "nesterov",
        "bias_correction": "bias_correction",
    },
    "seed": {"lr": "lr", "alpha": "alpha", "eps": "eps"},
}

# Tolerance, per element after step k (both in units of the case's dtype):
#     Σ_{j≤k} ( ULPS · ulp(p_j) + RTOL · condition · |p_j − p_{j−1}| )
# - ULPS: each implementation rounds the param once or twice per step (Keras applies the
#   decoupled weight decay as a separate rounded assignment; p − lr·m may or may not be fused),
#   so the two can drift apart by ~1-2 ulp of p per step.
# - RTOL: the update itself goes through ~10 roundings (v, ga, the subtraction, sqrt, +ε, the
#   division or the framework's rsqrt, lr, momentum), and v's error carries over between steps
#   (halved by the sqrt). TF computes 1−ρ in float32 (4 ulp off 0.1 for ρ=0.9), optax computes
#   the bias correction 1−α^t in float32; we use double. That is a few to ~20 ulp of the update;
#   32 ulp leaves a margin (the worst case seen uses a quarter of the tolerance) without hiding
#   a real difference: the gradient magnitudes span ten decades, so ε matters in some elements,
#   and flipping any one option (eps_in_sqrt, lr_in_momentum, decoupled_weight_decay,
#   initial_square_avg, nesterov, bias_correction, centered, maximize, a preset's α, ε or lr)
#   fails every case where that option acts.
# - condition: 1, except in the centered NaN cases, whose compared elements only guarantee
#   v − ga² ≥ v/condition, which amplifies the relative error of v by up to that factor.
ULPS = 2.0
RTOL = {"float32": 32 * 2.0**-24, "float64": 32 * 2.0**-53}


def load_cases() -> list[Any]:
    params = []
    for path in sorted(GOLDEN_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        for case in doc["cases"]:
            params.append(pytest.param(doc, case, id=f"{doc['framework']}-{case['name']}"))
    return params


CASES = load_cases()


def floats(values: list[float | str], dtype: str, shape: list[int]) -> np.ndarray:
    """Stored values (shortest exact decimals, or "nan"/"inf" strings) in their dtype."""
    return np.array([float(x) for x in values], dtype=np.float64).astype(dtype).reshape(shape)


def golden(case: dict[str, Any], step: int) -> np.ndarray:
    """The framework's param after ``step`` steps (0: the initial one), as float64.

    float32 goldens are read as float32 (their decimals are exact for float32 only); the seed
    goldens are float64 results even for float32 inputs.
    """
    if step == 0:
        values, dtype = case["param0"], case["dtype"]
    else:
        values, dtype = case["params"][step - 1], case["params_dtype"]
    return floats(values, dtype, case["shape"]).astype(np.float64)


def our_options(framework: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    options = {NAMES[framework][key]: value for key, value in kwargs.items()}
    if framework == "tf1":
        # TF1 turns Python-float hyper-parameters into float32 tensors
        # (RMSPropOptimizer._prepare: ops.convert_to_tensor) and casts those to the variable's
        # dtype, so even float64 variables see float32-rounded lr, decay and epsilon (and
        # 1 - decay = 0.100000024 for decay 0.9). Passing the same rounded values reproduces it.
        preset = {key: PRESETS["tf1"][key] for key in ("alpha", "eps")}  # rounded alike
        options = {**preset, **options}
        options = {
            key: float(np.float32(value)) if type(value) is float else value
            for key, value in options.items()
        }
    if options.get("momentum") is None:
        options.pop("momentum", None)  # optax's momentum=None: no trace
    return options


def run_ours(doc: dict[str, Any], case: dict[str, Any], **override: Any) -> list[np.ndarray]:
    dtype, shape = case["dtype"], case["shape"]
    p = floats(case["param0"], dtype, shape)
    grads = [floats(g, dtype, shape) for g in case["grads"]]
    options = {**our_options(doc["framework"], case["kwargs"]), **override}
    opt = RMSprop([p], preset=doc["framework"], **options)
    lrs = case.get("lrs")
    history = []
    for k, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]  # what the framework's schedule gave at step k
        opt.step([g])
        history.append(p.astype(np.float64))
    return history


def mismatches(case: dict[str, Any], ours: list[np.ndarray]) -> list[str]:
    """Where ours is outside the tolerance of the golden (or not finite), one line each."""
    dtype, shape = case["dtype"], case["shape"]
    expected = [golden(case, k + 1) for k in range(case["steps"])]
    compare = case.get("compare")
    rtol = RTOL[dtype] * case.get("condition", 1.0)
    previous = golden(case, 0)
    tol = np.zeros(shape)
    problems = []
    for k, (got, want) in enumerate(zip(ours, expected)):
        with np.errstate(invalid="ignore"):
            ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
            tol = tol + ULPS * ulp + rtol * np.abs(want - previous)
            err = np.abs(got - want)
        mask = np.ones(shape, dtype=bool) if compare is None else np.reshape(compare[k], shape) == 1
        if not np.all(np.isfinite(got)):
            problems.append(f"step {k + 1}: ours is not finite: {got.ravel().tolist()}")
        if np.any(mask & ~np.isfinite(want)):
            problems.append(f"step {k + 1}: golden not finite where it should be compared")
        bad = mask & np.isfinite(want) & ~(err <= tol)
        for i in zip(*np.nonzero(bad)):
            problems.append(
                f"step {k + 1} element {i}: ours {got[i]!r} framework {want[i]!r} "
                f"|diff| {err[i]:.3g} > tol {tol[i]:.3g} (update {abs(want[i] - previous[i]):.3g})"
            )
        previous = want
    return problems


@pytest.mark.parametrize(("doc", "case"), CASES)
def test_preset_matches_framework_golden(doc: dict[str, Any], case: dict[str, Any]) -> None:
    problems = mismatches(case, run_ours(doc, case))
    assert not problems, f"{doc['framework']} {doc['version']}:\n" + "\n".join(problems[:10])


NAN_CASES = [c for c in CASES if c.values[1]["name"] == "centered-nan"]


@pytest.mark.parametrize(("doc", "case"), NAN_CASES)
def test_nan_case_really_has_framework_nan(doc: dict[str, Any], case: dict[str, Any]) -> None:
    """The NaN cases show something: the framework gave NaN where ours stays finite."""
    last = golden(case, case["steps"])
    assert np.isnan(last).any()
    assert all(np.isfinite(p).all() for p in run_ours(doc, case))


def test_every_preset_has_goldens() -> None:
    frameworks = {c.values[0]["framework"] for c in CASES}
    assert frameworks == set(NAMES), f"golden files missing for {set(NAMES) - frameworks}"
