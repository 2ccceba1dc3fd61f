"""Reads a Keras HDF5 file in a child process (run by :mod:`fastlrp.io.keras`).

The HDF5 C library can spin for minutes on a crafted file (a corrupted variable-length
attribute; found by fuzzing), and a C call cannot be interrupted from Python. So the parent runs
this module with a time limit and a memory limit, and reads back plain data: a JSON file with
the config and weight names, an .npz (no pickles) with the weight arrays.

    python -m fastlrp.io._h5child SRC OUT {v3|legacy}
"""

import json
import os
import sys

import numpy as np


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v[()])
    return str(v)


def main(argv=None) -> int:
    src, out, kind = (argv or sys.argv[1:])[:3]
    if "asan" not in os.environ.get("LD_PRELOAD", ""):  # AddressSanitizer reserves terabytes of shadow
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))  # a bound, far above any real model
        except (ImportError, ValueError, OSError):
            pass
    import h5py

    limit = max(os.path.getsize(src) * 100, 1 << 20)  # no weight is larger than its file, uncompressed x100
    meta, arrays = {"arrays": {}}, {}

    def take(key, ds):
        if not isinstance(ds, h5py.Dataset):
            return
        if ds.dtype.kind not in "fiu":
            raise ValueError(f"{ds.name}: dtype {ds.dtype} is not numeric")
        if ds.size * ds.dtype.itemsize > limit:
            raise ValueError(f"{ds.name}: claims {ds.size * ds.dtype.itemsize:,} bytes in a file of "
                             f"{os.path.getsize(src):,}")
        meta["arrays"][key] = f"a{len(arrays)}"
        arrays[f"a{len(arrays)}"] = np.asarray(ds[()])

    with h5py.File(src, "r") as f:
        if kind == "legacy":
            raw = f.attrs.get("model_config")
            if raw is None:
                raise ValueError("no model_config attribute: a weights-only file, not a saved model")
            meta["config"] = _text(raw)
            if "model_weights" not in f:
                raise ValueError("no model_weights group")
            names = {}
            for layer, grp in f["model_weights"].items():
                if not isinstance(grp, h5py.Group):
                    continue
                wn = [_text(n) for n in grp.attrs.get("weight_names", [])]
                names[layer] = wn
                for n in wn:
                    if n not in grp:
                        raise ValueError(f"model_weights/{layer}: weight {n!r} is missing")
                    take(f"{layer}/{n}", grp[n])
            meta["weight_names"] = names
        else:
            layers = f.get("layers")
            if isinstance(layers, h5py.Group):
                for path, grp in layers.items():
                    v = grp.get("vars") if isinstance(grp, h5py.Group) else None
                    if isinstance(v, h5py.Group):
                        for k in v:
                            take(f"layers/{path}/vars/{k}", v[k])
    with open(out + ".npz", "wb") as fh:
        np.savez(fh, **arrays)
    with open(out + ".json", "w") as fh:
        json.dump(meta, fh)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        print(f"{type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        sys.exit(3)
