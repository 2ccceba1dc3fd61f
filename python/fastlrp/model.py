"""The :class:`Sequential` model, BatchNorm folding, and the native ``.npz`` model format."""

from __future__ import annotations

import json
import os

import numpy as np

from . import layers as L
from ._checks import as_batch, as_real_array, check_memory
from ._native import core

__all__ = ["Sequential", "fold_batchnorm", "load"]


def fold_batchnorm(layers) -> "Sequential":
    """A model with every BatchNorm1d directly after a Dense, and every BatchNorm2d directly
    after a Conv2d, folded into that layer.

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
        if isinstance(layer, L.BatchNorm2d):
            if isinstance(prev, L.Conv2d) and prev.out_channels == layer.num_features:
                scale = layer.scale.astype(np.float64)
                w = prev.weight.astype(np.float64) * scale[:, None, None, None]
                b = (prev.bias.astype(np.float64) - layer.mean) * scale + layer.bias
                out[-1] = L.Conv2d(w, b, prev.stride, prev.padding, prev.dilation, prev.groups, prev.padding_end)
                continue
        elif isinstance(layer, L.BatchNorm1d) and isinstance(prev, L.Dense) and prev.out_features == layer.in_features:
            scale = layer.scale.astype(np.float64)
            out[-1] = L.Dense(prev.weight.astype(np.float64) * scale[:, None],
                              (prev.bias.astype(np.float64) - layer.mean) * scale + layer.bias)
            continue
        out.append(layer)
    return out


_SPATIAL = (L.Conv2d, L._Pool, L.AdaptiveAvgPool2d, L.BatchNorm2d)


def check_images(x) -> None:
    """An image model's input must be an NCHW batch."""
    if x.ndim != 4:
        raise ValueError(f"x: expected an NCHW batch of images (N, C, H, W), got shape {x.shape}"
                         + (" (for one image use x[None])" if x.ndim == 3 else ""))


def first_kind(layers):
    """"image" or "flat": what the first shape-fixing layer takes (None: no layer fixes it)."""
    for layer in layers:
        if isinstance(layer, _SPATIAL):
            return "image"
        if isinstance(layer, (L.Dense, L.BatchNorm1d, L.Flatten)):
            return "flat"
    return None


def flat_in_features(layers):
    """The input width that the first Dense/BatchNorm1d fixes, when no image layer comes first."""
    for layer in layers:
        if isinstance(layer, (L.Dense, L.BatchNorm1d)) and not isinstance(layer, L.BatchNorm2d):
            return layer.in_features
        if isinstance(layer, (_SPATIAL, L.Flatten)):
            return None
    return None


