"""The slow, obviously correct numpy reference: every rule written from its formula.

Everything here materialises the ``(N, in, out)`` contribution tensor ``c_ij`` and applies
``R_i = sum_j c_ij R_j / stab(sum_i c_ij + d_j)`` literally (docs/rules.md). It is for tests and
benchmarks on small problems, never for production use.
"""

from __future__ import annotations

import numpy as np

from . import layers as L
from . import rules as R

__all__ = ["stab", "divide", "dense_relevance", "forward_layer", "forward", "lrp", "conv2d", "pool2d",
           "linear_map", "maxpool_relevance", "layer_relevance", "graph_lrp"]

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


def dense_relevance(a, weight, bias, r, rule, connected=None, in_shape=None):
    """Relevance at the input of a linear layer ``z = a W^T + b`` under ``rule``.

    a (N, in), weight (out, in), bias (out,) or (N, out), r (N, out) -> (N, in). ``connected``
    (out, in) marks the inputs in output j's receptive field (Flat counts only those); default:
    all. ``in_shape``: one sample's input shape, for ZBox bounds given per channel.
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
        lo, hi = rule.bounds_for(in_shape or (a.shape[1],))
        c = ai * w - lo[None, :, None] * pos(w) - hi[None, :, None] * neg(w)
        return _propagate(c, 0.0, r, EPS_S)
    if isinstance(rule, R.WSquare):
        c = np.broadcast_to(w ** 2, (a.shape[0],) + w.shape[1:])
        return _propagate(c, 0.0, r, EPS_S)
    if isinstance(rule, R.Flat):
        mask = np.ones(w.shape[1:]) if connected is None else np.asarray(connected, dtype=np.float64).T
        c = np.broadcast_to(mask, (a.shape[0],) + w.shape[1:])
        return _propagate(c, 0.0, r, EPS_S)
    raise ValueError(f"the reference has no Dense formula for {rule!r}")


def pads_of(layer):
    """A Conv2d's zero padding as (top, bottom, left, right)."""
    (ph, pw), (eh, ew) = layer.padding, getattr(layer, "padding_end", layer.padding)
    return ph, eh, pw, ew


