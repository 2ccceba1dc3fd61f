"""Keras Sequential and functional models from ``.keras`` archives (Keras 3) and legacy ``.h5`` files, read
with h5py and json only: no TensorFlow, no Keras, nothing in the file is executed.

Keras computes on NHWC images; the fastlrp model takes NCHW (``x.transpose(0, 3, 1, 2)``) like
every fastlrp model. A Flatten of an image orders features (y, x, c) in Keras and (c, y, x) in
fastlrp, so the Dense layer after it gets its weight columns permuted: outputs are unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from .. import layers as L
from ._common import last_is_image, same_padding, tf_same_padding
from ..model import Sequential

SUPPORTED = ("InputLayer", "Add", "Concatenate (channels)", "Multiply (a gate)", "DepthwiseConv2D", "ZeroPadding2D (before Conv2D/pooling)", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
             "Flatten", "Dropout", "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "Softmax")
_ACTIVATIONS = {"linear": None, None: None, "relu": L.ReLU, "tanh": L.Tanh, "sigmoid": L.Sigmoid,
                "softmax": L.Softmax, "log_softmax": L.LogSoftmax, "elu": L.ELU, "selu": L.SELU,
                "leaky_relu": L.LeakyReLU, "silu": L.SiLU, "swish": L.SiLU, "gelu": L.GELU,
                "hard_sigmoid": L.Hardsigmoid, "hard_silu": L.Hardswish, "hard_swish": L.Hardswish,
                "relu6": L.ReLU6, "mish": L.Mish}
_MAX_MEMBER = 8 << 30  # a .keras member larger than this is refused before it is read
_MAX_RATIO = 1000  # nor one whose compression ratio suggests a zip bomb


def from_keras(path, input_shape=None, timeout: float = 60.0) -> Sequential:
    """A Keras ``Sequential`` saved as ``.keras`` or ``.h5`` as a fastlrp model.

    ``input_shape`` (H, W, C) or (features,) is needed only when the file does not record it
    and a Flatten of an image is followed by a Dense layer. The HDF5 part is parsed in a child
    process that must finish within ``timeout`` seconds (the HDF5 library can spin on a crafted
    file, and a C call cannot be interrupted).
    """
    if importlib.util.find_spec("h5py") is None:  # the child process reads HDF5 with it
        raise ImportError("from_keras needs h5py: pip install h5py (TensorFlow and Keras are not needed)")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".keras", ".h5", ".hdf5"):
        raise ValueError(f"{path}: expected a .keras or .h5 file, got extension {ext!r}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if ext == ".keras":
                with zipfile.ZipFile(path) as z:
                    config = json.loads(_member(z, "config.json", path))
                    h5 = os.path.join(tmp, "model.weights.h5")
                    with open(h5, "wb") as fh:
                        fh.write(_member(z, "model.weights.h5", path))
                meta, arrays = _parse_h5(h5, "v3", timeout, path)
                weights = _KerasV3Weights(_Tree(arrays), config)
            else:
                meta, arrays = _parse_h5(path, "legacy", timeout, path)
                config = json.loads(meta["config"])
                weights = _LegacyWeights(meta, arrays)
            return _build(config, weights, input_shape, path)
    except (ValueError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged zip/JSON makes the parsers raise
        raise ValueError(f"{path}: not a readable Keras file ({type(exc).__name__}: {str(exc)[:200]})") from None


def _parse_h5(h5, kind, timeout, path):
    """(meta, arrays) of an HDF5 file read by fastlrp.io._h5child in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        try:
            p = subprocess.run([sys.executable, "-m", "fastlrp.io._h5child", h5, out, kind], capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ValueError(f"{path}: reading the HDF5 data took over {timeout:g} s; refused "
                             "(a damaged or crafted file)") from None
        if p.returncode != 0:
            why = (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
            raise ValueError(f"{path}: not a readable Keras file ({why[:300]})")
        with open(out + ".json") as fh:
            meta = json.load(fh)
        with np.load(out + ".npz", allow_pickle=False) as z:
            arrays = {k: z[v] for k, v in meta["arrays"].items()}
    return meta, arrays


class _Tree:
    """The ``layers/<path>/vars/<i>`` arrays of a .keras weights file, as h5py's get() would."""

    def __init__(self, arrays):
        self.arrays = arrays

    def get(self, group):
        prefix = group.rstrip("/") + "/"
        found = {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}
        return found or None


def _member(z, name, path) -> bytes:
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ValueError(f"{path}: the archive has no {name}; is it a Keras 3 .keras file?") from None
    if info.file_size > _MAX_MEMBER or info.file_size > _MAX_RATIO * max(info.compress_size, 1) + (1 << 20):
        raise ValueError(f"{path}: {name} claims {info.file_size:,} bytes from {info.compress_size:,}: refused")
    return z.read(name)


def _snake(class_name: str) -> str:
    """Keras 3's object-path name of a class: CamelCase to snake_case ("MaxPooling2D" ->
    "max_pooling2d", "LeakyReLU" -> "leaky_re_lu")."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class _KerasV3Weights:
    """A .keras archive stores a Sequential's weights under layers/<path>/vars/<i>, <path> being
    the layer's class in snake_case, numbered from the second of a class on (dense, dense_1, ...)."""

    def __init__(self, f, config):
        self.f = f
        self.paths, used = {}, {}
        layers = config.get("config", {}).get("layers", []) if isinstance(config, dict) else []
        for entry in layers:
            if not isinstance(entry, dict) or entry.get("class_name") in (None, "InputLayer"):
                continue
            base = _snake(str(entry["class_name"]))
            if base in used:
                used[base] += 1
                path = f"{base}_{used[base]}"
            else:
                used[base] = 0
                path = base
            self.paths[entry.get("config", {}).get("name")] = path

    def get(self, name):
        g = self.f.get(f"layers/{self.paths.get(name, name)}/vars")
        if g is None:
            return []
        keys = sorted((k for k in g.keys()), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        return [g[k] for k in keys]


class _LegacyWeights:
    """model_weights/<layer>/<weight_names...> of a legacy .h5, in the order of weight_names."""

    def __init__(self, meta, arrays):
        self.names, self.arrays = meta.get("weight_names", {}), arrays

    def get(self, name):
        return [self.arrays[f"{name}/{n}"] for n in self.names.get(name, [])]


def _read(ds, shape, what):
    """A dataset's values, its declared shape checked before anything is read."""
    if not hasattr(ds, "shape") or tuple(ds.shape) != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)}, got {getattr(ds, 'shape', None)}")
    a = np.asarray(ds[()])
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{what}: expected numbers, got dtype {a.dtype}")
    a = a.astype(np.float64 if a.dtype == np.float64 else np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: contains NaN or Inf")
    return a


def _pair(v, what):
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return tuple(v)
    raise ValueError(f"{what}: expected an int or a pair of ints, got {v!r}")


def _activation(spec, where):
    if isinstance(spec, dict):  # serialised activation object
        spec = spec.get("config", {}).get("name", spec.get("class_name"))
    if spec not in _ACTIVATIONS:
        raise ValueError(f"{where}: activation {spec!r} is not supported; supported: "
                         f"{', '.join(str(k) for k in _ACTIVATIONS if k)}")
    cls = _ACTIVATIONS[spec]
    return None if cls is None else cls()


def _build(config, weights, input_shape, path):
    if isinstance(config, dict) and config.get("class_name") in ("Functional", "Model"):
        return _build_functional(config, weights, input_shape, path)
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        got = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path}: expected a Keras Sequential or functional model, got {got!r}")
    entries = config.get("config", {}).get("layers")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: the model config has no list of layers")
    shape = tuple(input_shape) if input_shape is not None else _recorded_input(config, entries)
    layers, hwc = [], None  # hwc: the (H, W, C) of a Flatten whose features are still in fastlrp's order
    for k, entry in enumerate(entries):
        cls = entry.get("class_name") if isinstance(entry, dict) else None
        cfg = entry.get("config", {}) if isinstance(entry, dict) else {}
        name = cfg.get("name", f"#{k}")
        where = f"{path}: layer {k} '{name}' ({cls})"
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{where}: data_format {cfg.get('data_format')!r} is not supported (only channels_last)")
        if cls == "InputLayer":
            continue
        image = shape is not None and len(shape) == 3 or (shape is None and last_is_image(layers))
        new, hwc = _convert(cls, cfg, where, weights, name, shape, hwc, image)
        for layer in new:
            if layer is None:
                continue
            if shape is not None:
                shape, hwc = _step(layer, shape, shape, hwc, where)
            elif isinstance(layer, L.Flatten) and last_is_image(layers) and any(
                    isinstance(e, dict) and e.get("class_name") == "Dense" for e in entries[k + 1:]):
                raise ValueError(f"{where}: the file does not record the input shape, which a Flatten followed "
                                 "by Dense needs: pass input_shape=(H, W, C)")
            layers.append(layer)
    if not layers:
        raise ValueError(f"{path}: the model has no layers")
    return Sequential(layers)


def _convert(cls, cfg, where, weights, name, shape, hwc, image):
    """The fastlrp layers (None entries: no-op activations) for one Keras layer, and the pending
    Flatten (H, W, C) left for the next Dense/BatchNormalization (None once it is consumed).
    ``shape``: the layer's input shape (H, W, C) or (features,) if known; ``image``: whether
    its input is an image."""
    new = []
    if cls == "Dense":
        vars_ = weights.get(name)
        units = cfg.get("units")
        if not vars_ or not isinstance(units, int):
            raise ValueError(f"{where}: missing weights or units")
        kshape = tuple(vars_[0].shape)
        if len(kshape) != 2 or kshape[1] != units:
            raise ValueError(f"{where}: kernel of shape {kshape} does not match units={units}")
        kernel = _read(vars_[0], kshape, f"{where} kernel")
        bias = _read(vars_[1], (units,), f"{where} bias") if cfg.get("use_bias", True) else None
        w = kernel.T
        if hwc is not None:
            h, wd, c = hwc
            if w.shape[1] != h * wd * c:
                raise ValueError(f"{where}: expects {w.shape[1]} inputs, the Flatten gives {h * wd * c}")
            w = w[:, np.arange(h * wd * c).reshape(h, wd, c).transpose(2, 0, 1).ravel()]
            hwc = None
        new = [L.Dense(np.ascontiguousarray(w), bias), _activation(cfg.get("activation"), where)]
    elif cls == "DepthwiseConv2D":
        vars_ = weights.get(name)
        if not vars_ or len(vars_[0].shape) != 4:
            raise ValueError(f"{where}: missing or malformed depthwise kernel")
        kshape = tuple(vars_[0].shape)  # (kh, kw, C, multiplier)
        kernel = _read(vars_[0], kshape, f"{where} kernel")
        kh, kw, c, mult = kshape
        bias = _read(vars_[1], (c * mult,), f"{where} bias") if cfg.get("use_bias", True) else None
        stride = _pair(cfg.get("strides", 1), f"{where} strides")
        dil = _pair(cfg.get("dilation_rate", 1), f"{where} dilation_rate")
        pad = _padding(cfg.get("padding", "valid"), (kh, kw), stride, dil, where, _hw(shape, image))
        # output channel c * multiplier + j reads input channel c with kernel[:, :, c, j]
        w = kernel.reshape(kh, kw, c * mult).transpose(2, 0, 1)[:, None]
        new = [L.Conv2d(np.ascontiguousarray(w), bias, stride, pad, dil, groups=c),
               _activation(cfg.get("activation"), where)]
    elif cls == "Conv2D":
        vars_ = weights.get(name)
        if not vars_ or len(vars_[0].shape) != 4:
            raise ValueError(f"{where}: missing or malformed kernel")
        kshape = tuple(vars_[0].shape)
        kernel = _read(vars_[0], kshape, f"{where} kernel")
        bias = _read(vars_[1], (kshape[3],), f"{where} bias") if cfg.get("use_bias", True) else None
        kh, kw = kshape[:2]
        stride = _pair(cfg.get("strides", 1), f"{where} strides")
        dil = _pair(cfg.get("dilation_rate", 1), f"{where} dilation_rate")
        pad = _padding(cfg.get("padding", "valid"), (kh, kw), stride, dil, where, _hw(shape, image))
        new = [L.Conv2d(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias, stride, pad, dil,
                        groups=int(cfg.get("groups", 1) or 1)),
               _activation(cfg.get("activation"), where)]
    elif cls in ("MaxPooling2D", "AveragePooling2D"):
        pool = _pair(cfg.get("pool_size", 2), f"{where} pool_size")
        strides = cfg.get("strides")
        stride = pool if strides is None else _pair(strides, f"{where} strides")
        if cfg.get("padding", "valid") != "valid":
            raise ValueError(f"{where}: padding {cfg.get('padding')!r} is not supported for pooling (only 'valid')")
        new = [(L.MaxPool2d if cls == "MaxPooling2D" else L.AvgPool2d)(pool, stride)]
    elif cls == "GlobalAveragePooling2D":
        new = [L.AdaptiveAvgPool2d(1)] + ([] if cfg.get("keepdims", False) else [L.Flatten()])
    elif cls == "Flatten":
        new = [L.Flatten()]
    elif cls in ("Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise"):
        new = [L.Dropout()]
    elif cls == "Activation":
        new = [_activation(cfg.get("activation"), where)]
    elif cls == "ReLU":
        slope = float(cfg.get("negative_slope", 0.0) or 0.0)
        top = cfg.get("max_value")
        if cfg.get("threshold", 0) not in (0, 0.0) or (top is not None and (float(top) != 6.0 or slope)):
            raise ValueError(f"{where}: threshold, or a max_value other than 6 (ReLU6), is not supported")
        new = [L.ReLU6() if top is not None else L.LeakyReLU(slope) if slope else L.ReLU()]
    elif cls == "LeakyReLU":
        new = [L.LeakyReLU(float(cfg.get("negative_slope", cfg.get("alpha", 0.3))))]
    elif cls == "Softmax":
        if cfg.get("axis", -1) not in (-1, [-1]):
            raise ValueError(f"{where}: softmax over axis {cfg.get('axis')} is not supported (only -1)")
        new = [L.Softmax()]
    elif cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        rank = len(shape) + 1 if shape is not None else None
        if axis not in (-1, rank - 1 if rank else -1):
            raise ValueError(f"{where}: BatchNormalization over axis {axis} is not supported (only the channels, -1)")
        vars_ = weights.get(name)
        scale, center = cfg.get("scale", True), cfg.get("center", True)
        if len(vars_) != 2 + int(scale) + int(center):
            raise ValueError(f"{where}: expected {2 + int(scale) + int(center)} weights, got {len(vars_)}")
        n = vars_[-1].shape[0] if vars_[-1].shape else 0
        it = iter(vars_)
        gamma = _read(next(it), (n,), f"{where} gamma") if scale else None
        beta = _read(next(it), (n,), f"{where} beta") if center else None
        mean, var = _read(next(it), (n,), f"{where} moving_mean"), _read(next(it), (n,), f"{where} moving_variance")
        if hwc is not None:  # per-feature statistics after a Flatten: into fastlrp's (c, y, x) order
            h, wd, c = hwc
            perm = np.arange(h * wd * c).reshape(h, wd, c).transpose(2, 0, 1).ravel()
            gamma, beta = (None if gamma is None else gamma[perm]), (None if beta is None else beta[perm])
            mean, var = mean[perm], var[perm]
        new = [(L.BatchNorm2d if image else L.BatchNorm1d)(mean, var, gamma, beta, eps=float(cfg.get("epsilon", 1e-3)))]
    else:
        raise ValueError(f"{where}: layer type {cls!r} is not supported; supported: {', '.join(SUPPORTED)}")
    return new, hwc

def _history(value, found):
    """Collects the source layer names of a Keras 3 inbound node's arguments (keras tensors,
    possibly in lists) into ``found``."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            hist = value.get("config", {}).get("keras_history")
            if not (isinstance(hist, list) and hist and isinstance(hist[0], str)):
                raise ValueError(f"a keras tensor without a valid keras_history: {hist!r}")
            found.append(hist[0])
    elif isinstance(value, list):
        for v in value:
            _history(v, found)
    return found


def _inbound(entry, where):
    """The names of the layers a functional layer is called on (one call only)."""
    nodes = entry.get("inbound_nodes", [])
    if not isinstance(nodes, list):
        raise ValueError(f"{where}: inbound_nodes must be a list")
    if len(nodes) > 1:
        raise ValueError(f"{where}: the layer is called {len(nodes)} times (shared layers are not supported)")
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        return _history(node.get("args", []), [])
    if isinstance(node, list):  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        if not all(isinstance(n, list) and n and isinstance(n[0], str) for n in node):
            raise ValueError(f"{where}: malformed inbound node {node!r}")
        return [n[0] for n in node]
    raise ValueError(f"{where}: malformed inbound node {node!r}")


def _zero_padding(pad, where):
    """ZeroPadding2D's padding as ((top, bottom), (left, right))."""
    if isinstance(pad, int):
        return ((pad, pad), (pad, pad))
    if isinstance(pad, list) and len(pad) == 2 and all(isinstance(v, int) for v in pad):
        return ((pad[0], pad[0]), (pad[1], pad[1]))
    if (isinstance(pad, list) and len(pad) == 2 and all(isinstance(v, list) and len(v) == 2 for v in pad)
            and all(isinstance(x, int) and x >= 0 for v in pad for x in v)):
        return tuple(tuple(v) for v in pad)
    raise ValueError(f"{where}: padding {pad!r} is not supported (an int, a pair, or ((top, bottom), (left, right)))")


def _build_functional(config, weights, input_shape, path):
    """A Keras functional model as a graph :class:`fastlrp.Model` (node names: the Keras layer
    names; a fused activation is ``<name>.activation``). ZeroPadding2D is folded into the
    Conv2D or pooling layer it feeds (zero padding before a max pool only after a ReLU, where
    it equals the pool's own padding)."""
    from ..graph import Input, Model

    cfg = config.get("config", {})
    entries = cfg.get("layers")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: the model config has no list of layers")
    outs = cfg.get("output_layers")
    outs = outs[0] if isinstance(outs, list) and len(outs) == 1 and isinstance(outs[0], list) else outs
    if not (isinstance(outs, list) and outs and isinstance(outs[0], str)):
        raise ValueError(f"{path}: expected one output layer, got {cfg.get('output_layers')!r}")
    state, x = {}, None  # Keras layer name -> dict(t=node, shape=(H, W, C) or (F,), hwc, pad, relu)
    for k, entry in enumerate(entries):
        cls = entry.get("class_name") if isinstance(entry, dict) else None
        lcfg = entry.get("config", {}) if isinstance(entry, dict) else {}
        name = lcfg.get("name") or (entry.get("name") if isinstance(entry, dict) else None) or f"#{k}"
        where = f"{path}: layer {k} '{name}' ({cls})"
        if not isinstance(lcfg, dict):
            raise ValueError(f"{where}: malformed config")
        if lcfg.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{where}: data_format {lcfg.get('data_format')!r} is not supported (only channels_last)")
        if cls == "InputLayer":
            if x is not None:
                raise ValueError(f"{where}: a second input; fastlrp models take one")
            bs = lcfg.get("batch_shape") or lcfg.get("batch_input_shape")
            shape = tuple(input_shape) if input_shape is not None else (
                tuple(bs[1:]) if isinstance(bs, list) and len(bs) in (2, 4) and all(isinstance(v, int) for v in bs[1:])
                else None)
            if shape is None:
                raise ValueError(f"{where}: the file does not record the input shape: pass input_shape=(H, W, C)")
            x = Input(None, name="input")
            state[name] = dict(t=x, shape=shape, hwc=None, pad=None, relu=False)
            continue
        srcs = []
        for i in _inbound(entry, where):
            if i not in state:
                raise ValueError(f"{where}: input layer {i!r} is not an earlier layer")
            srcs.append(state[i])
        if not srcs:
            raise ValueError(f"{where}: the layer has no inputs")
        if any(s["pad"] for s in srcs) and cls not in ("Conv2D", "DepthwiseConv2D", "MaxPooling2D", "AveragePooling2D"):
            raise ValueError(f"{where}: a ZeroPadding2D feeds it; only Conv2D and pooling layers may follow one")
        if cls in ("Add", "Concatenate", "Multiply"):
            if any(s["hwc"] for s in srcs):
                raise ValueError(f"{where}: joins of flattened images are not supported")
            if cls == "Add":
                layer, shape = L.Add(), srcs[0]["shape"]
            elif cls == "Multiply":  # a gate: the output has the signal's (the larger) shape
                if len(srcs) != 2:
                    raise ValueError(f"{where}: Multiply of {len(srcs)} inputs; only a signal and a gate")
                layer = L.Mul()
                shape = max((s["shape"] for s in srcs), key=lambda sh: int(np.prod(sh)))
            else:
                axis = lcfg.get("axis", -1)
                if axis not in (-1, len(srcs[0]["shape"])):
                    raise ValueError(f"{where}: axis={axis} is not supported (only the channels, -1)")
                shape = srcs[0]["shape"][:-1] + (sum(s["shape"][-1] for s in srcs),)
                layer = L.Concat(1)
            try:
                t = layer(*(s["t"] for s in srcs), name=name)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            state[name] = dict(t=t, shape=shape, hwc=None, pad=None, relu=False)
            continue
        if len(srcs) != 1:
            raise ValueError(f"{where}: takes {len(srcs)} inputs; only Add, Concatenate and Multiply join tensors")
        src = srcs[0]
        if cls == "ZeroPadding2D":
            if src["pad"]:
                raise ValueError(f"{where}: two ZeroPadding2D in a row are not supported")
            state[name] = dict(src, pad=_zero_padding(lcfg.get("padding", 1), where))
            continue
        shape = src["shape"]
        if src["pad"]:  # the layer sees the padded image
            (t, b), (left, r) = src["pad"]
            shape = (shape[0] + t + b, shape[1] + left + r, shape[2])
        new, hwc = _convert(cls, lcfg, where, weights, name, shape, src["hwc"], len(shape) == 3)
        new = [layer for layer in new if layer is not None]
        if src["pad"]:
            new[0] = _with_padding(new[0], src["pad"], src["relu"], where)
        t, relu = src["t"], src["relu"]
        for j, layer in enumerate(new):
            # a layer that took over a ZeroPadding2D pads itself: it reads the unpadded image
            seen = src["shape"] if j == 0 and src["pad"] else shape
            shape, hwc = _step(layer, seen, shape, hwc, where)
            t = layer(t, name=name if j == 0 else f"{name}.{type(layer).__name__.lower()}")
            relu = isinstance(layer, L.ReLU) or (relu and isinstance(layer, (L.MaxPool2d, L.Dropout, L.Identity)))
        state[name] = dict(t=t, shape=shape, hwc=hwc, pad=None, relu=relu)
    if x is None:
        raise ValueError(f"{path}: the model has no InputLayer")
    if outs[0] not in state or state[outs[0]]["t"] is x:
        raise ValueError(f"{path}: the output layer {outs[0]!r} is not a layer of the model")
    try:
        return Model(x, state[outs[0]]["t"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _step(layer, seen, shape, hwc, where):
    """(output shape (H, W, C) or (F,), pending Flatten) after ``layer`` reads an input of
    ``seen`` (H, W, C); ``shape`` is what a Flatten would record for the Dense after it."""
    chw = (seen[2], seen[0], seen[1]) if len(seen) == 3 else seen
    try:
        out = layer.output_shape(chw)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if isinstance(layer, L.Flatten) and len(chw) == 3 and chw[1] * chw[2] > 1:
        hwc = shape
    return ((out[1], out[2], out[0]) if len(out) == 3 else tuple(out)), hwc


def _with_padding(layer, pad, after_relu, where):
    """A Conv2D/pooling layer that reads a ZeroPadding2D's output, as one layer with that padding
    (((top, bottom), (left, right)); uneven only for a convolution)."""
    if isinstance(layer, L.Conv2d) and layer.padding == (0, 0) and layer.padding_end == (0, 0):
        return L.Conv2d(layer.weight, layer.bias, layer.stride, pad, layer.dilation, layer.groups)
    (t, b), (left, r) = pad
    if (t, left) != (b, r):
        raise ValueError(f"{where}: an uneven ZeroPadding2D {pad} is supported only before a valid Conv2D")
    pad = (t, left)
    if isinstance(layer, L.AvgPool2d) and layer.padding == (0, 0):
        return L.AvgPool2d(layer.kernel_size, layer.stride, pad, count_include_pad=True)
    if isinstance(layer, L.MaxPool2d) and layer.padding == (0, 0):
        if not after_relu:  # zeros equal the pool's own (ignored) padding only for inputs >= 0
            raise ValueError(f"{where}: ZeroPadding2D before a max pool is supported only after a ReLU")
        return L.MaxPool2d(layer.kernel_size, layer.stride, pad)
    raise ValueError(f"{where}: a ZeroPadding2D before {layer!r} is not supported (only before a valid Conv2D or pool)")


def _recorded_input(config, entries):
    for source in (entries[0].get("config", {}) if entries and isinstance(entries[0], dict) else {},
                   config.get("config", {}), config.get("build_input_shape") and {"batch_shape": config["build_input_shape"]}
                   or {}):
        for key in ("batch_shape", "batch_input_shape"):
            v = source.get(key) if isinstance(source, dict) else None
            if isinstance(v, list) and len(v) in (2, 4) and all(isinstance(x, int) for x in v[1:]):
                return tuple(v[1:])
    b = config.get("config", {}).get("build_input_shape") or (entries[1].get("build_config", {}).get("input_shape")
                                                               if len(entries) > 1 and isinstance(entries[1], dict) else None)
    if isinstance(b, list) and len(b) in (2, 4) and all(isinstance(x, int) for x in b[1:]):
        return tuple(b[1:])
    return None


def _hw(shape, image):
    """(H, W) of an image input of known (H, W, C) shape, else None."""
    return tuple(shape[:2]) if image and shape and len(shape) == 3 else None


def _padding(mode, kernel, stride, dil, where, hw=None):
    """A convolution's padding: 0 for 'valid'; for 'same', ((top, bottom), (left, right)) as
    TensorFlow pads for the input's (H, W): the output has ceil(size / stride) entries, the extra
    zero (if the total is odd) at the bottom/right."""
    if mode == "valid":
        return 0
    if mode == "same":
        if hw is None:
            pads = same_padding(kernel, stride, dil)
            if pads is None:
                raise ValueError(f"{where}: padding='same' with stride {stride} and kernel {kernel} needs the input size")
            return pads
        return tuple(tf_same_padding(size, k, s, d) for size, k, s, d in zip(hw, kernel, stride, dil))
    raise ValueError(f"{where}: padding {mode!r} is not supported")
