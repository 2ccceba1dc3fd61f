"""MLP benchmark: fastlrp against its numpy reference and zennit, in one run.

The benchmark MLP: 105-512-256-128-64-2, ReLU, He-initialised random weights
(fixed seed), float32. One sample = one input row explained (forward pass + LRP of the predicted
class, relevance seeded with logit * onehot(argmax)).

    python bench/bench_mlp.py [--quick] [--out results.md]

Every case first checks that fastlrp's relevance equals the reference's (and zennit's, where the
conventions agree), then times it: warm-up, median of 7 rounds (min-max shown).
"""

from __future__ import annotations

import os

# The numpy reference is timed single-threaded: OpenBLAS's idle threads spin for a while after
# each call and would take a core from the peer timed next (2 cores here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastlrp as fl  # noqa: E402
from fastlrp import reference, rules  # noqa: E402

from fastlrp.bench._util import emit, import_zennit, machine, rate, rel_error, table, timeit  # noqa: E402

SIZES = [105, 512, 256, 128, 64, 2]
CASES = {"Epsilon": rules.Epsilon(), "epsilon_plus_flat": "epsilon_plus_flat", "w2_epsilon": "w2_epsilon"}


def make_weights(seed=0):
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for k, (i, o) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        ws.append((rng.normal(size=(o, i)) * np.sqrt(2.0 / i)).astype(np.float32))
        # the first bias is 0 so that zennit's WSquare (which adds b^2) is comparable
        bs.append(np.zeros(o, np.float32) if k == 0 else (rng.normal(size=o) * 0.05).astype(np.float32))
    return ws, bs


def fastlrp_model(ws, bs):
    layers = []
    for k, (w, b) in enumerate(zip(ws, bs)):
        layers.append(fl.Dense(w, b))
        if k < len(ws) - 1:
            layers.append(fl.ReLU())
    return fl.Sequential(layers)


def zennit_setup(peer, ws, bs, case):
    torch, zennit = peer
    mods = []
    for k, (w, b) in enumerate(zip(ws, bs)):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if k < len(ws) - 1:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods).eval()
    zc, zr = zennit.composites, zennit.rules
    comp = {
        "Epsilon": lambda: zc.LayerMapComposite([(torch.nn.Linear, zr.Epsilon())]),
        "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(),
        "w2_epsilon": lambda: zc.SpecialFirstLayerMapComposite(
            layer_map=[(torch.nn.Linear, zr.Epsilon())], first_map=[(torch.nn.Linear, zr.WSquare())]),
    }[case]()
    attributor = zennit.attribution.Gradient(model, comp)
    attributor.__enter__()

    def seed(out):
        return out * torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)

    def explain(x):
        xt = torch.from_numpy(x)
        _, rel = attributor(xt, seed)
        return rel

    return explain, attributor


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, batch 1024 only once")
    parser.add_argument("--out", help="also write the markdown to this file")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()

    ws, bs = make_weights()
    model = fastlrp_model(ws, bs)
    peer, why = import_zennit()
    torch = peer[0] if peer else None
    lines = [f"Machine: {machine()}", ""]
    if peer is None:
        lines.append(f"zennit skipped: {why}")
    else:
        from importlib.metadata import version

        lines.append(f"zennit {version('zennit')} on torch {torch.__version__}")
    lines.append("")
    rng = np.random.default_rng(1)
    rows = []
    repeats = 3 if args.quick else 7
    for threads in [int(t) for t in args.threads.split(",")]:
        fl.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        for batch in (1, 64, 1024):
            x = rng.normal(size=(batch, SIZES[0])).astype(np.float32)
            fwd_times = []
            for name, comp in CASES.items():
                lrp = fl.LRP(model, comp)
                e = lrp(x)
                # correctness first: the numpy reference (float64, from the formulas)
                ref = reference.lrp(model.layers, lrp.rules, x)[0]
                e64 = lrp(x.astype(np.float64)).relevance
                assert np.allclose(e64, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max()), f"{name}: float64 != reference"
                assert rel_error(e.relevance, ref) < 1e-3, f"{name}: float32 relevance differs from the reference"
                t_fwd = timeit(lambda: model.forward(x), repeats=repeats)[0]  # next to it: same conditions
                fwd_times.append(t_fwd)
                t_fl, lo, hi = timeit(lambda: lrp(x), repeats=repeats)
                row = [batch, threads, name, rate(batch, t_fl), f"{rate(batch, hi)}–{rate(batch, lo)}",
                       f"{t_fl / t_fwd:.2f}"]
                if threads == 1:  # the reference is single-threaded numpy: time it once
                    t_ref = timeit(lambda: reference.lrp(model.layers, lrp.rules, x), min_time=0.02,
                                   repeats=1 if batch == 1024 or args.quick else 3)[0]
                    row += [rate(batch, t_ref), f"{t_ref / t_fl:,.0f}×"]
                else:
                    row += ["", ""]
                if peer is not None:
                    explain, attributor = zennit_setup(peer, ws, bs, name)
                    z = explain(x).detach().numpy()
                    agree = rel_error(e.relevance, z) < 1e-3
                    t_z = timeit(lambda: explain(x), repeats=repeats)[0]
                    attributor.__exit__(None, None, None)
                    row += [rate(batch, t_z), f"**{t_z / t_fl:.1f}×**", "yes" if agree else "NO"]
                rows.append(row)
                print(" | ".join(map(str, row)), file=sys.stderr)
            t_fwd = float(np.median(fwd_times))
            rows.append([batch, threads, "forward only", rate(batch, t_fwd), "", "1.00", "", "", "", "", ""][:len(rows[-1])])
    headers = ["batch", "threads", "rule / composite", "fastlrp samples/s", "min–max", "cost / forward",
               "numpy ref samples/s", "fastlrp / ref"]
    if peer is not None:
        headers += ["zennit samples/s", "fastlrp / zennit", "same relevance"]
    lines.append(table(headers, rows))
    emit(lines, args.out)


if __name__ == "__main__":
    main()
