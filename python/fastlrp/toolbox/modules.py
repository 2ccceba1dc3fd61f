"""The numpy LRP toolbox's ``modules``, computed by fastlrp's C++ core.

A toolbox script switches by changing its import (``from fastlrp.toolbox import modules``):
the classes keep the toolbox's names, constructor arguments, ``W``/``B`` attributes, NHWC
data, float64 arithmetic and methods (``forward``, ``lrp``, ``set_lrp_parameters``,
``clean``, ``drop_softmax_output_layer``). Rules follow the toolbox convention of
``docs/rules.md`` (see :mod:`fastlrp.toolbox._rules`). fastlrp is inference-only: the training
methods raise ``NotImplementedError``.

Differences from the toolbox, all deliberate:

- bad input raises ``ValueError``/``TypeError`` naming the layer (the toolbox prints or
  crashes later); an unknown rule name is an error, not a printed warning;
- SoftMax subtracts the row maximum (same values, no overflow) and must be the last layer;
- SumPool ``'alphabeta'`` computes docs/rules.md's formula (the toolbox multiplies its beta
  term by R twice, visible only on signed inputs);
- a zero denominator (``'ww'`` over an all-zero weight column) passes no relevance instead
  of NaN;
- ``W`` and ``B`` are read-only arrays: assign a new array (``layer.W = W2``) to change them.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import layers as L
from .._checks import check_memory
from ..model import Sequential as _NativeSequential
from ..model import build_network
from . import _rules

__all__ = ["Module", "Sequential", "Linear", "Convolution", "SumPool", "MaxPool", "Flatten", "Rect", "Tanh",
           "SoftMax"]

_INFERENCE_ONLY = ("fastlrp.toolbox is inference-only: {what} is not implemented. Train with the numpy toolbox "
                   "or another framework, then load the weights (model_io.read) or assign W and B.")


def _pair(v, what: str) -> tuple:
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        v = (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise TypeError(f"{what}: expected a pair of positive ints, got {v!r}") from None
    out = []
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < 1:
            raise ValueError(f"{what}: expected a pair of positive ints, got {v!r}")
        out.append(int(x))
    return tuple(out)


def _param_array(value, shape: tuple, what: str) -> np.ndarray:
    """A read-only float64 C-contiguous copy of ``value`` of exactly ``shape``."""
    try:
        a = np.array(value, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected a real array of shape {shape}, got {type(value).__name__}") from exc
    if a.shape != shape:
        raise ValueError(f"{what}: expected shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: expected finite values, got {int((~np.isfinite(a)).sum())} NaN/Inf")
    a.setflags(write=False)
    return a


def _as_data(X, what: str = "X") -> np.ndarray:
    """The toolbox computes in float64: X as a float64 C-contiguous array."""
    if isinstance(X, (bool, np.bool_)) or not hasattr(X, "__len__") and not isinstance(X, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(X).__name__}")
    a = np.asarray(X)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{what}: expected a real array, got dtype {a.dtype}")
    if a.ndim not in (2, 4):
        raise ValueError(f"{what}: expected (N, D) vectors or (N, H, W, D) NHWC images, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


class Module:
    """Base class: LRP presets, the last forward input ``X`` and output ``Y``."""

    _kind = "elementwise"

    def __init__(self):
        self.lrp_var = None
        self.lrp_param = 1.0
        self.X = None
        self.Y = None
        self._version = 0
        self._owner = None  # the Sequential whose forward this module was part of

    # -- the toolbox's LRP interface --------------------------------------------------------
    def set_lrp_parameters(self, lrp_var=None, param=None):
        """Preset this layer's rule, used when ``lrp`` is called without rule and parameter."""
        _rules.canonical(lrp_var)  # an unknown name fails here, not at the first lrp call
        self.lrp_var = lrp_var
        self.lrp_param = param

    def forward(self, X, lrp_aware=False):
        """This layer's output for ``X`` (kept, with ``X``, for a following ``lrp``)."""
        X = _as_data(X)
        self.X = X
        self.Y = _Runner([self]).forward(X)[0]
        self._owner = None
        return self.Y

    def lrp(self, R, lrp_var=None, param=None):
        """The relevance at this layer's input for relevance ``R`` at its output (the last
        ``forward``'s input and output)."""
        if self.X is None and self._owner is not None:
            self._owner._materialize()
        if self.X is None:
            raise ValueError(f"{self!r}: call forward(X) before lrp(R)")
        if lrp_var is None and param is None:
            lrp_var, param = self.lrp_var, self.lrp_param
        return _Runner([self]).lrp(self.X, R, [(lrp_var, param)])

    def clean(self):
        """Forget the temporaries of the last forward pass."""
        self.X = None
        self.Y = None

    def _rule(self, lrp_var, param, k: int):
        return _rules.resolve(self._kind, lrp_var, param, what=f"layer {k} {self!r}")

    # -- numpy/cupy backends of the toolbox: numpy only --------------------------------------
    def to_numpy(self):
        return self

    def to_cupy(self):
        raise NotImplementedError("fastlrp.toolbox runs on the CPU with numpy; cupy is not supported")

    # -- training: not in fastlrp --------------------------------------------------------------
    def backward(self, DY):
        raise NotImplementedError(_INFERENCE_ONLY.format(what=f"{type(self).__name__}.backward"))

    def update(self, lrate):
        raise NotImplementedError(_INFERENCE_ONLY.format(what=f"{type(self).__name__}.update"))

    def train(self, *args, **kwargs):
        raise NotImplementedError(_INFERENCE_ONLY.format(what=f"{type(self).__name__}.train"))

    def _native(self, shape: tuple):
        """The fastlrp layer for a toolbox input of per-sample ``shape`` (NHWC or flat)."""
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _Weighted(Module):
    """Linear and Convolution: ``W`` and ``B`` are read-only float64 copies; assigning either
    makes the core rebuild its layers (the core's layout of W is made once per assignment)."""

    _kind = "linear"

    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._W = _param_array(value, self._w_shape(), f"{self!r}.W")
        self._Wcore = self._core_layout(self._W)
        self._version += 1

    @property
    def B(self):
        return self._B

    @B.setter
    def B(self, value):
        self._B = _param_array(value, (self.n,), f"{self!r}.B")
        self._version += 1


