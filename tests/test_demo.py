"""The main job: `fastlrp demo` on the shipped data and model, and the plots it draws."""

import subprocess
import sys

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import datasets, demo, plot


def test_shipped_data_and_model():
    table, y = datasets.load_adult()
    assert len(y) == 48842 and y.sum() == 11687  # counts from the data's README
    model, enc, meta = datasets.load_income_model()
    assert model.in_features == len(enc.feature_names) == len(meta["feature_names"])
    x = enc.transform(table, np.arange(5))
    assert x.shape == (5, model.in_features) and x.dtype == np.float32
    # one-hot blocks: exactly one active column per categorical attribute
    assert (x[:, len(datasets.NUMERIC):].sum(axis=1) == len(datasets.CATEGORICAL)).all()


def test_aggregate_sums_one_hot_columns_back():
    _, enc, _ = datasets.load_income_model()
    r = np.random.default_rng(0).normal(size=(3, len(enc.feature_names)))
    names, agg = enc.aggregate(r)
    assert names == datasets.NUMERIC + datasets.CATEGORICAL
    np.testing.assert_allclose(agg.sum(axis=1), r.sum(axis=1))
    k = names.index("race")
    cols = [i for i, a in enumerate(enc.attribute_of_feature) if a == "race"]
    np.testing.assert_allclose(agg[:, k], r[:, cols].sum(axis=1))


def test_demo_run(tmp_path):
    lines = []
    result = demo.run(tmp_path, echo=lines.append)
    text = "\n".join(lines)
    assert result["accuracy"] > 0.8
    assert "test accuracy" in text and "towards >50K" in text
    for path in result["files"].values():
        assert path.exists() and path.stat().st_size > 0
    import matplotlib.image as mpimg

    img = mpimg.imread(result["files"]["attributes"])
    assert img.shape[0] > 100 and img.std() > 0.01  # not blank
    e = result["explanation"]
    assert len(e.layers) == 7 and e.layers[0].shape == e.relevance.shape


def test_cli_demo_and_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastlrp", "demo", "--out", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and (tmp_path / "d" / "layers.png").exists()
    bad = subprocess.run([sys.executable, "-m", "fastlrp", "demo", "--out", str(tmp_path / "e"), "--composite", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert "unknown composite" in bad.stderr and "Traceback" not in bad.stderr


def _rgb_at(fig, ax, x, y):
    """The colour drawn at data coordinate (x, y) of ax."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    buf = np.asarray(fig.canvas.buffer_rgba())
    px, py = ax.transData.transform((x, y))
    h = buf.shape[0]
    return buf[int(round(h - py)), int(round(px)), :3].astype(int)


def test_heatmap_colours_follow_sign():
    r = np.zeros((8, 8))
    r[1, 1] = 2.0
    r[6, 6] = -1.0
    fig = plot.heatmap(r)
    ax = fig.axes[0]
    red, blue, white = _rgb_at(fig, ax, 1, 1), _rgb_at(fig, ax, 6, 6), _rgb_at(fig, ax, 4, 3)
    assert red[0] > 200 and red[2] < 60  # positive: red end of bwr
    assert blue[2] > 200 and blue[0] < 200  # negative: blue side
    assert (white > 240).all()  # zero: the centre of the map is white
    with pytest.raises(ValueError, match="HW, CHW"):
        plot.heatmap(np.zeros(5))


def test_features_and_layers_plots():
    fig = plot.features(np.array([0.5, -1.0, 0.1]), ["a", "b", "c"], top=2)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["a", "b"]  # the two largest |R|, largest on top
    with pytest.raises(ValueError, match="names"):
        plot.features(np.ones(3), ["a"])
    rng = np.random.default_rng(0)
    model = fl.Sequential([fl.Dense(rng.normal(size=(6, 4))), fl.ReLU(), fl.Dense(rng.normal(size=(2, 6)))])
    e = fl.LRP(model, "epsilon_plus")(rng.normal(size=(3, 4)), layerwise=True)
    fig = plot.layers(e)
    assert len(fig.axes[0].get_yticklabels()) == 4
    with pytest.raises(ValueError, match="layerwise"):
        plot.layers(fl.LRP(model, "epsilon_plus")(rng.normal(size=(3, 4))))
    fig = plot.grid([rng.normal(size=(5, 5)) for _ in range(3)], titles=["a", "b", "c"])
    assert len(fig.axes) == 3


def test_demo_default_depends_on_the_input(tmp_path):
    """The demo's default composite is Epsilon everywhere: an input that is 0 (an inactive
    one-hot column) gets exactly 0 relevance, unlike w2_epsilon's WSquare first layer, which
    shares relevance by squared weights whatever the input."""
    from fastlrp.datasets import load_adult, load_income_model, split_indices

    model, enc, meta = load_income_model()
    table, y = load_adult()
    _, test = split_indices(len(y), meta["split"]["seed"], meta["split"]["test_fraction"])
    x = enc.transform(table, test)
    e = demo.run(tmp_path, echo=lambda *a: None)["explanation"]
    assert e.relevance.shape == x.shape and (x == 0).sum() > x.size // 4
    assert (e.relevance[x == 0] == 0).all()
    w2 = demo.run(tmp_path / "w2", composite="w2_epsilon", echo=lambda *a: None)["explanation"]
    assert (w2.relevance[x == 0] != 0).any()
