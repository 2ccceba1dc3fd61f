"""fastlrp's compiled kernels: the module of the best ISA level this CPU runs, picked at import.

A portable build (the default, and every wheel) carries the same kernels compiled three times,
``_core_v2`` (x86-64-v2: SSE4.2), ``_core_v3`` (v3: AVX2 + FMA) and ``_core_v4`` (v4: AVX-512);
``_cpu`` says which of them the CPU and the operating system run, before any is loaded. The
environment variable ``FASTLRP_ISA=v2|v3|v4``, read here once, forces one (for tests and
benchmarks). A build with ``FASTLRP_NATIVE=ON`` carries a single ``_core_native`` for the machine
that compiled it. ``fastlrp.build_info()["isa"]`` reports the level in use.
"""

import importlib
import importlib.util
import os

from . import _cpu

LEVELS = ("v2", "v3", "v4")


def supported_levels() -> list[str]:
    """The x86-64 levels this CPU runs."""
    return [level for level, ok in zip(LEVELS, _cpu.levels()) if ok]


def built_levels() -> list[str]:
    """The kernel modules this installation carries."""
    return [level for level in ("native", "generic") + LEVELS
            if importlib.util.find_spec(f"{__package__}._core_{level}") is not None]


def _select() -> str:
    built, runs = built_levels(), supported_levels()
    forced = os.environ.get("FASTLRP_ISA", "").strip()
    if forced:
        if forced not in LEVELS:
            raise ValueError(f"FASTLRP_ISA: expected one of v2, v3, v4, got {forced!r}")
        if forced not in built:
            raise ValueError(f"FASTLRP_ISA={forced}: this build carries no {forced} kernels (it has "
                             f"{', '.join(built) or 'none'}; a FASTLRP_NATIVE=ON build has one module only)")
        if forced not in runs:
            raise ValueError(f"FASTLRP_ISA={forced}: this CPU does not run x86-64-{forced} "
                             f"(it runs {', '.join(runs) or 'none of v2, v3, v4'})")
        return forced
    for level in ("native",) + LEVELS[::-1] + ("generic",):
        if level in built and (level in ("native", "generic") or level in runs):
            return level
    raise ImportError(f"fastlrp: no kernel module this CPU can run (built: {built}, CPU runs: {runs})")


LEVEL = _select()
_module = importlib.import_module(f"{__package__}._core_{LEVEL}")
globals().update({name: value for name, value in vars(_module).items() if not name.startswith("__")})
