"""Runtime ISA dispatch: a portable build carries kernels for x86-64-v2, v3 and v4, picks the best
level the CPU runs at import, and FASTLRP_ISA forces one. Each level runs in a fresh process (the
variable is read at import) and is checked against the numpy reference and for bitwise
independence of the thread count and the batch."""

import os
import subprocess
import sys
import textwrap

import pytest

import fastlrp as fl
from fastlrp import _core

CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastlrp as fl
    from fastlrp import composites, reference, rules

    rng = np.random.default_rng(0)
    out = {"isa": fl.build_info()["isa"], "vector": fl.build_info()["vector"]}
    for dtype in (np.float32, np.float64):
        layers = [fl.Conv2d(rng.normal(size=(12, 3, 3, 3)).astype(dtype) * 0.3, rng.normal(size=12).astype(dtype) * 0.1,
                            padding=1),
                  fl.ReLU(),
                  # depthwise 3x3, stride 1, padding 1: the unrolled kernel (its pixel grouping differs by level)
                  fl.Conv2d(rng.normal(size=(12, 1, 3, 3)).astype(dtype) * 0.5, rng.normal(size=12).astype(dtype) * 0.1,
                            padding=1, groups=12),
                  fl.ReLU(), fl.MaxPool2d(2),
                  fl.Conv2d(rng.normal(size=(5, 12, 3, 3)).astype(dtype) * 0.2, np.zeros(5, dtype), stride=2),
                  fl.ReLU(), fl.Flatten(), fl.Dense(rng.normal(size=(7, 5 * 3 * 3)).astype(dtype) * 0.3, np.zeros(7, dtype))]
        model = fl.Sequential(layers)
        x = rng.normal(size=(9, 3, 14, 14)).astype(dtype)
        x[2] = 0.5
        for comp in ["epsilon", "epsilon_plus_flat", composites.epsilon_gamma_box(-3.0, 3.0), "epsilon_alpha2_beta1"]:
            lrp = fl.LRP(model, comp)
            fl.set_num_threads(1)
            r1 = lrp(x).relevance
            fl.set_num_threads(2)
            r2 = lrp(x).relevance
            r3 = np.concatenate([lrp(x[:4]).relevance, lrp(x[4:]).relevance])
            ref = reference.lrp(model.layers, lrp.rules, x.astype(np.float64))[0]
            scale = np.abs(ref).max()
            out.setdefault("bitwise", []).append(bool(np.array_equal(r1, r2) and np.array_equal(r1, r3)))
            out.setdefault("error", []).append(float(np.abs(r1 - ref).max() / scale))
    # depthwise 3x3 with padding 1 (its own kernel: at v2, float rows in groups of 6 written in
    # assembly) against the same layer on explicit zero borders (the general kernels): the same
    # chains, so the same bits, forward and in the backward gathers of Epsilon and of ZPlus on
    # signed inputs; widths with 0-3 groups of 6 and the pixels after them, channels with and
    # without a partial vector. ZBox on the layer as a first layer starts its denominators'
    # chains from the values already there.
    for dtype in (np.float32, np.float64):
        for width in (3, 8, 9, 14, 23):
            for ch in (7, 20):
                w = rng.normal(size=(ch, 1, 3, 3)).astype(dtype)
                b = rng.normal(size=ch).astype(dtype)
                x = rng.normal(size=(3, ch, 5, width)).astype(dtype)
                zeros = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
                padded = fl.Sequential([fl.Conv2d(w, b, padding=1, groups=ch)])
                explicit = fl.Sequential([fl.Conv2d(w, b, padding=0, groups=ch)])
                start = rng.normal(size=x.shape).astype(dtype)
                same = np.array_equal(padded.forward(x), explicit.forward(zeros))
                for rule in (rules.Epsilon(0.3), rules.ZPlus()):  # ZPlus on signed x: g+ and g- gathers
                    r_pad = fl.LRP(padded, rule)(x, target=start).relevance
                    r_zero = fl.LRP(explicit, rule)(zeros, target=start).relevance
                    same = same and np.array_equal(r_pad, r_zero[:, :, 1:-1, 1:-1])
                out.setdefault("padded_bitwise", []).append(bool(same))
                box = rules.ZBox(-5.0, 5.0)
                r_box = fl.LRP(padded, box)(x, target=start).relevance
                ref = reference.lrp(padded.layers, [box], x.astype(np.float64), target=start.astype(np.float64))[0]
                out.setdefault("zbox_error" + ("32" if dtype == np.float32 else "64"), []).append(
                    float(np.abs(r_box - ref).max() / np.abs(ref).max()))
    print(json.dumps(out))
""")


def run_level(level):
    env = dict(os.environ, FASTLRP_ISA=level)
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300)


def test_default_is_the_best_level_the_cpu_runs():
    runs = _core.supported_levels()
    info = fl.build_info()
    if "native" in _core.built_levels():
        assert info["isa"] == "native"
    elif os.environ.get("FASTLRP_ISA"):
        assert info["isa"] == os.environ["FASTLRP_ISA"]
    else:
        assert info["isa"] == runs[-1]


@pytest.mark.parametrize("level", ["v2", "v3", "v4"])
def test_each_level_is_exact_and_reproducible(level):
    if "native" in _core.built_levels():
        pytest.skip("a FASTLRP_NATIVE=ON build carries one level only")
    proc = run_level(level)
    if level not in _core.supported_levels():
        # this CPU cannot run the level: forcing it is a clear error, not a crash
        assert proc.returncode != 0
        assert f"FASTLRP_ISA={level}: this CPU does not run x86-64-{level}" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    import json
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["isa"] == level
    assert out["vector"] == {"v2": "SSE", "v3": "AVX2+FMA", "v4": "AVX-512"}[level]
    assert all(out["bitwise"]), out
    # float32 cases first, then float64
    assert max(out["error"][:4]) < 1e-4 and max(out["error"][4:]) < 1e-10, out["error"]
    assert len(out["padded_bitwise"]) == 20 and all(out["padded_bitwise"]), out["padded_bitwise"]
    assert max(out["zbox_error32"]) < 1e-4 and max(out["zbox_error64"]) < 1e-10, out


def test_bad_level_is_a_clear_error():
    proc = run_level("avx9")
    assert proc.returncode != 0
    assert "FASTLRP_ISA: expected one of v2, v3, v4, got 'avx9'" in proc.stderr
