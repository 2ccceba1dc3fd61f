"""What one first convolution costs to explain, per rule, against its own forward pass.

First layers see few channels (1 for digits, 3 for photos) and large images; their backward
product runs over the image's patches (conv.hpp's patch sums: one product per band of output
rows, then each input value sums its taps). ZBox, the first layer's rule in
`epsilon_gamma_box`, needs two such products (the weight and the bounds' shift), Epsilon one and
Flat none. This script explains a one-layer model (the convolution alone, the start relevance
random) and reports each rule's time as a multiple of the layer's forward pass: the explanation
includes that forward pass, so 1 + the backward's cost. Medians of the repeats, 2 threads by
default, float32.

    python bench/bench_first_layer.py [--repeat 15] [--threads 2] [--layers stem,vgg,lenet]

Layers: `stem` (ResNet's 7x7 stride-2 convolution, 3 -> 64 channels, batch 8 of 224x224),
`vgg` (VGG-16's first 3x3, 3 -> 64, batch 8 of 224x224), `lenet` (5x5, 1 -> 10, batch 256 of
28x28).
"""

import argparse
import os

import numpy as np

import fastlrp as fl
from fastlrp import rules
from _timing import median_time

LAYERS = {  # out, in, kernel, stride, padding, batch, size
    "stem": (64, 3, 7, 2, 3, 8, 224),
    "vgg": (64, 3, 3, 1, 1, 8, 224),
    "lenet": (10, 1, 5, 1, 0, 256, 28),
}
RULES = {"Flat": rules.Flat(), "Epsilon": rules.Epsilon(), "ZBox(-3, 3)": rules.ZBox(-3.0, 3.0),
         "Gamma(0.25)": rules.Gamma(0.25)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count()))
    ap.add_argument("--layers", default=",".join(LAYERS))
    args = ap.parse_args()
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"fastlrp {fl.build_info()['isa']}, {args.threads} threads, float32, median of {args.repeat}\n")
    print("| layer | batch | forward ms | " + " | ".join(f"{r} ms (forwards)" for r in RULES) + " |")
    print("|---|---|---|" + "---|" * len(RULES))
    for name in args.layers.split(","):
        o, c, k, s, p, n, hw = LAYERS[name]
        w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        model = fl.Sequential([fl.Conv2d(w, np.zeros(o, np.float32), stride=s, padding=p)])
        x = rng.uniform(-1, 1, (n, c, hw, hw)).astype(np.float32)
        start = rng.standard_normal(model(x).shape).astype(np.float32)
        fwd = median_time(lambda: model(x), args.repeat)
        cells = []
        for rule in RULES.values():
            xr = np.abs(x) if isinstance(rule, rules.Gamma) else x
            lrp = fl.LRP(model, rule)
            t = median_time(lambda: lrp(xr, target=start), args.repeat)
            cells.append(f"{1e3 * t:.1f} ({t / fwd:.1f})")
        print(f"| {name} | {n} | {1e3 * fwd:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
