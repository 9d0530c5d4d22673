"""Checks of rmsprop.distributed run on every rank of one MPI job (launched by
tests/test_distributed.py as ``mpiexec -n N python -m mpi4py tests/mpi/worker.py MODE``).

Each rank also steps a single-process rmsprop.RMSprop on the reduced gradient, computed here in
NumPy in rank order (the reference of SPEC §7), and every comparison is bit for bit. A failed
assertion aborts the job (python -m mpi4py), so the launcher sees a non-zero exit.
"""

from __future__ import annotations

import doctest
import os
import pickle
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

import rmsprop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from harness import (
    BF16,
    COMM,
    F16,
    F32,
    F64,
    RANK,
    SHAPES,
    N,
    assert_same_state,
    build,
    check_resharded_continuation,
    expect_refusal,
    passed,
    rank_grads,
    reduced,
    run_steps,
    same_bits,
)

from rmsprop.distributed import ShardedRMSprop


def check_bit_identity() -> None:
    configs: list[tuple[list[np.dtype], dict[str, Any], bool, str]] = [
        ([F32], {}, False, "mean"),
        ([F32], {"momentum": 0.9, "centered": True, "weight_decay": 0.01}, True, "mean"),
        ([F64], {"bias_correction": True, "momentum": 0.8, "nesterov": True}, False, "sum"),
        ([F64], {"preset": "keras", "weight_decay": 0.1}, True, "mean"),
        ([F16], {"preset": "tf1", "lr": 0.01, "grad_scale": 4.0}, False, "mean"),
        ([F16], {"master_weights": True, "momentum": 0.9}, True, "sum"),
        ([BF16], {"stochastic_rounding": True, "rounding_seed": 7}, False, "mean"),
        (
            [BF16],
            {"stochastic_rounding": True, "master_weights": True, "centered": True},
            True,
            "mean",
        ),
        ([BF16], {"preset": "optax"}, False, "none"),
        ([F32, BF16, F64, F16], {"stochastic_rounding": True, "momentum": 0.9}, True, "mean"),
        ([F32, F64], {"preset": "seed", "centered": True}, False, "none"),
        ([F32, F64], {"grad_scale": 2.0, "momentum": 0.5}, True, "mean"),
    ]
    for n, (kinds, options, groups, reduction) in enumerate(configs):
        rmsprop.set_num_threads(1 + n % 2)
        dtypes = [kinds[k % len(kinds)] for k in range(len(SHAPES))]
        # Params packed on every rank, on rank 0 only (then not used: all ranks must agree).
        packed = n % 3 == 0 or (n % 3 == 1 and RANK == 0)
        opt, ropt, mine, ref = build(SHAPES, dtypes, options, groups, COMM, reduction, packed)
        assert opt._exchange.packed == (n % 3 == 0 or (N == 1 and packed)), n
        run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 1, 3, COMM, reduction)
        assert_same_state(opt.consolidated_state_dict(root=N - 1), ropt.state_dict(), str(options))
    # Big enough for the core's threads; tiny, so that most ranks own nothing.
    for shapes in ([(300_001,), (5,)], [(5,)], [(1,), (0,)]):
        rmsprop.set_num_threads(2)
        dtypes = [BF16] * len(shapes)
        opt, ropt, mine, ref = build(shapes, dtypes, {"stochastic_rounding": True}, False, COMM)
        run_steps(opt, ropt, mine, ref, shapes, dtypes, 1, 2, COMM)
        assert_same_state(opt.consolidated_state_dict(), ropt.state_dict(), str(shapes))
    rmsprop.set_num_threads(1)


