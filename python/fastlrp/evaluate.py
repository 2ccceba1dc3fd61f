"""How faithful is a heatmap? Perturbation curves (pixel flipping, region perturbation, AOPC) and
the model-randomisation sanity check, on fastlrp's batched forward pass.

- :func:`perturbation`: remove the most (or least) relevant regions first, one per step, and
  record the target score after each step (Samek et al. 2017, "Evaluating the visualization of
  what a deep neural network has learned"). All images of a step go through one batched
  forward pass.
- :func:`compare`: the same for several composites side by side, the table and plot a user
  reads to pick a rule.
- :func:`randomization`: re-initialise the layers from the top down and measure how much the
  explanation changes (Spearman rank correlation, SSIM; Adebayo et al. 2018, "Sanity checks for
  saliency maps").

Scores are the logits: the model's output before a skipped output nonlinearity, as LRP starts
from them. Conventions follow Quantus 0.6's ``RegionPerturbation`` / ``PixelFlipping``: regions
are the blocks of a grid over the image (``(k, k)``, every channel), ordered by their summed
relevance; the curves here hold the scores themselves, Quantus reports ``score_0 - score_k``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import layers as L

__all__ = ["perturbation", "compare", "randomization", "PerturbationResult", "ComparisonResult",
           "RandomizationResult", "ssim", "spearman"]

ORDERS = ("morf", "lerf", "random")
FILLS = ("zero", "mean", "uniform", "blur")


# ---- scores --------------------------------------------------------------------------------

def logits_model(model):
    """The model without its output nonlinearity (the layers share their weights), or itself."""
    from .graph import Model
    from .model import Sequential

    if not isinstance(model.layers[-1], L.OUTPUT_NONLINEARITIES):
        return model
    if isinstance(model, Sequential):
        return Sequential(model.layers[:-1])
    if isinstance(model, Model):
        nodes = [(n.name, n.layer, n.inputs) for n in model.nodes[:-1]]
        return Model._from_nodes(model.input_name, model.input_shape, nodes)
    raise TypeError(f"expected a fastlrp.Sequential or fastlrp.Model, got {type(model).__name__}")


def _check_model(model, where):
    from .graph import Model
    from .model import Sequential

    if not isinstance(model, (Sequential, Model)):
        raise TypeError(f"{where}: expected a fastlrp.Sequential or fastlrp.Model, got {type(model).__name__}")


def _targets(scores, target, where):
    n = scores.shape[0]
    if target is None:
        return scores.argmax(axis=1)
    t = np.asarray(target)
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,) or t.dtype.kind not in "iu":
        raise ValueError(f"{where}: target must be None, an int or {n} class indices, got {np.asarray(target)!r:.80}")
    if n and (t.min() < 0 or t.max() >= scores.shape[1]):
        raise ValueError(f"{where}: target classes must lie in [0, {scores.shape[1]}), got {t.min()} to {t.max()}")
    return t.astype(np.int64)


# ---- regions -------------------------------------------------------------------------------

def _region_size(region, sample_shape, where):
    if len(sample_shape) == 1:
        if region not in (1, (1, 1), None):
            raise ValueError(f"{where}: tabular inputs are perturbed one feature at a time (region=1), got {region!r}")
        return (1, 1)
    if isinstance(region, (int, np.integer)) and not isinstance(region, bool):
        region = (int(region), int(region))
    if (not isinstance(region, (tuple, list)) or len(region) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in region)):
        raise ValueError(f"{where}: region must be an int or (kh, kw) of ints >= 1, got {region!r}")
    h, w = sample_shape[1:]
    if region[0] > h or region[1] > w:
        raise ValueError(f"{where}: region {tuple(region)} is larger than the image ({h}, {w})")
    return (int(region[0]), int(region[1]))


def region_map(sample_shape, region) -> tuple[np.ndarray, int]:
    """(region id of every input value, flattened in C order; number of regions): the blocks of a
    (kh, kw) grid from the top-left corner (blocks at the bottom and right edges may be cut),
    each spanning every channel; a tabular input's regions are its features."""
    if len(sample_shape) == 1:
        return np.arange(sample_shape[0]), sample_shape[0]
    c, h, w = sample_shape
    kh, kw = region
    bh, bw = -(-h // kh), -(-w // kw)
    ids = (np.arange(h)[:, None] // kh) * bw + (np.arange(w)[None, :] // kw)
    return np.broadcast_to(ids, (c, h, w)).ravel(), bh * bw


def _members(ids, n_regions):
    """(n_regions, longest) flat indices of each region's values, -1 padded."""
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=n_regions)
    longest = int(counts.max())
    out = np.full((n_regions, longest), -1, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(ids.size) - np.repeat(starts, counts)
    out[ids[order], pos] = order
    return out


# ---- fills ---------------------------------------------------------------------------------

def _gaussian_blur(x, sigma):
    """Each channel of NCHW x blurred by a separable Gaussian (edges reflected)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = x.astype(np.float64)
    for axis in (2, 3):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="symmetric")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for j, kj in enumerate(k):
            sl = [slice(None)] * 4
            sl[axis] = slice(j, j + n)
            acc += kj * p[tuple(sl)]
        out = acc
    return out


def _fill_values(x, fill, rng, background, region, where):
    """What each value becomes when its region is removed: an array of x's shape."""
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"{where}: fill must be one of {FILLS} or a number, got {fill!r}")
        if fill == "zero":
            return np.zeros_like(x)
        if fill == "mean":
            if x.ndim == 2:  # tabular: each feature's mean over the background set (default: x)
                ref = x if background is None else np.asarray(background, dtype=np.float64)
                if ref.ndim != 2 or ref.shape[1] != x.shape[1]:
                    raise ValueError(f"{where}: background must be (M, {x.shape[1]}), got shape {ref.shape}")
                return np.broadcast_to(ref.mean(axis=0), x.shape).astype(x.dtype)
            return np.broadcast_to(x.reshape(len(x), -1).mean(axis=1).reshape((-1,) + (1,) * (x.ndim - 1)),
                                   x.shape).astype(x.dtype)
        if fill == "uniform":  # per sample, uniform between its smallest and largest value
            flat = x.reshape(len(x), -1)
            lo, hi = flat.min(axis=1), flat.max(axis=1)
            u = rng.random(x.shape)
            return (lo.reshape((-1,) + (1,) * (x.ndim - 1)) + u * (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))
                    ).astype(x.dtype)
        if x.ndim != 4:
            raise ValueError(f"{where}: fill='blur' needs images (N, C, H, W), got shape {x.shape}")
        return _gaussian_blur(x, max(region) / 2.0).astype(x.dtype)
    value = np.asarray(fill, dtype=np.float64)
    if value.ndim != 0 or not np.isfinite(value):
        raise ValueError(f"{where}: fill must be one of {FILLS} or a finite number, got {fill!r}")
    return np.full_like(x, float(value))


