import os

import numpy as np
import pytest

# Keras 3 (a test extra, to write the loader tests' files live) runs on the torch backend here;
# its default, TensorFlow, is not installed. fastlrp itself never imports Keras.
os.environ.setdefault("KERAS_BACKEND", "torch")

import fastlrp as fl

DTYPES = [np.float32, np.float64]


def tolerances(dtype):
    """(rtol, atol) by dtype, as style.md says. float32's atol (relative to the result's largest
    entry) allows for sums over many signed terms: each input's relevance adds contributions of
    both signs from several outputs, and float32 rounding of the terms survives their cancellation."""
    return (1e-4, 2e-5) if dtype == np.float32 else (1e-10, 1e-12)


def assert_close(actual, expected, dtype):
    """Compare with dtype tolerances; atol is scaled by the result's magnitude so that float32
    rounding in large relevances does not count as a failure."""
    rtol, atol = tolerances(dtype)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=atol * scale)


def random_mlp(rng, sizes, activation=fl.ReLU, bias=True, softmax=True, dtype=np.float64):
    """A Sequential MLP with He-scaled random weights, cast to dtype's precision."""
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.normal(size=(o, i)) * np.sqrt(2.0 / i)).astype(dtype)
        b = (rng.normal(size=o) * 0.1).astype(dtype) if bias else None
        layers.append(fl.Dense(w, b))
        if k < len(sizes) - 2:
            layers.append(activation())
    if softmax:
        layers.append(fl.Softmax())
    return fl.Sequential(layers)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    fl.set_num_threads(None)


def fwd_close(actual, expected):
    """A loaded model's forward against its source framework's: float32, rtol 1e-5."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(expected).max())))


def same_relevance(loaded, native, x, composite="epsilon_plus_flat"):
    """Two models explain x alike (same targets, relevance to float32 rounding)."""
    a = fl.LRP(loaded, composite)(x)
    b = fl.LRP(native, composite)(x)
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_allclose(a.relevance, b.relevance, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(b.relevance).max())))


def assert_reproducible(lrp, x, i):
    """lrp's relevance for batch x is bitwise the same at 1, 2 and 8 threads, and sample i's is
    the same explained alone."""
    base = lrp(x).relevance
    for threads in (1, 2, 8):
        fl.set_num_threads(threads)
        try:
            np.testing.assert_array_equal(lrp(x).relevance, base)
            np.testing.assert_array_equal(lrp(x[i:i + 1]).relevance, base[i:i + 1])
        finally:
            fl.set_num_threads(None)
