"""Efficient-network layers: grouped and depthwise convolutions, the Mul gate and the activations
after ReLU, against the numpy reference (and torch's forward where it installs)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlrp as fl
from fastlrp import composites, reference, rules

from conftest import DTYPES, assert_close, assert_reproducible

RULES = {
    "eps0": rules.Epsilon(0), "eps": rules.Epsilon(), "eps0.3": rules.Epsilon(0.3), "zplus": rules.ZPlus(),
    "ab21": rules.AlphaBeta(2, 1), "gamma": rules.Gamma(0.25), "gamma1": rules.Gamma(1.0),
    "zbox": rules.ZBox(-2.0, 3.0), "wsquare": rules.WSquare(), "flat": rules.Flat(),
}


@st.composite
def grouped_case(draw):
    groups = draw(st.integers(2, 4))
    cg = draw(st.sampled_from([1, 1, 2, 3]))  # 1: depthwise (with a channel multiplier when og > 1)
    og = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 7))
    return dict(groups=groups, cg=cg, og=og, k=(kh, kw), s=(sh, sw), p=(ph, pw), d=(dh, dw), h=h, w=w,
                n=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**31)), signed=draw(st.booleans()))


def make_grouped(case, dtype):
    rng = np.random.default_rng(case["seed"])
    g = case["groups"]
    weight = rng.normal(size=(g * case["og"], case["cg"]) + case["k"]).astype(dtype)
    bias = rng.normal(size=g * case["og"]).astype(dtype)
    layer = fl.Conv2d(weight, bias, stride=case["s"], padding=case["p"], dilation=case["d"], groups=g)
    x = rng.normal(size=(case["n"], g * case["cg"], case["h"], case["w"])).astype(dtype)
    if not case["signed"]:
        x = np.maximum(x, 0)
    return layer, x, rng


def test_grouped_conv_forward_is_one_conv_per_group():
    """A grouped conv equals its groups' ordinary convs side by side (the C++ core both ways)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 2, 3, 3))
    b = rng.normal(size=6)
    x = rng.normal(size=(2, 6, 7, 7))
    grouped = fl.Sequential([fl.Conv2d(w, b, padding=1, groups=3)]).forward(x)
    parts = [fl.Sequential([fl.Conv2d(w[2 * g:2 * g + 2], b[2 * g:2 * g + 2], padding=1)]).forward(x[:, 2 * g:2 * g + 2])
             for g in range(3)]
    np.testing.assert_allclose(grouped, np.concatenate(parts, axis=1), rtol=1e-13, atol=1e-13)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=grouped_case())
def test_grouped_conv_forward_matches_reference(case):
    layer, x, _ = make_grouped(case, np.float64)
    np.testing.assert_allclose(fl.Sequential([layer]).forward(x), reference.forward([layer], x), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(RULES))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(case=grouped_case())
