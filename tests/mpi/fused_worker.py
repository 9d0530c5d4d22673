"""Checks of ShardedRMSprop's fused rank-order sum, run on every rank of one MPI job (launched by
tests/test_fused_sum.py as ``mpiexec -n N python -m mpi4py tests/mpi/fused_worker.py``).

Where the sum can run in the kernel (float32/float64 pieces, "sum", or "mean" folded into the
step, no skip_if_nonfinite) the sharder must hand the received gradients to the step, and
everywhere the params must keep the bits of a single-process RMSprop stepped with NumPy's
rank-order sum: NaN payloads from different ranks, inf - inf and overflow included, on every
ISA and with 1 and 2 threads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

import rmsprop
from rmsprop.distributed import _sharded

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from harness import BF16, COMM, F16, F32, F64, RANK, N, build, rank_grads, reduced, same_bits

# Harness shapes, plus one whose shard stays above two threads' grain at N = 4.
SHAPES = [*harness.SHAPES, (300_001,)]

calls: list[Any] = []  # the addends argument of every core step of this rank
real_step = _sharded._core.step_optimizer


def spying_step(*args: Any) -> int:
    calls.append(args[6] if len(args) > 6 else None)
    result: int = real_step(*args)
    return result


def with_specials(grads: list[Any], rank: int) -> list[Any]:
    """Non-finite values where ranks' values meet: the order of the sum decides the bits."""
    for g in grads:
        if g is None or g.dtype not in (F32, F64) or g.size < 40:
            continue
        flat = g.reshape(-1)
        bits = flat.view(np.uint32 if g.dtype == F32 else np.uint64)
        quiet = 0x7FC00000 if g.dtype == F32 else 0x7FF8000000000000
        bits[10] = quiet | (rank + 1)  # every rank's NaN: rank 0's must win
        if rank == N - 1:
            bits[30] = quiet | 0x55  # the last rank's NaN alone
        flat[20] = (np.inf, -np.inf)[rank % 2]  # inf - inf from 2 ranks on
        flat[35] = np.finfo(g.dtype).max  # overflows once two ranks are summed
        flat[g.size - 1] = -0.0
    return grads


def ordered_sum(per_rank: list[list[Any]], reduction: str) -> list[Any]:
    """SPEC §7's reduced gradients (harness.reduced), float32/float64 ones summed in place:
    ``acc + tmp`` lets NumPy reuse the temporary as the output (temporary elision, arrays above
    256 KiB), computing ``tmp + acc``, and the other operand's NaN wins then."""
    out = reduced(per_rank, reduction, N)
    for k, g in enumerate(per_rank[0]):
        if reduction == "none" or g is None or g.dtype not in (F32, F64):
            continue
        acc = g.copy()
        with np.errstate(all="ignore"):
            for r in range(1, N):
                np.add(acc, per_rank[r][k], out=acc)
            if reduction == "mean":
                np.divide(acc, g.dtype.type(N), out=acc)
        out[k] = acc
    return out


def expected_fused(dtypes: list[np.dtype], options: dict[str, Any], reduction: str) -> bool:
    """Whether float32/float64 pieces of this (single-group) optimizer get fused."""
    if N == 1 or reduction == "none" or options.get("skip_if_nonfinite"):
        return False
    if reduction == "mean":  # folded: grad_scale 1 and no 16-bit param in the group
        return options.get("grad_scale", 1.0) == 1.0 and all(d in (F32, F64) for d in dtypes)
    return True


def check_fused_path() -> None:
    configs: list[tuple[list[np.dtype], dict[str, Any], str]] = [
        ([F32], {}, "mean"),
        ([F64], {"momentum": 0.9, "centered": True}, "sum"),
        ([F32, F64], {"grad_scale": 2.0, "nesterov": True, "momentum": 0.5}, "sum"),
        ([F64, F32], {"preset": "keras", "weight_decay": 0.1}, "mean"),
        ([F32], {"grad_scale": 2.0}, "mean"),  # two divisions: the NumPy path
        ([F32, F64], {"skip_if_nonfinite": True}, "sum"),  # needs the materialized sum
        ([F32, F16, BF16], {"momentum": 0.9}, "sum"),  # 16-bit pieces: NumPy; the rest fused
        ([F32, F16], {}, "mean"),  # a 16-bit param keeps the group's "mean" unfolded
        ([F32], {"state_dtype": "bfloat16"}, "sum"),  # compact state: fused too
        ([F32], {"state_dtype": "8bit", "momentum": 0.9}, "mean"),
    ]
    _sharded._core.step_optimizer = spying_step  # type: ignore[attr-defined]
    try:
        for isa in rmsprop.config()["isas_supported"]:
            rmsprop.set_isa(isa)
            for threads in (1, 2):
                rmsprop.set_num_threads(threads)
                for dtypes_cycle, options, reduction in configs:
                    dtypes = [dtypes_cycle[k % len(dtypes_cycle)] for k in range(len(SHAPES))]
                    run(dtypes, options, reduction, f"{isa} {threads} {options} {reduction}")
    finally:
        _sharded._core.step_optimizer = real_step  # type: ignore[attr-defined]
        rmsprop.set_num_threads(1)


def run(dtypes: list[np.dtype], options: dict[str, Any], reduction: str, what: str) -> None:
    opt, ropt, mine, ref = build(SHAPES, dtypes, options, False, COMM, reduction)
    for step in (1, 2):
        per_rank = [rank_grads(step, r, SHAPES, dtypes) for r in range(N)]
        if not options.get("skip_if_nonfinite"):  # which would skip the step
            per_rank = [with_specials(grads, r) for r, grads in enumerate(per_rank)]
        calls.clear()
        result = opt.step(per_rank[RANK])
        sharded_calls = list(calls)  # the module is shared: ropt's calls are not spied on
        expected = ropt.step(ordered_sum(per_rank, reduction))
        assert result == expected, (what, result, expected)
        assert result is not False and len(sharded_calls) == (1 if opt._pieces else 0), what
        fuse = expected_fused(dtypes, options, reduction)
        for j, c in enumerate(opt._pieces):  # one core step per sharded step
            addends = sharded_calls[0][j] if sharded_calls[0] is not None else None
            assert (addends is not None) == (fuse and dtypes[c.param] in (F32, F64)), (what, j)
            if addends is not None:
                assert len(addends) == N - 1 and all(a.dtype == dtypes[c.param] for a in addends)
        for k, (a, b) in enumerate(zip(mine, ref)):
            assert same_bits(a, b), f"rank {RANK}: {what}: step {step} param {k} differs"
        harness.passed()


def main() -> None:
    check_fused_path()
    COMM.Barrier()
    print(f"rank {RANK} of {N}: {harness.CHECKS} checks passed", flush=True)


if __name__ == "__main__":
    main()
