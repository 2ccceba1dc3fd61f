"""The benchmark networks with He-initialised random weights (fixed seed): those of
the peer benchmarks (MLP, LeNet, VGG-16) as fastlrp models and, for the peers, as torch modules with the same
weights; the numpy toolbox's MNIST networks as fastlrp.toolbox models."""

from __future__ import annotations

import numpy as np

import fastlrp as fl

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _he(rng, shape, fan_in, dtype):
    return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def mlp_spec():
    """105 -> 512 -> 256 -> 128 -> 64 -> 2, ReLU: an Adult-income-sized tabular classifier."""
    sizes = [105, 512, 256, 128, 64, 2]
    spec = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        spec.append(("dense", (o, i)))
        if k < len(sizes) - 2:
            spec.append(("relu",))
    return spec, (105,)


def lenet_spec():
    """[(kind, params)]: conv 1->32 5x5, ReLU, maxpool 2; conv 32->64 5x5, ReLU, maxpool 2;
    flatten; dense 1024->512, ReLU; dense 512->10. Input 1x28x28."""
    return [("conv", (32, 1, 5)), ("relu",), ("max", 2), ("conv", (64, 32, 5)), ("relu",), ("max", 2), ("flatten",),
            ("dense", (512, 1024)), ("relu",), ("dense", (10, 512))], (1, 28, 28)


def vgg16_spec():
    """VGG-16 configuration D without batch norm, 3x224x224 input, 1000 classes."""
    spec, c = [], 3
    for v in VGG16_CFG:
        if v == "M":
            spec.append(("max", 2))
        else:
            spec += [("conv", (v, c, 3), 1), ("relu",)]
            c = v
    spec += [("flatten",), ("dense", (4096, 512 * 7 * 7)), ("relu",), ("dropout",), ("dense", (4096, 4096)), ("relu",),
             ("dropout",), ("dense", (1000, 4096))]
    return spec, (3, 224, 224)


def build(spec, seed=0, dtype=np.float32):
    """(fastlrp.Sequential, list of (kind, weight, bias, extra)) from a spec."""
    rng = np.random.default_rng(seed)
    layers, params = [], []
    for item in spec:
        kind = item[0]
        if kind == "conv":
            o, i, k = item[1]
            pad = item[2] if len(item) > 2 else 0
            w, b = _he(rng, (o, i, k, k), i * k * k, dtype), (rng.normal(size=o) * 0.01).astype(dtype)
            layers.append(fl.Conv2d(w, b, padding=pad))
            params.append(("conv", w, b, pad))
        elif kind == "dense":
            o, i = item[1]
            w, b = _he(rng, (o, i), i, dtype), (rng.normal(size=o) * 0.01).astype(dtype)
            layers.append(fl.Dense(w, b))
            params.append(("dense", w, b, None))
        elif kind == "relu":
            layers.append(fl.ReLU())
            params.append(("relu", None, None, None))
        elif kind == "max":
            layers.append(fl.MaxPool2d(item[1]))
            params.append(("max", None, None, item[1]))
        elif kind == "flatten":
            layers.append(fl.Flatten())
            params.append(("flatten", None, None, None))
        elif kind == "dropout":
            layers.append(fl.Dropout())
            params.append(("dropout", None, None, None))
    return fl.Sequential(layers), params


def to_torch(params, torch):
    mods = []
    for kind, w, b, extra in params:
        if kind == "conv":
            m = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=extra)
        elif kind == "dense":
            m = torch.nn.Linear(w.shape[1], w.shape[0])
        elif kind == "relu":
            m = torch.nn.ReLU()
        elif kind == "max":
            m = torch.nn.MaxPool2d(extra)
        elif kind == "flatten":
            m = torch.nn.Flatten()
        else:
            m = torch.nn.Dropout()
        if w is not None:
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(w))
                m.bias.copy_(torch.from_numpy(b))
        mods.append(m)
    return torch.nn.Sequential(*mods).eval()


def conv_flops(model, sample_shape) -> int:
    """Multiply-adds x 2 of the Conv2d and Dense layers' forward pass, per sample."""
    shapes = model.shapes(sample_shape)
    outs = shapes if isinstance(model, fl.Model) else shapes[1:]  # a Model's shapes are its nodes' outputs
    total = 0
    for layer, out in zip(model.layers, outs):
        if isinstance(layer, fl.Conv2d):
            total += 2 * int(np.prod(out)) * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, fl.Dense):
            total += 2 * layer.in_features * layer.out_features
    return total


# ---- the numpy toolbox's MNIST networks (float64, toolbox layout), as plain layer tuples of
# fastlrp.toolbox.reference, and as fastlrp.toolbox models with the same weights

