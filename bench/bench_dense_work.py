"""fastlrp against numpy's DGEMMs of the same dense work (issue 15's target for the toolbox MLP).

The toolbox MLP 784-1296-1296-1296-10 (ReLU), batch 256, float64, explained with Epsilon: per
layer one forward product A @ W.T and one backward product R @ W. numpy runs exactly those
products (OpenBLAS DGEMM) and nothing else; fastlrp runs the whole explanation (forward pass,
start relevance, every rule's divide and multiply). Both in the same process, alternating,
median of the repeats (a pause before each timed call, so that the
other's idle threads have parked); the ratio above 1 means fastlrp's whole explanation is faster than
numpy's bare products.

    python bench/bench_dense_work.py [--repeat 15] [--threads 2]

To let OpenBLAS run at full speed on machines that set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE,
unset them for this one command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`.
"""

import argparse
import os
import time

import numpy as np

import fastlrp as fl

SIZES = [784, 1296, 1296, 1296, 10]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    fl.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(o, i)) * np.sqrt(2.0 / i) for i, o in zip(SIZES[:-1], SIZES[1:])]
    layers = []
    for k, w in enumerate(weights):
        layers.append(fl.Dense(w, np.zeros(w.shape[0])))
        if k < len(weights) - 1:
            layers.append(fl.ReLU())
    lrp = fl.LRP(fl.Sequential(layers), "epsilon")
    x = rng.uniform(0, 1, size=(args.batch, SIZES[0]))
    wts = [np.ascontiguousarray(w.T) for w in weights]  # (in, out): A @ W.T as one DGEMM

    acts = [x]
    for w in wts:
        acts.append(np.maximum(acts[-1] @ w, 0))
    rel = [rng.normal(size=a.shape) for a in acts[1:]]

    def numpy_work():
        a = x
        for w in wts:
            a = a @ w
        for r, w in zip(rel, wts):
            r @ w.T

    def fastlrp_work():
        lrp(x)

    flops = 2 * 2 * args.batch * sum(i * o for i, o in zip(SIZES[:-1], SIZES[1:]))
    for f in (numpy_work, fastlrp_work):
        f()
    times = {"numpy": [], "fastlrp": []}
    for _ in range(args.repeat):
        for name, f in (("numpy", numpy_work), ("fastlrp", fastlrp_work)):
            time.sleep(0.3)  # OpenBLAS's threads spin for a while after a call: let them park
            t = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratios = sorted(n / f for n, f in zip(times["numpy"], times["fastlrp"]))
    print(f"isa {fl.build_info()['isa']}, threads {args.threads}, batch {args.batch}, float64, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"numpy DGEMMs (forward + backward, {flops / 1e9:.2f} GFLOP): {med['numpy'] * 1e3:.1f} ms "
          f"({flops / med['numpy'] / 1e9:.1f} GFLOP/s)")
    print(f"fastlrp Epsilon explanation:              {med['fastlrp'] * 1e3:.1f} ms "
          f"({flops / med['fastlrp'] / 1e9:.1f} GFLOP/s of the same work)")
    print(f"fastlrp vs numpy's DGEMMs: median {med['numpy'] / med['fastlrp']:.2f}x, "
          f"min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x over {args.repeat} paired runs")


if __name__ == "__main__":
    main()
