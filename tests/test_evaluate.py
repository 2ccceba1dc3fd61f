"""fastlrp.evaluate: perturbation curves and AOPC (against Quantus 0.6 where it installs, and
against a linear model whose answer is known), the randomisation test (SSIM against
scikit-image), bad input, the CLI."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastlrp as fl
from fastlrp.bench.nets import build, lenet_spec, to_torch
from fastlrp.evaluate import perturbation, randomization, region_map, spearman, ssim


def lenet(seed=0):
    return build(lenet_spec()[0], seed=seed)


def quantus_or_skip():
    pytest.importorskip("torch")
    try:
        from fastlrp.bench._util import import_torchvision

        import_torchvision()  # quantus imports torchvision; beside this CPU torch it needs the shim
        import quantus
    except Exception as exc:  # noqa: BLE001 - quantus pulls opencv, scikit-image, pandas
        pytest.skip(f"quantus is not importable here: {type(exc).__name__}: {exc}")
    return quantus


def test_region_perturbation_equals_quantus():
    """LeNet, 2x2 regions, MoRF and LeRF, zero fill: fastlrp's curves equal Quantus 0.6's
    RegionPerturbation on a torch copy of the same model (to float32 rounding)."""
    torch = pytest.importorskip("torch")
    quantus = quantus_or_skip()
    model, params = lenet()
    tmodel = to_torch(params, torch)
    x = np.random.default_rng(1).normal(size=(12, 1, 28, 28)).astype(np.float32)
    e = fl.LRP(model, "epsilon_plus_flat")(x)
    for order in ("morf", "lerf"):
        ours = perturbation(model, x, e.relevance, target=e.targets, order=order, region=2, steps=40, fill=0.0)
        metric = quantus.RegionPerturbation(patch_size=2, order=order, regions_evaluation=40, normalise=False,
                                            perturb_baseline=0.0, disable_warnings=True)
        theirs = np.asarray(metric(model=tmodel, x_batch=x, y_batch=e.targets, a_batch=e.relevance, device="cpu",
                                   softmax=False))
        np.testing.assert_allclose(ours.drops, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_pixel_flipping_equals_quantus_on_the_income_mlp():
    """The shipped income MLP (tabular, one feature per step, zero fill): fastlrp's curve after
    each step equals Quantus 0.6's PixelFlipping on a torch copy."""
    torch = pytest.importorskip("torch")
    quantus = quantus_or_skip()
    from fastlrp.datasets import adult_rows, load_income_model

    model, _, _ = load_income_model()
    dense = [layer for layer in model.layers if isinstance(layer, fl.Dense)]
    mods = []
    for k, layer in enumerate(dense):
        lin = torch.nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(layer.weight, np.float32)))
            lin.bias.copy_(torch.from_numpy(np.asarray(layer.bias, np.float32)))
        mods += [lin] + ([torch.nn.ReLU()] if k < len(dense) - 1 else [])
    tmodel = torch.nn.Sequential(*mods).eval()
    x = adult_rows(0, 64)
    e = fl.LRP(model, "epsilon")(x)
    ours = perturbation(model, x, e.relevance, target=e.targets, order="morf", fill=0.0)
    metric = quantus.PixelFlipping(features_in_step=1, normalise=False, perturb_baseline=0.0, disable_warnings=True)
    # Quantus wants images: a (N, 1, 1, F) view of the rows
    xq = x.reshape(64, 1, 1, -1)
    flat = torch.nn.Sequential(torch.nn.Flatten(), tmodel).eval()
    theirs = np.asarray(metric(model=flat, x_batch=xq, y_batch=e.targets, a_batch=e.relevance.reshape(xq.shape),
                               device="cpu", softmax=False, channel_first=True))
    np.testing.assert_allclose(ours.curves[:, 1:], theirs, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 12))
