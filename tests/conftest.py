"""Fixtures that run a test once per supported ISA and per thread count."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

import rmsprop

# CI explores the same examples every run (a red CI must be reproducible); locally each run
# explores new ones. HYPOTHESIS_PROFILE=long digs deeper.
settings.register_profile("ci", derandomize=True)
settings.register_profile("long", max_examples=3000)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)

SUPPORTED_ISAS = rmsprop.config()["isas_supported"]
THREAD_COUNTS = (1, 2)


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Pins the kernel to each ISA this build and CPU support, then restores the default."""
    before = rmsprop.config()["isa"]
    rmsprop.set_isa(request.param)
    yield request.param
    rmsprop.set_isa(before)


@pytest.fixture(params=THREAD_COUNTS)
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    before = rmsprop.get_num_threads()
    rmsprop.set_num_threads(request.param)
    yield request.param
    rmsprop.set_num_threads(before)
