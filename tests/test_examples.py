"""The examples run (with fast settings), so that they cannot rot."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_adult_income_example(tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / "adult_income.py"), "--rows", "500", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "accuracy on 500 test rows" in out.stdout
    acc = float(out.stdout.split("accuracy on 500 test rows: ")[1].split()[0])
    assert acc > 0.75
    assert (tmp_path / "attributes.png").stat().st_size > 0 and (tmp_path / "layers.png").stat().st_size > 0


def test_train_income_model_example(tmp_path):
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, str(EXAMPLES / "train_income_model.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import fastlrp as fl

    model = fl.load(tmp_path / "income_mlp.npz")
    assert model.in_features == 108 and (tmp_path / "income_meta.json").exists()
    assert float(out.stdout.split("test accuracy ")[1].split()[0]) > 0.8


def test_toolbox_dropin_example(tmp_path):
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, str(EXAMPLES / "toolbox_dropin.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split("model accuracy: ")[1].split("%")[0]) > 80
    for name in ("epsilon", "alphabeta", "presets"):
        assert (tmp_path / f"digits-{name}.png").stat().st_size > 0


def test_digits_cnn_example(tmp_path):
    pytest.importorskip("sklearn")
    out = subprocess.run([sys.executable, str(EXAMPLES / "digits_cnn.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split("test accuracy: ")[1].split()[0]) > 0.85
    import matplotlib.image as mpimg

    assert "AOPC MoRF" in out.stdout and "random order" in out.stdout
    for name in ("one-digit-every-class.png", "class-means.png", "faithfulness.png"):
        img = mpimg.imread(tmp_path / name)
        assert img.shape[0] > 50 and img[..., :3].std() > 0.05  # not blank
