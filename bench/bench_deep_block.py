"""An explanation's cost in forward passes on the deepest stage of a ResNet-50.

ResNet-50's last stage runs on 7x7 images: few output pixels per sample and large weights
(a 3x3 convolution on 512 channels has 2.4 M). There a convolution's backward products are
short and their weights large, so what a product does once per call (packing its weights)
weighs more than anywhere else in the network. This script builds three bottleneck blocks of
that shape (1x1 2048->512, 3x3 512->512, 1x1 512->2048, each followed by a ReLU; random He
weights, no residual additions, no torch needed), explains a batch of non-negative inputs and
times, alternately in one process, the explanation and a plain forward pass. It reports the
medians and their ratio, the explanation's cost in forward passes.

    python bench/bench_deep_block.py [--batch 8] [--threads 2] [--repeat 15] [--rule epsilon_plus_flat]
"""

import argparse
import os

import numpy as np

import fastlrp as fl
from _timing import alternate_medians


def block_model(rng, dtype=np.float32):
    def he(*shape):
        return (rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(dtype)

    x = fl.Input((2048, 7, 7))
    h = x
    for _ in range(3):
        h = fl.ReLU()(fl.Conv2d(he(512, 2048, 1, 1), np.zeros(512, dtype))(h))
        h = fl.ReLU()(fl.Conv2d(he(512, 512, 3, 3), np.zeros(512, dtype), padding=1)(h))
        h = fl.ReLU()(fl.Conv2d(he(2048, 512, 1, 1), np.zeros(2048, dtype))(h))
    out = fl.Dense(he(10, 2048), np.zeros(10, dtype))(fl.Flatten()(fl.AdaptiveAvgPool2d(1)(h)))
    return fl.Model(x, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count()))
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--rule", default="epsilon_plus_flat")
    args = ap.parse_args()
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    model = block_model(rng)
    x = np.maximum(rng.normal(size=(args.batch, 2048, 7, 7)), 0).astype(np.float32)
    lrp = fl.LRP(model, args.rule)
    # the warm-up also makes the rule's weight forms, which are made on first use
    t_lrp, t_fwd = alternate_medians(lambda: lrp(x), lambda: model.forward(x), args.repeat)
    lrp_ms, fwd_ms = 1e3 * t_lrp, 1e3 * t_fwd
    print(f"# ResNet-50 stage-4 blocks, batch {args.batch}, {args.threads} threads, {args.rule}, "
          f"isa={fl.build_info()['isa']}, medians of {args.repeat}")
    print(f"explanation {lrp_ms:.1f} ms, forward {fwd_ms:.1f} ms, cost in forwards {lrp_ms / fwd_ms:.2f}")


if __name__ == "__main__":
    main()
