"""Reading and writing the numpy LRP toolbox's model files (the toolbox's formats as described below).

- ``.txt``: the plain-text format, current and legacy (MLPs, one line per weight row), read
  strictly: every count, shape and number is checked before anything is allocated, and a
  problem is a ``ValueError`` naming the line.
- ``.nn`` (also ``.pickle``, ``.pickled`` or no extension): the toolbox's pickles, read by an
  allow-list unpickler that knows only the toolbox's layer classes and numpy's array helpers;
  anything else in the file is refused before it can run. Written as protocol-4 pickles of the
  same classes, which the toolbox itself reads too.
"""

from __future__ import annotations

import io
import math
import os
import pickle

import numpy as np

from . import modules as M

__all__ = ["read", "write", "read_txt", "write_txt", "read_pickle", "write_pickle"]

_TXT = ("txt",)
_PICKLE = ("nn", "pickle", "pickled", "")
# the toolbox recognises a header by its start, in this order
_KEYWORDS = ("Linear", "Convolution", "SumPool", "MaxPool", "Flatten", "Rect", "Tanh", "SoftMax")
_LEGACY_KEYWORDS = ("Linear", "Rect", "Tanh", "SoftMax")
_HEADER_INTS = {"Linear": 2, "Convolution": 6, "SumPool": 4, "MaxPool": 4}
# no shipped or sensible toolbox model comes near this; a header beyond it is refused unread
_MAX_PARAMS = 2 ** 31


def _fmt_of(path, fmt) -> str:
    if fmt is not None:
        f = str(fmt).lower().lstrip(".")
    else:
        f = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if f in _TXT or f in _PICKLE:
        return f
    if f == "mat":
        raise ValueError(f"{path}: MATLAB .mat models are MCOS objects that no Python reader supports; "
                         "export the model from MATLAB in the toolbox's text format (.txt)")
    raise ValueError(f"{path}: unknown model format {f!r}; expected .txt or .nn (also .pickle, .pickled, none)")


def read(path, fmt=None) -> M.Sequential:
    """A toolbox model from ``path``, the format chosen by ``fmt`` or the extension."""
    f = _fmt_of(path, fmt)
    return read_txt(path) if f in _TXT else read_pickle(path)


def write(model, path, fmt=None) -> None:
    """Write ``model`` (a toolbox Sequential) to ``path``; reading it back gives it exactly."""
    f = _fmt_of(path, fmt)
    if f in _TXT:
        write_txt(model, path)
    else:
        write_pickle(model, path)


# --------------------------------------------------------------------------------- text format
def _numbers(line: str, count: int, where: str) -> np.ndarray:
    tokens = line.split()
    if len(tokens) != count:
        raise ValueError(f"{where}: expected {count} numbers, got {len(tokens)}")
    try:
        a = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise ValueError(f"{where}: {bad[:40]!r} is not a number") from None
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: expected finite numbers, got NaN or Inf")
    return a


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def _header(line: str, lineno: int, allowed) -> tuple:
    tokens = line.split()
    if not tokens:
        raise ValueError(f"line {lineno}: expected a layer header, got an empty or blank line")
    kw = next((k for k in allowed if tokens[0].startswith(k)), None)
    if kw is None:
        raise ValueError(f"line {lineno}: unknown layer {tokens[0][:40]!r}; expected one of {', '.join(allowed)}")
    want = _HEADER_INTS.get(kw, 0)
    ints = tokens[1:]
    if len(ints) != want:
        raise ValueError(f"line {lineno}: {kw} expects {want} integers, got {len(ints)}")
    vals = []
    for t in ints:
        try:
            v = int(t)
        except ValueError:
            raise ValueError(f"line {lineno}: {kw}: {t[:40]!r} is not an integer") from None
        if v < 1:
            raise ValueError(f"line {lineno}: {kw}: sizes must be positive, got {v}")
        vals.append(v)
    if kw in ("Linear", "Convolution") and math.prod(vals[:2 if kw == "Linear" else 4]) > _MAX_PARAMS:
        raise ValueError(f"line {lineno}: {kw} claims {math.prod(vals[:2 if kw == 'Linear' else 4]):,} weights, "
                         f"more than the {_MAX_PARAMS:,} fastlrp reads")
    return kw, vals


