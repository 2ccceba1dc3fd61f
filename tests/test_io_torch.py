"""from_torch: forward equals torch's (float32, rtol 1e-5), relevance equals the native rebuild."""

import os

import numpy as np
import pytest

import fastlrp as fl

from conftest import fwd_close, same_relevance

DATA = os.path.join(os.path.dirname(__file__), "data")


# ------------------------------------------------------------------------------ PyTorch
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402



def _randomize_bn(module, gen):
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def torch_mlp():
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Sequential(nn.Linear(16, 8), nn.Tanh()), nn.Linear(8, 3), nn.Softmax(dim=1))


def torch_cnn():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Sequential(nn.Conv2d(6, 4, 3, stride=1, dilation=1), nn.LeakyReLU(0.1)),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 5), nn.ELU(), nn.Linear(5, 3))


def torch_gap():
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding="valid"), nn.Sigmoid(), nn.Conv2d(4, 4, 3, padding="same"),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Identity(), nn.Linear(4, 2, bias=False))



@pytest.mark.parametrize("make,shape", [(torch_mlp, (6, 10)), (torch_cnn, (4, 3, 12, 12)), (torch_gap, (3, 2, 9, 9))])
def test_torch_forward_and_relevance(make, shape):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    module = make()
    _randomize_bn(module, gen)
    module.eval()
    x = torch.randn(*shape, generator=gen)
    with torch.no_grad():
        expected = module(x).numpy()
    model = fl.from_torch(module)
    xn = x.numpy()
    fwd_close(model.forward(xn), expected)
    # the same model built by hand from the torch weights (BatchNorm passed unfolded)
    native = fl.Sequential([_native_layer(m) for m in _leaves(module)])
    same_relevance(model, native, xn)


def _leaves(module):
    for m in module.children():
        if isinstance(m, nn.Sequential):
            yield from _leaves(m)
        else:
            yield m


def _native_layer(m):
    t = lambda p: None if p is None else p.detach().numpy()
    if isinstance(m, nn.Linear):
        return fl.Dense(t(m.weight), t(m.bias))
    if isinstance(m, nn.Conv2d):
        pad = m.padding if not isinstance(m.padding, str) else ((0, 0) if m.padding == "valid" else (1, 1))
        return fl.Conv2d(t(m.weight), t(m.bias), m.stride, pad, m.dilation)
    if isinstance(m, nn.BatchNorm1d):
        return fl.BatchNorm1d(t(m.running_mean), t(m.running_var), t(m.weight), t(m.bias), eps=m.eps)
    if isinstance(m, nn.BatchNorm2d):
        return fl.BatchNorm2d(t(m.running_mean), t(m.running_var), t(m.weight), t(m.bias), eps=m.eps)
    if isinstance(m, nn.MaxPool2d):
        return fl.MaxPool2d(m.kernel_size, m.stride)
    if isinstance(m, nn.AvgPool2d):
        return fl.AvgPool2d(m.kernel_size, m.stride)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return fl.AdaptiveAvgPool2d(m.output_size)
    if isinstance(m, nn.LeakyReLU):
        return fl.LeakyReLU(m.negative_slope)
    simple = {nn.ReLU: fl.ReLU, nn.Tanh: fl.Tanh, nn.Sigmoid: fl.Sigmoid, nn.ELU: fl.ELU, nn.Dropout: fl.Dropout,
              nn.Flatten: fl.Flatten, nn.Identity: fl.Identity, nn.Softmax: fl.Softmax}
    return simple[type(m)]()



def test_torch_double_model_stays_double():
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    model = fl.from_torch(module)
    assert model.layers[0].weight.dtype == np.float64
    x = np.random.default_rng(0).normal(size=(5, 4))
    np.testing.assert_allclose(model.forward(x), module(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)



def test_torch_unsupported_layer_names_itself_and_the_list():
    module = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.GRU(4, 4)))
    with pytest.raises(TypeError, match=r"layer 2 '1\.1' \(GRU\) is not supported; supported: .*Linear.*Conv2d"):
        fl.from_torch(module)
    with pytest.raises(TypeError, match="padding_mode='reflect'"):
        fl.from_torch(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2, padding=1, padding_mode="reflect")))
    # a bare module is traced with torch.fx: a Linear's own forward is F.linear on its parameters
    with pytest.raises(TypeError, match=r"node 'weight' \(get_attr weight\) is not supported; supported:"):
        fl.from_torch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        fl.from_torch([nn.Linear(2, 2)])


