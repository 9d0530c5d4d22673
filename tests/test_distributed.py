"""rmsprop.distributed over real MPI jobs: pytest launches `mpiexec -n N python -m mpi4py
tests/mpi/worker.py ...` (N = 1..4) and the ranks check themselves bit for bit against a
single-process RMSprop (see worker.py). A job that does not finish in time is a hang: a failure.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parent / "mpi" / "worker.py"
COMPACT_WORKER = WORKER.with_name("compact_worker.py")
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180  # seconds; 4 ranks oversubscribe 2 loaded cores, yet a run takes ~10-20 s


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the MPICH wheel's, in this venv
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpi4py and mpiexec (pip install 'rmsprop[mpi]')",
)


def launch(ranks: int, *args: str, script: Path = WORKER) -> subprocess.CompletedProcess[str]:
    assert MPIEXEC is not None
    # MPICH does not bind ranks to cores: one thread per rank unless a check asks for two, and
    # passive OpenMP waiting, since up to 4 ranks share 2 cores.
    env = {
        **os.environ,
        "MPIEXEC_TIMEOUT": str(TIMEOUT),
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    command = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py", str(script), *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT + 60, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hang: {' '.join(command)} did not end within {TIMEOUT + 60} s")
    if "TIMED OUT" in result.stdout.upper() + result.stderr.upper():
        pytest.fail(f"hang: {' '.join(command)} was killed by MPIEXEC_TIMEOUT")
    return result


def passed_ranks(result: subprocess.CompletedProcess[str]) -> int:
    return result.stdout.count("checks passed")  # ranks' lines may interleave


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_sharded_steps_match_single_process(ranks: int) -> None:
    """Every dtype and option family, groups, empty shards, 1-2 threads, hostile input on one
    rank, mismatched construction, skip_if_nonfinite and resharding N -> 1..N and 1 -> N."""
    result = launch(ranks, "all")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert passed_ranks(result) == ranks, result.stdout


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_sharded_compact_state_matches_single_process(ranks: int) -> None:
    """state_dtype "bfloat16" and "8bit": params, codes, scales and bfloat16 bits equal the
    single-process optimizer's (float32/16-bit params, momentum, mixed groups, 1-2 threads,
    pieces below 4096 elements of 8-bit tensors); refusals on every rank; resharding N -> M."""
    result = launch(ranks, script=COMPACT_WORKER)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert passed_ranks(result) == ranks, result.stdout


@needs_mpi
def test_killed_rank_ends_job_and_checkpoint_restarts_on_other_size(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pkl"
    crashed = launch(2, "crash", str(checkpoint))
    assert crashed.returncode != 0, "the job went on without its killed rank"
    assert checkpoint.exists(), crashed.stderr[-3000:]
    resumed = launch(3, "restart", str(checkpoint), "2")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    assert passed_ranks(resumed) == 3


def _losses(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"^Epoch \[\d+/10\], Loss: ([0-9.]+)$", text, re.M)]


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_data_parallel_example_prints_the_full_batch_losses(ranks: int) -> None:
    example = ROOT / "examples" / "data_parallel.py"
    result = launch(ranks, script=example)
    assert result.returncode == 0, result.stderr[-5000:]
    single = subprocess.run(
        [sys.executable, str(example.with_name("simple_net.py"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours, theirs = _losses(result.stdout), _losses(single)
    assert len(ours) == len(theirs) == 10
    # Equal as printed; the tolerance only absorbs a last-digit flip from float32 rounding.
    assert all(abs(a - b) <= 1.5e-4 for a, b in zip(ours, theirs)), (ours, theirs)


def _layout_module():  # type: ignore[no-untyped-def]
    # Loaded by path: importing the package would initialize MPI in the test process.
    path = ROOT / "python" / "rmsprop" / "distributed" / "_layout.py"
    if not path.exists():
        import rmsprop

        path = Path(rmsprop.__file__).parent / "distributed" / "_layout.py"
    spec = importlib.util.spec_from_file_location("_layout_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 7])
@pytest.mark.parametrize(
    "sizes",
    [[1], [5], [0, 0, 3], [64, 65, 0, 127, 1], [1000, 3, 4096, 63], [100_003], [10**6, 17, 2**20]],
)
def test_layout_covers_everything_once_in_bounded_aligned_shards(
    sizes: list[int], ranks: int
) -> None:
    layout = _layout_module()
    itemsizes = [(2, 4, 8)[k % 3] for k in range(len(sizes))]
    plan = layout.Layout(sizes, itemsizes, ranks)
    total = sum(sizes)
    covered = 0
    for rank in range(ranks):
        start, stop = plan.shard(rank)
        assert start <= stop <= total
        assert stop - start <= math.ceil(total / ranks) + layout.CUT_UNIT - 1
        assert start == covered  # contiguous, in rank order
        for piece in plan.pieces(rank):
            assert piece.begin % layout.CUT_UNIT == 0  # cut on the tensor's own 64-element grid
            assert piece.byte % layout.BYTE_ALIGN == 0
            assert plan.byte_cuts[rank] <= piece.byte
            assert piece.byte + piece.size * itemsizes[piece.param] <= plan.byte_cuts[rank + 1]
            assert plan.offsets[piece.param] + piece.begin == max(start, plan.offsets[piece.param])
        covered = stop
    assert covered == total


def test_import_rmsprop_does_not_import_mpi4py() -> None:
    code = "import rmsprop, sys; assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("ranks", [2, 3, 4, 7, 32])
@pytest.mark.parametrize(
    "sizes", [[5000], [4096, 100, 4097], [70_000, 3, 4096, 63, 300_001], [20_000, 37, 4096, 5]]
)
def test_layout_cuts_eight_bit_tensors_on_whole_blocks(sizes: list[int], ranks: int) -> None:
    """Tensors with 8-bit state (here every one of >= 4096 elements) are cut on multiples of
    256 from their start, so no block straddles two ranks; a range then exceeds ceil(total/N)
    by at most 255 elements."""
    layout = _layout_module()
    unit = layout.EIGHT_BIT_CUT_UNIT
    units = [unit if size >= 4096 else layout.CUT_UNIT for size in sizes]
    plan = layout.Layout(sizes, [4] * len(sizes), ranks, units)
    total = sum(sizes)
    owners: dict[int, set[int]] = {}
    covered = 0
    for rank in range(ranks):
        start, stop = plan.shard(rank)
        assert start == covered and stop - start <= math.ceil(total / ranks) + unit - 1
        for piece in plan.pieces(rank):
            size = sizes[piece.param]
            assert piece.begin % units[piece.param] == 0
            assert piece.end % units[piece.param] == 0 or piece.end == size
            owners.setdefault(piece.param, set()).add(rank)
        covered = stop
    assert covered == total
    if ranks * unit > max(sizes):  # more ranks than blocks in every tensor: some own none
        assert all(len(ranks_of) < ranks for ranks_of in owners.values())
    with pytest.raises(ValueError, match="multiples of CUT_UNIT"):
        layout.Layout(sizes, [4] * len(sizes), ranks, [100] * len(sizes))