# ---- perturbation --------------------------------------------------------------------------

@dataclass
class PerturbationResult:
    """Target scores as regions are removed.

    curves : (N, steps + 1) the target score before any removal, then after each step
    aopc : (N,) the area over the perturbation curve, ``mean_k (curves[:, 0] - curves[:, k])``
        over k = 0..steps (Samek et al. 2017); higher for MoRF means a more faithful heatmap
    """

    curves: np.ndarray
    aopc: np.ndarray
    order: str
    region: tuple
    fill: object
    targets: np.ndarray
    seconds: float = 0.0

    @property
    def mean_curve(self) -> np.ndarray:
        return self.curves.mean(axis=0)

    @property
    def mean_aopc(self) -> float:
        return float(self.aopc.mean())

    @property
    def drops(self) -> np.ndarray:
        """``curves[:, 0] - curves[:, k]`` for k = 1..steps: Quantus's RegionPerturbation scores."""
        return self.curves[:, :1] - self.curves[:, 1:]

    def plot(self, ax=None, label=None):
        """The mean curve on ``ax`` (default: a new figure's axes; returned)."""
        from matplotlib.figure import Figure

        if ax is None:
            ax = Figure(figsize=(5, 3.5)).add_subplot()
        ax.plot(np.arange(self.curves.shape[1]), self.mean_curve,
                label=label or f"{self.order} (AOPC {self.mean_aopc:.3g})")
        ax.set_xlabel("regions removed")
        ax.set_ylabel("target score (logit)")
        ax.legend()
        return ax


