"""Graph models (fl.Input, layers on nodes, fl.Model): the C++ graph against the numpy
reference's graph_lrp, chains against Sequential bit for bit, conservation, save/load, errors."""

import numpy as np
import pytest

import fastlrp as fl
from fastlrp import composites, reference, rules

from conftest import DTYPES, assert_close

RULES = {
    "eps0": rules.Epsilon(0), "eps": rules.Epsilon(0.1), "zplus": rules.ZPlus(), "ab21": rules.AlphaBeta(2, 1),
    "gamma": rules.Gamma(0.25), "flat": rules.Flat(), "wsquare": rules.WSquare(), "zbox": rules.ZBox(-3.0, 3.0),
}


def conv_w(rng, o, i, k=3, dtype=np.float64):
    return (rng.normal(size=(o, i, k, k)) * np.sqrt(2.0 / (i * k * k))).astype(dtype)


def residual_model(rng, dtype=np.float64, bias=True, bn=True, input_shape=(3, 8, 8)):
    """conv-relu-conv(+BN)-add(skip)-relu, a second block joined by Concat, an unfolded BN,
    pools and a Dense head: every join and fan-out case in one graph."""
    c = input_shape[0]

    def b(n):
        return (rng.normal(size=n) * 0.1).astype(dtype) if bias else None

    x = fl.Input(input_shape)
    h = fl.ReLU()(fl.Conv2d(conv_w(rng, 4, c, dtype=dtype), b(4), padding=1)(x), name="block1.relu")
    h = fl.Conv2d(conv_w(rng, c, 4, dtype=dtype), b(c), padding=1)(h, name="block1.conv2")
    if bn:
        h = fl.BatchNorm2d(rng.normal(size=c) * 0.1, rng.uniform(0.5, 2, size=c), rng.uniform(0.5, 1.5, size=c),
                           (rng.normal(size=c) * 0.1 if bias else np.zeros(c)))(h)
    y = fl.ReLU()(fl.Add()(h, x, name="block1.add"))
    p = fl.MaxPool2d(2)(y)
    u = fl.ReLU()(fl.Conv2d(conv_w(rng, 2, c, k=1, dtype=dtype), b(2))(p))
    cat = fl.Concat(axis=1)(p, u)                       # p fans out to the conv and the concat
    if bn:                                              # BN after a Concat: not foldable
        cat = fl.BatchNorm2d(np.zeros(c + 2), rng.uniform(0.5, 2, size=c + 2), rng.uniform(0.5, 1.5, size=c + 2),
                             np.zeros(c + 2))(cat)
    g = fl.Flatten()(fl.AdaptiveAvgPool2d(1)(fl.AvgPool2d(2)(cat)))
    out = fl.Dense((rng.normal(size=(5, c + 2)) * 0.5).astype(dtype), b(5))(g)
    return fl.Model(x, out)


