"""Explain a small CNN on scikit-learn's bundled 8x8 digits: heatmaps per class.

    python examples/digits_cnn.py [--out digits-cnn]

The CNN's weights ship with the example (examples/data/digits_cnn.npz, trained by
examples/train_digits_cnn.py); the digits ship with scikit-learn. Pixels are in [0, 1], so the
first convolution gets ZBox(0, 1) (epsilon_gamma_box), the others Gamma, the dense layer
Epsilon. Writes three PNGs: one digit explained for each of the ten classes (why 3 and not 8?),
the mean relevance of each class's test images for their own class, and the perturbation curves
of three composites (fl.evaluate.compare: which one's heatmaps are the most faithful?).
"""

import argparse
from pathlib import Path

import numpy as np

import fastlrp as fl
from fastlrp import composites, plot

WEIGHTS = Path(__file__).resolve().parent / "data" / "digits_cnn.npz"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="digits-cnn", help="folder for the PNGs")
    args = ap.parse_args(argv)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[1500:, None] / 16.0).astype(np.float32)  # the test part, NCHW
    y = digits.target[1500:]
    model = fl.load(WEIGHTS)
    lrp = fl.LRP(model, composites.epsilon_gamma_box(0.0, 1.0))
    print(lrp)
    e = lrp(x)  # the predicted class of every test digit
    print(f"test accuracy: {(e.targets == y).mean():.3f} on {len(y)} digits")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k = int(np.flatnonzero(y == 3)[0])  # one digit, explained for every class
    per_class = np.concatenate([lrp(x[k:k + 1], target=c).relevance for c in range(10)])
    fig = plot.grid(per_class, images=np.repeat(x[k:k + 1], 10, axis=0),
                    titles=[f"as {c}" + (" (predicted)" if c == e.targets[k] else "") for c in range(10)])
    fig.savefig(out / "one-digit-every-class.png", dpi=90)
    means = np.concatenate([e.relevance[(y == c) & (e.targets == y)].mean(axis=0, keepdims=True) for c in range(10)])
    images = np.concatenate([x[y == c].mean(axis=0, keepdims=True) for c in range(10)])
    fig = plot.grid(means, images=images, titles=[f"class {c}" for c in range(10)])
    fig.savefig(out / "class-means.png", dpi=90)
    pos = (e.relevance > 0).mean()
    print(f"share of positive relevance: {pos:.2f}; wrote {out / 'one-digit-every-class.png'} and "
          f"{out / 'class-means.png'}")

    # which composite's heatmaps are the most faithful? Remove 2x2 regions, most relevant first
    # (MoRF) and least relevant first (LeRF), filled with 0 (the background), against a random order
    res = fl.evaluate.compare(model, x, {"epsilon_gamma_box(0, 1)": composites.epsilon_gamma_box(0.0, 1.0),
                                         "epsilon_plus_flat": "epsilon_plus_flat",
                                         "epsilon_alpha2_beta1": "epsilon_alpha2_beta1", "random order": None},
                              target=e.targets, region=2, fill=0.0)
    print(res)
    res.plot(out / "faithfulness.png")
    print(f"wrote {out / 'faithfulness.png'}")


if __name__ == "__main__":
    main()
