"""Benchmark: compact state (state_dtype) through the torch drop-in and through RowGrad.

Side by side in one run (round-robin blocks, medians; see bench_step.measure_side_by_side),
reporting ratios, because absolute times on a shared machine are noise:

1. step() of the 160-tensor ~25M-element list: rmsprop.torch.RMSprop against the NumPy API
   (rmsprop.RMSprop) for state_dtype "float32", "bfloat16" and "8bit". Target: the drop-in
   within a few per cent of the NumPy API whatever the state_dtype (it adds bookkeeping only).
2. A lazy row step (RowGrad) of a 1M x 64 float32 table, 4K uniform rows per step, with float32
   and bfloat16 state, through the NumPy API and through the drop-in (a sparse_coo grad).

Usage:
    python bench/bench_torch_state_dtype.py [--threads 1] [--budget 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

import rmsprop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import measure_side_by_side, shapes_transformer_like

STATE_DTYPES = ("float32", "bfloat16", "8bit")


def list_steps(shapes: list[tuple[int, ...]]) -> list[tuple[str, Any]]:
    import torch

    import rmsprop.torch

    rng = np.random.default_rng(0)
    steps = []
    for state_dtype in STATE_DTYPES:
        tensors = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        for t in tensors:
            t.grad = torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32))
        ours = rmsprop.torch.RMSprop(tensors, lr=1e-3, momentum=0.9, state_dtype=state_dtype)
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        numpy_opt = rmsprop.RMSprop(arrays, lr=1e-3, momentum=0.9, state_dtype=state_dtype)
        steps.append((f"list drop-in {state_dtype}", ours.step))
        steps.append((f"list NumPy API {state_dtype}", lambda o=numpy_opt, g=grads: o.step(g)))
    return steps


def row_steps(rows: int, k: int) -> list[tuple[str, Any]]:
    import torch

    import rmsprop.torch

    rng = np.random.default_rng(1)
    batches = [np.sort(rng.integers(0, rows, k)) for _ in range(8)]
    values = rng.standard_normal((k, 64)).astype(np.float32)
    steps = []
    for state_dtype in ("float32", "bfloat16"):
        table = rng.standard_normal((rows, 64)).astype(np.float32)
        opt = rmsprop.RMSprop([table], lr=1e-3, state_dtype=state_dtype)
        grads = [rmsprop.RowGrad(b, values) for b in batches]
        counter = iter(range(1 << 62))
        steps.append(
            (
                f"rows NumPy API {state_dtype}",
                lambda o=opt, g=grads, c=counter: o.step([g[next(c) % 8]]),
            )
        )
        weight = torch.from_numpy(rng.standard_normal((rows, 64)).astype(np.float32))
        sparse = [
            torch.sparse_coo_tensor(
                torch.from_numpy(b)[None],
                torch.from_numpy(values),
                (rows, 64),
                check_invariants=False,
            )
            for b in batches
        ]
        torch_opt = rmsprop.torch.RMSprop([weight], lr=1e-3, state_dtype=state_dtype)

        def drop_in(w: Any = weight, o: Any = torch_opt, g: Any = sparse, c: Any = counter) -> None:
            w.grad = g[next(c) % 8]
            o.step()

        steps.append((f"rows drop-in {state_dtype}", drop_in))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per competitor")
    parser.add_argument("--quick", action="store_true", help="small sizes, short budget")
    args = parser.parse_args()
    rmsprop.set_num_threads(args.threads)
    shapes = shapes_transformer_like()
    rows = 1_000_000
    if args.quick:
        shapes, rows, args.budget = shapes[:20], 100_000, 0.3
    print(f"isa {rmsprop.config()['isa']}, {args.threads} thread(s)")
    for part in (list_steps(shapes), row_steps(rows, 4096)):
        names = [name for name, _ in part]
        results = measure_side_by_side([step for _, step in part], args.budget)
        median = dict(zip(names, (m for m, _ in results)))
        for name, (med, low) in zip(names, results):
            print(f"{name:28s} median {med * 1e3:8.3f} ms  min {low * 1e3:8.3f} ms")
        kind = names[0].split()[0]
        for state_dtype in STATE_DTYPES if kind == "list" else STATE_DTYPES[:2]:
            ours = median[f"{kind} drop-in {state_dtype}"]
            numpy_api = median[f"{kind} NumPy API {state_dtype}"]
            base = median[f"{kind} NumPy API float32"]
            print(
                f"{kind} {state_dtype:9s} drop-in / NumPy API {ours / numpy_api:5.3f}   "
                f"NumPy API float32 / {state_dtype} {base / numpy_api:5.2f}x"
            )


if __name__ == "__main__":
    main()