def check_hostile_inputs() -> None:
    dtypes = [F32, F64, BF16, F32, F16, F32, F32]
    options = {"momentum": 0.9, "master_weights": True}
    opt, ropt, mine, ref = build(SHAPES, dtypes, options, True, COMM)
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 1, 1, COMM)
    before = [a.copy() for a in mine]
    sd_before = opt.consolidated_state_dict()
    bad = N - 1
    good = rank_grads(5, RANK, SHAPES, dtypes)

    def with_grads(change: Callable[[list[Any]], Any]) -> Callable[[], Any]:
        grads = [g.copy() for g in good]
        if bad == RANK:
            grads = change(grads)
        return lambda: opt.step(grads)

    def set_item(k: int, value: Any) -> Callable[[list[Any]], list[Any]]:
        def change(grads: list[Any]) -> list[Any]:
            grads[k] = value
            return grads

        return change

    expect_refusal(with_grads(set_item(0, good[0].astype(F64))), bad, TypeError, "dtype")
    expect_refusal(with_grads(set_item(1, good[1][:-1])), bad, ValueError, "shape")
    expect_refusal(with_grads(lambda g: g[:-1]), bad, ValueError, "gradients for")
    expect_refusal(with_grads(lambda g: g[0]), bad, TypeError, "list")
    expect_refusal(with_grads(set_item(3, "x")), bad, TypeError, "numpy.ndarray")
    expect_refusal(
        with_grads(set_item(4, np.asfortranarray(good[4]))), bad, ValueError, "np.ascontiguousarray"
    )
    expect_refusal(with_grads(set_item(0, mine[0])), bad, ValueError, "shares memory")
    group = opt.param_groups[1]
    for key, value, kind in (
        ("lr", -1.0, ValueError),
        ("momentum", "x", TypeError),
        ("eps", float("nan"), ValueError),
    ):
        saved = group[key]
        if bad == RANK:
            group[key] = value
        expect_refusal(lambda: opt.step([g.copy() for g in good]), bad, kind, key)
        group[key] = saved
    if N > 1:  # valid on every rank, but not the same: everyone refuses
        group["lr"] = 0.5 if bad == RANK else group["lr"]
        expect_refusal(lambda: opt.step(good), -1, ValueError, "differ between ranks")
        group["lr"] = ropt.param_groups[1]["lr"]
        expect_refusal(with_grads(set_item(2, None)), -1, ValueError, "differ between ranks")
    # Refused by the core for float32 params only (float32 cannot hold it): before data moves.
    saved = group["lr"]
    group["lr"] = 1e39
    expect_refusal(lambda: opt.step(good), -1, ValueError, "lr")
    group["lr"] = saved
    for a, b in zip(mine, before):
        assert same_bits(a, b), "a refused step changed a param"
    # Collective; compared on the root, where it is not None.
    assert_same_state(opt.consolidated_state_dict(), sd_before or {}, "refused steps")
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 2, 2, COMM)
    # Mismatched construction: every rank refuses.
    ps = [np.zeros(s, np.float32) for s in SHAPES]
    other = [
        np.zeros((3, 3) if k == 3 and bad == RANK else s, np.float32) for k, s in enumerate(SHAPES)
    ]
    if N > 1:
        expect_refusal(lambda: ShardedRMSprop(other, COMM), -1, ValueError, "differ between ranks")
        expect_refusal(
            lambda: ShardedRMSprop(ps, COMM, lr=0.1 if bad == RANK else 0.2),
            -1,
            ValueError,
            "differ",
        )
    ints = [np.zeros(3, np.int32) if bad == RANK else p for p in ps]
    expect_refusal(lambda: ShardedRMSprop(ints, COMM), bad, TypeError, "float32")
    expect_refusal(
        lambda: ShardedRMSprop(ps, COMM, grad_reduction="max" if bad == RANK else "mean"),
        bad,
        ValueError,
        "grad_reduction",
    )
    expect_refusal(lambda: ShardedRMSprop([ps[0], ps[0]], COMM), -1, ValueError, "more than once")
    expect_refusal(
        lambda: opt.consolidated_state_dict(root=N if bad == RANK else 0), bad, ValueError, "root"
    )


def check_skip_if_nonfinite() -> None:
    dtypes = [F32, F16, F64, F32, F16, F32, BF16]
    opt, ropt, mine, ref = build(
        SHAPES, dtypes, {"skip_if_nonfinite": True}, False, COMM, reduction="sum"
    )
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 1, 1, COMM, "sum")
    before = [a.copy() for a in mine]
    for k, value in ((0, np.inf), (3, np.nan), (6, -np.inf)):
        grads = rank_grads(9, RANK, SHAPES, dtypes)
        if RANK == N - 1:
            grads[k].reshape(-1)[0] = value
        assert opt.step(grads) is False
        passed()
    # Finite float16 gradients whose sum overflows float16 once rounded back.
    grads = [np.full(s, 40000.0, d) if d == F16 else np.ones(s, d) for s, d in zip(SHAPES, dtypes)]
    assert opt.step(grads) is (N == 1)
    assert ropt.step(reduced([grads] * N, "sum", N)) is (N == 1)
    for a, b in zip(mine, ref):
        assert same_bits(a, b)
    if N > 1:
        for a, b in zip(mine, before):
            assert same_bits(a, b)
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 2, 2, COMM, "sum")
    assert_same_state(opt.consolidated_state_dict(), ropt.state_dict(), "skip")


