"""Compact optimizer state (state_dtype "bfloat16" / "8bit", SPEC §8) in rmsprop.distributed, run
on every rank of one MPI job (launched by tests/test_distributed.py as ``mpiexec -n N python -m
mpi4py tests/mpi/compact_worker.py``).

As in worker.py, each rank also steps a single-process rmsprop.RMSprop with the same
state_dtype on the rank-order reduced gradient; params, codes, scales and bfloat16 bit patterns
are compared bit for bit. A failed assertion aborts the job.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

import rmsprop
from rmsprop._buffers import EIGHT_BIT_BLOCK, state_layout

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from harness import (
    BF16,
    COMM,
    F16,
    F32,
    RANK,
    N,
    assert_same_state,
    build,
    check_resharded_continuation,
    expect_refusal,
    passed,
    rank_grads,
    run_steps,
    same_bits,
)

from rmsprop.distributed import ShardedRMSprop

# 8-bit tensors (>= 4096 elements) whose shard pieces are below 4096 at N >= 2 (5000), exactly
# at the threshold, one over, 2-D; tensors that keep float32 state in an 8-bit group; an empty
# one. Cuts fall inside most of them.
SHAPES = [(5000,), (7, 13), (70, 100), (4096,), (1000,), (4097,), (0,), (300,)]
# The last tensor lies in the last rank's range only: the other ranks own none of it.
ONE_OWNER = [(20_000,), (37,), (4096,), (5,)]
# Large enough for the core's two threads on every rank's piece.
THREADED = [(300_001,), (5,)]
MIXED = ({"state_dtype": "float32", "lr": 0.03}, {"state_dtype": "8bit", "momentum": 0.5})


def check_storage(opt: ShardedRMSprop, ropt: rmsprop.RMSprop, comm: MPI.Comm = COMM) -> None:
    """Every piece stores its state as its whole tensor does, in whole 8-bit blocks, and the
    ranks together hold exactly the single-process optimizer's state bytes."""
    params = [p for g in opt.param_groups for p in g["params"]]
    groups = [g for g in opt.param_groups for _ in g["params"]]
    for piece, state in zip(opt._pieces, opt._piece_states):
        if not state:
            continue
        param, group = params[piece.param], groups[piece.param]
        layout = state_layout(param, group["state_dtype"])
        assert state["square_avg"].dtype == layout["square_avg"][1], (piece, group["state_dtype"])
        if "square_avg_scale" in layout:
            assert piece.begin % EIGHT_BIT_BLOCK == 0, piece
            assert piece.end % EIGHT_BIT_BLOCK == 0 or piece.end == param.size, piece
            assert "square_avg_scale" in state
    single = sum(v.nbytes for s in ropt.state for v in s.values() if isinstance(v, np.ndarray))
    assert comm.allreduce(opt.state_bytes()) == single, (opt.state_bytes(), single)
    passed()


def check_bit_identity() -> None:
    configs: list[tuple[list[Any], list[np.dtype], dict[str, Any], Any, str]] = [
        (SHAPES, [F32], {"state_dtype": "8bit", "momentum": 0.9}, None, "mean"),
        (
            SHAPES,
            [F32],
            {"state_dtype": "bfloat16", "momentum": 0.9, "centered": True, "alpha": 0.999},
            True,
            "sum",
        ),
        (
            SHAPES,
            [BF16],
            {"state_dtype": "8bit", "stochastic_rounding": True, "master_weights": True},
            True,
            "mean",
        ),
        (
            SHAPES,
            [F32, BF16],
            {
                "state_dtype": "bfloat16",
                "stochastic_rounding": True,
                "rounding_seed": 5,
                "momentum": 0.8,
                "nesterov": True,
            },
            None,
            "none",
        ),
        (SHAPES, [F32], {}, MIXED, "mean"),
        (
            SHAPES,
            [F16, F32],
            {"initial_square_avg": 1.0, "bias_correction": True},
            ({"state_dtype": "bfloat16"}, {"state_dtype": "8bit", "weight_decay": 0.01}),
            "mean",
        ),
        (ONE_OWNER, [F32], {"momentum": 0.9}, MIXED, "mean"),
        (
            THREADED,
            [BF16],
            {"state_dtype": "8bit", "stochastic_rounding": True, "momentum": 0.9},
            None,
            "mean",
        ),
        (THREADED, [F32], {"state_dtype": "bfloat16", "momentum": 0.9}, None, "mean"),
    ]
    for n, (shapes, kinds, options, groups, reduction) in enumerate(configs):
        rmsprop.set_num_threads(2 if shapes is THREADED else 1 + n % 2)
        dtypes = [kinds[k % len(kinds)] for k in range(len(shapes))]
        extra = {"group_options": groups} if isinstance(groups, tuple) else {}
        opt, ropt, mine, ref = build(
            shapes, dtypes, options, groups is not None, COMM, reduction, n % 3 == 0, **extra
        )
        run_steps(opt, ropt, mine, ref, shapes, dtypes, 1, 4, COMM, reduction)
        check_storage(opt, ropt)
        sd = opt.consolidated_state_dict(root=n % N)
        assert_same_state(sd, ropt.state_dict(), f"config {n}")
        if shapes is ONE_OWNER:
            owners = COMM.allgather(any(piece.param == 2 for piece in opt._pieces))
            assert owners.count(True) == 1, owners
            passed()
    rmsprop.set_num_threads(1)


