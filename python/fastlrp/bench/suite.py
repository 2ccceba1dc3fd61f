"""The benchmark suite: fastlrp against every peer that is importable, in one run.

    python -m fastlrp.bench [--quick] [--nets mlp,lenet,vgg16,toolbox-mlp,toolbox-lenet5,
                                              resnet18,resnet50,densenet121,mobilenet_v2,efficientnet_b0]
                            [--threads 1,2] [--repeat N] [--json out.json] [--plot ratios.png]
                            [--out table.md]
    fastlrp bench ...        (the same)

What a figure means:

- one **sample** is one input explained: the forward pass and the LRP pass of the predicted
  class, relevance seeded with ``logit * onehot(argmax)`` (toolbox nets: ``forward(X)`` then
  ``lrp(Y * onehot)``, as a toolbox script does);
- **samples/s** is the batch size over the median time of one call, after a warm-up; min-max
  of the rounds in brackets. Threads: fastlrp's (and torch's) thread count of the row;
- ``--repeat N`` runs everything N times (fastlrp and its peers side by side each time) and adds
  the median of each ratio over the runs with its min-max: on a shared machine one run's ratio
  moves by 10-30 % with the neighbours' load;
- **GFLOP/s** counts the Dense/Conv multiply-adds x 2 of one forward pass per sample: the
  work a forward pass does, not what the LRP pass adds (2-4x more);
- **peak MiB** is the growth of the process's peak resident memory during the first fastlrp
  call of the case (its workspace, and the rule's prepared weights; later calls reuse both);
- peers: ``forward`` is fastlrp's own forward pass (the floor: no LRP can be cheaper);
  ``numpy`` is fastlrp's plain-numpy reference from the formulas (the MLP up to batch 64; the
  toolbox nets: the toolbox's algorithm in numpy, float64), only where it finishes in seconds; ``zennit`` and
  ``captum`` (PyTorch, same weights) when importable. A ratio above 1 means fastlrp is faster.
- graph nets (``resnet18``, ``resnet50``, ``densenet121``; only when named in ``--nets``):
  torchvision's definitions with random weights and BatchNorm statistics (BatchNorm eps 0,
  see ``nets.torchvision_graph``), loaded by ``fl.from_torch``; zennit runs with its
  ``ResNetCanonizer`` on the ResNets and without a canonizer on DenseNet (its BatchNorm
  merging does not apply there), as a zennit user has them; ``mobilenet_v2`` and
  ``efficientnet_b0`` (depthwise convolutions, gates) against zennit with
  ``SequentialMergeBatchNorm``, which differs by design (zennit passes gradients through the
  gates and the SiLU/ReLU6 activations), so its difference is shown beside its time;
- before timing, every case checks that fastlrp's relevance equals the peer's: relative
  difference (``||a - b|| / ||b||``) below 1e-3 against zennit and captum (float32), below
  1e-9 against the numpy references (fastlrp in float64). captum is comparable for ``Epsilon``
  only (its rules differ elsewhere). A peer that disagrees is shown as DIFFERENT, not timed.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time

import numpy as np

from .. import composites
from . import nets
from ._util import cap_peer_isa, import_zennit, machine, rate, rel_error, table, timeit

RULES = {"Epsilon": lambda: _epsilon(), "epsilon_plus_flat": lambda: "epsilon_plus_flat",
         "epsilon_gamma_box(-3, 3)": lambda: composites.epsilon_gamma_box(-3.0, 3.0),
         "epsilon_alpha2_beta1": lambda: "epsilon_alpha2_beta1"}
TOOLBOX_RULES = {"epsilon": ("epsilon", 0.01), "alphabeta": ("alphabeta", 2.0)}
NETS = {"mlp": ((1, 64, 1024), (1, 64)), "lenet": ((1, 64, 256), (1, 64)), "vgg16": ((1, 8), ()),
        "toolbox-mlp": ((1, 16, 256), (16,)), "toolbox-lenet5": ((1, 16, 64), (16,)),
        "resnet18": ((1, 8), ()), "resnet50": ((1, 8), ()), "densenet121": ((1, 8), ()),
        "mobilenet_v2": ((1, 16), ()), "efficientnet_b0": ((1, 16), ())}
#: nets that --quick and the default run leave out (minutes per case)
BIG = ("vgg16",) + nets.GRAPH_NETS


def _epsilon():
    from ..rules import Epsilon

    return Epsilon()


def peak_growth(fn) -> float | None:
    """MiB by which the process's peak RSS grows during fn() (Linux; None elsewhere)."""
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return None

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak (VmHWM) restarts from the current RSS
        base = status("VmRSS")
        fn()
        return (status("VmHWM") - base) / 2**20
    except OSError:
        fn()
        return None


