"""For finite input, no rule on any layer type returns NaN or Inf: exactly-zero pre-activations,
zero weights, all-zero inputs, and float32 magnitudes near its limits (as long as the forward
pass itself stays finite; when it does not, the error says so)."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import rules

from conftest import DTYPES

RULES = {"eps0": rules.Epsilon(0), "eps": rules.Epsilon(), "zplus": rules.ZPlus(), "ab21": rules.AlphaBeta(2, 1),
         "gamma": rules.Gamma(0.25), "zbox": rules.ZBox(-1.0, 1.0), "wsquare": rules.WSquare(), "flat": rules.Flat()}


def models(dtype, scale=1.0, zero_weights=False):
    rng = np.random.default_rng(0)

    def w(*shape):
        return np.zeros(shape, dtype) if zero_weights else (rng.normal(size=shape) * scale).astype(dtype)

    dense = fl.Sequential([fl.Dense(w(6, 5), w(6)), fl.ReLU(), fl.Dense(w(3, 6), w(3))])
    conv = fl.Sequential([fl.Conv2d(w(3, 2, 3, 3), w(3), padding=1), fl.ReLU(), fl.AvgPool2d(2), fl.Conv2d(w(2, 3, 2, 2), w(2)),
                          fl.MaxPool2d(1), fl.Flatten(), fl.Dense(w(2, 8), w(2))])
    return {"dense": (dense, (5,)), "conv": (conv, (2, 6, 6))}


def inputs(kind, shape, dtype, n=4, scale=1.0):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(n,) + shape) * scale).astype(dtype)
    if kind == "zeros":
        return np.zeros_like(x)
    if kind == "half zero":
        x[: n // 2] = 0
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("net", ["dense", "conv"])
@pytest.mark.parametrize("case", ["zeros", "half zero", "zero weights", "tiny", "huge"])
def test_finite_in_finite_out(dtype, rule, net, case):
    big = np.finfo(dtype).max
    tiny = np.finfo(dtype).tiny
    if case == "tiny":
        model, shape = models(dtype, scale=1.0)[net]
        x = inputs("normal", shape, dtype, scale=float(tiny) * 64)
    elif case == "huge":  # weights ~1, inputs large but the forward stays finite
        model, shape = models(dtype, scale=0.1)[net]
        x = inputs("normal", shape, dtype, scale=float(big) ** 0.5 / 100)
    else:
        model, shape = models(dtype, zero_weights=case == "zero weights")[net]
        x = inputs(case, shape, dtype)
    e = fl.LRP(model, RULES[rule])(x)
    assert np.isfinite(e.relevance).all(), f"{rule} on {net} with {case}: NaN/Inf"
    assert np.isfinite(e.conservation).all()
    start = np.zeros_like(e.output)
    start[:, 0] = 1.0  # a start relevance on an output that may be exactly zero
    e = fl.LRP(model, RULES[rule])(x, target=start)
    assert np.isfinite(e.relevance).all()


def test_overflowing_forward_is_an_error_not_inf():
    model = fl.Sequential([fl.Dense(np.full((3, 4), 1e30, np.float32)), fl.ReLU(), fl.Dense(np.full((2, 3), 1e30, np.float32))])
    with pytest.raises(ValueError, match="overflowed float32"):
        fl.LRP(model, rules.Epsilon())(np.full((2, 4), 1e10, np.float32))


def test_non_finite_input_is_refused():
    model = fl.Sequential([fl.Dense(np.ones((2, 3)))])
    for bad in (np.nan, np.inf):
        x = np.ones((2, 3))
        x[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            fl.LRP(model, rules.Epsilon())(x)
