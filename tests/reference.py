"""Float64 NumPy reference of SPEC §2: the specification, written as plainly as possible.

Independent of the package: no import of rmsprop. Every quantity is a ``Tracked`` value: the
exact result (in float64) together with a first-order bound on how far an implementation that
rounds each operation to the working precision (float32 or float64) may be from it. The bound
follows the standard running error analysis: each operation adds half an ulp of its result
(``unit`` * |result|, plus the subnormal spacing for underflow) to the propagated input errors.
Because the bound propagates through the actual values, it is tight where the problem is well
conditioned and wide exactly where it is not (e.g. g + wd*p cancelling to ~0, or v - ga^2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

OPTION_DEFAULTS: dict[str, Any] = {
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
}


@dataclass(frozen=True)
class Precision:
    """Rounding of the implementation being checked: unit roundoff, subnormal spacing, and the
    largest finite value (beyond it the implementation overflows to inf)."""

    unit: float
    tiny: float
    largest: float

    @classmethod
    def of(cls, dtype: Any) -> Precision:
        info = np.finfo(dtype)
        return cls(
            unit=float(info.eps) / 2, tiny=float(info.smallest_subnormal), largest=float(info.max)
        )


class Tracked:
    """An exact value and a bound on the rounding error an implementation may have on it."""

    __slots__ = ("err", "prec", "value")

    def __init__(self, value: Any, err: Any, prec: Precision) -> None:
        self.value = np.asarray(value, dtype=np.float64)
        self.err = np.asarray(err, dtype=np.float64)
        self.prec = prec

    def _rounded(self, value: np.ndarray, err: np.ndarray) -> Tracked:
        err = err + self.prec.unit * np.abs(value) + self.prec.tiny
        # inf - inf or 0 * inf in the bound itself, or a result (possibly) beyond the
        # implementation's range: nothing is known any more.
        unknown = np.isnan(err) | (np.abs(value) + err > self.prec.largest)
        return Tracked(value, np.where(unknown, np.inf, err), self.prec)

    def _lift(self, other: Any) -> Tracked:
        return other if isinstance(other, Tracked) else constant(other, self.prec)

    def __add__(self, other: Any) -> Tracked:
        o = self._lift(other)
        return self._rounded(self.value + o.value, self.err + o.err)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Tracked:
        o = self._lift(other)
        return self._rounded(self.value - o.value, self.err + o.err)

    def __rsub__(self, other: Any) -> Tracked:
        return self._lift(other) - self

    def __mul__(self, other: Any) -> Tracked:
        o = self._lift(other)
        err = _times(self.value, o.err) + _times(o.value, self.err) + _times(self.err, o.err)
        return self._rounded(self.value * o.value, err)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Tracked:
        o = self._lift(other)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = self.value / o.value
            margin = np.abs(o.value) - o.err
            err = np.where(margin > 0, (self.err + np.abs(value) * o.err) / margin, np.inf)
        return self._rounded(value, err)

    def __neg__(self) -> Tracked:
        return Tracked(-self.value, self.err, self.prec)


def _times(magnitude: np.ndarray, err: np.ndarray) -> np.ndarray:
    """|magnitude| * err, where 0 times a finite error is 0 but 0 times an unbounded error stays
    unbounded: the implementation's factor may then be inf (e.g. g / 0 after g*g underflowed),
    and 0 * inf is NaN."""
    with np.errstate(invalid="ignore"):
        zero_times = np.where(np.isinf(err), np.inf, 0.0)
        return np.where(magnitude == 0, zero_times, np.abs(magnitude) * err)


def constant(x: float, prec: Precision) -> Tracked:
    """A hyper-parameter or derived coefficient, rounded once to the working precision."""
    return Tracked(x, prec.unit * abs(x) + prec.tiny, prec)


def exact(x: Any, prec: Precision) -> Tracked:
    """An input array, exactly representable in the working precision (copied: the caller's
    array may be updated in place afterwards)."""
    value = np.array(x, dtype=np.float64)
    return Tracked(value, np.zeros_like(value), prec)


def sqrt(x: Tracked) -> Tracked:
    with np.errstate(invalid="ignore"):
        value = np.sqrt(x.value)
        # sqrt is monotone: the worst error is at an end of [x - err, x + err].
        spread = np.sqrt(x.value + x.err) - np.sqrt(np.maximum(x.value - x.err, 0.0))
    return x._rounded(value, spread)


def clamp_at_zero(x: Tracked) -> Tracked:
    """max(x, 0), keeping NaN; exact and 1-Lipschitz, so the error does not grow."""
    return Tracked(np.where(x.value < 0, 0.0, x.value), x.err, x.prec)


@dataclass
class RefState:
    """State of one parameter."""

    square_avg: Tracked
    grad_avg: Tracked
    momentum_buffer: Tracked
    step: int = 0


def new_state(param: np.ndarray, initial_square_avg: float = 0.0) -> RefState:
    prec = Precision.of(np.asarray(param).dtype)
    shape = np.shape(param)
    return RefState(
        square_avg=exact(np.full(shape, initial_square_avg), prec),
        grad_avg=exact(np.zeros(shape), prec),
        momentum_buffer=exact(np.zeros(shape), prec),
    )


def reference_step(param: Tracked, grad: np.ndarray, state: RefState, **options: Any) -> Tracked:
    """One step of SPEC §2. Updates ``state`` and returns the new param."""
    o = {**OPTION_DEFAULTS, **options}
    unknown = set(options) - set(OPTION_DEFAULTS)
    assert not unknown, unknown
    prec = param.prec
    lr, alpha, eps, wd, mu = o["lr"], o["alpha"], o["eps"], o["weight_decay"], o["momentum"]
    state.step += 1
    t = state.step
    p = param
    g = exact(grad, prec)
    if o["maximize"]:
        g = -g
    if wd != 0:
        if o["decoupled_weight_decay"]:
            p = p - constant(lr * wd, prec) * p
        else:
            g = g + constant(wd, prec) * p
    one_minus_alpha = constant(1 - alpha, prec)
    state.square_avg = constant(alpha, prec) * state.square_avg + (one_minus_alpha * g) * g
    v = state.square_avg
    if o["centered"]:
        state.grad_avg = constant(alpha, prec) * state.grad_avg + one_minus_alpha * g
    ga = state.grad_avg
    if o["bias_correction"]:
        correction = constant(1 / (1 - alpha**t), prec)
        v = v * correction
        ga = ga * correction
    s = v - ga * ga if o["centered"] else v
    s = clamp_at_zero(s)
    d = sqrt(s + eps) if o["eps_in_sqrt"] else sqrt(s) + eps
    u = g / d
    if mu > 0:
        m_in = constant(lr, prec) * u if o["lr_in_momentum"] else u
        state.momentum_buffer = constant(mu, prec) * state.momentum_buffer + m_in
        applied = (
            m_in + constant(mu, prec) * state.momentum_buffer
            if o["nesterov"]
            else (state.momentum_buffer)
        )
        if not o["lr_in_momentum"]:
            applied = constant(lr, prec) * applied
    else:
        applied = constant(lr, prec) * u
    return p - applied
