"""The `fastlrp` command line: info and explain on files the tests write; one-line errors."""

import subprocess
import sys

import numpy as np

import fastlrp as fl

from conftest import random_mlp


def run(*args):
    return subprocess.run([sys.executable, "-m", "fastlrp", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_info_and_explain(rng, tmp_path):
    model = random_mlp(rng, [6, 10, 3])
    model.save(tmp_path / "m.npz")
    info = run("info", tmp_path / "m.npz", "--rule", "gamma:0.5")
    assert info.returncode == 0, info.stderr
    assert "4 layers, 103 parameters" in info.stdout  # 6*10 + 10 + 10*3 + 3
    assert "Gamma(gamma=0.5)" in info.stdout and "Softmax" in info.stdout
    x = rng.normal(size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    for inp in ("x.npy", "x.csv"):
        out = run("explain", tmp_path / "m.npz", tmp_path / inp, "--out", tmp_path / "r.npz", "--layerwise",
                  "--batch-size", "16", "--plot", tmp_path / "r.png")
        assert out.returncode == 0, out.stderr
        with np.load(tmp_path / "r.npz") as z:
            expected = fl.LRP(model, "epsilon_plus_flat")(x)
            np.testing.assert_allclose(z["relevance"], expected.relevance, rtol=1e-4, atol=1e-6)
            assert "layer0" in z.files and z["targets"].shape == (40,)
        assert (tmp_path / "r.png").stat().st_size > 0
    out = run("explain", tmp_path / "m.npz", tmp_path / "x.npy", "--out", tmp_path / "t.npz", "--target", "2",
              "--rule", "epsilon:0.1")
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "t.npz") as z:
        assert (z["targets"] == 2).all()


def test_errors_are_one_line(rng, tmp_path):
    random_mlp(rng, [6, 10, 3]).save(tmp_path / "m.npz")
    np.save(tmp_path / "bad.npy", np.ones((4, 5)))
    for args, needle in [
        (("info", tmp_path / "nope.onnx"), "unsupported model format"),
        (("info", tmp_path / "m.npz", "--rule", "magic"), "unknown rule"),
        (("explain", tmp_path / "m.npz", tmp_path / "bad.npy", "--out", tmp_path / "o.npz"), "expected 6 features"),
        (("explain", tmp_path / "m.npz", tmp_path / "m.txt", "--out", tmp_path / "o.npz"), "unsupported input"),
        (("explain", tmp_path / "m.npz", tmp_path / "bad.npy", "--out", tmp_path / "o.npz", "--target", "7"), "features"),
    ]:
        r = run(*args)
        assert r.returncode == 1
        assert needle in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert "--layerwise" in run("explain", "--help").stdout
