"""Explain a census-income classifier, attribute by attribute: the demo as a readable script.

    python examples/adult_income.py [--rows 2000] [--out adult-income]

Uses only what ships with fastlrp: the UCI Adult data (CC BY 4.0) and the income MLP that
examples/train_income_model.py trained.
"""

import argparse
from pathlib import Path

import numpy as np

import fastlrp as fl
from fastlrp import plot
from fastlrp.datasets import load_adult, load_income_model, split_indices


def main(rows=None, out="adult-income"):
    model, encoder, meta = load_income_model()           # a fastlrp.Sequential + the feature encoding
    table, y = load_adult()
    _, test = split_indices(len(y), meta["split"]["seed"], meta["split"]["test_fraction"])
    test = test[:rows] if rows else test
    x = encoder.transform(table, test)                    # standardised numbers + one-hot categories

    lrp = fl.LRP(model, "epsilon")                        # Epsilon on every layer (input-dependent)
    print(lrp)
    e = lrp(x, layerwise=True)                            # relevance starts at the logit (Sigmoid skipped)
    print(f"accuracy on {len(test)} test rows: {((e.output[:, 0] > 0) == y[test]).mean():.3f}")

    names, per_attribute = encoder.aggregate(e.relevance)  # one-hot columns summed back
    mean = per_attribute.mean(axis=0)
    for k in np.argsort(-np.abs(mean)):
        print(f"{names[k]:>16}  {mean[k]:+.4f}  ({'towards >50K' if mean[k] > 0 else 'towards <=50K'})")

    out = Path(out)
    out.mkdir(exist_ok=True)
    plot.features(mean, names, title="mean relevance per attribute").savefig(out / "attributes.png")
    plot.layers(e, title="relevance per layer and unit").savefig(out / "layers.png")
    print(f"wrote {out / 'attributes.png'} and {out / 'layers.png'}")
    return mean


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="explain only the first ROWS test rows")
    parser.add_argument("--out", default="adult-income")
    args = parser.parse_args()
    main(args.rows, args.out)
