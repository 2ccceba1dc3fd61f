"""ONNX models as fastlrp models, read with the ``onnx`` package only (no runtime).

The graph must be a chain: every node takes the previous node's output (plus constant
initializers). ONNX images are NCHW, as fastlrp's. External data files are refused: a model
file could otherwise make the loader read any file on the machine into its weights.
"""

from __future__ import annotations

import os

import numpy as np

from .. import layers as L
from ._common import last_is_image, same_padding
from ..model import Sequential

SUPPORTED = ("Gemm", "MatMul+Add", "Conv", "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Softmax", "MaxPool",
             "AveragePool", "GlobalAveragePool", "Flatten", "Reshape (as a flatten)", "BatchNormalization",
             "Dropout", "Identity")


def from_onnx(path) -> Sequential:
    """An ONNX file holding a sequential graph of the supported operators as a fastlrp model."""
    try:
        return _from_onnx(path)
    except (ValueError, ImportError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed graph (missing fields, bad attributes)
        raise ValueError(f"{path}: malformed ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None


def _from_onnx(path) -> Sequential:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ImportError("from_onnx needs the onnx package: pip install onnx") from None
    path = os.fspath(path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError, and others on garbage
        raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    g = model.graph
    consts = {}
    for t in g.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ValueError(f"{path}: initializer {t.name!r} uses external data, which fastlrp does not read")
        consts[t.name] = t
    nodes = list(g.node)
    for node in nodes:  # Constant nodes are initializers written as nodes
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = a.t
    arrays = {}

    def const(name, where):
        if name not in consts:
            raise ValueError(f"{where}: input {name!r} is not a constant (only chains with constant weights are supported)")
        if name not in arrays:
            try:
                a = numpy_helper.to_array(consts[name])
            except Exception as exc:
                raise ValueError(f"{where}: tensor {name!r} is malformed ({exc})") from None
            if a.dtype.kind not in "fiu":
                raise ValueError(f"{where}: tensor {name!r} has dtype {a.dtype}, expected numbers")
            arrays[name] = a
        return arrays[name]

    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one graph input, got {len(inputs)}")
    current = inputs[0].name
    layers = []
    chain = [n for n in nodes if n.op_type != "Constant"]
    k = 0
    while k < len(chain):
        node = chain[k]
        op = node.op_type
        where = f"{path}: node {k} '{node.name or op}' ({op})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        data = [i for i in node.input if i and i not in consts]
        if data != [current]:
            raise ValueError(f"{where}: takes {data}, but a sequential graph feeds it only {current!r}; "
                             "branches and skips are not supported")
        out = node.output[0]
        if op == "Gemm":
            if attrs.get("transA", 0):
                raise ValueError(f"{where}: transA=1 is not supported")
            w = const(node.input[1], where).astype(np.float64) * float(attrs.get("alpha", 1.0))
            w = w if attrs.get("transB", 0) else w.T  # fastlrp's (out, in)
            b = const(node.input[2], where).astype(np.float64) * float(attrs.get("beta", 1.0)) if len(node.input) > 2 and node.input[2] else None
            if b is not None:
                b = np.broadcast_to(b, (w.shape[0],)).copy() if b.size in (1, w.shape[0]) else b
            layers.append(_f32(L.Dense, w, b, src=const(node.input[1], where)))
        elif op == "MatMul":
            w = const(node.input[1], where)
            if w.ndim != 2:
                raise ValueError(f"{where}: expected a 2-D weight, got shape {w.shape}")
            b = None
            nxt = chain[k + 1] if k + 1 < len(chain) else None
            if nxt is not None and nxt.op_type == "Add" and out in nxt.input:
                other = [i for i in nxt.input if i != out]
                b = const(other[0], f"{path}: node {k + 1} (Add)")
                k += 1
                out = nxt.output[0]
            layers.append(_f32(L.Dense, w.T, None if b is None else np.broadcast_to(b, (w.shape[1],)), src=w))
        elif op == "Conv":
            if attrs.get("group", 1) != 1:
                raise ValueError(f"{where}: group={attrs['group']} is not supported (only 1)")
            w = const(node.input[1], where)
            if w.ndim != 4:
                raise ValueError(f"{where}: only 2-D convolutions are supported, got weight shape {w.shape}")
            b = const(node.input[2], where) if len(node.input) > 2 and node.input[2] else None
            pad = _pads(attrs, where, w.shape[2:], attrs.get("dilations", [1, 1]))
            layers.append(_f32(L.Conv2d, w, b, stride=tuple(attrs.get("strides", [1, 1])), padding=pad,
                               dilation=tuple(attrs.get("dilations", [1, 1])), src=w))
        elif op in ("MaxPool", "AveragePool"):
            if attrs.get("ceil_mode", 0):
                raise ValueError(f"{where}: ceil_mode=1 is not supported")
            if any(d != 1 for d in attrs.get("dilations", [1, 1])):
                raise ValueError(f"{where}: dilations are not supported for pooling")
            kernel = tuple(attrs["kernel_shape"])
            pad = _pads(attrs, where, kernel, [1, 1])
            stride = tuple(attrs.get("strides", [1, 1]))
            if op == "MaxPool":
                layers.append(L.MaxPool2d(kernel, stride, pad))
            else:
                layers.append(L.AvgPool2d(kernel, stride, pad, count_include_pad=bool(attrs.get("count_include_pad", 0))))
        elif op == "GlobalAveragePool":
            layers.append(L.AdaptiveAvgPool2d(1))
        elif op == "Flatten":
            if attrs.get("axis", 1) != 1:
                raise ValueError(f"{where}: axis={attrs.get('axis')} is not supported (only 1)")
            layers.append(L.Flatten())
        elif op == "Reshape":
            shape = const(node.input[1], where).tolist()
            if not (len(shape) == 2 and shape[1] == -1 and shape[0] in (0, -1, 1) or len(shape) == 2 and shape[0] in (0, -1)):
                raise ValueError(f"{where}: only a Reshape to (N, -1) (a flatten) is supported, got {shape}")
            layers.append(L.Flatten())
        elif op in ("Relu", "Tanh", "Sigmoid"):
            layers.append({"Relu": L.ReLU, "Tanh": L.Tanh, "Sigmoid": L.Sigmoid}[op]())
        elif op == "LeakyRelu":
            layers.append(L.LeakyReLU(float(attrs.get("alpha", 0.01))))
        elif op in ("Softmax", "LogSoftmax"):
            if attrs.get("axis", -1) not in (-1, 1):
                raise ValueError(f"{where}: axis={attrs.get('axis')} is not supported (only the features)")
            layers.append(L.Softmax() if op == "Softmax" else L.LogSoftmax())
        elif op == "BatchNormalization":
            scale, bias, mean, var = (const(node.input[i], where).astype(np.float64) for i in range(1, 5))
            cls = L.BatchNorm2d if last_is_image(layers) else L.BatchNorm1d
            layers.append(cls(mean, var, scale, bias, eps=float(attrs.get("epsilon", 1e-5))))
        elif op in ("Dropout", "Identity"):
            layers.append(L.Identity())
        else:
            raise ValueError(f"{where}: operator {op!r} is not supported; supported: {', '.join(SUPPORTED)}")
        current = out
        k += 1
    if not layers:
        raise ValueError(f"{path}: the graph has no nodes")
    outputs = [o.name for o in g.output]
    if outputs != [current]:
        raise ValueError(f"{path}: the graph's output {outputs} is not the end of the chain {current!r}")
    try:
        return Sequential(layers)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _f32(cls, w, b, src, **kw):
    """Weights in the file's precision (float64 stays float64, everything else float32)."""
    dt = np.float64 if src.dtype == np.float64 else np.float32
    return cls(np.ascontiguousarray(w, dtype=dt), None if b is None else np.asarray(b, dtype=dt), **kw)


def _pads(attrs, where, kernel, dil):
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_padding(kernel, attrs.get("strides", [1, 1]), dil)
        if pads is None:
            raise ValueError(f"{where}: auto_pad={auto} pads unevenly here; only stride 1 with odd kernels is supported")
        return pads
    if auto != "NOTSET":
        raise ValueError(f"{where}: auto_pad={auto!r} is not supported")
    p = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
        raise ValueError(f"{where}: pads {p} are not symmetric; only equal begin/end padding is supported")
    return (p[0], p[1])
