"""Explain arrays of any size on Dask: ``fl.dask.explain(lrp, x)`` maps an :class:`~fastlrp.LRP`
over the chunks of a dask array, on whatever scheduler is active (a ``distributed`` cluster, or
Dask's local schedulers). Nothing is computed until a result is stored or computed.

>>> from dask.distributed import Client
>>> client = Client()                                    # a local cluster, or Client("tcp://...")
>>> x = da.from_zarr("images.zarr")                      # (N, C, H, W), chunked along N
>>> e = fl.dask.explain(fl.LRP(fl.load("model.npz")), x)
>>> e.relevance.to_zarr("relevance.zarr")                # lazy until stored or computed
>>> e.to_zarr("explanation.zarr")                        # every result, one pass over the chunks

Needs the optional extra ``pip install "fastlrp[dask]"`` (dask[array], distributed, zarr).
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastlrp.dask needs Dask: pip install \"fastlrp[dask]\" (dask[array], distributed, zarr)") from exc

from .explain import LRP, Explanation

__all__ = ["explain", "DaskExplanation", "worker_threads", "open_input", "is_chunked_input", "peak_rss_mib"]


@dataclass
class DaskExplanation:
    """:class:`fastlrp.Explanation`'s fields as lazy dask arrays, chunked along the samples as
    the input. Each field computed on its own runs the explanation again; :meth:`compute`,
    :meth:`to_zarr` or ``dask.compute(e.relevance, e.output, ...)`` run it once for all."""

    relevance: da.Array
    output: da.Array
    layers: list | dict | None
    conservation: da.Array
    targets: da.Array | None

    def _arrays(self) -> dict:
        arrays = {"relevance": self.relevance, "output": self.output, "conservation": self.conservation}
        if self.targets is not None:
            arrays["targets"] = self.targets
        if self.layers is not None:
            items = self.layers.items() if isinstance(self.layers, dict) else enumerate(self.layers)
            arrays.update({f"layers/{k}": a for k, a in items})
        return arrays

    def compute(self, **kwargs) -> Explanation:
        """Every field as numpy arrays (brought to this process: mind the size), one pass."""
        arrays = self._arrays()
        values = dict(zip(arrays, dask.compute(*arrays.values(), **kwargs)))
        layers = None
        if self.layers is not None:
            keys = self.layers.keys() if isinstance(self.layers, dict) else range(len(self.layers))
            got = [values[f"layers/{k}"] for k in keys]
            layers = dict(zip(keys, got)) if isinstance(self.layers, dict) else got
        return Explanation(relevance=values["relevance"], output=values["output"], layers=layers,
                           conservation=values["conservation"], targets=values.get("targets"))

    def to_zarr(self, url, overwrite: bool = False, compute: bool = True, **kwargs):
        """Store every field in a zarr group at ``url`` (``relevance``, ``output``,
        ``conservation``, ``targets`` when classes were chosen, ``layers/<name>`` with
        layerwise), computing the chunks once; each worker writes its own chunks, nothing passes
        through this process. ``compute=False`` returns the lazy store instead."""
        stores = [da.to_zarr(a, url, component=name, overwrite=overwrite, compute=False, **kwargs)
                  for name, a in self._arrays().items()]
        if not compute:
            return stores
        dask.compute(*stores)
        return None


def worker_threads() -> int | None:
    """The thread count of the Dask worker running this code (``threads_per_worker``), or None
    outside a ``distributed`` worker."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - distributed is part of the extra
        return None
    try:
        worker = get_worker()
    except ValueError:
        return None
    n = getattr(worker, "nthreads", None)
    if n is None:  # pragma: no cover - older and newer distributed spell it differently
        n = worker.state.nthreads
    return int(n)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB since it started (Linux ``VmHWM``: the
    high-water mark of its own address space; ``getrusage``'s maxrss would include the parent's
    memory at fork time). For ``client.run(fl.dask.peak_rss_mib)`` on the workers."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status (not Linux?)")


