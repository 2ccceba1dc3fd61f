"""fastlrp.evaluate against Quantus 0.6 and against its own forward pass (the evaluation issue's
figures).

Region perturbation, MoRF, zero fill, on the same images, relevance (fastlrp's
`epsilon_plus_flat`) and targets for both: `fl.evaluate.perturbation` on the fastlrp model and
`quantus.RegionPerturbation(normalise=False, perturb_baseline=0.0)` on a torch copy of it (the
curves agree: tests/test_evaluate.py). Cases: LeNet-5 (random weights), 256 random 28x28 images,
2x2 regions, 100 steps; VGG-16 (random weights), 8 random 224x224 images, 4x4 regions, 49 steps.
Both on the same threads (`--threads`, torch.set_num_threads too). Reported: seconds per
evaluation (median of the repeats, min-max), samples x steps per second, the ratio to Quantus,
and one perturbation step against one batched fastlrp forward pass of the same images (the
limit: a step cannot cost less than its forward pass).

    python bench/bench_evaluate.py [--threads 2] [--repeat 3] [--vgg-repeat 1] [--skip-vgg]
"""

import argparse
import time

import numpy as np

import fastlrp as fl
from fastlrp.bench._util import import_torchvision, machine
from fastlrp.bench.nets import build, lenet_spec, to_torch, vgg16_spec


def median(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(min(times)), float(max(times))


def case(name, spec, n, region, steps, repeat, torch, quantus):
    model, params = build(spec[0], seed=0)
    tmodel = to_torch(params, torch)
    x = np.random.default_rng(0).normal(size=(n,) + spec[1]).astype(np.float32)
    e = fl.LRP(model, "epsilon_plus_flat")(x)
    rel, targets = e.relevance, e.targets

    def ours():
        return fl.evaluate.perturbation(model, x, rel, target=targets, order="morf", region=region, steps=steps,
                                        fill=0.0)

    metric = quantus.RegionPerturbation(patch_size=region, order="morf", regions_evaluation=steps, normalise=False,
                                        perturb_baseline=0.0, disable_warnings=True)

    def theirs():
        return metric(model=tmodel, x_batch=x, y_batch=targets, a_batch=rel, device="cpu", softmax=False)

    a, b = ours(), np.asarray(theirs())  # warm-up, and the two agree
    err = np.abs(a.drops - b).max() / max(1e-12, np.abs(b).max())
    t_ours = median(ours, repeat)
    t_theirs = median(theirs, repeat)
    model(x)
    t_fwd = median(lambda: model(x), max(5, repeat))
    per_step = t_ours[0] / (steps + 1)  # steps + 1 forward passes: the unperturbed one too
    return (f"| {name} | {n} | {region}x{region} | {steps} | {t_ours[0]:.3f} ({t_ours[1]:.3f}-{t_ours[2]:.3f}) "
            f"| {n * steps / t_ours[0]:,.0f} | {t_theirs[0]:.2f} ({t_theirs[1]:.2f}-{t_theirs[2]:.2f}) "
            f"| **{t_theirs[0] / t_ours[0]:.1f}x** | {t_fwd[0] * 1e3:.1f} ms | {per_step / t_fwd[0]:.2f} | {err:.1e} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vgg-repeat", type=int, default=1)
    ap.add_argument("--skip-vgg", action="store_true")
    args = ap.parse_args()
    import torch

    import_torchvision()  # quantus imports torchvision, which needs the shim beside this torch
    import quantus

    torch.set_num_threads(args.threads)
    fl.set_num_threads(args.threads)
    print(f"machine: {machine()}; quantus {quantus.__version__}, torch {torch.__version__}; "
          f"{args.threads} threads")
    print()
    print("| model | images | region | steps | fastlrp s (min-max) | samples x steps / s | Quantus s (min-max) "
          "| speed-up | one fastlrp forward | step / forward | curves' max rel. difference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(case("LeNet-5", lenet_spec(), 256, 2, 100, args.repeat, torch, quantus), flush=True)
    if not args.skip_vgg:
        print(case("VGG-16", vgg16_spec(), 8, 4, 49, args.vgg_repeat, torch, quantus), flush=True)


if __name__ == "__main__":
    main()
