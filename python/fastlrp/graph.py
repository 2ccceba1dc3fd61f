"""Graph models: ``fl.Input``, layers called on nodes, ``fl.Model(inputs, outputs)``.

>>> x = fl.Input((3, 32, 32))
>>> h = fl.ReLU()(fl.Conv2d(W1, b1, padding=1)(x))
>>> y = fl.ReLU()(fl.Add()(fl.Conv2d(W2, b2, padding=1)(h), x))
>>> model = fl.Model(x, fl.Dense(W3, b3)(fl.Flatten()(fl.AdaptiveAvgPool2d(1)(y))))

A model is a list of nodes in topological order (docs/rules.md, "Graphs"): each applies one
layer to earlier nodes' outputs (or the input) and has a unique name. The C++ core runs the
whole graph, forward and LRP, in one call (``src/cpp/include/fastlrp/graph.hpp``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import layers as L
from ._checks import as_batch, as_real_array, check_memory
from ._native import core

__all__ = ["Input", "Model", "GraphNode"]

_order = itertools.count()


class Tensor:
    """A symbolic value while a graph is being built: the model input or a layer's output."""

    def __init__(self, layer, inputs, name, shape=None):
        self.layer = layer          # None for the input
        self.inputs = tuple(inputs)
        self.name = name
        self.shape = shape          # the declared input shape (None: taken from the data)
        self._order = next(_order)

    def __repr__(self) -> str:
        what = "Input" if self.layer is None else repr(self.layer)
        return f"<fastlrp node {self.name or '?'}: {what}>"


