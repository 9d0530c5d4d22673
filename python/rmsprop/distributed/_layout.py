"""Where every element of the flattened parameter space lives: shard cut points and the padded
byte layout that gradients and params travel in. Pure bookkeeping: no MPI, no arrays, no math.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

#: Cut points sit at multiples of this many elements from the start of the tensor they fall in,
#: so a shard piece starts on a cache line of its tensor (the core splits threads by lines).
CUT_UNIT = 64
#: The cut unit of a tensor with 8-bit state: one scale covers a block of 256 elements from the
#: tensor's start, computed from all of them, so a block must never straddle two ranks.
EIGHT_BIT_CUT_UNIT = 256
#: Every tensor starts on a cache line of the flat byte layout; padding fills the gaps.
BYTE_ALIGN = 64


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class Piece:
    """The part ``[begin, end)`` of flattened param ``param`` that one rank owns."""

    param: int
    begin: int
    end: int
    byte: int  # offset of element ``begin`` in the flat byte layout

    @property
    def size(self) -> int:
        return self.end - self.begin


class Layout:
    """Shards of ``ranks`` ranks over params of the given sizes and item sizes (bytes).

    The flattened space is every param, in order, flattened in C order and concatenated
    (SPEC §7). It is cut into ``ranks`` contiguous ranges near ``total * r / ranks``, each cut
    moved down to a multiple of its tensor's unit (``units[k]``, CUT_UNIT by default;
    EIGHT_BIT_CUT_UNIT for tensors with 8-bit state) from that tensor's start; no range
    exceeds ``ceil(total / ranks) + unit - 1`` elements for the largest unit of a tensor a cut
    falls in (+63, or +255 with 8-bit state), and ranges may be empty. In the byte layout each
    tensor starts at a multiple of BYTE_ALIGN, so a rank's range is one contiguous, aligned
    byte range and every piece of it is cache-line aligned.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        itemsizes: Sequence[int],
        ranks: int,
        units: Sequence[int] | None = None,
    ) -> None:
        units = [CUT_UNIT] * len(sizes) if units is None else [int(u) for u in units]
        if ranks < 1 or len(sizes) != len(itemsizes) or len(units) != len(sizes):
            raise ValueError("internal: bad layout arguments")
        if any(u < 1 or u % CUT_UNIT for u in units):
            raise ValueError("internal: cut units must be multiples of CUT_UNIT")
        self.sizes = [int(s) for s in sizes]
        self.itemsizes = [int(s) for s in itemsizes]
        self.units = units
        self.ranks = ranks
        self.offsets: list[int] = []
        self.byte_starts: list[int] = []
        element = byte = 0
        for size, itemsize in zip(self.sizes, self.itemsizes):
            byte = _align(byte, BYTE_ALIGN)
            self.offsets.append(element)
            self.byte_starts.append(byte)
            element += size
            byte += size * itemsize
        self.total = element
        self.nbytes = _align(byte, BYTE_ALIGN)
        self.cuts = [self._snap(self.total * r // ranks) for r in range(ranks)]
        self.cuts.append(self.total)
        self.byte_cuts = [self.byte_of(cut) for cut in self.cuts]

    def _tensor_at(self, element: int) -> int:
        """Index of the tensor holding ``element`` (< total): the last one starting at or before
        it. An empty tensor is never that one, since the tensor after it starts where it does."""
        return bisect.bisect_right(self.offsets, element) - 1

    def _snap(self, element: int) -> int:
        if element >= self.total:
            return self.total
        k = self._tensor_at(element)
        start = self.offsets[k]
        return start + (element - start) // self.units[k] * self.units[k]

    def byte_of(self, element: int) -> int:
        """Byte offset of flattened element ``element`` (``nbytes`` for ``total``)."""
        if element >= self.total:
            return self.nbytes
        k = self._tensor_at(element)
        return self.byte_starts[k] + (element - self.offsets[k]) * self.itemsizes[k]

    def shard(self, rank: int) -> tuple[int, int]:
        return self.cuts[rank], self.cuts[rank + 1]

    def pieces(self, rank: int) -> list[Piece]:
        """The parts of tensors in ``rank``'s range, in param order (none for an empty range)."""
        start, stop = self.shard(rank)
        out = []
        for k, (offset, size) in enumerate(zip(self.offsets, self.sizes)):
            begin, end = max(start, offset), min(stop, offset + size)
            if begin < end:
                byte = self.byte_starts[k] + (begin - offset) * self.itemsizes[k]
                out.append(Piece(k, begin - offset, end - offset, byte))
        return out