def conv2d(x, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """Cross-correlation of NCHW x with weight (out, in/groups, kh, kw), zero padding (ph, pw) on
    both sides, as torch, or (top, bottom, left, right); a grouped convolution is one convolution
    per slice of channels."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    if groups > 1:
        c, o = x.shape[1] // groups, weight.shape[0] // groups
        return np.concatenate([conv2d(x[:, g * c:(g + 1) * c], weight[g * o:(g + 1) * o],
                                      np.asarray(bias)[g * o:(g + 1) * o], stride, padding, dilation)
                               for g in range(groups)], axis=1)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    ph, eh, pw, ew = padding if len(padding) == 4 else (padding[0], padding[0], padding[1], padding[1])
    ho = (h + ph + eh - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pw + ew - dw * (kw - 1) - 1) // sw + 1
    xp = np.zeros((n, c, h + ph + eh, w + pw + ew))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    out = np.zeros((n, o, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dh: ky * dh + sh * (ho - 1) + 1: sh, kx * dw: kx * dw + sw * (wo - 1) + 1: sw]
            out += np.einsum("nchw,oc->nohw", patch, weight[:, :, ky, kx])
    return out + np.asarray(bias, dtype=np.float64)[None, :, None, None]


def _windows(size, k, s, p, adaptive_out=None, ceil_mode=False, padded=False):
    """In-bounds [start, end) of every pooling window along one axis (torch's boundaries); with
    ``padded``, the window's extent inside the padded input instead (AvgPool2d's divisor)."""
    if adaptive_out is not None:
        return [((i * size) // adaptive_out, -(-((i + 1) * size) // adaptive_out)) for i in range(adaptive_out)]
    n_out = (size + 2 * p - k) // s + 1
    if ceil_mode:  # round up, but the last window starts inside the input or its left padding
        n_out = -(-(size + 2 * p - k) // s) + 1
        if (n_out - 1) * s >= size + p:
            n_out -= 1
    if padded:
        return [(i * s - p, min(i * s - p + k, size + p)) for i in range(n_out)]
    return [(max(i * s - p, 0), min(i * s - p + k, size)) for i in range(n_out)]


def _pool_windows(layer, h, w, padded=False):
    if isinstance(layer, L.AdaptiveAvgPool2d):
        return _windows(h, 0, 0, 0, layer.output_size[0]), _windows(w, 0, 0, 0, layer.output_size[1])
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    return (_windows(h, kh, sh, ph, None, layer.ceil_mode, padded),
            _windows(w, kw, sw, pw, None, layer.ceil_mode, padded))


def pool2d(layer, x):
    """Forward pass of a pooling layer on NCHW x, window by window."""
    x = np.asarray(x, dtype=np.float64)
    n, c, h, w = x.shape
    rows, cols = _pool_windows(layer, h, w)
    prows, pcols = _pool_windows(layer, h, w, padded=True)  # AvgPool2d's divisor counts the padding
    out = np.zeros((n, c, len(rows), len(cols)))
    for i, (y0, y1) in enumerate(rows):
        for j, (x0, x1) in enumerate(cols):
            win = x[:, :, y0:y1, x0:x1]
            if isinstance(layer, L.MaxPool2d):
                out[:, :, i, j] = win.max(axis=(2, 3))
            elif isinstance(layer, L.SumPool2d):
                out[:, :, i, j] = win.sum(axis=(2, 3)) / np.sqrt(layer.kernel_size[0] * layer.kernel_size[1])
            elif isinstance(layer, L.AvgPool2d) and layer.count_include_pad:
                extent = (prows[i][1] - prows[i][0]) * (pcols[j][1] - pcols[j][0])
                out[:, :, i, j] = win.sum(axis=(2, 3)) / extent
            else:
                out[:, :, i, j] = win.mean(axis=(2, 3))
    return out


def linear_map(fn, in_shape):
    """The matrix (out, in) of a linear map of per-sample inputs of ``in_shape``, read off by
    pushing every basis vector through ``fn`` (which maps a batch to a batch)."""
    size = int(np.prod(in_shape))
    basis = np.eye(size).reshape((size,) + tuple(in_shape))
    return fn(basis).reshape(size, -1).T


def maxpool_relevance(layer, a, r):
    """MaxPool2d relevance, window by window: winner-take-all with ties split evenly, or
    proportional to the activations (mode 'avg'); overlapping windows add up."""
    a = np.asarray(a, dtype=np.float64)
    n, c, h, w = a.shape
    rows, cols = _pool_windows(layer, h, w)
    out = np.zeros_like(a)
    for i, (y0, y1) in enumerate(rows):
        for j, (x0, x1) in enumerate(cols):
            win = a[:, :, y0:y1, x0:x1]
            rj = r[:, :, i, j][:, :, None, None]
            if layer.mode == "avg":
                out[:, :, y0:y1, x0:x1] += win * divide(rj, win.sum(axis=(2, 3), keepdims=True), EPS_S)
            else:
                winners = (win == win.max(axis=(2, 3), keepdims=True)).astype(np.float64)
                out[:, :, y0:y1, x0:x1] += winners * rj / winners.sum(axis=(2, 3), keepdims=True)
    return out


def forward_layer(layer, a):
    """One layer's forward pass in float64 numpy (NCHW for images)."""
    a = np.asarray(a, dtype=np.float64)
    if isinstance(layer, L.Dense):
        return a @ layer.weight.T + layer.bias
    if isinstance(layer, L.Conv2d):
        return conv2d(a, layer.weight, layer.bias, layer.stride, pads_of(layer), layer.dilation, layer.groups)
    if isinstance(layer, (L._Pool, L.AdaptiveAvgPool2d)):
        return pool2d(layer, a)
    if isinstance(layer, L.BatchNorm2d):
        shape = (1, -1, 1, 1)
        return ((a - layer.mean.reshape(shape)) / np.sqrt(layer.var.reshape(shape) + layer.eps)
                * layer.weight.reshape(shape) + layer.bias.reshape(shape))
    if isinstance(layer, L.BatchNorm1d):
        return (a - layer.mean) / np.sqrt(layer.var + layer.eps) * layer.weight + layer.bias
    if isinstance(layer, L.Flatten):
        return a.reshape(a.shape[0], -1)
    if isinstance(layer, L._Gather):
        return a[:, layer.source_channels(a.shape[1])]
    if isinstance(layer, (L.Identity, L.Dropout)):
        return a
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
    if isinstance(layer, L.SiLU):
        return a / (1 + np.exp(-a))
    if isinstance(layer, L.GELU):
        if layer.approximate == "tanh":
            return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))
        from math import erf
        return 0.5 * a * (1 + np.vectorize(erf)(a / np.sqrt(2)))
    if isinstance(layer, L.Hardswish):
        return a * np.clip(a + 3, 0, 6) / 6
    if isinstance(layer, L.Hardsigmoid):
        return np.clip(a + 3, 0, 6) / 6
    if isinstance(layer, L.ReLU6):
        return np.clip(a, 0, 6)
    if isinstance(layer, L.Mish):
        return a * np.tanh(np.logaddexp(0, a))
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
    start = _start(logits, target)
    per_layer = [start]
    if skip:
        per_layer.insert(0, start)
    r = start
    for k in range(len(run) - 1, -1, -1):
        r = layer_relevance(run[k], rules[k], acts[k], acts[k + 1], r)
        per_layer.insert(0, r)
    return r, logits, per_layer


