"""How fastlrp's products speed up with the zeros of their left operand (gemm.hpp's skipped zeros).

Activations after a ReLU, and relevance below one, are often half zeros or more (more in trained
networks than in randomly initialised ones). fastlrp's GEMM skips the terms whose left operand is
zero when at most about half of it is nonzero, with bitwise the same result. This script times one
Dense layer's forward pass (one product A @ W.T, plus the bias) at batch 256 on inputs with a
given fraction of nonzeros, float64 and float32, against numpy's BLAS product of the same arrays
(which does not skip zeros), and reports the rate of the dense-equivalent work (2 * N * in * out
flops per call) and fastlrp's speed relative to its own dense rate (density 1). Medians of the
repeats (all of fastlrp's cases timed before numpy's), 2 threads by default.

    python bench/bench_sparse.py [--repeat 15] [--threads 2] [--size 1296]

To let OpenBLAS run at full speed on machines that set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE,
unset them for this one command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`.
"""

import argparse
import os

import numpy as np

import fastlrp as fl
from _timing import median_time

PAUSE = 0.3  # OpenBLAS's threads spin for a while after a call: let them park first
DENSITIES = [1.0, 0.7, 0.55, 0.5, 0.4, 0.3, 0.2, 0.1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count()))
    ap.add_argument("--size", type=int, default=1296, help="in = out features of the layer")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n, d = args.batch, args.size
    flops = 2.0 * n * d * d
    print(f"# Dense {d}->{d} forward, batch {n}, {args.threads} threads, isa={fl.build_info()['isa']}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"{'dtype':8s} {'density':>7s} {'fastlrp GFLOP/s':>16s} {'vs dense':>9s} {'numpy GFLOP/s':>14s} "
          f"{'fastlrp/numpy':>14s}")
    for dtype in (np.float64, np.float32):
        w = rng.normal(size=(d, d)).astype(dtype)
        model = fl.Sequential([fl.Dense(w, np.zeros(d, dtype))])
        wt = np.ascontiguousarray(w.T)
        xs = []
        for dens in DENSITIES:
            x = rng.normal(size=(n, d)).astype(dtype)
            x[rng.random((n, d)) >= dens] = 0
            xs.append(x)
        # every fastlrp case first, then every numpy case: OpenBLAS's spinning threads stay out
        t_fl = [median_time(lambda x=x: model(x), args.repeat, PAUSE) for x in xs]
        t_np = [median_time(lambda x=x: x @ wt, args.repeat, PAUSE) for x in xs]
        tol = 1e-9 if dtype == np.float64 else 1e-3
        for dens, x, tf, tn in zip(DENSITIES, xs, t_fl, t_np):
            ref = x @ wt
            assert np.allclose(model(x), ref, rtol=tol, atol=tol * np.abs(ref).max()), "fastlrp's product is wrong"
            print(f"{np.dtype(dtype).name:8s} {dens:7.2f} {flops / tf / 1e9:16.1f} {t_fl[0] / tf:8.2f}x "
                  f"{flops / tn / 1e9:14.1f} {tn / tf:13.2f}x")

if __name__ == "__main__":
    main()
