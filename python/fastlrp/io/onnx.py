"""ONNX models as fastlrp models, read with the ``onnx`` package only (no runtime).

A chain of nodes gives a :class:`fastlrp.Sequential`; a graph with residual additions
(``Add``/``Sum`` of two tensors) or concatenations (``Concat`` along channels) gives a graph
:class:`fastlrp.Model` named by the ONNX node names. ONNX images are NCHW, as fastlrp's. External data files are refused: a model
file could otherwise make the loader read any file on the machine into its weights.
"""

from __future__ import annotations

import os

import numpy as np

from .. import layers as L
from ._common import last_is_image, same_padding
from ..graph import Input, Model
from ..model import Sequential

SUPPORTED = ("Add/Sum of tensors (a residual join)", "Concat (channels)", "Slice/Split of the channels (Narrow)",
             "Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape (N, C, H, W) (ChannelShuffle)",
             "shape arithmetic (Shape, Gather, Add, Div, Mul, ... on shapes)", "ReduceMean over (2, 3)",
             "Mul of two tensors (a gate)", "Gemm", "MatMul+Add", "Conv (any group)", "Relu", "LeakyRelu", "Tanh",
             "Sigmoid", "HardSigmoid (torch's)", "HardSwish", "Clip(0, 6) (ReLU6)", "Gelu",
             "GELU as Div(sqrt 2), Erf, Add(1), Mul(x), Mul(0.5)", "Softmax", "MaxPool", "AveragePool",
             "GlobalAveragePool", "Flatten", "Reshape (as a flatten)", "BatchNormalization", "Dropout", "Identity")