def layer_relevance(layer, rule, a, z, r):
    """Relevance at the input ``a`` of one single-input layer with output ``z`` under ``rule``."""
    if isinstance(layer, L.MaxPool2d):  # its mode decides, not a rule
        return maxpool_relevance(layer, a, r)
    if isinstance(layer, L._Gather):  # each value back to where it came from
        back = np.zeros_like(a)
        back[:, layer.source_channels(a.shape[1])] = r
        return back
    if isinstance(rule, R.Pass):
        return r.reshape(a.shape)  # element-wise layers, and Flatten back to its input's shape
    if isinstance(layer, L.Dense):
        return dense_relevance(a, layer.weight, layer.bias, r, rule)
    if isinstance(layer, (L.Conv2d, L._Pool, L.AdaptiveAvgPool2d)):
        return _spatial_relevance(layer, a, r, rule)
    if isinstance(layer, L.BatchNorm1d):  # also BatchNorm2d: an element-wise affine map
        shape = (1, -1, 1, 1) if a.ndim == 4 else (1, -1)
        scale = (layer.weight / np.sqrt(layer.var + layer.eps)).reshape(shape)
        return a * scale * divide(r, z, rule.epsilon)
    raise ValueError(f"the reference cannot apply {rule!r} to {layer!r}")


def _start(logits, target):
    n = logits.shape[0]
    if target is None or np.ndim(target) < 2:
        flat = logits.reshape(n, -1)  # class indices count in NCHW order
        t = flat.argmax(axis=1) if target is None else np.broadcast_to(np.asarray(target), (n,))
        start = np.zeros_like(flat)
        start[np.arange(n), t] = flat[np.arange(n), t]
        return start.reshape(logits.shape)
    return np.asarray(target, dtype=np.float64)


def graph_lrp(model, rules, x, target=None):
    """Forward pass and LRP through a graph :class:`fastlrp.Model`, node by node, in float64.

    Fan-out sums: a node's output relevance is the sum of what its consumers send back. Add:
    ``R_k = x_k R / stab(z)`` with the node's Epsilon; Concat: the relevance cut into slices.
    Returns ``(relevance, logits, per_node)``: ``per_node`` maps every node's name to the
    relevance at its output, and the input's name to the input relevance.
    """
    nodes = model.nodes
    acts = {model.input_name: np.asarray(x, dtype=np.float64)}
    skip = isinstance(nodes[-1].layer, L.OUTPUT_NONLINEARITIES)
    run = nodes[:-1] if skip else nodes
    for n in run:
        ins = [acts[i] for i in n.inputs]
        if isinstance(n.layer, L.Add):
            acts[n.name] = sum(ins[1:], ins[0].copy())
        elif isinstance(n.layer, L.Concat):
            acts[n.name] = np.concatenate(ins, axis=1)
        elif isinstance(n.layer, L.Mul):
            acts[n.name] = ins[0] * ins[1]  # numpy broadcasts a (C, 1, 1) gate
        else:
            acts[n.name] = forward_layer(n.layer, ins[0])
    logits_name = nodes[-1].inputs[0] if skip else nodes[-1].name
    logits = acts[logits_name]
    rel = {logits_name: _start(logits, target)}
    if skip:
        rel[nodes[-1].name] = rel[logits_name].copy()

    def send(name, r):
        rel[name] = rel[name] + r if name in rel else r

    for n in reversed(run):
        r = rel.setdefault(n.name, np.zeros_like(acts[n.name]))
        rule = rules[n.index]
        if isinstance(n.layer, L.Add):
            s = divide(r, acts[n.name], rule.epsilon)
            for i in n.inputs:
                send(i, acts[i] * s)
        elif isinstance(n.layer, L.Mul):  # all to the signal, none to the gate
            gate = L.Mul.gate_index(acts[n.inputs[0]].shape[1:], acts[n.inputs[1]].shape[1:])
            send(n.inputs[1 - gate], r)
        elif isinstance(n.layer, L.Concat):
            c0 = 0
            for i in n.inputs:
                c = acts[i].shape[1]
                send(i, r[:, c0:c0 + c])
                c0 += c
        else:
            send(n.inputs[0], layer_relevance(n.layer, rule, acts[n.inputs[0]], acts[n.name], r))
    rel.setdefault(model.input_name, np.zeros_like(acts[model.input_name]))
    return rel[model.input_name], logits, rel