def check_resharding() -> None:
    dtypes = [F32, BF16, F64, F16, F32, BF16, F32]
    options = {
        "stochastic_rounding": True,
        "momentum": 0.9,
        "centered": True,
        "master_weights": True,
    }
    check_resharded_continuation(SHAPES, dtypes, options)
    # A single-process optimizer's state dict loads too; a bad one is refused everywhere.
    opt, ropt, mine, ref = build(SHAPES, dtypes, options, False, COMM)
    single = rmsprop.RMSprop([a.copy() for a in ref], **options)
    single.step(rank_grads(1, 0, SHAPES, dtypes))
    broken = single.state_dict()
    if RANK == N - 1:
        broken["state"][0]["square_avg"] = broken["state"][0]["square_avg"][:1]
    expect_refusal(lambda: opt.load_state_dict(broken), N - 1, ValueError, "shape")
    opt.load_state_dict(single.state_dict())
    ropt.load_state_dict(single.state_dict())
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 2, 2, COMM)


def crash_after_checkpoint(path: str) -> None:
    """Train, checkpoint every step, then lose a rank mid-run: the job must end, not hang."""
    dtypes = [F32, BF16] * 4
    opt, _, mine, _ = build(
        SHAPES, dtypes[: len(SHAPES)], {"stochastic_rounding": True}, False, COMM
    )
    for step in range(1, 6):
        if step == 4 and RANK == N - 1:
            os.kill(os.getpid(), signal.SIGKILL)
        opt.step(rank_grads(step, RANK, SHAPES, dtypes[: len(SHAPES)]))
        sd = opt.consolidated_state_dict()
        if RANK == 0:
            with open(path + ".tmp", "wb") as f:
                pickle.dump((step, sd, mine), f)
            os.replace(path + ".tmp", path)  # a checkpoint is whole or absent
        COMM.Barrier()


def restart_from_checkpoint(path: str, ranks_before: int) -> None:
    """Resume on a different N; the params match a run that never stopped."""
    dtypes = [F32, BF16] * 4
    dtypes = dtypes[: len(SHAPES)]
    with open(path, "rb") as f:
        done, sd, params = pickle.load(f)
    assert done == 3, done
    opt, _, mine, _ = build(SHAPES, dtypes, {"stochastic_rounding": True}, False, COMM)
    for a, p in zip(mine, params):
        np.copyto(a, p)
    opt.load_state_dict(sd)
    _, ropt, _, ref = build(SHAPES, dtypes, {"stochastic_rounding": True}, False, MPI.COMM_SELF)
    for step in range(1, 7):
        per_rank = [rank_grads(step, r, SHAPES, dtypes) for r in range(ranks_before)]
        if step > done:
            per_rank = [rank_grads(step, r, SHAPES, dtypes) for r in range(N)]
            opt.step(per_rank[RANK])
        ropt.step(reduced(per_rank, "mean", len(per_rank)))
    for a, b in zip(mine, ref):
        assert same_bits(a, b)
    passed()


def check_docstring_examples() -> None:
    import rmsprop.distributed._packing
    import rmsprop.distributed._sharded

    for module in (rmsprop.distributed, rmsprop.distributed._sharded, rmsprop.distributed._packing):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
        passed()


def main() -> None:
    mode = sys.argv[1]
    if mode == "all":
        if N == 1:  # run here: importing rmsprop.distributed in pytest would initialize MPI
            check_docstring_examples()
        check_bit_identity()
        check_hostile_inputs()
        check_skip_if_nonfinite()
        check_resharding()
    elif mode == "crash":
        crash_after_checkpoint(sys.argv[2])
    elif mode == "restart":
        restart_from_checkpoint(sys.argv[2], int(sys.argv[3]))
    COMM.Barrier()
    print(f"rank {RANK} of {N}: {harness.CHECKS} checks passed", flush=True)


if __name__ == "__main__":
    main()
