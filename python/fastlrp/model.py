"""The :class:`Sequential` model, BatchNorm folding, and the native ``.npz`` model format."""

from __future__ import annotations

import json
import os

import numpy as np

from . import layers as L
from ._checks import as_batch
from ._native import core

__all__ = ["Sequential", "fold_batchnorm", "load"]


def fold_batchnorm(layers) -> "Sequential":
    """A model with every BatchNorm1d that directly follows a Dense folded into it.

    ``scale = weight / sqrt(var + eps)``, ``W' = W * scale`` (per output),
    ``b' = (b - mean) * scale + bias``. Computed in float64; the forward output is unchanged.
    """
    if isinstance(layers, Sequential):
        layers = layers.layers
    return Sequential(layers)


def _fold(layers):
    out = []
    for layer in layers:
        prev = out[-1] if out else None
        if isinstance(layer, L.BatchNorm1d) and isinstance(prev, L.Dense) and prev.out_features == layer.in_features:
            scale = layer.scale
            out[-1] = L.Dense(prev.weight * scale[:, None], (prev.bias - layer.mean) * scale + layer.bias)
        else:
            out.append(layer)
    return out


class Sequential:
    """A chain of layers, run by the C++ core.

    BatchNorm1d layers that directly follow a Dense are folded into it here, so
    ``model.layers`` lists the layers that actually run (and that composites index).

    Parameters
    ----------
    layers : list of :class:`fastlrp.layers.Layer`
    """

    def __init__(self, layers):
        if isinstance(layers, Sequential):
            layers = layers.layers
        try:
            layers = list(layers)
        except TypeError as exc:
            raise TypeError(f"Sequential: expected a list of fastlrp layers, got {layers!r}") from exc
        if not layers:
            raise ValueError("Sequential: expected at least one layer, got an empty list")
        for k, layer in enumerate(layers):
            if not isinstance(layer, L.Layer):
                raise TypeError(f"Sequential: layer {k} is {layer!r}; expected a fastlrp layer (fastlrp.Dense, fastlrp.ReLU, ...)")
        self.layers = _fold(layers)
        self._widths = self._chain(self.layers)
        self._nets = {}

    @staticmethod
    def _chain(layers):
        """Feature width at every boundary (None where no layer fixes it); checks the chain."""
        widths = [None] * (len(layers) + 1)
        for k, layer in enumerate(layers):
            if layer.in_features is not None:
                w = widths[k]
                if w is not None and w != layer.in_features:
                    raise ValueError(
                        f"layers do not chain: layer {k - 1} {layers[k - 1]!r} gives {w} features "
                        f"but layer {k} {layer!r} expects {layer.in_features}")
                # a width-less prefix (element-wise layers) takes this width too
                for j in range(k + 1):
                    if widths[j] is None:
                        widths[j] = layer.in_features
            widths[k + 1] = None if widths[k] is None else layer.output_width(widths[k])
        return widths

    @property
    def in_features(self) -> int | None:
        """Input width, or None when no layer fixes it."""
        return self._widths[0]

    @property
    def out_features(self) -> int | None:
        return self._widths[-1]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, k):
        return self.layers[k]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({k}) {layer!r}" for k, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def forward(self, x) -> np.ndarray:
        """The model's output (N, out) for x (N, in), output nonlinearity included."""
        x = as_batch(x, self.in_features)
        return self._network(x.dtype.type, x.shape[1]).forward(x)

    __call__ = forward

    def _network(self, dtype, width, rules=None):
        """The C++ network for a dtype (and rule list); forward-only networks are cached."""
        key = (dtype, width)
        if rules is None and key in self._nets:
            return self._nets[key]
        net = build_network(self.layers, dtype, width, rules)
        if rules is None:
            self._nets[key] = net
        return net

    # ---- native format ---------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model to a numpy ``.npz`` file (no pickles), readable by :func:`load`."""
        config, arrays = [], {}
        for k, layer in enumerate(self.layers):
            entry = {"type": type(layer).__name__}
            for name in _PARAMS.get(type(layer), ()):
                arrays[f"{k}.{name}"] = getattr(layer, name)
            for name in _SCALARS.get(type(layer), ()):
                entry[name] = getattr(layer, name)
            config.append(entry)
        header = {"format": _FORMAT, "layers": config}
        with open(os.fspath(path), "wb") as f:
            np.savez(f, __config__=np.array(json.dumps(header)), **arrays)


