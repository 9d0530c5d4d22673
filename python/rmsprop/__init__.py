"""Fast, faithful RMSProp for NumPy arrays.

A fused C++ kernel (one pass over memory, SIMD chosen at run time, OpenMP across cores) updates
your parameter arrays in place. Defaults and results match ``torch.optim.RMSprop``; options and
presets reproduce Keras, TF1, optax and the textbook formula.

Example:
    >>> import numpy as np
    >>> from rmsprop import RMSprop
    >>> w = np.ones(4, dtype=np.float32)
    >>> opt = RMSprop([w], lr=0.01)
    >>> opt.step([np.full(4, 0.5, dtype=np.float32)])
    >>> bool(np.all(w < 1))
    True
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ._openmp import load_core

try:
    load_core()  # first, so a vendored OpenMP runtime loads under the package's wait policy
    from . import _core
except ImportError as exc:  # pragma: no cover - only on a broken or source-tree install
    raise ImportError(
        "rmsprop's compiled extension rmsprop._core could not be imported. Install the package "
        "with `pip install .` (it builds the C++ core); running from the source tree without "
        "building does not work."
    ) from exc

from .functional import rmsprop_step
from .optimizer import PRESETS, RMSprop
from .rows import RowGrad

__version__: str = _core.__version__

__all__ = [
    "PRESETS",
    "RMSprop",
    "RowGrad",
    "__version__",
    "config",
    "get_num_threads",
    "rmsprop_step",
    "set_isa",
    "set_num_threads",
]

_ISA_ORDER = ("baseline", "avx2", "avx512")  # lowest first


def set_isa(name: str) -> None:
    """Pin the instruction set later steps use.

    Args:
        name: ``"baseline"``, ``"avx2"`` or ``"avx512"``.

    Raises:
        ValueError: if the name is unknown, or this build or CPU lacks that ISA
            (see ``config()["isas_supported"]``).

    Example:
        >>> import rmsprop
        >>> rmsprop.set_isa("baseline"); rmsprop.config()["isa"]
        'baseline'
        >>> rmsprop.set_isa(rmsprop.config()["isas_supported"][-1])
    """
    _core.set_isa(name)


def set_num_threads(n: int) -> None:
    """Set how many threads a step may use (small steps still run on one).

    Raises:
        ValueError: if ``n < 1``.
    """
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads a step may use: set_num_threads(), else OMP_NUM_THREADS, else the core count."""
    return int(_core.get_num_threads())


def config() -> dict[str, Any]:
    """Describe this build and what it runs on.

    Returns:
        A dict with ``version``, ``isa`` (active), ``isas_compiled``, ``isas_supported``,
        ``openmp``, ``num_threads`` and ``parallel_grain`` (elements below which a step stays
        on one thread).

    Example:
        >>> import rmsprop
        >>> sorted(rmsprop.config())[:3]
        ['isa', 'isas_compiled', 'isas_supported']
    """
    return {
        "version": __version__,
        "isa": _core.active_isa(),
        "isas_compiled": list(_core.compiled_isas()),
        "isas_supported": list(_core.supported_isas()),
        "openmp": bool(_core.openmp_enabled()),
        "num_threads": get_num_threads(),
        "parallel_grain": int(_core.parallel_grain()),
    }


def _apply_isa_cap_from_environment() -> None:
    """RMSPROP_ISA caps the kernels this process may use: nothing above it is ever run."""
    requested = os.environ.get("RMSPROP_ISA", "").strip().lower()
    if not requested:
        return
    if requested not in _ISA_ORDER:
        warnings.warn(
            f"RMSPROP_ISA={requested!r} is not one of {', '.join(_ISA_ORDER)}; ignored",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    _core.limit_isa(requested)


_apply_isa_cap_from_environment()