class Linear(_Weighted):
    """``Y = X @ W + B`` with ``W`` (m, n), ``B`` (n,); random init as the toolbox."""

    def __init__(self, m, n):
        Module.__init__(self)
        for v, what in ((m, "m"), (n, "n")):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"Linear: {what} must be a positive int, got {v!r}")
        self.m, self.n = int(m), int(n)
        self.B = np.zeros(self.n)
        self.W = np.random.normal(0, 1.0 * self.m ** -0.5, (self.m, self.n))

    def _w_shape(self):
        return (self.m, self.n)

    @staticmethod
    def _core_layout(W):
        return np.ascontiguousarray(W.T)  # (out, in), as fastlrp.Dense

    def _native(self, shape):
        return L.Dense(self._Wcore, self._B)

    def __repr__(self) -> str:
        return f"Linear({self.m}, {self.n})"


class Convolution(_Weighted):
    """Valid cross-correlation over NHWC images; ``W`` (h, w, d, n), ``B`` (n,)."""

    def __init__(self, filtersize=(5, 5, 3, 32), stride=(2, 2)):
        Module.__init__(self)
        try:
            fh, fw, fd, n = filtersize
        except (TypeError, ValueError):
            raise TypeError(f"Convolution: filtersize must be (h, w, d, n), got {filtersize!r}") from None
        self.fh, self.fw = _pair((fh, fw), "Convolution filtersize (h, w)")
        self.fd, self.n = _pair((fd, n), "Convolution filtersize (d, n)")
        self.stride = _pair(stride, "Convolution stride")
        self.B = np.zeros(self.n)
        self.W = np.random.normal(0, 1.0 / (self.fh * self.fw * self.fd) ** 0.5, (self.fh, self.fw, self.fd, self.n))

    def _w_shape(self):
        return (self.fh, self.fw, self.fd, self.n)

    @staticmethod
    def _core_layout(W):
        return np.ascontiguousarray(W.transpose(3, 2, 0, 1))  # (out, in, kh, kw), as fastlrp.Conv2d

    def _native(self, shape):
        return L.Conv2d(self._Wcore, self._B, stride=self.stride)

    def __repr__(self) -> str:
        return f"Convolution(filtersize={(self.fh, self.fw, self.fd, self.n)}, stride={self.stride})"


