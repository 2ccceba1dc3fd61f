"""The one entry point: ``LRP(model, composite)(x, target=...)`` returns an :class:`Explanation`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import composites as C
from . import layers as L
from ._checks import as_batch
from .model import Sequential, build_network
from .rules import ZBox

__all__ = ["LRP", "Explanation"]


@dataclass
class Explanation:
    """The result of one LRP pass.

    Attributes
    ----------
    relevance : array, the shape of x
        Relevance of every input feature.
    output : array (N, out)
        The logits: the model's output before a skipped output nonlinearity.
    layers : list of arrays or None
        With ``layerwise=True``: the relevance at the input of every layer, then the start
        relevance (``len(model.layers) + 1`` arrays).
    conservation : array (N, len(model.layers) + 1)
        Per sample, the relevance sum at every layer boundary, input first, start last.
    targets : array (N,) of int64 or None
        The class explained per sample (None when a start relevance array was given).
    """

    relevance: np.ndarray
    output: np.ndarray
    layers: list | None
    conservation: np.ndarray
    targets: np.ndarray | None


class LRP:
    """Layer-wise relevance propagation for a :class:`Sequential` model.

    Parameters
    ----------
    model : Sequential
    composite : str, Rule or Composite
        A preset name (``"epsilon_plus_flat"``, ...), one Rule for every Dense/Conv2d layer,
        or a :class:`fastlrp.Composite`. The per-layer modified weights are prepared once,
        per dtype, and reused by every call.
    """

    def __init__(self, model, composite="epsilon_plus_flat"):
        if isinstance(model, (list, tuple)):
            model = Sequential(model)
        if not isinstance(model, Sequential):
            raise TypeError(f"LRP: expected a fastlrp.Sequential model, got {type(model).__name__}")
        self.model = model
        self.composite = C.get(composite)
        self.rules = self.composite.resolve(model.layers)
        for k, layer in enumerate(model.layers[:-1]):
            if isinstance(layer, (L.Softmax, L.LogSoftmax)):
                raise ValueError(f"layer {k} ({layer!r}): Softmax/LogSoftmax is supported only as the last layer")
        for k, (layer, rule) in enumerate(zip(model.layers, self.rules)):
            if isinstance(rule, ZBox) and isinstance(layer, L.Dense):
                try:
                    rule.bounds_for((layer.in_features,))
                except ValueError as exc:
                    raise ValueError(f"layer {k} ({layer!r}): {exc}") from None
        self._nets = {}
        self._skip = isinstance(model.layers[-1], L.OUTPUT_NONLINEARITIES)

    def _network(self, dtype, width):
        key = (dtype, width)
        net = self._nets.get(key)
        if net is None:
            net = self._nets[key] = build_network(self.model.layers, dtype, width, self.rules)
        return net

    def __repr__(self) -> str:
        rows = [f"LRP(composite={self.composite.name!r})"]
        w = max(len(repr(layer)) for layer in self.model.layers)
        for k, (layer, rule) in enumerate(zip(self.model.layers, self.rules)):
            note = "  (output nonlinearity, skipped)" if self._skip and k == len(self.rules) - 1 else ""
            rows.append(f"  {k:>3}  {layer!r:<{w}}  =>  {rule!r}{note}")
        return "\n".join(rows)

    def __call__(self, x, target=None, layerwise: bool = False) -> Explanation:
        """Explain a batch.

        Parameters
        ----------
        x : array (N, in_features); float32 or float64 (the input's dtype chooses; other real
            dtypes are converted to float32).
        target : None, int, N ints, or array (N, out)
            ``None`` explains the predicted class; an int or N ints name the class per sample;
            an array of the output's shape is used as the start relevance as it is.
        layerwise : bool
            Also return the relevance at every layer boundary.
        """
        x = as_batch(x, self.model.in_features)
        net = self._network(x.dtype.type, x.shape[1])
        targets, start = self._target(target, x.shape[0], net, x.dtype)
        rel, out, cons, layers, used = net.explain(x, targets, start, bool(layerwise))
        return Explanation(relevance=rel, output=out, layers=layers, conservation=cons, targets=used)

    def _target(self, target, n, net, dtype):
        n_out = self.model.out_features if self.model.out_features is not None else net.out_features
        if target is None:
            return None, None
        if isinstance(target, (bool, np.bool_)):
            raise TypeError(f"target: expected None, an int, N ints or an array of shape (N, {n_out}), got a bool")
        if isinstance(target, numbers.Integral):
            t = int(target)
            if not 0 <= t < n_out:
                raise ValueError(f"target: expected a class index in [0, {n_out}), got {t}")
            return np.full(n, t, dtype=np.int64), None
        arr = np.asarray(target)
        if arr.ndim == 1 and arr.dtype.kind in "iu":
            if arr.shape[0] != n:
                raise ValueError(f"target: expected {n} class indices (one per sample), got {arr.shape[0]}")
            if n and (arr.min() < 0 or arr.max() >= n_out):
                raise ValueError(f"target: expected class indices in [0, {n_out}), got values from {arr.min()} to {arr.max()}")
            return np.ascontiguousarray(arr, dtype=np.int64), None
        if arr.dtype.kind in "fiu" and arr.ndim == 2:
            if arr.shape != (n, n_out):
                raise ValueError(f"target: a start relevance must have the output's shape ({n}, {n_out}), got {arr.shape}")
            return None, np.ascontiguousarray(arr, dtype=dtype)
        raise ValueError(f"target: expected None, an int, {n} ints or an array of shape ({n}, {n_out}), "
                         f"got shape {arr.shape} and dtype {arr.dtype}")
