"""Loaders: models trained elsewhere, as :class:`fastlrp.Sequential` (one file per source)."""

from .sklearn import from_sklearn

__all__ = ["from_sklearn"]