class _Pool(Module):
    def __init__(self, pool=(2, 2), stride=(2, 2)):
        Module.__init__(self)
        self.pool = _pair(pool, f"{type(self).__name__} pool")
        self.stride = _pair(stride, f"{type(self).__name__} stride")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pool={self.pool}, stride={self.stride})"


class SumPool(_Pool):
    """Window sum times ``1/sqrt(h*w)``, no padding."""

    _kind = "sumpool"

    def _native(self, shape):
        return L.SumPool2d(self.pool, self.stride)

    def _rule(self, lrp_var, param, k):
        w = 1.0 / np.sqrt(self.pool[0] * self.pool[1])
        return _rules.resolve(self._kind, lrp_var, param, pool_weight=w, what=f"layer {k} {self!r}")


class MaxPool(_Pool):
    """Per-channel window maximum, no padding; LRP winner-takes-all (ties split evenly)."""

    _kind = "maxpool"

    def _native(self, shape):
        return L.MaxPool2d(self.pool, self.stride)


class Flatten(Module):
    """(N, H, W, D) to (N, H*W*D), channel fastest."""

    def forward(self, X, lrp_aware=False):
        X = _as_data(X)
        self.inputshape = X.shape
        return Module.forward(self, X)

    def _native(self, shape):
        return L.Flatten()


class Rect(Module):
    """ReLU."""

    def _native(self, shape):
        return L.ReLU()


class Tanh(Module):
    def _native(self, shape):
        return L.Tanh()


class SoftMax(Module):
    """Row-wise softmax (the last layer only); LRP passes its relevance through."""

    def _native(self, shape):
        return L.Softmax()


_TYPES = (Linear, Convolution, SumPool, MaxPool, Flatten, Rect, Tanh, SoftMax)


