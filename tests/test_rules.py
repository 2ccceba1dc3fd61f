"""Hand-computed cases: a 2-input, 1-output Dense layer you can check on paper, and rule validation.

a = [1, 2], W = [[3, -1]], b = 1 (so z = 3 - 2 + 1 = 2), start relevance R = 1.
"""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import rules

from conftest import DTYPES, assert_close

A = np.array([[1.0, 2.0]])
W = np.array([[3.0, -1.0]])
E = 1e-6  # docs/rules.md's stabiliser


def explain_one(rule, bias=1.0, dtype=np.float64, a=A):
    model = fl.Sequential([fl.Dense(W, [bias])])
    return fl.LRP(model, rule)(a.astype(dtype), target=np.ones((1, 1))).relevance


HAND = [
    # LRP-0: c = [3, -2], z = 2
    ("epsilon0", rules.Epsilon(0), 1.0, [3 / 2, -2 / 2]),
    # epsilon = 1: denominator 2 + 1 = 3
    ("epsilon1", rules.Epsilon(1.0), 1.0, [3 / 3, -2 / 3]),
    # z+: c = [3, 0], d = b+ = 1, z = 4
    ("zplus", rules.ZPlus(), 1.0, [3 / (4 + E), 0.0]),
    # alpha2beta1: p = [3, 0] over 3 + 1; n = [0, -2] over -2 + 0
    ("alphabeta", rules.AlphaBeta(2, 1), 1.0, [2 * 3 / (4 + E), -1 * -2 / (-2 - E)]),
    # gamma 0.25, z = 2 > 0: c = [1*(3 + .75), 2*(-1)] = [3.75, -2], d = 1 + .25, sum 3
    ("gamma_pos", rules.Gamma(0.25), 1.0, [3.75 / (3 + E), -2 / (3 + E)]),
    # gamma 0.25 with b = -5, z = -4 < 0: c = [1*3, 2*(-1 - .25)] = [3, -2.5], d = -5 - 1.25
    ("gamma_neg", rules.Gamma(0.25), -5.0, [3 / (-5.75 - E), -2.5 / (-5.75 - E)]),
    # z^B with l = -1, h = 2: c = [3 + 3, -2 + 2] = [6, 0], d = 0
    ("zbox", rules.ZBox(-1.0, 2.0), 1.0, [6 / (6 + E), 0.0]),
    # w^2: c = [9, 1], bias ignored
    ("wsquare", rules.WSquare(), 1.0, [9 / (10 + E), 1 / (10 + E)]),
    # flat: c = [1, 1]
    ("flat", rules.Flat(), 1.0, [1 / (2 + E), 1 / (2 + E)]),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name,rule,bias,expected", HAND, ids=[h[0] for h in HAND])
def test_hand_computed(name, rule, bias, expected, dtype):
    assert_close(explain_one(rule, bias, dtype), [expected], dtype)


def test_gamma_zero_preactivation_passes_nothing():
    # b = -1 makes z = 0 exactly: docs/rules.md says output j passes no relevance
    r = explain_one(rules.Gamma(0.25), bias=-1.0)
    assert np.array_equal(r, [[0.0, 0.0]])


def test_epsilon0_zero_denominator_passes_nothing():
    r = explain_one(rules.Epsilon(0), bias=-1.0)
    assert np.array_equal(r, [[0.0, 0.0]])


def test_pass_on_elementwise_layer():
    model = fl.Sequential([fl.Tanh()])
    start = np.array([[1.0, -2.0, 0.5]])
    r = fl.LRP(model, "epsilon_plus")(np.array([[0.3, -1.0, 2.0]]), target=start).relevance
    assert np.array_equal(r, start)


def test_zbox_per_feature_bounds():
    # l = [0, -1], h = [1, 1]: c = [3 - 0, -2 - 0 + 1] = [3, -1], z = 2
    r = explain_one(rules.ZBox([0.0, -1.0], [1.0, 1.0]))
    assert_close(r, [[3 / (2 + E), -1 / (2 + E)]], np.float64)


@pytest.mark.parametrize("make,match", [
    (lambda: rules.AlphaBeta(3, 1), "alpha - beta == 1"),
    (lambda: rules.AlphaBeta(0.5, -0.5), ">= 0"),
    (lambda: rules.Epsilon(-1.0), ">= 0"),
    (lambda: rules.Epsilon(float("nan")), "finite"),
    (lambda: rules.Gamma(-0.1), ">= 0"),
    (lambda: rules.ZBox(2.0, 1.0), "low <= high"),
    (lambda: rules.ZBox([0, 0, 0], [1, 1]), "broadcast"),
])
def test_invalid_rule_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make", [lambda: rules.Epsilon("0.1"), lambda: rules.Gamma(None), lambda: rules.ZBox("a", 1)])
def test_rule_parameter_types(make):
    with pytest.raises(TypeError):
        make()


def test_rules_are_immutable():
    r = rules.Epsilon(0.1)
    with pytest.raises(Exception):
        r.epsilon = 0.2
    assert rules.AlphaBeta(2, 1) == rules.AlphaBeta(2.0, 1.0)
