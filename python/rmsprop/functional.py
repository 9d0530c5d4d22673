"""Stateless RMSProp step on one array: the math behind :class:`rmsprop.RMSprop`."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from ._buffers import STATE_DTYPES, new_state_buffer, state_layout
from .rows import RowGrad

#: Hyper-parameters of one step, in the order the C++ core takes them.
OPTION_NAMES: tuple[str, ...] = tuple(_core.OPTION_NAMES)

#: torch's defaults (SPEC §2). ``initial_square_avg`` only matters when state is created.
DEFAULT_OPTIONS: dict[str, Any] = {
    "lr": 1e-2,
    "alpha": 0.99,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "momentum": 0.0,
    "centered": False,
    "maximize": False,
    "eps_in_sqrt": False,
    "lr_in_momentum": False,
    "nesterov": False,
    "decoupled_weight_decay": False,
    "bias_correction": False,
    "grad_scale": 1.0,
    "stochastic_rounding": False,
    "rounding_seed": 0,
}


def rmsprop_step(
    param: np.ndarray,
    grad: np.ndarray | RowGrad,
    square_avg: np.ndarray,
    *,
    momentum_buffer: np.ndarray | None = None,
    grad_avg: np.ndarray | None = None,
    master_param: np.ndarray | None = None,
    square_avg_scale: np.ndarray | None = None,
    state_dtype: str = "float32",
    step: int = 1,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
    eps_in_sqrt: bool = False,
    lr_in_momentum: bool = False,
    nesterov: bool = False,
    decoupled_weight_decay: bool = False,
    bias_correction: bool = False,
    grad_scale: float = 1.0,
    stochastic_rounding: bool = False,
    rounding_seed: int = 0,
) -> None:
    """One fused RMSProp step on one array, in place.

    ``param``, ``square_avg`` and the optional buffers are updated in place; ``grad`` is only
    read. All are C-contiguous arrays of one shape. param and grad are float32, float64,
    float16 or ``ml_dtypes.bfloat16`` (the same dtype); the state has the param's dtype, or
    float32 for 16-bit params. State buffers start at 0 (``square_avg`` may start at another
    value, as TF1's 1.0). The formulas and option meanings are SPEC §2 / the README table; by
    default the result equals ``torch.optim.RMSprop`` (ε added after the square root).

    Args:
        param: the parameter, updated in place.
        grad: its gradient (read-only arrays are fine), or a :class:`rmsprop.RowGrad` for a
            param of shape ``(R, ...)``: then only the rows it names are updated.
        square_avg: running average of squared gradients, updated in place.
        momentum_buffer: required when ``momentum > 0``.
        grad_avg: required when ``centered``.
        master_param: optional float32 copy of a 16-bit param: the step reads and updates it
            and writes its rounded value into ``param``, so small updates are not lost.
        square_avg_scale: with ``state_dtype="8bit"`` (params of >= 4096 elements), the
            float32 block scales of ``square_avg``, shape ``(ceil(param.size / 256),)``.
        state_dtype: storage of the state (SPEC §8). ``"float32"``: the param's dtype, or
            float32 for 16-bit params. ``"bfloat16"``: square_avg, grad_avg and
            momentum_buffer are uint16 arrays of bfloat16 bits, rounded stochastically.
            ``"8bit"``: square_avg is uint8 codes plus square_avg_scale, the other buffers
            bfloat16 (for params of >= 4096 elements; smaller ones take float32 state). Create
            such buffers with :func:`new_state`. Not for float64 params.
        step: the step number t being taken (1 on the first); used by ``bias_correction``.
        lr, alpha, eps, weight_decay, momentum, centered, maximize: as in torch.
        eps_in_sqrt: ε inside the square root, ``sqrt(v + ε)`` (Keras, TF, optax).
        lr_in_momentum: the learning rate scales the update before it enters the momentum
            buffer (TF, Keras, optax) instead of after (torch).
        nesterov: apply ``u + momentum * m_new`` (needs ``momentum > 0``).
        decoupled_weight_decay: ``p -= lr * weight_decay * p`` (Keras 3) instead of adding
            ``weight_decay * p`` to the gradient (torch).
        bias_correction: divide the averages by ``1 - alpha**step`` (optax option).
        grad_scale: the gradient is divided by it first (an AMP loss scale).
        stochastic_rounding: bfloat16 params are rounded stochastically (noise from
            ``rounding_seed``, the step and the element index: deterministic), not to nearest.
        rounding_seed: seed of that noise.

    Raises:
        TypeError: an argument has the wrong type or dtype.
        ValueError: a shape, layout, overlap or hyper-parameter is invalid. Nothing is
            modified when anything is refused.

    Example:
        >>> import numpy as np
        >>> from rmsprop.functional import rmsprop_step
        >>> p = np.ones(3); g = np.full(3, 2.0); v = np.zeros(3)
        >>> rmsprop_step(p, g, v, lr=0.1, alpha=0.9)
        >>> v.tolist()
        [0.3999999999999999, 0.3999999999999999, 0.3999999999999999]
    """
    options = (
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize,
        eps_in_sqrt,
        lr_in_momentum,
        nesterov,
        decoupled_weight_decay,
        bias_correction,
        grad_scale,
        stochastic_rounding,
        rounding_seed,
    )
    _core.step_functional(
        options,
        param,
        grad,
        square_avg,
        grad_avg,
        momentum_buffer,
        master_param,
        step,
        square_avg_scale,
        state_dtype,
    )


def new_state(
    param: np.ndarray, state_dtype: str = "float32", initial_square_avg: float = 0.0
) -> dict[str, np.ndarray]:
    """Fresh state buffers for :func:`rmsprop_step` on ``param`` in the given storage.

    Returns:
        ``{"square_avg": ..., "momentum_buffer": ..., "grad_avg": ...}`` and, for 8-bit state,
        ``"square_avg_scale"``; pass the ones your options need.

    Example:
        >>> import numpy as np
        >>> from rmsprop.functional import new_state, rmsprop_step
        >>> p = np.ones(8192, np.float32); g = np.ones(8192, np.float32)
        >>> state = new_state(p, "8bit")
        >>> sorted((k, str(v.dtype)) for k, v in state.items())[:2]
        [('grad_avg', 'uint16'), ('momentum_buffer', 'uint16')]
        >>> rmsprop_step(p, g, state["square_avg"], square_avg_scale=state["square_avg_scale"],
        ...              state_dtype="8bit")
    """
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be one of {STATE_DTYPES}, got {state_dtype!r}")
    return {
        key: new_state_buffer(param, key, state_dtype, initial_square_avg)
        for key in state_layout(param, state_dtype)
    }
