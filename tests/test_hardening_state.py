"""Checkpoints under stress: snapshots taken while another thread steps, loads that either fit
completely or change nothing, hostile state dicts, and optimizers restored without their
params."""

from __future__ import annotations

import pickle
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

import rmsprop
from rmsprop import RMSprop

SIZES = (100_001, 60_000)  # large enough that a copy overlaps a step running without the GIL
OPTIONS: dict[str, Any] = {"lr": 1e-3, "momentum": 0.9, "centered": True}
MAX_STEPS = 100
SNAPSHOTS = 80


def problem(seed: int = 3) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    grads = [[rng.standard_normal(n).astype(np.float32) for n in SIZES] for _ in range(4)]
    return params, grads


def fingerprint(state: Mapping[Any, Any]) -> tuple[int, dict[Any, Any]]:
    """(the step count, every entry with its arrays' bytes hashed): small enough to keep
    hundreds of snapshots."""
    entries = {
        index: {
            key: hash(value.tobytes()) if isinstance(value, np.ndarray) else value
            for key, value in entry.items()
        }
        for index, entry in state.items()
        if entry
    }
    return (int(entries[0]["step"]) if 0 in entries else 0), entries


def reference_run(
    params0: list[np.ndarray], grads: list[list[np.ndarray]], steps: int
) -> tuple[list[dict[Any, Any]], RMSprop, list[np.ndarray]]:
    """Fingerprints of the state after each step 0..steps of an uninterrupted, unthreaded
    run, and that run's optimizer and params at the end."""
    params = [p.copy() for p in params0]
    opt = RMSprop(params, **OPTIONS)
    prints = [fingerprint(opt.state_dict()["state"])[1]]
    for k in range(steps):
        opt.step(grads[k % len(grads)])
        prints.append(fingerprint(opt.state_dict()["state"])[1])
    return prints, opt, params


@pytest.fixture
def one_kernel_thread() -> Iterator[None]:
    """The races are between Python threads; OpenMP workers on top only oversubscribe."""
    before = rmsprop.get_num_threads()
    rmsprop.set_num_threads(1)
    yield
    rmsprop.set_num_threads(before)


def race(opt: RMSprop, grads: list[list[np.ndarray]], take: Any) -> list[Any]:
    """Step opt in a background thread while this thread calls take() repeatedly; returns
    what take() returned (SNAPSHOTS times, unless the steps ran out first)."""
    go, stop = threading.Event(), threading.Event()

    def run() -> None:
        go.wait()
        for k in range(MAX_STEPS):
            if stop.is_set():
                break
            opt.step(grads[k % len(grads)])
            time.sleep(0)  # a lock is not fair: let the snapshots in between steps too

    thread = threading.Thread(target=run)
    thread.start()
    taken = []
    go.set()
    while thread.is_alive() and len(taken) < SNAPSHOTS:
        taken.append(take())
    stop.set()
    thread.join()
    return taken


@pytest.mark.usefixtures("one_kernel_thread")
def test_state_dict_and_pickle_taken_during_steps_are_consistent_and_resume_bitwise() -> None:
    params0, grads = problem()
    opt = RMSprop([p.copy() for p in params0], **OPTIONS)
    kept: list[dict[Any, Any]] = []

    def take() -> list[tuple[str, tuple[int, dict[Any, Any]]]]:
        state = opt.state_dict()["state"]
        if state.get(0) and state[0]["step"] > 0:
            kept[:] = [state]  # the latest mid-run snapshot is resumed from below
        restored = pickle.loads(pickle.dumps(opt))
        return [
            ("state_dict", fingerprint(state)),
            ("pickle", fingerprint(dict(enumerate(restored.state)))),
        ]

    snapshots = [snapshot for pair in race(opt, grads, take) for snapshot in pair]
    assert len(snapshots) > 4
    want, _, _ = reference_run(params0, grads, MAX_STEPS)
    for how, (count, entries) in snapshots:
        # Both params step together: their counts agree, and every array is that step's.
        assert entries == want[count], f"{how} at step {count} mixes two steps"
    # Resume from a snapshot taken mid-run: continues exactly as the run that never stopped.
    assert kept
    count = kept[0][0]["step"]
    _, _, resumed_params = reference_run(params0, grads, count)
    resumed = RMSprop(resumed_params, **OPTIONS)
    resumed.load_state_dict({"state": kept[0], "param_groups": opt.state_dict()["param_groups"]})
    for k in range(count, count + 10):
        resumed.step(grads[k % len(grads)])
    _, _, final = reference_run(params0, grads, count + 10)
    for got, expected in zip(resumed_params, final):
        assert got.tobytes() == expected.tobytes()


