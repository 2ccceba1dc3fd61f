"""fastlrp.toolbox: the numpy toolbox's files, classes and rule conventions.

Files are written here from the toolbox's documented file format; relevance is
compared with the toolbox's formulas in fastlrp/toolbox/reference.py (float64, rtol 1e-10).
"""

import os
import pickle
import sys
import time
import types

import numpy as np
import pytest

import fastlrp as fl
from fastlrp.toolbox import data_io, model_io, modules
from fastlrp.toolbox import reference as ref

RULES = [("simple", None), ("epsilon", 0.01), ("epsilon", 1.0), ("alphabeta", 2.0), ("alphabeta", 1.0),
         ("alphabeta", 0.0), ("alphabeta", 0.5), ("flat", None), ("ww", None)]


def close(a, b):
    b = np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(b).max(initial=0))))


# ------------------------------------------------------------------------------ models
def mlp_layers(rng, sizes=(6, 7, 5, 3), act="rect"):
    layers = []
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(("linear", rng.normal(size=(m, n)) / np.sqrt(m), rng.normal(size=n) * 0.2))
        if k < len(sizes) - 2:
            layers.append((act,))
    return layers


def cnn_layers(rng, act="rect"):
    """10x10x2 input: conv 3x3 stride 1 -> 8x8x4, act, sumpool 2/2 -> 4x4x4, conv 2x2 stride 1 ->
    3x3x5, act, maxpool 2/1 -> 2x2x5, flatten -> 20, linear -> 3."""
    return [("conv", rng.normal(size=(3, 3, 2, 4)) / 3, rng.normal(size=4) * 0.1, (1, 1)), (act,),
            ("sumpool", (2, 2), (2, 2)),
            ("conv", rng.normal(size=(2, 2, 4, 5)) / 3, rng.normal(size=5) * 0.1, (1, 1)), (act,),
            ("maxpool", (2, 2), (1, 1)), ("flatten",),
            ("linear", rng.normal(size=(20, 3)) / 4, rng.normal(size=3) * 0.1)]


def to_toolbox(layers):
    mods = []
    for layer in layers:
        kind = layer[0]
        if kind == "linear":
            m = modules.Linear(*layer[1].shape)
            m.W, m.B = layer[1], layer[2]
        elif kind == "conv":
            m = modules.Convolution(layer[1].shape, layer[3])
            m.W, m.B = layer[1], layer[2]
        elif kind == "sumpool":
            m = modules.SumPool(layer[1], layer[2])
        elif kind == "maxpool":
            m = modules.MaxPool(layer[1], layer[2])
        else:
            m = {"rect": modules.Rect, "tanh": modules.Tanh, "flatten": modules.Flatten,
                 "softmax": modules.SoftMax}[kind]()
        mods.append(m)
    return modules.Sequential(mods)


def start(Y):
    return Y * (Y == Y.max(axis=1, keepdims=True))


# ------------------------------------------------------------------------------ text format
EXAMPLE = """Linear 2 3
0.5 -1.0 0.25 2.0 0.0 -0.75
0.1 0.0 -0.1
Tanh
Linear 3 2
1.0 -1.0 0.5 0.5 -2.0 3.0
0.0 0.25
SoftMax
"""


def test_reads_the_format_example(tmp_path):
    p = tmp_path / "xor.txt"
    p.write_text(EXAMPLE)
    net = model_io.read(p)
    assert [type(m).__name__ for m in net.modules] == ["Linear", "Tanh", "Linear", "SoftMax"]
    np.testing.assert_array_equal(net.modules[0].W, [[0.5, -1.0, 0.25], [2.0, 0.0, -0.75]])
    np.testing.assert_array_equal(net.modules[0].B, [0.1, 0.0, -0.1])
    np.testing.assert_array_equal(net.modules[2].W, [[1.0, -1.0], [0.5, 0.5], [-2.0, 3.0]])
    X = np.array([[1.0, -2.0], [0.5, 0.25]])
    h = np.tanh(X @ np.array([[0.5, -1.0, 0.25], [2.0, 0.0, -0.75]]) + [0.1, 0.0, -0.1])
    z = h @ np.array([[1.0, -1.0], [0.5, 0.5], [-2.0, 3.0]]) + [0.0, 0.25]
    close(net.forward(X), np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))


