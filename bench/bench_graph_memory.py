"""Peak memory of one graph explanation, in a fresh process (the suite's per-case figure is
taken after earlier cases and peers have grown the heap, so it cannot see a later, larger call).

    python bench/bench_graph_memory.py [--net resnet50] [--batch 8] [--rule epsilon_plus_flat]

Prints the growth of the process's peak resident memory during the first explanation, against
the floor of the graph issue: the weights (at the input's dtype) plus the activations the
backward pass keeps (every node's output and the input). Needs torch and torchvision's model
code (the test extras).
"""

import argparse

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rule", default="epsilon_plus_flat")
    args = ap.parse_args()
    import torch

    import fastlrp as fl
    from fastlrp import composites
    from fastlrp.bench import nets
    from fastlrp.bench.suite import peak_growth

    model, _, shape = nets.torchvision_graph(args.net, torch)
    comp = composites.epsilon_gamma_box(-3.0, 3.0) if args.rule == "epsilon_gamma_box" else args.rule
    lrp = fl.LRP(model, comp)
    x = np.random.default_rng(0).normal(size=(args.batch,) + shape).astype(np.float32)
    peak = peak_growth(lambda: lrp(x))
    w, a = nets.graph_memory_floor(model, shape, args.batch, x.dtype.itemsize)
    print(f"{args.net} batch {args.batch} {args.rule}: peak growth {peak:.0f} MiB; weights {w / 2**20:.0f} MiB + "
          f"kept activations {a / 2**20:.0f} MiB = {(w + a) / 2**20:.0f} MiB; ratio {peak / ((w + a) / 2**20):.2f}x")


if __name__ == "__main__":
    main()
