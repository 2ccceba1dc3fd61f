"""Convolutional networks: the C++ kernels against the reference, which reads each conv or pool
layer's matrix off its forward pass with basis vectors and applies the one dense formula."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlrp as fl
from fastlrp import composites, reference, rules

from conftest import DTYPES, assert_close

RULES = {
    "eps0": rules.Epsilon(0), "eps": rules.Epsilon(), "eps0.3": rules.Epsilon(0.3), "zplus": rules.ZPlus(),
    "ab21": rules.AlphaBeta(2, 1), "ab10": rules.AlphaBeta(1, 0), "gamma": rules.Gamma(0.25), "gamma1": rules.Gamma(1.0),
    "zbox": rules.ZBox(-2.0, 3.0), "wsquare": rules.WSquare(), "flat": rules.Flat(),
}


@st.composite
def conv_case(draw):
    c_in = draw(st.integers(1, 4))
    c_out = draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 9))
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    signed = draw(st.booleans())
    return dict(c_in=c_in, c_out=c_out, k=(kh, kw), s=(sh, sw), p=(ph, pw), d=(dh, dw), h=h, w=w, n=n, seed=seed,
                signed=signed)


def make_conv(case, dtype):
    rng = np.random.default_rng(case["seed"])
    weight = rng.normal(size=(case["c_out"], case["c_in"]) + case["k"]).astype(dtype)
    bias = rng.normal(size=case["c_out"]).astype(dtype)
    layer = fl.Conv2d(weight, bias, stride=case["s"], padding=case["p"], dilation=case["d"])
    x = rng.normal(size=(case["n"], case["c_in"], case["h"], case["w"])).astype(dtype)
    if not case["signed"]:
        x = np.maximum(x, 0)
    return layer, x, rng


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_case())
def test_conv_forward_matches_reference(case):
    layer, x, _ = make_conv(case, np.float64)
    model = fl.Sequential([layer])
    np.testing.assert_allclose(model.forward(x), reference.forward([layer], x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(RULES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(case=conv_case())
def test_conv_rule_matches_reference(name, dtype, case):
    layer, x, rng = make_conv(case, dtype)
    model = fl.Sequential([layer])
    out_shape = model.shapes(x.shape[1:])[-1]
    start = rng.normal(size=(x.shape[0],) + out_shape).astype(dtype)
    # outputs whose pre-activation nearly cancels amplify rounding by the division, whoever
    # computes it (see test_dense): their start relevance is zeroed (float64: only the extreme ones)
    z = reference.forward([layer], x.astype(np.float64))
    mag = reference.conv2d(np.abs(x), np.abs(layer.weight), np.abs(layer.bias), layer.stride, layer.padding,
                           layer.dilation)
    start = np.where(np.abs(z) < (0.02 if dtype == np.float32 else 1e-4) * mag, 0, start).astype(dtype)
    rule = RULES[name]
    e = fl.LRP(model, rule)(x, target=start)
    expected, _, _ = reference.lrp([layer], [rule], x, target=start)
    assert e.relevance.shape == x.shape and e.relevance.dtype == dtype
    assert np.isfinite(e.relevance).all()
    assert_close(e.relevance, expected, dtype)


PLANAR_GEOMETRIES = [  # one input channel: patch sums (conv.hpp), whole images or bands of rows
    dict(k=(5, 5), s=1, p=0, d=1, hw=(12, 11), n=3),
    dict(k=(3, 5), s=(2, 1), p=(1, 2), d=(2, 1), hw=(9, 8), n=2),
    dict(k=(2, 3), s=(1, 1), p=(0, 4), d=1, hw=(5, 4), n=2),   # padding wider than the kernel
    dict(k=(3, 3), s=1, p=1, d=1, hw=(70, 40), n=1),            # bands of rows, not whole images
    dict(k=(1, 1), s=1, p=0, d=1, hw=(4, 6), n=4),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("geom", PLANAR_GEOMETRIES, ids=lambda g: "k{}x{}".format(*g["k"]) + f"-{g['hw'][0]}x{g['hw'][1]}")
@pytest.mark.parametrize("name", ["eps", "flat", "zbox", "gamma", "ab21", "wsquare"])
def test_single_channel_conv_matches_reference(name, geom, dtype, rng):
    layer = fl.Conv2d(rng.normal(size=(6, 1) + geom["k"]).astype(dtype), rng.normal(size=6).astype(dtype),
                      stride=geom["s"], padding=geom["p"], dilation=geom["d"])
    x = rng.uniform(-1, 1, size=(geom["n"], 1) + geom["hw"]).astype(dtype)
    if name in ("gamma", "ab21"):
        x = np.abs(x)
    model = fl.Sequential([layer])
    np.testing.assert_allclose(model.forward(x), reference.forward([layer], x.astype(np.float64)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
    z = reference.forward([layer], x.astype(np.float64))
    mag = reference.conv2d(np.abs(x), np.abs(layer.weight), np.abs(layer.bias), layer.stride, layer.padding,
                           layer.dilation)
    start = np.where(np.abs(z) < (0.02 if dtype == np.float32 else 1e-4) * mag, 0, rng.normal(size=z.shape)).astype(dtype)
    rule = RULES[name]
    e = fl.LRP(model, rule)(x, target=start)
    assert_close(e.relevance, reference.lrp([layer], [rule], x, target=start)[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["eps", "zbox", "flat", "gamma"])
def test_banded_patch_sums_equal_whole_image_bitwise(name, dtype, rng):
    """A first layer (3 channels) on a 256x256 image computes its backward a band of rows at a
    time; crops small enough for one band must give the same bits at every interior row."""
    layer = fl.Conv2d(rng.normal(size=(5, 3, 7, 7)).astype(dtype), rng.normal(size=5).astype(dtype), stride=2, padding=3)
    x = rng.uniform(-1, 1, size=(2, 3, 256, 256)).astype(dtype)
    if name == "gamma":
        x = np.abs(x)
    rule = rules.ZBox(np.array([-1.0, -2.0, -1.5])[:, None, None], 1.5) if name == "zbox" else RULES[name]
    model = fl.Sequential([layer])
    start = rng.normal(size=(2,) + model.shapes(x.shape[1:])[-1]).astype(dtype)
    big = fl.LRP(model, rule)(x, target=start).relevance
    h, reach = 32, 6  # rows of a crop; input rows within `reach` of its cut see other patches
    for y0 in range(0, 256 - h + 1, 16):
        small = fl.LRP(model, rule)(x[:, :, y0:y0 + h], target=start[:, :, y0 // 2:y0 // 2 + h // 2]).relevance
        lo = 0 if y0 == 0 else reach
        hi = h if y0 + h == 256 else h - reach
        np.testing.assert_array_equal(big[:, :, y0 + lo:y0 + hi], small[:, :, lo:hi], err_msg=f"crop at row {y0}")
    assert np.isfinite(big).all() and np.abs(big).max() > 0
    for threads in (1, 2, 8):  # one sample on 2 or 8 threads: the rows of each band split between them
        fl.set_num_threads(threads)
        try:
            one = fl.LRP(model, rule)(x[1:], target=start[1:]).relevance
        finally:
            fl.set_num_threads(None)
        np.testing.assert_array_equal(one, big[1:], err_msg=f"{threads} threads")


def test_conv_zbox_per_channel_bounds(rng):
    layer = fl.Conv2d(rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4), padding=1)
    low = -rng.uniform(1, 2, size=(3, 1, 1))
    rule = rules.ZBox(low, low + 4)
    x = rng.uniform(-1, 1, size=(2, 3, 6, 5))
    start = rng.normal(size=(2, 4, 6, 5))
    e = fl.LRP(fl.Sequential([layer]), rule)(x, target=start)
    assert_close(e.relevance, reference.lrp([layer], [rule], x, target=start)[0], np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bounds", ["scalar", "per-channel", "per-pixel"])
def test_conv_zbox_bound_kinds(bounds, dtype, rng):
    # bounds that depend on the channel only are folded into a second weight matrix; bounds
    # that vary over pixels take the path with one accumulator per bound
    layer = fl.Conv2d(rng.normal(size=(5, 2, 3, 3)).astype(dtype), rng.normal(size=5).astype(dtype), padding=1,
                      stride=(1, 2))
    shape = {"scalar": (), "per-channel": (2, 1, 1), "per-pixel": (2, 7, 6)}[bounds]
    low = -rng.uniform(1, 2, size=shape)
    rule = rules.ZBox(low, low + rng.uniform(2, 4, size=shape))
    x = rng.uniform(-1, 1, size=(3, 2, 7, 6)).astype(dtype)
    start = rng.normal(size=(3,) + fl.Sequential([layer]).shapes((2, 7, 6))[-1]).astype(dtype)
    e = fl.LRP(fl.Sequential([layer]), rule)(x, target=start)
    assert_close(e.relevance, reference.lrp([layer], [rule], x, target=start)[0], dtype)


POOLS = [
    lambda: fl.AvgPool2d(2), lambda: fl.AvgPool2d(3, stride=2, padding=1),
    lambda: fl.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), lambda: fl.SumPool2d(2),
    lambda: fl.SumPool2d((2, 3), stride=(1, 2)), lambda: fl.AdaptiveAvgPool2d(3), lambda: fl.AdaptiveAvgPool2d((2, 4)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("make", POOLS, ids=lambda f: repr(f()))
@pytest.mark.parametrize("name", list(RULES))
def test_linear_pools_match_reference(make, name, dtype, rng):
    pool = make()
    x = rng.normal(size=(2, 3, 7, 8)).astype(dtype)
    model = fl.Sequential([pool])
    np.testing.assert_allclose(model.forward(x), reference.forward([pool], x), rtol=1e-5 if dtype == np.float32 else 1e-12)
    start = rng.normal(size=(2,) + model.shapes(x.shape[1:])[-1]).astype(dtype)
    comp = fl.Composite([(type(pool), RULES[name])])
    e = fl.LRP(model, comp)(x, target=start)
    assert_close(e.relevance, reference.lrp([pool], [RULES[name]], x, target=start)[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("mode", ["winner", "avg"])
@pytest.mark.parametrize("geom", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 0))], ids=str)
def test_maxpool_matches_reference_and_conserves(geom, mode, dtype, rng):
    pool = fl.MaxPool2d(geom[0], stride=geom[1], padding=geom[2], mode=mode)
    x = rng.normal(size=(2, 3, 7, 6)).astype(dtype)
    x[0, 0, :2, :2] = 1.5  # a tied window
    model = fl.Sequential([pool])
    np.testing.assert_array_equal(model.forward(x), reference.forward([pool], x).astype(dtype))
    start = rng.uniform(0.5, 1.5, size=(2,) + model.shapes(x.shape[1:])[-1]).astype(dtype)
    e = fl.LRP(model, "epsilon_plus")(x, target=start)
    assert_close(e.relevance, reference.maxpool_relevance(pool, x, start), dtype)
    # both modes conserve relevance (avg up to the 1e-6 stabiliser)
    np.testing.assert_allclose(e.relevance.sum(axis=(1, 2, 3)), start.sum(axis=(1, 2, 3)), rtol=1e-4)


def test_maxpool_ties_split_evenly_and_overlaps_add():
    x = np.array([[[[1.0, 1.0, 0.0],
                    [0.0, 1.0, 0.0],
                    [0.0, 0.0, 2.0]]]])
    pool = fl.MaxPool2d(2, stride=1)  # four overlapping 2x2 windows
    model = fl.Sequential([pool])
    np.testing.assert_array_equal(model.forward(x), [[[[1.0, 1.0], [1.0, 2.0]]]])
    start = np.array([[[[3.0, 2.0], [1.0, 4.0]]]])
    r = fl.LRP(model, "epsilon_plus")(x, target=start).relevance
    # window (0,0): three ones tie -> 1 each to (0,0), (0,1), (1,1); window (0,1): (0,1), (1,1) tie -> 1 each;
    # window (1,0): only (1,1) = 1 -> 1; window (1,1): (2,2) = 2 -> 4
    expected = np.array([[[[1.0, 2.0, 0.0],
                           [0.0, 3.0, 0.0],
                           [0.0, 0.0, 4.0]]]])
    np.testing.assert_allclose(r, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("below_relu", [True, False], ids=["R0-where-z<0", "R-everywhere"])
def test_conv_gamma_both_paths(below_relu, dtype, rng):
    # Below a ReLU the relevance of outputs with z < 0 is zero, and the kernel skips the
    # z < 0 half of its backward product; with relevance there it must take the full product.
    layer = fl.Conv2d((rng.normal(size=(7, 3, 3, 3)) * 0.5).astype(dtype), (rng.normal(size=7) * 0.1).astype(dtype),
                      padding=1)
    x = np.maximum(rng.normal(size=(5, 3, 9, 9)), 0).astype(dtype)
    z = reference.forward([layer], x.astype(np.float64))
    start = rng.uniform(0.5, 1.5, size=z.shape)
    start = np.where(z > 0, start, 0.0 if below_relu else -start).astype(dtype)
    assert (start[z < 0] != 0).any() != below_relu
    e = fl.LRP(fl.Sequential([layer]), rules.Gamma(0.25))(x, target=start)
    expected, _, _ = reference.lrp([layer], [rules.Gamma(0.25)], x, target=start)
    assert_close(e.relevance, expected, dtype)


def small_cnn(rng, bias=True, dtype=np.float64):
    def b(n):
        return (rng.normal(size=n) * 0.1).astype(dtype) if bias else None
    return fl.Sequential([
        fl.Conv2d((rng.normal(size=(6, 2, 3, 3)) * 0.4).astype(dtype), b(6), padding=1), fl.ReLU(), fl.MaxPool2d(2),
        fl.Conv2d((rng.normal(size=(8, 6, 3, 3)) * 0.3).astype(dtype), b(8), stride=1), fl.ReLU(),
        fl.AvgPool2d(2), fl.Flatten(),
        fl.Dense((rng.normal(size=(10, 32)) * 0.3).astype(dtype), b(10)), fl.ReLU(),
        fl.Dense((rng.normal(size=(4, 10)) * 0.5).astype(dtype), b(4)), fl.Softmax(),
    ])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
                                       "epsilon_alpha2_beta1_flat", "w2_epsilon", "gamma_box"])
def test_small_cnn_matches_reference_layerwise(composite, dtype, rng):
    model = small_cnn(rng, dtype=dtype)
    comp = composites.epsilon_gamma_box(-3.0, 3.0) if composite == "gamma_box" else composite
    lrp = fl.LRP(model, comp)
    x = rng.normal(size=(3, 2, 14, 14)).astype(dtype)
    e = lrp(x, layerwise=True)
    ref_r, logits, ref_layers = reference.lrp(model.layers, lrp.rules, x)
    assert_close(e.output, logits, dtype)
    assert_close(e.relevance, ref_r, dtype)
    shapes = model.shapes(x.shape[1:])
    assert [l.shape[1:] for l in e.layers] == shapes[:-1] + [shapes[-2]]
    for got, want in zip(e.layers, ref_layers):
        assert_close(got, want, dtype)


def test_small_cnn_conserves_under_lrp0(rng):
    model = small_cnn(rng, bias=False)
    comp = fl.Composite([((fl.Dense, fl.Conv2d, fl.AvgPool2d), rules.Epsilon(0))])
    e = fl.LRP(model, comp)(rng.uniform(0, 1, size=(4, 2, 14, 14)), layerwise=True)
    sums = np.stack([l.reshape(4, -1).sum(axis=1) for l in e.layers], axis=1)
    np.testing.assert_allclose(sums, np.repeat(sums[:, -1:], sums.shape[1], axis=1), rtol=1e-10)
    np.testing.assert_allclose(e.conservation, sums, rtol=1e-12)


def test_composites_on_cnn(rng):
    model = small_cnn(rng)
    kinds = [type(r).__name__ for r in fl.LRP(model, composites.epsilon_gamma_box(-3, 3)).rules]
    assert kinds[0] == "ZBox" and kinds[3] == "Gamma" and kinds[5] == "Epsilon" and kinds[7] == "Epsilon"
    assert kinds[2] == "Pass"  # MaxPool2d keeps its mode
    kinds = [type(r).__name__ for r in fl.LRP(model, "epsilon_plus_flat").rules]
    assert kinds[0] == "Flat" and kinds[3] == "ZPlus" and kinds[7] == "Epsilon"
    with pytest.raises(ValueError, match="by its mode"):
        fl.LRP(model, fl.Composite([(fl.Conv2d, rules.ZPlus()), (fl.Dense, rules.Epsilon()), (2, rules.Epsilon())]))


def test_flatten_is_nchw_order(rng):
    conv = fl.Conv2d(rng.normal(size=(3, 2, 2, 2)), padding=0)
    dense = fl.Dense(rng.normal(size=(5, 3 * 3 * 4)))
    model = fl.Sequential([conv, fl.Flatten(), dense])
    x = rng.normal(size=(2, 2, 4, 5))
    torch_like = reference.conv2d(x, conv.weight, conv.bias).reshape(2, -1) @ dense.weight.T
    np.testing.assert_allclose(model.forward(x), torch_like, rtol=1e-12)


def test_batchnorm2d_folding_keeps_forward(rng):
    conv = fl.Conv2d(rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4), padding=1)
    bn = fl.BatchNorm2d(rng.normal(size=4), rng.uniform(0.2, 2, size=4), rng.normal(size=4), rng.normal(size=4))
    layers = [conv, bn, fl.ReLU(), fl.BatchNorm2d(rng.normal(size=4), rng.uniform(0.2, 2, size=4))]
    model = fl.Sequential(layers)
    assert len(model.layers) == 3  # the first BatchNorm2d folded, the second (after ReLU) kept
    x = rng.normal(size=(2, 3, 5, 5))
    np.testing.assert_allclose(model.forward(x), reference.forward(layers, x), rtol=1e-12, atol=1e-12)
    lrp = fl.LRP(model, "epsilon_plus")
    np.testing.assert_allclose(lrp(x).relevance, reference.lrp(model.layers, lrp.rules, x)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_cnn_thread_counts_agree_and_repeat_bitwise(threads, rng):
    model = small_cnn(rng, dtype=np.float32)
    x = rng.normal(size=(5, 2, 14, 14)).astype(np.float32)
    lrp = fl.LRP(model, "epsilon_plus_flat")
    fl.set_num_threads(1)
    ref = lrp(x).relevance
    fl.set_num_threads(threads)
    a, b = lrp(x).relevance, lrp(x).relevance
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


# ---- bad input -------------------------------------------------------------------------


def test_conv_bad_input_names_the_layer(rng):
    model = small_cnn(rng)
    with pytest.raises(ValueError, match=r"layer 0 Conv2d\(2 -> 6, 3x3.*expects 2 input channels, got 3"):
        model.forward(np.zeros((1, 3, 10, 10)))
    with pytest.raises(ValueError, match="NHWC"):
        model.forward(np.zeros((1, 10, 10, 2)))
    with pytest.raises(ValueError, match=r"NCHW batch.*x\[None\]"):
        model.forward(np.zeros((2, 10, 10)))
    with pytest.raises(ValueError, match=r"layer 3 Conv2d.*larger than the padded input 2x2"):
        model.forward(np.zeros((1, 2, 4, 4)))  # 4x4 -> pool -> 2x2 < 3x3 kernel
    with pytest.raises(ValueError, match=r"layer 7 Dense\(32 -> 10\).*\(72,\)"):
        model.forward(np.zeros((1, 2, 16, 16)))  # the flattened size no longer fits the Dense
    with pytest.raises(ValueError, match="NaN"):
        model.forward(np.full((1, 2, 14, 14), np.nan))


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(stride=0), ValueError, "stride"), (dict(stride=-1), ValueError, "stride"),
    (dict(dilation=0), ValueError, "dilation"), (dict(padding=-1), ValueError, "padding"),
    (dict(stride=1.5), TypeError, "stride"), (dict(padding=(1, 2, 3)), TypeError, "padding"),
])
def test_conv_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        fl.Conv2d(np.ones((2, 1, 3, 3)), **kwargs)


def test_pool_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        fl.MaxPool2d(0)
    with pytest.raises(ValueError, match="half the kernel"):
        fl.AvgPool2d(2, padding=2)
    with pytest.raises(ValueError, match="mode"):
        fl.MaxPool2d(2, mode="max")
    with pytest.raises(ValueError, match="larger than the padded input"):
        fl.Sequential([fl.MaxPool2d(5)]).forward(np.zeros((1, 1, 3, 3)))


def test_chain_errors_for_images(rng):
    with pytest.raises(ValueError, match="gives 6 channels but layer 2 Conv2d.*expects 4"):
        fl.Sequential([fl.Conv2d(np.ones((6, 3, 3, 3))), fl.ReLU(), fl.Conv2d(np.ones((2, 4, 3, 3)))])
    with pytest.raises(ValueError, match="add a Flatten"):
        fl.Sequential([fl.Conv2d(np.ones((6, 3, 3, 3))), fl.Dense(np.ones((2, 6)))])
    with pytest.raises(ValueError, match="expects \\(C, H, W\\) images"):
        fl.Sequential([fl.Dense(np.ones((6, 3))), fl.Conv2d(np.ones((2, 6, 1, 1)))])


def test_int_target_on_image_output_counts_in_nchw_order(rng):
    layer = fl.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding=1)
    model = fl.Sequential([layer])
    x = rng.normal(size=(2, 2, 4, 5))
    lrp = fl.LRP(model, rules.Epsilon())
    for t in (7, [0, 59]):
        e = lrp(x, target=t)
        np.testing.assert_allclose(e.relevance, reference.lrp([layer], [rules.Epsilon()], x, target=t)[0], rtol=1e-10)
        assert np.array_equal(e.targets, np.broadcast_to(t, (2,)))
    e = lrp(x)
    assert np.array_equal(e.targets, e.output.reshape(2, -1).argmax(axis=1))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("signed", [False, True], ids=["after-relu", "signed"])
@pytest.mark.parametrize("name", ["eps", "eps0", "zplus", "ab21", "ab10", "gamma", "zbox", "flat"])
def test_pointwise_conv_matches_reference(name, signed, dtype, rng):
    """1x1 convolutions (ResNet's bottlenecks: the input's rows are the patches, forward and
    backward), which the random geometries above rarely draw: every rule family, signed inputs
    and inputs after a ReLU, channel counts off the vector width, 1 and 2 threads."""
    layer = fl.Conv2d((rng.normal(size=(37, 20, 1, 1)) / 4).astype(dtype), rng.normal(size=37).astype(dtype))
    x = rng.normal(size=(3, 20, 13, 12)).astype(dtype)
    if not signed:
        x = np.maximum(x, 0)
    model = fl.Sequential([layer])
    z = reference.forward([layer], x.astype(np.float64))
    mag = reference.conv2d(np.abs(x), np.abs(layer.weight), np.abs(layer.bias), layer.stride, layer.padding,
                           layer.dilation)
    start = np.where(np.abs(z) < (0.02 if dtype == np.float32 else 1e-4) * mag, 0, rng.normal(size=z.shape)).astype(dtype)
    rule = RULES[name]
    for threads in (1, 2):
        fl.set_num_threads(threads)
        e = fl.LRP(model, rule)(x, target=start)
        assert_close(e.relevance, reference.lrp([layer], [rule], x, target=start)[0], dtype)
