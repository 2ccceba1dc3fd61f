"""Loads the compiled core, with a message that says how to build it when it is missing."""

try:
    from . import _core as core
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "fastlrp's compiled core (fastlrp._core) could not be imported: "
        f"{exc}. Build and install it with `pip install .` from the source tree "
        "(needs a C++17 compiler; Eigen comes from the cmeel-eigen build requirement)."
    ) from exc

__all__ = ["core"]
