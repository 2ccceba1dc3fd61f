"""PyTorch ``nn.Sequential`` models as fastlrp models. torch is imported only by the caller:
this module reads the modules' classes by name and their tensors through ``.detach().cpu()``."""

from __future__ import annotations

from .. import layers as L
from ._common import tf_same_padding
from ..model import Sequential

SUPPORTED = ("Sequential (nested ones flattened)", "Linear", "Conv2d (any groups)", "ReLU", "ReLU6", "LeakyReLU",
             "Tanh", "Sigmoid", "ELU", "SELU", "SiLU", "GELU", "Hardswish", "Hardsigmoid", "Mish", "Softmax",
             "LogSoftmax", "Dropout", "Identity", "Flatten", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
             "BatchNorm1d", "BatchNorm2d", "ChannelShuffle")


def _np(t):
    return None if t is None else t.detach().cpu().numpy().copy()


def _unsupported(k, m, why: str = ""):
    raise TypeError(f"from_torch: layer {k} ({type(m).__name__}) is not supported{': ' + why if why else ''}; "
                    f"supported: {', '.join(SUPPORTED)}")


def _leaves(module, prefix=""):
    """The modules of a (nested) nn.Sequential in execution order, with their dotted names."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if type(child).__name__ == "Sequential":
            yield from _leaves(child, path + ".")
        else:
            yield path, child


def _convert(k, name, m):
    cls = type(m).__name__
    where = f"{k} '{name}'"
    if cls == "Linear":
        return L.Dense(_np(m.weight), _np(m.bias))
    if cls == "Conv2d":
        if m.padding_mode != "zeros":
            _unsupported(where, m, f"padding_mode={m.padding_mode!r} (only 'zeros')")
        pad = m.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = 0
            else:  # 'same' (torch allows it at stride 1 only): an odd total pads one more after
                pad = tuple(tf_same_padding(k * d, k, 1, d) for k, d in zip(m.kernel_size, m.dilation))
        return L.Conv2d(_np(m.weight), _np(m.bias), stride=tuple(m.stride), padding=pad, dilation=tuple(m.dilation),
                        groups=m.groups)
    if cls in ("ReLU", "Tanh", "Sigmoid", "SELU", "Identity", "Dropout", "SiLU", "Hardswish", "Hardsigmoid", "ReLU6",
               "Mish"):
        return getattr(L, cls)()
    if cls == "GELU":
        return L.GELU(m.approximate)
    if cls == "LeakyReLU":
        return L.LeakyReLU(m.negative_slope)
    if cls == "ELU":
        return L.ELU(m.alpha)
    if cls in ("Softmax", "LogSoftmax"):
        if m.dim not in (1, -1, None):
            _unsupported(where, m, f"dim={m.dim} (only the feature dimension 1)")
        return getattr(L, cls)()
    if cls == "Flatten":
        if m.start_dim != 1 or m.end_dim != -1:
            _unsupported(where, m, f"start_dim={m.start_dim}, end_dim={m.end_dim} (only 1 and -1)")
        return L.Flatten()
    if cls in ("MaxPool2d", "AvgPool2d"):
        if cls == "MaxPool2d":
            if m.return_indices or m.dilation not in (1, (1, 1)):
                _unsupported(where, m, "dilation or return_indices")
            return L.MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=bool(m.ceil_mode))
        if m.divisor_override is not None:
            _unsupported(where, m, "divisor_override")
        return L.AvgPool2d(m.kernel_size, m.stride, m.padding, count_include_pad=m.count_include_pad,
                           ceil_mode=bool(m.ceil_mode))
    if cls == "AdaptiveAvgPool2d":
        return L.AdaptiveAvgPool2d(m.output_size)
    if cls == "ChannelShuffle":
        return L.ChannelShuffle(m.groups)
    if cls in ("BatchNorm1d", "BatchNorm2d"):
        if m.running_mean is None:
            _unsupported(where, m, "track_running_stats=False (no running statistics to fold)")
        return getattr(L, cls)(_np(m.running_mean), _np(m.running_var), _np(m.weight), _np(m.bias), eps=m.eps)
    _unsupported(where, m)


def from_torch(module):
    """A torch model as a fastlrp model, in eval-mode semantics: BatchNorm uses its running
    statistics and is folded where it follows a conv, Dropout is the identity. The weights are
    copied (as float32, or float64 for a double model).

    An ``nn.Sequential`` (nested ones flattened) gives a :class:`fastlrp.Sequential`; any other
    ``nn.Module`` is traced with ``torch.fx`` and gives a graph :class:`fastlrp.Model` whose
    node names are the module paths (``layer1.0.conv1``) and fx's names for functional ops
    (``add_3``): residual additions, ``torch.cat``, ``torch.flatten``, ``view``/``reshape`` as
    a flatten, ``mean((2, 3))`` as global average pooling, and the functional forms of the
    supported layers.
    """
    if not hasattr(module, "named_children") or not hasattr(module, "forward"):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    if type(module).__name__ != "Sequential":
        from .torch_fx import from_fx

        return from_fx(module)
    layers = []
    for k, (name, m) in enumerate(_leaves(module)):
        try:
            layers.append(_convert(k, name, m))
        except ValueError as exc:
            raise ValueError(f"from_torch: layer {k} '{name}' ({type(m).__name__}): {exc}") from None
    if not layers:
        raise ValueError("from_torch: the Sequential has no layers")
    return Sequential(layers)
