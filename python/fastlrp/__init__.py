"""fastlrp: fast Layer-wise Relevance Propagation on imported weights.

>>> import fastlrp as fl
>>> model = fl.Sequential([fl.Dense(W1, b1), fl.ReLU(), fl.Dense(W2, b2), fl.Softmax()])
>>> e = fl.LRP(model, "epsilon_plus_flat")(x)
>>> e.relevance            # shape of x
"""

from __future__ import annotations

from . import composites, evaluate, rules
from ._native import core as _core
from .composites import ByIndex, ByType, Composite, First, Name
from .explain import LRP, Explanation
from .io import from_keras, from_onnx, from_sklearn, from_torch
from .graph import Input, Model
from .layers import (ELU, GELU, SELU, Add, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, ChannelShuffle,
                     Chunk, Concat, Conv2d, Dense, Narrow, Dropout, Flatten, Hardsigmoid, Hardswish, Identity, Layer, LeakyReLU, LogSoftmax, MaxPool2d,
                     Mish, Mul, ReLU, ReLU6, Sigmoid, SiLU, Softmax, SumPool2d, Tanh)
from .model import Sequential, fold_batchnorm, load

__version__ = "0.1.0"

__all__ = [
    "LRP", "Explanation", "Sequential", "fold_batchnorm", "load", "rules", "composites",
    "Composite", "ByType", "ByIndex", "First", "Layer", "Dense", "ReLU", "LeakyReLU", "Tanh",
    "Sigmoid", "ELU", "SELU", "Softmax", "LogSoftmax", "Dropout", "Flatten", "Identity",
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "SumPool2d",
    "set_num_threads", "from_sklearn", "from_torch", "from_keras", "from_onnx", "get_num_threads",
    "build_info", "Input", "Model", "Add", "Concat", "Name", "Mul", "SiLU", "GELU", "Hardswish", "Hardsigmoid",
    "ReLU6", "Mish", "ChannelShuffle", "Chunk", "Narrow", "evaluate",
]


def __getattr__(name):
    # fastlrp.dask imports Dask (the optional extra): loaded on first use, not with fastlrp
    if name == "dask":
        import importlib

        return importlib.import_module(".dask", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def set_num_threads(n: int | None) -> None:
    """Threads used by every kernel; ``None`` means all cores (the default). Safe to call anytime."""
    if n is None:
        _core.set_num_threads(0)
        return
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: expected an int >= 1 or None, got {n!r}")
    if n < 1:
        raise ValueError(f"set_num_threads: expected an int >= 1 or None, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use."""
    return _core.get_num_threads()


def build_info() -> dict:
    """What the compiled core was built with. ``isa``: the kernel module in use, ``"v2"``,
    ``"v3"`` or ``"v4"`` (x86-64 levels: SSE4.2, AVX2 + FMA, AVX-512) in a portable build, picked
    at import for this CPU or forced by ``FASTLRP_ISA``; ``"native"`` in a FASTLRP_NATIVE=ON build.
    ``vector``: the vector instructions of fastlrp's GEMM; ``simd``: those Eigen uses."""
    return {"openmp": _core.has_openmp(), "cuda": _core.has_cuda(), "isa": _core.isa(),
            "vector": _core.vector_isa(), "simd": _core.simd(), "native": _core.native_build(),
            "max_threads": _core.max_threads()}
