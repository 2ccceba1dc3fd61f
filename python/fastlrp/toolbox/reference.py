"""The numpy LRP toolbox's formulas (docs/rules.md, "Toolbox convention"), written out the slow and
obvious way the toolbox computes them: an (N, in, out) tensor per Linear layer, one window at a
time for convolutions and pools, float64. It is the reference of fastlrp.toolbox's tests and the
toolbox-style peer of bench/bench_toolbox.py. Layers are plain tuples, so that nothing here
depends on the code under test:

    ("linear", W (m, n), B (n,))           ("conv", W (h, w, d, n), B (n,), (s0, s1))
    ("sumpool", (h, w), (s0, s1))          ("maxpool", (h, w), (s0, s1))
    ("rect",) ("tanh",) ("flatten",) ("softmax",)
"""

import numpy as np


def sign(z):
    return np.where(z >= 0, 1.0, -1.0)


def forward_all(layers, X):
    """The input of every layer and the final output."""
    acts = [X]
    for layer in layers:
        acts.append(forward_layer(layer, acts[-1]))
    return acts


def forward_layer(layer, X):
    kind = layer[0]
    if kind == "linear":
        return X @ layer[1] + layer[2]
    if kind == "rect":
        return np.maximum(X, 0)
    if kind == "tanh":
        return np.tanh(X)
    if kind == "softmax":
        e = np.exp(X)
        return e / e.sum(axis=1, keepdims=True)
    if kind == "flatten":
        return X.reshape(X.shape[0], -1)
    N, H, W, D = X.shape
    if kind == "conv":
        Wt, B, (s0, s1) = layer[1], layer[2], layer[3]
        h, w, _, n = Wt.shape
        Ho, Wo = (H - h) // s0 + 1, (W - w) // s1 + 1
        Y = np.zeros((N, Ho, Wo, n))
        for i in range(Ho):
            for j in range(Wo):
                patch = X[:, i * s0:i * s0 + h, j * s1:j * s1 + w, :]
                Y[:, i, j, :] = np.tensordot(patch, Wt, axes=([1, 2, 3], [0, 1, 2])) + B
        return Y
    (h, w), (s0, s1) = layer[1], layer[2]
    Ho, Wo = (H - h) // s0 + 1, (W - w) // s1 + 1
    Y = np.zeros((N, Ho, Wo, D))
    for i in range(Ho):
        for j in range(Wo):
            patch = X[:, i * s0:i * s0 + h, j * s1:j * s1 + w, :]
            Y[:, i, j, :] = patch.sum(axis=(1, 2)) / np.sqrt(h * w) if kind == "sumpool" else patch.max(axis=(1, 2))
    return Y


def _distribute(Z, Y, Zb, R, rule, param, simple_eps):
    """Relevance of the inputs of one output group: Z (N, k, n) contributions, Y (N, n) the
    outputs (sum of Z plus the bias Zb (n,)), R (N, n). Returns (N, k). As the toolbox: the
    denominators from the forward output, the negative sum of alphabeta by subtraction."""
    if rule in ("simple", "epsilon"):
        eps = simple_eps if rule == "simple" else param
        return (Z * (R / (Y + eps * sign(Y)))[:, None, :]).sum(axis=2)
    if rule == "alphabeta":
        alpha, beta = param, 1.0 - param
        Zp = Z * (Z > 0)
        P = Zp.sum(axis=1) + Zb * (Zb > 0) + 1e-16
        if beta == 0:
            return (Zp * (alpha * R / P)[:, None, :]).sum(axis=2)
        Q = Y - P - 1e-16
        if alpha == 0:
            return ((Z - Zp) * (beta * R / Q)[:, None, :]).sum(axis=2)
        return ((alpha * Zp / P[:, None, :] + beta * (Z - Zp) / Q[:, None, :]) * R[:, None, :]).sum(axis=2)
    raise ValueError(rule)


def lrp_layer(layer, X, Y, R, rule, param):
    """The toolbox's relevance at the input of ``layer`` (input X, output Y) for R at its output."""
    kind = layer[0]
    if kind in ("rect", "tanh", "softmax"):
        return R
    if kind == "flatten":
        return R.reshape(X.shape)
    if kind == "linear":
        W, B = layer[1], layer[2]
        if rule == "flat":
            return np.repeat(R.sum(axis=1, keepdims=True) / W.shape[0], W.shape[0], axis=1)
        if rule == "ww":
            V = W ** 2
            return (V[None] / V.sum(axis=0)[None, None, :] * R[:, None, :]).sum(axis=2)
        Z = X[:, :, None] * W[None, :, :]
        return _distribute(Z, Y, B, R, rule, param, 1e-16)
    N, H, Wd, D = X.shape
    Rx = np.zeros_like(X)
    if kind == "conv":
        Wt, B, (s0, s1) = layer[1], layer[2], layer[3]
        h, w, d, n = Wt.shape
        for i in range(R.shape[1]):
            for j in range(R.shape[2]):
                patch = X[:, i * s0:i * s0 + h, j * s1:j * s1 + w, :].reshape(N, -1)
                r = R[:, i, j, :]
                if rule == "flat":
                    rin = np.repeat(r.sum(axis=1, keepdims=True) / (h * w * d), h * w * d, axis=1)
                elif rule == "ww":
                    V = Wt.reshape(-1, n) ** 2
                    rin = (V[None] / V.sum(axis=0)[None, None, :] * r[:, None, :]).sum(axis=2)
                else:
                    Z = patch[:, :, None] * Wt.reshape(-1, n)[None]
                    rin = _distribute(Z, Y[:, i, j, :], B, r, rule, param, 1e-16)
                Rx[:, i * s0:i * s0 + h, j * s1:j * s1 + w, :] += rin.reshape(N, h, w, d)
        return Rx
    (h, w), (s0, s1) = layer[1], layer[2]
    for i in range(R.shape[1]):
        for j in range(R.shape[2]):
            patch = X[:, i * s0:i * s0 + h, j * s1:j * s1 + w, :]  # (N, h, w, D)
            r = R[:, i:i + 1, j:j + 1, :]
            if rule in ("flat", "ww"):
                rin = np.ones_like(patch) / (h * w) * r
            elif kind == "maxpool":
                m = patch == patch.max(axis=(1, 2), keepdims=True)
                rin = m * r / m.sum(axis=(1, 2), keepdims=True)
            elif rule in ("simple", "epsilon"):
                eps = 1e-12 if rule == "simple" else param
                S = patch.sum(axis=(1, 2), keepdims=True)
                rin = patch / (S + eps * sign(S)) * r
            else:  # alphabeta, docs/rules.md's formula with b = 0
                alpha, beta = param, 1.0 - param
                S = patch.sum(axis=(1, 2), keepdims=True)
                P = (patch * (patch > 0)).sum(axis=(1, 2), keepdims=True) + 1e-16
                Q = S - P - 1e-16
                rin = alpha * patch * (patch > 0) / P * r + beta * patch * (patch < 0) / Q * r
            Rx[:, i * s0:i * s0 + h, j * s1:j * s1 + w, :] += rin
    return Rx


def lrp(layers, X, R, rules):
    """Backward through every layer; ``rules`` is one (rule, param) per layer."""
    acts = forward_all(layers, X)
    for k in range(len(layers) - 1, -1, -1):
        R = lrp_layer(layers[k], acts[k], acts[k + 1], R, *rules[k])
    return R