def _lines(path) -> list:
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a toolbox text model (byte {exc.start} is not ASCII)") from None
    lines = text.split("\n")
    # the file ends at the first empty line (or the end of the file)
    end = next((i for i, ln in enumerate(lines) if ln == ""), len(lines))
    return lines[:end]


def _parse(lines, legacy: bool) -> list:
    mods, i = [], 0
    allowed = _LEGACY_KEYWORDS if legacy else _KEYWORDS
    while i < len(lines):
        kw, v = _header(lines[i], i + 1, allowed)

        def need(k):
            if i + k >= len(lines):
                raise ValueError(f"line {i + 1}: {kw} needs {k} more line(s), the file ends after {len(lines) - i - 1}")

        if kw == "Linear":
            m, n = v
            if legacy:
                need(m + 1)
                W = np.empty((m, n))
                for r in range(m):
                    W[r] = _numbers(lines[i + 1 + r], n, f"line {i + 2 + r} (Linear {m} {n}, weight row {r})")
                B = _numbers(lines[i + 1 + m], n, f"line {i + 2 + m} (Linear {m} {n} bias)")
                i += m + 2
            else:
                need(2)
                W = _numbers(lines[i + 1], m * n, f"line {i + 2} (Linear {m} {n} weights)").reshape(m, n)
                B = _numbers(lines[i + 2], n, f"line {i + 3} (Linear {m} {n} bias)")
                i += 3
            layer = M.Linear(m, n)
            layer.W, layer.B = W, B
        elif kw == "Convolution":
            h, w, d, n, s0, s1 = v
            need(2)
            W = _numbers(lines[i + 1], h * w * d * n, f"line {i + 2} (Convolution weights)").reshape(h, w, d, n)
            B = _numbers(lines[i + 2], n, f"line {i + 3} (Convolution bias)")
            layer = M.Convolution((h, w, d, n), (s0, s1))
            layer.W, layer.B = W, B
            i += 3
        elif kw in ("SumPool", "MaxPool"):
            layer = (M.SumPool if kw == "SumPool" else M.MaxPool)(pool=(v[0], v[1]), stride=(v[2], v[3]))
            i += 1
        else:
            layer = {"Flatten": M.Flatten, "Rect": M.Rect, "Tanh": M.Tanh, "SoftMax": M.SoftMax}[kw]()
            i += 1
        mods.append((layer, i))
    if not mods:
        raise ValueError("the file holds no layers")
    return mods


def _check_chain(mods) -> None:
    """Feature counts between Linear layers and channel counts between Convolutions."""
    width = depth = None  # Linear output features / image channels, while known
    for layer, line in mods:
        if isinstance(layer, M.Linear):
            if width is not None and layer.m != width:
                raise ValueError(f"{layer!r} (ending at line {line}) expects {layer.m} inputs, "
                                 f"but the layer before gives {width}")
            width, depth = layer.n, None
        elif isinstance(layer, M.Convolution):
            if width is not None:
                raise ValueError(f"{layer!r} (ending at line {line}) expects images, but a Linear layer precedes it")
            if depth is not None and layer.fd != depth:
                raise ValueError(f"{layer!r} (ending at line {line}) expects {layer.fd} input channels, "
                                 f"but the layer before gives {depth}")
            depth = layer.n
        elif isinstance(layer, M.Flatten):
            depth = None


def read_txt(path) -> M.Sequential:
    """A model from the toolbox's text format (current or legacy, told apart as the toolbox does:
    the current format is tried first, then the legacy one)."""
    lines = _lines(path)
    try:
        mods = _parse(lines, legacy=False)
    except ValueError as current:
        try:
            mods = _parse(lines, legacy=True)
        except ValueError as legacy:
            raise ValueError(f"{path}: not a toolbox text model: {current} (as the legacy format: {legacy})") from None
    try:
        _check_chain(mods)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return M.Sequential([layer for layer, _ in mods])


def _row(a) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(a, dtype=np.float64).ravel().tolist())


