"""from_torch on graph models (torch.fx): torchvision's ResNets, DenseNet and VGG-BN load without
per-model code, run torch's forward, and explain as zennit 0.5.1 does with its ResNetCanonizer."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites

torch = pytest.importorskip("torch")


def torchvision_or_skip():
    from fastlrp.bench._util import import_torchvision

    try:
        return import_torchvision()
    except ImportError as exc:
        pytest.skip(f"torchvision's model code is not importable here: {exc}")


def zennit_or_skip():
    from fastlrp.bench._util import import_zennit

    torchvision_or_skip()
    mods, why = import_zennit()
    if mods is None:
        pytest.skip(why)
    return mods[1]


def randomised(model):
    """Random running statistics and affine BatchNorm parameters (fresh ones are the identity),
    so that folding is really tested; eval mode."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "densenet121", "vgg16_bn"])
def test_torchvision_forward(name):
    tv = torchvision_or_skip()
    torch.manual_seed(0)
    tmodel = randomised(getattr(tv.models, name)(weights=None))
    model = fl.from_torch(tmodel)
    assert isinstance(model, fl.Model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tmodel(x).numpy()
    actual = model(x.numpy())
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
    if name.startswith("resnet"):
        assert "layer1.0.conv1" in model.names and any(n.startswith("add") for n in model.names)
        assert not any(isinstance(n.layer, fl.BatchNorm2d) for n in model.nodes)  # all folded
    if name == "densenet121":
        assert any(isinstance(n.layer, fl.Concat) for n in model.nodes)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_resnet_relevance_equals_zennit(name, composite):
    """docs/rules.md (Graphs)'s canonical check: float64, relative 1e-6 of the largest |R| per sample.

    zennit's canonizer merges each BatchNorm into its conv and then leaves the BatchNorm in
    place as mean 0, var 1, weight 1, bias 0 with its own eps: x / sqrt(1 + eps), a factor
    1 - 5e-6 per BatchNorm at torch's eps 1e-5, forward and backward. Through ResNet-18's chain of
    BatchNorms that alone moves zennit's relevance by 1e-4 to 1e-3 relative (measured), so the
    models here have eps = 0 (their variances are >= 0.5): both libraries then fold exactly
    and compute the same model."""
    zennit = zennit_or_skip()
    import zennit.composites as zc
    from zennit.torchvision import ResNetCanonizer

    tv = torchvision_or_skip()
    torch.manual_seed(1)
    tmodel = randomised(getattr(tv.models, name)(weights=None)).double()
    for m in tmodel.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 0.0
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    ours = {"epsilon_plus_flat": "epsilon_plus_flat", "epsilon_gamma_box": composites.epsilon_gamma_box(-3.0, 3.0),
            "epsilon_alpha2_beta1": "epsilon_alpha2_beta1"}[composite]
    model = fl.from_torch(tmodel)  # before zennit's canonizer touches the torch model
    e = fl.LRP(model, ours)(x.numpy())
    make = {"epsilon_plus_flat": lambda c: zc.EpsilonPlusFlat(canonizers=c),
            "epsilon_gamma_box": lambda c: zc.EpsilonGammaBox(low=-3.0, high=3.0, canonizers=c),
            "epsilon_alpha2_beta1": lambda c: zc.EpsilonAlpha2Beta1(canonizers=c)}[composite]
    with zennit.attribution.Gradient(tmodel, make([ResNetCanonizer()])) as attributor:
        out, rel = attributor(x, lambda y: y * torch.nn.functional.one_hot(y.argmax(1), y.shape[1]))
    rel = rel.detach().numpy()
    np.testing.assert_array_equal(e.targets, out.argmax(1).numpy())
    for n in range(x.shape[0]):
        scale = np.abs(rel[n]).max()
        np.testing.assert_allclose(e.relevance[n], rel[n], rtol=0, atol=1e-6 * scale)


def test_unsupported_op_names_node_and_list():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.exp(self.conv(x))

    with pytest.raises(TypeError, match=r"node 'exp'.*not supported; supported: .*torch.cat"):
        fl.from_torch(Odd())


def test_untraceable_module_is_a_value_error():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x)
            return -self.fc(x)

    with pytest.raises(ValueError, match="torch.fx cannot trace Branchy"):
        fl.from_torch(Branchy())


def test_small_residual_module_against_reference():
    """A hand-written residual module with a functional add, mean((2, 3)) and view(N, -1)."""
    from fastlrp import reference

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)
            self.conv2 = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.fc = torch.nn.Linear(3, 4)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv1(x)))
            h = self.conv2(h) + x
            h = h.relu().mean((2, 3), keepdim=True)
            return self.fc(h.view(h.size(0), -1))

    torch.manual_seed(3)
    tm = randomised(Block()).double()
    model = fl.from_torch(tm)
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(model(x.numpy()), tm(x).numpy(), rtol=1e-10)
    lrp = fl.LRP(model, "epsilon_plus_flat")
    ref, _, _ = reference.graph_lrp(model, lrp.rules, x.numpy())
    np.testing.assert_allclose(lrp(x.numpy()).relevance, ref, rtol=1e-9, atol=1e-12)
