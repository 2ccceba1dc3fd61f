"""Train the income MLP that `fastlrp demo` ships, and save it in fastlrp's native format.

Needs scikit-learn (`pip install scikit-learn`). Run from the repository root:

    python examples/train_income_model.py [--out python/fastlrp/data]

The network: standardised numeric + one-hot categorical features -> 64 -> 32 -> 1 logit,
ReLU, trained by scikit-learn's MLPClassifier (logistic output, which fastlrp skips: relevance
starts at the logit, positive = towards >50K).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier

import fastlrp as fl
from fastlrp.datasets import AdultEncoder, load_adult, split_indices

SEED = 0
TEST_FRACTION = 0.2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="python/fastlrp/data", help="folder for income_mlp.npz and income_meta.json")
    args = parser.parse_args()

    table, y = load_adult()
    train, test = split_indices(len(y), SEED, TEST_FRACTION)
    enc = AdultEncoder.fit(table, train)
    x_train, x_test = enc.transform(table, train, np.float64), enc.transform(table, test, np.float64)

    clf = MLPClassifier(hidden_layer_sizes=(64, 32), alpha=1e-3, max_iter=60, early_stopping=True,
                        random_state=SEED)
    clf.fit(x_train, y[train])
    acc = clf.score(x_test, y[test])
    print(f"test accuracy {acc:.4f} on {len(test)} rows")

    layers = []
    for k, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        layers.append(fl.Dense(w.T, b))  # sklearn stores (in, out)
        layers.append(fl.ReLU() if k < len(clf.coefs_) - 1 else fl.Sigmoid())
    model = fl.Sequential(layers)
    p = model.forward(x_test)[:, 0]
    assert np.allclose(p, clf.predict_proba(x_test)[:, 1], atol=1e-10), "export does not match scikit-learn"

    out = Path(args.out)
    model.save(out / "income_mlp.npz")
    meta = {"encoder": enc.to_json(), "split": {"seed": SEED, "test_fraction": TEST_FRACTION},
            "feature_names": enc.feature_names, "test_accuracy": acc, "classes": ["<=50K", ">50K"]}
    (out / "income_meta.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote {out / 'income_mlp.npz'} and {out / 'income_meta.json'}")


if __name__ == "__main__":
    main()
