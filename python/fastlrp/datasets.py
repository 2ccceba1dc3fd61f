"""The UCI Adult census-income data shipped with fastlrp, and its feature encoding.

The encoding (one-hot categorical columns, standardised numeric ones) is fitted once by
``examples/train_income_model.py`` and stored in ``data/income_meta.json``; applying it needs
only numpy.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["load_adult", "AdultEncoder", "data_path", "adult_rows", "NUMERIC", "CATEGORICAL", "TARGET"]

NUMERIC = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship", "race",
               "gender", "native-country"]
TARGET = "income"


def data_path(name: str):
    """Path of a file shipped in ``fastlrp/data``."""
    return resources.files("fastlrp") / "data" / name


def load_adult(path=None) -> tuple[dict, np.ndarray]:
    """The Adult table as ``(columns, y)``: a dict of column name -> array, and y = 1 for >50K."""
    path = data_path("adult.csv.gz") if path is None else path
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        rows = [r for r in reader if r]
    expected = NUMERIC + CATEGORICAL + [TARGET]
    missing = set(expected) - set(header)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    cols = {name: [r[k].strip() for r in rows] for k, name in enumerate(header)}
    table = {name: np.array(cols[name], dtype=np.float64) for name in NUMERIC}
    table.update({name: np.array(cols[name], dtype=object) for name in CATEGORICAL})
    y = np.array([v.rstrip(".") == ">50K" for v in cols[TARGET]], dtype=np.int64)
    return table, y


@dataclass
class AdultEncoder:
    """Standardised numeric columns followed by one-hot categorical columns."""

    mean: dict
    scale: dict
    categories: dict

    @classmethod
    def fit(cls, table: dict, rows=None) -> "AdultEncoder":
        rows = slice(None) if rows is None else rows
        mean = {c: float(table[c][rows].mean()) for c in NUMERIC}
        scale = {c: float(table[c][rows].std()) or 1.0 for c in NUMERIC}
        categories = {c: sorted(set(table[c][rows].tolist())) for c in CATEGORICAL}
        return cls(mean, scale, categories)

    @property
    def feature_names(self) -> list[str]:
        return list(NUMERIC) + [f"{c}={v}" for c in CATEGORICAL for v in self.categories[c]]

    @property
    def attribute_of_feature(self) -> list[str]:
        """For every encoded feature, the original column it came from."""
        return list(NUMERIC) + [c for c in CATEGORICAL for _ in self.categories[c]]

    def transform(self, table: dict, rows=None, dtype=np.float32) -> np.ndarray:
        rows = slice(None) if rows is None else rows
        parts = [((table[c][rows] - self.mean[c]) / self.scale[c])[:, None] for c in NUMERIC]
        for c in CATEGORICAL:
            values = table[c][rows]
            cats = np.array(self.categories[c], dtype=object)
            parts.append((values[:, None] == cats[None, :]).astype(np.float64))
        return np.hstack(parts).astype(dtype)

    def aggregate(self, relevance: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Sum relevance (N, features) back to the original attributes: (names, (N, attributes))."""
        attrs = NUMERIC + CATEGORICAL
        owner = self.attribute_of_feature
        index = np.array([attrs.index(a) for a in owner])
        out = np.zeros((relevance.shape[0], len(attrs)), dtype=np.float64)
        np.add.at(out.T, index, relevance.T.astype(np.float64))
        return attrs, out

    def to_json(self) -> dict:
        return {"mean": self.mean, "scale": self.scale, "categories": self.categories}

    @classmethod
    def from_json(cls, d: dict) -> "AdultEncoder":
        return cls(d["mean"], d["scale"], d["categories"])


def split_indices(n: int, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/test split of n rows."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def load_income_model():
    """The shipped income MLP, its encoder, and the split it was trained with."""
    from .model import load

    meta = json.loads(data_path("income_meta.json").read_text())
    return load(data_path("income_mlp.npz")), AdultEncoder.from_json(meta["encoder"]), meta


_ENCODED = {}


def adult_rows(start: int, stop: int, dtype=np.float32) -> np.ndarray:
    """Rows ``start:stop`` of the shipped Adult table, encoded for the income model, repeated
    cyclically past its end (row i is person ``i % 48842``): a table of any length, made where
    it is used (a Dask task builds its own chunk from the package's data, nothing is sent)."""
    if not 0 <= start <= stop:
        raise ValueError(f"adult_rows: expected 0 <= start <= stop, got {start}, {stop}")
    key = np.dtype(dtype).str
    base = _ENCODED.get(key)
    if base is None:
        _, enc, _ = load_income_model()
        table, _ = load_adult()
        base = _ENCODED[key] = np.ascontiguousarray(enc.transform(table), dtype=dtype)
    return base[np.arange(start, stop) % len(base)]
