"""The one entry point: ``LRP(model, composite)(x, target=...)`` returns an :class:`Explanation`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import composites as C
from . import layers as L
from .model import Sequential, build_network, from_internal, image_vector, to_internal
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

    def _network(self, dtype, shapes):
        key = (dtype, shapes[0])
        net = self._nets.get(key)
        if net is None:
            for k, (layer, rule) in enumerate(zip(self.model.layers, self.rules)):
                if isinstance(rule, ZBox):
                    try:
                        rule.bounds_for(shapes[k])
                    except ValueError as exc:
                        raise ValueError(f"layer {k} ({layer!r}): {exc}") from None
            net = self._nets[key] = build_network(self.model.layers, dtype, shapes, self.rules)
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
        x = self.model._as_input(x)
        shapes = self.model.shapes(x.shape[1:])
        net = self._network(x.dtype.type, shapes)
        logits_shape = shapes[-2] if self._skip else shapes[-1]
        targets, start = self._target(target, x.shape[0], logits_shape, x.dtype)
        rel, out, cons, layers, used = net.explain(to_internal(x), targets, start, bool(layerwise))
        if layers is not None:
            layers = [from_internal(a, s) for a, s in zip(layers, shapes[:-1] + [logits_shape])]
        rel = from_internal(rel, shapes[0])
        if used is not None and len(logits_shape) == 3:
            used = _index_order(used, logits_shape, to_nchw=True)
        return Explanation(relevance=rel, output=from_internal(out, logits_shape), layers=layers,
                           conservation=cons, targets=used)

    def _target(self, target, n, logits_shape, dtype):
        if target is None:
            return None, None
        n_out = int(np.prod(logits_shape))
        spatial = len(logits_shape) == 3
        if isinstance(target, (bool, np.bool_)):
            raise TypeError(f"target: expected None, an int, N ints or an array of shape (N, {n_out}), got a bool")
        if isinstance(target, numbers.Integral):
            t = int(target)
            if not 0 <= t < n_out:
                raise ValueError(f"target: expected a class index in [0, {n_out}), got {t}")
            t = np.full(n, t, dtype=np.int64)
            return (_index_order(t, logits_shape, to_nchw=False) if spatial else t), None
        arr = np.asarray(target)
        if arr.ndim == 1 and arr.dtype.kind in "iu":
            if arr.shape[0] != n:
                raise ValueError(f"target: expected {n} class indices (one per sample), got {arr.shape[0]}")
            if n and (arr.min() < 0 or arr.max() >= n_out):
                raise ValueError(f"target: expected class indices in [0, {n_out}), got values from {arr.min()} to {arr.max()}")
            t = np.ascontiguousarray(arr, dtype=np.int64)
            return (_index_order(t, logits_shape, to_nchw=False) if spatial else t), None
        full = (n,) + tuple(logits_shape)
        if arr.dtype.kind in "fiu" and arr.ndim == len(full):
            if arr.shape != full:
                raise ValueError(f"target: a start relevance must have the output's shape {full}, got {arr.shape}")
            return None, to_internal(np.asarray(arr, dtype=dtype))
        raise ValueError(f"target: expected None, an int, {n} ints or an array of shape {full}, "
                         f"got shape {arr.shape} and dtype {arr.dtype}")


def _index_order(idx, shape, to_nchw: bool):
    """Flat indices into a (C, H, W) output, between NCHW order and the core's NHWC order."""
    c, h, w = shape
    if to_nchw:
        pix, ch = np.divmod(idx, c)
        return ch * (h * w) + pix
    ch, pix = np.divmod(idx, h * w)
    return pix * c + ch
