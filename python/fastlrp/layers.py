"""Layers of a :class:`fastlrp.Sequential` model: inference-only, holding imported weights.

Each layer knows its parameters and its output width; the arithmetic is in the C++ core
(``src/cpp/include/fastlrp/``) and, slow and obvious, in :mod:`fastlrp.reference`.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_param_array, check_real_scalar

__all__ = [
    "Layer", "Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU", "SELU", "Softmax",
    "LogSoftmax", "Dropout", "Flatten", "Identity", "BatchNorm1d", "BatchNorm2d", "Conv2d",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "SumPool2d", "Add", "Concat", "Mul", "SiLU", "GELU",
    "Hardswish", "Hardsigmoid", "ReLU6", "Mish", "ChannelShuffle", "Chunk", "Narrow",
]


class Layer:
    """Base class. Shapes are per sample: ``(features,)`` or ``(C, H, W)``.

    ``in_features`` is ``None`` for layers that take any width.
    """

    in_features: int | None = None

    def output_width(self, width: int) -> int:
        return width

    def output_shape(self, shape: tuple) -> tuple:
        """The output shape for an input of ``shape``; raises ValueError when it does not fit."""
        if self.in_features is not None and (len(shape) != 1 or shape[0] != self.in_features):
            raise ValueError(f"expects ({self.in_features},) features per sample, got input of shape {shape}")
        return (self.output_width(shape[0]),) if len(shape) == 1 else shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, *inputs, name: str | None = None):
        """Apply the layer to graph nodes (``fl.Input`` or other layers' outputs): the functional
        way of building a :class:`fastlrp.Model`. Returns the new node."""
        from .graph import apply_layer

        return apply_layer(self, inputs, name)

    #: how many inputs the layer takes (None: two or more)
    n_inputs = 1


class Dense(Layer):
    """A fully connected layer ``y = x W^T + b``.

    Parameters
    ----------
    weight : array (out_features, in_features), as ``torch.nn.Linear``.
    bias : array (out_features,), optional (zeros).
    """

    def __init__(self, weight, bias=None):
        self.weight = as_param_array(weight, "Dense weight", ndim=2)
        out_f, in_f = self.weight.shape
        if out_f == 0 or in_f == 0:
            raise ValueError(f"Dense weight: expected a non-empty (out_features, in_features) array, got shape {self.weight.shape}")
        if bias is None:
            bias = np.zeros(out_f)
        self.bias = as_param_array(bias, "Dense bias", ndim=1)
        if self.bias.shape != (out_f,):
            raise ValueError(f"Dense bias: expected shape ({out_f},) to match weight {self.weight.shape}, got {self.bias.shape}")

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def output_width(self, width: int) -> int:
        return self.out_features

    def __repr__(self) -> str:
        return f"Dense({self.in_features} -> {self.out_features})"


class _Elementwise(Layer):
    #: the C++ kernels::Activation code
    _code = 0
    param = 0.0


class Identity(_Elementwise):
    _code = 0


class Flatten(_Elementwise):
    """Flattens all but the batch axis in NCHW order (so a torch model's next Dense applies);
    on a flat (N, features) input it changes nothing."""
    _code = 0

    def output_shape(self, shape: tuple) -> tuple:
        return (int(np.prod(shape)),)


class Dropout(_Elementwise):
    """Inference-time dropout: the identity."""
    _code = 0

    def __init__(self, p: float = 0.5):
        self.p = check_real_scalar(p, "Dropout p", minimum=0.0)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class ReLU(_Elementwise):
    _code = 1


class LeakyReLU(_Elementwise):
    _code = 2

    def __init__(self, negative_slope: float = 0.01):
        self.param = self.negative_slope = check_real_scalar(negative_slope, "LeakyReLU negative_slope")

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"


class Tanh(_Elementwise):
    _code = 3


class Sigmoid(_Elementwise):
    _code = 4


class ELU(_Elementwise):
    _code = 5

    def __init__(self, alpha: float = 1.0):
        self.param = self.alpha = check_real_scalar(alpha, "ELU alpha")

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha})"


class SELU(_Elementwise):
    _code = 6


class SiLU(_Elementwise):
    """``x * sigmoid(x)`` (swish); LRP: Pass."""
    _code = 9


class GELU(_Elementwise):
    """``x * Phi(x)``; ``approximate="tanh"`` uses torch's tanh approximation. LRP: Pass."""
    _code = 10

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate: expected 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.param = 0.0 if approximate == "none" else 1.0

    def __repr__(self) -> str:
        return "GELU()" if self.approximate == "none" else "GELU(approximate='tanh')"


class Hardswish(_Elementwise):
    """``x * relu6(x + 3) / 6``; LRP: Pass."""
    _code = 11


class Hardsigmoid(_Elementwise):
    """``relu6(x + 3) / 6``; LRP: Pass."""
    _code = 12


class ReLU6(_Elementwise):
    """``min(max(x, 0), 6)``; LRP: Pass."""
    _code = 13


class Mish(_Elementwise):
    """``x * tanh(softplus(x))``; LRP: Pass."""
    _code = 14


class Softmax(_Elementwise):
    """Softmax over the features; as the last layer it is skipped by LRP (docs/rules.md)."""
    _code = 7


class LogSoftmax(_Elementwise):
    _code = 8


#: output nonlinearities that the backward pass skips when they end the model
OUTPUT_NONLINEARITIES = (Softmax, LogSoftmax, Sigmoid)


class BatchNorm1d(Layer):
    """Inference-time batch normalisation ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Directly after a :class:`Dense` it is folded into that layer when the model is built;
    anywhere else it is an element-wise affine map (rule ``Epsilon`` by default).
    """

    def __init__(self, mean, var, weight=None, bias=None, eps: float = 1e-5):
        self.mean = as_param_array(mean, "BatchNorm1d mean", ndim=1)
        n = self.mean.shape[0]
        self.var = as_param_array(var, "BatchNorm1d var", ndim=1)
        self.weight = as_param_array(np.ones(n) if weight is None else weight, "BatchNorm1d weight", ndim=1)
        self.bias = as_param_array(np.zeros(n) if bias is None else bias, "BatchNorm1d bias", ndim=1)
        for name, arr in (("var", self.var), ("weight", self.weight), ("bias", self.bias)):
            if arr.shape != (n,):
                raise ValueError(f"BatchNorm1d {name}: expected shape ({n},) like mean, got {arr.shape}")
        if (self.var < 0).any():
            raise ValueError("BatchNorm1d var: expected non-negative variances, got a negative entry")
        self.eps = check_real_scalar(eps, "BatchNorm1d eps", minimum=0.0)
        if ((self.var + self.eps) == 0).any():
            raise ValueError("BatchNorm1d: var + eps is zero for some feature; expected a positive denominator")

    @property
    def in_features(self) -> int:
        return self.mean.shape[0]

    def output_width(self, width: int) -> int:
        return self.in_features

    def output_shape(self, shape: tuple) -> tuple:
        if len(shape) != 1 or shape[0] != self.in_features:
            raise ValueError(f"expects ({self.in_features},) features per sample, got input of shape {shape}")
        return shape

    @property
    def scale(self) -> np.ndarray:
        # float64, whatever the parameters' dtype: folding promises float64 arithmetic (as
        # zennit's canonizer on a double model), and float32 here moved a ResNet-50's
        # float64 relevance by 2e-6 relative
        return self.weight.astype(np.float64) / np.sqrt(self.var.astype(np.float64) + self.eps)

    @property
    def shift(self) -> np.ndarray:
        return self.bias - self.mean * self.scale

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.in_features})"



