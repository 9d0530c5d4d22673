"""Fixtures that run a test once per supported ISA and per thread count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import rmsprop

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