def Input(shape=None, name: str = "input") -> Tensor:
    """The input of a graph model: one sample's shape, ``(features,)`` or ``(C, H, W)``
    (None: any shape the layers accept, fixed by the data)."""
    if shape is not None:
        try:
            shape = tuple(int(v) for v in shape)
        except TypeError:
            raise TypeError(f"Input: expected a shape tuple such as (3, 224, 224), got {shape!r}") from None
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ValueError(f"Input: expected (features,) or (C, H, W) with positive sizes, got {shape}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"Input: name must be a non-empty string, got {name!r}")
    return Tensor(None, (), name, shape)


def apply_layer(layer, inputs, name) -> Tensor:
    """``layer(*inputs, name=...)``: a new graph node."""
    for k, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"{layer!r}: input {k} is {type(t).__name__}; expected a graph node (fl.Input or a "
                            f"layer's output). To run a layer on data, put it in a fl.Sequential or fl.Model")
    if layer.n_inputs is None:
        if len(inputs) < (1 if isinstance(layer, L.Concat) else 2):
            raise ValueError(f"{layer!r}: expected {'one' if isinstance(layer, L.Concat) else 'two'} or more inputs, "
                             f"got {len(inputs)}")
    elif len(inputs) != layer.n_inputs:
        raise ValueError(f"{layer!r}: expected {layer.n_inputs} input, got {len(inputs)}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"{layer!r}: name must be a non-empty string, got {name!r}")
    return Tensor(layer, inputs, name)


@dataclass(frozen=True)
class GraphNode:
    """One node of a :class:`Model`: its position, name, layer and input names ("input" for
    the model input)."""

    index: int
    name: str
    layer: L.Layer
    inputs: tuple


class Model:
    """A feed-forward graph of fastlrp layers with one input and one output.

    Parameters
    ----------
    inputs : the ``fl.Input`` node (or a one-element list of it)
    outputs : the output node (or a one-element list of it)

    Nodes get their given names or ``<layer type>_<k>`` (``conv2d_1``, ``add_3``, counted per
    type from 1). A BatchNorm directly after a Conv2d (BatchNorm2d) or Dense (BatchNorm1d)
    whose output has no other consumer is folded into it, so ``model.nodes`` lists what runs.
    """

    def __init__(self, inputs, outputs):
        inputs = _one(inputs, "inputs")
        outputs = _one(outputs, "outputs")
        if not isinstance(inputs, Tensor) or inputs.layer is not None:
            raise TypeError(f"Model: inputs must be the graph's fl.Input node, got {inputs!r}")
        if not isinstance(outputs, Tensor):
            raise TypeError(f"Model: outputs must be a graph node, got {outputs!r}")
        seen, stack = {}, [outputs]
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen[id(t)] = t
            stack.extend(t.inputs)
        found_inputs = [t for t in seen.values() if t.layer is None]
        if inputs not in found_inputs:
            raise ValueError(f"Model: the output {outputs!r} does not depend on the input {inputs.name!r}")
        if len(found_inputs) > 1:
            other = [t.name for t in found_inputs if t is not inputs]
            raise ValueError(f"Model: the graph has a second input ({other}); fastlrp models take exactly one")
        if outputs is inputs:
            raise ValueError("Model: the output is the input itself; add at least one layer")
        order = sorted((t for t in seen.values() if t.layer is not None), key=lambda t: t._order)
        self.input_name = inputs.name
        self.input_shape = inputs.shape
        names = self._names(order)
        nodes = [(names[id(t)], t.layer, tuple(self.input_name if i is inputs else names[id(i)] for i in t.inputs))
                 for t in order]
        self._set_nodes(_fold(nodes))

    # ---- construction helpers ------------------------------------------------------------
    def _names(self, order):
        taken = {self.input_name}
        names = {}
        for t in order:
            if t.name is not None:
                if t.name in taken:
                    raise ValueError(f"Model: node name {t.name!r} is used twice")
                taken.add(t.name)
                names[id(t)] = t.name
        counters = {}
        for t in order:
            if t.name is None:
                base = type(t.layer).__name__.lower()
                while True:
                    counters[base] = counters.get(base, 0) + 1
                    candidate = f"{base}_{counters[base]}"
                    if candidate not in taken:
                        break
                taken.add(candidate)
                names[id(t)] = candidate
        return names

    def _set_nodes(self, nodes):
        self.nodes = [GraphNode(k, name, layer, inputs) for k, (name, layer, inputs) in enumerate(nodes)]
        self.layers = [n.layer for n in self.nodes]
        self.names = [n.name for n in self.nodes]
        self._index = {n.name: n.index for n in self.nodes}
        self._shapes = {}
        self._nets = {}
        for n in self.nodes:
            for i in n.inputs:
                if i != self.input_name and self._index.get(i, n.index) >= n.index:
                    raise ValueError(f"Model: node {n.name!r} takes {i!r}, which is not an earlier node")
        from .model import first_kind

        if self.input_shape is not None:
            self._takes_images = len(self.input_shape) == 3
        else:
            self._takes_images = first_kind(self.layers) == "image"
        if self.input_shape is not None:
            self.shapes(self.input_shape)

    @classmethod
    def _from_nodes(cls, input_name, input_shape, nodes):
        self = cls.__new__(cls)
        self.input_name = input_name
        self.input_shape = input_shape
        self._set_nodes(nodes)
        return self

    # ---- shapes ----------------------------------------------------------------------------
    @property
    def takes_images(self) -> bool:
        return self._takes_images

    @property
    def in_features(self):
        from .model import flat_in_features

        if self.input_shape is not None and len(self.input_shape) == 1:
            return self.input_shape[0]
        return flat_in_features(self.layers)

    def shapes(self, sample_shape) -> list:
        """Per-sample output shape of every node for an input of ``sample_shape``."""
        sample_shape = tuple(int(v) for v in sample_shape)
        cached = self._shapes.get(sample_shape)
        if cached is not None:
            return cached
        if self.input_shape is not None and sample_shape != self.input_shape:
            raise ValueError(f"expected samples of shape {self.input_shape} (the model's Input), got {sample_shape}")
        out = {self.input_name: sample_shape}
        shapes = []
        for n in self.nodes:
            ins = [out[i] for i in n.inputs]
            try:
                shape = n.layer.output_shape(*ins)
            except ValueError as exc:
                detail = ", ".join(f"{i} {s}" for i, s in zip(n.inputs, ins))
                raise ValueError(f"node {n.index} {n.name!r} ({n.layer!r}) on {detail}: {exc}") from None
            shape = tuple(int(v) for v in shape)
            if 0 in shape:
                raise ValueError(f"node {n.index} {n.name!r} ({n.layer!r}): output shape {shape} is empty for input {ins}")
            out[n.name] = shape
            shapes.append(shape)
        self._shapes[sample_shape] = shapes
        return shapes

    def input_shapes(self, sample_shape) -> list:
        """Per node, the shapes of its inputs."""
        shapes = self.shapes(sample_shape)
        by_name = {self.input_name: tuple(sample_shape)}
        by_name.update({n.name: s for n, s in zip(self.nodes, shapes)})
        return [[by_name[i] for i in n.inputs] for n in self.nodes]

    def _as_input(self, x) -> np.ndarray:
        from .model import check_images

        x = as_real_array(x)
        if self._takes_images:
            check_images(x)
        else:
            x = as_batch(x, self.in_features)
        try:
            self.shapes(x.shape[1:])
        except ValueError as exc:
            raise ValueError(f"x of shape {x.shape}: {exc}") from None
        return x

    # ---- running -------------------------------------------------------------------------
    def forward(self, x) -> np.ndarray:
        """The output node's values for x, output nonlinearity included."""
        from .model import from_internal, to_internal

        x = self._as_input(x)
        shapes = self.shapes(x.shape[1:])
        check_memory(self.layers, [x.shape[1:]] + shapes, x.shape[0], x.dtype.itemsize, False)
        y = self._graph(x.dtype.type, x.shape[1:]).forward(to_internal(x))
        return from_internal(y, shapes[-1])

    __call__ = forward

    def _graph(self, dtype, sample_shape, rules=None):
        key = (dtype, tuple(sample_shape))
        if rules is None and key in self._nets:
            return self._nets[key]
        g = build_graph(self, dtype, tuple(sample_shape), rules)
        if rules is None:
            self._nets[key] = g
        return g

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, k):
        if isinstance(k, str):
            if k not in self._index:
                raise KeyError(f"no node named {k!r}")
            return self.nodes[self._index[k]]
        return self.nodes[k]

    def table(self, rules=None) -> str:
        """Index, name, layer, inputs, output shape (when the input shape is known) and rule."""
        shapes = self.shapes(self.input_shape) if self.input_shape is not None else [None] * len(self.nodes)
        rows = [("#", "name", "layer", "inputs", "shape") + (("rule",) if rules is not None else ())]
        for n, s in zip(self.nodes, shapes):
            row = (str(n.index), n.name, repr(n.layer), ", ".join(n.inputs), "?" if s is None else str(s))
            rows.append(row + ((repr(rules[n.index]),) if rules is not None else ()))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        return "\n".join("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)

    def __repr__(self) -> str:
        shape = "" if self.input_shape is None else f" {self.input_shape}"
        return f"Model(input {self.input_name!r}{shape}, {len(self.nodes)} nodes\n{self.table()}\n)"

    # ---- native format ---------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the graph to a numpy ``.npz`` (no pickles), readable by :func:`fastlrp.load`."""
        from .model import _GRAPH_FORMAT, layer_entry, write_npz

        arrays, config = {}, []
        for n in self.nodes:
            entry = layer_entry(n.layer, f"{n.index}.", arrays)
            entry["name"] = n.name
            entry["inputs"] = list(n.inputs)
            config.append(entry)
        header = {"format": _GRAPH_FORMAT, "input": {"name": self.input_name,
                                                      "shape": None if self.input_shape is None else list(self.input_shape)},
                  "layers": config}
        write_npz(path, header, arrays)

    def __reduce__(self):
        from .model import from_bytes, to_bytes

        return from_bytes, (to_bytes(self),)


def _one(v, what):
    if isinstance(v, (list, tuple)):
        if len(v) != 1:
            raise ValueError(f"Model: expected exactly one of {what}, got {len(v)}")
        return v[0]
    return v


def _fold(nodes):
    """Folds a BatchNorm into the Conv2d/Dense before it when that layer's output feeds nothing
    else (docs/rules.md: canonizers). nodes: (name, layer, input names) in topological order."""
    from .model import _fold as fold_chain

    consumers = {}
    for name, _, inputs in nodes:
        for i in inputs:
            consumers[i] = consumers.get(i, 0) + 1
    by_name = {name: k for k, (name, _, _) in enumerate(nodes)}
    out = list(nodes)
    renamed = {}
    drop = set()
    for k, (name, layer, inputs) in enumerate(nodes):
        if not isinstance(layer, L.BatchNorm1d):
            continue
        src = inputs[0]
        j = by_name.get(src)
        if j is None or consumers.get(src, 0) != 1 or j in drop:
            continue
        prev = out[j][1]
        folded = fold_chain([prev, layer])
        if len(folded) == 1:
            out[j] = (out[j][0], folded[0], out[j][2])
            drop.add(k)
            renamed[name] = src
    result = []
    for k, (name, layer, inputs) in enumerate(out):
        if k in drop:
            continue
        result.append((name, layer, tuple(_resolve(renamed, i) for i in inputs)))
    return result


def _resolve(renamed, name):
    while name in renamed:
        name = renamed[name]
    return name


def model_from_config(path, header, npz) -> Model:
    """A graph Model from a saved config (fastlrp.load)."""
    from .model import layer_from_entry

    inp = header.get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
        raise ValueError(f"{path}: entry 'input' must name the graph's input")
    shape = inp.get("shape")
    if shape is not None and (not isinstance(shape, list) or len(shape) not in (1, 3)
                              or not all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f"{path}: the input shape must be a list of 1 or 3 positive ints, got {shape!r}")
    nodes, seen = [], {inp["name"]}
    for k, entry in enumerate(header["layers"]):
        layer = layer_from_entry(path, k, entry, npz, f"{k}.")
        name, inputs = entry.get("name"), entry.get("inputs")
        if not isinstance(name, str) or not name or name in seen:
            raise ValueError(f"{path}: node {k}: missing or repeated name {name!r}")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ValueError(f"{path}: node {k} {name!r}: 'inputs' must be a list of node names")
        for i in inputs:
            if i not in seen:
                raise ValueError(f"{path}: node {k} {name!r}: input {i!r} is not an earlier node")
        n_in = layer.n_inputs
        if (n_in is not None and len(inputs) != n_in) or (n_in is None and len(inputs) < (1 if isinstance(layer, L.Concat) else 2)):
            raise ValueError(f"{path}: node {k} {name!r} ({layer!r}): wrong number of inputs ({len(inputs)})")
        seen.add(name)
        nodes.append((name, layer, tuple(inputs)))
    if not nodes:
        raise ValueError(f"{path}: the graph has no nodes")
    try:
        return Model._from_nodes(inp["name"], None if shape is None else tuple(shape), nodes)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


class _NodeInput:
    """A core graph seen as a Network by :func:`fastlrp.model.lower_layer`: every ``add_*``
    call gets the node's input id first."""

    def __init__(self, graph, input_id):
        self.graph, self.input_id = graph, input_id

    def __getattr__(self, name):
        method = getattr(self.graph, name)
        return lambda *args: method(self.input_id, *args)


def build_graph(model: Model, dtype, sample_shape, rules=None):
    """The C++ graph of ``dtype`` for ``model`` on samples of ``sample_shape``; with ``rules``
    (one per node) the LRP rules are prepared (modified weights computed once)."""
    from .model import lower_layer
    from .rules import Epsilon

    in_shapes = model.input_shapes(sample_shape)
    width = int(np.prod(sample_shape))
    g = core.Graph_float64(width) if dtype is np.float64 else core.Graph_float32(width)
    ids = {model.input_name: -1}
    ids.update({n.name: n.index for n in model.nodes})
    for n in model.nodes:
        rule = rules[n.index] if rules is not None else None
        inputs = [ids[i] for i in n.inputs]
        shapes = in_shapes[n.index]
        if isinstance(n.layer, L.Add):
            g.add_add(inputs, (rule or Epsilon())._native())
        elif isinstance(n.layer, L.Mul):
            gate = L.Mul.gate_index(*shapes)
            signal_shape, gate_shape = shapes[1 - gate], shapes[gate]
            pixels = int(np.prod(signal_shape)) // int(np.prod(gate_shape))
            g.add_mul(inputs[1 - gate], inputs[gate], pixels)
        elif isinstance(n.layer, L.Concat):
            pixels = int(np.prod(shapes[0][1:])) if len(shapes[0]) == 3 else 1
            g.add_concat(inputs, pixels, [int(s[0]) for s in shapes])
        else:
            lower_layer(_NodeInput(g, inputs[0]), n.layer, rule, shapes[0], dtype, f"node {n.index} {n.name!r}")
    return g