def test_grouped_conv_rule_matches_reference(name, dtype, case):
    layer, x, rng = make_grouped(case, dtype)
    model = fl.Sequential([layer])
    out_shape = model.shapes(x.shape[1:])[-1]
    start = rng.normal(size=(x.shape[0],) + out_shape).astype(dtype)
    z = reference.forward([layer], x.astype(np.float64))
    mag = reference.conv2d(np.abs(x), np.abs(layer.weight), np.abs(layer.bias), layer.stride, layer.padding,
                           layer.dilation, layer.groups)
    start = np.where(np.abs(z) < (0.02 if dtype == np.float32 else 1e-4) * mag, 0, start).astype(dtype)
    rule = RULES[name]
    e = fl.LRP(model, rule)(x, target=start)
    expected, _, _ = reference.lrp([layer], [rule], x, target=start)
    assert e.relevance.shape == x.shape and e.relevance.dtype == dtype
    assert_close(e.relevance, expected, dtype)


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("name", list(RULES))
def test_tap_reference_equals_matrix_reference(name, groups):
    """The reference's two conv formulas (tap by tap, and the matrix read off the forward pass)
    agree: the tap one is what whole networks are checked against."""
    rng = np.random.default_rng(5)
    layer = fl.Conv2d(rng.normal(size=(6, 6 // groups, 3, 2)), rng.normal(size=6), stride=(2, 1), padding=1,
                      dilation=(1, 2), groups=groups)
    x = rng.normal(size=(2, 6, 6, 7))
    r = rng.normal(size=(2,) + fl.Sequential([layer]).shapes((6, 6, 7))[-1])
    taps = reference.conv_relevance(layer, x, r, RULES[name])
    m = reference.linear_map(lambda v: reference.conv2d(v, layer.weight, np.zeros(6), layer.stride, layer.padding,
                                                        layer.dilation, groups), (6, 6, 7))
    connected = reference.linear_map(lambda v: reference.conv2d(v, np.ones_like(layer.weight), np.zeros(6),
                                                                layer.stride, layer.padding, layer.dilation, groups),
                                     (6, 6, 7)) != 0
    bias = np.repeat(layer.bias, r[0, 0].size)
    dense = reference.dense_relevance(x.reshape(2, -1), m, bias, r.reshape(2, -1), RULES[name], connected, (6, 6, 7))
    np.testing.assert_allclose(taps, dense.reshape(x.shape), rtol=1e-10, atol=1e-12)


def test_grouped_conv_bad_groups():
    w = np.ones((6, 2, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        fl.Conv2d(w, groups=4)  # does not divide the 6 outputs
    with pytest.raises(ValueError, match="groups"):
        fl.Conv2d(w, groups=0)
    with pytest.raises(ValueError, match="expects 6 input channels, got 4"):
        fl.Sequential([fl.Conv2d(w, groups=3)]).forward(np.ones((1, 4, 5, 5)))


ACTIVATIONS = [fl.SiLU(), fl.GELU(), fl.GELU("tanh"), fl.Hardswish(), fl.Hardsigmoid(), fl.ReLU6(), fl.Mish()]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=repr)
def test_activation_forward_and_pass(act, dtype):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4, 50)) * 5).astype(dtype)
    x[0, :6] = [-3, 3, 0, 6, 25, -25]  # the kinks and softplus' threshold
    w = rng.normal(size=(3, 50)).astype(dtype)
    model = fl.Sequential([act, fl.Dense(w)])
    np.testing.assert_allclose(model.forward(x), reference.forward(model.layers, x),
                               rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5 if dtype == np.float32 else 1e-12)
    e = fl.LRP(model, rules.Epsilon())(x)
    expected, _, _ = reference.lrp(model.layers, [rules.Pass(), rules.Epsilon()], x, target=e.targets)
    assert_close(e.relevance, expected, dtype)
    with pytest.raises(ValueError, match="element-wise and takes only Pass"):
        fl.LRP(model, fl.Composite([(type(act), rules.Epsilon())]))


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        fl.GELU("fast")


def se_model(rng, c=6, gate_first=False):
    """A squeeze-excitation block between two convolutions."""
    x = fl.Input((3, 8, 8))
    h = fl.ReLU()(fl.Conv2d(rng.normal(size=(c, 3, 3, 3)), rng.normal(size=c), padding=1)(x))
    h = fl.Conv2d(rng.normal(size=(c, 1, 3, 3)), rng.normal(size=c), padding=1, groups=c)(h, name="dw")
    s = fl.AdaptiveAvgPool2d(1)(h)
    s = fl.ReLU()(fl.Conv2d(rng.normal(size=(2, c, 1, 1)), rng.normal(size=2))(s, name="fc1"))
    s = fl.Hardsigmoid()(fl.Conv2d(rng.normal(size=(c, 2, 1, 1)), rng.normal(size=c))(s, name="fc2"))
    y = fl.Mul()(s, h, name="gate") if gate_first else fl.Mul()(h, s, name="gate")
    y = fl.Flatten()(fl.AdaptiveAvgPool2d(1)(fl.SiLU()(y)))
    return fl.Model(x, fl.Dense(rng.normal(size=(4, c)))(y, name="fc"))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("gate_first", [False, True])
