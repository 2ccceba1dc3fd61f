"""scikit-learn's MLPClassifier and MLPRegressor as a fastlrp model (scikit-learn need not be
installed to call this: only the fitted estimator's attributes are read)."""

from __future__ import annotations

from .. import layers as L
from ..model import Sequential

_HIDDEN = {"relu": L.ReLU, "tanh": L.Tanh, "logistic": L.Sigmoid, "identity": L.Identity}
_OUTPUT = {"softmax": L.Softmax, "logistic": L.Sigmoid, "identity": None}


def from_sklearn(est) -> Sequential:
    """A fitted ``MLPClassifier`` or ``MLPRegressor`` as a Sequential model.

    The output activation becomes the model's last layer (Softmax for several classes, Sigmoid
    for two classes or multi-label, none for regression), which LRP skips: relevance starts at
    the logits. For a binary classifier the single logit is the log-odds of the second class
    (``est.classes_[1]``): positive relevance pushes towards it.
    """
    name = type(est).__name__
    if name not in ("MLPClassifier", "MLPRegressor"):
        raise TypeError(f"from_sklearn: expected a fitted MLPClassifier or MLPRegressor, got {name}")
    if not hasattr(est, "coefs_"):
        raise ValueError(f"from_sklearn: the {name} is not fitted (no coefs_)")
    act = getattr(est, "activation", None)
    if act not in _HIDDEN:
        raise ValueError(f"from_sklearn: unsupported hidden activation {act!r}; supported: {sorted(_HIDDEN)}")
    out_act = getattr(est, "out_activation_", None)
    if out_act not in _OUTPUT:
        raise ValueError(f"from_sklearn: unsupported output activation {out_act!r}; supported: {sorted(_OUTPUT)}")
    layers = []
    n = len(est.coefs_)
    for k, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        layers.append(L.Dense(w.T, b))  # scikit-learn stores (in, out)
        if k < n - 1:
            layers.append(_HIDDEN[act]())
    if _OUTPUT[out_act] is not None:
        layers.append(_OUTPUT[out_act]())
    return Sequential(layers)