def _spatial_relevance(layer, a, r, rule):
    """A conv or linear pool as the matrix read off its forward pass, then the dense formula;
    a grouped convolution tap by tap (conv_relevance)."""
    shape = a.shape[1:]
    large = a[0].size * np.asarray(r)[0].size > 1 << 16  # the matrix would take long to read off
    if isinstance(layer, L.Conv2d) and (layer.groups > 1 or large):
        return conv_relevance(layer, a, r, rule)
    if large and _pool_as_conv(layer, shape) is not None:
        return conv_relevance(_pool_as_conv(layer, shape), a, r, rule)
    if isinstance(layer, L.Conv2d):
        def fn(v, weight=layer.weight):
            return conv2d(v, weight, np.zeros(layer.out_channels), layer.stride, pads_of(layer), layer.dilation,
                          layer.groups)
        m = linear_map(fn, shape)
        connected = linear_map(lambda v: fn(v, np.ones_like(layer.weight)), shape) != 0
        out_shape = fn(np.zeros((1,) + shape)).shape[1:]
        bias = np.broadcast_to(layer.bias[:, None, None], out_shape).ravel()
    else:
        m = linear_map(lambda v: pool2d(layer, v), shape)
        connected = m != 0
        out_shape = pool2d(layer, np.zeros((1,) + shape)).shape[1:]
        bias = np.zeros(m.shape[0])
    n = a.shape[0]
    rel = dense_relevance(a.reshape(n, -1), m, bias, np.asarray(r).reshape(n, -1), rule, connected, shape)
    return rel.reshape(a.shape)


