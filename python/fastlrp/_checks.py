"""Argument checks shared by the public API: every failure names what was expected and what came."""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["as_param_array", "as_batch", "check_real_scalar"]


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def as_param_array(value, name: str, ndim: int | None = None) -> np.ndarray:
    """A finite float64 copy of a layer parameter, read-only."""
    if value is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        arr = np.array(value, copy=True)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: expected an array of real numbers, got {_describe(value)}") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {arr.dtype}")
    # float32 parameters stay float32 (a VGG-16 is 0.55 GB in float32); all else is float64
    arr = np.ascontiguousarray(arr, dtype=np.float32 if arr.dtype == np.float32 else np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf; expected finite values")
    arr.setflags(write=False)
    return arr


def check_real_scalar(value, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {_describe(value)}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: expected a value >= {minimum}, got {v}")
    return v


def as_real_array(x, what: str = "x") -> np.ndarray:
    """x as an array of float32 or float64 (the input's dtype chooses; other reals -> float32)."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{what}: expected an array of real numbers, got {_describe(x)}") from exc
    dtype = x.dtype
    if dtype == np.float32 or dtype == np.float64:
        return x
    if dtype.kind in "fiub":
        return x.astype(np.float32)
    raise TypeError(f"{what}: expected real numbers (float32, float64 or ints), got dtype {x.dtype}")


def as_batch(x, in_features: int | None, what: str = "x") -> np.ndarray:
    """x as a C-contiguous float32/float64 (N, in) array; the input's dtype chooses."""
    x = as_real_array(x, what)
    if x.ndim != 2:
        hint = " (for one sample use x[None])" if x.ndim == 1 else ""
        raise ValueError(f"{what}: expected a 2-D batch of shape (N, {in_features}){hint}, got shape {x.shape}")
    if in_features is not None and x.shape[1] != in_features:
        raise ValueError(f"{what}: expected {in_features} features per sample, got shape {x.shape}")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def available_memory() -> int | None:
    """Bytes the system can still give this process (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(layers, shapes, n: int, itemsize: int, layerwise: bool, available: int | None = None) -> int:
    """Raise MemoryError, before anything is allocated, when explaining ``n`` samples would
    need more memory than is available; returns the estimate in bytes.

    The C++ pass keeps every layer's activation of the batch (for the backward pass), two
    relevance buffers of the widest layer, and the results (input relevance, and with
    ``layerwise`` every layer's relevance); per-layer scratch is bounded by tiles.
    """
    widths = [math.prod(int(d) for d in s) for s in shapes]
    per_sample = sum(widths) + 2 * max(widths) + widths[0] + (sum(widths) if layerwise else 0)
    need = n * per_sample * itemsize
    if available is None:
        if need < 256 * 2**20:  # small requests: not worth reading /proc/meminfo on every call
            return need
        available = available_memory()
    if available is not None and need > available:
        k = int(np.argmax(widths[1:])) if len(widths) > 1 else 0
        fits = max(1, int(n * available / need / 2))
        raise MemoryError(
            f"explaining {n:,} samples needs about {need / 2**30:.1f} GiB ({per_sample * itemsize:,} bytes per "
            f"sample; the largest activation is layer {k} {layers[k]!r}, {widths[k + 1]:,} values per sample), "
            f"more than the {available / 2**30:.1f} GiB available: pass batch_size={fits:,} or fewer")
    return need
