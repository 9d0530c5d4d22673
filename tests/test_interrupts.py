"""Asynchronous exceptions (KeyboardInterrupt from a signal handler) during a step: the step is
applied and recorded, or not at all, wherever the exception lands."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

import rmsprop
from rmsprop import RMSprop

PACKAGE_DIR = str(Path(rmsprop.__file__).parent)


class Injected(BaseException):
    """Stands for KeyboardInterrupt: a BaseException that no `except Exception` catches."""


def snapshot(opt: RMSprop, params: list[np.ndarray]) -> tuple[Any, ...]:
    """Everything a step may change, as comparable values (bits of every array)."""
    states = tuple(
        tuple(
            sorted(
                (key, value.tobytes() if isinstance(value, np.ndarray) else value)
                for key, value in entry.items()
            )
        )
        for entry in opt.state
    )
    return tuple(p.tobytes() for p in params), states


def raise_at_opcode(n: int) -> Callable[[FrameType, str, Any], Any]:
    """A trace function raising Injected at the n-th bytecode run in the package's Python code."""
    count = [0]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            count[0] += 1
            if count[0] == n:
                raise Injected
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(PACKAGE_DIR):
            return None
        frame.f_trace_opcodes = True
        return local(frame, event, arg)

    return tracer


def first_step_case() -> tuple[RMSprop, list[np.ndarray], list[np.ndarray | None]]:
    p = np.linspace(-1.0, 1.0, 37, dtype=np.float32)
    return RMSprop([p], momentum=0.9, centered=True), [p], [np.full(37, 0.5, np.float32)]


def second_param_case() -> tuple[RMSprop, list[np.ndarray], list[np.ndarray | None]]:
    """One param already has state; the other is stepped for the first time, in another group;
    momentum was switched on after the first param's first step (it needs a new buffer)."""
    a = np.linspace(-1.0, 1.0, 33, dtype=np.float64)
    b = np.linspace(2.0, 3.0, 20, dtype=np.float32)
    opt = RMSprop([{"params": [a]}, {"params": [b], "lr": 0.1}])
    opt.step([np.full(33, 0.25), None])
    opt.param_groups[0]["momentum"] = 0.5
    return opt, [a, b], [np.full(33, -0.5), np.full(20, 0.75, np.float32)]


@pytest.mark.parametrize("make_case", [first_step_case, second_param_case])
def test_an_exception_at_any_bytecode_of_a_step_leaves_it_applied_and_recorded_or_undone(
    make_case: Callable[[], tuple[RMSprop, list[np.ndarray], list[np.ndarray | None]]],
) -> None:
    opt, params, grads = make_case()
    before = snapshot(opt, params)
    opt.step(grads)
    after = snapshot(opt, params)
    outcomes = {"undone": 0, "applied": 0}
    n = 0
    while True:
        n += 1
        opt, params, grads = make_case()
        sys.settrace(raise_at_opcode(n))
        try:
            opt.step(grads)
        except Injected:
            pass
        else:
            break  # n is past the step's last bytecode: every point was tried
        finally:
            sys.settrace(None)
        now = snapshot(opt, params)
        assert now in (before, after), f"a step interrupted at bytecode {n} is half done"
        if opt._lock.locked():
            # Raised between the with-block's last statement and its __exit__ call: a trace
            # function can raise there, CPython never delivers an asynchronous exception there
            # (it checks for them after the call, once the lock is released).
            opt._lock.release()
        outcomes["undone" if now == before else "applied"] += 1
        # The optimizer stays usable: stepping again gives the uninterrupted result.
        if now == before:
            opt.step(grads)
            assert snapshot(opt, params) == after
    # The injection reached both sides of the core call.
    assert outcomes["undone"] > 10
    assert outcomes["applied"] > 0


def test_an_interrupt_right_after_the_core_applied_a_first_step_keeps_its_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reviewer's case: the update is in the param, so the new state must stay."""
    from rmsprop import optimizer

    real_step = optimizer._core.step_optimizer

    def step_then_interrupt(*args: Any) -> int:
        result: int = real_step(*args)
        if args[3] is False:  # the call that creates state first
            raise KeyboardInterrupt
        return result

    opt, params, grads = first_step_case()
    reference, ref_params, _ = first_step_case()
    reference.step(grads)
    monkeypatch.setattr(optimizer._core, "step_optimizer", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        opt.step(grads)
    monkeypatch.undo()
    assert snapshot(opt, params) == snapshot(reference, ref_params)
    assert opt.state[0]["step"] == 1


def wait_for_alarm(armed: list[bool]) -> None:
    """Spin until the alarm fired (it may land anywhere until then). A function of its own:
    CPython 3.13.0 leaves the back-edge of a loop that ends a try body outside the try, so an
    exception raised there by a signal handler would escape the test's except clause."""
    while armed[0]:
        pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_timer_interrupts_during_many_first_steps_never_leave_half_a_step() -> None:
    """SIGALRM at random moments around first steps: every outcome is all or nothing."""
    rng = np.random.default_rng(9)
    p0 = rng.standard_normal(257).astype(np.float32)
    g = rng.standard_normal(257).astype(np.float32)
    reference_param = p0.copy()
    reference = RMSprop([reference_param], momentum=0.9)
    reference.step([g])
    armed = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        if armed[0]:
            armed[0] = False
            raise Injected

    previous = signal.signal(signal.SIGALRM, handler)
    interrupted = 0
    try:
        for trial in range(1500):
            p = p0.copy()
            opt = RMSprop([p], momentum=0.9)
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, float(rng.uniform(1e-6, 120e-6)))
                opt.step([g])
                wait_for_alarm(armed)
            except Injected:
                interrupted += 1
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            if opt.state[0] == {}:
                assert np.array_equal(p, p0), f"trial {trial}: param changed, state empty"
            else:
                assert opt.state[0]["step"] == 1, f"trial {trial}"
                assert p.tobytes() == reference_param.tobytes(), f"trial {trial}"
                for key in ("square_avg", "momentum_buffer"):
                    assert opt.state[0][key].tobytes() == reference.state[0][key].tobytes()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted > 0


def test_skip_if_nonfinite_first_step_still_creates_nothing() -> None:
    p = np.ones(5, np.float32)
    opt = RMSprop([p], skip_if_nonfinite=True)
    assert opt.step([np.full(5, np.nan, np.float32)]) is False
    assert opt.state[0] == {}
    assert opt.step([np.ones(5, np.float32)]) is True
    assert opt.state[0]["step"] == 1
