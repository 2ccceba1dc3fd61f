"""`fastlrp demo`: explain a census-income classifier, attribute by attribute and layer by layer.

Runs offline on the UCI Adult data and the MLP shipped inside the package.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .datasets import load_adult, load_income_model, split_indices
from .explain import LRP


def run(out_dir="fastlrp-demo", composite: str = "epsilon", echo=print) -> dict:
    """Run the demo; returns what it computed and wrote (for tests and scripts)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, enc, meta = load_income_model()
    table, y = load_adult()
    _, test = split_indices(len(y), meta["split"]["seed"], meta["split"]["test_fraction"])
    x = enc.transform(table, test)
    y_test = y[test]

    lrp = LRP(model, composite)
    e = lrp(x, layerwise=True)
    logit = e.output[:, 0]
    accuracy = float(((logit > 0).astype(int) == y_test).mean())
    echo(f"fastlrp demo: income MLP {' -> '.join(str(l.in_features) for l in model.layers if hasattr(l, 'weight'))}"
         f" -> 1 on {len(y_test)} held-out people of the UCI Adult data")
    echo(f"test accuracy: {accuracy:.4f}")
    echo("")
    echo(str(lrp))
    echo("")

    names, per_attr = enc.aggregate(e.relevance)
    mean = per_attr.mean(axis=0)
    high = logit > 0
    mean_high = per_attr[high].mean(axis=0) if high.any() else np.zeros(len(names))
    mean_low = per_attr[~high].mean(axis=0) if (~high).any() else np.zeros(len(names))
    order = np.argsort(-np.abs(per_attr).mean(axis=0))
    echo("Relevance per attribute (one-hot columns summed back); positive pushes the decision towards")
    echo(f">50K, negative towards <=50K. Means over the test set and over the {int(high.sum())} people")
    echo(f"predicted >50K and the {int((~high).sum())} predicted <=50K:")
    echo(f"  {'attribute':<16}{'mean |R|':>10}{'mean R':>10}{'R | >50K':>10}{'R | <=50K':>11}")
    for k in order:
        echo(f"  {names[k]:<16}{np.abs(per_attr[:, k]).mean():>10.4f}{mean[k]:>+10.4f}{mean_high[k]:>+10.4f}{mean_low[k]:>+11.4f}")
    towards_high = [names[k] for k in np.argsort(-mean_high) if mean_high[k] > 0][:4]
    towards_low = [names[k] for k in np.argsort(mean_low) if mean_low[k] < 0][:4]
    echo(f"pushing towards >50K most (people predicted >50K): {', '.join(towards_high) or '-'}")
    echo(f"pushing towards <=50K most (people predicted <=50K): {', '.join(towards_low) or '-'}")
    if composite == "w2_epsilon":
        echo("(WSquare at the first layer shares relevance by squared weights, whatever the input value:")
        echo(" attributes with many one-hot columns, like native-country's 42, collect relevance from")
        echo(" inactive columns too. The default, --composite epsilon, depends on the input values)")

    # a typical >50K prediction: the person at the median logit among those predicted >50K
    cand = np.flatnonzero(high) if high.any() else np.arange(len(logit))
    person = int(cand[np.argsort(logit[cand])[len(cand) // 2]])
    row = test[person]
    echo("")
    echo(f"One person (test row {person}, predicted P(>50K) = {1 / (1 + np.exp(-logit[person])):.3f}, "
         f"actual {'>50K' if y_test[person] else '<=50K'}):")
    for k in np.argsort(-np.abs(per_attr[person]))[:6]:
        echo(f"  {names[k]:<16}= {str(table[names[k]][row]):<22} R = {per_attr[person, k]:+.4f}")

    # how faithful are these explanations? Remove the most relevant attributes first (each
    # one-hot column or number set to its mean over the test set) and watch the logit fall
    from .evaluate import perturbation

    sub = slice(0, min(2000, len(x)))
    other = "w2_epsilon" if composite == "epsilon" else "epsilon"
    rel_other = LRP(model, other)(x[sub]).relevance
    echo("")
    echo(f"Faithfulness (first {sub.stop} test people; the 20 most relevant input columns set to their mean, one per "
         "step; AOPC = mean fall of the logit, higher is more faithful):")
    for label, rel, order in ((composite, e.relevance[sub], "morf"), (other, rel_other, "morf"),
                              ("random order", None, "random")):
        res = perturbation(model, x[sub], rel, order=order, steps=20, fill="mean", seed=0)
        echo(f"  AOPC {label:<14}{res.mean_aopc:+.4f}")

    from . import plot

    files = {}
    # the two predicted groups side by side: a mean over everyone is dominated by the <=50K
    # majority and would show every attribute pushing towards <=50K
    fig = plot.feature_groups({f"predicted >50K ({int(high.sum())})": mean_high,
                               f"predicted <=50K ({int((~high).sum())})": mean_low}, names,
                              title="Mean relevance per attribute, by predicted class (test set)",
                              xlabel="relevance (+: towards >50K)")
    files["attributes"] = out / "attributes.png"
    fig.savefig(files["attributes"], dpi=110)
    fig = plot.features(per_attr[person], [f"{n} = {table[n][row]}" for n in names], top=len(names),
                        title=f"One person's explanation (test row {person})", xlabel="relevance (+: towards >50K)")
    files["person"] = out / "person.png"
    fig.savefig(files["person"], dpi=110)
    labels = [f"in {k}: {type(l).__name__}" for k, l in enumerate(model.layers)] + ["start (logit)"]
    fig = plot.layers(e, names=labels, title="Relevance per layer and unit (mean over the test set)")
    files["layers"] = out / "layers.png"
    fig.savefig(files["layers"], dpi=110)
    np.savez(out / "relevance.npz", relevance=e.relevance, attributes=per_attr, names=np.array(names), logit=logit)
    files["relevance"] = out / "relevance.npz"
    echo("")
    for name, path in files.items():
        echo(f"wrote {path}  ({name})")
    echo(f"done in {time.perf_counter() - t0:.1f} s")
    return {"accuracy": accuracy, "names": names, "mean": mean, "files": files, "explanation": e}