def _pool_as_conv(layer, shape):
    """A linear pool that is a depthwise convolution with fixed weights (SumPool2d, AvgPool2d
    counting the padding, AdaptiveAvgPool2d whose windows tile the input), as that Conv2d."""
    c, h, w = shape
    if isinstance(layer, L.AdaptiveAvgPool2d):
        (oh, ow) = layer.output_size
        if h % oh or w % ow:
            return None
        k, stride, padding, value = (h // oh, w // ow), (h // oh, w // ow), (0, 0), 1.0 / ((h // oh) * (w // ow))
    elif (isinstance(layer, L.SumPool2d) or (isinstance(layer, L.AvgPool2d) and layer.count_include_pad)) \
            and not layer.ceil_mode:
        k, stride, padding = layer.kernel_size, layer.stride, layer.padding
        value = 1.0 / (np.sqrt(k[0] * k[1]) if isinstance(layer, L.SumPool2d) else k[0] * k[1])
    else:
        return None
    return L.Conv2d(np.full((c, 1) + tuple(k), value), np.zeros(c), stride, padding, groups=c)


def _taps(layer, h, w):
    """Per tap (ky, kx): the slices of the zero-padded input that the tap reads for every output."""
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.stride, layer.dilation
    ph, eh, pw, ew = pads_of(layer)
    ho = (h + ph + eh - dh * (kh - 1) - 1) // sh + 1
    wo = (w + pw + ew - dw * (kw - 1) - 1) // sw + 1
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, (slice(ky * dh, ky * dh + sh * (ho - 1) + 1, sh), slice(kx * dw, kx * dw + sw * (wo - 1) + 1, sw))


def conv_relevance(layer, a, r, rule):
    """Relevance at the input of a (grouped) Conv2d under ``rule``, tap by tap: for every tap the
    contributions ``c_ij`` of the inputs it reads (N, groups, out/groups, in/groups, Ho, Wo), summed
    into ``z_j``, then ``c_ij r_j / stab(z_j)`` added back at the inputs. No (N, in, out) array: a
    second reference to the linear-map one, fit for whole networks on small images."""
    a = np.asarray(a, dtype=np.float64)
    n, c, h, w = a.shape
    G = layer.groups
    o = layer.out_channels
    cg, og = c // G, o // G
    ph, eh, pw, ew = pads_of(layer)
    weight = np.asarray(layer.weight, dtype=np.float64).reshape(G, og, cg, *layer.kernel_size)
    bias = np.asarray(layer.bias, dtype=np.float64).reshape(G, og)

    def pad(v):
        out = np.zeros(v.shape[:2] + (h + ph + eh, w + pw + ew))
        out[:, :, ph:ph + h, pw:pw + w] = v
        return out

    ap = pad(a)
    inside = pad(np.ones((1, c, h, w)))  # padding contributes nothing
    lo = hi = None
    if isinstance(rule, R.ZBox):
        lo, hi = rule.bounds_for((c, h, w))
        lo, hi = pad(np.asarray(lo, dtype=np.float64).reshape(1, c, h, w)), pad(np.asarray(hi, dtype=np.float64).reshape(1, c, h, w))
    pos, neg = (lambda v: np.maximum(v, 0)), (lambda v: np.minimum(v, 0))

    def grouped(v, sl):  # (N', c, Ho, Wo) -> (N', G, 1, cg, Ho, Wo)
        p = v[:, :, sl[0], sl[1]]
        return p.reshape(p.shape[0], G, 1, cg, *p.shape[2:])

    def propagate(coef, d, rr, eps):
        """sum_j coef_ij rr_j / stab(sum_i coef_ij + d_j) back at the inputs."""
        z = 0.0
        for ky, kx, sl in _taps(layer, h, w):
            z = z + coef(sl, weight[:, :, :, ky, kx][None, :, :, :, None, None]).sum(axis=3)
        z = z + d
        s = divide(rr.reshape(z.shape), z, eps)
        out = np.zeros((n, c, h + ph + eh, w + pw + ew))
        for ky, kx, sl in _taps(layer, h, w):
            contrib = (coef(sl, weight[:, :, :, ky, kx][None, :, :, :, None, None]) * s[:, :, :, None]).sum(axis=2)
            out[:, :, sl[0], sl[1]] += contrib.reshape(n, c, *contrib.shape[3:])
        return out[:, :, ph:ph + h, pw:pw + w]

    first = next(_taps(layer, h, w))[2]
    ho_wo = ap[:, :, first[0], first[1]].shape[2:]
    rr = np.asarray(r, dtype=np.float64).reshape(n, G, og, *ho_wo)
    bias = bias[None, :, :, None, None]

    def act(sl, f=lambda v: v):
        return grouped(f(ap), sl)

    if isinstance(rule, R.Epsilon):
        return propagate(lambda sl, wt: act(sl) * wt, bias, rr, rule.epsilon)
    if isinstance(rule, (R.ZPlus, R.AlphaBeta)):
        alpha, beta = (1.0, 0.0) if isinstance(rule, R.ZPlus) else (rule.alpha, rule.beta)
        out = alpha * propagate(lambda sl, wt: act(sl, pos) * pos(wt) + act(sl, neg) * neg(wt), pos(bias), rr, EPS_S)
        if beta:
            out = out - beta * propagate(lambda sl, wt: act(sl, pos) * neg(wt) + act(sl, neg) * pos(wt),
                                         neg(bias), rr, EPS_S)
        return out
    if isinstance(rule, R.Gamma):
        g = rule.gamma
        zj = 0.0  # the original pre-activation decides the variant
        for ky, kx, sl in _taps(layer, h, w):
            zj = zj + (act(sl) * weight[:, :, :, ky, kx][None, :, :, :, None, None]).sum(axis=3)
        zj = zj + bias
        r_pos, r_neg = np.where(zj > 0, rr, 0.0), np.where(zj < 0, rr, 0.0)
        return (propagate(lambda sl, wt: act(sl, pos) * (wt + g * pos(wt)) + act(sl, neg) * (wt + g * neg(wt)),
                          bias + g * pos(bias), r_pos, EPS_S)
                + propagate(lambda sl, wt: act(sl, pos) * (wt + g * neg(wt)) + act(sl, neg) * (wt + g * pos(wt)),
                            bias + g * neg(bias), r_neg, EPS_S))
    if isinstance(rule, R.ZBox):
        return propagate(lambda sl, wt: act(sl) * wt - grouped(lo, sl) * pos(wt) - grouped(hi, sl) * neg(wt),
                         0.0, rr, EPS_S)
    if isinstance(rule, R.WSquare):
        return propagate(lambda sl, wt: grouped(inside, sl) * wt ** 2 + 0 * act(sl), 0.0, rr, EPS_S)
    if isinstance(rule, R.Flat):
        return propagate(lambda sl, wt: grouped(inside, sl) * np.ones_like(wt) + 0 * act(sl), 0.0, rr, EPS_S)
    raise ValueError(f"the reference has no Conv2d formula for {rule!r}")
