"""Write the golden values that tests/test_golden.py checks our presets against.

Each golden file holds what a framework's OWN RMSProp optimizer does to a small parameter over a
few steps with fixed gradients: the inputs, the framework's hyper-parameters (in the
framework's own names), and the parameter after every step. The test then runs
``rmsprop.RMSprop(..., preset=<framework>)`` on the same inputs. This script never imports
``rmsprop``: the goldens are independent of our code.

Files (one per framework, a few KB each):
    torch.json  torch.optim.RMSprop
    keras.json  keras.optimizers.RMSprop (Keras 3, JAX backend)
    tf1.json    tf.compat.v1.train.RMSPropOptimizer in graph mode (ApplyRMSProp kernels)
    optax.json  optax.rmsprop
    seed.json   the textbook rule θ ← θ − lr·g/√(E[g²]+ε), by an independent float64 NumPy loop

Floats are stored as the shortest decimal that reads back exactly: read as a float64 and cast
to the case's dtype it gives the framework's value bit for bit (checked when writing). float32
results are stored as float32 (~9 digits); the seed goldens, computed in float64, with all 17
digits. NaN and infinities are the strings "nan", "inf", "-inf".

How to run (a throwaway venv: the frameworks are not test dependencies of the project)::

    python3 -m venv /tmp/goldenvenv
    /tmp/goldenvenv/bin/pip install numpy jax optax keras tensorflow-cpu
    /tmp/goldenvenv/bin/pip install torch==2.13.0      # the CPU wheel
    /tmp/goldenvenv/bin/python tests/golden/generate_goldens.py            # all it can
    /tmp/goldenvenv/bin/python tests/golden/generate_goldens.py torch seed # some

A framework that is not installed is skipped (its file is left as it is). Versions used for
the committed files are recorded in each file ("version").
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = 5
SIZE = 9  # a SIMD body plus a tail on every ISA of ours (up to 8 floats a vector)

# ---------------------------------------------------------------------------------- inputs


def inputs(seed: int, dtype: Any, size: int = SIZE, steps: int = STEPS):
    """Initial params and gradients that make every hyper-parameter visible.

    Gradient magnitudes are spread over ten decades per element (10^-9 .. 10^1, each element
    keeps its scale, each step multiplies it by a random sign and a factor in [0.5, 2.5]), so in
    every case some elements have ε dominating the denominator and some have it negligible.
    Params are spread over 10^-5 .. 2 so that small updates are not lost in the param's own
    rounding.
    """
    rng = np.random.default_rng(seed)
    p_exp = rng.permutation(np.linspace(-5.0, 0.3, size))
    p0 = rng.choice([-1.0, 1.0], size) * 10.0**p_exp
    g_exp = rng.permutation(np.linspace(-9.0, 1.0, size))
    scale = 10.0**g_exp
    grads = [
        rng.choice([-1.0, 1.0], size) * rng.uniform(0.5, 2.5, size) * scale for _ in range(steps)
    ]
    return p0.astype(dtype), [g.astype(dtype) for g in grads]


def nan_inputs(seed: int, dtype: Any = np.float32, size: int = SIZE, steps: int = 10):
    """Centered case that frameworks turn into NaN: most elements get nearly the same gradient
    every step (c times 1 ± a few float32 ulps), so v − ga² shrinks like α^t·c², which at
    α = 0.1 falls below the float32 rounding of v after ~7 steps; then the computed v − ga² is
    rounding noise, sometimes negative, and sqrt gives NaN. The last 3 elements get gradients
    of alternating sign, which keep v − ga² large.
    """
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(-1.0, 1.0, size)
    const = rng.choice([-1.0, 1.0], size) * rng.uniform(10.0, 300.0, size)
    grads = []
    for t in range(steps):
        g = const * (1.0 + rng.integers(-4, 5, size) * 2.0**-23)  # a few ulps of jitter
        g[-3:] = (-1.0) ** t * rng.uniform(0.5, 2.5, 3)
        grads.append(g)
    return p0.astype(dtype), [g.astype(dtype) for g in grads]


# Elements are compared in the NaN case only while the centered variance is well conditioned:
# v − ga² ≥ v / NAN_CASE_CONDITION at every step so far (float64 replay of the averages), so a
# relative error δ in v or ga² moves the update by at most ~NAN_CASE_CONDITION·δ.
NAN_CASE_CONDITION = 20.0


def well_conditioned_mask(grads: list[np.ndarray], alpha: float, initial: float) -> list[list[int]]:
    v = np.full(grads[0].shape, initial, dtype=np.float64)
    ga = np.zeros_like(v)
    ok = np.ones(v.shape, dtype=bool)
    mask = []
    for g in grads:
        g = g.astype(np.float64)
        v = alpha * v + (1.0 - alpha) * g * g
        ga = alpha * ga + (1.0 - alpha) * g
        ok &= (v - ga * ga) * NAN_CASE_CONDITION >= v
        mask.append([int(x) for x in ok.ravel()])
    return mask


def exact_number(x: np.floating) -> float | str:
    """The shortest decimal that reads back (as a float64, then cast to x's dtype) as x.

    Non-finite values become the strings "nan", "inf", "-inf" (JSON has no such numbers).
    """
    if not np.isfinite(x):
        return str(float(x))
    text = np.format_float_positional(x, unique=True, trim="-")
    sci = np.format_float_scientific(x, unique=True, trim="-")
    for candidate in [*sorted((text, sci), key=len), repr(float(x))]:
        if type(x)(float(candidate)) == x:
            return float(candidate)
    raise AssertionError(x)


def numbers(a: np.ndarray) -> list[float | str]:
    """Exact values of a float32 or float64 array, flattened (float32 data as float32)."""
    a = np.asarray(a)
    assert a.dtype in (np.float32, np.float64), a.dtype
    return [exact_number(x) for x in a.ravel()]


def nan_case(
    run: Callable[..., list[np.ndarray]],
    kwargs: dict[str, Any],
    seed: int,
    alpha: float,
    initial: float = 0.0,
) -> dict[str, Any]:
    """The centered NaN case: the first seed from ``seed`` on whose framework output holds NaN.

    Whether rounding makes v − ga² negative depends on the framework's op order, so each
    framework searches its own (deterministically; the inputs are stored anyway).
    """
    for attempt in range(seed, seed + 30):
        p0, grads = nan_inputs(attempt)
        params = run(p0, grads, kwargs)
        if np.isnan(params[-1]).any():
            break
    compare = well_conditioned_mask(grads, alpha, initial)
    return case(
        "centered-nan",
        kwargs,
        p0,
        grads,
        params,
        compare=compare,
        condition=NAN_CASE_CONDITION,
        note=NAN_NOTE,
    )


def case(
    name: str,
    kwargs: dict[str, Any],
    p0: np.ndarray,
    grads: list[np.ndarray],
    params: list[np.ndarray],
    *,
    lrs: list[float] | None = None,
    compare: list[list[int]] | None = None,
    condition: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "kwargs": kwargs,
        "dtype": np.dtype(p0.dtype).name,
        "shape": list(p0.shape),
        "steps": len(grads),
        "params_dtype": np.dtype(params[0].dtype).name,  # float64 for the seed's float64 math
    }
    if lrs is not None:
        out["lrs"] = [float(x) for x in lrs]
    if compare is not None:
        out["compare"] = compare
    if condition is not None:
        out["condition"] = condition
    if note:
        out["note"] = note
    out["param0"] = numbers(p0)
    out["grads"] = [numbers(g) for g in grads]
    out["params"] = [numbers(p) for p in params]
    return out


def stepped_case(
    name: str, kwargs: dict[str, Any], seed: int, dtype: Any, run: Callable[..., Any], **extra: Any
) -> dict[str, Any]:
    """A case on ``inputs(seed, dtype)``, stepped by a framework's ``run(p0, grads, kwargs)``."""
    p0, grads = inputs(seed, dtype)
    return case(name, kwargs, p0, grads, run(p0, grads, kwargs), **extra)


def schedule_lrs(initial: float, rate: float, steps: int = STEPS) -> list[float]:
    return [initial * rate**k for k in range(steps)]


NAN_NOTE = (
    "Framework output holds NaN (sqrt of a negative rounded v - ga^2). Ours must be finite "
    "everywhere (clamped at 0), and equal where 'compare' (per step, per element) is 1: there "
    "v - ga^2 >= v/condition at every step so far (exact float64 replay)."
)
SCHEDULE_NOTE = (
    "lr changes every step ('lrs', the value the framework used at each step): shows where "
    "the framework applies lr relative to the momentum buffer."
)

# ---------------------------------------------------------------------------------- torch


def torch_cases() -> tuple[str, list[dict[str, Any]]]:
    import torch

    torch.set_num_threads(1)

    def run(p0, grads, kwargs, lrs=None):
        tp = torch.tensor(p0.copy(), requires_grad=True)
        opt = torch.optim.RMSprop([tp], **kwargs)
        out = []
        for k, g in enumerate(grads):
            if lrs is not None:
                opt.param_groups[0]["lr"] = lrs[k]
            tp.grad = torch.from_numpy(g.copy())
            opt.step()
            out.append(tp.detach().numpy().copy())
        return out

    cases = []
    specs: list[tuple[str, dict[str, Any], Any]] = [
        ("default", {}, np.float32),
        ("momentum", {"lr": 0.01, "momentum": 0.9}, np.float32),
        ("centered", {"centered": True}, np.float32),
        (
            "centered-momentum-wd",
            {"lr": 0.01, "alpha": 0.9, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
            np.float32,
        ),
        ("maximize-wd", {"maximize": True, "weight_decay": 0.1, "eps": 1e-6}, np.float32),
        ("default-float64", {}, np.float64),
        (
            "centered-momentum-float64",
            {"lr": 0.01, "alpha": 0.9, "momentum": 0.9, "centered": True},
            np.float64,
        ),
    ]
    for seed, (name, kwargs, dtype) in enumerate(specs, start=100):
        cases.append(stepped_case(name, kwargs, seed, dtype, run))
    lrs = schedule_lrs(0.01, 0.7)
    p0, grads = inputs(120, np.float32)
    kw = {"lr": lrs[0], "momentum": 0.9}
    cases.append(
        case(
            "momentum-schedule", kw, p0, grads, run(p0, grads, kw, lrs), lrs=lrs, note=SCHEDULE_NOTE
        )
    )
    cases.append(nan_case(run, {"alpha": 0.1, "centered": True}, 130, alpha=0.1))
    return torch.__version__, cases


# ---------------------------------------------------------------------------------- keras


def keras_cases() -> tuple[str, list[dict[str, Any]]]:
    import keras

    def run(p0, grads, kwargs, lr_schedule=None):
        kwargs = dict(kwargs)
        if lr_schedule is not None:
            kwargs["learning_rate"] = lr_schedule
        var = keras.Variable(p0.copy(), dtype=p0.dtype.name)
        opt = keras.optimizers.RMSprop(**kwargs)
        out = []
        for g in grads:
            opt.apply_gradients([(keras.ops.convert_to_tensor(g.copy()), var)])
            out.append(np.array(keras.ops.convert_to_numpy(var.value)))
        return out

    cases = []
    specs: list[tuple[str, dict[str, Any]]] = [
        ("default", {}),
        ("momentum", {"learning_rate": 0.01, "momentum": 0.9}),
        ("centered", {"centered": True}),
        (
            "centered-momentum",
            {"learning_rate": 0.01, "rho": 0.95, "momentum": 0.9, "centered": True},
        ),
        ("weight_decay", {"learning_rate": 0.01, "weight_decay": 0.1}),
        (
            "momentum-wd-eps",
            {"learning_rate": 0.01, "momentum": 0.5, "weight_decay": 0.05, "epsilon": 1e-4},
        ),
    ]
    for seed, (name, kwargs) in enumerate(specs, start=200):
        cases.append(stepped_case(name, kwargs, seed, np.float32, run))
    # lr schedule: ExponentialDecay(0.01, 1, 0.7) evaluated at iterations 0, 1, ...
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.7)
    lrs = [float(np.float32(keras.ops.convert_to_numpy(schedule(k)))) for k in range(STEPS)]
    p0, grads = inputs(220, np.float32)
    kw = {"learning_rate": lrs[0], "momentum": 0.9}
    params = run(p0, grads, {"momentum": 0.9}, lr_schedule=schedule)
    note = SCHEDULE_NOTE + " keras.optimizers.schedules.ExponentialDecay(0.01, 1, 0.7)."
    cases.append(case("momentum-schedule", kw, p0, grads, params, lrs=lrs, note=note))
    cases.append(nan_case(run, {"rho": 0.1, "centered": True}, 230, alpha=0.1))
    version = f"{keras.__version__} (backend {keras.backend.backend()})"
    return version, cases


# ---------------------------------------------------------------------------------- TF1


def tf1_cases() -> tuple[str, list[dict[str, Any]]]:
    import tensorflow as tf

    v1 = tf.compat.v1

    def run(p0, grads, kwargs, lrs=None):
        graph = tf.Graph()
        with graph.as_default():
            var = v1.Variable(p0.copy(), dtype=tf.as_dtype(p0.dtype))
            grad = v1.placeholder(tf.as_dtype(p0.dtype), shape=p0.shape)
            lr = (
                v1.placeholder(tf.float32, shape=()) if lrs is not None else kwargs["learning_rate"]
            )
            opt = v1.train.RMSPropOptimizer(**{**kwargs, "learning_rate": lr})
            train = opt.apply_gradients([(grad, var)])
            init = v1.global_variables_initializer()
            out = []
            with v1.Session(
                graph=graph,
                config=v1.ConfigProto(
                    inter_op_parallelism_threads=1, intra_op_parallelism_threads=1
                ),
            ) as s:
                s.run(init)
                for k, g in enumerate(grads):
                    feed = {grad: g}
                    if lrs is not None:
                        feed[lr] = lrs[k]
                    s.run(train, feed_dict=feed)
                    out.append(s.run(var))
        return out

    cases = []
    specs: list[tuple[str, dict[str, Any], Any]] = [
        ("default", {"learning_rate": 0.01}, np.float32),
        ("momentum", {"learning_rate": 0.01, "momentum": 0.9}, np.float32),
        ("centered", {"learning_rate": 0.01, "centered": True}, np.float32),
        (
            # TF1's own ε (1e-10) is invisible next to v ≥ decay^t (v starts at 1): a large ε
            # and a fast decay make its placement (inside the sqrt) matter here.
            "centered-momentum-eps",
            {
                "learning_rate": 0.01,
                "decay": 0.5,
                "momentum": 0.5,
                "epsilon": 1e-2,
                "centered": True,
            },
            np.float32,
        ),
        ("default-float64", {"learning_rate": 0.01}, np.float64),
        ("decay-eps", {"learning_rate": 0.01, "decay": 0.5, "epsilon": 1e-2}, np.float32),
    ]
    for seed, (name, kwargs, dtype) in enumerate(specs, start=300):
        cases.append(stepped_case(name, kwargs, seed, dtype, run))
    lrs = [float(np.float32(x)) for x in schedule_lrs(0.01, 0.7)]
    p0, grads = inputs(320, np.float32)
    kw = {"learning_rate": lrs[0], "momentum": 0.9}
    note = SCHEDULE_NOTE + " learning_rate is a placeholder fed each step."
    cases.append(
        case("momentum-schedule", kw, p0, grads, run(p0, grads, kw, lrs), lrs=lrs, note=note)
    )
    cases.append(
        nan_case(run, {"learning_rate": 0.01, "decay": 0.1, "centered": True}, 330, 0.1, 1.0)
    )
    return tf.__version__, cases


# ---------------------------------------------------------------------------------- optax


def optax_cases() -> tuple[str, list[dict[str, Any]]]:
    import inspect

    import jax
    import jax.numpy as jnp
    import optax

    accepted = set(inspect.signature(optax.rmsprop).parameters)

    def run(p0, grads, kwargs, schedule=None):
        kwargs = dict(kwargs)
        if schedule is not None:
            kwargs["learning_rate"] = schedule
        tx = optax.rmsprop(**kwargs)
        params = jnp.asarray(p0)
        state = tx.init(params)
        out = []
        for g in grads:
            updates, state = tx.update(jnp.asarray(g), state, params)
            params = optax.apply_updates(params, updates)
            assert params.dtype == p0.dtype, params.dtype
            out.append(np.asarray(params))
        return out

    cases = []
    specs: list[tuple[str, dict[str, Any], Any]] = [
        ("default", {"learning_rate": 0.01}, np.float32),
        ("momentum", {"learning_rate": 0.01, "momentum": 0.9}, np.float32),
        ("nesterov", {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True}, np.float32),
        ("centered", {"learning_rate": 0.01, "centered": True}, np.float32),
        ("bias_correction", {"learning_rate": 0.01, "bias_correction": True}, np.float32),
        (
            "centered-momentum",
            {"learning_rate": 0.01, "decay": 0.95, "momentum": 0.9, "centered": True},
            np.float32,
        ),
        (
            "momentum-bias_correction",
            {"learning_rate": 0.01, "momentum": 0.9, "bias_correction": True},
            np.float32,
        ),
        ("initial_scale", {"learning_rate": 0.01, "initial_scale": 0.5}, np.float32),
        ("eps_outside_sqrt", {"learning_rate": 0.01, "eps_in_sqrt": False}, np.float32),
    ]
    # No centered + bias_correction case: on step 1 the corrected averages are g² and g, so
    # v̂ − ĝ² is exactly 0 and the result is rounding noise over √ε in any implementation.
    specs = [s for s in specs if set(s[1]) <= accepted]
    for seed, (name, kwargs, dtype) in enumerate(specs, start=400):
        cases.append(stepped_case(name, kwargs, seed, dtype, run))
    schedule = optax.exponential_decay(0.01, transition_steps=1, decay_rate=0.7)
    lrs = [float(np.float32(schedule(k))) for k in range(STEPS)]
    p0, grads = inputs(420, np.float32)
    kw = {"learning_rate": lrs[0], "momentum": 0.9}
    note = SCHEDULE_NOTE + " optax.exponential_decay(0.01, 1, 0.7)."
    cases.append(
        case(
            "momentum-schedule",
            kw,
            p0,
            grads,
            run(p0, grads, {"momentum": 0.9}, schedule),
            lrs=lrs,
            note=note,
        )
    )
    cases.append(
        nan_case(run, {"learning_rate": 0.01, "decay": 0.1, "centered": True}, 430, alpha=0.1)
    )
    with jax.enable_x64(True):
        specs64 = [
            ("default-float64", {"learning_rate": 0.01}),
            (
                "centered-nesterov-float64",
                {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True, "centered": True},
            ),
            (
                "nesterov-bias_correction-float64",
                {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True, "bias_correction": True},
            ),
        ]
        for seed, (name, kwargs) in enumerate(specs64, start=440):
            if set(kwargs) <= accepted:
                cases.append(stepped_case(name, kwargs, seed, np.float64, run))
    return f"{optax.__version__} (jax {jax.__version__})", cases


# ---------------------------------------------------------------------------------- seed


def seed_cases() -> tuple[str, list[dict[str, Any]]]:
    """The textbook rule, written out independently in float64 (not a framework)."""

    def run(p0, grads, kwargs):
        hyper = {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8, **kwargs}  # the seed preset's defaults
        lr, alpha, eps = hyper["lr"], hyper["alpha"], hyper["eps"]
        theta = p0.astype(np.float64)
        mean_sq = np.zeros_like(theta)
        out = []
        for g in grads:
            g = g.astype(np.float64)
            mean_sq = alpha * mean_sq + (1.0 - alpha) * g * g
            theta = theta - lr * g / np.sqrt(mean_sq + eps)
            out.append(theta.copy())
        return out

    cases = []
    specs: list[tuple[str, dict[str, Any], Any]] = [
        ("default", {}, np.float32),
        ("default-float64", {}, np.float64),
        ("lr-alpha-eps", {"lr": 0.01, "alpha": 0.95, "eps": 1e-6}, np.float32),
    ]
    note = "computed in float64 from the given (float32 or float64) inputs"
    for seed, (name, kwargs, dtype) in enumerate(specs, start=500):
        cases.append(stepped_case(name, kwargs, seed, dtype, run, note=note))
    return "textbook formula, NumPy float64", cases


# ---------------------------------------------------------------------------------- output

FRAMEWORKS: dict[str, tuple[str, Callable[[], tuple[str, list[dict[str, Any]]]]]] = {
    "torch": ("torch.optim.RMSprop", torch_cases),
    "seed": ("textbook RMSProp (Tieleman & Hinton), float64 NumPy", seed_cases),
    "keras": ("keras.optimizers.RMSprop", keras_cases),
    "tf1": ("tf.compat.v1.train.RMSPropOptimizer (graph mode)", tf1_cases),
    "optax": ("optax.rmsprop", optax_cases),
}


def dump(doc: dict[str, Any]) -> str:
    """JSON with one line per case field: readable diffs, no line per number."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f" {json.dumps(k)}: {json.dumps(v)},")
    lines.append(' "cases": [')
    for i, c in enumerate(doc["cases"]):
        fields = [
            f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in c.items()
        ]
        lines.append(
            " {\n" + ",\n".join(fields) + "\n }" + ("," if i + 1 < len(doc["cases"]) else "")
        )
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    wanted = argv or list(FRAMEWORKS)
    unknown = set(wanted) - set(FRAMEWORKS)
    if unknown:
        print(f"unknown framework(s) {sorted(unknown)}; choose from {list(FRAMEWORKS)}")
        return 2
    for name in wanted:
        title, make = FRAMEWORKS[name]
        try:
            version, cases = make()
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        doc = {
            "framework": name,
            "optimizer": title,
            "version": version,
            "generated_with": f"python {platform.python_version()}, numpy {np.__version__}, "
            f"{platform.machine()}",
            "float_format": "shortest decimal that reads back exactly (float64, then the case's "
            "dtype for float32 data); non-finite values as strings",
            "cases": cases,
        }
        path = HERE / f"{name}.json"
        path.write_text(dump(doc))
        nans = sum(any(x == "nan" for row in c["params"] for x in row) for c in cases)
        print(f"{name}: {len(cases)} cases ({nans} with NaN) -> {path.name}, {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
