"""Depthwise 3x3 convolutions against the machine's memory bandwidth (the mobile issue's figure).

A depthwise convolution does 9 multiply-adds per value it reads: it is bound by memory, not by
arithmetic. This script times fastlrp's depthwise 3x3 forward pass (stride 1, padding 1, float32,
batch 16, 2 threads by default) on MobileNetV2's depthwise shapes and reports the bytes it must
move (input read once, output written once) per second, against a stream-style copy (numpy's
`np.copyto` of an array of the same size as input + output, so the same bytes move) measured in
the same run. Median of the repeats; the ratio is the kernel's share of the copy bandwidth.

    python bench/bench_depthwise.py [--batch 16] [--threads 2] [--repeat 9]
"""

import argparse
import os
import time

import numpy as np

import fastlrp as fl

# (channels, height = width) of MobileNetV2's 3x3 stride-1 depthwise convolutions at 224x224
SHAPES = [(96, 112), (144, 56), (192, 28), (384, 14), (576, 14), (960, 7)]


def median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


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
    print("| channels x size | fastlrp ms | fastlrp GB/s | copy GB/s (same bytes) | share of copy |")
    print("|---|---|---|---|---|")
    shares = []
    for c, s in SHAPES:
        x = rng.normal(size=(args.batch, c, s, s)).astype(np.float32)
        layer = fl.Conv2d(rng.normal(size=(c, 1, 3, 3)).astype(np.float32), np.zeros(c, np.float32), padding=1, groups=c)
        model = fl.Sequential([layer])
        xi = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(args.batch, -1)  # the core's NHWC rows
        net = model._network(np.float32, model.shapes(x.shape[1:]))  # the kernel alone, no layout conversion
        t = median_time(lambda: net.forward(xi), args.repeat)
        moved = 2 * x.nbytes  # the input read once, the output (same size) written once
        src = np.ones(x.size, np.float32)
        dst = np.empty_like(src)
        t_copy = median_time(lambda: np.copyto(dst, src), args.repeat)  # reads x.nbytes, writes x.nbytes
        gbs, copy_gbs = moved / t / 1e9, 2 * src.nbytes / t_copy / 1e9
        shares.append(gbs / copy_gbs)
        print(f"| {c} x {s}x{s} | {t * 1e3:.2f} | {gbs:.1f} | {copy_gbs:.1f} | {gbs / copy_gbs:.0%} |")
    print(f"\nmedian share of the copy bandwidth: {np.median(shares):.0%}")


if __name__ == "__main__":
    main()
