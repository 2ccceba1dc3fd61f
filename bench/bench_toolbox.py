"""fastlrp.toolbox against the numpy LRP toolbox's algorithm, on the toolbox's MNIST networks.

- MLP 784-1296-1296-1296-10, Rect (its final SoftMax dropped, as the toolbox demos do);
- LeNet-5 as the toolbox ships it: conv 5x5x1->10, Rect, SumPool 2/2, conv 5x5x10->25, Rect,
  SumPool 2/2, conv 4x4x25->100, Rect, SumPool 2/2, conv 1x1x100->10, Flatten; 32x32x1 input.

Random weights (fixed seed), inputs uniform in [-1, 1] as the toolbox's MNIST preprocessing,
float64. One sample = one input explained: ``forward(X)`` then ``lrp(Y * onehot(argmax Y), rule,
param)``, as a toolbox script does; rules 'epsilon' (0.01) and 'alphabeta' (alpha = 2).

The peer is fastlrp.toolbox.reference: the toolbox's formulas computed as the toolbox computes
them in numpy (an (N, in, out) tensor per Linear layer, one window at a time for convolutions
and pools). The toolbox itself is not on PyPI and cannot be fetched here, so this is the
algorithm, not its code; the figures measured earlier for the real toolbox (not reproducible here) give the order of magnitude.
Every case first checks that both agree to 1e-10, then times: warm-up, median of repeats.

    python bench/bench_toolbox.py [--quick] [--out results.md]

For numpy at full speed on this machine, run it as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_toolbox.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastlrp as fl  # noqa: E402
from fastlrp.bench.nets import toolbox_lenet5_layers, toolbox_mlp_layers, toolbox_model  # noqa: E402
from fastlrp.toolbox import reference as ref  # noqa: E402

from fastlrp.bench._util import emit, machine, rate, table, timeit  # noqa: E402

RULES = [("epsilon", 0.01), ("alphabeta", 2.0)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="batches 1 and 16 only")
    ap.add_argument("--out", help="also write the report to this file")
    args = ap.parse_args(argv)
    nets = {"MLP 784-1296x3-10": (*toolbox_mlp_layers(), [1, 16] if args.quick else [1, 16, 256]),
            "LeNet-5": (*toolbox_lenet5_layers(), [1, 16] if args.quick else [1, 16, 64, 256])}
    rows = []
    for name, (layers, shape, batches) in nets.items():
        net = toolbox_model(layers)
        for n in batches:
            X = np.random.default_rng(n).uniform(-1, 1, size=(n,) + shape)
            Y = net.forward(X)
            R = Y * (Y == Y.max(axis=1, keepdims=True))
            for rule, param in RULES:
                ours = net.lrp(R, rule, param)
                theirs = ref.lrp(layers, X, R, [(rule, param)] * len(layers))
                err = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-300))
                if err > 1e-10:
                    raise SystemExit(f"{name} batch {n} {rule}: fastlrp.toolbox and the numpy toolbox differ by {err:.1e}")

                def ours_fn():
                    net.forward(X)
                    net.lrp(R, rule, param)

                def numpy_fn():
                    ref.lrp(layers, X, R, [(rule, param)] * len(layers))

                t_fl = timeit(ours_fn, min_time=0.2, repeats=7)
                slow = n * (1 if "LeNet" in name else 50) >= 64 * 50
                t_np = timeit(numpy_fn, min_time=0.2, repeats=3 if slow else 5, max_calls=1 if slow else None)
                rows.append([name, n, rule, rate(n, t_fl[0]), f"{rate(n, t_fl[2])}-{rate(n, t_fl[1])}",
                             rate(n, t_np[0]), f"**{t_np[0] / t_fl[0]:,.0f}x**", f"{err:.0e}"])
                print(" | ".join(str(c) for c in rows[-1]), file=sys.stderr, flush=True)
    lines = ["## fastlrp.toolbox vs the numpy toolbox's algorithm", "",
             f"Machine: {machine()}; fastlrp threads: {fl.get_num_threads()}.",
             "samples/s (forward + lrp of the predicted class), float64; median of repeats, min-max in brackets.", "",
             table(["net", "batch", "rule", "fastlrp.toolbox", "(min-max)", "numpy toolbox", "ratio", "max rel diff"], rows)]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
