"""Channel data movement: ChannelShuffle, Chunk and Narrow (the core's Gather layer), against
the numpy reference, and ShuffleNet V2 from torchvision."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites, reference

from conftest import DTYPES, assert_close, assert_reproducible


def test_channel_shuffle_is_torchs_permutation():
    """ChannelShuffle(g) reads the (g, C/g) grid of channels column by column, as torch."""
    c, g = 12, 3
    src = fl.ChannelShuffle(g).source_channels(c)
    grid = np.arange(c).reshape(g, c // g)
    np.testing.assert_array_equal(src, grid.T.ravel())
    assert sorted(src) == list(range(c))


def test_chunk_and_narrow_pieces_as_torch_chunk():
    for c, n in ((10, 2), (10, 3), (7, 4), (5, 5)):
        size = -(-c // n)
        pieces = [list(range(s, min(c, s + size))) for s in range(0, c, size)]
        for k, piece in enumerate(pieces):
            assert list(fl.Chunk(n, k).source_channels(c)) == piece
        if len(pieces) < n:
            with pytest.raises(ValueError, match="does not exist"):
                fl.Chunk(n, n - 1).source_channels(c)
    assert list(fl.Narrow(2, 3).source_channels(6)) == [2, 3, 4]


def shuffle_block(rng, c=8, features=False):
    """A ShuffleNet V2 unit: split the channels, convolve one half, join, shuffle."""
    x = fl.Input((c,) if features else (c, 5, 6))
    if features:
        h = fl.ReLU()(fl.Dense(rng.normal(size=(c, c)), rng.normal(size=c))(x, name="stem"))
        a, b = fl.Chunk(2, 0)(h, name="left"), fl.Chunk(2, 1)(h, name="right")
        b = fl.ReLU()(fl.Dense(rng.normal(size=(c // 2, c // 2)), rng.normal(size=c // 2))(b))
        y = fl.ChannelShuffle(2)(fl.Concat()(a, b, name="cat"), name="shuffle")
        y = fl.Narrow(1, c - 2)(y, name="narrow")
        return fl.Model(x, fl.Dense(rng.normal(size=(3, c - 2)))(y))
    h = fl.ReLU()(fl.Conv2d(rng.normal(size=(c, c, 3, 3)), rng.normal(size=c), padding=1)(x, name="stem"))
    a, b = fl.Chunk(2, 0)(h, name="left"), fl.Chunk(2, 1)(h, name="right")
    b = fl.Conv2d(rng.normal(size=(c // 2, 1, 3, 3)), rng.normal(size=c // 2), padding=1, groups=c // 2)(b)
    b = fl.ReLU()(fl.Conv2d(rng.normal(size=(c // 2, c // 2, 1, 1)), rng.normal(size=c // 2))(b))
    y = fl.ChannelShuffle(2)(fl.Concat()(a, b, name="cat"), name="shuffle")
    y = fl.Narrow(1, c - 2)(y, name="narrow")
    y = fl.Flatten()(fl.AdaptiveAvgPool2d(1)(y))
    return fl.Model(x, fl.Dense(rng.normal(size=(3, c - 2)))(y))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("features", [False, True], ids=["images", "features"])
def test_gather_layers_against_reference(features, dtype):
    rng = np.random.default_rng(11)
    model = shuffle_block(rng, features=features)
    x = rng.normal(size=(3,) + ((8,) if features else (8, 5, 6))).astype(dtype)
    np.testing.assert_allclose(model(x), reference.graph_lrp(model, fl.LRP(model, "epsilon").rules, x)[1],
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
    for composite in ("epsilon", "epsilon_plus_flat", composites.epsilon_gamma_box(-3, 3), "epsilon_alpha2_beta1"):
        lrp = fl.LRP(model, composite)
        e = lrp(x, layerwise=True)
        ref, _, per_node = reference.graph_lrp(model, lrp.rules, x)
        assert_close(e.relevance, ref, dtype)
        for name in ("stem", "left", "right", "shuffle", "narrow"):
            assert_close(e.layers[name], per_node[name], dtype)
    # pure data movement: the shuffle's relevance is its input's, permuted, bit for bit; the two
    # chunks' relevance tiles the stem's (fan-out sums a value with exact zeros)
    e = fl.LRP(model, "epsilon")(x, layerwise=True)
    perm = fl.ChannelShuffle(2).source_channels(8)
    np.testing.assert_array_equal(e.layers["cat"][:, perm], e.layers["shuffle"])
    np.testing.assert_array_equal(np.concatenate([e.layers["left"], e.layers["right"]], axis=1), e.layers["stem"])
    # the channels Narrow leaves out get nothing through it
    assert not e.layers["shuffle"][:, [0, 7]].any()


def test_gather_model_saves_loads_and_pickles(tmp_path):
    import pickle

    rng = np.random.default_rng(12)
    model = shuffle_block(rng)
    model.save(tmp_path / "shuffle.npz")
    back = fl.load(tmp_path / "shuffle.npz")
    assert [repr(layer) for layer in back.layers] == [repr(layer) for layer in model.layers]
    x = rng.normal(size=(2, 8, 5, 6))
    np.testing.assert_array_equal(back(x), model(x))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model))(x), model(x))


def test_gather_reproducible_across_threads_and_batches():
    rng = np.random.default_rng(13)
    model = shuffle_block(rng)
    x = rng.normal(size=(7, 8, 5, 6))
    x[:, :, 1:4, 1:4] = 0.5
    assert_reproducible(fl.LRP(model, composites.epsilon_gamma_box(-3, 3)), x, 2)


def test_gather_bad_input():
    x = fl.Input((6, 4, 4))
    with pytest.raises(ValueError, match="not a multiple of 4"):
        fl.Model(x, fl.ChannelShuffle(4)(x)).shapes((6, 4, 4))
    with pytest.raises(ValueError, match="channels 4 to 8 of an input with 6"):
        fl.Model(x, fl.Narrow(4, 4)(x)).shapes((6, 4, 4))
    with pytest.raises(ValueError, match=r"Chunk index: expected an int in \[0, 2\)"):
        fl.Chunk(2, 2)
    with pytest.raises(ValueError, match="ChannelShuffle groups: expected an int >= 1"):
        fl.ChannelShuffle(0)
    with pytest.raises(ValueError, match="takes only Pass"):
        fl.LRP(fl.Model(x, fl.Chunk(2, 0)(x)), fl.Composite([(fl.Chunk, fl.rules.Epsilon())]))
    # the core refuses an index it cannot honour, whatever Python sends it
    net = fl._core.Network_float64()
    with pytest.raises(ValueError, match="used twice"):
        net.add_gather(4, np.array([0, 1, 1], np.int64))
    with pytest.raises(ValueError, match="outside the input's 4 values"):
        net.add_gather(4, np.array([0, 4], np.int64))


def random_shufflenet(dtype="float32"):
    from test_mobile import random_torchvision

    return random_torchvision("shufflenet_v2_x1_0", dtype)


def test_torchvision_shufflenet_forward():
    """torchvision's shufflenet_v2_x1_0: x.chunk(2, dim=1), torch.cat and channel_shuffle's
    view / transpose / view, loaded without per-model code."""
    import torch

    tmodel = random_shufflenet()
    model = fl.from_torch(tmodel)
    kinds = {type(n.layer) for n in model.nodes}
    assert {fl.ChannelShuffle, fl.Chunk, fl.Concat} <= kinds
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tmodel(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_torchvision_shufflenet_relevance_against_reference():
    import torch

    tmodel = random_shufflenet("float64")
    model = fl.from_torch(tmodel)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).numpy()
    for composite in ("epsilon_plus_flat", composites.epsilon_gamma_box(-3, 3)):
        lrp = fl.LRP(model, composite)
        ref, _, _ = reference.graph_lrp(model, lrp.rules, x)
        np.testing.assert_allclose(lrp(x).relevance, ref, rtol=1e-10, atol=1e-10 * float(np.abs(ref).max()))


def test_torch_channel_shuffle_module_and_function():
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3)
            self.shuffle = torch.nn.ChannelShuffle(3)

        def forward(self, x):
            a, b = torch.chunk(self.shuffle(self.conv(x)), 2, dim=1)
            return torch.flatten(torch.cat([torch.nn.functional.channel_shuffle(b, 3), a], 1), 1)

    net = Net().eval()
    model = fl.from_torch(net)
    x = torch.randn(2, 3, 7, 7)
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-5, atol=1e-6)


def test_torchvision_shufflenet_from_onnx(tmp_path):
    """The ONNX export of shufflenet_v2_x1_0: its chunks arrive as Slices whose bounds are shape
    arithmetic (Shape, Gather, Add, Div, Mul), its shuffles as Reshape/Transpose/Reshape and its
    pooling as ReduceMean; forward equals torch's, relevance the torch loader's model's."""
    import torch

    from conftest import same_relevance

    onnx = pytest.importorskip("onnx")
    tmodel = random_shufflenet()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    try:
        torch.onnx.export(tmodel, (x,), tmp_path / "s.onnx", dynamo=False, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is not usable here: {type(exc).__name__}: {exc}")
    ops = {n.op_type for n in onnx.load(tmp_path / "s.onnx").graph.node}
    assert {"Shape", "Slice", "Transpose", "ReduceMean"} <= ops
    model = fl.from_onnx(tmp_path / "s.onnx")
    assert {fl.ChannelShuffle, fl.Narrow} <= {type(n.layer) for n in model.nodes}
    with torch.no_grad():
        expected = tmodel(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
    same_relevance(model, fl.from_torch(tmodel), x.numpy())


def test_onnx_channel_split_and_bad_slices(tmp_path):
    """ONNX Split with explicit sizes and Slice bounds past the end, against torch's forward;
    a Slice of the spatial axes is refused with the node named."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 7, 3)

        def forward(self, x):
            h = self.conv(x)
            a, b = torch.split(h, [3, 4], dim=1)
            return torch.flatten(torch.cat([b, a, h[:, 5:100]], 1), 1)

    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.flatten(x[:, :, 1:], 1)

    x = torch.randn(2, 2, 6, 6)
    net = Net().eval()
    try:
        torch.onnx.export(net, (x,), tmp_path / "n.onnx", dynamo=False, opset_version=17)
        torch.onnx.export(Bad().eval(), (x,), tmp_path / "b.onnx", dynamo=False, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is not usable here: {type(exc).__name__}: {exc}")
    import onnx

    assert "Split" in {n.op_type for n in onnx.load(tmp_path / "n.onnx").graph.node}
    model = fl.from_onnx(tmp_path / "n.onnx")
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="only a Slice of the channels"):
        fl.from_onnx(tmp_path / "b.onnx")
