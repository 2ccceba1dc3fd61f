"""The one entry point: ``LRP(model, composite)(x, target=...)`` returns an :class:`Explanation`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from . import composites as C
from . import layers as L
from ._checks import check_memory
from .graph import Model
from .model import Sequential, build_network, from_internal, to_internal
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
    layers : list or dict of arrays, or None
        With ``layerwise=True``: for a Sequential, the relevance at the input of every layer,
        then the start relevance (``len(model.layers) + 1`` arrays); for a graph
        :class:`fastlrp.Model`, a dict from node name to the relevance at that node's output,
        and ``"input"`` (the model input's name) to the input relevance.
    conservation : array (N, len(model.layers) + 1)
        Per sample, the relevance sum at every layer boundary, input first, start last (for a
        graph: the input, then every node's output in topological order).
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
        if not isinstance(model, (Sequential, Model)):
            raise TypeError(f"LRP: expected a fastlrp.Sequential or fastlrp.Model, got {type(model).__name__}")
        self.model = model
        self._graph = isinstance(model, Model)
        self.composite = C.get(composite)
        self.rules = self.composite.resolve(model.layers, model.names if self._graph else None)
        for k, layer in enumerate(model.layers[:-1]):
            if isinstance(layer, (L.Softmax, L.LogSoftmax)):
                where = f"node {k} {model.names[k]!r}" if self._graph else f"layer {k}"
                raise ValueError(f"{where} ({layer!r}): Softmax/LogSoftmax is supported only as the last layer")
        for k, (layer, rule) in enumerate(zip(model.layers, self.rules)):
            if isinstance(rule, ZBox) and isinstance(layer, L.Dense):
                try:
                    rule.bounds_for((layer.in_features,))
                except ValueError as exc:
                    raise ValueError(f"layer {k} ({layer!r}): {exc}") from None
        self._nets = {}
        self._skip = isinstance(model.layers[-1], L.OUTPUT_NONLINEARITIES)

    def __reduce__(self):
        # the model crosses as its .npz bytes (see Sequential.__reduce__); the prepared native
        # networks stay behind and are rebuilt where the copy first runs
        return LRP, (self.model, self.composite)

    def _network(self, dtype, shapes):
        if self._graph:
            return self._graph_net(dtype, shapes)
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

    def _graph_net(self, dtype, sample_shape):
        key = (dtype, tuple(sample_shape))
        net = self._nets.get(key)
        if net is None:
            for k, (shapes, rule) in enumerate(zip(self.model.input_shapes(sample_shape), self.rules)):
                if isinstance(rule, ZBox):
                    try:
                        rule.bounds_for(shapes[0])
                    except ValueError as exc:
                        raise ValueError(f"node {k} {self.model.names[k]!r}: {exc}") from None
            net = self._nets[key] = self.model._graph(dtype, sample_shape, self.rules)
        return net

    def __repr__(self) -> str:
        if self._graph:
            note = "  (the last node, an output nonlinearity, is skipped)" if self._skip else ""
            return f"LRP(composite={self.composite.name!r}){note}\n{self.model.table(self.rules)}"
        rows = [f"LRP(composite={self.composite.name!r})"]
        w = max(len(repr(layer)) for layer in self.model.layers)
        for k, (layer, rule) in enumerate(zip(self.model.layers, self.rules)):
            note = "  (output nonlinearity, skipped)" if self._skip and k == len(self.rules) - 1 else ""
            rows.append(f"  {k:>3}  {layer!r:<{w}}  =>  {rule!r}{note}")
        return "\n".join(rows)

    def __call__(self, x, target=None, layerwise: bool = False, batch_size: int | None = None, out=None,
                 progress: bool = False) -> Explanation:
        """Explain a batch.

        Parameters
        ----------
        x : array (N, in_features) or (N, C, H, W); float32 or float64 (the input's dtype
            chooses; other real dtypes are converted to float32). With ``batch_size``, any
            array that slices, such as an ``np.memmap``.
        target : None, int, N ints, or array (N, out)
            ``None`` explains the predicted class; an int or N ints name the class per sample;
            an array of the output's shape is used as the start relevance as it is.
        layerwise : bool
            Also return the relevance at every layer boundary.
        batch_size : int, optional
            Explain ``x`` in chunks of this many samples: memory then grows with the chunk, not
            with N (apart from the (N, out) logits and (N, layers) conservation figures).
        out : array of x's shape, optional
            Where to write the relevance (for example an ``np.memmap``); returned as
            ``Explanation.relevance``.
        progress : bool
            Report progress on stderr.
        """
        if batch_size is not None or out is not None or progress:
            return self._chunked(x, target, layerwise, batch_size, out, progress)
        x = self.model._as_input(x)
        if self._graph:
            return self._explain_graph(x, target, layerwise)
        shapes = self.model.shapes(x.shape[1:])
        check_memory(self.model.layers, shapes, x.shape[0], x.dtype.itemsize, layerwise)
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

    def _explain_graph(self, x, target, layerwise):
        model = self.model
        sample = x.shape[1:]
        shapes = model.shapes(sample)
        check_memory(model.layers, [sample] + shapes, x.shape[0], x.dtype.itemsize, layerwise)
        net = self._graph_net(x.dtype.type, sample)
        logits_shape = model.input_shapes(sample)[-1][0] if self._skip else shapes[-1]
        targets, start = self._target(target, x.shape[0], logits_shape, x.dtype)
        rel, out, cons, layers, used = net.explain(to_internal(x), targets, start, bool(layerwise))
        rel = from_internal(rel, sample)
        if layers is not None:
            named = {model.input_name: rel}
            for n, a, s in zip(model.nodes, layers[1:], shapes):
                named[n.name] = from_internal(a, s)
            layers = named
        if used is not None and len(logits_shape) == 3:
            used = _index_order(used, logits_shape, to_nchw=True)
        return Explanation(relevance=rel, output=from_internal(out, logits_shape), layers=layers,
                           conservation=cons, targets=used)

    def _chunked(self, x, target, layerwise, batch_size, out, progress):
        import sys
        import time

        if batch_size is None:
            batch_size = 4096
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not hasattr(x, "shape") or not hasattr(x, "__getitem__"):
            x = np.asarray(x)
        n = int(x.shape[0]) if len(x.shape) else 0
        first = self.model._as_input(np.asarray(x[:1]))  # checks shape and dtype on one sample
        dtype = first.dtype
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out: expected a numpy array (or memmap), got {type(out).__name__}")
            if out.shape != tuple(x.shape):
                raise ValueError(f"out: expected shape {tuple(x.shape)} (the input's), got {out.shape}")
        else:
            out = np.empty(tuple(x.shape), dtype=dtype)
        per_sample = target is not None and not isinstance(target, (int, np.integer)) and np.ndim(target) >= 1
        if per_sample and len(target) != n:
            raise ValueError(f"target: expected {n} entries (one per sample), got {len(target)}")
        if n == 0:
            return self(np.asarray(x[:0]).astype(dtype, copy=False), target, layerwise)
        outputs = cons = targets = None  # (N, ...) results, allocated from the first chunk's
        layers = []
        t0 = last = time.perf_counter()
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            e = self(np.asarray(x[i:j]).astype(dtype, copy=False), target[i:j] if per_sample else target, layerwise)
            out[i:j] = e.relevance
            if outputs is None:
                outputs = np.empty((n,) + e.output.shape[1:], e.output.dtype)
                cons = np.empty((n,) + e.conservation.shape[1:], e.conservation.dtype)
                targets = None if e.targets is None else np.empty(n, np.int64)
            outputs[i:j] = e.output
            cons[i:j] = e.conservation
            if targets is not None:
                targets[i:j] = e.targets
            if layerwise:
                layers.append(e.layers)
            now = time.perf_counter()
            if progress and (now - last > 0.5 or j == n):
                last = now
                print(f"\rfastlrp: explained {j:,}/{n:,} samples ({100 * j / max(n, 1):.0f} %, "
                      f"{j / max(now - t0, 1e-9):,.0f}/s)", end="" if j < n else "\n", file=sys.stderr, flush=True)
        return Explanation(relevance=out, output=outputs, conservation=cons, targets=targets,
                           layers=_join_layers(layers) if layerwise else None)

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


def _join_layers(chunks):
    """Per-chunk layerwise relevances (lists, or dicts for graphs) joined along the batch."""
    if chunks and isinstance(chunks[0], dict):
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return [np.concatenate(parts) for parts in zip(*chunks)]


def _index_order(idx, shape, to_nchw: bool):
    """Flat indices into a (C, H, W) output, between NCHW order and the core's NHWC order."""
    c, h, w = shape
    if to_nchw:
        pix, ch = np.divmod(idx, c)
        return ch * (h * w) + pix
    ch, pix = np.divmod(idx, h * w)
    return pix * c + ch