def check_refusals() -> None:
    bad = N - 1
    ps = [np.zeros(s, np.float32) for s in SHAPES]
    for culprit in (-1, bad):
        storage = "8bit" if culprit in (-1, RANK) else "float32"
        expect_refusal(
            lambda s=storage: ShardedRMSprop(ps, COMM, centered=True, state_dtype=s),
            culprit,
            ValueError,
            "centered=True is not supported with state_dtype='8bit'",
        )
    wide = [np.zeros(5000, np.float64) if bad == RANK else p for p in ps]
    expect_refusal(
        lambda: ShardedRMSprop(wide, COMM, state_dtype="8bit"), bad, TypeError, "float64"
    )
    expect_refusal(
        lambda: ShardedRMSprop(ps, COMM, state_dtype="4bit" if bad == RANK else "8bit"),
        bad,
        ValueError,
        "state_dtype",
    )
    dtypes = [F32, BF16] * 4
    opt, ropt, mine, ref = build(SHAPES, dtypes, {"momentum": 0.9}, True, COMM, group_options=MIXED)
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 1, 2, COMM)
    before = [a.copy() for a in mine]
    sd_before = opt.consolidated_state_dict()
    good = rank_grads(3, RANK, SHAPES, dtypes)
    group = opt.param_groups[1]
    # Edited after construction (on every rank alike, or on one): refused before data moves.
    for key, value, fragment in (
        ("state_dtype", "bfloat16", "state_dtype changed from '8bit' to 'bfloat16'"),
        ("centered", True, "centered=True is not supported with state_dtype='8bit'"),
    ):
        for culprit in (-1, bad):
            saved = group[key]
            if culprit in (-1, RANK):
                group[key] = value
            grads = [g.copy() for g in good]
            expect_refusal(lambda g=grads: opt.step(g), culprit, ValueError, fragment)
            group[key] = saved
    # A state dict of another state_dtype: refused on every rank, nothing loaded.
    copies = [p.copy() for p in ref]
    float_state = rmsprop.RMSprop(
        [{"params": copies[:4], **MIXED[0]}, {"params": copies[4:], "momentum": 0.5}], momentum=0.9
    )
    float_state.step(rank_grads(1, 0, SHAPES, dtypes))
    other = float_state.state_dict()
    for culprit in (-1, bad):
        sd = other if culprit in (-1, RANK) else ropt.state_dict()
        fragment = "was saved with state_dtype='float32', this optimizer's uses '8bit'"
        expect_refusal(lambda d=sd: opt.load_state_dict(d), culprit, ValueError, fragment)
    group["state_dtype"] = "float32"  # edited: the constructor's state_dtype still decides
    expect_refusal(lambda: opt.load_state_dict(other), -1, ValueError, fragment)
    group["state_dtype"] = "8bit"
    broken = ropt.state_dict()
    if bad == RANK:
        broken["state"][5]["square_avg_scale"] = broken["state"][5]["square_avg_scale"][:-1]
    expect_refusal(lambda: opt.load_state_dict(broken), bad, ValueError, "shape")
    for a, b in zip(mine, before):
        assert same_bits(a, b), "a refused call changed a param"
    assert_same_state(opt.consolidated_state_dict(), sd_before or {}, "refused calls")
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 3, 2, COMM)
    assert_same_state(opt.consolidated_state_dict(), ropt.state_dict(), "after refusals")


def check_resharding() -> None:
    """A consolidated 8-bit / bfloat16 checkpoint of N ranks continues bit-identically on M."""
    dtypes = [F32, BF16, F16, F32] * 2
    options = {"stochastic_rounding": True, "momentum": 0.9, "master_weights": True}
    groups = ({"state_dtype": "bfloat16"}, {"state_dtype": "8bit", "alpha": 0.9})
    check_resharded_continuation(
        SHAPES,
        dtypes,
        options,
        groups,
        before_steps=lambda after: rmsprop.set_num_threads(1 + after % 2),
        check=check_storage,
    )
    rmsprop.set_num_threads(1)
    # A single-process optimizer's 8-bit state dict loads and continues too.
    opt, ropt, mine, ref = build(SHAPES, dtypes, options, True, COMM, group_options=groups)
    single = rmsprop.RMSprop(
        [{"params": [a.copy() for a in ref[:4]], **groups[0]},
         {"params": [a.copy() for a in ref[4:]], **groups[1]}],
        **options,
    )  # fmt: skip
    single.step(rank_grads(1, 0, SHAPES, dtypes))
    opt.load_state_dict(single.state_dict())
    ropt.load_state_dict(single.state_dict())
    run_steps(opt, ropt, mine, ref, SHAPES, dtypes, 2, 2, COMM)
    assert_same_state(opt.consolidated_state_dict(), ropt.state_dict(), "from single process")


def main() -> None:
    check_bit_identity()
    check_refusals()
    check_resharding()
    COMM.Barrier()
    print(f"rank {RANK} of {N}: {harness.CHECKS} checks passed", flush=True)


if __name__ == "__main__":
    main()