def _explain_chunk(lrp, x, target, layerwise):
    """One task: explain one chunk with the worker's own thread count."""
    from . import set_num_threads

    n = worker_threads()
    if n is not None:
        set_num_threads(n)  # a worker process's kernels use its threads, never all the host's cores
    return lrp(np.asarray(x), target=target, layerwise=layerwise)


def _field(e, name, key=None):
    v = getattr(e, name)
    return v if key is None else v[key]


def explain(lrp, x, target=None, layerwise: bool = False) -> DaskExplanation:
    """Explain the dask array ``x`` chunk by chunk, lazily.

    Parameters
    ----------
    lrp : fastlrp.LRP
        It enters the task graph once, as one key, and reaches each worker once (pickled
        through its model's ``.npz`` bytes).
    x : dask array (N, features) or (N, C, H, W), or anything ``da.asarray`` takes
        Chunked along axis 0; chunks across the other axes are joined into whole samples (with
        a warning, since that rechunks).
    target : None, int, or an array aligned with x (N class indices, or an (N, out) start
        relevance); numpy or dask
    layerwise : bool
        Also return the relevance at every layer (a list or dict of dask arrays, as
        :class:`fastlrp.Explanation`).

    The shapes, the dtype and the target are checked on this process before any task runs:
    a ValueError says what was expected and what came.
    """
    if not isinstance(lrp, LRP):
        raise TypeError(f"fl.dask.explain: expected a fastlrp.LRP, got {type(lrp).__name__}")
    if not isinstance(x, da.Array):
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            x = np.asarray(x)
        x = da.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"fl.dask.explain: x must hold real numbers (float32, float64 or ints), got dtype {x.dtype}")
    if x.ndim not in (2, 4):
        raise ValueError(f"fl.dask.explain: x must be (N, features) or (N, C, H, W), got shape {x.shape}")
    if any(np.isnan(s) for s in x.shape):
        raise ValueError("fl.dask.explain: x has unknown chunk sizes; call x.compute_chunk_sizes() first")
    whole = tuple((s,) for s in x.shape[1:])
    if x.chunks[1:] != whole:
        warnings.warn(f"fl.dask.explain: x is chunked along its feature axes {x.chunks[1:]}; rechunked to whole "
                      "samples (each chunk holds complete samples)", UserWarning, stacklevel=2)
        x = x.rechunk((x.chunks[0],) + whole)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    n = x.shape[0]

    # the target, aligned with x's chunks along axis 0
    per_sample = None
    if target is not None and not isinstance(target, (int, np.integer)):
        if isinstance(target, (bool, np.bool_)):
            raise TypeError("target: expected None, an int or an array aligned with x, got a bool")
        t = target if isinstance(target, da.Array) else np.asarray(target)
        if t.ndim < 1 or t.shape[0] != n:
            raise ValueError(f"target: expected an array with one entry per sample ({n}), got shape {t.shape}")
        if t.dtype.kind not in "fiu":
            raise ValueError(f"target: expected class indices or a start relevance, got dtype {t.dtype}")
        per_sample = da.asarray(t).rechunk((x.chunks[0],) + tuple((s,) for s in t.shape[1:]))
    # one sample through the model here: checks the sample shape and the target, and gives
    # every output's shape and dtype before any task exists
    sample = np.zeros((1,) + tuple(x.shape[1:]), dtype)
    try:
        probe = lrp(sample, target=None if per_sample is not None else target, layerwise=layerwise)
        if per_sample is not None:
            logits = probe.output.shape[1:]
            if isinstance(target, da.Array):  # values are checked by the tasks; the shape here
                lrp._target(np.zeros((1,) + target.shape[1:], target.dtype), 1, logits, dtype)
            else:
                lrp._target(np.asarray(target), n, logits, dtype)
    except TypeError as exc:
        raise ValueError(f"fl.dask.explain: {exc}") from None
    has_targets = per_sample is None or per_sample.ndim == 1

    lrp_key = dask.delayed(lrp, name=f"fastlrp-lrp-{uuid.uuid4().hex}", traverse=False)
    blocks = x.to_delayed().ravel()
    targets = per_sample.to_delayed().ravel() if per_sample is not None else [target] * len(blocks)
    sizes = x.chunks[0]
    results = [dask.delayed(_explain_chunk, pure=True)(lrp_key, b, t, bool(layerwise))
               for b, t in zip(blocks, targets)]

    def join(name, like, key=None):
        parts = [da.from_delayed(dask.delayed(_field, pure=True)(r, name, key), shape=(m,) + like.shape[1:],
                                 dtype=like.dtype) for r, m in zip(results, sizes)]
        return da.concatenate(parts, axis=0) if parts else da.zeros((0,) + like.shape[1:], like.dtype)

    layers = None
    if layerwise:
        if isinstance(probe.layers, dict):
            layers = {k: join("layers", v, k) for k, v in probe.layers.items()}
        else:
            layers = [join("layers", v, k) for k, v in enumerate(probe.layers)]
    return DaskExplanation(relevance=join("relevance", probe.relevance), output=join("output", probe.output),
                           layers=layers, conservation=join("conservation", probe.conservation),
                           targets=join("targets", probe.targets) if has_targets else None)