def perturbation(model, x, relevance, target=None, order: str = "morf", region=1, steps: int | None = None,
                 fill="zero", seed: int = 0, batch_size: int | None = None, background=None) -> PerturbationResult:
    """Remove regions of ``x`` in the order of ``relevance`` and record the target score.

    Parameters
    ----------
    model : fastlrp.Sequential or fastlrp.Model
    x : (N, C, H, W) images or (N, F) tabular rows
    relevance : array of x's shape (an :class:`~fastlrp.Explanation`'s ``relevance``); ignored
        for ``order="random"`` (may be None)
    target : None (the class predicted for the unperturbed x), an int, or N class indices
    order : "morf" (most relevant first), "lerf" (least relevant first) or "random"
    region : int or (kh, kw): blocks of a grid over the image, every channel at once; 1 flips
        single pixels. Tabular inputs: one feature per step (region 1).
    steps : regions removed (default: all)
    fill : "zero", "mean" (the image's mean; for tabular inputs each feature's mean over
        ``background``, default x), "uniform" (uniform between the image's extremes, seeded),
        "blur" (a Gaussian blur of the image, sigma half the region size) or a number
    seed : the random order's and the uniform fill's seed
    batch_size : samples per chunk (memory follows the chunk); default: all at once
    """
    where = "fastlrp.evaluate.perturbation"
    _check_model(model, where)
    if order not in ORDERS:
        raise ValueError(f"{where}: order must be one of {ORDERS}, got {order!r}")
    x = model._as_input(x)
    sample = tuple(x.shape[1:])
    if order != "random":
        if relevance is None:
            raise ValueError(f"{where}: order={order!r} needs the relevance of x")
        relevance = np.asarray(relevance)
        if relevance.shape != x.shape:
            raise ValueError(f"{where}: relevance must have x's shape {x.shape}, got {relevance.shape}")
        if not np.isfinite(relevance).all():
            raise ValueError(f"{where}: relevance holds NaN or infinite values")
    size = _region_size(region, sample, where)
    ids, n_regions = region_map(sample, size)
    if steps is None:
        steps = n_regions
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= n_regions:
        raise ValueError(f"{where}: steps must be an int in [1, {n_regions}] (the number of regions), got {steps!r}")
    steps = int(steps)
    if batch_size is None:
        batch_size = max(1, len(x))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{where}: batch_size must be a positive int, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    fills = _fill_values(x, fill, rng, background, size, where)
    members = _members(ids, n_regions)
    scorer = logits_model(model)
    t0 = time.perf_counter()
    n = len(x)
    if target is not None and np.ndim(target) > 0 and np.shape(target) != (n,):
        raise ValueError(f"{where}: target must be None, an int or {n} class indices (one per sample), "
                         f"got shape {np.shape(target)}")
    curves = np.empty((n, steps + 1), np.float64)
    targets = np.empty(n, np.int64)
    if order == "random":
        ranks = np.stack([rng.permutation(n_regions) for _ in range(n)]) if n else np.zeros((0, n_regions), np.int64)
    else:
        sums = np.zeros((n, n_regions))
        np.add.at(sums.T, ids, relevance.reshape(n, -1).T.astype(np.float64))  # (regions, N) += values
        ranks = np.argsort(-sums if order == "morf" else sums, axis=1)
    for i in range(0, n, batch_size):
        j = min(n, i + batch_size)
        xp = np.array(x[i:j], copy=True).reshape(j - i, -1)
        fv = np.asarray(fills[i:j]).reshape(j - i, -1)
        scores = scorer(xp.reshape((j - i,) + sample))
        scores = scores.reshape(j - i, -1)
        t = _targets(scores, target if target is None or np.ndim(target) == 0 else np.asarray(target)[i:j], where)
        targets[i:j] = t
        rows = np.arange(j - i)
        curves[i:j, 0] = scores[rows, t]
        for s in range(steps):
            idx = members[ranks[i:j, s]]                       # (n, longest), -1 padded
            r, c = np.nonzero(idx >= 0)
            cols = idx[r, c]
            xp[r, cols] = fv[r, cols]
            curves[i:j, s + 1] = scorer(xp.reshape((j - i,) + sample)).reshape(j - i, -1)[rows, t]
    aopc = (curves[:, :1] - curves).mean(axis=1)
    return PerturbationResult(curves=curves, aopc=aopc, order=order, region=size, fill=fill, targets=targets,
                              seconds=time.perf_counter() - t0)


# ---- comparing composites ------------------------------------------------------------------

