"""from_sklearn: the loaded model's forward equals scikit-learn's, and LRP runs on it."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import reference

sk = pytest.importorskip("sklearn.neural_network")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def data(rng, n=200, d=7):
    x = rng.normal(size=(n, d))
    return x, x[:, 0] - 0.5 * x[:, 1] + 0.3 * np.sin(3 * x[:, 2])


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("classes", [2, 3])
def test_classifier_forward_equals_sklearn(activation, classes, rng):
    x, y = data(rng)
    labels = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    est = sk.MLPClassifier(hidden_layer_sizes=(9, 5), activation=activation, max_iter=50, random_state=0).fit(x, labels)
    model = fl.from_sklearn(est)
    proba = model.forward(x)
    expected = est.predict_proba(x)
    if classes == 2:  # one logistic output: P(classes_[1])
        assert proba.shape == (200, 1)
        expected = expected[:, 1:]
    np.testing.assert_allclose(proba, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.forward(x.astype(np.float32)), expected, rtol=1e-5, atol=1e-6)
    lrp = fl.LRP(model, "w2_epsilon")
    e = lrp(x)
    np.testing.assert_allclose(e.relevance, reference.lrp(model.layers, lrp.rules, x)[0], rtol=1e-10, atol=1e-12)


def test_regressor(rng):
    x, y = data(rng)
    est = sk.MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(x, np.c_[y, -y])
    model = fl.from_sklearn(est)
    np.testing.assert_allclose(model.forward(x), est.predict(x), rtol=1e-10, atol=1e-12)
    e = fl.LRP(model, fl.rules.Epsilon())(x, target=np.ones((200, 2)))
    assert e.relevance.shape == x.shape


def test_bad_estimators():
    with pytest.raises(TypeError, match="MLPClassifier"):
        fl.from_sklearn(object())
    with pytest.raises(ValueError, match="not fitted"):
        fl.from_sklearn(sk.MLPRegressor())