class Sequential(Module):
    """The toolbox's network: ``forward(X)`` then ``lrp(R, lrp_var, param)``.

    ``lrp(R)`` without rule and parameter uses each layer's preset
    (``modules[k].set_lrp_parameters``); with either, the rule applies to every layer.
    """

    def __init__(self, modules):
        Module.__init__(self)
        try:
            modules = list(modules)
        except TypeError:
            raise TypeError(f"Sequential: expected a list of toolbox modules, got {type(modules).__name__}") from None
        self.modules = modules
        self._acts = None  # (key, X, every layer's output) of the last forward, reused by lrp

    def forward(self, X, lrp_aware=False):
        X = _as_data(X)
        runner = _Runner(self.modules)
        # every layer's output is kept (a few MB), so that lrp() does not run the forward again
        self.Y, self._acts = runner.forward(X, keep=True)
        self.X = X
        for m in self.modules:  # per-layer temporaries are made when a layer's lrp asks for them
            m.X = m.Y = None
            m._owner = self
        return self.Y

    def lrp(self, R, lrp_var=None, param=None):
        if self.X is None:
            raise ValueError("Sequential: call forward(X) before lrp(R)")
        if lrp_var is None and param is None:
            rules = [(m.lrp_var, m.lrp_param) for m in self.modules]
        else:
            rules = [(lrp_var, param)] * len(self.modules)
        return _Runner(self.modules).lrp(self.X, R, rules, given=self._acts)

    def set_lrp_parameters(self, lrp_var=None, param=None):
        _rules.canonical(lrp_var)
        for m in self.modules:
            m.set_lrp_parameters(lrp_var, param)

    def clean(self):
        Module.clean(self)
        self._acts = None
        for m in self.modules:
            m.clean()

    def drop_softmax_output_layer(self):
        """Remove a final SoftMax (the toolbox demos explain the scores before it)."""
        if self.modules and isinstance(self.modules[-1], SoftMax):
            print("removing softmax output mapping")
            del self.modules[-1]
        else:
            print("output layer is not softmax. nothing to do")

    def _materialize(self):
        """Every layer's X and Y of the last forward, for per-layer lrp calls."""
        X = self.X
        for m in self.modules:
            X = m.forward(X)
            m._owner = self

    def to_sequential(self, input_shape=None) -> _NativeSequential:
        """The native :class:`fastlrp.Sequential` with the same weights.

        It takes NCHW images (``x.transpose(0, 3, 1, 2)`` of the toolbox's NHWC data) or
        (N, D) vectors, and gives the same outputs and relevance (NCHW). ``input_shape``
        (H, W, D) is needed only when a Flatten of an image is followed by a Linear layer;
        by default the last forward's input shape is used. After such a Flatten the native
        model orders features as torch does (channel slowest); the following Linear's
        weights are permuted to match, so outputs agree.
        """
        if input_shape is None and self.X is not None:
            input_shape = self.X.shape[1:]
        if input_shape is None:
            first = self.modules[0] if self.modules else None
            if isinstance(first, Linear):
                input_shape = (first.m,)
            elif any(isinstance(m, Flatten) for m in self.modules):
                raise ValueError("to_sequential: this model flattens images; pass input_shape=(H, W, D) "
                                 "or call forward(X) first")
            elif isinstance(first, Convolution):
                input_shape = (first.fh, first.fw, first.fd)  # any spatial size gives the same layers
            else:
                raise ValueError("to_sequential: pass input_shape=(H, W, D) or (D,)")
        return _Runner(self.modules).native(tuple(input_shape))[0]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({k}) {m!r}" for k, m in enumerate(self.modules))
        return f"Sequential({inner}\n)"


