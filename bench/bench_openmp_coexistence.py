"""Benchmark: torch and rmsprop in one process, alternating, vs each alone (two OpenMP pools).

A training loop alternates torch work (forward/backward) with optimizer steps. When the two
libraries use two OpenMP runtimes (the auditwheel-repaired wheel vendors a renamed libgomp;
torch loads its own), each runtime's idle threads spin for a while after a parallel region and
steal the cores the other needs. Reported per configuration, measured in a fresh process:
the median time of a small torch MLP forward+backward alone, of our step alone, of the two
alternating, and the ratio alternating / (torch alone + ours alone): 1.0 means no interference.

Configurations: import order (rmsprop first / torch first) x wait policy:
  shipped     nothing set: the package's policy applies (a vendored libgomp loads passive);
  ours-spin   RMSPROP_OMP_SPINCOUNT=300000: the vendored libgomp at libgomp's default spin
              count, torch's untouched -- the wheel as it was before the policy (no effect on
              a source build, which has no vendored copy);
  all-spin    GOMP_SPINCOUNT=300000 for the whole process (both runtimes spin).

Usage:
    python bench/bench_openmp_coexistence.py                     # this interpreter's rmsprop
    python bench/bench_openmp_coexistence.py --python VENV/bin/python --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

THREADS = 2
STEP_ELEMENTS = 1 << 18  # 256K float32: above the grain, so our step runs on 2 threads


def child(order: str, rounds: int, iters: int) -> dict[str, Any]:
    """Runs in a fresh process: import in the given order, then time the three loops."""
    # importlib, so the order is explicit and no import sorter can reorder it.
    names = ["rmsprop", "torch"] if order == "rmsprop-first" else ["torch", "rmsprop"]
    modules = {name: importlib.import_module(name) for name in names}
    rmsprop, torch = modules["rmsprop"], modules["torch"]
    import numpy as np

    torch.set_num_threads(THREADS)
    rmsprop.set_num_threads(THREADS)
    model = torch.nn.Sequential(
        torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128)
    )
    x = torch.randn(64, 128)

    def torch_op() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    rng = np.random.default_rng(0)
    param = rng.standard_normal(STEP_ELEMENTS).astype(np.float32)
    grad = (1e-3 * rng.standard_normal(STEP_ELEMENTS)).astype(np.float32)
    opt = rmsprop.RMSprop([param], lr=1e-4)

    def our_step() -> None:
        opt.step([grad])

    def both() -> None:
        torch_op()
        our_step()

    def timed(fn: Any) -> float:
        samples = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples)

    for fn in (torch_op, our_step, both):  # warm-up: pools started, pages touched
        timed(fn)
    results: dict[str, list[float]] = {"torch": [], "ours": [], "alternating": []}
    for _ in range(rounds):  # interleaved rounds, so load changes hit all three alike
        results["torch"].append(timed(torch_op))
        results["ours"].append(timed(our_step))
        results["alternating"].append(timed(both))
    with open("/proc/self/maps") as maps:
        gomps = sorted({line.split()[-1] for line in maps if "gomp" in line.split()[-1]})
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "order": order,
        "torch_us": med["torch"] * 1e6,
        "ours_us": med["ours"] * 1e6,
        "alternating_us": med["alternating"] * 1e6,
        "ratio": med["alternating"] / (med["torch"] + med["ours"]),
        "libgomp_loaded": gomps,
        "rmsprop": rmsprop.__file__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter whose rmsprop to test"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument(
        "--policies", nargs="+", default=["shipped", "ours-spin", "all-spin"], help="subset to run"
    )
    parser.add_argument("--child", choices=["rmsprop-first", "torch-first"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rounds, args.iters)))
        return

    rows = []
    print(f"{'order':<14} {'policy':<9} {'torch us':>9} {'ours us':>9} {'alt us':>9} {'ratio':>6}"
          "  libgomp copies")  # fmt: skip
    settings = {
        "shipped": {},
        "ours-spin": {"RMSPROP_OMP_SPINCOUNT": "300000"},
        "all-spin": {"GOMP_SPINCOUNT": "300000"},
    }
    for policy, extra in settings.items():
        if policy not in args.policies:
            continue
        for order in ("rmsprop-first", "torch-first"):
            unset = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "RMSPROP_OMP_SPINCOUNT")
            env = {k: v for k, v in os.environ.items() if k not in unset} | extra
            out = subprocess.run(
                [args.python, __file__, "--child", order, "--rounds", str(args.rounds),
                 "--iters", str(args.iters)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            row = json.loads(out.strip().splitlines()[-1]) | {"policy": policy}
            rows.append(row)
            gomps = row["libgomp_loaded"]
            print(
                f"{order:<14} {policy:<9} {row['torch_us']:>9.1f} {row['ours_us']:>9.1f} "
                f"{row['alternating_us']:>9.1f} {row['ratio']:>6.2f}  "
                f"{len(gomps)}: {', '.join(os.path.basename(p) for p in gomps)}",
                flush=True,
            )  # fmt: skip
    print(f"rmsprop: {rows[0]['rmsprop']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
