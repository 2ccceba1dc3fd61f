"""The slow, obviously correct numpy reference: every rule written from its formula.

Everything here materialises the ``(N, in, out)`` contribution tensor ``c_ij`` and applies
``R_i = sum_j c_ij R_j / stab(sum_i c_ij + d_j)`` literally (rules.md). It is for tests and
benchmarks on small problems, never for production use.
"""

from __future__ import annotations

import numpy as np

from . import layers as L
from . import rules as R

__all__ = ["stab", "divide", "dense_relevance", "forward_layer", "forward", "lrp"]

EPS_S = 1e-6


def stab(z, eps):
    """z + eps * s(z), with s(0) = +1."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def divide(r, z, eps):
    """r / stab(z), and 0 where the stabilised denominator is exactly 0."""
    d = stab(z, eps)
    safe = np.where(d == 0, 1.0, d)
    return np.where(d == 0, 0.0, r / safe)


def _propagate(c, d, r, eps):
    """R_i = sum_j c_ij r_j / stab(sum_i c_ij + d_j) for c (N, in, out), d (out,) or (N, out)."""
    z = c.sum(axis=1) + d
    return np.einsum("nij,nj->ni", c, divide(r, z, eps))


def dense_relevance(a, weight, bias, r, rule):
    """Relevance at the input of a Dense layer ``z = a W^T + b`` under ``rule``.

    a (N, in), weight (out, in), bias (out,), r (N, out) -> (N, in).
    """
    a = np.asarray(a, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64).T[None]  # (1, in, out): w_ij
    b = np.asarray(bias, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    ai = a[:, :, None]  # (N, in, 1): a_i
    pos, neg = (lambda v: np.maximum(v, 0)), (lambda v: np.minimum(v, 0))
    if isinstance(rule, R.Epsilon):
        return _propagate(ai * w, b, r, rule.epsilon)
    if isinstance(rule, R.ZPlus):
        c = pos(ai) * pos(w) + neg(ai) * neg(w)
        return _propagate(c, pos(b), r, EPS_S)
    if isinstance(rule, R.AlphaBeta):
        p = pos(ai) * pos(w) + neg(ai) * neg(w)
        n = pos(ai) * neg(w) + neg(ai) * pos(w)
        return rule.alpha * _propagate(p, pos(b), r, EPS_S) - rule.beta * _propagate(n, neg(b), r, EPS_S)
    if isinstance(rule, R.Gamma):
        g = rule.gamma
        z = (ai * w).sum(axis=1) + b  # the original pre-activation decides the variant
        c_pos = pos(ai) * (w + g * pos(w)) + neg(ai) * (w + g * neg(w))
        c_neg = pos(ai) * (w + g * neg(w)) + neg(ai) * (w + g * pos(w))
        r_pos = np.where(z > 0, r, 0.0)
        r_neg = np.where(z < 0, r, 0.0)
        return (_propagate(c_pos, b + g * pos(b), r_pos, EPS_S)
                + _propagate(c_neg, b + g * neg(b), r_neg, EPS_S))
    if isinstance(rule, R.ZBox):
        lo, hi = rule.bounds_for((a.shape[1],))
        c = ai * w - lo[None, :, None] * pos(w) - hi[None, :, None] * neg(w)
        return _propagate(c, 0.0, r, EPS_S)
    if isinstance(rule, R.WSquare):
        c = np.broadcast_to(w ** 2, (a.shape[0],) + w.shape[1:])
        return _propagate(c, 0.0, r, EPS_S)
    if isinstance(rule, R.Flat):
        c = np.ones((a.shape[0],) + w.shape[1:])
        return _propagate(c, 0.0, r, EPS_S)
    raise ValueError(f"the reference has no Dense formula for {rule!r}")


def forward_layer(layer, a):
    """One layer's forward pass in float64 numpy."""
    a = np.asarray(a, dtype=np.float64)
    if isinstance(layer, L.Dense):
        return a @ layer.weight.T + layer.bias
    if isinstance(layer, L.BatchNorm1d):
        return (a - layer.mean) / np.sqrt(layer.var + layer.eps) * layer.weight + layer.bias
    if isinstance(layer, (L.Identity, L.Dropout, L.Flatten)):
        return a.reshape(a.shape[0], -1)
    if isinstance(layer, L.ReLU):
        return np.maximum(a, 0)
    if isinstance(layer, L.LeakyReLU):
        return np.where(a >= 0, a, layer.negative_slope * a)
    if isinstance(layer, L.Tanh):
        return np.tanh(a)
    if isinstance(layer, L.Sigmoid):
        return 1 / (1 + np.exp(-a))
    if isinstance(layer, L.ELU):
        return np.where(a > 0, a, layer.alpha * np.expm1(a))
    if isinstance(layer, L.SELU):
        alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        return scale * np.where(a > 0, a, alpha * np.expm1(a))
    if isinstance(layer, (L.Softmax, L.LogSoftmax)):
        e = np.exp(a - a.max(axis=1, keepdims=True))
        s = e / e.sum(axis=1, keepdims=True)
        return s if isinstance(layer, L.Softmax) else np.log(s)
    raise ValueError(f"the reference has no forward pass for {layer!r}")


def forward(layers, x):
    for layer in layers:
        x = forward_layer(layer, x)
    return x


def lrp(layers, rules, x, target=None):
    """Forward pass and LRP through ``layers`` with one rule per layer, in float64.

    Returns ``(relevance, logits, per_layer)`` where ``per_layer`` lists the relevance at the
    input of every layer, then the start relevance.
    """
    layers = list(layers)
    acts = [np.asarray(x, dtype=np.float64)]
    skip = isinstance(layers[-1], L.OUTPUT_NONLINEARITIES)
    run = layers[:-1] if skip else layers
    for layer in run:
        acts.append(forward_layer(layer, acts[-1]))
    logits = acts[-1]
    n = logits.shape[0]
    if target is None or np.ndim(target) < 2:
        t = logits.argmax(axis=1) if target is None else np.broadcast_to(np.asarray(target), (n,))
        start = np.zeros_like(logits)
        start[np.arange(n), t] = logits[np.arange(n), t]
    else:
        start = np.asarray(target, dtype=np.float64)
    per_layer = [start]
    if skip:
        per_layer.insert(0, start)
    r = start
    for k in range(len(run) - 1, -1, -1):
        layer, rule, a = run[k], rules[k], acts[k]
        if isinstance(rule, R.Pass):
            pass
        elif isinstance(layer, L.Dense):
            r = dense_relevance(a, layer.weight, layer.bias, r, rule)
        elif isinstance(layer, L.BatchNorm1d):
            z = acts[k + 1]
            r = a * layer.weight / np.sqrt(layer.var + layer.eps) * divide(r, z, rule.epsilon)
        else:
            raise ValueError(f"the reference cannot apply {rule!r} to {layer!r}")
        per_layer.insert(0, r)
    return r, logits, per_layer