def test_linear_model_morf_is_steepest(seed, features):
    """f(x) = w.x: the exact relevance x_i w_i (LRP-0) gives the steepest MoRF curve (each step
    removes the largest remaining contribution), LeRF the flattest, and a random order lies
    between them at every step."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(1, features))
    model = fl.Sequential([fl.Dense(w, np.zeros(1))])
    x = rng.normal(size=(5, features))
    e = fl.LRP(model, fl.rules.Epsilon(0))(x, target=0)
    np.testing.assert_allclose(e.relevance, x * w, rtol=1e-12, atol=1e-12)
    morf = perturbation(model, x, e.relevance, target=0, order="morf").curves
    lerf = perturbation(model, x, e.relevance, target=0, order="lerf").curves
    tol = 1e-9
    for s in range(3):
        rand = perturbation(model, x, None, target=0, order="random", seed=s).curves
        assert np.all(morf <= rand + tol) and np.all(rand <= lerf + tol)
    assert np.all(morf[:, -1] == pytest.approx(0.0, abs=1e-12))  # everything removed: the bias, 0


def test_perturbation_chunks_fills_and_seeds():
    model, _ = lenet()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 1, 28, 28)).astype(np.float32)
    rel = fl.LRP(model)(x).relevance
    whole = perturbation(model, x, rel, region=4, steps=10, fill="blur")
    parts = perturbation(model, x, rel, region=4, steps=10, fill="blur", batch_size=3)
    np.testing.assert_array_equal(whole.curves, parts.curves)
    assert whole.curves.shape == (10, 11) and whole.region == (4, 4)
    a = perturbation(model, x, None, order="random", region=(2, 7), steps=5, fill="uniform", seed=4)
    b = perturbation(model, x, None, order="random", region=(2, 7), steps=5, fill="uniform", seed=4)
    c = perturbation(model, x, None, order="random", region=(2, 7), steps=5, fill="uniform", seed=5)
    np.testing.assert_array_equal(a.curves, b.curves)
    assert not np.array_equal(a.curves, c.curves)
    np.testing.assert_allclose(a.aopc, (a.curves[:, :1] - a.curves).mean(axis=1))
    # regions: a grid of blocks from the top-left corner, cut at the edges, across all channels
    ids, n = region_map((2, 5, 5), (2, 2))
    assert n == 9 and ids.reshape(2, 5, 5)[1, 4, 4] == 8 and ids.reshape(2, 5, 5)[0, 0, 3] == 1


def test_tabular_mean_fill_uses_the_background():
    rng = np.random.default_rng(4)
    model = fl.Sequential([fl.Dense(rng.normal(size=(2, 6)), np.zeros(2))])
    x = rng.normal(size=(3, 6))
    background = rng.normal(loc=5.0, size=(50, 6))
    rel = fl.LRP(model, "epsilon")(x, target=1).relevance
    res = perturbation(model, x, rel, target=1, fill="mean", background=background)
    # everything replaced by the background's means: every sample ends at the mean row's score
    end = model.forward(background.mean(axis=0, keepdims=True))[0, 1]
    np.testing.assert_allclose(res.curves[:, -1], end, rtol=1e-12)


def test_perturbation_bad_input():
    model, _ = lenet()
    x = np.zeros((2, 1, 28, 28), np.float32)
    rel = np.zeros_like(x)
    with pytest.raises(ValueError, match=r"relevance must have x's shape \(2, 1, 28, 28\), got \(2, 784\)"):
        perturbation(model, x, rel.reshape(2, -1))
    with pytest.raises(ValueError, match=r"region \(29, 29\) is larger than the image \(28, 28\)"):
        perturbation(model, x, rel, region=29)
    with pytest.raises(ValueError, match=r"steps must be an int in \[1, 196\]"):
        perturbation(model, x, rel, region=2, steps=197)
    with pytest.raises(ValueError, match="finite number"):
        perturbation(model, x, rel, fill=float("nan"))
    with pytest.raises(ValueError, match="order must be one of"):
        perturbation(model, x, rel, order="best")
    with pytest.raises(ValueError, match="needs the relevance"):
        perturbation(model, x, None)
    with pytest.raises(ValueError, match="NaN"):
        perturbation(model, x, np.full_like(x, np.nan))
    with pytest.raises(TypeError, match="fastlrp.Sequential"):
        perturbation("model", x, rel)
    with pytest.raises(ValueError, match=r"2 class indices \(one per sample\), got shape \(3,\)"):
        perturbation(model, x, rel, target=[0, 1, 2])  # chunks must not slice a wrong length into shape
    with pytest.raises(ValueError, match=r"classes must lie in \[0, 10\)"):
        perturbation(model, x, rel, target=10)


def test_ssim_equals_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(5)
    a = rng.normal(size=(28, 28))
    for b in (a + 0.3 * rng.normal(size=a.shape), rng.normal(size=a.shape), np.roll(a, 3, axis=1)):
        rng_ = max(a.max(), b.max()) - min(a.min(), b.min())
        assert ssim(a, b) == pytest.approx(metrics.structural_similarity(a, b, data_range=rng_), rel=1e-10, abs=1e-12)
    assert ssim(a, a) == 1.0
    with pytest.raises(ValueError, match="smaller than the 7x7 window"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))


def test_spearman():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(6)
    a = rng.normal(size=200)
    b = a + rng.normal(size=200)
    b[:20] = 0.0  # ties
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, rel=1e-12)
    assert spearman(a, a) == 1.0


def test_randomization():
    model, _ = lenet()
    x = np.random.default_rng(7).normal(size=(3, 1, 28, 28)).astype(np.float32)
    res = randomization(model, x, "epsilon_plus_flat", seed=1)
    assert res.layers == ["layer 9", "layer 7", "layer 3", "layer 0"]
    assert res.spearman.shape == res.ssim.shape == (3, 5)
    assert np.all(res.spearman[:, 0] == 1.0) and np.all(res.ssim[:, 0] == 1.0)
    assert np.all(res.spearman[:, 1:] < 0.9)  # a random top layer changes the explanation
    again = randomization(model, x, "epsilon_plus_flat", seed=1)
    np.testing.assert_array_equal(again.spearman, res.spearman)
    np.testing.assert_array_equal(again.ssim, res.ssim)
    other = randomization(model, x, "epsilon_plus_flat", seed=2)
    assert not np.array_equal(other.spearman, res.spearman)
    single = randomization(model, x, "epsilon_plus_flat", cascading=False, seed=1)
    np.testing.assert_array_equal(single.spearman[:, :2], res.spearman[:, :2])  # one layer: the same model
    tab = randomization(fl.Sequential([fl.Dense(np.eye(4)), fl.ReLU(), fl.Dense(np.ones((2, 4)))]), np.ones((2, 4)))
    assert tab.ssim is None and tab.spearman.shape == (2, 3)


def test_compare_and_cli(tmp_path):
    model, _ = lenet()
    x = np.random.default_rng(8).normal(size=(6, 1, 28, 28)).astype(np.float32)
    res = fl.evaluate.compare(model, x, {"epf": "epsilon_plus_flat", "random": None}, region=4, steps=12)
    assert [r["name"] for r in res.rows] == ["epf", "random"]
    assert res.rows[0]["difference"] == pytest.approx(res.rows[0]["aopc_morf"] - res.rows[0]["aopc_lerf"])
    assert "AOPC MoRF" in str(res)
    fig = res.plot(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000 and fig is not None
    model.save(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-m", "fastlrp", "evaluate", "m.npz", "x.npy", "--composite", "epsilon_plus_flat",
                        "--composite", "epsilon_alpha2_beta1", "--region", "4", "--steps", "10", "--out", "r.png"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "epsilon_alpha2_beta1" in r.stdout and "random order" in r.stdout
    assert (tmp_path / "r.png").stat().st_size > 1000
    r = subprocess.run([sys.executable, "-m", "fastlrp", "evaluate", "m.npz", "x.npy", "--region", "40"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "larger than the image" in r.stderr
