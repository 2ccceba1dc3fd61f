"""The `fastlrp` command line: demo, info, explain, evaluate, bench."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

RULES = ("epsilon", "zplus", "alphabeta", "gamma", "wsquare", "flat", "zbox")


MODEL_FORMATS = {".npz": "fastlrp native", ".keras": "Keras 3", ".h5": "legacy Keras", ".hdf5": "legacy Keras",
                 ".onnx": "ONNX", ".txt": "numpy LRP toolbox text", ".nn": "numpy LRP toolbox pickle (read safely)"}
# formats whose images are channels-last (NHWC) where they come from
CHANNELS_LAST = (".keras", ".h5", ".hdf5", ".txt", ".nn")


def load_model(path: str, sample_shape=None):
    """A fastlrp model from a file, the loader chosen by the extension. Toolbox models need the
    input's per-sample shape (NHWC or features) when they flatten images into a Linear layer."""
    from .model import load

    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return load(path)
    if suffix in (".keras", ".h5", ".hdf5"):
        from .io import from_keras

        return from_keras(path)
    if suffix == ".onnx":
        from .io import from_onnx

        return from_onnx(path)
    if suffix in (".txt", ".nn"):
        from .toolbox import model_io

        tb = model_io.read(path)
        if tb.modules and type(tb.modules[-1]).__name__ == "SoftMax":
            del tb.modules[-1]  # as the toolbox demos: explain the scores (fastlrp would skip it anyway)
        try:
            return tb.to_sequential(input_shape=sample_shape)
        except ValueError as exc:
            if sample_shape is None and "input_shape" in str(exc):
                raise ValueError(f"{path}: this toolbox model flattens images and the file does not record their "
                                 "size: pass --input-shape H,W,C") from None
            raise
    supported = ", ".join(f"{k} ({v})" for k, v in MODEL_FORMATS.items())
    raise ValueError(f"{path}: unsupported model format {suffix or '(none)'!r}; supported: {supported}")


IMAGE_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def load_image(path: str) -> np.ndarray:
    """One image file as a (1, H, W, C) float32 batch in [0, 1] (alpha dropped)."""
    import matplotlib.image as mpimg

    try:
        img = np.asarray(mpimg.imread(path))
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read the image ({exc})") from None
    if img.dtype.kind in "ui":
        img = img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max)
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return img[None]