@pytest.mark.usefixtures("one_kernel_thread")
def test_load_state_dict_during_steps_is_never_torn() -> None:
    """With a constant gradient and no weight decay the state never depends on the params, so
    after any interleaving of loads of the step-k0 state and steps, a state with count c must
    equal the uninterrupted run's state at c."""
    params0, grads = problem(4)
    constant = [grads[0]]
    k0 = 5
    _, at_k0, _ = reference_run(params0, constant, k0)
    saved = at_k0.state_dict()
    opt = RMSprop([p.copy() for p in params0], **OPTIONS)

    def take() -> tuple[int, dict[Any, Any]]:
        opt.load_state_dict(saved)
        return fingerprint(opt.state_dict()["state"])

    states = race(opt, constant, take)
    states.append(fingerprint(opt.state_dict()["state"]))
    assert len(states) > 2
    want, _, _ = reference_run(params0, constant, k0 + MAX_STEPS)
    for count, entries in states:
        assert entries == want[count], f"the state at step {count} mixes two steps"


def assert_same_state(got: dict[Any, Any], want: dict[Any, Any], what: str) -> None:
    got = {index: entry for index, entry in got.items() if entry}
    assert sorted(got) == sorted(want), what
    for index, entry in want.items():
        assert sorted(got[index]) == sorted(entry), what
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert got[index][key].tobytes() == value.tobytes(), f"{what}: {key} of {index}"
            else:
                assert got[index][key] == value, f"{what}: {key} of {index}"


# ------------------------------------------------------------------ all-or-nothing loads


def stepped(n: int = 2, **options: Any) -> tuple[RMSprop, list[np.ndarray]]:
    params = [np.linspace(-1.0, 1.0, 9 + k, dtype=np.float32) for k in range(n)]
    opt = RMSprop(params, momentum=0.9, **options)
    for _ in range(3):
        opt.step([np.full_like(p, 0.5) for p in params])
    return opt, params


def _readonly(buf: np.ndarray) -> np.ndarray:
    out = buf.copy()
    out.setflags(write=False)
    return out


@pytest.mark.parametrize(
    "spoil",
    [
        lambda buf: None,
        lambda buf: _readonly(buf),
        lambda buf: np.zeros(buf.size + 1, buf.dtype),
        lambda buf: buf.astype(np.float64),
        lambda buf: np.repeat(buf, 2)[::2],
        lambda buf: "not an array",
    ],
    ids=["None", "read-only", "wrong-shape", "wrong-dtype", "strided", "str"],
)
def test_load_restores_everything_even_when_a_live_buffer_was_spoiled(spoil: Any) -> None:
    source, _ = stepped()
    saved = source.state_dict()
    opt, params = stepped()
    for _ in range(2):
        opt.step([np.full_like(p, -0.25) for p in params])
    live_views = [opt.state[0]["square_avg"], opt.state[0]["momentum_buffer"]]
    opt.state[1]["momentum_buffer"] = spoil(opt.state[1]["momentum_buffer"])
    opt.load_state_dict(saved)
    assert_same_state(opt.state_dict()["state"], saved["state"], "after the load")
    # Usable live buffers were written in place (views of them stay valid).
    assert opt.state[0]["square_avg"] is live_views[0]
    assert opt.state[0]["momentum_buffer"] is live_views[1]
    buffer = opt.state[1]["momentum_buffer"]
    assert buffer.flags.writeable and buffer.flags.c_contiguous
    assert buffer.ctypes.data % 64 == 0
    opt.step([np.full_like(p, 0.5) for p in params])
    source.step([np.full_like(p, 0.5) for p in params])
    assert_same_state(opt.state_dict()["state"], source.state_dict()["state"], "next step")


def test_load_never_writes_through_a_live_buffer_that_aliases_a_param() -> None:
    source, _ = stepped()
    saved = source.state_dict()
    opt, params = stepped()
    before = params[1].copy()
    opt.state[1]["square_avg"] = params[1]  # the user aliased the state to the param
    opt.load_state_dict(saved)
    assert params[1].tobytes() == before.tobytes()
    assert not np.shares_memory(opt.state[1]["square_avg"], params[1])
    assert_same_state(opt.state_dict()["state"], saved["state"], "after the load")


def test_a_refused_load_changes_nothing_even_with_spoiled_buffers() -> None:
    opt, _ = stepped()
    bad = opt.state_dict()
    opt.state[0]["momentum_buffer"] = None
    before = {i: dict(e) for i, e in enumerate(opt.state)}
    groups = [dict(g) for g in opt.param_groups]
    bad["state"][0]["step"] = 4
    bad["state"][1]["square_avg"] = bad["state"][1]["square_avg"][:-1]
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    assert {i: dict(e) for i, e in enumerate(opt.state)} == before
    assert opt.param_groups == groups


# ------------------------------------------------------------------ hostile state dicts


def hostile(edit: Any) -> dict[str, Any]:
    opt, _ = stepped(3)
    sd = opt.state_dict()
    edit(sd)
    return sd


def _set(container: dict[str, Any], key: Any, value: Any) -> None:
    container[key] = value