class BatchNorm2d(BatchNorm1d):
    """Per-channel inference-time batch normalisation of (C, H, W) inputs.

    Directly after a :class:`Conv2d` it is folded into that layer when the model is built.
    """

    @property
    def num_features(self) -> int:
        return self.mean.shape[0]

    in_features = None  # takes any H, W

    def output_shape(self, shape: tuple) -> tuple:
        if len(shape) != 3 or shape[0] != self.num_features:
            raise ValueError(f"expects (C={self.num_features}, H, W) inputs, got input of shape {shape}")
        return shape

    def __repr__(self) -> str:
        return f"BatchNorm2d({self.num_features})"


def _pair(value, name: str, minimum: int) -> tuple:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {value!r}")
    value = (int(value[0]), int(value[1]))
    if min(value) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value}")
    return value


def _window_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """Pooling windows along one axis, torch's rule: with ceil_mode the count rounds up, but the
    last window must start inside the input or its left padding."""
    if not ceil_mode:
        return _window_out(size, k, s, p)
    n = -(-(size + 2 * p - k) // s) + 1
    return n - 1 if (n - 1) * s >= size + p else n


class Conv2d(Layer):
    """A 2-D convolution (cross-correlation) with zero padding, as ``torch.nn.Conv2d``.

    Parameters
    ----------
    weight : array (out_channels, in_channels, kh, kw)
    bias : array (out_channels,), optional
    stride, padding, dilation : int or (int, int)
    groups : int
        Grouped convolution, as torch: the input channels are cut into ``groups`` slices, each
        convolved with its ``out/groups`` filters of weight ``(out, in/groups, kh, kw)``;
        ``groups == in_channels`` is a depthwise convolution. Every LRP rule applies within a group.
    """

    def __init__(self, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_end=None):
        self.weight = as_param_array(weight, "Conv2d weight", ndim=4)
        if 0 in self.weight.shape:
            raise ValueError(f"Conv2d weight: expected a non-empty (out, in/groups, kh, kw) array, got shape {self.weight.shape}")
        out_c = self.weight.shape[0]
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"Conv2d groups: expected a positive int, got {groups!r}")
        self.groups = int(groups)
        if out_c % self.groups:
            raise ValueError(f"Conv2d groups: {self.groups} groups do not divide the {out_c} output channels "
                             f"(weight {self.weight.shape})")
        self.bias = as_param_array(np.zeros(out_c) if bias is None else bias, "Conv2d bias", ndim=1)
        if self.bias.shape != (out_c,):
            raise ValueError(f"Conv2d bias: expected shape ({out_c},) to match weight {self.weight.shape}, got {self.bias.shape}")
        self.stride = _pair(stride, "Conv2d stride", 1)
        if (isinstance(padding, (tuple, list)) and len(padding) == 2
                and all(isinstance(p, (tuple, list)) for p in padding)):  # ((top, bottom), (left, right))
            if padding_end is not None:
                raise ValueError("Conv2d padding: give ((top, bottom), (left, right)) or padding with padding_end, "
                                 "not both")
            (top, bottom), (left, right) = (_pair(tuple(p), "Conv2d padding", 0) for p in padding)
            padding, padding_end = (top, left), (bottom, right)
        self.padding = _pair(padding, "Conv2d padding", 0)
        #: the zero padding after the image (bottom, right); equal to ``padding`` but for the
        #: uneven 'same' padding of strided Keras/TensorFlow convolutions
        self.padding_end = self.padding if padding_end is None else _pair(padding_end, "Conv2d padding_end", 0)
        self.dilation = _pair(dilation, "Conv2d dilation", 1)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel_size(self) -> tuple:
        return self.weight.shape[2], self.weight.shape[3]

    def output_shape(self, shape: tuple) -> tuple:
        if len(shape) != 3:
            raise ValueError(f"expects (C={self.in_channels}, H, W) images, got input of shape {shape}")
        c, h, w = shape
        if c != self.in_channels:
            hint = " (an NHWC input? fastlrp takes NCHW)" if w == self.in_channels else ""
            raise ValueError(f"expects {self.in_channels} input channels, got {c} (input shape {shape}){hint}")
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        hp, wp = h + self.padding[0] + self.padding_end[0], w + self.padding[1] + self.padding_end[1]
        eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        if eh > hp or ew > wp:
            raise ValueError(f"kernel {kh}x{kw} (dilation {dh}x{dw}, extent {eh}x{ew}) is larger than the padded "
                             f"input {hp}x{wp}")
        return (self.out_channels, (hp - eh) // sh + 1, (wp - ew) // sw + 1)

    def __repr__(self) -> str:
        kh, kw = self.kernel_size
        extra = "".join(f", {n}={v}" for n, v, d in (("stride", self.stride, (1, 1)), ("padding", self.padding, (0, 0)),
                                                     ("padding_end", self.padding_end, self.padding),
                                                     ("dilation", self.dilation, (1, 1)), ("groups", self.groups, 1))
                        if v != d)
        return f"Conv2d({self.in_channels} -> {self.out_channels}, {kh}x{kw}{extra})"


class _Pool(Layer):
    """Base of the pooling layers: windows over each channel of (C, H, W) inputs."""

    ceil_mode = False

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        name = type(self).__name__
        self.kernel_size = _pair(kernel_size, f"{name} kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, f"{name} stride", 1)
        self.padding = _pair(padding, f"{name} padding", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel {self.kernel_size}")
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{name} ceil_mode: expected a bool, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)

    def output_shape(self, shape: tuple) -> tuple:
        if len(shape) != 3:
            raise ValueError(f"expects (C, H, W) images, got input of shape {shape}")
        c, h, w = shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if kh > h + 2 * ph or kw > w + 2 * pw:
            raise ValueError(f"kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{w + 2 * pw}")
        return (c, _pool_out(h, kh, sh, ph, self.ceil_mode), _pool_out(w, kw, sw, pw, self.ceil_mode))

    def __repr__(self) -> str:
        extra = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        extra += "" if self.padding == (0, 0) else f", padding={self.padding}"
        extra += ", ceil_mode=True" if self.ceil_mode else ""
        return f"{type(self).__name__}({self.kernel_size[0]}x{self.kernel_size[1]}{extra})"


class MaxPool2d(_Pool):
    """Max pooling. ``mode="winner"``: each window's relevance goes to its maximum (ties split
    evenly); ``mode="avg"``: in proportion to the window's activations."""

    _kind = 2

    def __init__(self, kernel_size, stride=None, padding=0, mode: str = "winner", ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        if mode not in ("winner", "avg"):
            raise ValueError(f"MaxPool2d mode: expected 'winner' or 'avg', got {mode!r}")
        self.mode = mode

    def __repr__(self) -> str:
        r = super().__repr__()
        return r if self.mode == "winner" else r[:-1] + ", mode='avg')"


class AvgPool2d(_Pool):
    """Average pooling (torch's ``count_include_pad`` meaning); a fixed-weight linear map for LRP."""

    _kind = 0

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)


class SumPool2d(_Pool):
    """The numpy LRP toolbox's sum pooling: the window sum times ``1/sqrt(kh*kw)``."""

    _kind = 1


class AdaptiveAvgPool2d(Layer):
    """Average pooling to a fixed output size (torch's window boundaries)."""

    _kind = 3
    stride = padding = (1, 1)

    def __init__(self, output_size):
        self.output_size = _pair(output_size, "AdaptiveAvgPool2d output_size", 1)

    def output_shape(self, shape: tuple) -> tuple:
        if len(shape) != 3:
            raise ValueError(f"expects (C, H, W) images, got input of shape {shape}")
        return (shape[0],) + self.output_size

    def __repr__(self) -> str:
        return f"AdaptiveAvgPool2d({self.output_size[0]}x{self.output_size[1]})"


#: layer types that the presets treat as "Dense" and as "Conv2d"
class Add(Layer):
    """Element-wise sum of two or more equally shaped inputs (a residual connection):
    ``fl.Add()(a, b)``. LRP: each input gets ``x_k * R / stab(z)`` (Epsilon, 1e-6 by default)."""

    n_inputs = None

    def output_shape(self, *shapes) -> tuple:
        if len(shapes) < 2:
            raise ValueError(f"Add takes two or more inputs, got {len(shapes)}")
        for s in shapes[1:]:
            if tuple(s) != tuple(shapes[0]):
                raise ValueError(f"Add inputs must have the same shape, got {tuple(shapes[0])} and {tuple(s)}")
        return tuple(shapes[0])


class Concat(Layer):
    """Concatenation of inputs along the channel axis (``axis=1`` of NCHW, or of (N, features)):
    ``fl.Concat(axis=1)(a, b, ...)``. LRP: the relevance is cut back into the inputs' slices."""

    n_inputs = None

    def __init__(self, axis: int = 1):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or int(axis) not in (1, -3):
            raise ValueError(f"Concat axis: expected 1 (channels of NCHW, or features), got {axis!r}")
        self.axis = 1

    def output_shape(self, *shapes) -> tuple:
        if not shapes:
            raise ValueError("Concat takes one or more inputs, got none")
        first = tuple(shapes[0])
        for s in shapes[1:]:
            if len(s) != len(first) or tuple(s[1:]) != first[1:]:
                raise ValueError(f"Concat inputs must agree in every axis but the channels, got {first} and {tuple(s)}")
        return (sum(int(s[0]) for s in shapes),) + first[1:]

    def __repr__(self) -> str:
        return f"Concat(axis={self.axis})"


class Mul(Layer):
    """A multiplicative gate ``signal * gate``: ``fl.Mul()(signal, gate)``, the gate either of
    the signal's shape or ``(C, 1, 1)`` broadcast over a ``(C, H, W)`` signal (squeeze-excitation).
    The broadcast operand is the gate whatever the order; of two equal shapes, the second.
    LRP: the signal takes all relevance, the gate's branch none."""

    n_inputs = 2

    @staticmethod
    def gate_index(*shapes) -> int:
        """Which of the two input shapes is the gate (0 or 1); ValueError when neither fits."""
        if len(shapes) != 2:
            raise ValueError(f"Mul takes two inputs (signal, gate), got {len(shapes)}")
        a, b = (tuple(int(v) for v in s) for s in shapes)
        if a == b:
            return 1
        for gate, (g, x) in ((1, (b, a)), (0, (a, b))):
            if len(x) == 3 and g == (x[0], 1, 1):
                return gate
        raise ValueError(f"Mul: expected a gate of the signal's shape or (C, 1, 1) for a (C, H, W) signal, "
                         f"got shapes {a} and {b}")

    def output_shape(self, *shapes) -> tuple:
        gate = self.gate_index(*shapes)
        return tuple(shapes[1 - gate])


JOIN_LAYERS: tuple = (Add, Concat, Mul)
DENSE_LAYERS: tuple = (Dense,)
CONV_LAYERS: tuple = (Conv2d,)
#: fixed-weight linear pools (rule Epsilon by default, any rule allowed)
LINEAR_POOLS: tuple = (AvgPool2d, SumPool2d, AdaptiveAvgPool2d)


class _Gather(Layer):
    """Data movement along the channel axis: every output value is one input value. LRP:
    ``Pass``, the relevance goes back with its value (an input channel that no output takes
    gets none here; in a graph its other consumers send it theirs)."""

    def source_channels(self, channels: int) -> np.ndarray:
        """The input channel of every output channel."""
        raise NotImplementedError

    def output_shape(self, shape: tuple) -> tuple:
        shape = tuple(int(v) for v in shape)
        if len(shape) not in (1, 3):
            raise ValueError(f"{self!r} takes (C, H, W) images or (features,), got input of shape {shape}")
        return (len(self.source_channels(shape[0])),) + shape[1:]

    def gather_index(self, shape: tuple) -> np.ndarray:
        """Per output value, its input value's position in the core's layout (NHWC rows for
        images: pixel-major, channels innermost)."""
        shape = tuple(int(v) for v in shape)
        src = self.source_channels(shape[0]).astype(np.int64)
        pixels = int(np.prod(shape[1:])) if len(shape) == 3 else 1
        return np.ascontiguousarray((np.arange(pixels, dtype=np.int64)[:, None] * shape[0] + src[None, :]).ravel())


def _positive_int(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise ValueError(f"{what}: expected an int >= 1, got {v!r}")
    return int(v)


class ChannelShuffle(_Gather):
    """ShuffleNet's channel shuffle, as ``torch.nn.ChannelShuffle(groups)``: the channels, seen as
    a (groups, C/groups) grid, are read out column by column. A fixed permutation: LRP moves the
    relevance back by its inverse."""

    def __init__(self, groups: int):
        self.groups = _positive_int(groups, "ChannelShuffle groups")

    def source_channels(self, channels: int) -> np.ndarray:
        g = self.groups
        if channels % g:
            raise ValueError(f"ChannelShuffle(groups={g}): the channel count {channels} is not a multiple of {g}")
        k = np.arange(channels)
        return (k % g) * (channels // g) + k // g

    def __repr__(self) -> str:
        return f"ChannelShuffle(groups={self.groups})"


class Chunk(_Gather):
    """One piece of ``torch.chunk(x, chunks, dim=1)``: pieces of ``ceil(C / chunks)`` channels,
    the last one shorter; ``index`` picks one. ``x1, x2 = x.chunk(2, dim=1)`` is
    ``Chunk(2, 0)(x), Chunk(2, 1)(x)``."""

    def __init__(self, chunks: int, index: int):
        self.chunks = _positive_int(chunks, "Chunk chunks")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < self.chunks:
            raise ValueError(f"Chunk index: expected an int in [0, {self.chunks}), got {index!r}")
        self.index = int(index)

    def source_channels(self, channels: int) -> np.ndarray:
        size = -(-channels // self.chunks)
        start, stop = self.index * size, min(channels, (self.index + 1) * size)
        if start >= stop:
            raise ValueError(f"{self!r}: {channels} channels make only {-(-channels // size)} chunks of {size}; "
                             f"chunk {self.index} does not exist")
        return np.arange(start, stop)

    def __repr__(self) -> str:
        return f"Chunk(chunks={self.chunks}, index={self.index})"


class Narrow(_Gather):
    """Channels ``start`` to ``start + length`` (``torch.narrow(x, 1, start, length)``, a slice
    ``x[:, start:start + length]``; an ONNX ``Split`` or ``Slice`` of the channels)."""

    def __init__(self, start: int, length: int):
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or int(start) < 0:
            raise ValueError(f"Narrow start: expected an int >= 0, got {start!r}")
        self.start = int(start)
        self.length = _positive_int(length, "Narrow length")

    def source_channels(self, channels: int) -> np.ndarray:
        if self.start + self.length > channels:
            raise ValueError(f"{self!r}: channels {self.start} to {self.start + self.length} of an input with "
                             f"{channels}")
        return np.arange(self.start, self.start + self.length)

    def __repr__(self) -> str:
        return f"Narrow(start={self.start}, length={self.length})"
