"""Layers of a :class:`fastlrp.Sequential` model: inference-only, holding imported weights.

Each layer knows its parameters and its output width; the arithmetic is in the C++ core
(``src/cpp/include/fastlrp/``) and, slow and obvious, in :mod:`fastlrp.reference`.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_param_array, check_real_scalar

__all__ = [
    "Layer", "Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU", "SELU", "Softmax",
    "LogSoftmax", "Dropout", "Flatten", "Identity", "BatchNorm1d",
]


class Layer:
    """Base class. ``in_features`` is ``None`` for layers that take any width."""

    in_features: int | None = None

    def output_width(self, width: int) -> int:
        return width

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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
    """Flattens all but the batch axis; on a flat (N, features) input it changes nothing."""
    _code = 0


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


class Softmax(_Elementwise):
    """Softmax over the features; as the last layer it is skipped by LRP (rules.md)."""
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

    @property
    def scale(self) -> np.ndarray:
        return self.weight / np.sqrt(self.var + self.eps)

    @property
    def shift(self) -> np.ndarray:
        return self.bias - self.mean * self.scale

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.in_features})"


#: layer types that the presets treat as "Dense" and as "Conv2d" (the conv issue adds Conv2d)
DENSE_LAYERS: tuple = (Dense,)
CONV_LAYERS: tuple = ()