def write_txt(model, path) -> None:
    """The current text format; every number as Python's shortest round-tripping repr."""
    out = io.StringIO()
    for k, m in enumerate(_modules(model)):
        if isinstance(m, M.Linear):
            out.write(f"Linear {m.m} {m.n}\n{_row(m.W)}\n{_row(m.B)}\n")
        elif isinstance(m, M.Convolution):
            out.write(f"Convolution {m.fh} {m.fw} {m.fd} {m.n} {m.stride[0]} {m.stride[1]}\n{_row(m.W)}\n{_row(m.B)}\n")
        elif isinstance(m, (M.SumPool, M.MaxPool)):
            out.write(f"{type(m).__name__} {m.pool[0]} {m.pool[1]} {m.stride[0]} {m.stride[1]}\n")
        elif isinstance(m, (M.Flatten, M.Rect, M.Tanh, M.SoftMax)):
            out.write(f"{type(m).__name__}\n")
        else:
            raise TypeError(f"layer {k}: {m!r} cannot be written in the toolbox format")
    with open(path, "w", newline="\n") as fh:
        fh.write(out.getvalue())


def _modules(model) -> list:
    if not isinstance(model, M.Sequential):
        raise TypeError(f"expected a fastlrp.toolbox Sequential, got {type(model).__name__}")
    return model.modules


# ------------------------------------------------------------------------------- pickle format
class _Stub:
    """Stands in for a toolbox class while unpickling: keeps the instance's __dict__ and
    nothing else (no method of it ever runs)."""

    def __init__(self, *args):
        if args:
            raise pickle.UnpicklingError("toolbox layers are restored from their state, not constructed with arguments")

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) from some protocols
            state = state[0]
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"expected a dict of attributes, got {type(state).__name__}")
        self.__dict__.update(state)


_STUBS = {name: type(name, (_Stub,), {"_toolbox_name": name}) for name in
          ("Sequential", "Linear", "Convolution", "SumPool", "MaxPool", "Flatten", "Rect", "Tanh", "SoftMax")}
_STUB_MODULES = {"Sequential": "sequential", "Linear": "linear", "Convolution": "convolution", "SumPool": "sumpool",
                 "MaxPool": "maxpool", "Flatten": "flatten", "Rect": "rect", "Tanh": "tanh", "SoftMax": "softmax"}


def _reconstructor(cls, base, state):
    """copyreg._reconstructor for plain objects only (Python 2's new-style classes)."""
    if base is not object or not (isinstance(cls, type) and issubclass(cls, _Stub)):
        raise pickle.UnpicklingError("refused: _reconstructor of anything but a toolbox layer")
    obj = object.__new__(cls)
    if state is not None:
        raise pickle.UnpicklingError("refused: _reconstructor with a base state")
    return obj


def _numpy_allowed() -> dict:
    allowed = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _reconstruct
        allowed[(mod, "scalar")] = _scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _frombuffer
    allowed[("numpy", "ndarray")] = _NDARRAY
    allowed[("numpy", "dtype")] = _dtype
    for mod in ("copy_reg", "copyreg"):
        allowed[(mod, "_reconstructor")] = _reconstructor
    for mod in ("__builtin__", "builtins"):
        allowed[(mod, "object")] = object
    allowed[("_codecs", "encode")] = _latin1  # how Python 3 writes bytes at protocol 2
    return allowed


class _NdarrayName:
    """``numpy.ndarray`` as a pickle names it: accepted as ``_reconstruct``'s first argument,
    never called (``numpy.ndarray((2**28,))`` in a file would allocate whatever it claims)."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("refused: a direct call of numpy.ndarray (it would allocate the claimed shape)")


_NDARRAY = _NdarrayName()


def _latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused: _codecs.encode other than str to latin1")
    return text.encode("latin1")


def _reconstruct(subtype, shape, dtype):
    """numpy's _reconstruct for plain ndarrays; the shape it allocates is always empty
    (numpy writes (0,), the real shape comes with the state), so a file cannot make it allocate."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("refused: _reconstruct of anything but numpy.ndarray")
    dt = dtype if isinstance(dtype, np.dtype) else _dtype(dtype)
    return np.ndarray.__new__(np.ndarray, (0,), dt)


