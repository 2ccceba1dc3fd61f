"""The numpy LRP toolbox's rule names and parameters, as rules of the C++ core.

docs/rules.md, "Toolbox convention": the toolbox's formulas are the default rules with other
stabilisers, so each toolbox rule becomes one :class:`ToolboxRule` per layer type:

=============  ==========================  ============================  ======================
name           Linear / Convolution        SumPool (weight w=1/sqrt(hw)) MaxPool
=============  ==========================  ============================  ======================
``simple``     Epsilon(1e-16)              Epsilon(1e-12 * w)            winner takes all
``epsilon``    Epsilon(param)              Epsilon(param * w)            winner takes all
``alphabeta``  AlphaBeta(a, a-1), 1e-16    AlphaBeta(a, a-1), 1e-16 * w  winner takes all
``flat``       Flat, no stabiliser         Flat                          uniform (Flat)
``ww``         WSquare, no stabiliser      Flat                          uniform (Flat)
=============  ==========================  ============================  ======================

The SumPool stabilisers are scaled by ``w`` because the core divides by the pool's output
``w * S_j`` where the toolbox divides by the plain window sum ``S_j``.
"""

from __future__ import annotations

import math
import numbers

from ..rules import Pass, Rule

# canonical name of every spelling the toolbox accepts (case-insensitive)
_NAMES = {
    "none": "simple", "simple": "simple", "simple_slow": "simple", "slow": "simple",
    "epsilon": "epsilon", "epsilon_slow": "epsilon",
    "alphabeta": "alphabeta", "alpha": "alphabeta", "alphabeta_slow": "alphabeta", "alpha_slow": "alphabeta",
    "flat": "flat",
    "ww": "ww", "w^2": "ww",
}
NAMES = tuple(_NAMES)

_EPSILON, _ALPHABETA, _WSQUARE, _FLAT = 1, 3, 6, 7


class ToolboxRule(Rule):
    """One layer's toolbox rule as the core's (kind, epsilon, alpha, beta, stabiliser)."""

    def __init__(self, kind: int, epsilon: float = 0.0, alpha: float = 0.0, beta: float = 0.0,
                 stabilizer: float = 0.0, label: str = ""):
        self._kind = kind
        self.epsilon, self.alpha, self.beta = float(epsilon), float(alpha), float(beta)
        self._stabilizer = float(stabilizer)
        self.label = label

    def _params(self):
        return (self.epsilon, self.alpha, self.beta, 0.0)

    def __repr__(self) -> str:
        return f"toolbox {self.label}"


def canonical(lrp_var) -> str:
    """The canonical rule name of a toolbox ``lrp_var`` (None means 'simple')."""
    if lrp_var is None:
        return "simple"
    if not isinstance(lrp_var, str):
        raise TypeError(f"lrp_var: expected a rule name (str) or None, got {type(lrp_var).__name__}")
    name = _NAMES.get(lrp_var.lower())
    if name is None:
        raise ValueError(f"lrp_var: unknown toolbox rule {lrp_var!r}; expected one of {', '.join(map(repr, NAMES))} or None")
    return name


def _param(name: str, param, what: str) -> float:
    if param is None or isinstance(param, bool) or not isinstance(param, numbers.Real):
        raise TypeError(f"{what}: rule {name!r} needs a real parameter (param), got {param!r}")
    p = float(param)
    if not math.isfinite(p):
        raise ValueError(f"{what}: rule {name!r} needs a finite parameter, got {p}")
    return p


def resolve(kind: str, lrp_var, param, pool_weight: float = 1.0, what: str = "layer") -> Rule:
    """The core rule for a layer of toolbox ``kind`` ('linear', 'sumpool', 'maxpool', other =
    element-wise) under the toolbox rule ``lrp_var`` with ``param``."""
    name = canonical(lrp_var)
    if kind not in ("linear", "sumpool", "maxpool"):
        return Pass()
    if name in ("flat", "ww"):
        if kind == "linear" and name == "ww":
            return ToolboxRule(_WSQUARE, label="ww")
        return ToolboxRule(_FLAT, label=name)
    if kind == "maxpool":
        return ToolboxRule(_EPSILON, epsilon=0.0, label=f"{name} (winner takes all)")
    w = pool_weight if kind == "sumpool" else 1.0
    if name == "simple":
        return ToolboxRule(_EPSILON, epsilon=(1e-12 if kind == "sumpool" else 1e-16) * w, label="simple")
    if name == "epsilon":
        eps = _param(name, param, what)
        if eps < 0:
            raise ValueError(f"{what}: rule 'epsilon' needs param >= 0, got {eps}")
        return ToolboxRule(_EPSILON, epsilon=eps * w, label=f"epsilon({eps:g})")
    alpha = _param(name, param, what)
    return ToolboxRule(_ALPHABETA, alpha=alpha, beta=alpha - 1.0, stabilizer=1e-16 * w, label=f"alphabeta({alpha:g})")