def from_onnx(path):
    """An ONNX file of the supported operators as a fastlrp model (Sequential for a chain,
    Model for a graph)."""
    try:
        return _from_onnx(path)
    except (ValueError, ImportError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed graph (missing fields, bad attributes)
        raise ValueError(f"{path}: malformed ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None


def _from_onnx(path):
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
    for node in nodes:  # Identity of a constant (exporters write them) is that constant
        if node.op_type == "Identity" and node.input and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    ops = [n for n in nodes if n.op_type != "Constant" and not (n.op_type == "Identity" and n.output[0] in consts)]
    # shape arithmetic (Shape, and integer ops on its results: exporters compute chunk sizes and
    # view shapes so) is evaluated here from the inferred static shapes, not run as layers
    producer, shape_ops = {}, set()
    for node in ops:
        ins = [i for i in node.input if i and i not in consts]
        if node.op_type == "Shape" or (node.op_type in _SHAPE_ARITHMETIC and ins
                                       and all(id(producer.get(i)) in shape_ops for i in ins)):
            shape_ops.add(id(node))
        for o in node.output:
            producer[o] = node
    # ONNX's shape inference only where shapes are read: shape arithmetic, channel slices
    needs_shapes = any(n.op_type in ("Shape", "Slice", "Split") for n in ops)
    ops = [n for n in ops if id(n) not in shape_ops]
    static = _static_shapes(onnx, model) if needs_shapes else {}
    shape_values = {}

    def value(name, where):
        """A constant, or the value of shape arithmetic, as an int64 array."""
        if name in consts:
            return np.asarray(const(name, where)).astype(np.int64)
        node = producer.get(name)
        if node is None or id(node) not in shape_ops:
            raise ValueError(f"{where}: {name!r} is not a constant or a computation on tensor shapes")
        if name not in shape_values:
            shape_values[name] = _shape_arithmetic(node, lambda i: value(i, where), static, where)
        return shape_values[name]

    consumers = {}
    for node in ops:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    dims = inputs[0].type.tensor_type.shape.dim
    rank = {inputs[0].name: len(dims) if dims else None}  # 4: NCHW images, 2: features
    x = Input(None, name="input")
    tensors = {inputs[0].name: x}      # ONNX tensor name -> fastlrp graph node
    chain, names, fused = [], set(), set()

    def image(name):
        r = rank.get(name)
        return r == 4 if r is not None else last_is_image(chain)

    views = {}  # a channel shuffle's (N, g, C/g, H, W) view: tensor name -> (source, g, swapped)

    def add(node, layer, data, out, k):
        name = node.name or f"{node.op_type.lower()}_{k}"
        while name in names or name == "input":
            name += "_"
        names.add(name)
        tensors[out] = layer(*(tensors[i] for i in data), name=name)
        chain.append(layer)
        rank[out] = (2 if isinstance(layer, (L.Dense, L.Flatten)) else max((rank.get(i) or 0) for i in data) or None)

    for k, node in enumerate(ops):
        if id(node) in fused:
            continue
        op = node.op_type
        where = f"{path}: node {k} '{node.name or op}' ({op})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        data = [i for i in node.input if i and i not in consts and id(producer.get(i)) not in shape_ops]
        if op in ("Reshape", "Transpose") and data and data[0] in views:
            src, groups, swapped = views[data[0]]
            if op == "Transpose":
                if list(attrs.get("perm", [])) != [0, 2, 1, 3, 4]:
                    raise ValueError(f"{where}: only the transpose (0, 2, 1, 3, 4) of a channel-grouped view is supported")
                views[node.output[0]] = (src, groups, not swapped)
                continue
            target = value(node.input[1], where).tolist()
            if len(target) != 4:
                raise ValueError(f"{where}: a channel-grouped view must be reshaped back to (N, C, H, W), got {target}")
            if swapped:
                add(node, L.ChannelShuffle(groups), [src], node.output[0], k)
            else:
                tensors[node.output[0]], rank[node.output[0]] = tensors[src], rank.get(src)
            continue
        if op == "Reshape" and len(data) == 1 and rank.get(data[0]) == 4 and data[0] in tensors:
            target = value(node.input[1], where).tolist()
            if len(target) == 5:  # (N, g, C/g, H, W): the first step of a channel shuffle
                views[node.output[0]] = (data[0], int(target[1]), False)
                continue
        if op == "ReduceMean" and len(data) == 1 and data[0] in tensors:  # x.mean((2, 3)): global pooling
            axes = (value(node.input[1], where).tolist() if len(node.input) > 1 and node.input[1]
                    else list(attrs.get("axes", [])))
            if sorted(a % 4 for a in axes) != [2, 3] or rank.get(data[0]) not in (4, None):
                raise ValueError(f"{where}: only ReduceMean over the spatial axes (2, 3) is supported, got {axes}")
            if attrs.get("keepdims", 1):
                add(node, L.AdaptiveAvgPool2d(1), data, node.output[0], k)
            else:
                add(node, L.AdaptiveAvgPool2d(1), data, node.output[0] + ".pool", k)
                add(node, L.Flatten(), [node.output[0] + ".pool"], node.output[0], k)
            continue
        if op in ("Slice", "Split") and len(data) == 1 and data[0] in tensors:
            channels = (static.get(data[0]) or [None, None])[1]
            for out, layer in _channel_slices(node, attrs, lambda i: value(i, where), channels, where):
                add(node, layer, data, out, k)
            continue
        for i in data:
            if i not in tensors:
                raise ValueError(f"{where}: input {i!r} is neither a constant nor an earlier node's output")
        out = node.output[0]
        if op in ("Add", "Sum") and len(data) >= 2:
            if len(data) != len([i for i in node.input if i]):
                raise ValueError(f"{where}: adds a constant to a sum of tensors; not supported")
            layer = L.Add()
        elif op == "Mul" and len(data) == 2:
            layer = L.Mul()  # the gate is the broadcast operand (or the second of equal shapes)
        elif op == "Concat":
            if attrs.get("axis") not in (1, -3 if rank.get(data[0]) == 4 else 1):
                raise ValueError(f"{where}: axis={attrs.get('axis')} is not supported (only the channels, 1)")
            layer = L.Concat(1)
        else:
            if len(data) != 1:
                raise ValueError(f"{where}: takes {len(data)} tensors {data}; only Add, Sum, Mul and Concat join tensors")
            layer, out = _layer(node, op, attrs, where, const, out, consumers, fused, image(data[0]), value)
        add(node, layer, data, out, k)
    if not chain:
        raise ValueError(f"{path}: the graph has no nodes")
    outputs = [o.name for o in g.output]
    if len(outputs) != 1 or outputs[0] not in tensors:
        raise ValueError(f"{path}: expected one graph output computed by the supported nodes, got {outputs}")
    try:
        model = Model(x, tensors[outputs[0]])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if all(n.inputs == ((model.input_name,) if k == 0 else (model.names[k - 1],)) for k, n in enumerate(model.nodes)):
        try:
            return Sequential([n.layer for n in model.nodes])  # a chain: the Sequential it always was
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    return model


def _layer(node, op, attrs, where, const, out, consumers, fused, image, value):
    """(fastlrp layer, ONNX output name) for a single-input node; MatMul takes the constant Add
    after it as its bias (that Add is marked as fused)."""
    if op == "Gemm":
        if attrs.get("transA", 0):
            raise ValueError(f"{where}: transA=1 is not supported")
        w = const(node.input[1], where).astype(np.float64) * float(attrs.get("alpha", 1.0))
        w = w if attrs.get("transB", 0) else w.T  # fastlrp's (out, in)
        b = const(node.input[2], where).astype(np.float64) * float(attrs.get("beta", 1.0)) if len(node.input) > 2 and node.input[2] else None
        if b is not None:
            b = np.broadcast_to(b, (w.shape[0],)).copy() if b.size in (1, w.shape[0]) else b
        return _f32(L.Dense, w, b, src=const(node.input[1], where)), out
    if op == "MatMul":
        w = const(node.input[1], where)
        if w.ndim != 2:
            raise ValueError(f"{where}: expected a 2-D weight, got shape {w.shape}")
        b = None
        nxt = consumers.get(out, [])
        if len(nxt) == 1 and nxt[0].op_type == "Add":
            other = [i for i in nxt[0].input if i != out]
            if len(other) == 1:
                try:
                    b = const(other[0], f"{where} (its Add)")
                except ValueError:
                    b = None
                if b is not None:
                    fused.add(id(nxt[0]))
                    out = nxt[0].output[0]
        return _f32(L.Dense, w.T, None if b is None else np.broadcast_to(b, (w.shape[1],)), src=w), out
    if op == "Conv":
        w = const(node.input[1], where)
        if w.ndim != 4:
            raise ValueError(f"{where}: only 2-D convolutions are supported, got weight shape {w.shape}")
        b = const(node.input[2], where) if len(node.input) > 2 and node.input[2] else None
        pad = _pads(attrs, where, w.shape[2:], attrs.get("dilations", [1, 1]), uneven=True)
        return _f32(L.Conv2d, w, b, stride=tuple(attrs.get("strides", [1, 1])), padding=pad,
                    dilation=tuple(attrs.get("dilations", [1, 1])), groups=int(attrs.get("group", 1)), src=w), out
    if op in ("MaxPool", "AveragePool"):
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise ValueError(f"{where}: dilations are not supported for pooling")
        kernel = tuple(attrs["kernel_shape"])
        pad = _pads(attrs, where, kernel, [1, 1])
        stride = tuple(attrs.get("strides", [1, 1]))
        ceil = bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            return L.MaxPool2d(kernel, stride, pad, ceil_mode=ceil), out
        return L.AvgPool2d(kernel, stride, pad, count_include_pad=bool(attrs.get("count_include_pad", 0)),
                           ceil_mode=ceil), out
    if op == "GlobalAveragePool":
        return L.AdaptiveAvgPool2d(1), out
    if op == "Flatten":
        if attrs.get("axis", 1) != 1:
            raise ValueError(f"{where}: axis={attrs.get('axis')} is not supported (only 1)")
        return L.Flatten(), out
    if op == "Reshape":
        shape = value(node.input[1], where).tolist()
        if not (len(shape) == 2 and shape[1] == -1 and shape[0] in (0, -1, 1) or len(shape) == 2 and shape[0] in (0, -1)):
            raise ValueError(f"{where}: only a Reshape to (N, -1) (a flatten) is supported, got {shape}")
        return L.Flatten(), out
    if op in ("Relu", "Tanh", "Sigmoid"):
        return {"Relu": L.ReLU, "Tanh": L.Tanh, "Sigmoid": L.Sigmoid}[op](), out
    if op == "HardSigmoid":  # clip(alpha x + beta, 0, 1); torch's Hardsigmoid is alpha = 1/6, beta = 1/2
        alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
        if abs(alpha - 1 / 6) > 1e-6 or beta != 0.5:
            raise ValueError(f"{where}: HardSigmoid(alpha={alpha}, beta={beta}) is not supported (only torch's 1/6, 0.5)")
        return L.Hardsigmoid(), out
    if op == "HardSwish":
        return L.Hardswish(), out
    if op == "Gelu":
        approx = attrs.get("approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        return L.GELU(approx), out
    if op == "Div":
        chain = _erf_gelu(node, const, consumers)
        if chain is None:
            raise ValueError(f"{where}: Div is supported only as the start of an exported GELU "
                             "(x / sqrt(2), Erf, + 1, * x, * 0.5)")
        fused.update(id(n) for n in chain)
        return L.GELU("none"), chain[-1].output[0]
    if op == "Clip":
        lo = attrs.get("min") if len(node.input) < 2 or not node.input[1] else float(const(node.input[1], where))
        hi = attrs.get("max") if len(node.input) < 3 or not node.input[2] else float(const(node.input[2], where))
        if lo == 0 and hi == 6:
            return L.ReLU6(), out
        if lo == 0 and hi is None:
            return L.ReLU(), out
        raise ValueError(f"{where}: Clip({lo}, {hi}) is not supported (only Clip(0, 6), a ReLU6, and Clip(0), a ReLU)")
    if op == "LeakyRelu":
        return L.LeakyReLU(float(attrs.get("alpha", 0.01))), out
    if op in ("Softmax", "LogSoftmax"):
        if attrs.get("axis", -1) not in (-1, 1):
            raise ValueError(f"{where}: axis={attrs.get('axis')} is not supported (only the features)")
        return (L.Softmax() if op == "Softmax" else L.LogSoftmax()), out
    if op == "BatchNormalization":
        scale, bias, mean, var = (const(node.input[i], where).astype(np.float64) for i in range(1, 5))
        cls = L.BatchNorm2d if image else L.BatchNorm1d
        return cls(mean, var, scale, bias, eps=float(attrs.get("epsilon", 1e-5))), out
    if op in ("Dropout", "Identity"):
        return L.Identity(), out
    raise ValueError(f"{where}: operator {op!r} is not supported; supported: {', '.join(SUPPORTED)}")


_SHAPE_ARITHMETIC = {"Gather", "Add", "Sub", "Mul", "Div", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice"}


def _static_shapes(onnx, model) -> dict:
    """Tensor name -> static shape (None for unknown dims), by ONNX's shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is a help, not a requirement
        return {}
    g = inferred.graph
    return {vi.name: [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
            for vi in list(g.value_info) + list(g.input) + list(g.output)}


def _shape_arithmetic(node, value, static, where):
    """The int64 result of one node of shape arithmetic, its inputs given by ``value``."""
    import onnx

    op = node.op_type
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if op == "Shape":
        shape = static.get(node.input[0])
        if not shape or any(d is None for d in shape):
            raise ValueError(f"{where}: the shape of {node.input[0]!r} is not known statically")
        return np.asarray(shape[attrs.get("start", 0):attrs.get("end", len(shape))], np.int64)
    ins = [value(i) if i else None for i in node.input]
    if op == "Gather":
        return np.take(ins[0], ins[1], axis=attrs.get("axis", 0))
    if op in ("Add", "Sub", "Mul"):
        return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](ins[0], ins[1])
    if op == "Div":  # integer division truncates, as ONNX's on ints
        return np.trunc(ins[0] / ins[1]).astype(np.int64)
    if op == "Unsqueeze":
        axes = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("axes", [0])
        return np.expand_dims(ins[0], tuple(int(a) for a in np.atleast_1d(axes)))
    if op == "Squeeze":
        return np.squeeze(ins[0])
    if op == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in ins], axis=attrs.get("axis", 0))
    if op == "Cast":
        return ins[0]
    if op == "Slice":
        starts, ends = ins[1], ins[2]
        return ins[0][int(starts[0]):int(ends[0])]
    raise ValueError(f"{where}: shape arithmetic {op!r} is not supported")  # pragma: no cover


def _channel_slices(node, attrs, value, channels, where):
    """(output name, Narrow) for each output of a Slice or Split along the channels (axis 1)."""
    op = node.op_type
    if op == "Slice":
        starts, ends = value(node.input[1]).tolist(), value(node.input[2]).tolist()
        axes = value(node.input[3]).tolist() if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
        steps = value(node.input[4]).tolist() if len(node.input) > 4 and node.input[4] else [1] * len(starts)
        if axes not in ([1], [-3]) or steps != [1]:
            raise ValueError(f"{where}: only a Slice of the channels (axis 1, step 1) is supported, got axes {axes}, "
                             f"steps {steps}")
        start, end = starts[0], ends[0]
        if channels is None and (start < 0 or end < 0 or end > 1 << 30):
            raise ValueError(f"{where}: the channel count of the sliced tensor is not known statically")
        if channels is not None:
            start, end = (v + channels if v < 0 else min(v, channels) for v in (start, end))
        if end <= start:
            raise ValueError(f"{where}: an empty Slice ({start}:{end}) is not supported")
        return [(node.output[0], L.Narrow(start, end - start))]
    if attrs.get("axis", 0) not in (1, -3):
        raise ValueError(f"{where}: only a Split of the channels (axis 1) is supported, got axis {attrs.get('axis', 0)}")
    if len(node.input) > 1 and node.input[1]:
        sizes = value(node.input[1]).tolist()
    elif "split" in attrs:
        sizes = list(attrs["split"])
    else:
        if channels is None:
            raise ValueError(f"{where}: the channel count of the split tensor is not known statically")
        size = -(-channels // len(node.output))
        sizes = [min(size, channels - k * size) for k in range(len(node.output))]
    if len(sizes) != len(node.output) or min(sizes) < 1:
        raise ValueError(f"{where}: split sizes {sizes} do not match its {len(node.output)} outputs")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
    return [(o, L.Narrow(int(s0), int(n))) for o, s0, n in zip(node.output, starts, sizes)]


def _scalar(name, const, value):
    """Whether tensor ``name`` is a constant equal to ``value`` (to float32 rounding)."""
    try:
        a = const(name, "")
    except ValueError:
        return False
    return a.size == 1 and abs(float(a.reshape(-1)[0]) - value) <= 1e-6 * abs(value)


def _erf_gelu(div, const, consumers):
    """The nodes after ``div`` that complete GELU's erf form as exporters write it, x / sqrt(2)
    -> Erf -> + 1 -> * x and * 0.5 (either order); None if they do not."""
    x = div.input[0]
    if len(div.input) != 2 or not _scalar(div.input[1], const, 2 ** 0.5):
        return None

    def only(node, op):
        nxt = consumers.get(node.output[0], [])
        return nxt[0] if len(nxt) == 1 and nxt[0].op_type == op else None

    erf = only(div, "Erf")
    add = erf and only(erf, "Add")
    if add is None or not any(i != erf.output[0] and _scalar(i, const, 1.0) for i in add.input):
        return None
    chain, node, need = [erf, add], add, {"x", "half"}
    while need:
        mul = only(node, "Mul")
        if mul is None:
            return None
        other = [i for i in mul.input if i != node.output[0]]
        if len(other) != 1:
            return None
        kind = "x" if other[0] == x else "half" if _scalar(other[0], const, 0.5) else None
        if kind not in need:
            return None
        need.discard(kind)
        chain.append(mul)
        node = mul
    return chain


def _f32(cls, w, b, src, **kw):
    """Weights in the file's precision (float64 stays float64, everything else float32)."""
    dt = np.float64 if src.dtype == np.float64 else np.float32
    return cls(np.ascontiguousarray(w, dtype=dt), None if b is None else np.asarray(b, dtype=dt), **kw)


def _pads(attrs, where, kernel, dil, uneven=False):
    """(ph, pw), or for a convolution (``uneven``) ((top, bottom), (left, right))."""
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
    p = list(attrs.get("pads", [0, 0, 0, 0]))  # [top, left, bottom, right]
    if uneven and len(p) == 4 and min(p) >= 0:
        return ((p[0], p[2]), (p[1], p[3]))
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
        raise ValueError(f"{where}: pads {p} are not symmetric; only equal begin/end padding is supported")
    return (p[0], p[1])
