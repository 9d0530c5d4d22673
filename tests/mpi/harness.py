"""Shared helpers of the MPI checks in worker.py: deterministic data, the single-process
reference of SPEC §7 (the rank-order sum in NumPy), bit-for-bit comparisons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
from mpi4py import MPI

import rmsprop
from rmsprop.distributed import ShardedRMSprop, packed_copies

COMM = MPI.COMM_WORLD
RANK, N = COMM.Get_rank(), COMM.Get_size()
BF16 = np.dtype(ml_dtypes.bfloat16)
F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
CHECKS = 0

# Odd sizes straddling the 64-element cut unit and SIMD widths, an empty tensor, one element.
SHAPES = [(7, 13), (1000,), (0,), (3,), (64, 65), (1,), (129,)]


def passed() -> None:
    global CHECKS
    CHECKS += 1


def values(seed: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return data.astype(dtype)


def rank_grads(step: int, rank: int, shapes: list[Any], dtypes: list[np.dtype]) -> list[Any]:
    return [
        values(10_000 * step + 100 * rank + k, s, d) for k, (s, d) in enumerate(zip(shapes, dtypes))
    ]


def reduced(per_rank: list[list[Any]], mode: str, ranks: int) -> list[Any]:
    """SPEC §7: ((g_0 + g_1) + g_2) + ... in the state precision, / N once, back to the dtype."""
    out = []
    for k in range(len(per_rank[0])):
        if mode == "none" or per_rank[0][k] is None:
            out.append(per_rank[0][k])
            continue
        dtype = per_rank[0][k].dtype
        wide = F64 if dtype == F64 else F32
        acc = per_rank[0][k].astype(wide)
        for r in range(1, ranks):
            acc = acc + per_rank[r][k].astype(wide)
        if mode == "mean" and ranks > 1:
            acc = acc / wide.type(ranks)
        with np.errstate(over="ignore"):
            out.append(acc.astype(dtype))
    return out


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_state(sd: dict[str, Any] | None, ref: dict[str, Any], what: str) -> None:
    if sd is None:
        return
    assert sd["param_groups"] == ref["param_groups"], what
    assert sorted(sd["state"]) == sorted(ref["state"]), (
        what,
        sorted(sd["state"]),
        sorted(ref["state"]),
    )
    for k, entry in ref["state"].items():
        assert sorted(sd["state"][k]) == sorted(entry), (what, k)
        for key, value in entry.items():
            mine = sd["state"][k][key]
            ok = same_bits(mine, value) if isinstance(value, np.ndarray) else mine == value
            assert ok, (what, k, key)
    passed()


GROUP_OPTIONS = ({"lr": 0.03}, {"momentum": 0.5})


def build(
    shapes: list[Any],
    dtypes: list[np.dtype],
    options: dict[str, Any],
    groups: bool,
    comm: MPI.Comm,
    reduction: str = "mean",
    packed: bool = False,
    group_options: tuple[dict[str, Any], dict[str, Any]] = GROUP_OPTIONS,
) -> tuple[ShardedRMSprop, rmsprop.RMSprop, list[np.ndarray], list[np.ndarray]]:
    init = [values(7 + k, s, d) for k, (s, d) in enumerate(zip(shapes, dtypes))]
    mine = packed_copies(init) if packed else [a.copy() for a in init]
    ref = [a.copy() for a in init]

    def grouped(ps: list[np.ndarray]) -> list[Any]:
        if not groups:
            return ps
        half = len(ps) // 2
        first, second = group_options
        return [{"params": ps[:half], **first}, {"params": ps[half:], **second}]

    opt = ShardedRMSprop(grouped(mine), comm, grad_reduction=reduction, **options)
    ropt = rmsprop.RMSprop(grouped(ref), **options)
    return opt, ropt, mine, ref


def run_steps(
    opt: ShardedRMSprop,
    ropt: rmsprop.RMSprop,
    mine: list[np.ndarray],
    ref: list[np.ndarray],
    shapes: list[Any],
    dtypes: list[np.dtype],
    first: int,
    count: int,
    comm: MPI.Comm,
    reduction: str = "mean",
) -> None:
    ranks, rank = comm.Get_size(), comm.Get_rank()
    for step in range(first, first + count):
        per_rank = [rank_grads(step, r, shapes, dtypes) for r in range(ranks)]
        if reduction == "none":
            per_rank = [per_rank[0]] * ranks
        if step % 3 == 2:  # a param skipped on every rank
            for grads in per_rank:
                grads[min(1, len(grads) - 1)] = None
        result = opt.step(per_rank[rank])
        expected = ropt.step(reduced(per_rank, reduction, ranks))
        assert result == expected, (result, expected)
        for k, (a, b) in enumerate(zip(mine, ref)):
            assert same_bits(a, b), f"rank {rank} step {step} param {k} differs"
        passed()


def check_resharded_continuation(
    shapes: list[Any],
    dtypes: list[np.dtype],
    options: dict[str, Any],
    group_options: tuple[dict[str, Any], dict[str, Any]] = GROUP_OPTIONS,
    before_steps: Callable[[int], None] = lambda after: None,
    check: Callable[[ShardedRMSprop, rmsprop.RMSprop, MPI.Comm], None] | None = None,
) -> None:
    """A consolidated checkpoint of N ranks continues bit-identically on every M in 1..N, and
    one of a single rank on N. ``before_steps(M)`` runs first on every rank; ``check`` after
    the continued steps, on the M ranks."""
    for before, after in [(N, m) for m in range(1, N + 1)] + [(1, N)]:
        before_steps(after)
        sub = COMM.Split(0 if before > RANK else MPI.UNDEFINED, RANK)
        sd = None
        if sub != MPI.COMM_NULL:
            opt, ropt, mine, ref = build(
                shapes, dtypes, options, True, sub, group_options=group_options
            )
            run_steps(opt, ropt, mine, ref, shapes, dtypes, 1, 3, sub)
            sd = opt.consolidated_state_dict()
            sub.Free()
        sd, params = COMM.bcast((sd, mine if RANK == 0 else None), root=0)
        sub = COMM.Split(0 if after > RANK else MPI.UNDEFINED, RANK)
        if sub != MPI.COMM_NULL:
            opt, ropt, mine, ref = build(
                shapes, dtypes, options, True, sub, group_options=group_options
            )
            for a, b, p in zip(mine, ref, params):
                np.copyto(a, p)
                np.copyto(b, p)
            opt.load_state_dict(sd)
            ropt.load_state_dict(sd)
            run_steps(opt, ropt, mine, ref, shapes, dtypes, 4, 3, sub)
            if check is not None:
                check(opt, ropt, sub)
            assert_same_state(
                opt.consolidated_state_dict(), ropt.state_dict(), f"{before}->{after}"
            )
            sub.Free()


def expect_refusal(
    action: Callable[[], Any], culprit: int, kind: type[Exception], fragment: str
) -> None:
    """Every rank raises: the culprit its own `kind` error, the others a ValueError naming it."""
    try:
        action()
    except (TypeError, ValueError) as exc:
        if culprit in (RANK, -1):
            assert type(exc) is kind, (type(exc), exc)
            assert fragment in str(exc), str(exc)
        else:
            assert type(exc) is ValueError and f"rank {culprit}" in str(exc), str(exc)
        passed()
        return
    raise AssertionError(f"rank {RANK}: no exception (culprit {culprit}, {fragment})")
