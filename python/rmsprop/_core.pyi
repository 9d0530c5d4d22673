"""Types of the private C++ core (cpp/bindings). Use the rmsprop package, not this module."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from rmsprop.rows import RowGrad

__version__: str
#: Hyper-parameter names in the order step_functional's options tuple uses.
OPTION_NAMES: tuple[str, ...]

def compiled_isas() -> list[str]: ...
def supported_isas() -> list[str]: ...
def active_isa() -> str: ...
def set_isa(name: str) -> None: ...
def limit_isa(name: str) -> None: ...
def openmp_enabled() -> bool: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def parallel_grain() -> int: ...
def _noise_words(key: int, first_quad: int, quads: int, impl: str) -> list[int]: ...
def step_optimizer(
    groups: list[dict[str, Any]],
    grads: Sequence[np.ndarray | RowGrad | None],
    states: list[dict[str, Any]],
    create_state_first: bool,
    skip_if_nonfinite: bool,
    placement: list[tuple[int, int, int]] | None = None,
    addends: list[list[np.ndarray] | None] | None = None,
) -> int:
    """0 applied, 1 a state lacks a buffer (create_state_first), 2 skipped (non-finite grad).

    ``addends[j]``: arrays the kernel adds to grad j in order, ((g + a0) + a1) + ..."""

def step_functional(
    options: tuple[Any, ...],
    param: np.ndarray,
    grad: np.ndarray | RowGrad,
    square_avg: np.ndarray,
    grad_avg: np.ndarray | None,
    momentum_buffer: np.ndarray | None,
    master_param: np.ndarray | None,
    step: int,
    square_avg_scale: np.ndarray | None = None,
    state_dtype: str | None = None,
) -> None: ...
def validate_options(options: Mapping[str, Any] | tuple[Any, ...]) -> None: ...
def roofline_pass(
    p: npt.NDArray[np.float32], g: npt.NDArray[np.float32], v: npt.NDArray[np.float32]
) -> None: ...