def _mib(v) -> str:
    return "" if v is None else f"{v:.0f}"


class Peers:
    """The PyTorch peers, each loaded once, or the one-line reason it is skipped."""

    def __init__(self):
        self.zennit, self.zennit_why = import_zennit()
        self.torch = self.zennit[0] if self.zennit else None
        self.captum, self.captum_why = None, "torch not importable"
        if self.torch is not None:
            try:
                from captum.attr import LRP as CaptumLRP

                self.captum, self.captum_why = CaptumLRP, None
            except Exception as exc:  # noqa: BLE001 - any failure means: no captum peer
                self.captum_why = f"captum not importable ({type(exc).__name__}: {str(exc)[:80]})"

    def zennit_explainer(self, tmodel, rule, canonizers=None):
        """zennit's explainer for a rule; ``canonizers`` (a function giving a fresh list) for
        graph models: ResNetCanonizer for the ResNets, as a zennit user has."""
        torch, zennit = self.zennit
        zc, zr = zennit.composites, zennit.rules
        can = canonizers() if canonizers else None
        comp = {"Epsilon": lambda: zc.LayerMapComposite([(torch.nn.Linear, zr.Epsilon()), (torch.nn.Conv2d, zr.Epsilon()),
                                                         (zennit.layer.Sum, zr.Norm())], canonizers=can),
                "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(canonizers=can),
                "epsilon_gamma_box(-3, 3)": lambda: zc.EpsilonGammaBox(low=-3.0, high=3.0, canonizers=can),
                "epsilon_alpha2_beta1": lambda: zc.EpsilonAlpha2Beta1(canonizers=can)}[rule]()
        attributor = zennit.attribution.Gradient(tmodel, comp)
        attributor.__enter__()

        def seed(out):
            return out * torch.nn.functional.one_hot(out.argmax(1), out.shape[1]).to(out.dtype)

        def explain(x):
            return attributor(torch.from_numpy(x), seed)[1].detach().numpy()

        return explain, lambda: attributor.__exit__(None, None, None)

    def captum_explainer(self, tmodel):
        torch = self.torch
        from captum.attr._utils.lrp_rules import IdentityRule

        for m in tmodel.modules():  # captum has no default rule for these: they pass relevance on
            if isinstance(m, (torch.nn.Flatten, torch.nn.Dropout)):
                m.rule = IdentityRule()
        lrp = self.captum(tmodel)

        targets = {}  # the predicted class per input array, found once: captum's attribute() runs the
        # forward pass itself, so a forward for the target inside the timed call would count twice

        def explain(x):
            xt = torch.from_numpy(x).requires_grad_(True)
            if id(x) not in targets:
                with torch.no_grad():
                    targets[id(x)] = (x, tmodel(xt).argmax(1))
            return lrp.attribute(xt, target=targets[id(x)][1]).detach().numpy()

        return explain


def _case(rows, records, **kw):
    records.append(kw)
    cells = [kw["net"], kw["batch"], kw["threads"], kw["rule"], kw["samples_s"], kw.get("range", ""),
             kw.get("gflops", ""), kw.get("peak_mib", "")]
    for peer in ("forward", "numpy", "zennit", "captum"):
        r = kw.get("peers", {}).get(peer)
        if peer == "forward" and isinstance(r, dict):  # the LRP call's cost in forward passes
            cells.append(f"{1 / r['ratio']:.2f} ({rate(1, 1 / r['samples_s'])})")
            continue
        cell = "" if r is None else (r if isinstance(r, str) else f"**{r['ratio']:.1f}x** ({rate(1, 1 / r['samples_s'])})")
        if isinstance(r, dict) and peer == "zennit" and r.get("rel_diff", 0) > 1e-6:
            cell += f" (differs by design: {r['rel_diff']:.0e})"
        cells.append(cell)
    tf = kw.get("torch_forward")
    cells.append("" if tf is None else f"{tf['ratio']:.2f}x ({rate(1, 1 / tf['samples_s'])})")
    rows.append(cells)
    print(" | ".join(str(c) for c in cells), file=sys.stderr, flush=True)