class _Runner:
    """Runs a list of toolbox modules through the core: native layers built per input shape
    and cached on the first module (keyed by every module's identity and weight version)."""

    _MAX_CACHE = 8

    def __init__(self, modules):
        self.modules = list(modules)
        if not self.modules:
            raise ValueError("Sequential: the model has no layers")
        for k, m in enumerate(self.modules):
            if not isinstance(m, _TYPES):
                raise TypeError(f"layer {k}: {m!r} is not a toolbox module; expected one of "
                                f"{', '.join(t.__name__ for t in _TYPES)}")
        for k, m in enumerate(self.modules[:-1]):
            if isinstance(m, SoftMax):
                raise ValueError(f"layer {k} SoftMax(): fastlrp supports SoftMax only as the last layer")

    def _cache(self) -> dict:
        host = self.modules[0]
        cache = host.__dict__.get("_fastlrp_cache")
        if cache is None:
            cache = host.__dict__["_fastlrp_cache"] = {}
        return cache

    def native(self, shape: tuple):
        """(native Sequential, per-sample shapes, output column order and its inverse or None,
        output shape, prepared networks by rules) for toolbox inputs of per-sample ``shape``."""
        key = self.key(shape)
        cache = self._cache()
        hit = cache.get(key)
        if hit is not None:
            return hit
        layers, cur, hwc = [], tuple(shape), None  # hwc: (H, W, D) while a flattened image is in torch order
        for k, m in enumerate(self.modules):
            if len(cur) == 3 and isinstance(m, Linear):
                raise ValueError(f"layer {k} {m!r}: expects (N, {m.m}) vectors, got images of shape {cur} "
                                 "(add a Flatten before it)")
            if len(cur) == 1 and isinstance(m, (Convolution, SumPool, MaxPool)):
                raise ValueError(f"layer {k} {m!r}: expects (N, H, W, D) images, got vectors of {cur[0]} features")
            layer = m._native(cur)
            if isinstance(m, Linear) and hwc is not None:
                h, w, d = hwc  # the toolbox's rows are (y, x, c)-ordered; the native Flatten's (c, y, x)
                if m.m != h * w * d:
                    raise ValueError(f"layer {k} {m!r}: expects {m.m} features, got {h * w * d} from the Flatten of {hwc}")
                perm = np.arange(h * w * d).reshape(h, w, d).transpose(2, 0, 1).ravel()
                layer = L.Dense(np.ascontiguousarray(m._Wcore[:, perm]), m._B)
                hwc = None
            if isinstance(m, Flatten) and len(cur) == 3 and cur[0] * cur[1] > 1:
                hwc = cur
            layers.append(layer)
            chw = (cur[2], cur[0], cur[1]) if len(cur) == 3 else cur
            try:
                out = layer.output_shape(chw)
            except ValueError as exc:
                raise ValueError(f"layer {k} {m!r}: {exc} (toolbox input shape {cur})") from None
            if 0 in out:
                raise ValueError(f"layer {k} {m!r}: the output is empty for input {cur}")
            cur = (out[1], out[2], out[0]) if len(out) == 3 else tuple(out)
        model = _NativeSequential(layers)
        chw0 = (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)
        shapes = model.shapes(chw0)
        order = None
        if hwc is not None:  # ends on a flattened image: give the toolbox's (y, x, c) order back
            h, w, d = hwc
            order = np.arange(h * w * d).reshape(d, h, w).transpose(1, 2, 0).ravel()
            order = (order, np.argsort(order))
        if len(cache) >= self._MAX_CACHE:
            cache.clear()
        hit = cache[key] = (model, shapes, order, cur, {})
        return hit

    @staticmethod
    def _net(model, shapes, nets, rules):
        """The C++ network of ``model`` with ``rules`` (None: forward only), built once."""
        key = None if rules is None else tuple((r._kind, r._params(), r._stabilizer) for r in rules)
        net = nets.get(key)
        if net is None:
            net = nets[key] = build_network(model.layers, np.float64, shapes, rules)
        return net

    def key(self, shape) -> tuple:
        return (tuple(shape), tuple((id(m), m._version) for m in self.modules))

    def forward(self, X: np.ndarray, keep: bool = False):
        """(Y in the toolbox's shape, None or (key, X, every layer's output) with keep)."""
        shape = X.shape[1:]
        model, shapes, order, out_shape, nets = self.native(shape)
        check_memory(model.layers, shapes, X.shape[0], 8, False)
        net = next(iter(nets.values()), None) or self._net(model, shapes, nets, None)  # any rules: same forward
        X2 = X.reshape(X.shape[0], -1)
        if keep:
            acts = net.forward_all(X2)
            Y = acts[-1]
        else:
            acts, Y = None, net.forward(X2)
        if order is not None:
            Y = Y[:, order[0]]
        return Y.reshape((X.shape[0],) + tuple(out_shape)), (None if acts is None else (self.key(shape), X, acts))

    def lrp(self, X: np.ndarray, R, presets, given=None) -> np.ndarray:
        rules = [m._rule(v, p, k) for k, (m, (v, p)) in enumerate(zip(self.modules, presets))]
        model, shapes, order, out_shape, nets = self.native(X.shape[1:])
        net = self._net(model, shapes, nets, rules)
        R = _as_data(R, "R") if np.ndim(R) in (2, 4) else np.asarray(R, dtype=np.float64)
        expected = (X.shape[0],) + tuple(out_shape)
        if R.shape != expected:
            raise ValueError(f"R: expected the shape of the last forward output {expected}, got {R.shape}")
        check_memory(model.layers, shapes, X.shape[0], 8, False)
        R2 = R.reshape(R.shape[0], -1)
        if order is not None:
            R2 = R2[:, order[1]]
        acts = None
        if given is not None and given[0] == self.key(X.shape[1:]) and given[1] is X:
            acts = given[2]  # the forward pass of this X with these weights: not run again
        rel = net.explain(X.reshape(X.shape[0], -1), None, np.ascontiguousarray(R2), False, acts)[0]
        return rel.reshape(X.shape)