def load_input(path: str) -> np.ndarray:
    """Samples from .npy, .npz (its only array, or the one named 'x') or .csv (numbers only)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False, mmap_mode="r")
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            key = "x" if "x" in names else names[0] if len(names) == 1 else None
            if key is None:
                raise ValueError(f"{path}: several arrays ({', '.join(names)}); name the input 'x'")
            return z[key]
    if suffix == ".csv":
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
        except ValueError as exc:
            raise ValueError(f"{path}: expected a CSV of numbers only ({exc})") from None
    if suffix in IMAGE_FORMATS:
        return load_image(path)
    raise ValueError(f"{path}: unsupported input format {suffix or '(none)'!r}; supported: .npy, .npz, .csv, "
                     f"images ({', '.join(IMAGE_FORMATS)})")


def image_layout(args, x, suffix: str) -> str:
    """'nchw' or 'nhwc' for a 4-D input: --layout, else the model format's convention (images
    files are always channels-last)."""
    if x.ndim != 4:
        return "flat"
    if Path(args.input).suffix.lower() in IMAGE_FORMATS:
        return "nhwc"
    if args.layout != "auto":
        return args.layout
    return "nhwc" if suffix in CHANNELS_LAST else "nchw"


def fit_channels(x: np.ndarray, model) -> np.ndarray:
    """An image file's channels to what the model's first convolution takes (RGB to grey by
    the mean, grey to RGB by repeating)."""
    from . import layers as L

    first = next((l for l in model.layers if isinstance(l, L.Conv2d)), None)
    if first is None or x.shape[1] == first.in_channels:
        return x
    if first.in_channels == 1 and x.shape[1] == 3:
        return x.mean(axis=1, keepdims=True)
    if first.in_channels == 3 and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    return x


def parse_rule(spec: str):
    """'epsilon', 'epsilon:0.1', 'alphabeta:2' (beta = alpha - 1), 'gamma:0.25', 'zbox:-3,3'."""
    from . import rules

    name, _, param = spec.partition(":")
    name = name.strip().lower()
    try:
        values = [float(v) for v in param.split(",")] if param else []
    except ValueError:
        raise ValueError(f"--rule {spec!r}: parameters must be numbers") from None
    makers = {
        "epsilon": lambda: rules.Epsilon(*values[:1]), "zplus": rules.ZPlus, "wsquare": rules.WSquare,
        "flat": rules.Flat, "gamma": lambda: rules.Gamma(*values[:1]),
        "alphabeta": lambda: rules.AlphaBeta(values[0], values[0] - 1) if values else rules.AlphaBeta(),
        "zbox": lambda: rules.ZBox(*values[:2]) if len(values) == 2 else (_ for _ in ()).throw(
            ValueError("--rule zbox needs low,high, e.g. zbox:-3,3")),
    }
    if name not in makers:
        raise ValueError(f"--rule {spec!r}: unknown rule; expected one of {', '.join(RULES)}")
    return makers[name]()


def composite_of(args):
    from . import composites

    if args.rule:
        return parse_rule(args.rule)
    return composites.get(args.composite)


def cmd_info(args):
    from .explain import LRP

    shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    model = load_model(args.model, shape)
    n_params = sum(int(getattr(l, a).size) for l in model.layers for a in ("weight", "bias", "mean", "var")
                   if hasattr(l, a))
    print(f"{args.model}: {len(model.layers)} layers, {n_params:,} parameters")
    if model.in_features is not None:
        print(f"input: {model.in_features} features" + (f", output: {model.out_features}" if model.out_features else ""))
    elif model.takes_images:
        print("input: NCHW images")
    print(LRP(model, composite_of(args)))


def model_and_input(args, x):
    """(model, layout, x as NCHW): MODEL loaded for INPUT ``x`` (toolbox models need the sample
    shape), and 4-D images turned to NCHW when they come channels-last (image files also get
    the model's channel count). ``x`` may be a numpy or a dask array."""
    suffix = Path(args.model).suffix.lower()
    layout = image_layout(args, x, suffix)
    model = load_model(args.model, tuple(x.shape[1:]) if suffix in (".txt", ".nn") else None)
    if layout == "nhwc":  # fastlrp models take NCHW; results go back in the input's layout
        x = x.transpose(0, 3, 1, 2)
        if isinstance(x, np.ndarray):
            x = np.ascontiguousarray(x)
        if Path(args.input).suffix.lower() in IMAGE_FORMATS:
            x = fit_channels(x, model)
    return model, layout, x


def cmd_explain(args):
    from .explain import LRP

    if Path(args.input).suffix.lower() == ".zarr" or Path(args.input).is_dir():
        return cmd_explain_dask(args)
    if args.scheduler:
        raise ValueError("--scheduler: a Dask cluster explains chunked inputs only (a .zarr store or a folder of "
                         f".npy chunks), got {args.input}")
    model, layout, x = model_and_input(args, load_input(args.input))
    lrp = LRP(model, composite_of(args))
    target = args.target
    e = lrp(x, target=target, layerwise=args.layerwise, batch_size=args.batch_size,
            progress=len(x) > args.batch_size)
    rel = np.asarray(e.relevance)
    arrays = {"relevance": rel.transpose(0, 2, 3, 1) if layout == "nhwc" else rel, "output": e.output,
              "conservation": e.conservation}
    if e.targets is not None:
        arrays["targets"] = e.targets
    if args.layerwise:
        arrays.update({f"layer{k}": a for k, a in enumerate(e.layers)})
    np.savez(args.out, **arrays)
    print(f"explained {len(x):,} samples with {lrp.composite.name}; wrote {args.out}")
    if args.plot:
        from . import plot

        r = np.asarray(e.relevance)
        fig = plot.heatmap(r[0], image=np.asarray(x[0])) if r.ndim == 4 else plot.features(
            r[0], [f"x{k}" for k in range(r.shape[1])], title="sample 0")
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")


def cmd_explain_dask(args):
    """INPUT.zarr (or a folder of .npy chunks) through a Dask cluster into OUT.zarr."""
    import dataclasses
    import logging

    try:
        import distributed
        from . import dask as fl_dask
    except ImportError as exc:
        raise ImportError(f"explaining a chunked input needs the dask extra: pip install \"fastlrp[dask]\" ({exc})") from None
    from .explain import LRP

    if not args.out.lower().endswith(".zarr"):
        raise ValueError(f"--out: a chunked input is written to a zarr store (OUT.zarr), got {args.out}")
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # errors reach the user as one line
    model, layout, x = model_and_input(args, fl_dask.open_input(args.input))
    lrp = LRP(model, composite_of(args))
    e = fl_dask.explain(lrp, x, target=args.target, layerwise=args.layerwise)
    if layout == "nhwc":
        e = dataclasses.replace(e, relevance=e.relevance.transpose(0, 2, 3, 1))
    if args.scheduler:
        try:
            client = distributed.Client(args.scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {args.scheduler} "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        cluster = None
    else:
        from . import get_num_threads

        cluster = distributed.LocalCluster(n_workers=max(1, get_num_threads()), threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.CRITICAL)
        client = distributed.Client(cluster)
    where = args.scheduler or f"a local cluster of {len(cluster.workers)} worker processes"
    try:
        futures = client.compute(e.to_zarr(args.out, overwrite=True, compute=False))
        if sys.stderr.isatty() or args.progress:
            distributed.progress(futures)
        client.gather(futures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(f"explained {x.shape[0]:,} samples with {lrp.composite.name} on {where}; wrote {args.out}")


def cmd_evaluate(args):
    """Explain INPUT with each --composite, evaluate by region perturbation, print the table,
    save the plot."""
    from .evaluate import compare

    model, _, x = model_and_input(args, np.asarray(load_input(args.input)))
    from . import composites

    chosen = {name: composites.get(name) for name in (args.composite or ["epsilon_plus_flat"])}
    if not args.no_random:
        chosen["random order"] = None
    fill = args.fill
    try:
        fill = float(fill)
    except ValueError:
        pass
    res = compare(model, x, chosen, target=args.target, region=args.region if x.ndim == 4 else 1, steps=args.steps,
                  fill=fill, seed=args.seed)
    print(res)
    if args.out:
        res.plot(args.out)
        print(f"wrote {args.out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastlrp", description="Fast Layer-wise Relevance Propagation.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="explain the shipped census-income classifier (offline)",
                          description="Explain the census-income MLP shipped with fastlrp on the UCI Adult "
                                      "test set: accuracy, relevance per attribute, PNG charts.")
    demo.add_argument("--out", default="fastlrp-demo", help="folder for the PNGs and relevance.npz (default: %(default)s)")
    demo.add_argument("--composite", default="epsilon",
                      help="composite preset (default: %(default)s; w2_epsilon ignores the input at the first layer)")

    def rule_options(p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--composite", default="epsilon_plus_flat",
                       help="composite preset: epsilon_plus, epsilon_plus_flat, epsilon_alpha2_beta1, "
                            "epsilon_alpha2_beta1_flat, w2_epsilon (default: %(default)s)")
        g.add_argument("--rule", help="one rule for every Dense/Conv2d layer, NAME[:PARAM]: epsilon[:eps], zplus, "
                                      "alphabeta[:alpha], gamma[:gamma], wsquare, flat, zbox:low,high")

    info = sub.add_parser("info", help="layers, shapes, parameter count and the rule each layer gets",
                          description="Describe a model and the rule each layer would get.")
    info.add_argument("model", help="model file: " + ", ".join(f"{k} ({v})" for k, v in MODEL_FORMATS.items()))
    info.add_argument("--input-shape", help="per-sample input shape H,W,C for toolbox models that flatten images")
    rule_options(info)

    ex = sub.add_parser("explain", help="explain the samples of a file and save the relevance",
                        description="Explain every sample of INPUT with MODEL and save the results to an .npz "
                                    "(relevance, output logits, conservation, targets, and per-layer relevance "
                                    "with --layerwise).")
    ex.add_argument("model", help="model file, the loader chosen by the extension: "
                                  + ", ".join(f"{k} ({v})" for k, v in MODEL_FORMATS.items()))
    ex.add_argument("input", help="samples: .npy, .npz (array 'x' or its only array), .csv of numbers, one "
                                  "image file (.png, .jpg, ...; scaled to [0, 1]), or a chunked input explained on "
                                  "Dask (the dask extra): a .zarr store or a folder of .npy chunks")
    ex.add_argument("--layout", choices=("auto", "nchw", "nhwc"), default="auto",
                    help="layout of 4-D image inputs; auto: NHWC for Keras and toolbox models (their "
                         "convention), NCHW otherwise. The relevance is saved in the same layout")
    rule_options(ex)
    ex.add_argument("--target", type=int, help="class to explain for every sample (default: the predicted class)")
    ex.add_argument("--layerwise", action="store_true", help="also save the relevance at every layer boundary")
    ex.add_argument("--batch-size", type=int, default=8192, help="samples per chunk (default: %(default)s)")
    ex.add_argument("--out", required=True, help="output .npz (an OUT.zarr store for a chunked input)")
    ex.add_argument("--scheduler", help="address of a Dask scheduler (tcp://host:8786) to explain a chunked input "
                                        "on; default: a local cluster of one worker process per core")
    ex.add_argument("--progress", action="store_true", help="show a progress bar also when stderr is not a terminal")
    ex.add_argument("--plot", help="also write a PNG of the first sample's relevance")
    ev = sub.add_parser("evaluate", help="compare composites by how faithful their heatmaps are (perturbation, AOPC)",
                        description="Explain INPUT with each composite, remove the most (MoRF) and least (LeRF) "
                                    "relevant regions first and report the area over the perturbation curve (AOPC; "
                                    "higher MoRF and MoRF - LeRF: more faithful), against a random order.")
    ev.add_argument("model", help="model file (as for explain)")
    ev.add_argument("input", help="samples: .npy, .npz, .csv or an image file (as for explain)")
    ev.add_argument("--composite", action="append", help="a composite preset; repeat to compare several "
                                                         "(default: epsilon_plus_flat)")
    ev.add_argument("--region", type=int, default=2, help="square region side in pixels (default: %(default)s)")
    ev.add_argument("--steps", type=int, help="regions removed (default: all)")
    ev.add_argument("--fill", default="zero", help="zero, mean, uniform, blur or a number (default: %(default)s)")
    ev.add_argument("--target", type=int, help="class to evaluate (default: the predicted class)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the random order and uniform fill")
    ev.add_argument("--no-random", action="store_true", help="leave out the random-order baseline")
    ev.add_argument("--layout", choices=("auto", "nchw", "nhwc"), default="auto", help="layout of 4-D image inputs")
    ev.add_argument("--out", help="PNG of the mean perturbation curves")
    sub.add_parser("bench", help="the benchmark suite against every importable peer (see: fastlrp bench --help)",
                   add_help=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the suite parses its own options
        from .bench.suite import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run

            run(args.out, args.composite)
        elif args.command == "info":
            cmd_info(args)
        elif args.command == "evaluate":
            cmd_evaluate(args)
        else:
            cmd_explain(args)
    except (ValueError, TypeError, OSError, ImportError) as exc:  # ImportError: an optional reader's package
        print(f"fastlrp {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
