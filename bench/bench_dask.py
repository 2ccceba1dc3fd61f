"""fastlrp on Dask against one process: the distribution's overhead (the Dask issue's figure).

Two workloads: 10^6 rows of the UCI Adult table (the shipped data repeated, encoded) through the
shipped income MLP with the `epsilon` composite, in chunks of 10^5 rows; and 2*10^4 random
28x28 images through LeNet-5 (random weights) with `epsilon_plus_flat`, in chunks of 2,000.
Each is explained three ways, in the same run:

- one process, 2 threads: `lrp(x, batch_size=chunk)`, x in memory;
- one process, 1 thread: the same;
- a `LocalCluster` of 2 worker processes x 1 thread: `fl.dask.explain(lrp, x)` with x already
  held by the workers (persisted before the timer starts, as a loaded dataset would be), the
  relevance persisted on the workers (where `to_zarr` would write it from).

Both sides explain the same chunks and keep the relevance in memory, so the difference is what
Dask adds: the task graph, scheduling, the model's transfer to the workers (in every timed run:
each run builds a new LRP, as a user's script would) and two processes instead of two threads.
Reported: samples/s, medians of the repeats (min-max), and the cluster's overhead against the
one-process, 2-thread run: 1 - rate(cluster) / rate(1 process, 2 threads). Target: <= 10 % on
the MLP.

Then memory: 10^5 and 10^6 Adult rows (chunks of 25,000, made by the workers) explained by a
fresh 2-worker cluster into a zarr store in a temporary folder (`e.to_zarr`): each worker's peak
RSS (`getrusage`), which must not grow with N, and what this process (client and scheduler)
allocated meanwhile (`tracemalloc`).

    python bench/bench_dask.py [--repeat 5] [--rows 1000000] [--images 20000]
"""

import argparse
import tempfile
import time
import tracemalloc

import numpy as np

import dask
import dask.array as da
import distributed

import fastlrp as fl
from fastlrp.bench._util import machine
from fastlrp.bench.nets import build, lenet_spec
from fastlrp.datasets import adult_rows, load_income_model


def median_rate(fn, n, repeat):
    fn()  # warm-up: loads, first native networks, worker imports
    rates = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return float(np.median(rates)), float(min(rates)), float(max(rates))


def images(start, stop):
    """Images start:stop of a fixed random set (each chunk of 2,000 made from its own seed)."""
    return np.random.default_rng(start).normal(size=(stop - start, 1, 28, 28)).astype(np.float32)


def workloads(rows, n_images):
    mlp, _, _ = load_income_model()
    lenet, _ = build(lenet_spec()[0], seed=0)
    return [("income MLP, Adult rows", mlp, "epsilon", adult_rows, rows, 100_000, (108,)),
            ("LeNet-5, 28x28 images", lenet, "epsilon_plus_flat", images, n_images, 2_000, (1, 28, 28))]


def chunked(make, n, chunk, sample):
    """The same data as numpy (for one process) and as a dask array whose chunks the workers
    make themselves (nothing large passes through the scheduler)."""
    bounds = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
    x = np.concatenate([make(s, e) for s, e in bounds])
    xd = da.concatenate([da.from_delayed(dask.delayed(make)(s, e), shape=(e - s,) + sample, dtype=np.float32)
                         for s, e in bounds])
    return x, xd


def memory_row(n_rows, folder, chunk=25_000):
    model, _, _ = load_income_model()
    bounds = [(s, min(n_rows, s + chunk)) for s in range(0, n_rows, chunk)]
    x = da.concatenate([da.from_delayed(dask.delayed(adult_rows)(s, e), shape=(e - s, 108), dtype=np.float32)
                        for s, e in bounds])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        tracemalloc.start()
        t = time.perf_counter()
        fl.dask.explain(fl.LRP(model, "epsilon"), x).to_zarr(f"{folder}/rel{n_rows}.zarr")
        seconds = time.perf_counter() - t
        _, client_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks = client.run(fl.dask.peak_rss_mib)
    return (f"| {n_rows:,} | {n_rows * 108 * 4 / 2**20:,.0f} MiB | {max(peaks.values()):,.0f} MiB "
            f"| {client_peak / 2**20:.1f} MiB | {seconds:.1f} s |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--memory-only", action="store_true", help="only the memory table")
    args = ap.parse_args()

    print(f"machine: {machine()}; fastlrp isa {fl.build_info()['isa']}; dask {dask.__version__}, "
          f"distributed {distributed.__version__}; medians of {args.repeat} (min-max), samples/s")
    print()
    if not args.memory_only:
        speed(args)
    print()
    print("| Adult rows to zarr | relevance size | worker peak RSS (max of 2) | allocated by this process | time |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n in (100_000, 1_000_000):
            print(memory_row(n, folder), flush=True)


def speed(args):
    print("| workload | N | chunk | 1 process, 2 threads | 1 process, 1 thread | cluster 2 workers x 1 thread "
          "| cluster overhead vs 2 threads |")
    print("|---|---|---|---|---|---|---|")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=50)
    client = distributed.Client(cluster)
    try:
        for name, model, composite, make, n, chunk, sample in workloads(args.rows, args.images):
            x, xd = chunked(make, n, chunk, sample)
            local = {}
            for threads in (2, 1):
                fl.set_num_threads(threads)
                local[threads] = median_rate(lambda: fl.LRP(model, composite)(x, batch_size=chunk), n, args.repeat)
            fl.set_num_threads(None)
            xd = client.persist(xd)
            distributed.wait(xd)

            def on_cluster():
                rel = client.persist(fl.dask.explain(fl.LRP(model, composite), xd).relevance)
                distributed.wait(rel)
                del rel

            dist = median_rate(on_cluster, n, args.repeat)
            overhead = 1 - dist[0] / local[2][0]

            def cell(r):
                return f"{r[0]:,.0f} ({r[1]:,.0f}-{r[2]:,.0f})"

            print(f"| {name} | {n:,} | {chunk:,} | {cell(local[2])} | {cell(local[1])} | {cell(dist)} "
                  f"| {100 * overhead:+.1f} % |", flush=True)
            del xd
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
