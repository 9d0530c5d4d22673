"""The agreement step of the MPI sharder: before any data moves, every rank learns whether every
other rank's input was accepted and whether all ranks describe the same thing, so a refusal on
one rank makes every rank raise instead of leaving the others waiting forever. No math.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
from mpi4py import MPI

_OK, _TYPE_ERROR, _VALUE_ERROR, _OTHER = 0, 1, 2, 3


def canonical(value: Any) -> str:
    """A text that two ranks produce alike exactly when they hold the same value."""
    if isinstance(value, (bool, np.bool_)):
        return "b1" if value else "b0"
    if isinstance(value, (int, np.integer)):
        return f"i{int(value)}"
    if isinstance(value, (float, np.floating)):
        return "f" + float(value).hex()
    if isinstance(value, np.dtype):
        return "d" + value.str + value.name
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(canonical(v) for v in value) + ")"
    return "r" + repr(value)


def fingerprint(parts: Iterable[Any]) -> int:
    """A 63-bit digest of the canonical texts of ``parts``."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(canonical(part).encode())
        digest.update(b"\x00")
    return int.from_bytes(digest.digest(), "little") >> 1


class Agreement:
    """One small Allgather of (status, fingerprint) per check, buffers allocated once."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self._mine = np.zeros(2, dtype=np.int64)
        self._all = np.zeros((comm.Get_size(), 2), dtype=np.int64)

    def check(self, error: BaseException | None, digest: int, what: str) -> None:
        """Raise on every rank unless every rank passed ``error=None`` and the same ``digest``.

        A rank whose own input was refused re-raises its exception; the others raise a
        ValueError naming the refusing ranks and their messages. Collective: every rank of
        the communicator must call it, whatever happened before.
        """
        status = _OK
        if isinstance(error, TypeError):
            status = _TYPE_ERROR
        elif isinstance(error, ValueError):
            status = _VALUE_ERROR
        elif error is not None:
            status = _OTHER
        self._mine[0] = status
        self._mine[1] = digest if error is None else 0
        self.comm.Allgather(self._mine, self._all)
        failed = [int(r) for r in np.flatnonzero(self._all[:, 0] != _OK)]
        if failed:
            # Everyone knows a rank failed, so everyone takes part in this second exchange.
            messages = self.comm.allgather(None if error is None else str(error))
            if error is not None:
                raise error
            detail = "; ".join(f"rank {r}: {messages[r]}" for r in failed)
            ranks = ", ".join(map(str, failed))
            raise ValueError(
                f"rank {ranks} refused its input, so no rank changed anything ({detail})"
            )
        differing = [int(r) for r in np.flatnonzero(self._all[:, 1] != self._all[0, 1])]
        if differing:
            raise ValueError(
                f"{what} differ between ranks: rank {', '.join(map(str, differing))} "
                "disagree with rank 0; every rank must pass the same. Nothing was changed"
            )