def is_chunked_input(path) -> bool:
    """Whether ``path`` is what :func:`open_input` reads: a zarr store or a folder of .npy chunks."""
    from pathlib import Path

    p = Path(path)
    return p.suffix.lower() == ".zarr" or p.is_dir()


def open_input(path) -> da.Array:
    """A lazy (N, ...) dask array from a zarr array (or a zarr group's array ``x``, or its only
    array), or from a folder of ``.npy`` files, each a chunk along axis 0 in name order."""
    from pathlib import Path

    p = Path(path).resolve()
    if not p.exists():
        raise ValueError(f"{path}: no such file or folder")
    npys = sorted(p.glob("*.npy")) if p.is_dir() else []
    if npys:
        chunks, trailing, dtype = [], None, None
        for f in npys:
            try:
                m = np.load(f, mmap_mode="r", allow_pickle=False)  # the header only: nothing is read
            except (OSError, ValueError) as exc:
                raise ValueError(f"{f}: not a readable .npy array ({exc})") from None
            if m.ndim < 2 or (trailing is not None and (m.shape[1:] != trailing or m.dtype != dtype)):
                raise ValueError(f"{f}: expected a chunk of shape (n, {', '.join(map(str, trailing or ()))}) and "
                                 f"dtype {dtype}, got {m.shape} {m.dtype}" if trailing else
                                 f"{f}: expected a chunk (n, features) or (n, C, H, W), got shape {m.shape}")
            trailing, dtype = m.shape[1:], m.dtype
            chunks.append(da.from_delayed(dask.delayed(_load_npy, pure=True)(str(f)), shape=m.shape, dtype=m.dtype))
            del m
        return da.concatenate(chunks, axis=0)
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr is part of the extra
        raise ImportError("reading zarr stores needs zarr: pip install \"fastlrp[dask]\"") from exc
    try:
        z = zarr.open(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - whatever zarr raises for a foreign folder
        raise ValueError(f"{path}: not a zarr store or a folder of .npy chunks ({type(exc).__name__}: {exc})") from None
    if not hasattr(z, "shape"):  # a group: its array 'x', or its only array
        names = sorted(k for k, v in z.arrays())
        key = "x" if "x" in names else names[0] if len(names) == 1 else None
        if key is None:
            raise ValueError(f"{path}: a zarr group with arrays {names}; name the input 'x'")
        z = z[key]
    return da.from_zarr(z)


def _load_npy(path):
    return np.load(path, allow_pickle=False)