def test_gate_against_reference(gate_first, dtype):
    rng = np.random.default_rng(2)
    model = se_model(rng, gate_first=gate_first)
    x = rng.normal(size=(3, 3, 8, 8)).astype(dtype)
    rules_eps = fl.LRP(model, "epsilon").rules
    np.testing.assert_allclose(model(x), reference.graph_lrp(model, rules_eps, x)[1],
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
    for composite in ("epsilon_plus_flat", composites.epsilon_gamma_box(-3, 3), "epsilon_alpha2_beta1"):
        lrp = fl.LRP(model, composite)
        e = lrp(x, layerwise=True)
        ref, _, per_node = reference.graph_lrp(model, lrp.rules, x)
        assert_close(e.relevance, ref, dtype)
        # the gate's branch receives exactly nothing
        for name in ("fc1", "fc2"):
            assert not e.layers[name].any()
        assert_close(e.layers["dw"], per_node["dw"], dtype)
        np.testing.assert_array_equal(e.layers["dw"], e.layers["gate"])


def test_gate_shapes():
    x = fl.Input((4, 5, 5))
    with pytest.raises(ValueError, match="gate of the signal's shape or"):
        fl.Model(x, fl.Mul()(x, fl.AdaptiveAvgPool2d(2)(x))).shapes((4, 5, 5))
    with pytest.raises(ValueError, match="expected 2 input"):
        fl.Mul()(x)


def test_gate_model_saves_and_loads(tmp_path):
    rng = np.random.default_rng(4)
    model = se_model(rng)
    model.save(tmp_path / "se.npz")
    back = fl.load(tmp_path / "se.npz")
    x = rng.normal(size=(2, 3, 8, 8))
    np.testing.assert_array_equal(back(x), model(x))
    np.testing.assert_array_equal(fl.LRP(back, "epsilon_plus_flat")(x).relevance,
                                  fl.LRP(model, "epsilon_plus_flat")(x).relevance)


def test_depthwise_reproducible_across_threads_and_batches():
    """Ties stay ties and a sample's relevance does not depend on threads or batch."""
    rng = np.random.default_rng(6)
    model = se_model(rng)
    x = rng.normal(size=(7, 3, 8, 8))
    x[:, :, 2:6, 2:6] = 0.25  # a constant region
    lrp = fl.LRP(model, composites.epsilon_gamma_box(-3, 3))
    results = []
    for threads in (1, 2, 8):
        fl.set_num_threads(threads)
        try:
            results.append(lrp(x).relevance)
            results.append(lrp(x[3:4]).relevance)
        finally:
            fl.set_num_threads(None)
    for r in results[2::2]:
        np.testing.assert_array_equal(r, results[0])
    for r in results[1::2]:
        np.testing.assert_array_equal(r, results[0][3:4])


@pytest.mark.parametrize("pool", [fl.SumPool2d(2), fl.AvgPool2d(3, 2, padding=1), fl.AdaptiveAvgPool2d(1),
                                  fl.AdaptiveAvgPool2d((2, 3))], ids=repr)
@pytest.mark.parametrize("name", ["eps", "zplus", "flat", "wsquare"])
def test_pool_as_depthwise_conv_in_the_reference(pool, name):
    """The reference's shortcut for large linear pools (a depthwise conv of fixed weights)
    equals the pool's matrix read off its forward pass."""
    rng = np.random.default_rng(8)
    x = np.abs(rng.normal(size=(2, 3, 6, 6)))
    out = fl.Sequential([pool]).shapes((3, 6, 6))[-1]
    r = rng.normal(size=(2,) + out)
    conv = reference._pool_as_conv(pool, (3, 6, 6))
    assert conv is not None
    m = reference.linear_map(lambda v: reference.pool2d(pool, v), (3, 6, 6))
    dense = reference.dense_relevance(x.reshape(2, -1), m, np.zeros(m.shape[0]), r.reshape(2, -1), RULES[name],
                                      m != 0, (3, 6, 6))
    np.testing.assert_allclose(reference.conv_relevance(conv, x, r, RULES[name]), dense.reshape(x.shape),
                               rtol=1e-10, atol=1e-12)




def torchvision_or_skip():
    pytest.importorskip("torch")
    from fastlrp.bench._util import import_torchvision

    try:
        return import_torchvision()
    except ImportError as exc:
        pytest.skip(f"torchvision's model code is not importable here: {exc}")


def random_torchvision(name, dtype="float32"):
    import torch

    from test_io_torch_graph import randomised

    tv = torchvision_or_skip()
    torch.manual_seed(0)
    tmodel = randomised(getattr(tv.models, name)(weights=None))
    return tmodel.double() if dtype == "float64" else tmodel


MOBILE = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"]


@pytest.mark.parametrize("name", MOBILE)
def test_torchvision_mobile_forward(name):
    import torch

    tmodel = random_torchvision(name)
    model = fl.from_torch(tmodel)
    assert any(isinstance(n.layer, fl.Conv2d) and n.layer.groups > 1 for n in model.nodes)
    if name != "mobilenet_v2":
        assert any(isinstance(n.layer, fl.Mul) for n in model.nodes)  # squeeze-excitation gates
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = tmodel(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


@pytest.mark.parametrize("name", MOBILE)
def test_torchvision_mobile_relevance_against_reference(name):
    """float64, 64x64: fastlrp's relevance equals the numpy reference's, and the gates'
    branches (the squeeze-excitation convolutions) receive exactly nothing."""
    import torch

    tmodel = random_torchvision(name, "float64")
    model = fl.from_torch(tmodel)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).numpy()
    for composite in ("epsilon_plus_flat", composites.epsilon_gamma_box(-3, 3)):
        lrp = fl.LRP(model, composite)
        e = lrp(x, layerwise=True)
        ref, _, _ = reference.graph_lrp(model, lrp.rules, x)
        np.testing.assert_allclose(e.relevance, ref, rtol=1e-10, atol=1e-10 * float(np.abs(ref).max()))
        se = [n for n in model.names if ".fc1" in n or ".fc2" in n]
        assert (name == "mobilenet_v2") == (not se)
        for n in se:
            assert not e.layers[n].any()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_vectorised_sigmoid_and_silu_accuracy_and_ties(dtype):
    """Sigmoid and SiLU use fastlrp's own vectorised exp: within a few ulp of the exact value
    everywhere (float64 reference), and one value gives one result in every position (vector
    lanes and the scalar tail alike)."""
    lim = 80 if dtype == np.float32 else 700
    x = np.concatenate([np.linspace(-lim, lim, 20011), [0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0]])
    x = x.astype(dtype)
    exact_sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    for layer, exact in ((fl.Sigmoid(), exact_sig), (fl.SiLU(), x.astype(np.float64) * exact_sig)):
        got = fl.Sequential([layer]).forward(x[None])[0].astype(np.float64)
        tiny = np.finfo(dtype).tiny
        ok = np.abs(exact) > tiny * 1e3  # away from the denormal range, which fastlrp flushes to 0
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(got[ok], exact[ok], rtol=4 * eps, atol=0)
        assert np.all(np.abs(got[~ok]) <= tiny * 1e3)
    for n in (1, 7, 8, 9, 33, 1001):
        const = np.full((1, n), dtype(-1.2345), dtype)
        for layer in (fl.Sigmoid(), fl.SiLU()):
            assert np.unique(fl.Sequential([layer]).forward(const)).size == 1


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"])
def test_torchvision_mobile_from_onnx(name, tmp_path):
    """The same models exported by torch.onnx (Conv with group, Mul gates, HardSigmoid, HardSwish,
    Clip as ReLU6, SiLU as Sigmoid and Mul): forward equals torch's, relevance equals the torch
    loader's model's."""
    import torch

    from conftest import fwd_close, same_relevance

    pytest.importorskip("onnx")
    tmodel = random_torchvision(name)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    try:
        torch.onnx.export(tmodel, (x,), tmp_path / "m.onnx", dynamo=False, opset_version=17)
    except Exception as exc:  # noqa: BLE001 - the exporter's own dependencies
        pytest.skip(f"torch.onnx.export is not usable here: {type(exc).__name__}: {exc}")
    model = fl.from_onnx(tmp_path / "m.onnx")
    assert any(isinstance(layer, fl.Conv2d) and layer.groups > 1 for layer in model.layers)
    with torch.no_grad():
        expected = tmodel(x).numpy()
    fwd_close(model(x.numpy()), expected)
    same_relevance(model, fl.from_torch(tmodel), x.numpy())


def test_keras_gate_and_activations(tmp_path):
    """A functional Keras model with a squeeze-excitation Multiply, grouped and depthwise
    convolutions (depth multiplier 2) and the efficient-network activations."""
    keras = pytest.importorskip("keras")
    from conftest import fwd_close

    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="swish")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="gelu")(h)
    h = keras.layers.ZeroPadding2D(1)(h)
    h = keras.layers.DepthwiseConv2D(3, strides=2, activation="relu6")(h)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
    s = keras.layers.Conv2D(4, 1, activation="relu")(s)
    s = keras.layers.Conv2D(16, 1, activation="hard_sigmoid")(s)
    h = keras.layers.Multiply()([h, s])
    h = keras.layers.Conv2D(8, 1, groups=2, activation="hard_swish")(h)
    h = keras.layers.ReLU(max_value=6.0)(keras.layers.Activation("mish")(h))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).normal(size=(2, 12, 12, 3)).astype(np.float32)
    expected = np.asarray(model.predict(x, verbose=0))
    model.save(tmp_path / "se.keras")
    ours = fl.from_keras(tmp_path / "se.keras")
    assert any(isinstance(n.layer, fl.Mul) for n in ours.nodes)
    fwd_close(ours(x.transpose(0, 3, 1, 2)), expected)
    e = fl.LRP(ours, "epsilon_plus_flat")(x.transpose(0, 3, 1, 2), layerwise=True)
    shape_of = dict(zip(ours.names, ours.shapes((3, 12, 12))))
    mul = next(n for n in ours.nodes if isinstance(n.layer, fl.Mul))
    gate = next(i for i in mul.inputs if shape_of[i][1:] == (1, 1))
    assert not e.layers[gate].any() and e.layers[mul.name].any()