def run_native(name, batches, threads_list, rules, peers, rows, records, quick):
    import fastlrp as fl

    from .. import reference

    canonizers = None
    if name in nets.GRAPH_NETS:
        if peers.torch is None:
            print(f"{name}: skipped (torch is not importable: {peers.zennit_why})", file=sys.stderr)
            return
        try:
            model, tmodel, shape = nets.torchvision_graph(name, peers.torch)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            return
        if name.startswith("resnet") and peers.zennit is not None:
            import zennit.torchvision

            canonizers = lambda: [zennit.torchvision.ResNetCanonizer()]  # noqa: E731
        elif name in nets.MOBILE_NETS and peers.zennit is not None:
            import zennit.canonizers

            canonizers = lambda: [zennit.canonizers.SequentialMergeBatchNorm()]  # noqa: E731
    else:
        spec, shape = {"mlp": nets.mlp_spec, "lenet": nets.lenet_spec, "vgg16": nets.vgg16_spec}[name]()
        model, params = nets.build(spec)
        tmodel = nets.to_torch(params, peers.torch) if peers.torch is not None else None
    flops = nets.conv_flops(model, shape)
    big = name in BIG
    for threads in threads_list:
        fl.set_num_threads(threads)
        if peers.torch is not None:
            peers.torch.set_num_threads(threads)
        for batch in batches:
            x = np.random.default_rng(batch).normal(size=(batch,) + shape).astype(np.float32)
            min_time, reps = (0.0, 2 if quick else 3) if big else (0.05, 3 if quick else 5)
            t_fwd = timeit(lambda: model.forward(x), min_time=min_time, repeats=reps)[0]
            t_torch = None
            if tmodel is not None and name in nets.GRAPH_NETS:  # graph issue: forward at least torch's
                with peers.torch.no_grad():
                    xt = peers.torch.from_numpy(x)
                    t_torch = timeit(lambda: tmodel(xt), min_time=min_time, repeats=reps)[0]
            for rule_name in rules:
                lrp = fl.LRP(model, RULES[rule_name]())
                box = {}
                peak = peak_growth(lambda: box.setdefault("e", lrp(x)))  # the first call: workspace + prepared weights
                t, lo, hi = timeit(lambda: lrp(x), min_time=min_time, repeats=reps)
                if name in nets.GRAPH_NETS and peak is not None:  # the graph issue's memory bound
                    # the first call's growth holds the core's weights (converted to the input's
                    # dtype, with the rule's prepared copies), every buffer and the workspace
                    w_b, a_b = nets.graph_memory_floor(model, shape, batch, x.dtype.itemsize)
                    print(f"{name} b{batch} {rule_name}: peak growth {peak:.0f} MiB = {peak / ((w_b + a_b) / 2**20):.2f}x "
                          f"(weights {w_b / 2**20:.0f} + kept activations {a_b / 2**20:.0f} MiB)", file=sys.stderr, flush=True)
                res = dict(net=name, batch=batch, threads=threads, rule=rule_name, samples_s=rate(batch, t),
                           range=f"{rate(batch, hi)}-{rate(batch, lo)}", gflops=f"{flops * batch / t / 1e9:.0f}",
                           peak_mib=_mib(peak), peers={}, seconds=t)
                res["peers"]["forward"] = {"samples_s": batch / t_fwd, "ratio": t_fwd / t}
                if t_torch is not None:
                    res["torch_forward"] = {"samples_s": batch / t_torch, "ratio": t_torch / t_fwd}
                # the reference builds an (N, in, out) tensor per layer (for a convolution from its
                # matrix read off with basis vectors: minutes per LeNet image): the MLP up to batch 64
                if threads == threads_list[0] and name == "mlp" and batch <= 64:
                    ref = reference.lrp(model.layers, lrp.rules, x.astype(np.float64))[0]
                    err = rel_error(lrp(x.astype(np.float64)).relevance, ref)  # equal in float64
                    if err > 1e-9:
                        res["peers"]["numpy"] = f"DIFFERENT ({err:.0e})"
                    else:
                        t_ref = timeit(lambda: reference.lrp(model.layers, lrp.rules, x), min_time=0.0,
                                       repeats=1 if quick else 3)[0]
                        res["peers"]["numpy"] = {"samples_s": batch / t_ref, "ratio": t_ref / t, "rel_diff": err}
                if peers.zennit is not None:
                    # agreement is checked in float64 (float32 rounding of nearly cancelling
                    # pre-activations differs between any two implementations); timed in float32
                    explain64, close64 = peers.zennit_explainer(copy.deepcopy(tmodel).double(), rule_name, canonizers)
                    x64 = x[:2].astype(np.float64) if big else x.astype(np.float64)  # two samples suffice
                    err = rel_error(lrp(x64).relevance, explain64(x64))
                    close64()
                    explain, close = peers.zennit_explainer(tmodel, rule_name, canonizers)
                    # DenseNet: zennit has no canonizer for a BatchNorm before a conv and passes its
                    # gradient, where fastlrp applies Epsilon to it (docs/rules.md): the two differ by
                    # design; the time is what a zennit user has, shown with the difference
                    # MobileNet/EfficientNet: zennit passes the gradient through the gates (x * g)
                    # and the SiLU/ReLU6/Hardswish activations, fastlrp applies docs/rules.md's gate
                    # and Pass rules
                    differs_by_design = name == "densenet121" or name in nets.MOBILE_NETS
                    if err > 1e-6 and not differs_by_design:
                        res["peers"]["zennit"] = f"DIFFERENT ({err:.0e})"
                    else:
                        t_z = timeit(lambda: explain(x), min_time=min_time, repeats=reps)[0]
                        res["peers"]["zennit"] = {"samples_s": batch / t_z, "ratio": t_z / t, "rel_diff": err}
                    close()
                if peers.captum is not None and rule_name == "Epsilon":
                    try:  # captum's EpsilonRule has epsilon 1e-9: checked against fastlrp's Epsilon(1e-9)
                        from ..rules import Epsilon

                        x64 = x.astype(np.float64)
                        ours64 = fl.LRP(model, Epsilon(1e-9))(x64).relevance
                        err = rel_error(ours64, peers.captum_explainer(copy.deepcopy(tmodel).double())(x64))
                        explain = peers.captum_explainer(tmodel)
                    except Exception as exc:  # noqa: BLE001 - the peer's failure is a table entry
                        res["peers"]["captum"] = f"failed ({type(exc).__name__}: {str(exc)[:40]})"
                    else:
                        if err > 1e-6:
                            res["peers"]["captum"] = f"DIFFERENT ({err:.0e})"
                        else:
                            t_c = timeit(lambda: explain(x), min_time=min_time, repeats=reps)[0]
                            res["peers"]["captum"] = {"samples_s": batch / t_c, "ratio": t_c / t, "rel_diff": err}
                _case(rows, records, **res)