class Sequential:
    """A chain of layers, run by the C++ core.

    BatchNorm layers that directly follow a Dense (BatchNorm1d) or a Conv2d (BatchNorm2d) are
    folded into it here, so ``model.layers`` lists the layers that actually run (and that
    composites index). Inputs are (N, features) or, for a model that starts with image
    layers, NCHW (N, C, H, W).

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
        self._check_chain()
        self._nets = {}
        self._shapes = {}
        self._takes_images = first_kind(self.layers) == "image"
        self._in_features = flat_in_features(self.layers)

    def _check_chain(self):
        """Checks what can be checked without the input's spatial size: feature counts between
        Dense/BatchNorm1d layers, channel counts between image layers."""
        kind, size, where = None, None, None  # ("flat"|"image", features|channels or None, layer index)
        for k, layer in enumerate(self.layers):
            def fail(expected, got_kind, got):
                src = f"layer {where} {self.layers[where]!r} gives" if where is not None else "the input gives"
                raise ValueError(f"layers do not chain: {src} {got} {got_kind} but layer {k} {layer!r} expects {expected}")

            if isinstance(layer, (L.Dense, L.BatchNorm1d)) and not isinstance(layer, L.BatchNorm2d):
                if kind == "image":
                    raise ValueError(f"layers do not chain: layer {k} {layer!r} expects flat features but layer "
                                     f"{where} {self.layers[where]!r} gives images; add a Flatten between them")
                if kind == "flat" and size is not None and size != layer.in_features:
                    fail(layer.in_features, "features", size)
                kind, size, where = "flat", (layer.out_features if isinstance(layer, L.Dense) else layer.in_features), k
            elif isinstance(layer, (L.Conv2d, L.BatchNorm2d)):
                need = layer.in_channels if isinstance(layer, L.Conv2d) else layer.num_features
                if kind == "flat":
                    raise ValueError(f"layers do not chain: layer {k} {layer!r} expects (C, H, W) images but layer "
                                     f"{where} {self.layers[where]!r} gives flat features")
                if kind == "image" and size is not None and size != need:
                    fail(need, "channels", size)
                kind, size, where = "image", (layer.out_channels if isinstance(layer, L.Conv2d) else need), k
            elif isinstance(layer, (L._Pool, L.AdaptiveAvgPool2d)):
                if kind == "flat":
                    raise ValueError(f"layers do not chain: layer {k} {layer!r} expects (C, H, W) images but layer "
                                     f"{where} {self.layers[where]!r} gives flat features")
                kind, where = "image", k
            elif isinstance(layer, L.Flatten):
                if kind == "image":
                    kind, size, where = "flat", None, k

    @property
    def takes_images(self) -> bool:
        """True when the input is NCHW images (the first shape-fixing layer is an image layer)."""
        return self._takes_images

    @property
    def in_features(self) -> int | None:
        """Input width of a model on flat features (None for image models or when no layer fixes it)."""
        return self._in_features

    @property
    def out_features(self) -> int | None:
        """Output width when it does not depend on the input's size."""
        for layer in reversed(self.layers):
            if isinstance(layer, L.Dense):
                return layer.out_features
            if not isinstance(layer, L._Elementwise):
                return None
        return None

    def shapes(self, sample_shape) -> list:
        """Per-sample shape at every layer boundary (input first) for inputs of ``sample_shape``."""
        cached = self._shapes.get(sample_shape)
        if cached is not None:
            return cached
        sample_shape = tuple(int(v) for v in sample_shape)
        shapes = [sample_shape]
        for k, layer in enumerate(self.layers):
            try:
                shapes.append(tuple(int(v) for v in layer.output_shape(shapes[-1])))
            except ValueError as exc:
                raise ValueError(f"layer {k} {layer!r}: {exc}") from None
            if 0 in shapes[-1]:
                raise ValueError(f"layer {k} {layer!r}: output shape {shapes[-1]} is empty for input {shapes[-2]}")
        self._shapes[sample_shape] = shapes
        return shapes

    def _as_input(self, x) -> np.ndarray:
        """x checked against the model: (N, features) or NCHW (N, C, H, W), real dtype."""
        x = as_real_array(x)
        if self._takes_images:
            check_images(x)
            try:
                self.shapes(x.shape[1:])
            except ValueError as exc:
                raise ValueError(f"x of shape {x.shape}: {exc}") from None
            return x
        x = as_batch(x, self._in_features)
        self.shapes(x.shape[1:])
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, k):
        return self.layers[k]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({k}) {layer!r}" for k, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def forward(self, x) -> np.ndarray:
        """The model's output for x (N, in) or (N, C, H, W), output nonlinearity included."""
        x = self._as_input(x)
        shapes = self.shapes(x.shape[1:])
        check_memory(self.layers, shapes, x.shape[0], x.dtype.itemsize, False)
        y = self._network(x.dtype.type, shapes).forward(to_internal(x))
        return from_internal(y, shapes[-1])

    __call__ = forward

    def _network(self, dtype, shapes, rules=None):
        """The C++ network for a dtype and input shape (and rule list); forward-only networks
        are cached."""
        key = (dtype, shapes[0])
        if rules is None and key in self._nets:
            return self._nets[key]
        net = build_network(self.layers, dtype, shapes, rules)
        if rules is None:
            self._nets[key] = net
        return net

    # ---- native format ---------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model to a numpy ``.npz`` file (no pickles), readable by :func:`load`."""
        arrays = {}
        config = [layer_entry(layer, f"{k}.", arrays) for k, layer in enumerate(self.layers)]
        header = {"format": _FORMAT, "layers": config}
        write_npz(path, header, arrays)

    def __reduce__(self):
        # pickle (Dask, multiprocessing) goes through the .npz bytes: nothing but arrays and
        # JSON crosses, and the way back reads them with allow_pickle=False
        return from_bytes, (to_bytes(self),)


