"""Reproducible to the bit: identical inputs give identical outputs wherever they sit, ties stay
ties, and a sample's explanation does not depend on the thread count or the batch it comes in.

The models are built so that every kernel path runs: a first convolution with fewer output
channels than a vector has lanes (transposed forward product) on one input channel, convolutions
on fewer than 16 channels (the backward by patch sums), a 3x3 convolution with channel counts
that are and are not multiples of the vector width, a 1x1 pointwise convolution, a strided
convolution on 16 channels (gathers with holes), MaxPool
windows, dense layers with column tails, chunk mode (dense-only nets, one chunk of the batch per
thread) and team mode (convolutional nets, every thread on each layer), a graph with an Add.
"""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites, rules

from conftest import DTYPES

THREADS = [1, 2, 8]


def he(rng, *shape):
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(size=shape) * np.sqrt(2.0 / fan_in)


def cnn(rng, dtype):
    layers = [
        fl.Conv2d(he(rng, 4, 1, 3, 3).astype(dtype), (rng.normal(size=4) * 0.1).astype(dtype), padding=1),
        fl.ReLU(),
        fl.MaxPool2d(2),
        fl.Conv2d(he(rng, 12, 4, 3, 3).astype(dtype), (rng.normal(size=12) * 0.1).astype(dtype), padding=1),
        fl.ReLU(),
        fl.Conv2d(he(rng, 16, 12, 1, 1).astype(dtype), (rng.normal(size=16) * 0.1).astype(dtype)),
        fl.ReLU(),
        fl.Conv2d(he(rng, 8, 16, 3, 3).astype(dtype), (rng.normal(size=8) * 0.1).astype(dtype), stride=2, padding=1),
        fl.ReLU(),
        fl.Flatten(),
        fl.Dense(he(rng, 10, 8 * 8 * 8).astype(dtype), (rng.normal(size=10) * 0.1).astype(dtype)),
    ]
    return fl.Sequential(layers)


def images(rng, n, dtype):
    """Digits-like images: a constant background of -1 (as the toolbox pads MNIST), a random
    blob on some, one entirely constant image, one fully random image."""
    x = np.full((n, 1, 32, 32), -1.0)
    for k in range(n):
        if k % 3 == 1:
            y0, x0 = rng.integers(4, 20, size=2)
            x[k, 0, y0:y0 + 8, x0:x0 + 8] = rng.uniform(-1, 1, size=(8, 8))
        elif k % 3 == 2:
            x[k, 0] = rng.uniform(-1, 1, size=(32, 32))
    x[0] = -1.0
    return x.astype(dtype)


CNN_COMPOSITES = {
    "epsilon": lambda: "epsilon",
    "epsilon_plus_flat": lambda: "epsilon_plus_flat",
    "epsilon_gamma_box": lambda: composites.epsilon_gamma_box(-1.0, 1.0),
    "epsilon_alpha2_beta1": lambda: "epsilon_alpha2_beta1",
    "zplus": lambda: composites.from_rule(rules.ZPlus()),
    "wsquare": lambda: composites.from_rule(rules.WSquare()),
    "zbox_pixelwise": lambda: composites.epsilon_gamma_box(
        -1.0 - np.linspace(0, 1, 32 * 32).reshape(1, 32, 32), 1.0 + np.linspace(0, 1, 32 * 32).reshape(1, 32, 32)),
}


def explain_rows(lrp, x, rows, threads):
    """(relevance, the logits with the per-layer relevance totals beside them): the callers
    compare both bit for bit."""
    fl.set_num_threads(threads)
    e = lrp(x[rows])
    return e.relevance, np.concatenate([e.output, e.conservation], axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_image_gives_equal_outputs_at_every_interior_position(rng, dtype):
    model = cnn(rng, dtype)
    x = np.full((1, 1, 32, 32), -1.0, dtype=dtype)
    # after each convolution: the positions whose receptive field lies inside the image
    for depth, margin in [(1, 1), (4, 2), (6, 2), (8, 2)]:
        out = fl.Sequential(model.layers[:depth]).forward(x)
        inner = out[0, :, margin:-margin, margin:-margin]
        for c in range(out.shape[1]):
            assert np.all(inner[c] == inner[c, 0, 0]), (depth, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box"])
def test_maxpool_splits_a_tie_over_the_whole_window(rng, dtype, name):
    model = cnn(rng, dtype)
    lrp = fl.LRP(model, CNN_COMPOSITES[name]())
    x = np.full((1, 1, 32, 32), -1.0, dtype=dtype)
    e = lrp(x, layerwise=True)
    r_in, r_out = e.layers[2][0], e.layers[3][0]  # MaxPool2d's input (4, 32, 32) and output (4, 16, 16)
    a = fl.Sequential(model.layers[:2]).forward(x)[0]
    checked = 0
    for c in range(4):
        for oy in range(1, 15):
            for ox in range(1, 15):
                win = a[c, 2 * oy:2 * oy + 2, 2 * ox:2 * ox + 2]
                rel = r_in[c, 2 * oy:2 * oy + 2, 2 * ox:2 * ox + 2]
                assert np.all(win == win[0, 0])
                assert np.all(rel == rel[0, 0]), (c, oy, ox, rel)
                np.testing.assert_allclose(rel.sum(), r_out[c, oy, ox], rtol=1e-5)
                checked += r_out[c, oy, ox] != 0
    assert checked > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CNN_COMPOSITES))
