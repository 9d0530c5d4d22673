"""Data-parallel training over MPI with sharded optimizer state (ZeRO stage 1).

Needs mpi4py and an MPI library (``pip install "rmsprop[mpi]"`` brings mpi4py and the MPICH
wheel); ``import rmsprop`` never imports this module. Launch scripts with
``mpiexec -n N python -m mpi4py train.py`` so that an exception on one rank aborts the job.

Example:
    >>> import numpy as np
    >>> from rmsprop.distributed import ShardedRMSprop
    >>> w, b = np.zeros((3, 2), np.float32), np.zeros(3, np.float32)
    >>> opt = ShardedRMSprop([w, b], lr=0.1)  # MPI.COMM_WORLD; one rank here
    >>> opt.step([np.ones((3, 2), np.float32), np.ones(3, np.float32)])
    >>> float(w[0, 0]) < 0
    True
"""

from __future__ import annotations

try:
    from mpi4py import MPI  # noqa: F401  (initializes MPI)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rmsprop.distributed needs mpi4py and an MPI library: pip install 'rmsprop[mpi]'"
    ) from exc

from ._packing import packed_copies
from ._sharded import ShardedRMSprop

__all__ = ["ShardedRMSprop", "packed_copies"]