def _dtype(spec, align=False, copy=False):
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"refused: numpy dtype from {type(spec).__name__}")
    try:
        dt = np.dtype(spec, bool(align), bool(copy))
    except TypeError as exc:
        raise pickle.UnpicklingError(f"refused: numpy dtype {spec[:20]!r}") from exc
    if dt.hasobject or dt.kind not in "fiub":
        raise pickle.UnpicklingError(f"refused: numpy dtype {dt} (only plain numbers are allowed)")
    return dt


def _scalar(dtype, data):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("refused: a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("refused: an array of objects")
    a = np.frombuffer(buf, dtype=dtype)
    try:
        return a.reshape(shape, order=order)
    except (ValueError, TypeError) as exc:
        raise pickle.UnpicklingError(f"array of {a.size} values does not fit shape {shape!r}") from exc


class _SafeUnpickler(pickle.Unpickler):
    _allowed = None

    def find_class(self, module, name):
        if module.startswith("modules.") and module[len("modules."):] == _STUB_MODULES.get(name):
            return _STUBS[name]
        if _SafeUnpickler._allowed is None:
            _SafeUnpickler._allowed = _numpy_allowed()
        fn = _SafeUnpickler._allowed.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(
                f"refused: the file references {module}.{name}, which is not a toolbox layer or numpy array helper "
                "(a plain pickle.load of this file could run code)")
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused: persistent ids")


def _get(obj, name, where, kinds=None):
    if name not in obj.__dict__:
        raise ValueError(f"{where}: missing attribute {name!r}")
    v = obj.__dict__[name]
    if kinds is not None and not isinstance(v, kinds):
        raise ValueError(f"{where}: attribute {name!r} should be {kinds}, got {type(v).__name__}")
    return v


def _array(obj, name, shape, where):
    v = _get(obj, name, where, np.ndarray)
    if v.dtype.kind not in "fiu":
        raise ValueError(f"{where}: {name} has dtype {v.dtype}, expected numbers")
    if v.shape != shape:
        raise ValueError(f"{where}: {name} has shape {v.shape}, expected {shape}")
    return v


def _ints(obj, name, count, where):
    v = _get(obj, name, where)
    try:
        vals = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} should be {count} integers, got {v!r}") from None
    if len(vals) != count or min(vals) < 1 or any(isinstance(x, bool) for x in v):
        raise ValueError(f"{where}: {name} should be {count} positive integers, got {v!r}")
    return vals


def _convert(stub, k) -> M.Module:
    name = getattr(type(stub), "_toolbox_name", None)
    where = f"layer {k} ({name})"
    if name == "Linear":
        m, n = _get(stub, "m", where, int), _get(stub, "n", where, int)
        if m < 1 or n < 1 or m * n > _MAX_PARAMS:
            raise ValueError(f"{where}: sizes m={m}, n={n} out of range")
        layer = M.Linear(m, n)
        layer.W, layer.B = _array(stub, "W", (m, n), where), _array(stub, "B", (n,), where)
    elif name == "Convolution":
        W = _get(stub, "W", where, np.ndarray)
        if W.ndim != 4:
            raise ValueError(f"{where}: W should be 4-D (h, w, d, n), got shape {W.shape}")
        layer = M.Convolution(W.shape, _ints(stub, "stride", 2, where))
        layer.W, layer.B = _array(stub, "W", W.shape, where), _array(stub, "B", (W.shape[3],), where)
    elif name in ("SumPool", "MaxPool"):
        layer = getattr(M, name)(_ints(stub, "pool", 2, where), _ints(stub, "stride", 2, where))
    elif name in ("Flatten", "Rect", "Tanh", "SoftMax"):
        layer = getattr(M, name)()
    else:
        raise ValueError(f"{where}: not a toolbox layer")
    lrp_var = stub.__dict__.get("lrp_var")
    lrp_param = stub.__dict__.get("lrp_param", 1.0)
    if isinstance(lrp_var, bytes):
        lrp_var = lrp_var.decode("ascii", "replace")
    if lrp_var is not None or lrp_param is not None:
        try:
            layer.set_lrp_parameters(lrp_var, lrp_param)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: preset rule: {exc}") from None
    return layer


