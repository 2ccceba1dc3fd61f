"""What the loaders share."""

from __future__ import annotations

from .. import layers as L


def same_padding(kernel, stride, dilation) -> tuple | None:
    """The symmetric zero padding of a 'same' convolution or pool, or None where 'same' pads
    unevenly (stride > 1, or an even effective kernel: frameworks then pad one side more)."""
    pads = []
    for k, s, d in zip(kernel, stride, dilation):
        eff = d * (k - 1)
        if s != 1 or eff % 2:
            return None
        pads.append(eff // 2)
    return tuple(pads)


def tf_same_padding(size: int, k: int, s: int, d: int = 1) -> tuple:
    """(before, after) zeros of TensorFlow's (and torch's) 'same' padding along one axis of
    ``size``: ceil(size / s) outputs; an odd total puts the extra zero after."""
    total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def last_is_image(layers) -> bool:
    """Whether the layers built so far end on an image (for a BatchNorm: 2d or 1d)."""
    for layer in reversed(layers):
        if isinstance(layer, (L.Conv2d, L._Pool, L.AdaptiveAvgPool2d, L.BatchNorm2d)):
            return True
        if isinstance(layer, (L.Dense, L.Flatten)):
            return False
    return False
