"""Benchmark: the step with optimizer state in float32, bfloat16 and 8 bits (SPEC §8).

float32 and bfloat16 params (rounded to nearest, and with stochastic_rounding: "bfloat16 SR")
x float32 / bfloat16 / 8-bit state, at 16M elements and on the 160-tensor list, measured side
by side in one run with the float32 roofline (rmsprop._core.roofline_pass: the plain float32
step's 20 bytes per element with trivial math).
Reported per row: median step time, Gelem/s, bytes the step must move per element, GB/s, the
speed-up over the float32-param, float32-state step of the same variant, and % of the roofline
scaled by bytes. ``--quality`` adds the training-quality table (tests/quality_tasks.py, mean
over ``--seeds`` seeds) and each state dtype's mean step size under stationary gradient noise.

Usage:
    python bench/bench_state_dtype.py                       # speed, 2 threads (~3 min)
    python bench/bench_state_dtype.py --quality             # plus the quality table
    python bench/bench_state_dtype.py --json out.json --check
    python bench/bench_state_dtype.py --sizes 64K --threads 1   # in cache: compute cost alone

The floor under every variant is the divider (sqrt and division per element, SPEC §2):
bench/divider_floor.cpp measures it alone. bench/traffic_roofline.cpp measures what the memory
gives the float32 and the 8-bit steps' traffic with no math (the most 8-bit state can gain).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
from bench_step import make_arrays, measure_side_by_side, roofline, shapes_transformer_like

import rmsprop
from rmsprop import RMSprop

STATES = ("float32", "bfloat16", "8bit")
VARIANTS = {"plain": {}, "momentum": {"momentum": 0.9}}
ROOFLINE_BYTES = 20  # read p, g, v and write p, v in float32


def state_bytes(state_dtype: str, variant: str, elements: int, eight_bit_elements: int) -> float:
    """Bytes of state read + written per element (averaged over the list's tensors)."""
    moment = 8.0 if state_dtype == "float32" else 4.0  # momentum_buffer: float32 or bfloat16
    if state_dtype == "float32":
        v = 8.0
    elif state_dtype == "bfloat16":
        v = 4.0
    else:  # 8-bit codes + a 4-byte scale per 256 elements; small tensors stay float32
        share = eight_bit_elements / elements
        v = share * (2.0 + 8.0 / 256) + (1 - share) * 8.0
        moment = share * 4.0 + (1 - share) * 8.0
    return v + (moment if variant == "momentum" else 0.0)


def bench(label: str, shapes: list[tuple[int, ...]], budget_s: float) -> list[dict[str, Any]]:
    import ml_dtypes

    elements = sum(int(np.prod(s)) for s in shapes)
    eight_bit = sum(int(np.prod(s)) for s in shapes if int(np.prod(s)) >= 4096)
    cases, steps = [], []
    # bfloat16 params rounded to nearest (the default) and stochastically.
    param_kinds = [
        ("float32", np.float32, False),
        ("bfloat16", ml_dtypes.bfloat16, False),
        ("bfloat16 SR", ml_dtypes.bfloat16, True),
    ]
    for variant, options in VARIANTS.items():
        for kind, pdtype, stochastic in param_kinds:
            params, grads = make_arrays(shapes, pdtype)
            for state in STATES:
                opt = RMSprop(
                    params,
                    lr=1e-2,
                    alpha=0.99,
                    state_dtype=state,
                    stochastic_rounding=stochastic,
                    **options,
                )
                steps.append(lambda opt=opt, grads=grads: opt.step(grads))
                pbytes = np.dtype(pdtype).itemsize
                moved = 3 * pbytes + state_bytes(state, variant, elements, eight_bit)
                cases.append(
                    {
                        "variant": variant,
                        "params": kind,
                        "state": state,
                        "bytes_per_element": moved,
                    }
                )
    steps.append(roofline(elements))
    cases.append(
        {
            "variant": "roofline",
            "params": "float32",
            "state": "-",
            "bytes_per_element": float(ROOFLINE_BYTES),
        }
    )
    timings = measure_side_by_side(steps, budget_s)
    roof_s = timings[-1][0]
    rows = []
    for case, (median, _) in zip(cases, timings):
        base = next(
            t[0]
            for c, t in zip(cases, timings)
            if c["variant"] == case["variant"]
            and c["params"] == "float32"
            and c["state"] in ("float32", "-")
        )
        rows.append(
            {
                "size": label,
                **case,
                "median_ms": median * 1e3,
                "gelem_s": elements / median / 1e9,
                "gb_s": elements * case["bytes_per_element"] / median / 1e9,
                "speedup_vs_f32_state": base / median,
                "roofline_pct": 100 * roof_s * case["bytes_per_element"] / ROOFLINE_BYTES / median,
            }
        )
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'size':8} {'variant':9} {'params':11} {'state':9} {'ms':>8} {'Gel/s':>6} "
        f"{'B/el':>6} {'GB/s':>6} {'x f32':>6} {'%roof':>6}"
    )
    for r in rows:
        print(
            f"{r['size']:8} {r['variant']:9} {r['params']:11} {r['state']:9} "
            f"{r['median_ms']:8.2f} {r['gelem_s']:6.2f} {r['bytes_per_element']:6.2f} "
            f"{r['gb_s']:6.1f} {r['speedup_vs_f32_state']:6.2f} {r['roofline_pct']:6.0f}"
        )