_FORMAT = "fastlrp-model-1"
_GRAPH_FORMAT = "fastlrp-graph-1"
_PARAMS = {L.Dense: ("weight", "bias"), L.Conv2d: ("weight", "bias"), L.BatchNorm1d: ("mean", "var", "weight", "bias"),
           L.BatchNorm2d: ("mean", "var", "weight", "bias")}
_SCALARS = {L.LeakyReLU: ("negative_slope",), L.ELU: ("alpha",), L.Dropout: ("p",), L.BatchNorm1d: ("eps",),
            L.BatchNorm2d: ("eps",), L.Conv2d: ("stride", "padding", "dilation", "groups", "padding_end"),
            L.GELU: ("approximate",),
            L.MaxPool2d: ("kernel_size", "stride", "padding", "mode", "ceil_mode"),
            L.AvgPool2d: ("kernel_size", "stride", "padding", "count_include_pad", "ceil_mode"),
            L.SumPool2d: ("kernel_size", "stride", "padding"), L.AdaptiveAvgPool2d: ("output_size",),
            L.Concat: ("axis",), L.ChannelShuffle: ("groups",), L.Chunk: ("chunks", "index"),
            L.Narrow: ("start", "length")}
_TYPES = {cls.__name__: cls for cls in (L.Dense, L.ReLU, L.LeakyReLU, L.Tanh, L.Sigmoid, L.ELU, L.SELU,
                                        L.Softmax, L.LogSoftmax, L.Dropout, L.Flatten, L.Identity, L.BatchNorm1d,
                                        L.BatchNorm2d, L.Conv2d, L.MaxPool2d, L.AvgPool2d, L.SumPool2d,
                                        L.AdaptiveAvgPool2d, L.Add, L.Concat, L.Mul, L.SiLU, L.GELU,
                                        L.Hardswish, L.Hardsigmoid, L.ReLU6, L.Mish, L.ChannelShuffle, L.Chunk,
                                        L.Narrow)}


def write_npz(path, header, arrays) -> None:
    """The native format: a JSON header and the named arrays, to a path or a binary file object."""
    if hasattr(path, "write"):
        np.savez(path, __config__=np.array(json.dumps(header)), **arrays)
        return
    with open(os.fspath(path), "wb") as f:
        np.savez(f, __config__=np.array(json.dumps(header)), **arrays)


def to_bytes(model) -> bytes:
    """A model's ``.npz`` file as bytes (what pickling a model sends)."""
    import io

    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


def from_bytes(data: bytes):
    """The model that :func:`to_bytes` wrote (read like :func:`load`: no pickles)."""
    import io

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"from_bytes: expected bytes, got {type(data).__name__}")
    return load(io.BytesIO(bytes(data)))


def load(path):
    """Read a model written by :meth:`Sequential.save`; never unpickles anything. A damaged or
    foreign file is a ValueError naming the problem."""
    name = "<model bytes>" if hasattr(path, "read") else path
    try:
        return _load(path)
    except (ValueError, MemoryError):
        raise
    except OSError as exc:
        if not hasattr(path, "read") and not os.path.exists(os.fspath(path)):
            raise ValueError(f"{path}: cannot read a fastlrp model ({exc})") from None
        raise ValueError(f"{name}: not a readable fastlrp model ({type(exc).__name__}: {str(exc)[:200]})") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged archive makes zipfile/numpy raise
        raise ValueError(f"{name}: not a readable fastlrp model ({type(exc).__name__}: {str(exc)[:200]})") from None


