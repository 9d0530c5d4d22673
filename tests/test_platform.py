"""Build and process facts: ISA objects, run-time ISA choice, threads, fork safety."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

import rmsprop
from rmsprop import RMSprop, _core


def functions_by_isa_namespace() -> dict[str, list[str]]:
    """Disassembly lines of every function of each ISA namespace of the built extension."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (binutils) is not installed")
    listing = subprocess.run(
        [objdump, "-d", "-C", "--no-show-raw-insn", _core.__file__],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    by_ns: dict[str, list[str]] = defaultdict(list)
    current = None
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if header:
            found = re.search(r"rmsprop::detail::(baseline|avx2|avx512)::", header.group(1))
            current = found.group(1) if found else None
        elif current and line.strip():
            by_ns[current].append(line)
    return by_ns


def test_baseline_kernel_has_no_avx_registers_and_avx512_kernel_has_them() -> None:
    code = functions_by_isa_namespace()
    assert code["baseline"], "no baseline kernel functions found (symbols stripped?)"
    wide = [line for line in code["baseline"] if re.search(r"%[yz]mm", line)]
    assert not wide, wide[:5]
    if "avx512" in rmsprop.config()["isas_compiled"]:
        assert any("%zmm" in line for line in code["avx512"])
        assert not any("%zmm" in line for line in code["avx2"])


def run_python(code: str, **env: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()


def test_environment_variable_caps_the_isa() -> None:
    assert (
        run_python("import rmsprop; print(rmsprop.config()['isa'])", RMSPROP_ISA="baseline")
        == "baseline"
    )
    # The top level caps nothing: the best ISA this CPU supports (the parent may itself run
    # under a cap, so the child reports both).
    active, best = run_python(
        "import rmsprop; c = rmsprop.config(); print(c['isa'], c['isas_supported'][-1])",
        RMSPROP_ISA="avx512",
    ).split()
    assert active == best


def test_unknown_isa_in_environment_warns_and_keeps_the_best() -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", "import rmsprop"],
        capture_output=True,
        text=True,
        env={**os.environ, "RMSPROP_ISA": "sse9"},
    )
    assert out.returncode != 0 and "RMSPROP_ISA='sse9'" in out.stderr


def test_omp_num_threads_sets_the_default() -> None:
    assert (
        run_python("import rmsprop; print(rmsprop.get_num_threads())", OMP_NUM_THREADS="1") == "1"
    )


def test_set_isa_rejects_unsupported() -> None:
    compiled = rmsprop.config()["isas_compiled"]
    supported = rmsprop.config()["isas_supported"]
    for isa in compiled:
        if isa not in supported:
            # Unsupported by the CPU, or above the RMSPROP_ISA cap this process runs under.
            with pytest.raises(ValueError, match=r"not supported|above the cap"):
                rmsprop.set_isa(isa)


def _step_in_child(queue) -> None:  # pragma: no cover - runs in the child
    p = np.ones(1_000_000, np.float32)
    RMSprop([p]).step([np.ones_like(p)])
    queue.put(float(p[0]))


def _step_shared_optimizer_in_child(opt: RMSprop, queue) -> None:  # pragma: no cover - child
    p = opt.param_groups[0]["params"][0]
    opt.step([np.ones_like(p)])
    queue.put(float(p[0]))


def run_forked(target, *args, hold=None) -> float:
    """Run target(*args, queue) in a forked child (started while ``hold`` is held, if given)
    and return what it put in the queue; fail if the child hangs or crashes."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=target, args=(*args, queue))
    with hold if hold is not None else contextlib.nullcontext():
        child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail(f"forked child hung in {target.__name__}")
    assert child.exitcode == 0
    return float(queue.get(timeout=5))


def test_forked_child_steps_without_hanging() -> None:
    rmsprop.set_num_threads(2)
    # The parent goes parallel first, so libgomp's pool exists when we fork.
    big = np.ones(1_000_000, np.float32)
    RMSprop([big]).step([np.ones_like(big)])
    assert run_forked(_step_in_child) == pytest.approx(big[0])


def test_forked_child_can_step_an_optimizer_the_parent_was_stepping() -> None:
    """fork() while another parent thread is inside opt.step() copies the optimizer's lock in
    its held state; the child must get a fresh one, not wait forever. The lock is held here
    directly, which is exactly what the child inherits in that race."""
    p = np.ones(1000, np.float32)
    opt = RMSprop([p])
    assert run_forked(_step_shared_optimizer_in_child, opt, hold=opt._lock) < 1.0
    assert p[0] == 1.0  # the child's step changed the child's copy only