def test_cnn_explanation_bitwise_for_any_threads_and_batch(rng, dtype, name):
    model = cnn(rng, dtype)
    lrp = fl.LRP(model, CNN_COMPOSITES[name]())
    x = images(rng, 64, dtype)
    ref_rel, ref_out = explain_rows(lrp, x, slice(0, 64), 1)
    assert np.all(np.isfinite(ref_rel)) and np.abs(ref_rel).max() > 0
    for threads in THREADS:
        rel, out = explain_rows(lrp, x, slice(0, 64), threads)
        np.testing.assert_array_equal(rel, ref_rel, err_msg=f"{threads} threads, batch 64")
        np.testing.assert_array_equal(out, ref_out)
        for rows in [slice(5, 12), slice(0, 1), slice(40, 41)]:
            rel, out = explain_rows(lrp, x, rows, threads)
            np.testing.assert_array_equal(rel, ref_rel[rows], err_msg=f"{threads} threads, rows {rows}")
            np.testing.assert_array_equal(out, ref_out[rows])


MLP_COMPOSITES = {
    "epsilon": lambda: "epsilon",
    "alpha2_beta1": lambda: composites.from_rule(rules.AlphaBeta(2, 1)),
    "zplus": lambda: composites.from_rule(rules.ZPlus()),
    "gamma": lambda: composites.from_rule(rules.Gamma(0.25)),
    "zbox": lambda: composites.Composite([(composites.ByType(fl.Dense), rules.Epsilon(1e-6)),
                                          (composites.First(fl.Dense), rules.ZBox(-3.0, 3.0))]),
    "wsquare": lambda: "w2_epsilon",
    "flat": lambda: composites.from_rule(rules.Flat()),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(MLP_COMPOSITES))
def test_mlp_explanation_bitwise_for_any_threads_and_batch(rng, dtype, name):
    """Dense layers with column tails (37, 19 and 10 outputs); the first 7 samples have no
    negative inputs and the rest do, so a batch of 7 takes the two-weight rules' unsigned path
    and a batch of 64 the signed one: their results must agree to the bit."""
    sizes = [53, 37, 19, 10]
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(fl.Dense(he(rng, o, i).astype(dtype), (rng.normal(size=o) * 0.1).astype(dtype)))
        if k < len(sizes) - 2:
            layers.append(fl.ReLU())
    lrp = fl.LRP(fl.Sequential(layers), MLP_COMPOSITES[name]())
    x = rng.normal(size=(64, 53)).astype(dtype)
    x[:7] = np.abs(x[:7])
    x[10] = 0.5  # a constant sample
    ref_rel, ref_out = explain_rows(lrp, x, slice(0, 64), 1)
    for threads in THREADS:
        for rows in [slice(0, 64), slice(0, 7), slice(3, 4), slice(10, 11), slice(30, 37)]:
            rel, out = explain_rows(lrp, x, rows, threads)
            np.testing.assert_array_equal(rel, ref_rel[rows], err_msg=f"{threads} threads, rows {rows}")
            np.testing.assert_array_equal(out, ref_out[rows])


def wide_mlp_rows(rng, dtype):
    """Dense layers wide enough that a product splits its columns over threads."""
    layers = [fl.Dense(he(rng, 700, 300).astype(dtype), np.zeros(700, dtype)), fl.ReLU(),
              fl.Dense(he(rng, 10, 700).astype(dtype), np.zeros(10, dtype))]
    return fl.Sequential(layers)


@pytest.mark.parametrize("dtype", DTYPES)
def test_split_products_bitwise_for_any_threads(rng, dtype):
    lrp = fl.LRP(wide_mlp_rows(rng, dtype), composites.from_rule(rules.Gamma(0.25)))
    x = rng.normal(size=(3, 300)).astype(dtype)
    ref_rel, ref_out = explain_rows(lrp, x, slice(0, 3), 1)
    for threads in THREADS:
        for rows in [slice(0, 3), slice(1, 2)]:
            rel, out = explain_rows(lrp, x, rows, threads)
            np.testing.assert_array_equal(rel, ref_rel[rows])
            np.testing.assert_array_equal(out, ref_out[rows])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["epsilon", "epsilon_plus"])
