"""Threads: the GIL is released during the kernel, and nothing is ever corrupted."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

import rmsprop
from rmsprop import RMSprop

STEPS = 30


def make_problem(seed: int, n: int = 300_000):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    return p0, grads


def train(p: np.ndarray, grads: list[np.ndarray], opt: RMSprop) -> None:
    for k in range(STEPS):
        opt.step([grads[k % len(grads)]])


def run_threads(targets) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrapped(fn):
        def body():
            try:
                barrier.wait()
                fn()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        return body

    threads = [threading.Thread(target=wrapped(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_two_optimizers_in_two_threads_match_sequential_runs_bitwise() -> None:
    problems = [make_problem(1), make_problem(2)]
    sequential = []
    for p0, grads in problems:
        p = p0.copy()
        train(p, grads, RMSprop([p], momentum=0.9, centered=True))
        sequential.append(p)
    params = [p0.copy() for p0, _ in problems]
    opts = [RMSprop([p], momentum=0.9, centered=True) for p in params]
    run_threads([lambda i=i: train(params[i], problems[i][1], opts[i]) for i in range(2)])
    for a, b in zip(sequential, params):
        assert a.tobytes() == b.tobytes()


def test_one_optimizer_stepped_from_two_threads_is_serialized() -> None:
    """With the same gradient every step, N serialized steps give the same bits in any order;
    interleaved (racing) steps would not."""
    p0, grads = make_problem(3)
    g = grads[0]
    reference = p0.copy()
    ref_opt = RMSprop([reference], momentum=0.9)
    for _ in range(2 * STEPS):
        ref_opt.step([g])

    p = p0.copy()
    opt = RMSprop([p], momentum=0.9)

    def worker() -> None:
        for _ in range(STEPS):
            opt.step([g])

    run_threads([worker, worker])
    assert opt.state[0]["step"] == 2 * STEPS
    assert p.tobytes() == reference.tobytes()


def test_gil_is_released_while_stepping() -> None:
    """A Python thread runs *during* a step's kernel. A C call that holds the GIL never hands
    it over (the switch interval is only checked between bytecodes), so the counter can only
    advance inside the call if the core released the GIL: held, it advances in no call at
    all. The kernel runs on one thread so that, on a loaded 2-core host, the counter has a
    core to run on; one advance in ten calls proves the release."""
    p = np.zeros(8_000_000, np.float32)
    g = np.ones_like(p)
    opt = RMSprop([p])
    opt.step([g])  # allocate state outside the measured calls
    ticks = 0
    done = threading.Event()

    def counter() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    t = threading.Thread(target=counter)
    t.start()
    advanced = 0
    threads_before = rmsprop.get_num_threads()
    rmsprop.set_num_threads(1)
    try:
        for _ in range(10):
            time.sleep(0.01)  # let the counter run, then take the GIL back
            before = ticks
            opt.step([g])
            advanced += ticks > before
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(old_interval)
        rmsprop.set_num_threads(threads_before)
    assert advanced >= 1
