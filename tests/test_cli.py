"""The `fastlrp` command line: info and explain on files the tests write; one-line errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

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
        (("info", tmp_path / "nope.xyz"), "unsupported model format"),
        (("info", tmp_path / "nope.onnx"), "not a readable ONNX model"),
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


DATA = os.path.join(os.path.dirname(__file__), "data")


def test_explain_keras_model_on_nhwc_data(tmp_path):
    """Keras models take channels-last data at the command line, as in Keras."""
    exp = np.load(os.path.join(DATA, "keras_expected.npz"))
    x = exp["cnn_x"]  # (N, H, W, C)
    np.save(tmp_path / "x.npy", x)
    out = run("explain", os.path.join(DATA, "keras_cnn.keras"), tmp_path / "x.npy", "--out", tmp_path / "r.npz")
    assert out.returncode == 0, out.stderr
    model = fl.from_keras(os.path.join(DATA, "keras_cnn.keras"))
    expected = fl.LRP(model, "epsilon_plus_flat")(x.transpose(0, 3, 1, 2)).relevance.transpose(0, 2, 3, 1)
    with np.load(tmp_path / "r.npz") as z:
        np.testing.assert_allclose(z["relevance"], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(z["output"], np.log(exp["cnn_y"]) - np.log(exp["cnn_y"])[:, :1]
                                   + z["output"][:, :1], rtol=1e-4, atol=1e-4)  # softmax skipped: logits


def test_explain_toolbox_text_model(rng, tmp_path):
    from fastlrp.toolbox import model_io, modules

    conv = modules.Convolution((3, 3, 1, 4), (1, 1))
    lin = modules.Linear(4 * 4 * 4, 3)
    net = modules.Sequential([conv, modules.Rect(), modules.SumPool((2, 2), (2, 2)), modules.Flatten(), lin,
                              modules.SoftMax()])
    model_io.write(net, tmp_path / "m.txt")
    x = rng.uniform(-1, 1, size=(5, 10, 10, 1))
    np.save(tmp_path / "x.npy", x)
    info = run("info", tmp_path / "m.txt", "--input-shape", "10,10,1")
    assert info.returncode == 0, info.stderr
    assert "Conv2d" in info.stdout
    out = run("explain", tmp_path / "m.txt", tmp_path / "x.npy", "--out", tmp_path / "r.npz", "--rule", "epsilon:0.01")
    assert out.returncode == 0, out.stderr
    native = net.to_sequential(input_shape=(10, 10, 1))
    expected = fl.LRP(native, fl.rules.Epsilon(0.01))(x.transpose(0, 3, 1, 2)).relevance.transpose(0, 2, 3, 1)
    with np.load(tmp_path / "r.npz") as z:
        np.testing.assert_allclose(z["relevance"], expected, rtol=1e-10, atol=1e-12)
    net.drop_softmax_output_layer()
    with np.load(tmp_path / "r.npz") as z:  # the logits: the toolbox model's scores without its SoftMax
        np.testing.assert_allclose(z["output"], net.forward(x), rtol=1e-10)


def test_explain_an_image_file(rng, tmp_path):
    import matplotlib.pyplot as plt

    model = fl.Sequential([fl.Conv2d(rng.normal(size=(4, 1, 3, 3)), np.zeros(4)), fl.ReLU(), fl.Flatten(),
                           fl.Dense(rng.normal(size=(3, 4 * 6 * 6)), np.zeros(3))])
    model.save(tmp_path / "m.npz")
    img = rng.uniform(size=(8, 8, 3))
    plt.imsave(tmp_path / "img.png", img)
    out = run("explain", tmp_path / "m.npz", tmp_path / "img.png", "--out", tmp_path / "r.npz", "--plot",
              tmp_path / "r.png")
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "r.npz") as z:
        assert z["relevance"].shape == (1, 8, 8, 1)
        grey = plt.imread(tmp_path / "img.png")[:, :, :3].mean(axis=2)
        expected = fl.LRP(model, "epsilon_plus_flat")(grey[None, None].astype(np.float32)).relevance
        np.testing.assert_allclose(z["relevance"][..., 0], expected[:, 0], rtol=1e-4, atol=1e-6)


def test_bench_suite_runs(tmp_path):
    """The suite's instrument (not its figures): a small case end to end, JSON and plot written,
    fastlrp checked against its numpy reference before timing."""
    import json

    out = run("bench", "--quick", "--nets", "mlp", "--rules", "Epsilon", "--json", tmp_path / "b.json",
              "--plot", tmp_path / "b.png", "--out", tmp_path / "b.md")
    assert out.returncode == 0, out.stderr
    cases = json.load(open(tmp_path / "b.json"))["cases"]
    assert [(c["net"], c["batch"], c["rule"]) for c in cases] == [("mlp", 1, "Epsilon"), ("mlp", 64, "Epsilon")]
    for c in cases:
        assert c["seconds"] > 0 and c["peers"]["forward"]["samples_s"] > 0
        assert c["peers"]["numpy"]["rel_diff"] < 1e-9  # the reference agreed before it was timed
    assert "| mlp | 1 |" in (tmp_path / "b.md").read_text()
    assert (tmp_path / "b.png").stat().st_size > 0
    bad = run("bench", "--nets", "resnet")
    assert bad.returncode != 0 and "unknown net" in bad.stderr


def test_bench_suite_repeat(tmp_path):
    """--repeat N: N runs kept in the JSON and a table of median ratios with their min-max."""
    import json

    out = run("bench", "--quick", "--nets", "mlp", "--rules", "Epsilon", "--repeat", "2", "--json", tmp_path / "b.json")
    assert out.returncode == 0, out.stderr
    runs = json.load(open(tmp_path / "b.json"))["runs"]
    assert len(runs) == 2 and all(len(r) == 2 for r in runs)
    ratios = sorted(r[0]["peers"]["numpy"]["ratio"] for r in runs)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("| mlp | 1 |") and "(" in ln.split("|")[6])
    assert f"({ratios[0]:.1f}-{ratios[1]:.1f})" in line
    assert run("bench", "--repeat", "0").returncode != 0


def test_cli_missing_reader_and_missing_shape_are_one_line(tmp_path, monkeypatch, capsys, rng):
    """A missing optional package (h5py for Keras files) and a toolbox CNN without
    --input-shape: one line on stderr naming what to do, exit code 1, no traceback."""
    import importlib.util

    from fastlrp import cli
    from fastlrp.toolbox import model_io, modules

    (tmp_path / "m.h5").write_bytes(b"not read")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else real(name, *a))
    assert cli.main(["info", str(tmp_path / "m.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install h5py" in err[0] and "Traceback" not in err[0]
    monkeypatch.undo()

    net = modules.Sequential([modules.Convolution(filtersize=(3, 3, 1, 2), stride=(1, 1)), modules.Rect(),
                              modules.Flatten(), modules.Linear(8 * 8 * 2, 3)])
    model_io.write(net, tmp_path / "cnn.txt")
    assert cli.main(["info", str(tmp_path / "cnn.txt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--input-shape H,W,C" in err[0]


def test_bench_suite_toolbox_net_runs(tmp_path):
    """The toolbox branch of the suite end to end (a quick LeNet-5 case), checked against the
    toolbox's algorithm before it is timed."""
    import json

    out = run("bench", "--quick", "--nets", "toolbox-lenet5", "--threads", "1", "--json", tmp_path / "t.json")
    assert out.returncode == 0, out.stderr
    cases = json.load(open(tmp_path / "t.json"))["cases"]
    assert [(c["net"], c["batch"]) for c in cases] == [("toolbox-lenet5", 16)]
    assert cases[0]["peers"]["numpy"]["rel_diff"] < 1e-9


def test_bench_suite_caps_the_peers_isa():
    """--peer-isa v2: torch, imported after the cap, runs its baseline kernels (what a CPU without
    AVX2 runs), and the report says so; a level that does not exist is refused."""
    pytest.importorskip("torch")
    out = run("bench", "--quick", "--nets", "mlp", "--rules", "Epsilon", "--threads", "1", "--peer-isa", "v2")
    assert out.returncode == 0, out.stderr
    assert "PyTorch's kernels (peers and torch's forward): DEFAULT (--peer-isa v2)" in out.stdout
    bad = run("bench", "--quick", "--nets", "mlp", "--peer-isa", "v9")
    assert bad.returncode != 0 and "--peer-isa" in bad.stderr


def test_cap_peer_isa_refuses_after_torch_and_unknown_levels(monkeypatch):
    from fastlrp.bench import _util

    with pytest.raises(ValueError, match="expected one of v2, v3, v4 or 'match', got 'v9'"):
        _util.cap_peer_isa("v9")
    monkeypatch.setitem(sys.modules, "torch", object())
    with pytest.raises(RuntimeError, match="before torch is imported"):
        _util.cap_peer_isa("v2")
