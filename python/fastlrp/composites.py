"""Composites: which rule each layer gets.

A composite is an ordered list of ``(selector, rule)`` entries; later entries override earlier
ones. Parameter-free layers start from a default (element-wise layers ``Pass``, an unfolded
BatchNorm ``Epsilon``) that entries may override; a Dense layer that no entry reaches is an
error naming its index and type.

Selectors: a layer class or tuple of classes (:class:`ByType`), an int, slice or range of
layer indices (:class:`ByIndex`), :class:`First` (the first layer of some types, in
topological order for a graph), or :class:`Name` (a glob on node names: ``Name("layer4.*")``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from . import layers as L
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "Composite", "ByType", "ByIndex", "First", "Name", "PRESETS", "get", "epsilon_plus",
    "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat", "w2_epsilon", "epsilon",
]


@dataclass(frozen=True)
class ByType:
    """Every layer that is an instance of one of ``types``."""

    types: tuple

    def __init__(self, *types):
        flat = []
        for t in types:
            flat.extend(t if isinstance(t, tuple) else (t,))
        if not flat or not all(isinstance(t, type) and issubclass(t, L.Layer) for t in flat):
            raise TypeError(f"ByType: expected fastlrp layer classes, got {types!r}")
        object.__setattr__(self, "types", tuple(flat))

    def indices(self, layers) -> list[int]:
        return [k for k, layer in enumerate(layers) if isinstance(layer, self.types)]

    def __repr__(self) -> str:
        return "/".join(t.__name__ for t in self.types)


@dataclass(frozen=True)
class ByIndex:
    """The layer at an index (negative counts from the end), or the layers of a slice or range."""

    index: object

    def __post_init__(self):
        if isinstance(self.index, bool) or not isinstance(self.index, (int, slice, range)):
            raise TypeError(f"ByIndex: expected an int, slice or range, got {self.index!r}")

    def indices(self, layers) -> list[int]:
        n = len(layers)
        if isinstance(self.index, int):
            k = self.index + n if self.index < 0 else self.index
            if not 0 <= k < n:
                raise ValueError(f"ByIndex: layer index {self.index} is out of range for a model of {n} layers")
            return [k]
        if isinstance(self.index, range):
            bad = [k for k in self.index if not -n <= k < n]
            if bad:
                raise ValueError(f"ByIndex: layer index {bad[0]} is out of range for a model of {n} layers")
            return [k % n for k in self.index]
        return list(range(n))[self.index]

    def __repr__(self) -> str:
        return f"layers[{self.index}]" if isinstance(self.index, int) else f"layers {self.index}"


@dataclass(frozen=True)
class First:
    """The first layer of one of ``types`` (nothing if the model has none)."""

    types: tuple

    def __init__(self, *types):
        object.__setattr__(self, "types", ByType(*types).types)

    def indices(self, layers) -> list[int]:
        for k, layer in enumerate(layers):
            if isinstance(layer, self.types):
                return [k]
        return []

    def __repr__(self) -> str:
        return "first " + "/".join(t.__name__ for t in self.types)


@dataclass(frozen=True)
class Name:
    """Every node whose name matches a glob pattern (``"layer4.*"``, ``"add_?"``); a graph
    model's node names, or a Sequential's generated ones (``dense_1``, ``relu_2``, ...)."""

    pattern: str

    def __post_init__(self):
        if not isinstance(self.pattern, str) or not self.pattern:
            raise TypeError(f"Name: expected a glob pattern string, got {self.pattern!r}")

    def indices(self, layers, names=None) -> list[int]:
        if names is None:
            names = default_names(layers)
        return [k for k, n in enumerate(names) if fnmatch.fnmatchcase(n, self.pattern)]

    def __repr__(self) -> str:
        return f"name {self.pattern!r}"


def default_names(layers) -> list[str]:
    """``<layer type>_<k>`` for every layer, counted per type from 1 (as fl.Model names nodes)."""
    counts, names = {}, []
    for layer in layers:
        base = type(layer).__name__.lower()
        counts[base] = counts.get(base, 0) + 1
        names.append(f"{base}_{counts[base]}")
    return names


def _selector(s):
    if isinstance(s, (ByType, ByIndex, First, Name)):
        return s
    if isinstance(s, (int, slice, range)) and not isinstance(s, bool):
        return ByIndex(s)
    if isinstance(s, type) or isinstance(s, tuple):
        return ByType(s)
    raise TypeError(f"Composite: expected a selector (layer class, tuple of classes, int, slice, range, "
                    f"ByType, ByIndex, First or Name), got {s!r}")


def default_rule(layer) -> Rule | None:
    """The rule a layer gets when no composite entry reaches it (None: it needs one)."""
    if isinstance(layer, (L._Elementwise, L.MaxPool2d, L.Concat, L.Mul, L._Gather)):
        return Pass()  # a MaxPool2d distributes by its mode, a Concat by slices, a Mul to its signal
    if isinstance(layer, (L.BatchNorm1d, L.Add) + L.LINEAR_POOLS):
        return Epsilon()
    return None


def check_applicable(layer, rule, index, name=None) -> None:
    """Refuse rule/layer pairs that have no meaning (Pass on a Dense, ZPlus on a ReLU)."""
    if name is not None:
        index = f"{index} {name!r}"
    if isinstance(layer, L.Add):
        if not isinstance(rule, Epsilon):
            raise ValueError(f"node {index} ({layer!r}) divides relevance by input contribution and takes Epsilon, "
                             f"got {rule!r}")
    elif isinstance(layer, L.Mul):
        if not isinstance(rule, Pass):
            raise ValueError(f"node {index} ({layer!r}) is a gate whose signal takes all relevance and takes only "
                             f"Pass, got {rule!r}")
    elif isinstance(layer, L.Concat):
        if not isinstance(rule, Pass):
            raise ValueError(f"node {index} ({layer!r}) cuts relevance back into its inputs and takes only Pass, "
                             f"got {rule!r}")
    elif isinstance(layer, L._Gather):
        if not isinstance(rule, Pass):
            raise ValueError(f"layer {index} ({layer!r}) moves values and takes only Pass, got {rule!r}")
    elif isinstance(layer, L._Elementwise):
        if not isinstance(rule, Pass):
            raise ValueError(f"layer {index} ({layer!r}) is element-wise and takes only Pass, got {rule!r}")
    elif isinstance(layer, L.MaxPool2d):
        if not isinstance(rule, Pass):
            raise ValueError(f"layer {index} ({layer!r}) distributes relevance by its mode ('winner' or 'avg'), "
                             f"not by a rule; got {rule!r}")
    elif isinstance(layer, L.BatchNorm1d):
        if not isinstance(rule, (Epsilon, Pass)):
            raise ValueError(f"layer {index} ({layer!r}) is an element-wise affine map and takes Epsilon or Pass, got {rule!r}")
    elif isinstance(rule, Pass):
        raise ValueError(f"layer {index} ({layer!r}) changes the feature count and cannot take Pass")


class Composite:
    """An ordered list of ``(selector, rule)`` entries; later entries override earlier ones.

    >>> Composite([(fl.Dense, Epsilon()), (First(fl.Dense), Flat())], name="my_flat")
    """

    def __init__(self, entries=(), name: str | None = None):
        checked = []
        for entry in entries:
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise TypeError(f"Composite: expected (selector, rule) pairs, got {entry!r}")
            sel, rule = entry
            if not isinstance(rule, Rule):
                raise TypeError(f"Composite: expected a fastlrp rule, got {rule!r}")
            checked.append((_selector(sel), rule))
        self.entries = tuple(checked)
        self.name = name or "Composite"

    def with_rule(self, selector, rule: Rule) -> "Composite":
        """A new composite with one more (overriding) entry."""
        return Composite(self.entries + ((selector, rule),), name=self.name)

    def resolve(self, layers, names=None) -> list[Rule]:
        """The rule of every layer (or graph node, with its ``names``); raises for a layer
        left without one."""
        layers = list(layers)
        rules = [default_rule(layer) for layer in layers]
        for sel, rule in self.entries:
            for k in (sel.indices(layers, names) if isinstance(sel, Name) else sel.indices(layers)):
                rules[k] = rule
        for k, (layer, rule) in enumerate(zip(layers, rules)):
            where = f"layer {k}" if names is None else f"node {k} {names[k]!r}"
            if rule is None:
                raise ValueError(f"{where} ({type(layer).__name__}) has no rule in composite {self.name!r}")
            check_applicable(layer, rule, k, None if names is None else names[k])
        return rules

    def __repr__(self) -> str:
        body = ", ".join(f"{sel!r}: {rule!r}" for sel, rule in self.entries)
        return f"Composite({self.name!r}: {body})"


def from_rule(rule: Rule) -> Composite:
    """One rule for every Dense and Conv2d layer; the other layers keep their defaults."""
    return Composite([(ByType(*(L.DENSE_LAYERS + L.CONV_LAYERS)), rule)], name=repr(rule))


def _linear():
    return L.DENSE_LAYERS + L.CONV_LAYERS


def _base(conv_rule: Rule, name: str) -> Composite:
    entries = [(ByType(*L.DENSE_LAYERS), Epsilon())]
    if L.CONV_LAYERS:
        entries.append((ByType(*L.CONV_LAYERS), conv_rule))
    return Composite(entries, name=name)


def epsilon_plus() -> Composite:
    """Dense: Epsilon; Conv2d: ZPlus (zennit's ``EpsilonPlus``)."""
    return _base(ZPlus(), "epsilon_plus")


def epsilon_plus_flat() -> Composite:
    """As ``epsilon_plus``, with Flat for the first Dense or Conv2d (zennit's ``EpsilonPlusFlat``)."""
    return _base(ZPlus(), "epsilon_plus_flat").with_rule(First(*_linear()), Flat())


def epsilon_gamma_box(low, high) -> Composite:
    """Dense: Epsilon; Conv2d: Gamma(0.25); the first Conv2d only: ZBox(low, high).

    On a model without Conv2d layers this is pure Epsilon (zennit's ``EpsilonGammaBox``).
    """
    box = ZBox(low, high)
    comp = _base(Gamma(0.25), "epsilon_gamma_box")
    if L.CONV_LAYERS:
        comp = comp.with_rule(First(*L.CONV_LAYERS), box)
    return comp


def epsilon_alpha2_beta1() -> Composite:
    """Dense: Epsilon; Conv2d: AlphaBeta(2, 1) (zennit's ``EpsilonAlpha2Beta1``)."""
    return _base(AlphaBeta(2, 1), "epsilon_alpha2_beta1")


def epsilon_alpha2_beta1_flat() -> Composite:
    """As ``epsilon_alpha2_beta1``, with Flat for the first Dense or Conv2d."""
    return _base(AlphaBeta(2, 1), "epsilon_alpha2_beta1_flat").with_rule(First(*_linear()), Flat())


def epsilon() -> Composite:
    """Epsilon (1e-6) on every Dense and Conv2d: input-dependent from the first layer on (the
    income demo's default, as the income analyses it follows used LRP-0/epsilon)."""
    return Composite([(ByType(*_linear()), Epsilon())], name="epsilon")


def w2_epsilon() -> Composite:
    """For MLPs on standardised tabular features: WSquare for the first layer, Epsilon after."""
    return Composite([(ByType(*_linear()), Epsilon()), (First(*_linear()), WSquare())], name="w2_epsilon")


#: presets without required arguments, by name
PRESETS = {
    "epsilon": epsilon,
    "epsilon_plus": epsilon_plus,
    "epsilon_plus_flat": epsilon_plus_flat,
    "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
    "epsilon_alpha2_beta1_flat": epsilon_alpha2_beta1_flat,
    "w2_epsilon": w2_epsilon,
}


def get(spec) -> Composite:
    """A Composite from a preset name, a single Rule, or a Composite."""
    if isinstance(spec, Composite):
        return spec
    if isinstance(spec, Rule):
        return from_rule(spec)
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]()
        if spec == "epsilon_gamma_box":
            raise ValueError("composite 'epsilon_gamma_box' needs bounds: use fastlrp.composites.epsilon_gamma_box(low, high)")
        raise ValueError(f"unknown composite {spec!r}; expected one of {sorted(PRESETS)}")
    raise TypeError(f"expected a composite name, a Rule or a Composite, got {spec!r}")