def test_skipped_zeros_bitwise_for_any_batch(rng, dtype, name):
    """The GEMM skips the left operand's zeros when a batch's inputs are mostly zeros (gemm.hpp).
    Every fourth sample here is 90 % zeros and the others have none, so the first layer's product
    takes the dense path for a batch of all 64 and the zero-skipping one for the sparse samples
    alone (every product is wide enough for it): each sample's relevance and output must agree to the bit either way, at any
    thread count."""
    layers = [fl.Dense(he(rng, 300, 400).astype(dtype), (rng.normal(size=300) * 0.1).astype(dtype)), fl.ReLU(),
              fl.Dense(he(rng, 200, 300).astype(dtype), (rng.normal(size=200) * 0.1).astype(dtype)), fl.ReLU(),
              fl.Dense(he(rng, 10, 200).astype(dtype), np.zeros(10, dtype))]
    lrp = fl.LRP(fl.Sequential(layers), name)
    x = np.abs(rng.normal(size=(64, 400))).astype(dtype)
    x[::4][rng.random((16, 400)) < 0.9] = 0
    ref_rel, ref_out = explain_rows(lrp, x, slice(0, 64), 1)
    for threads in THREADS:
        for rows in [slice(0, 64), slice(0, 64, 4), slice(0, 1), slice(1, 2), slice(10, 26)]:
            rel, out = explain_rows(lrp, x, rows, threads)
            np.testing.assert_array_equal(rel, ref_rel[rows], err_msg=f"{threads} threads, rows {rows}")
            np.testing.assert_array_equal(out, ref_out[rows])


@pytest.mark.parametrize("dtype", DTYPES)
def test_graph_explanation_bitwise_for_any_threads_and_batch(rng, dtype):
    inp = fl.Input((3, 16, 16))
    h = fl.Conv2d(he(rng, 8, 3, 3, 3).astype(dtype), np.zeros(8, dtype), padding=1)(inp)
    h = fl.ReLU()(h)
    b = fl.Conv2d(he(rng, 8, 8, 3, 3).astype(dtype), np.zeros(8, dtype), padding=1)(h)
    b = fl.ReLU()(b)
    b = fl.Conv2d(he(rng, 8, 8, 1, 1).astype(dtype), np.zeros(8, dtype))(b)
    h = fl.ReLU()(fl.Add()(h, b))
    h = fl.Flatten()(fl.AvgPool2d(4)(h))
    out = fl.Dense(he(rng, 5, 8 * 16).astype(dtype), np.zeros(5, dtype))(h)
    model = fl.Model(inp, out)
    x = rng.normal(size=(64, 3, 16, 16)).astype(dtype)
    x[::4] = 0.25  # constant images
    for comp in ["epsilon", "epsilon_plus", composites.epsilon_gamma_box(-3.0, 3.0)]:
        lrp = fl.LRP(model, comp)
        ref_rel, ref_out = explain_rows(lrp, x, slice(0, 64), 1)
        for threads in THREADS:
            for rows in [slice(0, 64), slice(4, 11), slice(8, 9)]:
                rel, out = explain_rows(lrp, x, rows, threads)
                np.testing.assert_array_equal(rel, ref_rel[rows])
                np.testing.assert_array_equal(out, ref_out[rows])


TWO_WEIGHT_COMPOSITES = {
    "zplus": lambda: composites.from_rule(rules.ZPlus()),
    "epsilon_alpha2_beta1": lambda: "epsilon_alpha2_beta1",
    "gamma": lambda: composites.from_rule(rules.Gamma(0.25)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(TWO_WEIGHT_COMPOSITES))
def test_weight_forms_made_on_first_use_give_the_same_bits_in_any_call_order(rng, dtype, name):
    """A convolution under a two-weight rule makes the forms of its weights that a call needs
    on that call (signed inputs need others than inputs after a ReLU). The first convolution
    sees signed images in one call and images in [0, 1] in another: either order, and a repeat,
    give the bits of an explainer that saw only that input."""
    model = cnn(rng, dtype)
    signed = images(rng, 6, dtype)
    unsigned = ((signed + 1) / 2).astype(dtype)
    assert signed.min() < 0 and unsigned.min() >= 0
    fl.set_num_threads(2)
    want_s = fl.LRP(model, TWO_WEIGHT_COMPOSITES[name]())(signed).relevance
    want_u = fl.LRP(model, TWO_WEIGHT_COMPOSITES[name]())(unsigned).relevance
    for order in [(unsigned, signed, unsigned), (signed, unsigned, signed)]:
        lrp = fl.LRP(model, TWO_WEIGHT_COMPOSITES[name]())
        for x in order:
            got = lrp(x).relevance
            np.testing.assert_array_equal(got, want_s if x is signed else want_u)


@pytest.mark.parametrize("name", list(TWO_WEIGHT_COMPOSITES))
def test_weight_forms_made_by_concurrent_calls(rng, name):
    """Python threads explaining with one fresh explainer at once (the native call releases the
    GIL) race to make the same weight forms: each form is made once, and every result equals
    the one-call-at-a-time result."""
    from concurrent.futures import ThreadPoolExecutor

    model = cnn(rng, np.float64)
    signed = images(rng, 8, np.float64)
    inputs = [signed[k:k + 2] if k % 4 == 2 else (signed[k:k + 2] + 1) / 2 for k in range(0, 8, 2)] * 2
    fl.set_num_threads(1)
    want = [fl.LRP(model, TWO_WEIGHT_COMPOSITES[name]())(x).relevance for x in inputs]
    lrp = fl.LRP(model, TWO_WEIGHT_COMPOSITES[name]())
    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        got = list(pool.map(lambda x: lrp(x).relevance, inputs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
