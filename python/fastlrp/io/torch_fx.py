"""Any traceable torch ``nn.Module`` as a graph :class:`fastlrp.Model`, through ``torch.fx``.

Every call in the traced graph maps to one fastlrp layer or join; anything else is a
TypeError naming the op, the node and the supported list. Modules are converted by
:func:`fastlrp.io.torch._convert`, so a module means the same in a Sequential and in a graph.
"""

from __future__ import annotations

import operator

from .. import layers as L
from ..graph import Input, Model
from .torch import _convert

SUPPORTED_OPS = ("modules: see fastlrp.io.torch.SUPPORTED", "+ / torch.add / operator.iadd of two tensors (Add)",
                 "torch.cat(dim=1) (Concat)", "torch.flatten(x, 1)", "x.view/reshape(N, -1)", "x.flatten(1)",
                 "x.mean((2, 3)) / torch.mean", "relu / sigmoid / tanh (torch, functional or method)",
                 "F.adaptive_avg_pool2d", "F.avg_pool2d", "F.max_pool2d", "F.softmax / log_softmax(dim=1)",
                 "F.dropout (identity)", "x.size / x.contiguous",
                 "* / torch.mul / operator.imul of a signal and a gate of its shape or (N, C, 1, 1) (Mul)",
                 "torchvision's stochastic_depth in eval mode (identity)",
                 "F.silu / gelu / hardswish / hardsigmoid / relu6 / mish", "F.hardtanh(x, 0, 6) (ReLU6)",
                 "x.chunk(n, dim=1) / torch.chunk and indexing its pieces (Chunk)",
                 "a channel shuffle written as view(N, g, C // g, H, W), transpose(1, 2), view(N, C, H, W) "
                 "(ChannelShuffle)", "F.channel_shuffle / torch.channel_shuffle")


class _Size:
    """A non-tensor value of the traced graph (``x.size()``, ``x.size(k)`` or a number made
    from them), allowed only as a shape argument. ``src``: the fx node whose size it is;
    ``axis``: which dimension (None: the whole size); ``div``: divided by this."""

    def __init__(self, src=None, axis=None, div=1):
        self.src, self.axis, self.div = src, axis, div


class _Chunks:
    """``x.chunk(n, dim=1)``: its pieces become Chunk nodes when indexed."""

    def __init__(self, src, chunks):
        self.src, self.chunks = src, chunks


class _GroupedView:
    """``x.view(N, g, C // g, H, W)`` of an image node ``src``: the channels as a (g, C/g) grid,
    ``swapped`` once transpose(1, 2) exchanged the two. Viewed back as (N, C, H, W) it is a
    ChannelShuffle(g) (swapped) or ``src`` itself."""

    def __init__(self, src, groups, swapped=False):
        self.src, self.groups, self.swapped = src, groups, swapped


def _fail(node, what, why=""):
    raise TypeError(f"from_torch: node {node.name!r} ({what}) is not supported{': ' + why if why else ''}; "
                    f"supported: {'; '.join(SUPPORTED_OPS)}")


def _arg(node, k, name, default=None):
    if len(node.args) > k:
        return node.args[k]
    return node.kwargs.get(name, default)


