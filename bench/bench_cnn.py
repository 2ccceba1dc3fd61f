"""LeNet and VGG-16 benchmark: fastlrp against zennit in one run, plus the GFLOP/s of
fastlrp's convolutions and VGG-16's peak memory.

    python bench/bench_cnn.py [--nets lenet,vgg16] [--quick] [--out results.md]

MLP, LeNet and VGG-16 (random He weights, seed 0, float32). One sample = one
image explained (forward + LRP of the predicted class, seeded with logit * onehot(argmax)).
Composites: epsilon_plus_flat (zennit EpsilonPlusFlat) and epsilon_gamma_box(-3, 3) (zennit
EpsilonGammaBox(low=-3, high=3)). Every case first checks that the relevances agree.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastlrp as fl  # noqa: E402
from fastlrp import composites  # noqa: E402
from fastlrp._native import core  # noqa: E402
from fastlrp.model import to_internal  # noqa: E402

from fastlrp.bench._util import emit, import_zennit, machine, rate, rel_error, table, timeit  # noqa: E402
from fastlrp.bench.nets import build, conv_flops, lenet_spec, to_torch, vgg16_spec  # noqa: E402

NETS = {"lenet": (lenet_spec, (1, 64, 256)), "vgg16": (vgg16_spec, (1, 8))}
CASES = {"epsilon_plus_flat": lambda: "epsilon_plus_flat",
         "epsilon_gamma_box(-3, 3)": lambda: composites.epsilon_gamma_box(-3.0, 3.0)}


def zennit_attributor(peer, torch_model, case):
    torch, zennit = peer
    comp = zennit.composites.EpsilonPlusFlat() if case.startswith("epsilon_plus") else \
        zennit.composites.EpsilonGammaBox(low=-3.0, high=3.0)
    attributor = zennit.attribution.Gradient(torch_model, comp)
    attributor.__enter__()

    def seed(out):
        return out * torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)

    def explain(x):
        return attributor(torch.from_numpy(x), seed)[1]

    return explain, attributor


def conv_layer_table(threads):
    """Forward GFLOP/s of each distinct VGG-16 conv layer alone (batch 1, internal layout)."""
    rng = np.random.default_rng(0)
    rows = []
    for c_in, c_out, hw in [(3, 64, 224), (64, 64, 224), (64, 128, 112), (128, 128, 112), (128, 256, 56),
                            (256, 256, 56), (256, 512, 28), (512, 512, 28), (512, 512, 14)]:
        layer = fl.Conv2d((rng.normal(size=(c_out, c_in, 3, 3)) * 0.05).astype(np.float32), padding=1)
        model = fl.Sequential([layer])
        x = rng.normal(size=(1, c_in, hw, hw)).astype(np.float32)
        net = model._network(np.float32, model.shapes(x.shape[1:]))
        xi = to_internal(x)
        t = timeit(lambda: net.forward(xi), min_time=0.1, repeats=5)[0]
        flops = 2 * c_out * c_in * 9 * hw * hw
        rows.append([f"{c_in}→{c_out}, {hw}×{hw}", f"{flops / 1e9:.2f}", f"{flops / t / 1e9:.0f}"])
    return rows


def peak_memory_vgg(batch):
    """(RSS with the model built, peak RSS while explaining one batch) of a fresh process that
    only runs fastlrp. The peak is reset after building (the benchmark's random-weight builder
    makes float64 temporaries that are not fastlrp's)."""
    code = f"""
import gc, sys, numpy as np
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import fastlrp as fl
from fastlrp.bench.nets import build, vgg16_spec
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
spec, shape = vgg16_spec()
model, _ = build(spec)
x = np.random.default_rng(1).normal(size=({batch},) + shape).astype(np.float32)
gc.collect()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS")
fl.LRP(model, "epsilon_plus_flat")(x)
print(base, status("VmHWM"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="lenet,vgg16")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--out")
    args = parser.parse_args()
    peer, why = import_zennit()
    torch = peer[0] if peer else None
    lines = [f"Machine: {machine()}",
             f"Measured FMA ceiling: {core.fma_peak(0.5, 1):.0f} GFLOP/s on 1 thread, "
             f"{core.fma_peak(0.5, 2):.0f} on 2", ""]
    if peer is None:
        lines.append(f"zennit skipped: {why}")
    repeats = 3 if args.quick else 5
    rows = []
    for name in args.nets.split(","):
        spec_fn, batches = NETS[name]
        spec, shape = spec_fn()
        model, params = build(spec)
        tmodel = to_torch(params, torch) if peer else None
        flops = conv_flops(model, shape)
        for threads in [int(t) for t in args.threads.split(",")]:
            fl.set_num_threads(threads)
            if torch is not None:
                torch.set_num_threads(threads)
            for batch in batches:
                x = np.random.default_rng(1).normal(size=(batch,) + shape).astype(np.float32)
                min_time = 0.05 if name == "lenet" else 0.0
                reps = repeats if name == "lenet" else max(2, repeats - 2)
                t_fwd = timeit(lambda: model.forward(x), min_time=min_time, repeats=reps)[0]
                t_tf = None
                if peer is not None:
                    with torch.no_grad():
                        t_tf = timeit(lambda: tmodel(torch.from_numpy(x)), min_time=min_time, repeats=reps)[0]
                rows.append([name, batch, threads, "forward only", rate(batch, t_fwd), f"{flops * batch / t_fwd / 1e9:.0f}",
                             rate(batch, t_tf) if t_tf else "", f"{t_tf / t_fwd:.2f}×" if t_tf else "", ""])
                for case, make in CASES.items():
                    lrp = fl.LRP(model, make())
                    e = lrp(x)
                    row = [name, batch, threads, case]
                    t_fl, lo, hi = timeit(lambda: lrp(x), min_time=min_time, repeats=reps)
                    row += [rate(batch, t_fl), ""]
                    if peer is not None:
                        explain, attributor = zennit_attributor(peer, tmodel, case)
                        z = explain(x).detach().numpy()
                        err = rel_error(e.relevance, z)
                        t_z = timeit(lambda: explain(x), min_time=min_time, repeats=reps)[0]
                        attributor.__exit__(None, None, None)
                        row += [rate(batch, t_z), f"**{t_z / t_fl:.1f}×**", f"{err:.1e}"]
                    rows.append(row)
                    print(" | ".join(map(str, row)), file=sys.stderr)
    headers = ["net", "batch", "threads", "composite", "fastlrp samples/s", "fastlrp conv+dense GFLOP/s (forward)",
               "zennit samples/s", "fastlrp / zennit", "rel. diff to zennit"]
    lines += [table(headers, rows), ""]
    if "vgg16" in args.nets:
        fl.set_num_threads(int(args.threads.split(",")[-1]))
        lines += ["VGG-16 convolutions alone (forward, batch 1, fastlrp's internal layout):", "",
                  table(["layer", "GFLOP", "GFLOP/s"], conv_layer_table(int(args.threads.split(",")[-1]))), ""]
        spec, shape = vgg16_spec()
        model, _ = build(spec)
        weights = sum(l.weight.nbytes + l.bias.nbytes for l in model.layers if hasattr(l, "weight"))
        acts = sum(int(np.prod(s)) for s in model.shapes(shape)) * 4 * 8
        base, peak = peak_memory_vgg(8)
        lines.append(f"VGG-16, batch 8, epsilon_plus_flat: peak RSS {peak / 2**30:.2f} GiB of the whole process "
                     f"(before the call, with the model and input: {base / 2**30:.2f} GiB); weights "
                     f"{weights / 2**30:.2f} GiB + all activations of the batch {acts / 2**30:.2f} GiB = "
                     f"{(weights + acts) / 2**30:.2f} GiB; peak / (weights + activations) = {peak / (weights + acts):.2f}")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