CEIL_POOLS = [(fl.MaxPool2d, {}), (fl.AvgPool2d, {"count_include_pad": True}),
              (fl.AvgPool2d, {"count_include_pad": False})]


@pytest.mark.parametrize("size", [7, 8, 9, 10])
@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 3, 1)])
@pytest.mark.parametrize("cls,kw", CEIL_POOLS, ids=["max", "avg_pad", "avg_nopad"])
def test_ceil_mode_pools_forward_equal_torch(cls, kw, k, s, p, size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(size).normal(size=(2, 3, size, size + 1))
    pool = cls(k, s, p, ceil_mode=True, **kw)
    if cls is fl.MaxPool2d:
        expected = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=True).numpy()
    else:
        expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=True, **kw).numpy()
    got = fl.Sequential([pool]).forward(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(reference.pool2d(pool, x), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("cls,kw", CEIL_POOLS, ids=["max", "avg_pad", "avg_nopad"])
@pytest.mark.parametrize("name", ["eps", "zplus", "flat"])
def test_ceil_mode_pools_relevance_against_reference(cls, kw, name):
    rng = np.random.default_rng(9)
    pool = cls(3, 2, 1, ceil_mode=True, **kw)
    x = np.abs(rng.normal(size=(2, 3, 8, 9)))
    model = fl.Sequential([pool])
    start = rng.normal(size=(2,) + model.shapes((3, 8, 9))[-1])
    rule = rules.Pass() if cls is fl.MaxPool2d else RULES[name]
    e = fl.LRP(model, fl.Composite([(cls, rule)]))(x, target=start)
    expected, _, _ = reference.lrp([pool], [rule], x, target=start)
    np.testing.assert_allclose(e.relevance, expected, rtol=1e-10, atol=1e-12)


def test_torchvision_googlenet_forward():
    """GoogLeNet: max pools with ceil_mode=True, inception branches joined by torch.cat."""
    import torch

    tmodel = random_torchvision("googlenet")
    model = fl.from_torch(tmodel)
    assert any(isinstance(n.layer, fl.MaxPool2d) and n.layer.ceil_mode for n in model.nodes)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = tmodel(x).numpy()
    np.testing.assert_allclose(model(x.numpy()), expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def test_torchvision_googlenet_relevance_against_reference():
    import torch

    tmodel = random_torchvision("googlenet", "float64")
    model = fl.from_torch(tmodel)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).numpy()
    lrp = fl.LRP(model, "epsilon_plus_flat")
    ref, _, _ = reference.graph_lrp(model, lrp.rules, x)
    np.testing.assert_allclose(lrp(x).relevance, ref, rtol=1e-10, atol=1e-10 * float(np.abs(ref).max()))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("stride,channels", [(1, 20), (2, 20), (1, 8), (1, 3)])
def test_depthwise_wide_rows_equal_narrow_rows_bitwise(stride, channels, dtype):
    """Rows of 12 or more output pixels run the pixel-blocked depthwise kernel, narrower rows the
    channel-blocked one: an output whose taps lie inside both images comes out bit-identical
    from either (the same chain, only the loop order differs), and the wide one equals the
    reference."""
    rng = np.random.default_rng(9)
    conv = fl.Conv2d(rng.normal(size=(channels, 1, 3, 3)).astype(dtype), rng.normal(size=channels).astype(dtype),
                     stride=stride, padding=1, groups=channels)
    model = fl.Sequential([conv])
    x = rng.normal(size=(2, channels, 9, 12 * stride + 8)).astype(dtype)
    wide = model.forward(x)
    assert wide.shape[3] >= 12
    narrow_in = x[..., :10 * stride]
    narrow = model.forward(np.ascontiguousarray(narrow_in))
    assert narrow.shape[3] < 12
    inner = narrow.shape[3] - 1  # the narrow image's last column reads its right padding
    np.testing.assert_array_equal(wide[..., 1:inner], narrow[..., 1:inner])
    expected = reference.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, groups=channels)
    np.testing.assert_allclose(wide, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    # float32 Epsilon(1e-6) divides by pre-activations as small as 7e-5 here: 1e4 times the
    # rounding of z, which differs between ISA levels (v2 has no FMA); float32 checks the
    # stabilised Epsilon(0.3) instead, float64 the plain one
    for name in ("eps" if dtype == np.float64 else "eps0.3", "zplus", "gamma", "flat"):
        lrp = fl.LRP(model, RULES[name])
        xs = np.abs(x) if name == "zplus" else x
        start = rng.normal(size=wide.shape)
        ref, _, _ = reference.lrp([conv], [RULES[name]], xs, target=start)
        assert_close(lrp(xs, target=start).relevance, ref, dtype)


def test_wide_depthwise_and_uneven_padding_reproducible_across_threads_and_batches():
    """The pixel-blocked depthwise rows (12+ output pixels) and a conv with uneven padding: ties
    stay ties in a constant region, and a sample's relevance is bitwise the same for 1, 2 and 8
    threads and in a batch of 7 or of 1."""
    rng = np.random.default_rng(10)
    x_in = fl.Input((3, 32, 32))
    h = fl.ReLU()(fl.Conv2d(rng.normal(size=(16, 3, 3, 3)), rng.normal(size=16), stride=2,
                            padding=((0, 1), (0, 1)))(x_in))
    h = fl.ReLU6()(fl.Conv2d(rng.normal(size=(16, 1, 3, 3)), rng.normal(size=16), padding=1, groups=16)(h, name="dw"))
    y = fl.Dense(rng.normal(size=(4, 16)))(fl.Flatten()(fl.AdaptiveAvgPool2d(1)(h)))
    model = fl.Model(x_in, y)
    x = rng.normal(size=(7, 3, 32, 32))
    x[:, :, 4:28, 4:28] = 0.5  # a constant region
    for composite in ("epsilon_plus_flat", composites.epsilon_gamma_box(-3, 3)):
        assert_reproducible(fl.LRP(model, composite), x, 3)
    z = fl.Model(x_in, h)(x)  # the depthwise layer's forward output
    inner = z[:, :, 4:12, 4:12]  # reads only constant input, through constant first-layer outputs
    np.testing.assert_array_equal(inner, np.broadcast_to(inner[:, :, :1, :1], inner.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [7, 16, 20])
@pytest.mark.parametrize("width", [3, 4, 9, 14, 23])
def test_depthwise_3x3_padded_equals_explicit_zeros(width, channels, dtype):
    """3x3 stride-1 depthwise layers with one column of padding each side (MobileNet's and
    EfficientNet's) run their own unrolled kernel; the same layer without padding on an input
    with explicit zero borders runs the general kernels (pixel-blocked from 12 output columns,
    channel-blocked below). Each output is one chain in tap order, the padding's taps skipped in
    the one and multiplied by zeros in the other: the values are equal (==),
    the bias added first in both. The same for the backward gather of Epsilon and ZPlus (on
    non-negative and on signed inputs)."""
    rng = np.random.default_rng(width * 100 + channels)
    w = rng.normal(size=(channels, 1, 3, 3)).astype(dtype)
    b = rng.normal(size=channels).astype(dtype)
    x = rng.normal(size=(3, channels, 5, width)).astype(dtype)
    x[0] = np.abs(x[0])
    padded = fl.Sequential([fl.Conv2d(w, b, padding=1, groups=channels)]).forward(x)
    zeros = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    explicit = fl.Sequential([fl.Conv2d(w, b, padding=0, groups=channels)]).forward(zeros)
    assert padded.shape == explicit.shape == x.shape
    np.testing.assert_array_equal(padded, explicit)
    expected = reference.conv2d(x, w, b, (1, 1), (1, 1), groups=channels)
    np.testing.assert_allclose(padded, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    # the backward gather (Epsilon; ZPlus on non-negative inputs): the same on the real pixels
    start = rng.normal(size=padded.shape).astype(dtype)
    for rule, xs, zs in [(rules.Epsilon(0.3), x, zeros), (rules.ZPlus(), np.abs(x), np.abs(zeros)),
                         (rules.ZPlus(), x, zeros)]:  # signed: g+ and g- gathered separately
        r_pad = fl.LRP(fl.Sequential([fl.Conv2d(w, b, padding=1, groups=channels)]), rule)(xs, target=start)
        r_zero = fl.LRP(fl.Sequential([fl.Conv2d(w, b, padding=0, groups=channels)]), rule)(zs, target=start)
        np.testing.assert_array_equal(r_pad.relevance, r_zero.relevance[:, :, 1:-1, 1:-1])