def from_fx(module) -> Model:
    import torch
    import torch.fx
    import torch.nn.functional as F

    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - whatever fx raises on Python control flow
        raise ValueError(f"from_torch: torch.fx cannot trace {type(module).__name__} "
                         f"({type(exc).__name__}: {str(exc)[:300]}); wrap the traceable part in a module") from None
    modules = dict(gm.named_modules())
    env, used_names, inp, out = {}, set(), None, None

    def tensor(node, value):
        if not hasattr(value, "layer"):
            _fail(node, "a non-tensor value used as a tensor")
        return value

    def unique(name):
        name = name if name not in used_names else None
        if name is not None:
            used_names.add(name)
        return name

    def apply(node, layer, *inputs, name=None):
        ins = [tensor(node, env[i]) if isinstance(i, torch.fx.Node) else _fail(node, f"a constant input {i!r}")
               for i in inputs]
        env[node] = layer(*ins, name=unique(name or node.name))

    relus = {torch.relu, F.relu, torch.nn.functional.relu}

    def hardtanh(node):
        if (_arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)) != (0.0, 6.0):
            _fail(node, "F.hardtanh", "only hardtanh(x, 0, 6), a ReLU6")
        return L.ReLU6()

    simple = {F.silu: lambda node: L.SiLU(), F.hardswish: lambda node: L.Hardswish(),
              F.hardsigmoid: lambda node: L.Hardsigmoid(), F.relu6: lambda node: L.ReLU6(),
              F.mish: lambda node: L.Mish(), F.hardtanh: hardtanh,
              F.gelu: lambda node: L.GELU(_arg(node, 1, "approximate", "none"))}
    for node in gm.graph.nodes:
        op, target = node.op, node.target
        if op == "placeholder":
            if inp is not None:
                _fail(node, "a second input", "fastlrp models take one input")
            inp = env[node] = Input(None, name="input")
            used_names.add("input")
        elif op == "output":
            res = node.args[0]
            if not isinstance(res, torch.fx.Node):
                _fail(node, f"output {type(res).__name__}", "one tensor output only")
            out = tensor(node, env[res])
        elif op == "call_module":
            m = modules[target]
            try:
                layer = _convert(node.name, target, m)
            except ValueError as exc:
                raise ValueError(f"from_torch: module {target!r} ({type(m).__name__}): {exc}") from None
            if type(m).__name__ in ("Softmax", "LogSoftmax") and m.dim is None:
                _fail(node, "Softmax(dim=None)")
            apply(node, layer, node.args[0], name=target)
        elif op == "call_function":
            if target in (operator.add, operator.iadd, torch.add):
                if len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
                    _fail(node, f"{target}", "only the sum of two tensors")
                apply(node, L.Add(), *node.args)
            elif target in (operator.mul, operator.imul, torch.mul):
                if len(node.args) != 2 or not all(isinstance(a, torch.fx.Node) for a in node.args):
                    _fail(node, f"{target}", "only the product of two tensors (a gate)")
                apply(node, L.Mul(), *node.args)
            elif getattr(target, "__name__", "") == "stochastic_depth":  # torchvision's, fx-wrapped
                if _arg(node, 3, "training", True):
                    _fail(node, "stochastic_depth(training=True)", "a model in training mode")
                env[node] = env[node.args[0]]
            elif target in simple:
                apply(node, simple[target](node), node.args[0])
            elif target is operator.getitem:
                seq, k = node.args
                value = env.get(seq) if isinstance(seq, torch.fx.Node) else None
                if isinstance(value, _Size) and value.axis is None and isinstance(k, int):
                    env[node] = _Size(value.src, k % 4 if k < 0 else k)
                elif isinstance(value, _Chunks) and isinstance(k, int):
                    if not -value.chunks <= k < value.chunks:
                        _fail(node, f"piece {k} of chunk({value.chunks})")
                    apply(node, L.Chunk(value.chunks, k % value.chunks), value.src)
                else:
                    _fail(node, "indexing", "only the pieces of x.chunk(n, dim=1) and the entries of x.size()")
            elif target is operator.floordiv:
                a, b = node.args
                value = env.get(a) if isinstance(a, torch.fx.Node) else None
                if not isinstance(value, _Size) or value.axis is None or not isinstance(b, int) or b < 1:
                    _fail(node, "//", "only a size entry divided by an int, as a shape argument")
                env[node] = _Size(value.src, value.axis, value.div * b)
            elif target is torch.chunk:
                _chunk(node, env, _arg(node, 1, "chunks"), _arg(node, 2, "dim", 0))
            elif target is torch.transpose:
                _transpose(node, env, node.args[0], _arg(node, 1, "dim0"), _arg(node, 2, "dim1"))
            elif getattr(target, "__name__", "") in ("channel_shuffle", "native_channel_shuffle") and \
                    getattr(target, "__module__", "") in ("torch", "torch.nn.functional", "torch._C._VariableFunctions"):
                apply(node, L.ChannelShuffle(_arg(node, 1, "groups")), node.args[0])
            elif target is torch.cat:
                dim = _arg(node, 1, "dim", 0)
                if dim not in (1, -3):
                    _fail(node, f"torch.cat(dim={dim})", "only the channel dimension 1")
                apply(node, L.Concat(1), *node.args[0])
            elif target is torch.flatten:
                if _arg(node, 1, "start_dim", 0) != 1 or _arg(node, 2, "end_dim", -1) != -1:
                    _fail(node, "torch.flatten", "only flatten(x, 1)")
                apply(node, L.Flatten(), node.args[0])
            elif target in relus:
                apply(node, L.ReLU(), node.args[0])
            elif target in (torch.sigmoid, F.sigmoid):
                apply(node, L.Sigmoid(), node.args[0])
            elif target in (torch.tanh, F.tanh):
                apply(node, L.Tanh(), node.args[0])
            elif target is F.adaptive_avg_pool2d:
                apply(node, L.AdaptiveAvgPool2d(_arg(node, 1, "output_size")), node.args[0])
            elif target is F.avg_pool2d:
                if _arg(node, 6, "divisor_override") is not None:
                    _fail(node, "F.avg_pool2d", "divisor_override")
                apply(node, L.AvgPool2d(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                                        count_include_pad=_arg(node, 5, "count_include_pad", True),
                                        ceil_mode=bool(_arg(node, 4, "ceil_mode", False))), node.args[0])
            elif target is F.max_pool2d:
                if _arg(node, 4, "dilation", 1) not in (1, (1, 1)):
                    _fail(node, "F.max_pool2d", "dilation")
                apply(node, L.MaxPool2d(_arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0),
                                        ceil_mode=bool(_arg(node, 5, "ceil_mode", False))), node.args[0])
            elif target in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax):
                if _arg(node, 1, "dim") not in (1, -1):
                    _fail(node, str(target), "only dim=1")
                apply(node, L.Softmax() if target in (F.softmax, torch.softmax) else L.LogSoftmax(), node.args[0])
            elif target is F.dropout:
                apply(node, L.Dropout(), node.args[0])
            elif target is torch.mean:
                _mean(node, apply, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
            else:
                _fail(node, f"function {getattr(target, '__name__', target)}")
        elif op == "call_method":
            if target == "size":
                dim = _arg(node, 1, "dim")
                env[node] = _Size(node.args[0], None if dim is None else dim % 4)
            elif target == "contiguous":
                env[node] = env[node.args[0]]
            elif target in ("view", "reshape"):
                shape = node.args[1:] if len(node.args) > 2 or not isinstance(node.args[1], (tuple, list)) else node.args[1]
                _view(node, env, apply, target, node.args[0], tuple(shape))
            elif target == "chunk":
                _chunk(node, env, _arg(node, 1, "chunks"), _arg(node, 2, "dim", 0))
            elif target == "transpose":
                _transpose(node, env, node.args[0], _arg(node, 1, "dim0"), _arg(node, 2, "dim1"))
            elif target == "permute":
                dims = node.args[1:] if len(node.args) > 2 or not isinstance(node.args[1], (tuple, list)) else node.args[1]
                if tuple(dims) != (0, 2, 1, 3, 4):
                    _fail(node, f"x.permute{tuple(dims)}", "only (0, 2, 1, 3, 4) of a channel-grouped view")
                _transpose(node, env, node.args[0], 1, 2)
            elif target == "flatten":
                if _arg(node, 1, "start_dim", 0) != 1 or _arg(node, 2, "end_dim", -1) != -1:
                    _fail(node, "x.flatten", "only x.flatten(1)")
                apply(node, L.Flatten(), node.args[0])
            elif target in ("relu", "sigmoid", "tanh"):
                apply(node, {"relu": L.ReLU, "sigmoid": L.Sigmoid, "tanh": L.Tanh}[target](), node.args[0])
            elif target == "mean":
                _mean(node, apply, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
            else:
                _fail(node, f"method .{target}()")
        else:
            _fail(node, f"{op} {target}")
    if inp is None or out is None:
        raise ValueError("from_torch: the traced graph has no input or no output")
    return Model(inp, out)


def _is_dim(v, env, src, axis, div=1):
    """Whether the shape argument ``v`` is ``src.size(axis) // div``."""
    value = env.get(v) if hasattr(v, "op") else None
    return isinstance(value, _Size) and value.src is src and value.axis == axis and value.div == div


def _view(node, env, apply, target, x, shape):
    """x.view/reshape: (N, -1) is a flatten; (N, g, C // g, H, W) of an image starts a channel
    shuffle; (N, C or -1, H, W) of such a grouped view ends it."""
    value = env.get(x)
    if isinstance(value, _GroupedView):
        src = value.src
        ok = (len(shape) == 4 and _is_dim(shape[0], env, src, 0) and
              (shape[1] == -1 or _is_dim(shape[1], env, src, 1)) and _is_dim(shape[2], env, src, 2)
              and _is_dim(shape[3], env, src, 3))
        if not ok:
            _fail(node, f"x.{target} of a channel-grouped view", "only back to (N, C, H, W)")
        if value.swapped:
            apply(node, L.ChannelShuffle(value.groups), src)
        else:
            env[node] = env[src]
        return
    if len(shape) == 5 and isinstance(shape[1], int) and shape[1] >= 1 and _is_dim(shape[0], env, x, 0) \
            and _is_dim(shape[2], env, x, 1, shape[1]) and _is_dim(shape[3], env, x, 2) and _is_dim(shape[4], env, x, 3):
        env[node] = _GroupedView(x, shape[1])
        return
    if len(shape) != 2 or shape[1] != -1:
        _fail(node, f"x.{target}{tuple(shape)}", "only (N, -1), a flatten, and a channel shuffle's views")
    apply(node, L.Flatten(), x)


def _transpose(node, env, x, d0, d1):
    value = env.get(x)
    if not isinstance(value, _GroupedView) or sorted((d0 % 5, d1 % 5)) != [1, 2]:
        _fail(node, f"transpose({d0}, {d1})", "only transpose(1, 2) of a channel-grouped view (a channel shuffle)")
    env[node] = _GroupedView(value.src, value.groups, not value.swapped)


def _chunk(node, env, chunks, dim):
    if dim not in (1, -3) or not isinstance(chunks, int) or chunks < 1:
        _fail(node, f"chunk({chunks}, dim={dim})", "only chunk(n, dim=1) of the channels")
    env[node] = _Chunks(node.args[0], chunks)


def _mean(node, apply, dim, keepdim):
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    if sorted(d % 4 if isinstance(d, int) else d for d in dims) != [2, 3]:
        _fail(node, f"mean(dim={dim})", "only the spatial mean over (2, 3), global average pooling")
    name = node.name
    if keepdim:
        apply(node, L.AdaptiveAvgPool2d(1), node.args[0], name=name)
        return
    apply(node, L.AdaptiveAvgPool2d(1), node.args[0], name=name + ".pool")
    pooled = node  # flatten the (C, 1, 1) result in place
    apply(pooled, L.Flatten(), pooled, name=name)