_FORMAT = "fastlrp-model-1"
_PARAMS = {L.Dense: ("weight", "bias"), L.BatchNorm1d: ("mean", "var", "weight", "bias")}
_SCALARS = {L.LeakyReLU: ("negative_slope",), L.ELU: ("alpha",), L.Dropout: ("p",), L.BatchNorm1d: ("eps",)}
_TYPES = {cls.__name__: cls for cls in (L.Dense, L.ReLU, L.LeakyReLU, L.Tanh, L.Sigmoid, L.ELU, L.SELU,
                                        L.Softmax, L.LogSoftmax, L.Dropout, L.Flatten, L.Identity, L.BatchNorm1d)}


def load(path) -> Sequential:
    """Read a model written by :meth:`Sequential.save`; never unpickles anything."""
    try:
        npz = np.load(os.fspath(path), allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a fastlrp model file ({exc})") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read a fastlrp model ({exc})") from exc
    if not hasattr(npz, "files"):
        raise ValueError(f"{path}: expected a .npz archive written by Sequential.save, got a plain array")
    with npz:
        if "__config__" not in npz.files:
            raise ValueError(f"{path}: no '__config__' entry; not a fastlrp model file")
        try:
            header = json.loads(str(npz["__config__"]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: entry '__config__' is not valid JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f"{path}: expected format {_FORMAT!r}, got {header.get('format') if isinstance(header, dict) else header!r}")
        config = header.get("layers")
        if not isinstance(config, list):
            raise ValueError(f"{path}: entry 'layers' must be a list")
        built = []
        for k, entry in enumerate(config):
            if not isinstance(entry, dict) or entry.get("type") not in _TYPES:
                raise ValueError(f"{path}: layer {k}: unknown layer type {entry.get('type') if isinstance(entry, dict) else entry!r}; "
                                 f"supported: {sorted(_TYPES)}")
            cls = _TYPES[entry["type"]]
            kwargs = {}
            for name in _PARAMS.get(cls, ()):
                key = f"{k}.{name}"
                if key not in npz.files:
                    raise ValueError(f"{path}: layer {k} ({cls.__name__}): missing array '{key}'")
                kwargs[name] = npz[key]
            for name in _SCALARS.get(cls, ()):
                if name in entry:
                    kwargs[name] = entry[name]
            unknown = set(entry) - {"type"} - set(_SCALARS.get(cls, ()))
            if unknown:
                raise ValueError(f"{path}: layer {k} ({cls.__name__}): unknown keys {sorted(unknown)}")
            try:
                built.append(cls(**kwargs))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: layer {k} ({cls.__name__}): {exc}") from exc
    return Sequential(built)


def build_network(layers, dtype, width, rules=None):
    """A C++ network of ``dtype`` for ``layers``; with ``rules`` the per-layer LRP rules are
    prepared (modified weights computed once)."""
    from .rules import Epsilon, Pass, ZBox

    net = core.Network_float64() if dtype is np.float64 else core.Network_float32()
    empty = np.zeros(0, dtype=dtype)

    def c(a):  # the kernels take C-contiguous arrays of the network's dtype
        return np.ascontiguousarray(a, dtype=dtype)

    for k, layer in enumerate(layers):
        rule = rules[k] if rules is not None else None
        if isinstance(layer, L.Dense):
            rule = rule or Epsilon()
            low = high = empty
            if isinstance(rule, ZBox):
                lo, hi = rule.bounds_for((layer.in_features,))
                low, high = c(lo), c(hi)
            net.add_dense(c(layer.weight), c(layer.bias), rule._kind, *rule._params(), low, high)
        elif isinstance(layer, L._Elementwise):
            net.add_activation(layer._code, layer.param, width)
        elif isinstance(layer, L.BatchNorm1d):
            rule = rule or Pass()
            net.add_affine(c(layer.scale), c(layer.shift), rule._kind, rule._params()[0])
        else:  # pragma: no cover - every layer class is listed above
            raise TypeError(f"layer {k}: {layer!r} is not supported by the C++ core")
        width = layer.output_width(width)
    return net
