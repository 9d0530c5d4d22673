"""The docstring examples of the public modules run and print what they say."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import rmsprop
import rmsprop.functional
import rmsprop.optimizer
import rmsprop.rows


@pytest.mark.parametrize(
    "module",
    [rmsprop, rmsprop.optimizer, rmsprop.functional, rmsprop.rows],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{module.__name__} has no docstring example"
    assert result.failed == 0
