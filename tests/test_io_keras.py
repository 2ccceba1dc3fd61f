"""from_keras on files written by real Keras 3: forward equals Keras's (float32, rtol 1e-5)."""

import json
import os
import zipfile

import numpy as np
import pytest

import fastlrp as fl

from conftest import fwd_close, same_relevance

DATA = os.path.join(os.path.dirname(__file__), "data")


# ------------------------------------------------------------------------------ Keras
pytest.importorskip("h5py")
EXPECTED = np.load(os.path.join(DATA, "keras_expected.npz"))


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "gap", "func"])
def test_keras_files_written_by_keras3(name, ext):
    """Files written by real Keras 3 (tests/data/make_keras_fixtures.py) against Keras's outputs."""
    model = fl.from_keras(os.path.join(DATA, f"keras_{name}.{ext}"))
    x = EXPECTED[f"{name}_x"]
    xn = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    fwd_close(model.forward(xn), EXPECTED[f"{name}_y"])
    if name == "func":
        assert isinstance(model, fl.Model) and {"add", "concatenate"} <= set(model.names)
    if name != "gap":  # relevance: the .keras and .h5 loads agree, and with the native rebuild
        other = fl.from_keras(os.path.join(DATA, f"keras_{name}.{'h5' if ext == 'keras' else 'keras'}"))
        same_relevance(model, other, xn)


def test_keras_live_round_trip(tmp_path):
    """With Keras installed, write fresh files and compare (skipped without Keras)."""
    keras = pytest.importorskip("keras")
    import importlib.util
    spec = importlib.util.spec_from_file_location("mk", os.path.join(DATA, "make_keras_fixtures.py"))
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    mk.main(str(tmp_path))
    exp = np.load(tmp_path / "keras_expected.npz")
    for name in ("mlp", "cnn", "gap", "func"):
        x = exp[f"{name}_x"]
        model = fl.from_keras(tmp_path / f"keras_{name}.keras")
        fwd_close(model.forward(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x), exp[f"{name}_y"])
    assert keras.__version__.startswith("3")


def _rewrite_config(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(parts["config.json"])
    edit(cfg)
    parts["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)


def test_keras_bad_files(tmp_path):
    src = os.path.join(DATA, "keras_cnn.keras")

    def add_lstm(cfg):
        cfg["config"]["layers"].insert(3, {"class_name": "LSTM", "config": {"name": "lstm"}})

    _rewrite_config(src, tmp_path / "lstm.keras", add_lstm)
    with pytest.raises(ValueError, match=r"layer 3 'lstm' \(LSTM\): layer type 'LSTM' is not supported; supported: .*Conv2D"):
        fl.from_keras(tmp_path / "lstm.keras")

    def wrong_units(cfg):
        next(l for l in cfg["config"]["layers"] if l["class_name"] == "Dense")["config"]["units"] = 7

    _rewrite_config(src, tmp_path / "units.keras", wrong_units)
    with pytest.raises(ValueError, match="does not match units=7"):
        fl.from_keras(tmp_path / "units.keras")

    def functional(cfg):
        cfg["class_name"] = "Functional"

    _rewrite_config(src, tmp_path / "func.keras", functional)
    with pytest.raises(ValueError, match="expected one output layer"):  # a Sequential's config has none
        fl.from_keras(tmp_path / "func.keras")

    def custom(cfg):
        cfg["class_name"] = "MyModel"

    _rewrite_config(src, tmp_path / "custom.keras", custom)
    with pytest.raises(ValueError, match="expected a Keras Sequential or functional model, got 'MyModel'"):
        fl.from_keras(tmp_path / "custom.keras")

    data = open(src, "rb").read()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable Keras file"):
        fl.from_keras(tmp_path / "cut.keras")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(ValueError, match="not a readable Keras file"):
        fl.from_keras(tmp_path / "junk.h5")




def test_keras_applications_resnet50(tmp_path):
    """keras.applications.ResNet50(weights=None) saved by Keras loads as a graph with h5py only
    and computes Keras's output (skipped without Keras: it is not a test extra)."""
    keras = pytest.importorskip("keras")
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    expected = np.asarray(model.predict(x, verbose=0))
    model.save(tmp_path / "r50.keras")
    ours = fl.from_keras(tmp_path / "r50.keras")
    assert isinstance(ours, fl.Model) and sum(isinstance(n.layer, fl.Add) for n in ours.nodes) == 16
    fwd_close(ours(x.transpose(0, 3, 1, 2)), expected)
