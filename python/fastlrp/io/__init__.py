"""Loaders: models trained elsewhere, as :class:`fastlrp.Sequential` (one file per source).

Each framework is an optional import, needed only by its loader: scikit-learn estimators and
torch modules are read through their attributes, Keras files with h5py, ONNX with onnx.
"""

from .keras import from_keras
from .onnx import from_onnx
from .sklearn import from_sklearn
from .torch import from_torch

__all__ = ["from_sklearn", "from_torch", "from_keras", "from_onnx"]