def evaluate_targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    def speed(params: str, state: str) -> float:
        return next(
            r["speedup_vs_f32_state"]
            for r in rows
            if r["size"] == "16M"
            and r["variant"] == "plain"
            and r["params"] == params
            and r["state"] == state
        )

    checks = [
        ("float32 params, 8bit state >= 1.3x float32 state (16M)", speed("float32", "8bit"), 1.3),
        ("float32 params, bfloat16 state >= 1.15x (16M)", speed("float32", "bfloat16"), 1.15),
        (
            "bfloat16 params, 8bit state >= 2x the float32 step (16M)",
            speed("bfloat16", "8bit"),
            2.0,
        ),
    ]
    return [(name, value >= target, f"{value:.2f}x") for name, value, target in checks]


def quality_table(seeds: int) -> list[dict[str, Any]]:
    """Each task's final metric per state dtype, averaged over ``seeds`` seeds (init and data
    order; the same seeds for every state dtype), with each seed's relative difference from
    float32 state: one seed's difference is partly that seed's luck (a spread of ~1 % here)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import quality_tasks

    tasks = [("regression", quality_tasks.regression, "excess_loss")]
    try:
        import sklearn  # noqa: F401

        tasks += [
            ("digits MLP", quality_tasks.digits_mlp, "train_loss"),
            ("digits MLP", quality_tasks.digits_mlp, "test_accuracy"),
        ]
    except ImportError:
        print("scikit-learn not installed: the digits rows are left out")
    rows = []
    cache: dict[tuple[str, float, str, int], dict[str, float]] = {}
    for name, task, metric in tasks:
        for momentum in (0.0, 0.9):
            per_seed: dict[str, list[float]] = {state: [] for state in STATES}
            for seed in range(seeds):
                for state in STATES:
                    key = (name, momentum, state, seed)
                    if key not in cache:
                        cache[key] = task(state, momentum, seed=seed)
                    per_seed[state].append(cache[key][metric])
            row: dict[str, Any] = {"task": name, "momentum": momentum, "metric": metric}
            base = np.array(per_seed["float32"])
            for state in STATES:
                values = np.array(per_seed[state])
                row[state] = float(values.mean())
                row[f"{state}_seed_diff_pct"] = [float(d) for d in 100 * (values / base - 1)]
            rows.append(row)
    print(f"\nmean over {seeds} seeds; [range of the per-seed differences]")
    print(f"{'task':11} {'mom':>4} {'metric':14} {'float32':>10} {'bfloat16':>30} {'8bit':>30}")
    for r in rows:
        cells = []
        for state in STATES[1:]:
            diffs = r[f"{state}_seed_diff_pct"]
            rel = 100 * (r[state] / r["float32"] - 1)
            cells.append(
                f"{r[state]:9.4g} ({rel:+.1f}%) [{min(diffs):+.1f}, {max(diffs):+.1f}]".rjust(30)
            )
        print(
            f"{r['task']:11} {r['momentum']:4} {r['metric']:14} {r['float32']:10.4g} "
            + " ".join(cells)
        )
    return rows


def step_bias(elements: int = 1 << 16) -> list[dict[str, Any]]:
    """Mean step magnitude of each state dtype relative to float32 state under stationary
    gradient noise (g ~ N(0, 1) per element and step, the same g for all; tiny lr so the
    params do not matter), over the second half of 8 / (1 - alpha) steps. Stochastic rounding
    keeps v unbiased, but the rounding noise of every past step stays in v (damped only by
    alpha), and the mean of 1 / sqrt(v) grows with v's spread (Jensen)."""
    rows = []
    for alpha in (0.99, 0.999):
        params = {state: np.zeros(elements, np.float32) for state in STATES}
        opts = {s: RMSprop([params[s]], lr=1e-3, alpha=alpha, state_dtype=s) for s in STATES}
        rng = np.random.default_rng(0)
        steps = int(8 / (1 - alpha))
        total = dict.fromkeys(STATES, 0.0)
        for t in range(steps):
            g = rng.standard_normal(elements).astype(np.float32)
            for state in STATES:
                before = params[state].copy()
                opts[state].step([g])
                if t >= steps // 2:
                    total[state] += float(np.mean(np.abs(params[state] - before)))
        rows.append({"alpha": alpha, **{s: total[s] / total["float32"] for s in STATES}})
    print("\nmean step size / float32 state's, stationary gradient noise")
    for r in rows:
        print(f"alpha {r['alpha']}: " + ", ".join(f"{s} {r[s]:.4f}" for s in STATES))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per step per size")
    parser.add_argument("--sizes", nargs="+", default=["16M", "list160"])
    parser.add_argument("--quality", action="store_true", help="also run the quality table")
    parser.add_argument("--seeds", type=int, default=5, help="seeds averaged in the quality table")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a speed target is missed")
    args = parser.parse_args(argv)
    rmsprop.set_num_threads(args.threads)
    print(f"rmsprop {rmsprop.__version__}, isa {rmsprop.config()['isa']}, {args.threads} threads")
    rows = []
    for size in args.sizes:
        sizes = {"16M": [(16 << 20,)], "64K": [(1 << 16,)]}  # 64K: in cache, the compute cost
        shapes = shapes_transformer_like() if size == "list160" else sizes[size]
        rows += bench(size, shapes, args.budget)
    print_rows(rows)
    results = evaluate_targets(rows) if "16M" in args.sizes else []
    for name, ok, value in results:
        print(f"[{'PASS' if ok else 'MISS'}] {name}: {value}")
    quality = quality_table(args.seeds) if args.quality else []
    bias = step_bias() if args.quality else []
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"config": rmsprop.config(), "rows": rows, "quality": quality, "step_bias": bias},
                f,
                indent=1,
            )
    return 1 if args.check and not all(ok for _, ok, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
