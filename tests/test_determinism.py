"""Bit-identical results on every ISA and thread count (SPEC §5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import rmsprop
from cases import REPRESENTATIVE_IDS, REPRESENTATIVE_OPTION_SETS
from conftest import SUPPORTED_ISAS, THREAD_COUNTS
from rmsprop import RMSprop

GRAIN = rmsprop.config()["parallel_grain"]
# Sizes around SIMD lanes, cache lines and the grain where the work starts to be split.
SIZES = [1, 15, 16, 17, 63, 65, 2 * GRAIN - 1, 2 * GRAIN + 1, 3 * GRAIN + 5, 1_000_003]


def run(
    params0: list[np.ndarray], grads: list[list[np.ndarray]], isa: str, threads: int, **options: Any
) -> list[np.ndarray]:
    before_isa, before_threads = rmsprop.config()["isa"], rmsprop.get_num_threads()
    rmsprop.set_isa(isa)
    rmsprop.set_num_threads(threads)
    try:
        params = [p.copy() for p in params0]
        opt = RMSprop(params, **options)
        for g in grads:
            opt.step(g)
        return params + [
            buf for s in opt.state for buf in s.values() if isinstance(buf, np.ndarray)
        ]
    finally:
        rmsprop.set_isa(before_isa)
        rmsprop.set_num_threads(before_threads)


def assert_same_bits_everywhere(params0, grads, **options) -> None:
    baseline = run(params0, grads, "baseline", 1, **options)
    for isa in SUPPORTED_ISAS:
        for threads in THREAD_COUNTS:
            other = run(params0, grads, isa, threads, **options)
            for a, b in zip(baseline, other):
                assert a.tobytes() == b.tobytes(), (isa, threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("options", REPRESENTATIVE_OPTION_SETS, ids=REPRESENTATIVE_IDS)
def test_one_tensor_same_bits_on_every_isa_and_thread_count(size, dtype, options) -> None:
    rng = np.random.default_rng(size)
    p0 = [rng.standard_normal(size).astype(dtype)]
    # Raw normal gradients include tiny and cancelling values: bit identity must hold there too.
    grads = [[rng.standard_normal(size).astype(dtype)] for _ in range(3)]
    assert_same_bits_everywhere(p0, grads, **options)


def test_many_tensors_split_across_threads_same_bits() -> None:
    rng = np.random.default_rng(0)
    sizes = [1, 17, 4096, 3 * GRAIN + 1, 33, GRAIN - 3, 100_001, 7]
    p0 = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3)]
    assert_same_bits_everywhere(p0, grads, momentum=0.9, centered=True)


def test_special_values_same_bits() -> None:
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3e38, -3e38, 1e-38] * 5, dtype=np.float32
    )
    p0 = [np.roll(specials, 3).copy()]
    grads = [[specials.copy()], [np.roll(specials, 1).copy()]]
    with np.errstate(all="ignore"):
        assert_same_bits_everywhere(p0, grads, centered=True, momentum=0.5, weight_decay=0.1)
        assert_same_bits_everywhere(p0, grads, eps=0.0)
