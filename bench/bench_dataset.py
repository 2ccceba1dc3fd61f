"""Whole-dataset explanation: peak memory and throughput for 10^4 and 10^6 Adult rows.

    python bench/bench_dataset.py [--rows 10000,1000000] [--batch-size 8192]

Each size runs in a fresh process: the encoded Adult test rows, tiled to N rows, are written
to an .npy memmap; the shipped income MLP explains them with w2_epsilon in chunks, writing the
relevance to another memmap. Peak anonymous memory (RssAnon, sampled every 5 ms: memmapped
file pages are page cache, not the process's own memory) is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, threading, time, numpy as np
import fastlrp as fl
from fastlrp.datasets import load_adult, load_income_model, split_indices
rows, batch, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024
model, enc, meta = load_income_model()
table, y = load_adult()
_, test = split_indices(len(y), meta["split"]["seed"], meta["split"]["test_fraction"])
base_rows = enc.transform(table, test)
x = np.lib.format.open_memmap(os.path.join(folder, "x.npy"), mode="w+", dtype=np.float32, shape=(rows, base_rows.shape[1]))
for i in range(0, rows, len(base_rows)):
    x[i:i + len(base_rows)] = base_rows[: rows - i]
x.flush()
del base_rows, table
out = np.lib.format.open_memmap(os.path.join(folder, "r.npy"), mode="w+", dtype=np.float32, shape=x.shape)
lrp = fl.LRP(model, "w2_epsilon")
peak, stop = [anon()], False
def sample():
    while not stop:
        peak[0] = max(peak[0], anon()); time.sleep(0.005)
before = anon()
t = threading.Thread(target=sample); t.start()
t0 = time.perf_counter()
e = lrp(x, batch_size=batch, out=out)
dt = time.perf_counter() - t0
stop = True; t.join()
print(json.dumps({"rows": rows, "seconds": dt, "before": before, "peak": max(peak[0], anon()),
                  "relevance_sum": float(np.asarray(out[:1000]).sum())}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,1000000")
    parser.add_argument("--batch-size", type=int, default=8192)
    args = parser.parse_args()
    print("| rows | batch size | seconds | rows/s | anonymous memory before | peak during | growth |")
    print("|---|---|---|---|---|---|---|")
    for rows in [int(r) for r in args.rows.split(",")]:
        with tempfile.TemporaryDirectory() as folder:
            res = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(rows), str(args.batch_size), folder],
                                            capture_output=True, text=True, check=True).stdout)
        mib = 2**20
        print(f"| {rows:,} | {args.batch_size} | {res['seconds']:.2f} | {rows / res['seconds']:,.0f} | "
              f"{res['before'] / mib:.0f} MiB | {res['peak'] / mib:.0f} MiB | {(res['peak'] - res['before']) / mib:.1f} MiB |")


if __name__ == "__main__":
    main()