def test_reader_is_lenient_where_the_toolbox_is(tmp_path):
    """No final newline, \\r\\n endings, repeated spaces, and anything after an empty line."""
    text = EXAMPLE.replace("\n", "\r\n").replace("0.5 -1.0", "  0.5   -1.0 ").rstrip("\r\n")
    p = tmp_path / "m.txt"
    p.write_bytes((text + "\n\nthis is ignored\n").encode())
    net = model_io.read(p)
    np.testing.assert_array_equal(net.modules[0].W, [[0.5, -1.0, 0.25], [2.0, 0.0, -0.75]])
    p.write_bytes(EXAMPLE.rstrip("\n").encode())
    assert len(model_io.read(p).modules) == 4


def test_reads_the_legacy_format(tmp_path, rng):
    W1, B1, W2, B2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)
    rows = lambda a: "\n".join(" ".join(repr(float(v)) for v in r) for r in np.atleast_2d(a))
    text = f"Linear 3 4\n{rows(W1)}\n{rows(B1)}\nRect\nLinear 4 2\n{rows(W2)}\n{rows(B2)}\nSoftMax\n"
    p = tmp_path / "legacy.txt"
    p.write_text(text)
    net = model_io.read(p)
    np.testing.assert_array_equal(net.modules[0].W, W1)
    np.testing.assert_array_equal(net.modules[2].W, W2)
    np.testing.assert_array_equal(net.modules[2].B, B2)
    # m = 1: both layouts are the same lines
    p.write_text("Linear 1 3\n1.5 -2.0 0.5\n0.0 0.0 1.0\n")
    np.testing.assert_array_equal(model_io.read(p).modules[0].W, [[1.5, -2.0, 0.5]])


@pytest.mark.parametrize("ext", ["txt", "nn", "pickle"])
def test_write_then_read_is_exact(tmp_path, rng, ext):
    for layers, X in ((mlp_layers(rng, act="tanh") + [("softmax",)], rng.normal(size=(4, 6))),
                      (cnn_layers(rng), rng.normal(size=(3, 10, 10, 2)))):
        net = to_toolbox(layers)
        net.modules[0].set_lrp_parameters("epsilon", 0.5)
        p = tmp_path / f"m.{ext}"
        model_io.write(net, p)
        back = model_io.read(p)
        assert [repr(m) for m in back.modules] == [repr(m) for m in net.modules]
        for a, b in zip(net.modules, back.modules):
            if hasattr(a, "W"):
                np.testing.assert_array_equal(a.W, b.W)
                np.testing.assert_array_equal(a.B, b.B)
        np.testing.assert_array_equal(back.forward(X), net.forward(X))
        if ext != "txt":  # only pickles carry per-layer presets
            assert (back.modules[0].lrp_var, back.modules[0].lrp_param) == ("epsilon", 0.5)
    if ext == "txt":
        text = p.read_text()
        assert text.endswith("\n") and "np.float64" not in text


# ------------------------------------------------------------------------------ .nn pickles
@pytest.fixture
def toolbox_classes(monkeypatch):
    """Stand-ins for the toolbox's classes under their real module names, so that plain
    pickle.dump writes what the toolbox writes (globals modules.<file>.<Class>, __dict__ state)."""
    pkg = types.ModuleType("modules")
    classes = {}
    for cls_name, mod_name in (("Sequential", "sequential"), ("Linear", "linear"), ("Convolution", "convolution"),
                               ("SumPool", "sumpool"), ("MaxPool", "maxpool"), ("Flatten", "flatten"),
                               ("Rect", "rect"), ("Tanh", "tanh"), ("SoftMax", "softmax")):
        mod = types.ModuleType(f"modules.{mod_name}")
        cls = type(cls_name, (), {"__module__": f"modules.{mod_name}"})
        setattr(mod, cls_name, cls)
        monkeypatch.setitem(sys.modules, f"modules.{mod_name}", mod)
        classes[cls_name] = cls
    monkeypatch.setitem(sys.modules, "modules", pkg)
    return classes


