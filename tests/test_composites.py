"""Composites: presets, selectors, overriding, errors, and the repr table."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites, rules

from conftest import random_mlp


@pytest.fixture
def mlp(rng):
    return random_mlp(rng, [6, 8, 8, 8, 3])  # Dense ReLU Dense ReLU Dense ReLU Dense Softmax


def kinds(lrp):
    return [type(r).__name__ for r in lrp.rules]


def test_presets_on_mlp(mlp):
    assert kinds(fl.LRP(mlp, "epsilon_plus")) == ["Epsilon", "Pass"] * 3 + ["Epsilon", "Pass"]
    assert kinds(fl.LRP(mlp, "epsilon_plus_flat"))[0] == "Flat"
    assert kinds(fl.LRP(mlp, "epsilon_plus_flat"))[2::2] == ["Epsilon"] * 3
    assert kinds(fl.LRP(mlp, "epsilon_alpha2_beta1_flat"))[0] == "Flat"
    assert kinds(fl.LRP(mlp, "w2_epsilon"))[::2] == ["WSquare", "Epsilon", "Epsilon", "Epsilon"]
    # on an MLP, epsilon_gamma_box is pure Epsilon (ZBox goes to the first Conv2d only)
    assert kinds(fl.LRP(mlp, composites.epsilon_gamma_box(-3, 3)))[::2] == ["Epsilon"] * 4
    for name in composites.PRESETS:
        assert fl.LRP(mlp, name).composite.name == name
        assert fl.LRP(mlp, getattr(composites, name)()).composite.name == name


def test_single_rule_applies_to_dense_only(mlp):
    lrp = fl.LRP(mlp, rules.Gamma(0.5))
    assert lrp.rules[::2] == [rules.Gamma(0.5)] * 4
    assert all(isinstance(r, rules.Pass) for r in lrp.rules[1::2])


def test_selectors_and_overrides(mlp):
    comp = fl.Composite([
        (fl.Dense, rules.Epsilon(0.1)),
        (fl.First(fl.Dense), rules.WSquare()),
        (2, rules.ZPlus()),
        (slice(4, 7), rules.AlphaBeta(1, 0)),  # Dense 4, ReLU 5 (must stay Pass: not allowed) ...
    ])
    with pytest.raises(ValueError, match=r"layer 5 \(ReLU\(\)\) is element-wise and takes only Pass"):
        fl.LRP(mlp, comp)
    comp = fl.Composite([(fl.Dense, rules.Epsilon(0.1)), (fl.First(fl.Dense), rules.WSquare()), (2, rules.ZPlus()),
                         (fl.ByIndex(range(4, 7, 2)), rules.AlphaBeta(1, 0)), (-2, rules.Flat())])
    got = fl.LRP(mlp, comp).rules
    assert got[0] == rules.WSquare() and got[2] == rules.ZPlus() and got[4] == rules.AlphaBeta(1, 0)
    assert got[6] == rules.Flat()
    # later entries override earlier ones
    c2 = comp.with_rule(fl.Dense, rules.Epsilon(0.5))
    assert fl.LRP(mlp, c2).rules[::2] == [rules.Epsilon(0.5)] * 4


def test_layer_without_rule_names_index_and_type(mlp):
    comp = fl.Composite([(0, rules.Epsilon())], name="partial")
    with pytest.raises(ValueError, match=r"layer 2 \(Dense\) has no rule in composite 'partial'"):
        fl.LRP(mlp, comp)


def test_bad_composites(mlp):
    with pytest.raises(ValueError, match="unknown composite"):
        fl.LRP(mlp, "epsilon_pluss")
    with pytest.raises(ValueError, match="needs bounds"):
        fl.LRP(mlp, "epsilon_gamma_box")
    with pytest.raises(TypeError):
        fl.LRP(mlp, 3.0)
    with pytest.raises(TypeError):
        fl.Composite([("dense", rules.Epsilon())])
    with pytest.raises(TypeError):
        fl.Composite([(fl.Dense, "epsilon")])
    with pytest.raises(ValueError, match="out of range"):
        fl.LRP(mlp, fl.Composite([(fl.Dense, rules.Epsilon()), (12, rules.Flat())]))
    with pytest.raises(ValueError, match="cannot take Pass"):
        fl.LRP(mlp, fl.Composite([(fl.Dense, rules.Pass())]))
    with pytest.raises(ValueError, match="broadcast"):
        fl.LRP(mlp, fl.Composite([(fl.Dense, rules.Epsilon()), (0, rules.ZBox(np.zeros(5), np.ones(5)))]))


def test_softmax_in_the_middle_is_refused(rng):
    model = fl.Sequential([fl.Dense(rng.normal(size=(4, 3))), fl.Softmax(), fl.Dense(rng.normal(size=(2, 4)))])
    with pytest.raises(ValueError, match="only as the last layer"):
        fl.LRP(model, "epsilon_plus")


def test_repr_table(mlp):
    text = repr(fl.LRP(mlp, "epsilon_plus_flat"))
    lines = text.splitlines()
    assert lines[0] == "LRP(composite='epsilon_plus_flat')"
    assert lines[1].split() == ["0", "Dense(6", "->", "8)", "=>", "Flat()"]
    assert "Epsilon(epsilon=1e-06)" in lines[3]
    assert "skipped" in lines[-1] and "Softmax" in lines[-1]
    assert len(lines) == len(mlp.layers) + 1


def test_modified_weights_prepared_once(mlp, rng):
    lrp = fl.LRP(mlp, "epsilon_alpha2_beta1")
    x = rng.normal(size=(2, 6))
    lrp(x)
    net = lrp._nets[(np.float64, (6,))]
    lrp(x)
    assert lrp._nets[(np.float64, (6,))] is net
