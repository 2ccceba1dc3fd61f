"""The C++ path equals the numpy reference for every rule x dtype x shape."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites, reference, rules

from conftest import DTYPES, assert_close, random_mlp

RULES = {
    "eps0": rules.Epsilon(0),
    "eps": rules.Epsilon(),
    "eps0.25": rules.Epsilon(0.25),
    "zplus": rules.ZPlus(),
    "ab21": rules.AlphaBeta(2, 1),
    "ab10": rules.AlphaBeta(1, 0),
    "ab1.5": rules.AlphaBeta(1.5, 0.5),
    "gamma": rules.Gamma(0.25),
    "gamma0": rules.Gamma(0.0),
    "gamma2": rules.Gamma(2.0),
    "zbox": rules.ZBox(-1.5, 2.0),
    "zbox_feat": "per-feature",
    "wsquare": rules.WSquare(),
    "flat": rules.Flat(),
}
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 13, 9), (17, 33, 2), (64, 105, 16)]


def make_rule(name, n_in, rng):
    rule = RULES[name]
    if rule == "per-feature":
        low = -rng.uniform(0.5, 2.0, size=n_in)
        return rules.ZBox(low, low + rng.uniform(0.5, 3.0, size=n_in))
    return rule


def dense_case(rng, shape, dtype, signed):
    n, i, o = shape
    w = rng.normal(size=(o, i)).astype(dtype)
    b = rng.normal(size=o).astype(dtype)
    x = rng.normal(size=(n, i)).astype(dtype)
    if not signed:
        x = np.maximum(x, 0)
    return w, b, x


def well_conditioned(start, x, w, b):
    """Zero the start relevance of outputs whose pre-activation nearly cancels (|z_j| below 2 %
    of sum_i |a_i w_ij| + |b_j|): there float32 rounding of z is amplified by the division, so a
    float32 result cannot match float64 to 1e-4 whoever computes it. float64 tests keep them."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    z = x64 @ w64.T + b
    mag = np.abs(x64) @ np.abs(w64).T + np.abs(b)
    return np.where(np.abs(z) < 0.02 * mag, 0, start).astype(start.dtype)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "nonneg"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(RULES))
def test_single_dense_matches_reference(name, dtype, shape, signed, rng):
    w, b, x = dense_case(rng, shape, dtype, signed)
    rule = make_rule(name, shape[1], rng)
    start = rng.normal(size=(shape[0], shape[2])).astype(dtype)
    if dtype == np.float32:
        start = well_conditioned(start, x, w, b)
    e = fl.LRP(fl.Sequential([fl.Dense(w, b)]), rule)(x, target=start)
    expected = reference.dense_relevance(x, w, b, start, rule)
    assert e.relevance.dtype == dtype and e.relevance.shape == x.shape
    assert np.isfinite(e.relevance).all()
    assert_close(e.relevance, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(RULES))
def test_exactly_zero_preactivations(name, dtype, rng):
    """Zero inputs and zero bias make every z_j exactly 0: no NaN or Inf may appear."""
    w = rng.normal(size=(4, 6)).astype(dtype)
    x = np.zeros((3, 6), dtype=dtype)
    x[1, :3] = [1.0, -2.0, 0.5]  # one row with a mix, others all zero
    rule = make_rule(name, 6, rng)
    start = rng.normal(size=(3, 4)).astype(dtype)
    e = fl.LRP(fl.Sequential([fl.Dense(w)]), rule)(x, target=start)
    assert np.isfinite(e.relevance).all()
    assert_close(e.relevance, reference.dense_relevance(x, w, np.zeros(4), start, rule), dtype)


def test_zero_weights_column_and_row(rng):
    w = rng.normal(size=(5, 4))
    w[2] = 0.0  # an output with no weights
    w[:, 1] = 0.0  # an input with no weights
    x = rng.normal(size=(3, 4))
    for rule in RULES.values():
        if isinstance(rule, str):
            continue
        e = fl.LRP(fl.Sequential([fl.Dense(w)]), rule)(x, target=np.ones((3, 5)))
        assert np.isfinite(e.relevance).all(), rule
        assert_close(e.relevance, reference.dense_relevance(x, w, np.zeros(5), np.ones((3, 5)), rule), np.float64)