def toolbox_object(classes, layers, lrp_var=None):
    mods = []
    for layer in layers:
        kind = layer[0]
        base = {"lrp_var": lrp_var, "lrp_param": 1.0, "X": None, "Y": None}
        if kind == "linear":
            o = classes["Linear"]()
            o.__dict__.update(base, m=layer[1].shape[0], n=layer[1].shape[1], W=layer[1], B=layer[2], dW=None, dB=None)
        elif kind == "conv":
            o = classes["Convolution"]()
            fh, fw, fd, n = layer[1].shape
            o.__dict__.update(base, fh=fh, fw=fw, fd=fd, n=n, stride=layer[3], W=layer[1], B=layer[2])
        elif kind in ("sumpool", "maxpool"):
            o = classes["SumPool" if kind == "sumpool" else "MaxPool"]()
            o.__dict__.update(base, pool=layer[1], stride=layer[2])
        else:
            o = classes[{"rect": "Rect", "tanh": "Tanh", "flatten": "Flatten", "softmax": "SoftMax"}[kind]]()
            o.__dict__.update(base)
        mods.append(o)
    seq = classes["Sequential"]()
    seq.__dict__.update(modules=mods, lrp_var=None, lrp_param=1.0)
    return seq


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_reads_toolbox_pickles(tmp_path, rng, toolbox_classes, protocol):
    layers = cnn_layers(rng)
    data = pickle.dumps(toolbox_object(toolbox_classes, layers, lrp_var="alphabeta"), protocol=protocol)
    if protocol == 2:  # files from numpy 1.x name numpy.core, not numpy._core
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray" in data
    p = tmp_path / "LeNet.nn"
    p.write_bytes(data)
    net = model_io.read(p)
    X = rng.normal(size=(2, 10, 10, 2))
    close(net.forward(X), ref.forward_all(layers, X)[-1])
    assert net.modules[0].lrp_var == "alphabeta"


def test_reads_pickles_without_extension(tmp_path, rng, toolbox_classes):
    layers = mlp_layers(rng)
    p = tmp_path / "model"
    p.write_bytes(pickle.dumps(toolbox_object(toolbox_classes, layers), protocol=2))
    X = rng.normal(size=(3, 6))
    close(model_io.read(p).forward(X), ref.forward_all(layers, X)[-1])


class _RunsCommand:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _WritesFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (eval, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [_RunsCommand, _WritesFile])
@pytest.mark.parametrize("where", ["top", "layer attribute", "inside the weights list"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, rng, toolbox_classes, payload, where):
    target = tmp_path / "pwned"
    evil = payload(target)
    if where == "top":
        obj = evil
    else:
        obj = toolbox_object(toolbox_classes, mlp_layers(rng))
        if where == "layer attribute":
            obj.modules[0].__dict__["lrp_var"] = evil
        else:
            obj.modules.append(evil)
    p = tmp_path / "evil.nn"
    p.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ValueError, match="refused"):
        model_io.read(p)
    assert not target.exists()


class _AllocatesArray:
    def __reduce__(self):
        return (np.ndarray, ((2**28,),))  # 2 GiB of float64 if numpy.ndarray were called


def test_pickle_claiming_a_huge_array_allocates_nothing(tmp_path):
    import tracemalloc

    p = tmp_path / "big.nn"
    p.write_bytes(pickle.dumps(_AllocatesArray(), protocol=2))
    tracemalloc.start()  # numpy reports its data allocations to tracemalloc
    try:
        with pytest.raises(ValueError, match="refused: a direct call of numpy.ndarray"):
            model_io.read(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_pickle_of_something_else_is_refused(tmp_path):
    p = tmp_path / "x.nn"
    p.write_bytes(pickle.dumps({"modules": [1, 2]}))
    with pytest.raises(ValueError, match="expected a pickled toolbox Sequential"):
        model_io.read(p)
    p.write_bytes(pickle.dumps(np.array([object()], dtype=object)))
    with pytest.raises(ValueError, match="refused"):
        model_io.read(p)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_truncated_pickle_is_a_value_error(tmp_path, rng, cut):
    p = tmp_path / "m.nn"
    model_io.write(to_toolbox(cnn_layers(rng)), p)
    data = p.read_bytes()
    p.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ValueError):
        model_io.read(p)


