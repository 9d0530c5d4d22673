"""The data movement of one sharded step: gradients to the ranks that own them, the rank-order
sum SPEC §7 defines, and the updated params back to every rank. All buffers are allocated once.
The only arithmetic here is that sum (and the one division of "mean"); the step is the core's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from .._buffers import is_sixteen_bit
from ._checks import _address
from ._layout import Layout, Piece
from ._packing import aligned_bytes


def _root(array: np.ndarray) -> Any:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def flat_view(arrays: Sequence[np.ndarray | None], layout: Layout) -> np.ndarray | None:
    """The uint8 buffer the arrays are views of, if they sit exactly where ``layout`` puts them
    (as ``packed_copies`` makes them) and are all present; else None."""
    if any(a is None for a in arrays):
        return None
    placed = [(a, s) for a, s in zip(arrays, layout.byte_starts) if a is not None and a.size]
    if not placed:
        return None
    root = _root(placed[0][0])
    if not (root.flags.c_contiguous and root.flags.writeable):
        return None
    base = _address(placed[0][0]) - placed[0][1]
    for array, start in placed:  # empty arrays have no address to check
        if _root(array) is not root or _address(array) != base + start:
            return None
    offset = base - _address(root)
    if offset < 0 or offset + layout.nbytes > root.nbytes:
        return None
    flat: np.ndarray = root.reshape(-1).view(np.uint8)[offset : offset + layout.nbytes]
    return flat


def _typed(buffer: np.ndarray, byte: int, count: int, dtype: np.dtype) -> np.ndarray:
    view: np.ndarray = buffer[byte : byte + count * dtype.itemsize].view(dtype)
    return view


class Exchange:
    """Moves one rank's gradients and params for a fixed layout and communicator."""

    def __init__(
        self,
        comm: MPI.Comm,
        layout: Layout,
        params: Sequence[np.ndarray],
        reduction: str,
    ) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.ranks = comm.Get_size()
        self.layout = layout
        self.params = list(params)
        self.dtypes = [p.dtype for p in params]
        self.reduction = reduction
        self.pieces: list[Piece] = layout.pieces(self.rank)
        self.flat_params = [p.reshape(-1) for p in params]
        self.piece_params = [self.flat_params[c.param][c.begin : c.end] for c in self.pieces]
        byte_start, byte_stop = layout.byte_cuts[self.rank], layout.byte_cuts[self.rank + 1]
        self.shard_bytes = byte_stop - byte_start
        counts = [layout.byte_cuts[q + 1] - layout.byte_cuts[q] for q in range(self.ranks)]
        self.gather_spec = (counts, layout.byte_cuts[:-1])
        # Where the params are gathered: the user's own buffer when the params are views of one
        # buffer in the layout (no copy), else a staging buffer copied to and from.
        self.param_flat = flat_view(self.params, layout)
        self.zero_copy = self.param_flat is not None
        self.copies_in: list[tuple[np.ndarray, np.ndarray]] = []
        self.copies_out: list[tuple[np.ndarray, np.ndarray]] = []
        if self.param_flat is None:
            self.param_flat = aligned_bytes(layout.nbytes)
            for q in range(self.ranks):
                for c in layout.pieces(q):
                    staged = _typed(self.param_flat, c.byte, c.size, self.dtypes[c.param])
                    user = self.flat_params[c.param][c.begin : c.end]
                    (self.copies_in if q == self.rank else self.copies_out).append((staged, user))
        self.reduced: list[np.ndarray] = []
        if reduction != "none":
            self._init_reduction(byte_start)

    def _init_reduction(self, byte_start: int) -> None:
        layout, size = self.layout, self.shard_bytes
        self.send: np.ndarray | None = None  # allocated on first use: flat grads need none
        self.recv = aligned_bytes(size * self.ranks)
        # A rank's own chunk never goes through MPI: it is packed straight into place.
        sizes = [layout.byte_cuts[q + 1] - layout.byte_cuts[q] for q in range(self.ranks)]
        sizes[self.rank] = 0
        self.alltoall_send = (sizes, layout.byte_cuts[:-1])
        counts = [0 if q == self.rank else size for q in range(self.ranks)]
        self.alltoall_recv = (counts, [q * size for q in range(self.ranks)])
        self.own = self.recv[self.rank * size : (self.rank + 1) * size]
        self.byte_range = (byte_start, byte_start + size)
        self.plan: list[tuple[int, int, int, np.ndarray]] = []
        # Consecutive pieces of one dtype form one run (the padding between them is summed too,
        # harmlessly), so the sum is a few NumPy calls per rank, not one per tensor.
        runs: list[tuple[np.dtype, int, int]] = []
        for j, c in enumerate(self.pieces):
            dtype = self.dtypes[c.param]
            begin = c.byte - byte_start
            end = self.pieces[j + 1].byte - byte_start if j + 1 < len(self.pieces) else size
            if runs and runs[-1][0] == dtype:
                runs[-1] = (dtype, runs[-1][1], end)
            else:
                runs.append((dtype, begin, end))
        self.runs = [
            [_typed(self.recv, q * size + b, (e - b) // d.itemsize, d) for q in range(self.ranks)]
            for d, b, e in runs
        ]
        longest16 = max((len(r[0]) for r in self.runs if is_sixteen_bit(r[0].dtype)), default=0)
        self.scratch = np.empty(longest16, dtype=np.float32)
        # The reduced gradient of each piece lands in the first received chunk.
        self.reduced = [
            _typed(self.recv, c.byte - byte_start, c.size, self.dtypes[c.param])
            for c in self.pieces
        ]

    def reduce(self, grads: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
        """This rank's pieces of the reduced gradients (None where the grad is None)."""
        if self.reduction == "none":
            flat = [None if g is None else g.reshape(-1) for g in grads]
            return [
                None if flat[c.param] is None else flat[c.param][c.begin : c.end]  # type: ignore[index]
                for c in self.pieces
            ]
        send = flat_view(grads, self.layout)
        if send is None:
            send = self._pack(grads)
        else:
            np.copyto(self.own, send[self.byte_range[0] : self.byte_range[1]])
        self.comm.Alltoallv(
            [send, self.alltoall_send, MPI.BYTE], [self.recv, self.alltoall_recv, MPI.BYTE]
        )
        with np.errstate(all="ignore"):  # padding bytes and the caller's infs are summed too
            for chunks in self.runs:
                self._sum_in_rank_order(chunks)
        return [None if grads[c.param] is None else r for c, r in zip(self.pieces, self.reduced)]

    def _pack(self, grads: Sequence[np.ndarray | None]) -> np.ndarray:
        """Copy the grads into the send buffer, this rank's own range into its chunk."""
        if self.send is None:
            self.send = aligned_bytes(self.layout.nbytes)
            mine = {c.param: c for c in self.pieces}
            start = self.byte_range[0]
            for k, size in enumerate(self.layout.sizes):
                c = mine.get(k)
                cuts = [0, size] if c is None else [0, c.begin, c.end, size]
                for b, e in zip(cuts, cuts[1:]):
                    if b == e:
                        continue
                    if c is not None and b == c.begin:
                        dest = _typed(self.own, c.byte - start, e - b, self.dtypes[k])
                    else:
                        byte = self.layout.byte_starts[k] + b * self.dtypes[k].itemsize
                        dest = _typed(self.send, byte, e - b, self.dtypes[k])
                    self.plan.append((k, b, e, dest))
        for k, b, e, dest in self.plan:
            g = grads[k]
            if g is not None:
                np.copyto(dest, g.reshape(-1)[b:e])
        return self.send

    def _sum_in_rank_order(self, chunks: list[np.ndarray]) -> None:
        """((g_0 + g_1) + g_2) + ... in the state precision, then / N once for "mean"."""
        first = chunks[0]
        divide = self.reduction == "mean" and self.ranks > 1
        if not is_sixteen_bit(first.dtype):
            for chunk in chunks[1:]:
                np.add(first, chunk, out=first)
            if divide:
                np.divide(first, first.dtype.type(self.ranks), out=first)
            return
        if self.ranks == 1:
            return  # g_0 / 1, rounded back to its own dtype, is g_0
        acc = self.scratch[: first.size]
        np.copyto(acc, first, casting="same_kind")
        for chunk in chunks[1:]:
            np.add(acc, chunk, out=acc, dtype=np.float32)
        if divide:
            np.divide(acc, np.float32(self.ranks), out=acc)
        np.copyto(first, acc, casting="unsafe")  # round to nearest even

    def gather(self) -> None:
        """Every rank's updated pieces into every rank's params."""
        for staged, user in self.copies_in:
            np.copyto(staged, user)
        self.comm.Allgatherv(MPI.IN_PLACE, [self.param_flat, self.gather_spec, MPI.BYTE])
        for staged, user in self.copies_out:
            np.copyto(user, staged)
