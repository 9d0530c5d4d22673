"""ShardedRMSprop: ZeRO stage 1 over MPI. Each rank keeps optimizer state for its shard of the
flattened params only; bookkeeping, agreement and data movement live here and in the sibling
modules, and the step on the owned range is the core's (no math here).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from .. import _core
from .._buffers import is_sixteen_bit
from .._checkpoint import load_into, pack_state_dict
from .._new_state import param_buffer_keys
from .._options import GROUP_KEYS, UNSET
from ..optimizer import RMSprop
from . import _shard_state
from ._agree import Agreement, fingerprint
from ._checks import GradChecks, check_params
from ._exchange import Exchange
from ._layout import Layout
from ._packing import flat_view
from ._shard_state import create_missing, cut_unit

REDUCTIONS = ("mean", "sum", "none")


class ShardedRMSprop:
    """RMSprop over MPI ranks with the optimizer state sharded across them (ZeRO stage 1).

    Every rank holds all params (the same shapes, dtypes and order) and computes gradients on
    its own data; ``step`` reduces them in rank order to the rank that owns each element, runs
    the fused step there on 1/N of the params, and gathers the updated params into every rank's
    own arrays. Params are bit-identical on all ranks after every step, and bit-identical to a
    single-process :class:`rmsprop.RMSprop` with the same options stepped with the reduced
    gradient, for any number of ranks and threads. Run scripts with
    ``mpiexec -n N python -m mpi4py train.py``, so that an uncaught exception aborts the job.

    Args:
        params: as :class:`rmsprop.RMSprop` (arrays or param-group dicts), identical in shape,
            dtype and order on every rank.
        comm: an ``mpi4py.MPI.Comm``; ``MPI.COMM_WORLD`` when None.
        grad_reduction: ``"mean"`` (default) or ``"sum"`` of the ranks' gradients, or
            ``"none"`` when every rank passes the same, already reduced gradients. The reduced
            gradient is ``((g_0 + g_1) + g_2) + ...`` in rank order in the state precision
            (float32 for float32 and 16-bit grads, float64 for float64), then for "mean"
            divided by N once; for 16-bit params it is then rounded to nearest-even into the
            param's dtype, and that 16-bit gradient is what the step uses.
        lr, alpha, eps, weight_decay, momentum, centered, maximize, eps_in_sqrt,
            lr_in_momentum, nesterov, decoupled_weight_decay, bias_correction,
            initial_square_avg, grad_scale, master_weights, stochastic_rounding,
            rounding_seed, skip_if_nonfinite, preset: as :class:`rmsprop.RMSprop`.
        state_dtype: as :class:`rmsprop.RMSprop` (per group, fixed after construction):
            ``"float32"``, ``"bfloat16"`` or ``"8bit"``. Each rank stores its shard's state
            exactly as the single-process optimizer stores those elements (bfloat16 rounding
            noise keyed on the global element index; 8-bit blocks of 256 aligned to each
            tensor's start, tensors under 4096 elements in float32, decided on the whole
            tensor). A block never straddles two ranks: shard cuts inside a tensor with 8-bit
            state sit on multiples of 256 from its start, so such a rank's range may exceed
            ``ceil(total / N)`` by up to 255 elements (otherwise by up to 63).

    Attributes:
        param_groups: the groups' hyper-parameters and ``"params"``; edit ``lr`` there on every
            rank alike (a schedule); ranks that disagree make the next step raise everywhere.
        shard: ``(start, stop)``, this rank's range of the flattened parameter space.
        comm: the communicator.

    Example:
        >>> import numpy as np
        >>> from mpi4py import MPI
        >>> from rmsprop.distributed import ShardedRMSprop
        >>> w = np.zeros(4, dtype=np.float32)
        >>> opt = ShardedRMSprop([w], MPI.COMM_SELF, lr=0.1)
        >>> opt.step([np.ones(4, dtype=np.float32)]); opt.shard
        (0, 4)
    """

    def __init__(
        self,
        params: Iterable[np.ndarray | Mapping[str, Any]],
        comm: MPI.Comm | None = None,
        *,
        grad_reduction: str = "mean",
        lr: float = UNSET,
        alpha: float = UNSET,
        eps: float = UNSET,
        weight_decay: float = UNSET,
        momentum: float = UNSET,
        centered: bool = UNSET,
        maximize: bool = UNSET,
        eps_in_sqrt: bool = UNSET,
        lr_in_momentum: bool = UNSET,
        nesterov: bool = UNSET,
        decoupled_weight_decay: bool = UNSET,
        bias_correction: bool = UNSET,
        initial_square_avg: float = UNSET,
        grad_scale: float = UNSET,
        master_weights: bool = UNSET,
        stochastic_rounding: bool = UNSET,
        rounding_seed: int = UNSET,
        state_dtype: str = UNSET,
        skip_if_nonfinite: bool = False,
        preset: str | None = None,
    ) -> None:
        comm = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(comm, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py.MPI.Comm, got {type(comm).__name__}")
        self.comm = comm
        self._agree = Agreement(comm)
        given = dict(
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt,
            lr_in_momentum=lr_in_momentum, nesterov=nesterov,
            decoupled_weight_decay=decoupled_weight_decay, bias_correction=bias_correction,
            initial_square_avg=initial_square_avg, grad_scale=grad_scale,
            master_weights=master_weights, stochastic_rounding=stochastic_rounding,
            rounding_seed=rounding_seed, state_dtype=state_dtype,
        )  # fmt: skip
        explicit: dict[str, Any] = {k: v for k, v in given.items() if v is not UNSET}
        error: BaseException | None = None
        digest = 0
        try:
            if grad_reduction not in REDUCTIONS:
                raise ValueError(
                    f"grad_reduction must be one of {', '.join(REDUCTIONS)}, got {grad_reduction!r}"
                )
            # The single-process class validates and normalizes exactly as it would alone.
            local = RMSprop(params, **explicit, skip_if_nonfinite=skip_if_nonfinite, preset=preset)
            all_params = [p for g in local.param_groups for p in g["params"]]
            check_params(all_params)
            digest = fingerprint(
                [comm.Get_size(), grad_reduction, bool(skip_if_nonfinite)]
                + [(p.shape, p.dtype) for p in all_params]
                + [len(g["params"]) for g in local.param_groups]
                + [self._options_of(g) for g in local.param_groups]
            )
        except Exception as exc:
            error = exc
        self._agree.check(error, digest, "params (shapes, dtypes, order, groups) or options")
        self.param_groups: list[dict[str, Any]] = local.param_groups
        self.defaults = local.defaults
        self.grad_reduction = grad_reduction
        self.skip_if_nonfinite = bool(skip_if_nonfinite)
        self._params = all_params
        self._group_of = [k for k, g in enumerate(self.param_groups) for _ in g["params"]]
        rank, ranks = comm.Get_rank(), comm.Get_size()
        # Fixed here: the cuts, the state's storage and the checkpoints follow it.
        self._state_dtypes: list[str] = [g["state_dtype"] for g in self.param_groups]
        units = [cut_unit(self.param_groups[k], p) for k, p in zip(self._group_of, all_params)]
        self._layout = Layout(
            [p.size for p in all_params], [p.itemsize for p in all_params], ranks, units
        )
        self.shard: tuple[int, int] = self._layout.shard(rank)
        # A private duplicate (collective, so after the agreement): the optimizer's messages can
        # never match the caller's own point-to-point traffic on comm.
        private = comm.Dup()
        # Params that are views of one buffer in the layout (packed_copies) on every rank are
        # gathered as one message per rank instead of one per tensor piece.
        packed = flat_view(all_params, self._layout)
        packed = packed if private.allreduce(packed is not None, op=MPI.LAND) else None
        self._exchange = Exchange(private, self._layout, all_params, grad_reduction, packed)
        self._pieces = self._exchange.pieces
        self._piece_states: list[dict[str, Any]] = [{} for _ in self._pieces]
        # The whole tensor's index and the piece's offset in it key the rounding noise; its size
        # decides its state's storage (8-bit or float32), as for the whole tensor.
        self._placement = [(c.param, c.begin, all_params[c.param].size) for c in self._pieces]
        self._steps = [0] * len(all_params)  # every rank counts every param's steps
        self._keys: list[list[str]] = [[] for _ in all_params]
        self._checks = GradChecks(all_params, self._state_dtypes)
        self._sixteen_bit_groups = [
            any(is_sixteen_bit(p.dtype) for p in g["params"]) for g in self.param_groups
        ]

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _options_of(group: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(group[key] for key in GROUP_KEYS)

    # ------------------------------------------------------------------ the step

    def step(self, grads: Sequence[np.ndarray | None]) -> bool | None:
        """One data-parallel step (collective: every rank calls it with its own gradients).

        Args:
            grads: one entry per param, in param-group order, this rank's gradients; ``None``
                skips that param, and must then be None on every rank.

        Raises:
            TypeError, ValueError: on every rank, when any rank's input is refused or the ranks'
                hyper-parameters differ; then no rank changed any param or state.

        Returns:
            None; with ``skip_if_nonfinite``, True if the step was applied and False if it was
            skipped on every rank because a reduced gradient held inf or NaN.
        """
        error: BaseException | None = None
        digest = 0
        checked: list[np.ndarray | None] = []
        try:
            checked = self._checks.checked(grads, self.param_groups)
            digest = fingerprint(
                [self._options_of(g) for g in self.param_groups] + [[g is None for g in checked]]
            )
        except Exception as exc:
            error = exc
        self._agree.check(error, digest, "hyper-parameters or the params given None gradients")
        try:
            return self._apply(checked)
        except BaseException:
            # Every input was checked on every rank: a failure here is a bug or a lost resource,
            # and ranks may already disagree. End the job rather than leave the others waiting.
            traceback.print_exc()
            sys.stderr.flush()
            self.comm.Abort(1)
            raise

    def _folds(self) -> list[bool]:
        """Per group: may the "mean" division run inside the step as grad_scale = N? Only when
        the step would otherwise not scale (grad_scale 1) and no param is 16-bit (whose
        gradient is divided before it is rounded to 16 bits)."""
        ranks = self.comm.Get_size()
        if self.grad_reduction != "mean" or ranks == 1:
            return [False] * len(self.param_groups)
        return [
            not has16 and group["grad_scale"] == 1
            for group, has16 in zip(self.param_groups, self._sixteen_bit_groups)
        ]

    def _apply(self, grads: list[np.ndarray | None]) -> bool | None:
        folds = self._folds()
        # The step sums as it reads, except where the finite check needs the materialized sum.
        piece_groups = [self._group_of[c.param] for c in self._pieces]
        reduced, addends = self._exchange.reduce(
            grads,
            [folds[k] for k in piece_groups],
            [not self.skip_if_nonfinite] * len(piece_groups),
        )
        if self.skip_if_nonfinite:
            finite = all(bool(np.isfinite(r).all()) for r in reduced if r is not None)
            if not self.comm.allreduce(finite, op=MPI.LAND):
                return False
        stepped = [k for k, g in enumerate(grads) if g is not None]
        for j, c in enumerate(self._pieces):
            if reduced[j] is not None:
                self._create_state(j, c.param)
        groups = []
        for k, group in enumerate(self.param_groups):
            local = {key: group[key] for key in GROUP_KEYS}
            if folds[k]:
                local["grad_scale"] = float(self.comm.Get_size())
            local["params"] = [
                self._exchange.piece_params[j]
                for j, c in enumerate(self._pieces)
                if self._group_of[c.param] == k
            ]
            groups.append(local)
        if self._pieces:
            result = _core.step_optimizer(
                groups, reduced, self._piece_states, False, False, self._placement, addends
            )
            if result != 0:
                raise RuntimeError(f"internal: the core returned {result}")
        for k in stepped:
            self._steps[k] += 1
            group = self.param_groups[self._group_of[k]]
            for key in param_buffer_keys(group, self._params[k]):
                if key not in self._keys[k]:
                    self._keys[k].append(key)
        self._exchange.gather()
        return True if self.skip_if_nonfinite else None

    def _create_state(self, j: int, k: int) -> None:
        state = self._piece_states[j]
        state.setdefault("step", self._steps[k])
        group = self.param_groups[self._group_of[k]]
        create_missing(state, group, self._exchange.piece_params[j], self._params[k])

    # ------------------------------------------------------------------ checkpoints

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds (its shard's buffers)."""
        return sum(
            v.nbytes for s in self._piece_states for v in s.values() if isinstance(v, np.ndarray)
        )

    def consolidated_state_dict(self, root: int = 0) -> dict[str, Any] | None:
        """The full state dict, on ``root`` only (collective: every rank calls it).

        Returns:
            On ``root``, ``rmsprop.RMSprop.state_dict()``'s layout, bit-identical to the
            single-process optimizer's after the same steps; None on the other ranks.
        """
        error: BaseException | None = None
        ranks = self.comm.Get_size()
        if (
            isinstance(root, bool)
            or not isinstance(root, (int, np.integer))
            or not 0 <= root < ranks
        ):
            error = ValueError(f"root must be a rank in [0, {ranks}), got {root!r}")
        self._agree.check(error, 0 if error else int(root), "root of consolidated_state_dict")
        payload = [
            (c, {key: v for key, v in s.items() if key != "step"})
            for c, s in zip(self._pieces, self._piece_states)
            if s
        ]
        gathered = self.comm.gather(payload, root=int(root))
        if gathered is None:
            return None
        sd = pack_state_dict(self.param_groups, [])
        state: dict[int, dict[str, Any]] = {}
        for k, keys in enumerate(self._keys):
            if keys:
                storage = self._state_dtypes[self._group_of[k]]
                state[k] = _shard_state.empty_entry(storage, self._params[k], keys, self._steps[k])
        for pieces in gathered:
            for piece, buffers in pieces:
                _shard_state.put(state[piece.param], piece, buffers)
        sd["state"] = state
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state dict from :meth:`consolidated_state_dict` of any number of ranks, or
        from single-process ``rmsprop.RMSprop.state_dict()`` (collective; every rank passes the
        same full dict). Each rank keeps its shard; steps then continue bit-identically.

        Raises:
            TypeError, ValueError: on every rank, if the dict does not fit on any rank or the
                ranks' dicts differ in hyper-parameters or steps; then nothing changed.
        """
        error: BaseException | None = None
        digest = 0
        # Checked against the state_dtype fixed at construction, even if a group was edited.
        groups = [dict(g, state_dtype=s) for g, s in zip(self.param_groups, self._state_dtypes)]
        full: list[dict[str, Any]] = [{} for _ in self._params]
        try:
            load_into(groups, full, state_dict)  # every check of the single-process class
            digest = fingerprint(
                [self._options_of(g) for g in groups]
                + [(s.get("step", -1), sorted(k for k in s if k != "step")) for s in full]
            )
        except Exception as exc:
            error = exc
        self._agree.check(error, digest, "state dicts (hyper-parameters or step counts)")
        for group, new in zip(self.param_groups, groups):
            group.clear()
            group.update(new)
        self._steps = [int(s.get("step", 0)) for s in full]
        self._keys = [[key for key in s if key != "step"] for s in full]
        for j, c in enumerate(self._pieces):
            self._piece_states[j] = _shard_state.cut(full[c.param], c)