@dataclass
class ComparisonResult:
    """One row per composite: mean AOPC with MoRF and LeRF orders, their difference (higher:
    more faithful), and the seconds to explain and evaluate."""

    rows: list
    results: dict = field(repr=False)

    def __str__(self) -> str:
        head = f"{'composite':<28}{'AOPC MoRF':>11}{'AOPC LeRF':>11}{'MoRF-LeRF':>11}{'seconds':>9}"
        lines = [head]
        for r in self.rows:
            lerf = "" if r["aopc_lerf"] is None else f"{r['aopc_lerf']:>11.4g}"
            diff = "" if r["aopc_lerf"] is None else f"{r['difference']:>11.4g}"
            lines.append(f"{r['name']:<28}{r['aopc_morf']:>11.4g}{lerf:>11}{diff:>11}{r['seconds']:>9.2f}")
        return "\n".join(lines)

    def plot(self, path=None):
        """The mean MoRF curve of every composite (and LeRF dashed); saved to ``path`` if given."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.5, 4))
        ax = fig.add_subplot()
        for k, (name, res) in enumerate(self.results.items()):
            color = f"C{k}"
            kind = "MoRF " if res.get("lerf") is not None else ""
            ax.plot(res["morf"].mean_curve, color=color, label=f"{name} {kind}(AOPC {res['morf'].mean_aopc:.3g})")
            if res.get("lerf") is not None:
                ax.plot(res["lerf"].mean_curve, color=color, linestyle="--", label=f"{name} LeRF")
        ax.set_xlabel("regions removed")
        ax.set_ylabel("mean target score (logit)")
        ax.set_title("Perturbation curves: a steeper MoRF fall is a more faithful heatmap")
        ax.legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def compare(model, x, composites: dict, target=None, **kwargs) -> ComparisonResult:
    """Explain ``x`` with each composite and evaluate it by perturbation (MoRF and LeRF); a
    ``None`` composite is the random-order baseline. ``kwargs`` go to :func:`perturbation`
    (region, steps, fill, seed, batch_size, background)."""
    from .explain import LRP

    where = "fastlrp.evaluate.compare"
    _check_model(model, where)
    if not isinstance(composites, dict) or not composites:
        raise TypeError(f"{where}: composites must be a non-empty dict of name -> composite (or None), "
                        f"got {type(composites).__name__}")
    x = model._as_input(x)
    if target is None:
        scores = logits_model(model)(x).reshape(len(x), -1)
        target = scores.argmax(axis=1)
    rows, results = [], {}
    for name, comp in composites.items():
        t0 = time.perf_counter()
        if comp is None:
            morf = perturbation(model, x, None, target, order="random", **kwargs)
            lerf = None
        else:
            rel = LRP(model, comp)(x, target=target).relevance
            morf = perturbation(model, x, rel, target, order="morf", **kwargs)
            lerf = perturbation(model, x, rel, target, order="lerf", **kwargs)
        seconds = time.perf_counter() - t0
        results[name] = {"morf": morf, "lerf": lerf}
        rows.append({"name": name, "aopc_morf": morf.mean_aopc, "aopc_lerf": None if lerf is None else lerf.mean_aopc,
                     "difference": None if lerf is None else morf.mean_aopc - lerf.mean_aopc, "seconds": seconds})
    return ComparisonResult(rows=rows, results=results)


# ---- randomisation -------------------------------------------------------------------------

def spearman(a, b) -> float:
    """Spearman's rank correlation of two arrays (ties get their average rank); exactly 1 for
    equal arrays, 0 when either is constant."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if np.array_equal(a, b):
        return 1.0
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return 0.0 if denom == 0 else float((ra * rb).sum() / denom)


def _average_ranks(v):
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(v.size, np.float64)
    sv = v[order]
    starts = np.flatnonzero(np.concatenate([[True], sv[1:] != sv[:-1]]))
    ends = np.concatenate([starts[1:], [v.size]])
    for s0, e0 in zip(starts, ends):
        ranks[order[s0:e0]] = 0.5 * (s0 + e0 - 1) + 1
    return ranks