def run_toolbox(name, batches, threads_list, rules, rows, records, quick):
    import fastlrp as fl

    from ..toolbox import reference as tref

    layers, shape = nets.toolbox_mlp_layers() if name == "toolbox-mlp" else nets.toolbox_lenet5_layers()
    net = nets.toolbox_model(layers)
    flops = nets.toolbox_flops(layers, shape)
    for threads in threads_list:
        fl.set_num_threads(threads)
        for batch in batches:
            X = np.random.default_rng(batch).uniform(-1, 1, size=(batch,) + shape)
            Y = net.forward(X)
            R = Y * (Y == Y.max(axis=1, keepdims=True))
            t_fwd = timeit(lambda: net.forward(X), min_time=0.05, repeats=3 if quick else 5)[0]
            for rule_name in rules:
                rule, param = TOOLBOX_RULES[rule_name]

                def ours():
                    net.forward(X)
                    return net.lrp(R, rule, param)

                peak = peak_growth(ours)
                t, lo, hi = timeit(ours, min_time=0.05, repeats=3 if quick else 5)
                res = dict(net=name, batch=batch, threads=threads, rule=f"toolbox '{rule}'", samples_s=rate(batch, t),
                           range=f"{rate(batch, hi)}-{rate(batch, lo)}", gflops=f"{flops * batch / t / 1e9:.0f}",
                           peak_mib=_mib(peak), peers={}, seconds=t)
                res["peers"]["forward"] = {"samples_s": batch / t_fwd, "ratio": t_fwd / t}
                if threads == threads_list[0]:
                    theirs = tref.lrp(layers, X, R, [(rule, param)] * len(layers))
                    err = rel_error(ours(), theirs)
                    if err > 1e-9:
                        res["peers"]["numpy"] = f"DIFFERENT ({err:.0e})"
                    else:
                        slow = batch * (1 if "lenet" in name else 50) >= 64 * 50
                        t_np = timeit(lambda: tref.lrp(layers, X, R, [(rule, param)] * len(layers)), min_time=0.0,
                                      repeats=1 if quick or slow else 3, max_calls=1 if slow else None)[0]
                        res["peers"]["numpy"] = {"samples_s": batch / t_np, "ratio": t_np / t, "rel_diff": err}
                res["peers"]["zennit"] = res["peers"]["captum"] = "n/a (toolbox rules)"
                _case(rows, records, **res)


