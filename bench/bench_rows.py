"""Benchmark: sparse row updates of an embedding table (SPEC §10), side by side.

A 1M x 64 float32 table with torch's default RMSProp; k rows touched per step (256, 4K, 64K;
uniform or Zipf-distributed, with repeats). Competitors, timed round-robin in one run so that
the machine's slow phases hit them alike (the ratios are the result, not the absolute times):

- ours lazy:   ``opt.step([RowGrad(indices, values)])``
- NumPy lazy:  ``np.unique`` + ``np.add.at`` to merge repeats, then the update on the fancy-
               indexed rows (what one writes without this package)
- NumPy sort:  ``argsort`` + ``np.add.reduceat`` to merge repeats (a faster NumPy variant)
- ours dense:  ``opt.step([dense_grad])`` over the whole table (what a dense optimizer costs)

Each competitor cycles through several different index batches, so rows are not cache-warm
from the previous call. Reported: median and min time per step, rows/s, ns per touched row
(flat in k when the time is linear in k), and ratios against ours lazy.

Usage:
    python bench/bench_rows.py                 # full run (~2 min on 2 busy cores)
    python bench/bench_rows.py --quick         # smaller table, fewer rounds
    python bench/bench_rows.py --threads 1       # on a busy machine: no waiting for a core
    python bench/bench_rows.py --json out.json

On a shared, loaded machine run with --threads 1 or OMP_WAIT_POLICY=PASSIVE: a parallel region
waits for its slowest thread, and a thread that must wait for a core stalls the whole step.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import rmsprop
from rmsprop import RMSprop, RowGrad

LR, ALPHA, EPS = 1e-2, 0.99, 1e-8
WIDTH = 64
BATCHES = 8  # distinct index batches each competitor cycles through


def indices_for(kind: str, rows: int, k: int, rng: np.random.Generator, perm: np.ndarray):
    if kind == "uniform":
        return rng.integers(0, rows, k)
    # Zipf(1.1): a few hot rows take most of the batch (repeats), scattered over the table.
    return perm[(rng.zipf(1.1, k) - 1) % rows]


def numpy_unique_step(table, square_avg, indices, values) -> None:
    rows, inverse = np.unique(indices, return_inverse=True)
    grad = np.zeros((rows.size, table.shape[1]), table.dtype)
    np.add.at(grad, inverse, values)
    v = square_avg[rows]
    v *= np.float32(ALPHA)
    v += np.float32(1 - ALPHA) * grad * grad
    square_avg[rows] = v
    table[rows] -= np.float32(LR) * grad / (np.sqrt(v) + np.float32(EPS))


def numpy_sort_step(table, square_avg, indices, values) -> None:
    order = np.argsort(indices, kind="stable")
    sorted_rows = indices[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    rows = sorted_rows[starts]
    grad = np.add.reduceat(values[order], starts, axis=0)
    v = square_avg[rows]
    v *= np.float32(ALPHA)
    v += np.float32(1 - ALPHA) * grad * grad
    square_avg[rows] = v
    table[rows] -= np.float32(LR) * grad / (np.sqrt(v) + np.float32(EPS))


def cycling(fn: Callable[[int], Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def call() -> Any:
        state["i"] = (state["i"] + 1) % BATCHES
        return fn(state["i"])

    return call


def side_by_side(
    fns: list[Callable[[], Any]], budget_s: float
) -> list[tuple[list[float], list[float]]]:
    """Wall and CPU (all threads) seconds per call of each function, measured round-robin in
    blocks of >= ~2 ms. On a shared machine the wall time includes waiting for a core; the
    CPU time does not, and shows the work itself."""
    reps = []
    for fn in fns:  # warm-up and calibration
        fn()
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        reps.append(max(1, min(200, int(0.002 / max(once, 1e-7)))))
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in fns]
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s or len(samples[0][0]) < 5:
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps[i]):
                fn()
            samples[i][0].append((time.perf_counter() - t0) / reps[i])
            samples[i][1].append((time.process_time() - c0) / reps[i])
    return samples


def report(
    label: str,
    k: int,
    competitors: dict[str, Callable[[], Any]],
    budget: float,
    extra: dict[str, Any],
) -> list[dict[str, Any]]:
    samples = side_by_side(list(competitors.values()), budget)
    ours_wall = statistics.median(samples[0][0])
    ours_cpu = statistics.median(samples[0][1])
    rows = []
    for name, (wall, cpu) in zip(competitors, samples):
        median, cpu_median = statistics.median(wall), statistics.median(cpu)
        rows.append(
            {
                "case": label,
                "k": k,
                "competitor": name,
                "median_s": median,
                "min_s": min(wall),
                "cpu_median_s": cpu_median,
                "rows_per_s": k / median,
                "ns_per_row": median / k * 1e9,
                "time_vs_first": median / ours_wall,
                "cpu_vs_first": cpu_median / ours_cpu,
                "samples": len(wall),
                **extra,
            }
        )
        print(
            f"{label:9} {k:>7} {name:12} {median * 1e3:>10.3f} {min(wall) * 1e3:>9.3f} "
            f"{cpu_median * 1e3:>9.3f} {k / median / 1e6:>8.2f} {median / k * 1e9:>8.1f} "
            f"{median / ours_wall:>7.1f}x {cpu_median / ours_cpu:>7.1f}x"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64K-row table, short budget")
    parser.add_argument("--budget", type=float, default=None, help="seconds per configuration")
    parser.add_argument("--threads", type=int, default=None, help="rmsprop.set_num_threads")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads is not None:
        rmsprop.set_num_threads(args.threads)
    rows = (1 << 16) if args.quick else (1 << 20)
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 6.0)
    ks = [256, 4096, 65536]

    rng = np.random.default_rng(0)
    perm = rng.permutation(rows)
    table = rng.standard_normal((rows, WIDTH)).astype(np.float32)
    opt = RMSprop([table], lr=LR, alpha=ALPHA, eps=EPS)
    numpy_square_avg = np.zeros_like(table)
    dense_grad = np.zeros_like(table)
    dense_grad[::97] = 1e-3  # a typical sparse batch, stored densely

    cfg = rmsprop.config()
    print(
        f"rmsprop {cfg['version']} isa={cfg['isa']} threads={cfg['num_threads']} "
        f"table={rows}x{WIDTH} float32 ({platform.processor() or platform.machine()})"
    )
    print(
        f"{'case':9} {'k':>7} {'competitor':12} {'median ms':>10} {'min ms':>9} "
        f"{'cpu ms':>9} {'Mrows/s':>8} {'ns/row':>8} {'time/1st':>8} {'cpu/1st':>8}"
    )
    results = []
    for kind in ("uniform", "zipf"):
        for k in ks:
            batches = []
            for _ in range(BATCHES):
                idx = indices_for(kind, rows, k, rng, perm)
                batches.append((idx, rng.standard_normal((k, WIDTH)).astype(np.float32)))
            unique_share = float(np.mean([np.unique(b[0]).size / k for b in batches]))
            competitors = {
                "ours lazy": cycling(lambda i, b=batches: opt.step([RowGrad(*b[i])])),
                "numpy lazy": cycling(
                    lambda i, b=batches: numpy_unique_step(table, numpy_square_avg, *b[i])
                ),
                "numpy sort": cycling(
                    lambda i, b=batches: numpy_sort_step(table, numpy_square_avg, *b[i])
                ),
                "ours dense": lambda: opt.step([dense_grad]),
            }
            results += report(kind, k, competitors, budget, {"unique_share": unique_share})
    # The cost of the row path itself: every row of a small table once, in order (contiguous
    # memory, like the dense step) against the dense step over the same table.
    small = rng.standard_normal((1 << 16, WIDTH)).astype(np.float32)
    small_opt = RMSprop([small], lr=LR, alpha=ALPHA, eps=EPS)
    every_row = RowGrad(np.arange(small.shape[0]), np.ones_like(small))
    ones = np.ones_like(small)
    results += report(
        "all-rows",
        small.shape[0],
        {
            "ours lazy": lambda: small_opt.step([every_row]),
            "ours dense": lambda: small_opt.step([ones]),
        },
        budget,
        {},
    )
    if args.json:
        meta = {"config": cfg, "rows": rows, "width": WIDTH, "budget_s": budget}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
