"""An explanation's cost in forward passes on a whole torchvision network, timed alternately.

The suite (`fastlrp bench`) times the explanation and the forward pass minutes apart, so on a
shared machine whose speed drifts by 10-30 % within minutes its 'cost in forwards' drifts with
it. This script loads the network once (torchvision's model code, random weights, `eval()`, by
`fl.from_torch` as the suite does) and then alternates one explanation and one forward pass of
the same batch, `--repeat` rounds after a warm-up of each, and prints both medians and their
ratio. `--runs N` repeats that in N fresh processes (each prints its own line), since a
process's first placement of its buffers can make all its rounds fast or slow together.

    python bench/bench_cost_in_forwards.py [--net resnet50] [--batch 8] [--threads 2] [--repeat 7]
                                           [--rule epsilon_plus_flat] [--runs 1]

Needs torch and torchvision's model code (the test extras).
"""

import argparse
import subprocess
import sys

import numpy as np
from _timing import alternate_medians


def one_run(args):
    import torch

    import fastlrp as fl
    from fastlrp import composites
    from fastlrp.bench import nets

    model, _, shape = nets.torchvision_graph(args.net, torch)
    fl.set_num_threads(args.threads)
    x = np.random.default_rng(0).normal(size=(args.batch,) + shape).astype(np.float32)
    rule = composites.epsilon_gamma_box(-3.0, 3.0) if args.rule == "epsilon_gamma_box" else args.rule
    lrp = fl.LRP(model, rule)
    lm, fm = alternate_medians(lambda: lrp(x), lambda: model.forward(x), args.repeat)
    print(f"{args.net} batch {args.batch}, {args.threads} threads, {args.rule}, isa={fl.build_info()['isa']}: "
          f"explanation {lm:.3f} s, forward {fm:.3f} s (medians of {args.repeat}), cost in forwards {lm / fm:.2f}",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--rule", default="epsilon_plus_flat", help="a preset name, or epsilon_gamma_box for (-3, 3)")
    ap.add_argument("--runs", type=int, default=1, help="fresh processes, one line each")
    args = ap.parse_args()
    if args.runs <= 1:
        one_run(args)
        return
    argv = [a for a in sys.argv[1:]]
    for _ in range(args.runs):
        subprocess.run([sys.executable, __file__, *argv, "--runs", "1"], check=True)


if __name__ == "__main__":
    main()
