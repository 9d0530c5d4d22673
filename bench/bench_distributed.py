"""ZeRO-1 step time over MPI, side by side with the usual data-parallel recipe and the raw
collectives, plus the ways of gathering params and the optimizer state per rank.

Run: python bench/bench_distributed.py [--quick] [--ranks 2 4] [--state-dtype 8bit]
(launches `mpiexec -n N python -m mpi4py bench/bench_distributed.py --worker` per N; one
thread per rank; 4 ranks oversubscribe a 2-core machine). Every competitor runs once per round,
rounds interleaved, after a warm-up; each call starts after a barrier and counts as the slowest
rank's time; medians are reported and ratios are taken within one run. --state-dtype gives
every optimizer of the run that state storage (results then go to
distributed_results_<state_dtype>.json) and reports the state bytes per rank against a
single-process optimizer with float32 state as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_step import shapes_transformer_like  # noqa: E402

CASES: dict[str, Callable[[], list[tuple[int, ...]]]] = {
    "list160": shapes_transformer_like,
    "array16M": lambda: [(16 * 2**20,)],
}


def worker(case: str, rounds: int, state_dtype: str = "float32") -> dict[str, Any]:
    from mpi4py import MPI

    import rmsprop
    from rmsprop.distributed import ShardedRMSprop, packed_copies
    from rmsprop.distributed._exchange import move

    comm = MPI.COMM_WORLD
    rank, ranks = comm.Get_rank(), comm.Get_size()
    rmsprop.set_num_threads(1)
    shapes = CASES[case]()
    rng = np.random.default_rng(rank)
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    user = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in shapes]
    storage = {"state_dtype": state_dtype}
    zero = ShardedRMSprop([p.copy() for p in user], comm, lr=1e-4, **storage)
    zero_packed = ShardedRMSprop(packed_copies(user), comm, lr=1e-4, **storage)
    assert zero_packed._exchange.packed
    ex = zero._exchange
    layout, cuts = ex.layout, ex.layout.byte_cuts

    # (a) The usual recipe: pack the grads, Allreduce them, full local step on every rank.
    recipe = rmsprop.RMSprop([p.copy() for p in user], lr=1e-4, **storage)
    offsets = np.cumsum([0] + [g.size for g in grads])
    flat_grad = np.zeros(offsets[-1], np.float32)
    grad_views = [flat_grad[a:b].reshape(s) for a, b, s in zip(offsets, offsets[1:], shapes)]

    def allreduce_recipe() -> None:
        for view, g in zip(grad_views, grads):
            np.copyto(view, g)
        comm.Allreduce(MPI.IN_PLACE, flat_grad, op=MPI.SUM)
        np.divide(flat_grad, np.float32(ranks), out=flat_grad)
        recipe.step(grad_views)

    # (b) ZeRO-1's own messages alone (gradient pieces to their owners, params back), on
    # copies of the arrays: no checks, no sum, no step.
    spare_grads = [g.copy().reshape(-1) for g in grads]
    targets = [p.copy() for p in user]
    spare = ShardedRMSprop(targets, comm, lr=1e-4, **storage)._exchange

    def raw_collectives() -> None:
        move(spare.comm, spare.reduce_transfers(spare_grads))
        move(spare.comm, spare.gather_transfers)

    # The local step on this rank's shard (1/N of the params) and on everything.
    pieces = [np.zeros(c.size, np.float32) for c in ex.pieces]
    piece_grads = [np.ones(c.size, np.float32) for c in ex.pieces]
    # (Pieces of a tensor stepped alone decide 8-bit state by their own size: close enough
    # for the time of the local step, which the sharder's own measurement does not need.)
    shard_opt = rmsprop.RMSprop(pieces, lr=1e-4, **storage) if pieces else None
    full_opt = rmsprop.RMSprop([p.copy() for p in user], lr=1e-4, **storage)

    def shard_step() -> None:
        if shard_opt is not None:
            shard_opt.step(piece_grads)

    # Ways to gather the params. Chosen: one message per shard piece, straight into the
    # user's arrays. Alternatives: one message per rank into a flat buffer the params would be
    # views of; the same through a staging buffer with copies in and out; MPI derived datatypes
    # over the user's arrays (one broadcast per rank); MPI_Allgatherv into a flat buffer.
    flat = np.zeros(layout.nbytes, np.uint8)
    flat_transfers = [(False, q, flat[cuts[q] : cuts[q + 1]]) for q, _ in ex.others]
    flat_transfers += [(True, q, flat[cuts[rank] : cuts[rank + 1]]) for q, _ in ex.others]
    copies_in, copies_out = [], []
    for q in range(ranks):
        for c in layout.pieces(q):
            staged = flat[c.byte : c.byte + 4 * c.size].view(np.float32)
            piece = targets[c.param].reshape(-1)[c.begin : c.end]
            (copies_in if q == rank else copies_out).append((staged, piece))

    def gather_staging() -> None:
        for staged, piece in copies_in:
            np.copyto(staged, piece)
        move(spare.comm, flat_transfers)
        for staged, piece in copies_out:
            np.copyto(piece, staged)

    types = []
    for q in range(ranks):
        blocks = [
            (c.size * 4, targets[c.param].ctypes.data + 4 * c.begin) for c in layout.pieces(q)
        ]
        kind = MPI.BYTE.Create_hindexed([b for b, _ in blocks], [a for _, a in blocks]).Commit()
        types.append(kind)

    def gather_derived() -> None:
        for q, kind in enumerate(types):
            comm.Bcast([MPI.BOTTOM, 1, kind], root=q)

    counts = [b - a for a, b in zip(cuts, cuts[1:])]

    def gather_allgatherv() -> None:
        comm.Allgatherv(MPI.IN_PLACE, [flat, (counts, cuts[:-1]), MPI.BYTE])

    def raw_collectives_packed() -> None:
        move(spare.comm, spare.reduce_transfers(spare_grads))
        move(spare.comm, flat_transfers)

    competitors: dict[str, Callable[[], Any]] = {
        "zero1": lambda: zero.step(grads),
        "zero1_packed_params": lambda: zero_packed.step(grads),
        "allreduce_recipe": allreduce_recipe,
        "raw_collectives": raw_collectives,
        "raw_collectives_packed": raw_collectives_packed,
        "shard_step": shard_step,
        "full_step": lambda: full_opt.step(grads),
        "gather_pieces": lambda: move(spare.comm, spare.gather_transfers),
        "gather_flat": lambda: move(spare.comm, flat_transfers),
        "gather_staging": gather_staging,
        "gather_derived_types": gather_derived,
        "gather_allgatherv": gather_allgatherv,
    }
    if state_dtype != "float32":  # the same sharder with float32 state, interleaved
        zero_float32 = ShardedRMSprop([p.copy() for p in user], comm, lr=1e-4)
        competitors["zero1_float32_state"] = lambda: zero_float32.step(grads)
    for run in competitors.values():  # warm-up: state allocation, page faults
        comm.Barrier()
        run()
    times = {name: np.zeros(rounds) for name in competitors}
    for r in range(rounds):
        for name, run in competitors.items():
            comm.Barrier()
            start = time.perf_counter()
            run()
            times[name][r] = time.perf_counter() - start
    for name in times:  # a collective step lasts as long as its slowest rank
        comm.Allreduce(MPI.IN_PLACE, times[name], op=MPI.MAX)

    def state_bytes(opt: rmsprop.RMSprop) -> int:
        return sum(v.nbytes for s in opt.state for v in s.values() if hasattr(v, "nbytes"))

    single_state = state_bytes(full_opt)
    if state_dtype == "float32":
        float32_state = single_state
    else:  # one step of a float32-state optimizer creates the state to compare with
        float_opt = rmsprop.RMSprop([p.copy() for p in user], lr=1e-4)
        float_opt.step(grads)
        float32_state = state_bytes(float_opt)
        del float_opt
    state = comm.gather(zero.state_bytes(), root=0)
    for kind in types:
        kind.Free()
    return {
        "case": case,
        "ranks": ranks,
        "state_dtype": state_dtype,
        "elements": int(sum(int(np.prod(s)) for s in shapes)),
        "median_s": {name: float(statistics.median(t)) for name, t in times.items()},
        "state_bytes_per_rank": state,
        "single_process_state_bytes": int(single_state),
        "single_process_float32_state_bytes": int(float32_state),
    }


def report(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for res in results:
        m = res["median_s"]
        ranks = res["ranks"]
        ms = {k: 1e3 * v for k, v in m.items()}
        storage = res.get("state_dtype", "float32")
        lines.append(
            f"{res['case']} ({res['elements'] / 1e6:.1f}M float32, {storage} state), {ranks} ranks"
            + (" (oversubscribed: 4 ranks on 2 cores)" if ranks > (os.cpu_count() or 1) else "")
        )
        for name, value in ms.items():
            lines.append(f"  {name:22s} {value:9.2f} ms")
        bound = m["raw_collectives"] + m["shard_step"]
        zero, recipe, pieces = m["zero1"], m["allreduce_recipe"], m["gather_pieces"]
        packed = m["zero1_packed_params"]
        lines.append(f"  zero1 / allreduce_recipe            {zero / recipe:.2f}")
        if "zero1_float32_state" in m:
            lines.append(
                f"  zero1 / zero1_float32_state         {zero / m['zero1_float32_state']:.2f}"
            )
        lines.append(f"  zero1_packed / allreduce_recipe     {packed / recipe:.2f}")
        lines.append(f"  zero1 / (collectives + shard step)  {zero / bound:.2f}")
        packed_bound = m["raw_collectives_packed"] + m["shard_step"]
        lines.append(f"  zero1_packed / (its coll. + shard)  {packed / packed_bound:.2f}")
        others = ("flat", "staging", "derived_types", "allgatherv")
        lines.append(
            "  gather, x one message per tensor piece: "
            + ", ".join(f"{o} {m['gather_' + o] / pieces:.2f}" for o in others)
        )
        worst = max(res["state_bytes_per_rank"])
        single = res["single_process_state_bytes"]
        float32 = res.get("single_process_float32_state_bytes", single)
        line = (
            f"  state bytes per rank (max) {worst / 1e6:.1f} MB = "
            f"{worst / single:.3f} x single-process {storage} state ({single / 1e6:.1f} MB)"
        )
        if storage != "float32":
            line += (
                f", {worst / float32:.3f} x single-process float32 state ({float32 / 1e6:.1f} MB)"
            )
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, not a measurement")
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--state-dtype", default="float32", choices=["float32", "bfloat16", "8bit"])
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 15)
    if args.worker:
        from mpi4py import MPI

        results = [worker(case, rounds, args.state_dtype) for case in args.cases]
        if MPI.COMM_WORLD.Get_rank() == 0:
            print("RESULT " + json.dumps(results), flush=True)
        return 0
    mpiexec = Path(sys.executable).parent / "mpiexec"
    launcher = str(mpiexec) if mpiexec.exists() else "mpiexec"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    results: list[dict[str, Any]] = []
    for ranks in args.ranks:
        command = [launcher, "-n", str(ranks), sys.executable, "-m", "mpi4py", __file__,
                   "--worker", "--rounds", str(rounds), "--cases", *args.cases,
                   "--state-dtype", args.state_dtype]  # fmt: skip
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results += json.loads(line[len("RESULT ") :])
    print("\n".join(report(results)))
    if not args.quick:
        suffix = "" if args.state_dtype == "float32" else f"_{args.state_dtype}"
        out = Path(args.out or HERE / f"distributed_results{suffix}.json")
        out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
