"""A numpy-LRP-toolbox script, switched to fastlrp by its imports.

    python examples/toolbox_dropin.py [--out toolbox-dropin]

Part 1 makes the files a toolbox user would have: scikit-learn's bundled 8x8 digits as .npy data
and a small Rect MLP (trained here with scikit-learn) in the toolbox's text model format.
Part 2 is the toolbox's demo workflow, unchanged but for the import line: read the model and
data, drop the SoftMax, forward, explain the predicted class with 'epsilon' and 'alphabeta',
and with per-layer presets. It writes heatmaps of the relevance and says where.
"""

import argparse
import time
from pathlib import Path

import numpy as np


def make_toolbox_files(folder: Path):
    """The digits as toolbox data files and an MLP as a toolbox text model (needs scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from fastlrp.toolbox import data_io, model_io, modules

    digits = load_digits()
    X = digits.data / 8.0 - 1  # 0..16 -> [-1, 1], as the toolbox scales MNIST
    mlp = MLPClassifier((64, 32), activation="relu", max_iter=300, random_state=0).fit(X[:1500], digits.target[:1500])
    layers = []
    for k, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        lin = modules.Linear(*W.shape)  # toolbox layout: W (inputs, outputs), as scikit-learn's
        lin.W, lin.B = W, b
        layers += [lin, modules.Rect()] if k < len(mlp.coefs_) - 1 else [lin, modules.SoftMax()]
    model_io.write(modules.Sequential(layers), folder / "digits-mlp.txt")
    data_io.write(digits.data[1500:], folder / "test_images.npy")
    data_io.write(digits.target[1500:, None].astype(np.float64), folder / "test_labels.npy")


def toolbox_demo(folder: Path, out: Path):
    # ---- the toolbox script; only this import line changed (was: import model_io, data_io) ----
    from fastlrp.toolbox import data_io, model_io

    nn = model_io.read(str(folder / "digits-mlp.txt"))
    X = data_io.read(str(folder / "test_images.npy")) / 8.0 - 1
    Y = data_io.read(str(folder / "test_labels.npy"))
    I = Y[:, 0].astype(int)
    Y = np.zeros([X.shape[0], np.unique(Y).size])
    Y[np.arange(Y.shape[0]), I] = 1

    acc = np.mean(np.argmax(nn.forward(X), axis=1) == np.argmax(Y, axis=1))
    print(f"model accuracy: {100 * acc:.1f}% on {X.shape[0]} digits")

    nn.drop_softmax_output_layer()
    t = time.perf_counter()
    ypred = nn.forward(X)
    mask = np.zeros_like(ypred)
    mask[np.arange(len(ypred)), np.argmax(ypred, axis=1)] = 1
    Rinit = ypred * mask
    R_eps = nn.lrp(Rinit, "epsilon", 0.01)
    R_ab = nn.lrp(Rinit, "alphabeta", 2.0)
    for m, (var, param) in zip(nn.modules, [("ww", None), (None, 1.0), ("epsilon", 0.01)]):
        m.set_lrp_parameters(var, param)  # per-layer presets, used when lrp() gets no rule
    R_mix = nn.lrp(Rinit)
    print(f"explained {X.shape[0]} digits three ways in {1e3 * (time.perf_counter() - t):.1f} ms")
    print(f"relevance sums vs scores (epsilon): {R_eps.sum(axis=1)[:3].round(3)} vs {Rinit.sum(axis=1)[:3].round(3)}")
    # -------------------------------------------------------------------------------------------

    from fastlrp import plot

    out.mkdir(parents=True, exist_ok=True)
    images = X[:6].reshape(-1, 1, 8, 8)
    for name, R in (("epsilon", R_eps), ("alphabeta", R_ab), ("presets", R_mix)):
        fig = plot.grid(R[:6].reshape(-1, 1, 8, 8), images=images,
                        titles=[f"predicted {k}" for k in np.argmax(ypred[:6], axis=1)])
        fig.savefig(out / f"digits-{name}.png", dpi=90)
        print(f"wrote {out / f'digits-{name}.png'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="toolbox-dropin", help="folder for the toolbox files and PNGs")
    args = ap.parse_args(argv)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    make_toolbox_files(folder)
    toolbox_demo(folder, folder)


if __name__ == "__main__":
    main()