def plot_ratios(records, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, series = [], {}
    for r in records:
        labels.append(f"{r['net']} b{r['batch']} t{r['threads']}\n{r['rule']}")
        for peer in ("numpy", "zennit", "captum"):
            v = r["peers"].get(peer)
            series.setdefault(peer, []).append(v["ratio"] if isinstance(v, dict) else np.nan)
    series = {k: v for k, v in series.items() if not np.all(np.isnan(v))}
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(labels)), 5))
    width = 0.8 / max(1, len(series))
    pos = np.arange(len(labels))
    for k, (peer, vals) in enumerate(series.items()):
        ax.bar(pos + k * width, vals, width, label=f"vs {peer}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("fastlrp speed-up (x, log scale; >1: fastlrp faster)")
    ax.set_xticks(pos + width * (len(series) - 1) / 2)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def repeat_rows(runs) -> list:
    """Per case of repeated runs: median samples/s, and per peer the median ratio (min-max)."""
    out = []
    for k, case in enumerate(runs[0]):
        same = [run[k] for run in runs]
        rates = [float(str(c["samples_s"]).replace(",", "")) for c in same]
        cells = []
        for peer in ("numpy", "zennit", "captum"):
            ratios = [c["peers"][peer]["ratio"] for c in same if isinstance(c["peers"].get(peer), dict)]
            if len(ratios) == len(same):
                cells.append(f"**{np.median(ratios):.1f}x** ({min(ratios):.1f}-{max(ratios):.1f})")
            else:
                first = case["peers"].get(peer)
                cells.append(first if isinstance(first, str) else "")
        out.append([case["net"], case["batch"], case["threads"], case["rule"], f"{np.median(rates):,.0f}"] + cells)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="fastlrp bench", description="fastlrp against every importable peer "
                                 "(its numpy reference, zennit, captum, its own forward pass).")
    ap.add_argument("--quick", action="store_true", help="small batches, all cores, two rules: under two minutes")
    ap.add_argument("--nets", help=f"comma-separated subset of {','.join(NETS)} (default: all; --quick: no vgg16)")
    ap.add_argument("--threads", help="comma-separated thread counts (default: 1 and all cores; --quick: all)")
    ap.add_argument("--rules", help=f"comma-separated subset of {','.join(RULES)} (toolbox nets: epsilon, alphabeta)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run everything this many times and add a table of the median ratio per case with its "
                         "min-max over the runs (a shared machine's speed drifts between runs)")
    ap.add_argument("--peer-isa", choices=["native", "match", "v2", "v3", "v4"], default="native",
                    help="cap the PyTorch peers' kernels at an x86-64 level ('match': fastlrp's level in use, e.g. "
                         "with FASTLRP_ISA=v2, to compare both as a CPU of that level runs them; default: what "
                         "torch picks for this CPU)")
    ap.add_argument("--json", help="also write every case as JSON to this file")
    ap.add_argument("--plot", help="also write a bar chart of the ratios (PNG)")
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args(argv)

    import fastlrp as fl

    cores = fl._core.max_threads()
    names = args.nets.split(",") if args.nets else [n for n in NETS if n not in nets.GRAPH_NETS
                                                     and not (args.quick and n == "vgg16")]
    for n in names:
        if n not in NETS:
            ap.error(f"--nets: unknown net {n!r}; expected some of {', '.join(NETS)}")
    threads = [int(t) for t in args.threads.split(",")] if args.threads else ([cores] if args.quick else sorted({1, cores}))
    # commas inside parentheses belong to a rule: "Epsilon,epsilon_gamma_box(-3, 3)"
    rules = ([r.strip() for r in re.split(r",(?![^()]*\))", args.rules)] if args.rules else
             (["Epsilon", "epsilon_plus_flat"] if args.quick else list(RULES)))
    for r in rules:
        if r not in RULES:
            ap.error(f"--rules: unknown rule {r!r}; expected some of {', '.join(RULES)}")
    if args.peer_isa != "native":
        try:
            cap_peer_isa(args.peer_isa)
        except RuntimeError as exc:
            ap.error(f"--peer-isa: {exc}")
    t0 = time.perf_counter()
    peers = Peers()
    lines = ["# fastlrp benchmark suite", "", f"Machine: {machine()}", ""]
    for peer, why in (("zennit", peers.zennit_why), ("captum", peers.captum_why)):
        lines.append(f"- {peer}: " + (f"skipped: {why}" if why else "compared"))
    if peers.torch is not None:
        lines.append(f"- PyTorch's kernels (peers and torch's forward): {peers.torch.backends.cpu.get_cpu_capability()}"
                     f" (--peer-isa {args.peer_isa})")
    lines.append("")
    if args.repeat < 1:
        ap.error(f"--repeat: expected a positive count, got {args.repeat}")
    runs = []
    for _ in range(args.repeat):
        rows, records = [], []
        for name in names:
            batches = NETS[name][1] if args.quick else NETS[name][0]
            if name.startswith("toolbox"):
                tb_rules = [r for r in ("epsilon", "alphabeta") if not args.quick or r == "epsilon"]
                run_toolbox(name, batches, threads, tb_rules, rows, records, args.quick)
            else:
                run_native(name, batches, threads, rules, peers, rows, records, args.quick)
        runs.append((rows, records))
    rows, records = runs[0]
    fl.set_num_threads(None)
    headers = ["net", "batch", "threads", "rule", "fastlrp samples/s", "(min-max)", "GFLOP/s (fwd work)",
               "peak MiB", "cost in forwards (forward/s)", "vs numpy", "vs zennit", "vs captum",
               "forward vs torch's (torch/s)"]
    lines += [table(headers, rows), "",
              "Cells 'vs X' give fastlrp's speed-up over X (above 1: fastlrp is faster) and, in brackets, X's "
              "samples/s; 'cost in forwards' is one explanation's time over one fastlrp forward pass of the same "
              "batch (forward samples/s in brackets). Empty: not run (the numpy reference on the first thread "
              "count and small MLP batches only; captum for Epsilon only). 'forward vs torch's' (graph nets): fastlrp's "
              "forward pass over torch's, same weights and threads.", "",
              f"Suite time: {time.perf_counter() - t0:.0f} s."]
    if args.repeat > 1:
        lines[-1:-1] = [f"Over all {args.repeat} runs (the table above is the first): median samples/s and, per "
                        "peer, the median ratio with its min-max over the runs.", "",
                        table(["net", "batch", "threads", "rule", "fastlrp samples/s (median)", "vs numpy", "vs zennit",
                               "vs captum"], repeat_rows([r for _, r in runs])), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "cases": records, "runs": [r for _, r in runs]}, f, indent=1)
    if args.plot:
        plot_ratios(records, args.plot)
        print(f"wrote {args.plot}")
    return 0
