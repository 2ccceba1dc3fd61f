"""LRP rules: small immutable descriptions with validated parameters.

Rules hold no arithmetic: the C++ kernels (``src/cpp/include/fastlrp/dense.hpp``) and the
numpy reference (:mod:`fastlrp.reference`) implement the formulas of ``docs/rules.md``. In every
formula ``R_i = sum_j c_ij R_j / stab(sum_i c_ij + d_j)`` with ``stab(z) = z + eps*s(z)``,
``s(0) = +1``, ``eps = 1e-6`` unless the rule says otherwise, and a zero denominator passes
no relevance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._checks import check_real_scalar

__all__ = ["Rule", "Epsilon", "ZPlus", "AlphaBeta", "Gamma", "ZBox", "WSquare", "Flat", "Pass"]


class Rule:
    """Base class of the rules. ``_kind`` is the C++ ``RuleKind`` code."""

    _kind = -1
    #: eps_s of every rule but Epsilon (docs/rules.md); fastlrp.toolbox's rules use the toolbox's own
    _stabilizer = 1e-6

    #: parameters handed to the kernel (epsilon, alpha, beta, gamma)
    def _params(self):
        return (1e-6, 0.0, 0.0, 0.0)

    def _native(self):
        """The rule as the core's typed ``RuleParams`` (family and parameters)."""
        from ._native import core

        epsilon, alpha, beta, gamma = self._params()
        return core.RuleParams(core.RuleKind(self._kind), epsilon=epsilon, alpha=alpha, beta=beta, gamma=gamma,
                               stabilizer=self._stabilizer)


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon: ``c_ij = a_i w_ij``, ``d_j = b_j``, stabiliser ``epsilon``; ``epsilon=0`` is LRP-0."""

    epsilon: float = 1e-6
    _kind = 1

    def __post_init__(self):
        object.__setattr__(self, "epsilon", check_real_scalar(self.epsilon, "Epsilon epsilon", minimum=0.0))

    def _params(self):
        return (self.epsilon, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class ZPlus(Rule):
    """LRP-z+: ``c_ij = a_i^+ w_ij^+ + a_i^- w_ij^-``, ``d_j = b_j^+`` (``AlphaBeta(1, 0)``)."""

    _kind = 2


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-alpha-beta: ``alpha * p_ij / stab(sum p + b^+) - beta * n_ij / stab(sum n + b^-)``.

    ``p_ij = (a_i w_ij)^+``, ``n_ij = (a_i w_ij)^-``; requires ``alpha - beta == 1``, both >= 0.
    """

    alpha: float = 2.0
    beta: float = 1.0
    _kind = 3

    def __post_init__(self):
        a = check_real_scalar(self.alpha, "AlphaBeta alpha", minimum=0.0)
        b = check_real_scalar(self.beta, "AlphaBeta beta", minimum=0.0)
        if abs((a - b) - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta: expected alpha - beta == 1, got alpha={a}, beta={b} (difference {a - b})")
        object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "beta", b)

    def _params(self):
        return (1e-6, self.alpha, self.beta, 0.0)


@dataclass(frozen=True)
class Gamma(Rule):
    """Generalised LRP-gamma; the sign of the pre-activation ``z_j`` picks the variant.

    ``z_j > 0``: ``c_ij = a_i^+ (w_ij + g w_ij^+) + a_i^- (w_ij + g w_ij^-)``, ``d_j = b_j + g b_j^+``;
    ``z_j < 0``: ``c_ij = a_i^+ (w_ij + g w_ij^-) + a_i^- (w_ij + g w_ij^+)``, ``d_j = b_j + g b_j^-``;
    ``z_j = 0``: no relevance passes.
    """

    gamma: float = 0.25
    _kind = 4

    def __post_init__(self):
        object.__setattr__(self, "gamma", check_real_scalar(self.gamma, "Gamma gamma", minimum=0.0))

    def _params(self):
        return (1e-6, 0.0, 0.0, self.gamma)


@dataclass(frozen=True, eq=False)
class ZBox(Rule):
    """LRP-z^B for bounded inputs: ``c_ij = a_i w_ij - l_i w_ij^+ - h_i w_ij^-``, ``d_j = 0``.

    ``low`` and ``high`` are scalars or arrays broadcastable to one sample of the layer's input.
    """

    low: object = field(default=0.0)
    high: object = field(default=1.0)
    _kind = 5

    def __post_init__(self):
        lo = np.array(self.low, dtype=np.float64) if _is_real(self.low) else None
        hi = np.array(self.high, dtype=np.float64) if _is_real(self.high) else None
        if lo is None or hi is None:
            raise TypeError(f"ZBox: expected real scalars or arrays for low and high, got {self.low!r}, {self.high!r}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError("ZBox: low and high must be finite")
        try:
            lo_b, hi_b = np.broadcast_arrays(lo, hi)
        except ValueError as exc:
            raise ValueError(f"ZBox: low {lo.shape} and high {hi.shape} do not broadcast together") from exc
        if (lo_b > hi_b).any():
            raise ValueError("ZBox: expected low <= high everywhere, got low > high")
        lo.setflags(write=False)
        hi.setflags(write=False)
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    def bounds_for(self, shape) -> tuple[np.ndarray, np.ndarray]:
        """low and high broadcast to one sample's input shape, flattened."""
        try:
            lo = np.broadcast_to(self.low, shape).ravel()
            hi = np.broadcast_to(self.high, shape).ravel()
        except ValueError as exc:
            raise ValueError(f"ZBox: bounds of shape {self.low.shape} / {self.high.shape} do not broadcast to the layer input {tuple(shape)}") from exc
        return lo, hi

    def __repr__(self) -> str:
        def fmt(a):
            return repr(float(a)) if a.ndim == 0 else f"array{a.shape}"
        return f"ZBox(low={fmt(self.low)}, high={fmt(self.high)})"

    def __eq__(self, other):
        return (isinstance(other, ZBox) and np.array_equal(self.low, other.low)
                and np.array_equal(self.high, other.high))

    __hash__ = None


def _is_real(v) -> bool:
    try:
        return np.asarray(v).dtype.kind in "fiu"
    except Exception:
        return False


@dataclass(frozen=True)
class WSquare(Rule):
    """LRP-w^2: ``c_ij = w_ij^2``, ``d_j = 0`` (the bias is ignored, as in the DTD paper)."""

    _kind = 6


@dataclass(frozen=True)
class Flat(Rule):
    """LRP-flat: ``c_ij = 1`` for every connected input, ``d_j = 0``."""

    _kind = 7


@dataclass(frozen=True)
class Pass(Rule):
    """Element-wise layers: relevance passes unchanged."""

    _kind = 0
