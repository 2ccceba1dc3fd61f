"""The numpy LRP toolbox's ``data_io``: arrays from and to ``.npy``, ``.npz``, ``.txt`` and
``.mat`` files, the format chosen by the extension (or ``fmt``) as the toolbox does.

``.npy``/``.npz`` are read with ``allow_pickle=False`` (an object array in a data file is refused,
never unpickled); ``.mat`` needs scipy (``loadmat(path)['data']``, as the toolbox's MNIST files).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["read", "write"]

_FORMATS = ("npy", "npz", "txt", "mat")


def _fmt(path, fmt) -> str:
    f = (str(fmt) if fmt is not None else os.path.splitext(os.fspath(path))[1]).lower().lstrip(".")
    if f == "":
        f = "npy"
    if f not in _FORMATS:
        raise ValueError(f"{path}: unknown data format {f!r}; expected one of {', '.join(_FORMATS)}")
    return f


def _scipy_io():
    try:
        import scipy.io
    except ImportError:
        raise ImportError("reading or writing .mat data needs scipy: pip install scipy") from None
    return scipy.io


def read(path, fmt=None) -> np.ndarray:
    """The array stored at ``path``. An ``.npz`` must hold one array or one named ``data``."""
    f = _fmt(path, fmt)
    try:
        if f == "npy":
            return np.load(path, allow_pickle=False)
        if f == "npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if "data" in names:
                    return z["data"]
                if len(names) == 1:
                    return z[names[0]]
                raise ValueError(f"{path}: expected one array or one named 'data', got {names}")
        if f == "txt":
            return np.loadtxt(path)
        m = _scipy_io().loadmat(path)
        if "data" not in m:
            raise ValueError(f"{path}: expected a variable named 'data', got {sorted(k for k in m if not k.startswith('__'))}")
        return m["data"]
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read {f} data: {exc}") from None


def write(data, path, fmt=None) -> None:
    """Write ``data`` to ``path`` (``.mat`` as the variable ``data``, ``.npz`` as ``data``)."""
    f = _fmt(path, fmt)
    data = np.asarray(data)
    if f == "npy":
        with open(path, "wb") as fh:  # np.save would append .npy to a path without it
            np.save(fh, data, allow_pickle=False)
    elif f == "npz":
        with open(path, "wb") as fh:
            np.savez(fh, data=data)
    elif f == "txt":
        np.savetxt(path, data)
    else:
        _scipy_io().savemat(path, {"data": data})