PRESETS = ["epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "w2_epsilon"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("composite", PRESETS + ["gamma_all", "zplus_all", "ab_all", "box_first"])
@pytest.mark.parametrize("activation", [fl.ReLU, fl.Tanh, fl.LeakyReLU, fl.ELU], ids=lambda a: a.__name__)
def test_mlp_matches_reference_layerwise(composite, dtype, activation, rng):
    model = random_mlp(rng, [11, 16, 9, 4], activation=activation, dtype=dtype)
    comp = {
        "gamma_all": rules.Gamma(0.25),
        "zplus_all": rules.ZPlus(),
        "ab_all": rules.AlphaBeta(2, 1),
        "box_first": composites.epsilon_plus().with_rule(0, rules.ZBox(-3.0, 3.0)),
    }.get(composite, composite)
    lrp = fl.LRP(model, comp)
    x = rng.normal(size=(7, 11)).astype(dtype)
    e = lrp(x, layerwise=True)
    ref_r, ref_logits, ref_layers = reference.lrp(model.layers, lrp.rules, x)
    assert_close(e.output, ref_logits, dtype)
    assert_close(e.relevance, ref_r, dtype)
    assert len(e.layers) == len(model.layers) + 1
    for got, want in zip(e.layers, ref_layers):
        assert got.shape == want.shape
        assert_close(got, want, dtype)
    assert_close(e.conservation, np.stack([l.sum(axis=1) for l in ref_layers], axis=1), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_targets_int_list_and_start_array(dtype, rng):
    model = random_mlp(rng, [6, 10, 5], dtype=dtype)
    lrp = fl.LRP(model, "epsilon_plus")
    x = rng.normal(size=(4, 6)).astype(dtype)
    for target in [2, [0, 1, 4, 3], np.array([4, 4, 0, 1])]:
        e = lrp(x, target=target)
        ref_r, _, _ = reference.lrp(model.layers, lrp.rules, x, target=target)
        assert_close(e.relevance, ref_r, dtype)
        assert np.array_equal(e.targets, np.broadcast_to(target, (4,)))
    start = rng.normal(size=(4, 5)).astype(dtype)
    e = lrp(x, target=start)
    assert_close(e.relevance, reference.lrp(model.layers, lrp.rules, x, target=start)[0], dtype)
    assert e.targets is None
    assert_close(e.layers is None and e.conservation[:, -1], start.sum(axis=1), dtype)


def test_default_target_is_predicted_class(rng):
    model = random_mlp(rng, [6, 10, 5])
    x = rng.normal(size=(20, 6))
    e = fl.LRP(model, "epsilon_plus")(x)
    assert np.array_equal(e.targets, model.forward(x).argmax(axis=1))
    # start relevance: the logit of the predicted class
    assert np.allclose(e.conservation[:, -1], e.output[np.arange(20), e.targets])


def test_regression_single_output(rng):
    model = random_mlp(rng, [5, 8, 1], softmax=False)
    x = rng.normal(size=(3, 5))
    e = fl.LRP(model, rules.Epsilon())(x)
    ref_r, logits, _ = reference.lrp(model.layers, [rules.Epsilon(), rules.Pass(), rules.Epsilon()], x)
    assert_close(e.relevance, ref_r, np.float64)
    assert_close(e.output, logits, np.float64)


@pytest.mark.parametrize("last", [fl.Softmax, fl.LogSoftmax, fl.Sigmoid])
def test_output_nonlinearity_skipped(last, rng):
    base = random_mlp(rng, [5, 8, 3], softmax=False)
    model = fl.Sequential(base.layers + [last()])
    x = rng.normal(size=(4, 5))
    e = fl.LRP(model, "epsilon_plus")(x, layerwise=True)
    e0 = fl.LRP(base, "epsilon_plus")(x, layerwise=True)
    np.testing.assert_array_equal(e.relevance, e0.relevance)
    np.testing.assert_array_equal(e.output, base.forward(x))  # the logits
    np.testing.assert_array_equal(e.layers[-2], e.layers[-1])  # the skipped layer's entry = start
    assert len(e.layers) == len(model.layers) + 1


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_conservation_lrp0_zero_bias(dtype, rng):
    model = random_mlp(rng, [20, 32, 16, 8, 3], bias=False, dtype=dtype)
    x = rng.normal(size=(10, 20)).astype(dtype)
    e = fl.LRP(model, rules.Epsilon(0))(x, layerwise=True)
    sums = e.conservation
    assert sums.shape == (10, len(model.layers) + 1)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(sums, np.repeat(sums[:, -1:], sums.shape[1], axis=1), rtol=rtol)
    np.testing.assert_allclose(e.relevance.sum(axis=1), e.output[np.arange(10), e.targets], rtol=rtol)
