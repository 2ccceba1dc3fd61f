"""Heatmaps and charts of relevance, with matplotlib.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot: nothing is
shown; call ``fig.savefig(path)``. Relevance uses a diverging colormap centred at zero with
symmetric limits (red: positive relevance, blue: negative).
"""

from __future__ import annotations

import numpy as np

__all__ = ["heatmap", "grid", "features", "layers"]

CMAP = "bwr"


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _to_2d(relevance) -> np.ndarray:
    """HW, CHW or 1CHW relevance -> HW (summed over channels)."""
    r = np.asarray(relevance, dtype=np.float64)
    if r.ndim == 4:
        if r.shape[0] != 1:
            raise ValueError(f"heatmap: expected one sample, got a batch of shape {r.shape}; use grid()")
        r = r[0]
    if r.ndim == 3:
        r = r.sum(axis=0)
    if r.ndim != 2:
        raise ValueError(f"heatmap: expected HW, CHW or 1CHW relevance, got shape {r.shape}")
    return r


def _limit(r) -> float:
    m = float(np.abs(r).max(initial=0.0))
    return m if m > 0 else 1.0


def _draw(ax, relevance, image=None, alpha=0.65):
    r = _to_2d(relevance)
    lim = _limit(r)
    if image is not None:
        img = np.asarray(image, dtype=np.float64)
        if img.ndim == 4:
            img = img[0]
        if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
            img = np.moveaxis(img, 0, -1)  # CHW -> HWC
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        im = ax.imshow(r, cmap=CMAP, vmin=-lim, vmax=lim, alpha=alpha, interpolation="nearest")
    else:
        im = ax.imshow(r, cmap=CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def heatmap(relevance, image=None, title: str | None = None, colorbar: bool = True):
    """One relevance map (HW, CHW or 1CHW), optionally over its input image."""
    fig = _figure((4, 4))
    ax = fig.add_subplot()
    im = _draw(ax, relevance, image)
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, shrink=0.8, label="relevance")
    return fig


def grid(relevances, images=None, titles=None, ncols: int | None = None):
    """Several relevance maps (N, ...) side by side, each with its own symmetric scale."""
    rel = list(relevances)
    n = len(rel)
    if n == 0:
        raise ValueError("grid: expected at least one relevance map, got none")
    if images is not None and len(images) != n:
        raise ValueError(f"grid: expected {n} images, got {len(images)}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"grid: expected {n} titles, got {len(titles)}")
    ncols = ncols or min(n, 8)
    nrows = -(-n // ncols)
    fig = _figure((2.2 * ncols, 2.3 * nrows))
    for k in range(n):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _draw(ax, rel[k], None if images is None else images[k])
        if titles is not None:
            ax.set_title(str(titles[k]), fontsize=9)
    return fig


def features(relevance, names, top: int = 20, title: str | None = None, xlabel: str = "relevance"):
    """Horizontal bars for tabular relevance (one sample, or a mean): the ``top`` largest |R|."""
    r = np.asarray(relevance, dtype=np.float64).ravel()
    names = list(names)
    if len(names) != r.size:
        raise ValueError(f"features: expected {r.size} names for {r.size} relevances, got {len(names)}")
    order = np.argsort(-np.abs(r), kind="stable")[:top][::-1]
    fig = _figure((7, 0.32 * len(order) + 1.2))
    ax = fig.add_subplot()
    colors = ["#c0392b" if r[k] > 0 else "#2c7bb6" for k in order]
    ax.barh(range(len(order)), r[order], color=colors)
    ax.set_yticks(range(len(order)), [names[k] for k in order])
    ax.axvline(0, color="black", linewidth=0.8)
    lim = _limit(r[order]) * 1.05
    ax.set_xlim(-lim, lim)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return fig


def feature_groups(groups: dict, names, title: str | None = None, xlabel: str = "relevance"):
    """Side-by-side horizontal bars of several groups' relevance per feature (for example the
    mean over the people predicted >50K and over those predicted <=50K), features ordered by
    their largest |R| in any group."""
    labels = list(groups)
    values = np.array([np.asarray(groups[g], dtype=np.float64).ravel() for g in labels])
    names = list(names)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"feature_groups: expected {len(names)} values per group, got shape {values.shape}")
    order = np.argsort(-np.abs(values).max(axis=0), kind="stable")[::-1]
    fig = _figure((7, 0.42 * len(order) + 1.4))
    ax = fig.add_subplot()
    height = 0.8 / len(labels)
    colors = ["#c0392b", "#2c7bb6", "#7f8c8d", "#27ae60"]
    for g, label in enumerate(labels):
        pos = np.arange(len(order)) + (g - (len(labels) - 1) / 2) * height
        ax.barh(pos, values[g, order], height=height, color=colors[g % len(colors)], label=label)
    ax.set_yticks(range(len(order)), [names[k] for k in order])
    ax.axvline(0, color="black", linewidth=0.8)
    lim = _limit(values) * 1.05
    ax.set_xlim(-lim, lim)
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def layers(explanation, sample: int | None = None, names=None, title: str | None = None):
    """The per-layer relevance matrix: one row per layer boundary, one column per unit.

    ``explanation`` comes from ``lrp(x, layerwise=True)``; each row shows one sample's relevance
    (``sample``) or, by default, the mean over the batch. Each row is scaled by its own largest
    |R|, so every layer's pattern is visible; blank cells are beyond that layer's width.
    """
    if explanation.layers is None:
        raise ValueError("layers: expected an explanation from lrp(x, layerwise=True), got one without layers")
    rows = []
    for r in explanation.layers:
        r = np.asarray(r, dtype=np.float64).reshape(r.shape[0], -1)
        rows.append(r.mean(axis=0) if sample is None else r[sample])
    width = max(len(r) for r in rows)
    mat = np.full((len(rows), width), np.nan)
    for k, r in enumerate(rows):
        mat[k, :len(r)] = r / _limit(r)
    fig = _figure((min(14, 2 + width * 0.06), 0.45 * len(rows) + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mat), cmap=CMAP, vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    labels = names or [f"input of layer {k}" for k in range(len(rows) - 1)] + ["start"]
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("unit")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label="relevance / max |relevance| of the row")
    return fig
