"""fastlrp's GEMM computes every output as one ordered multiply-add chain, bit for bit: the C++
check tests/cpp/gemm_chain.cpp, compiled with each ISA level's flags that this CPU runs."""

import shutil
import subprocess
from pathlib import Path

import pytest

from fastlrp import _core

ROOT = Path(__file__).resolve().parents[1]


def eigen_include():
    """Eigen's headers from cmeel-eigen (a test extra, as it is the build's)."""
    import importlib.metadata
    path = Path(importlib.metadata.distribution("cmeel-eigen").locate_file("cmeel.prefix/include/eigen3"))
    assert (path / "Eigen" / "Dense").exists(), path
    return path


@pytest.mark.parametrize("level", ["v2", "v3", "v4"])
def test_gemm_is_one_ordered_chain_per_output(level, tmp_path):
    if level not in _core.supported_levels():
        pytest.skip(f"this CPU does not run x86-64-{level}")
    cxx = shutil.which("g++") or shutil.which("c++")
    assert cxx, "a C++ compiler (the build needs one)"
    exe = tmp_path / "gemm_chain"
    subprocess.run([cxx, "-std=c++17", "-O2", f"-march=x86-64-{level}", "-ffp-contract=off", "-DFASTLRP_ISA_NS=check",
                    f"-I{ROOT / 'src/cpp/include'}", f"-I{eigen_include()}", str(ROOT / "tests/cpp/gemm_chain.cpp"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "total bad 0", out