def ssim(a, b, data_range=None, win_size: int = 7) -> float:
    """The mean structural similarity of two 2-D maps, as scikit-image's
    ``structural_similarity`` with its defaults (a uniform 7x7 window, K1 = 0.01, K2 = 0.03,
    sample covariances, the mean over windows inside the image). ``data_range``: default the
    range of the two maps together."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim: expected two 2-D maps of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < win_size:
        raise ValueError(f"ssim: maps of {a.shape} are smaller than the {win_size}x{win_size} window")
    if data_range is None:
        data_range = max(a.max(), b.max()) - min(a.min(), b.min())
        data_range = data_range if data_range > 0 else 1.0

    def windows(v):  # means over every win_size x win_size window inside the map
        c = np.cumsum(np.cumsum(np.pad(v, ((1, 0), (1, 0))), axis=0), axis=1)
        k = win_size
        return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)

    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1)
    ux, uy = windows(a), windows(b)
    uxx, uyy, uxy = windows(a * a), windows(b * b), windows(a * b)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


@dataclass
class RandomizationResult:
    """``layers[k]``: the name of the k-th layer re-initialised (top first); ``spearman`` and
    ``ssim`` (N, len(layers) + 1): column 0 compares the original explanation with itself,
    column k with the model whose top k layers (``cascading``) or whose k-th layer alone was
    re-initialised. ``ssim`` is None for tabular inputs."""

    layers: list
    spearman: np.ndarray
    ssim: np.ndarray | None
    cascading: bool

    def plot(self, path=None):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.5, 4))
        ax = fig.add_subplot()
        xs = np.arange(len(self.layers) + 1)
        ax.plot(xs, self.spearman.mean(axis=0), marker="o", label="Spearman rank correlation")
        if self.ssim is not None:
            ax.plot(xs, self.ssim.mean(axis=0), marker="s", label="SSIM")
        ax.set_xticks(xs, ["original"] + list(self.layers), rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("similarity to the original explanation")
        ax.set_title("Model randomisation " + ("(cascading, top first)" if self.cascading else "(one layer at a time)"))
        ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _parametric(model):
    """(index, name) of every Dense/Conv2d layer or node, top (output side) first."""
    from .graph import Model

    names = model.names if isinstance(model, Model) else [f"layer {k}" for k in range(len(model.layers))]
    return [(k, names[k]) for k in range(len(model.layers) - 1, -1, -1)
            if isinstance(model.layers[k], (L.Dense, L.Conv2d))]


def _with_layers(model, replaced: dict):
    """A copy of ``model`` with layers at the given indices replaced."""
    from .graph import Model
    from .model import Sequential

    if isinstance(model, Sequential):
        return Sequential([replaced.get(k, layer) for k, layer in enumerate(model.layers)])
    nodes = [(n.name, replaced.get(k, n.layer), n.inputs) for k, n in enumerate(model.nodes)]
    return Model._from_nodes(model.input_name, model.input_shape, nodes)


def _reinit(layer, rng):
    """The layer with weights drawn from N(0, std of its weights) and biases from N(0, std of
    its biases): the scale of the trained layer, none of its structure."""
    w = rng.normal(0.0, float(np.std(layer.weight)) or 1.0, size=layer.weight.shape).astype(layer.weight.dtype)
    b = rng.normal(0.0, float(np.std(layer.bias)), size=layer.bias.shape).astype(layer.bias.dtype)
    if isinstance(layer, L.Dense):
        return L.Dense(w, b)
    return L.Conv2d(w, b, layer.stride, layer.padding, layer.dilation, layer.groups, layer.padding_end)


def _heatmap(r):
    """A sample's relevance as a 2-D map (summed over channels) or a feature vector."""
    return r.sum(axis=0) if r.ndim == 3 else r


def randomization(model, x, composite="epsilon_plus_flat", cascading: bool = True, seed: int = 0,
                  target=None) -> RandomizationResult:
    """The model-randomisation test: explain ``x`` with the original model, then with its
    Dense/Conv2d layers re-initialised one more at a time from the top (``cascading``) or one
    at a time (independent), always for the class the original model predicts (or ``target``),
    and compare each explanation with the original: Spearman rank correlation and (images) SSIM
    per sample. A faithful method's similarity falls as the layers it depends on are randomised."""
    from .explain import LRP

    where = "fastlrp.evaluate.randomization"
    _check_model(model, where)
    x = model._as_input(x)
    if target is None:
        target = logits_model(model)(x).reshape(len(x), -1).argmax(axis=1)
    base = LRP(model, composite)(x, target=target).relevance
    layers = _parametric(model)
    if not layers:
        raise ValueError(f"{where}: the model has no Dense or Conv2d layer to re-initialise")
    rng = np.random.default_rng(seed)
    fresh = {k: _reinit(model.layers[k], rng) for k, _ in layers}
    images = x.ndim == 4
    n = len(x)
    rho = np.empty((n, len(layers) + 1))
    sim = np.empty((n, len(layers) + 1)) if images else None
    for step in range(len(layers) + 1):
        if step == 0:
            rel = base
        else:
            chosen = layers[:step] if cascading else [layers[step - 1]]
            rel = LRP(_with_layers(model, {k: fresh[k] for k, _ in chosen}), composite)(x, target=target).relevance
        for i in range(n):
            a, b = _heatmap(base[i]), _heatmap(rel[i])
            rho[i, step] = spearman(a, b)
            if images:
                sim[i, step] = ssim(a, b)
    return RandomizationResult(layers=[name for _, name in layers], spearman=rho, ssim=sim, cascading=cascading)