def toolbox_mlp_layers(seed=0):
    """MLP 784-1296-1296-1296-10, Rect (its final SoftMax dropped, as the toolbox demos do)."""
    rng = np.random.default_rng(seed)
    sizes = [784, 1296, 1296, 1296, 10]
    layers = []
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(("linear", rng.normal(size=(m, n)) * np.sqrt(2.0 / m), rng.normal(size=n) * 0.01))
        if k < len(sizes) - 2:
            layers.append(("rect",))
    return layers, (784,)


def toolbox_lenet5_layers(seed=0):
    """LeNet-5 as the toolbox ships it: conv 5x5x1->10, Rect, SumPool 2/2, conv 5x5x10->25, Rect,
    SumPool 2/2, conv 4x4x25->100, Rect, SumPool 2/2, conv 1x1x100->10, Flatten; 32x32x1 input."""
    rng = np.random.default_rng(seed)

    def conv(h, w, d, n):
        return ("conv", rng.normal(size=(h, w, d, n)) * np.sqrt(2.0 / (h * w * d)), rng.normal(size=n) * 0.01, (1, 1))

    pool = ("sumpool", (2, 2), (2, 2))
    return [conv(5, 5, 1, 10), ("rect",), pool, conv(5, 5, 10, 25), ("rect",), pool, conv(4, 4, 25, 100), ("rect",),
            pool, conv(1, 1, 100, 10), ("flatten",)], (32, 32, 1)


def toolbox_model(layers):
    """A fastlrp.toolbox Sequential with the weights of reference-style layer tuples."""
    from ..toolbox import modules

    mods = []
    for layer in layers:
        if layer[0] == "linear":
            m = modules.Linear(*layer[1].shape)
            m.W, m.B = layer[1], layer[2]
        elif layer[0] == "conv":
            m = modules.Convolution(layer[1].shape, layer[3])
            m.W, m.B = layer[1], layer[2]
        elif layer[0] == "sumpool":
            m = modules.SumPool(layer[1], layer[2])
        else:
            m = {"rect": modules.Rect, "flatten": modules.Flatten}[layer[0]]()
        mods.append(m)
    return modules.Sequential(mods)


def toolbox_flops(layers, sample_shape) -> int:
    """Multiply-adds x 2 of the Linear and Convolution layers' forward pass, per sample."""
    total, shape = 0, tuple(sample_shape)
    for layer in layers:
        if layer[0] == "linear":
            total += 2 * layer[1].size
            shape = (layer[1].shape[1],)
        elif layer[0] == "conv":
            h, w, d, n = layer[1].shape
            ho, wo = (shape[0] - h) // layer[3][0] + 1, (shape[1] - w) // layer[3][1] + 1
            total += 2 * ho * wo * h * w * d * n
            shape = (ho, wo, n)
        elif layer[0] == "sumpool":
            (h, w), (s0, s1) = layer[1], layer[2]
            shape = ((shape[0] - h) // s0 + 1, (shape[1] - w) // s1 + 1, shape[2])
    return total


# ---- graph models: torchvision's definitions with random weights (fixed seed)

GRAPH_NETS = ("resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0")
#: graph nets with depthwise convolutions and gates, which zennit explains with its
#: SequentialMergeBatchNorm canonizer only (what a zennit user has for them)
MOBILE_NETS = ("mobilenet_v2", "efficientnet_b0")


def torchvision_graph(name, torch, seed=0):
    """(fastlrp.Model, torch module in eval mode, sample shape) for a torchvision model with
    random weights and random BatchNorm statistics. BatchNorm eps is 0: zennit's canonizer
    leaves each merged BatchNorm behind as x / sqrt(1 + eps) (1 - 5e-6 per layer at torch's
    1e-5), which would move its relevance by 1e-4 and fail the agreement check; with eps 0 both
    libraries compute the same model (tests/test_io_torch_graph.py)."""
    from ._util import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(seed)
    tmodel = getattr(tv.models, name)(weights=None)
    gen = torch.Generator().manual_seed(seed)
    for m in tmodel.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.eps = 0.0
    tmodel.eval()
    return fl.from_torch(tmodel), tmodel, (3, 224, 224)


def graph_memory_floor(model, sample_shape, batch, itemsize) -> tuple:
    """(weight bytes, activation bytes): the activations an LRP pass keeps for its backward
    step are every node's output (identity nodes share their input's buffer) and the input."""
    weights = itemsize * sum(layer.weight.size + layer.bias.size for layer in model.layers if hasattr(layer, "weight"))
    acts = int(np.prod(sample_shape))
    for layer, shape in zip(model.layers, model.shapes(sample_shape)):
        if not isinstance(layer, (fl.Identity, fl.Dropout, fl.Flatten)):
            acts += int(np.prod(shape))
    return weights, acts * batch * itemsize
