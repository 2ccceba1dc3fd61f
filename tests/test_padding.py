"""Uneven zero padding (TensorFlow's 'same' at stride 2: the extra zero after the image) and the
loaders that need it (Keras applications' MobileNetV2), and GELU as ONNX exporters decompose it."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites, reference, rules

from conftest import DTYPES, assert_close

RULES = {"eps": rules.Epsilon(), "zplus": rules.ZPlus(), "ab21": rules.AlphaBeta(2, 1), "gamma": rules.Gamma(0.25),
         "zbox": rules.ZBox(-2.0, 3.0), "wsquare": rules.WSquare(), "flat": rules.Flat()}

CASES = [  # (padding, stride, groups, h, w)
    (((0, 1), (0, 1)), 2, 1, 8, 8),
    (((1, 2), (0, 1)), 2, 3, 9, 6),
    (((0, 1), (1, 1)), 1, 1, 5, 7),
    (((2, 0), (0, 2)), 3, 3, 7, 8),
]


def _conv(case, rng, dtype):
    pad, stride, groups, h, w = case
    layer = fl.Conv2d(rng.normal(size=(6, 6 // groups, 3, 3)).astype(dtype), rng.normal(size=6).astype(dtype),
                      stride=stride, padding=pad, groups=groups)
    x = rng.normal(size=(2, 6, h, w)).astype(dtype)
    return layer, x


@pytest.mark.parametrize("case", CASES, ids=str)
def test_uneven_padding_forward(case):
    rng = np.random.default_rng(1)
    layer, x = _conv(case, rng, np.float64)
    (t, b), (left, r) = case[0]
    expected = reference.conv2d(np.pad(x, ((0, 0), (0, 0), (t, b), (left, r))), layer.weight, layer.bias,
                                layer.stride, (0, 0), groups=layer.groups)
    got = fl.Sequential([layer]).forward(x)
    assert got.shape == expected.shape == (2,) + layer.output_shape(x.shape[1:])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    torch = pytest.importorskip("torch")
    tx = torch.nn.functional.pad(torch.from_numpy(x), (left, r, t, b))
    tout = torch.nn.functional.conv2d(tx, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                                      stride=layer.stride, groups=layer.groups).numpy()
    np.testing.assert_allclose(got, tout, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_uneven_padding_rules_against_reference(case, name, dtype):
    rng = np.random.default_rng(2)
    layer, x = _conv(case, rng, dtype)
    if name not in ("eps", "gamma"):
        x = np.abs(x)
    out = layer.output_shape(x.shape[1:])
    start = rng.normal(size=(2,) + out)
    e = fl.LRP(fl.Sequential([layer]), RULES[name])(x, target=start)
    expected, _, _ = reference.lrp([layer], [RULES[name]], x, target=start)
    assert_close(e.relevance, expected, dtype)
    # the tap-by-tap reference agrees with the matrix one
    np.testing.assert_allclose(reference.conv_relevance(layer, x.astype(np.float64), start, RULES[name]), expected,
                               rtol=1e-10, atol=1e-10 * max(1.0, float(np.abs(expected).max())))


def test_uneven_padding_saves_loads_and_folds(tmp_path):
    rng = np.random.default_rng(3)
    conv = fl.Conv2d(rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4), stride=2, padding=((0, 1), (0, 1)))
    assert conv.padding == (0, 0) and conv.padding_end == (1, 1)
    assert "padding_end=(1, 1)" in repr(conv)
    bn = fl.BatchNorm2d(rng.normal(size=4), rng.uniform(0.5, 2, size=4), rng.normal(size=4), rng.normal(size=4))
    model = fl.Sequential([conv, bn, fl.ReLU(), fl.Flatten()])
    assert len(model.layers) == 3 and model.layers[0].padding_end == (1, 1)  # BatchNorm folded, padding kept
    model.save(tmp_path / "m.npz")
    back = fl.load(tmp_path / "m.npz")
    x = rng.normal(size=(2, 3, 8, 8))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    with pytest.raises(ValueError, match="not both"):
        fl.Conv2d(np.ones((1, 1, 3, 3)), padding=((0, 1), (0, 1)), padding_end=1)
    with pytest.raises(ValueError, match="larger than the padded input 3x3"):
        fl.Sequential([fl.Conv2d(np.ones((1, 1, 4, 4)), padding=((0, 1), (1, 0)))]).shapes((1, 2, 2))


def test_torch_same_padding_even_kernel():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 4, padding="same"), torch.nn.ReLU()).eval()
    model = fl.from_torch(net)
    assert model.layers[0].padding == (1, 1) and model.layers[0].padding_end == (2, 2)
    x = torch.randn(2, 2, 7, 6)
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(model.forward(x.numpy()), expected, rtol=1e-5, atol=1e-6)


def test_keras_strided_same_padding(tmp_path):
    keras = pytest.importorskip("keras")
    from conftest import fwd_close

    inp = keras.Input((10, 9, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(h)
    h = keras.layers.ZeroPadding2D(((0, 1), (1, 0)))(h)
    h = keras.layers.Conv2D(4, 2)(h)
    out = keras.layers.Dense(2)(keras.layers.Flatten()(h))
    model = keras.Model(inp, out)
    x = np.random.default_rng(4).normal(size=(2, 10, 9, 3)).astype(np.float32)
    expected = np.asarray(model.predict(x, verbose=0))
    model.save(tmp_path / "m.keras")
    ours = fl.from_keras(tmp_path / "m.keras")
    fwd_close(ours(x.transpose(0, 3, 1, 2)), expected)


def test_keras_applications_mobilenet_v2(tmp_path):
    """keras.applications.MobileNetV2 (random weights), whose first convolution pads unevenly:
    forward equals Keras', relevance equals the reference's (float64 copy of the weights)."""
    keras = pytest.importorskip("keras")
    from conftest import fwd_close

    keras.utils.set_random_seed(0)
    kmodel = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=10)
    x = np.random.default_rng(5).normal(size=(2, 64, 64, 3)).astype(np.float32)
    expected = np.asarray(kmodel.predict(x, verbose=0))
    kmodel.save(tmp_path / "mnv2.keras")
    model = fl.from_keras(tmp_path / "mnv2.keras")
    assert any(isinstance(layer, fl.Conv2d) and layer.padding != layer.padding_end for layer in model.layers)
    fwd_close(model(x.transpose(0, 3, 1, 2)), expected)
    lrp = fl.LRP(model, "epsilon_plus_flat")
    xs = x[:1].transpose(0, 3, 1, 2).astype(np.float64)
    ref, _, _ = reference.graph_lrp(model, lrp.rules, xs)
    got = lrp(xs.astype(np.float32)).relevance
    assert_close(got, ref, np.float32)


def test_onnx_erf_gelu(tmp_path):
    """GELU exported as its erf formula (opset < 20: Div, Erf, Add, Mul, Mul) loads as one GELU."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.GELU(), torch.nn.Linear(8, 3)).eval()
    x = torch.randn(4, 5)
    try:
        torch.onnx.export(net, (x,), tmp_path / "g.onnx", dynamo=False, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is not usable here: {type(exc).__name__}: {exc}")
    import onnx

    ops = [n.op_type for n in onnx.load(tmp_path / "g.onnx").graph.node]
    assert "Erf" in ops and "Gelu" not in ops
    model = fl.from_onnx(tmp_path / "g.onnx")
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "GELU", "Dense"]
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(model.forward(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    lrp = fl.LRP(model, "epsilon")
    xd = x.numpy().astype(np.float64)
    expected, _, _ = reference.lrp(model.layers, lrp.rules, xd)
    np.testing.assert_allclose(lrp(xd).relevance, expected, rtol=1e-10, atol=1e-12)
