"""Depthwise 3x3 convolutions against the machine's memory bandwidth (the mobile issue's figure).

A depthwise convolution does 9 multiply-adds per value it reads: it is bound by memory, not by
arithmetic. This script times fastlrp's depthwise 3x3 forward pass (stride 1, padding 1, float32,
batch 16, 2 threads by default) on MobileNetV2's depthwise shapes inside a graph (as in a
network: buffers reused between layers; the time per layer is the difference between a chain of
5 and a chain of 1, over 4) and reports the bytes a layer must move (its input read once, its
output written once) per second, against two copies measured in the same run: the machine's
memory bandwidth, a STREAM-style copy of 256 MiB arrays (far larger than the caches) split over
the same threads, and a copy of the layer's own bytes (numpy's `np.copyto` of an array of the
input's size, which for the smaller layers runs from the caches). Medians of the repeats; the
ratios are the kernel's shares of the two copy bandwidths.

    python bench/bench_depthwise.py [--batch 16] [--threads 2] [--repeat 9]
"""

import argparse
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastlrp as fl
from _timing import median_time

# (channels, height = width) of MobileNetV2's 3x3 stride-1 depthwise convolutions at 224x224
SHAPES = [(96, 112), (144, 56), (192, 28), (384, 14), (576, 14), (960, 7)]
EXTRA = 4  # layers timed: a chain of 1 + EXTRA depthwise layers against a chain of 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count()))
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# depthwise 3x3 forward, batch {args.batch}, float32, {args.threads} threads, "
          f"isa={fl.build_info()['isa']}")
    big = 64 * 1024 * 1024  # 256 MiB of float32 per array
    bsrc, bdst = np.ones(big, np.float32), np.empty(big, np.float32)
    pool = ThreadPoolExecutor(args.threads)

    def stream_copy():  # numpy releases the GIL for the copy: one slice per thread
        parts = args.threads
        list(pool.map(lambda k: np.copyto(bdst[big * k // parts:big * (k + 1) // parts],
                                          bsrc[big * k // parts:big * (k + 1) // parts]), range(parts)))

    machine_gbs = 2 * bsrc.nbytes / median_time(stream_copy, args.repeat) / 1e9
    print(f"# machine memory bandwidth (STREAM-style copy of 256 MiB, {args.threads} threads): {machine_gbs:.1f} GB/s")
    print("| channels x size | fastlrp ms | fastlrp GB/s | share of the machine bandwidth | copy GB/s (same bytes) "
          "| share of that copy |")
    print("|---|---|---|---|---|---|")
    shares, machine_shares = [], []
    for c, s in SHAPES:
        x = rng.normal(size=(args.batch, c, s, s)).astype(np.float32)

        def chain(depth):
            """x -> depth depthwise layers: the difference of two depths is the layers alone (the
            input's conversion, its check and the fresh output array are paid once per call)."""
            inp = fl.Input((c, s, s))
            h = inp
            for _ in range(depth):
                w = rng.normal(size=(c, 1, 3, 3)).astype(np.float32) / 3
                h = fl.Conv2d(w, np.zeros(c, np.float32), padding=1, groups=c)(h)
            return fl.Model(inp, h)

        short, long = chain(1), chain(1 + EXTRA)
        t = (median_time(lambda: long.forward(x), args.repeat) - median_time(lambda: short.forward(x), args.repeat)) / EXTRA
        moved = 2 * x.nbytes  # the input read once, the output (same size) written once
        src = np.ones(x.size, np.float32)
        dst = np.empty_like(src)
        t_copy = median_time(lambda: np.copyto(dst, src), args.repeat)  # reads x.nbytes, writes x.nbytes
        gbs, copy_gbs = moved / t / 1e9, 2 * src.nbytes / t_copy / 1e9
        shares.append(gbs / copy_gbs)
        machine_shares.append(gbs / machine_gbs)
        print(f"| {c} x {s}x{s} | {t * 1e3:.2f} | {gbs:.1f} | {gbs / machine_gbs:.0%} | {copy_gbs:.1f} "
              f"| {gbs / copy_gbs:.0%} |")
    print(f"\nmedian share of the machine bandwidth: {np.median(machine_shares):.0%}; "
          f"of the same-bytes copy: {np.median(shares):.0%}")


if __name__ == "__main__":
    main()