HOSTILE = {
    "group params [0, 0, 1]": (
        lambda sd: sd["param_groups"][0].update(params=[0, 0, 1]),
        "param index 0 again",
    ),
    "keys 1 and '1'": (
        lambda sd: _set(sd["state"], "1", sd["state"][1]),
        "two entries for param 1",
    ),
    "float key 1.9": (
        lambda sd: _set(sd["state"], 1.9, sd["state"].pop(1)),
        r"key 1\.9 .* must be a param index",
    ),
    "float key 1.0": (lambda sd: _set(sd["state"], 1.0, sd["state"].pop(1)), "param index"),
    "bool key": (lambda sd: _set(sd["state"], True, sd["state"].pop(1)), "param index"),
    "negative key": (lambda sd: _set(sd["state"], -1, sd["state"].pop(1)), "param index"),
    "key ' 1'": (lambda sd: _set(sd["state"], " 1", sd["state"].pop(1)), "param index"),
    "key for no param": (lambda sd: _set(sd["state"], 7, sd["state"].pop(1)), "for no param"),
    "bool group param": (
        lambda sd: sd["param_groups"][0].update(params=[0, True, 2]),
        "param index",
    ),
    "float group param": (
        lambda sd: sd["param_groups"][0].update(params=[0, 1.0, 2]),
        "param index",
    ),
    "group params a string": (
        lambda sd: sd["param_groups"][0].update(params="012"),
        "list of param indices",
    ),
    "param_groups a dict": (
        lambda sd: sd.update(param_groups={0: sd["param_groups"][0]}),
        "list of dicts",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_state_dicts_are_refused_and_change_nothing(case: str) -> None:
    edit, message = HOSTILE[case]
    sd = hostile(edit)
    opt, _ = stepped(3)
    opt.step([np.full_like(p, 0.1) for g in opt.param_groups for p in g["params"]])
    before = opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd)
    assert_same_state(opt.state_dict()["state"], before["state"], case)


def test_json_style_string_keys_and_numpy_int_indices_still_load() -> None:
    opt, _ = stepped(3)
    sd = opt.state_dict()
    converted = {
        "state": {str(k): v for k, v in sd["state"].items()},
        "param_groups": [
            {**g, "params": [np.int64(i) for i in g["params"]]} for g in sd["param_groups"]
        ],
    }
    fresh, _ = stepped(3)
    fresh.load_state_dict(converted)
    assert_same_state(fresh.state_dict()["state"], sd["state"], "converted")


class FakeTensor:
    """Duck-types a torch.Tensor (the test suite never needs torch for this)."""

    __module__ = "torch"

    def __init__(self, value: Any) -> None:
        self.value = np.asarray(value)

    def numpy(self) -> np.ndarray:
        return self.value

    def detach(self) -> FakeTensor:
        return self


def test_an_unconverted_torch_state_dict_is_refused_with_the_recipe() -> None:
    opt, _ = stepped()
    sd = opt.state_dict()
    sd["state"][0]["step"] = FakeTensor(np.float32(3.0))
    with pytest.raises(TypeError, match=r"torch\.Tensor.*v\.numpy\(\).*rmsprop\.torch\.RMSprop"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["state"][1]["square_avg"] = FakeTensor(sd["state"][1]["square_avg"])
    with pytest.raises(TypeError, match=r"\['state'\]\[1\]\['square_avg'\] is a torch\.Tensor"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = FakeTensor(0.01)
    with pytest.raises(TypeError, match=r"\['param_groups'\]\[0\]\['lr'\] is a torch\.Tensor"):
        opt.load_state_dict(sd)


# ------------------------------------------------------------------ restored without params


def test_an_unpickled_optimizer_whose_params_nobody_holds_warns_once() -> None:
    opt, _ = stepped()
    restored = pickle.loads(pickle.dumps(opt))
    grads = [np.full_like(p, 0.5) for g in restored.param_groups for p in g["params"]]
    with pytest.warns(UserWarning, match=r"params \[0, 1\] are held by nothing but"):
        restored.step(grads)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored.step(grads)


def test_params_pickled_with_the_optimizer_are_shared_and_do_not_warn() -> None:
    opt, params = stepped()
    arrays, restored = pickle.loads(pickle.dumps((params, opt)))
    before = [a.copy() for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored.step([np.full_like(a, 0.5) for a in arrays])
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before))


def test_only_the_detached_params_are_named() -> None:
    opt, params = stepped()
    first, restored = pickle.loads(pickle.dumps((params[0], opt)))
    with pytest.warns(UserWarning, match=r"params \[1\] are held"):
        restored.step([np.full_like(first, 0.5), np.full_like(params[1], 0.5)])


def test_the_documented_pattern_rebuilds_on_the_callers_arrays() -> None:
    opt, params = stepped()
    saved = pickle.dumps(opt.state_dict())
    arrays = [p.copy() for p in params]  # e.g. restored from np.savez
    fresh = RMSprop(arrays, momentum=0.9)
    fresh.load_state_dict(pickle.loads(saved))
    before = [a.copy() for a in arrays]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.step([np.full_like(a, 0.5) for a in arrays])
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before))