def test_inconsistent_pickle_is_a_value_error(tmp_path, rng, toolbox_classes):
    layers = mlp_layers(rng)
    obj = toolbox_object(toolbox_classes, layers)
    obj.modules[2].__dict__["W"] = np.zeros((4, 5))  # the second Linear should be (7, 5)
    p = tmp_path / "m.nn"
    p.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match="layer 2 .*W has shape"):
        model_io.read(p)


# ------------------------------------------------------------------------------ bad text files
BAD_FILES = {
    "wrong weight count": ("Linear 2 3\n1 2 3 4 5\n0 0 0\n", "line 2"),
    "wrong bias count": ("Linear 2 3\n1 2 3 4 5 6\n0 0\n", "line 3"),
    "huge header": ("Linear 1000000 1000000\n1 2\n0\n", "claims 1,000,000,000,000 weights"),
    "huge legacy header": ("Linear 1 1000000000000\n1\n0\n", "weights"),
    "truncated": ("Linear 2 3\n1 2 3 4 5 6\n", "needs 2 more line"),
    "unknown keyword": ("Linear 1 1\n1\n0\nDropout 0.5\n", "unknown layer 'Dropout'"),
    "not a number": ("Linear 1 2\n1 abc\n0 0\n", "'abc' is not a number"),
    "nan": ("Linear 1 2\n1 nan\n0 0\n", "finite"),
    "negative size": ("Linear -2 3\n", "positive"),
    "header ints missing": ("Convolution 5 5 1\n", "expects 6 integers"),
    "mismatched layers": ("Linear 2 3\n1 2 3 4 5 6\n0 0 0\nRect\nLinear 4 1\n1 2 3 4\n0\n", "expects 4 inputs"),
    "mismatched channels": ("Convolution 1 1 1 2 1 1\n1 2\n0 0\nConvolution 1 1 3 1 1 1\n1 2 3\n0\n", "3 input channels"),
    "empty": ("", "no layers"),
    "binary": ("Linear 1 1\n\x00\xff\n0\n", "not ASCII"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_text_file_is_a_value_error_naming_the_problem(tmp_path, name):
    text, message = BAD_FILES[name]
    p = tmp_path / "bad.txt"
    p.write_bytes(text.encode("latin1"))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        model_io.read(p)
    assert time.perf_counter() - t0 < 5  # refused, not allocated or looped over


def test_unknown_model_format(tmp_path):
    with pytest.raises(ValueError, match="MCOS"):
        model_io.read(tmp_path / "m.mat")
    with pytest.raises(ValueError, match="unknown model format"):
        model_io.read(tmp_path / "m.h5")


# ------------------------------------------------------------------------------ LRP
@pytest.mark.parametrize("rule,param", RULES)
@pytest.mark.parametrize("act", ["rect", "tanh"])
def test_mlp_relevance_equals_the_toolbox_formulas(rng, rule, param, act):
    layers = mlp_layers(rng, act=act)
    net = to_toolbox(layers)
    X = rng.normal(size=(5, 6))
    Y = net.forward(X)
    close(Y, ref.forward_all(layers, X)[-1])
    R = start(Y)
    close(net.lrp(R, rule, param), ref.lrp(layers, X, R, [(rule, param)] * len(layers)))


@pytest.mark.parametrize("rule,param", RULES)
@pytest.mark.parametrize("act", ["rect", "tanh"])
def test_cnn_relevance_equals_the_toolbox_formulas(rng, rule, param, act):
    layers = cnn_layers(rng, act=act)
    net = to_toolbox(layers)
    X = rng.normal(size=(3, 10, 10, 2))
    Y = net.forward(X)
    close(Y, ref.forward_all(layers, X)[-1])
    R = start(Y)
    close(net.lrp(R, rule, param), ref.lrp(layers, X, R, [(rule, param)] * len(layers)))


def test_overlapping_maxpool_ties_split_evenly():
    """A hand case: one channel, 2x3 input with a tie, windows 2x2 at stride 1 (overlapping)."""
    net = modules.Sequential([modules.MaxPool((2, 2), (1, 1))])
    X = np.array([[5.0, 5.0, 1.0], [0.0, 2.0, 3.0]]).reshape(1, 2, 3, 1)
    np.testing.assert_array_equal(net.forward(X).ravel(), [5.0, 5.0])
    R = net.lrp(np.array([4.0, 2.0]).reshape(1, 1, 2, 1))
    # window 1 ties between (0,0) and (0,1): 2 each; window 2's only maximum is (0,1): +2
    np.testing.assert_array_equal(R.reshape(2, 3), [[2.0, 4.0, 0.0], [0.0, 0.0, 0.0]])


def test_layer_presets_apply_only_without_arguments(rng):
    layers = cnn_layers(rng)
    net = to_toolbox(layers)
    presets = [("alphabeta", 1.0), (None, 1.0), ("epsilon", 0.1), ("ww", None), (None, 1.0), ("flat", None),
               (None, 1.0), ("epsilon", 0.01)]
    for m, (v, p) in zip(net.modules, presets):
        m.set_lrp_parameters(v, p)
    X = rng.normal(size=(2, 10, 10, 2))
    R = start(net.forward(X))
    close(net.lrp(R), ref.lrp(layers, X, R, [(v or "simple", p) for v, p in presets]))
    close(net.lrp(R, "epsilon", 0.5), ref.lrp(layers, X, R, [("epsilon", 0.5)] * len(layers)))
    close(net.lrp(R, None, 0.5), ref.lrp(layers, X, R, [("simple", None)] * len(layers)))  # param alone: simple
    net.set_lrp_parameters("alpha", 2.0)
    close(net.lrp(R), ref.lrp(layers, X, R, [("alphabeta", 2.0)] * len(layers)))


def test_layer_by_layer_lrp_equals_the_whole_model(rng):
    layers = cnn_layers(rng)
    net = to_toolbox(layers)
    X = rng.normal(size=(2, 10, 10, 2))
    R0 = start(net.forward(X))
    R = R0
    for m in net.modules[::-1]:  # a common toolbox idiom, after Sequential.forward only
        R = m.lrp(R, "epsilon", 0.01)
    close(R, net.lrp(R0, "epsilon", 0.01))


def test_rule_names_are_case_insensitive_and_aliases_work(rng):
    layers = mlp_layers(rng)
    net = to_toolbox(layers)
    X = rng.normal(size=(4, 6))
    R = start(net.forward(X))
    close(net.lrp(R, "EPSILON_slow", 0.01), net.lrp(R, "epsilon", 0.01))
    close(net.lrp(R, "w^2"), net.lrp(R, "ww"))
    close(net.lrp(R, "alpha", 2.0), net.lrp(R, "alphabeta", 2.0))
    close(net.lrp(R, "none"), net.lrp(R, "simple"))
    assert net.forward(X, lrp_aware=True).shape == (4, 3)


def test_drop_softmax_and_forward_shapes(rng, capsys):
    net = to_toolbox(mlp_layers(rng) + [("softmax",)])
    X = rng.normal(size=(4, 6))
    np.testing.assert_allclose(net.forward(X).sum(axis=1), 1.0)
    net.drop_softmax_output_layer()
    assert "removing softmax" in capsys.readouterr().out
    assert not isinstance(net.modules[-1], modules.SoftMax)
    assert net.forward(X).min() < 0  # scores now


def test_to_sequential_gives_the_native_model(rng):
    layers = cnn_layers(rng)
    net = to_toolbox(layers)
    X = rng.normal(size=(3, 10, 10, 2))
    Y = net.forward(X)
    native = net.to_sequential()
    assert isinstance(native, fl.Sequential)
    Xn = X.transpose(0, 3, 1, 2)
    close(native.forward(Xn), Y)
    R = start(Y)
    # the toolbox's 'epsilon' on Linear/Conv is fastlrp's Epsilon; on its SumPool the stabiliser
    # applies to the plain window sum, which only matters near zero sums: compare LRP-0-like eps
    e = fl.LRP(native, fl.Composite([(fl.Dense, fl.rules.Epsilon(1e-9)), (fl.Conv2d, fl.rules.Epsilon(1e-9)),
                                     (fl.SumPool2d, fl.rules.Epsilon(1e-9 / 2))]))(Xn, target=R)
    close(e.relevance.transpose(0, 2, 3, 1), net.lrp(R, "epsilon", 1e-9))


def test_flatten_then_linear_keeps_the_toolbox_order(rng):
    """The toolbox flattens (y, x, c); a spatial Flatten -> Linear must use W's rows in that order."""
    layers = [("conv", rng.normal(size=(2, 2, 3, 4)), rng.normal(size=4), (1, 1)), ("rect",), ("flatten",),
              ("linear", rng.normal(size=(36, 2)), rng.normal(size=2))]
    net = to_toolbox(layers)
    X = rng.normal(size=(2, 4, 4, 3))
    close(net.forward(X), ref.forward_all(layers, X)[-1])
    R = start(net.forward(X))
    close(net.lrp(R, "epsilon", 0.1), ref.lrp(layers, X, R, [("epsilon", 0.1)] * 4))
    ends_flat = to_toolbox(layers[:3])
    Y = ends_flat.forward(X)
    close(Y, ref.forward_all(layers[:3], X)[-1])
    close(ends_flat.lrp(Y, "simple"), ref.lrp(layers[:3], X, Y, [("simple", None)] * 3))
    native = net.to_sequential()
    close(native.forward(X.transpose(0, 3, 1, 2)), net.forward(X))


def test_weights_can_be_assigned_and_are_read_only(rng):
    lin = modules.Linear(3, 2)
    net = modules.Sequential([lin])
    X = rng.normal(size=(2, 3))
    W = rng.normal(size=(3, 2))
    lin.W = W
    close(net.forward(X), X @ W + lin.B)
    with pytest.raises(ValueError):
        lin.W[0, 0] = 1.0
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\)"):
        lin.W = np.zeros((2, 3))
    with pytest.raises(ValueError, match="finite"):
        lin.B = [np.nan, 0]


def test_training_is_not_implemented(rng):
    net = to_toolbox(mlp_layers(rng))
    for call in (lambda: net.train(np.zeros((1, 6)), np.zeros((1, 3))), lambda: net.modules[0].backward(None),
                 lambda: net.modules[0].update(0.1)):
        with pytest.raises(NotImplementedError, match="inference-only"):
            call()


def test_bad_calls_are_clear_errors(rng):
    net = to_toolbox(mlp_layers(rng))
    with pytest.raises(ValueError, match="call forward"):
        net.lrp(np.zeros((1, 3)))
    X = rng.normal(size=(4, 6))
    net.forward(X)
    with pytest.raises(ValueError, match=r"R: expected the shape of the last forward output \(4, 3\)"):
        net.lrp(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="unknown toolbox rule 'gamma'"):
        net.lrp(np.zeros((4, 3)), "gamma", 0.25)
    with pytest.raises(ValueError, match="unknown toolbox rule"):
        net.modules[0].set_lrp_parameters("zplus")
    with pytest.raises(TypeError, match="needs a real parameter"):
        net.lrp(np.zeros((4, 3)), "epsilon")
    with pytest.raises(ValueError, match=r"expects \(N, 6\) vectors"):
        net.forward(rng.normal(size=(2, 3, 2, 1)))
    with pytest.raises(ValueError, match="expects"):
        net.forward(rng.normal(size=(2, 5)))
    cnn = to_toolbox(cnn_layers(rng))
    with pytest.raises(ValueError, match=r"layer 3 Convolution.*larger than the padded input 1x1"):
        cnn.forward(rng.normal(size=(1, 4, 4, 2)))
    with pytest.raises(ValueError, match="SoftMax only as the last layer"):
        modules.Sequential([modules.SoftMax(), modules.Linear(2, 2)]).forward(np.zeros((1, 2)))
    with pytest.raises(TypeError, match="not a toolbox module"):
        modules.Sequential([fl.ReLU()]).forward(np.zeros((1, 2)))


# ------------------------------------------------------------------------------ data_io
@pytest.mark.parametrize("ext", ["npy", "npz", "txt", "mat"])
def test_data_io_round_trip(tmp_path, rng, ext):
    if ext == "mat":
        pytest.importorskip("scipy")
    X = rng.normal(size=(5, 4))
    p = tmp_path / f"d.{ext}"
    data_io.write(X, p)
    np.testing.assert_allclose(data_io.read(p), X, rtol=1e-15)


def test_data_io_refuses_object_arrays(tmp_path):
    p = tmp_path / "o.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        data_io.read(p)
    with pytest.raises(ValueError, match="unknown data format"):
        data_io.read(tmp_path / "x.csv")
