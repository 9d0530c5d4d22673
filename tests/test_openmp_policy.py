"""The wait policy of a vendored OpenMP runtime (rmsprop/_openmp.py): set only while the core
loads, only for a vendored copy, never over the user's own settings, never left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmsprop import _openmp


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Records GOMP_SPINCOUNT as the extension import would see it."""
    calls: list[str | None] = []
    monkeypatch.setattr(
        _openmp.importlib,
        "import_module",
        lambda name: calls.append(os.environ.get("GOMP_SPINCOUNT")),
    )
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "RMSPROP_OMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_vendored_runtime_loads_passive_and_environment_restored(monkeypatch, seen) -> None:
    monkeypatch.setattr(_openmp, "vendored_libgomp", lambda: [Path("libgomp-0000.so.1")])
    _openmp.load_core()
    assert seen == [_openmp.VENDORED_GOMP_SPINCOUNT]
    assert "GOMP_SPINCOUNT" not in os.environ


def test_vendored_spin_count_can_be_chosen(monkeypatch, seen) -> None:
    monkeypatch.setattr(_openmp, "vendored_libgomp", lambda: [Path("libgomp-0000.so.1")])
    monkeypatch.setenv("RMSPROP_OMP_SPINCOUNT", "300000")
    _openmp.load_core()
    assert seen == ["300000"]
    assert "GOMP_SPINCOUNT" not in os.environ


@pytest.mark.parametrize("name", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_user_setting_wins(monkeypatch, seen, name) -> None:
    monkeypatch.setattr(_openmp, "vendored_libgomp", lambda: [Path("libgomp-0000.so.1")])
    monkeypatch.setenv(name, "300000" if name == "GOMP_SPINCOUNT" else "ACTIVE")
    _openmp.load_core()
    assert seen == [os.environ.get("GOMP_SPINCOUNT")]
    assert os.environ[name] in ("300000", "ACTIVE")


def test_shared_system_runtime_untouched(monkeypatch, seen) -> None:
    monkeypatch.setattr(_openmp, "vendored_libgomp", lambda: [])
    _openmp.load_core()
    assert seen == [None]


def test_import_leaves_no_trace_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import os, rmsprop; print(os.environ.get('GOMP_SPINCOUNT'), rmsprop.config()['openmp'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "None"