class _SafeNpz:
    """The arrays of an .npz archive, each read only after its header's claimed size is checked
    against the member's real size (np.load would allocate what a header claims first)."""

    def __init__(self, path):
        import zipfile

        self.path = "<model bytes>" if hasattr(path, "read") else path
        try:
            self.zip = zipfile.ZipFile(path if hasattr(path, "read") else os.fspath(path))
        except zipfile.BadZipFile:
            raise ValueError(f"{self.path}: expected a .npz archive written by Sequential.save (not a zip file)") from None
        self.files = [n[:-4] for n in self.zip.namelist() if n.endswith(".npy")]

    def __getitem__(self, key):
        fmt = np.lib.format
        info = self.zip.getinfo(key + ".npy")
        with self.zip.open(info) as fp:
            version = fmt.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fp)
            else:  # numpy writes 1.0 for these arrays (3.0 only for non-latin1 field names)
                raise ValueError(f"{self.path}: entry {key!r} has .npy format version {version}; expected 1.0 or 2.0")
            if dtype.hasobject:
                raise ValueError(f"{self.path}: entry {key!r} holds Python objects; refused (no pickles)")
            need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if need > info.file_size:
                raise ValueError(f"{self.path}: entry {key!r} claims shape {shape} ({need:,} bytes) but holds "
                                 f"{info.file_size:,}")
        with self.zip.open(info) as fp:
            return fmt.read_array(fp, allow_pickle=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()


def _load(path):
    npz = _SafeNpz(path)
    path = npz.path
    with npz:
        if "__config__" not in npz.files:
            raise ValueError(f"{path}: no '__config__' entry; not a fastlrp model file")
        try:
            header = json.loads(str(npz["__config__"]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: entry '__config__' is not valid JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") not in (_FORMAT, _GRAPH_FORMAT):
            raise ValueError(f"{path}: expected format {_FORMAT!r}, got {header.get('format') if isinstance(header, dict) else header!r}")
        config = header.get("layers")
        if not isinstance(config, list):
            raise ValueError(f"{path}: entry 'layers' must be a list")
        if header.get("format") == _GRAPH_FORMAT:
            from .graph import model_from_config

            return model_from_config(path, header, npz)
        built = [layer_from_entry(path, k, entry, npz, f"{k}.") for k, entry in enumerate(config)]
    return Sequential(built)


def layer_from_entry(path, k, entry, npz, prefix):
    """The layer that a saved model's config entry (and its arrays ``prefix + name``) describes."""
    if not isinstance(entry, dict) or entry.get("type") not in _TYPES:
        raise ValueError(f"{path}: layer {k}: unknown layer type {entry.get('type') if isinstance(entry, dict) else entry!r}; "
                         f"supported: {sorted(_TYPES)}")
    cls = _TYPES[entry["type"]]
    kwargs = {}
    for name in _PARAMS.get(cls, ()):
        key = f"{prefix}{name}"
        if key not in npz.files:
            raise ValueError(f"{path}: layer {k} ({cls.__name__}): missing array '{key}'")
        kwargs[name] = npz[key]
    for name in _SCALARS.get(cls, ()):
        if name in entry:
            kwargs[name] = entry[name]
    unknown = set(entry) - {"type", "name", "inputs"} - set(_SCALARS.get(cls, ()))
    if unknown:
        raise ValueError(f"{path}: layer {k} ({cls.__name__}): unknown keys {sorted(unknown)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: layer {k} ({cls.__name__}): {exc}") from exc


def layer_entry(layer, prefix, arrays) -> dict:
    """A layer's config entry for a saved model; its arrays go into ``arrays`` as ``prefix + name``."""
    entry = {"type": type(layer).__name__}
    for name in _PARAMS.get(type(layer), ()):
        arrays[f"{prefix}{name}"] = getattr(layer, name)
    for name in _SCALARS.get(type(layer), ()):
        value = getattr(layer, name)
        entry[name] = list(value) if isinstance(value, tuple) else value
    return entry


def to_internal(x: np.ndarray) -> np.ndarray:
    """(N, F) as is; NCHW images as NHWC rows (N, H*W*C), the core's layout."""
    if x.ndim == 2 and x.flags.c_contiguous:
        return x
    width = int(np.prod(x.shape[1:]))
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(x.shape[0], width)
    return np.ascontiguousarray(x).reshape(x.shape[0], width)


def from_internal(a: np.ndarray, shape: tuple) -> np.ndarray:
    """Rows of the core's layout back to (N,) + shape, NCHW for images."""
    if len(shape) == 3:
        c, h, w = shape
        return np.ascontiguousarray(a.reshape(a.shape[0], h, w, c).transpose(0, 3, 1, 2))
    return a  # (N, F) already


def image_vector(values: np.ndarray, shape: tuple) -> np.ndarray:
    """Per-sample values of ``shape`` (C, H, W) or (F,) flattened in the core's layout."""
    values = np.asarray(values)
    if len(shape) == 3:
        return np.ascontiguousarray(values.reshape(shape).transpose(1, 2, 0)).ravel()
    return values.ravel()


def build_network(layers, dtype, shapes, rules=None):
    """A C++ network of ``dtype`` for ``layers`` on inputs of ``shapes[0]``; with ``rules``
    the per-layer LRP rules are prepared (modified weights computed once)."""
    net = core.Network_float64() if dtype is np.float64 else core.Network_float32()
    for k, layer in enumerate(layers):
        lower_layer(net, layer, rules[k] if rules is not None else None, shapes[k], dtype, f"layer {k}")
    return net


def lower_layer(sink, layer, rule, shape, dtype, where):
    """Hands one single-input layer, its rule (None: forward only) and its input ``shape`` to
    the core: ``sink`` has the core's ``add_dense``/``add_conv``/... methods (a Network, or a
    graph node's input bound, fastlrp.graph). The one place that lowers layers and rules."""
    from .rules import Epsilon, Pass, ZBox

    width = int(np.prod(shape))
    empty = np.zeros(0, dtype=dtype)

    def c(a):  # the kernels take C-contiguous arrays of the network's dtype
        return np.ascontiguousarray(a, dtype=dtype)

    low = high = empty
    if isinstance(rule, ZBox):
        lo, hi = rule.bounds_for(shape)
        low, high = c(image_vector(lo, shape)), c(image_vector(hi, shape))
    native = (rule or Epsilon())._native()
    if isinstance(layer, L.Dense):
        sink.add_dense(c(layer.weight), c(layer.bias), native, low, high)
    elif isinstance(layer, L.Conv2d):
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = layer.kernel_size, layer.stride, layer.padding, layer.dilation
        w = layer.weight.transpose(0, 2, 3, 1).reshape(layer.out_channels, -1)  # (out, kh*kw*C)
        sink.add_conv(*shape, c(w), c(layer.bias), kh, kw, sh, sw, ph, pw, dh, dw, layer.groups, native, low, high,
                      *layer.padding_end)
    elif isinstance(layer, (L._Pool, L.AdaptiveAvgPool2d)):
        if isinstance(layer, L.AdaptiveAvgPool2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.output_size, (1, 1), (0, 0)
        else:
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
        sink.add_pool(layer._kind, *shape, kh, kw, sh, sw, ph, pw, getattr(layer, "count_include_pad", True),
                      getattr(layer, "mode", "winner") == "avg", native, low, getattr(layer, "ceil_mode", False))
    elif isinstance(layer, L.Flatten) and len(shape) == 3:
        sink.add_flatten(*shape)
    elif isinstance(layer, L._Gather):
        sink.add_gather(width, layer.gather_index(shape))
    elif isinstance(layer, L._Elementwise):
        sink.add_activation(layer._code, layer.param, width)
    elif isinstance(layer, L.BatchNorm1d):  # also BatchNorm2d (per channel, tiled over H, W)
        reps = width // layer.mean.shape[0]
        sink.add_affine(c(np.tile(layer.scale, reps)), c(np.tile(layer.shift, reps)), (rule or Pass())._native())
    else:  # pragma: no cover - every layer class is listed above
        raise TypeError(f"{where}: {layer!r} is not supported by the C++ core")