def test_model_structure(rng):
    m = residual_model(rng)
    assert m.names[:4] == ["conv2d_1", "block1.relu", "block1.conv2", "block1.add"]  # BN folded into block1.conv2
    assert [n.index for n in m.nodes] == list(range(len(m.nodes)))
    assert m["block1.add"].inputs == ("block1.conv2", "input")
    assert any(isinstance(n.layer, fl.BatchNorm2d) for n in m.nodes)  # the one after Concat stays
    text = repr(m)
    assert "block1.add" in text and "(3, 8, 8)" in text and "concat_1" in text


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(RULES))
def test_graph_matches_reference(rng, dtype, name):
    m = residual_model(rng, dtype)
    rule = RULES[name]
    if name == "zbox":  # ZBox on the first conv, Epsilon elsewhere (the bounds fit only the input)
        comp = fl.Composite([(fl.Dense, rules.Epsilon()), (fl.Conv2d, rules.Gamma(0.25)),
                             (fl.First(fl.Conv2d), rule)])
    else:
        comp = rule
    x = rng.uniform(-1, 1, size=(3, 3, 8, 8)).astype(dtype)
    lrp = fl.LRP(m, comp)
    e = lrp(x, layerwise=True)
    ref, logits, per_node = reference.graph_lrp(m, lrp.rules, x)
    assert_close(e.output, logits, dtype)
    assert_close(e.relevance, ref, dtype)
    assert set(e.layers) == set(per_node)
    for key, value in per_node.items():
        assert_close(e.layers[key], value, dtype)
    np.testing.assert_allclose(e.conservation[:, 0], ref.reshape(3, -1).sum(1), rtol=1e-3 if dtype == np.float32 else 1e-9,
                               atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_with_a_repeated_input_and_three_inputs(rng, dtype):
    """Add's backward writes each input's share into that input's relevance or adds it there:
    an input given twice (x + x), a three-way Add, and a skip that reaches an input whose
    relevance already arrived by another path, against the reference."""
    x = fl.Input((2, 6, 6))
    a = fl.ReLU()(fl.Conv2d(conv_w(rng, 2, 2, dtype=dtype), np.full(2, 0.1, dtype), padding=1)(x))
    d = fl.Add()(a, a, name="double")
    b = fl.Conv2d(conv_w(rng, 2, 2, k=1, dtype=dtype), None)(d)
    t = fl.Add()(b, d, a, name="three")
    out = fl.Dense((rng.normal(size=(3, 72)) * 0.3).astype(dtype), None)(fl.Flatten()(fl.ReLU()(t)))
    m = fl.Model(x, out)
    xs = rng.uniform(-1, 1, size=(4, 2, 6, 6)).astype(dtype)
    for comp in ["epsilon", "epsilon_plus"]:
        lrp = fl.LRP(m, comp)
        e = lrp(xs, layerwise=True)
        ref, logits, per_node = reference.graph_lrp(m, lrp.rules, xs)
        assert_close(e.output, logits, dtype)
        assert_close(e.relevance, ref, dtype)
        for key in ("double", "three"):
            assert_close(e.layers[key], per_node[key], dtype)
        assert np.abs(e.relevance).max() > 0


ACTIVATIONS = {
    "relu": fl.ReLU, "sigmoid": fl.Sigmoid, "relu6": fl.ReLU6, "hardsigmoid": fl.Hardsigmoid,  # never negative
    "tanh": fl.Tanh, "leaky": lambda: fl.LeakyReLU(0.2), "silu": fl.SiLU, "elu": fl.ELU, "selu": fl.SELU,
    "hardswish": fl.Hardswish, "gelu": fl.GELU, "mish": fl.Mish,
}


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("rule", ["zplus", "ab21", "gamma"])
def test_two_weight_rules_after_each_activation(rng, act, rule):
    """Dense, Conv2d and depthwise layers skip the scan of their input for negative values
    where the graph guarantees none (after a ReLU-type activation, and pools, Adds and Concats
    of such outputs); after any other activation they take the signed path. Each activation,
    through a pool, an Add, a Concat and a Flatten, against the reference."""
    A = ACTIVATIONS[act]
    x = fl.Input((3, 8, 8))
    p = fl.MaxPool2d(2)(A()(fl.Conv2d(conv_w(rng, 4, 3), rng.normal(size=4), padding=1)(x)))
    q = A()(fl.Conv2d(conv_w(rng, 4, 4), rng.normal(size=4) * 0.1, padding=1)(p))
    s = fl.Add()(q, p)
    d = fl.Conv2d(rng.normal(size=(4, 1, 3, 3)) / 3, rng.normal(size=4) * 0.1, padding=1, groups=4)(s)
    c = fl.Concat(axis=1)(A()(d), fl.ReLU()(p))
    h = A()(fl.Conv2d(conv_w(rng, 5, 8, k=1), rng.normal(size=5) * 0.1)(c))
    out = fl.Dense(rng.normal(size=(3, 5)), rng.normal(size=3) * 0.1)(fl.Flatten()(fl.AdaptiveAvgPool2d(1)(h)))
    m = fl.Model(x, out)
    xs = rng.normal(size=(4, 3, 8, 8))
    lrp = fl.LRP(m, RULES[rule])
    e = lrp(xs)
    ref, logits, _ = reference.graph_lrp(m, lrp.rules, xs)
    assert_close(e.output, logits, np.float64)
    assert_close(e.relevance, ref, np.float64)
    assert np.abs(e.relevance).max() > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("preset", ["epsilon_plus_flat", "epsilon_alpha2_beta1", "egb"])
def test_graph_presets_and_targets(rng, dtype, preset):
    m = residual_model(rng, dtype)
    comp = composites.epsilon_gamma_box(-3, 3) if preset == "egb" else preset
    lrp = fl.LRP(m, comp)
    x = rng.uniform(-1, 1, size=(4, 3, 8, 8)).astype(dtype)
    for target in (None, 2, np.array([0, 1, 2, 3])):
        e = lrp(x, target=target)
        ref, _, _ = reference.graph_lrp(m, lrp.rules, x, target)
        assert_close(e.relevance, ref, dtype)


def test_conservation_lrp0(rng):
    """docs/rules.md (Graphs): LRP-0, zero biases, Add/Concat joins: the relevance sum is conserved from the
    output to the input, and through every Add on the main path (each is a cut of the graph)."""
    m = residual_model(rng, np.float64, bias=False, bn=False)
    comp = fl.Composite([(fl.Dense, rules.Epsilon(0)), (fl.Conv2d, rules.Epsilon(0)), (fl.Add, rules.Epsilon(0)),
                         (fl.AvgPool2d, rules.Epsilon(0)), (fl.AdaptiveAvgPool2d, rules.Epsilon(0))])
    x = rng.uniform(0.1, 1, size=(5, 3, 8, 8))
    e = fl.LRP(m, comp)(x, layerwise=True)
    start = e.conservation[:, -1]
    np.testing.assert_allclose(e.relevance.reshape(5, -1).sum(1), start, rtol=1e-9)
    np.testing.assert_allclose(e.layers["block1.add"].reshape(5, -1).sum(1), start, rtol=1e-9)
    np.testing.assert_allclose(e.layers["concat_1"].reshape(5, -1).sum(1), start, rtol=1e-9)


def chain_layers(rng, dtype):
    return [fl.Conv2d(conv_w(rng, 4, 1, k=5, dtype=dtype), np.zeros(4, dtype)), fl.ReLU(), fl.MaxPool2d(2),
            fl.Conv2d(conv_w(rng, 6, 4, dtype=dtype), np.ones(6, dtype) * 0.1), fl.ReLU(), fl.AvgPool2d(2), fl.Flatten(),
            fl.Dense(rng.normal(size=(20, 24)).astype(dtype) * 0.3, np.zeros(20, dtype)), fl.ReLU(),
            fl.Dense(rng.normal(size=(4, 20)).astype(dtype) * 0.3), fl.Softmax()]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_chain_as_graph_is_bitwise_sequential(rng, dtype, threads, kind):
    fl.set_num_threads(threads)
    if kind == "conv":
        layers, shape = chain_layers(rng, dtype), (1, 16, 16)
    else:
        layers, shape = list(fl.Sequential([fl.Dense(rng.normal(size=(16, 7)).astype(dtype)), fl.ReLU(),
                                            fl.Dense(rng.normal(size=(3, 16)).astype(dtype)), fl.Softmax()]).layers), (7,)
    seq = fl.Sequential(layers)
    x = fl.Input(shape)
    h = x
    for layer in layers:
        h = layer(h)
    graph = fl.Model(x, h)
    data = rng.normal(size=(9,) + shape).astype(dtype)
    np.testing.assert_array_equal(graph(data), seq(data))
    for comp in ("epsilon_plus_flat", "epsilon_alpha2_beta1", composites.epsilon_gamma_box(-3, 3)):
        a, b = fl.LRP(seq, comp)(data, layerwise=True), fl.LRP(graph, comp)(data, layerwise=True)
        np.testing.assert_array_equal(a.relevance, b.relevance)
        np.testing.assert_array_equal(a.output, b.output)
        np.testing.assert_array_equal(a.targets, b.targets)
        # Sequential's list holds every layer's input relevance; the graph's dict every output's
        for k, name in enumerate(graph.names[:-1]):
            np.testing.assert_array_equal(b.layers[name], a.layers[k + 1])


def test_name_selector(rng):
    m = residual_model(rng)
    comp = fl.Composite([(fl.Dense, rules.Epsilon()), (fl.Conv2d, rules.ZPlus()), (fl.Name("block1.conv*"), rules.Flat()),
                         (fl.Name("block1.add"), rules.Epsilon(0.5))])
    lrp = fl.LRP(m, comp)
    by_name = dict(zip(m.names, lrp.rules))
    assert by_name["block1.conv2"] == rules.Flat()
    assert by_name["conv2d_1"] == rules.ZPlus()
    assert by_name["block1.add"] == rules.Epsilon(0.5)
    assert "block1.add" in repr(lrp) and "Epsilon(epsilon=0.5)" in repr(lrp)
    with pytest.raises(ValueError, match="block1.add.*takes Epsilon"):
        fl.LRP(m, fl.Composite([(fl.Name("block1.add"), rules.ZPlus())]).with_rule(fl.Conv2d, rules.ZPlus())
               .with_rule(fl.Dense, rules.Epsilon()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_graph(rng, tmp_path, dtype):
    m = residual_model(rng, dtype)
    path = tmp_path / "g.npz"
    m.save(path)
    back = fl.load(path)
    assert isinstance(back, fl.Model) and back.names == m.names
    x = rng.normal(size=(2, 3, 8, 8)).astype(dtype)
    np.testing.assert_array_equal(back(x), m(x))
    np.testing.assert_array_equal(fl.LRP(back)(x).relevance, fl.LRP(m)(x).relevance)


def test_damaged_graph_file(rng, tmp_path):
    import json

    m = residual_model(rng)
    path = tmp_path / "g.npz"
    m.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["__config__"]))
    for damage, match in [(lambda h: h["layers"][3].update(inputs=["nowhere", "input"]), "not an earlier node"),
                          (lambda h: h["layers"][3].update(inputs=["input"]), "wrong number of inputs"),
                          (lambda h: h["layers"][1].update(name="conv2d_1"), "repeated name"),
                          (lambda h: h.update(input={"shape": [3]}), "input")]:
        bad = json.loads(json.dumps(header))
        damage(bad)
        out = tmp_path / "bad.npz"
        np.savez(out, **{**arrays, "__config__": np.array(json.dumps(bad))})
        with pytest.raises(ValueError, match=match):
            fl.load(out)


def test_bad_graphs(rng):
    x = fl.Input((3, 8, 8))
    a = fl.Conv2d(conv_w(rng, 4, 3))(x)
    b = fl.Conv2d(conv_w(rng, 3, 3))(x)
    with pytest.raises(ValueError, match=r"conv2d_1 \(4, 6, 6\).*conv2d_2 \(3, 6, 6\)|same shape"):
        fl.Model(x, fl.Add()(a, b))
    x2 = fl.Input((3, 8, 8), name="second")
    with pytest.raises(ValueError, match="second input"):
        fl.Model(x, fl.Add()(b, fl.Conv2d(conv_w(rng, 3, 3))(x2)))
    other = fl.Input((3, 8, 8), name="other")
    with pytest.raises(ValueError, match="does not depend on the input"):
        fl.Model(x, fl.ReLU()(other))
    with pytest.raises(TypeError, match="graph node"):
        fl.ReLU()(np.zeros(3))
    with pytest.raises(ValueError, match="two or more"):
        fl.Add()(a)
    with pytest.raises(ValueError, match="used twice"):
        fl.Model(x, fl.ReLU()(fl.ReLU()(x, name="r"), name="r"))
    m = fl.Model(x, fl.Flatten()(b))
    with pytest.raises(ValueError, match=r"expected samples of shape \(3, 8, 8\)"):
        m(np.zeros((1, 3, 9, 9)))


def test_add_mismatch_names_both_nodes(rng):
    x = fl.Input((3, 8, 8))
    a = fl.Conv2d(conv_w(rng, 4, 3), padding=1)(x, name="left")
    with pytest.raises(ValueError, match=r"left \(4, 8, 8\), input \(3, 8, 8\)"):
        fl.Model(x, fl.Add()(a, x))


def test_chunked_graph_layerwise(rng):
    m = residual_model(rng)
    x = rng.normal(size=(7, 3, 8, 8))
    lrp = fl.LRP(m)
    whole = lrp(x, layerwise=True)
    parts = lrp(x, layerwise=True, batch_size=3)
    for k in whole.layers:
        assert_close(parts.layers[k], whole.layers[k], np.float64)