_MAX_MEMO = 1 << 20  # a toolbox pickle memoizes a few hundred objects


def _prescan(data: bytes, path) -> None:
    """Walk the opcodes without executing any: refuse unknown opcodes and memo indices that
    would make the C unpickler allocate a huge memo table (its memo is an array)."""
    import pickletools

    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                if not isinstance(arg, int) or not 0 <= arg < _MAX_MEMO:
                    raise ValueError(f"memo index {arg!r} out of range")
            elif op.name == "STOP":
                return
    except ValueError as exc:
        raise ValueError(f"{path}: not a readable toolbox pickle ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - genops on garbage
        raise ValueError(f"{path}: not a readable toolbox pickle ({type(exc).__name__}: {str(exc)[:200]})") from None


def read_pickle(path) -> M.Sequential:
    """A toolbox ``.nn`` pickle, read without running anything from it."""
    with open(path, "rb") as fh:
        data = fh.read()
    _prescan(data, path)
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything a damaged pickle makes the unpickler or numpy raise
        raise ValueError(f"{path}: not a readable toolbox pickle ({type(exc).__name__}: {str(exc)[:200]})") from None
    if type(obj) is not _STUBS["Sequential"]:
        raise ValueError(f"{path}: expected a pickled toolbox Sequential, got {type(obj).__name__}")
    mods = obj.__dict__.get("modules")
    if not isinstance(mods, list) or not mods:
        raise ValueError(f"{path}: the Sequential has no list of modules")
    try:
        layers = [_convert(s, k) for k, s in enumerate(mods)]
        model = M.Sequential(layers)
        _check_chain([(layer, k) for k, layer in enumerate(layers)])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return model


class _Writer(pickle._Pickler):
    """Pickles of the toolbox's classes without importing them: their globals are
    written by name, instances as (class, state) like the toolbox's own files."""

    def save_global(self, obj, name=None):
        tb = getattr(obj, "_toolbox_name", None)
        if tb is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"modules.{_STUB_MODULES[tb]}\n{tb}\n".encode("ascii"))
        self.memoize(obj)

    def save(self, obj, save_persistent_id=True):
        name = _WRITE.get(type(obj))
        if name is None:
            return super().save(obj, save_persistent_id)
        memo = self.memo.get(id(obj))
        if memo is not None:
            self.write(self.get(memo[0]))
            return
        # what copyreg.__reduce_ex__ gives a plain object: cls, (), NEWOBJ, then BUILD with its state
        self.save(_STUBS[name])
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self.save(_state(obj))
        self.write(pickle.BUILD)


_WRITE = {M.Sequential: "Sequential", M.Linear: "Linear", M.Convolution: "Convolution", M.SumPool: "SumPool",
          M.MaxPool: "MaxPool", M.Flatten: "Flatten", M.Rect: "Rect", M.Tanh: "Tanh", M.SoftMax: "SoftMax"}


def _state(m) -> dict:
    state = {"lrp_var": m.lrp_var, "lrp_param": m.lrp_param, "X": None, "Y": None}
    if isinstance(m, M.Sequential):
        state["modules"] = list(m.modules)
    elif isinstance(m, M.Linear):
        state.update(m=m.m, n=m.n, W=np.array(m.W), B=np.array(m.B), dW=None, dB=None)
    elif isinstance(m, M.Convolution):
        state.update(fh=m.fh, fw=m.fw, fd=m.fd, n=m.n, stride=tuple(m.stride), W=np.array(m.W), B=np.array(m.B),
                     dW=None, dB=None)
    elif isinstance(m, (M.SumPool, M.MaxPool)):
        state.update(pool=tuple(m.pool), stride=tuple(m.stride))
    return state


def write_pickle(model, path) -> None:
    """A ``.nn`` pickle of ``model`` as the toolbox writes it (protocol 4, numpy arrays by
    ``_reconstruct``; the toolbox reads it under Python 3)."""
    _modules(model)
    buf = io.BytesIO()
    _Writer(buf, protocol=4).dump(model)
    with open(path, "wb") as fh:
        fh.write(buf.getvalue())
