"""Shared helpers of the benchmark scripts: timing, peers, markdown tables."""

from __future__ import annotations

import os
import platform
import sys
import time
import types

import numpy as np


def timeit(fn, min_time=0.05, repeats=7, max_calls=None):
    """Median, min and max seconds per call: a pause, a warm-up, then `repeats` timed rounds of
    enough calls to last about `min_time` each.

    The pause lets the thread pools of whatever ran before (torch's and fastlrp's OpenMP, which
    spin for a while when idle) park, so that they do not take a core from the code timed now."""
    time.sleep(0.25)
    fn()
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-7)
    calls = max(1, int(min_time / one))
    if max_calls:
        calls = min(calls, max_calls)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls)
    return float(np.median(times)), float(min(times)), float(max(times))


def import_torchvision():
    """torchvision's model code beside the CPU torch wheel these machines carry: PyPI's torchvision
    registers fake kernels for compiled operators that this torch does not have ("operator
    torchvision::nms does not exist"); the model definitions need none of them, so such a
    registration is skipped instead of failing the import. Raises ImportError without it."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "__version__"):
        return sys.modules["torchvision"]
    import torch

    original = torch.library.register_fake

    def tolerant(*args, **kwargs):
        try:
            registrar = original(*args, **kwargs)
        except RuntimeError:
            return lambda fn: fn
        if not callable(registrar):
            return registrar

        def apply(fn):
            try:
                return registrar(fn)
            except RuntimeError:
                return fn
        return apply

    torch.library.register_fake = tolerant
    try:
        import torchvision
    except RuntimeError as exc:
        raise ImportError(f"torchvision does not import beside this torch: {exc}") from None
    finally:
        torch.library.register_fake = original
    return torchvision


# The environment variables that cap PyTorch's kernels at an x86-64 level, so that the peer runs
# what it would run on a CPU of that level: ATen's own vectorised kernels (read when torch is
# imported), oneDNN's convolutions, and MKL's BLAS (which may ignore the cap on a non-Intel CPU:
# then the peer's dense layers keep their faster kernels, in the peer's favour).
PEER_ISA_ENV = {
    "v2": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "v3": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "v4": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}


def cap_peer_isa(level: str) -> dict:
    """Cap the PyTorch peers at x86-64 level `level` ("v2", "v3", "v4", or "match": fastlrp's level
    in use) by setting PEER_ISA_ENV's variables; returns what was set. Must run before torch is
    imported, which reads them once."""
    if level == "match":
        import fastlrp as fl

        level = fl.build_info()["isa"]
    if level not in PEER_ISA_ENV:
        raise ValueError(f"peer ISA level: expected one of {', '.join(PEER_ISA_ENV)} or 'match', got {level!r}")
    if "torch" in sys.modules:
        raise RuntimeError("the peer ISA level must be set before torch is imported; torch is already imported")
    os.environ.update(PEER_ISA_ENV[level])
    return dict(PEER_ISA_ENV[level])


def import_zennit():
    """(torch, zennit) or (None, reason). zennit 0.5.1 imports torchvision's ResNet only for a
    canonizer; without torchvision we give it placeholder modules."""
    try:
        import torch
    except ImportError as exc:
        return None, f"torch not importable ({exc})"
    try:
        import_torchvision()
    except ImportError:
        tv = types.ModuleType("torchvision")
        tv_models = types.ModuleType("torchvision.models")
        tv_resnet = types.ModuleType("torchvision.models.resnet")
        tv_resnet.BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
        tv_resnet.Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
        tv.models, tv_models.resnet = tv_models, tv_resnet
        sys.modules.update({"torchvision": tv, "torchvision.models": tv_models, "torchvision.models.resnet": tv_resnet})
    try:
        import zennit  # noqa: F401
        import zennit.attribution  # noqa: F401
        import zennit.composites  # noqa: F401
        import zennit.rules  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure means: no zennit peer
        return None, f"zennit not importable ({type(exc).__name__}: {exc})"
    return (torch, zennit), None


def machine() -> str:
    import fastlrp as fl

    info = fl.build_info()
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    keys = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "FASTLRP_ISA") + tuple(PEER_ISA_ENV["v2"])
    env = {k: os.environ[k] for k in keys if k in os.environ}
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
            f"fastlrp {fl.__version__} (isa={info['isa']}, vector={info['vector']}, openmp={info['openmp']}, native={info['native']}), "
            f"env {env or '{}'}")


def table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def rate(n, t):
    r = n / t
    return f"{r:,.0f}" if r >= 100 else f"{r:.2f}"


def rel_error(a, b) -> float:
    """||a - b|| / ||b||: robust to the few entries where float32 rounding of a nearly cancelling
    pre-activation is amplified by the division."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float(np.linalg.norm(a))


def emit(lines, out=None) -> None:
    """Print the report and, with `out`, write it to that file too."""
    from pathlib import Path

    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
